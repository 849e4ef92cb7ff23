"""Flask order API that remembers every order it was sent, driven by Flask's test client.

``create_order`` (``POST /orders``) parses the JSON order and stores it in ``ORDERS``, a module-level
dict keyed by the order id, "so that ``GET /orders/<id>`` is fast": nothing ever removes an order.
The test client calls the real WSGI app (routing, request parsing, JSON responses) about 300 times
a second with orders of ~1.5 KB, so the dict grows by roughly 0.5 MB/s.

memwarden-expect: python_leak
memwarden-leak-function: create_order
memwarden-holder: ORDERS
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from flask import Flask, request

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 300

app = Flask(__name__)
ORDERS: dict[str, dict[str, Any]] = {}


@app.post("/orders")
def create_order() -> dict[str, Any]:
    order = request.get_json()
    order["status"] = "accepted"
    ORDERS[order["id"]] = order
    return {"id": order["id"], "status": "accepted"}


def make_order(rng: random.Random, i: int) -> dict[str, Any]:
    items = [
        {"sku": f"SKU-{rng.randrange(99_999):05d}", "qty": rng.randrange(1, 5), "price": rng.random() * 90}
        for _ in range(12)
    ]
    return {"id": f"order-{i:08d}", "customer": f"cust-{rng.randrange(50_000)}", "items": items}


def main() -> None:
    client = app.test_client()
    rng = random.Random(3)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    sent = 0
    while time.monotonic() < deadline:
        response = client.post("/orders", json=make_order(rng, sent))
        assert response.status_code == 200, response.status_code
        sent += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"flask_orders_leak: {sent} requests, {len(ORDERS)} orders kept")


if __name__ == "__main__":
    main()
