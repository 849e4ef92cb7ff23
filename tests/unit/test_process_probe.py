"""The ``process`` probe against recorded and hand-built /proc + cgroup trees, and the live process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._base import flatten
from memwarden.probes.process import (
    CgroupMemory,
    ProcessProbe,
    ProcessReading,
    read_cgroup_memory,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "process"
MiB = 1024 * 1024


def probe_for(tree: Path, **kwargs: Any) -> ProcessProbe:
    """A probe reading the recorded machine under ``tree``."""
    return ProcessProbe(tree / "proc", "self", tree, **kwargs)


def copy_tree(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def smaps_kb(tree: Path, key: str) -> int:
    """The value of ``key`` in the tree's smaps_rollup, in bytes, read independently of the probe."""
    for line in (tree / "proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- recorded cgroup v1 hybrid host (this development machine) ---------------------------------


def test_v1_host_reads_smaps_rollup_fields() -> None:
    """RSS, PSS, USS (private clean + dirty), anonymous and swap come from smaps_rollup."""
    tree = FIXTURES / "v1-host"
    reading = probe_for(tree).read()
    assert reading.rss_bytes == smaps_kb(tree, "Rss")
    assert reading.pss_bytes == smaps_kb(tree, "Pss")
    assert reading.uss_bytes == smaps_kb(tree, "Private_Clean") + smaps_kb(tree, "Private_Dirty")
    assert reading.anon_bytes == smaps_kb(tree, "Anonymous")
    assert reading.swap_bytes == smaps_kb(tree, "Swap")


def test_v1_host_vms_comes_from_statm_pages() -> None:
    """The virtual size is statm's first field times the page size."""
    tree = FIXTURES / "v1-host"
    size_pages = int((tree / "proc/self/statm").read_text().split()[0])
    assert probe_for(tree, page_size=4096).read().vms_bytes == size_pages * 4096


def test_v1_host_finds_the_memory_cgroup_on_a_hybrid_host() -> None:
    """On a hybrid host the v1 memory hierarchy is used, not the unified mount without memory."""
    tree = FIXTURES / "v1-host"
    cgroup_line = next(
        line for line in (tree / "proc/self/cgroup").read_text().splitlines() if ":memory:" in line
    )
    expected_dir = tree / "sys/fs/cgroup/memory" / cgroup_line.split(":", 2)[2].strip("/")
    reading = probe_for(tree).read()
    assert reading.cgroup_version == 1
    assert reading.cgroup_path == str(expected_dir)
    assert reading.source == "smaps_rollup+statm+cgroup1"


def test_v1_host_huge_limit_means_no_limit_and_leaf_usage_is_read() -> None:
    """v1's 9223372036854771712 at every level reads as no limit; usage and peak are the leaf's."""
    tree = FIXTURES / "v1-host"
    reading = probe_for(tree).read()
    leaf = Path(str(reading.cgroup_path))
    assert reading.cgroup_limit_bytes is None
    assert reading.cgroup_limit_path is None
    assert reading.cgroup_usage_bytes == int((leaf / "memory.usage_in_bytes").read_text())
    assert reading.cgroup_peak_bytes == int((leaf / "memory.max_usage_in_bytes").read_text())
    assert reading.cgroup_oom_kills == 0
    assert reading.cgroup_high_events is None
    assert reading.cgroup_max_events is None


# -- cgroup v2 -----------------------------------------------------------------------------------


def test_v2_nested_limit_is_the_smallest_up_the_hierarchy() -> None:
    """A leaf memory.max of 'max' does not hide the 512 MiB two levels up (nor the 2 GiB between)."""
    tree = FIXTURES / "v2-nested"
    reading = probe_for(tree).read()
    assert reading.cgroup_version == 2
    assert reading.cgroup_limit_bytes == 512 * MiB
    assert reading.cgroup_limit_path == str(tree / "sys/fs/cgroup/system.slice/memory.max")
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup/system.slice/app.service/worker")


def test_v2_nested_usage_peak_and_events_come_from_the_leaf() -> None:
    """memory.current, memory.peak and memory.events (oom_kill 2, oom, high, max) are the leaf's."""
    reading = probe_for(FIXTURES / "v2-nested").read()
    assert reading.cgroup_usage_bytes == 320339968
    assert reading.cgroup_peak_bytes == 452984832
    assert reading.cgroup_oom_kills == 2
    assert reading.cgroup_oom_events == 3
    assert reading.cgroup_high_events == 5
    assert reading.cgroup_max_events == 17
    assert reading.source == "smaps_rollup+statm+cgroup2"


def test_v2_container_whose_mount_root_is_its_own_cgroup() -> None:
    """When mountinfo's root is the container's cgroup, the mount point itself is the cgroup."""
    tree = FIXTURES / "v2-nolimit"
    reading = probe_for(tree).read()
    assert reading.cgroup_version == 2
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup")
    assert reading.cgroup_usage_bytes == 335544320
    assert reading.cgroup_oom_kills == 0


def test_v2_no_limit_anywhere_is_none() -> None:
    """'max' at every visible level means no limit: None, with no limit path."""
    reading = probe_for(FIXTURES / "v2-nolimit").read()
    assert reading.cgroup_limit_bytes is None
    assert reading.cgroup_limit_path is None


def test_v2_with_cgroup_namespace_maps_slash_to_the_mount_point(tmp_path: Path) -> None:
    """Inside a cgroup namespace /proc/self/cgroup says '0::/' and the mount point is the cgroup."""
    tree = copy_tree("v2-nolimit", tmp_path)
    write(tree / "proc/self/cgroup", "0::/\n")
    mountinfo = (tree / "proc/self/mountinfo").read_text().splitlines()
    fixed = [
        " ".join(f if i != 3 else "/" for i, f in enumerate(line.split(" "))) if "cgroup2" in line else line
        for line in mountinfo
    ]
    write(tree / "proc/self/mountinfo", "\n".join(fixed) + "\n")
    write(tree / "sys/fs/cgroup/memory.max", "1073741824\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup")
    assert reading.cgroup_limit_bytes == 1073741824


def test_v2_path_outside_the_mount_root_falls_back_to_the_mount_point(tmp_path: Path) -> None:
    """A cgroup path that is not under the mount's root is read at the mount point, not crashed on."""
    tree = copy_tree("v2-nolimit", tmp_path)
    write(tree / "proc/self/cgroup", "0::/../../elsewhere/job\n")
    write(tree / "sys/fs/cgroup/memory.max", "268435456\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup")
    assert reading.cgroup_limit_bytes == 268435456


def test_v2_path_outside_the_mount_root_uses_an_existing_tail(tmp_path: Path) -> None:
    """When the tail of a foreign cgroup path exists under the mount, that directory is the cgroup."""
    tree = copy_tree("v2-nolimit", tmp_path)
    write(tree / "proc/self/cgroup", "0::/other.slice/job\n")
    write(tree / "sys/fs/cgroup/job/memory.max", "max\n")
    write(tree / "sys/fs/cgroup/job/memory.current", "4096\n")
    write(tree / "sys/fs/cgroup/memory.max", "268435456\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup/job")
    assert reading.cgroup_usage_bytes == 4096
    assert reading.cgroup_limit_bytes == 268435456


def test_unified_mount_without_memory_controller_is_no_cgroup(tmp_path: Path) -> None:
    """A v2 hierarchy that does not run the memory controller gives no cgroup reading."""
    tree = copy_tree("v2-nolimit", tmp_path)
    write(tree / "sys/fs/cgroup/cgroup.controllers", "cpu io pids\n")
    (tree / "sys/fs/cgroup/memory.current").unlink()
    reading = probe_for(tree).read()
    assert reading.cgroup_version is None
    assert reading.cgroup_limit_bytes is None
    assert reading.source == "smaps_rollup+statm"


def test_mount_point_with_escaped_space(tmp_path: Path) -> None:
    """Mount points are unescaped (mountinfo writes a space as \\040)."""
    tree = tmp_path / "spaced"
    shutil.copytree(FIXTURES / "v2-nolimit" / "proc", tree / "proc")
    shutil.copytree(FIXTURES / "v2-nolimit" / "sys/fs/cgroup", tree / "sys/fs/my cgroup")
    text = (tree / "proc/self/mountinfo").read_text().replace(" /sys/fs/cgroup ", " /sys/fs/my\\040cgroup ")
    write(tree / "proc/self/mountinfo", text)
    assert probe_for(tree).read().cgroup_path == str(tree / "sys/fs/my cgroup")


def test_probe_relocates_when_the_process_moves_cgroup(tmp_path: Path) -> None:
    """A probe reading again after the process moved cgroups reads the new cgroup."""
    tree = copy_tree("v2-nested", tmp_path)
    probe = probe_for(tree)
    assert probe.read().cgroup_path == str(tree / "sys/fs/cgroup/system.slice/app.service/worker")
    write(tree / "proc/self/cgroup", "0::/system.slice/app.service\n")
    assert probe.read().cgroup_path == str(tree / "sys/fs/cgroup/system.slice/app.service")


def test_probe_sees_a_changed_limit(tmp_path: Path) -> None:
    """Limits are read on every read, so a resized container shows its new limit."""
    tree = copy_tree("v2-nested", tmp_path)
    probe = probe_for(tree)
    probe.read()
    write(tree / "sys/fs/cgroup/system.slice/app.service/worker/memory.max", "104857600\n")
    assert probe.read().cgroup_limit_bytes == 104857600


# -- cgroup v1 with a limit ----------------------------------------------------------------------


def test_v1_container_limit_and_oom_kills() -> None:
    """A Docker container on v1: the mount point is the cgroup, its limit, usage, peak and oom_kill."""
    tree = FIXTURES / "v1-limit"
    reading = probe_for(tree).read()
    assert reading.cgroup_version == 1
    assert reading.cgroup_path == str(tree / "sys/fs/cgroup/memory")
    assert reading.cgroup_limit_bytes == 256 * MiB
    assert reading.cgroup_usage_bytes == 104857600
    assert reading.cgroup_peak_bytes == 201326592
    assert reading.cgroup_oom_kills == 1
    assert reading.cgroup_oom_events is None


def test_v1_limit_of_an_invisible_parent_comes_from_memory_stat(tmp_path: Path) -> None:
    """memory.stat's hierarchical_memory_limit catches a parent's limit the mount does not show."""
    tree = copy_tree("v1-limit", tmp_path)
    memory = tree / "sys/fs/cgroup/memory"
    write(memory / "memory.limit_in_bytes", "9223372036854771712\n")
    write(memory / "memory.stat", "cache 0\nrss 0\nhierarchical_memory_limit 134217728\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_limit_bytes == 128 * MiB
    assert reading.cgroup_limit_path == str(memory / "memory.stat")


def test_v1_nested_limit_walks_up_to_the_mount(tmp_path: Path) -> None:
    """On v1 too the smallest limit between the process's cgroup and the mount's top wins."""
    tree = copy_tree("v1-host", tmp_path)
    memory = tree / "sys/fs/cgroup/memory"
    write(memory / "process_api/memory.limit_in_bytes", "8589934592\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_limit_bytes == 8 * 1024 * MiB
    assert reading.cgroup_limit_path == str(memory / "process_api/memory.limit_in_bytes")


# -- fallbacks and garbage -----------------------------------------------------------------------


def test_missing_smaps_rollup_falls_back_to_statm(tmp_path: Path) -> None:
    """Without smaps_rollup, RSS and anonymous memory come from statm pages; PSS/USS/swap unknown."""
    tree = copy_tree("v1-host", tmp_path)
    (tree / "proc/self/smaps_rollup").unlink()
    size, resident, shared = (int(x) for x in (tree / "proc/self/statm").read_text().split()[:3])
    reading = probe_for(tree, page_size=4096).read()
    assert reading.rss_bytes == resident * 4096
    assert reading.vms_bytes == size * 4096
    assert reading.anon_bytes == (resident - shared) * 4096
    assert (reading.pss_bytes, reading.uss_bytes, reading.swap_bytes) == (None, None, None)
    assert reading.source == "statm+cgroup1"


def test_smaps_rollup_can_be_switched_off() -> None:
    """``smaps_rollup=False`` reads only statm even where smaps_rollup exists."""
    reading = probe_for(FIXTURES / "v2-nested", smaps_rollup=False).read()
    assert reading.source == "statm+cgroup2"
    assert reading.pss_bytes is None
    assert reading.rss_bytes is not None


def test_garbage_smaps_rollup_falls_back_to_statm(tmp_path: Path) -> None:
    """A smaps_rollup without an Rss line is ignored in favour of statm."""
    tree = copy_tree("v2-nested", tmp_path)
    write(tree / "proc/self/smaps_rollup", "Rss: lots kB\n\x00\x01garbage\nPss 12 kB\n")
    reading = probe_for(tree).read()
    assert reading.source.startswith("statm")
    assert reading.pss_bytes is None


def test_garbage_everywhere_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """Unparseable smaps_rollup and statm make read() raise ProbeUnavailable, available() say no."""
    tree = copy_tree("v2-nested", tmp_path)
    write(tree / "proc/self/smaps_rollup", "not a smaps file\n")
    write(tree / "proc/self/statm", "x y z\n")
    probe = probe_for(tree)
    with pytest.raises(ProbeUnavailable) as info:
        probe.read()
    assert info.value.layer == "process"
    availability = probe.available()
    assert not availability
    assert "statm" in availability.reason


def test_empty_tree_is_unavailable(tmp_path: Path) -> None:
    """A root with nothing in it is unavailable (and never silently reads the live process)."""
    probe = probe_for(tmp_path)
    assert not probe.available()
    with pytest.raises(ProbeUnavailable):
        probe.read()


def test_garbage_cgroup_files_give_none_fields(tmp_path: Path) -> None:
    """Garbled cgroup files give None where they cannot be read; the rest is still read."""
    tree = copy_tree("v2-nested", tmp_path)
    leaf = tree / "sys/fs/cgroup/system.slice/app.service/worker"
    write(leaf / "memory.current", "")
    write(leaf / "memory.peak", "-5\n")
    write(leaf / "memory.events", "oom_kill lots\nhigh\n\xff\xfe\n")
    write(tree / "sys/fs/cgroup/system.slice/memory.max", "banana\n")
    reading = probe_for(tree).read()
    assert reading.cgroup_version == 2
    assert reading.cgroup_usage_bytes is None
    assert reading.cgroup_peak_bytes is None
    assert reading.cgroup_oom_kills is None
    assert reading.cgroup_limit_bytes == 2048 * MiB  # the readable limit one level up
    assert reading.rss_bytes == smaps_kb(tree, "Rss")


@pytest.mark.parametrize(
    ("cgroup", "mountinfo"),
    [
        ("", ""),
        ("garbage without colons\n", "garbage\n"),
        ("0::/system.slice/app.service/worker\n", "1 2 3\n - \n\x00\n"),
        ("4:memory:/x\n", "35 31 0:32 / /nowhere rw - cgroup cgroup rw,memory\n"),
    ],
)
def test_garbage_cgroup_and_mountinfo_never_raise(tmp_path: Path, cgroup: str, mountinfo: str) -> None:
    """Unparseable /proc/<pid>/cgroup or mountinfo give a reading (cgroup or not), never an error."""
    tree = copy_tree("v2-nested", tmp_path)
    write(tree / "proc/self/cgroup", cgroup)
    write(tree / "proc/self/mountinfo", mountinfo)
    reading = probe_for(tree).read()
    assert reading.rss_bytes == smaps_kb(tree, "Rss")
    memory = read_cgroup_memory(tree / "proc", "self", tree)
    assert isinstance(memory, CgroupMemory)


def test_read_cgroup_memory_matches_the_probe() -> None:
    """read_cgroup_memory gives the cgroup part of the probe's reading, with the limit's file."""
    tree = FIXTURES / "v2-nested"
    memory = read_cgroup_memory(tree / "proc", "self", tree)
    assert memory == probe_for(tree).read().cgroup
    assert memory.limit_path is not None
    assert memory.limit_path.endswith("system.slice/memory.max")


def test_unknown_cgroup_has_every_field_none() -> None:
    """CgroupMemory.unknown() says nothing is known."""
    assert all(value is None for value in vars(CgroupMemory.unknown()).values())


def test_bad_pid_is_a_usage_error() -> None:
    """A pid that is not a positive number or 'self' is refused (no path tricks)."""
    with pytest.raises(UsageError):
        ProcessProbe(pid="../1")
    with pytest.raises(UsageError):
        ProcessProbe(pid=0)


def test_psutil_fallback_when_proc_has_nothing(tmp_path: Path) -> None:
    """With the psutil fallback on, an empty /proc root reads the live process through psutil."""
    reading = ProcessProbe(tmp_path / "proc", "self", tmp_path, psutil_fallback=True).read()
    assert reading.source == "psutil"
    assert reading.rss_bytes is not None
    assert reading.rss_bytes > 0
    assert reading.pss_bytes is None
    assert reading.uss_bytes is None


def test_flatten_keeps_numbers_and_drops_paths() -> None:
    """The flat metrics carry the sizes and cgroup counters, not the path strings."""
    metrics = flatten(ProcessProbe.layer, probe_for(FIXTURES / "v2-nested").read())
    assert metrics["process.cgroup_limit_bytes"] == 512 * MiB
    assert metrics["process.cgroup_oom_kills"] == 2
    assert "process.source" not in metrics
    assert "process.cgroup_path" not in metrics


def test_probe_class_attributes() -> None:
    """The probe is the 'process' layer and cheap enough for every tick."""
    assert ProcessProbe.layer == "process"
    assert ProcessProbe.cost == "cheap"


# -- the live process ----------------------------------------------------------------------------


def test_live_process_rss_grows_with_touched_memory() -> None:
    """RSS is positive and grows by most of a 50 MB buffer once every page of it is written."""
    probe = ProcessProbe()
    assert probe.available()
    before = probe.read()
    assert isinstance(before, ProcessReading)
    assert before.rss_bytes is not None
    assert before.rss_bytes > 0
    # fresh anonymous pages, written one by one: malloc could hand back memory an earlier test
    # freed that is still resident, and then RSS would not move
    import mmap

    size = 50 * 1000 * 1000
    buffer = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        buffer[offset] = 1
    after = probe.read()
    assert after.rss_bytes is not None
    assert after.rss_bytes - before.rss_bytes > 40 * 1000 * 1000
    buffer.close()


def test_live_cgroup_reading_is_consistent() -> None:
    """The live cgroup reading never raises and its numbers, when known, are sane."""
    memory = read_cgroup_memory()
    assert memory.version in (1, 2, None)
    if memory.limit_bytes is not None:
        assert memory.limit_bytes > 0
    if memory.usage_bytes is not None:
        assert memory.usage_bytes > 0


def test_rollup_every_s_walks_smaps_rollup_only_on_its_cadence(tmp_path: Path) -> None:
    """With rollup_every_s, RSS comes fresh from statm each read and PSS/USS from the last page walk."""
    from memwarden.testing import FakeClock

    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "smaps_rollup").write_text(
        "Rss: 1000 kB\nPss: 800 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 500 kB\nAnonymous: 400 kB\nSwap: 0 kB\n"
    )
    (proc / "statm").write_text("1000 250 50 1 0 200 0\n")
    clock = FakeClock()
    probe = ProcessProbe(tmp_path / "proc", sys_root=tmp_path, page_size=4096, rollup_every_s=10, clock=clock)
    first = probe.read()
    assert first.rss_bytes == 1000 * 1024 and first.pss_bytes == 800 * 1024
    (proc / "smaps_rollup").write_text(
        "Rss: 2000 kB\nPss: 1600 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 0 kB\n"
    )
    (proc / "statm").write_text("1000 500 50 1 0 200 0\n")
    clock.advance(5)
    between = probe.read()
    assert between.rss_bytes == 500 * 4096  # fresh, from statm
    assert between.pss_bytes == 800 * 1024  # the last walk's
    assert between.uss_bytes == 600 * 1024
    clock.advance(5)
    after = probe.read()
    assert after.rss_bytes == 2000 * 1024 and after.pss_bytes == 1600 * 1024
