"""Upload relay that keeps every chunk it received, as plain ``bytes``, in a list.

``receive_chunk`` reads an 8 KB chunk from the (simulated) socket, a fresh ``bytes`` object per
chunk; the relay forwards it and appends it to ``BLOBS``, "in case the downstream asks for a
resend", never trimmed. About 100 chunks a second: 0.8 MB/s of ``bytes``. Objects this large come
from ``malloc``, not pymalloc's arenas, but they are Python objects a Python list owns: a Python
leak, not native memory.

memwarden-expect: python_leak
memwarden-leak-function: receive_chunk
memwarden-holder: BLOBS
"""

from __future__ import annotations

import hashlib
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
CHUNKS_PER_SECOND = 100
CHUNK_BYTES = 8192
BLOBS: list[bytes] = []


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
        BLOBS.append(chunk)
        relayed += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"bytes_list_leak: {relayed} chunks relayed, {len(BLOBS)} kept ({digest.hexdigest()[:8]})")


if __name__ == "__main__":
    main()
