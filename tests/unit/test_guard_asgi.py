"""The ASGI middleware driven in-process (no server): Connection: close while draining, streams closed cleanly."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

from memwarden.guards.asgi import MemoryGuardMiddleware
from memwarden.guards.budget import Budget
from memwarden.guards.config import GuardConfig
from memwarden.guards.gpu import EmptyCachePolicy
from memwarden.guards.ladder import Ladder
from memwarden.guards.recycle import WorkerGuard
from memwarden.probes.process import CgroupMemory

MiB = 1 << 20


def _guard(tmp_path: Path, value: list[int], recycled: list[str]) -> WorkerGuard:
    budget = Budget(limit_bytes=100 * MiB, min_lifetime_s=0)
    return WorkerGuard(
        budget,
        recycle=recycled.append,
        read=lambda: value[0],
        state_dir=tmp_path,
        steps=("alert", "recycle"),
        resolved=budget.resolve(cgroup=CgroupMemory.unknown()),
        on_deadline=lambda: None,
        blocking_wait=False,
    )


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i in range(1000):
            await send({"type": "http.response.body", "body": f"{i}\n".encode(), "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _middleware(tmp_path: Path, value: list[int], recycled: list[str]) -> MemoryGuardMiddleware:
    cfg = GuardConfig(Budget(limit_bytes=100 * MiB, min_lifetime_s=0))
    mw = MemoryGuardMiddleware(_app, config=cfg, guard_factory=lambda rec: _guard(tmp_path, value, recycled))
    mw.recycle_signal = 0  # os.kill(pid, 0) checks the process exists and sends nothing
    return mw


async def _call(mw: MemoryGuardMiddleware, path: str, client: tuple[str, int]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await mw({"type": "http", "path": path, "client": client}, receive, send)
    return sent


def test_responses_say_connection_close_once_the_worker_drains(tmp_path: Path) -> None:
    """Under budget the app's headers pass; over it, the worker drains and responses carry Connection: close."""
    value = [50 * MiB]
    recycled: list[str] = []
    mw = _middleware(tmp_path, value, recycled)

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        before = await _call(mw, "/", ("127.0.0.1", 1))
        value[0] = 120 * MiB
        after = await _call(mw, "/", ("127.0.0.1", 2))
        return before, after

    before, after = asyncio.run(run())
    assert (b"connection", b"keep-alive") in before[0]["headers"]
    assert after[0]["headers"][-1] == (b"connection", b"close")
    assert [h for h in after[0]["headers"] if h[0] == b"connection"] == [(b"connection", b"close")]
    assert mw.guard is not None and mw.guard.draining
    mw.guard.drain_ended()


def test_a_stream_still_open_at_the_drain_deadline_is_closed_cleanly(tmp_path: Path) -> None:
    """When streams must close, the body ends with more_body False and the app stops: no half-open stream."""
    value = [50 * MiB]
    mw = _middleware(tmp_path, value, [])

    async def run() -> list[dict[str, Any]]:
        task = asyncio.ensure_future(_call(mw, "/stream", ("127.0.0.1", 3)))
        await asyncio.sleep(0.05)
        mw._close_streams()
        return await asyncio.wait_for(task, 5)

    sent = asyncio.run(run())
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert 5 < len(bodies) < 1000
    assert bodies[-1]["more_body"] is False
    assert all(m["more_body"] for m in bodies[:-1])
    assert mw.in_flight == 0


def test_the_gpu_step_releases_torchs_cache_through_the_policy() -> None:
    """The ladder's gpu step calls EmptyCachePolicy, which empties a (fake) torch cache over its threshold."""
    calls: list[int] = []

    class Cuda:
        reserved = 3 << 30

        def is_initialized(self) -> bool:
            return True

        def device_count(self) -> int:
            return 1

        def memory_allocated(self, i: int) -> int:
            return 1 << 30

        def memory_reserved(self, i: int) -> int:
            return self.reserved

        def empty_cache(self) -> None:
            calls.append(1)
            self.reserved = 1 << 30

    torch = types.SimpleNamespace(cuda=Cuda())
    policy = EmptyCachePolicy(threshold_bytes=1 << 30, min_interval_s=0, torch_module=lambda: torch)
    results = Ladder(read=lambda: 200 * MiB, order=("gpu",), gpu_policy=policy).climb(
        "test", 200 * MiB, 0, "rss"
    )
    assert calls == [1]
    assert results[0].action == "gpu_empty_cache"
    assert results[0].details["released"] is True and results[0].details["gpu_freed_bytes"] == 2 << 30


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A stream, or a WebSocket, that says one thing and then stays quiet for a minute."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        await asyncio.sleep(60)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"0\n", "more_body": True})
    await asyncio.sleep(60)


def test_quiet_streams_and_websockets_are_ended_from_outside_at_the_deadline(tmp_path: Path) -> None:
    """An app that sends nothing more still has its stream ended (more_body False) and its WebSocket closed (1001), then stops."""
    value = [50 * MiB]
    cfg = GuardConfig(Budget(limit_bytes=100 * MiB, min_lifetime_s=0))
    mw = MemoryGuardMiddleware(_slow_app, config=cfg, guard_factory=lambda rec: _guard(tmp_path, value, []))
    mw.recycle_signal = 0
    sent: dict[str, list[dict[str, Any]]] = {"http": [], "websocket": []}

    async def call(kind: str) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect" if kind == "websocket" else "http.request"}

        async def send(message: Any) -> None:
            sent[kind].append(dict(message))

        await mw({"type": kind, "path": "/", "client": ("127.0.0.1", 9)}, receive, send)

    async def run() -> float:
        tasks = [asyncio.ensure_future(call(k)) for k in ("http", "websocket")]
        await asyncio.sleep(0.05)
        t0 = asyncio.get_running_loop().time()
        mw._close_streams()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return asyncio.get_running_loop().time() - t0

    took = asyncio.run(run())
    assert took < 3  # the apps slept for a minute: they were cancelled after the cut's grace
    assert sent["http"][-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert sent["websocket"][-1] == {"type": "websocket.close", "code": 1001, "reason": "server recycling"}
    assert mw.in_flight == 0 and not mw._long


def test_the_recycle_signal_waits_while_a_websocket_is_open(tmp_path: Path) -> None:
    """uvicorn would close a WebSocket at once (1012) on the signal: the signal is held until the deadline closes it."""
    value = [50 * MiB]
    cfg = GuardConfig(Budget(limit_bytes=100 * MiB, min_lifetime_s=0))
    mw = MemoryGuardMiddleware(_slow_app, config=cfg, guard_factory=lambda rec: _guard(tmp_path, value, []))
    mw.recycle_signal = 0

    async def run() -> tuple[bool, bool]:
        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            pass

        task = asyncio.ensure_future(
            mw({"type": "websocket", "path": "/", "client": ("h", 1)}, receive, send)
        )
        await asyncio.sleep(0.05)
        mw._told = set()
        mw._signal()
        held = not mw._signalled
        mw._close_streams()
        await asyncio.wait_for(task, 5)
        await asyncio.sleep(0.05)
        return held, mw._signalled

    held, signalled = asyncio.run(run())
    assert held and signalled
