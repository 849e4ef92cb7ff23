"""The live endpoint: current readings, the latest verdict, an on-demand census and tracemalloc window,
the timeline as JSON, for any ASGI or WSGI app (FastAPI, Starlette, Flask, Django...).

::

    from memwarden.exporters.endpoint import Endpoint
    endpoint = Endpoint()                          # reads memwarden.start()'s monitor
    fastapi_app.mount("/memwarden", endpoint.asgi())
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/memwarden": endpoint.wsgi()})

Routes (the last path segment decides, so the endpoint works wherever it is mounted):

========================  ======  ==========================================================
``/readings``             GET     the latest sample's metrics, the layers that cannot be read
``/verdict``              GET     the latest verdict (``memwarden.verdict/1``), cached
``/timeline?last=N``      GET     the last N samples (at most 1,000) and recent events
``/census``               POST    objects by type (top 25) and the caches found now
``/window?seconds=S``     POST    a tracemalloc window of S seconds (at most ``window_max_s``)
========================  ======  ==========================================================

**Who may ask.** The peer is the address of the connection (ASGI ``scope["client"]``, WSGI
``REMOTE_ADDR``), never a header, unless that peer is one of ``trusted_proxies``: then the
rightmost ``X-Forwarded-For`` address that is no trusted proxy is the peer. A peer inside
``local_networks`` (loopback by default) may ask without a token; any other peer must send
``Authorization: Bearer <token>``, compared in constant time (:func:`hmac.compare_digest`), and
with no token configured every other peer is refused (403).

**Bounded cost.** A census or a window runs one at a time (a second one meanwhile gets 429
``busy``) and at most once per ``costly_min_interval_s`` (429 with ``Retry-After``), so a flood
of requests costs one census.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..exceptions import UsageError
from ..probes import to_jsonable
from ._readings import ForkSafeLock, MonitorReadings

if TYPE_CHECKING:
    from .._monitor import Monitor

__all__ = ["Endpoint", "Response", "Views"]

LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
MAX_TIMELINE_SAMPLES = 1000
MAX_EVENTS = 100
CENSUS_TOP = 25

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class Response:
    """What a route answers: a status, a JSON body, extra headers."""

    status: int
    body: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), allow_nan=False, default=str).encode()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _CostlyGate:
    """One costly call at a time, and at most one start per ``min_interval_s`` (per kind)."""

    def __init__(self, min_interval_s: float, clock: Callable[[], float]) -> None:
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._running = ForkSafeLock()
        self._last: dict[str, float] = {}
        self._guard = ForkSafeLock()

    def enter(self, kind: str) -> Response | None:
        """``None`` when the call may run (then :meth:`leave` must follow), else the 429 to answer."""
        with self._guard:
            now = self._clock()
            last = self._last.get(kind)
            if last is not None and now - last < self.min_interval_s:
                wait = max(1, math.ceil(self.min_interval_s - (now - last)))
                return Response(
                    429,
                    {
                        "error": f"a {kind} ran {now - last:.1f} s ago; one per {self.min_interval_s:g} s",
                        "retry_after_s": wait,
                    },
                    (("Retry-After", str(wait)),),
                )
            if not self._running.acquire(blocking=False):
                return Response(
                    429, {"error": "busy: another census or window is running"}, (("Retry-After", "1"),)
                )
            self._last[kind] = now
            return None

    def leave(self) -> None:
        self._running.release()


class Views:
    """The JSON views of a monitor, shared by the endpoint and the control socket."""

    def __init__(self, readings: MonitorReadings, *, window_max_s: float = 10.0, frames: int = 10) -> None:
        self.readings = readings
        self.window_max_s = window_max_s
        self.frames = frames

    def readings_json(self) -> dict[str, Any]:
        mon = self.readings.monitor
        sample = self.readings.latest_sample()
        if mon is None or sample is None:
            return {"running": False, "metrics": {}}
        sampler = mon.sampler
        return {
            "running": mon.running,
            "pid": os.getpid(),
            "t": sample.t,
            "interval_s": mon.interval,
            "ticks": getattr(sampler, "ticks", None),
            "timeline": mon.timeline.path if mon.timeline is not None else None,
            "metrics": {k: _finite(v) for k, v in self.readings.latest_metrics().items()},
            "growth_bytes_per_s": self.readings.growth(),
            "unavailable": _unavailable(mon),
        }

    def verdict_json(self) -> dict[str, Any]:
        verdict = self.readings.verdict()
        if verdict is None:
            return {"running": False}
        return verdict.to_json()

    def timeline_json(self, last: int = 100) -> dict[str, Any]:
        mon = self.readings.monitor
        if mon is None:
            return {"running": False, "samples": [], "events": []}
        last = max(1, min(int(last), MAX_TIMELINE_SAMPLES))
        samples = mon.samples()[-last:]
        events = mon.events()[-MAX_EVENTS:]
        return {
            "schema": "memwarden.timeline/1",
            "samples": [
                {"t": s.t, "mono": s.mono, "metrics": {k: _finite(v) for k, v in s.metrics.items()}}
                for s in samples
            ],
            "events": [{"t": e.t, "kind": e.kind, "data": to_jsonable(e.data)} for e in events],
        }

    def census_json(self) -> dict[str, Any]:
        """Live objects by type (the :data:`CENSUS_TOP` largest by bytes) and every cache found now."""
        from ..attribution import find_caches
        from ..probes.objects import census

        started = time.perf_counter()
        counted = census(top=CENSUS_TOP)
        caches = find_caches()
        return {
            "census": to_jsonable(counted),
            "caches": [to_jsonable(c) for c in caches],
            "duration_s": round(time.perf_counter() - started, 4),
        }

    def window_json(self, seconds: float) -> dict[str, Any]:
        """A tracemalloc window of ``seconds`` (bounded by ``window_max_s``) and the sites that grew.

        Sites are named by file and line only: naming their functions parses source files while
        tracemalloc still traces, which took seconds per window in a test process.
        """
        from ..probes.tracing import TracemallocWindow

        seconds = max(0.1, min(float(seconds), self.window_max_s))
        started = time.perf_counter()
        with TracemallocWindow(frames=self.frames) as window:
            time.sleep(seconds)
            sites = window.diff(top=10, name_functions=False)
        return {
            "seconds": seconds,
            "sites": [to_jsonable(s) for s in sites],
            "duration_s": round(time.perf_counter() - started, 4),
        }


def _unavailable(mon: Monitor) -> dict[str, str]:
    sampler = mon.sampler
    if sampler is None:
        return {}
    out: dict[str, str] = {}
    for status in sampler.status():
        reason = getattr(status, "reason", None)
        if not getattr(status, "available", True) and reason:
            out[str(getattr(status, "layer", "?"))] = str(reason)
    return out


def _networks(values: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except ValueError as exc:
        raise UsageError(f"not a network: {exc}") from None


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class Endpoint:
    """The live endpoint of one monitor (default: :func:`memwarden.start`'s), for ASGI and WSGI apps.

    ``token``: the bearer token non-local peers must send (``None``: they are refused).
    ``local_networks``: peers that need no token (loopback). ``trusted_proxies``: peers whose
    ``X-Forwarded-For`` is believed. ``costly_min_interval_s``: least time between two censuses
    (or two windows). ``window_max_s``: the longest window one request may ask for.
    """

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        token: str | None = None,
        local_networks: Sequence[str] = LOOPBACK,
        trusted_proxies: Sequence[str] = (),
        costly_min_interval_s: float = 30.0,
        window_max_s: float = 10.0,
        readings: MonitorReadings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token is not None and len(token) < 16:
            raise UsageError("the endpoint's token must be at least 16 characters")
        self._token = token.encode() if token is not None else None
        self.local_networks = _networks(local_networks)
        self.trusted_proxies = _networks(trusted_proxies)
        self.views = Views(
            readings or MonitorReadings(monitor, gc_histogram=False), window_max_s=window_max_s
        )
        self.gate = _CostlyGate(costly_min_interval_s, clock)

    # -- who asks ---------------------------------------------------------------------------------

    def peer_of(self, connection_peer: str | None, forwarded_for: str | None) -> str | None:
        """The peer to judge: the connection's, or (from a trusted proxy) the forwarded client."""
        addr = _address(connection_peer)
        if addr is None:
            return None
        if forwarded_for and any(addr in net for net in self.trusted_proxies):
            for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
                hop_addr = _address(hop)
                if hop_addr is None:
                    return None  # a forged or garbled chain: judge nobody as local
                if not any(hop_addr in net for net in self.trusted_proxies):
                    return str(hop_addr)
        return str(addr)

    def check_token(self, authorization: str | None) -> bool:
        """Whether ``Authorization: Bearer <token>`` carries the token (constant-time compare)."""
        if self._token is None or not authorization:
            return False
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

    def authorise(self, peer: str | None, authorization: str | None) -> Response | None:
        """``None`` when the request may go on, else the 401/403 to answer."""
        addr = _address(peer)
        if addr is not None and any(addr in net for net in self.local_networks):
            return None
        if self._token is None:
            return Response(
                403,
                {
                    "error": "memwarden's endpoint answers loopback only; "
                    "configure a token to allow other peers"
                },
            )
        if self.check_token(authorization):
            return None
        return Response(
            401,
            {"error": "a valid 'Authorization: Bearer <token>' is required"},
            (("WWW-Authenticate", 'Bearer realm="memwarden"'),),
        )

    # -- what it answers --------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, peer: str | None, headers: Mapping[str, str]
    ) -> Response:
        """Answer one request (the ASGI and WSGI adapters call this in a thread)."""
        refused = self.authorise(
            self.peer_of(peer, headers.get("x-forwarded-for")), headers.get("authorization")
        )
        if refused is not None:
            return refused
        route = path.rstrip("/").rsplit("/", 1)[-1]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if route in ("readings", "verdict", "timeline"):
                if method not in ("GET", "HEAD"):
                    return Response(405, {"error": f"/{route} takes GET"})
                if route == "readings":
                    return Response(200, self.views.readings_json())
                if route == "verdict":
                    return Response(200, self.views.verdict_json())
                return Response(200, self.views.timeline_json(int(params.get("last", "100"))))
            if route in ("census", "window"):
                if method != "POST":
                    return Response(405, {"error": f"/{route} takes POST (it costs the program something)"})
                seconds = float(params.get("seconds", "2"))
                if not math.isfinite(seconds):
                    return Response(400, {"error": "seconds must be a number"})
                busy = self.gate.enter(route)
                if busy is not None:
                    return busy
                try:
                    body = self.views.census_json() if route == "census" else self.views.window_json(seconds)
                finally:
                    self.gate.leave()
                return Response(200, body)
        except ValueError as exc:
            return Response(400, {"error": f"bad parameter: {exc}"})
        return Response(
            404, {"error": "no such route", "routes": ["readings", "verdict", "timeline", "census", "window"]}
        )

    # -- adapters ---------------------------------------------------------------------------------

    def asgi(self) -> Callable[..., Any]:
        """An ASGI 3 app (mount it under a prefix: FastAPI/Starlette ``app.mount("/memwarden", ...)``)."""

        async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            if scope["type"] != "http":
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            client = scope.get("client")
            peer = client[0] if client else None
            query = scope.get("query_string", b"").decode("latin-1")
            response = await asyncio.to_thread(
                self.handle, scope.get("method", "GET"), scope.get("path", "/"), query, peer, headers
            )
            body = response.encoded()
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *((k.lower().encode(), v.encode()) for k, v in response.headers),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        return app

    def wsgi(self) -> Callable[..., Iterable[bytes]]:
        """A WSGI app (Flask: ``DispatcherMiddleware(app.wsgi_app, {"/memwarden": endpoint.wsgi()})``)."""

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            headers = {
                k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")
            }
            path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/"))
            response = self.handle(
                str(environ.get("REQUEST_METHOD", "GET")),
                path,
                str(environ.get("QUERY_STRING", "")),
                environ.get("REMOTE_ADDR"),
                headers,
            )
            body = response.encoded()
            start_response(
                f"{response.status} {_REASONS.get(response.status, '')}".strip(),
                [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *response.headers],
            )
            return [body]

        return app
