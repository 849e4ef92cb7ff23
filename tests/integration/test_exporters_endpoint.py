"""The live endpoint over real sockets: loopback only by default, a token otherwise (constant-time
compare), forwarded addresses only from trusted proxies, and a flood of censuses costs one."""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import memwarden
from memwarden.exporters.endpoint import Endpoint
from memwarden.testing import FakeClock
from tests.unit._exporters import running_monitor, serve_asgi

TOKEN = "s3cret-token-for-tests-0123456789"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """``app`` on a real threaded WSGI server bound to 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def request(
    base: str,
    path: str,
    *,
    method: str = "GET",
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One HTTP request from the source address ``source`` (a real socket bound there)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20, source_address=(source, 0))
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def monitor() -> Iterator[memwarden.Monitor]:
    """A running monitor with replayed process and GPU layers."""
    with running_monitor(interval=0.05) as mon:
        yield mon


@pytest.fixture(params=["wsgi", "asgi"])
def serve(request: pytest.FixtureRequest) -> Any:
    """Serve an endpoint's WSGI app (threaded wsgiref) or ASGI app (uvicorn), both on 127.0.0.1."""
    if request.param == "asgi":
        pytest.importorskip("uvicorn", reason="pip install uvicorn (dev extra)")
        return lambda ep: serve_asgi(ep.asgi())
    return lambda ep: serve_wsgi(ep.wsgi())


def test_loopback_peer_gets_readings_verdict_and_timeline(monitor: memwarden.Monitor, serve: Any) -> None:
    """From 127.0.0.1 with no token: the readings, the verdict and the last samples, as JSON."""
    with serve(Endpoint(monitor)) as base:
        status, readings, _ = request(base, "/memwarden/readings")
        assert status == 200 and readings["running"] is True
        assert readings["metrics"]["process.rss_bytes"] >= 200 << 20
        assert readings["metrics"]["gpu.allocated_bytes"] == 96 << 20
        status, verdict, _ = request(base, "/memwarden/verdict")
        assert status == 200 and verdict["schema"] == "memwarden.verdict/1"
        status, timeline, _ = request(base, "/memwarden/timeline?last=3")
        assert status == 200 and len(timeline["samples"]) == 3
        assert (
            timeline["samples"][-1]["metrics"]["process.rss_bytes"]
            > timeline["samples"][0]["metrics"]["process.rss_bytes"]
        )
        assert request(base, "/memwarden/census")[0] == 405  # costly: POST only
        assert request(base, "/memwarden/nothing")[0] == 404


def test_a_non_local_peer_needs_the_token(monitor: memwarden.Monitor, serve: Any) -> None:
    """With only 127.0.0.1 local, a connection from 127.0.0.2 is refused without the right bearer token."""
    ep = Endpoint(monitor, token=TOKEN, local_networks=["127.0.0.1/32"])
    with serve(ep) as base:
        assert request(base, "/readings", source="127.0.0.1")[0] == 200
        status, body, headers = request(base, "/readings", source="127.0.0.2")
        assert status == 401 and "bearer" in headers["www-authenticate"].lower()
        assert "metrics" not in body
        bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert request(base, "/readings", source="127.0.0.2", headers=bad)[0] == 401
        assert request(base, "/readings", source="127.0.0.2", headers={"Authorization": TOKEN})[0] == 401
        good = {"Authorization": "Bearer " + TOKEN}
        status, body, _ = request(base, "/readings", source="127.0.0.2", headers=good)
        assert status == 200 and "process.rss_bytes" in body["metrics"]


def test_without_a_token_non_local_peers_are_refused(monitor: memwarden.Monitor, serve: Any) -> None:
    """No token configured: every non-local peer gets 403, whatever it sends."""
    with serve(Endpoint(monitor, local_networks=["127.0.0.1/32"])) as base:
        status, body, _ = request(
            base, "/readings", source="127.0.0.2", headers={"Authorization": "Bearer " + TOKEN}
        )
        assert status == 403 and "loopback" in body["error"]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(monitor: memwarden.Monitor) -> None:
    """X-Forwarded-For: 127.0.0.1 from an untrusted peer changes nothing; from a trusted proxy it names the client."""
    forged = {"X-Forwarded-For": "127.0.0.1"}
    with serve_wsgi(Endpoint(monitor, local_networks=["127.0.0.1/32"]).wsgi()) as base:
        assert request(base, "/readings", source="127.0.0.2", headers=forged)[0] == 403
    proxied = Endpoint(monitor, local_networks=["127.0.0.1/32"], trusted_proxies=["127.0.0.2/32"])
    with serve_wsgi(proxied.wsgi()) as base:
        assert request(base, "/readings", source="127.0.0.2", headers=forged)[0] == 200
        outside = {"X-Forwarded-For": "127.0.0.1, 10.1.2.3"}  # the proxy's own client was 10.1.2.3
        assert request(base, "/readings", source="127.0.0.2", headers=outside)[0] == 403
        assert request(base, "/readings", source="127.0.0.2", headers={"X-Forwarded-For": "junk"})[0] == 403


def test_tokens_are_compared_in_constant_time(
    monitor: memwarden.Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every presented token, of any length, goes through hmac.compare_digest against the configured one."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("memwarden.exporters.endpoint.hmac.compare_digest", spy)
    ep = Endpoint(monitor, token=TOKEN, local_networks=["127.0.0.1/32"])
    with serve_wsgi(ep.wsgi()) as base:
        for given in ("x", TOKEN[:-1], TOKEN + "y", TOKEN):
            request(base, "/verdict", source="127.0.0.2", headers={"Authorization": f"Bearer {given}"})
    assert calls == [(g.encode(), TOKEN.encode()) for g in ("x", TOKEN[:-1], TOKEN + "y", TOKEN)]
    with pytest.raises(memwarden.UsageError, match="16 characters"):
        Endpoint(monitor, token="short")


def test_a_flood_of_censuses_runs_one(monitor: memwarden.Monitor) -> None:
    """Twenty concurrent census requests: one runs, the others get 429 with Retry-After; after the interval one more runs."""
    clock = FakeClock()
    ep = Endpoint(monitor, costly_min_interval_s=30, clock=clock)
    results: list[tuple[int, dict[str, str]]] = []
    lock = threading.Lock()
    with serve_wsgi(ep.wsgi()) as base:

        def ask() -> None:
            status, _, headers = request(base, "/census", method="POST")
            with lock:
                results.append((status, headers))

        threads = [threading.Thread(target=ask) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(s for s, _ in results).count(200) == 1
        assert all(s == 429 and int(h["retry-after"]) >= 1 for s, h in results if s != 200)
        clock.advance(31)
        status, body, _ = request(base, "/census", method="POST")
        assert status == 200 and body["census"]["types"] and "caches" in body


def test_a_census_meanwhile_a_window_is_busy(monitor: memwarden.Monitor) -> None:
    """A census asked while a tracemalloc window runs is refused at once (one costly call at a time)."""
    pytest.importorskip("uvicorn", reason="pip install uvicorn (dev extra)")
    ep = Endpoint(monitor, costly_min_interval_s=0, window_max_s=1.0)
    with serve_asgi(ep.asgi()) as base:
        out: dict[str, Any] = {}
        window = threading.Thread(
            target=lambda: out.update(w=request(base, "/window?seconds=5", method="POST"))
        )
        window.start()
        deadline = time.monotonic() + 10
        while not ep.gate._running.locked() and time.monotonic() < deadline:
            pass
        status, body, _ = request(base, "/census", method="POST")
        window.join(timeout=30)
    assert status == 429 and "busy" in body["error"]
    w_status, w_body, _ = out["w"]
    assert w_status == 200 and w_body["seconds"] == 1.0  # capped at window_max_s
    assert isinstance(w_body["sites"], list)


def test_recipe_starlette_mount_under_uvicorn(monitor: memwarden.Monitor) -> None:
    """The FastAPI/Starlette recipe: app.mount("/memwarden", endpoint.asgi()) answers its routes."""
    pytest.importorskip("starlette", reason="pip install starlette (dev extra)")
    pytest.importorskip("uvicorn", reason="pip install uvicorn (dev extra)")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(_: Any) -> PlainTextResponse:
        return PlainTextResponse("the service")

    app = Starlette(routes=[Route("/", home), Mount("/memwarden", app=Endpoint(monitor).asgi())])
    with serve_asgi(app) as base:
        status, body, _ = request(base, "/memwarden/verdict")
        assert status == 200 and body["schema"] == "memwarden.verdict/1"
        status, body, _ = request(base, "/memwarden/timeline?last=2")
        assert status == 200 and len(body["samples"]) == 2


def test_recipe_flask_dispatcher(monitor: memwarden.Monitor) -> None:
    """The Flask recipe: DispatcherMiddleware(app.wsgi_app, {"/memwarden": endpoint.wsgi()}) answers its routes."""
    flask = pytest.importorskip("flask", reason="pip install flask (dev extra)")
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app = flask.Flask("service")
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/memwarden": Endpoint(monitor).wsgi()})  # type: ignore[method-assign]
    with serve_wsgi(app) as base:
        status, body, _ = request(base, "/memwarden/readings")
        assert status == 200 and body["metrics"]["gpu.allocated_bytes"] == 96 << 20
        status, body, _ = request(base, "/memwarden/readings", source="127.0.0.2")
        assert status == 200  # loopback by default: all of 127.0.0.0/8
