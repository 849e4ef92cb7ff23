"""The shrink protocol: every registered store can be found and shrunk by one call."""

from __future__ import annotations

import gc

import memwarden
from memwarden.llm import BytesCache, ConversationMemory, SessionStore, Shrinkable, shrink_all, stores


def test_shrink_all_releases_bytes_from_every_store() -> None:
    """shrink_all(0.5) shrinks each live registered store (memory, sessions, cache) and returns the
    sum of what they released; a store that is let go leaves the registry."""
    memory = ConversationMemory(max_messages=100, counter="approx", name="tests.shrink.memory")
    sessions = SessionStore(memory={"max_messages": 10, "counter": "approx"}, name="tests.shrink.sessions")
    cache: BytesCache[int, str] = BytesCache(max_bytes=10**6, name="tests.shrink.cache")
    for i in range(40):
        memory.append("user", f"message {i} " * 10)
        sessions.append(f"s{i}", "user", f"hello {i} " * 10)
        cache[i] = "v" * 500
    mine = [memory, sessions, cache]
    assert all(isinstance(s, Shrinkable) for s in mine)
    assert all(any(s is r for r in stores()) for s in mine)
    before = [s.nbytes for s in mine]
    released = shrink_all(0.5)
    after = [s.nbytes for s in mine]
    assert released >= sum(b - a for b, a in zip(before, after)) > 0
    assert all(a < b for a, b in zip(after, before))
    for s in mine:
        memwarden.unwatch(s)
    ids = {id(s) for s in mine}
    del memory, sessions, cache, mine, s
    gc.collect()
    assert not ids & {id(s) for s in stores()}
