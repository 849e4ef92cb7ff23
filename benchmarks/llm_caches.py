"""BytesCache against cachetools: what a bound in items holds, and what a lazy TTL keeps after expiry.

Two measurements with tracemalloc, each in this one process, side by side:

1. **Bound.** 20,000 values whose sizes vary 1:100 (a prompt template of 200 bytes to a
   retrieved document of 20 KB) go into a ``cachetools.LRUCache(maxsize=2_000)`` (what a user
   bounds by count) and a ``BytesCache(max_bytes=8 MiB)``. Printed: the bytes each holds at the
   end and at its peak.
2. **Expiry.** 5,000 values of 10 KB go into a ``cachetools.TTLCache(ttl=1)`` and a
   ``BytesCache(ttl_s=1)``; then the clock moves past the TTL and the caches are only *read*
   (a miss on another key), never written. Printed: the bytes each still holds.

    python benchmarks/llm_caches.py
"""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import cachetools

from memwarden.llm import BytesCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def traced(build: Any) -> tuple[Any, int, int]:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    obj = build()
    gc.collect()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return obj, now - base, peak - base


def bound() -> None:
    def fill(cache: Any) -> Any:
        rng = random.Random(3)  # the same values for both, made inside the traced region
        for i in range(20_000):
            cache[i] = "x" * rng.choice([200, 2_000, 20_000]) + str(i)
        return cache

    print("1. bound: 20,000 values of 200 B to 20 KB")
    for name, make in (
        ("cachetools.LRUCache(maxsize=2000)", lambda: cachetools.LRUCache(maxsize=2000)),
        ("BytesCache(max_bytes=8 MiB)", lambda: BytesCache(max_bytes=8 << 20, watch=False)),
    ):
        cache, held, peak = traced(lambda make=make: fill(make()))
        print(
            f"   {name:<36} holds {len(cache):>6,} entries, {held / 2**20:6.1f} MiB (peak {peak / 2**20:6.1f} MiB)"
        )
        del cache


def expiry() -> None:
    print("2. expiry: 5,000 values of 10 KB, TTL 1 s; then only reads after the TTL")
    for name in ("cachetools.TTLCache(ttl=1)", "BytesCache(ttl_s=1)"):
        clock = Clock()

        def run(name: str = name, clock: Clock = clock) -> Any:
            if name.startswith("cachetools"):
                cache: Any = cachetools.TTLCache(maxsize=100_000, ttl=1, timer=clock)
            else:
                cache = BytesCache(max_bytes=1 << 30, ttl_s=1, clock=clock, watch=False)
            for i in range(5_000):
                cache[i] = bytes(10_000) + i.to_bytes(4, "big")
            clock.now = 5.0
            for _ in range(100):
                cache.get("missing")
            return cache

        cache, held, _ = traced(run)
        print(f"   {name:<36} still holds {held / 2**20:6.1f} MiB after expiry")
        del cache


if __name__ == "__main__":
    bound()
    expiry()
