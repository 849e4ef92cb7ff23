"""One stored chat message, its cached token count and its size in memory."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Mapping
from typing import Any

from memwarden.exceptions import UsageError

from ._sizing import deep_sizeof


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A message as a memory stores it.

    ``tokens`` is counted once when the message is added and cached here; ``nbytes`` is what
    the message keeps alive in this process (the text, this record, its metadata). ``at`` is
    wall-clock time (``time.time()``), ``seq`` its number within its conversation, ``score``
    the importance a caller gave it (for pruning by score), ``meta`` JSON-able extra data.
    """

    role: str
    content: str
    tokens: int
    nbytes: int
    at: float
    seq: int
    score: float | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict for JSON (what the archives store)."""
        out: dict[str, Any] = {
            "role": self.role,
            "content": self.content,
            "tokens": self.tokens,
            "at": self.at,
            "seq": self.seq,
        }
        if self.score is not None:
            out["score"] = self.score
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """The message :meth:`to_json` wrote (``nbytes`` is measured again here)."""
        try:
            role, content = str(data["role"]), str(data["content"])
            meta = data.get("meta")
            return cls(
                role,
                content,
                int(data["tokens"]),
                measure(content, meta),
                float(data["at"]),
                int(data["seq"]),
                None if data.get("score") is None else float(data["score"]),
                meta,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"not a stored message: {exc}") from None

    def as_chat(self) -> dict[str, str]:
        """``{"role": ..., "content": ...}``, the shape chat APIs take."""
        return {"role": self.role, "content": self.content}


@functools.lru_cache(maxsize=1)
def _record_bytes() -> int:
    """The record, its float time and three int fields (tokens, nbytes, seq), and its slot in a deque."""
    return sys.getsizeof(Message("", "", 0, 0, 0.0, 0)) + sys.getsizeof(0.5) + 3 * sys.getsizeof(1 << 20) + 8


def measure(content: str, meta: Mapping[str, Any] | None) -> int:
    """Bytes a message with this text and metadata keeps alive."""
    return _record_bytes() + sys.getsizeof(content) + (deep_sizeof(meta) if meta else 0)


def check_meta(meta: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Metadata must be JSON-able (it is archived as JSON): raise a clear error if not."""
    if meta is None:
        return None
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"message meta must be JSON-able: {exc}") from None
    return meta
