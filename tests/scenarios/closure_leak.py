"""Search endpoint whose handler remembers every request it has seen, inside a closure.

``make_handler`` builds the endpoint's handler and gives it a ``seen = []`` list in its closure,
meant to spot duplicate submissions from retrying clients. The list is never trimmed. It is not a
module global, not an attribute: it lives in a closure cell of the function stored in the module
global ``HANDLER``, which is why a search through globals does not find it directly. Each request
adds a record (its query parameters, a body preview): roughly 0.5 MB/s. The fix is a bounded
structure (a ``deque(maxlen=...)`` or a TTL set of request fingerprints).

memwarden-expect: python_leak
memwarden-leak-function: handle
memwarden-holder: make_handler.<locals>.seen
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 200

Request = dict[str, object]


def make_handler(route: str) -> Callable[[Request], int]:
    seen: list[dict[str, object]] = []

    def handle(request: Request) -> int:
        body = str(request["body"])
        query = dict(request["query"])
        fingerprint = f"{route}|{sorted(query.items())}|{hash(body):x}"
        duplicate = any(old["fingerprint"] == fingerprint for old in seen[-50:])
        record = {"fingerprint": fingerprint, "query": query, "preview": body[:1500], "at": time.time()}
        seen.append(record)
        return 409 if duplicate else 200

    return handle


HANDLER = make_handler("/search")


def next_request(rng: random.Random, number: int) -> Request:
    """A search request as the framework hands it over."""
    query = {"q": f"term{rng.randrange(10**6)}", "page": str(rng.randrange(1, 9)), "lang": "en"}
    body = f"request {number} " + "x" * 2000
    return {"query": query, "body": body}


def main() -> None:
    rng = random.Random(23)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        HANDLER(next_request(rng, served))
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"closure_leak: served {served} requests")


if __name__ == "__main__":
    main()
