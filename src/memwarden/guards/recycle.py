"""The worker guard: check the budget, climb the ladder, recycle one worker at a time, lose nothing.

:class:`WorkerGuard` is what the integrations (``memwarden.guards.gunicorn``,
``memwarden.guards.asgi``) call after each request, or on the monitor's tick (it is an observer).
When the measure passes the hard threshold of its :class:`~memwarden.guards.budget.Budget` and the
worker has lived ``min_lifetime_s``, it:

1. takes the recycle lock (:class:`RecycleLock`, an ``flock`` on a file shared by the workers of
   one server: only one worker drains at a time; the kernel drops the lock when the process ends,
   so a crashed worker never holds it);
2. writes the evidence (verdict, sites, holders) to ``evidence-<pid>.json`` and the timeline;
3. writes why it leaves to ``exit-<pid>.json`` (the gunicorn master logs it in ``child_exit``);
4. starts a drain thread that heartbeats (gunicorn's ``worker.notify()``) until the drain
   deadline, and ends the process if the drain outlives it;
5. calls the integration's ``recycle`` (the graceful path: ``SIGTERM`` to itself).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import UsageError
from .actions import EVENT_ACTION, ActionResult
from .budget import Budget, ResolvedBudget, measure_reader
from .evidence import collect_evidence, write_evidence
from .gpu import EmptyCachePolicy
from .ladder import STEP_NAMES, CacheShrinker, Ladder

if TYPE_CHECKING:
    from .._monitor import Monitor
    from ..sampler import Tick

log = logging.getLogger("memwarden.guards")

EVENT_GUARD = "guard"
JOURNAL_MAX_BYTES = 1 << 20
EVIDENCE_KEEP = 20
"""The state folder keeps the newest this many evidence files (one per recycle)."""
EXIT_DRAIN_DEADLINE = 75
"""The exit status of a worker whose drain outlived its deadline (``os._exit``)."""
GROWTH_WINDOW = 16
"""How many requests the growth of one request is averaged over (:attr:`WorkerGuard.growth_bytes`)."""


def _prune(folder: Path, pattern: str, keep: int) -> None:
    with contextlib.suppress(OSError):
        files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
        for old in files[:-keep]:
            with contextlib.suppress(OSError):
                old.unlink()


def default_state_dir() -> Path:
    """Where the workers of one server meet: ``$MEMWARDEN_GUARD_DIR``, else per parent process."""
    env = os.environ.get("MEMWARDEN_GUARD_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"memwarden-guard-{os.getppid()}"


class RecycleLock:
    """One recycle at a time among the processes that share ``path`` (an ``flock``, non-blocking)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if free (and keep it until the process ends or :meth:`release`)."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> int | None:
        """The pid that last took the lock (it may have ended since)."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class WorkerGuard:
    """Keeps one worker inside its budget: the ladder at the soft threshold, a recycle at the hard one.

    ``budget`` is resolved at once (bad input fails here, at start-up). ``recycle(reason)`` ends the
    worker gracefully (the integration's own); ``heartbeat`` is called every
    ``heartbeat_every_s`` while draining, up to ``drain_s``, after which ``on_deadline`` runs
    (default: ``os._exit(75)``). ``steps`` are the ladder's steps in order; ``caches`` the caches
    the ``caches`` step shrinks; ``gpu_policy`` the GPU step's policy; ``monitor`` a running
    :class:`~memwarden.Monitor` whose verdict becomes the evidence and whose timeline records each
    action. ``lock_wait_s`` is how long a worker over its hard limit waits (blocked, heartbeating)
    for another's recycle before it recycles anyway (logged); ``blocking_wait=False`` (event loops)
    makes :meth:`check` answer ``"waiting"`` instead of blocking. ``state_dir`` holds the lock, the evidence and exit files.

    **In flight.** A worker that stops cannot refuse what clients already sent it: a request written
    on a kept-alive connection before the client saw ``Connection: close`` must be answered, and it
    grows the worker too. ``outstanding()`` (given by the integration) says how many such requests
    the worker may still have to answer (its open connections); above the soft threshold the guard
    keeps that many requests' growth (:attr:`growth_bytes`, the mean over the last
    :data:`GROWTH_WINDOW` requests), at most ``hard - soft``, as a reserve: it starts the recycle once
    the measure plus the reserve reaches the budget, so what is in flight lands inside it.
    ``on_over()`` runs once, the moment the worker must go (before it waits for the lock): the
    integration stops accepting connections there.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        recycle: Callable[[str], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        steps: Sequence[str] = STEP_NAMES,
        caches: CacheShrinker | None = None,
        gpu_policy: EmptyCachePolicy | None = None,
        monitor: Monitor | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        drain_s: float = 30.0,
        heartbeat_every_s: float = 1.0,
        lock_wait_s: float = 120.0,
        blocking_wait: bool = True,
        on_deadline: Callable[[], None] | None = None,
        outstanding: Callable[[], int] | None = None,
        on_over: Callable[[], None] | None = None,
        read: Callable[[], int] | None = None,
        resolved: ResolvedBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if drain_s <= 0:
            raise UsageError(f"drain_s must be positive, not {drain_s}")
        if heartbeat_every_s <= 0:
            raise UsageError(f"heartbeat_every_s must be positive, not {heartbeat_every_s}")
        self.budget = budget
        self.resolved = resolved if resolved is not None else budget.resolve()
        self.read = read if read is not None else measure_reader(budget.measure)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.lock = RecycleLock(self.state_dir / "recycle.lock")
        self.monitor = monitor
        self.drain_s = drain_s
        self.heartbeat = heartbeat
        self.heartbeat_every_s = heartbeat_every_s
        self.lock_wait_s = lock_wait_s
        self.lock_poll_s = 0.02
        self.blocking_wait = blocking_wait
        self._waiting_since: float | None = None
        self._recycle = recycle
        self._on_deadline = on_deadline or (lambda: os._exit(EXIT_DRAIN_DEADLINE))
        self._clock = clock
        self.started = clock()
        self.actions: list[ActionResult] = []
        self.ladder = Ladder(
            read=self.read,
            order=tuple(steps),
            caches=caches or CacheShrinker(),
            gpu_policy=gpu_policy,
            recycle=None,
            record=self._record_action,
        )
        self.recycle_allowed = "recycle" in steps
        if "trim" in steps or "caches" in steps:
            # open the C library now (ctypes and all): the way out should allocate as little as it
            # can, since it runs with the worker at its budget
            from ..probes.libc import _default_libc

            _default_libc()
        self.draining = False
        self.state = "ok"
        self.peak_bytes = 0
        self.checks = 0
        self._soft_armed = True
        self._hard_climbed = False
        self._check_lock = threading.Lock()
        self._drain_done = threading.Event()
        self.drain_started: float | None = None
        self.outstanding = outstanding
        self.on_over = on_over
        self._over_told = False
        self._ends: deque[int] = deque(maxlen=GROWTH_WINDOW + 1)
        self.reserve_bytes = 0

    # -- records ---------------------------------------------------------------------------

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        mon = self.monitor
        if mon is not None and mon.sampler is not None:
            mon.sampler.record(kind, data)

    def _record_action(self, result: ActionResult) -> None:
        if len(self.actions) < 64:
            self.actions.append(result)
        self._record(EVENT_ACTION, result.to_json())

    def _journal(self, event: str, **data: Any) -> None:
        """One line in ``journal.jsonl`` (appended whole): the recycles of every worker, in order."""
        line = json.dumps(
            {"event": event, "pid": os.getpid(), "mono": time.monotonic(), "time": time.time(), **data}
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "journal.jsonl"
        with contextlib.suppress(OSError):
            if path.stat().st_size > JOURNAL_MAX_BYTES:  # bounded: keep one previous file
                os.replace(path, self.state_dir / "journal.jsonl.1")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    # -- the check -------------------------------------------------------------------------

    def lifetime_s(self) -> float:
        return self._clock() - self.started

    def __call__(self, tick: Tick) -> None:
        """As a monitor observer: check on each tick (for workers with no per-request hook)."""
        self.check(request_end=False)

    @property
    def growth_bytes(self) -> int:
        """The mean growth of one request over the last :data:`GROWTH_WINDOW` (0 until two are seen)."""
        ends = self._ends
        if len(ends) < 2:
            return 0
        return max(0, (ends[-1] - ends[0]) // (len(ends) - 1))

    def _reserve(self, value: int) -> int:
        """What the requests this worker may still have to answer would add (0 below soft)."""
        r = self.resolved
        if self.outstanding is None or value < r.soft_bytes:
            return 0
        try:
            n = max(0, int(self.outstanding()))
        except Exception:
            return 0
        return min(n * self.growth_bytes, max(0, r.hard_bytes - r.soft_bytes))

    def check(self, *, request_end: bool = True) -> str:
        """Measure and act; the state: ``ok``, ``soft``, ``young``, ``waiting`` or ``draining``.

        ``request_end`` says a request's work is done (its response is about to go): the value
        feeds :attr:`growth_bytes`. Checks before a request, after its body, or on a tick pass False.
        """
        if self.draining:
            return "draining"
        with self._check_lock:  # threads wait here while one of them waits for the recycle lock
            self.state = "draining" if self.draining else self._check(request_end)
            return self.state

    def _over(self, value: int) -> bool:
        self.reserve_bytes = self._reserve(value)
        return value + self.reserve_bytes >= self.resolved.hard_bytes

    def _check(self, request_end: bool = True) -> str:
        r = self.resolved
        value = self.read()
        self.checks += 1
        if request_end:
            self._ends.append(value)
        self.peak_bytes = max(self.peak_bytes, value)
        if value < r.rearm_bytes:
            self._soft_armed = True
            self._hard_climbed = False
        if self._over(value):
            if not self._hard_climbed:
                self._hard_climbed = True
                self.ladder.climb("over the hard budget", value, r.soft_bytes, r.measure, allow_recycle=False)
                value = self.read()
                if not self._over(value):
                    return "soft"
            if not self.recycle_allowed:
                return "soft"
            if self.lifetime_s() < r.min_lifetime_s:
                return "young"
            if not self._over_told:
                self._over_told = True
                if self.on_over is not None:
                    with contextlib.suppress(Exception):
                        self.on_over()
            got = self._take_lock()
            if got is None:
                return "waiting"
            if not got:
                log.warning(
                    "memwarden: waited %.0f s for the recycle lock; recycling anyway", self.lock_wait_s
                )
            in_flight = ""
            if self.reserve_bytes:
                in_flight = f" + {self.reserve_bytes / (1 << 20):.1f} MiB in flight"
            self.begin_recycle(
                f"{r.measure} {value >> 20} MiB{in_flight} >= budget {r.hard_bytes >> 20} MiB", value
            )
            return "draining"
        if value >= r.soft_bytes:
            if self._soft_armed:
                self._soft_armed = False
                self.ladder.climb("over the soft budget", value, r.soft_bytes, r.measure, allow_recycle=False)
            return "soft"
        return "ok"

    def _take_lock(self) -> bool | None:
        """Take the recycle lock: True when taken, False when waited ``lock_wait_s`` in vain.

        With ``blocking_wait`` (threaded workers) the wait blocks the worker on purpose, heartbeating:
        a worker over its budget must not take more requests while it waits its turn (they queue in
        the listen backlog, or go to the others). Without it (an event loop, which must keep
        running) it answers ``None`` while the other drain lasts, and the caller holds its response.
        """
        if self.lock.try_acquire():
            self._waiting_since = None
            return True
        now = self._clock()
        if self._waiting_since is None:
            self._waiting_since = now
            log.warning(
                "memwarden: over budget, waiting for pid %s to finish its recycle", self.lock.holder()
            )
        if not self.blocking_wait:
            return None if now - self._waiting_since < self.lock_wait_s else False
        deadline = self._waiting_since + self.lock_wait_s
        while self._clock() < deadline:
            if self.heartbeat is not None:
                with contextlib.suppress(Exception):
                    self.heartbeat()
            time.sleep(self.lock_poll_s)
            if self.lock.try_acquire():
                self._waiting_since = None
                return True
        return False

    # -- the recycle -----------------------------------------------------------------------

    def begin_recycle(self, reason: str, value_bytes: int | None = None) -> None:
        """Write the evidence and the exit reason, start the drain thread, then recycle."""
        if self.draining:
            return
        self.draining = True
        value = self.read() if value_bytes is None else value_bytes
        self.drain_started = time.monotonic()
        budget = self.resolved.to_json()
        pid = os.getpid()
        try:
            doc = collect_evidence(
                reason=reason,
                value_bytes=value,
                budget=budget,
                monitor=self.monitor,
                actions=self.actions,
                extra={
                    "lifetime_s": self.lifetime_s(),
                    "checks": self.checks,
                    "peak_bytes": self.peak_bytes,
                    "reserve_bytes": self.reserve_bytes,
                },
            )
            write_evidence(self.state_dir / f"evidence-{pid}.json", doc, self.monitor)
            _prune(self.state_dir, "evidence-*.json", EVIDENCE_KEEP)
        except Exception as exc:  # evidence is best effort: the recycle must happen
            log.warning("memwarden: could not write the evidence (%s: %s)", type(exc).__name__, exc)
        exit_doc = {
            "pid": pid,
            "reason": reason,
            "value_bytes": value,
            "peak_bytes": self.peak_bytes,
            "lifetime_s": self.lifetime_s(),
            "reserve_bytes": self.reserve_bytes,
            "budget": budget,
            "evidence": str(self.state_dir / f"evidence-{pid}.json"),
        }
        tmp = self.state_dir / f".exit-{pid}.tmp"
        tmp.write_text(json.dumps(exit_doc))
        os.replace(tmp, self.state_dir / f"exit-{pid}.json")
        self._journal("drain_start", reason=reason, value_bytes=value, peak_bytes=self.peak_bytes)
        atexit.register(self.drain_ended)
        self._record_action(ActionResult("recycle", reason, 0, 0.0, value, None, {"drain_s": self.drain_s}))
        log.warning("memwarden: recycling worker %d: %s", pid, reason)
        threading.Thread(target=self._drain, name="memwarden-drain", daemon=True).start()
        if self._recycle is not None:
            self._recycle(reason)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_s
        while not self._drain_done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self._journal("drain_deadline", drain_s=self.drain_s)
                with contextlib.suppress(Exception):
                    self.drain_ended()
                self._on_deadline()
                return
            if self.heartbeat is not None:
                with contextlib.suppress(Exception):
                    self.heartbeat()
            self._drain_done.wait(min(self.heartbeat_every_s, left))

    def drain_ended(self) -> None:
        """The worker is about to exit: journal it once (called by the integration, or atexit)."""
        if self.draining and not self._drain_done.is_set():
            self._drain_done.set()
            self._journal("drain_end", peak_bytes=max(self.peak_bytes, self.read()))


__all__ = ["EVENT_GUARD", "EXIT_DRAIN_DEADLINE", "RecycleLock", "WorkerGuard", "default_state_dir"]
