"""The archives against the real things: an SQLite file, and a real redis-server on loopback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.exceptions import ArchiveError, ArchiveUnavailable
from memwarden.llm import Archive, Message, RedisArchive, SessionStore, SQLiteArchive

from .conftest import RedisServer

WORKER = Path(__file__).with_name("llm_archive_worker.py")


def _msg(seq: int, at: float, content: str, **kw: object) -> Message:
    return Message("user", content, 3, 100, at, seq, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "redis"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    if request.param == "sqlite":
        a: Archive = SQLiteArchive(tmp_path / "archive.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        a = RedisArchive(server.url, prefix=f"test-{uuid.uuid4().hex}:")
    yield a
    a.close()


def test_round_trip_with_unicode_meta_and_time_ranges(archive: Archive) -> None:
    """What is written comes back equal (Unicode, emoji, score, meta), oldest first, and
    read(start, end) returns exactly the messages with start <= at < end."""
    msgs = [
        _msg(
            i,
            100.0 + i,
            f"message {i} — ünïcödé 👩‍💻 {{'json': true}}",
            score=i / 2,
            meta={"lang": "fr", "i": i},
        )
        for i in range(10)
    ]
    archive.write("chat-1", msgs[5:])
    archive.write("chat-1", msgs[:5])
    archive.write("chat-2", [_msg(0, 50.0, "other")])
    back = archive.read("chat-1")
    assert [m.to_json() for m in back] == [m.to_json() for m in msgs]
    assert [m.seq for m in archive.read("chat-1", start=102.0, end=105.0)] == [2, 3, 4]
    assert [m.seq for m in archive.read("chat-1", limit=3)] == [0, 1, 2]
    assert archive.sessions() == ["chat-1", "chat-2"]
    assert archive.count() == 11 and archive.count("chat-1") == 10


def test_writes_are_idempotent(archive: Archive) -> None:
    """Writing the same batch twice (a retry after an unclear failure) stores it once."""
    batch = [_msg(i, 10.0 + i, f"m{i}") for i in range(3)]
    archive.write("s", batch)
    archive.write("s", batch)
    assert archive.count("s") == 3


def test_delete_for_good_and_retention(archive: Archive) -> None:
    """delete(before=) and delete_older_than() remove messages for good; delete() a whole session."""
    now = time.time()
    archive.write("a", [_msg(i, now - 1000 + i * 100, f"a{i}") for i in range(10)])
    archive.write("b", [_msg(0, now - 5000, "b-old"), _msg(1, now, "b-new")])
    assert archive.delete("a", before=now - 700) == 3
    assert archive.read("a")[0].content == "a3"
    assert archive.delete_older_than(450, now=now) == 4  # a3, a4, a5 (-700, -600, -500 s) and b-old
    assert [m.content for m in archive.read("b")] == ["b-new"]
    assert archive.delete("b") == 1
    assert archive.sessions() == ["a"]
    assert archive.read("b") == []


def test_session_store_archives_to_it(archive: Archive) -> None:
    """A SessionStore over this archive: what leaves memory is archived, history() is complete."""
    store = SessionStore(
        max_sessions=3, memory={"max_messages": 2, "counter": "approx"}, archive=archive, watch=False
    )
    for i in range(30):
        store.append(f"s{i % 5}", "user", f"turn {i}")
    for s in range(5):
        assert [m.content for m in store.history(f"s{s}")] == [f"turn {i}" for i in range(s, 30, 5)]
    live = sum(len(store.get(sid)) for sid in store.session_ids())
    assert archive.count() + live == 30


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_worker_killed_mid_write_loses_no_archived_turn(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL a worker at a random moment while it archives turns: every turn it was told was
    archived is in the archive afterwards, and the archive is readable."""
    if kind == "sqlite":
        target, extra = str(tmp_path / "archive.db"), []
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        target, extra = server.url, [f"kill-{uuid.uuid4().hex}:"]
    rng = random.Random(7)
    for _ in range(3):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), kind, target, *extra], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        lines = []
        for _ in range(200 + rng.randrange(300)):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(rng.random() * 0.05)
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.stdout.close()
        proc.wait(10)
        printed = [int(line) for line in [*lines, *rest.splitlines(keepends=True)] if line.endswith("\n")]
        last = printed[-1] if printed else 0
        archive: Archive = (
            SQLiteArchive(target) if kind == "sqlite" else RedisArchive(target, prefix=extra[0])
        )
        contents = {m.content.split(" ")[1] for m in archive.read("worker")}
        archive.close()
        missing = [i for i in range(last) if str(i) not in contents]
        assert last > 100 and not missing, (kind, last, missing[:10])


def test_redis_going_away_keeps_turns_and_recovers(own_redis: RedisServer) -> None:
    """When redis-server dies, appends go on (turns wait, the error is clear), flush() raises
    ArchiveUnavailable; when it is back, flush() writes them all and nothing archived is lost."""
    archive = RedisArchive(own_redis.url, prefix="outage:", socket_timeout_s=0.5)
    store = SessionStore(
        memory={"max_messages": 1, "counter": "approx"}, archive=archive, retry_s=0.2, watch=False
    )
    for i in range(20):
        store.append("s", "user", f"turn {i}")
    assert archive.count("s") == 19
    own_redis.stop()
    t0 = time.monotonic()
    for i in range(20, 40):
        store.append("s", "user", f"turn {i}")
    assert time.monotonic() - t0 < 10
    stats = store.stats()
    assert stats.pending_messages == 20
    assert stats.archive_error is not None and "unreachable" in stats.archive_error
    with pytest.raises(ArchiveUnavailable, match=r"redis at redis://127\.0\.0\.1"):
        store.flush()
    own_redis.start()
    assert store.flush() == 20
    assert [m.content for m in archive.read("s")] == [f"turn {i}" for i in range(39)]
    assert store.stats().archive_error is None
    archive.close()


def test_sqlite_archive_refuses_foreign_and_corrupt_files(tmp_path: Path) -> None:
    """An SQLite file of another program, or a file that is not SQLite, is a clear ArchiveError."""
    import sqlite3

    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(ArchiveError, match="not a memwarden archive"):
        SQLiteArchive(foreign)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ArchiveError, match="not a usable memwarden archive"):
        SQLiteArchive(junk)
