"""The verdict is judged without the distortion of memwarden's own tracemalloc windows.

Tracing slows an allocating program several times over while a window is open, and the
attribution work after it leaves memory that memwarden's estimate of its own RSS does not fully
take out. These tests replay series shaped like the runs that fooled the classifier (a FastAPI
app keeping request bodies, a slow leak under churn ending in its window, a bounded cache
replacing entries, a collector's sawtooth) and check the verdict and the evidence it gives.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from memwarden import diagnose
from memwarden.diagnosis._classify import classify
from memwarden.diagnosis._evidence import Evidence, WindowEvidence
from memwarden.diagnosis._verdict import CacheGrowthInfo, Holder, Site, SourceFrame
from memwarden.testing import samples_from_series

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"

MiB = 1024 * 1024
KiB = 1024


def _window(opened: float, closed: float, traced: int, function: str = "ingest") -> WindowEvidence:
    site = Site("app.py", 9, function, traced, 500, (SourceFrame("app.py", 9, function),))
    return WindowEvidence(
        opened_s=opened,
        closed_s=closed,
        frames=16,
        owns_tracing=True,
        traced_start_bytes=0,
        traced_end_bytes=traced,
        sites=(site,),
        holders=(Holder("builtins.list", "app.BODIES[<int>]", "module_global"),),
    )


def _jitter(n: int, scale: float, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, scale) for _ in range(n)]


def _codes(v: object) -> list[str]:
    return [e.code for e in v.evidence_items]  # type: ignore[attr-defined]


def test_a_leak_slowed_to_a_crawl_in_its_window_is_still_a_leak_and_python_s() -> None:
    """RSS grows 1 MiB/s untraced and 0.1 MiB/s while the window is open (tracing slowed the app 10x);
    the window traced 0.1 MiB/s. Judged on the same footing, the growth is Python's, at about the
    untraced rate; the samples after the window keep growing, so it is a leak, not a plateau."""
    interval, n = 0.25, 60  # 15 s
    window = (4.0, 7.0)
    rss: list[float] = []
    level = 60 * MiB
    for i in range(n):
        t = i * interval
        rate = 0.1 * MiB if window[0] < t <= window[1] else 1.0 * MiB
        level += rate * interval
        rss.append(level)
    rss = [r + e for r, e in zip(rss, _jitter(n, 20 * KiB), strict=True)]
    traced = [
        (t - window[0]) * 100 * KiB if window[0] < t <= window[1] else None
        for t in (i * interval for i in range(n))
    ]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "tracing.traced_bytes": traced}, interval=interval
    )
    v = classify(samples, Evidence(windows=(_window(*window, traced=300 * KiB),)))
    assert v.verdict == "python_leak", v.evidence
    assert "window.slowdown" in _codes(v)
    python = v.growth_bytes_per_s["python"]
    assert python is not None and python > 0.5 * MiB  # scaled back up from the traced 0.1 MiB/s


def test_the_same_run_compared_with_the_untraced_rate_alone_would_be_native() -> None:
    """The control for the test above: with no RSS samples inside the window, the traced 0.1 MiB/s is
    compared with the whole run's 1 MiB/s and under a quarter of it: native. The window's own
    footing is what makes the difference."""
    interval, n = 1.0, 16
    rss = [60 * MiB + i * MiB for i in range(n)]
    samples = samples_from_series({"process.rss_bytes": rss}, interval=interval)
    v = classify(samples, Evidence(windows=(_window(4.0, 4.9, traced=90 * KiB),)))
    assert v.verdict == "native_leak"


def test_a_run_that_ended_in_a_window_that_slowed_its_work_is_judged_on_what_came_before() -> None:
    """A slow leak under churn: untraced, 14 collections of generation 0 a second and RSS rising
    0.4 MiB/s; its window (which the run ended in) slowed the work 9x, and RSS looks flat there.
    The flat tail is the window's doing: the verdict is a leak, not a plateau."""
    interval, n = 0.25, 32  # the window opens at 3 s and the run ends in it at 8 s
    rss, blocks, collections = [], [], []
    level, count, gen0 = 24 * MiB, 94_000.0, 50.0
    for i in range(n):
        t = i * interval
        inside = t > 3.0
        level += (0.04 if inside else 0.4) * MiB * interval
        count += (1_000 if inside else 10_000) * interval
        gen0 += (1.5 if inside else 14.0) * interval
        rss.append(level)
        blocks.append(count)
        collections.append(round(gen0))
    samples = samples_from_series(
        {
            "process.rss_bytes": [r + e for r, e in zip(rss, _jitter(n, 8 * KiB), strict=True)],
            "objects.allocated_blocks": blocks,
            "objects.gc_collections_gen0": collections,
            "objects.gc_count_gen0": [100.0] * n,
        },
        interval=interval,
    )
    v = classify(samples, Evidence(windows=(_window(3.0, 8.0, traced=30 * KiB, function="remember"),)))
    assert v.verdict == "python_leak", (v.verdict, v.evidence)


def test_without_a_measure_of_the_work_a_flat_window_at_the_end_is_a_plateau() -> None:
    """The same shape with no gc counters to measure the program's pace by: the window's samples are
    all there is of the end, and they are flat: a plateau (memwarden does not guess a slowdown)."""
    interval, n = 0.25, 32
    rss = [24 * MiB + min(i * interval, 3.0) * 0.4 * MiB for i in range(n)]
    samples = samples_from_series({"process.rss_bytes": rss}, interval=interval)
    v = classify(samples, Evidence(windows=(_window(3.0, 8.0, traced=30 * KiB, function="remember"),)))
    assert v.verdict in ("plateau", "stable"), v.verdict


def test_a_steadily_growing_block_count_makes_the_growth_python_s() -> None:
    """A dict growing by 500k blocks/s (its table doubles between windows, which see a fifth of the
    bytes): the block count, which tracing does not slow, accounts for the RSS growth."""
    interval, n = 0.5, 20
    rss = [40 * MiB + i * 15 * MiB for i in range(n)]
    blocks = [100_000 + i * 250_000 for i in range(n)]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks}, interval=interval
    )
    v = classify(samples, Evidence(windows=(_window(3.0, 3.9, traced=5 * MiB, function="handle"),)))
    assert v.verdict == "python_leak", v.evidence
    assert "python.blocks_witness" in _codes(v)


def test_a_collector_sawtooth_whose_rss_floor_creeps_is_retention_not_a_native_leak() -> None:
    """gc disabled, a collect every 2 s: live blocks saw between the same floor and a peak; RSS's floor
    creeps up 1.7 MiB/s (arenas each cycle leaves pymalloc). Nothing is kept: allocator retention."""
    interval, n = 0.25, 34
    blocks, rss = [], []
    for i in range(n):
        phase = (i * interval) % 2.0
        blocks.append(94_000 + phase * 200_000)
        rss.append(34 * MiB + i * interval * 1.7 * MiB + phase * 9 * MiB)
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks}, interval=interval
    )
    v = classify(samples, Evidence())
    assert v.verdict == "allocator_retention", (v.verdict, v.evidence)
    assert "retention.freed_into_malloc" in _codes(v)


def test_a_full_bounded_cache_replacing_entries_is_a_plateau_even_when_the_window_traced_a_lot() -> None:
    """An lru_cache(maxsize=10000), full, replacing entries: the window traces the new entries
    (11 MiB/s) but not the frees of the old ones, and blocks creep. It cannot grow: plateau."""
    interval, n = 0.25, 24
    rss = [30 * MiB + min(i * interval, 1.3) * 12 * MiB + i * 30 * KiB for i in range(n)]
    blocks = [100_000 + i * 280 for i in range(n)]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks}, interval=interval
    )
    cache = CacheGrowthInfo("__main__.render", "lru_cache", 10_000, 10_000, 1600.0)
    ev = Evidence(windows=(_window(2.8, 3.9, traced=13 * MiB, function="render"),), caches=(cache,))
    v = classify(samples, ev)
    assert v.verdict == "plateau", (v.verdict, v.evidence)


def test_an_unbounded_cache_at_the_growing_site_is_a_python_leak_at_the_process_rate() -> None:
    """lru_cache(maxsize=None) keeping 900-byte strings (not pymalloc blocks): a short window saw a
    thirtieth of the growth; the unbounded cache at the site says whose it is."""
    interval, n = 0.25, 24
    rss = [25 * MiB + i * interval * 250 * MiB for i in range(n)]
    samples = samples_from_series({"process.rss_bytes": rss}, interval=interval)
    cache = CacheGrowthInfo("__main__.render", "lru_cache", None, 1_200_000, 200_000.0)
    ev = Evidence(windows=(_window(2.6, 3.6, traced=10 * MiB, function="render"),), caches=(cache,))
    v = classify(samples, ev)
    assert v.verdict == "python_leak", (v.verdict, v.evidence)
    assert "cache.unbounded" in _codes(v)
    assert v.growth_bytes_per_s["python"] == v.growth_bytes_per_s["rss"]


@pytest.mark.parametrize(
    ("held", "python_s"),
    [
        (Holder("bytes", "app.BODIES[<int>]", "module_global"), True),
        # tuples of numbers the collector no longer tracks (a ranking worker's SEEN list)
        (Holder("tuple", "app.SEEN[<int>]", "module_global", untracked=True), True),
        # a tuple the collector tracks may hold a tensor: no witness either way
        (Holder("tuple", "app.SEEN[<int>]", "module_global"), False),
    ],
)
def test_python_objects_kept_in_a_list_are_a_python_leak_even_when_the_window_saw_little_of_them(
    held: Holder, python_s: bool
) -> None:
    """A list keeping 4 KiB bytes objects (malloc'd by Python's allocator, no pymalloc blocks), or
    plain tuples of numbers: the slowed window traced under a quarter of RSS's rate, but the
    holder keeps objects made at the growing site that own nothing outside Python's memory, so
    the leak is Python's and its advice is about the list, not native memory."""
    interval, n = 0.5, 20
    rss = [30 * MiB + i * interval * 2 * MiB for i in range(n)]
    samples = samples_from_series({"process.rss_bytes": rss}, interval=interval)
    window = _window(3.0, 3.9, traced=200 * KiB)
    window = WindowEvidence(**{**window.__dict__, "holders": (held,)})
    v = classify(samples, Evidence(windows=(window,)))
    assert (v.verdict == "python_leak") is python_s, (v.verdict, v.evidence)
    assert ("python.buffers_kept" in _codes(v)) is python_s
    if python_s:
        assert not any("MALLOC_ARENA_MAX" in a for a in v.advice)


def test_a_plateau_after_the_window_with_blocks_growing_to_the_end_is_a_hidden_python_leak() -> None:
    """After its window, the program refills the memory memwarden's attribution work freed: RSS is
    flat for the rest of a short run while the block count keeps growing 9.5k/s, as it did before.
    The plateau is memwarden's doing: a Python leak into memory the allocator already held."""
    interval, n = 0.3, 34
    window = (2.9, 5.9)
    rss, blocks = [], []
    for i in range(n):
        t = i * interval
        rss.append(24 * MiB + min(t, 7.0) * 0.7 * MiB)
        blocks.append(100_000 + t * 9_500)
    traced = [
        (t - window[0]) * 680 * KiB if window[0] < t <= window[1] else None
        for t in (i * interval for i in range(n))
    ]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks, "tracing.traced_bytes": traced},
        interval=interval,
    )
    v = classify(samples, Evidence(windows=(_window(*window, traced=2 * MiB),)))
    assert v.verdict == "python_leak", (v.verdict, v.evidence)
    assert "python.hidden_growth" in _codes(v)


def _plateau_run(blocks_at: Callable[[float], float]) -> object:
    """An 8.7 s run shaped like the listener scenario's failing CI runs: RSS rises for 4 s, then
    stays flat after the window (2.0-5.0 s) whose traced bytes grew 1.5 MiB; the block count is
    ``blocks_at(t)``."""
    interval, n = 0.3, 30
    window = (2.0, 5.0)
    times = [i * interval for i in range(n)]
    rss = [30 * MiB + min(t, 4.0) * 0.6 * MiB + j for t, j in zip(times, _jitter(n, 20 * KiB))]
    traced = [(t - window[0]) * 500 * KiB if window[0] < t <= window[1] else None for t in times]
    samples = samples_from_series(
        {
            "process.rss_bytes": rss,
            "objects.allocated_blocks": [blocks_at(t) for t in times],
            "tracing.traced_bytes": traced,
        },
        interval=interval,
    )
    return classify(samples, Evidence(windows=(_window(*window, traced=int(1.5 * MiB)),)))


def test_a_plateau_with_blocks_climbing_slowly_through_one_knock_down_is_a_hidden_python_leak() -> None:
    """Listeners that keep request contexts whose bodies go to malloc: blocks grow only ~500/s
    (~265 KiB over the run, under the 512 KiB floor), and the window's close knocks them down
    once. The block climb before and after is the same: a Python leak, not a plateau."""

    def blocks(t: float) -> float:
        return 200_000 + t * 500 - (60_000 if 5.0 < t < 5.7 else 0)

    v = _plateau_run(blocks)
    assert v.verdict == "python_leak", (v.verdict, v.evidence)  # type: ignore[attr-defined]
    assert "python.hidden_growth" in _codes(v)


def test_a_plateau_whose_blocks_are_a_collector_sawtooth_stays_a_plateau() -> None:
    """The same run with the blocks knocked down every 2 s by a collector and refilled: their
    rising trend is the sawtooth's, no witness of objects kept."""

    def blocks(t: float) -> float:
        return 200_000 + t * 500 + (t % 2.0) * 150_000

    v = _plateau_run(blocks)
    assert v.verdict != "python_leak", (v.verdict, v.evidence)  # type: ignore[attr-defined]


def test_recorded_runs_that_fooled_the_classifier_get_their_verdict() -> None:
    """Two recorded `memwarden run` timelines (SQLite, tests/fixtures/runs/): pandas DataFrames of
    1k-400k rows built and dropped (blocks swing 280k-680k, the run ends soon after its window),
    and the shipped example service (RSS flat for 3 s after its window while blocks grow to the
    end). Not a leak, and a Python leak held by HISTORY."""
    churn = diagnose(str(RUNS / "dataframe_churn.db"))
    assert churn.verdict in ("plateau", "stable", "allocator_retention"), (churn.verdict, churn.evidence)
    example = diagnose(str(RUNS / "leaky_service.db"))
    assert example.verdict == "python_leak", (example.verdict, example.evidence)
    assert example.holders and "HISTORY" in example.holders[0].path


PANDAS_RSS_MIB = [
    24.7,
    49.65,
    76.31,
    76.34,
    76.34,
    77.59,
    77.59,
    76.09,
    77.66,
    77.67,
    77.67,
    76.09,
    77.29,
    76.1,
    76.1,
    77.02,
    77.02,
    77.02,
    77.04,
    83.55,
    79.23,
    79.25,
    79.25,
    91.62,
    82.7,
    82.7,
    86.73,
    86.51,
    76.4,
    76.46,
]
"""RSS of a recorded `memwarden run tests/corpus/pandas_frames_ok.py` (no window opened), one
sample every ~0.29 s: DataFrames of 1k-400k rows built and dropped, spikes in the second half,
back to 76.4 MiB at the end."""


def _swinging(floor_rate: float) -> list[float]:
    """The recorded pandas RSS, its floor rising ``floor_rate`` B/s after the 0.6 s import."""
    return [v * MiB + floor_rate * max(0.0, i * 0.29 - 0.6) for i, v in enumerate(PANDAS_RSS_MIB)]


def test_a_working_set_that_swings_up_and_comes_back_down_is_no_leak() -> None:
    """DataFrames of 1k-400k rows built and dropped: RSS spikes in the second half and slopes up
    through its spikes, but comes back down to where it was: nothing was kept."""
    samples = samples_from_series({"process.rss_bytes": _swinging(0.0)}, interval=0.29)
    v = classify(samples, Evidence())
    assert v.verdict not in ("python_leak", "native_leak"), (v.verdict, v.evidence)
    assert "trend.given_back" in _codes(v)


def test_a_leak_under_the_same_swings_is_still_a_leak() -> None:
    """The control: the same spikes over a floor that rises 1 MiB/s: the floor keeps the growth."""
    samples = samples_from_series({"process.rss_bytes": _swinging(1.0 * MiB)}, interval=0.29)
    v = classify(samples, Evidence())
    assert v.verdict in ("python_leak", "native_leak"), (v.verdict, v.evidence)
    assert "trend.given_back" not in _codes(v)


def test_a_window_whose_samples_were_all_temporaries_does_not_make_the_growth_python_s() -> None:
    """The window closed on a 10 MiB DataFrame in hand, and the holder search found every sampled
    object dropped a moment later: what it traced was in flight, not a rate of Python growth."""
    interval, n = 0.25, 40
    window = (6.0, 7.0)
    times = [i * interval for i in range(n)]
    rss = [60 * MiB + t * 0.8 * MiB + j for t, j in zip(times, _jitter(n, 30 * KiB), strict=True)]
    traced = [(t - window[0]) * 10 * MiB if window[0] < t <= window[1] else None for t in times]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "tracing.traced_bytes": traced}, interval=interval
    )
    temporary = Holder(
        "pandas.DataFrame", "<a temporary: nothing in the program holds it any more>", "temporary"
    )
    in_flight = dataclasses.replace(_window(*window, traced=10 * MiB), holders=(temporary,))
    v = classify(samples, Evidence(windows=(in_flight,)))
    assert v.verdict != "python_leak", (v.verdict, v.evidence)
    assert "window.in_flight" in _codes(v)
    python = v.growth_bytes_per_s["python"]
    assert python is not None and python < 0.1 * MiB
    held = classify(samples, Evidence(windows=(_window(*window, traced=10 * MiB),)))
    assert held.verdict == "python_leak", (held.verdict, held.evidence)  # the control: a held sample
