"""Web shop whose ``Session`` class remembers every instance ever created.

``Session._instances`` is a class-level list that ``Session.__init__`` appends to, added once to
let an admin endpoint list "active sessions". Sessions end, but nothing removes them from the
list, so every session ever opened stays in memory with its cart and preferences: roughly
0.4 MB/s at this request rate. The fix is a ``weakref.WeakSet`` (see ``weak_registry.py``) or an
explicit ``close()`` that removes the session.

memwarden-expect: python_leak
memwarden-leak-function: __init__
memwarden-holder: Session._instances
"""

from __future__ import annotations

import os
import random
import time
from typing import ClassVar

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 80
CART_ITEMS = 24


class Session:
    """A logged-in user's shopping session."""

    _instances: ClassVar[list[Session]] = []

    def __init__(self, user_id: int, rng: random.Random) -> None:
        self.user_id = user_id
        self.token = f"{rng.getrandbits(256):064x}"
        self.cart = []
        for _ in range(CART_ITEMS):
            self.cart.append({"sku": f"SKU-{rng.randrange(10**7):07d}", "qty": rng.randrange(1, 4)})
        self.preferences = {"currency": "EUR", "theme": "light", "recent": list(range(user_id, user_id + 20))}
        Session._instances.append(self)

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
    print(f"class_registry: served {served} requests, {len(Session._instances)} sessions remembered")


if __name__ == "__main__":
    main()
