"""Recommendation service whose per-user embedding cache never evicts.

Every request scores a few items for one user. ``EmbeddingCache.get`` computes the user's
embedding on a miss (256 floats) and keeps it in ``self._cache``, a plain dict keyed by user id
string. New users keep arriving and nothing is ever evicted, so the cache, reachable from the
module global ``EMBEDDINGS``, grows by roughly 0.4 MB/s for as long as the service runs: the
classic unbounded-cache leak. The fix is a bounded cache (``cachetools.LRUCache``) or a TTL.

memwarden-expect: python_leak
memwarden-leak-function: get
memwarden-holder: EMBEDDINGS._cache
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 50
DIMENSIONS = 256
NEW_USER_SHARE = 0.8


class EmbeddingCache:
    """User id -> embedding vector, computed on first use and (by mistake) kept forever."""

    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions
        self._cache: dict[str, list[float]] = {}
        self._rng = random.Random(42)

    def get(self, user_id: str) -> list[float]:
        vector = self._cache.get(user_id)
        if vector is None:
            vector = []
            for _ in range(self._dimensions):
                vector.append(self._rng.random() - 0.5)
            self._cache[user_id] = vector
        return vector

    def __len__(self) -> int:
        return len(self._cache)


EMBEDDINGS = EmbeddingCache(DIMENSIONS)
ITEMS = [[(i * 7 + j) % 11 / 11.0 for j in range(16)] for i in range(20)]


def recommend(user_id: str) -> list[int]:
    """Score the catalogue against the user's embedding and return the top three items."""
    head = EMBEDDINGS.get(user_id)[:16]
    scores = [
        (sum(u * w for u, w in zip(head, item, strict=True)), index) for index, item in enumerate(ITEMS)
    ]
    scores.sort(reverse=True)
    return [index for _, index in scores[:3]]


def main() -> None:
    rng = random.Random(7)
    known_users = 0
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        if known_users == 0 or rng.random() < NEW_USER_SHARE:
            known_users += 1
            user = known_users
        else:
            user = rng.randint(1, known_users)
        recommend(f"user-{user:08d}")
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"dict_cache_embedding: served {served} requests, {len(EMBEDDINGS)} embeddings cached")


if __name__ == "__main__":
    main()
