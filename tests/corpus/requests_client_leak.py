"""Catalogue sync client (``requests``) that keeps every Response it received.

A local ``http.server`` (``ThreadingHTTPServer`` in a thread, on loopback) stands in for the
upstream catalogue API and answers ``GET /items/<n>`` with ~3 KB of JSON. ``fetch_item`` gets each
item through one ``requests.Session`` (keep-alive) and appends the ``Response`` to ``RESPONSES``,
"to retry failed parses later": each Response keeps its body, headers and the request it answered.
About 200 requests a second, roughly 1 MB/s.

memwarden-expect: python_leak
memwarden-leak-function: fetch_item
memwarden-holder: RESPONSES
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 200
RESPONSES: list[requests.Response] = []


class CatalogueHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stall between the headers and the body

    def do_GET(self) -> None:
        n = int(self.path.rsplit("/", 1)[-1])
        body = json.dumps(
            {"id": n, "name": f"item {n}", "tags": [f"tag-{n % 97}-{k}" for k in range(150)]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def fetch_item(session: requests.Session, base: str, n: int) -> int:
    response = session.get(f"{base}/items/{n}", timeout=5)
    response.raise_for_status()
    RESPONSES.append(response)
    return len(response.json()["tags"])


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CatalogueHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    fetched = tags = 0
    with requests.Session() as session:
        while time.monotonic() < deadline:
            tags += fetch_item(session, base, fetched)
            fetched += 1
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
    server.shutdown()
    print(
        f"{os.path.basename(__file__)[:-3]}: {fetched} items fetched ({tags} tags), {len(RESPONSES)} responses kept"
    )


if __name__ == "__main__":
    main()
