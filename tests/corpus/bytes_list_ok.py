"""Upload relay that forwards each chunk and lets it go.

``bytes_list_leak`` fixed: each 8 KB ``bytes`` chunk is hashed, forwarded and dropped. Same 100
chunks a second: flat.

memwarden-expect: stable
"""

from __future__ import annotations

import hashlib
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
CHUNKS_PER_SECOND = 100
CHUNK_BYTES = 8192


def receive_chunk(rng: random.Random) -> bytes:
    return rng.randbytes(CHUNK_BYTES)


def main() -> None:
    rng = random.Random(13)
    period = 1.0 / CHUNKS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    digest = hashlib.sha256()
    relayed = 0
    while time.monotonic() < deadline:
        chunk = receive_chunk(rng)
        digest.update(chunk)
        relayed += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"bytes_list_ok: {relayed} chunks relayed ({digest.hexdigest()[:8]})")


if __name__ == "__main__":
    main()
