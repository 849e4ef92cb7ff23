"""A flat, well-behaved service loop for measuring memwarden's own memory over a long run.

About 100 requests a second, each parsing a JSON order, pricing it and serialising a response;
nothing is retained, so any growth seen while it runs under memwarden is memwarden's own.

    python benchmarks/_workload_flat.py [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence

REQUESTS_PER_SECOND = 100


def handle_request(rng: random.Random, request_id: int) -> int:
    """Parse, price and answer one order; returns the response size."""
    lines = [{"sku": f"SKU-{rng.randrange(10**7):07d}", "qty": rng.randrange(1, 5)} for _ in range(30)]
    order = json.loads(json.dumps({"order_id": request_id, "lines": lines}))
    priced = [{**line, "total": (hash(line["sku"]) % 10_000) / 100 * line["qty"]} for line in order["lines"]]
    return len(json.dumps({"order_id": request_id, "lines": priced}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="flat paced service loop")
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    rng = random.Random(61)
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    next_tick = start
    served = 0
    while time.monotonic() < start + args.seconds:
        handle_request(rng, served)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"served {served} requests in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
