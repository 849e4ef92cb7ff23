"""Guards: everything memwarden does *to* the process, each action measured and recorded.

The names below load on first use (``import memwarden`` stays light): ``Budget``, ``WorkerGuard``,
``Ladder``, ``CacheShrinker``, ``RecycleLock``, ``GuardConfig``, ``MemoryGuardMiddleware``,
``GcPauseHistogram``, ``write_evidence``. The gunicorn hooks are ``memwarden.guards.gunicorn``
(``gunicorn -c python:memwarden.guards.gunicorn``). See docs/guards.md.
"""

from __future__ import annotations

from .._lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, globals(), {n: f".{m}" for n, m in _WHERE.items()})

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
