"""The sampler: cadence, bounded memory, and never hurting its host."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memwarden.exceptions import UsageError
from memwarden.probes._base import Availability
from memwarden.sampler import Sampler, Tick, validate_interval
from memwarden.testing import FakeClock, ReplayProbe
from memwarden.timeline import Sample, Timeline


class _Exploding:
    """A probe whose read always raises an unexpected error."""

    layer = "boom"
    cost = "cheap"

    def available(self) -> Availability:
        return Availability.yes()

    def read(self) -> Any:
        raise RuntimeError("kaboom")


def test_cheap_probes_every_tick_costly_on_the_slow_cadence() -> None:
    """A costly probe is read only once per slow_interval, a cheap one every tick."""
    clock = FakeClock()
    cheap = ReplayProbe("fast", [{"x": 1}])
    costly = ReplayProbe("slow", [{"y": 2}], cost="costly")
    s = Sampler([cheap, costly], interval=1.0, slow_interval=5.0, clock=clock)
    for _ in range(10):
        s.sample_once()
        clock.advance(1.0)
    assert cheap.reads == 10
    assert costly.reads == 2
    assert s.samples()[0].metrics == {"fast.x": 1, "slow.y": 2}
    assert s.samples()[1].metrics == {"fast.x": 1}


def test_a_failing_probe_is_counted_not_raised() -> None:
    """An exception inside a probe never reaches the host; the sampler records it."""
    s = Sampler([_Exploding(), ReplayProbe("ok", [{"v": 3}])], interval=1.0, clock=FakeClock())
    sample = s.sample_once()
    assert sample.metrics == {"ok.v": 3}
    (boom,) = [st for st in s.status() if st.layer == "boom"]
    assert boom.errors == 1 and "kaboom" in boom.last_error


def test_an_unavailable_layer_says_why_and_is_not_read() -> None:
    """A layer that is unavailable is reported with its reason and costs nothing."""
    gpu = ReplayProbe("gpu", [], unavailable="torch not imported")
    s = Sampler([gpu], interval=1.0, clock=FakeClock())
    s.sample_once()
    (st,) = s.status()
    assert not st.available and st.reason == "torch not imported"
    assert gpu.reads == 0


def test_ring_buffer_is_bounded() -> None:
    """The in-memory ring keeps at most ring_size samples, the newest ones."""
    clock = FakeClock()
    s = Sampler([ReplayProbe("a", [{"i": i} for i in range(50)])], interval=1.0, ring_size=10, clock=clock)
    for _ in range(50):
        s.sample_once()
        clock.advance(1)
    assert len(s.samples()) == 10
    assert s.samples()[-1].metrics["a.i"] == 49


def test_observer_errors_do_not_stop_sampling() -> None:
    """A failing observer is recorded and the next observers and ticks still run."""
    seen: list[Sample] = []

    def bad(tick: Tick) -> None:
        raise ValueError("observer bug")

    def good(tick: Tick) -> None:
        seen.append(tick.sample)

    s = Sampler([ReplayProbe("a", [{"v": 1}])], interval=1.0, clock=FakeClock(), observers=[bad, good])
    s.sample_once()
    s.sample_once()
    assert len(seen) == 2
    assert any("observer bug" in e for e in s.observer_errors)


def test_thread_samples_into_the_timeline_and_stops(tmp_path: Path) -> None:
    """A started sampler runs as a daemon thread, writes to the timeline and stops on request."""
    tl = Timeline(tmp_path / "t.db")
    s = Sampler([ReplayProbe("a", [{"v": 1}])], interval=0.02, timeline=tl)
    s.start()
    assert s._thread is not None and s._thread.daemon
    deadline = time.monotonic() + 5
    while tl.sample_count() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    assert not s.running
    n = tl.sample_count()
    time.sleep(0.1)
    assert tl.sample_count() == n  # nothing after stop
    assert n >= 5
    assert not any(t.name == "memwarden-sampler" for t in threading.enumerate())
    tl.close()


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "nan", "inf", "0.001", ""])
def test_bad_intervals_are_refused_with_the_fix(bad: str) -> None:
    """An interval that is not a positive, sane number of seconds is a UsageError that says so."""
    with pytest.raises(UsageError, match="interval"):
        validate_interval(bad)


def test_sampling_the_real_process_reads_rss() -> None:
    """With the default probes the sampler reads a positive RSS of this very process."""
    from memwarden.probes import default_probes

    s = Sampler(default_probes(), interval=1.0)
    sample = s.sample_once()
    assert sample.metrics["process.rss_bytes"] > 1_000_000
    assert sample.metrics["objects.allocated_blocks"] > 1000


def test_a_layer_that_becomes_available_later_is_picked_up() -> None:
    """A layer unavailable at start (CUDA not yet initialised) is read once it becomes available."""

    class Late:
        layer = "late"
        cost = "cheap"
        ready = False

        def available(self) -> Availability:
            return Availability.yes() if self.ready else Availability.no("not yet")

        def read(self) -> Any:
            return ReplayProbe._as_reading({"v": 7})

    probe = Late()
    clock = FakeClock()
    s = Sampler([probe], interval=1.0, clock=clock, recheck_every=2)
    assert s.sample_once().metrics == {}
    probe.ready = True
    got = [s.sample_once().metrics for _ in range(3)]
    assert {"late.v": 7} in got


def test_packed_metrics_read_back_what_was_stored() -> None:
    """Packed samples give back ints as ints, floats as floats and None as None."""
    from memwarden.sampler import PackedMetrics

    m = PackedMetrics({"a.int": 123456789012, "a.float": 0.25, "a.none": None, "a.zero": 0})
    assert dict(m) == {"a.int": 123456789012, "a.float": 0.25, "a.none": None, "a.zero": 0}
    assert isinstance(m["a.int"], int) and m.get("missing") is None and len(m) == 4


def test_a_full_ring_costs_few_python_objects_per_sample() -> None:
    """The sampler's own ring must not look like a leak: a sample costs a handful of blocks, not one per metric."""
    import sys

    clock = FakeClock()
    reading = {f"m{i}": i * 1.5 for i in range(60)}
    s = Sampler([ReplayProbe("a", [reading])], interval=1.0, ring_size=2000, clock=clock)
    for _ in range(50):  # warm up caches
        s.sample_once()
    before = sys.getallocatedblocks()
    for _ in range(1000):
        s.sample_once()
        clock.advance(1)
    per_sample = (sys.getallocatedblocks() - before) / 1000
    assert per_sample < 8, per_sample


def test_the_ramp_starts_fast_and_slows_evenly_to_the_interval() -> None:
    """With ramp_from, the cadence starts at ramp_from and reaches interval after ramp_s seconds;
    without it, it is the interval throughout; ramp_from above the interval is the interval."""
    clock = FakeClock()
    sampler = Sampler(
        [ReplayProbe("process", [{"rss_bytes": 1}])], interval=1.0, ramp_from=0.2, ramp_s=30.0, clock=clock
    )
    sampler.started_mono = clock()
    assert sampler.interval_at(clock()) == pytest.approx(0.2)
    assert sampler.interval_at(clock() + 15.0) == pytest.approx(0.6)
    assert sampler.interval_at(clock() + 30.0) == pytest.approx(1.0)
    assert sampler.interval_at(clock() + 3600.0) == pytest.approx(1.0)
    fixed = Sampler([ReplayProbe("process", [{"rss_bytes": 1}])], interval=1.0, clock=clock)
    fixed.started_mono = clock()
    assert fixed.interval_at(clock()) == 1.0
    above = Sampler([ReplayProbe("process", [{"rss_bytes": 1}])], interval=0.5, ramp_from=2.0, clock=clock)
    assert above.ramp_from == 0.5
    with pytest.raises(UsageError):
        Sampler([ReplayProbe("process", [{"rss_bytes": 1}])], interval=1.0, ramp_from=0.001)


def test_a_ramping_sampler_takes_more_samples_in_its_first_seconds() -> None:
    """A real sampling thread with a 0.05 s ramp to 0.5 s takes several times the samples of a fixed
    0.5 s cadence in its first second."""
    counts = []
    for ramp in (0.05, None):
        sampler = Sampler([ReplayProbe("process", [{"rss_bytes": 1}] * 1000)], interval=0.5, ramp_from=ramp)
        sampler.start()
        time.sleep(1.0)
        sampler.stop(final_sample=False)
        counts.append(sampler.ticks)
    assert counts[0] >= 2 * counts[1], counts


def test_an_observer_can_ask_for_one_more_sample_at_once() -> None:
    """An observer that calls tick.sample_again() gets one more sample right after its tick, before
    the next one on the cadence; asking on every tick still gives one extra sample, not a burst."""
    asked: list[int] = []

    def observer(tick: Tick) -> None:
        if not asked:
            asked.append(1)
            tick.sample_again()

    s = Sampler([ReplayProbe("a", [{"v": 1}])], interval=5.0, observers=[observer])
    s.start(first_sample_now=False)
    deadline = time.monotonic() + 3
    while len(s.ring) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    s.stop(final_sample=False)
    assert len(s.ring) == 2, len(s.ring)  # the first tick and the one asked for, long before 5 s
    assert s.ring[1].mono - s.ring[0].mono < 1.0

    greedy = Sampler([ReplayProbe("a", [{"v": 1}])], interval=5.0, observers=[lambda t: t.sample_again()])
    greedy.start(first_sample_now=False)
    time.sleep(0.5)
    greedy.stop(final_sample=False)
    assert len(greedy.ring) == 2, len(greedy.ring)
