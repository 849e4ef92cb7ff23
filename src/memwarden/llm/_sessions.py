"""SessionStore: per-session conversation memories with a bound on sessions, idle time and bytes."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from memwarden.exceptions import ArchiveError, ArchiveUnavailable, UsageError

from ._archive import Archive
from ._memory import ConversationMemory, EvictHook
from ._message import Message
from ._registry import register
from ._tokens import as_counter

log = logging.getLogger("memwarden.llm")

MemoryFactory = Callable[[EvictHook], ConversationMemory]


@dataclasses.dataclass(frozen=True)
class SessionStats:
    """What a session store holds now, and what it has let go of."""

    sessions: int
    nbytes: int
    evicted_sessions: int
    expired_sessions: int
    archived_messages: int
    pending_messages: int
    archive_error: str | None


class _Entry:
    __slots__ = ("last", "memory", "nbytes")

    def __init__(self, memory: ConversationMemory, last: float) -> None:
        self.memory = memory
        self.last = last
        self.nbytes = memory.nbytes


class SessionStore:
    """Conversation memories by session id, bounded in sessions, idle time and bytes.

    ``max_sessions`` and ``max_bytes`` (the sum of the memories' stored bytes) evict the least
    recently used sessions; ``ttl_s`` drops a session idle for that long. Expired sessions are
    removed from the store and freed at the next call (every call first sweeps the expired ones,
    O(1) amortised) or at :meth:`expire`; they are never kept and merely hidden.

    ``memory`` sets each session's :class:`ConversationMemory` (keyword arguments, e.g.
    ``{"max_messages": 50, "max_tokens": 4000}``), or pass ``memory_factory(on_evict)``.
    With an ``archive``, every message that leaves memory (out of a window, with an evicted or
    expired session, by :meth:`archive_older_than`, by :meth:`shrink`) is written there. When
    the archive cannot be reached, those messages wait in a pending queue (retried at most every
    ``retry_s``, and at :meth:`flush`); past ``max_pending`` messages the store raises
    :class:`~memwarden.exceptions.ArchiveUnavailable` instead of dropping any.
    ``archive_every=N`` writes in batches of N messages (one transaction each: faster, but up to
    N-1 turns that left memory are not yet durable if the process dies; 1, the default, writes
    each eviction as it happens). Call :meth:`flush` at shutdown.

    Thread-safe; :meth:`aappend` is the asyncio form (archive I/O in a worker thread).
    Shrink protocol: :meth:`shrink`, :meth:`clear`.
    """

    def __init__(
        self,
        *,
        max_sessions: int = 10_000,
        ttl_s: float | None = None,
        max_bytes: int | None = None,
        memory: Mapping[str, Any] | None = None,
        memory_factory: MemoryFactory | None = None,
        archive: Archive | None = None,
        max_pending: int = 100_000,
        archive_every: int = 1,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        watch: bool = True,
    ) -> None:
        if max_sessions < 1:
            raise UsageError(f"max_sessions must be >= 1, not {max_sessions}")
        if ttl_s is not None and not ttl_s > 0:
            raise UsageError(f"ttl_s must be positive, not {ttl_s}")
        if max_bytes is not None and max_bytes < 1:
            raise UsageError(f"max_bytes must be >= 1, not {max_bytes}")
        if memory is not None and memory_factory is not None:
            raise UsageError("give memory or memory_factory, not both")
        kwargs: dict[str, Any] = dict(memory) if memory is not None else {"max_messages": 50}
        kwargs["watch"] = False
        kwargs["counter"] = as_counter(kwargs.get("counter"))  # resolved once, shared by every session
        self._factory: MemoryFactory = memory_factory or (
            lambda hook: ConversationMemory(on_evict=hook, **kwargs)
        )
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.archive = archive
        if archive_every < 1:
            raise UsageError(f"archive_every must be >= 1, not {archive_every}")
        self.max_pending = max_pending
        self.archive_every = archive_every
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.RLock()
        self._sessions: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._bytes = 0
        # messages that left memory and are not yet in the archive: (session, messages)
        self._outbox: collections.deque[tuple[str, list[Message]]] = collections.deque()
        self._outbox_messages = 0
        self._archive_lock = threading.Lock()
        self._next_retry = 0.0
        self._archive_error: str | None = None
        self._evicted = 0
        self._expired = 0
        self._archived = 0
        if watch:
            watch_name = name or f"memwarden.llm.SessionStore@{id(self):#x}"
            register(self, watch_name, max_sessions)

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            self._sweep()
            return session_id in self._sessions

    @property
    def nbytes(self) -> int:
        """Bytes the stored sessions' messages keep alive (as last measured by the store)."""
        return self._bytes

    def session_ids(self) -> list[str]:
        """The live sessions, least recently used first."""
        with self._lock:
            self._sweep()
            return list(self._sessions)

    def peek(self, session_id: str) -> ConversationMemory | None:
        """The session's memory if it is live, without touching its LRU position or creating it."""
        with self._lock:
            self._sweep()
            entry = self._sessions.get(session_id)
            return entry.memory if entry is not None else None

    def history(
        self, session_id: str, *, start: float | None = None, end: float | None = None
    ) -> list[Message]:
        """Everything known of a session in ``[start, end)``: archived messages, then live ones."""
        archived = self.archive.read(session_id, start=start, end=end) if self.archive is not None else []
        with self._lock:
            entry = self._sessions.get(session_id)
            live = entry.memory.window() if entry is not None else []
            pending = [m for sid, batch in self._outbox if sid == session_id for m in batch]
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        seen = {(m.at, m.seq) for m in archived}
        extra = [m for m in pending + live if lo <= m.at < hi and (m.at, m.seq) not in seen]
        return sorted(archived + extra, key=lambda m: (m.at, m.seq))

    def stats(self) -> SessionStats:
        with self._lock:
            return SessionStats(
                len(self._sessions),
                self._bytes,
                self._evicted,
                self._expired,
                self._archived,
                self._outbox_messages,
                self._archive_error,
            )

    def __memwarden_cache__(self) -> tuple[int, int | None]:
        if self.max_bytes is not None:
            return self._bytes, self.max_bytes
        return len(self._sessions), self.max_sessions

    # -- writing ------------------------------------------------------------------------------

    def get(self, session_id: str) -> ConversationMemory:
        """The session's memory, made if it is new; marks it used now."""
        with self._lock:
            memory = self._touch(session_id)
        self._drain()
        return memory

    def append(self, session_id: str, role: str, content: str, **kwargs: Any) -> Message:
        """Add a message to a session (made if new); then evict to the budgets and archive what left."""
        with self._lock:
            memory = self._touch(session_id)
        msg = memory.append(role, content, **kwargs)
        self._after_write(session_id)
        self._drain()
        return msg

    async def aappend(self, session_id: str, role: str, content: str, **kwargs: Any) -> Message:
        """:meth:`append` for asyncio code: the summariser is awaited, archive writes run in a thread."""
        with self._lock:
            memory = self._touch(session_id)
        msg = await memory.aappend(role, content, **kwargs)
        self._after_write(session_id)
        if self._outbox:
            await asyncio.to_thread(self._drain)
        return msg

    def end(self, session_id: str) -> bool:
        """Drop a session now, archiving its messages; False if it was not live."""
        with self._lock:
            entry = self._sessions.pop(session_id, None)
            if entry is not None:
                self._bytes -= entry.nbytes
                self._release(session_id, entry)
        self._drain()
        return entry is not None

    def expire(self) -> int:
        """Drop every session idle for longer than ``ttl_s`` now; returns how many."""
        with self._lock:
            n = self._sweep()
        self._drain()
        return n

    def archive_older_than(self, age_s: float) -> int:
        """Time-based archiving: move every live message older than ``age_s`` to the archive."""
        with self._lock:
            entries = list(self._sessions.items())
        moved = sum(entry.memory.archive_older_than(age_s) for _, entry in entries)
        with self._lock:
            for sid, _ in entries:
                self._refresh(sid)
        self._drain()
        return moved

    def shrink(self, fraction: float) -> int:
        """Shrink protocol: drop the least recently used ``fraction`` of sessions (archived).
        Returns the bytes released."""
        if not 0 <= fraction <= 1:
            raise UsageError(f"fraction must be in [0, 1], not {fraction}")
        with self._lock:
            before = self._bytes
            for _ in range(round(len(self._sessions) * fraction)):
                self._evict_lru()
            released = before - self._bytes
        self._drain()
        return released

    def clear(self) -> int:
        """Shrink protocol: drop every session (archived). Returns the bytes released."""
        return self.shrink(1.0)

    def flush(self) -> int:
        """Write the pending messages to the archive now; returns how many were written.
        Raises :class:`~memwarden.exceptions.ArchiveUnavailable` if the archive is still down."""
        self._next_retry = 0.0
        before = self._archived
        self._drain(raise_errors=True)
        return self._archived - before

    # -- internals (store lock held unless said) ------------------------------------------------

    def _touch(self, session_id: str) -> ConversationMemory:
        if not isinstance(session_id, str) or not session_id:
            raise UsageError(f"session id must be a non-empty str, not {session_id!r}")
        self._sweep()
        entry = self._sessions.get(session_id)
        now = self._clock()
        if entry is None:
            memory = self._factory(functools.partial(self._queue, session_id))
            entry = self._sessions[session_id] = _Entry(memory, now)
            self._bytes += entry.nbytes
            while len(self._sessions) > self.max_sessions:
                self._evict_lru()
        else:
            entry.last = now
            self._sessions.move_to_end(session_id)
            self._refresh(session_id)  # the memory may have been changed directly since
        return entry.memory

    def _after_write(self, session_id: str) -> None:
        with self._lock:
            self._refresh(session_id)
            if self.max_bytes is not None:
                while self._bytes > self.max_bytes and len(self._sessions) > 1:
                    self._evict_lru()

    def _refresh(self, session_id: str) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None:
            nbytes = entry.memory.nbytes
            self._bytes += nbytes - entry.nbytes
            entry.nbytes = nbytes

    def _sweep(self) -> int:
        if self.ttl_s is None or not self._sessions:
            return 0
        cutoff = self._clock() - self.ttl_s
        n = 0
        while self._sessions:
            sid, entry = next(iter(self._sessions.items()))
            if entry.last > cutoff:
                break
            del self._sessions[sid]
            self._bytes -= entry.nbytes
            self._release(sid, entry)
            n += 1
        self._expired += n
        return n

    def _evict_lru(self) -> None:
        sid, entry = self._sessions.popitem(last=False)
        self._bytes -= entry.nbytes
        self._evicted += 1
        self._release(sid, entry)

    def _release(self, session_id: str, entry: _Entry) -> None:
        """A session leaves the store: its messages go to the archive, the memory is let go."""
        if self.archive is not None:
            entry.memory.clear(archive=True)  # hands the window to _queue
        entry.memory.on_evict = None

    def _queue(self, session_id: str, messages: list[Message]) -> None:
        """on_evict of every memory: queue what left for the archive (any thread)."""
        if self.archive is None or not messages:
            return
        with self._lock:
            self._outbox.append((session_id, messages))
            self._outbox_messages += len(messages)

    def _drain(self, *, raise_errors: bool = False) -> None:
        """Write the outbox to the archive (no store lock held: this is I/O)."""
        if self.archive is None or not self._outbox:
            return
        if not raise_errors and self._outbox_messages < self.archive_every:
            return
        if not raise_errors and self._clock() < self._next_retry:
            self._check_pending()
            return
        with self._archive_lock:
            while True:
                with self._lock:
                    if not self._outbox:
                        break
                    batches = list(self._outbox)
                try:
                    _write_many(self.archive, batches)
                except ArchiveError as exc:
                    with self._lock:
                        if self._archive_error is None:
                            log.warning(
                                "memwarden.llm: archive unavailable, keeping %d turns pending: %s",
                                self._outbox_messages,
                                exc,
                            )
                        self._archive_error = str(exc)
                        self._next_retry = self._clock() + self.retry_s
                    if raise_errors:
                        raise
                    self._check_pending()
                    return
                with self._lock:
                    written = 0
                    for _ in batches:
                        written += len(self._outbox.popleft()[1])
                    self._outbox_messages -= written
                    self._archived += written
                    if self._archive_error is not None:
                        log.warning("memwarden.llm: archive back, pending turns written")
                        self._archive_error = None

    def _check_pending(self) -> None:
        if self._outbox_messages > self.max_pending:
            raise ArchiveUnavailable(
                f"{self._outbox_messages} turns wait for the archive (over max_pending={self.max_pending}); "
                f"none were dropped; last error: {self._archive_error}"
            )


def _write_many(archive: Archive, batches: list[tuple[str, list[Message]]]) -> None:
    """All the batches in one transaction where the archive can (``write_many``), else one by one."""
    write_many = getattr(archive, "write_many", None)
    if write_many is not None:
        write_many(batches)
    else:
        for sid, messages in batches:
            archive.write(sid, messages)
