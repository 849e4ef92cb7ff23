"""What the exporters publish, read once from a monitor: plain families of labelled points.

The Prometheus collector, the OpenTelemetry instruments and the live endpoint all render the
same :class:`Family` list, so nothing is computed twice. A :class:`MonitorReadings` reads the
monitor's latest sample at call time (cheap: a dictionary copy), and keeps the costly parts, the
verdict and the growth rates, for ``verdict_ttl_s`` seconds, so a scrape every few seconds never
runs the diagnosis more than once per TTL.

The metrics of the catalogue keep their catalogue names. The few that exporters add (verdict,
leak, growth rates, cache entries, guard actions, the GC pause histogram) are declared once in
:data:`DERIVED`, with the same fields as a :class:`~memwarden.metrics.MetricSpec`.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import threading
import time
import typing
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .. import metrics as m
from ..diagnosis._evidence import EVENT_CACHES
from ..diagnosis._verdict import VerdictName
from ..guards.actions import EVENT_ACTION

if TYPE_CHECKING:
    from .._monitor import Monitor
    from ..diagnosis import Verdict
    from ..timeline import Event, Sample

FamilyKind = Literal["gauge", "counter", "histogram"]

#: Every verdict name, in the order of the verdict table (``memwarden_verdict{verdict=...}``).
VERDICTS: tuple[str, ...] = typing.get_args(VerdictName)

#: The byte gauges whose growth rate is published (``memwarden_growth_bytes_per_second{metric=...}``).
GROWTH_METRICS: tuple[str, ...] = (
    m.PROCESS_RSS_BYTES,
    m.PROCESS_USS_BYTES,
    m.PYMALLOC_ARENA_BYTES,
    m.LIBC_IN_USE_BYTES,
    m.TRACING_TRACED_BYTES,
    m.GPU_ALLOCATED_BYTES,
    m.GPU_RESERVED_BYTES,
)

#: Upper bounds (seconds) of the GC pause histogram's buckets; the last bucket is +Inf.
GC_PAUSE_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


@dataclasses.dataclass(frozen=True)
class DerivedSpec:
    """A metric the exporters add to the catalogue's: its words, unit, kind and help.

    ``words`` make both names: ``memwarden_<words>_<unit>[_total]`` for Prometheus and
    ``memwarden.<words>`` for OpenTelemetry.
    """

    key: str
    words: tuple[str, ...]
    unit: str
    kind: FamilyKind
    help: str
    labels: tuple[str, ...] = ()

    @property
    def prometheus_name(self) -> str:
        words = ["memwarden", *self.words]
        if self.unit:
            words.append(self.unit)
        if self.kind == "counter":
            words.append("total")
        return "_".join(words)

    @property
    def otel_name(self) -> str:
        return ".".join(("memwarden", "_".join(self.words)))


def _derived(*specs: DerivedSpec) -> Mapping[str, DerivedSpec]:
    return {s.key: s for s in specs}


#: The metrics exporters add, by key.
DERIVED: Mapping[str, DerivedSpec] = _derived(
    DerivedSpec(
        "verdict",
        ("verdict",),
        "",
        "gauge",
        "1 for the current verdict of the diagnosis, 0 for every other verdict",
        ("verdict",),
    ),
    DerivedSpec("leak", ("leak",), "", "gauge", "1 while the diagnosis calls the growth a leak, else 0"),
    DerivedSpec(
        "confidence",
        ("verdict", "confidence"),
        "ratio",
        "gauge",
        "How sure the diagnosis is of the current verdict (0 to 1)",
    ),
    DerivedSpec(
        "growth",
        ("growth",),
        "bytes_per_second",
        "gauge",
        "Theil-Sen growth rate of a memory gauge over the recent window",
        ("metric",),
    ),
    DerivedSpec(
        "cache_entries",
        ("cache", "entries"),
        "",
        "gauge",
        "Entries in a cache memwarden found or watches, at its latest census",
        ("cache", "kind"),
    ),
    DerivedSpec(
        "actions",
        ("actions",),
        "",
        "counter",
        "Actions guards took (gc collect, malloc_trim, cache release, recycle), by action",
        ("action",),
    ),
    DerivedSpec(
        "action_freed",
        ("action", "freed"),
        "bytes",
        "counter",
        "Bytes the guards' actions gave back, by action",
        ("action",),
    ),
    DerivedSpec(
        "gc_pause", ("gc", "pause"), "seconds", "histogram", "Garbage-collection pauses, all generations", ()
    ),
    DerivedSpec("samples", ("samples",), "", "counter", "Ticks the monitor has sampled in this process"),
)


@dataclasses.dataclass(frozen=True)
class Point:
    """One value of a family, with its labels (``(("device", "0"),)``)."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class HistogramPoint:
    """A histogram: cumulative counts per upper bound (the last bound is ``inf``), the count and sum."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclasses.dataclass(frozen=True)
class Family:
    """A metric with its points: what every exporter renders.

    ``key`` is the flat catalogue name (``"process.rss_bytes"``) or a :data:`DERIVED` key.
    """

    key: str
    prometheus_name: str
    otel_name: str
    unit: str
    kind: FamilyKind
    help: str
    points: tuple[Point, ...] = ()
    histogram: HistogramPoint | None = None
    label_names: tuple[str, ...] = ()


def otel_name_of(spec: m.MetricSpec) -> str:
    """The OpenTelemetry name of a catalogue metric: a semantic-convention name where one exists.

    ``process.rss_bytes`` is ``process.memory.usage`` and ``process.vms_bytes`` is
    ``process.memory.virtual`` (OpenTelemetry's process conventions); every other metric is
    ``memwarden.<layer>.<field>``.
    """
    words = SEMCONV.get(spec.name) or ("memwarden", spec.layer, spec.field)
    return ".".join(words)


#: Catalogue metrics that OpenTelemetry's semantic conventions name, as the words of that name.
SEMCONV: Mapping[str, tuple[str, ...]] = {
    m.PROCESS_RSS_BYTES: ("process", "memory", "usage"),
    m.PROCESS_VMS_BYTES: ("process", "memory", "virtual"),
}


_NAMES: dict[str, tuple[str, str]] = {}


def _family(spec: m.MetricSpec, points: tuple[Point, ...], labels: tuple[str, ...] = ()) -> Family:
    names = _NAMES.get(spec.name)
    if names is None:  # the names never change: work them out once per metric
        names = _NAMES[spec.name] = (spec.prometheus_name, otel_name_of(spec))
    return Family(spec.name, names[0], names[1], spec.unit, spec.kind, spec.help, points, None, labels)


def _prometheus_name(name: str) -> str:
    names = _NAMES.get(name)
    return names[0] if names is not None else m.spec(name).prometheus_name


def _derived_family(
    key: str, points: tuple[Point, ...] = (), histogram: HistogramPoint | None = None
) -> Family:
    d = DERIVED[key]
    return Family(d.key, d.prometheus_name, d.otel_name, d.unit, d.kind, d.help, points, histogram, d.labels)


class ForkSafeLock:
    """A lock that a forked child gets fresh.

    A child inherits every lock in the state it had at ``fork()``: one held by another thread
    of the parent (a scrape, a tick) would never be released there, and the child's first tick
    (the sampler takes it in the thread that forked) would hang on it.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _current(self) -> threading.Lock:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._lock = threading.Lock()
        return self._lock

    def acquire(self, blocking: bool = True) -> bool:
        return self._current().acquire(blocking)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._current().locked()

    def __enter__(self) -> ForkSafeLock:
        self._current().acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


_SHARED_LOCK = threading.Lock()
_SHARED: list[GcPauseHistogram] = []


class GcPauseHistogram:
    """Counts every garbage-collection pause into fixed buckets, through ``gc.callbacks``.

    Bounded: one array of counts. :meth:`install` adds one callback (twice is once),
    :meth:`uninstall` removes it. A forked child starts from zero (its own process, its own series).
    """

    def __init__(
        self, buckets: Sequence[float] = GC_PAUSE_BUCKETS, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.bounds = tuple(sorted(buckets))
        self._clock = clock
        self._lock = ForkSafeLock()
        self._pid = os.getpid()
        self.reset()

    def reset(self) -> None:
        """Forget every pause counted so far."""
        self._counts = array("q", [0] * (len(self.bounds) + 1))
        self._sum = array("d", [0.0])
        self._started = array("d", [math.nan])

    @property
    def installed(self) -> bool:
        return any(cb == self._on_gc for cb in gc.callbacks)

    def install(self) -> GcPauseHistogram:
        with self._lock:
            if not self.installed:
                gc.callbacks.append(self._on_gc)
        return self

    def uninstall(self) -> None:
        with self._lock:
            for i, cb in enumerate(gc.callbacks):
                if cb == self._on_gc:
                    del gc.callbacks[i]
                    break

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = self._clock()
        if phase == "start":
            self._started[0] = now
            return
        started, self._started[0] = self._started[0], math.nan
        if started != started:
            return
        duration = max(now - started, 0.0)
        i = 0
        for bound in self.bounds:
            if duration <= bound:
                break
            i += 1
        self._counts[i] += 1
        self._sum[0] += duration

    @classmethod
    def shared(cls) -> GcPauseHistogram:
        """The process's one installed histogram, which every :class:`MonitorReadings` shares
        (one ``gc.callbacks`` entry however many collectors are made)."""
        with _SHARED_LOCK:
            if not _SHARED:
                _SHARED.append(cls())
            return _SHARED[0].install()

    def read(self) -> HistogramPoint:
        """The cumulative buckets, count and sum of the pauses counted in this process."""
        if os.getpid() != self._pid:  # forked: the parent's pauses are not this process's
            self._pid = os.getpid()
            self.reset()
        cumulative, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self._counts):
            cumulative += count
            out.append((bound, cumulative))
        return HistogramPoint(tuple(out), cumulative, self._sum[0])


def process_monitor() -> Monitor | None:
    """The process-wide monitor of :func:`memwarden.start` if it runs, else ``None`` (never starts one)."""
    from .. import _monitor

    mon = getattr(_monitor, "_global", None)
    return mon if mon is not None and mon.sampler is not None else None


class MonitorReadings:
    """Reads a :class:`~memwarden.Monitor` for the exporters; ``monitor=None`` follows :func:`memwarden.start`.

    ``verdict_ttl_s``: how long a verdict (and the growth rates) is reused before the next
    diagnosis. ``growth_window_s``: the recent span the growth rates are fitted on (at most
    ``max_growth_points`` samples of it). ``gc_histogram``: count GC pauses into a histogram
    (one ``gc.callbacks`` entry shared by every readings object, removed by :meth:`close`). ``caches_census``:
    find the caches (``functools.lru_cache``, cachetools, :func:`memwarden.watch`) once per TTL
    for ``memwarden_cache_entries`` (a walk of the heap, a few milliseconds per 100,000 objects).
    """

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        verdict_ttl_s: float = 30.0,
        growth_window_s: float = 600.0,
        max_growth_points: int = 200,
        gc_histogram: bool = True,
        caches_census: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monitor = monitor
        self.caches_census = caches_census
        self._caches: list[Mapping[str, Any]] = []
        self.verdict_ttl_s = verdict_ttl_s
        self.growth_window_s = growth_window_s
        self.max_growth_points = max_growth_points
        self._clock = clock
        self._lock = ForkSafeLock()
        self._cached_at = -math.inf
        self._verdict: Verdict | None = None
        self._growth: dict[str, float] = {}
        self._cached_for: int | None = None
        self._action_cursor: tuple[float, int] = (-math.inf, 0)
        self._actions: dict[str, int] = {}
        self._freed: dict[str, float] = {}
        self.gc_pauses = GcPauseHistogram.shared() if gc_histogram else None
        self.diagnoses = 0
        """How many times the diagnosis ran (the TTL keeps it low; tests read it)."""
        self.errors: list[str] = []
        """The last errors a refresh caught (at most 10), for whoever debugs a missing verdict."""

    def close(self) -> None:
        """Stop counting GC pauses (the shared histogram's callback is removed; the next readings put it back)."""
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()

    @property
    def monitor(self) -> Monitor | None:
        """The monitor read now (``None`` when none runs)."""
        return self._monitor if self._monitor is not None else process_monitor()

    # -- the parts ------------------------------------------------------------------------------

    def latest_sample(self) -> Sample | None:
        mon = self.monitor
        if mon is None or mon.sampler is None:
            return None
        ring = mon.sampler.ring
        try:
            return ring[-1]
        except IndexError:
            return None

    def latest(self, layer: str) -> Any:
        mon = self.monitor
        return mon.sampler.latest(layer) if mon is not None and mon.sampler is not None else None

    def latest_metrics(self) -> dict[str, float | int | None]:
        """The flat metrics of every layer's latest reading (a costly layer is read every few ticks,
        so the last sample alone would often lack it); layers that cannot be read now are left out."""
        mon = self.monitor
        if mon is None or mon.sampler is None:
            return {}
        from ..probes import flatten

        out: dict[str, float | int | None] = {}
        for status in mon.sampler.status():
            if not status.available:
                continue
            reading = mon.sampler.latest(status.layer)
            if reading is not None:
                out.update(flatten(status.layer, reading))
        return out

    def events(self) -> list[Event]:
        mon = self.monitor
        return mon.events() if mon is not None else []

    def verdict(self) -> Verdict | None:
        """The cached verdict (diagnosed again once it is ``verdict_ttl_s`` old)."""
        self._refresh()
        return self._verdict

    def growth(self) -> dict[str, float]:
        """Growth rates (per second) of :data:`GROWTH_METRICS` over the recent window, cached like the verdict."""
        self._refresh()
        return dict(self._growth)

    def _refresh(self) -> None:
        mon = self.monitor
        if mon is None or mon.sampler is None:
            return
        with self._lock:
            now = self._clock()
            if id(mon) == self._cached_for and now - self._cached_at < self.verdict_ttl_s:
                return
            self._cached_for, self._cached_at = id(mon), now
            try:
                self._verdict = mon.verdict if mon.verdict is not None else mon.diagnose()
            except Exception as exc:  # a scrape must never fail: keep the last verdict, say why once
                self.errors.append(f"diagnosis failed: {exc!r}")
                del self.errors[:-10]
            self.diagnoses += 1
            self._growth = _growth_rates(mon.sampler.samples(), self.growth_window_s, self.max_growth_points)
            if self.caches_census:
                from ..attribution import find_caches

                try:
                    self._caches = [dataclasses.asdict(c) for c in find_caches()]
                except Exception:  # a census must never break a scrape
                    self._caches = []

    def action_totals(self) -> tuple[dict[str, int], dict[str, float]]:
        """Actions counted by action, and the bytes they freed, since these readings began.

        Counted from the monitor's recent events, each event once (a cursor on its time), so
        the totals only grow as counters must.
        """
        with self._lock:
            last_t, seen_at_last = self._action_cursor
            actions = [e for e in self.events() if e.kind == EVENT_ACTION]
            new_seen = 0
            for e in actions:
                if e.t < last_t:
                    continue
                if e.t == last_t:
                    new_seen += 1
                    if new_seen <= seen_at_last:
                        continue
                name = str(e.data.get("action", "unknown"))
                self._actions[name] = self._actions.get(name, 0) + 1
                freed = e.data.get("freed_bytes")
                if isinstance(freed, (int, float)) and freed > 0:
                    self._freed[name] = self._freed.get(name, 0.0) + float(freed)
                else:
                    self._freed.setdefault(name, 0.0)
            if actions:
                t = max(e.t for e in actions)
                if t > last_t:
                    self._action_cursor = (t, sum(1 for e in actions if e.t == t))
                else:
                    self._action_cursor = (last_t, max(seen_at_last, new_seen))
            return dict(self._actions), dict(self._freed)

    def caches(self) -> list[Mapping[str, Any]]:
        """The caches found by the latest census (name, kind, currsize, ...), taken once per TTL.

        Without ``caches_census``, those of the monitor's latest cache event (recorded at stop).
        """
        self._refresh()
        if self.caches_census:
            return list(self._caches)
        for e in reversed(self.events()):
            if e.kind == EVENT_CACHES:
                return [c for c in e.data.get("caches", []) if isinstance(c, Mapping)]
        return []

    # -- everything, as families ------------------------------------------------------------------

    def families(self) -> list[Family]:
        """Every family with a value now; empty when no monitor runs."""
        sample = self.latest_sample()
        if sample is None:
            return []
        out = self._catalogue_families(self.latest_metrics())
        verdict = self.verdict()
        if verdict is not None:
            out.append(
                _derived_family(
                    "verdict",
                    tuple(Point(1.0 if v == verdict.verdict else 0.0, (("verdict", v),)) for v in VERDICTS),
                )
            )
            out.append(_derived_family("leak", (Point(1.0 if verdict.leak else 0.0),)))
            out.append(_derived_family("confidence", (Point(float(verdict.confidence)),)))
        growth = self.growth()
        if growth:
            out.append(
                _derived_family(
                    "growth",
                    tuple(
                        Point(rate, (("metric", _prometheus_name(name)),)) for name, rate in growth.items()
                    ),
                )
            )
        caches = self.caches()
        if caches:
            out.append(
                _derived_family(
                    "cache_entries",
                    tuple(
                        Point(
                            float(c.get("currsize") or 0),
                            (("cache", str(c.get("name", "?"))), ("kind", str(c.get("kind", "?")))),
                        )
                        for c in caches
                    ),
                )
            )
        actions, freed = self.action_totals()
        out.append(
            _derived_family(
                "actions", tuple(Point(float(n), (("action", a),)) for a, n in sorted(actions.items()))
            )
        )
        out.append(
            _derived_family(
                "action_freed", tuple(Point(b, (("action", a),)) for a, b in sorted(freed.items()))
            )
        )
        if self.gc_pauses is not None:
            out.append(_derived_family("gc_pause", histogram=self.gc_pauses.read()))
        mon = self.monitor
        ticks = getattr(getattr(mon, "sampler", None), "ticks", None)
        if isinstance(ticks, int):
            out.append(_derived_family("samples", (Point(float(ticks)),)))
        return out

    def _catalogue_families(self, metrics: Mapping[str, float | int | None]) -> list[Family]:
        devices = getattr(self.latest("gpu"), "devices", None) or ()
        out: list[Family] = []
        for spec in m.CATALOGUE.values():
            if spec.layer == "gpu" and devices and all(hasattr(d, spec.field) for d in devices):
                points = tuple(
                    Point(float(v), (("device", str(d.index)),))
                    for d in devices
                    if isinstance(v := getattr(d, spec.field), (int, float)) and not isinstance(v, bool)
                )
                if points:
                    out.append(_family(spec, points, ("device",)))
                continue
            value = metrics.get(spec.name)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            out.append(_family(spec, (Point(float(value)),)))
        return out


def _growth_rates(samples: Sequence[Sample], window_s: float, max_points: int) -> dict[str, float]:
    from ..diagnosis._trend import theil_sen

    if len(samples) < 2:
        return {}
    cut = samples[-1].mono - window_s
    recent = [s for s in samples if s.mono >= cut]
    if len(recent) > max_points:
        step = len(recent) / max_points
        recent = [recent[int(i * step)] for i in range(max_points - 1)] + [recent[-1]]
    rates: dict[str, float] = {}
    for name in GROWTH_METRICS:
        t = [s.mono for s in recent if s.metrics.get(name) is not None]
        y = [float(v) for s in recent if (v := s.metrics.get(name)) is not None]
        if len(t) < 2 or t[-1] - t[0] <= 0:
            continue
        try:
            slope, _ = theil_sen(t, y)
        except Exception:  # too few distinct times
            continue
        if math.isfinite(slope):
            rates[name] = slope
    return rates
