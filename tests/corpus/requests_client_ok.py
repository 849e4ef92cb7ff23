"""Catalogue sync client (``requests``) that reads each Response and lets it go.

``requests_client_leak`` fixed: ``fetch_item`` parses the JSON it needs and drops the
``Response``. Same local ``http.server`` on loopback, same keep-alive ``requests.Session``, same 200
requests a second of ~3 KB: flat.

memwarden-expect: stable
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
