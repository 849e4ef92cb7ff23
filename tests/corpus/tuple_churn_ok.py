"""Ranking worker: the same heavy dict and sort churn, and visits counted rather than kept.

``tuple_churn_leak`` fixed: ``record_visit`` folds each visit into a counter and a running maximum
instead of appending a tuple to ``SEEN``. Hundreds of MB/s of short-lived objects, nothing kept:
flat, however noisy.

memwarden-expect: stable
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
TUPLES_PER_SECOND = 2000
SEEN = {"visits": 0, "max_score": 0.0}


def rank_batch(rng: random.Random) -> list[tuple[int, float]]:
    scores = {rng.randrange(10**9): rng.random() for _ in range(20_000)}
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:10]


def record_visit(rng: random.Random, count: int) -> None:
    for _ in range(count):
        SEEN["visits"] += 1
        SEEN["max_score"] = max(SEEN["max_score"], rng.random() + rng.randrange(10**9) * 0.0)


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
    print(
        f"{os.path.basename(__file__)[:-3]}: {batches} batches, {SEEN['visits']} visits counted ({best:.3f})"
    )


if __name__ == "__main__":
    main()
