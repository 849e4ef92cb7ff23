"""Summaries of what falls out of a window: a cheap extractive default, and bounded calls to yours."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._message import Message

Summarizer = Callable[[str | None, Sequence[Message]], str | Awaitable[str]]
"""``summarizer(previous_summary, evicted_messages) -> new_summary`` (sync, or async returning one)."""

_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)", re.S)
_LINE_CHARS = 160


def extractive_summary(previous: str | None, evicted: Sequence[Message], max_chars: int = 1024) -> str:
    """The default summariser: no model, a few microseconds per message.

    One line per evicted message, ``role: its first sentence`` (cut at 160 characters), after
    the previous summary's lines; the oldest lines are dropped first so the result fits in
    ``max_chars``.
    """
    lines = previous.splitlines() if previous else []
    for msg in evicted:
        text = " ".join(msg.content.split())
        if not text:
            continue
        first = _SENTENCE.match(text)
        line = first.group(1) if first else text
        if len(line) > _LINE_CHARS:
            line = line[: _LINE_CHARS - 1] + "…"
        lines.append(f"{msg.role}: {line}")
    total = sum(len(line) + 1 for line in lines)
    start = 0
    while total > max_chars and start < len(lines):
        total -= len(lines[start]) + 1
        start += 1
    return "\n".join(lines[start:])[:max_chars]


class SummaryFailed(Exception):
    """The caller's summariser raised, hung past its timeout, or returned something other than text."""


class SummarizerRunner:
    """Calls a caller's summariser with a time bound, never letting it stop a turn from being stored.

    A sync summariser runs in a daemon thread that is waited on for ``timeout_s``; one that
    hangs is left behind (a thread cannot be killed), and while ``max_stuck`` such threads
    are still running no new one is started: the call fails at once instead. An async one is
    awaited under ``asyncio.wait_for`` (and cancelled at the timeout).
    """

    _stuck = 0
    _stuck_lock = threading.Lock()

    def __init__(self, fn: Summarizer, timeout_s: float, max_stuck: int = 4) -> None:
        self.fn = fn
        self.timeout_s = timeout_s
        self.max_stuck = max_stuck
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        )

    def call(self, previous: str | None, evicted: Sequence[Message]) -> str:
        if self.is_async:
            raise SummaryFailed("an async summariser needs aappend(), not append()")
        with SummarizerRunner._stuck_lock:
            if SummarizerRunner._stuck >= self.max_stuck:
                raise SummaryFailed(f"{SummarizerRunner._stuck} earlier summariser calls are still hung")
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["result"] = self.fn(previous, list(evicted))
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()
                if box.get("stuck"):
                    with SummarizerRunner._stuck_lock:
                        SummarizerRunner._stuck -= 1

        thread = threading.Thread(target=work, name="memwarden-summarizer", daemon=True)
        thread.start()
        if not done.wait(self.timeout_s):
            with SummarizerRunner._stuck_lock:
                if not done.is_set():
                    box["stuck"] = True
                    SummarizerRunner._stuck += 1
            raise SummaryFailed(f"summariser did not return within {self.timeout_s:g} s")
        return _text(box)

    async def acall(self, previous: str | None, evicted: Sequence[Message]) -> str:
        if not self.is_async:
            return await asyncio.to_thread(self.call, previous, evicted)
        try:
            result = await asyncio.wait_for(self.fn(previous, list(evicted)), self.timeout_s)  # type: ignore[arg-type]
        except asyncio.TimeoutError:
            raise SummaryFailed(f"summariser did not return within {self.timeout_s:g} s") from None
        except Exception as exc:
            raise SummaryFailed(f"summariser raised {type(exc).__name__}: {exc}") from None
        return _text({"result": result})


def _text(box: dict[str, Any]) -> str:
    if "error" in box:
        exc = box["error"]
        raise SummaryFailed(f"summariser raised {type(exc).__name__}: {exc}")
    result = box.get("result")
    if not isinstance(result, str):
        raise SummaryFailed(f"summariser returned {type(result).__name__}, not str")
    return result
