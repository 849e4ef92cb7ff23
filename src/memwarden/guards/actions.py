"""Actions memwarden takes on the host, each measured and recorded as an ``action`` event.

Attribution only looks; diagnosis only decides. Everything that changes the process lives here (and
in the guards built on it), so a reader finds each action, and what it costs, in one place:

| action         | what it does                                   | what it costs                        |
|----------------|------------------------------------------------|--------------------------------------|
| `collect`      | ``gc.collect()``: frees unreachable cycles     | a full collection's pause            |
| `trim_malloc`  | glibc ``malloc_trim(0)``: free pages to the OS | holds malloc's locks while it runs   |

Each returns an :class:`ActionResult` (what it freed, how long it took, why it was taken), whose
:meth:`ActionResult.to_json` is the body of the ``action`` event the monitor records.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

from ..probes.libc import malloc_trim

EVENT_ACTION = "action"

TRIM_WORTH_BYTES = 16 * 1024 * 1024
"""glibc free bytes below which a ``malloc_trim`` is not worth its pause."""


@dataclass(frozen=True)
class ActionResult:
    """One action memwarden took: which, why, what it freed (RSS, bytes) and what it cost (seconds)."""

    action: str
    reason: str
    freed_bytes: int
    duration_s: float
    rss_before_bytes: int | None = None
    rss_after_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "freed_bytes": self.freed_bytes,
            "duration_s": self.duration_s,
            "rss_before_bytes": self.rss_before_bytes,
            "rss_after_bytes": self.rss_after_bytes,
            "details": dict(self.details),
        }


def trim_malloc(reason: str) -> ActionResult:
    """``malloc_trim(0)`` and what it gave back (raises :class:`~memwarden.ProbeUnavailable` off glibc)."""
    result = malloc_trim(0)
    return ActionResult(
        "malloc_trim",
        reason,
        result.returned_bytes,
        result.duration_s,
        result.rss_before_bytes,
        result.rss_after_bytes,
        {"released": result.released},
    )


def collect(reason: str, generation: int = 2) -> ActionResult:
    """``gc.collect(generation)`` and what it freed (RSS before and after, objects collected)."""
    from ..probes.libc import _statm_rss

    before = _statm_rss()
    started = time.perf_counter()
    found = gc.collect(generation)
    duration = time.perf_counter() - started
    after = _statm_rss()
    return ActionResult(
        "gc_collect", reason, max(0, before - after), duration, before, after, {"collected": found}
    )


__all__ = ["EVENT_ACTION", "TRIM_WORTH_BYTES", "ActionResult", "collect", "trim_malloc"]
