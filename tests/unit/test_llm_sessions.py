"""SessionStore: bounded sessions, expiry that frees, archiving of everything that leaves memory."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
import weakref
from collections.abc import Sequence
from pathlib import Path

import pytest

import memwarden
from memwarden.exceptions import ArchiveUnavailable, UsageError
from memwarden.llm import Message, SessionStore, SQLiteArchive
from memwarden.testing import FakeClock

APPROX = {"max_messages": 4, "counter": "approx"}


def test_lru_eviction_by_session_count() -> None:
    """Past max_sessions the least recently used session goes; touching a session keeps it."""
    store = SessionStore(max_sessions=3, memory=APPROX, watch=False)
    for sid in ("a", "b", "c"):
        store.append(sid, "user", "hi")
    store.get("a")  # a is now the most recently used
    store.append("d", "user", "hi")
    assert store.session_ids() == ["c", "a", "d"]
    assert store.stats().evicted_sessions == 1


def test_ttl_expiry_really_frees_the_memory() -> None:
    """Sessions idle past ttl_s leave at expire(): their memories are collected (weakrefs die)
    and tracemalloc sees the bytes come back."""
    clock = FakeClock()
    store = SessionStore(
        max_sessions=10_000,
        ttl_s=60,
        memory={"max_messages": 20, "counter": "approx"},
        clock=clock,
        watch=False,
    )
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(500):
            for j in range(10):
                store.append(f"s{i}", "user", f"turn {j} of session {i}: " + "x" * 200)
        refs = [weakref.ref(store.get(f"s{i}")) for i in range(0, 500, 50)]
        full = tracemalloc.get_traced_memory()[0] - base
        clock.advance(61)
        assert store.expire() == 500
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(store) == 0 and store.nbytes == 0
    assert all(r() is None for r in refs)
    assert full > 1_000_000
    assert left < full * 0.05, (full, left)


def test_expired_sessions_are_swept_by_any_call() -> None:
    """An expired session is gone at the next call on the store, not merely hidden."""
    clock = FakeClock()
    store = SessionStore(ttl_s=10, memory=APPROX, clock=clock, watch=False)
    store.append("old", "user", "hi")
    clock.advance(5)
    store.append("newer", "user", "hi")
    clock.advance(6)
    store.append("other", "user", "hi")
    assert store.session_ids() == ["newer", "other"]
    assert store.stats().expired_sessions == 1


def test_byte_budget_evicts_least_recently_used_sessions() -> None:
    """The sum of the sessions' stored bytes stays under max_bytes."""
    store = SessionStore(max_bytes=50_000, memory={"max_messages": 10, "counter": "approx"}, watch=False)
    for i in range(200):
        store.append(f"s{i}", "user", "y" * 500)
        assert store.nbytes <= 50_000
    assert sum(store.get(s).nbytes for s in store.session_ids()) == store.nbytes
    assert 50 < len(store) < 200


def test_archive_receives_window_and_evicted_sessions(tmp_path: Path) -> None:
    """Every message that leaves memory (out of the window, with an evicted session, at end())
    is in the SQLite archive; history() returns archived + live in order."""
    archive = SQLiteArchive(tmp_path / "archive.db")
    store = SessionStore(max_sessions=2, memory=APPROX, archive=archive, watch=False)
    for i in range(10):
        store.append("alice", "user", f"alice {i}")
    store.append("bob", "user", "bob 0")
    store.append("carol", "user", "carol 0")  # evicts alice (LRU)
    assert "alice" not in store
    assert [m.content for m in archive.read("alice")] == [f"alice {i}" for i in range(10)]
    assert [m.content for m in store.history("alice")] == [f"alice {i}" for i in range(10)]
    store.append("bob", "user", "bob 1")
    assert store.end("bob")
    assert [m.content for m in archive.read("bob")] == ["bob 0", "bob 1"]
    assert store.stats().archived_messages == archive.count() == 12


def test_history_merges_archive_and_live(tmp_path: Path) -> None:
    """history() of a live session is its archived part then its window, without duplicates."""
    archive = SQLiteArchive(tmp_path / "archive.db")
    store = SessionStore(memory=APPROX, archive=archive, watch=False)
    for i in range(7):
        store.append("s", "user", f"m{i}")
    assert archive.count("s") == 3
    assert [m.content for m in store.history("s")] == [f"m{i}" for i in range(7)]


def test_archive_older_than_moves_old_turns(tmp_path: Path) -> None:
    """archive_older_than(age) moves the live turns older than age to the archive, now."""
    archive = SQLiteArchive(tmp_path / "a.db")
    store = SessionStore(memory={"max_messages": 100, "counter": "approx"}, archive=archive, watch=False)
    store.append("s", "user", "old", at=1000.0)
    store.append("s", "user", "new", at=2e9)
    assert store.archive_older_than(3600) == 1
    assert [m.content for m in archive.read("s")] == ["old"]
    assert [m.content for m in store.get("s").window()] == ["new"]


class FlakyArchive:
    """An archive double that is down while ``down`` is set (the real Redis outage is tested in
    tests/integration/test_llm_archive.py)."""

    def __init__(self) -> None:
        self.down = False
        self.rows: list[tuple[str, Message]] = []

    def write(self, session_id: str, messages: Sequence[Message]) -> None:
        if self.down:
            raise ArchiveUnavailable("archive down (test)")
        self.rows.extend((session_id, m) for m in messages)

    def read(self, session_id: str, **_: object) -> list[Message]:
        if self.down:
            raise ArchiveUnavailable("archive down (test)")
        return [m for sid, m in self.rows if sid == session_id]


def test_archive_outage_keeps_turns_pending_then_writes_them() -> None:
    """While the archive is down, what leaves memory waits (stats say why); flush() raises a clear
    error (and history() cannot be complete) until it is back, then writes everything; past
    max_pending the store refuses to drop anything."""
    archive = FlakyArchive()
    store = SessionStore(
        memory={"max_messages": 1, "counter": "approx"},
        archive=archive,  # type: ignore[arg-type]
        max_pending=50,
        retry_s=0,
        watch=False,
    )
    store.append("s", "user", "m0")
    store.append("s", "user", "m1")
    assert [m.content for _, m in archive.rows] == ["m0"]
    archive.down = True
    for i in range(2, 12):
        store.append("s", "user", f"m{i}")
    stats = store.stats()
    assert stats.pending_messages == 10 and "archive down" in (stats.archive_error or "")
    with pytest.raises(ArchiveUnavailable, match="archive down"):
        store.flush()
    with pytest.raises(ArchiveUnavailable):
        store.history("s")
    archive.down = False
    assert [m.content for m in store.history("s")] == [f"m{i}" for i in range(12)]
    store.append("s", "user", "m12")
    assert [m.content for _, m in archive.rows] == [f"m{i}" for i in range(12)]
    assert store.stats().pending_messages == 0 and store.stats().archive_error is None
    archive.down = True
    for i in range(13, 63):
        store.append("s", "user", f"m{i}")
    assert store.stats().pending_messages == 50
    with pytest.raises(ArchiveUnavailable, match="none were dropped"):
        store.append("s", "user", "m63")
    archive.down = False
    store.flush()
    assert len(archive.rows) == len({m.content for _, m in archive.rows}) == store.stats().archived_messages


def test_thread_safe_under_concurrent_appends(tmp_path: Path) -> None:
    """Eight threads appending to overlapping sessions lose nothing: every turn is live or archived."""
    archive = SQLiteArchive(tmp_path / "a.db")
    store = SessionStore(max_sessions=20, memory=APPROX, archive=archive, watch=False)

    def work(t: int) -> None:
        for i in range(300):
            store.append(f"s{(t * 7 + i) % 40}", "user", f"t{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.flush()
    live = sum(len(store.get(s)) for s in store.session_ids())
    assert live + archive.count() == 8 * 300
    assert len(store) <= 20


def test_aappend_in_asyncio() -> None:
    """aappend works from many tasks of one event loop and keeps the bounds."""
    store = SessionStore(max_sessions=5, memory=APPROX, watch=False)

    async def main() -> None:
        await asyncio.gather(*(store.aappend(f"s{i % 9}", "user", f"m{i}") for i in range(200)))

    asyncio.run(main())
    assert len(store) == 5
    assert all(len(store.get(s)) <= 4 for s in store.session_ids())


def test_shrink_protocol_and_registry(tmp_path: Path) -> None:
    """shrink(0.5) drops the least recently used half (archived) and returns the bytes released;
    the store appears in find_caches() with its session count and bound."""
    archive = SQLiteArchive(tmp_path / "a.db")
    store = SessionStore(max_sessions=100, memory=APPROX, archive=archive, name="tests.sessions")
    for i in range(10):
        store.append(f"s{i}", "user", f"m{i}")
    (info,) = [c for c in memwarden.find_caches() if c.name == "tests.sessions"]
    assert (info.currsize, info.maxsize) == (10, 100)
    before = store.nbytes
    released = store.shrink(0.5)
    assert released == before - store.nbytes > 0
    assert store.session_ids() == [f"s{i}" for i in range(5, 10)]
    assert archive.sessions() == [f"s{i}" for i in range(5)]
    store.clear()
    assert len(store) == 0 and archive.count() == 10
    memwarden.unwatch(store)


def test_bad_arguments() -> None:
    """Bad bounds and session ids are UsageErrors."""
    with pytest.raises(UsageError):
        SessionStore(max_sessions=0)
    with pytest.raises(UsageError):
        SessionStore(ttl_s=-1)
    store = SessionStore(watch=False, memory=APPROX)
    with pytest.raises(UsageError, match="session id"):
        store.append("", "user", "x")
