"""The sampler: a daemon thread that reads every memory layer on a fixed cadence.

Cheap probes are read every tick (``interval`` seconds); costly ones (the pymalloc table) on a slower
cadence (``slow_interval``). Each tick becomes a :class:`~memwarden.timeline.Sample` kept in a bounded
ring buffer in memory and, when a :class:`~memwarden.timeline.Timeline` is given, appended to its file.

The sampler never hurts its host: a probe that raises is counted and skipped (the error is kept for
:meth:`Sampler.status`), an unavailable layer is recorded once with its reason, and observers (the
investigator, guards, exporters) run in the same thread under the same protection.

Observers see a :class:`Tick`: this tick's sample, the latest reading of each layer, the recent
samples and ``record(kind, data)`` to write an event. They never get the sampler itself, so none of
them can reconfigure sampling, write samples or reach another observer.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .exceptions import ProbeUnavailable, UsageError
from .probes._base import Availability, Metrics, Probe, flatten
from .timeline import Event, Sample, Timeline


class Tick:
    """What an observer is shown after each tick: narrow, read-only, plus :meth:`record`.

    ``sample`` is this tick's sample; ``started_mono`` the monotonic time sampling started;
    ``interval`` the sampler's cadence in seconds.
    """

    __slots__ = ("_sampler", "interval", "sample", "started_mono")

    def __init__(self, sampler: Sampler, sample: Sample) -> None:
        self._sampler = sampler
        self.sample = sample
        self.started_mono = sampler.started_mono if sampler.started_mono is not None else sample.mono
        self.interval = sampler.interval

    @property
    def mono(self) -> float:
        """This tick's monotonic time (seconds)."""
        return self.sample.mono

    def now(self) -> float:
        """The sampler's monotonic clock now (seconds)."""
        return self._sampler.clock()

    def latest(self, layer: str) -> Any:
        """The latest reading (a frozen dataclass) of ``layer``, or ``None`` if it was never read."""
        return self._sampler.latest(layer)

    def recent(self, n: int | None = None) -> list[Sample]:
        """The last ``n`` samples (all those in the in-memory ring by default), oldest first."""
        ring = self._sampler.ring
        if n is None or n >= len(ring):
            return list(ring)
        return list(itertools.islice(ring, len(ring) - max(n, 0), None))

    def record(self, kind: str, data: Mapping[str, Any]) -> None:
        """Write an event (the timeline's, when there is one; always the sampler's recent events)."""
        self._sampler.record(kind, data)

    def recheck_layers(self) -> None:
        """Ask the layers that could not be read whether they can be now (after tracing stops, say)."""
        self._sampler.refresh_availability()

    def unavailable(self) -> dict[str, str]:
        """``{layer: why}`` for each layer that cannot be read right now."""
        return {st.layer: st.reason for st in self._sampler.status() if not st.available}

    def sample_again(self) -> None:
        """Ask the sampler's thread for one more sample as soon as this tick's observers are done,
        before the next one on the cadence (which keeps its time).

        For an observer that did heavy work in this tick (memwarden's window close): the sample
        right after such work is distorted by it, and the diagnosis leaves it out; without this,
        a program of a few seconds sampled every second lost one of its six samples to it.
        """
        self._sampler._sample_again = True


class Observer(Protocol):
    """Called in the sampler's thread after each tick (the investigator, a guard, an exporter).

    It must be quick (it delays the next tick) and may raise: the error is kept in
    :attr:`Sampler.observer_errors`, and sampling goes on.
    """

    def __call__(self, tick: Tick) -> None: ...


@dataclass
class LayerStatus:
    """What the sampler knows of one layer: readable or not, and its errors."""

    layer: str
    available: bool
    reason: str = ""
    reads: int = 0
    errors: int = 0
    last_error: str = ""
    total_read_s: float = 0.0

    @property
    def mean_read_s(self) -> float | None:
        return self.total_read_s / self.reads if self.reads else None


class PackedMetrics(Mapping[str, "float | int | None"]):
    """A sample's metrics, packed: one shared key tuple and one array of doubles.

    A plain dict of ~60 numbers costs ~60 Python objects per tick; the sampler's own ring would
    then show up as steady growth of Python's allocated blocks. Packed, a sample costs three.
    Integers come back as ``int`` (exact up to 2**53), missing values as ``None``.
    """

    __slots__ = ("_index", "_keys", "_values")

    _interned: ClassVar[dict[tuple[str, ...], tuple[tuple[str, ...], dict[str, int]]]] = {}

    def __init__(self, metrics: Mapping[str, float | int | None]) -> None:
        keys = tuple(metrics)
        shared = self._interned.get(keys)
        if shared is None:
            if len(self._interned) > 64:  # layers come and go rarely; never let this grow unbounded
                self._interned.clear()
            shared = self._interned.setdefault(keys, (keys, {k: i for i, k in enumerate(keys)}))
        # the shared key tuple, not this tick's equal copy: keys cost nothing per sample
        self._keys, self._index = shared
        self._values = array("d", (math.nan if v is None else float(v) for v in metrics.values()))

    def __getitem__(self, key: str) -> float | int | None:
        v = self._values[self._index[key]]
        if v != v:
            return None
        return int(v) if v.is_integer() and abs(v) < 2**53 else v

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class _ProbeSlot:
    probe: Probe[Any]
    status: LayerStatus
    next_due: float = 0.0
    latest: Any = None


def validate_interval(interval: float, name: str = "interval") -> float:
    """``interval`` as a float, or a :class:`UsageError` saying what is wrong with it."""
    try:
        value = float(interval)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number of seconds, not {interval!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"{name} must be a positive number of seconds, not {interval!r} (try 1 or 0.1)")
    if value < 0.01:
        raise UsageError(
            f"{name} {value} s is too short: the sampler would cost more than it tells (use >= 0.01)"
        )
    return value


@dataclass
class Sampler:
    """Reads ``probes`` every ``interval`` seconds in a daemon thread.

    ``slow_interval`` is the cadence of probes whose ``cost`` is ``"costly"`` (default: every 5
    ticks, at least every 2 s). ``ring_size`` bounds the samples kept in memory; the timeline keeps
    the whole run (within its own retention).

    With ``ramp_from`` the cadence adapts to a program's length: it starts at ``ramp_from``
    seconds and slows evenly to ``interval`` over the first ``ramp_s`` seconds, so a program of a
    few seconds gets samples enough for a verdict and a long one pays the slower cadence.
    """

    probes: Sequence[Probe[Any]]
    interval: float = 1.0
    slow_interval: float | None = None
    ramp_from: float | None = None
    ramp_s: float = 30.0
    ring_size: int = 600
    timeline: Timeline | None = None
    observers: list[Observer] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    recheck_every: int = 5
    """Ask unavailable layers again every this many ticks (a program initialises CUDA after we start)."""

    def __post_init__(self) -> None:
        self.interval = validate_interval(self.interval)
        if self.slow_interval is None:
            self.slow_interval = max(self.interval * 5, 2.0)
        self.slow_interval = validate_interval(self.slow_interval, "slow_interval")
        if self.ramp_from is not None:
            self.ramp_from = min(validate_interval(self.ramp_from, "ramp_from"), self.interval)
        if not self.ramp_s >= 0:
            raise UsageError(f"ramp_s must be >= 0 seconds, not {self.ramp_s!r}")
        if self.ring_size < 1:
            raise UsageError("ring_size must be at least 1")
        self.ring: collections.deque[Sample] = collections.deque(maxlen=self.ring_size)
        self._slots: list[_ProbeSlot] = []
        for probe in self.probes:
            try:
                avail = probe.available()
            except Exception as exc:  # a probe must never take its host down, even here
                avail = Availability.no(f"availability check failed: {exc!r}")
            self._slots.append(_ProbeSlot(probe, LayerStatus(probe.layer, bool(avail), avail.reason)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self.ticks = 0
        self.observer_errors: collections.deque[str] = collections.deque(maxlen=20)
        self.events: collections.deque[Event] = collections.deque(maxlen=200)
        """The latest events recorded through :meth:`record` (the timeline keeps them all)."""
        self.started_mono: float | None = None
        self._sample_again = False

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self, *, first_sample_now: bool = True) -> Sampler:
        """Take a first sample now (or, with ``first_sample_now=False``, in the thread), then keep
        sampling in a daemon thread."""
        if self._thread is not None:
            return self
        self.started_mono = self.clock()
        if first_sample_now:
            self.sample_once()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(not first_sample_now,), name="memwarden-sampler", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, *, final_sample: bool = True, timeout: float = 30.0) -> None:
        """Stop the thread (waiting at most ``timeout`` s) and take one last sample."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if final_sample:
            self.refresh_availability()
            self.sample_once(force_all=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self, sample_first: bool = False) -> None:
        self._sample_again = False
        if sample_first:
            self._tick()
        next_tick = self.clock() + self.interval_at(self.clock())
        while not self._stop.wait(max(0.0, next_tick - self.clock())):
            self._tick()
            now = self.clock()
            next_tick += self.interval_at(now)
            if next_tick < now:  # we fell behind (a long GC, a suspended process): skip, don't burst
                next_tick = now + self.interval_at(now)

    def _tick(self) -> None:
        """One tick of the thread: a sample, and one more if an observer asked (Tick.sample_again)."""
        try:
            self.sample_once()
            if self._sample_again and not self._stop.is_set():  # once: no observer may burst
                self._sample_again = False
                self.sample_once()
        except Exception as exc:  # never let the thread die silently; never crash the host
            self.observer_errors.append(f"tick failed: {exc!r}")
        self._sample_again = False

    def interval_at(self, now: float) -> float:
        """The cadence at monotonic time ``now``: ``interval``, or on the ramp from ``ramp_from``."""
        if self.ramp_from is None or self.started_mono is None or self.ramp_s <= 0:
            return self.interval
        share = min(1.0, max(0.0, (now - self.started_mono) / self.ramp_s))
        return self.ramp_from + (self.interval - self.ramp_from) * share

    # -- sampling -----------------------------------------------------------------------------------

    def sample_once(self, *, force_all: bool = False) -> Sample:
        """Read every due probe now (every probe with ``force_all``) and return (and record) the sample."""
        with self._tick_lock:
            now = self.clock()
            if self.ticks and self.ticks % self.recheck_every == 0:
                self.refresh_availability()
            metrics: Metrics = {}
            for slot in self._slots:
                if not slot.status.available:
                    continue
                if slot.probe.cost == "costly" and now < slot.next_due and not force_all:
                    continue
                started = self.clock()
                try:
                    reading = slot.probe.read()
                except ProbeUnavailable as exc:
                    slot.status.available = False
                    slot.status.reason = exc.reason
                    continue
                except Exception as exc:
                    slot.status.errors += 1
                    slot.status.last_error = repr(exc)
                    continue
                finally:
                    slot.status.total_read_s += self.clock() - started
                slot.status.reads += 1
                slot.latest = reading
                if slot.probe.cost == "costly":
                    slot.next_due = now + (self.slow_interval or self.interval)
                metrics.update(flatten(slot.probe.layer, reading))
            sample = Sample(self.wall_clock(), now, PackedMetrics(metrics))
            self.ring.append(sample)
            self.ticks += 1
            if self.timeline is not None:
                try:
                    self.timeline.append(sample)
                except Exception as exc:  # a full disk must not stop the program we watch
                    self.observer_errors.append(f"timeline write failed: {exc!r}")
        tick = Tick(self, sample)
        for observer in list(self.observers):
            try:
                observer(tick)
            except Exception as exc:
                self.observer_errors.append(f"{observer!r}: {exc!r}")
        return sample

    def tick(self) -> Tick:
        """A :class:`Tick` on the latest sample (for work done outside the loop, such as at stop)."""
        if not self.ring:
            raise UsageError("nothing has been sampled yet (start the sampler first)")
        return Tick(self, self.ring[-1])

    def record(self, kind: str, data: Mapping[str, Any], t: float | None = None) -> None:
        """Keep an event in memory and write it to the timeline, if there is one (never raises)."""
        event = Event(self.wall_clock() if t is None else t, kind, dict(data))
        self.events.append(event)
        if self.timeline is not None:
            try:
                self.timeline.add_event(kind, event.data, t=event.t)
            except Exception as exc:  # a full disk must not stop the program we watch
                self.observer_errors.append(f"event write failed: {exc!r}")

    def refresh_availability(self) -> None:
        """Ask unavailable probes again (a program may have initialised CUDA since)."""
        for slot in self._slots:
            if not slot.status.available:
                try:
                    avail = slot.probe.available()
                except Exception:
                    continue
                if avail:
                    slot.status.available = True
                    slot.status.reason = ""
                else:
                    slot.status.reason = avail.reason

    # -- introspection ------------------------------------------------------------------------------

    def status(self) -> list[LayerStatus]:
        """Each layer's availability, read count, errors and mean cost."""
        return [slot.status for slot in self._slots]

    def latest(self, layer: str) -> Any:
        """The last reading (the dataclass) of ``layer``, or ``None``."""
        for slot in self._slots:
            if slot.probe.layer == layer:
                return slot.latest
        return None

    def samples(self) -> list[Sample]:
        """The samples in the in-memory ring, oldest first."""
        return list(self.ring)


__all__ = ["LayerStatus", "Observer", "PackedMetrics", "Sampler", "Tick", "validate_interval"]
