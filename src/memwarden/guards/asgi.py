"""An ASGI middleware that keeps a worker inside its budget and drains it without losing a request.

```python
from memwarden.guards.asgi import MemoryGuardMiddleware
app = MemoryGuardMiddleware(app)            # budget etc. from MEMWARDEN_* (see guards.config)
```

After each request's handler has run (at ``http.response.start``) it checks the budget. When the
worker must be recycled it:

- answers every response from then on with ``Connection: close``, so clients do not send another
  request on a connection that is about to close;
- after ``linger_s`` sends itself ``SIGTERM``: uvicorn's graceful shutdown stops accepting and
  waits for the requests in flight (the supervisor, ``uvicorn --workers N`` or gunicorn, starts a
  replacement);
- bounds long-lived responses: a stream or WebSocket still open at ``stream_close_at`` of the
  drain deadline is closed cleanly (the stream ends, the WebSocket gets close code 1001).

Run with no supervisor (a single ``uvicorn app:app``), a recycle stops the service: the middleware
warns at start-up unless ``MEMWARDEN_SUPERVISED=1`` says something else restarts it (Kubernetes,
systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import GuardConfig
from .recycle import WorkerGuard

log = logging.getLogger("memwarden.guards")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def listening_fds() -> list[int]:
    """The file descriptors of this process's listening TCP sockets (from ``/proc``; [] elsewhere)."""
    listening: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A":  # TCP_LISTEN
                        listening.add(parts[9])
        except OSError:
            continue
    fds = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            fds.append(int(name))
    return sorted(fds)


class _StreamClosed(Exception):
    """Raised into the app's ``send`` after the middleware closed its response on a drain."""


def supervised() -> bool:
    """Whether something respawns this process when it exits (best effort)."""
    if os.environ.get("MEMWARDEN_SUPERVISED", "").strip() in ("1", "true", "yes"):
        return True
    if multiprocessing.parent_process() is not None:  # uvicorn --workers spawns its workers
        return True
    return "gunicorn" in os.environ.get("SERVER_SOFTWARE", "")


class MemoryGuardMiddleware:
    """Wraps an ASGI app with a :class:`~memwarden.guards.recycle.WorkerGuard` (see the module docs).

    ``config`` is read from the environment when omitted, and checked now (bad input fails at
    start-up). ``guard_factory`` builds the guard in the worker (the gunicorn integration passes
    its own); ``linger_s`` is the longest ``Connection: close`` is answered before the drain starts
    (it starts sooner once every connection used in the last ``keepalive_s`` has had such an answer).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: GuardConfig | None = None,
        guard_factory: Callable[[Callable[[str], None]], WorkerGuard] | None = None,
        linger_s: float = 1.0,
        keepalive_s: float = 5.0,
        stream_close_at: float = 0.8,
        recycle_signal: int = signal.SIGTERM,
    ) -> None:
        self.app = app
        self.config = config if config is not None else GuardConfig.from_env()
        self.config.budget.resolve()
        self._guard_factory = guard_factory
        self.linger_s = linger_s
        self.stream_close_at = stream_close_at
        self.recycle_signal = recycle_signal
        self.guard: WorkerGuard | None = None
        self.in_flight = 0
        self.closing_streams = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.keepalive_s = keepalive_s
        self._conns: dict[Any, float] = {}
        self._open: set[tuple[Any, int]] = set()
        self._told: set[Any] | None = None
        self._signalled = False
        self._stopped_accepting = False
        self._signal_handle: asyncio.TimerHandle | None = None
        self._long: set[_LongLived] = set()
        self._signal_held = False
        self._cuts: set[asyncio.Future[None]] = set()

    # -- the guard, made in the worker ----------------------------------------------------

    def _ensure_guard(self) -> WorkerGuard:
        if self.guard is None:
            self._loop = asyncio.get_running_loop()
            if self._guard_factory is not None:
                self.guard = self._guard_factory(self.recycle)
            else:
                if not supervised():
                    log.warning(
                        "memwarden: no supervisor will restart this process after a recycle (run"
                        " uvicorn --workers N or gunicorn, or set MEMWARDEN_SUPERVISED=1 if Kubernetes or"
                        " systemd restarts it)"
                    )
                cfg = self.config
                self.guard = WorkerGuard(
                    cfg.budget,
                    recycle=self.recycle,
                    steps=cfg.steps,
                    drain_s=cfg.drain_s,
                    state_dir=cfg.guard_dir,
                    blocking_wait=False,
                )
            if self.guard.outstanding is None:
                self.guard.outstanding = self.recent_connections
            if self.guard.on_over is None:
                self.guard.on_over = self._stop_accepting_once
        return self.guard

    def recycle(self, reason: str) -> None:
        """The guard's recycle: ``Connection: close`` for ``linger_s``, then the graceful signal."""
        loop = self._loop
        if loop is None:
            os.kill(os.getpid(), self.recycle_signal)
            return
        drain_s = self.guard.drain_s if self.guard is not None else self.config.drain_s

        def arm() -> None:
            self._stop_accepting_once()
            now = loop.time()
            # every connection used lately gets one answer with Connection: close before the
            # server closes it, so no client sends a request into a closing socket
            self._told = {c for c, seen in self._conns.items() if now - seen < self.keepalive_s}
            self._signal_handle = loop.call_later(self.linger_s, self._signal)
            loop.call_later(max(drain_s * self.stream_close_at, self.linger_s), self._close_streams)
            self._maybe_signal()

        loop.call_soon_threadsafe(arm)

    def _stop_accepting_once(self) -> None:
        if not self._stopped_accepting and self._loop is not None:
            self._stopped_accepting = True
            self._stop_accepting(self._loop)

    def _stop_accepting(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop taking new connections now (the other workers take them), before the linger.

        asyncio's server accepts in a reader callback on each listening socket: removing it stops
        this process accepting while its open connections are answered. (With another event loop,
        uvloop say, this does nothing and new connections keep coming until the signal.)
        """
        for fd in listening_fds():
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)

    def _websockets_open(self) -> bool:
        return any(c.websocket and not c.done for c in self._long)

    def _maybe_signal(self) -> None:
        if self._told is not None and not self._told:
            self._signal()

    def _signal(self) -> None:
        if self._websockets_open() and not self.closing_streams:
            # uvicorn's shutdown closes a WebSocket at once (1012): hold the signal until the
            # WebSockets end, or until the stream deadline closes them (1001)
            self._signal_held = True
            return
        if not self._signalled:
            self._signalled = True
            if self._signal_handle is not None:
                self._signal_handle.cancel()
            os.kill(os.getpid(), self.recycle_signal)

    def _close_streams(self) -> None:
        """At the stream deadline: end every open stream and WebSocket now, then let the worker go."""
        if self.in_flight:
            log.warning("memwarden: closing %d long-lived responses at the drain deadline", self.in_flight)
        self.closing_streams = True
        cuts = [fut for conn in list(self._long) if (fut := conn.cut()) is not None]
        if self._told is None:
            return

        async def signal_after_cuts() -> None:  # the recycle was armed: nothing holds it back now
            if cuts:
                await asyncio.wait(cuts, timeout=_LongLived.CUT_GRACE_S)
            self._signal()

        self._track(asyncio.ensure_future(signal_after_cuts()))

    def _track(self, fut: asyncio.Future[None]) -> None:
        self._cuts.add(fut)
        fut.add_done_callback(self._cuts.discard)

    def recent_connections(self) -> int:
        """Connections used in the last ``keepalive_s``: what a stopping worker may still be sent."""
        loop = self._loop
        if loop is None:
            return 0
        now = loop.time()
        return sum(1 for seen in self._conns.values() if now - seen < self.keepalive_s)

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":

            async def lifespan_receive() -> Message:
                message = await receive()
                if message.get("type") == "lifespan.startup":
                    self._ensure_guard()
                elif message.get("type") == "lifespan.shutdown" and self.guard is not None:
                    self.guard.drain_ended()  # the server has closed its connections by now
                return message

            await self.app(scope, lifespan_receive, send)
            return
        guard = self._ensure_guard()
        if kind == "http":
            await self._http(guard, scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _hold_while_waiting(self, guard: WorkerGuard, request_end: bool) -> None:
        if guard.check(request_end=request_end) == "waiting":
            # another worker drains: this one is next. Take no new connections, and hold this
            # request (the loop keeps running) until our turn comes.
            self._stop_accepting_once()
            while guard.check(request_end=False) == "waiting":
                await asyncio.sleep(0.02)

    async def _run(self, conn: _LongLived, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        except _StreamClosed:
            pass
        except asyncio.CancelledError:
            task = conn.task
            if not conn.cancelled or task is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()  # our own cancel, of an app that outlived its cut: it has ended
        finally:
            self.in_flight -= 1
            self._long.discard(conn)
            if conn.timer is not None:
                conn.timer.cancel()

    async def _http(self, guard: WorkerGuard, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        loop = self._loop
        if loop is not None and client is not None:
            self._conns[client] = loop.time()
            if len(self._conns) > 4096:  # bounded: forget the oldest half
                for old in sorted(self._conns, key=self._conns.__getitem__)[:2048]:
                    del self._conns[old]
        await self._hold_while_waiting(guard, request_end=False)  # a check before the request too
        conn = _LongLived(self, send, websocket=False)

        async def guarded_send(message: Message) -> None:
            mtype = message.get("type")
            if mtype == "http.response.start":
                await self._hold_while_waiting(guard, request_end=True)
                if guard.draining:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
                    conn.closes = True
            elif mtype == "http.response.body" and self.closing_streams and conn.started:
                await conn.finish(message.get("body", b""))
                raise _StreamClosed()
            await conn.send(message)

        try:
            await self._run(conn, scope, receive, guarded_send)
        finally:
            if conn.closes and self._told is not None:
                self._told.discard(client)
                self._maybe_signal()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = _LongLived(self, send, websocket=True)

        async def guarded_send(message: Message) -> None:
            if self.closing_streams and message.get("type") == "websocket.send" and conn.started:
                await conn.finish()
                raise _StreamClosed()
            await conn.send(message)

        await self._run(conn, scope, receive, guarded_send)
        if self._signal_held and not self._websockets_open():
            self._signal()  # the last WebSocket ended by itself: the held signal goes now


class _LongLived:
    """One response (or WebSocket) of the middleware: its sends, and how to end it at the deadline.

    A response that has started (or a WebSocket once accepted) counts as long-lived; ``cut()`` ends
    it from outside the app, cleanly, between two of its sends: the last body chunk
    (``more_body: False``), or a WebSocket close with code 1001. The app's next send raises
    :class:`_StreamClosed` (the middleware catches it); an app that sends nothing more within
    ``CUT_GRACE_S`` is cancelled (it has nothing left to say on a closed response).
    """

    CUT_GRACE_S = 1.0

    def __init__(self, mw: MemoryGuardMiddleware, send: Send, *, websocket: bool) -> None:
        self.mw = mw
        self._send = send
        self.websocket = websocket
        self.lock = asyncio.Lock()
        self.started = False
        self.done = False
        self.closes = False
        self.cancelled = False
        self.task = asyncio.current_task()
        self.timer: asyncio.TimerHandle | None = None

    async def send(self, message: Message) -> None:
        async with self.lock:
            if self.done:
                raise _StreamClosed()
            mtype = message.get("type")
            if mtype in ("http.response.start", "websocket.accept"):
                self.started = True
                self.mw._long.add(self)
            elif mtype == "websocket.close" or (
                mtype == "http.response.body" and not message.get("more_body", False)
            ):
                self.done = True
            await self._send(message)

    async def finish(self, body: bytes = b"") -> None:
        """End it now: the last chunk, or close code 1001."""
        async with self.lock:
            if self.done:
                return
            self.done = True
            if self.websocket:
                await self._send({"type": "websocket.close", "code": 1001, "reason": "server recycling"})
            else:
                await self._send({"type": "http.response.body", "body": body, "more_body": False})

    def cut(self) -> asyncio.Future[None] | None:
        """From the event loop, outside the app: finish, then cancel an app that lingers on."""
        if self.done or not self.started:
            return None
        loop = asyncio.get_running_loop() if self.mw._loop is None else self.mw._loop

        def cancel() -> None:
            task = self.task
            if task is not None and not task.done() and self in self.mw._long:
                self.cancelled = True
                task.cancel()

        async def finish_then_wait() -> None:
            with contextlib.suppress(Exception):
                await self.finish()
            self.timer = loop.call_later(self.CUT_GRACE_S, cancel)

        fut = asyncio.ensure_future(finish_then_wait())
        self.mw._track(fut)
        return fut


__all__ = ["MemoryGuardMiddleware", "supervised"]
