"""The timeline: samples and events of one run in a SQLite file.

A run's readings go to disk as they are taken, so ``memwarden report run.db`` works after the fact and
nothing recorded is lost when the process dies. The file is plain SQLite in WAL mode with three tables:

- ``meta``: ``key -> JSON value`` (the schema version, the command line, the interpreter ...);
- ``samples``: one row per tick: wall time, monotonic time and a JSON object of flat metrics
  (``{"process.rss_bytes": 123, ...}``);
- ``events``: things that happened at one moment: a tracemalloc window's diff, a census, an action
  taken by a guard, the final verdict. Each has a ``kind`` and a JSON body.

Retention is bounded: past ``max_samples`` rows the oldest are deleted (in batches, so the cost is
amortised), and events likewise past ``max_events``. Nothing is ever unpickled: every value is JSON.

A timeline belongs to the process that opened it. In a forked child it is *detached*: writes are
ignored and reads raise :class:`~memwarden.TimelineError`, and its SQLite connection is never used
again (a monitor that restarts in the child opens a file of its own, see :mod:`memwarden._fork`).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _fork
from .exceptions import TimelineError, UsageError
from .probes._base import Metrics

SCHEMA = "memwarden.timeline/1"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    mono REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
"""


@dataclass(frozen=True)
class Sample:
    """One tick of the sampler: when, and the flat metrics of every layer read at that tick."""

    t: float
    """Wall-clock time (seconds since the epoch)."""
    mono: float
    """Monotonic time (seconds); differences between samples are exact durations."""
    metrics: Mapping[str, float | int | None]


@dataclass(frozen=True)
class Event:
    """Something that happened at one moment of a run (a diff, an action, a verdict)."""

    t: float
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class SampleDigest:
    """A bounded read of a long timeline: evenly spread samples, then the latest at full resolution.

    ``samples`` holds every ``stride``-th row (by insertion order) of the older history and the
    last ``recent`` rows as they are, oldest first; ``total`` is how many rows the timeline
    retains (stride 1: every one of them is in ``samples``).
    """

    samples: list[Sample]
    total: int
    stride: int
    recent: int


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    from .probes._base import to_jsonable

    converted = to_jsonable(value)
    if converted is value:
        return str(value)
    return converted


def _finite(metrics: Mapping[str, float | int | None]) -> dict[str, float | int | None]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


class Timeline:
    """A run's samples and events in a SQLite file (or in memory with ``":memory:"``).

    Open it with ``Timeline(path)`` to write (the file is created if needed) or with
    :meth:`Timeline.open_existing` to read a recorded run. It is safe to use from the sampler's thread
    and the program's thread at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        max_samples: int = 100_000,
        max_events: int = 10_000,
        _must_exist: bool = False,
    ) -> None:
        if max_samples < 2:
            raise UsageError("max_samples must be at least 2")
        self.path = str(path)
        self.max_samples = max_samples
        self.max_events = max_events
        self._lock = threading.Lock()
        self._inserts_since_trim = 0
        self._closed = False
        self._owner_pid = os.getpid()
        self._conn = self._connect(must_exist=_must_exist)
        _watch_for_fork(self)

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> Timeline:
        """Open a recorded timeline for reading; a clear :class:`TimelineError` if it is not one."""
        return cls(path, _must_exist=True)

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self, *, must_exist: bool) -> sqlite3.Connection:
        path = self.path
        if path != ":memory:":
            p = Path(path)
            if must_exist and not p.exists():
                raise TimelineError(
                    path, "no such file (give the path of a timeline written by `memwarden run --db`)"
                )
            if p.is_dir():
                raise TimelineError(path, "is a directory, not a timeline file")
            if not must_exist and not p.parent.exists():
                raise TimelineError(
                    path, f"the folder {p.parent} does not exist (create it, or pick another --db path)"
                )
            if p.exists() and not os.access(p, os.R_OK):
                raise TimelineError(path, "cannot be read (check its permissions)")
            if must_exist and p.exists() and p.stat().st_size == 0:
                raise TimelineError(
                    path, "is empty, not a memwarden timeline (give a file written by `memwarden run --db`)"
                )
            if p.exists() and p.stat().st_size > 0:
                with p.open("rb") as fh:
                    if fh.read(16) != b"SQLite format 3\x00":
                        raise TimelineError(path, "is not a memwarden timeline (not an SQLite file)")
        conn: sqlite3.Connection | None = None
        try:
            if must_exist:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if found - {"sqlite_sequence"} and "meta" not in found:
                    conn.close()
                    raise TimelineError(
                        path,
                        "is another program's SQLite database, not a memwarden timeline (pick another path)",
                    )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_DDL)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()  # a corrupt file must not leave the connection open (3.13 warns)
            raise TimelineError(path, f"cannot be used as a timeline ({exc})") from None
        if not {"meta", "samples", "events"} <= tables:
            conn.close()
            raise TimelineError(path, "is an SQLite file but not a memwarden timeline (no samples table)")
        schema = self._read_meta(conn).get("schema")
        if schema is None and not must_exist:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (_dumps(SCHEMA),))
        elif schema is not None and schema != SCHEMA:
            conn.close()
            raise TimelineError(
                path, f"was written with timeline schema {schema!r}; this memwarden reads {SCHEMA!r}"
            )
        return conn

    @staticmethod
    def _read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in conn.execute("SELECT key, value FROM meta"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        return out

    def close(self) -> None:
        """Flush and close the file. Safe to call twice, and in a forked child (where it does nothing)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    @property
    def detached(self) -> bool:
        """True in a forked child: this timeline belongs to the parent process."""
        return self._owner_pid != os.getpid()

    def _detach_in_child(self) -> None:
        # The parent's connection must never be used here, nor closed (closing may checkpoint the
        # WAL and delete files the parent still writes): keep it alive and forget it.
        if self._owner_pid == os.getpid():
            return  # opened in this process (by a monitor that restarted here): it is ours
        self._lock = threading.Lock()
        if not self._closed:
            self._closed = True
            _fork.keep_forever(self._conn)

    def __enter__(self) -> Timeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------

    def set_meta(self, **values: Any) -> None:
        """Record facts about the run (JSON-serialisable values)."""
        with self._lock:
            if self._closed:
                return
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, _dumps(v)) for k, v in values.items()]
            )

    def append(self, sample: Sample) -> None:
        """Store one sample, trimming the oldest rows when past ``max_samples``."""
        with self._lock:
            if self._closed:
                return
            self._conn.execute(
                "INSERT INTO samples (t, mono, data) VALUES (?, ?, ?)",
                (sample.t, sample.mono, _dumps(_finite(sample.metrics))),
            )
            self._inserts_since_trim += 1
            # trim in batches of 5 % so the DELETE is amortised over many inserts
            if self._inserts_since_trim >= max(1, self.max_samples // 20):
                self._inserts_since_trim = 0
                self._conn.execute(
                    "DELETE FROM samples WHERE seq <= (SELECT MAX(seq) FROM samples) - ?", (self.max_samples,)
                )

    def add_event(self, kind: str, data: Mapping[str, Any], t: float | None = None) -> None:
        """Store an event of ``kind`` with a JSON body."""
        with self._lock:
            if self._closed:
                return
            self._conn.execute(
                "INSERT INTO events (t, kind, data) VALUES (?, ?, ?)",
                (time.time() if t is None else t, kind, _dumps(dict(data))),
            )
            self._conn.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (self.max_events,)
            )

    # -- reading ------------------------------------------------------------------------------------

    def _check_readable(self) -> None:
        if self.detached:
            raise TimelineError(
                self.path,
                f"belongs to process {self._owner_pid}; a forked child cannot read it (open it anew)",
            )
        if self._closed:
            raise TimelineError(self.path, "is closed")

    def meta(self) -> dict[str, Any]:
        """Everything recorded with :meth:`set_meta`."""
        with self._lock:
            self._check_readable()
            return self._read_meta(self._conn)

    def samples(self) -> list[Sample]:
        """All retained samples, oldest first."""
        return list(self.iter_samples())

    def iter_samples(self) -> Iterator[Sample]:
        with self._lock:
            self._check_readable()
            rows = self._conn.execute("SELECT t, mono, data FROM samples ORDER BY seq").fetchall()
        for t, mono, data in rows:
            try:
                metrics = json.loads(data)
            except ValueError:
                continue  # a torn row is skipped, the rest of the run still reads
            if isinstance(metrics, dict):
                yield Sample(t, mono, metrics)

    def sample_digest(self, max_points: int = 2000, *, recent: int = 500) -> SampleDigest:
        """At most about ``max_points + recent`` samples, however long the history, read in bounded time.

        The last ``recent`` rows come at full resolution; the older ones by a stride in ``seq``
        (every k-th row, picked in SQL by primary key, so that only the chosen rows are read and
        parsed). Stride, not a min/max per bucket: each kept row is one real tick, with every
        layer read at the same moment and the noise between ticks unchanged, which the trend
        statistics and the cross-layer rules assume; spikes shorter than the stride are lost (the
        floors and peaks of cycles longer than it are kept).
        """
        if max_points < 2 or recent < 1:
            raise UsageError("max_points must be at least 2 and recent at least 1")
        with self._lock:
            self._check_readable()
            # one bound per query: SQLite answers MIN or MAX of the key from the index, but scans both
            first = self._conn.execute("SELECT seq FROM samples ORDER BY seq LIMIT 1").fetchone()
            if first is None:
                return SampleDigest([], 0, 1, 0)
            lo = first[0]
            hi = self._conn.execute("SELECT seq FROM samples ORDER BY seq DESC LIMIT 1").fetchone()[0]
            total = hi - lo + 1  # rows are only ever trimmed from the oldest end: no gaps in between
            if total <= max_points + recent:
                rows = self._conn.execute("SELECT seq, t, mono, data FROM samples ORDER BY seq").fetchall()
                stride = 1
            else:
                (cut,) = self._conn.execute(
                    "SELECT seq FROM samples ORDER BY seq DESC LIMIT 1 OFFSET ?", (recent - 1,)
                ).fetchone()
                stride = max(1, -(-(cut - lo) // max_points))
                rows = self._conn.execute(
                    "WITH RECURSIVE pick(s) AS (SELECT ? UNION ALL SELECT s + ? FROM pick WHERE s + ? < ?) "
                    "SELECT seq, t, mono, data FROM pick JOIN samples ON samples.seq = pick.s "
                    "UNION ALL SELECT seq, t, mono, data FROM samples WHERE seq >= ? ORDER BY 1",
                    (lo, stride, stride, cut, cut),
                ).fetchall()
        out = []
        for _, t, mono, data in rows:
            try:
                metrics = json.loads(data)
            except ValueError:
                continue  # a torn row is skipped, as in iter_samples
            if isinstance(metrics, dict):
                out.append(Sample(t, mono, metrics))
        return SampleDigest(out, total, stride, recent if stride > 1 else total)

    def events(self, kind: str | None = None) -> list[Event]:
        """Retained events, oldest first, optionally only one ``kind``."""
        with self._lock:
            self._check_readable()
            if kind is None:
                rows = self._conn.execute("SELECT t, kind, data FROM events ORDER BY seq").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT t, kind, data FROM events WHERE kind = ? ORDER BY seq", (kind,)
                ).fetchall()
        out = []
        for t, k, data in rows:
            try:
                body = json.loads(data)
            except ValueError:
                continue
            out.append(Event(t, k, body if isinstance(body, dict) else {"value": body}))
        return out

    def sample_count(self) -> int:
        with self._lock:
            self._check_readable()
            return int(self._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


_timelines: weakref.WeakSet[Timeline] = weakref.WeakSet()
_held: list[Timeline] = []
_hooked = False


def _watch_for_fork(timeline: Timeline) -> None:
    global _hooked
    if not _hooked:
        _hooked = True
        _fork.on_fork(before=_hold_all, parent=_release_all, child=_detach_all)
    _timelines.add(timeline)


def _hold_all() -> None:
    """Before a fork: take every timeline's lock, so no thread is inside SQLite when it happens."""
    for tl in list(_timelines):
        if not tl._closed and tl._lock.acquire(timeout=5.0):
            _held.append(tl)


def _release_all() -> None:
    while _held:
        _held.pop()._lock.release()


def _detach_all() -> None:
    _held.clear()  # their locks are replaced below
    for tl in list(_timelines):
        tl._detach_in_child()


def series(samples: list[Sample], key: str) -> tuple[list[float], list[float]]:
    """The ``(t, value)`` pairs of one metric, in seconds since the first sample, skipping gaps."""
    if not samples:
        return [], []
    t0 = samples[0].mono
    ts: list[float] = []
    ys: list[float] = []
    for s in samples:
        v = s.metrics.get(key)
        if v is not None:
            ts.append(s.mono - t0)
            ys.append(float(v))
    return ts, ys


__all__ = ["SCHEMA", "Event", "Metrics", "Sample", "SampleDigest", "Timeline", "series"]
