"""Order gateway that keeps every validated pydantic model in a registry.

``parse_order`` validates each incoming JSON order with ``Order.model_validate_json`` (pydantic v2:
the objects are built by pydantic-core, in Rust, with no Python frame below ``parse_order``), and
``REGISTRY[order.id] = order`` keeps it "for idempotency checks", forever. About 300 orders a
second of ~1 KB (eight line items each): roughly 1.5 MB/s of model instances, their ``__dict__``s,
lists and strings.

memwarden-expect: python_leak
memwarden-leak-function: parse_order
memwarden-holder: REGISTRY
"""

from __future__ import annotations

import json
import os
import random
import time

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


REGISTRY: dict[str, Order] = {}


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
            REGISTRY[order.id] = order
            received += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"pydantic_registry_leak: {received} orders, {len(REGISTRY)} models kept ({value:.0f})")


if __name__ == "__main__":
    main()
