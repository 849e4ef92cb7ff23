"""Prometheus: a custom collector over a monitor's latest readings, and ready ``/metrics`` apps.

Nothing is registered at import time, and importing this module does not import
``prometheus_client`` (it is imported when a collector or an app is made; ``pip install
'memwarden[prometheus]'``)::

    from prometheus_client import REGISTRY
    from memwarden.exporters.prometheus import MemwardenCollector

    memwarden.start(interval=10)
    REGISTRY.register(MemwardenCollector())        # reads memwarden.start()'s monitor at scrape time

    app.mount("/metrics", memwarden.exporters.prometheus.make_asgi_app())   # or make_wsgi_app()

Under gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` set, a custom collector cannot be aggregated
(client_python reads only the files its own Gauge and Counter objects write). There each worker
writes its readings after every tick with :class:`MultiprocessWriter`, and the apps serve the
aggregate through ``prometheus_client.multiprocess.MultiProcessCollector``; see docs/exporters.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import UsageError
from ._readings import Family, ForkSafeLock, MonitorReadings

if TYPE_CHECKING:
    from .._monitor import Monitor
    from ..sampler import Tick

__all__ = [
    "MemwardenCollector",
    "MultiprocessWriter",
    "install_multiprocess",
    "make_asgi_app",
    "make_registry",
    "make_wsgi_app",
    "multiprocess_dir",
]

_HINT = "the Prometheus exporter needs prometheus-client: pip install 'memwarden[prometheus]'"


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise UsageError(_HINT) from exc
    return prometheus_client


def _bound(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value))


class MemwardenCollector:
    """A client_python custom collector: every layer of the catalogue, the verdict, growth, caches, actions.

    ``monitor``: the :class:`~memwarden.Monitor` to read (default: the one :func:`memwarden.start`
    runs, looked up at each scrape; no monitor, no samples). ``readings``: share one
    :class:`~memwarden.exporters.MonitorReadings` with other exporters instead. ``verdict_ttl_s``:
    the diagnosis runs at most once per this many seconds, however often Prometheus scrapes.
    """

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        readings: MonitorReadings | None = None,
        verdict_ttl_s: float = 30.0,
    ) -> None:
        _client()
        self.readings = (
            readings if readings is not None else MonitorReadings(monitor, verdict_ttl_s=verdict_ttl_s)
        )

    def describe(self) -> list[Any]:
        """Nothing: registering the collector must not read the monitor (client_python would collect)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families of the readings now."""
        yield from render(self.readings.families())


def render(families: Iterable[Family]) -> Iterator[Any]:
    """client_python metric families for memwarden's families."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    for fam in families:
        labels = list(fam.label_names)
        if fam.kind == "histogram":
            if fam.histogram is None:
                continue
            hist = HistogramMetricFamily(fam.prometheus_name, fam.help, labels=labels, unit=fam.unit)
            hist.add_metric(
                [], [(_bound(b), float(c)) for b, c in fam.histogram.buckets], sum_value=fam.histogram.sum
            )
            yield hist
            continue
        out: Any
        if fam.kind == "counter":
            name = fam.prometheus_name.removesuffix("_total")
            out = CounterMetricFamily(name, fam.help, labels=labels, unit=fam.unit)
        else:
            out = GaugeMetricFamily(fam.prometheus_name, fam.help, labels=labels, unit=fam.unit)
        for point in fam.points:
            out.add_metric([v for _, v in point.labels], point.value)
        yield out


def multiprocess_dir() -> str | None:
    """The client_python multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``), or ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def make_registry(monitor: Monitor | None = None, *, multiprocess: bool | None = None) -> Any:
    """A fresh ``CollectorRegistry`` (never the global one) serving memwarden's metrics.

    ``multiprocess=None`` follows the environment: with ``PROMETHEUS_MULTIPROC_DIR`` set, the
    registry aggregates every worker's files; otherwise it holds a :class:`MemwardenCollector`.
    """
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    if multiprocess is None:
        multiprocess = multiprocess_dir() is not None
    if multiprocess:
        if multiprocess_dir() is None:
            raise UsageError("multiprocess mode needs PROMETHEUS_MULTIPROC_DIR set to a writable directory")
        registry.register(_multiprocess_collector())
    else:
        registry.register(MemwardenCollector(monitor))
    return registry


def _multiprocess_collector() -> Any:
    """client_python's ``MultiProcessCollector``, retrying a merge that met a file still being created.

    A worker's first write creates its file; a scrape that reads it in that instant gets
    ``struct.error`` from client_python (a 500 in our gunicorn test, one scrape in a few dozen
    at start-up). The merge is tried again, up to three times.
    """
    import struct

    from prometheus_client import multiprocess as mp

    class RetryingMultiProcessCollector(mp.MultiProcessCollector):
        def collect(self) -> Any:
            for attempt in range(3):
                try:
                    return super().collect()  # type: ignore[no-untyped-call]
                except (struct.error, ValueError):
                    if attempt == 2:
                        raise
                    time.sleep(0.01)
            return []  # pragma: no cover - the loop returns or raises

    return RetryingMultiProcessCollector(None, path=multiprocess_dir())  # type: ignore[no-untyped-call]


def make_asgi_app(monitor: Monitor | None = None, *, registry: Any = None) -> Callable[..., Any]:
    """An ASGI app that answers every request with the metrics (mount it at ``/metrics``)."""
    client = _client()
    return client.make_asgi_app(registry if registry is not None else make_registry(monitor))  # type: ignore[no-any-return]


def make_wsgi_app(monitor: Monitor | None = None, *, registry: Any = None) -> Callable[..., Any]:
    """A WSGI app that answers every request with the metrics (route ``/metrics`` to it)."""
    client = _client()
    return client.make_wsgi_app(registry if registry is not None else make_registry(monitor))  # type: ignore[no-any-return]


class MultiprocessWriter:
    """An observer that writes this worker's readings to client_python's multiprocess files each tick.

    Gauges use ``multiprocess_mode="liveall"`` (one series per live worker, a ``pid`` label added
    by client_python; call ``prometheus_client.multiprocess.mark_process_dead(pid)`` from
    gunicorn's ``child_exit`` hook), counters are summed over workers, dead ones included, as
    client_python does. The GC pause histogram is not written (a histogram can only be observed
    pause by pause, not set from totals).
    """

    def __init__(self, readings: MonitorReadings | None = None, monitor: Monitor | None = None) -> None:
        if multiprocess_dir() is None:
            raise UsageError("MultiprocessWriter needs PROMETHEUS_MULTIPROC_DIR set to a writable directory")
        _client()
        self.readings = readings if readings is not None else MonitorReadings(monitor, gc_histogram=False)
        self._lock = ForkSafeLock()
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        self._pid = os.getpid()
        _hold_at_fork(self)

    def __call__(self, tick: Tick) -> None:
        self.write()

    def write(self) -> None:
        """Write the readings now (the observer calls this after every tick)."""
        with self._lock:
            if os.getpid() != self._pid:  # a forked worker: its counters start at its own zero
                self._pid = os.getpid()
                self._last.clear()
            for fam in self.readings.families():
                if fam.kind == "histogram":
                    continue
                metric = self._metric(fam)
                for point in fam.points:
                    values = tuple(v for _, v in point.labels)
                    child = metric.labels(*values) if fam.label_names else metric
                    if fam.kind == "gauge":
                        child.set(point.value)
                        continue
                    key = (fam.prometheus_name, values)
                    delta = point.value - self._last.get(key, 0.0)
                    if delta > 0:
                        child.inc(delta)
                    self._last[key] = max(point.value, self._last.get(key, 0.0))

    def _metric(self, fam: Family) -> Any:
        found = self._metrics.get(fam.prometheus_name)
        if found is not None:
            return found
        client = _client()
        labels = list(fam.label_names)
        if fam.kind == "counter":
            made = client.Counter(
                fam.prometheus_name.removesuffix("_total"), fam.help, labels, unit=fam.unit, registry=None
            )
        else:
            made = client.Gauge(
                fam.prometheus_name,
                fam.help,
                labels,
                unit=fam.unit,
                registry=None,
                multiprocess_mode="liveall",
            )
        self._metrics[fam.prometheus_name] = made
        return made


_writers: weakref.WeakSet[MultiprocessWriter] = weakref.WeakSet()
_fork_hooked: list[bool] = []
_fork_hook_lock = threading.Lock()


def _hold_at_fork(writer: MultiprocessWriter) -> None:
    """Make ``fork()`` wait for a write in flight, so no thread of ours is inside client_python then.

    client_python's multiprocess values share one plain lock; a child forked while our sampler
    thread held it would hang at its first write (a gunicorn worker that never boots).
    """
    with _fork_hook_lock:
        _writers.add(writer)
        if not _fork_hooked:
            _fork_hooked.append(True)
            os.register_at_fork(before=_hold_writers, after_in_parent=_release_writers)


def _hold_writers() -> None:
    for w in list(_writers):
        w._lock.acquire()


def _release_writers() -> None:
    for w in list(_writers):
        with contextlib.suppress(RuntimeError):
            w._lock.release()


def install_multiprocess(monitor: Monitor | None = None) -> MultiprocessWriter:
    """Add a :class:`MultiprocessWriter` to ``monitor`` (default: :func:`memwarden.start`'s) and return it.

    Call it where the monitor starts (the app module under ``--preload``, or gunicorn's
    ``post_fork``): the observer follows the monitor into each forked worker.
    """
    from .._monitor import start

    mon = monitor if monitor is not None else start()
    writer = MultiprocessWriter(MonitorReadings(mon, gc_histogram=False))
    mon.add_observer(writer)
    return writer
