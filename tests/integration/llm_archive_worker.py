"""A worker that archives chat turns as fast as it can until it is killed.

``python llm_archive_worker.py sqlite PATH`` or ``... redis URL PREFIX``. Each session keeps one
message, so appending turn i archives turn i-1; the worker prints i once append() has returned,
so every turn below a printed number is one the archive said it stored.
"""

from __future__ import annotations

import sys

from memwarden.llm import RedisArchive, SessionStore, SQLiteArchive


def main() -> None:
    kind, target = sys.argv[1], sys.argv[2]
    archive = SQLiteArchive(target) if kind == "sqlite" else RedisArchive(target, prefix=sys.argv[3])
    store = SessionStore(memory={"max_messages": 1, "counter": "approx"}, archive=archive, watch=False)
    i = 0
    while True:
        store.append("worker", "user", f"turn {i} " + "payload " * 20)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main()
