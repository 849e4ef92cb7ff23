"""Order gateway that validates each order with pydantic and keeps only the ids it has seen recently.

``pydantic_registry_leak`` fixed: the idempotency check keeps the last 500 order ids in a
``collections.deque`` (and a set mirroring it), not the models; each validated ``Order`` is dropped
once totalled. Same 300 orders a second: the id window fills in under 2 seconds (~60 KB) and the
rest is flat.

memwarden-expect: stable|plateau
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque

from pydantic import BaseModel

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
ORDERS_PER_SECOND = 300


class LineItem(BaseModel):
    sku: str
    quantity: int
    unit_price: float
    note: str


class Order(BaseModel):
    id: str
    customer: str
    items: list[LineItem]


RECENT_IDS: deque[str] = deque(maxlen=500)
SEEN: set[str] = set()


def parse_order(raw: bytes) -> Order:
    return Order.model_validate_json(raw)


def incoming(rng: random.Random, i: int) -> bytes:
    items = [
        {
            "sku": f"SKU-{rng.randrange(99_999):05d}",
            "quantity": rng.randrange(1, 9),
            "unit_price": round(rng.random() * 80, 2),
            "note": f"gift wrap {rng.randrange(10**9)}",
        }
        for _ in range(8)
    ]
    return json.dumps(
        {"id": f"ord-{i:09d}", "customer": f"cust-{rng.randrange(10**6)}", "items": items}
    ).encode()


def main() -> None:
    rng = random.Random(4)
    per_tick = ORDERS_PER_SECOND // 100
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    received = 0
    value = 0.0
    while time.monotonic() < deadline:
        for _ in range(per_tick):
            order = parse_order(incoming(rng, received))
            value += sum(item.quantity * item.unit_price for item in order.items)
            if len(RECENT_IDS) == RECENT_IDS.maxlen:
                SEEN.discard(RECENT_IDS[0])
            RECENT_IDS.append(order.id)
            SEEN.add(order.id)
            received += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"pydantic_registry_ok: {received} orders, {len(SEEN)} ids remembered ({value:.0f})")


if __name__ == "__main__":
    main()
