"""Trend statistics: Theil-Sen, Mann-Kendall, floors, change points and the whole call."""

from __future__ import annotations

import math
import random

import pytest

from memwarden.diagnosis._trend import (
    GROUPS,
    analyse,
    detect_change,
    floor,
    mann_kendall,
    peaks,
    per_iteration,
    sen_slope_ci,
    theil_sen,
)
from memwarden.exceptions import UsageError

MB = 1e6
KB = 1e3
Series = tuple[list[float], list[float]]


# -- synthetic series ----------------------------------------------------------------------------


def linear_leak(rate: float, hz: float, seconds: float, seed: int, noise: float = 5 * MB) -> Series:
    """``rate`` bytes/s on top of 200 MB, under uniform noise of +/- ``noise``."""
    rng = random.Random(seed)
    t = [i / hz for i in range(round(seconds * hz))]
    return t, [200 * MB + rate * x + rng.uniform(-noise, noise) for x in t]


def gc_sawtooth(seed: int, floor_rise_per_cycle: float = 0.0, seconds: int = 600) -> Series:
    """Climbs 50 MB over cycles of 20-40 s (1 Hz), knocked back to a floor that rises as told."""
    rng = random.Random(seed)
    t: list[float] = []
    y: list[float] = []
    start, length = 0.0, rng.uniform(20.0, 40.0)
    for i in range(seconds):
        x = float(i)
        if x - start >= length:
            start, length = x, rng.uniform(20.0, 40.0)
        t.append(x)
        y.append(
            5 * MB + floor_rise_per_cycle * x / 30.0 + (x - start) / length * 50 * MB + rng.gauss(0, 0.5 * MB)
        )
    return t, y


def startup_step(seed: int) -> Series:
    """40 MB loaded in the first 2 s (1 Hz), then flat for a minute."""
    rng = random.Random(seed)
    t = [float(i) for i in range(60)]
    return t, [100 * MB + min(x, 2.0) * 20 * MB + rng.gauss(0, 0.2 * MB) for x in t]


def exponential_warmup(seed: int) -> Series:
    """A cache filling towards its 40 MB bound (time constant 20 s), 10 min at 1 Hz."""
    rng = random.Random(seed)
    t = [float(i) for i in range(600)]
    return t, [100 * MB + 40 * MB * (1 - math.exp(-x / 20.0)) + rng.gauss(0, 0.2 * MB) for x in t]


def noise_only(seed: int, n: int = 300) -> Series:
    """Gaussian noise of 2 MB around 100 MB, at 1 Hz."""
    rng = random.Random(seed)
    t = [float(i) for i in range(n)]
    return t, [100 * MB + rng.gauss(0, 2 * MB) for _ in t]


def count_status(make: object, seeds: range, status: str) -> int:
    """How many of ``seeds`` give a series that analyse() calls ``status``."""
    assert callable(make)
    return sum(analyse(*make(seed)).status == status for seed in seeds)


# -- Theil-Sen ---------------------------------------------------------------------------------


def test_theil_sen_matches_a_hand_computed_example() -> None:
    """The slope is the median pairwise slope, the intercept the median of y - slope * t."""
    # pair slopes 2, 0.5, 1, -1, 0.5, 2 -> median 0.75; y - 0.75 t = 0, 1.25, -0.5, 0.75 -> 0.375
    assert theil_sen([0, 1, 2, 3], [0, 2, 1, 3]) == pytest.approx((0.75, 0.375))


def test_theil_sen_skips_pairs_taken_at_the_same_time() -> None:
    """Pairs with equal times have no slope and are left out instead of dividing by zero."""
    # slopes (0,0)->(1,1) = 1 and (0,10)->(1,1) = -9 -> -4; y + 4 t = 0, 10, 5 -> 5
    assert theil_sen([0, 0, 1], [0, 10, 1]) == pytest.approx((-4.0, 5.0))


def test_theil_sen_needs_two_distinct_times() -> None:
    """A slope cannot be fitted through samples all taken at one time."""
    with pytest.raises(UsageError, match="different times"):
        theil_sen([3, 3, 3], [1, 2, 3])


def test_theil_sen_shrugs_off_a_few_wild_samples() -> None:
    """Three absurd samples out of twenty do not move the slope off the other seventeen's."""
    t = [float(i) for i in range(20)]
    y = [2.0 * x + 1.0 for x in t]
    for i in (3, 11, 17):
        y[i] = 1e9
    slope, intercept = theil_sen(t, y)
    assert slope == 2.0
    assert intercept == 1.0


def test_theil_sen_on_a_long_series_stays_close_to_the_truth() -> None:
    """Above the exact limit the group-mean path still recovers the slope under noise."""
    rng = random.Random(3)
    t = [float(i) for i in range(20_000)]
    y = [3.0 * x + rng.gauss(0, 100.0) for x in t]
    slope, intercept = theil_sen(t, y)
    assert slope == pytest.approx(3.0, abs=0.01)
    assert intercept == pytest.approx(0.0, abs=20.0)


def test_sen_interval_covers_the_true_slope_about_as_often_as_promised() -> None:
    """A 95 % interval holds the true slope in roughly 95 % of noisy series."""
    covered = 0
    for seed in range(60):
        rng = random.Random(seed)
        t = [float(i) for i in range(40)]
        y = [0.5 * x + rng.gauss(0, 3.0) for x in t]
        ci = sen_slope_ci(t, y, confidence=0.95)
        assert ci is not None
        covered += ci[0] <= 0.5 <= ci[1]
    assert 51 <= covered <= 60


def test_sen_interval_is_none_when_too_few_points_for_it() -> None:
    """Five points cannot bound a slope at 99.9 %: the interval is refused, not faked."""
    assert sen_slope_ci([0, 1, 2, 3, 4], [0, 1, 3, 2, 4], confidence=0.999) is None


# -- Mann-Kendall ------------------------------------------------------------------------------


def test_mann_kendall_matches_a_hand_computed_example() -> None:
    """S counts concordant minus discordant pairs; z is continuity-corrected; tau = S / pairs."""
    mk = mann_kendall([0, 2, 1, 3])
    # five pairs go up, one goes down; var = 4 * 3 * 13 / 18
    assert mk.s == 4
    assert mk.var_s == pytest.approx(26 / 3)
    assert mk.z == pytest.approx(3 / math.sqrt(26 / 3))
    assert mk.p_value == pytest.approx(math.erfc(3 / math.sqrt(26 / 3) / math.sqrt(2)))
    assert mk.tau == pytest.approx(4 / 6)


def test_mann_kendall_corrects_its_variance_for_ties() -> None:
    """Tied values lower the variance of S and enter tau-b's denominator."""
    mk = mann_kendall([1, 1, 2, 2, 3])
    # S: 3 + 3 + 1 + 1; two pairs of ties, each 2 * 1 * 9, off 5 * 4 * 15
    assert mk.s == 8
    assert mk.var_s == pytest.approx((300 - 36) / 18)
    assert mk.tau == pytest.approx(8 / math.sqrt(10 * (10 - 2)))


def test_mann_kendall_of_a_constant_series_finds_nothing() -> None:
    """All ties: S and its variance are zero, p is 1 and tau is 0 (not a division error)."""
    mk = mann_kendall([5.0] * 10)
    assert (mk.s, mk.var_s, mk.z, mk.p_value, mk.tau) == (0, 0.0, 0.0, 1.0, 0.0)


def test_mann_kendall_sees_a_steady_fall() -> None:
    """A strictly falling series has S = -pairs, tau = -1 and a tiny p-value."""
    mk = mann_kendall([float(-i) for i in range(30)])
    assert mk.s == -(30 * 29 // 2)
    assert mk.tau == pytest.approx(-1.0)
    assert mk.p_value < 1e-6


def test_mann_kendall_on_a_long_series_tests_group_means() -> None:
    """Above the exact limit the test runs on a bounded number of group means."""
    rng = random.Random(5)
    mk = mann_kendall([0.001 * i + rng.gauss(0, 1.0) for i in range(50_000)])
    assert mk.n == GROUPS
    assert mk.s > 0
    assert mk.p_value < 1e-6


def test_statistics_agree_with_scipy() -> None:
    """Slope, intercept, Sen interval, tau and the tie-corrected variance match scipy's."""
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(11)
    t = sorted(float(rng.randrange(60)) for _ in range(45))  # repeated times
    y = [round(0.3 * x + rng.gauss(0, 4.0)) for x in t]  # repeated values
    expected = stats.theilslopes(y, t, 0.95, method="joint")
    assert theil_sen(t, y) == pytest.approx((expected.slope, expected.intercept))
    assert sen_slope_ci(t, y, confidence=0.95) == pytest.approx((expected.low_slope, expected.high_slope))

    y_only = [round(rng.gauss(0.05 * i, 2.0)) for i in range(80)]
    mk = mann_kendall(y_only)
    tau = stats.kendalltau(range(len(y_only)), y_only, method="asymptotic")
    assert mk.tau == pytest.approx(tau.statistic)
    z_uncorrected = stats.norm.isf(tau.pvalue / 2)  # scipy: S / sqrt(var), no continuity correction
    assert mk.var_s == pytest.approx((mk.s / z_uncorrected) ** 2)


# -- floors, peaks, change points --------------------------------------------------------------


def test_floor_and_peaks_pick_each_windows_extreme_at_its_time() -> None:
    """Per window: the lowest (highest) sample, reported at the time it was taken."""
    t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    y = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0]
    assert floor(t, y, 2) == ([1.0, 3.0], [1.0, 1.5])
    assert peaks(t, y, 2) == ([2.0, 5.0], [4.0, 9.0])
    with pytest.raises(UsageError):
        floor(t, y, 0)


def test_detect_change_finds_a_jump() -> None:
    """A 40 MB jump after 20 of 40 samples is found where it happened, with its size."""
    rng = random.Random(2)
    t = [float(i) for i in range(40)]
    y = [(40 * MB if i >= 20 else 0.0) + rng.gauss(0, 0.1 * MB) for i in range(40)]
    change = detect_change(t, y)
    assert change is not None
    assert change.t == 20.0
    assert change.jump == pytest.approx(40 * MB, rel=0.02)


def test_detect_change_leaves_a_straight_line_alone() -> None:
    """A steady leak under noise has no change of course."""
    t, y = linear_leak(1 * MB, 1.0, 120.0, seed=4)
    assert detect_change(t, y) is None


# -- the whole call: detection limits ----------------------------------------------------------


@pytest.mark.parametrize("hz", [1.0, 10.0])
def test_a_100kb_per_s_leak_under_5mb_noise_is_invisible_in_10_s(hz: float) -> None:
    """100 KB/s under +/-5 MB noise for 10 s (10 or 100 samples) is below the detection limit."""
    grown = count_status(lambda seed: linear_leak(100 * KB, hz, 10.0, seed), range(20), "growing")
    assert grown <= 3  # a few percent at most: the leak adds 1 MB where the noise spans 10 MB


@pytest.mark.parametrize(
    ("rate", "hz", "seconds"),
    [(3 * MB, 1.0, 10.0), (700 * KB, 10.0, 10.0), (200 * KB, 100.0, 10.0), (200 * KB, 1.0, 60.0)],
)
def test_leaks_above_the_detection_limit_are_caught(rate: float, hz: float, seconds: float) -> None:
    """Under +/-5 MB noise: 3 MB/s at 1 Hz, 700 KB/s at 10 Hz, 200 KB/s at 100 Hz or over 60 s."""
    grown = count_status(lambda seed: linear_leak(rate, hz, seconds, seed), range(20), "growing")
    assert grown >= 19


def test_a_clear_leak_reports_its_rate_and_growth() -> None:
    """A 100 KB/s leak over 10 min: growing, rate inside its interval, growth = rate x span."""
    t, y = linear_leak(100 * KB, 1.0, 600.0, seed=1, noise=1 * MB)
    trend = analyse(t, y)
    assert trend.status == "growing"
    assert (trend.direction, trend.significant, trend.basis) == ("up", True, "samples")
    assert trend.rate_per_s == pytest.approx(100 * KB, rel=0.03)
    assert trend.slope_ci is not None
    assert trend.slope_ci[0] <= 100 * KB <= trend.slope_ci[1]
    assert trend.growth_bytes == pytest.approx(trend.rate_per_s * (t[-1] - t[0]))
    assert trend.tail_slope_per_s == pytest.approx(100 * KB, rel=0.2)
    assert trend.noise == pytest.approx(1.4826 * 0.5 * MB, rel=0.2)  # 1.4826 x the MAD of +/-1 MB
    assert "to the end" in trend.reason
    assert per_iteration(trend, 50.0) == pytest.approx(trend.rate_per_s / 50.0)


# -- the whole call: shapes --------------------------------------------------------------------


def test_gc_sawtooth_with_a_flat_floor_is_not_growth() -> None:
    """A 50 MB sawtooth knocked back to the same floor is flat, judged on its floor."""
    trend = analyse(*gc_sawtooth(seed=0))
    assert trend.status == "flat"
    assert trend.basis == "floor"
    assert trend.cycles >= 10
    assert trend.swing > 30 * MB
    assert "flat floor" in trend.reason
    assert count_status(gc_sawtooth, range(1, 21), "growing") <= 1


def test_slow_leak_under_heavy_churn_is_growth() -> None:
    """A floor rising 1 % of a 50 MB swing per 30 s cycle (~17 KB/s) reads as growth."""
    rise = 0.01 * 50 * MB
    trend = analyse(*gc_sawtooth(seed=0, floor_rise_per_cycle=rise))
    assert trend.status == "growing"
    assert trend.basis == "floor"
    assert trend.rate_per_s == pytest.approx(rise / 30.0, rel=0.3)
    assert "floor rises" in trend.reason
    assert count_status(lambda s: gc_sawtooth(s, floor_rise_per_cycle=rise), range(1, 11), "growing") == 10


def test_a_sawtooth_of_three_cycles_is_too_short_to_judge() -> None:
    """Three cycles give too few floor windows to tell a leak from churn: insufficient, not flat."""
    rng = random.Random(5)
    t = [float(i) for i in range(90)]
    y = [5 * MB + (x % 30) / 30 * 50 * MB + rng.gauss(0, 0.3 * MB) for x in t]
    trend = analyse(t, y)
    assert trend.status == "insufficient"
    assert "too few to tell growth from churn" in trend.reason
    assert trend.cycles == 2


def test_peaks_rising_over_a_flat_floor_is_growth() -> None:
    """Each cycle climbing higher than the last, back to the same floor, is growing on its peaks."""
    rng = random.Random(8)
    t = [float(i) for i in range(600)]
    y = [5 * MB + (x % 30) / 30 * (20 * MB + 0.1 * MB * x) + rng.gauss(0, 0.2 * MB) for x in t]
    trend = analyse(t, y)
    assert trend.status == "growing"
    assert trend.basis == "peaks"
    assert trend.peak_slope_per_s is not None
    assert trend.peak_slope_per_s > 0.05 * MB


def test_startup_step_then_flat_is_a_step() -> None:
    """40 MB loaded in the first 2 s, then nothing: a step, not growth, and its size."""
    trend = analyse(*startup_step(seed=0))
    assert trend.status == "step"
    assert (trend.step, trend.plateau) == (True, False)
    assert trend.growth == pytest.approx(40 * MB, rel=0.05)
    assert trend.warmup_end_t is not None
    assert trend.warmup_end_t <= 4.0
    assert trend.reason.startswith("rose")
    assert "then flat" in trend.reason


def test_a_jump_in_the_middle_is_a_step() -> None:
    """A single 40 MB jump halfway through a flat minute is a step at that time."""
    rng = random.Random(4)
    t = [float(i) for i in range(60)]
    y = [100 * MB + (40 * MB if x >= 30 else 0.0) + rng.gauss(0, 0.2 * MB) for x in t]
    trend = analyse(t, y)
    assert trend.status == "step"
    assert trend.warmup_end_t == 30.0
    assert trend.reason.startswith("jumped")


def test_cache_filling_to_its_bound_is_a_plateau() -> None:
    """An exponential approach to a 40 MB bound levels off: a plateau that rose ~40 MB."""
    trend = analyse(*exponential_warmup(seed=0))
    assert trend.status == "plateau"
    assert (trend.plateau, trend.step) == (True, False)
    assert trend.growth == pytest.approx(40 * MB, rel=0.15)
    assert "levelled off" in trend.reason


def test_linear_warmup_then_flat_is_a_plateau() -> None:
    """A linear climb for 100 s, then flat for 500 s: a plateau that ended near 100 s."""
    rng = random.Random(6)
    t = [float(i) for i in range(600)]
    y = [100 * MB + min(x, 100.0) * 0.4 * MB + rng.gauss(0, 0.2 * MB) for x in t]
    trend = analyse(t, y)
    assert trend.status == "plateau"
    assert trend.warmup_end_t == pytest.approx(100.0, abs=5.0)
    assert trend.growth == pytest.approx(40 * MB, rel=0.05)


def test_a_leak_after_a_startup_jump_is_growth_at_the_later_rate() -> None:
    """A 40 MB start-up jump, then 20 KB/s: growing at 20 KB/s, the warm-up set aside."""
    rng = random.Random(7)
    t = [float(i) for i in range(600)]
    y = [100 * MB + (40 * MB if x >= 5 else 0.0) + 20 * KB * x + rng.gauss(0, 0.2 * MB) for x in t]
    trend = analyse(t, y)
    assert trend.status == "growing"
    assert trend.warmup_end_t is not None
    assert trend.warmup_end_t <= 10.0
    assert trend.rate_per_s == pytest.approx(20 * KB, rel=0.1)
    assert "warm-up" in trend.reason


def test_pure_noise_is_flat() -> None:
    """Noise alone is called flat; false alarms stay near the 1 % significance level."""
    trend = analyse(*noise_only(seed=0))
    assert trend.status == "flat"
    assert trend.direction == "flat"
    assert "no significant trend" in trend.reason
    assert count_status(noise_only, range(1, 51), "flat") >= 48


def test_a_shrinking_series_is_shrinking() -> None:
    """Memory given back steadily reads as shrinking, with a negative rate."""
    rng = random.Random(9)
    t = [float(i) for i in range(300)]
    trend = analyse(t, [100 * MB - 50 * KB * x + rng.gauss(0, 0.2 * MB) for x in t])
    assert trend.status == "shrinking"
    assert trend.direction == "down"
    assert trend.rate_per_s == pytest.approx(-50 * KB, rel=0.05)


def test_too_few_points_are_insufficient() -> None:
    """Three samples are too few to call anything; the reason says so, the slope is still given."""
    trend = analyse([0, 1, 2], [1, 2, 4])
    assert trend.status == "insufficient"
    assert trend.reason.startswith("too few points (3")
    assert (trend.first, trend.last, trend.significant) == (1.0, 4.0, False)
    assert trend.rate_per_s == pytest.approx(1.5)  # pair slopes 1, 1.5, 2


def test_five_points_cannot_show_a_trend_at_one_percent() -> None:
    """Even a perfect line of 5 points has p = 0.027 > 0.01: insufficient, not flat; 6 suffice."""
    five = analyse([0, 1, 2, 3, 4], [10, 11, 12, 13, 14])
    assert five.status == "insufficient"
    assert "6 needed" in five.reason
    assert analyse([0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]).status == "growing"
    assert analyse([0, 1, 2, 3, 4], [10, 11, 12, 13, 14], alpha=0.05).status == "growing"


def test_samples_all_at_one_time_are_insufficient() -> None:
    """Many samples with one timestamp carry no time information."""
    assert analyse([5.0] * 10, list(range(10))).status == "insufficient"


def test_a_constant_series_is_flat_with_no_noise() -> None:
    """All ties: flat, zero slope, zero noise, p = 1."""
    trend = analyse([float(i) for i in range(50)], [7.0] * 50)
    assert trend.status == "flat"
    assert trend.mk is not None
    assert trend.mk.p_value == 1.0
    assert (trend.rate_per_s, trend.noise, trend.growth) == (0.0, 0.0, 0.0)
    assert "constant" in trend.reason


def test_min_rate_sets_growth_below_it_aside() -> None:
    """A clear 1 KB/s leak is growing, unless min_rate says 10 KB/s is negligible."""
    rng = random.Random(10)
    t = [float(i) for i in range(600)]
    y = [100 * MB + 1 * KB * x + rng.gauss(0, 10 * KB) for x in t]
    assert analyse(t, y).status == "growing"
    ignored = analyse(t, y, min_rate=10 * KB)
    assert ignored.status == "flat"
    assert ignored.direction == "flat"
    assert ignored.significant
    assert "negligible" in ignored.reason


def test_a_given_warmup_is_left_out() -> None:
    """With warmup_s, the start-up climb is set aside and the later rate is measured."""
    rng = random.Random(12)
    t = [float(i) for i in range(300)]
    y = [min(x, 20.0) * 2 * MB + 10 * KB * x + rng.gauss(0, 50 * KB) for x in t]
    trend = analyse(t, y, warmup_s=20.0)
    assert trend.warmup_end_t == 20.0
    assert trend.status == "growing"
    assert trend.rate_per_s == pytest.approx(10 * KB, rel=0.1)


def test_a_leak_with_wild_samples_is_still_a_leak() -> None:
    """A handful of huge spikes neither hide a leak nor inflate its rate."""
    t, y = linear_leak(100 * KB, 1.0, 300.0, seed=13, noise=1 * MB)
    for i in (40, 41, 150, 260):
        y[i] += 500 * MB
    trend = analyse(t, y)
    assert trend.status == "growing"
    assert (trend.basis, trend.cycles) == ("samples", 0)  # spikes are glitches, not knock-downs
    assert trend.rate_per_s == pytest.approx(100 * KB, rel=0.1)


def test_unsorted_and_non_finite_samples_are_cleaned_first() -> None:
    """Shuffled samples and NaN/inf values give the same call as the clean series."""
    t, y = linear_leak(100 * KB, 1.0, 120.0, seed=14, noise=1 * MB)
    clean = analyse(t, y)
    pairs = list(zip(t, y, strict=True))
    random.Random(0).shuffle(pairs)
    pairs += [(200.0, math.nan), (math.inf, 1.0)]
    messy = analyse([a for a, _ in pairs], [b for _, b in pairs])
    assert messy == clean


def test_counts_are_written_in_their_own_unit() -> None:
    """A non-byte series is described in the caller's unit."""
    t = [float(i) for i in range(100)]
    trend = analyse(t, [1000.0 + 50.0 * x for x in t], unit="blocks")
    assert trend.status == "growing"
    assert "blocks/s" in trend.reason


def test_bad_arguments_are_refused() -> None:
    """Mismatched lengths and out-of-range settings raise UsageError."""
    with pytest.raises(UsageError, match="differ in length"):
        analyse([0, 1, 2], [1, 2])
    with pytest.raises(UsageError, match="alpha"):
        analyse([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], alpha=1.5)
    with pytest.raises(UsageError, match="min_rate"):
        analyse([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], min_rate=-1.0)
    with pytest.raises(UsageError, match="iterations_per_s"):
        per_iteration(analyse([0, 1, 2, 3, 4], [1, 2, 3, 4, 5]), 0.0)


def test_a_long_series_is_analysed() -> None:
    """100,000 samples (grouped internally) still give the right call and rate."""
    t, y = linear_leak(10 * KB, 10.0, 10_000.0, seed=15, noise=1 * MB)
    trend = analyse(t, y)
    assert trend.n == 100_000
    assert trend.status == "growing"
    assert trend.rate_per_s == pytest.approx(10 * KB, rel=0.02)


def test_a_rise_is_dated_by_when_it_got_there_not_by_the_run_before_it() -> None:
    """A cache filling in seconds says how long it took to get there (never 'in 0.0 s' for a fast one)."""
    t = [float(i) for i in range(30)]
    y = [100 * MB + 36 * MB * (1 - math.exp(-i / 1.5)) + (i % 3) * 20_000 for i in range(30)]
    trend = analyse(t, y)
    assert "levelled off" in trend.reason, trend.reason
    took = float(trend.reason.split(" in ", 1)[1].split(" s,", 1)[0])
    # 90 % of the rise is there at about 3.5 s (1.5 s * ln 10)
    assert 3.0 <= took <= 5.0, trend.reason


CHAT_TIMES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.1, 1.3, 1.5, 1.8, 2.0, 2.3, 2.5, 2.8, 3.1, 3.4, 3.6, 3.9, 4.2, 4.6, 4.9, 5.2,
              5.5, 5.9, 6.3, 6.6, 7.0, 9.4, 9.8, 10.1]  # fmt: skip
CHAT_MIB = [23.57, 30.75, 30.77, 30.77, 30.78, 30.79, 30.81, 30.85, 30.96, 31.27, 31.30, 31.73, 32.10, 32.30, 32.69, 32.94,
            32.94, 32.96, 32.96, 32.97, 32.97, 32.97, 32.97, 32.97, 32.97, 32.97, 32.97, 32.97, 32.96]  # fmt: skip
"""A bounded chat store filling up (recorded RSS, memwarden's own taken out): the interpreter's
start, up for 3.5 s, then
flat for 6 s; sampling paused 2.4 s at 7.0 s (a window's close), so the last third in time holds
four samples, all equal."""


def test_a_plateau_whose_last_third_has_few_equal_samples_is_a_plateau() -> None:
    trend = analyse(CHAT_TIMES, [v * 2**20 for v in CHAT_MIB], min_rate=20 * 1024)
    assert trend.status == "plateau", trend.reason


def test_a_leak_sampled_as_sparsely_at_the_end_still_grows() -> None:
    """The control: the same times, growing 300 KiB/s throughout."""
    trend = analyse(CHAT_TIMES, [30 * 2**20 + t * 300 * 1024 for t in CHAT_TIMES], min_rate=20 * 1024)
    assert trend.status == "growing", trend.reason
