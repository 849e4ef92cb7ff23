"""Checkout service whose audit log buffers records and flushes them to a file every 500.

``logging_buffer_leak`` fixed: ``AUDIT_BUFFER`` is a ``MemoryHandler(capacity=500)`` whose target
is a ``FileHandler`` (on the null device here), so the buffer empties every 500 records, a little
more than once a second. Same 600 audit lines a second: a small sawtooth around a flat line.

memwarden-expect: stable|plateau
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
AUDIT_FILE = logging.FileHandler(os.devnull)
AUDIT_BUFFER = logging.handlers.MemoryHandler(capacity=500, flushLevel=logging.ERROR, target=AUDIT_FILE)
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
    print(f"logging_buffer_ok: {served} checkouts, {len(AUDIT_BUFFER.buffer)} records buffered")


if __name__ == "__main__":
    main()
