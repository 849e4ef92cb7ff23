"""The GPU layer's diagnosis: is it a leak of tensors, or PyTorch's cache keeping memory?

Pure functions over the sampled GPU series (the flat metrics of
:class:`memwarden.probes.gpu.GpuReading`, each a list of ``(t, value)``):

``gpu.allocated_bytes``
    bytes in live tensors. Steady growth here is a **gpu_leak**: tensors are kept alive.
``gpu.reserved_bytes``
    bytes the caching allocator holds from the driver. When it sits far above what live
    tensors use, and above what the run's peak ever needed, while the tensors do not grow,
    it is **gpu_cache_retention**: not a leak, the cache keeping freed blocks.
``gpu.peak_allocated_bytes``
    the largest the live tensors ever got (optional; sharpens the retention test).
``gpu.inactive_split_bytes``, ``gpu.alloc_retries``, ``gpu.ooms``
    fragmentation: free pieces of split blocks that cannot be released, and ``cudaMalloc``
    failures that forced the allocator to flush its cache and retry.

The thresholds, and why they are where they are, are in :class:`GpuThresholds`.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._format import format_bytes, format_duration, format_rate
from ..metrics import (
    GPU_ALLOC_RETRIES,
    GPU_ALLOCATED_BYTES,
    GPU_INACTIVE_SPLIT_BYTES,
    GPU_OOMS,
    GPU_PEAK_ALLOCATED_BYTES,
    GPU_RESERVED_BYTES,
)
from ._trend import Trend, analyse

__all__ = [
    "ALLOCATED",
    "ALLOC_RETRIES",
    "INACTIVE_SPLIT",
    "OOMS",
    "PEAK_ALLOCATED",
    "RESERVED",
    "GpuFinding",
    "GpuThresholds",
    "GpuVerdict",
    "classify_gpu",
    "diagnose_gpu",
]

ALLOCATED = GPU_ALLOCATED_BYTES
RESERVED = GPU_RESERVED_BYTES
PEAK_ALLOCATED = GPU_PEAK_ALLOCATED_BYTES
INACTIVE_SPLIT = GPU_INACTIVE_SPLIT_BYTES
ALLOC_RETRIES = GPU_ALLOC_RETRIES
OOMS = GPU_OOMS

GpuVerdict = Literal["gpu_leak", "gpu_cache_retention", "stable", "plateau", "inconclusive"]
Point = tuple[float, "float | int | None"]
SeriesMap = Mapping[str, Sequence[Point]]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class GpuThresholds:
    """Where the GPU diagnosis draws its lines, and why.

    ``min_leak_bytes`` (16 MiB)
        Growth of live tensors smaller than this over the whole run is not called a leak:
        libraries allocate that much once on first use (cuBLAS and cuDNN workspaces take
        several MiB per stream and handle), and it is below anything worth a person's time
        on a device with tens of GiB.
    ``min_cache_bytes`` (256 MiB)
        A cache (reserved - allocated) smaller than this is not reported: the CUDA context
        itself costs the process a few hundred MiB on current GPUs, and the allocator's
        segments come in sizes of up to 20 MiB (and whole tensors beyond), so a few hundred
        MiB of cache is normal bookkeeping.
    ``cache_to_allocated`` (2.0)
        Retention needs a cache more than twice the live tensors: a training step routinely
        frees activations and gradients that take as much again as the weights, and the
        cache is right to keep that much for the next step.
    ``cache_to_peak`` (0.5)
        When the run's peak of live tensors is known, reserved memory must also exceed that
        peak by half again. A cache that holds the peak's worth is what the next peak will
        reuse (releasing it just makes the next step pay ``cudaMalloc`` again); memory
        beyond it is held for shapes that never come back, the sign of fragmentation
        across segments. (On an H100, a loop over random square matmuls kept 3.26 GB
        reserved for a 1.26 GB peak: retention; with ``expandable_segments:True`` it kept
        0.88 GB: the cache only.)
    ``fragmented_split_bytes`` (128 MiB) and ``fragmented_split_share`` (0.2)
        ``inactive_split_bytes`` above both the floor and this share of reserved memory
        flags fragmentation: a fifth of the cache is in free pieces of split blocks that
        cannot serve a larger tensor and that ``empty_cache()`` cannot release.
        Any rise of ``alloc_retries`` flags it too: each retry is a failed ``cudaMalloc``
        that made the allocator free its whole cache, synchronising the device.
    ``min_points``, ``alpha``, ``min_leak_rate_bytes_per_s``
        passed to the trend test of the live tensors.
    """

    min_points: int = 5
    alpha: float = 0.01
    min_leak_rate_bytes_per_s: float = 0.0
    min_leak_bytes: float = 16 * _MiB
    min_cache_bytes: float = 256 * _MiB
    cache_to_allocated: float = 2.0
    cache_to_peak: float = 0.5
    fragmented_split_bytes: float = 128 * _MiB
    fragmented_split_share: float = 0.2


@dataclass(frozen=True)
class GpuFinding:
    """What the GPU layer shows, in one verdict, with the numbers behind it and what to do.

    ``evidence`` holds plain numbers (bytes, bytes per second, counts, seconds) under stable
    names, e.g. ``allocated_end_bytes``, ``reserved_end_bytes``, ``cached_end_bytes``,
    ``allocated_slope_bytes_per_s``; ``None`` where a series was missing.
    """

    verdict: GpuVerdict
    confidence: float
    summary: str
    evidence: dict[str, float | int | None]
    fragmentation: bool
    advice: tuple[str, ...]

    @property
    def leak(self) -> bool:
        """Whether the finding is a leak (only ``gpu_leak`` is)."""
        return self.verdict == "gpu_leak"


def _points(series: SeriesMap, key: str) -> tuple[list[float], list[float]]:
    ts: list[float] = []
    ys: list[float] = []
    for point in series.get(key, ()):
        t, v = point
        if v is None:
            continue
        ts.append(float(t))
        ys.append(float(v))
    return ts, ys


def _end_level(ys: list[float]) -> float | None:
    """The level at the end of a series: the median of its last quarter (robust to one odd tick)."""
    if not ys:
        return None
    tail = ys[-max(1, len(ys) // 4) :]
    return float(statistics.median(tail))


def _counter_rise(ys: list[float]) -> float | None:
    """How much a counter rose over the run, ignoring resets (``reset_accumulated_memory_stats``)."""
    if not ys:
        return None
    return float(sum(max(b - a, 0.0) for a, b in itertools.pairwise(ys)))


def _leak_confidence(trend: Trend) -> float:
    """How sure the growth is real: 1 - the Mann-Kendall p-value, at most 0.99."""
    if trend.mk is not None and 0.0 <= trend.mk.p_value <= 1.0:
        return round(min(0.99, 1.0 - trend.mk.p_value), 4)
    return 0.9 if trend.significant else 0.6


def _calm_confidence(samples: int) -> float:
    """How sure "it does not grow" is: more samples, more sure (as the process-layer classifier)."""
    return 0.9 if samples >= 8 else 0.7


def _margin_confidence(value: float, threshold: float) -> float:
    """0.6 just over a threshold, approaching 0.99 as the value reaches many times it."""
    if threshold <= 0 or value <= threshold:
        return 0.6
    return round(min(0.99, 0.6 + 0.4 * (1.0 - threshold / value)), 4)


_EXPANDABLE = (
    "Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (in the environment, before the program "
    "starts CUDA): tensors of changing sizes then reuse one growing segment instead of leaving "
    "segments of old sizes in the cache."
)
_EMPTY_CACHE = (
    "torch.cuda.empty_cache() hands the unused cached segments back to the driver, so other "
    "processes (and nvidia-smi) see them free; it does not give this process more memory, it "
    "synchronises the device, and the next allocations pay cudaMalloc again. Call it rarely "
    "(between phases, or through memwarden's EmptyCachePolicy with a threshold and a rate "
    "limit), never on every step."
)
_FIND_HOLDERS = (
    "Find where the tensors are held: lists or dicts that collect outputs, caches keyed by "
    "request, module or class attributes, and losses or outputs stored without .detach() or "
    ".item() (which keep the whole autograd graph alive). memwarden's GPU allocation recorder "
    "(GpuHistoryRecorder) names the source lines whose blocks stay allocated."
)


def _fragmentation_advice(split_end: float | None, retries: float | None, ooms: float | None) -> list[str]:
    out: list[str] = []
    if split_end:
        out.append(
            f"{format_bytes(split_end)} are free pieces of split blocks that no larger tensor can use "
            "and empty_cache() cannot release: expandable_segments:True avoids the splitting, or "
            "max_split_size_mb:<N> in PYTORCH_CUDA_ALLOC_CONF stops the allocator from splitting "
            "blocks larger than N MiB."
        )
    if retries:
        out.append(
            f"cudaMalloc failed {retries:.0f} time(s) and the allocator freed its cache and retried "
            "(each retry synchronises the device): lower the peak (smaller batches, activation "
            "checkpointing) or use expandable segments."
        )
    if ooms:
        out.append(
            f"{ooms:.0f} CUDA out-of-memory error(s) were raised during the run: "
            "torch.cuda.memory_summary() at that moment shows where the memory was."
        )
    return out


def diagnose_gpu(series: SeriesMap, thresholds: GpuThresholds | None = None) -> GpuFinding:
    """The GPU verdict from the sampled series (``{"gpu.allocated_bytes": [(t, value), ...], ...}``).

    Order of the decision: too few samples of live tensors → ``inconclusive``; live tensors
    growing steadily by more than ``min_leak_bytes`` → ``gpu_leak``; a cache far beyond what
    live tensors and the run's peak need → ``gpu_cache_retention``; live tensors that grew
    and levelled off → ``plateau``; else ``stable``. Fragmentation is flagged beside any of
    them.
    """
    th = thresholds or GpuThresholds()
    ta, ya = _points(series, ALLOCATED)
    tr, yr = _points(series, RESERVED)
    _, ypeak = _points(series, PEAK_ALLOCATED)
    _, ysplit = _points(series, INACTIVE_SPLIT)
    _, yretry = _points(series, ALLOC_RETRIES)
    _, yoom = _points(series, OOMS)

    allocated_end = _end_level(ya)
    reserved_end = _end_level(yr)
    cached_end = (
        None if allocated_end is None or reserved_end is None else max(reserved_end - allocated_end, 0.0)
    )
    peak_candidates = [max(ya)] if ya else []
    if ypeak:
        peak_candidates.append(ypeak[-1])
    working_set = max(peak_candidates) if peak_candidates else None
    split_end = _end_level(ysplit)
    retries = _counter_rise(yretry)
    ooms = _counter_rise(yoom)
    duration = (ta[-1] - ta[0]) if len(ta) >= 2 else 0.0

    trend_a = analyse(ta, ya, min_points=th.min_points, alpha=th.alpha, min_rate=th.min_leak_rate_bytes_per_s)
    trend_r = analyse(tr, yr, min_points=th.min_points, alpha=th.alpha) if yr else None

    evidence: dict[str, float | int | None] = {
        "samples": len(ya),
        "duration_s": round(duration, 3),
        "allocated_end_bytes": allocated_end,
        "reserved_end_bytes": reserved_end,
        "cached_end_bytes": cached_end,
        "peak_allocated_bytes": working_set,
        "allocated_slope_bytes_per_s": trend_a.slope_per_s if trend_a.status != "insufficient" else None,
        "allocated_growth_bytes": trend_a.growth_bytes if trend_a.status != "insufficient" else None,
        "reserved_slope_bytes_per_s": (
            trend_r.slope_per_s if trend_r is not None and trend_r.status != "insufficient" else None
        ),
        "inactive_split_end_bytes": split_end,
        "alloc_retries_rise": retries,
        "ooms_rise": ooms,
    }

    split_floor = max(th.fragmented_split_bytes, th.fragmented_split_share * (reserved_end or 0.0))
    fragmentation = bool((split_end is not None and split_end > split_floor) or (retries or 0.0) > 0)
    frag_advice = _fragmentation_advice(split_end if fragmentation else None, retries, ooms)
    frag_note = " The cache is fragmented." if fragmentation else ""

    if trend_a.status == "insufficient" or len(ya) < th.min_points:
        return GpuFinding(
            verdict="inconclusive",
            confidence=0.0,
            summary=(
                f"Only {len(ya)} GPU sample(s) over {format_duration(duration)}: too few to tell whether "
                f"GPU memory grows ({trend_a.reason})."
            ),
            evidence=evidence,
            fragmentation=fragmentation,
            advice=tuple(frag_advice),
        )

    growth = trend_a.growth_bytes
    if trend_a.status == "growing" and growth >= th.min_leak_bytes:
        return GpuFinding(
            verdict="gpu_leak",
            confidence=_leak_confidence(trend_a),
            summary=(
                f"GPU memory held by live tensors grows {format_rate(trend_a.slope_per_s)} "
                f"({format_bytes(growth, signed=True)} over {format_duration(duration)}, now "
                f"{format_bytes(allocated_end)}): tensors are being kept alive.{frag_note}"
            ),
            evidence=evidence,
            fragmentation=fragmentation,
            advice=(_FIND_HOLDERS, *frag_advice),
        )

    assert allocated_end is not None  # there are at least min_points samples of it
    retention_floor = max(th.min_cache_bytes, th.cache_to_allocated * allocated_end)
    beyond_peak: float | None = None
    peak_floor: float | None = None
    if ypeak and working_set is not None and reserved_end is not None:
        beyond_peak = reserved_end - working_set
        peak_floor = th.cache_to_peak * working_set
    evidence["retention_floor_bytes"] = retention_floor
    evidence["reserved_beyond_peak_bytes"] = beyond_peak

    over_cache = cached_end is not None and cached_end > retention_floor
    over_peak = beyond_peak is None or (peak_floor is not None and beyond_peak > peak_floor)
    if over_cache and over_peak and cached_end is not None and reserved_end is not None:
        confidence = _margin_confidence(cached_end, retention_floor)
        if beyond_peak is not None and peak_floor is not None:
            confidence = min(confidence, _margin_confidence(beyond_peak, max(peak_floor, 1.0)))
        growing = ""
        if trend_r is not None and trend_r.status == "growing":
            growing = f", still growing {format_rate(trend_r.slope_per_s)}"
        peak_text = f", peak {format_bytes(working_set)}" if ypeak else ""
        return GpuFinding(
            verdict="gpu_cache_retention",
            confidence=confidence,
            summary=(
                f"PyTorch's caching allocator holds {format_bytes(reserved_end)}{growing} while live "
                f"tensors use {format_bytes(allocated_end)}{peak_text}: {format_bytes(cached_end)} is cached "
                f"for reuse, not leaked.{frag_note}"
            ),
            evidence=evidence,
            fragmentation=fragmentation,
            advice=(_EXPANDABLE, _EMPTY_CACHE, *frag_advice),
        )

    reserved_text = f" ({format_bytes(reserved_end)} reserved)" if reserved_end is not None else ""
    # After a warm-up the analysed span is flat: the rise is the warm-up's (or the step's).
    rise = trend_a.warmup_rise or (trend_a.last - trend_a.first)
    if trend_a.status in ("plateau", "step") and rise >= th.min_leak_bytes:
        evidence["allocated_rise_bytes"] = rise
        return GpuFinding(
            verdict="plateau",
            confidence=0.8,
            summary=(
                f"GPU memory held by live tensors grew {format_bytes(rise, signed=True)} and levelled off at "
                f"{format_bytes(allocated_end)}{reserved_text}: a warm-up or a cache reaching its size, "
                f"not a leak.{frag_note}"
            ),
            evidence=evidence,
            fragmentation=fragmentation,
            advice=tuple(frag_advice),
        )

    advice = list(frag_advice)
    if fragmentation:
        advice.insert(0, _EXPANDABLE)
    cache_note = ""
    if cached_end is not None and reserved_end is not None and cached_end > th.min_cache_bytes:
        if working_set is not None and reserved_end <= working_set:
            # A large cache that the run's peak did need: the allocator doing its job.
            cache_note = (
                f" The allocator keeps {format_bytes(cached_end)} cached, no more than the run's peak of "
                f"{format_bytes(working_set)} needed: it will be reused."
            )
        else:
            cache_note = f" The allocator keeps {format_bytes(cached_end)} cached for reuse."
        advice.append(_EMPTY_CACHE)
    return GpuFinding(
        verdict="stable",
        confidence=_calm_confidence(len(ya)),
        summary=(
            f"GPU memory held by live tensors is stable at {format_bytes(allocated_end)}{reserved_text}."
            f"{cache_note}{frag_note}"
        ),
        evidence=evidence,
        fragmentation=fragmentation,
        advice=tuple(advice),
    )


def classify_gpu(samples: Sequence[Any], thresholds: GpuThresholds | None = None) -> GpuFinding:
    """:func:`diagnose_gpu` over sampler ticks (objects with ``.mono`` seconds and ``.metrics``)."""
    keys = (ALLOCATED, RESERVED, PEAK_ALLOCATED, INACTIVE_SPLIT, ALLOC_RETRIES, OOMS)
    series: dict[str, list[Point]] = {key: [] for key in keys}
    if samples:
        t0 = float(getattr(samples[0], "mono", getattr(samples[0], "t", 0.0)))
        for sample in samples:
            t = float(getattr(sample, "mono", getattr(sample, "t", 0.0))) - t0
            metrics: Mapping[str, Any] = getattr(sample, "metrics", {})
            for key in keys:
                value = metrics.get(key)
                if isinstance(value, (int, float)):
                    series[key].append((t, value))
    return diagnose_gpu(series, thresholds)
