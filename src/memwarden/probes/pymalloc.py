"""The ``pymalloc`` layer: CPython's own allocator for small objects, read from its statistics.

CPython hands every request of up to 512 bytes (the *small block threshold*) to pymalloc. pymalloc
asks the operating system for big *arenas* (1 MiB on 3.10-3.13), cuts each into *pools* (16 KiB),
and each pool serves blocks of one *size class* only. An arena goes back to the operating system
only when every pool in it is empty: a few survivors scattered over many arenas keep all of them,
which is why a process can free most of its objects and keep its memory. This layer shows that
state: how many arenas are held, how much of them live objects use (``utilisation``) and how much
is free inside them (``fragmentation``).

The numbers come from the interpreter's own report, the text ``sys._debugmallocstats()`` prints.
That function writes to the C-level stderr (file descriptor 2), so capturing it by redirecting
fd 2 would swallow, or mix with, whatever other threads print at the same moment. Instead
:func:`capture_debugmallocstats` calls the C function behind it,
``_PyObject_DebugMallocStats(FILE *)``, with a ``FILE *`` that writes to memory
(``open_memstream``); the call holds the GIL and file descriptor 2 is never touched. Where that
cannot be done (no ``ctypes``, no ``open_memstream``, an interpreter that does not export the
function) the layer reports itself unavailable rather than fall back to redirecting fd 2.

Arena size, pool size and the number of size classes are read from the report, never assumed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar

from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import Availability, Cost, metric

__all__ = [
    "PymallocProbe",
    "PymallocReading",
    "SizeClassUsage",
    "capture_debugmallocstats",
    "parse_debugmallocstats",
]

_LAYER = "pymalloc"

_HEADER = re.compile(r"^Small block threshold = (\d+), in (\d+) size classes\.?\s*$")
_TABLE_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_VALUE_LINE = re.compile(r"^(?P<label>\S.*?)\s*=\s*(?P<value>\d[\d,]*)\s*$")
_ARENAS_LABEL = re.compile(r"^(\d+) arenas \* (\d+) bytes/arena$")
_UNUSED_POOLS_LABEL = re.compile(r"^(\d+) unused pools \* (\d+) bytes$")

#: The labelled lines of the pymalloc report and the reading field each one fills.
_LABELS = {
    "# arenas allocated total": "arenas_allocated_total",
    "# arenas reclaimed": "arenas_reclaimed",
    "# arenas highwater mark": "arenas_highwater",
    "# arenas allocated current": "arenas_current",
    "# bytes in allocated blocks": "allocated_block_bytes",
    "# bytes in available blocks": "available_block_bytes",
    "# bytes lost to pool headers": "pool_header_bytes",
    "# bytes lost to quantization": "quantization_bytes",
    "# bytes lost to arena alignment": "alignment_bytes",
    "Total": "total_bytes",
}


@dataclasses.dataclass(frozen=True)
class SizeClassUsage:
    """One row of pymalloc's size-class table: the pools serving blocks of one size.

    ``index`` is the class number, ``block_size`` the bytes each block in it holds, ``pools`` how
    many pools currently serve it, ``blocks_in_use`` how many of their blocks hold live objects and
    ``blocks_available`` how many are free in those pools.
    """

    index: int
    block_size: int
    pools: int
    blocks_in_use: int
    blocks_available: int


@dataclasses.dataclass(frozen=True)
class PymallocReading:
    """One look at pymalloc, CPython's small-object allocator. Sizes are in bytes.

    - ``arena_size_bytes``, ``pool_size_bytes``, ``size_class_count``, ``small_block_threshold``:
      how this interpreter's pymalloc is built (read from the report, not assumed).
    - ``arenas_allocated_total``: arenas ever taken from the operating system;
      ``arenas_reclaimed``: arenas given back; ``arenas_highwater``: the most held at once;
      ``arenas_current``: arenas held now, and ``arena_bytes`` what they span.
    - ``allocated_block_bytes``: bytes in blocks that hold live objects.
    - ``available_block_bytes``: free blocks inside pools that are in use.
    - ``unused_pool_bytes``: whole pools that are empty but sit in arenas still held.
    - ``pool_header_bytes``, ``quantization_bytes``, ``alignment_bytes``: overheads (pool headers,
      the tail of each pool too small for one more block, arena alignment).
    - ``total_bytes``: the sum of the six figures above; equals ``arena_bytes``.
    - ``pools_in_use``, ``blocks_in_use``: totals of the size-class table.
    - ``utilisation``: ``allocated_block_bytes / arena_bytes``: the share of held arena memory that
      live objects use. Low utilisation with many arenas is *allocator retention*: memory that was
      freed but cannot go back to the operating system yet. ``None`` when no arena is held.
    - ``fragmentation``: ``(available_block_bytes + unused_pool_bytes) / arena_bytes``: the share
      that is free but held. ``None`` when no arena is held.
    - ``size_classes``: the per-size-class table, one entry per class (classes without pools,
      which CPython leaves out of its report, appear with zeros).
    """

    arena_size_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Size of one pymalloc arena in this interpreter")
    )
    pool_size_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Size of one pymalloc pool in this interpreter")
    )
    size_class_count: int = dataclasses.field(
        metadata=metric(
            "", "gauge", "Number of pymalloc size classes in this interpreter", prometheus="size_classes"
        )
    )
    small_block_threshold: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Largest request pymalloc serves; bigger ones go to malloc")
    )
    arenas_allocated_total: int = dataclasses.field(
        metadata=metric("", "counter", "Arenas pymalloc has taken from the operating system since start")
    )
    arenas_reclaimed: int = dataclasses.field(
        metadata=metric("", "counter", "Arenas pymalloc has given back to the operating system since start")
    )
    arenas_highwater: int = dataclasses.field(
        metadata=metric("", "gauge", "Most arenas pymalloc has held at once")
    )
    arenas_current: int = dataclasses.field(metadata=metric("", "gauge", "Arenas pymalloc holds now"))
    arena_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Memory the arenas pymalloc holds now span")
    )
    allocated_block_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes in pymalloc blocks that hold live objects")
    )
    available_block_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes in free blocks inside pymalloc pools in use")
    )
    unused_pool_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes in empty pymalloc pools inside arenas still held")
    )
    pool_header_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes pymalloc spends on pool headers")
    )
    quantization_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes lost at the tail of pools too small for one more block")
    )
    alignment_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes lost to pymalloc arena alignment")
    )
    total_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Sum of pymalloc's in-use, free and overhead bytes (equals the arena bytes)"
        )
    )
    pools_in_use: int = dataclasses.field(
        metadata=metric("", "gauge", "pymalloc pools serving a size class now")
    )
    blocks_in_use: int = dataclasses.field(
        metadata=metric("", "gauge", "pymalloc blocks holding live objects now")
    )
    utilisation: float | None = dataclasses.field(
        metadata=metric("ratio", "gauge", "Share of the held arena memory that live objects use")
    )
    fragmentation: float | None = dataclasses.field(
        metadata=metric(
            "ratio",
            "gauge",
            "Share of the held arena memory that is free but kept (free blocks and empty pools)",
        )
    )
    size_classes: tuple[SizeClassUsage, ...]


def _unavailable(reason: str) -> ProbeUnavailable:
    return ProbeUnavailable(_LAYER, reason)


def parse_debugmallocstats(text: str) -> PymallocReading:
    """Parse the pymalloc part of what ``sys._debugmallocstats()`` prints.

    Accepts the whole output of ``sys._debugmallocstats()`` too: everything after the pymalloc
    totals (the arena map, the free lists) is ignored. Raises :class:`ProbeUnavailable` when the
    text is not a pymalloc report: empty (pymalloc is not in use), a mimalloc report (CPython 3.13
    with ``PYTHONMALLOC=mimalloc`` or a free-threaded build), or a report missing a line.
    """
    lines = text.splitlines()
    header_at = None
    threshold = class_count = 0
    for i, line in enumerate(lines):
        match = _HEADER.match(line.strip())
        if match:
            header_at = i
            threshold, class_count = int(match.group(1)), int(match.group(2))
            break
    if header_at is None:
        if not text.strip():
            raise _unavailable("the interpreter printed no pymalloc statistics")
        raise _unavailable("not a pymalloc report: no 'Small block threshold' line")
    if any(line.startswith("Medium block threshold") for line in lines[header_at + 1 : header_at + 3]):
        raise _unavailable(
            "the interpreter allocates with mimalloc (PYTHONMALLOC=mimalloc or a free-threaded build); "
            "memwarden reads pymalloc statistics only"
        )
    if class_count <= 0 or threshold <= 0:
        raise _unavailable(f"implausible pymalloc header: {lines[header_at].strip()!r}")

    rows: dict[int, SizeClassUsage] = {}
    values: dict[str, int] = {}
    arena_size: int | None = None
    pool_size: int | None = None
    for line in lines[header_at + 1 :]:
        row = _TABLE_ROW.match(line)
        if row and not values:
            index, size, pools, in_use, avail = (int(g) for g in row.groups())
            rows[index] = SizeClassUsage(index, size, pools, in_use, avail)
            continue
        found = _VALUE_LINE.match(line.strip())
        if not found:
            continue
        label = re.sub(r"\s+", " ", found.group("label"))
        value = int(found.group("value").replace(",", ""))
        arenas = _ARENAS_LABEL.match(label)
        unused = _UNUSED_POOLS_LABEL.match(label)
        if arenas and arena_size is None:
            arena_size = int(arenas.group(2))
            values["arena_bytes"] = value
        elif unused and pool_size is None:
            pool_size = int(unused.group(2))
            values["unused_pool_bytes"] = value
        elif label in _LABELS and _LABELS[label] not in values:
            values[_LABELS[label]] = value
        if label == "Total":
            break  # the pymalloc totals end here; the arena map and free lists follow

    missing = [label for label, name in _LABELS.items() if name not in values]
    if arena_size is None:
        missing.append("N arenas * SIZE bytes/arena")
    if pool_size is None:
        missing.append("N unused pools * SIZE bytes")
    if missing or arena_size is None or pool_size is None:
        raise _unavailable("pymalloc report is missing: " + ", ".join(missing))
    if arena_size <= 0 or pool_size <= 0:
        raise _unavailable(f"implausible arena or pool size ({arena_size}, {pool_size})")

    arena_bytes = values["arena_bytes"]
    size_classes = _complete_table(rows, threshold, class_count)
    held_free = values["available_block_bytes"] + values["unused_pool_bytes"]
    return PymallocReading(
        arena_size_bytes=arena_size,
        pool_size_bytes=pool_size,
        size_class_count=class_count,
        small_block_threshold=threshold,
        arenas_allocated_total=values["arenas_allocated_total"],
        arenas_reclaimed=values["arenas_reclaimed"],
        arenas_highwater=values["arenas_highwater"],
        arenas_current=values["arenas_current"],
        arena_bytes=arena_bytes,
        allocated_block_bytes=values["allocated_block_bytes"],
        available_block_bytes=values["available_block_bytes"],
        unused_pool_bytes=values["unused_pool_bytes"],
        pool_header_bytes=values["pool_header_bytes"],
        quantization_bytes=values["quantization_bytes"],
        alignment_bytes=values["alignment_bytes"],
        total_bytes=values["total_bytes"],
        pools_in_use=sum(c.pools for c in size_classes),
        blocks_in_use=sum(c.blocks_in_use for c in size_classes),
        utilisation=values["allocated_block_bytes"] / arena_bytes if arena_bytes else None,
        fragmentation=held_free / arena_bytes if arena_bytes else None,
        size_classes=size_classes,
    )


def _complete_table(
    rows: dict[int, SizeClassUsage], threshold: int, class_count: int
) -> tuple[SizeClassUsage, ...]:
    """The size-class table with the classes CPython left out (no pools) filled in with zeros.

    CPython prints a row only for classes that have pools. When the rows it did print show evenly
    spaced block sizes (``(index + 1) * threshold / class_count``, as in every pymalloc so far),
    the missing classes are added; otherwise the table is returned as printed.
    """
    step, rest = divmod(threshold, class_count)
    regular = rest == 0 and all(
        0 <= r.index < class_count and r.block_size == (r.index + 1) * step for r in rows.values()
    )
    if not regular:
        return tuple(rows[i] for i in sorted(rows))
    return tuple(rows.get(i, SizeClassUsage(i, (i + 1) * step, 0, 0, 0)) for i in range(class_count))


@dataclasses.dataclass(frozen=True)
class _StatsWriter:
    """The C functions :func:`capture_debugmallocstats` calls (ctypes function pointers)."""

    debug_malloc_stats: Any  # int _PyObject_DebugMallocStats(FILE *out), called with the GIL held
    open_memstream: Any  # FILE *open_memstream(char **ptr, size_t *sizeloc)
    fclose: Any  # int fclose(FILE *stream)
    free: Any  # void free(void *ptr)


@functools.lru_cache(maxsize=1)
def _stats_writer() -> _StatsWriter:
    try:
        import ctypes
    except ImportError as exc:  # pragma: no cover - interpreters built without ctypes
        raise _unavailable(f"ctypes cannot be imported ({exc})") from exc
    try:
        # PYFUNCTYPE: ctypes keeps the GIL during the call, so no other thread runs meanwhile.
        stats = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(
            ("_PyObject_DebugMallocStats", ctypes.pythonapi)
        )
        libc = ctypes.CDLL(None)
        open_memstream = ctypes.CFUNCTYPE(
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)
        )(("open_memstream", libc))
        fclose = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(("fclose", libc))
        free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(("free", libc))
    except (AttributeError, OSError, TypeError) as exc:
        raise _unavailable(
            f"cannot call _PyObject_DebugMallocStats with an in-memory FILE here ({exc})"
        ) from exc
    return _StatsWriter(stats, open_memstream, fclose, free)


def capture_debugmallocstats() -> str:
    """The interpreter's pymalloc report (the first part of ``sys._debugmallocstats()``) as text.

    Written into memory through ``open_memstream``; file descriptor 2 is never touched, so other
    threads' stderr output is neither captured nor lost. Only the allocator part is produced (no
    type free-list statistics). Raises :class:`ProbeUnavailable` when this cannot be done, or when
    the interpreter does not use pymalloc (``PYTHONMALLOC=malloc``).
    """
    import ctypes

    writer = _stats_writer()
    buffer = ctypes.c_void_p()
    size = ctypes.c_size_t()
    stream = writer.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        raise _unavailable("open_memstream failed")
    try:
        written = writer.debug_malloc_stats(stream)
    finally:
        writer.fclose(stream)  # flushes; buffer and size now hold the text
        try:
            raw = ctypes.string_at(buffer.value, size.value) if buffer.value else b""
        finally:
            writer.free(buffer)
    if not written:
        import tracemalloc

        if tracemalloc.is_tracing():
            # tracemalloc's hooks replace pymalloc's entry points, and CPython then refuses the report
            raise _unavailable("not readable while tracemalloc is tracing (it comes back when tracing stops)")
        raise _unavailable("the interpreter does not allocate with pymalloc (PYTHONMALLOC=malloc?)")
    return raw.decode("ascii", "replace")


class PymallocProbe:
    """Reads the pymalloc layer: arenas held, how full they are, and the size-class table.

    ``source`` returns the report text; by default the live interpreter's
    (:func:`capture_debugmallocstats`), in tests a recorded fixture. Costly (about a millisecond,
    and the GIL is held meanwhile): the sampler reads it on its slow cadence.
    """

    layer: ClassVar[str] = _LAYER
    cost: ClassVar[Cost] = "costly"

    def __init__(self, source: Callable[[], str] = capture_debugmallocstats) -> None:
        self._source = source

    def available(self) -> Availability:
        """Whether the report can be captured and parsed here (tries it once)."""
        try:
            self.read()
        except ProbeUnavailable as exc:
            return Availability.no(exc.reason)
        return Availability.yes()

    def read(self) -> PymallocReading:
        """Capture and parse the report; :class:`ProbeUnavailable` when that cannot be done."""
        try:
            text = self._source()
        except ProbeUnavailable:
            raise
        except (OSError, ValueError) as exc:
            raise _unavailable(f"cannot read the report ({exc})") from exc
        return parse_debugmallocstats(text)
