"""OpenTelemetry: memwarden's readings as observable instruments on a meter.

The same readings as the Prometheus collector (:class:`~memwarden.exporters.MonitorReadings`),
read when the SDK collects: gauges as ``ObservableGauge``, counters as ``ObservableCounter``.
Names follow OpenTelemetry's semantic conventions where they exist (``process.memory.usage`` is
the RSS, ``process.memory.virtual`` the virtual size) and are ``memwarden.<layer>.<field>``
otherwise; units are UCUM (``By``, ``s``, ``1``)::

    from memwarden.exporters.otel import instrument
    instrument()                     # on the global MeterProvider, reading memwarden.start()'s monitor

    from memwarden.exporters.otel import otlp_meter_provider
    provider = otlp_meter_provider("http://collector:4318/v1/metrics", interval_s=30)   # OTLP/HTTP
    instrument(meter_provider=provider)

``pip install 'memwarden[otel]'`` (the API and SDK; the OTLP exporter is
``opentelemetry-exporter-otlp-proto-http``, or ``-grpc``). The GC pause histogram is
Prometheus-only: OpenTelemetry has no observable histogram; the pause totals are there as counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import metrics as m
from .._version import __version__
from ..exceptions import UsageError
from ._readings import DERIVED, Family, MonitorReadings, otel_name_of

if TYPE_CHECKING:
    from .._monitor import Monitor

__all__ = ["OtelInstruments", "UCUM", "instrument", "otlp_meter_provider"]

_HINT = "the OpenTelemetry exporter needs opentelemetry-api and -sdk: pip install 'memwarden[otel]'"

#: memwarden's units in UCUM, as OpenTelemetry writes them.
UCUM: dict[str, str] = {"bytes": "By", "seconds": "s", "ratio": "1", "": "1", "bytes_per_second": "By/s"}


class OtelInstruments:
    """The instruments made by :func:`instrument`, and the readings they observe.

    One collection reads the monitor once (the families are kept ``snapshot_s`` seconds, so the
    hundred or so callbacks of one collection share one reading).
    """

    def __init__(self, meter: Any, readings: MonitorReadings, snapshot_s: float = 0.5) -> None:
        self.readings = readings
        self.snapshot_s = snapshot_s
        self._lock = threading.Lock()
        self._at = -1e18
        self._families: dict[str, Family] = {}
        self.instruments: dict[str, Any] = {}
        specs: list[tuple[str, str, str, str, str]] = [
            (s.name, otel_name_of(s), s.unit, s.kind, s.help) for s in m.CATALOGUE.values()
        ]
        specs += [
            (d.key, d.otel_name, d.unit, d.kind, d.help) for d in DERIVED.values() if d.kind != "histogram"
        ]
        for key, name, unit, kind, help_ in specs:
            make = meter.create_observable_counter if kind == "counter" else meter.create_observable_gauge
            self.instruments[name] = make(
                name, callbacks=[self._callback(key)], unit=UCUM.get(unit, unit), description=help_
            )

    def _snapshot(self) -> dict[str, Family]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.snapshot_s:
                self._families = {f.key: f for f in self.readings.families()}
                self._at = now
            return self._families

    def _callback(self, key: str) -> Callable[[Any], Iterable[Any]]:
        from opentelemetry.metrics import Observation

        def observe(options: Any) -> Iterable[Any]:
            fam = self._snapshot().get(key)
            if fam is None:
                return []
            return [Observation(p.value, dict(p.labels)) for p in fam.points]

        return observe


def _api() -> Any:
    try:
        from opentelemetry import metrics
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise UsageError(_HINT) from exc
    return metrics


def instrument(
    monitor: Monitor | None = None,
    *,
    meter_provider: Any = None,
    readings: MonitorReadings | None = None,
    verdict_ttl_s: float = 30.0,
) -> OtelInstruments:
    """Create memwarden's observable instruments on ``meter_provider`` (default: the global one).

    ``monitor`` defaults to :func:`memwarden.start`'s, looked up at each collection.
    """
    api = _api()
    provider = meter_provider if meter_provider is not None else api.get_meter_provider()
    meter = provider.get_meter("memwarden", __version__)
    return OtelInstruments(
        meter, readings if readings is not None else MonitorReadings(monitor, verdict_ttl_s=verdict_ttl_s)
    )


def otlp_meter_provider(
    endpoint: str | None = None, *, interval_s: float = 30.0, protocol: str = "http/protobuf"
) -> Any:
    """A ``MeterProvider`` that pushes to an OTLP endpoint (an OpenTelemetry Collector) every ``interval_s``.

    ``protocol="http/protobuf"`` (the OpenTelemetry default; ``endpoint`` like
    ``http://collector:4318/v1/metrics``) needs ``opentelemetry-exporter-otlp-proto-http``;
    ``"grpc"`` (``http://collector:4317``) needs ``opentelemetry-exporter-otlp-proto-grpc``.
    ``endpoint=None`` follows ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    """
    if protocol not in ("http/protobuf", "grpc"):
        raise UsageError(f"protocol must be 'http/protobuf' or 'grpc', not {protocol!r}")
    if not interval_s > 0:
        raise UsageError(f"interval_s must be a positive number of seconds, not {interval_s}")
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise UsageError(
            f"pushing to an OTLP endpoint needs the OTLP exporter: pip install {package}"
        ) from exc
    exporter = OTLPMetricExporter(endpoint=endpoint)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000)
    return MeterProvider(metric_readers=[reader])
