"""A well-behaved JSON API: per-request temporary work, nothing retained.

Each request parses a JSON body (an order with a few dozen lines), validates and prices it,
builds a response dict and serialises it. Everything it allocates is garbage when the request
ends, and there is no cache. After the first second memory is flat. The baseline every other
scenario is compared with: must be ``stable``.

memwarden-expect: stable
"""

from __future__ import annotations

import json
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 100


def make_body(rng: random.Random, request_id: int) -> str:
    """The request body a client would send."""
    lines = [{"sku": f"SKU-{rng.randrange(10**7):07d}", "qty": rng.randrange(1, 5)} for _ in range(40)]
    return json.dumps({"order_id": request_id, "customer": f"c{rng.randrange(10**5)}", "lines": lines})


def handle_request(body: str) -> str:
    """Parse, price and answer one order."""
    order = json.loads(body)
    priced = []
    for line in order["lines"]:
        unit = (hash(line["sku"]) % 10_000) / 100
        priced.append({**line, "unit_price": unit, "total": unit * line["qty"]})
    response = {"order_id": order["order_id"], "lines": priced, "total": sum(p["total"] for p in priced)}
    return json.dumps(response)


def main() -> None:
    rng = random.Random(47)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(make_body(rng, served))
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"flat_service: served {served} requests")


if __name__ == "__main__":
    main()
