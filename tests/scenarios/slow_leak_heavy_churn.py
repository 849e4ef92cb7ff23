"""Analytics worker: heavy short-lived allocation churn hiding a slow leak.

The worker crunches batches of events as fast as it can (CPU-bound): each batch builds thousands
of short-lived dicts, lists and strings (several MB allocated and freed per second) and drops
them. After each batch, ``record_audit`` appends a small summary to ``AUDIT_TRAIL``, a global list
meant to be shipped to an audit store, which was never wired up, so it only grows, at roughly
150 KB/s (paced by wall-clock time, not by batch speed). The churn makes memory jitter; the leak is
a slow, steady drift underneath it. This is the hard case for sampling-based detection.

memwarden-expect: python_leak
memwarden-leak-function: record_audit
memwarden-holder: AUDIT_TRAIL
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
AUDIT_RECORDS_PER_SECOND = 150
EVENTS_PER_BATCH = 1000

AUDIT_TRAIL: list[dict[str, object]] = []
COUNTRIES = ["DE", "FR", "NL", "SE", "PL", "ES", "IT", "PT"]


def crunch_batch(rng: random.Random, batch: int) -> dict[str, float]:
    """Aggregate one batch of synthetic events; everything built here is garbage afterwards."""
    events = []
    for i in range(EVENTS_PER_BATCH):
        events.append(
            {
                "id": f"evt-{batch}-{i}",
                "country": COUNTRIES[i % len(COUNTRIES)],
                "amount": rng.random() * 100.0,
                "tags": [f"t{i % 7}", f"c{i % 5}"],
            }
        )
    totals: dict[str, float] = {}
    for event in events:
        country = str(event["country"])
        totals[country] = totals.get(country, 0.0) + float(event["amount"])
    return totals


def record_audit(batch: int, totals: dict[str, float]) -> None:
    amounts = []
    for country in COUNTRIES:
        amounts.append(round(totals.get(country, 0.0), 2))
    summary = f"batch {batch:08d}: " + ", ".join(
        f"{c}={a:.2f}" for c, a in zip(COUNTRIES, amounts, strict=True)
    )
    AUDIT_TRAIL.append({"batch": batch, "at": time.time(), "amounts": amounts, "summary": summary * 6})


def main() -> None:
    rng = random.Random(29)
    start = time.monotonic()
    deadline = start + SECONDS
    batch = 0
    totals: dict[str, float] = {}
    while (now := time.monotonic()) < deadline:
        totals = crunch_batch(rng, batch)
        due = int((now - start) * AUDIT_RECORDS_PER_SECOND)
        while len(AUDIT_TRAIL) < due:
            record_audit(batch, totals)
        batch += 1
    print(f"slow_leak_heavy_churn: {batch} batches, {len(AUDIT_TRAIL)} audit records kept")


if __name__ == "__main__":
    main()
