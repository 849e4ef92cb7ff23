"""Ingest API (FastAPI under a real uvicorn server) that parses each body and keeps nothing.

``fastapi_bodies_leak`` fixed: ``ingest`` reads the body, counts its readings and answers; the body
is dropped with the request. The same uvicorn thread, the same ``httpx.Client`` posting ~2 KB JSON
bodies back to back. Only per-request temporaries (and the servers' own bounded buffers): flat.

memwarden-expect: stable|plateau
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


@app.post("/ingest")
async def ingest(request: Request) -> dict[str, int]:
    body = await request.body()
    return {"readings": len(json.loads(body)["readings"])}


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
    print(f"fastapi_bodies_ok: {sent} requests")


if __name__ == "__main__":
    main()
