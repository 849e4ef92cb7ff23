"""Checkout service whose audit log buffers every LogRecord and never flushes.

``AUDIT_BUFFER`` is a ``logging.handlers.MemoryHandler`` on the ``shop.audit`` logger, configured
to flush "when full" with a capacity of ten million records and no flush level that is ever
logged, and no target. ``handle_checkout`` logs one audit line per checkout with its arguments
(the cart's items), about 600 a second: each ``LogRecord`` (its ``__dict__``, its args) stays in
the handler's ``buffer`` list, about 0.6 MB/s. The fix is a bounded capacity and a real target, or
a ``QueueHandler`` drained by a listener.

memwarden-expect: python_leak
memwarden-leak-function: handle_checkout
memwarden-holder: AUDIT
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
CHECKOUTS_PER_SECOND = 600

AUDIT = logging.getLogger("shop.audit")
AUDIT.setLevel(logging.INFO)
AUDIT.propagate = False
AUDIT_BUFFER = logging.handlers.MemoryHandler(capacity=10_000_000, flushLevel=logging.CRITICAL + 10)
AUDIT.addHandler(AUDIT_BUFFER)


def handle_checkout(rng: random.Random, i: int) -> float:
    items = [(f"SKU-{rng.randrange(99_999):05d}", rng.randrange(1, 4)) for _ in range(6)]
    total = sum(qty * 9.99 for _, qty in items)
    AUDIT.info(
        "checkout %s user=%s items=%s total=%.2f", f"c-{i:08d}", f"user-{rng.randrange(10**6)}", items, total
    )
    return total


def main() -> None:
    rng = random.Random(2)
    per_tick = CHECKOUTS_PER_SECOND // 100
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        for _ in range(per_tick):
            handle_checkout(rng, served)
            served += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"logging_buffer_leak: {served} checkouts, {len(AUDIT_BUFFER.buffer)} records buffered")


if __name__ == "__main__":
    main()
