"""Ranking worker: heavy dict and sort churn, and a slow leak of small tuples (standard library only).

The worker is CPU-bound: each batch builds a dict of 20,000 scores, sorts its items and keeps
the top ten, then drops it all (hundreds of MB/s of short-lived dicts, tuples and floats). For
every batch ``record_visit`` also appends small ``(user, timestamp, score)`` tuples to ``SEEN``, a
module-level list that is never trimmed, at about 2,000 tuples (~6,000 blocks) a second, paced by
the clock: ~0.2 MB/s of tiny objects under a churn a thousand times larger.

memwarden-expect: python_leak
memwarden-leak-function: record_visit
memwarden-holder: SEEN
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
TUPLES_PER_SECOND = 2000
SEEN: list[tuple[int, float, float]] = []


def rank_batch(rng: random.Random) -> list[tuple[int, float]]:
    scores = {rng.randrange(10**9): rng.random() for _ in range(20_000)}
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:10]


def record_visit(rng: random.Random, count: int) -> None:
    now = time.time()
    for _ in range(count):
        SEEN.append((rng.randrange(10**9), now, rng.random()))


def main() -> None:
    rng = random.Random(12)
    start = last = time.monotonic()
    deadline = start + SECONDS
    owed = 0.0
    batches = 0
    best = 0.0
    while (now := time.monotonic()) < deadline:
        best = max(best, rank_batch(rng)[0][1])
        owed += (now - last) * TUPLES_PER_SECOND
        last = now
        record_visit(rng, int(owed))
        owed -= int(owed)
        batches += 1
    print(f"{os.path.basename(__file__)[:-3]}: {batches} batches, {len(SEEN)} tuples kept ({best:.3f})")


if __name__ == "__main__":
    main()
