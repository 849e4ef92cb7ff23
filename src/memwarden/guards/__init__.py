"""Guards: everything memwarden does *to* the process, each action measured and recorded.

The names below load on first use (``import memwarden`` stays light): ``Budget``, ``WorkerGuard``,
``Ladder``, ``CacheShrinker``, ``RecycleLock``, ``GuardConfig``, ``MemoryGuardMiddleware``,
``GcPauseHistogram``, ``write_evidence``. The gunicorn hooks are ``memwarden.guards.gunicorn``
(``gunicorn -c python:memwarden.guards.gunicorn``). See docs/guards.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Budget": "budget",
    "ResolvedBudget": "budget",
    "WorkerGuard": "recycle",
    "RecycleLock": "recycle",
    "Ladder": "ladder",
    "CacheShrinker": "ladder",
    "GuardConfig": "config",
    "MemoryGuardMiddleware": "asgi",
    "GcPauseHistogram": "gcgov",
    "write_evidence": "evidence",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'memwarden.guards' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "Budget",
    "CacheShrinker",
    "GcPauseHistogram",
    "GuardConfig",
    "Ladder",
    "MemoryGuardMiddleware",
    "RecycleLock",
    "ResolvedBudget",
    "WorkerGuard",
    "write_evidence",
]
