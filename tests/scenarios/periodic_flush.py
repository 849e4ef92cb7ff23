"""Metrics exporter that buffers data points in memory and flushes them every 1.5 seconds.

Each request appends a data point (labels, values, a rendered line) to ``PENDING``, a module-level
buffer; every 1.5 seconds a flush ships the buffer and clears it. Between flushes memory climbs
at about 0.5 MB/s, then drops back: a sawtooth with about five teeth in an 8 s run, so a naive
trend over one or two teeth looks like a leak. (memwarden needs about three teeth in a run to
tell a sawtooth from growth: see docs/diagnosis/index.md.) Over several flushes nothing
grows. ``stable`` is right; ``plateau`` is an acceptable reading of the bounded sawtooth.

memwarden-expect: stable|plateau
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 100
FLUSH_EVERY_S = 1.5

PENDING: list[dict[str, object]] = []
SHIPPED = {"batches": 0, "points": 0}


def record_point(rng: random.Random, request_id: int) -> None:
    labels = {"route": f"/api/v1/items/{request_id % 50}", "status": "200", "pod": "web-7f9c"}
    values = [rng.random() for _ in range(16)]
    line = f"http_request_seconds{{{labels}}} " + " ".join(f"{v:.6f}" for v in values) * 40
    PENDING.append({"labels": labels, "values": values, "line": line})


def flush() -> None:
    """Ship the buffered points (here: count them) and empty the buffer."""
    SHIPPED["batches"] += 1
    SHIPPED["points"] += len(PENDING)
    PENDING.clear()


def main() -> None:
    rng = random.Random(59)
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    deadline = start + SECONDS
    next_tick = start
    next_flush = start + FLUSH_EVERY_S
    served = 0
    while time.monotonic() < deadline:
        record_point(rng, served)
        served += 1
        if time.monotonic() >= next_flush:
            flush()
            next_flush += FLUSH_EVERY_S
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"periodic_flush: served {served} requests, shipped {SHIPPED}")


if __name__ == "__main__":
    main()
