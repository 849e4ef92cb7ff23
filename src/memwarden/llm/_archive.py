"""Long-term storage for conversation turns: SQLite by default (one file, WAL), Redis for a fleet.

One small interface, :class:`Archive`. Writes are atomic and idempotent: a batch is stored whole
or not at all, and writing the same message again (a retry after an unclear failure) does not
store it twice, since a message is known by its session, ``seq`` and ``at``. When ``write()``
returns, the batch survives the writing process being killed.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memwarden.exceptions import ArchiveError, ArchiveUnavailable, UsageError

from ._message import Message

_SCHEMA_VERSION = 1


@runtime_checkable
class Archive(Protocol):
    """Where turns go when they leave memory, retrievable by session and time range."""

    def write(self, session_id: str, messages: Sequence[Message]) -> None:
        """Store ``messages`` of ``session_id`` atomically; durable when it returns."""

    def read(
        self,
        session_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """The session's archived messages with ``start <= at < end``, oldest first."""

    def sessions(self) -> list[str]:
        """Every session with archived messages, sorted."""

    def count(self, session_id: str | None = None) -> int:
        """How many messages are archived (for one session, or in all)."""

    def delete(self, session_id: str, *, before: float | None = None) -> int:
        """Delete for good a session's messages (those with ``at < before`` if given); returns how many."""

    def delete_older_than(self, age_s: float, *, now: float | None = None) -> int:
        """Retention: delete for good every message older than ``age_s`` seconds, in all sessions."""

    def close(self) -> None:
        """Release the connection."""


class SQLiteArchive:
    """Turns in one SQLite file (WAL journal): the default archive, for one host.

    ``synchronous="NORMAL"`` (the default) keeps every committed batch when the process is
    killed; ``"FULL"`` also when the machine loses power, at some cost per write. Safe to use
    from several threads, and from several processes on the same file.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", timeout_s: float = 10.0) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise UsageError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout_s, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot open the archive ({exc})") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ArchiveError(f"{self.path}: not a usable memwarden archive ({exc})") from None

    def _init_schema(self) -> None:
        db = self._db
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "memwarden_archive" not in tables:
            raise ArchiveError(f"{self.path}: an SQLite file that is not a memwarden archive")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS memwarden_archive (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM memwarden_archive").fetchone()
            if row is None:
                db.execute("INSERT INTO memwarden_archive VALUES (?)", (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                raise ArchiveError(
                    f"{self.path}: archive schema {row[0]}, this memwarden reads {_SCHEMA_VERSION}"
                )
            db.execute(
                "CREATE TABLE IF NOT EXISTS turns (session TEXT NOT NULL, seq INTEGER NOT NULL, "
                "at REAL NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, tokens INTEGER NOT NULL, "
                "extra TEXT, PRIMARY KEY (session, at, seq)) WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS turns_at ON turns (at)")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def write(self, session_id: str, messages: Sequence[Message]) -> None:
        self.write_many([(session_id, messages)])

    def write_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Several sessions' messages in one transaction."""
        rows = [
            (sid, m.seq, m.at, m.role, m.content, m.tokens, _extra(m)) for sid, msgs in batches for m in msgs
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR IGNORE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise ArchiveError(f"{self.path}: cannot archive {len(rows)} turns ({exc})") from None

    def read(
        self,
        session_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        sql = "SELECT role, content, tokens, at, seq, extra FROM turns WHERE session = ? AND at >= ? AND at < ? "
        sql += "ORDER BY at, seq"
        args: list[Any] = [session_id, -1e300 if start is None else start, 1e300 if end is None else end]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._query(sql, args)
        return [
            _message(role, content, tokens, at, seq, extra) for role, content, tokens, at, seq, extra in rows
        ]

    def sessions(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT session FROM turns ORDER BY session", [])]

    def count(self, session_id: str | None = None) -> int:
        if session_id is None:
            return int(self._query("SELECT COUNT(*) FROM turns", [])[0][0])
        return int(self._query("SELECT COUNT(*) FROM turns WHERE session = ?", [session_id])[0][0])

    def delete(self, session_id: str, *, before: float | None = None) -> int:
        if before is None:
            return self._change("DELETE FROM turns WHERE session = ?", [session_id])
        return self._change("DELETE FROM turns WHERE session = ? AND at < ?", [session_id, before])

    def delete_older_than(self, age_s: float, *, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - age_s
        return self._change("DELETE FROM turns WHERE at < ?", [cutoff])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise ArchiveError(f"{self.path}: cannot read the archive ({exc})") from None

    def _change(self, sql: str, args: Sequence[Any]) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                n = self._db.execute(sql, args).rowcount
                self._db.execute("COMMIT")
                return int(n)
            except sqlite3.Error as exc:
                self._rollback()
                raise ArchiveError(f"{self.path}: cannot delete from the archive ({exc})") from None

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def __repr__(self) -> str:
        return f"SQLiteArchive({str(self.path)!r})"


class RedisArchive:
    """Turns in Redis, for a fleet of workers sharing one history.

    Each session is a sorted set ``{prefix}s:{session}`` scored by time, its members the
    messages as JSON; ``{prefix}sessions`` lists the sessions. A batch is written in one
    ``MULTI``/``EXEC`` transaction. When Redis cannot be reached, every call raises
    :class:`~memwarden.exceptions.ArchiveUnavailable` after ``socket_timeout_s``; the client
    reconnects by itself when the server is back.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        prefix: str = "memwarden:archive:",
        socket_timeout_s: float = 2.0,
    ) -> None:
        if client is None:
            try:
                redis: Any = importlib.import_module("redis")
            except ImportError:
                raise UsageError(
                    'RedisArchive needs the redis package: pip install "memwarden[redis]"'
                ) from None
            client = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
        self.url = url
        self.prefix = prefix
        self._r = client
        self._errors = _redis_errors()

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except self._errors[0] as exc:
            raise ArchiveUnavailable(
                f"redis at {self.url}: unreachable while trying to {what} ({exc})"
            ) from None
        except self._errors[1] as exc:
            raise ArchiveError(f"redis at {self.url}: cannot {what} ({exc})") from None

    def write(self, session_id: str, messages: Sequence[Message]) -> None:
        self.write_many([(session_id, messages)])

    def write_many(self, batches: Sequence[tuple[str, Sequence[Message]]]) -> None:
        """Several sessions' messages in one MULTI/EXEC transaction."""
        per_session: dict[str, dict[str, float]] = {}
        for sid, messages in batches:
            mapping = per_session.setdefault(sid, {})
            for m in messages:
                mapping[json.dumps(m.to_json(), ensure_ascii=False, sort_keys=True)] = m.at
        per_session = {sid: mapping for sid, mapping in per_session.items() if mapping}
        if not per_session:
            return

        def run() -> None:
            pipe = self._r.pipeline(transaction=True)
            for sid, mapping in per_session.items():
                pipe.zadd(self._key(sid), mapping)
            pipe.sadd(f"{self.prefix}sessions", *per_session)
            pipe.execute()

        self._call(f"archive {sum(len(m) for m in per_session.values())} turns", run)

    def read(
        self,
        session_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        lo = "-inf" if start is None else repr(float(start))
        hi = "+inf" if end is None else f"({float(end)!r}"
        kwargs: dict[str, Any] = {} if limit is None else {"start": 0, "num": limit}
        raw = self._call(
            "read the archive", lambda: self._r.zrangebyscore(self._key(session_id), lo, hi, **kwargs)
        )
        out = [Message.from_json(json.loads(item)) for item in raw]
        out.sort(key=lambda m: (m.at, m.seq))
        return out

    def sessions(self) -> list[str]:
        raw = self._call("list sessions", lambda: self._r.smembers(f"{self.prefix}sessions"))
        return sorted(s.decode() if isinstance(s, bytes) else str(s) for s in raw)

    def count(self, session_id: str | None = None) -> int:
        if session_id is not None:
            return int(self._call("count turns", lambda: self._r.zcard(self._key(session_id))))
        return sum(self.count(s) for s in self.sessions())

    def delete(self, session_id: str, *, before: float | None = None) -> int:
        key = self._key(session_id)
        if before is None:

            def drop() -> int:
                pipe = self._r.pipeline(transaction=True)
                pipe.zcard(key)
                pipe.delete(key)
                pipe.srem(f"{self.prefix}sessions", session_id)
                return int(pipe.execute()[0])

            return int(self._call("delete turns", drop))
        n = int(
            self._call("delete turns", lambda: self._r.zremrangebyscore(key, "-inf", f"({float(before)!r}"))
        )
        if self.count(session_id) == 0:
            self._call("delete turns", lambda: self._r.srem(f"{self.prefix}sessions", session_id))
        return n

    def delete_older_than(self, age_s: float, *, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - age_s
        return sum(self.delete(s, before=cutoff) for s in self.sessions())

    def close(self) -> None:
        self._call("close", self._r.close)

    def __repr__(self) -> str:
        return f"RedisArchive({self.url!r}, prefix={self.prefix!r})"


def _redis_errors() -> tuple[type[BaseException], type[BaseException]]:
    """(unreachable, other) exception types of redis-py, or ones that never match without it."""
    try:
        exceptions: Any = importlib.import_module("redis.exceptions")
    except ImportError:  # a client given without redis-py installed (a test double)
        return ConnectionError, RuntimeError
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError), exceptions.RedisError  # type: ignore[return-value]


def _extra(m: Message) -> str | None:
    if m.score is None and not m.meta:
        return None
    return json.dumps({"score": m.score, "meta": dict(m.meta) if m.meta else None}, ensure_ascii=False)


def _message(role: str, content: str, tokens: int, at: float, seq: int, extra: str | None) -> Message:
    data: dict[str, Any] = {"role": role, "content": content, "tokens": tokens, "at": at, "seq": seq}
    if extra:
        data.update(json.loads(extra))
    return Message.from_json(data)
