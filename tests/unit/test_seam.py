"""The observer seam: guards and exporters plug into a Monitor and see a Tick, never the Sampler."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import pytest

import memwarden
from memwarden import InvestigatorConfig, Monitor, Tick, Timeline, UsageError
from memwarden.attribution import Investigator
from memwarden.guards.actions import EVENT_ACTION, collect
from memwarden.sampler import Sampler
from memwarden.testing import FakeClock, ReplayProbe


class RssGauge:
    """An exporter in a few lines: the latest RSS and the recent growth, read at each tick."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def __call__(self, tick: Tick) -> None:
        process = tick.latest("process")
        recent = tick.recent(5)
        self.values["rss_bytes"] = process.rss_bytes
        first, last = recent[0], recent[-1]
        span = last.mono - first.mono
        if span > 0:
            rise = (last.metrics["process.rss_bytes"] or 0) - (first.metrics["process.rss_bytes"] or 0)
            self.values["rss_growth_bytes_per_s"] = rise / span


class CollectOverBudget:
    """A guard in a few lines: over its budget it collects garbage and records what that freed."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.seen: list[Tick] = []

    def __call__(self, tick: Tick) -> None:
        self.seen.append(tick)
        if tick.latest("process").rss_bytes > self.budget_bytes:
            tick.record(EVENT_ACTION, collect(f"rss over {self.budget_bytes} bytes").to_json())


def test_a_guard_and_an_exporter_written_against_the_seam(tmp_path: Path) -> None:
    """Both plug into a Monitor, see each tick's readings, and the guard's actions land in the timeline."""
    gauge = RssGauge()
    guard = CollectOverBudget(budget_bytes=1)  # every tick is over: it acts every tick
    db = tmp_path / "run.db"
    # trim_at_stop off: the end-of-run malloc_trim is an action too, taken when earlier tests left glibc
    # holding free memory, and this test counts only the guard's
    with Monitor(interval=0.05, db=str(db), investigate=False, observers=[guard], trim_at_stop=False) as mon:
        mon.add_observer(gauge)
        deadline = time.monotonic() + 10
        while len(guard.seen) < 6 and time.monotonic() < deadline:  # each tick runs a full gc.collect()
            time.sleep(0.05)
    assert gauge.values["rss_bytes"] > 1_000_000
    assert "rss_growth_bytes_per_s" in gauge.values
    assert len(guard.seen) >= 5
    tick = guard.seen[-1]
    assert not any(isinstance(v, Sampler) for v in _public_values(tick))  # no way back to the sampler
    with Timeline.open_existing(db) as tl:
        actions = tl.events(EVENT_ACTION)
    assert len(actions) >= 5
    assert {a.data["action"] for a in actions} == {"gc_collect"}
    assert all(a.data["duration_s"] >= 0 and "collected" in a.data["details"] for a in actions)
    assert [e.kind for e in mon.events()].count(EVENT_ACTION) == len(actions)


def _public_values(obj: object) -> list[Any]:
    return [getattr(obj, name) for name in dir(obj) if not name.startswith("_")]


def test_a_failing_observer_is_recorded_and_sampling_goes_on() -> None:
    """An observer that raises costs its own call only: the others and the next ticks still run."""
    calls: list[int] = []

    def broken(tick: Tick) -> None:
        raise RuntimeError("exporter bug")

    with Monitor(interval=0.05, investigate=False, observers=[broken, lambda t: calls.append(1)]) as mon:
        time.sleep(0.3)
        assert mon.sampler is not None
        errors = list(mon.sampler.observer_errors)
    assert len(calls) >= 3
    assert any("exporter bug" in e for e in errors)


def test_removed_observers_are_no_longer_called() -> None:
    """remove_observer() stops the calls at once."""
    calls: list[float] = []

    def obs(tick: Tick) -> None:
        calls.append(tick.mono)

    with Monitor(interval=0.03, investigate=False) as mon:
        mon.add_observer(obs)
        time.sleep(0.2)
        mon.remove_observer(obs)
        n = len(calls)
        time.sleep(0.2)
        assert len(calls) == n
    assert n >= 2


def _investigate(series: list[int], config: InvestigatorConfig, seconds_per_tick: float) -> Investigator:
    """Tick an investigator by hand over an RSS series (no real growth: the windows find no site)."""
    clock = FakeClock()
    investigator = Investigator(config)
    sampler = Sampler(
        [ReplayProbe("process", [{"rss_bytes": v} for v in series])],
        interval=seconds_per_tick,
        ring_size=50,
        clock=clock,
        observers=[investigator],
    )
    sampler.started_mono = clock()
    for _ in series:
        sampler.sample_once()
        clock.advance(seconds_per_tick)
    investigator.finish(sampler.tick())
    return investigator


MIB = 1024 * 1024


def test_windows_are_budgeted_per_hour_so_a_late_leak_is_still_attributed() -> None:
    """A week at 10 s with growth from day 3 opens windows on day 3; no run-wide cap used them up."""
    day = 8640  # ticks of 10 s
    flat = [500 * MIB + (i % 7) * 4096 for i in range(2 * day)]
    growing = [500 * MIB + i * 20_000 for i in range(day // 24)]  # one hour of 2 KB/s, every tick up
    config = InvestigatorConfig(
        warmup_s=0.0, census=False, gpu_history=False, holder_budget_s=0.1, sample_budget_s=0.05
    )
    investigator = _investigate(flat + growing, config, 10.0)
    windows = investigator.evidence().windows
    assert windows, "no window opened for a leak that began on day 3"
    assert min(w.opened_s for w in windows) >= 2 * day * 10.0
    assert len(windows) <= config.windows_per_hour + 1  # one hour of growth: the hourly budget binds


def test_the_tracing_share_bounds_windows_within_the_hour() -> None:
    """Growth that never stops opens windows at most at the tracing share (beyond the first)."""
    hour = [500 * MIB + i * 300_000 for i in range(3600)]  # 1 s ticks, always rising
    config = InvestigatorConfig(
        warmup_s=0.0,
        census=False,
        gpu_history=False,
        cooldown_s=1.0,
        window_s=4.0,
        windows_per_hour=1000,
        max_tracing_share=0.02,
        holder_budget_s=0.1,
        sample_budget_s=0.05,
    )
    windows = _investigate(hour, config, 1.0).evidence().windows
    traced = sum(w.duration_s for w in windows)
    assert len(windows) >= 5
    assert traced <= 4.0 + 0.02 * 3600 + 4.0  # the first window, the share, and the one in flight


@pytest.mark.parametrize(
    ("field", "value"),
    [("window_s", 0), ("windows_per_hour", -1), ("max_tracing_share", 0), ("max_tracing_share", 1.5)],
)
def test_a_bad_budget_is_a_clear_usage_error(field: str, value: float) -> None:
    """Budgets out of range are refused when the config is made, naming the field."""
    with pytest.raises(UsageError, match=field):
        InvestigatorConfig(**{field: value})  # type: ignore[arg-type]


def test_diagnose_costs_a_bounded_number_of_samples_however_long_the_run() -> None:
    """After 20,000 ticks the monitor's digest plus its ring hold at most history + ring samples."""
    clock = FakeClock(start=time.monotonic() + 10)
    mon = Monitor(
        interval=1.0,
        probes=[ReplayProbe("process", [{"rss_bytes": 100 * MIB}])],
        investigate=False,
        ring_size=100,
        history_size=400,
        trim_at_stop=False,
    )
    mon.start()
    assert mon.sampler is not None
    mon.sampler.stop(final_sample=False)  # drive it by hand from here
    mon.sampler.clock = clock
    for _ in range(20_000):
        clock.advance(1.0)
        mon.sampler.sample_once()
    samples = mon.samples()
    assert 100 < len(samples) <= 500
    monos = [s.mono for s in samples]
    assert monos == sorted(monos)
    assert monos[-1] - monos[0] >= 19_000  # spread over the whole run, not only the end
    assert mon.diagnose().samples == len(samples)


def test_reset_forgets_the_global_monitor_and_the_watch_list() -> None:
    """reset() stops the process-wide monitor without a verdict and empties what watch() registered."""
    memwarden.reset()
    cache: dict[str, int] = memwarden.watch({}, "tests.CACHE")
    assert any(c.name == "tests.CACHE" for c in memwarden.find_caches())
    callbacks = len(gc.callbacks)
    mon = memwarden.start(interval=0.05, investigate=False)
    memwarden.reset()
    assert not mon.running
    assert len(gc.callbacks) == callbacks  # its gc pause timer is gone too
    assert not any(c.name == "tests.CACHE" for c in memwarden.find_caches())
    with pytest.raises(UsageError, match="not started"):
        memwarden.diagnose()
    del cache


def test_diagnose_takes_a_monitor_a_timeline_or_a_path(tmp_path: Path) -> None:
    """One verb: diagnose(monitor), diagnose(Timeline) and diagnose(path) agree on a recorded run."""
    db = tmp_path / "run.db"
    with Monitor(interval=0.05, db=str(db), investigate=False) as mon:
        time.sleep(0.3)
    by_path = memwarden.diagnose(db)
    with Timeline.open_existing(db) as tl:
        by_timeline = memwarden.diagnose(tl)
    assert by_path.verdict == by_timeline.verdict == mon.verdict.verdict  # type: ignore[union-attr]
    assert by_path.samples == by_timeline.samples == mon.verdict.samples  # type: ignore[union-attr]
    with pytest.raises(memwarden.TimelineError, match="no such file"):
        memwarden.diagnose(tmp_path / "missing.db")
    with pytest.raises(UsageError, match="takes a Monitor"):
        memwarden.diagnose(42)  # type: ignore[arg-type]


def test_every_deliberate_error_is_a_memwarden_error(tmp_path: Path) -> None:
    """Bad arguments across the API raise MemwardenError subclasses (and still the builtin kind)."""
    from memwarden.guards.gpu import EmptyCachePolicy

    cases = [
        lambda: Timeline(tmp_path / "t.db", max_samples=1),
        lambda: EmptyCachePolicy(threshold_bytes=-1),
        lambda: Monitor(on_fork="sometimes"),  # type: ignore[arg-type]
        lambda: Monitor(interval=0),
    ]
    for case in cases:
        with pytest.raises(memwarden.MemwardenError) as info:
            case()
        assert isinstance(info.value, ValueError)
