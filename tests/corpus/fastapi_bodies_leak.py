"""Ingest API (FastAPI under a real uvicorn server) that keeps every request body it was sent.

``ingest`` reads the raw body of each ``POST /ingest`` and appends it to ``RECEIVED``, a module-level
list meant as a "replay buffer for debugging" that nothing ever trims. uvicorn serves the app from a
thread on a loopback port; an ``httpx.Client`` in the main thread posts ~2 KB JSON bodies back to
back, as fast as the server answers (hundreds per second), so the list grows by about 1 MB/s. An
allocation-heavy program like this one runs several times slower while tracemalloc traces it: the
case of issue 9 where the traced rate was compared with the untraced RSS slope.

memwarden-expect: python_leak
memwarden-leak-function: ingest
memwarden-holder: RECEIVED
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))

app = FastAPI()
RECEIVED: list[bytes] = []


@app.post("/ingest")
async def ingest(request: Request) -> dict[str, int]:
    body = await request.body()
    RECEIVED.append(body)
    return {"stored": len(RECEIVED)}


def serve() -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn in a daemon thread, on a loopback socket bound here (so its port is known)."""
    sock = socket.socket()
    sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )  # accepted sockets inherit it (no 40 ms ACK stalls)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, port


def make_body(rng: random.Random, i: int) -> bytes:
    event = {"id": i, "device": f"dev-{rng.randrange(10_000)}", "readings": [rng.random() for _ in range(90)]}
    return json.dumps(event).encode()


def main() -> None:
    server, thread, port = serve()
    rng = random.Random(9)
    sent = 0
    deadline = time.monotonic() + SECONDS
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        while time.monotonic() < deadline:
            client.post("/ingest", content=make_body(rng, sent)).raise_for_status()
            sent += 1
    server.should_exit = True
    thread.join(5)
    print(f"fastapi_bodies_leak: {sent} requests, {len(RECEIVED)} bodies kept")


if __name__ == "__main__":
    main()
