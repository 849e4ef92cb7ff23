"""The pymalloc probe: parsing recorded reports, the live reading, and capturing without fd 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import memwarden.probes.pymalloc as pymalloc_module
from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import Probe, flatten
from memwarden.probes.pymalloc import (
    PymallocProbe,
    PymallocReading,
    capture_debugmallocstats,
    parse_debugmallocstats,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pymalloc"

#: pymalloc's build constants per CPython version as CPython's Objects/obmalloc.c sets them on
#: 64-bit Linux (ARENA_BITS/POOL_BITS: 1 MiB arenas and 16 KiB pools since 3.10 with the radix
#: tree; 256 KiB and 4 KiB before), with 16-byte alignment: (arena, pool, size classes, threshold).
KNOWN_LAYOUT = {
    "3.9": (256 * 1024, 4 * 1024, 32, 512),
    "3.10": (1024 * 1024, 16 * 1024, 32, 512),
    "3.11": (1024 * 1024, 16 * 1024, 32, 512),
    "3.12": (1024 * 1024, 16 * 1024, 32, 512),
    "3.13": (1024 * 1024, 16 * 1024, 32, 512),
}

#: Reports of the default allocator, recorded with ``capture_debugmallocstats`` (3.10-3.13) or
#: from the stderr of ``sys._debugmallocstats()`` (the "-full" ones, which include free lists).
PYMALLOC_FIXTURES = {
    "python-3.9-sys-debugmallocstats-full.txt": "3.9",
    "python-3.10.txt": "3.10",
    "python-3.11.txt": "3.11",
    "python-3.11-retention.txt": "3.11",
    "python-3.11-pymalloc-debug.txt": "3.11",
    "python-3.12.txt": "3.12",
    "python-3.12-sys-debugmallocstats-full.txt": "3.12",
    "python-3.13.txt": "3.13",
}


needs_pymalloc = pytest.mark.skipif(
    sys.getallocatedblocks() == 0, reason="this interpreter does not allocate with pymalloc"
)


def _subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child interpreter that imports this checkout of memwarden."""
    src = Path(pymalloc_module.__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _printed_figure(text: str, label_pattern: str) -> tuple[int, int]:
    """The count and the byte total on a line such as ``98 arenas * 1048576 bytes/arena = 102,760,448``."""
    match = re.search(rf"^(\d+) {label_pattern}\s*=\s*([\d,]+)\s*$", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1)), int(match.group(2).replace(",", ""))


@pytest.mark.parametrize(("name", "version"), sorted(PYMALLOC_FIXTURES.items()))
def test_fixture_layout_matches_the_interpreter_that_wrote_it(name: str, version: str) -> None:
    """Arena size, pool size and class count parsed from a report are the ones that interpreter uses."""
    text = _fixture(name)
    reading = parse_debugmallocstats(text)
    arena, pool, classes, threshold = KNOWN_LAYOUT[version]
    assert (reading.arena_size_bytes, reading.pool_size_bytes) == (arena, pool)
    assert (reading.size_class_count, reading.small_block_threshold) == (classes, threshold)
    # The same sizes, derived another way: the byte totals divided by the counts beside them.
    arenas, arena_total = _printed_figure(text, r"arenas \* \d+ bytes/arena")
    unused, unused_total = _printed_figure(text, r"unused pools \* \d+ bytes")
    if arenas:
        assert arena_total // arenas == reading.arena_size_bytes
    if unused:
        assert unused_total // unused == reading.pool_size_bytes


@pytest.mark.parametrize("name", sorted(PYMALLOC_FIXTURES))
def test_fixture_figures_add_up(name: str) -> None:
    """Every pool of every held arena is accounted for, and the table matches the byte totals."""
    reading = parse_debugmallocstats(_fixture(name))
    assert reading.arena_bytes == reading.arenas_current * reading.arena_size_bytes
    parts = (
        reading.allocated_block_bytes,
        reading.available_block_bytes,
        reading.unused_pool_bytes,
        reading.pool_header_bytes,
        reading.quantization_bytes,
        reading.alignment_bytes,
    )
    assert sum(parts) == reading.total_bytes == reading.arena_bytes
    pools_per_arena = reading.arena_size_bytes // reading.pool_size_bytes
    unused_pools = reading.unused_pool_bytes // reading.pool_size_bytes
    lost_to_alignment = reading.alignment_bytes // reading.pool_size_bytes
    assert reading.pools_in_use + unused_pools + lost_to_alignment == reading.arenas_current * pools_per_arena
    table = reading.size_classes
    assert [c.index for c in table] == list(range(reading.size_class_count))
    assert sum(c.blocks_in_use * c.block_size for c in table) == reading.allocated_block_bytes
    assert sum(c.blocks_available * c.block_size for c in table) == reading.available_block_bytes
    assert table[-1].block_size == reading.small_block_threshold
    assert reading.arenas_reclaimed == reading.arenas_allocated_total - reading.arenas_current
    assert reading.arenas_current <= reading.arenas_highwater <= reading.arenas_allocated_total


def test_classes_without_pools_are_listed_with_zeros() -> None:
    """A class CPython leaves out of its table (no pools) appears with its block size and zeros."""
    text = _fixture("python-3.11-pymalloc-debug.txt")
    printed = {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+\d+\s+\d+\s+\d+\s+\d+$", text, re.M)}
    reading = parse_debugmallocstats(text)
    absent = [c for c in reading.size_classes if c.index not in printed]
    assert absent, "this fixture was recorded with at least one empty size class"
    step = reading.small_block_threshold // reading.size_class_count
    for usage in absent:
        assert usage.block_size == (usage.index + 1) * step
        assert (usage.pools, usage.blocks_in_use, usage.blocks_available) == (0, 0, 0)


def test_retention_fixture_shows_many_arenas_and_low_utilisation() -> None:
    """After freeing 49 of every 50 small objects, arenas stay held and are mostly free space."""
    plain = parse_debugmallocstats(_fixture("python-3.11.txt"))
    retained = parse_debugmallocstats(_fixture("python-3.11-retention.txt"))
    assert retained.arenas_current > 10 * plain.arenas_current
    assert retained.utilisation is not None
    assert plain.utilisation is not None
    assert retained.utilisation < 0.2 < plain.utilisation
    assert retained.fragmentation is not None
    assert retained.fragmentation > 0.8
    assert retained.utilisation == retained.allocated_block_bytes / retained.arena_bytes


def test_full_sys_output_ignores_the_arena_map_and_free_lists() -> None:
    """The whole ``sys._debugmallocstats()`` text parses; the later ``Total`` lines do not leak in."""
    text = _fixture("python-3.12-sys-debugmallocstats-full.txt")
    assert text.count("Total") >= 2
    assert "free PyDictObjects" in text
    reading = parse_debugmallocstats(text)
    first_total = re.search(r"^Total\s*=\s*([\d,]+)$", text, re.MULTILINE)
    assert first_total is not None
    assert reading.total_bytes == int(first_total.group(1).replace(",", "")) == reading.arena_bytes


def test_mimalloc_report_is_unavailable_with_a_reason() -> None:
    """A mimalloc report (CPython 3.13, PYTHONMALLOC=mimalloc) is refused as such, not misread."""
    with pytest.raises(ProbeUnavailable, match="mimalloc") as info:
        parse_debugmallocstats(_fixture("python-3.13-mimalloc.txt"))
    assert info.value.layer == "pymalloc"


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "hello\nworld\n", "Small block threshold = 0, in 0 size classes.\n"],
)
def test_text_that_is_not_a_report_is_unavailable(text: str) -> None:
    """Empty or foreign text raises ProbeUnavailable, never a parsing crash."""
    with pytest.raises(ProbeUnavailable):
        parse_debugmallocstats(text)


def test_every_truncation_either_parses_or_is_unavailable() -> None:
    """A report cut off after any line, or any character near the end, gives a reading or ProbeUnavailable."""
    text = _fixture("python-3.11.txt")
    lines = text.splitlines(keepends=True)
    cuts = ["".join(lines[:n]) for n in range(len(lines) + 1)]
    cuts += [text[:n] for n in range(len(text) - 400, len(text) + 1)]
    parsed = 0
    for cut in cuts:
        try:
            parse_debugmallocstats(cut)
        except ProbeUnavailable:
            continue
        parsed += 1
    assert parsed >= 1  # the whole text, at least


def test_missing_line_is_named_in_the_reason() -> None:
    """A report without the quantization line says which line is missing."""
    text = "\n".join(line for line in _fixture("python-3.11.txt").splitlines() if "quantization" not in line)
    with pytest.raises(ProbeUnavailable, match="quantization"):
        parse_debugmallocstats(text)


def test_probe_replays_a_fixture_and_flattens() -> None:
    """The probe reads its injected source; its flat metrics carry the scalar figures only."""
    text = _fixture("python-3.13.txt")
    probe = PymallocProbe(source=lambda: text)
    assert isinstance(probe, Probe)
    assert probe.layer == "pymalloc"
    assert probe.cost == "costly"
    assert probe.available()
    reading = probe.read()
    assert reading == parse_debugmallocstats(text)
    flat = flatten(probe.layer, reading)
    assert flat["pymalloc.arenas_current"] == reading.arenas_current
    assert "pymalloc.size_classes" not in flat


def test_probe_turns_source_errors_into_unavailable() -> None:
    """A source that fails with OSError makes the layer unavailable, with the reason."""

    def broken() -> str:
        raise OSError("no such report")

    probe = PymallocProbe(source=broken)
    availability = probe.available()
    assert not availability
    assert "no such report" in availability.reason
    with pytest.raises(ProbeUnavailable):
        probe.read()


@needs_pymalloc
def test_live_reading_is_consistent() -> None:
    """The live interpreter's report parses and its figures add up."""
    reading = PymallocProbe().read()
    assert isinstance(reading, PymallocReading)
    assert reading.arenas_current >= 1
    assert reading.total_bytes == reading.arena_bytes == reading.arenas_current * reading.arena_size_bytes
    assert reading.utilisation is not None
    assert 0 < reading.utilisation <= 1
    assert sum(c.blocks_in_use * c.block_size for c in reading.size_classes) == reading.allocated_block_bytes
    expected = KNOWN_LAYOUT.get(f"{sys.version_info.major}.{sys.version_info.minor}")
    if expected is not None:
        assert (reading.arena_size_bytes, reading.pool_size_bytes, reading.size_class_count) == expected[:3]


@needs_pymalloc
def test_live_capture_is_the_allocator_part_only() -> None:
    """The capture holds the pymalloc report, not the type free-list statistics after it."""
    text = capture_debugmallocstats()
    assert text.startswith("Small block threshold")
    assert "free PyDictObjects" not in text


@needs_pymalloc
def test_retention_signature_live() -> None:
    """Keeping every 50th of 2M small objects keeps the arenas while utilisation collapses."""
    probe = PymallocProbe()
    before = probe.read()
    objects = [float(i) for i in range(2_000_000)]
    full = probe.read()
    survivors = objects[::50]
    del objects
    sparse = probe.read()
    grown = full.allocated_block_bytes - before.allocated_block_bytes
    assert full.arenas_current - before.arenas_current >= 30  # 2M x 32 B blocks need ~61 MiB
    assert sparse.arenas_current >= 0.9 * full.arenas_current
    assert sparse.allocated_block_bytes < before.allocated_block_bytes + 0.1 * grown
    assert full.utilisation is not None
    assert sparse.utilisation is not None
    # the arenas the floats took are kept and nearly empty (judged on those arenas alone: the whole
    # process's utilisation also counts what earlier tests left alive)
    added_arena = sparse.arena_bytes - before.arena_bytes
    added_live = sparse.allocated_block_bytes - before.allocated_block_bytes
    assert added_live < 0.1 * added_arena
    assert sparse.utilisation < full.utilisation
    del survivors
    emptied = probe.read()
    assert emptied.arenas_reclaimed > sparse.arenas_reclaimed  # empty arenas do go back


_STDERR_HARNESS = textwrap.dedent(
    """
    import os, sys, threading
    from memwarden.probes.pymalloc import capture_debugmallocstats, parse_debugmallocstats

    sys.setswitchinterval(1e-5)
    stop = threading.Event()
    started = threading.Event()
    written = []

    def write_lines():
        i = 0
        while not stop.is_set():
            sys.stderr.write(f"py-line {i:08d} end\\n")
            sys.stderr.flush()
            os.write(2, f"fd-line {i:08d} end\\n".encode())
            i += 1
            if i == 50:
                started.set()
        written.append(i)

    thread = threading.Thread(target=write_lines)
    thread.start()
    started.wait()
    for _ in range(200):
        reading = parse_debugmallocstats(capture_debugmallocstats())
        assert reading.arenas_current >= 1
    stop.set()
    thread.join()
    print(written[0])
    """
)


@needs_pymalloc
def test_capture_never_touches_stderr_of_other_threads(tmp_path: Path) -> None:
    """200 captures while a thread writes to stderr: every line arrives once, intact, no stats leak."""
    env = _subprocess_env()
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", _STDERR_HARNESS],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            timeout=120,
            check=False,
        )
    captured = stderr_path.read_text()
    assert done.returncode == 0, captured[-2000:]
    count = int(done.stdout)
    assert count >= 50
    seen: dict[str, list[int]] = {"py": [], "fd": []}
    for line in captured.splitlines():
        match = re.fullmatch(r"(py|fd)-line (\d{8}) end", line)
        assert match is not None, f"unexpected stderr line: {line!r}"
        seen[match.group(1)].append(int(match.group(2)))
    assert seen["py"] == list(range(count))
    assert seen["fd"] == list(range(count))
    assert "arenas" not in captured
    assert "Small block" not in captured


def test_interpreter_without_pymalloc_reports_the_layer_unavailable() -> None:
    """Under PYTHONMALLOC=malloc the probe says pymalloc is not in use, and prints nothing."""
    code = (
        "from memwarden.probes.pymalloc import PymallocProbe\n"
        "availability = PymallocProbe().available()\n"
        "print(availability.ok, availability.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_subprocess_env(PYTHONMALLOC="malloc"),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False ")
    assert "pymalloc" in done.stdout
    assert done.stderr == ""


def test_tracemalloc_makes_the_layer_unreadable_with_a_clear_reason_then_it_comes_back() -> None:
    """While tracemalloc traces, CPython refuses the report: the reason says so, and reading resumes after."""
    import tracemalloc

    from memwarden.exceptions import ProbeUnavailable
    from memwarden.probes.pymalloc import PymallocProbe

    if tracemalloc.is_tracing():
        pytest.skip("the test process already traces")
    probe = PymallocProbe()
    tracemalloc.start(1)
    try:
        with pytest.raises(ProbeUnavailable, match="tracemalloc"):
            probe.read()
    finally:
        tracemalloc.stop()
    assert probe.read().arena_bytes > 0
