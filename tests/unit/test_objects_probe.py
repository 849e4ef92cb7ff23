"""The objects probe: gc pause timing, the cheap reading, and the type census."""

from __future__ import annotations

import gc
import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from memwarden.probes._base import Probe, flatten
from memwarden.probes.objects import (
    Census,
    GcPauseTimer,
    ObjectsProbe,
    TypeCount,
    census,
    census_diff,
)

needs_pymalloc = pytest.mark.skipif(
    sys.getallocatedblocks() == 0, reason="sys.getallocatedblocks() counts pymalloc blocks only"
)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _entry(result: Census, cls: type) -> TypeCount:
    matches = [t for t in result.types if t.type == _name(cls)]
    assert len(matches) == 1, f"{_name(cls)} not in census"
    return matches[0]


class _Clock:
    def __init__(self, *times: float) -> None:
        self._times = list(times)

    def __call__(self) -> float:
        return self._times.pop(0)


# --- GcPauseTimer ------------------------------------------------------------------------------


def test_pause_timer_records_a_forced_full_collection() -> None:
    """A forced gc.collect() shows up as one generation-2 pause with a positive duration."""
    with GcPauseTimer() as timer:
        gc.collect()
        stats = timer.stats()
    assert stats.pauses[2] >= 1
    assert stats.total_s[2] > 0
    assert 0 < stats.max_s[2] <= stats.total_s[2]
    assert any(pause.generation == 2 for pause in stats.recent)
    assert stats.pause_max_s >= stats.max_s[2]
    assert stats.pauses_total == sum(stats.pauses)


def test_pause_timer_install_is_idempotent_and_uninstall_restores_callbacks() -> None:
    """Installing twice adds one callback; uninstalling leaves gc.callbacks exactly as it was."""

    def other(phase: str, info: dict[str, int]) -> None:
        pass

    before = list(gc.callbacks)
    timer = GcPauseTimer()
    timer.install()
    timer.install()
    assert len(gc.callbacks) == len(before) + 1
    assert timer.installed
    gc.callbacks.append(other)
    try:
        timer.uninstall()
        timer.uninstall()
        assert not timer.installed
        assert gc.callbacks == [*before, other]
    finally:
        gc.callbacks.remove(other)
    assert gc.callbacks == before


def test_pause_timer_counts_with_a_fake_clock_and_bounds_its_ring() -> None:
    """Durations come from the clock; per-generation counters add up; only the last N pauses are kept."""
    callbacks: list[Any] = []
    clock = _Clock(1.0, 1.5, 2.0, 2.25, 3.0, 3.125, 4.0, 6.0)
    timer = GcPauseTimer(recent=2, clock=clock, callbacks=callbacks)
    timer.install()
    (callback,) = callbacks
    for generation, collected in ((0, 3), (0, 1), (1, 0), (2, 7)):
        callback("start", {"generation": generation})
        callback("stop", {"generation": generation, "collected": collected, "uncollectable": 1})
    stats = timer.stats()
    assert stats.pauses == (2, 1, 1)
    assert stats.total_s == (0.75, 0.125, 2.0)
    assert stats.max_s == (0.5, 0.125, 2.0)
    assert (stats.collected, stats.uncollectable) == (11, 4)
    assert [p.duration_s for p in stats.recent] == [0.125, 2.0]
    timer.reset()
    assert timer.stats().pauses_total == 0
    assert timer.installed


def test_pause_timer_ignores_a_stop_without_its_start() -> None:
    """A collection already running when the timer was installed is not counted."""
    callbacks: list[Any] = []
    timer = GcPauseTimer(clock=_Clock(5.0), callbacks=callbacks)
    timer.install()
    callbacks[0]("stop", {"generation": 2, "collected": 9, "uncollectable": 0})
    assert timer.stats().pauses_total == 0
    assert timer.stats().collected == 0


def test_pause_timer_records_collections_triggered_in_other_threads() -> None:
    """A collection run by another thread is timed too."""
    with GcPauseTimer() as timer:
        worker = threading.Thread(target=gc.collect, args=(1,))
        worker.start()
        worker.join()
        stats = timer.stats()
    assert stats.pauses[1] >= 1


# --- ObjectsProbe ------------------------------------------------------------------------------


def test_live_reading_is_sane() -> None:
    """The live reading has positive blocks, non-negative counters, and no pause figures without a timer."""
    gc.collect()
    probe = ObjectsProbe()
    assert isinstance(probe, Probe)
    assert probe.layer == "objects"
    assert probe.cost == "cheap"
    assert probe.available()
    reading = probe.read()
    assert (reading.allocated_blocks > 0) == (sys.getallocatedblocks() > 0)
    assert min(reading.gc_count_gen0, reading.gc_count_gen1, reading.gc_count_gen2) >= 0
    assert reading.gc_collections_gen2 >= 1
    assert reading.gc_enabled == gc.isenabled()
    assert reading.gc_garbage == len(gc.garbage)
    assert reading.gc_pauses_total is None
    assert reading.gc_pause_max_s is None
    flat = flatten(probe.layer, reading)
    assert flat["objects.gc_pause_total_s"] is None
    assert flat["objects.gc_enabled"] in (0, 1)


def test_reading_carries_the_pause_timer_figures() -> None:
    """With a timer attached, the reading reports its pauses, with full collections apart."""
    with GcPauseTimer() as timer:
        gc.collect()
        reading = ObjectsProbe(pause_timer=timer).read()
    assert reading.gc_pauses_total is not None
    assert reading.gc_pauses_total >= 1
    assert reading.gc_pauses_gen2 is not None
    assert reading.gc_pauses_gen2 >= 1
    assert reading.gc_pause_total_s_gen2 is not None
    assert reading.gc_pause_total_s is not None
    assert 0 < reading.gc_pause_total_s_gen2 <= reading.gc_pause_total_s


def test_reading_maps_the_gc_module_figures() -> None:
    """Counts, collections, collected and uncollectable come from the given gc module."""
    fake_gc = SimpleNamespace(
        garbage=[object(), object()],
        get_count=lambda: (7, 3, 1),
        get_stats=lambda: [
            {"collections": 100, "collected": 40, "uncollectable": 0},
            {"collections": 10, "collected": 5, "uncollectable": 1},
            {"collections": 2, "collected": 8, "uncollectable": 2},
        ],
        isenabled=lambda: False,
        get_freeze_count=lambda: 12,
    )
    reading = ObjectsProbe(allocated_blocks=lambda: 4242, gc_module=fake_gc).read()  # type: ignore[arg-type]
    assert reading.allocated_blocks == 4242
    assert (reading.gc_count_gen0, reading.gc_count_gen1, reading.gc_count_gen2) == (7, 3, 1)
    assert (reading.gc_collections_gen0, reading.gc_collections_gen1, reading.gc_collections_gen2) == (
        100,
        10,
        2,
    )
    assert reading.gc_collected_total == 53
    assert reading.gc_uncollectable_total == 3
    assert reading.gc_garbage == 2
    assert reading.gc_frozen == 12
    assert reading.gc_enabled is False


@needs_pymalloc
def test_allocated_blocks_grow_when_objects_are_kept() -> None:
    """Keeping 100k small objects raises allocated_blocks by about 100k."""
    probe = ObjectsProbe()
    before = probe.read().allocated_blocks
    kept = [float(i) for i in range(100_000)]
    after = probe.read().allocated_blocks
    assert after - before >= 95_000
    assert len(kept) == 100_000


# --- census ------------------------------------------------------------------------------------


def test_census_counts_instances_of_a_class() -> None:
    """10k live instances of a class appear with count 10k and their shallow size."""

    class Marker:
        def __init__(self, i: int) -> None:
            self.i = i

    items = [Marker(i) for i in range(10_000)]
    result = census(top=None)
    entry = _entry(result, Marker)
    assert entry.count == 10_000
    assert entry.shallow_bytes == 10_000 * sys.getsizeof(items[0])
    assert result.total_objects >= 10_000
    assert result.total_bytes >= entry.shallow_bytes
    assert result.duration_s > 0
    assert not result.include_untracked


def test_census_of_given_objects_sorts_by_bytes_and_names_builtins_plainly() -> None:
    """A census of given objects counts exactly those, largest type first, builtins without prefix."""
    big = list(range(1000))
    objects: list[object] = [1, 2, "a", big, b"xyz"]
    result = census(objects, top=None)
    by_name = {t.type: t for t in result.types}
    assert by_name["int"].count == 2
    assert by_name["str"].count == 1
    assert by_name["list"].shallow_bytes == sys.getsizeof(big)
    assert result.types[0].type == "list"
    assert [t.shallow_bytes for t in result.types] == sorted(
        (t.shallow_bytes for t in result.types), reverse=True
    )
    assert result.total_objects == 5
    assert result.total_bytes == sum(sys.getsizeof(o) for o in objects)


def test_census_top_limits_the_list_but_not_the_totals() -> None:
    """``top`` keeps only the largest types; the totals still count every object."""
    objects: list[object] = [[1, 2, 3], {"a": 1}, 1.5, "x", 7]
    full = census(objects, top=None)
    cut = census(objects, top=2)
    assert len(cut.types) == 2
    assert cut.types == full.types[:2]
    assert (cut.total_objects, cut.total_bytes, cut.distinct_types) == (5, full.total_bytes, 5)


def test_default_census_misses_untracked_objects_and_include_untracked_finds_them() -> None:
    """Strings in a list are invisible to gc.get_objects(); include_untracked counts each once."""
    strings = [f"census-probe-{i}" for i in range(3000)]
    holders = [strings, list(strings)]  # the same strings, held twice
    tracked_only = census(holders, top=None)
    assert "str" not in {t.type for t in tracked_only.types}
    with_untracked = census(holders, top=None, include_untracked=True)
    by_name = {t.type: t for t in with_untracked.types}
    assert by_name["str"].count == 3000
    assert by_name["str"].shallow_bytes == sum(map(sys.getsizeof, strings))
    assert by_name["list"].count == 2
    assert with_untracked.include_untracked


def test_include_untracked_follows_untracked_tuples() -> None:
    """Strings inside an untracked tuple inside a list are found; a given object is not counted twice."""
    pair = (f"left-{id(object())}", f"right-{id(object())}")
    gc.collect()  # the collector untracks tuples that hold only atomic objects
    if gc.is_tracked(pair):
        pytest.skip("this interpreter keeps such tuples tracked")
    holder = [pair]
    result = census([holder, pair], top=None, include_untracked=True)
    by_name = {t.type: t.count for t in result.types}
    assert by_name == {"list": 1, "tuple": 1, "str": 2}


def test_default_census_with_untracked_counts_heap_strings() -> None:
    """On the live heap, include_untracked adds str objects the plain census cannot see."""
    marker = [f"live-heap-string-{i}" for i in range(2000)]
    plain = census(top=None)
    full = census(top=None, include_untracked=True)
    assert "str" not in {t.type for t in plain.types}
    assert {t.type: t.count for t in full.types}["str"] >= len(marker)
    assert full.total_objects > plain.total_objects


@needs_pymalloc
def test_census_does_not_materialise_instance_dicts() -> None:
    """Counting 100k plain instances adds far fewer than 100k blocks (reading __dict__ adds one each)."""

    class Plain:
        def __init__(self, i: int) -> None:
            self.a = i
            self.b = None

    items = [Plain(i) for i in range(100_000)]
    gc.collect()
    before = sys.getallocatedblocks()
    census(top=None)
    census(top=None, include_untracked=True)
    after_census = sys.getallocatedblocks()
    for item in items:
        item.__dict__  # noqa: B018 - the control: this is what a careless census would do
    after_touching = sys.getallocatedblocks()
    assert after_census - before < 10_000
    if sys.version_info >= (3, 11):  # before 3.11 every instance has its dict from the start
        assert after_touching - after_census > 90_000


def test_census_runs_no_code_of_the_objects_it_counts() -> None:
    """No instance __getattribute__, Python-level __sizeof__ or metaclass attribute hook is called."""
    calls: list[str] = []

    class Meta(type):
        def __getattribute__(cls, name: str) -> Any:
            calls.append(f"meta:{name}")
            return super().__getattribute__(name)

    class Trap(metaclass=Meta):
        def __getattribute__(self, name: str) -> Any:
            calls.append(f"instance:{name}")
            raise AssertionError(name)

        def __sizeof__(self) -> int:
            calls.append("sizeof")
            return 10**9

    traps = [Trap() for _ in range(50)]
    calls.clear()
    result = census(traps, top=None)
    assert calls == []
    (entry,) = result.types
    assert entry.type == f"{__name__}.test_census_runs_no_code_of_the_objects_it_counts.<locals>.Trap"
    assert entry.count == 50
    assert entry.shallow_bytes == 50 * object.__sizeof__(traps[0])


def test_census_diff_orders_by_growth() -> None:
    """Diffs cover types in either census, drop unchanged ones, and put the largest growth first."""
    before = Census(
        types=(TypeCount("a.A", 10, 1000), TypeCount("b.B", 5, 500), TypeCount("c.C", 1, 100)),
        total_objects=16,
        total_bytes=1600,
        distinct_types=3,
        include_untracked=False,
        duration_s=0.1,
    )
    after = Census(
        types=(TypeCount("a.A", 4, 400), TypeCount("b.B", 5, 500), TypeCount("d.D", 30, 3000)),
        total_objects=39,
        total_bytes=3900,
        distinct_types=3,
        include_untracked=False,
        duration_s=0.1,
    )
    diffs = census_diff(before, after)
    assert [(d.type, d.count_diff, d.size_diff_bytes) for d in diffs] == [
        ("d.D", 30, 3000),
        ("c.C", -1, -100),
        ("a.A", -6, -600),
    ]


def test_census_diff_finds_the_growing_class_live() -> None:
    """Keeping 20k new instances between two censuses makes their class the top growth."""

    class Growing:
        pass

    before = census(top=None)
    kept = [Growing() for _ in range(20_000)]
    after = census(top=None)
    top = census_diff(before, after)[0]
    assert top.type == _name(Growing)
    assert top.count_diff == 20_000
    assert top.size_diff_bytes == 20_000 * sys.getsizeof(kept[0])


def test_pause_timer_keeps_no_python_objects_per_collection() -> None:
    """The gc callback runs in the program's allocating frame: it must not keep objects (tracemalloc would blame the program)."""
    import gc
    import sys

    from memwarden.probes.objects import GcPauseTimer

    timer = GcPauseTimer(recent=16)
    with timer:
        for _ in range(20):  # fill the ring and warm everything up
            gc.collect(0)
        before = sys.getallocatedblocks()
        for _ in range(200):
            gc.collect(0)
        grown = sys.getallocatedblocks() - before
    assert grown < 50, grown
    assert timer.stats().pauses[0] >= 220
    assert len(timer.stats().recent) == 16
