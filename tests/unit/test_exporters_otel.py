"""OpenTelemetry: the same readings as observable instruments, collected by an in-memory reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

import memwarden

from ._exporters import GPU, running_monitor

pytest.importorskip("opentelemetry.sdk.metrics", reason="pip install -e '.[otel]'")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

from memwarden.exporters.otel import instrument


@pytest.fixture
def collected() -> Iterator[tuple[memwarden.Monitor, dict[str, Any]]]:
    """One collection of a stopped monitor's readings: (monitor, metrics by name)."""
    with running_monitor() as mon:
        pass
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(mon, meter_provider=provider)
        data = reader.get_metrics_data()
        assert data is not None
        by_name = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        yield mon, by_name
    finally:
        provider.shutdown()


def test_semantic_convention_names_and_units(collected: tuple[memwarden.Monitor, dict[str, Any]]) -> None:
    """RSS is process.memory.usage and the virtual size process.memory.virtual, in By, with the readings' values."""
    mon, by_name = collected
    rss = by_name["process.memory.usage"]
    assert rss.unit == "By" and isinstance(rss.data, Gauge)
    assert [p.value for p in rss.data.data_points] == [mon.sampler.latest("process").rss_bytes]  # type: ignore[union-attr]
    virtual = by_name["process.memory.virtual"]
    assert virtual.unit == "By" and [p.value for p in virtual.data.data_points] == [1 << 32]


def test_memwarden_layers_with_units_and_kinds(collected: tuple[memwarden.Monitor, dict[str, Any]]) -> None:
    """Other layers are memwarden.<layer>.<field>; counters are monotonic cumulative sums; units are UCUM."""
    _, by_name = collected
    arenas = by_name["memwarden.pymalloc.arena_bytes"]
    assert arenas.unit == "By" and isinstance(arenas.data, Gauge)
    assert arenas.data.data_points[0].value > 0
    frag = by_name["memwarden.pymalloc.fragmentation"]
    assert frag.unit == "1" and 0 <= frag.data.data_points[0].value <= 1
    gen0 = by_name["memwarden.objects.gc_collections_gen0"]
    assert isinstance(gen0.data, Sum) and gen0.data.is_monotonic
    pause = by_name["memwarden.objects.gc_pause_total_s"]
    assert pause.unit == "s" and isinstance(pause.data, Sum)
    growth = by_name["memwarden.growth"]
    assert growth.unit == "By/s"
    assert {p.attributes["metric"] for p in growth.data.data_points} >= {"memwarden_process_rss_bytes"}


def test_gpu_per_device_and_the_verdict(collected: tuple[memwarden.Monitor, dict[str, Any]]) -> None:
    """GPU figures carry a device attribute; the verdict gauge is 1 for the monitor's verdict only."""
    mon, by_name = collected
    gpu = {p.attributes["device"]: p.value for p in by_name["memwarden.gpu.allocated_bytes"].data.data_points}
    assert gpu == {"0": GPU.devices[0].allocated_bytes, "1": GPU.devices[1].allocated_bytes}
    verdict = {p.attributes["verdict"]: p.value for p in by_name["memwarden.verdict"].data.data_points}
    assert mon.verdict is not None
    assert {v for v, x in verdict.items() if x == 1} == {mon.verdict.verdict}
    assert len(verdict) == len(memwarden.exporters.VERDICTS)
    leak = by_name["memwarden.leak"].data.data_points
    assert [p.value for p in leak] == [1 if mon.verdict.leak else 0]


def test_no_monitor_observes_nothing() -> None:
    """Without a running monitor the instruments exist but report no points."""
    memwarden.reset()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(meter_provider=provider)
        data = reader.get_metrics_data()
        points = (
            []
            if data is None
            else [
                p
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                for p in m.data.data_points
            ]
        )
    finally:
        provider.shutdown()
    assert points == []


def test_readings_pushed_over_otlp_http_to_a_loopback_collector(
    collected: tuple[memwarden.Monitor, Any],
) -> None:
    """otlp_meter_provider pushes the readings as OTLP/HTTP protobuf; a loopback receiver decodes them."""
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http", reason="pip install opentelemetry-exporter-otlp-proto-http"
    )
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from memwarden.exporters.otel import otlp_meter_provider

    mon, _ = collected
    bodies: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider = otlp_meter_provider(f"http://127.0.0.1:{server.server_port}/v1/metrics", interval_s=3600)
    try:
        instrument(mon, meter_provider=provider)
        assert provider.force_flush(timeout_millis=20_000)
    finally:
        provider.shutdown()
        server.shutdown()
        server.server_close()
    assert bodies and bodies[0][0] == "/v1/metrics"
    request = ExportMetricsServiceRequest()
    request.ParseFromString(bodies[0][1])
    metrics = {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    rss = metrics["process.memory.usage"]
    assert rss.unit == "By"
    assert [p.as_double for p in rss.gauge.data_points] == [mon.sampler.latest("process").rss_bytes]  # type: ignore[union-attr]
    assert metrics["memwarden.objects.gc_collections_gen0"].sum.is_monotonic


def test_otlp_with_a_bad_protocol_or_interval_is_refused() -> None:
    """A protocol other than http/protobuf or grpc, or a non-positive interval, is a UsageError."""
    from memwarden.exporters.otel import otlp_meter_provider

    with pytest.raises(memwarden.UsageError, match="protocol"):
        otlp_meter_provider("http://127.0.0.1:4318", protocol="http/json")
    with pytest.raises(memwarden.UsageError, match="interval_s"):
        otlp_meter_provider("http://127.0.0.1:4318", interval_s=0)
