"""Robust trend statistics for one memory series: does it grow, how fast, and is it real?

A series is a list of sample times ``t`` (seconds) and values ``y`` (bytes, or a count: the
units are the caller's). :func:`analyse` answers, in one :class:`Trend`, whether the series
keeps growing (a leak), grew and then levelled off (a warm-up, a cache reaching its bound),
jumped once and stayed flat (start-up load), oscillates around a flat floor (garbage collection,
caches being cleared), only wanders (noise), or shrinks.

The building blocks are public too:

- :func:`theil_sen`: the median of the slopes between every pair of samples. One wild sample,
  or a few, barely moves it (a least-squares line would follow them).
- :func:`sen_slope_ci`: a confidence interval for that slope (Sen, 1968).
- :func:`mann_kendall`: a test of "is there a monotonic trend at all?" that counts how often a
  later sample is above an earlier one; it looks at the sign of each change, not its size.
- :func:`floor` and :func:`peaks`: the lowest (highest) value in each time window; a series
  knocked down again and again by the garbage collector leaks only if its floor rises.
- :func:`detect_change`: where a warm-up ends (the one point where the series changes course).

All of them are pure Python. The exact computations look at every pair of samples, so above
``max_points`` samples (300 unless told) the series is first reduced to :data:`GROUPS`
consecutive equal-count groups, each replaced by its mean time and mean value. For a trend
under independent noise this loses almost no power (each mean is less noisy by the square root
of the group size), and it bounds the cost: about 10 ms for 100,000 samples.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import islice, pairwise
from operator import le, sub
from typing import Literal

from memwarden._format import format_bytes, format_duration
from memwarden.exceptions import UsageError

MAX_EXACT_POINTS = 300
"""Up to this many samples the statistics are exact; above it they run on :data:`GROUPS` means."""

GROUPS = 200
"""How many equal-count group means stand for a series longer than ``max_points``."""

_MAD_TO_SD = 1.4826  # median absolute deviation x 1.4826 = the standard deviation of normal noise
_NOISE_SAMPLE = 4000  # spreads and quantiles are estimated on at most this many evenly spread values
_CHANGE_PENALTY = 6.0  # a change of course must improve the fit by more than this x ln(points)
_KNOCKDOWN_STEPS = 5.0  # a knock-down falls by more than this many robust s.d. of one step ...
_KNOCKDOWN_RANGE = 0.25  # ... and by more than this fraction of the series' range
_GLITCH = 0.5  # a peak climbed, or a fall made good, this much of the drop ...
_GLITCH_STEPS = 3  # ... within this many steps is a glitch (spike or dip), not a knock-down
_FLOOR_AGREES = 0.5  # with too few windows to test, the floor must rise at least half as fast
_LEVELLED = 0.1  # a tail growing at under a tenth of the earlier rate has levelled off
_SLOWED = 0.1  # "the tail is slower" is tested at alpha x this (a missed leak costs more)
_HOLDS = 0.25  # a detected warm-up holds when the series moves under this share of its rise after it
_RISE_NOISE = 4.0  # a rise before a plateau or a step must exceed this many times the noise
_STEP_JUMP = 0.6  # a rise is a step when one jump makes this fraction of it ...
_STEP_QUICK = 0.1  # ... or when it took under this fraction of the run

Status = Literal["growing", "plateau", "step", "flat", "shrinking", "insufficient"]
Direction = Literal["up", "down", "flat"]
Basis = Literal["samples", "floor", "peaks"]


@dataclasses.dataclass(frozen=True)
class MannKendall:
    """The Mann-Kendall trend test on a series in time order.

    ``s`` counts the pairs where the later value is higher minus those where it is lower;
    ``var_s`` is its variance when there is no trend, corrected for tied values; ``z`` the
    continuity-corrected normal score; ``p_value`` the two-sided chance of an ``|s|`` at least
    this large without a trend; ``tau`` Kendall's tau-b between time and value (-1 steadily
    down, +1 steadily up, 0 for no trend or a constant series). ``n`` is the number of points
    tested (group means, for a long series).
    """

    n: int
    s: int
    var_s: float
    z: float
    p_value: float
    tau: float


@dataclasses.dataclass(frozen=True)
class ChangePoint:
    """Where a series changes course (the end of a warm-up), from a two-segment line fit.

    ``t`` is the time of the first point after the change and ``index`` its position among the
    points examined; ``slope_before_per_s`` / ``slope_after_per_s`` are the slopes of the two
    segments; ``jump`` is how far the second line starts above (below, if negative) where the
    first one ended; ``improvement`` is how much better two lines fit than one
    (``points x ln(SSE one line / SSE two lines)``).
    """

    t: float
    index: int
    slope_before_per_s: float
    slope_after_per_s: float
    jump: float
    improvement: float


@dataclasses.dataclass(frozen=True)
class Trend:
    """What one series does, the numbers behind the call, and a sentence saying why.

    ``status`` is the call: ``growing`` (keeps growing to the end), ``plateau`` (grew, then
    levelled off), ``step`` (changed once, abruptly, then stayed flat), ``flat``, ``shrinking``,
    or ``insufficient`` (too few samples to say). ``plateau`` and ``step`` repeat it as booleans.

    The *analysed span* is the series after its warm-up; ``warmup_end_t`` is where the warm-up
    ended (given, or detected; ``None`` when there is none) and ``warmup_rise`` how much the
    level rose (negative: fell) during it. For a plateau found at the end of the series,
    ``warmup_end_t`` is where the last third, the levelled part, begins.

    ``basis`` says which values the call rests on: the ``samples``, or, for a series knocked down
    again and again (``cycles`` knock-downs, typically ``swing`` deep), its ``floor`` (the minimum
    of each window) or its ``peaks`` (the maximum). Over the analysed span, on that basis:
    ``slope_per_s`` and ``intercept`` are the Theil-Sen line, ``slope_ci`` its ``1 - alpha``
    interval, ``mk`` the Mann-Kendall test (``None`` only when ``insufficient``),
    ``significant`` whether ``mk`` passes at ``alpha``, and ``direction`` whether the trend is
    significant *and* faster than ``min_rate`` (``"up"``/``"down"``) or not (``"flat"``).
    ``rate_per_s`` is the same slope (the one to act on); ``sample_slope_per_s`` the samples'
    own Theil-Sen slope, which a sawtooth biases. ``growth`` is how much the series grew in
    the part that decides the call: ``rate_per_s`` x the analysed span for ``growing``,
    ``shrinking`` and ``flat``; the rise before levelling off for ``plateau`` and ``step``.

    ``tail_slope_per_s`` is the slope of the last third of the analysed span (``None`` with too
    few points there); ``floor_slope_per_s`` / ``peak_slope_per_s`` the slopes of the per-window
    minima / maxima over the analysed span. ``noise`` is the robust spread of the samples
    around their line (1.4826 x the median absolute residual: the standard deviation, for
    normal noise); for an oscillating series it includes the oscillation.
    """

    status: Status
    reason: str
    n: int
    duration_s: float
    first: float
    last: float
    min: float
    max: float
    warmup_end_t: float | None
    warmup_rise: float
    basis: Basis
    slope_per_s: float
    intercept: float
    slope_ci: tuple[float, float] | None
    mk: MannKendall | None
    significant: bool
    direction: Direction
    rate_per_s: float
    sample_slope_per_s: float
    growth: float
    tail_slope_per_s: float | None
    floor_slope_per_s: float | None
    peak_slope_per_s: float | None
    cycles: int
    swing: float
    noise: float
    plateau: bool
    step: bool

    @property
    def growth_bytes(self) -> float:
        """``growth``, under the name that reads right when the values are bytes."""
        return self.growth


# ----------------------------------------------------------------------------------------------
# Building blocks


def theil_sen(
    t: Sequence[float], y: Sequence[float], *, max_points: int = MAX_EXACT_POINTS
) -> tuple[float, float]:
    """The Theil-Sen line through the points ``(t, y)``: ``(slope, intercept)``.

    The slope is the median of the slopes between every pair of points taken at different
    times; the intercept is the median of ``y - slope * t``. Exact for up to ``max_points``
    points, computed on :data:`GROUPS` group means above that. Raises :class:`UsageError`
    unless two points were taken at different times.
    """
    ts, ys = _floats(t, y)
    fit = _line(ts, ys, max_points)
    return fit.slope, fit.intercept


def sen_slope_ci(
    t: Sequence[float],
    y: Sequence[float],
    *,
    confidence: float = 0.95,
    max_points: int = MAX_EXACT_POINTS,
) -> tuple[float, float] | None:
    """A ``confidence`` interval for the Theil-Sen slope (Sen's method): ``(low, high)``.

    The bounds are the pairwise slopes ranked ``z`` standard deviations of the Mann-Kendall
    statistic either side of the median (ties in ``t`` and in ``y`` corrected for). ``None``
    when there are too few points for an interval at that confidence.
    """
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, not {confidence}")
    ts, ys = _floats(t, y)
    return _line(ts, ys, max_points, confidence=confidence).ci


def mann_kendall(y: Sequence[float], *, max_points: int = MAX_EXACT_POINTS) -> MannKendall:
    """The Mann-Kendall trend test of the values ``y`` taken in order (see :class:`MannKendall`).

    Exact for up to ``max_points`` values (O(n log n) comparisons); above that it tests
    :data:`GROUPS` group means, which bounds its cost.
    """
    ys = list(map(float, y))
    if len(ys) > max(max_points, 2):
        ys = _group_means(ys, GROUPS)
    return _mann_kendall(ys)


def floor(t: Sequence[float], y: Sequence[float], windows: int) -> tuple[list[float], list[float]]:
    """The lowest sample in each of ``windows`` equal time windows: ``(times, minima)``.

    Each minimum is reported at the time it was taken; empty windows are skipped. Samples must
    be in time order. With windows at least as long as a garbage-collection cycle, the floor is
    what the process keeps between collections.
    """
    ts, ys = _floats(t, y)
    return _window_extremes(ts, ys, windows, min)


def peaks(t: Sequence[float], y: Sequence[float], windows: int) -> tuple[list[float], list[float]]:
    """The highest sample in each of ``windows`` equal time windows: ``(times, maxima)``."""
    ts, ys = _floats(t, y)
    return _window_extremes(ts, ys, windows, max)


def detect_change(
    t: Sequence[float],
    y: Sequence[float],
    *,
    min_after: int = 3,
    max_points: int = MAX_EXACT_POINTS,
    min_share: float = 0.2,
    continuous: bool = False,
) -> ChangePoint | None:
    """Where the series changes course, or ``None`` when one straight line fits about as well.

    Fits a straight line (least squares) on each side of every candidate split and keeps the
    split with the smallest total squared error. The change counts only when two lines beat one
    by more than a penalty that grows with the number of points
    (``points x ln(SSE1 / SSE2) > 6 ln(points)``), so that noise alone rarely makes one. At least
    ``min_after`` points, and a ``min_share`` of the series (a fifth unless told), stay after the
    change. Points must be in time order; above ``max_points`` the search runs on :data:`GROUPS`
    group means.

    ``continuous=True`` fits two lines that meet at the change (a hinge) instead of two free ones:
    the model of a slope that changes without a jump, such as a leak starting in a flat service.
    Two free lines would rather split at any drop in the series (a nightly trim), the hinge at the
    bend; its ``jump`` is 0.
    """
    if not 0.0 <= min_share < 1.0:
        raise UsageError(f"min_share must be at least 0 and below 1, not {min_share}")
    ts, ys = _floats(t, y)
    return _detect_change(ts, ys, min_after, max_points, min_share=min_share, continuous=continuous)


def per_iteration(trend: Trend, iterations_per_s: float) -> float:
    """How much the series grows per iteration (request, batch, loop) at ``iterations_per_s``."""
    if not iterations_per_s > 0.0:
        raise UsageError(f"iterations_per_s must be positive, not {iterations_per_s}")
    return trend.rate_per_s / iterations_per_s


# ----------------------------------------------------------------------------------------------
# The whole analysis


def analyse(
    t: Sequence[float],
    y: Sequence[float],
    *,
    min_points: int = 5,
    alpha: float = 0.01,
    min_rate: float = 0.0,
    warmup_s: float | None = None,
    unit: str = "B",
) -> Trend:
    """Decide what one series does: grow, level off, change once, stay flat, or shrink.

    ``t`` are times in seconds and ``y`` the values; pairs with a non-finite number are
    dropped and the rest put in time order. ``alpha`` is the significance level of every test.
    Growth slower than ``min_rate`` (units per second) counts as none. ``warmup_s`` is the
    warm-up to leave out at the start; without it the warm-up is detected. ``unit`` only
    shapes the ``reason``: ``"B"`` writes bytes as KiB/MiB/GiB, anything else is written after
    the number (``unit="blocks"``: ``"1.2k blocks"``).
    """
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"alpha must be between 0 and 1, not {alpha}")
    if min_points < 3:
        raise UsageError(f"min_points must be at least 3, not {min_points}")
    if not (math.isfinite(min_rate) and min_rate >= 0.0):
        raise UsageError(f"min_rate must be a finite number >= 0, not {min_rate}")
    if warmup_s is not None and not (math.isfinite(warmup_s) and warmup_s >= 0.0):
        raise UsageError(f"warmup_s must be a finite number >= 0, not {warmup_s}")
    ts, ys = _clean(t, y)
    return _Analysis(
        ts, ys, min_points=min_points, alpha=alpha, min_rate=min_rate, warmup_s=warmup_s, unit=unit
    ).run()


class _Analysis:
    """One run of :func:`analyse` on a cleaned, time-ordered series."""

    def __init__(
        self,
        ts: list[float],
        ys: list[float],
        *,
        min_points: int,
        alpha: float,
        min_rate: float,
        warmup_s: float | None,
        unit: str,
    ) -> None:
        self.ts, self.ys = ts, ys
        self.min_points, self.alpha, self.min_rate = min_points, alpha, min_rate
        self.warmup_s, self.unit = warmup_s, unit
        self.confidence = 1.0 - alpha

    def run(self) -> Trend:
        ts, ys = self.ts, self.ys
        n = len(ts)
        needed = max(self.min_points, _fewest_testable(self.alpha))
        if n < needed:
            why = "" if n < self.min_points else f" to show a trend at p<{self.alpha:g}"
            return self._insufficient(f"too few points ({n}; {needed} needed{why})")
        duration = ts[-1] - ts[0]
        if duration <= 0.0:
            return self._insufficient(f"all {n} samples were taken at the same time")

        # A series knocked down again and again is judged by its floor, windows one cycle long.
        troughs, drops = _knockdowns(ys)
        cycle_s = _cycle_window(ts, troughs)
        oscillating = cycle_s is not None
        windows = int(duration / cycle_s) if cycle_s else min(30, n // 4)
        floor_t, floor_y = _window_extremes(ts, ys, max(1, windows), min)
        peak_t, peak_y = _window_extremes(ts, ys, max(1, windows), max)

        self.duration, self.oscillating = duration, oscillating
        self.troughs, self.swing = troughs, statistics.median(drops) if oscillating else 0.0
        self.floor_t, self.floor_y, self.peak_t, self.peak_y = floor_t, floor_y, peak_t, peak_y
        self.level_t, self.level_y = (floor_t, floor_y) if oscillating else (ts, ys)

        # The warm-up: given, or where the level changes course. A detected one must earn its
        # place: the series grows after it, or it rose (fell) far more than it moves after it.
        if self.warmup_s is not None:
            given = self._decide(ts[0] + self.warmup_s if self.warmup_s > 0.0 else None, detected=False)
            assert given is not None  # only a detected warm-up can be turned down
            return given
        if len(self.level_t) >= 2 * self.min_points:
            after = max(self.min_points, _fewest_testable(self.alpha))
            change = _detect_change(self.level_t, self.level_y, after, MAX_EXACT_POINTS)
            if change is not None:
                trend = self._decide(change.t, detected=True)
                if trend is not None:
                    return trend
        trend = self._decide(None, detected=False)
        assert trend is not None
        return trend

    def _decide(self, cut: float | None, *, detected: bool) -> Trend | None:
        """The call with the warm-up ending at ``cut``; ``None`` when a ``detected`` cut does not
        hold up (nothing grows after it, and it did not rise or fall clearly more than the
        series moves after it)."""
        ts, ys, n, duration = self.ts, self.ys, len(self.ts), self.duration
        level_t, level_y, oscillating = self.level_t, self.level_y, self.oscillating
        troughs, swing = self.troughs, self.swing
        floor_t, floor_y, peak_t, peak_y = self.floor_t, self.floor_y, self.peak_t, self.peak_y
        body = bisect_left(ts, cut) if cut is not None else 0
        bt, by = ts[body:], ys[body:]
        if len(bt) < self.min_points or bt[-1] <= bt[0]:
            warmup = format_duration(cut - ts[0]) if cut is not None else "0 s"
            return self._insufficient(f"only {len(bt)} points after the {warmup} warm-up")
        span = bt[-1] - bt[0]
        lt, ly = _from(level_t, level_y, bt[0])

        samples = self._fit(bt, by)
        noise = _robust_scale(_residuals(bt, by, samples))
        floor_slope = _slope_or_none(*_from(floor_t, floor_y, bt[0]))
        peak_slope = _slope_or_none(*_from(peak_t, peak_y, bt[0]))

        # Which values the call rests on.
        basis: Basis = "samples"
        level, level_pts = samples, (bt, by)
        if oscillating and self._testable(lt):
            basis, level, level_pts = "floor", self._fit(lt, ly), (lt, ly)
        up, down = self._rises(level), self._falls(level)
        vetoed = False
        if oscillating and basis == "samples" and up:
            # Too few windows to test the floor: it must at least rise along with the samples.
            vetoed = floor_slope is None or floor_slope < _FLOOR_AGREES * level.slope
            up = not vetoed
        if basis == "floor" and not up and not down:
            pt, py = _from(peak_t, peak_y, bt[0])
            if self._testable(pt):
                peak_fit = self._fit(pt, py)
                if self._rises(peak_fit):
                    basis, level, level_pts, up = "peaks", peak_fit, (pt, py), True
        level_noise = noise if basis == "samples" else _robust_scale(_residuals(*level_pts, level))
        tail = self._third(*level_pts, last=True)
        warm = self._warmup(cut, lt, ly, level, level_noise)
        rise = warm.rise
        if detected and not up and not down and (rise == 0.0 or abs(level.slope * span) > _HOLDS * abs(rise)):
            return None

        base = Trend(
            status="flat",
            reason="",
            n=n,
            duration_s=duration,
            first=ys[0],
            last=ys[-1],
            min=min(ys),
            max=max(ys),
            warmup_end_t=cut,
            warmup_rise=rise,
            basis=basis,
            slope_per_s=level.slope,
            intercept=level.intercept,
            slope_ci=level.ci,
            mk=level.mk,
            significant=level.mk.p_value < self.alpha,
            direction="up" if up else "down" if down else "flat",
            rate_per_s=level.slope,
            sample_slope_per_s=samples.slope,
            growth=level.slope * span,
            tail_slope_per_s=tail.slope if tail is not None else _tail_slope(bt, by),
            floor_slope_per_s=floor_slope,
            peak_slope_per_s=peak_slope,
            cycles=len(troughs),
            swing=swing,
            noise=noise,
            plateau=False,
            step=False,
        )

        def call(
            status: Status, reason: str, *, growth: float | None = None, levelled_t: float | None = None
        ) -> Trend:
            return dataclasses.replace(
                base,
                status=status,
                reason=reason,
                plateau=status == "plateau",
                step=status == "step",
                growth=base.growth if growth is None else growth,
                warmup_end_t=base.warmup_end_t if levelled_t is None else levelled_t,
                warmup_rise=base.warmup_rise if levelled_t is None or growth is None else growth,
            )

        amount, rate = self._amount, self._rate
        p = _fmt_p(level.mk.p_value)
        after = f" after a {format_duration(cut - ts[0])} warm-up" if cut is not None else ""
        if up:
            early = self._third(*level_pts, last=False)
            # Slower at the end: below the overall slope, or below the first third's slope.
            early_low = early.ci[0] if early is not None and early.ci is not None else level.slope
            slowed = tail is not None and (
                tail.ci[1] < max(level.slope, early_low)
                if tail.ci is not None
                # too few points (or all equal) for an interval: a tail that does not rise and
                # barely moves has slowed all the same
                else tail.mk.p_value >= self.alpha and tail.slope <= _LEVELLED * level.slope
            )
            if slowed and tail is not None:
                earlier = max(level.slope, early.slope if early is not None else 0.0)
                tail_flat = (
                    tail.mk.p_value >= self.alpha
                    or tail.slope <= self.min_rate
                    or tail.slope <= _LEVELLED * earlier
                )
                settled = statistics.median(level_pts[1][len(level_pts[1]) - tail.points :])
                total = settled - warm.start
                if tail_flat and total > _RISE_NOISE * level_noise:
                    reached = _reached(level_t, level_y, warm.start + 0.9 * total)
                    took = reached - ts[0]
                    within = f"in {format_duration(took)}" if took >= 0.05 else "by the first sample"
                    reason = (
                        f"rose {amount(total)} {within}, then levelled off "
                        f"near {amount(settled)} (last third: {rate(tail.slope)}, {_fmt_p(tail.mk.p_value)})"
                    )
                    return call("plateau", reason, growth=total, levelled_t=reached)
            if basis == "floor":
                reason = (
                    f"floor rises {rate(level.slope)}{after} ({p}) under swings of {amount(swing)} "
                    f"({len(troughs)} knock-downs)"
                )
            elif basis == "peaks":
                reason = (
                    f"peaks rise {rate(level.slope)}{after} ({p}) while the floor stays near "
                    f"{amount(statistics.median(lt))}"
                )
            elif slowed and tail is not None:
                reason = f"grows {rate(level.slope)}{after} ({p}), slowing to {rate(tail.slope)} at the end"
            else:
                reason = f"grows {rate(level.slope)} steadily{after} ({p}) to the end"
            return call("growing", reason)
        if vetoed:
            reason = (
                f"oscillates between {amount(min(by))} and {amount(max(by))} over only {len(troughs) + 1} "
                f"cycles: too few to tell growth from churn (samples {rate(samples.slope)}, "
                f"floor {rate(floor_slope or 0.0)})"
            )
            return call("insufficient", reason)
        if down:
            what = "shrinks" if basis == "samples" else f"{basis} shrinks"
            return call("shrinking", f"{what} {rate(-level.slope)}{after} ({p})")

        flat = self._flat_words(by=by, noise=noise)
        if rise != 0.0:
            moved = "rose" if rise > 0.0 else "fell"
            if warm.abrupt and warm.seconds <= _STEP_QUICK * duration:
                reason = (
                    f"{moved} {amount(abs(rise))} in the first {format_duration(warm.seconds)}, then {flat}"
                )
            elif warm.abrupt:
                at = "within the first" if oscillating else "at"  # floors only know their window
                reason = f"{'jumped' if rise > 0.0 else 'dropped'} {amount(abs(rise))} {at} "
                reason += f"{format_duration(warm.seconds)}, then {flat}"
            else:
                reason = f"{moved} {amount(abs(rise))} over {format_duration(warm.seconds)}, then {flat}"
            if warm.abrupt:
                return call("step", reason, growth=rise)
            if rise > 0.0:
                return call("plateau", reason, growth=rise)
            return call("flat", reason)
        return call("flat", self._flat_sentence(level, flat, noise=noise))

    # -- pieces --------------------------------------------------------------------------------

    def _fit(self, t: list[float], y: list[float]) -> _Line:
        return _line(t, y, MAX_EXACT_POINTS, confidence=self.confidence)

    def _testable(self, t: list[float]) -> bool:
        return len(t) >= _fewest_testable(self.alpha) and t[-1] > t[0]

    def _rises(self, fit: _Line) -> bool:
        return fit.mk.p_value < self.alpha and fit.mk.s > 0 and fit.slope > self.min_rate

    def _falls(self, fit: _Line) -> bool:
        return fit.mk.p_value < self.alpha and fit.mk.s < 0 and -fit.slope > self.min_rate

    def _third(self, t: list[float], y: list[float], *, last: bool) -> _Line | None:
        """The fit of the first or the last third (in time) of these points, if enough are there.

        A last third with too few points (the sampling paused there: memwarden's own attribution
        work at the close of a window took 2.4 s of an 8 s run) reaches back to the fewest points
        it needs, as long as they stay within the last half of the span."""
        need = max(5, self.min_points)
        if last:
            start = bisect_left(t, t[0] + (t[-1] - t[0]) * 2.0 / 3.0)
            if len(t) - start < need and len(t) >= need and t[len(t) - need] >= t[0] + (t[-1] - t[0]) / 2.0:
                start = len(t) - need
            tt, ty = t[start:], y[start:]
        else:
            stop = bisect_right(t, t[0] + (t[-1] - t[0]) / 3.0)
            tt, ty = t[:stop], y[:stop]
        if len(tt) < need or tt[-1] <= tt[0]:
            return None
        return _line(tt, ty, MAX_EXACT_POINTS, confidence=1.0 - self.alpha * _SLOWED)

    def _warmup(
        self, cut: float | None, lt: list[float], ly: list[float], level: _Line, level_noise: float
    ) -> _WarmUp:
        """What the warm-up before ``cut`` did to the level (``lt``, ``ly`` come after it)."""
        level_t, level_y = self.level_t, self.level_y
        pre = bisect_left(level_t, cut) if cut is not None else 0
        if pre == 0:
            return _WarmUp(start=statistics.median(ly[:3]))
        pt, py = level_t[:pre], level_y[:pre]
        before = _line(pt, py, MAX_EXACT_POINTS) if len(pt) >= 2 and pt[-1] > pt[0] else None
        slope, intercept = (before.slope, before.intercept) if before else (0.0, statistics.median(py))
        start = statistics.median(py[:3]) if len(py) >= 5 else py[0]
        rise = statistics.median(ly) - start
        if rise == 0.0 or abs(rise) <= _RISE_NOISE * level_noise:
            return _WarmUp(start=start)
        jump = (level.intercept + level.slope * lt[0]) - (intercept + slope * pt[-1])
        seconds = lt[0] - level_t[0]
        quick = seconds <= _STEP_QUICK * self.duration
        return _WarmUp(start, rise, len(pt) <= 2 or jump / rise >= _STEP_JUMP or quick, seconds)

    def _flat_words(self, *, by: list[float], noise: float) -> str:
        """How the analysed span behaves, as the end of a sentence ("then ...")."""
        if self.oscillating:
            band = f"oscillates between {self._amount(min(by))} and {self._amount(max(by))}"
            return f"{band} with a flat floor"
        if noise == 0.0 and min(by) == max(by):
            return f"constant at {self._amount(by[0])}"
        return f"flat (noise ±{self._amount(noise)})"

    def _flat_sentence(self, level: _Line, words: str, *, noise: float) -> str:
        """The reason for a flat series with no warm-up."""
        p = _fmt_p(level.mk.p_value)
        if self.oscillating:
            return f"{words} ({p})"
        if level.mk.p_value < self.alpha and level.slope != 0.0:
            return (
                f"changes {self._rate(level.slope)} ({p}), under the {self._rate(self.min_rate)} treated "
                f"as negligible"
            )
        if words.startswith("constant"):
            return words
        return f"no significant trend ({p}, noise ±{self._amount(noise)})"

    def _insufficient(self, reason: str) -> Trend:
        """Too few samples for a call; the line through them is still given where there is one."""
        ts, ys = self.ts, self.ys
        line = _line(ts, ys, MAX_EXACT_POINTS, confidence=self.confidence) if len(set(ts)) > 1 else None
        noise = _robust_scale(_residuals(ts, ys, line)) if line is not None else 0.0
        slope = line.slope if line is not None else 0.0
        return Trend(
            status="insufficient",
            reason=reason,
            n=len(ys),
            duration_s=ts[-1] - ts[0] if ts else 0.0,
            first=ys[0] if ys else math.nan,
            last=ys[-1] if ys else math.nan,
            min=min(ys) if ys else math.nan,
            max=max(ys) if ys else math.nan,
            warmup_end_t=None,
            warmup_rise=0.0,
            basis="samples",
            slope_per_s=slope,
            intercept=line.intercept if line is not None else 0.0,
            slope_ci=line.ci if line is not None else None,
            mk=line.mk if line is not None else None,
            significant=False,
            direction="flat",
            rate_per_s=slope,
            sample_slope_per_s=slope,
            growth=slope * (ts[-1] - ts[0]) if ts else 0.0,
            tail_slope_per_s=None,
            floor_slope_per_s=None,
            peak_slope_per_s=None,
            cycles=0,
            swing=0.0,
            noise=noise,
            plateau=False,
            step=False,
        )

    def _amount(self, value: float) -> str:
        return _fmt_amount(value, self.unit)

    def _rate(self, value: float) -> str:
        return f"{_fmt_amount(value, self.unit)}/s"


# ----------------------------------------------------------------------------------------------
# Internals


@dataclasses.dataclass(frozen=True)
class _WarmUp:
    """What a warm-up did: the level at the very start, and (when it counts: more than a few
    times the noise after it) how far the level rose, whether abruptly, and in how long."""

    start: float
    rise: float = 0.0
    abrupt: bool = False
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Line:
    """A Theil-Sen line, on request its interval, and a Mann-Kendall test of the same points."""

    slope: float
    intercept: float
    ci: tuple[float, float] | None
    mk: MannKendall
    points: int  # how many samples it was fitted on (before grouping)


def _line(
    t: list[float],
    y: list[float],
    max_points: int,
    *,
    confidence: float | None = None,
) -> _Line:
    """Fit lists of floats (the Mann-Kendall test assumes they are in time order)."""
    if max_points < 2:
        raise UsageError(f"max_points must be at least 2, not {max_points}")
    tr, yr = t, y
    if len(tr) > max_points:
        tr, yr = _group_means(t, GROUPS), _group_means(y, GROUPS)
    slopes = _sorted_slopes(tr, yr)
    mid = len(slopes) // 2
    slope = slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2.0
    intercept = statistics.median([b - slope * a for a, b in zip(tr, yr, strict=True)])
    ci = _sen_interval(slopes, tr, yr, confidence) if confidence is not None else None
    return _Line(slope, intercept, ci, _mann_kendall(yr), len(t))


def _floats(t: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(t) != len(y):
        raise UsageError(f"t and y differ in length ({len(t)} and {len(y)})")
    return list(map(float, t)), list(map(float, y))


def _clean(t: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    """Drop the pairs holding a non-finite number and put the rest in time order."""
    ts, ys = _floats(t, y)
    isfinite = math.isfinite
    if not (all(map(isfinite, ts)) and all(map(isfinite, ys))):
        kept = [(a, b) for a, b in zip(ts, ys, strict=True) if isfinite(a) and isfinite(b)]
        ts, ys = [a for a, _ in kept], [b for _, b in kept]
    if not all(map(le, ts, islice(ts, 1, None))):
        order = sorted(range(len(ts)), key=ts.__getitem__)
        ts, ys = [ts[i] for i in order], [ys[i] for i in order]
    return ts, ys


def _group_means(values: Sequence[float], groups: int) -> list[float]:
    """``values`` cut into ``groups`` consecutive runs of (nearly) equal length, each averaged."""
    n = len(values)
    bounds = [k * n // groups for k in range(groups + 1)]
    return [sum(values[a:b]) / (b - a) for a, b in pairwise(bounds)]


def _sorted_slopes(t: list[float], y: list[float]) -> list[float]:
    """The slope between every pair of points taken at different times, sorted."""
    slopes: list[float] = []
    distinct = len(set(t)) == len(t)
    for i in range(len(t) - 1):
        ti, yi = t[i], y[i]
        later = zip(islice(t, i + 1, None), islice(y, i + 1, None), strict=True)
        if distinct:
            slopes.extend([(yj - yi) / (tj - ti) for tj, yj in later])
        else:
            slopes.extend([(yj - yi) / (tj - ti) for tj, yj in later if tj != ti])
    if not slopes:
        raise UsageError("a slope needs at least two samples taken at different times")
    slopes.sort()
    return slopes


def _tie_term(values: Sequence[float]) -> float:
    return float(sum(c * (c - 1) * (2 * c + 5) for c in Counter(values).values() if c > 1))


def _sen_interval(
    slopes: list[float], t: list[float], y: list[float], confidence: float
) -> tuple[float, float] | None:
    """Sen (1968), eq. 2.6: the slopes ranked ``z sqrt(var S) / 2`` either side of the median."""
    n = len(y)
    var = (n * (n - 1) * (2 * n + 5) - _tie_term(t) - _tie_term(y)) / 18.0
    if var <= 0.0:
        return None
    width = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0) * math.sqrt(var)
    count = len(slopes)
    upper = round((count + width) / 2.0)
    lower = round((count - width) / 2.0) - 1
    if lower < 0 or upper > count - 1:
        return None  # too few points for an interval this wide
    return slopes[lower], slopes[upper]


def _mann_kendall(y: list[float]) -> MannKendall:
    n = len(y)
    s = 0
    later: list[float] = []  # the values after the current one, kept sorted
    for value in reversed(y):
        s += len(later) - bisect_right(later, value) - bisect_left(later, value)
        insort(later, value)
    ties = [c for c in Counter(y).values() if c > 1]
    var = (n * (n - 1) * (2 * n + 5) - sum(c * (c - 1) * (2 * c + 5) for c in ties)) / 18.0
    z = 0.0
    if var > 0.0 and s != 0:
        z = (s - 1 if s > 0 else s + 1) / math.sqrt(var)
    pairs = n * (n - 1) / 2.0
    denominator = math.sqrt(pairs * (pairs - sum(c * (c - 1) / 2.0 for c in ties)))
    return MannKendall(
        n=n,
        s=s,
        var_s=var,
        z=z,
        p_value=min(1.0, math.erfc(abs(z) / math.sqrt(2.0))),
        tau=s / denominator if denominator > 0.0 else 0.0,
    )


def _window_extremes(
    ts: list[float], ys: list[float], windows: int, pick: Callable[[list[float]], float]
) -> tuple[list[float], list[float]]:
    if windows < 1:
        raise UsageError(f"windows must be at least 1, not {windows}")
    if not ts:
        return [], []
    start, width = ts[0], (ts[-1] - ts[0]) / windows
    out_t: list[float] = []
    out_y: list[float] = []
    a = 0
    for k in range(1, windows + 1):
        b = len(ts) if k == windows or width == 0.0 else bisect_left(ts, start + k * width, a)
        if b > a:
            value = pick(ys[a:b])
            out_t.append(ts[ys.index(value, a, b)])
            out_y.append(value)
        a = b
    return out_t, out_y


def _detect_change(
    ts: list[float],
    ys: list[float],
    min_after: int,
    max_points: int,
    *,
    min_share: float = 0.2,
    continuous: bool = False,
) -> ChangePoint | None:
    if len(ts) > max_points:
        ts, ys = _group_means(ts, GROUPS), _group_means(ys, GROUPS)
    n = len(ts)
    after = max(min_after, int(n * min_share), 3)
    if n < 6 or n - after < 1:
        return None
    # Centre and scale first, so that the running sums keep their precision.
    t0, t_scale = ts[0], (ts[-1] - ts[0]) or 1.0
    y_mid, y_scale = statistics.median(ys), (max(ys) - min(ys)) or 1.0
    u = [(a - t0) / t_scale for a in ts]
    v = [(b - y_mid) / y_scale for b in ys]
    sums = [(0.0, 0.0, 0.0, 0.0, 0.0)]
    for a, b in zip(u, v, strict=True):
        su, sv, suu, suv, svv = sums[-1]
        sums.append((su + a, sv + b, suu + a * a, suv + a * b, svv + b * b))

    def fit(i: int, j: int) -> tuple[float, float, float]:
        """Least squares over points i..j-1: (squared error, slope, intercept), scaled units."""
        m = j - i
        su, sv, suu, suv, svv = (e - s for e, s in zip(sums[j], sums[i], strict=True))
        if m == 1:
            return 0.0, 0.0, sv
        sxx, sxy, syy = suu - su * su / m, suv - su * sv / m, svv - sv * sv / m
        slope = sxy / sxx if sxx > 0.0 else 0.0
        return max(0.0, syy - slope * sxy), slope, (sv - slope * su) / m

    whole = fit(0, n)[0]
    if whole <= 1e-12:
        return None
    if continuous:
        return _hinge(ts, u, sums, n, after, whole, t_scale, y_scale)
    sse, k = min((fit(0, k)[0] + fit(k, n)[0], k) for k in range(1, n - after + 1))
    improvement = math.inf if sse <= whole * 1e-12 else n * math.log(whole / sse)
    if improvement <= _CHANGE_PENALTY * math.log(n):
        return None
    _, b1, a1 = fit(0, k)
    _, b2, a2 = fit(k, n)
    return ChangePoint(
        t=ts[k],
        index=k,
        slope_before_per_s=b1 * y_scale / t_scale,
        slope_after_per_s=b2 * y_scale / t_scale,
        jump=((a2 + b2 * u[k]) - (a1 + b1 * u[k - 1])) * y_scale,
        improvement=improvement,
    )


def _hinge(
    ts: list[float],
    u: list[float],
    sums: list[tuple[float, float, float, float, float]],
    n: int,
    after: int,
    whole: float,
    t_scale: float,
    y_scale: float,
) -> ChangePoint | None:
    """The best hinge ``v = a + b u + c max(0, u - u[k])`` over the splits ``k``, from the running
    sums of :func:`_detect_change` (scaled units), O(1) per split: with ``h = max(0, u - u[k])``
    made orthogonal to the one line (Frisch-Waugh), the hinge takes ``(h.v)^2 / h.h`` off its
    squared error ``whole``."""
    big_n = float(n)
    big_u, big_v, big_uu, big_uv, _ = sums[n]
    d = big_n * big_uu - big_u * big_u
    if d <= 0.0:
        return None

    def cross(p1: float, p2: float, q1: float, q2: float) -> float:
        """``(p1, p2) (X'X)^-1 (q1, q2)`` for the one-line design ``X = [1, u]``."""
        return (big_uu * p1 * q1 - big_u * (p1 * q2 + p2 * q1) + big_n * p2 * q2) / d

    best: tuple[float, int, float, float, float] | None = None  # gain, k, c, sum h, sum h u
    for k in range(1, n - after + 1):
        tau = u[k]
        su, sv, suu, suv, _ = (e - s for e, s in zip(sums[n], sums[k], strict=True))
        m = n - k
        h = su - tau * m  # over the points from k on: the sums of h = u - tau, h u, h^2, h v
        hu = suu - tau * su
        hh = suu - 2.0 * tau * su + tau * tau * m
        hv = suv - tau * sv
        hh_res = hh - cross(h, hu, h, hu)
        if hh_res <= 1e-15:
            continue
        hv_res = hv - cross(h, hu, big_v, big_uv)
        gain = hv_res * hv_res / hh_res
        if best is None or gain > best[0]:
            best = (gain, k, hv_res / hh_res, h, hu)
    if best is None:
        return None
    gain, k, c, h, hu = best
    sse = max(0.0, whole - gain)
    improvement = math.inf if sse <= whole * 1e-12 else n * math.log(whole / sse)
    if improvement <= _CHANGE_PENALTY * math.log(n):
        return None
    b = (-big_u * (big_v - c * h) + big_n * (big_uv - c * hu)) / d  # the slope before the bend
    return ChangePoint(
        t=ts[k],
        index=k,
        slope_before_per_s=b * y_scale / t_scale,
        slope_after_per_s=(b + c) * y_scale / t_scale,
        jump=0.0,
        improvement=improvement,
    )


def _spread_sample(values: Sequence[float]) -> Sequence[float]:
    return values[:: max(1, len(values) // _NOISE_SAMPLE)]


def _robust_scale(values: Sequence[float]) -> float:
    """1.4826 x the median absolute deviation (estimated on a few thousand values at most)."""
    sample = _spread_sample(values)
    if not sample:
        return 0.0
    centre = statistics.median(sample)
    return _MAD_TO_SD * statistics.median([abs(v - centre) for v in sample])


def _residuals(t: list[float], y: list[float], fit: _Line) -> list[float]:
    step = max(1, len(t) // _NOISE_SAMPLE)
    slope, intercept = fit.slope, fit.intercept
    return [b - (intercept + slope * a) for a, b in zip(t[::step], y[::step], strict=True)]


def _knockdowns(y: list[float]) -> tuple[list[int], list[float]]:
    """Where the series is knocked down: ``(trough indices, drop sizes)``.

    A knock-down is an unbroken descent that falls by more than a few robust standard
    deviations of one step (ordinary noise does not) and by more than a quarter of the series'
    range (a leak's small dips do not). A spike (a peak climbed within a few steps, falling back)
    or a dip (a fall made good within a few steps) is a glitch, not a knock-down.
    """
    n = len(y)
    if n < 4:
        return [], []
    step = max(1, n // _NOISE_SAMPLE)
    diffs = list(map(sub, islice(y, 1, None, step), islice(y, 0, None, step)))
    spread = sorted(_spread_sample(y))
    lo, hi = spread[int(0.02 * (len(spread) - 1))], spread[int(0.98 * (len(spread) - 1))]
    threshold = max(_KNOCKDOWN_STEPS * _robust_scale(diffs), _KNOCKDOWN_RANGE * (hi - lo))
    if threshold <= 0.0:
        return [], []
    troughs: list[int] = []
    sizes: list[float] = []
    top, peak = y[0], 0  # the value and index where the current descent started

    def glitch(bottom: int, drop: float) -> bool:
        """A peak climbed, or a fall made good, within a few steps: a spike or a dip."""
        climbed = top - min(y[max(0, peak - _GLITCH_STEPS) : peak], default=top)
        recovered = max(y[bottom + 1 : bottom + 1 + _GLITCH_STEPS], default=y[bottom]) - y[bottom]
        return max(climbed, recovered) >= _GLITCH * drop

    for j, (a, b) in enumerate(pairwise(y)):
        if b >= a:
            if top - a > threshold and not glitch(j, top - a):
                troughs.append(j)
                sizes.append(top - a)
            top, peak = b, j + 1
    if top - y[-1] > threshold and not glitch(n - 1, top - y[-1]):
        troughs.append(n - 1)
        sizes.append(top - y[-1])
    return troughs, sizes


def _cycle_window(ts: list[float], troughs: list[int]) -> float | None:
    """The shortest window sure to hold a trough: the longest time between two knock-downs."""
    if len(troughs) < 2:
        return None
    gap = max(ts[b] - ts[a] for a, b in pairwise(troughs))
    return gap if gap > 0.0 else None


def _reached(t: list[float], y: list[float], target: float) -> float:
    """When the series first reached ``target``: the first run of 5 points whose median does
    (group means, for a long series)."""
    if len(t) > MAX_EXACT_POINTS:
        t, y = _group_means(t, GROUPS), _group_means(y, GROUPS)
    for i in range(max(1, len(y) - 4)):
        window = y[i : i + 5]
        if statistics.median(window) >= target:
            # the first point of that run that is there: a run starting on the low side before a fast
            # rise would date the rise to the run's start ("rose 36 MiB in 0.0 s")
            return t[i + next(k for k, v in enumerate(window) if v >= target)]
    return t[-1]


def _fewest_testable(alpha: float) -> int:
    """The fewest points in which a perfectly steady trend passes the Mann-Kendall test."""
    m = 3
    while m < 1000:
        pairs, var = m * (m - 1) / 2.0, m * (m - 1) * (2 * m + 5) / 18.0
        if math.erfc((pairs - 1.0) / math.sqrt(var) / math.sqrt(2.0)) < alpha:
            return m
        m += 1
    return m


def _from(t: list[float], y: list[float], start: float) -> tuple[list[float], list[float]]:
    i = bisect_left(t, start)
    return t[i:], y[i:]


def _slope_or_none(t: list[float], y: list[float]) -> float | None:
    if len(t) < 2 or t[-1] <= t[0]:
        return None
    return _line(t, y, MAX_EXACT_POINTS).slope


def _tail_slope(t: list[float], y: list[float]) -> float | None:
    return _slope_or_none(*_from(t, y, t[0] + (t[-1] - t[0]) * 2.0 / 3.0))


_COUNT_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _fmt_amount(value: float, unit: str) -> str:
    if unit == "B":
        return format_bytes(value)
    for scale, prefix in _COUNT_PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix} {unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def _fmt_p(p: float) -> str:
    return "p<1e-6" if p < 1e-6 else f"p={p:.2g}"
