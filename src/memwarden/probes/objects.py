"""The ``objects`` layer: Python objects as the interpreter counts them.

Three things live here:

- :class:`ObjectsProbe`, a cheap reading taken every tick: the number of memory blocks pymalloc
  has handed out (``sys.getallocatedblocks()``, which tracks the number of live small objects), the
  garbage collector's counters, and, when a :class:`GcPauseTimer` is installed, how long the
  collector paused the program.
- :class:`GcPauseTimer`, which times every collection through ``gc.callbacks``.
- :func:`census`, an on-demand count of live objects by type with their shallow sizes, and
  :func:`census_diff` to compare two of them: *which types grew*.

The census never reads an object's attributes: not ``__dict__`` (on CPython 3.11+ that creates a
dict for instances that had none, so looking would change the heap being measured), not
``__getattr__`` or properties, not a ``__sizeof__`` written in Python. It learns the type with
``type()`` and the size with ``sys.getsizeof`` (C code only).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import itertools
import math
import operator
import sys
import threading
import time
import types
from array import array
from collections.abc import Callable, Iterable, MutableSequence
from typing import Any, ClassVar, Literal, Protocol

from memwarden._introspect import type_mro, type_name, type_namespace
from memwarden.probes._base import Availability, Cost, metric

__all__ = [
    "Census",
    "GcModule",
    "GcPause",
    "GcPauseStats",
    "GcPauseTimer",
    "ObjectsProbe",
    "ObjectsReading",
    "TypeCount",
    "TypeCountDiff",
    "census",
    "census_diff",
]

#: The signature of a ``gc.callbacks`` entry.
GcCallback = Callable[[Literal["start", "stop"], dict[str, int]], object]


# ---------------------------------------------------------------------------------------------
# GC pause timing


@dataclasses.dataclass(frozen=True)
class GcPause:
    """One garbage collection: which generation, how long it paused the program, what it freed."""

    generation: int
    duration_s: float
    collected: int
    uncollectable: int


@dataclasses.dataclass(frozen=True)
class GcPauseStats:
    """What a :class:`GcPauseTimer` has seen since it was created (or reset).

    The per-generation tuples are indexed by generation (0, 1, 2): ``pauses`` counts collections,
    ``total_s`` sums their pauses and ``max_s`` holds the longest. ``collected`` and
    ``uncollectable`` add up what the timed collections reported. ``recent`` holds the last few
    pauses, oldest first.
    """

    pauses: tuple[int, ...]
    total_s: tuple[float, ...]
    max_s: tuple[float, ...]
    collected: int
    uncollectable: int
    recent: tuple[GcPause, ...]

    @property
    def pauses_total(self) -> int:
        """Collections timed, all generations together."""
        return sum(self.pauses)

    @property
    def pause_total_s(self) -> float:
        """Seconds the collector paused the program, all generations together."""
        return sum(self.total_s)

    @property
    def pause_max_s(self) -> float:
        """The longest single pause, in seconds (0.0 before the first collection)."""
        return max(self.max_s, default=0.0)


class GcPauseTimer:
    """Times every garbage collection through ``gc.callbacks``.

    ``install()`` adds one callback (twice is the same as once); ``uninstall()`` removes exactly
    that callback and nothing else. Memory stays bounded: counters per generation and a ring of the
    last ``recent`` pauses. Use it as a context manager to install it for a block.

    The callback runs in whichever thread triggers a collection. CPython runs one collection at a
    time, so the counters have a single writer and need no lock (a lock taken inside a gc callback
    could deadlock against a thread that allocates while holding it); :meth:`stats` may therefore
    see one collection half-recorded, never a corrupted counter.
    """

    def __init__(
        self,
        *,
        recent: int = 64,
        clock: Callable[[], float] = time.perf_counter,
        callbacks: MutableSequence[GcCallback] | None = None,
    ) -> None:
        self._clock = clock
        self._callbacks: MutableSequence[GcCallback] = gc.callbacks if callbacks is None else callbacks
        self._install_lock = threading.Lock()
        self._callback: GcCallback = self._on_gc
        self._recent_size = recent
        self.reset()

    def reset(self) -> None:
        """Forget every pause seen so far (the callback stays installed if it was)."""
        generations = 3
        # Arrays, not lists of Python numbers: the callback runs inside the program's allocating
        # frame, and any object it kept would be attributed by tracemalloc to the program's line.
        self._pauses = array("q", [0] * generations)
        self._total_s = array("d", [0.0] * generations)
        self._max_s = array("d", [0.0] * generations)
        self._counts = array("q", [0, 0])  # collected, uncollectable
        size = max(1, self._recent_size)
        self._ring = array("d", [0.0] * (4 * size))  # generation, duration, collected, uncollectable
        self._ring_next = array("q", [0, 0])  # next slot, slots filled
        self._started = array("d", [math.nan])

    @property
    def installed(self) -> bool:
        """Whether the callback is in ``gc.callbacks`` now."""
        return any(cb is self._callback for cb in self._callbacks)

    def install(self) -> None:
        """Start timing collections; does nothing if already installed."""
        with self._install_lock:
            if not self.installed:
                self._started[0] = math.nan
                self._callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop timing collections; leaves every other callback where it was."""
        with self._install_lock:
            for i, cb in enumerate(self._callbacks):
                if cb is self._callback:
                    del self._callbacks[i]
                    break
            self._started[0] = math.nan

    def __enter__(self) -> GcPauseTimer:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def stats(self) -> GcPauseStats:
        """A snapshot of the pauses timed so far."""
        size = max(1, self._recent_size)
        nxt, filled = self._ring_next
        order = [(nxt - filled + i) % size for i in range(min(filled, self._recent_size))]
        recent = tuple(
            GcPause(
                int(self._ring[4 * j]),
                self._ring[4 * j + 1],
                int(self._ring[4 * j + 2]),
                int(self._ring[4 * j + 3]),
            )
            for j in order
        )
        return GcPauseStats(
            pauses=tuple(self._pauses),
            total_s=tuple(self._total_s),
            max_s=tuple(self._max_s),
            collected=self._counts[0],
            uncollectable=self._counts[1],
            recent=recent,
        )

    def _on_gc(self, phase: Literal["start", "stop"], info: dict[str, int]) -> None:
        now = self._clock()
        if phase == "start":
            self._started[0] = now
            return
        started = self._started[0]
        self._started[0] = math.nan
        if phase != "stop" or started != started:
            return  # installed in the middle of a collection: its start was not seen
        generation = min(max(int(info.get("generation", 0)), 0), len(self._pauses) - 1)
        duration = max(now - started, 0.0)
        collected = int(info.get("collected", 0))
        uncollectable = int(info.get("uncollectable", 0))
        self._pauses[generation] += 1
        self._total_s[generation] += duration
        self._max_s[generation] = max(self._max_s[generation], duration)
        self._counts[0] += collected
        self._counts[1] += uncollectable
        if self._recent_size > 0:
            slot = self._ring_next[0]
            self._ring[4 * slot : 4 * slot + 4] = array("d", (generation, duration, collected, uncollectable))
            self._ring_next[0] = (slot + 1) % self._recent_size
            self._ring_next[1] = min(self._ring_next[1] + 1, self._recent_size)


# ---------------------------------------------------------------------------------------------
# The cheap reading


class GcModule(Protocol):
    """What :class:`ObjectsProbe` uses of the :mod:`gc` module (so tests can pass a fake)."""

    garbage: list[Any]

    def get_count(self) -> tuple[int, int, int]: ...

    def get_stats(self) -> list[dict[str, Any]]: ...

    def isenabled(self) -> bool: ...

    def get_freeze_count(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class ObjectsReading:
    """One look at the interpreter's objects and its garbage collector.

    - ``allocated_blocks``: memory blocks pymalloc has handed out and not got back
      (``sys.getallocatedblocks()``): roughly the number of live small objects. Steady growth
      here is the plainest sign of a Python-level leak. 0 when pymalloc is not in use.
    - ``gc_enabled``: whether automatic collection is on (``gc.isenabled()``).
    - ``gc_count_gen0/1/2``: the collector's current counters (``gc.get_count()``): allocations
      since the last young collection, and young/middle collections since the older one ran.
    - ``gc_collections_gen0/1/2``: collections of each generation since start.
    - ``gc_collected_total``: objects the collector has freed (cycles), all generations.
    - ``gc_uncollectable_total``: objects it found unreachable but could not free.
    - ``gc_garbage``: objects in ``gc.garbage`` (uncollectable cycles, or everything under
      ``gc.DEBUG_SAVEALL``): a list that only grows unless someone empties it.
    - ``gc_frozen``: objects moved to the permanent generation by ``gc.freeze()``.
    - ``gc_pauses_total``, ``gc_pause_total_s``, ``gc_pause_max_s``, ``gc_pauses_gen2``,
      ``gc_pause_total_s_gen2``: collections timed by the :class:`GcPauseTimer` and their pauses
      (all generations, then full collections only); ``None`` when no timer is attached.
    """

    allocated_blocks: int = dataclasses.field(
        metadata=metric(
            "",
            "gauge",
            "Memory blocks the interpreter has handed out and not got back (about the live objects)",
        )
    )
    gc_enabled: bool = dataclasses.field(
        metadata=metric("", "gauge", "1 while automatic garbage collection is on, else 0")
    )
    gc_count_gen0: int = dataclasses.field(
        metadata=metric("", "gauge", "Allocations minus deallocations since the last generation-0 collection")
    )
    gc_count_gen1: int = dataclasses.field(
        metadata=metric("", "gauge", "Generation-0 collections since the last generation-1 collection")
    )
    gc_count_gen2: int = dataclasses.field(
        metadata=metric("", "gauge", "Generation-1 collections since the last generation-2 (full) collection")
    )
    gc_collections_gen0: int = dataclasses.field(
        metadata=metric("", "counter", "Generation-0 garbage collections since the interpreter started")
    )
    gc_collections_gen1: int = dataclasses.field(
        metadata=metric("", "counter", "Generation-1 garbage collections since the interpreter started")
    )
    gc_collections_gen2: int = dataclasses.field(
        metadata=metric(
            "", "counter", "Generation-2 (full) garbage collections since the interpreter started"
        )
    )
    gc_collected_total: int = dataclasses.field(
        metadata=metric("", "counter", "Objects the garbage collector has freed, all generations")
    )
    gc_uncollectable_total: int = dataclasses.field(
        metadata=metric("", "counter", "Unreachable objects the garbage collector found but could not free")
    )
    gc_garbage: int = dataclasses.field(
        metadata=metric(
            "", "gauge", "Objects in gc.garbage (uncollectable cycles, or all under DEBUG_SAVEALL)"
        )
    )
    gc_frozen: int = dataclasses.field(
        metadata=metric("", "gauge", "Objects moved to the permanent generation by gc.freeze()")
    )
    gc_pauses_total: int | None = dataclasses.field(
        metadata=metric(
            "", "counter", "Garbage collections timed by memwarden's pause timer, all generations"
        )
    )
    gc_pause_total_s: float | None = dataclasses.field(
        metadata=metric(
            "seconds", "counter", "Time the garbage collector paused the program, all generations"
        )
    )
    gc_pause_max_s: float | None = dataclasses.field(
        metadata=metric("seconds", "gauge", "Longest single garbage-collection pause timed so far")
    )
    gc_pauses_gen2: int | None = dataclasses.field(
        metadata=metric(
            "", "counter", "Generation-2 (full) garbage collections timed by memwarden's pause timer"
        )
    )
    gc_pause_total_s_gen2: float | None = dataclasses.field(
        metadata=metric(
            "seconds", "counter", "Time generation-2 (full) garbage collections paused the program"
        )
    )


def _three(values: Iterable[int]) -> tuple[int, int, int]:
    padded = [*values, 0, 0, 0]
    return padded[0], padded[1], padded[2]


class ObjectsProbe:
    """Reads the objects layer: allocated blocks, gc counters and (with a timer) gc pauses.

    Cheap (tens of microseconds, nearly all of it ``sys.getallocatedblocks()``, which walks
    pymalloc's arenas: 70-90 microseconds on a million-object heap): the sampler reads it every
    tick. The sources are arguments so tests can pass fakes; ``pause_timer`` must be installed by
    its owner.
    """

    layer: ClassVar[str] = "objects"
    cost: ClassVar[Cost] = "cheap"

    def __init__(
        self,
        allocated_blocks: Callable[[], int] = sys.getallocatedblocks,
        gc_module: GcModule = gc,
        pause_timer: GcPauseTimer | None = None,
    ) -> None:
        self._allocated_blocks = allocated_blocks
        self._gc = gc_module
        self._pause_timer = pause_timer

    def available(self) -> Availability:
        """Always readable: every figure comes from the interpreter itself."""
        return Availability.yes()

    def read(self) -> ObjectsReading:
        """One reading of the objects layer."""
        count = _three(self._gc.get_count())
        stats = self._gc.get_stats()
        collections_ = _three(int(s.get("collections", 0)) for s in stats)
        pauses = self._pause_timer.stats() if self._pause_timer is not None else None
        return ObjectsReading(
            allocated_blocks=int(self._allocated_blocks()),
            gc_enabled=bool(self._gc.isenabled()),
            gc_count_gen0=count[0],
            gc_count_gen1=count[1],
            gc_count_gen2=count[2],
            gc_collections_gen0=collections_[0],
            gc_collections_gen1=collections_[1],
            gc_collections_gen2=collections_[2],
            gc_collected_total=sum(int(s.get("collected", 0)) for s in stats),
            gc_uncollectable_total=sum(int(s.get("uncollectable", 0)) for s in stats),
            gc_garbage=len(self._gc.garbage),
            gc_frozen=int(self._gc.get_freeze_count()),
            gc_pauses_total=pauses.pauses_total if pauses else None,
            gc_pause_total_s=pauses.pause_total_s if pauses else None,
            gc_pause_max_s=pauses.pause_max_s if pauses else None,
            gc_pauses_gen2=pauses.pauses[-1] if pauses else None,
            gc_pause_total_s_gen2=pauses.total_s[-1] if pauses else None,
        )


# ---------------------------------------------------------------------------------------------
# Census


@dataclasses.dataclass(frozen=True)
class TypeCount:
    """Live objects of one type: how many, and their shallow size in bytes (``sys.getsizeof``).

    ``type`` is ``module.qualname`` (``app.cache.UserEmbedding``); built-in types are named
    without ``builtins.`` (``dict``).
    """

    type: str
    count: int
    shallow_bytes: int


@dataclasses.dataclass(frozen=True)
class Census:
    """Live objects counted by type at one moment.

    ``types`` is sorted by shallow bytes, largest first, and holds at most the ``top`` types asked
    for; ``total_objects``, ``total_bytes`` and ``distinct_types`` count everything, listed or not.
    ``include_untracked`` says whether objects the garbage collector does not track (``str``,
    ``int``, ``float``, ``bytes``, tuples of those ...) were added from the containers that hold
    them. ``duration_s`` is what the census cost.
    """

    types: tuple[TypeCount, ...]
    total_objects: int
    total_bytes: int
    distinct_types: int
    include_untracked: bool
    duration_s: float


@dataclasses.dataclass(frozen=True)
class TypeCountDiff:
    """How one type changed between two censuses: objects and shallow bytes gained (or lost)."""

    type: str
    count_diff: int
    size_diff_bytes: int


_BUILTIN_CALLABLES = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
)
_UNTRACKED_BATCH = 10_000


def _has_builtin_sizeof(cls: type) -> bool:
    """Whether ``sys.getsizeof`` on an instance of ``cls`` runs C code only."""
    for klass in type_mro(cls):
        namespace = type_namespace(klass)
        if "__sizeof__" in namespace:
            return isinstance(namespace["__sizeof__"], _BUILTIN_CALLABLES)
    return True


def _size_pairs(objs: list[object], kinds: list[type]) -> collections.Counter[tuple[type, int]]:
    """``{(type, size): how many}`` for the objects, sized without running Python-level code."""
    unsafe = {cls for cls in set(kinds) if not _has_builtin_sizeof(cls)}
    getsizeof = sys.getsizeof
    if unsafe:  # rare: a __sizeof__ written in Python; use the C-level size of the object instead
        is_unsafe = list(map(unsafe.__contains__, kinds))
        safe_objs = list(itertools.compress(objs, map(operator.not_, is_unsafe)))
        safe_kinds = list(itertools.compress(kinds, map(operator.not_, is_unsafe)))
        unsafe_objs = list(itertools.compress(objs, is_unsafe))
        unsafe_kinds = list(itertools.compress(kinds, is_unsafe))
        by_size = _size_pairs(safe_objs, safe_kinds)
        by_size.update(zip(unsafe_kinds, map(object.__sizeof__, unsafe_objs), strict=True))
        return by_size
    try:
        return collections.Counter(zip(kinds, map(getsizeof, objs), strict=True))
    except Exception:  # a C type whose __sizeof__ fails: size each object on its own
        pairs: collections.Counter[tuple[type, int]] = collections.Counter()
        for kind, obj in zip(kinds, objs, strict=True):
            try:
                size = getsizeof(obj)
            except Exception:
                size = 0
            pairs[(kind, size)] += 1
        return pairs


def _untracked_referents(objs: list[object], *, exclude_given: bool) -> list[object]:
    """Objects the collector does not track that ``objs`` refer to, directly or through other
    untracked objects (a tuple of strings), each once.

    Uses ``gc.get_referents`` (the C-level traverse of each object): no Python code runs. With
    ``exclude_given``, objects that are in ``objs`` themselves are left out (needed only when the
    caller chose ``objs``: ``gc.get_objects()`` holds tracked objects only).
    """
    found: dict[int, object] = {}
    frontier = objs
    while frontier:
        batch: dict[int, object] = {}
        for start in range(0, len(frontier), _UNTRACKED_BATCH):
            referents = gc.get_referents(*frontier[start : start + _UNTRACKED_BATCH])
            untracked = list(itertools.filterfalse(gc.is_tracked, referents))
            batch.update(zip(map(id, untracked), untracked, strict=True))
        if found:
            frontier = list(map(batch.__getitem__, batch.keys() - found.keys()))
            found.update(batch)
        else:
            found, frontier = batch, list(batch.values())
    if exclude_given:
        for key in found.keys() & set(map(id, objs)):
            del found[key]
    return list(found.values())


def census(
    objects: Iterable[object] | None = None, *, top: int | None = 50, include_untracked: bool = False
) -> Census:
    """Count live objects by type, with their shallow sizes.

    ``objects`` defaults to ``gc.get_objects()``: every object the garbage collector tracks, which
    means containers and instances but *not* ``str``, ``int``, ``float``, ``bytes`` or tuples and
    dicts holding only those (the collector untracks them). ``include_untracked=True`` adds the
    untracked objects those containers hold (directly, or through untracked tuples and dicts),
    each counted once; objects only C code holds stay invisible. It costs several times more time
    and memory.

    Sizes are shallow (``sys.getsizeof``): a list's own array, not its items. ``top`` keeps the
    largest types by bytes (``None`` keeps all). Nothing about an object but its type and size is
    read: no ``__dict__``, no ``__getattr__``, no properties, no ``__sizeof__`` written in Python
    (such types are sized by their C-level size). Types are hashed to group them, so the one
    exception is a metaclass that defines ``__hash__`` in Python.
    """
    started = time.perf_counter()
    objs = gc.get_objects() if objects is None else list(objects)
    if include_untracked:
        objs += _untracked_referents(objs, exclude_given=objects is not None)
    kinds = list(map(type, objs))
    pairs = _size_pairs(objs, kinds)
    del objs, kinds

    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    names: dict[type, str] = {}
    for (cls, size), n in pairs.items():
        name = names.get(cls)
        if name is None:
            name = names[cls] = type_name(cls)
        counts[name] = counts.get(name, 0) + n
        sizes[name] = sizes.get(name, 0) + size * n
    del pairs, names

    ranked = sorted(counts, key=lambda name: (-sizes[name], -counts[name], name))
    if top is not None:
        ranked = ranked[: max(top, 0)]
    return Census(
        types=tuple(TypeCount(name, counts[name], sizes[name]) for name in ranked),
        total_objects=sum(counts.values()),
        total_bytes=sum(sizes.values()),
        distinct_types=len(counts),
        include_untracked=include_untracked,
        duration_s=time.perf_counter() - started,
    )


def census_diff(before: Census, after: Census) -> tuple[TypeCountDiff, ...]:
    """Types whose count or shallow bytes changed from ``before`` to ``after``, most growth first.

    A type listed in only one census counts as absent (zero) in the other: take both with
    ``top=None`` for an exact diff, since a type cut off by ``top`` looks as if it had appeared
    or vanished.
    """
    old = {t.type: t for t in before.types}
    new = {t.type: t for t in after.types}
    diffs = []
    for name in old.keys() | new.keys():
        o, n = old.get(name), new.get(name)
        count_diff = (n.count if n else 0) - (o.count if o else 0)
        size_diff = (n.shallow_bytes if n else 0) - (o.shallow_bytes if o else 0)
        if count_diff or size_diff:
            diffs.append(TypeCountDiff(name, count_diff, size_diff))
    diffs.sort(key=lambda d: (-d.size_diff_bytes, -d.count_diff, d.type))
    return tuple(diffs)
