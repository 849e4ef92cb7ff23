"""Days, not minutes: a week of 10 s samples in a real SQLite timeline, read in bounded time, with
the verdict saying when growth began and judging the recent part of the run as well as the whole."""

from __future__ import annotations

import io
import itertools
import json
import random
import sqlite3

import pytest

from memwarden.diagnosis._classify import classify
from memwarden.diagnosis._trend import detect_change
from memwarden.diagnosis._verdict import Verdict
from memwarden.exceptions import UsageError
from memwarden.reporters.terminal import render_verdict
from memwarden.testing import samples_from_series
from memwarden.timeline import Sample, Timeline

from ._week import DAY, HOUR, START, MiB, Week, write_week

LEAK_START = 3 * DAY + 14 * HOUR  # 2026-12-04 14:00 UTC


@pytest.fixture(scope="module")
def weeks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Week]:
    """The recorded weeks, written once for the module."""
    root = tmp_path_factory.mktemp("weeks")
    return {
        "python": write_week(root / "python.db", leak_start_s=LEAK_START, seed=11),
        "native": write_week(root / "native.db", leak_start_s=2.5 * DAY, kind="native", seed=12, lean=True),
        "flat": write_week(root / "flat.db", seed=13, lean=True),
        "stopped": write_week(
            root / "stopped.db", leak_start_s=0.3 * DAY, leak_stop_s=1.5 * DAY, seed=14, lean=True
        ),
        "late": write_week(root / "late.db", leak_start_s=6.25 * DAY, seed=15, lean=True),
    }


def _diagnose(week: Week) -> Verdict:
    with Timeline.open_existing(week.path) as timeline:
        digest = timeline.sample_digest()
    return classify(digest.samples, total_samples=digest.total)


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_a_leak_from_day_three_is_a_python_leak_dated_within_an_hour(weeks: dict[str, Week]) -> None:
    """Flat for 3 d 14 h, then 2 MiB/h of Python objects: python_leak, growth dated within 1 h."""
    week = weeks["python"]
    v = _diagnose(week)
    assert v.verdict == "python_leak"
    assert v.samples == week.rows == 60_480
    assert v.growth_began is not None and week.leak_start_t is not None
    assert abs(v.growth_began.t - week.leak_start_t) < HOUR
    assert abs(v.growth_began.offset_s - LEAK_START) < HOUR
    assert 1.6 * MiB < v.growth_began.rate_bytes_per_s * 3600 < 2.4 * MiB
    assert "It was flat for 3 d 14 h and grows since 2026-12-04 1" in v.summary
    assert "MiB/h" in v.summary


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_a_native_leak_from_mid_week_is_a_native_leak(weeks: dict[str, Week]) -> None:
    """RSS and malloc's in-use bytes grow from day 2.5, Python's blocks stay flat: native_leak."""
    week = weeks["native"]
    v = _diagnose(week)
    assert v.verdict == "native_leak"
    assert v.growth_began is not None and week.leak_start_t is not None
    assert abs(v.growth_began.t - week.leak_start_t) < HOUR


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_the_same_week_without_a_leak_is_not_a_leak(weeks: dict[str, Week]) -> None:
    """Jitter, bursts and a daily allocator sawtooth alone: stable (or plateau), never a leak."""
    v = _diagnose(weeks["flat"])
    assert v.verdict in ("stable", "plateau")
    assert not v.leak
    assert v.growth_began is None


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_a_leak_on_day_one_that_stopped_is_a_plateau_not_a_current_leak(weeks: dict[str, Week]) -> None:
    """2 MiB/h from 07:12 on day 1 to noon on day 2, then five and a half flat days: plateau, saying
    when it stopped."""
    week = weeks["stopped"]
    v = _diagnose(week)
    assert v.verdict == "plateau"
    assert not v.leak
    assert v.growth_began is None
    assert "not a current leak" in v.summary
    assert "until 2026-12-02 1" in v.summary  # stopped at 12:00; the bend is found within hours


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_a_leak_in_the_last_day_is_found_by_the_recent_part(weeks: dict[str, Week]) -> None:
    """A leak starting at 06:00 on day 7, too late to bend the whole week's trend: still a leak."""
    week = weeks["late"]
    v = _diagnose(week)
    assert v.leak
    assert v.growth_began is not None and week.leak_start_t is not None
    assert abs(v.growth_began.t - week.leak_start_t) < 2 * HOUR
    assert any("over the last 2 d 8 h" in e or "from the last" in e for e in v.evidence)


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_the_digest_is_bounded_evenly_strided_and_ends_with_the_latest_rows(weeks: dict[str, Week]) -> None:
    """A week's digest holds at most max_points + recent samples: every k-th row, then the last
    `recent` rows at full resolution, the very last row included."""
    with Timeline.open_existing(weeks["flat"].path) as timeline:
        digest = timeline.sample_digest(max_points=1000, recent=200)
    with sqlite3.connect(weeks["flat"].path) as conn:
        newest = conn.execute("SELECT t, mono FROM samples ORDER BY seq DESC LIMIT 1").fetchone()
    conn.close()
    assert digest.total == 60_480
    assert len(digest.samples) <= 1000 + 200 + 1
    assert (digest.samples[-1].t, digest.samples[-1].mono) == newest
    monos = [s.mono for s in digest.samples]
    assert monos == sorted(monos)
    steps = [b - a for a, b in itertools.pairwise(monos)]
    assert min(steps[:900]) > 0.9 * digest.stride * 10 and max(steps[:900]) < 1.1 * digest.stride * 10
    assert max(steps[-199:]) < 11


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_the_digest_gives_the_verdict_of_the_full_read(weeks: dict[str, Week]) -> None:
    """Classifying every one of the 60,480 samples and classifying the digest agree on the verdict
    and on when growth began."""
    week = weeks["python"]
    with Timeline.open_existing(week.path) as timeline:
        full = classify(timeline.samples())
    digest = _diagnose(week)
    assert full.verdict == digest.verdict == "python_leak"
    assert full.growth_began is not None and digest.growth_began is not None
    assert abs(full.growth_began.t - digest.growth_began.t) < HOUR


@pytest.mark.slow  # writes a week of samples (a few seconds) for the module
def test_growth_began_survives_the_verdict_json_and_prints_in_the_summary(weeks: dict[str, Week]) -> None:
    """`growth_began` is in to_json (wall epoch, offset, rate), comes back from from_json, and the
    terminal summary prints when growth began."""
    v = _diagnose(weeks["python"])
    data = json.loads(json.dumps(v.to_json()))
    assert set(data["growth_began"]) == {"t", "offset_s", "rate_bytes_per_s"}
    assert data["growth_began"]["t"] == pytest.approx(START + data["growth_began"]["offset_s"], abs=1.0)
    back = Verdict.from_json(data)
    assert back.growth_began is not None and v.growth_began is not None
    assert back.growth_began.offset_s == pytest.approx(v.growth_began.offset_s, abs=0.01)
    out = io.StringIO()
    render_verdict(v, out, color=False)
    assert "growth began: 2026-12-04 1" in out.getvalue()


# -- without a week on disk ---------------------------------------------------------------------


def test_a_short_runs_verdict_json_says_growth_began_null() -> None:
    """A stable minute has no growth_began; its JSON carries the key as null (additive to /1)."""
    v = classify(samples_from_series({"process.rss_bytes": [100 * MiB] * 30}))
    assert v.to_json()["growth_began"] is None
    assert Verdict.from_json(v.to_json()).growth_began is None


def test_a_short_leak_that_grows_from_the_start_began_at_offset_zero() -> None:
    """A leak growing from the first sample began at offset 0, at the first sample's wall time."""
    rng = random.Random(3)
    rss = [100 * MiB + i * 500_000 + rng.gauss(0, 50_000) for i in range(40)]
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": [1000 + 50 * i for i in range(40)]}
    )
    v = classify(samples)
    assert v.leak and v.growth_began is not None
    assert v.growth_began.offset_s == 0.0
    assert v.growth_began.t == samples[0].t
    assert "flat for" not in v.summary


def test_a_short_run_flat_then_leaking_is_dated_at_the_bend_in_bytes_per_second() -> None:
    """Flat for 20 s, then 300 KB/s of objects: growth began at +20 s, said per second (a short run)."""
    rng = random.Random(1)
    rss = [100 * MiB + rng.gauss(0, 30_000) + max(0, i - 20) * 300_000 for i in range(60)]
    blocks = [1000 + max(0, i - 20) * 500 for i in range(60)]
    samples = samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks})
    v = classify(samples)
    assert v.verdict == "python_leak" and v.growth_began is not None
    assert v.growth_began.offset_s == pytest.approx(20.0, abs=2.0)
    assert v.growth_began.rate_bytes_per_s == pytest.approx(300_000, rel=0.05)
    assert "It was flat for 20.0 s and grows since" in v.summary and "KiB/s." in v.summary
    out = io.StringIO()
    render_verdict(v, out, color=False)
    assert "growth began: " in out.getvalue() and "after 20.0 s flat" in out.getvalue()


def test_total_samples_is_the_verdicts_sample_count() -> None:
    """A digest standing for more samples than it holds reports the count it stands for."""
    samples = samples_from_series({"process.rss_bytes": [100 * MiB] * 30})
    assert classify(samples, total_samples=6_000).samples == 6_000
    assert classify(samples).samples == 30


def test_a_hinge_finds_the_bend_where_two_free_lines_split_at_a_drop() -> None:
    """Flat with a nightly 4 MiB drop, then a ramp: two free lines split at the drop, a hinge
    (continuous=True) at the bend, with a flat slope before it and the ramp's after."""
    rng = random.Random(5)
    t = [i * 300.0 for i in range(2000)]  # a week, every 5 min
    bend = 400_000.0
    y = [
        400 * MiB
        + 4 * MiB * (((a - 3 * HOUR) % DAY) / DAY)
        + max(0.0, a - bend) * 600.0
        + rng.gauss(0, 256 * 1024)
        for a in t
    ]
    hinge = detect_change(t, y, max_points=len(t), min_share=0.05, continuous=True)
    assert hinge is not None
    assert abs(hinge.t - bend) < HOUR
    assert abs(hinge.slope_before_per_s) < 60.0
    assert hinge.slope_after_per_s == pytest.approx(600.0, rel=0.1)
    assert hinge.jump == 0.0
    free = detect_change(t, y, max_points=len(t), min_share=0.05)
    assert free is not None and abs(free.t - bend) > hinge.t - bend


def test_a_hinge_finds_no_bend_in_a_straight_line() -> None:
    """A straight noisy line has no bend: detect_change(continuous=True) answers None."""
    rng = random.Random(6)
    t = [float(i) for i in range(500)]
    assert detect_change(t, [5.0 * a + rng.gauss(0, 20) for a in t], continuous=True) is None


def test_min_share_out_of_range_is_a_usage_error() -> None:
    """min_share must lie in [0, 1)."""
    with pytest.raises(UsageError, match="min_share"):
        detect_change([0.0, 1.0], [0.0, 1.0], min_share=1.0)


def test_a_small_digest_strides_by_seq_and_keeps_the_latest_rows() -> None:
    """100 rows, max_points=10, recent=5: rows 1, 11, ..., 91 by stride, then rows 96-100."""
    with Timeline() as timeline:
        for i in range(100):
            timeline.append(Sample(t=START + i, mono=float(i), metrics={"process.rss_bytes": i}))
        digest = timeline.sample_digest(max_points=10, recent=5)
        everything = timeline.sample_digest(max_points=100, recent=5)
        with pytest.raises(ValueError, match="max_points"):
            timeline.sample_digest(max_points=1)
    assert digest.stride == 10 and digest.total == 100 and digest.recent == 5
    assert [s.metrics["process.rss_bytes"] for s in digest.samples] == [*range(0, 95, 10), *range(95, 100)]
    assert everything.stride == 1 and len(everything.samples) == 100


def test_an_empty_timeline_has_an_empty_digest() -> None:
    """No samples yet: an empty digest, not an error."""
    with Timeline() as timeline:
        digest = timeline.sample_digest()
    assert digest.samples == [] and digest.total == 0
