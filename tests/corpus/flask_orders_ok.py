"""Flask order API that forwards each order and keeps nothing, driven by Flask's test client.

``flask_orders_leak`` fixed: ``create_order`` validates the order, totals it and answers; the order
is not stored (a real service would write it to its database). Same test client, same ~300
requests a second of ~1.5 KB orders. Per-request temporaries only: flat.

memwarden-expect: stable
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


@app.post("/orders")
def create_order() -> dict[str, Any]:
    order = request.get_json()
    total = sum(item["qty"] * item["price"] for item in order["items"])
    return {"id": order["id"], "status": "accepted", "total": round(total, 2)}


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
    print(f"flask_orders_ok: {sent} requests")


if __name__ == "__main__":
    main()
