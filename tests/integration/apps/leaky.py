"""A service that leaks about 1 MB per request, in WSGI (``app``) and ASGI (``asgi_app``) forms.

``/leak`` keeps 1 MiB (touched, so it is resident) in a module-level list and answers the pid;
``/stream?chunks=N&delay=S`` streams N numbered lines, one every S seconds (no leak; its
``x-pid`` header names the worker); ``/pid`` answers the pid. The ASGI form also has a WebSocket,
``/ws?messages=N&delay=S``: it sends its pid, then N numbered messages one every S seconds, then
closes with 1000.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

LEAK_BYTES = 1 << 20
KEPT: list[bytes] = []


def _leak() -> bytes:
    KEPT.append(b"x" * LEAK_BYTES)
    return str(os.getpid()).encode()


def _params(query: str) -> tuple[int, float]:
    q = parse_qs(query)
    return int(q.get("chunks", ["20"])[0]), float(q.get("delay", ["0.1"])[0])


def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes] | list[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/stream":
        chunks, delay = _params(environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])

        def gen() -> Iterator[bytes]:
            for i in range(chunks):
                time.sleep(delay)
                yield f"{i}\n".encode()

        return gen()
    body = _leak() if path == "/leak" else str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        chunks, delay = _params(scope.get("query_string", b"").decode())
        headers = [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(chunks):
            await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": f"{i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = _leak() if path == "/leak" else str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    q = parse_qs(scope.get("query_string", b"").decode())
    messages, delay = int(q.get("messages", ["20"])[0]), float(q.get("delay", ["0.1"])[0])
    await send({"type": "websocket.send", "text": str(os.getpid())})
    for i in range(messages):
        await asyncio.sleep(delay)
        await send({"type": "websocket.send", "text": str(i)})
    await send({"type": "websocket.close", "code": 1000})


def guarded_asgi_app() -> Any:
    """The ASGI app behind memwarden's middleware (for ``uvicorn --factory``)."""
    from memwarden.guards.asgi import MemoryGuardMiddleware

    return MemoryGuardMiddleware(asgi_app)
