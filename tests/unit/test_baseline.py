"""Baseline figures and their comparison: pure computations on recorded series and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memwarden.baseline import Baseline, BaselineError, Figure, combine, compare, figures_of_run, load


def test_figures_of_a_flat_run_have_no_growth_and_a_growing_run_has_its_rate() -> None:
    """A flat native series grows 0 B/s exactly; one rising 1 MiB/s reports about 1 MiB/s, its peak and steady."""
    ts = [0.2 * i for i in range(30)]
    flat = figures_of_run({"native": (ts, [4e6 + (i % 3) * 100 for i in range(30)])})
    assert flat["native.growth_per_s"] == 0.0
    assert flat["native.peak"] == 4e6 + 200
    rising = figures_of_run({"native": (ts, [4e6 + 2**20 * t for t in ts])})
    assert rising["native.growth_per_s"] == pytest.approx(2**20, rel=0.01)
    assert rising["native.steady"] > rising["native.peak"] - 2**20 * 2.1


def test_combine_keeps_the_median_and_the_largest_distance_as_noise() -> None:
    """Three runs 10, 12 and 17: median 12, noise 5, each run kept."""
    figures = combine([{"process.peak": 10.0}, {"process.peak": 12.0}, {"process.peak": 17.0}])
    assert figures["process.peak"] == Figure(12.0, 5.0, "B", (10.0, 12.0, 17.0))


def test_a_figure_regresses_only_beyond_tolerance_noise_and_floor() -> None:
    """The allowance is the largest of 10 % of the value, 3x the noise, and the unit's floor."""
    base = Baseline(
        workload=("app.py",),
        interval=0.2,
        figures={
            "process.peak": Figure(100e6, 1e6, "B", (100e6,)),  # 10 % (10 MB) beats 3x noise and the floor
            "native.steady": Figure(4e6, 2e6, "B", (4e6,)),  # 3x noise (6 MB) beats 10 % and the floor
            "native.growth_per_s": Figure(0.0, 0.0, "B", (0.0,)),  # the rate floor, 256 KiB/s
        },
    )
    ok = {
        "process.peak": Figure(109e6, 0, "B", ()),
        "native.steady": Figure(9.9e6, 0, "B", ()),
        "native.growth_per_s": Figure(200 * 1024, 0, "B", ()),
    }
    assert not any(c.regressed for c in compare(base, ok))
    bad = {
        "process.peak": Figure(111e6, 0, "B", ()),
        "native.steady": Figure(10.1e6, 0, "B", ()),
        "native.growth_per_s": Figure(300 * 1024, 0, "B", ()),
    }
    assert [c.name for c in compare(base, bad) if c.regressed] == [
        "native.growth_per_s",
        "native.steady",
        "process.peak",
    ]


def test_a_short_runs_growth_allowance_spreads_a_levels_floor_over_the_run() -> None:
    """Over a 2 s run, a growth per second is allowed at least the 2 MiB level floor / 2 s = 1 MiB/s;
    over a 200 s run the 256 KiB/s rate floor stands."""
    MiB = 1024 * 1024

    def baseline(seconds: float) -> Baseline:
        return Baseline(
            workload=("-m", "pytest"),
            interval=0.2,
            figures={
                "native.growth_per_s": Figure(1.5 * MiB, 0.0, "B", (1.5 * MiB,)),
                "run.duration_s": Figure(seconds, 0.0, "s", (seconds,)),
            },
        )

    def now(seconds: float) -> dict[str, Figure]:
        return {
            "native.growth_per_s": Figure(2.3 * MiB, 0, "B", ()),
            "run.duration_s": Figure(seconds, 0, "s", ()),
        }

    short = compare(baseline(2.0), now(2.0))
    assert [c.name for c in short] == ["native.growth_per_s"]  # the duration itself is not compared
    assert short[0].allowed == pytest.approx(1.0 * MiB) and not short[0].regressed
    long = compare(baseline(200.0), now(200.0))
    assert long[0].regressed and long[0].allowed == pytest.approx(256 * 1024)


def test_a_baseline_survives_a_round_trip_through_its_file(tmp_path: Path) -> None:
    """What save writes, load reads back the same."""
    base = Baseline(
        ("-m", "pytest", "tests/test_api.py"), 0.5, combine([{"python.peak": 7.0}]), tolerance=0.2
    )
    base.save(tmp_path / "b.json")
    again = load(tmp_path / "b.json")
    assert again.workload == base.workload and again.figures == base.figures and again.tolerance == 0.2
    assert json.loads((tmp_path / "b.json").read_text())["schema"] == "memwarden.baseline/1"


def test_a_wrong_schema_is_refused_with_the_schema_named(tmp_path: Path) -> None:
    """A JSON file of another kind is a BaselineError (a ValueError) naming what it found."""
    (tmp_path / "v.json").write_text('{"schema": "memwarden.verdict/1"}')
    with pytest.raises(BaselineError, match=r"schema 'memwarden.verdict/1', expected 'memwarden.baseline/1'"):
        load(tmp_path / "v.json")
    assert issubclass(BaselineError, ValueError)
