"""Service that builds a large in-memory index at start-up, trims it to 2 %, then serves flat.

At start the service replays its request log into two million small tuples ``(session, score)``
(about 270 MB of small Python objects), then keeps only every 50th one as its warm set and drops
the rest. Python-visible memory falls back to a few MB, but the process RSS does not: CPython's
small-object allocator (pymalloc) can only return an arena to the OS when every block in it is
free, and one survivor in fifty keeps every pool of every arena alive. From then on the service
handles requests with flat memory. Nothing is leaking: the memory is free inside pymalloc and is
reused by later allocations. The remedy, if the RSS matters, is to build such data in a
subprocess or to allocate long-lived survivors separately from the bulk.

memwarden-expect: allocator_retention
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
LOG_ENTRIES = 2_000_000
LOAD_CHUNKS = 20
LOAD_SECONDS = 1.5
KEEP_EVERY = 50
REQUESTS_PER_SECOND = 100

WARM_SET: list[tuple[int, float]] = []


def load_request_log() -> list[tuple[int, float]]:
    """Replay the log in chunks, as if read from disk over about a second and a half."""
    log: list[tuple[int, float]] = []
    per_chunk = LOG_ENTRIES // LOAD_CHUNKS
    pause = LOAD_SECONDS / LOAD_CHUNKS
    for chunk in range(LOAD_CHUNKS):
        base = chunk * per_chunk
        for i in range(base, base + per_chunk):
            log.append((1_000_000 + i, i * 0.25))
        time.sleep(pause)
    return log


def handle_request(rng: random.Random) -> float:
    """Look a few sessions up in the warm set and score them."""
    picks = [WARM_SET[rng.randrange(len(WARM_SET))] for _ in range(20)]
    return sum(score for _, score in picks) / len(picks)


def main() -> None:
    global WARM_SET
    start = time.monotonic()
    log = load_request_log()
    time.sleep(0.5)
    WARM_SET = log[::KEEP_EVERY]
    del log
    rng = random.Random(31)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = start + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"arena_retention: served {served} requests, warm set of {len(WARM_SET)} entries")


if __name__ == "__main__":
    main()
