"""The Prometheus collector: every layer, the verdict, growth, caches, actions and GC pauses, parsed back
by client_python's own parsers; the ready /metrics apps for WSGI and ASGI."""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import memwarden
from memwarden import Tick
from memwarden.guards.actions import EVENT_ACTION, collect
from memwarden.testing import FakeClock

from ._exporters import BASE_RSS, GPU, MIB, running_monitor, serve_asgi

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install -e '.[prometheus]'")
from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics  # noqa: E402
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from memwarden.exporters import GcPauseHistogram, MonitorReadings  # noqa: E402
from memwarden.exporters.prometheus import (  # noqa: E402
    MemwardenCollector,
    make_asgi_app,
    make_registry,
    make_wsgi_app,
)


def families(registry: Any) -> dict[str, Any]:
    """The text exposition of ``registry``, parsed by prometheus_client.parser, by family name."""
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture
def stopped() -> Iterator[memwarden.Monitor]:
    """A monitor that sampled a few ticks and stopped: its readings stay put while a test reads them."""
    with running_monitor() as mon:
        pass
    return mon


def test_every_layer_is_exposed_with_its_type(stopped: memwarden.Monitor) -> None:
    """The families of each layer are there, gauges as gauges and counters as counters (parsed back)."""
    fams = families(make_registry(stopped))
    expected = {
        "memwarden_process_rss_bytes": "gauge",
        "memwarden_process_vms_bytes": "gauge",
        "memwarden_objects_allocated_blocks": "gauge",
        "memwarden_objects_gc_collections_gen2": "counter",  # the parser drops _total
        "memwarden_pymalloc_arena_bytes": "gauge",
        "memwarden_pymalloc_fragmentation_ratio": "gauge",
        "memwarden_libc_free_bytes": "gauge",
        "memwarden_gpu_allocated_bytes": "gauge",
        "memwarden_gpu_alloc_retries": "counter",
        "memwarden_gc_pause_seconds": "histogram",
        "memwarden_verdict": "gauge",
        "memwarden_leak": "gauge",
        "memwarden_growth_bytes_per_second": "gauge",
        "memwarden_actions": "counter",
        "memwarden_samples": "counter",
    }
    got = {name: fams[name].type for name in expected if name in fams}
    assert got == expected
    # every catalogue metric of a layer that was read is exposed under its catalogue name
    from memwarden import metrics

    for layer in ("process", "pymalloc", "libc", "gpu"):
        read = {
            k
            for k, v in memwarden.exporters.MonitorReadings(stopped, gc_histogram=False)
            .latest_metrics()
            .items()
            if k.startswith(layer + ".") and v is not None
        }
        for name in read:
            assert metrics.spec(name).prometheus_name.removesuffix("_total") in fams, name


def test_values_are_the_monitors_latest_readings(stopped: memwarden.Monitor) -> None:
    """RSS is the replayed reading of the last tick; the GPU layer is one series per device."""
    fams = families(make_registry(stopped))
    rss = stopped.sampler.latest("process").rss_bytes  # type: ignore[union-attr]
    assert rss >= BASE_RSS + 7 * MIB
    assert [s.value for s in fams["memwarden_process_rss_bytes"].samples] == [float(rss)]
    gpu = {s.labels["device"]: s.value for s in fams["memwarden_gpu_allocated_bytes"].samples}
    assert gpu == {"0": float(GPU.devices[0].allocated_bytes), "1": float(GPU.devices[1].allocated_bytes)}
    retries = {s.labels["device"]: s.value for s in fams["memwarden_gpu_alloc_retries"].samples}
    assert retries == {"0": 0.0, "1": 1.0}
    assert [s.value for s in fams["memwarden_gpu_devices"].samples] == [2.0]


def test_units_are_declared_in_openmetrics(stopped: memwarden.Monitor) -> None:
    """The OpenMetrics exposition carries each family's unit, as the catalogue declares it."""
    text = generate_openmetrics(make_registry(stopped)).decode()
    fams = {f.name: f for f in parse_openmetrics(text)}
    assert fams["memwarden_process_rss_bytes"].unit == "bytes"
    assert fams["memwarden_objects_gc_pause_seconds"].unit == "seconds"
    assert fams["memwarden_objects_gc_pause_seconds"].type == "counter"
    assert fams["memwarden_pymalloc_fragmentation_ratio"].unit == "ratio"
    assert fams["memwarden_gc_pause_seconds"].unit == "seconds"
    assert fams["memwarden_objects_allocated_blocks"].unit == ""


def test_the_verdict_is_one_label_set_to_one(stopped: memwarden.Monitor) -> None:
    """memwarden_verdict has every verdict as a label, 1 for the monitor's verdict only; memwarden_leak agrees."""
    fams = families(make_registry(stopped))
    values = {s.labels["verdict"]: s.value for s in fams["memwarden_verdict"].samples}
    assert stopped.verdict is not None
    assert set(values) == set(memwarden.exporters.VERDICTS)
    assert {v for v, x in values.items() if x == 1.0} == {stopped.verdict.verdict}
    assert [s.value for s in fams["memwarden_leak"].samples] == [1.0 if stopped.verdict.leak else 0.0]


def test_growth_rate_follows_the_samples(stopped: memwarden.Monitor) -> None:
    """RSS grows 1 MiB a tick: the published rate is 1 MiB over the median time between ticks."""
    fams = families(make_registry(stopped))
    rates = {s.labels["metric"]: s.value for s in fams["memwarden_growth_bytes_per_second"].samples}
    samples = stopped.samples()
    gaps = sorted(b.mono - a.mono for a, b in itertools.pairwise(samples))
    expected = MIB / gaps[len(gaps) // 2]
    assert rates["memwarden_process_rss_bytes"] == pytest.approx(expected, rel=0.25)
    assert rates["memwarden_gpu_allocated_bytes"] == 0.0


def test_the_verdict_is_cached_between_scrapes() -> None:
    """Scrapes within the TTL run the diagnosis once; after the TTL it runs again."""
    clock = FakeClock()
    with running_monitor() as mon:
        readings = MonitorReadings(mon, verdict_ttl_s=30, clock=clock, gc_histogram=False)
        registry = make_registry(mon, multiprocess=False)
        registry.register(MemwardenCollector(readings=readings))
        for _ in range(5):
            readings.families()
        assert readings.diagnoses == 1
        clock.advance(31)
        readings.families()
        assert readings.diagnoses == 2


def test_guard_actions_are_counted_by_action() -> None:
    """Each recorded action event counts once, by its action, and the counter only grows."""

    def guard(tick: Tick) -> None:
        tick.record(EVENT_ACTION, collect("test guard").to_json())

    with running_monitor(ticks=3) as mon:
        mon.add_observer(guard)
        collector = MemwardenCollector(mon)
        registry = prometheus_client.CollectorRegistry()
        registry.register(collector)
        seen = []
        for _ in range(3):
            before = mon.sampler.ticks  # type: ignore[union-attr]
            while mon.sampler.ticks < before + 2:  # type: ignore[union-attr]
                pass
            fams = families(registry)
            seen.append(
                {
                    s.labels["action"]: s.value
                    for s in fams["memwarden_actions"].samples
                    if s.name == "memwarden_actions_total"
                }
            )
        mon.remove_observer(guard)
        n_events = sum(1 for e in mon.events() if e.kind == EVENT_ACTION)
        final = {
            s.labels["action"]: s.value
            for s in families(registry)["memwarden_actions"].samples
            if s.name == "memwarden_actions_total"
        }
    assert seen[0]["gc_collect"] >= 1
    assert seen[0]["gc_collect"] <= seen[1]["gc_collect"] <= seen[2]["gc_collect"] <= final["gc_collect"]
    assert final == {"gc_collect": float(n_events)}


def test_watched_caches_are_counted() -> None:
    """A watched cache shows as memwarden_cache_entries{cache=...} with its current size."""
    cache = memwarden.watch({i: str(i) for i in range(7)}, name="test.exporter_cache")
    try:
        with running_monitor(ticks=2) as mon:
            fams = families(make_registry(mon))
    finally:
        memwarden.unwatch(cache)
    entries = {s.labels["cache"]: s.value for s in fams["memwarden_cache_entries"].samples}
    assert entries["test.exporter_cache"] == 7.0


def test_gc_pauses_fill_the_histogram() -> None:
    """Collections are counted into cumulative buckets; +Inf equals the count; uninstall removes the callback."""
    hist = GcPauseHistogram().install()
    try:
        assert hist.installed
        for _ in range(5):
            gc.collect()
        point = hist.read()
    finally:
        hist.uninstall()
    assert point.count >= 5
    counts = [c for _, c in point.buckets]
    assert counts == sorted(counts) and counts[-1] == point.count and point.sum > 0
    assert [b for b, _ in point.buckets][-1] == float("inf")
    assert not hist.installed


def test_every_collector_shares_one_gc_callback() -> None:
    """However many collectors are made, memwarden adds one gc callback, and its pauses reach the exposition."""
    before = len(gc.callbacks)
    collectors = [MemwardenCollector() for _ in range(5)]
    assert len(gc.callbacks) <= before + 1
    gc.collect()
    with running_monitor(ticks=2) as mon:
        fams = families(make_registry(mon))
    count = [s.value for s in fams["memwarden_gc_pause_seconds"].samples if s.name.endswith("_count")]
    assert count and count[0] >= 1
    assert all(c.readings.gc_pauses is collectors[0].readings.gc_pauses for c in collectors)


def test_no_monitor_means_no_samples_and_nothing_registered_at_import() -> None:
    """Without a running monitor the collector yields nothing; importing it imports no prometheus_client."""
    memwarden.reset()
    registry = prometheus_client.CollectorRegistry()
    registry.register(MemwardenCollector())
    assert "memwarden_" not in generate_latest(registry).decode()
    code = (
        "import sys, memwarden.exporters.prometheus, memwarden.exporters.otel, memwarden.exporters.endpoint;"
        "print('prometheus_client' in sys.modules, 'opentelemetry' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
    assert "memwarden_" not in generate_latest(prometheus_client.REGISTRY).decode()


def test_the_collector_follows_the_process_wide_monitor() -> None:
    """With no monitor given, each scrape reads the monitor memwarden.start() runs then."""
    registry = prometheus_client.CollectorRegistry()
    registry.register(MemwardenCollector())
    memwarden.reset()
    try:
        mon = memwarden.start(interval=0.02, investigate=False, trim_at_stop=False)
        from ._exporters import wait_ticks

        wait_ticks(mon, 2)
        fams = families(registry)
        assert fams["memwarden_process_rss_bytes"].samples[0].value > 0
    finally:
        memwarden.reset()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_metrics_app_over_loopback(stopped: memwarden.Monitor) -> None:
    """make_wsgi_app serves the text exposition over a real loopback socket."""
    server: WSGIServer = make_server("127.0.0.1", 0, make_wsgi_app(stopped), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
            ctype = resp.headers["Content-Type"]
    finally:
        server.shutdown()
        server.server_close()
    assert ctype.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"memwarden_process_rss_bytes", "memwarden_verdict"} <= names


def test_asgi_metrics_app_mounted_in_starlette_under_uvicorn(stopped: memwarden.Monitor) -> None:
    """The FastAPI/Starlette recipe: the ASGI app mounted at /metrics, served by uvicorn on loopback."""
    pytest.importorskip("starlette", reason="pip install starlette for the recipe test")
    pytest.importorskip("uvicorn", reason="pip install uvicorn for the recipe test")
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/metrics", app=make_asgi_app(stopped))])
    with serve_asgi(app) as base, urllib.request.urlopen(base + "/metrics/", timeout=10) as resp:
        body = resp.read().decode()
    assert "memwarden_process_rss_bytes" in {f.name for f in text_string_to_metric_families(body)}


def test_wsgi_metrics_app_in_flask(stopped: memwarden.Monitor) -> None:
    """The Flask recipe (DispatcherMiddleware at /metrics) answers the exposition."""
    flask = pytest.importorskip("flask", reason="pip install flask for the recipe test")
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app = flask.Flask("t")
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": make_wsgi_app(stopped)})  # type: ignore[method-assign]
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    assert "memwarden_gpu_allocated_bytes" in {f.name for f in text_string_to_metric_families(resp.text)}
