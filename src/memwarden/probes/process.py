"""The ``process`` layer: how much memory the operating system gives this process, and the
container limit it lives under.

On Linux the probe reads ``/proc/<pid>/smaps_rollup`` (RSS, PSS, USS, anonymous, swap) and
``/proc/<pid>/statm`` (virtual size; RSS when ``smaps_rollup`` is missing), then the memory
cgroup the process belongs to: cgroup v2 (``memory.max``, ``memory.current``, ``memory.peak``,
``memory.events``) or cgroup v1 (``memory.limit_in_bytes``, ``memory.usage_in_bytes``,
``memory.max_usage_in_bytes``, ``memory.oom_control``). The cgroup directory is found through
``/proc/<pid>/mountinfo``, so hybrid hosts and containers (where the cgroup mount's root *is* the
container's cgroup) both work; the effective limit is the smallest one from the process's own
cgroup up to the top of the mount, because a ``max`` at the leaf often hides a real limit one or
two levels up. Elsewhere it falls back to :mod:`psutil` (RSS and virtual size only).

Every path is derived from the ``proc_root`` and ``sys_root`` given to the probe, so a recorded
tree of files replays exactly as the live machine.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._base import Availability, metric

__all__ = ["CgroupMemory", "ProcessProbe", "ProcessReading", "read_cgroup_memory"]

#: A cgroup limit at or above this many bytes means "no limit". cgroup v1 reports an unset
#: limit as the largest page-aligned signed 64-bit number (9223372036854771712 with 4 KiB pages).
NO_LIMIT_THRESHOLD = 1 << 62

_DEFAULT_PROC_ROOT = Path("/proc")
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclasses.dataclass(frozen=True)
class CgroupMemory:
    """The memory cgroup a process lives in: its limit, what it uses, and how often it hit the wall.

    ``version`` is 1 or 2, or ``None`` when the process is in no memory cgroup that can be read
    (then every other field is ``None``). ``limit_bytes`` is the *effective* limit: the smallest
    one from the process's own cgroup up to the top of the cgroup mount, ``None`` when there is
    no limit anywhere. ``limit_path`` names the file that set it.
    """

    version: Literal[1, 2] | None
    path: str | None
    limit_bytes: int | None
    limit_path: str | None
    usage_bytes: int | None
    peak_bytes: int | None
    oom_kills: int | None
    oom_events: int | None
    high_events: int | None
    max_events: int | None

    @classmethod
    def unknown(cls) -> CgroupMemory:
        """No memory cgroup could be found or read."""
        return cls(None, None, None, None, None, None, None, None, None, None)


@dataclasses.dataclass(frozen=True)
class ProcessReading:
    """One look at a process's memory as the operating system sees it.

    All sizes are in bytes; ``None`` means "not known here".

    - ``rss_bytes``: resident set size, pages of this process in RAM (shared pages counted in full).
    - ``pss_bytes``: proportional set size, shared pages divided among the processes sharing them.
    - ``uss_bytes``: unique set size, pages only this process maps (what it would give back on exit).
    - ``anon_bytes``: resident anonymous memory (heap, stacks, ``mmap`` without a file).
    - ``swap_bytes``: memory of this process swapped out.
    - ``vms_bytes``: virtual size: everything mapped, touched or not.
    - ``cgroup_*``: the container (see :class:`CgroupMemory`); ``cgroup_path`` is the process's
      cgroup directory and ``cgroup_limit_path`` the file that set the effective limit.
    - ``source``: which sources were read, joined with ``+`` (``smaps_rollup``, ``statm``,
      ``cgroup1``, ``cgroup2``, ``psutil``).
    """

    rss_bytes: int | None = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Resident set size: this process's pages in RAM, shared ones in full"
        )
    )
    pss_bytes: int | None = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Proportional set size: resident pages, shared ones divided among their sharers"
        )
    )
    uss_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Unique set size: resident pages only this process maps")
    )
    anon_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Resident anonymous memory (heap, stacks, mmap without a file)")
    )
    swap_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Memory of this process swapped out")
    )
    vms_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Virtual size: everything mapped, touched or not")
    )
    cgroup_version: int | None = dataclasses.field(
        metadata=metric("", "gauge", "Version of the memory cgroup the process lives in (1 or 2)")
    )
    cgroup_limit_bytes: int | None = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Effective memory limit of the container (the smallest up the cgroup tree)"
        )
    )
    cgroup_usage_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Memory the process's cgroup uses now, page cache included")
    )
    cgroup_peak_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Most memory the process's cgroup has used at once")
    )
    cgroup_oom_kills: int | None = dataclasses.field(
        metadata=metric("", "counter", "Processes the kernel's OOM killer killed in the cgroup")
    )
    cgroup_oom_events: int | None = dataclasses.field(
        metadata=metric(
            "", "counter", "Times the cgroup reached its limit and the OOM killer was invoked (cgroup v2)"
        )
    )
    cgroup_high_events: int | None = dataclasses.field(
        metadata=metric("", "counter", "Times the cgroup went over memory.high and was throttled (cgroup v2)")
    )
    cgroup_max_events: int | None = dataclasses.field(
        metadata=metric("", "counter", "Times the cgroup's usage was about to go over its limit (cgroup v2)")
    )
    cgroup_path: str | None
    cgroup_limit_path: str | None
    source: str

    @property
    def cgroup(self) -> CgroupMemory:
        """The container part of this reading on its own."""
        return CgroupMemory(
            version=1 if self.cgroup_version == 1 else 2 if self.cgroup_version == 2 else None,
            path=self.cgroup_path,
            limit_bytes=self.cgroup_limit_bytes,
            limit_path=self.cgroup_limit_path,
            usage_bytes=self.cgroup_usage_bytes,
            peak_bytes=self.cgroup_peak_bytes,
            oom_kills=self.cgroup_oom_kills,
            oom_events=self.cgroup_oom_events,
            high_events=self.cgroup_high_events,
            max_events=self.cgroup_max_events,
        )


# -- small readers that never raise ------------------------------------------------------------


def _read_text(path: str | Path) -> str | None:
    """The file's text, or ``None`` when it cannot be read.

    Plain ``os.open``/``os.read``: about twice as fast as ``open()`` on /proc and /sys files,
    which matters for a probe read every second.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (OSError, ValueError):
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("latin-1")


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _parse_keyed_ints(text: str | None) -> dict[str, int]:
    """``key value`` lines (memory.events, memory.stat, memory.oom_control) as a dict."""
    out: dict[str, int] = {}
    if text is None:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _parse_smaps_rollup(text: str | None) -> dict[str, int]:
    """The ``Key:  N kB`` lines of smaps_rollup, in bytes."""
    out: dict[str, int] = {}
    if text is None:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB" and parts[0].endswith(":"):
            try:
                value = int(parts[1])
            except ValueError:
                continue
            if value >= 0:
                out[parts[0][:-1]] = value * 1024
    return out


def _parse_statm(text: str | None) -> tuple[int, int, int] | None:
    """(size, resident, shared) pages from statm, or ``None`` if it is not statm."""
    if text is None:
        return None
    parts = text.split()
    if len(parts) < 3:
        return None
    try:
        size, resident, shared = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if min(size, resident, shared) < 0:
        return None
    return size, resident, shared


def _limit(text: str | None) -> int | None:
    """The limit in a limit file; ``max``, v1's huge number and garbage all give ``None``."""
    number = _parse_int(text)
    return None if number is None or number >= NO_LIMIT_THRESHOLD else number


# -- where the memory cgroup is ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _CgroupLocation:
    """The directories of a process's memory cgroup, from its own one up to the mount's top."""

    version: Literal[1, 2]
    levels: tuple[str, ...]  # directories, the process's own first, the mount point last
    whole: bool  # the mount shows the hierarchy from its real root: no ancestor is hidden


@dataclasses.dataclass(frozen=True)
class _Mount:
    root: str
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]


def _unescape_mount_path(field: str) -> str:
    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _parse_mountinfo(text: str | None) -> list[_Mount]:
    mounts: list[_Mount] = []
    if text is None:
        return mounts
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        pre, post = head.split(), tail.split()
        if len(pre) < 5 or len(post) < 1:
            continue
        mounts.append(
            _Mount(
                root=_unescape_mount_path(pre[3]),
                mount_point=_unescape_mount_path(pre[4]),
                fstype=post[0],
                super_options=tuple(post[2].split(",")) if len(post) >= 3 else (),
            )
        )
    return mounts


def _parse_proc_cgroup(text: str | None) -> tuple[str | None, str | None]:
    """(v1 memory cgroup path, v2 cgroup path) from /proc/<pid>/cgroup."""
    v1: str | None = None
    v2: str | None = None
    if text is None:
        return v1, v2
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _host_path(sys_root: Path, absolute: str) -> Path:
    """A path as seen by the process, placed under ``sys_root``."""
    return sys_root.joinpath(*[p for p in absolute.split("/") if p])


def _relative_parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _cgroup_dir(mount_point: Path, mount_root: str, cgroup_path: str) -> Path:
    """The directory of ``cgroup_path`` inside a cgroup mount whose root is ``mount_root``.

    ``cgroup_path`` (from /proc/<pid>/cgroup) is relative to the whole hierarchy, ``mount_root``
    is the part of the hierarchy that is mounted. On a host both are usually ``/``-based; in a
    container without a cgroup namespace the mount's root *is* the container's cgroup, so the
    two paths are equal and the answer is the mount point itself. When the path is not under the
    mount's root (another namespace, a moved process), the longest tail of the path that exists
    under the mount is taken, else the mount point.
    """
    root_parts = _relative_parts(mount_root)
    path_parts = _relative_parts(cgroup_path)
    if ".." not in path_parts and path_parts[: len(root_parts)] == root_parts:
        candidate = mount_point.joinpath(*path_parts[len(root_parts) :])
        if candidate.is_dir():
            return candidate
    clean = [p for p in path_parts if p != ".."]
    for start in range(1, len(clean)):
        candidate = mount_point.joinpath(*clean[start:])
        if candidate.is_dir():
            return candidate
    return mount_point


def _shows_whole(top: Path, mount_root: str, cgroup_path: str, leaf: Path) -> bool:
    """Whether the mount is the whole hierarchy and the process's cgroup was found in it as named."""
    parts = _relative_parts(cgroup_path)
    return not _relative_parts(mount_root) and ".." not in parts and leaf == top.joinpath(*parts)


def _levels(leaf: Path, top: Path) -> tuple[str, ...]:
    """``leaf`` and each parent up to and including ``top``."""
    levels = [leaf]
    current = leaf
    while current != top and top in current.parents:
        current = current.parent
        levels.append(current)
    return tuple(str(level) for level in levels)


def _pick_mount(mounts: list[_Mount], cgroup_path: str) -> _Mount | None:
    """Of several mounts of one hierarchy, the one whose root holds the path most closely."""
    if not mounts:
        return None
    path_parts = _relative_parts(cgroup_path)

    def score(mount: _Mount) -> int:
        root_parts = _relative_parts(mount.root)
        return len(root_parts) if path_parts[: len(root_parts)] == root_parts else -1

    return max(mounts, key=score)


def _locate_cgroup(proc_dir: Path, sys_root: Path) -> _CgroupLocation | None:
    v1_path, v2_path = _parse_proc_cgroup(_read_text(proc_dir / "cgroup"))
    if v1_path is None and v2_path is None:
        return None
    mounts = _parse_mountinfo(_read_text(proc_dir / "mountinfo"))
    if v1_path is not None:
        # The memory controller sits on a v1 hierarchy (v1 or hybrid host); v2 cannot have it.
        candidates = [m for m in mounts if m.fstype == "cgroup" and "memory" in m.super_options]
        mount = _pick_mount(candidates, v1_path)
        if mount is not None:
            top, root = _host_path(sys_root, mount.mount_point), mount.root
        else:
            top, root = sys_root / "sys" / "fs" / "cgroup" / "memory", "/"
        if not top.is_dir():
            return None
        leaf = _cgroup_dir(top, root, v1_path)
        return _CgroupLocation(1, _levels(leaf, top), _shows_whole(top, root, v1_path, leaf))
    if v2_path is None:
        return None
    mount = _pick_mount([m for m in mounts if m.fstype == "cgroup2"], v2_path)
    if mount is not None:
        top, root = _host_path(sys_root, mount.mount_point), mount.root
    else:
        top, root = sys_root / "sys" / "fs" / "cgroup", "/"
    if not top.is_dir():
        return None
    leaf = _cgroup_dir(top, root, v2_path)
    controllers = (_read_text(top / "cgroup.controllers") or "").split()
    if "memory" not in controllers and not (leaf / "memory.current").exists():
        return None  # a unified hierarchy without the memory controller (e.g. a hybrid host)
    return _CgroupLocation(2, _levels(leaf, top), _shows_whole(top, root, v2_path, leaf))


def _smallest_limit(candidates: list[tuple[int | None, str]]) -> tuple[int | None, str | None]:
    limits = [(value, path) for value, path in candidates if value is not None]
    if not limits:
        return None, None
    return min(limits, key=lambda item: item[0])


def _read_v2(levels: tuple[str, ...]) -> CgroupMemory:
    leaf = levels[0]
    candidates: list[tuple[int | None, str]] = []
    for level in levels:
        file = os.path.join(level, "memory.max")
        candidates.append((_limit(_read_text(file)), file))
    limit, limit_path = _smallest_limit(candidates)
    events = _parse_keyed_ints(_read_text(os.path.join(leaf, "memory.events")))
    return CgroupMemory(
        version=2,
        path=leaf,
        limit_bytes=limit,
        limit_path=limit_path,
        usage_bytes=_parse_int(_read_text(os.path.join(leaf, "memory.current"))),
        peak_bytes=_parse_int(_read_text(os.path.join(leaf, "memory.peak"))),
        oom_kills=events.get("oom_kill"),
        oom_events=events.get("oom"),
        high_events=events.get("high"),
        max_events=events.get("max"),
    )


def _read_v1(levels: tuple[str, ...], whole: bool) -> CgroupMemory:
    leaf = levels[0]
    candidates: list[tuple[int | None, str]] = []
    for level in levels:
        file = os.path.join(level, "memory.limit_in_bytes")
        candidates.append((_limit(_read_text(file)), file))
    if not whole:
        # memory.stat knows the limits of ancestors the mount does not show (a container's
        # parents). It is the costliest file here, so it is skipped when every level is visible.
        stat_file = os.path.join(leaf, "memory.stat")
        hierarchical = _parse_keyed_ints(_read_text(stat_file)).get("hierarchical_memory_limit")
        if hierarchical is not None and 0 <= hierarchical < NO_LIMIT_THRESHOLD:
            candidates.append((hierarchical, stat_file))
    limit, limit_path = _smallest_limit(candidates)
    oom = _parse_keyed_ints(_read_text(os.path.join(leaf, "memory.oom_control")))
    return CgroupMemory(
        version=1,
        path=leaf,
        limit_bytes=limit,
        limit_path=limit_path,
        usage_bytes=_parse_int(_read_text(os.path.join(leaf, "memory.usage_in_bytes"))),
        peak_bytes=_parse_int(_read_text(os.path.join(leaf, "memory.max_usage_in_bytes"))),
        oom_kills=oom.get("oom_kill"),
        oom_events=None,
        high_events=None,
        max_events=None,
    )


def _read_location(location: _CgroupLocation | None) -> CgroupMemory:
    if location is None:
        return CgroupMemory.unknown()
    if location.version == 2:
        return _read_v2(location.levels)
    return _read_v1(location.levels, location.whole)


def _pid_part(pid: int | str) -> str:
    text = str(pid)
    if text in ("self", "thread-self") or (text.isdigit() and int(text) > 0):
        return text
    raise UsageError(f"pid must be a positive number or 'self', not {pid!r}")


def read_cgroup_memory(
    proc_root: Path = _DEFAULT_PROC_ROOT, pid: int | str = "self", sys_root: Path = Path("/")
) -> CgroupMemory:
    """The memory cgroup of process ``pid``: effective limit, usage, peak and OOM counts.

    Never raises for missing or garbled files: what cannot be read is ``None``, and a process in
    no readable memory cgroup gets :meth:`CgroupMemory.unknown`.
    """
    return _read_location(_locate_cgroup(Path(proc_root) / _pid_part(pid), Path(sys_root)))


# -- the probe ---------------------------------------------------------------------------------


class ProcessProbe:
    """Reads the ``process`` layer: RSS, PSS, USS, anonymous, swap and virtual size, and the cgroup.

    ``proc_root``, ``pid`` and ``sys_root`` say where to read (a recorded tree in tests).

    ``smaps_rollup=False`` skips ``smaps_rollup`` and reads only ``statm``: PSS, USS and swap are
    then unknown, but a read costs the same at any size, where ``smaps_rollup`` makes the kernel
    walk every page of the process (about 9 ms per GiB of RSS measured here; see
    docs/layers/process.md). ``page_size`` is the page size that ``statm`` counts in (this
    machine's by default). ``psutil_fallback`` reads the live process through psutil when
    ``/proc`` has nothing; by default only when ``proc_root`` is the real ``/proc``, so a recorded
    tree is never mixed with live numbers. ``rollup_every_s`` reads ``smaps_rollup`` at most that
    often: between two walks RSS and anonymous come fresh from ``statm`` every read and PSS, USS
    and swap are those of the last walk (the sampler uses 10 s, so a big process pays the page walk
    once in ten seconds, not every tick).
    """

    layer: ClassVar[str] = "process"
    cost: ClassVar[Literal["cheap", "costly"]] = "cheap"

    def __init__(
        self,
        proc_root: Path = _DEFAULT_PROC_ROOT,
        pid: int | str = "self",
        sys_root: Path = Path("/"),
        *,
        smaps_rollup: bool = True,
        page_size: int | None = None,
        psutil_fallback: bool | None = None,
        rollup_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rollup_every_s = rollup_every_s
        self._clock = clock
        self._rollup_at: float | None = None
        self._rollup_cache: dict[str, int] = {}
        self._pid = _pid_part(pid)
        self._proc_root = Path(proc_root)
        self._proc_dir = self._proc_root / self._pid
        self._sys_root = Path(sys_root)
        self._smaps_rollup = str(self._proc_dir / "smaps_rollup") if smaps_rollup else None
        self._statm = str(self._proc_dir / "statm")
        self._cgroup_file = str(self._proc_dir / "cgroup")
        self._page_size = page_size
        self._psutil_fallback = (
            psutil_fallback if psutil_fallback is not None else self._proc_root == _DEFAULT_PROC_ROOT
        )
        self._cgroup_text: str | None = None
        self._location: _CgroupLocation | None = None

    def _rollup_due(self, now: float) -> bool:
        if self._rollup_every_s is None or self._rollup_at is None or not self._rollup_cache:
            return True
        return now - self._rollup_at >= self._rollup_every_s

    def available(self) -> Availability:
        """Whether this process's memory can be read here."""
        try:
            self.read()
        except ProbeUnavailable as exc:
            return Availability.no(exc.reason)
        return Availability.yes()

    def read(self) -> ProcessReading:
        """The process's memory now; raises :class:`ProbeUnavailable` when nothing can be read."""
        sources: list[str] = []
        rollup: dict[str, int] = {}
        stale_rollup: dict[str, int] = {}
        if self._smaps_rollup is not None:
            now = self._clock()
            if self._rollup_due(now):
                rollup = _parse_smaps_rollup(_read_text(self._smaps_rollup))
                if "Rss" not in rollup:
                    rollup = {}
                self._rollup_cache, self._rollup_at = rollup, now
            else:
                stale_rollup = self._rollup_cache
        statm = _parse_statm(_read_text(self._statm))
        rss = pss = uss = anon = swap = vms = None
        if stale_rollup and statm is not None:
            # between two smaps_rollup reads: RSS fresh from statm, the page-walk figures from the last walk
            sources.append("smaps_rollup(cached)")
            pss = stale_rollup.get("Pss")
            if "Private_Clean" in stale_rollup and "Private_Dirty" in stale_rollup:
                uss = stale_rollup["Private_Clean"] + stale_rollup["Private_Dirty"]
            swap = stale_rollup.get("Swap")
            anon = stale_rollup.get("Anonymous")
        if rollup:
            sources.append("smaps_rollup")
            rss = rollup["Rss"]
            pss = rollup.get("Pss")
            if "Private_Clean" in rollup and "Private_Dirty" in rollup:
                uss = rollup["Private_Clean"] + rollup["Private_Dirty"]
            anon = rollup.get("Anonymous")
            swap = rollup.get("Swap")
        if statm is not None:
            sources.append("statm")
            page = self._page_size_bytes()
            size, resident, shared = statm
            vms = size * page
            if not rollup:
                rss = resident * page
            if not rollup and not stale_rollup:
                # statm's "shared" counts file and shmem pages; the rest of resident is anonymous.
                anon = max(0, resident - shared) * page
        if not sources:
            if not self._psutil_fallback:
                raise ProbeUnavailable(self.layer, f"cannot read smaps_rollup or statm in {self._proc_dir}")
            rss, vms = self._read_psutil()
            sources.append("psutil")
        cgroup = self._read_cgroup()
        if cgroup.version is not None:
            sources.append(f"cgroup{cgroup.version}")
        return ProcessReading(
            rss_bytes=rss,
            pss_bytes=pss,
            uss_bytes=uss,
            anon_bytes=anon,
            swap_bytes=swap,
            vms_bytes=vms,
            cgroup_version=cgroup.version,
            cgroup_limit_bytes=cgroup.limit_bytes,
            cgroup_usage_bytes=cgroup.usage_bytes,
            cgroup_peak_bytes=cgroup.peak_bytes,
            cgroup_oom_kills=cgroup.oom_kills,
            cgroup_oom_events=cgroup.oom_events,
            cgroup_high_events=cgroup.high_events,
            cgroup_max_events=cgroup.max_events,
            cgroup_path=cgroup.path,
            cgroup_limit_path=cgroup.limit_path,
            source="+".join(sources),
        )

    def _page_size_bytes(self) -> int:
        if self._page_size is None:
            try:
                self._page_size = os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                self._page_size = 4096
        return self._page_size

    def _read_cgroup(self) -> CgroupMemory:
        # Where the cgroup is changes only when the process moves: re-locate only then, so a
        # tick costs the small /proc/<pid>/cgroup read and not a parse of all of mountinfo.
        text = _read_text(self._cgroup_file)
        if text is None:
            return CgroupMemory.unknown()
        if text != self._cgroup_text:
            self._location = _locate_cgroup(self._proc_dir, self._sys_root)
            self._cgroup_text = text
        return _read_location(self._location)

    def _read_psutil(self) -> tuple[int, int]:
        try:
            # Imported by name so that type checking does not depend on psutil's stubs.
            psutil: Any = importlib.import_module("psutil")
        except ImportError as exc:
            raise ProbeUnavailable(self.layer, "no /proc and psutil is not installed") from exc
        try:
            pid = os.getpid() if self._pid in ("self", "thread-self") else int(self._pid)
            info = psutil.Process(pid).memory_info()
            return int(info.rss), int(info.vms)
        except (psutil.Error, OSError) as exc:
            raise ProbeUnavailable(self.layer, f"no /proc and psutil failed: {exc}") from exc
