"""Pricing service that loads its whole catalogue into memory at start-up, then serves flat.

At start the service reads a catalogue of 700 000 products into a dict of strings (about
150 MB of Python objects, in about a second), then answers price look-ups with only per-request
temporaries. Memory steps up once and never grows again. The verdict for "loaded once, never
grows" is ``stable``; ``plateau`` (grew, then levelled off) is also an acceptable reading of the
start-up step. It must never be called a leak.

memwarden-expect: stable|plateau
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
PRODUCTS = 700_000
REQUESTS_PER_SECOND = 100

CATALOGUE: dict[str, str] = {}


def load_catalogue() -> None:
    """Fill CATALOGUE with one description line per product."""
    for i in range(PRODUCTS):
        CATALOGUE[f"SKU-{i:07d}"] = (
            f"product {i:07d}|price={i % 9973 / 7:.2f}|warehouse=WH-{i % 13}|stock={i % 50}"
        )


def handle_request(rng: random.Random) -> float:
    """Price a basket of ten random products."""
    total = 0.0
    for _ in range(10):
        line = CATALOGUE[f"SKU-{rng.randrange(PRODUCTS):07d}"]
        total += float(line.split("|")[1].removeprefix("price="))
    return total


def main() -> None:
    deadline = time.monotonic() + SECONDS
    load_catalogue()
    rng = random.Random(43)
    period = 1.0 / REQUESTS_PER_SECOND
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"startup_load_then_flat: served {served} requests over a catalogue of {len(CATALOGUE)}")


if __name__ == "__main__":
    main()
