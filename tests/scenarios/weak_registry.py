"""The fixed ``class_registry.py``: the session registry holds weak references only.

Same web shop, same admin endpoint, but ``Session._instances`` is a ``weakref.WeakSet``: a session
disappears from it as soon as the request that opened it is done. Per-request allocations are the
same as in the leaking version, yet nothing is retained, so memory stays flat after warm-up.
A detector must not call this a leak.

memwarden-expect: stable
"""

from __future__ import annotations

import os
import random
import time
import weakref
from typing import ClassVar

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 80
CART_ITEMS = 24


class Session:
    """A logged-in user's shopping session."""

    _instances: ClassVar[weakref.WeakSet[Session]] = weakref.WeakSet()

    def __init__(self, user_id: int, rng: random.Random) -> None:
        self.user_id = user_id
        self.token = f"{rng.getrandbits(256):064x}"
        self.cart = []
        for _ in range(CART_ITEMS):
            self.cart.append({"sku": f"SKU-{rng.randrange(10**7):07d}", "qty": rng.randrange(1, 4)})
        self.preferences = {"currency": "EUR", "theme": "light", "recent": list(range(user_id, user_id + 20))}
        Session._instances.add(self)

    def total_items(self) -> int:
        return sum(int(item["qty"]) for item in self.cart)


def handle_request(request_id: int, rng: random.Random) -> int:
    """Open a session for the caller and answer with its cart size."""
    session = Session(request_id, rng)
    return session.total_items()


def main() -> None:
    rng = random.Random(19)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(served, rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"weak_registry: served {served} requests, {len(Session._instances)} sessions alive")


if __name__ == "__main__":
    main()
