"""EmbeddingStore: a bounded vector store (one NumPy matrix) with LRU/TTL eviction and a long-term tier."""

from __future__ import annotations

import collections
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from memwarden.exceptions import ArchiveError, UsageError

from ._numpy import numpy
from ._registry import register


class SQLiteVectorArchive:
    """Long-term tier of an :class:`EmbeddingStore`: vectors as float32 blobs in one SQLite file (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS memwarden_vectors (id TEXT PRIMARY KEY, dim INTEGER NOT NULL, "
                "vec BLOB NOT NULL, meta TEXT, at REAL NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"{self.path}: not a usable vector archive ({exc})") from None

    def put(self, rows: list[tuple[str, Any, Mapping[str, Any] | None]]) -> None:
        now = time.time()
        data = [
            (key, int(vec.shape[0]), vec.astype("<f4").tobytes(), json.dumps(meta) if meta else None, now)
            for key, vec, meta in rows
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO memwarden_vectors VALUES (?, ?, ?, ?, ?)", data)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise ArchiveError(f"{self.path}: cannot archive vectors ({exc})") from None

    def get(self, key: str) -> tuple[Any, Mapping[str, Any] | None] | None:
        with self._lock:
            row = self._db.execute("SELECT vec, meta FROM memwarden_vectors WHERE id = ?", (key,)).fetchone()
        if row is None:
            return None
        return numpy().frombuffer(row[0], dtype="<f4").copy(), (json.loads(row[1]) if row[1] else None)

    def delete(self, key: str) -> bool:
        with self._lock:
            return bool(self._db.execute("DELETE FROM memwarden_vectors WHERE id = ?", (key,)).rowcount)

    def delete_older_than(self, age_s: float, *, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - age_s
        with self._lock:
            return int(self._db.execute("DELETE FROM memwarden_vectors WHERE at < ?", (cutoff,)).rowcount)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM memwarden_vectors").fetchone()[0])

    def chunks(self, size: int = 4096) -> Iterator[tuple[list[str], Any]]:
        """(ids, matrix) of the archived vectors, ``size`` at a time (bounded memory)."""
        np = numpy()
        last = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, vec FROM memwarden_vectors WHERE id > ? ORDER BY id LIMIT ?", (last, size)
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [r[0] for r in rows], np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EmbeddingStore:
    """A bounded in-memory vector store: one preallocated-as-needed NumPy matrix of unit vectors.

    ``capacity`` and/or ``max_bytes`` bound the rows (the matrix grows by doubling up to the bound,
    never beyond); past it the least recently used vector (added or returned by a search) is
    evicted, and ``ttl_s`` drops vectors not used for that long, at the next call or
    :meth:`expire`. With ``archive`` (a :class:`SQLiteVectorArchive`), evicted vectors go to the
    long-term tier instead of being lost: :meth:`search` with ``include_archived=True`` searches
    both tiers, :meth:`get` finds either, :meth:`restore` brings one back.

    Search is exact top-k cosine similarity (one matrix-vector product and an
    ``argpartition``). Thread-safe. Registered with memwarden's cache registry.
    Shrink protocol: :meth:`shrink`, :meth:`clear`.
    """

    def __init__(
        self,
        dim: int,
        *,
        capacity: int | None = None,
        max_bytes: int | None = None,
        ttl_s: float | None = None,
        archive: SQLiteVectorArchive | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        watch: bool = True,
    ) -> None:
        if dim < 1:
            raise UsageError(f"dim must be >= 1, not {dim}")
        if capacity is None and max_bytes is None:
            raise UsageError("EmbeddingStore needs capacity or max_bytes")
        np = numpy()
        self._np = np
        self.dim = dim
        row_bytes = dim * 4
        bound = min(
            x
            for x in (capacity, (max_bytes // row_bytes) if max_bytes is not None else None)
            if x is not None
        )
        if bound < 1:
            raise UsageError(
                f"max_bytes={max_bytes} cannot hold one vector of {dim} float32 ({row_bytes} bytes)"
            )
        self.capacity = bound
        self.ttl_s = ttl_s
        self.archive = archive
        self._clock = clock
        self._lock = threading.RLock()
        self._matrix = np.zeros((min(bound, 1024), dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._meta: dict[str, Mapping[str, Any]] = {}
        self._lru: collections.OrderedDict[str, float] = collections.OrderedDict()  # id -> last use
        self.evicted = 0
        self.expired = 0
        if watch:
            register(self, name or f"memwarden.llm.EmbeddingStore@{id(self):#x}", bound)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    @property
    def nbytes(self) -> int:
        """Bytes of the matrix (allocated rows) plus a per-vector estimate for the id bookkeeping."""
        return int(self._matrix.nbytes) + 200 * len(self._ids)

    def __memwarden_cache__(self) -> tuple[int, int | None]:
        return len(self._ids), self.capacity

    def add(self, key: str, vector: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Store (or replace) ``key``'s vector, normalised to unit length."""
        vec = self._unit(vector)
        spill: list[tuple[str, Any, Mapping[str, Any] | None]] = []
        with self._lock:
            self._sweep(spill)
            row = self._row.get(key)
            if row is None:
                if len(self._ids) >= self.capacity:
                    spill.append(self._evict_lru())
                    self.evicted += 1
                row = len(self._ids)
                if row >= self._matrix.shape[0]:
                    self._grow()
                self._ids.append(key)
                self._row[key] = row
            self._matrix[row] = vec
            if meta:
                self._meta[key] = dict(meta)
            else:
                self._meta.pop(key, None)
            self._lru[key] = self._clock()
            self._lru.move_to_end(key)
        self._spill(spill)

    def get(self, key: str) -> Any | None:
        """The (unit) vector of ``key`` from either tier, or None."""
        with self._lock:
            row = self._row.get(key)
            if row is not None:
                return self._matrix[row].copy()
        if self.archive is not None:
            found = self.archive.get(key)
            return found[0] if found is not None else None
        return None

    def restore(self, key: str) -> bool:
        """Bring an archived vector back into memory; False if it is not archived."""
        if self.archive is None:
            return False
        found = self.archive.get(key)
        if found is None:
            return False
        self.add(key, found[0], found[1])
        self.archive.delete(key)
        return True

    def remove(self, key: str) -> bool:
        """Forget ``key`` in memory (and in the archive); False if it was in neither."""
        with self._lock:
            hit = key in self._row
            if hit:
                self._remove(key)
        if self.archive is not None:
            hit = self.archive.delete(key) or hit
        return hit

    def search(self, query: Any, k: int = 5, *, include_archived: bool = False) -> list[tuple[str, float]]:
        """The ``k`` most similar ids with their cosine similarity, best first."""
        if k < 1:
            raise UsageError(f"k must be >= 1, not {k}")
        np = self._np
        q = self._unit(query)
        with self._lock:
            self._sweep([])
            n = len(self._ids)
            hits: list[tuple[str, float]] = []
            if n:
                scores = self._matrix[:n] @ q
                top = _top(np, scores, k)
                hits = [(self._ids[i], float(scores[i])) for i in top]
                now = self._clock()
                for key, _ in hits:
                    self._lru[key] = now
                    self._lru.move_to_end(key)
        if include_archived and self.archive is not None:
            for ids, matrix in self.archive.chunks():
                scores = matrix @ q
                hits.extend((ids[i], float(scores[i])) for i in _top(np, scores, k))
            best: dict[str, float] = {}
            for key, score in hits:
                best[key] = max(score, best.get(key, -math.inf))
            hits = list(best.items())
        hits.sort(key=lambda h: -h[1])
        return hits[:k]

    def expire(self) -> int:
        """Drop (or archive) every vector unused for longer than ``ttl_s``; returns how many."""
        spill: list[tuple[str, Any, Mapping[str, Any] | None]] = []
        with self._lock:
            n = self._sweep(spill)
        self._spill(spill)
        return n

    def shrink(self, fraction: float) -> int:
        """Shrink protocol: evict (to the archive) the least recently used ``fraction`` of vectors,
        and give back the matrix rows no longer needed. Returns the bytes released."""
        if not 0 <= fraction <= 1:
            raise UsageError(f"fraction must be in [0, 1], not {fraction}")
        spill: list[tuple[str, Any, Mapping[str, Any] | None]] = []
        with self._lock:
            before = self.nbytes
            for _ in range(round(len(self._ids) * fraction)):
                spill.append(self._evict_lru())
                self.evicted += 1
            rows = max(1, len(self._ids))
            if rows < self._matrix.shape[0]:
                self._matrix = self._matrix[:rows].copy()
            released = before - self.nbytes
        self._spill(spill)
        return released

    def clear(self) -> int:
        return self.shrink(1.0)

    # -- internals ----------------------------------------------------------------------------

    def _unit(self, vector: Any) -> Any:
        np = self._np
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise UsageError(f"vector of dimension {vec.shape[0]}, this store holds {self.dim}")
        norm = float(np.linalg.norm(vec))
        if not norm > 0 or not math.isfinite(norm):
            raise UsageError("a zero or non-finite vector has no direction to compare")
        return vec / norm

    def _grow(self) -> None:
        rows = min(self.capacity, self._matrix.shape[0] * 2)
        bigger = self._np.zeros((rows, self.dim), dtype=self._np.float32)
        bigger[: self._matrix.shape[0]] = self._matrix
        self._matrix = bigger

    def _evict_lru(self) -> tuple[str, Any, Mapping[str, Any] | None]:
        key = next(iter(self._lru))
        return self._remove(key)

    def _remove(self, key: str) -> tuple[str, Any, Mapping[str, Any] | None]:
        row = self._row.pop(key)
        vec = self._matrix[row].copy()
        meta = self._meta.pop(key, None)
        del self._lru[key]
        last = len(self._ids) - 1
        if row != last:  # keep the matrix dense: move the last row into the hole
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
        return key, vec, meta

    def _sweep(self, spill: list[tuple[str, Any, Mapping[str, Any] | None]]) -> int:
        if self.ttl_s is None:
            return 0
        cutoff = self._clock() - self.ttl_s
        n = 0
        while self._lru:
            key, last = next(iter(self._lru.items()))
            if last > cutoff:
                break
            spill.append(self._remove(key))
            n += 1
        self.expired += n
        return n

    def _spill(self, rows: list[tuple[str, Any, Mapping[str, Any] | None]]) -> None:
        if rows and self.archive is not None:
            self.archive.put(rows)


def _top(np: Any, scores: Any, k: int) -> list[int]:
    n = scores.shape[0]
    if n <= k:
        idx = np.argsort(-scores)
    else:
        part = np.argpartition(-scores, k)[:k]
        idx = part[np.argsort(-scores[part])]
    return [int(i) for i in idx]
