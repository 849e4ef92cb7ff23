"""The classifier: from the sampled layers and the investigator's evidence to one verdict.

The decision, in the order it is made:

1. Too few samples or too short a run: ``inconclusive``.
2. The trend of process memory (RSS; malloc's in-use bytes where RSS is missing) is tested with a
   robust slope (Theil–Sen) and a Mann–Kendall test, after the warm-up, with a floor on the rate and
   on the total growth that counts (``min_rate_bytes_per_s``, ``min_growth_bytes``).
3. If it keeps growing to the end: a leak. It is a *Python* leak when the Python-visible layers
   account for the growth (tracemalloc's traced bytes in a window, or Python's allocated-block count
   growing with it); otherwise a *native* leak (C extension, ctypes, a native library).
4. If it does not grow: *allocator retention* when the allocators hold a large share of the process
   in free memory (pymalloc arenas' free blocks and pools, glibc free chunks, what ``malloc_trim``
   gave back); *plateau* when it grew and levelled off; else *stable*.
5. The GPU layer is decided on its own (``gpu_leak``, ``gpu_cache_retention``) and wins over a
   CPU-side answer that is not a leak.

A long run (12 h or more) is judged over its last third as well as the whole: growth there alone is
a leak (it began too late to bend the whole run's trend); growth over the run that the last third
no longer shows is a ``plateau`` whose summary says when it stopped. Past 10 minutes the rate floor
falls with the run's length. A leak's ``growth_began`` is the bend of a hinge fit when the series
was flat before it, else the first sample. The trends run on at most ``max_trend_points`` samples
evenly spread in time, so the cost is bounded however long the history fed in.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._format import format_bytes, format_duration, format_rate, short_path
from ..metrics import (
    GPU_ALLOCATED_BYTES,
    LIBC_FREE_BYTES,
    LIBC_IN_USE_BYTES,
    LIBC_MMAPPED_BYTES,
    MEMWARDEN_ATTRIBUTED_RSS_BYTES,
    OBJECTS_ALLOCATED_BLOCKS,
    OBJECTS_GC_COLLECTIONS_GEN0,
    OBJECTS_GC_COUNT_GEN0,
    PROCESS_RSS_BYTES,
    PYMALLOC_ALLOCATED_BLOCK_BYTES,
    PYMALLOC_ARENA_BYTES,
    TRACING_OVERHEAD_BYTES,
    TRACING_TRACED_BYTES,
)
from ..timeline import Sample, series
from ._advice import advise, kept_owner, owner_kind
from ._evidence import Evidence, WindowEvidence
from ._trend import Trend, analyse, detect_change, theil_sen
from ._verdict import (
    CacheGrowthInfo,
    EvidenceItem,
    GrowthStart,
    Holder,
    Site,
    TypeGrowth,
    Verdict,
    VerdictName,
)

RSS = PROCESS_RSS_BYTES
BLOCKS = OBJECTS_ALLOCATED_BLOCKS
TRACED = TRACING_TRACED_BYTES
TRACING_OVERHEAD = TRACING_OVERHEAD_BYTES
OWN_RSS = MEMWARDEN_ATTRIBUTED_RSS_BYTES
PYMALLOC_ALLOCATED = PYMALLOC_ALLOCATED_BLOCK_BYTES
PYMALLOC_ARENA = PYMALLOC_ARENA_BYTES
LIBC_IN_USE = LIBC_IN_USE_BYTES
LIBC_MMAPPED = LIBC_MMAPPED_BYTES
LIBC_FREE = LIBC_FREE_BYTES


@dataclass(frozen=True)
class DiagnosisConfig:
    """The thresholds of the decision. The defaults suit runs of seconds to weeks."""

    min_samples: int = 4
    min_duration_s: float = 2.0
    alpha: float = 0.01
    """Significance level of the trend test."""
    min_rate_bytes_per_s: float = 20 * 1024
    """Growth slower than this is negligible (20 KiB/s is 1.7 GiB a day: still worth naming)."""
    min_growth_bytes: float = 512 * 1024
    """Growth smaller than this over the run is noise, whatever its rate."""
    python_share: float = 0.25
    """Share of the process's growth the Python layers must account for to call it a Python leak."""
    retention_min_bytes: float = 32 * 1024 * 1024
    retention_min_share: float = 0.25
    """Retention is the verdict when free-but-kept bytes are at least this share of RSS."""
    rate_floor_span_s: float = 600.0
    """Past this run length the rate floor falls with the run: growth adding ``min_rate_bytes_per_s``
    x this span (12 MiB at the defaults) over the whole run counts, so a week-long service leaking
    2 MiB an hour is a leak (the floor is 34 KiB/h there) ..."""
    min_long_rate_bytes_per_s: float = 8 * 1024 * 1024 / 86_400
    """... down to this rate (8 MiB a day), however long the run."""
    long_run_s: float = 12 * 3600.0
    """Runs at least this long are judged over their recent part as well as the whole: a leak that
    began late is a leak, and one that stopped long ago is not a current one."""
    recent_share: float = 1.0 / 3.0
    """The recent part of a long run: its last third."""
    max_trend_points: int = 3000
    """Trends are computed on at most this many samples, evenly spread in time (more add cost, not
    power: the statistics work on group means above a few hundred)."""


def classify(
    samples: Sequence[Sample],
    evidence: Evidence | None = None,
    config: DiagnosisConfig | None = None,
    *,
    total_samples: int | None = None,
) -> Verdict:
    """Decide what a run's memory did. Pure: the same samples and evidence give the same verdict.

    The cost is bounded by ``config.max_trend_points`` for the trends and linear in
    ``len(samples)`` for the rest: feed a long history as a bounded digest
    (:meth:`Timeline.sample_digest`, or a reservoir of evenly spread samples plus the latest ones)
    and say how many samples it stands for with ``total_samples`` (the verdict's ``samples``).
    """
    cfg = config or DiagnosisConfig()
    ev = evidence or Evidence()
    samples = list(samples)
    duration = samples[-1].mono - samples[0].mono if len(samples) >= 2 else 0.0
    cfg = _for_duration(cfg, duration)
    counted = len(samples) if total_samples is None else total_samples
    # evenly spread in time: the trend statistics count samples (the tail, group means), and a
    # cadence that ramps (0.2 s at first, 1 s later) would weigh the start several times over
    slow_gap = _ramped(samples)
    if slow_gap is not None:
        limit = min(cfg.max_trend_points, max(2 * cfg.min_samples, round(duration / slow_gap)))
        trend_samples = _evenly(samples, limit, always=True)
    else:
        trend_samples = _evenly(samples, cfg.max_trend_points, always=duration >= cfg.long_run_s)
    layers = layer_figures(samples)
    for layer, why in ev.unavailable:
        if not layers.get(layer):  # read earlier in the run: its figures say more
            layers[layer] = {"unavailable": why}
    sites, types, holders = _attribution(ev)
    caches = tuple(
        sorted(
            (c for c in ev.caches if _worth_naming(c, sites)),
            key=lambda c: (c.maxsize is not None, -c.growth_per_s),
        )
    )

    def too_little(summary: str) -> Verdict:
        return Verdict(
            verdict="inconclusive",
            confidence=0.0,
            summary=summary,
            duration_s=duration,
            samples=counted,
            growth_bytes_per_s={"rss": None, "python": None, "native": None, "gpu": None},
            layers=layers,
            advice=("Run the program longer (a service: a few minutes of traffic) or lower --interval.",),
        )

    if len(samples) < cfg.min_samples or duration < cfg.min_duration_s:
        return too_little(
            f"Too little to go on: {len(samples)} samples over {duration:.1f} s "
            f"(need at least {cfg.min_samples} over {cfg.min_duration_s:g} s); run longer or sample faster."
        )

    primary_key = RSS if any(s.metrics.get(RSS) is not None for s in samples) else LIBC_IN_USE
    windows = _windows_of(samples, ev.windows)  # the trends are judged with their distortion taken out
    rss_tr = _trend(trend_samples, primary_key, cfg, windows=windows)
    if (
        rss_tr is not None
        and rss_tr.status == "insufficient"
        and rss_tr.last - rss_tr.first >= cfg.min_growth_bytes
    ):
        # memory rose, but too few samples remain to tell a leak from a warm-up: not "stable"
        # (a 4 s program at --interval 1 keeping 330 MiB has five samples, one a window's)
        return too_little(
            f"Too little to go on: memory rose {format_bytes(rss_tr.last - rss_tr.first)} over {duration:.1f} s, "
            f"but {rss_tr.reason}; run longer or sample faster (--interval auto)."
        )
    blocks_tr = _trend(trend_samples, BLOCKS, cfg, bytes_series=False, windows=windows)
    recent = _recent(trend_samples, primary_key, cfg, duration, windows)
    # A long run is judged over its recent part too: growth that began late is a leak however
    # flat the days before; growth that stopped long ago is not a current leak.
    stopped = recent_grows = False
    recent_s = recent[2] - recent[1] if recent is not None else 0.0
    deciding = trend_samples  # the samples the rates come from: the recent part when it grows
    whole_tr, whole_blocks = rss_tr, blocks_tr
    if recent is not None and rss_tr is not None:
        recent_tr, since = recent[0], recent[1]
        stopped = _meaningful_growth(rss_tr, cfg) and recent_tr.status in (
            "flat",
            "plateau",
            "step",
            "shrinking",
        )
        recent_grows = _meaningful_growth(recent_tr, cfg)
        if recent_grows:
            # growing now: a leak, at the rate it grows now (the whole run's would dilute a late one)
            deciding = [s for s in trend_samples if s.mono >= since]
            recent_blocks = _trend(deciding, BLOCKS, cfg, bytes_series=False, windows=windows)
            rss_tr, blocks_tr = recent_tr, recent_blocks or blocks_tr
    window = ev.windows[-1] if ev.windows else None
    python_rate = _python_rate(samples, deciding, window, cfg)
    rss_rate = rss_tr.rate_per_s if rss_tr is not None else None
    native_rate = None
    if rss_rate is not None:
        native_rate = max(0.0, rss_rate - max(0.0, python_rate or 0.0))
    growth: dict[str, float | None] = {
        "rss": rss_rate,
        "python": python_rate,
        "native": native_rate,
        "gpu": None,
    }
    evid: list[EvidenceItem] = []

    def add(code: str, sentence: str, **figures: float | int | str | None) -> None:
        evid.append(EvidenceItem(code, sentence, figures))

    if whole_tr is not None:
        add(f"trend.{primary_key}", f"{primary_key}: {whole_tr.reason}", **_trend_figures(whole_tr))
    if whole_blocks is not None:
        add(f"trend.{BLOCKS}", f"{BLOCKS}: {whole_blocks.reason}", **_trend_figures(whole_blocks))
    if recent is not None:
        what = "from" if recent_grows else "over"
        add(
            f"trend.recent.{primary_key}",
            f"{primary_key} {what} the last {_span(recent_s)}: {recent[0].reason}",
            span_s=recent_s,
            **_trend_figures(recent[0]),
        )
    if window is not None:
        traced = window.traced_end_bytes - window.traced_start_bytes
        add(
            "window.traced",
            f"tracemalloc window {window.opened_s:.1f}-{window.closed_s:.1f} s: traced "
            f"{format_bytes(traced, signed=True)} ({format_rate(window.traced_growth_per_s)})",
            opened_s=window.opened_s,
            closed_s=window.closed_s,
            traced_bytes=traced,
            rate_bytes_per_s=window.traced_growth_per_s,
        )

    blocks_bytes = _blocks_bytes_rate(samples, blocks_tr)  # bytes/s a steadily growing block count stands for
    verdict: VerdictName
    began: GrowthStart | None = None
    stopped_at: tuple[float, float] | None = None  # (offset, rise) of a long run's growth that stopped
    grows = rss_tr is not None and _meaningful_growth(rss_tr, cfg) and not stopped
    given_back = _given_back(trend_samples, primary_key, rss_tr, cfg, windows) if grows else None
    if given_back is not None:
        # memory that came back down was not kept: a working set swinging with what the program
        # has in hand (DataFrames of 1k-400k rows), not a leak, whatever the slope through it
        grows = False
        add("trend.given_back", given_back)
    if grows:
        assert rss_tr is not None
        began = _growth_start(trend_samples, primary_key, rss_tr, cfg, windows)
        if began.offset_s > 0.0:  # the rate since the bend: a trend cut before it would dilute it
            growth["rss"] = began.rate_bytes_per_s
            growth["native"] = max(0.0, began.rate_bytes_per_s - max(0.0, python_rate or 0.0))
        window_rss = _window_rate(samples, primary_key, window) if window is not None else None
        python_explains = _python_explains(rss_tr, blocks_tr, python_rate, window, cfg, window_rss)
        in_flight = None
        if python_explains and blocks_bytes < cfg.python_share * rss_tr.rate_per_s:
            in_flight = _in_flight(window)
        if in_flight is not None:
            # what the window traced was in flight (a DataFrame in hand as it closed): no rate of
            # Python growth, whatever its size; the block count is what is left to go by
            python_explains = False
            add("window.in_flight", in_flight)
            growth["python"] = python_rate = blocks_bytes
            growth["native"] = max(0.0, (growth["rss"] or 0.0) - blocks_bytes)
        unbounded = _unbounded_cache_at_site(caches, sites) if not python_explains else None
        if unbounded is not None:
            # an unbounded lru_cache at the growing site keeps Python objects, whatever share of
            # them a short window saw (strings over 512 B are not pymalloc blocks either)
            python_explains = True
            add(
                "cache.unbounded",
                f"the growing site is {unbounded.name}, an unbounded lru_cache growing "
                f"{unbounded.growth_per_s:,.0f} entries/s: what it keeps is Python's",
                cache=unbounded.name,
                currsize=unbounded.currsize,
            )
            if python_rate is None or python_rate < rss_tr.rate_per_s:
                growth["python"] = python_rate = rss_tr.rate_per_s
                growth["native"] = 0.0
        owner = kept_owner(sites, holders)
        native_owner = owner is not None and owner_kind(owner[1]) == "native_owner"
        if not python_explains and not native_owner and blocks_bytes >= cfg.python_share * rss_tr.rate_per_s:
            # the window saw a fraction (a dict's table doubling between two windows' edges, a
            # window too short), but the block count, which tracing does not slow, grows with RSS
            python_explains = True
            add(
                "python.blocks_witness",
                f"Python's allocated blocks grow {blocks_tr.rate_per_s if blocks_tr else 0:,.0f}/s, about "
                f"{format_rate(blocks_bytes)}: with RSS's {format_rate(rss_tr.rate_per_s)}, the growth is Python's",
                rate_bytes_per_s=blocks_bytes,
            )
            if python_rate is None or python_rate < blocks_bytes:
                growth["python"] = python_rate = min(blocks_bytes, rss_tr.rate_per_s)
                growth["native"] = max(0.0, (growth["rss"] or 0.0) - python_rate)
        if python_explains and python_rate is not None:
            untraced = _untraced_python_rate(
                python_rate, growth["rss"] or rss_tr.rate_per_s, window, window_rss
            )
            if untraced > python_rate:
                assert window is not None and window_rss is not None
                add(
                    "window.slowdown",
                    f"tracing slowed the program {rss_tr.rate_per_s / window_rss:.1f}x in the window "
                    f"(process memory {format_rate(window_rss)} there, {format_rate(rss_tr.rate_per_s)} "
                    f"outside): Python's {format_rate(python_rate)} there is about {format_rate(untraced)} untraced",
                    slowdown=rss_tr.rate_per_s / window_rss,
                    window_rate_bytes_per_s=window_rss,
                    rate_bytes_per_s=untraced,
                )
                growth["python"] = python_rate = untraced
                growth["native"] = max(0.0, (growth["rss"] or 0.0) - untraced)
        buffers = _python_buffers_kept(sites, holders) if not python_explains else None
        if buffers is not None:
            # bytes and str over 512 B are malloc'd by Python's allocator, not in pymalloc's blocks,
            # and a window slowed by tracing sees a fraction of them: still Python's, held by a container
            python_explains = True
            add(
                "python.buffers_kept",
                f"{buffers.path} keeps {buffers.type} objects: Python's own memory (tracemalloc "
                "traces it), held by a Python container",
                holder=buffers.path,
                type=buffers.type,
            )
            if python_rate is None or python_rate < rss_tr.rate_per_s:
                growth["python"] = python_rate = rss_tr.rate_per_s
                growth["native"] = 0.0
        verdict = "python_leak" if python_explains else "native_leak"
        confidence = _leak_confidence(rss_tr, blocks_tr, window, python_explains, len(samples))
        freed = None if python_explains else _freed_but_kept(deciding, rss_tr, ev, cfg)
        if freed is None and not python_explains:
            freed = _sawtooth_kept(deciding)
        if freed is not None:
            # RSS rose, but into glibc's free chunks: the program freed it (threads' arenas, a
            # working set of changing sizes); malloc_trim gives it back. Not a leak.
            verdict, confidence = "allocator_retention", 0.8
            for sentence in freed:
                add("retention.freed_into_malloc", sentence)
        full = _full_bounded_cache(ev.caches, sites) if python_explains else None
        if full is not None:
            # the growth we saw is a bounded cache filling up; it is full now and cannot grow further
            verdict, confidence = "plateau", 0.75
            add(
                "cache.full",
                f"the growing site is {full.name}, an lru_cache bounded at maxsize={full.maxsize:,} "
                f"and now full ({full.currsize:,} entries): it cannot grow further",
                cache=full.name,
                maxsize=full.maxsize,
                currsize=full.currsize,
            )
    elif stopped:
        # it leaked, then stopped: nothing grows now, so not a leak, and "plateau" says what it did
        verdict, confidence = "plateau", 0.75
        stopped_at = _levelled_off(trend_samples, primary_key, windows)
        add(
            "trend.stopped",
            f"{primary_key} grows over the whole run but not over the last {_span(recent_s)}",
            span_s=recent_s,
        )
    else:
        retained, retention_evidence = _retention(samples, ev, cfg)
        for sentence in retention_evidence:
            add("retention.held", sentence, retained_bytes=retained)
        rss_end = _last(samples, primary_key) or 0.0
        # objects can pile up into memory the allocator already held (after a retention, say): RSS
        # stays flat, or creeps below the floors (pymalloc fills its free pools first). Only call
        # that a leak when the block count grows AND the traced bytes grew through a window, with
        # RSS not levelling off after a rise (a window's traced bytes also rise while a bounded
        # structure, which plateaus, replaces its old entries).
        # A plateau counts too when the blocks grew steadily through it: after a window, the
        # program refills what memwarden's attribution work freed, and RSS stays flat meanwhile
        # (the shipped example: RSS flat for 3 s after its window, blocks +9.5k/s to the end; a
        # listener leak whose bodies go to malloc: blocks +507/s, 265 KiB over 8.7 s). The growth
        # floor is the one below (a quarter of min_growth_bytes). Blocks a collector knocks down
        # twice or more (a sawtooth) are no such witness; one knock-down (the window's own
        # census, or a working set freed once) does not undo the growth around it.
        blocks_steady = _refilled_falls(_block_counts(samples)) < 2
        hidden_python_leak = (
            rss_tr is not None
            and (
                rss_tr.status in ("flat", "step", "shrinking", "growing")
                or (rss_tr.status == "plateau" and blocks_steady)
            )
            and blocks_tr is not None
            and blocks_tr.status == "growing"
            and blocks_tr.significant
            # by enough to matter: 13 blocks/s of a PyTorch loop's caches are no leak, whatever
            # the window traced of its churn
            and blocks_bytes * duration >= cfg.min_growth_bytes / 4
            and window is not None
            and bool(window.sites)
            and _in_flight(window) is None
            and python_rate is not None
            and python_rate >= cfg.min_rate_bytes_per_s
            and python_rate * duration >= cfg.min_growth_bytes
            # a full bounded cache replacing its entries: the window traced the new ones, not the
            # frees of the old (made before it opened)
            and _full_bounded_cache(caches, sites) is None
        )
        if hidden_python_leak:
            # objects keep piling up, but into memory the allocator already held
            verdict = "python_leak"
            confidence = 0.7
            add(
                "python.hidden_growth",
                "Python objects grow while RSS does not: they reuse memory the allocator already held",
                rate_bytes_per_s=python_rate,
            )
        elif (
            retained >= cfg.retention_min_bytes
            and retained >= cfg.retention_min_share * max(rss_end, 1.0)
            and _freed_for_good(samples, ev, cfg)
        ):
            verdict = "allocator_retention"
            confidence = min(0.95, 0.6 + 0.4 * retained / max(rss_end, 1.0))
        elif rss_tr is not None and rss_tr.status == "plateau":
            verdict = "plateau"
            confidence = 0.8
            if duration >= cfg.long_run_s:
                stopped_at = _levelled_off(trend_samples, primary_key, windows)
        elif (
            rss_tr is not None
            and rss_tr.status != "shrinking"
            and (full := _full_bounded_cache(caches, sites))
        ):
            # a fast fill reads as a step (or as flat, or as negligible creep after it): a bounded cache
            # that filled up during the run and is where memory grew is a plateau
            verdict = "plateau"
            confidence = 0.75
            add(
                "cache.full",
                f"{full.name} filled to its maxsize={full.maxsize:,} during the run and stays there",
                cache=full.name,
                maxsize=full.maxsize,
                currsize=full.currsize,
            )
        else:
            verdict = "stable"
            confidence = 0.9 if len(samples) >= 8 else 0.7

    gpu = _gpu_finding(samples)
    if gpu is not None:
        growth["gpu"] = gpu.evidence.get("allocated_slope_bytes_per_s")
        add("finding.gpu", f"gpu: {gpu.summary}", verdict=gpu.verdict, confidence=gpu.confidence)
        cpu_leak_rate = (rss_rate or 0.0) if verdict in ("python_leak", "native_leak") else 0.0
        gpu_rate = growth["gpu"] or 0.0
        if gpu.verdict == "gpu_leak" and gpu_rate >= cpu_leak_rate:
            verdict, confidence = "gpu_leak", gpu.confidence
        elif gpu.verdict == "gpu_cache_retention" and verdict in ("stable", "plateau", "allocator_retention"):
            verdict, confidence = "gpu_cache_retention", gpu.confidence
        layers["gpu"] = {**layers.get("gpu", {}), "finding": gpu.verdict, "fragmentation": gpu.fragmentation}
        if verdict in ("gpu_leak", "gpu_cache_retention"):
            sites = ev.gpu_sites or sites
            holders = ev.gpu_holders or holders

    advice = advise(verdict, sites=sites, types=types, holders=holders, caches=caches, gpu=gpu)
    summary = _summary(verdict, growth, sites, holders, caches, layers, gpu)
    if verdict not in ("python_leak", "native_leak"):
        began = None  # the GPU's verdict won: its own sentence says what grows
    if began is not None and began.offset_s > 0.0:
        summary += f" {_began_sentence(began, duration)}"
    if verdict == "plateau" and stopped_at is not None:
        summary = _stopped_sentence(samples[0], stopped_at, duration)
    return Verdict(
        verdict=verdict,
        confidence=round(max(0.0, min(confidence, 0.99)), 3),
        summary=summary,
        duration_s=duration,
        samples=counted,
        growth_bytes_per_s=growth,
        sites=sites if verdict in ("python_leak", "gpu_leak") else sites[:3],
        types=types,
        holders=holders,
        caches=caches,
        advice=advice,
        evidence=tuple(e.sentence for e in evid),
        evidence_items=tuple(evid),
        layers=layers,
        growth_began=began,
    )


def _full_bounded_cache(caches: Sequence[CacheGrowthInfo], sites: tuple[Site, ...]) -> CacheGrowthInfo | None:
    """A bounded cache, now at its bound, whose function is where the top sites allocate."""
    for c in caches:
        full = c.maxsize is not None and c.maxsize > 0 and c.currsize >= c.maxsize
        if full and c.growth_per_s > 0 and _in_top_sites(c, sites):
            return c
    return None


def _python_buffers_kept(sites: tuple[Site, ...], holders: tuple[Holder, ...]) -> Holder | None:
    """The top holder when it keeps bytes, bytearray or str made at the top growing site."""
    owner = kept_owner(sites, holders)
    if owner is not None and owner_kind(owner[1]) == "python_buffer":
        return owner[1]
    return None


def _unbounded_cache_at_site(
    caches: Sequence[CacheGrowthInfo], sites: tuple[Site, ...]
) -> CacheGrowthInfo | None:
    """An unbounded cache growing by at least 100 entries a second whose function is a top site."""
    for c in caches:
        if c.maxsize is None and c.growth_per_s >= 100 and _in_top_sites(c, sites):
            return c
    return None


def _in_top_sites(cache: CacheGrowthInfo, sites: Sequence[Site]) -> bool:
    """Whether a cache's function is the function of one of the top three growing sites."""
    names = {(s.function or "").rsplit(".", 1)[-1] for s in sites[:3]} - {""}
    return cache.name.rsplit(".", 1)[-1] in names


_MIN_CACHE_ENTRIES = 100
"""A cache that grew to fewer entries than this is named only when a top growing site is in it."""


def _worth_naming(cache: CacheGrowthInfo, sites: Sequence[Site] = ()) -> bool:
    """A cache that grew, with entries enough to matter, or where the memory grows.

    Unbounded caches and the program's own bounded ones are named (never the standard library's
    bounded ones, nor memwarden's). Small ones are left out: on a PyTorch program a dozen of the
    library's lru_caches fill with one or two entries as it warms up, and naming them only buries
    the answer.
    """
    if cache.growth_per_s <= 0:
        return False
    top = cache.name.split(".", 1)[0]
    if top == "memwarden" or (cache.maxsize is not None and top in sys.stdlib_module_names):
        return False
    return cache.currsize >= _MIN_CACHE_ENTRIES or _in_top_sites(cache, sites)


# -- trends -------------------------------------------------------------------------------------------


def _trend(
    samples: Sequence[Sample],
    key: str,
    cfg: DiagnosisConfig,
    *,
    bytes_series: bool = True,
    windows: _Windows | None = None,
) -> Trend | None:
    if key in (LIBC_IN_USE, RSS):
        ts, ys = _primary_series(samples, key, windows)
    else:
        ts, ys = _without_windows(*series(list(samples), key), windows)
    if len(ys) < cfg.min_samples:
        return None
    return analyse(
        ts,
        ys,
        min_points=cfg.min_samples,
        alpha=cfg.alpha,
        min_rate=cfg.min_rate_bytes_per_s if bytes_series else 0.0,
        unit="B" if bytes_series else "blocks",
    )


def _for_duration(cfg: DiagnosisConfig, duration: float) -> DiagnosisConfig:
    """The config with the rate floor a run of ``duration`` gets (lower for long runs)."""
    if duration <= cfg.rate_floor_span_s:
        return cfg
    scaled = cfg.min_rate_bytes_per_s * cfg.rate_floor_span_s / duration
    floor = min(cfg.min_rate_bytes_per_s, max(cfg.min_long_rate_bytes_per_s, scaled))
    return dataclasses.replace(cfg, min_rate_bytes_per_s=floor)


def _ramped(samples: Sequence[Sample]) -> float | None:
    """The slower cadence when the samples' spacing varies by more than 2x (the median gaps of the
    first and last quarters compared: a ramping cadence), else None."""
    gaps = [b.mono - a.mono for a, b in itertools.pairwise(samples)]
    if len(gaps) < 8:
        return None
    quarter = len(gaps) // 4
    first, last = statistics.median(gaps[:quarter]), statistics.median(gaps[-quarter:])
    if min(first, last) <= 0 or max(first, last) <= 2.0 * min(first, last):
        return None
    return max(first, last)


def _evenly(samples: list[Sample], limit: int, *, always: bool = False) -> list[Sample]:
    """At most about ``limit`` samples, one per equal slice of time (the first in it), and the last.

    Identity up to ``limit`` samples unless ``always`` (a long run). A digest whose latest rows are
    denser than the rest (a stride over the history, then every recent sample) comes out evenly
    spread, as the trend statistics (equal-count group means, change points) assume.
    """
    if (len(samples) <= limit and not always) or limit < 2:
        return samples
    t0, width = samples[0].mono, (samples[-1].mono - samples[0].mono) / limit
    if width <= 0.0:
        return samples
    kept, last_slot = [], -1
    for s in samples:
        slot = int((s.mono - t0) / width)
        if slot > last_slot:
            kept.append(s)
            last_slot = slot
    if kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    return kept


def _recent(
    samples: list[Sample],
    key: str,
    cfg: DiagnosisConfig,
    duration: float,
    windows: _Windows | None = None,
) -> tuple[Trend, float, float] | None:
    """For a long run: the trend of ``key`` over its recent part, and that part's first and last
    monotonic times; ``None`` for a shorter run or too few recent samples to say."""
    if duration < cfg.long_run_s or not samples:
        return None
    since = samples[-1].mono - duration * cfg.recent_share
    part = [s for s in samples if s.mono >= since]
    tr = _trend(part, key, cfg, windows=_shifted(windows, part[0].mono - samples[0].mono))
    if tr is None or tr.status == "insufficient":
        return None
    return tr, part[0].mono, part[-1].mono


_FLAT_BEFORE = 0.1
"""Before a bend, a series growing under this fraction of its rate after it was flat."""
_ONSET_SHARE = 0.05
"""A bend is looked for up to this share of the points before the end."""


def _primary_series(
    samples: Sequence[Sample], key: str, windows: _Windows | None = None
) -> tuple[list[float], list[float]]:
    """Process memory net of memwarden's own, with the tracemalloc windows taken out (see
    :func:`_without_windows`)."""
    ts, ys = _malloc_used(samples) if key == LIBC_IN_USE else _rss_net_of_tracing(samples)
    return _without_windows(ts, ys, windows)


_MIN_KEPT = 6
"""Samples outside the windows needed to judge a trend on them alone."""


@dataclass(frozen=True)
class _Windows:
    """The tracemalloc windows a series is judged without, and whether to leave out the samples
    of one the run ended in."""

    windows: tuple[WindowEvidence, ...] = ()
    drop_tail: bool = False
    slowdowns: tuple[float | None, ...] = ()
    """Per window, how many times slower the program worked in it (None: not measurable)."""


_CRAWL = 3.0
"""A window that slowed the program's work this many times over says nothing of how it ended."""
_SLOWED = 1.5
"""A window that slowed the program's work less than this keeps its samples in the trends."""
_MIN_WORK_EVENTS = 20
"""Collections of generation 0 needed before a window to measure the program's pace by them."""


def _windows_of(samples: Sequence[Sample], windows: Sequence[WindowEvidence]) -> _Windows:
    """The windows, which of them slowed the program, and whether the run ended in one that slowed
    it to a crawl (see :func:`_slowdown`).

    A window whose measured slowdown is under :data:`_SLOWED` keeps its samples in the trends
    (only the one after it, where memwarden's own work lands, is left out): a chat backend's
    deque-bounded history levelled off just before its window, and the window's flat samples were
    what showed the plateau. A window that slowed it, or whose slowdown cannot be measured, is
    left out. A slow leak under heavy churn ran 9x slower in its window (14 collections a second
    before it, 1.6 inside): its RSS looked flat there, and the run, which ended in it, read as a
    plateau: past :data:`_CRAWL` a window the run ended in says nothing of the end.
    """
    if not windows or len(samples) < 2:
        return _Windows(tuple(windows))
    slowdowns = tuple(_slowdown(samples, w) for w in windows)
    last, t0 = windows[-1], samples[0].mono
    ended_in_last = last.owns_tracing and not any(s.mono - t0 > last.closed_s + 1e-6 for s in samples[:-1])
    crawl = slowdowns[-1] is not None and slowdowns[-1] >= _CRAWL
    return _Windows(tuple(windows), drop_tail=ended_in_last and crawl, slowdowns=slowdowns)


def _slowdown(samples: Sequence[Sample], window: WindowEvidence) -> float | None:
    """How many times slower the program worked while ``window`` was open, or None unmeasurable.

    The program's pace is measured by its own work: generation-0 collections happen every 700
    net container allocations (``gc_collections_gen0`` x 700 + ``gc_count_gen0``), however
    slowly the allocations come. It needs 20 collections before the window and an even pace
    there (its two halves within a factor of two): a pandas program's work makes containers in
    bursts, and no pace can be read from them.
    """
    t0 = samples[0].mono

    def work(s: Sample) -> float | None:
        c, n = s.metrics.get(OBJECTS_GC_COLLECTIONS_GEN0), s.metrics.get(OBJECTS_GC_COUNT_GEN0)
        return None if c is None or n is None else float(c) * 700.0 + float(n)

    before = [
        (s.mono - t0, w) for s in samples if s.mono - t0 <= window.opened_s and (w := work(s)) is not None
    ]
    inside = [
        (s.mono - t0, w)
        for s in samples
        if window.opened_s < s.mono - t0 <= window.closed_s + 1e-6 and (w := work(s)) is not None
    ]
    before = before[-12:]  # the pace just before the window, not the start-up's
    if len(before) < 3 or len(inside) < 2:
        return None
    start = next((i for i, (t, _) in enumerate(before) if t >= min(1.0, before[-1][0] / 2)), 0)
    (ta, wa), (tb, wb) = before[start], before[-1]
    if tb <= ta or (wb - wa) < _MIN_WORK_EVENTS * 700.0:
        return None  # too little work to measure a pace by
    pace_before = (wb - wa) / (tb - ta)
    mid = before[(start + len(before) - 1) // 2]
    paces = [
        (mid[1] - wa) / (mid[0] - ta) if mid[0] > ta else 0.0,
        (wb - mid[1]) / (tb - mid[0]) if tb > mid[0] else 0.0,
    ]
    if min(paces) < 0.5 * max(paces):
        return None  # an uneven pace (numpy work makes few containers): no yardstick
    (tc, wc), (td, wd) = before[-1], inside[-1]
    pace_inside = max(wd - wc, 0.0) / (td - tc) if td > tc else pace_before
    return pace_before / pace_inside if pace_inside > 0 else math.inf


def _distorted(ts: Sequence[float], distortion: _Windows) -> tuple[list[bool], list[bool]]:
    """Which samples a tracemalloc window distorted: ``(inside, after)``. Inside: taken while it was
    open (tracing slows an allocating program several times over: 3x to 25x for a FastAPI app,
    by traceback depth). After: the first one after it (the attribution work ran just before it,
    and what that work allocated and freed, memwarden's estimate of its own RSS cannot fully take
    out: it counts what the program allocated meanwhile too)."""
    inside = [False] * len(ts)
    after = [False] * len(ts)
    for k, w in enumerate(distortion.windows):
        if not w.owns_tracing:
            continue  # tracing was on already: the window changed nothing
        slowdown = distortion.slowdowns[k] if k < len(distortion.slowdowns) else None
        slowed = slowdown is not None and slowdown >= _SLOWED
        closed = w.closed_s + 1e-6
        for i, t in enumerate(ts):
            if w.opened_s < t <= closed:
                inside[i] = slowed
            elif t > closed:
                after[i] = i < len(ts) - 1  # the run's last sample is how it ended: kept
                break
    return inside, after


def _without_windows(
    ts: list[float], ys: list[float], distortion: _Windows | None
) -> tuple[list[float], list[float]]:
    """``(ts, ys)`` with the samples the windows distorted left out, and the stretches between
    them joined at the series' own rate.

    Each stretch of undistorted samples keeps its shape; across a gap the next stretch is moved
    up or down so that the series crosses the gap at the rate of the stretches around it
    (:func:`_gap_rate`). What the window changed in the level (tracing's slowdown, memwarden's own
    work and its estimate) drops out, and the growth, plateau or flatness of the program's
    untraced stretches decides. A window the run ended in keeps its samples (but not the one after
    it): they are all there is to say how the run ended; unless it slowed the program to a crawl
    (``drop_tail``, see :func:`_windows_of`), when they say nothing of it. With fewer than
    :data:`_MIN_KEPT` samples left the series is returned as it is.
    """
    if distortion is None or not distortion.windows or len(ts) < _MIN_KEPT:
        return ts, ys
    inside, after = _distorted(ts, distortion)
    bad = [a or b for a, b in zip(inside, after, strict=True)]
    if not any(bad):
        return ts, ys
    stretches: list[list[int]] = [[]]
    for i, b in enumerate(bad):
        if not b:
            stretches[-1].append(i)
        elif stretches[-1]:
            stretches.append([])
    stretches = [st for st in stretches if st]
    last_good = stretches[-1][-1] if stretches else -1
    tail = [i for i in range(last_good + 1, len(ts)) if not after[i]]
    if tail and stretches and not distortion.drop_tail:
        # the run ended in a window: its samples are the only witnesses of how it ended
        stretches[-1].extend(tail)
    if sum(len(st) for st in stretches) < _MIN_KEPT:
        return ts, ys
    out_t: list[float] = []
    out_y: list[float] = []
    shift = 0.0
    for k, st in enumerate(stretches):
        if k:
            before, first = stretches[k - 1][-1], st[0]
            rate = _gap_rate(ts, ys, stretches[k - 1], st)
            shift += (ys[first] - ys[before]) - rate * (ts[first] - ts[before])
        out_t.extend(ts[i] for i in st)
        out_y.extend(ys[i] - shift for i in st)
    return out_t, out_y


def _gap_rate(ts: Sequence[float], ys: Sequence[float], before: Sequence[int], after: Sequence[int]) -> float:
    """The rate to cross a gap at: the slower of the stretch after it and the latter half of the one
    before (each with three points at least; 0 with neither, and never below 0: three samples
    after a window, the last taken after ``malloc_trim`` at exit, slope down). The slower one, because a stretch
    before the first window is often the start-up (imports, a first load): a gap crossed at that
    rate would make a leak of a warm-up that levelled off."""
    rates = []
    for idx in (list(before[len(before) // 2 :]), list(after)):
        if len(idx) >= 3 and ts[idx[-1]] > ts[idx[0]]:
            rates.append(theil_sen([ts[i] for i in idx], [ys[i] for i in idx])[0])
    return max(0.0, min(rates)) if rates else 0.0  # a gap is never crossed falling: a fall is the estimate's


def _shifted(windows: _Windows | None, by: float) -> _Windows | None:
    """The windows with their times relative to a sample ``by`` seconds after the first."""
    if not by or windows is None:
        return windows
    moved = tuple(
        dataclasses.replace(w, opened_s=w.opened_s - by, closed_s=w.closed_s - by) for w in windows.windows
    )
    return dataclasses.replace(windows, windows=moved)


def _growth_start(
    samples: Sequence[Sample],
    key: str,
    tr: Trend,
    cfg: DiagnosisConfig,
    windows: _Windows | None = None,
) -> GrowthStart:
    """When the leak's growth began: at the bend of a hinge fit when the series was flat before
    it (with the Theil-Sen rate of the points after the bend), else at the first sample (it grew
    from the start, a warm-up included; with the trend's rate)."""
    ts, ys = _primary_series(samples, key, windows)
    offset, rate = 0.0, tr.rate_per_s
    if len(ts) >= 2 * cfg.min_samples:
        bend = detect_change(
            ts, ys, min_after=cfg.min_samples, max_points=len(ts), min_share=_ONSET_SHARE, continuous=True
        )
        if (
            bend is not None
            and bend.slope_after_per_s > 0.0
            and bend.slope_before_per_s <= _FLAT_BEFORE * bend.slope_after_per_s
        ):
            offset = bend.t
            rate = theil_sen(ts[bend.index :], ys[bend.index :])[0]  # since the bend, robustly
    return GrowthStart(t=samples[0].t + offset, offset_s=offset, rate_bytes_per_s=rate)


def _levelled_off(
    samples: Sequence[Sample], key: str, windows: _Windows | None = None
) -> tuple[float, float] | None:
    """For a series that grew and then stopped: ``(offset of the bend, how much it rose)``."""
    ts, ys = _primary_series(samples, key, windows)
    if len(ts) < 12:
        return None
    bend = detect_change(ts, ys, max_points=len(ts), min_share=_ONSET_SHARE, continuous=True)
    if (
        bend is None
        or bend.slope_before_per_s <= 0.0
        or abs(bend.slope_after_per_s) > _FLAT_BEFORE * bend.slope_before_per_s
    ):
        return None
    after = [y for t, y in zip(ts, ys, strict=True) if t >= bend.t]
    rise = statistics.median(after) - statistics.median(ys[: max(5, len(ys) // 50)])
    return bend.t, rise


def _span(seconds: float) -> str:
    """A duration in the words of a long run: ``"3 d 14 h"`` from two days on."""
    if seconds < 2 * 86_400:
        return format_duration(seconds)
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _long_rate(rate: float, duration: float) -> str:
    """A rate per hour for a run of an hour or more (``"2.0 MiB/h"``), else per second."""
    return f"{format_bytes(rate * 3600)}/h" if duration >= 3600 else format_rate(rate)


def _began_sentence(began: GrowthStart, duration: float) -> str:
    """``"It was flat for 3 d 14 h and grows since 2026-12-04 14:00 UTC at 2.0 MiB/h."``"""
    return (
        f"It was flat for {_span(began.offset_s)} and grows since {_when(began.t)} at "
        f"{_long_rate(began.rate_bytes_per_s, duration)}."
    )


def _stopped_sentence(first: Sample, stopped_at: tuple[float, float], duration: float) -> str:
    offset, rise = stopped_at
    return (
        f"Memory grew {format_bytes(rise)} until {_when(first.t + offset)} and has been flat since "
        f"({_span(duration - offset)}): it grew, then stopped, so it is not a current leak."
    )


def _derived(
    samples: Sequence[Sample], key: str, extra: Callable[[Mapping[str, Any]], float]
) -> tuple[list[float], list[float]]:
    """The ``(t, value)`` pairs of ``key`` plus ``extra(metrics)``, like :func:`series`, skipping gaps."""
    if not samples:
        return [], []
    t0 = samples[0].mono
    ts, ys = [], []
    for s in samples:
        v = s.metrics.get(key)
        if v is not None:
            ts.append(s.mono - t0)
            ys.append(float(v) + extra(s.metrics))
    return ts, ys


def _rss_net_of_tracing(samples: Sequence[Sample]) -> tuple[list[float], list[float]]:
    """RSS less memwarden's own: tracemalloc's tables and what memwarden's attribution work left behind."""
    return _derived(samples, RSS, lambda m: -float(m.get(TRACING_OVERHEAD) or 0) - float(m.get(OWN_RSS) or 0))


def _malloc_used(samples: Sequence[Sample]) -> tuple[list[float], list[float]]:
    """malloc's in-use bytes, heap and mmapped chunks together."""
    return _derived(samples, LIBC_IN_USE, lambda m: float(m.get(LIBC_MMAPPED) or 0))


_GIVEN_BACK_SHARE = 0.25
"""A rise whose late floor keeps less than this share of it was given back."""


def _given_back(
    samples: Sequence[Sample],
    key: str,
    tr: Trend | None,
    cfg: DiagnosisConfig,
    windows: _Windows | None = None,
) -> str | None:
    """A sentence saying the series came back down to where its growth began, or ``None``.

    A leak never gives memory back: whatever the program does on top of it, the level it returns
    to rises with what it keeps. So growth counts only where the floor of the last quarter of
    the run (after the warm-up; the very last sample, taken as the program exits, left out)
    stays above the first quarter's median by at least a quarter of the trend's rise, or where it
    fell to that floor by less than the whole rise (a leak growing in arena-sized steps dips to an
    earlier step now and then; a swing that gives back more than the trend grew is no dip). A working
    set that swings with the size of what is in hand (DataFrames of 1k-400k rows: RSS 76 MiB,
    spikes to 92 MiB in the second half, back to 76 MiB at the end) slopes up through its spikes
    but keeps nothing.
    """
    if tr is None or tr.growth_bytes <= 0:
        return None
    ts, ys = _primary_series(samples, key, windows)
    start = tr.warmup_end_t if tr.warmup_end_t is not None else ts[0] if ts else 0.0
    kept = [(t, y) for t, y in zip(ts, ys, strict=True) if t >= start][:-1]
    if len(kept) < 8:
        return None
    quarter = max(2, len(kept) // 4)
    early = statistics.median(y for _, y in kept[:quarter])
    low_at = min(range(len(kept) - quarter, len(kept)), key=lambda i: kept[i][1])
    low_t, low = kept[low_at]
    high = max(y for _, y in kept[:low_at]) if low_at else low
    if low - early >= _GIVEN_BACK_SHARE * tr.growth_bytes or high - low < max(
        tr.growth_bytes, cfg.min_growth_bytes
    ):
        return None
    return (
        f"{key} came back down to {format_bytes(low)} at {low_t:.1f} s, where it was after the warm-up "
        f"({format_bytes(early)}; up to {format_bytes(high)} in between): memory given back was not kept"
    )


def _meaningful_growth(tr: Trend, cfg: DiagnosisConfig) -> bool:
    return (
        tr.status == "growing"
        and tr.significant
        and tr.rate_per_s >= cfg.min_rate_bytes_per_s
        and tr.growth_bytes >= cfg.min_growth_bytes
    )


def _python_rate(
    samples: Sequence[Sample],
    trend_samples: Sequence[Sample],
    window: WindowEvidence | None,
    cfg: DiagnosisConfig,
) -> float | None:
    """Bytes/s of growth the Python allocators account for: tracemalloc's if a window saw it."""
    if window is not None and window.duration_s > 0:
        ts, ys = series(list(samples), TRACED)
        inside = [(t, y) for t, y in zip(ts, ys) if window.opened_s <= t <= window.closed_s + 1e-6]
        if len(inside) >= 4:
            tr = analyse([t for t, _ in inside], [y for _, y in inside], min_points=4, alpha=cfg.alpha)
            return tr.rate_per_s
        return window.traced_growth_per_s
    pym = _trend(trend_samples, PYMALLOC_ALLOCATED, cfg)
    return pym.rate_per_s if pym is not None else None


def _window_rate(samples: Sequence[Sample], key: str, window: WindowEvidence) -> float | None:
    """The rate of process memory (net of memwarden's own) while ``window`` was open, or None
    with fewer than three samples inside it."""
    ts, ys = _malloc_used(samples) if key == LIBC_IN_USE else _rss_net_of_tracing(samples)
    inside = [(t, y) for t, y in zip(ts, ys, strict=True) if window.opened_s <= t <= window.closed_s + 1e-6]
    if len(inside) < 3 or inside[-1][0] <= inside[0][0]:
        return None
    return theil_sen([t for t, _ in inside], [y for _, y in inside])[0]


def _in_flight(window: WindowEvidence | None) -> str | None:
    """A sentence saying the window's growth was in flight, or ``None``: none of the objects
    sampled at its top site was held, and some were found again by the holder search as
    temporaries (nothing in the program held them any more). A leak's objects are still held
    when the search runs, a fraction of a second later; a working set in hand as the window
    closed is gone (a DataFrame's internals: some dropped outright, the rest weakrefs and lists
    in the garbage cycles pandas builds, which the search cannot reach either). The caller checks
    that the block count does not grow with the process: a leak that only C state reaches (an
    ORM's identity map) still grows it."""
    if window is None or not window.holders or not window.sites:
        return None
    if any(not h.path.startswith("<") for h in window.holders):
        return None  # something holds what was sampled: not in flight
    if not any(h.root_kind == "temporary" for h in window.holders):
        return None
    site = window.sites[0]
    return (
        f"what the window traced at {short_path(site.file)}:{site.line} was in flight: by the time "
        "memwarden looked for their holders, nothing held the objects sampled there, and some were dropped"
    )


def _python_explains(
    rss_tr: Trend,
    blocks_tr: Trend | None,
    python_rate: float | None,
    window: WindowEvidence | None,
    cfg: DiagnosisConfig,
    window_rss_rate: float | None = None,
) -> bool:
    """Whether the Python layers account for the process's growth.

    With a window, its traced growth is compared with the process's growth *in the same
    window* when there are samples enough inside it: tracing slows the program, so the window
    saw a fraction of the untraced rate, and comparing it with the untraced RSS trend called
    a FastAPI app keeping every request body (117 KiB/s traced, RSS 1.4 MiB/s untraced) a
    native leak. Without such samples it is compared with the whole run's rate.
    """
    if window is not None and python_rate is not None:
        # the traced bytes' own rate, not the sum of the growing sites: that adds up every site's
        # gross growth, churn included (a SQLAlchemy importer's sites summed 112 KiB/s while its
        # traced bytes grew 2.3 KiB/s), and called a SQLite page cache warming up a Python leak
        python = python_rate
        if window_rss_rate is not None and window_rss_rate > 0 and window.owns_tracing:
            slowdown = max(1.0, rss_tr.rate_per_s / window_rss_rate)
            threshold = max(cfg.min_rate_bytes_per_s / slowdown, cfg.python_share * window_rss_rate)
            return python >= threshold
        threshold = max(cfg.min_rate_bytes_per_s, cfg.python_share * rss_tr.rate_per_s)
        return python >= threshold
    # no window: the allocated-block count is the only Python-side witness
    return blocks_tr is not None and blocks_tr.status == "growing" and blocks_tr.significant


_BYTES_PER_BLOCK = 48.0
"""A pymalloc block's size when the pymalloc table was not read (the median object is 32 to 64 B)."""


def _blocks_bytes_rate(samples: Sequence[Sample], blocks_tr: Trend | None) -> float:
    """Bytes/s that a steadily growing allocated-block count stands for (0 when it does not grow):
    the count's rate times the mean block size pymalloc reported last."""
    if blocks_tr is None or blocks_tr.status != "growing" or not blocks_tr.significant:
        return 0.0
    size = _BYTES_PER_BLOCK
    for s in reversed(samples):
        allocated, blocks = s.metrics.get(PYMALLOC_ALLOCATED), s.metrics.get(BLOCKS)
        if allocated and blocks:
            size = float(allocated) / float(blocks)
            break
    return max(0.0, blocks_tr.rate_per_s) * size


def _untraced_python_rate(
    python_rate: float, rss_rate: float, window: WindowEvidence | None, window_rss_rate: float | None
) -> float:
    """The Python-side rate the program has untraced: the window's, times the slowdown tracing
    caused (the process's rate outside the window over its rate inside), at most the process's
    own rate; the window's as it is when there is nothing to scale it by."""
    if window is None or not window.owns_tracing or not window_rss_rate or window_rss_rate <= 0:
        return python_rate
    slowdown = rss_rate / window_rss_rate
    if slowdown <= 1.0 or python_rate <= 0:
        return python_rate
    return max(python_rate, min(python_rate * slowdown, rss_rate))


def _leak_confidence(
    rss_tr: Trend, blocks_tr: Trend | None, window: WindowEvidence | None, python_explains: bool, n: int
) -> float:
    p = rss_tr.mk.p_value if rss_tr.mk is not None else 1.0
    base = 1.0 - min(1.0, p * 10)
    agree = 1.0
    if python_explains:
        witnesses = int(window is not None) + int(blocks_tr is not None and blocks_tr.status == "growing")
        agree = 1.0 if witnesses >= 2 else 0.92
    else:
        agree = 0.95 if window is not None else 0.8
    size = 1.0 if n >= 8 else 0.85
    return max(0.5, base * agree * size)


# -- retention ----------------------------------------------------------------------------------------


def _last(samples: Sequence[Sample], key: str) -> float | None:
    for s in reversed(samples):
        v = s.metrics.get(key)
        if v is not None:
            return float(v)
    return None


def _max(samples: Sequence[Sample], key: str) -> float | None:
    values = [float(v) for s in samples if (v := s.metrics.get(key)) is not None]
    return max(values) if values else None


def _freed_for_good(samples: Sequence[Sample], ev: Evidence, cfg: DiagnosisConfig) -> bool:
    """Whether live memory fell and stayed down (retention), rather than rising again (a sawtooth).

    A collector's sawtooth also leaves freed memory with the allocator at its low points, but the
    program fills it again at once: that is ordinary reuse, not memory held for nothing. Live
    blocks knocked down twice or more, filled again in between, are such a sawtooth, whatever
    ``malloc_trim`` gave back at the end (the memory the last collection freed, which the next
    cycle would have filled again).
    """
    blocks = _block_counts(samples)
    if _refilled_falls(blocks) >= 2:
        return False
    if ev.trim is not None and ev.trim.returned_bytes >= cfg.retention_min_bytes:
        return True
    if len(blocks) < 3:
        return True  # nothing to tell a sawtooth by: judge on the sizes alone
    peak = max(blocks)
    tail = blocks[len(blocks) - max(2, len(blocks) // 3) :]
    return max(tail) < 0.7 * peak and blocks.index(peak) < len(blocks) - len(tail)


def _freed_but_kept(
    samples: Sequence[Sample], growth: Trend, ev: Evidence, cfg: DiagnosisConfig
) -> list[str] | None:
    """Sentences saying the process grew into memory it had freed, or ``None`` when it did not.

    Growth outside Python is freed memory that glibc keeps, not a native leak, when glibc's free
    chunks grow at least half as fast as RSS (or ``malloc_trim`` gave back at least half the
    growth) while the bytes in use inside malloc (heap and mmapped chunks) grow under a tenth as
    fast. A native leak grows malloc's in-use bytes, which ``malloc_trim`` cannot return; and a
    leak that keeps a small piece of every request's memory fragments the heap, so its free
    chunks grow too (a PyTorch loop keeping a 4 KiB slice of each step: free +33 MiB, in use
    +15 MiB): the in-use bytes, not the free ones, tell them apart. The rates are Theil-Sen
    slopes over the whole run, which one early jump (importing torch) does not move.
    """
    rate = growth.rate_per_s
    if rate <= 0:
        return None
    used_t, used = _malloc_used(samples)
    free_t, free = series(list(samples), LIBC_FREE)
    if len(set(used_t)) < 2 or len(set(free_t)) < 2:
        return None  # no glibc numbers (another libc, or the probe off): nothing to tell them by
    # the floor of the bytes in use, not the samples: what the program has in hand when a sample
    # is taken (a 400k-row DataFrame: +10 MiB for one sample) spikes the samples, not their floor
    used_rate = min(theil_sen(used_t, used)[0], theil_sen(used_t, _rolling_min(used))[0])
    free_rate, _ = theil_sen(free_t, free)
    grown = growth.growth_bytes
    trimmed = float(ev.trim.returned_bytes) if ev.trim is not None else 0.0
    if (free_rate < 0.5 * rate and trimmed < 0.5 * grown) or used_rate >= 0.1 * rate:
        return None
    notes = [
        f"the process grew {format_rate(rate)}, but glibc's free chunks grew {format_rate(free_rate)} and "
        f"its bytes in use {format_rate(used_rate)}: the memory was freed, and glibc keeps it"
    ]
    if ev.trim is not None:
        notes.append(f"malloc_trim(0) gave back {format_bytes(trimmed)} (the run grew {format_bytes(grown)})")
    return notes


def _rolling_min(values: Sequence[float], width: int = 3) -> list[float]:
    """Each value replaced by the least of it and its neighbours (``width`` values centred on it)."""
    half = width // 2
    return [min(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def _sawtooth_kept(samples: Sequence[Sample]) -> list[str] | None:
    """Sentences saying RSS grew under a sawtooth of live Python objects with a flat floor, or None.

    A program that piles up garbage and collects it (``gc.disable()`` and a ``gc.collect()``
    every few seconds) knocks its live blocks down again and again to the same floor; each cycle
    can leave pymalloc a few more arenas it cannot give back (a pool still in use pins its
    arena), so RSS's floor creeps up while nothing is kept: the allocator's retention, not a
    leak. Two knock-downs or more, of at least a quarter of the peak, and lows that rise by under a
    tenth of the swing.
    """
    blocks = _block_counts(samples)
    falls = _refilled_falls(blocks)
    if falls < 2:
        return None
    third = max(2, len(blocks) // 3)
    low_start, low_end = min(blocks[:third]), min(blocks[-third:])
    swing = max(blocks) - min(blocks)
    if swing < 0.25 * max(blocks) or low_end - low_start > 0.1 * swing:
        return None  # noise around a level is no sawtooth; lows that climb are objects kept
    return [
        f"live Python blocks were knocked down {falls} times to the same floor "
        f"({low_start:,.0f} then {low_end:,.0f}) while RSS grew: each cycle of garbage left the "
        "allocator memory it keeps (fragmentation), and nothing is kept alive"
    ]


def _block_counts(samples: Sequence[Sample]) -> list[float]:
    """The allocated-block counts of the samples that have one, in order."""
    return [float(v) for s in samples if (v := s.metrics.get(BLOCKS)) is not None]


def _refilled_falls(values: Sequence[float], fall: float = 0.3, rise: float = 0.1) -> int:
    """How many times ``values`` were knocked down by ``fall`` of their range, with a refill between.

    A fall counts when the series drops that far below its running peak; the next one counts
    only after the series rose again by ``rise`` of its range. A collector's sawtooth sampled every
    second (collections every 2 s: 486k, 279k, 612k, 80k, 199k blocks) has two or more; a working set
    freed once has one, even when the free spreads over two samples. (The trend's own knock-down
    detector, ``_trend._knockdowns``, is made for long series and takes a peak climbed and lost
    within three samples for a spike: it finds none in the ten samples above.)
    """
    if len(values) < 3:
        return 0
    span = max(values) - min(values)
    if span <= 0:
        return 0
    count, armed = 0, True
    peak = trough = values[0]
    for v in values[1:]:
        if armed:
            peak = max(peak, v)
            if peak - v >= fall * span:
                count, armed, trough = count + 1, False, v
        else:
            trough = min(trough, v)
            if v - trough >= rise * span:
                armed, peak = True, v
    return count


def _retention(samples: Sequence[Sample], ev: Evidence, cfg: DiagnosisConfig) -> tuple[float, list[str]]:
    """Bytes the allocators hold free at the end of the run, and sentences saying where."""
    notes: list[str] = []
    pym_free = 0.0
    arena = _last(samples, PYMALLOC_ARENA)
    allocated = _last(samples, PYMALLOC_ALLOCATED)
    if arena is not None and allocated is not None:
        pym_free = max(0.0, arena - allocated)
        util = allocated / arena if arena else None
        util_text = f" ({util:.0%} used)" if util is not None else ""
        notes.append(
            f"pymalloc arenas hold {format_bytes(arena)}{util_text}; "
            f"{format_bytes(pym_free)} of it is free blocks and pools"
        )
    libc_free = _last(samples, LIBC_FREE) or 0.0
    if _last(samples, LIBC_FREE) is not None:
        notes.append(f"glibc holds {format_bytes(libc_free)} in free chunks")
    retained = pym_free + libc_free
    if ev.trim is not None:
        notes.append(
            f"malloc_trim(0) gave back {format_bytes(ev.trim.returned_bytes)} "
            f"(RSS {format_bytes(ev.trim.rss_before_bytes)} -> {format_bytes(ev.trim.rss_after_bytes)})"
        )
        retained = max(retained, pym_free + ev.trim.returned_bytes)
    blocks_max, blocks_end = _max(samples, BLOCKS), _last(samples, BLOCKS)
    if blocks_max and blocks_end is not None and blocks_end < 0.7 * blocks_max:
        notes.append(
            f"live Python blocks fell from {blocks_max:,.0f} to {blocks_end:,.0f} while the memory stayed with the process"
        )
    return retained, notes


# -- attribution and words -------------------------------------------------------------------------------


def _attribution(ev: Evidence) -> tuple[tuple[Site, ...], tuple[TypeGrowth, ...], tuple[Holder, ...]]:
    if not ev.windows:
        return (), (), ()
    with_sites = [w for w in ev.windows if w.sites]
    if not with_sites:
        w = ev.windows[-1]
        return w.sites, w.types, w.holders
    # The latest window with sites is the best witness: it saw the steady state, so its sites lead.
    # In a long run a leak can start at a new site after an earlier one stopped: the earlier
    # windows' top sites (and their holders) follow, so both stay attributed.
    latest = with_sites[-1]
    sites = list(latest.sites)
    holders = list(latest.holders)
    seen = {(s.file, s.line) for s in sites}
    for w in reversed(with_sites[:-1]):
        for site in w.sites[:_EARLIER_SITES]:
            if (site.file, site.line) not in seen:
                seen.add((site.file, site.line))
                sites.append(site)
        holders.extend(h for h in w.holders[:_EARLIER_SITES] if h not in holders)
    return tuple(sites[:_MAX_SITES]), latest.types, tuple(holders[:_MAX_SITES])


_EARLIER_SITES = 3
"""Top sites (and holders) taken from each window before the latest one."""
_MAX_SITES = 10


def layer_figures(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """Start, end and peak of each layer's main figures."""
    out: dict[str, dict[str, Any]] = {}
    if not samples:
        return out
    keys: dict[str, None] = {}  # every metric, in the order first seen
    last: Any = None
    for s in samples:
        ks = s.metrics.keys()
        if ks != last:  # samples mostly share one set of keys: compare the views, in C
            keys.update(dict.fromkeys(ks))
            last = ks
    by_layer: dict[str, list[str]] = {}
    for k in keys:
        layer, _, name = k.partition(".")
        if name:
            by_layer.setdefault(layer, []).append(k)
    gets = [s.metrics.get for s in samples]
    for layer, names in by_layer.items():
        figures: dict[str, Any] = {}
        for k in names:
            values = [v for get in gets if (v := get(k)) is not None]
            if not values:
                continue
            short = k.partition(".")[2]
            figures[short] = {"first": values[0], "last": values[-1], "max": max(values)}
        out[layer] = figures
    return out


def _where(sites: tuple[Site, ...], holders: tuple[Holder, ...]) -> str:
    parts = []
    if sites:
        s = sites[0]
        fn = f" in {s.function}()" if s.function else ""
        parts.append(f"allocated at {short_path(s.file)}:{s.line}{fn}")
    if holders:
        parts.append(f"held by {holders[0].path}")
    return (" " + " and ".join(parts)) if parts else ""


def _summary(
    verdict: str,
    growth: dict[str, float | None],
    sites: tuple[Site, ...],
    holders: tuple[Holder, ...],
    caches: tuple[CacheGrowthInfo, ...],
    layers: dict[str, dict[str, Any]],
    gpu: Any,
) -> str:
    rss = layers.get("process", {}).get("rss_bytes", {})
    if verdict == "python_leak":
        rate = growth.get("python") or growth.get("rss")
        unbounded = [c for c in caches if c.maxsize is None and c.growth_per_s > 0]
        extra = (
            f"; unbounded cache {unbounded[0].name} grows {unbounded[0].growth_per_s:,.0f} entries/s"
            if unbounded
            else ""
        )
        return f"Python objects leak at {format_rate(rate)}{_where(sites, holders)}{extra}."
    if verdict == "native_leak":
        owner = kept_owner(sites, holders)
        if owner is not None:
            site, holder = owner
            return (
                f"Process memory grows {format_rate(growth.get('rss'))} outside Python's allocators, "
                f"in step with {holder.type} objects{_where((site,), (holder,))}: objects that own native "
                f"memory (tensors, arrays, a C library's buffers) are being kept."
            )
        return (
            f"Process memory grows {format_rate(growth.get('rss'))} outside Python's allocators "
            f"(Python-visible allocations stay flat): a C extension, ctypes or native library keeps memory."
        )
    if verdict == "allocator_retention":
        return (
            f"Not a leak: memory was freed but the allocators keep it (RSS {format_bytes(rss.get('last'))}, "
            f"peak {format_bytes(rss.get('max'))}); it will be reused, or returned with malloc_trim / a worker recycle."
        )
    if verdict == "plateau":
        return (
            f"Memory grew then levelled off at {format_bytes(rss.get('last'))}: a warm-up or a cache reaching its "
            f"bound, not a leak."
        )
    if verdict in ("gpu_leak", "gpu_cache_retention") and gpu is not None:
        return str(gpu.summary)
    if verdict == "stable":
        return (
            f"No meaningful growth: RSS {format_bytes(rss.get('first'))} -> {format_bytes(rss.get('last'))}."
        )
    return "Not enough data to decide."


def _gpu_finding(samples: Sequence[Sample]) -> Any:
    if not any(s.metrics.get(GPU_ALLOCATED_BYTES) is not None for s in samples):
        return None
    from ._gpu import classify_gpu

    return classify_gpu(samples)


def _trend_figures(tr: Trend) -> dict[str, float | int | str | None]:
    """A trend's figures for its evidence item (what a report or an exporter shows without parsing)."""
    return {
        "status": tr.status,
        "rate_per_s": tr.rate_per_s,
        "p_value": tr.mk.p_value if tr.mk is not None else None,
        "first": tr.first,
        "last": tr.last,
        "duration_s": tr.duration_s,
        "warmup_end_s": tr.warmup_end_t,
    }
