"""gunicorn hooks: keep each worker inside its memory budget and recycle it without losing a request.

Drop-in::

    MEMWARDEN_BUDGET=0.7 gunicorn -c python:memwarden.guards.gunicorn app:app

or two lines at the end of an existing ``gunicorn.conf.py`` (your own hooks keep running first)::

    import memwarden.guards.gunicorn
    memwarden.guards.gunicorn.install(globals())

Works with the ``sync`` and ``gthread`` workers (the app is wrapped: checked before it runs and as
it starts its response, so the response that crosses the budget already closes its connection; and
again in ``post_request``, after the body) and ``uvicorn_worker.UvicornWorker`` (its app is wrapped
with :class:`~memwarden.guards.asgi.MemoryGuardMiddleware`, since ``post_request`` does not run
there). A gthread worker keeps a reserve for the requests its open connections may still bring (see
:class:`~memwarden.guards.recycle.WorkerGuard`) and stops accepting the moment it must go.
A worker over its budget takes the recycle lock (one worker drains at a time), writes its evidence,
sends itself ``SIGTERM`` (gunicorn's graceful path), keeps heartbeating the arbiter during the drain
(a draining ``UvicornWorker`` stops calling ``notify()``, and the arbiter would ``SIGABRT`` it after
``timeout``), and ends itself at the drain deadline. The master logs why each worker left
(``child_exit``). The configuration is read from ``MEMWARDEN_*`` (see
:mod:`memwarden.guards.config`) and checked in ``on_starting``: bad input stops gunicorn with one line.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from ..exceptions import UsageError
from .config import GuardConfig
from .recycle import WorkerGuard

log = logging.getLogger("memwarden.guards")


class _State:
    """This process's configuration (master and workers) and guard (workers)."""

    config: GuardConfig | None = None
    guard: WorkerGuard | None = None


_S = _State()

HOOKS = (
    "on_starting",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "post_request",
    "worker_exit",
    "child_exit",
)


def _config() -> GuardConfig:
    if _S.config is None:
        _S.config = GuardConfig.from_env()
    return _S.config


def _state_dir() -> Path:
    cfg = _config()
    return Path(cfg.guard_dir or os.environ["MEMWARDEN_GUARD_DIR"])


def _sigterm(reason: str) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class GuardedWSGI:
    """A WSGI app checked by the worker's guard before it runs and as it starts its response.

    Once the worker drains, every response closes its connection: gunicorn drops an app's
    ``Connection`` header, so the guard tells gunicorn's response itself (``force_close``, reached
    through the ``start_response`` gunicorn passes, a bound method of it). A streamed body (any
    iterable but a list, a tuple or gunicorn's file wrapper) with no ``Content-Length`` still
    running at ``stream_close_at`` of the drain deadline is ended between two chunks: gunicorn
    then writes the last chunk, so the client gets a complete response, and the connection closes
    (no keep-alive linger).
    """

    def __init__(self, app: Callable[..., Any], guard: WorkerGuard, *, stream_close_at: float = 0.8) -> None:
        self.app = app
        self.guard = guard
        self.stream_close_at = stream_close_at

    def __call__(self, environ: Any, start_response: Callable[..., Any]) -> Any:
        guard = self.guard
        guard.check(request_end=False)
        resp = getattr(start_response, "__self__", None)  # gunicorn's Response
        force_close = getattr(resp, "force_close", None)

        def guarded_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            guard.check()  # may block: a worker over its budget holds this response for its turn
            if guard.draining and callable(force_close):
                force_close()
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        body = self.app(environ, guarded_start_response)
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(body, (list, tuple)) or (isinstance(wrapper, type) and isinstance(body, wrapper)):
            return body
        return _BoundedStream(body, self, resp)

    def stream_deadline_passed(self) -> bool:
        started = self.guard.drain_started
        if started is None:
            return False
        return time.monotonic() >= started + self.guard.drain_s * self.stream_close_at


class _BoundedStream:
    """A streamed WSGI body that ends between two chunks once the drain's stream deadline passed."""

    def __init__(self, body: Any, owner: GuardedWSGI, resp: Any) -> None:
        self.body = body
        self.owner = owner
        self.resp = resp
        self.cut = False

    def __iter__(self) -> Any:
        for chunk in self.body:
            yield chunk
            # only a body with no Content-Length can end early and still be whole (chunked, or
            # ended by the close); one with a length runs on until the drain deadline
            if getattr(self.resp, "response_length", 0) is None and self.owner.stream_deadline_passed():
                self.cut = True
                force_close = getattr(self.resp, "force_close", None)
                if callable(force_close):
                    force_close()
                log.warning("memwarden: ending a streamed response at the drain's stream deadline")
                return

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if callable(close):
            close()


def _outstanding(worker: Any) -> Callable[[], int] | None:
    """What a worker may still have to answer once it stops: gthread's open connections."""
    if not hasattr(worker, "nr_conns"):
        return None  # the sync worker holds one connection, the one it is answering
    return lambda: int(worker.nr_conns)


def _stop_accepting(worker: Any) -> Callable[[], None]:
    """Stop a gthread worker accepting connections now (its main loop drops its listeners)."""

    def stop() -> None:
        if hasattr(worker, "worker_connections") and hasattr(worker, "method_queue"):
            worker.worker_connections = 0  # the loop's "can accept" test turns false
            with contextlib.suppress(Exception):
                worker.method_queue.defer(lambda: None)  # wake its poller

    return stop


def _is_asgi_worker(worker: Any) -> bool:
    return any(c.__name__ == "UvicornWorker" for c in type(worker).__mro__) or hasattr(worker, "config")


def current_guard() -> WorkerGuard | None:
    """This worker's guard (``None`` in the master or before ``post_fork``)."""
    return _S.guard


def on_starting(server: Any) -> None:
    """In the master: read and check the configuration (one line and exit on bad input)."""
    try:
        cfg = GuardConfig.from_env()
        resolved = cfg.budget.resolve()
    except UsageError as exc:
        server.log.error("memwarden: %s", exc)
        raise SystemExit(f"memwarden: {exc}") from None
    _S.config = cfg
    if not cfg.guard_dir and not os.environ.get("MEMWARDEN_GUARD_DIR"):
        os.environ["MEMWARDEN_GUARD_DIR"] = str(
            Path(tempfile.gettempdir()) / f"memwarden-guard-{os.getpid()}"
        )
    _state_dir().mkdir(parents=True, exist_ok=True)
    server.log.info(
        "memwarden: guarding each worker: %s budget %d MiB (soft %d MiB; %s), drain %.0f s, state in %s",
        resolved.measure,
        resolved.hard_bytes >> 20,
        resolved.soft_bytes >> 20,
        resolved.source,
        cfg.drain_s,
        _state_dir(),
    )
    if cfg.drain_s > getattr(server.cfg, "graceful_timeout", cfg.drain_s):
        server.log.warning(
            "memwarden: MEMWARDEN_DRAIN_S %.0f s is longer than gunicorn's graceful_timeout %s s",
            cfg.drain_s,
            server.cfg.graceful_timeout,
        )


def pre_fork(server: Any, worker: Any) -> None:
    """In the master: ``gc.freeze()`` before each fork when ``MEMWARDEN_GC_FREEZE=1``."""
    if _config().gc_freeze:
        gc.freeze()


def _make_guard(
    worker: Any,
    recycle: Callable[[str], None],
    *,
    blocking_wait: bool = True,
    outstanding: Callable[[], int] | None = None,
    on_over: Callable[[], None] | None = None,
) -> WorkerGuard:
    cfg = _config()
    monitor = None
    if cfg.monitor:
        import memwarden

        monitor = memwarden.start()
    timeout = float(getattr(worker, "timeout", 30) or 30)
    guard = WorkerGuard(
        cfg.budget,
        recycle=recycle,
        heartbeat=worker.notify,
        steps=cfg.steps,
        drain_s=cfg.drain_s,
        state_dir=_state_dir(),
        monitor=monitor,
        heartbeat_every_s=max(0.2, min(timeout / 4, 5.0)),
        blocking_wait=blocking_wait,
        outstanding=outstanding,
        on_over=on_over,
    )
    if monitor is not None:
        monitor.add_observer(guard)  # a second chance between requests, on the monitor's tick
    return guard


def post_fork(server: Any, worker: Any) -> None:
    """In the worker: its guard (sync and gthread workers; ASGI workers wait for their app)."""
    if not _is_asgi_worker(worker):
        _S.guard = _make_guard(
            worker, _sigterm, outstanding=_outstanding(worker), on_over=_stop_accepting(worker)
        )


def post_worker_init(worker: Any) -> None:
    """Wrap the worker's app: :class:`GuardedWSGI`, or the ASGI middleware (which bounds uvicorn's shutdown)."""
    if not _is_asgi_worker(worker):
        if _S.guard is not None and getattr(worker, "wsgi", None) is not None:
            worker.wsgi = GuardedWSGI(worker.wsgi, _S.guard)
        return
    from .asgi import MemoryGuardMiddleware

    def factory(recycle: Callable[[str], None]) -> WorkerGuard:
        _S.guard = _make_guard(worker, recycle, blocking_wait=False)  # never block the event loop
        return _S.guard

    cfg = _config()
    worker.wsgi = MemoryGuardMiddleware(worker.wsgi, config=cfg, guard_factory=factory)
    config = getattr(worker, "config", None)
    if config is not None and getattr(config, "timeout_graceful_shutdown", None) is None:
        config.timeout_graceful_shutdown = cfg.drain_s * 0.9


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """In a sync or gthread worker, after each request's body: check the budget again."""
    if _S.guard is not None:
        _S.guard.check(request_end=False)


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, as it exits: journal the end of the drain."""
    if _S.guard is not None:
        _S.guard.drain_ended()


def child_exit(server: Any, worker: Any) -> None:
    """In the master: log why the worker left, when memwarden recycled it."""
    path = _state_dir() / f"exit-{worker.pid}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    server.log.warning(
        "memwarden: worker %s recycled after %.0f s: %s (peak %d MiB); evidence in %s",
        worker.pid,
        doc.get("lifetime_s", 0.0),
        doc.get("reason"),
        int(doc.get("peak_bytes", 0)) >> 20,
        doc.get("evidence"),
    )
    with contextlib.suppress(OSError):
        path.unlink()


def _chain(theirs: Callable[..., Any], ours: Callable[..., Any], arity: int) -> Callable[..., Any]:
    # gunicorn checks each hook's arity (named positional parameters), so no *args here
    if arity == 1:

        def one(a: Any) -> None:
            theirs(a)
            ours(a)

        return one
    if arity == 2:

        def two(a: Any, b: Any) -> None:
            theirs(a, b)
            ours(a, b)

        return two

    def four(a: Any, b: Any, c: Any, d: Any) -> None:
        theirs(a, b, c, d)
        ours(a, b, c, d)

    return four


_ARITY = {"on_starting": 1, "post_worker_init": 1, "post_request": 4}


def install(namespace: MutableMapping[str, Any]) -> None:
    """Add memwarden's hooks to a gunicorn config module's globals, after any hook already there."""
    for name in HOOKS:
        ours = globals()[name]
        theirs = namespace.get(name)
        if callable(theirs) and theirs is not ours:
            namespace[name] = _chain(theirs, ours, _ARITY.get(name, 2))
        else:
            namespace[name] = ours


__all__ = [
    "HOOKS",
    "GuardedWSGI",
    "child_exit",
    "current_guard",
    "install",
    "on_starting",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "worker_exit",
]
