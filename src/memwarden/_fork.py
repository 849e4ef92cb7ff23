"""Fork safety, in one place: what memwarden does around ``os.fork()``.

A forked child has one thread: the one that called ``fork()``. Every lock another thread held at
that moment stays locked in the child for ever, and an SQLite connection must never be used by
two processes. So, around each fork:

- **before**: each hook takes the locks that guard memwarden's I/O (the timelines' locks), so no
  memwarden thread is inside SQLite when the process is copied;
- **in the parent**: the locks are released and nothing else changes;
- **in the child**: the locks are released or replaced, inherited timelines are detached (their
  connection is never used, not even closed: closing could checkpoint the parent's WAL), and each
  running monitor either starts afresh (its own sampler thread, its own timeline file per pid) or
  stops, as its ``on_fork`` says.

Hooks are registered with :func:`os.register_at_fork` once, when the first monitor or timeline is
created (never at import). Each hook catches its own errors: a failure here must never break the
program's fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

Hook = Callable[[], None]

_lock = threading.Lock()
_installed = False
_before: list[Hook] = []
_parent: list[Hook] = []
_child: list[Hook] = []
errors: list[str] = []
"""What went wrong in a hook (kept, never raised: a fork must not fail because of memwarden)."""


def on_fork(*, before: Hook | None = None, parent: Hook | None = None, child: Hook | None = None) -> None:
    """Run ``before`` just before every fork, then ``parent`` or ``child`` just after it.

    Hooks run in registration order before and after the fork alike (so a lock taken by an earlier
    ``before`` is released by the matching ``parent``/``child``).
    """
    global _installed
    with _lock:
        if before is not None:
            _before.append(before)
        if parent is not None:
            _parent.append(parent)
        if child is not None:
            _child.append(child)
        if not _installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_run_before, after_in_parent=_run_parent, after_in_child=_run_child)
            _installed = True


def _run(hooks: list[Hook]) -> None:
    for hook in list(hooks):
        try:
            hook()
        except Exception as exc:  # never break the program's fork
            if len(errors) < 20:
                errors.append(f"{getattr(hook, '__qualname__', hook)!r}: {exc!r}")


def _run_before() -> None:
    _run(_before)


def _run_parent() -> None:
    _run(_parent)


def _run_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _run(_child)


def pid_path(path: str, pid: int | None = None) -> str:
    """The timeline path for process ``pid`` (this one by default).

    ``{pid}`` in ``path`` is replaced by the pid (``/var/tmp/app-{pid}.db``); otherwise the pid goes
    before the suffix (``/var/tmp/app.db`` becomes ``/var/tmp/app.12345.db`` in process 12345).
    """
    pid = os.getpid() if pid is None else pid
    if "{pid}" in path:
        return path.replace("{pid}", str(pid))
    head, sep, name = path.rpartition(os.sep)
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return f"{path}.{pid}"
    return f"{head}{sep}{stem}.{pid}.{suffix}"


def keep_forever(obj: object) -> None:
    """Never let ``obj`` be deallocated in this process (an inherited SQLite connection)."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


__all__ = ["errors", "keep_forever", "on_fork", "pid_path"]
