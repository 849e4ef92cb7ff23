"""ConversationMemory: one conversation's history, bounded in messages, tokens and bytes of what is stored."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from memwarden.exceptions import MessageTooLarge, UsageError

from ._message import Message, check_meta, measure
from ._registry import register
from ._summary import Summarizer, SummarizerRunner, SummaryFailed, extractive_summary
from ._tokens import TokenCounter, as_counter

Prune = Literal["oldest", "score"]
Oversize = Literal["raise", "truncate"]
EvictHook = Callable[[list[Message]], None]

SUMMARY_ROLE = "system"


@dataclasses.dataclass(frozen=True)
class MemoryStats:
    """What a memory holds now and what it has let go of since it was made."""

    messages: int
    tokens: int
    nbytes: int
    evicted: int
    summarised: int
    summary_failures: int
    last_summary_error: str | None


class ConversationMemory:
    """One conversation's messages, kept within a budget of what is *stored*, not just what is sent.

    Budgets (any combination; at least one): ``max_messages``, ``max_tokens``, ``max_bytes``
    (what the stored messages keep alive in this process). After each :meth:`append` the memory
    is within every budget: messages leave the window until it fits, chosen by ``prune``:

    * ``"oldest"``: a sliding window, the last N messages / last T tokens (the default);
    * ``"score"``: the lowest ``score`` a caller gave first (no score counts as 0), oldest on ties;
    * ``drop_roles_first=("tool",)``: messages of these roles go before any other, oldest first;
    * ``max_age_s``: messages older than this leave at the next append, whatever the budget.

    The newest message never leaves on its own append. ``system_prompt`` is pinned: it counts
    against the budget and is never pruned. What leaves is summarised when ``summarizer`` is
    given (``"extractive"`` for the built-in one that needs no model, or your own
    ``fn(previous_summary, evicted) -> str``, sync or async) into one summary message capped at
    ``summary_max_tokens``; a summariser that raises, hangs past ``summary_timeout_s`` or returns
    something other than text is replaced by the extractive one for that turn, and the turn is
    stored anyway. Then ``on_evict(messages)`` receives what left (to archive it).

    Token counts are taken once per message and cached on it; the totals are running sums, so an
    append costs O(1) amortised whatever the history length (``prune="score"`` and
    ``drop_roles_first`` scan the window to choose).

    A message over the whole budget raises :class:`~memwarden.exceptions.MessageTooLarge`
    (``oversize="raise"``) or is cut to fit (``oversize="truncate"``, marked with ``…``).

    Thread-safe. Registered with memwarden's cache registry (``memwarden.find_caches()``) under
    ``name`` unless ``watch=False``. Shrink protocol: :meth:`shrink` and :meth:`clear`.
    """

    def __init__(
        self,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        max_bytes: int | None = None,
        counter: TokenCounter | str | Callable[[str], int] | None = None,
        system_prompt: str | None = None,
        summarizer: Summarizer | Literal["extractive"] | None = None,
        summary_max_tokens: int = 256,
        summary_timeout_s: float = 5.0,
        prune: Prune = "oldest",
        drop_roles_first: Collection[str] = (),
        max_age_s: float | None = None,
        oversize: Oversize = "raise",
        on_evict: EvictHook | None = None,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        watch: bool = True,
    ) -> None:
        if max_messages is None and max_tokens is None and max_bytes is None:
            raise UsageError("ConversationMemory needs a budget: max_messages, max_tokens or max_bytes")
        for label, value in (
            ("max_messages", max_messages),
            ("max_tokens", max_tokens),
            ("max_bytes", max_bytes),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{label} must be >= 1, not {value}")
        if prune not in ("oldest", "score"):
            raise UsageError(f"prune must be 'oldest' or 'score', not {prune!r}")
        if oversize not in ("raise", "truncate"):
            raise UsageError(f"oversize must be 'raise' or 'truncate', not {oversize!r}")
        if summary_max_tokens < 1 or not summary_timeout_s > 0:
            raise UsageError("summary_max_tokens must be >= 1 and summary_timeout_s > 0")
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.max_bytes = max_bytes
        self.counter = as_counter(counter)
        self.prune: Prune = prune
        self.drop_roles_first = frozenset(drop_roles_first)
        self.max_age_s = max_age_s
        self.oversize: Oversize = oversize
        self.on_evict = on_evict
        self.summary_max_tokens = summary_max_tokens
        self.summary_max_chars = summary_max_tokens * 4
        self._clock = clock
        self._lock = threading.RLock()
        self._window: collections.deque[Message] = collections.deque()
        self._tokens = 0
        self._bytes = 0
        self._seq = 0
        self._evicted = 0
        self._summarised = 0
        self._failures = 0
        self._last_error: str | None = None
        self._summary: Message | None = None
        self._runner: SummarizerRunner | None = None
        self._summarize = summarizer is not None
        if summarizer is not None and summarizer != "extractive":
            if not callable(summarizer):
                raise UsageError(f"summarizer must be 'extractive' or a callable, not {summarizer!r}")
            self._runner = SummarizerRunner(summarizer, summary_timeout_s)
        # room kept for the summary, so that adding it never breaks the budget
        self._reserve_tokens = summary_max_tokens if self._summarize else 0
        self._reserve_bytes = measure("x" * self.summary_max_chars, None) * 4 if self._summarize else 0
        self._pinned: Message | None = None
        if system_prompt is not None:
            self._pinned = self._make("system", system_prompt, None, None, None)
            self._check_fits(self._pinned, pinned=True)
        if watch:
            register(self, name or f"memwarden.llm.ConversationMemory@{id(self):#x}", max_messages)

    # -- reading ------------------------------------------------------------------------------

    @property
    def tokens(self) -> int:
        """Tokens of everything stored: pinned prompt, summary and window."""
        return self._tokens + self._extra_tokens()

    @property
    def nbytes(self) -> int:
        """Bytes the stored messages keep alive (pinned prompt, summary and window)."""
        return self._bytes + self._extra_bytes()

    @property
    def summary(self) -> str | None:
        """The summary of what left the window, or None."""
        return self._summary.content if self._summary is not None else None

    def messages(self) -> list[Message]:
        """What to send: the pinned prompt, the summary (as a system message), then the window."""
        with self._lock:
            out = [m for m in (self._pinned, self._summary) if m is not None]
            out.extend(self._window)
            return out

    def as_chat(self) -> list[dict[str, str]]:
        """:meth:`messages` as ``[{"role": ..., "content": ...}]``."""
        return [m.as_chat() for m in self.messages()]

    def window(self) -> list[Message]:
        """The kept messages only (no pinned prompt, no summary), oldest first."""
        with self._lock:
            return list(self._window)

    def __len__(self) -> int:
        return len(self._window)

    def stats(self) -> MemoryStats:
        with self._lock:
            return MemoryStats(
                len(self._window),
                self.tokens,
                self.nbytes,
                self._evicted,
                self._summarised,
                self._failures,
                self._last_error,
            )

    def __memwarden_cache__(self) -> tuple[int, int | None]:
        return len(self._window), self.max_messages

    # -- writing ------------------------------------------------------------------------------

    def append(
        self,
        role: str,
        content: str,
        *,
        score: float | None = None,
        meta: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> Message:
        """Store one message, then bring the memory back within budget; returns the stored message."""
        msg, evicted = self._admit(role, content, score, meta, at)
        if evicted:
            self._fold(evicted, self._summary_text_sync(evicted) if self._summarize else None)
        return msg

    async def aappend(
        self,
        role: str,
        content: str,
        *,
        score: float | None = None,
        meta: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> Message:
        """:meth:`append` for asyncio code: an async summariser is awaited (bounded), a sync one runs
        in a worker thread, so the event loop is never blocked by it."""
        msg, evicted = self._admit(role, content, score, meta, at)
        if evicted:
            text: str | None = None
            if self._summarize:
                text = await self._summary_text_async(evicted)
            self._fold(evicted, text)
        return msg

    def extend(self, messages: Sequence[tuple[str, str]]) -> None:
        """Append several ``(role, content)`` pairs in order."""
        for role, content in messages:
            self.append(role, content)

    def shrink(self, fraction: float) -> int:
        """Shrink protocol: let the oldest ``fraction`` of the window go (summarised and handed to
        ``on_evict`` like any eviction). Returns the bytes released."""
        if not 0 <= fraction <= 1:
            raise UsageError(f"fraction must be in [0, 1], not {fraction}")
        with self._lock:
            before = self.nbytes
            n = round(len(self._window) * fraction)
            evicted = [self._pop_left() for _ in range(n)]
        if evicted:
            self._fold(evicted, self._summary_text_sync(evicted) if self._summarize else None)
        return max(0, before - self.nbytes)

    def pop(self, index: int = -1) -> Message | None:
        """Delete one kept message (the newest by default) for good, without archiving it;
        None if there is no such message."""
        with self._lock:
            n = len(self._window)
            if not -n <= index < n:
                return None
            msg = self._window[index]
            del self._window[index]
            self._tokens -= msg.tokens
            self._bytes -= msg.nbytes
            return msg

    def archive_older_than(self, age_s: float) -> int:
        """Time-based archiving: messages older than ``age_s`` leave the window (to ``on_evict``)
        now, without a summary. Returns how many left."""
        cutoff = self._clock() - age_s
        with self._lock:
            evicted: list[Message] = []
            while self._window and self._window[0].at < cutoff:
                evicted.append(self._pop_left())
        if evicted:
            self._fold(evicted, None)
        return len(evicted)

    def clear(self, *, archive: bool = True) -> int:
        """Shrink protocol: drop the window and summary (the pinned prompt stays); the dropped
        messages go to ``on_evict`` unless ``archive=False``. Returns the bytes released."""
        with self._lock:
            before = self.nbytes
            evicted = list(self._window)
            self._window.clear()
            self._tokens = self._bytes = 0
            self._summary = None
            self._evicted += len(evicted)
            released = before - self.nbytes
        if evicted and archive and self.on_evict is not None:
            self.on_evict(evicted)
        return released

    # -- internals ----------------------------------------------------------------------------

    def _make(
        self, role: str, content: str, score: float | None, meta: Mapping[str, Any] | None, at: float | None
    ) -> Message:
        if not isinstance(content, str):
            raise UsageError(f"message content must be str, not {type(content).__name__}")
        meta = check_meta(meta)
        seq = self._seq
        self._seq += 1
        return Message(
            str(role),
            content,
            self.counter.count(content),
            measure(content, meta),
            self._clock() if at is None else float(at),
            seq,
            score,
            meta,
        )

    def _room(self) -> tuple[int | None, int | None]:
        """Tokens and bytes the window may use."""
        tokens = bytes_ = None
        if self.max_tokens is not None:
            tokens = self.max_tokens - self._reserve_tokens - (self._pinned.tokens if self._pinned else 0)
        if self.max_bytes is not None:
            bytes_ = self.max_bytes - self._reserve_bytes - (self._pinned.nbytes if self._pinned else 0)
        return tokens, bytes_

    def _check_fits(self, msg: Message, *, pinned: bool = False) -> None:
        tokens, bytes_ = self._room()
        if pinned:
            tokens = None if tokens is None else tokens + msg.tokens
            bytes_ = None if bytes_ is None else bytes_ + msg.nbytes
        if tokens is not None and msg.tokens > tokens:
            raise MessageTooLarge("tokens", msg.tokens, max(tokens, 0))
        if bytes_ is not None and msg.nbytes > bytes_:
            raise MessageTooLarge("bytes", msg.nbytes, max(bytes_, 0))

    def _truncate(self, msg: Message) -> Message:
        tokens, bytes_ = self._room()
        content = msg.content
        for _ in range(32):
            cut = Message(
                msg.role,
                content,
                self.counter.count(content),
                measure(content, msg.meta),
                msg.at,
                msg.seq,
                msg.score,
                msg.meta,
            )
            over_t = tokens is not None and cut.tokens > tokens
            over_b = bytes_ is not None and cut.nbytes > bytes_
            if not (over_t or over_b):
                return cut
            ratio = 1.0
            if over_t and tokens is not None:
                ratio = min(ratio, tokens / cut.tokens)
            if over_b and bytes_ is not None:
                ratio = min(ratio, bytes_ / cut.nbytes)
            keep = max(0, min(len(content) - 2, int(len(content) * ratio * 0.95)))
            content = content[:keep] + "…"
            if keep == 0:
                break
        raise MessageTooLarge(
            "tokens" if tokens is not None else "bytes",
            msg.tokens,
            max(tokens or 0, 0) if tokens is not None else max(bytes_ or 0, 0),
        )

    def _admit(
        self, role: str, content: str, score: float | None, meta: Mapping[str, Any] | None, at: float | None
    ) -> tuple[Message, list[Message]]:
        with self._lock:
            msg = self._make(role, content, score, meta, at)
            if self.oversize == "truncate":
                try:
                    self._check_fits(msg)
                except MessageTooLarge:
                    msg = self._truncate(msg)
            else:
                self._check_fits(msg)
            self._window.append(msg)
            self._tokens += msg.tokens
            self._bytes += msg.nbytes
            evicted: list[Message] = []
            if self.max_age_s is not None:
                cutoff = msg.at - self.max_age_s
                while len(self._window) > 1 and self._window[0].at < cutoff:
                    evicted.append(self._pop_left())
            while self._over():
                evicted.append(self._pop_victim())
            return msg, evicted

    def _over(self) -> bool:
        if len(self._window) <= 1:
            return False
        if self.max_messages is not None and len(self._window) > self.max_messages:
            return True
        tokens, bytes_ = self._room()
        return (tokens is not None and self._tokens > tokens) or (bytes_ is not None and self._bytes > bytes_)

    def _pop_left(self) -> Message:
        msg = self._window.popleft()
        self._tokens -= msg.tokens
        self._bytes -= msg.nbytes
        self._evicted += 1
        return msg

    def _pop_victim(self) -> Message:
        """The message to let go next (never the newest)."""
        window = self._window
        if self.drop_roles_first:
            for i in range(len(window) - 1):
                if window[i].role in self.drop_roles_first:
                    return self._remove_at(i)
        if self.prune == "score":
            best, best_score = 0, float("inf")
            for i in range(len(window) - 1):
                s = window[i].score or 0.0
                if s < best_score:
                    best, best_score = i, s
            return self._remove_at(best)
        return self._pop_left()

    def _remove_at(self, i: int) -> Message:
        msg = self._window[i]
        del self._window[i]
        self._tokens -= msg.tokens
        self._bytes -= msg.nbytes
        self._evicted += 1
        return msg

    def _summary_text_sync(self, evicted: list[Message]) -> str:
        previous = self.summary
        if self._runner is not None:
            try:
                return self._runner.call(previous, evicted)
            except SummaryFailed as exc:
                self._note_failure(str(exc))
        return extractive_summary(previous, evicted, self.summary_max_chars)

    async def _summary_text_async(self, evicted: list[Message]) -> str:
        previous = self.summary
        if self._runner is not None:
            try:
                return await self._runner.acall(previous, evicted)
            except SummaryFailed as exc:
                self._note_failure(str(exc))
        return extractive_summary(previous, evicted, self.summary_max_chars)

    def _note_failure(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = reason

    def _fold(self, evicted: list[Message], summary_text: str | None) -> None:
        """Replace the summary with ``summary_text`` (cut to its cap), then hand ``evicted`` on."""
        if summary_text is not None:
            text = self._cap_summary(summary_text)
            with self._lock:
                self._summary = Message(
                    SUMMARY_ROLE,
                    text,
                    self.counter.count(text),
                    measure(text, None),
                    evicted[-1].at,
                    -1,
                    None,
                    None,
                )
                self._summarised += len(evicted)
        if self.on_evict is not None:
            self.on_evict(evicted)

    def _cap_summary(self, text: str) -> str:
        """Keep the summary's newest part within its caps (the oldest lines go first)."""
        if len(text) > self.summary_max_chars:
            text = text[-self.summary_max_chars :]
        count = self.counter.count(text)
        while count > self.summary_max_tokens and text:
            newline = text.find("\n")
            if 0 <= newline < len(text) - 1:
                text = text[newline + 1 :]
            else:
                text = text[len(text) - int(len(text) * self.summary_max_tokens / count * 0.95) :]
            count = self.counter.count(text)
        return text

    def _extra_tokens(self) -> int:
        return sum(m.tokens for m in (self._pinned, self._summary) if m is not None)

    def _extra_bytes(self) -> int:
        return sum(m.nbytes for m in (self._pinned, self._summary) if m is not None)
