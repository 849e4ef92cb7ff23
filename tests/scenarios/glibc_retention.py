"""Document service that caches upload blobs at start-up, drops 98 % of them, then serves flat.

At start the service loads 200 000 document fragments of 1-2 KB each (about 300 MB) as ``bytes``.
Objects this size are above pymalloc's small-object limit, so each one is a separate glibc
``malloc`` chunk on the heap. It then keeps every 50th fragment (scattered through the heap) and
drops the rest. Python-visible memory falls to a few MB, and glibc counts most of the heap as free
(``mallinfo2().fordblks``), but RSS stays high: glibc only gives memory back from the top of the
heap, and the scattered survivors pin it. Nothing is leaking; ``malloc_trim(0)`` would return most
of it, and later allocations reuse it.

memwarden-expect: allocator_retention
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
FRAGMENTS = 200_000
MIN_BYTES = 1024
MAX_BYTES = 2048
LOAD_CHUNKS = 20
LOAD_SECONDS = 1.5
KEEP_EVERY = 50
REQUESTS_PER_SECOND = 100

KEPT_FRAGMENTS: list[bytes] = []


def load_fragments(rng: random.Random) -> list[bytes]:
    """Read the fragments in chunks, as if from disk over about a second and a half."""
    source = rng.randbytes(64 * 1024)
    fragments: list[bytes] = []
    per_chunk = FRAGMENTS // LOAD_CHUNKS
    for _ in range(LOAD_CHUNKS):
        for _ in range(per_chunk):
            size = rng.randrange(MIN_BYTES, MAX_BYTES)
            offset = rng.randrange(len(source) - size)
            fragments.append(source[offset : offset + size])
        time.sleep(LOAD_SECONDS / LOAD_CHUNKS)
    return fragments


def handle_request(rng: random.Random) -> int:
    """Serve a few fragments: sum their first bytes."""
    return sum(KEPT_FRAGMENTS[rng.randrange(len(KEPT_FRAGMENTS))][0] for _ in range(20))


def main() -> None:
    global KEPT_FRAGMENTS
    rng = random.Random(37)
    start = time.monotonic()
    fragments = load_fragments(rng)
    time.sleep(0.5)
    KEPT_FRAGMENTS = fragments[::KEEP_EVERY]
    del fragments
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = start + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"glibc_retention: served {served} requests, {len(KEPT_FRAGMENTS)} fragments kept")


if __name__ == "__main__":
    main()
