"""A five-second program that indexes documents into a global dict, the first thing people try.

``index_document`` stores each document's text and its token list in ``INDEX``, keyed by a fresh
id: about 10 MB/s for five seconds (~50 MB). It always runs a fixed 5 s
(``MEMWARDEN_SCENARIO_SECONDS`` is ignored): what is tested is a short program's verdict.

memwarden-expect: python_leak
memwarden-leak-function: index_document
memwarden-holder: INDEX
"""

from __future__ import annotations

import random
import time

SECONDS = 5.0
DOCS_PER_TICK = 25  # 100 ticks a second, ~4 KB each
INDEX: dict[str, tuple[str, list[str]]] = {}
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "kernel",
    "buffer",
    "socket",
    "thread",
    "queue",
    "vector",
    "cache",
    "index",
    "shard",
]


def index_document(rng: random.Random, doc_id: int) -> None:
    text = " ".join(rng.choices(WORDS, k=300)) + f" #{doc_id}"
    INDEX[f"doc-{doc_id:08d}"] = (text, text.split()[::8])


def main() -> None:
    rng = random.Random(15)
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    docs = 0
    while time.monotonic() < deadline:
        for _ in range(DOCS_PER_TICK):
            index_document(rng, docs)
            docs += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"short_python_leak: {docs} documents indexed in {SECONDS:.0f} s")


if __name__ == "__main__":
    main()
