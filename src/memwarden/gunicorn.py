"""``gunicorn -c python:memwarden.gunicorn app:app``: memwarden's memory guard as a gunicorn config.

The short name for :mod:`memwarden.guards.gunicorn` (its server hooks, configured by ``MEMWARDEN_*``
environment variables); see docs/guards.md. In an existing ``gunicorn.conf.py`` use
``memwarden.guards.gunicorn.install(globals())`` instead.
"""

from __future__ import annotations

from .guards.gunicorn import (
    child_exit,
    on_starting,
    post_fork,
    post_request,
    post_worker_init,
    pre_fork,
    worker_exit,
)

__all__ = [
    "child_exit",
    "on_starting",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "worker_exit",
]
