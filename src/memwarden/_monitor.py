"""The Python API for services and notebooks: start watching, ask for a verdict, stop.

::

    import memwarden

    memwarden.start(interval=10, db="/var/tmp/app-{pid}.db")   # a daemon thread; returns at once
    ...
    verdict = memwarden.diagnose()      # what memory did so far, as plain data
    memwarden.stop()

    with memwarden.Monitor(interval=0.5) as mon:   # or scoped to a block
        work()
    print(mon.verdict.summary)

A monitor survives ``fork()``: in a pre-forked worker (gunicorn ``--preload``, multiprocessing) it
starts afresh with its own sampler thread and its own timeline file (see :func:`_fork.pid_path`),
unless it was made with ``on_fork="stop"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from . import _fork
from .attribution._investigator import Investigator, InvestigatorConfig
from .diagnosis._classify import DiagnosisConfig, classify
from .diagnosis._evidence import EVENT_TRIM, EVENT_VERDICT, Evidence, TrimEvidence
from .diagnosis._verdict import Verdict
from .exceptions import UsageError
from .guards.actions import EVENT_ACTION, TRIM_WORTH_BYTES, trim_malloc
from .probes import GcPauseTimer, default_probes
from .probes._base import Probe
from .probes.own import OwnFootprint, OwnFootprintProbe
from .sampler import Observer, Sampler, Tick, validate_interval
from .timeline import Event, Sample, Timeline

OnFork = Literal["restart", "stop"]


class _History:
    """A bounded, evenly spaced digest of every sample of a run, fed one sample at a time.

    It keeps every ``stride``-th sample; when full it drops every other one and doubles the stride,
    so after any number of samples it holds between ``capacity / 2`` and ``capacity`` of them,
    spread over the whole run. With the sampler's ring (the recent samples at full resolution) it
    is what :meth:`Monitor.diagnose` reads: its cost is bounded however long the service has run.
    """

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 4:
            raise UsageError(f"history capacity must be at least 4 samples, not {capacity}")
        self.capacity = capacity
        self.stride = 1
        self._seen = 0
        self._kept: list[Sample] = []
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        with self._lock:
            if self._seen % self.stride == 0:
                self._kept.append(sample)
                if len(self._kept) > self.capacity:
                    self._kept = self._kept[::2]
                    self.stride *= 2
            self._seen += 1

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._kept)


class Monitor:
    """Samples every memory layer of this process in a daemon thread and diagnoses what it sees.

    ``interval`` is the tick in seconds (10 s suits production; ``memwarden run`` uses 1 s).
    ``db`` is a timeline file to write (``{pid}`` in it is replaced by the process id) or an open
    :class:`Timeline`; ``None`` keeps samples only in memory. ``investigate`` opens tracemalloc
    windows when growth is suspected (see :class:`InvestigatorConfig`); turn it off to only sample.
    ``observers`` are called after every tick with a :class:`~memwarden.Tick` (guards, exporters;
    more can be added with :meth:`add_observer`). ``on_fork`` says what a forked child does with a
    running monitor: ``"restart"`` (its own sampler and timeline file) or ``"stop"`` (none).
    ``trim_at_stop`` lets :meth:`stop` call ``malloc_trim(0)`` when glibc holds many free bytes, and
    record what it gave back (an action, and evidence of allocator retention). ``ramp_from``
    starts the cadence faster (a tick every ``ramp_from`` seconds) and slows it evenly to
    ``interval`` over the first 30 s: what ``memwarden run`` does, so a program of a few seconds
    gets a verdict.
    """

    def __init__(
        self,
        *,
        interval: float = 10.0,
        db: str | os.PathLike[str] | Timeline | None = None,
        probes: Sequence[Probe[Any]] | None = None,
        investigate: bool = True,
        investigator: InvestigatorConfig | None = None,
        diagnosis: DiagnosisConfig | None = None,
        observers: Sequence[Observer] = (),
        ring_size: int = 600,
        history_size: int = 2000,
        max_samples: int = 100_000,
        gc_pauses: bool = True,
        on_fork: OnFork = "restart",
        trim_at_stop: bool = True,
        ramp_from: float | None = None,
    ) -> None:
        self.interval = validate_interval(interval)
        self.ramp_from = (
            None if ramp_from is None else min(validate_interval(ramp_from, "ramp_from"), self.interval)
        )
        if on_fork not in ("restart", "stop"):
            raise UsageError(f"on_fork must be 'restart' or 'stop', not {on_fork!r}")
        if investigator is not None and not isinstance(investigator, InvestigatorConfig):
            raise UsageError("investigator must be an InvestigatorConfig")
        self.on_fork: OnFork = on_fork
        self.trim_at_stop = trim_at_stop
        self._db_template: str | None = None
        if isinstance(db, Timeline):
            self.timeline: Timeline | None = db
            self._owns_timeline = False
            self._db_template = db.path if db.path != ":memory:" else None
        elif db is not None:
            self._db_template = os.fspath(db)
            self.timeline = Timeline(
                self._db_template.replace("{pid}", str(os.getpid())), max_samples=max_samples
            )
            self._owns_timeline = True
        else:
            self.timeline = None
            self._owns_timeline = False
        self._max_samples = max_samples
        self._user_probes = list(probes) if probes is not None else None
        self._gc_pauses = gc_pauses
        self._investigate = investigate
        self._investigator_config = investigator or InvestigatorConfig()
        self.diagnosis_config = diagnosis
        self._ring_size = ring_size
        self._history_size = history_size
        self._observers: list[Observer] = list(observers)
        self.sampler: Sampler | None = None
        self.verdict: Verdict | None = None
        self._evidence: Evidence | None = None
        self._forked_from: int | None = None
        self._fresh_parts()

    def _fresh_parts(self) -> None:
        """The per-process parts: probes, footprint, investigator, history (again in a forked child)."""
        self._pauses = GcPauseTimer() if self._gc_pauses and self._user_probes is None else None
        self.footprint = OwnFootprint()
        self.footprint.timeline_path = self.timeline.path if self.timeline is not None else None
        if self._user_probes is not None:
            self._probes: list[Probe[Any]] = list(self._user_probes)
        else:
            self._probes = default_probes(gc_pauses=self._pauses)
            self._probes.append(OwnFootprintProbe(self.footprint))
        self.investigator = (
            Investigator(self._investigator_config, footprint=self.footprint) if self._investigate else None
        )
        self._history = _History(self._history_size)

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether this monitor samples now (in this process)."""
        return self.sampler is not None and self.sampler.running and self.verdict is None

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(tick)`` after every tick from now on (a guard, an exporter)."""
        self._observers.append(observer)
        if self.sampler is not None:
            self.sampler.observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling ``observer`` (a no-op if it is not there)."""
        for seq in (self._observers, self.sampler.observers if self.sampler is not None else []):
            with contextlib.suppress(ValueError):
                seq.remove(observer)

    def start(self) -> Monitor:
        """Start sampling (idempotent)."""
        return self._start(first_sample_now=True)

    def _start(self, *, first_sample_now: bool) -> Monitor:
        if self.sampler is not None:
            return self
        if self._pauses is not None:
            self._pauses.install()
        observers: list[Observer] = [self._keep_history]
        if self.investigator is not None:
            observers.append(self.investigator)
        observers.extend(self._observers)
        self.sampler = Sampler(
            self._probes,
            interval=self.interval,
            ramp_from=self.ramp_from,
            ring_size=self._ring_size,
            timeline=self.timeline,
            observers=observers,
        )
        sampler = self.sampler
        self.footprint.ring_len = lambda: len(sampler.ring)
        _watch_for_fork()
        _running.add(self)
        self.sampler.start(first_sample_now=first_sample_now)
        return self

    def _keep_history(self, tick: Tick) -> None:
        self._history.add(tick.sample)

    def stop(self) -> Verdict:
        """Stop sampling, conclude the investigation and return (and record) the verdict.

        A second call returns the same verdict.
        """
        if self.verdict is not None:
            return self.verdict
        sampler = self.sampler
        if sampler is None:
            raise UsageError("this monitor was never started (call start() first)")
        _running.discard(self)
        sampler.stop(final_sample=False)
        if self.investigator is not None:
            # close an open tracemalloc window first: pymalloc cannot be read while it traces
            self.investigator.conclude(sampler.tick())
        sampler.refresh_availability()
        sampler.sample_once(force_all=True)
        if self.investigator is not None:
            self._evidence = self.investigator.finish(sampler.tick())
        trim = self._trim_if_worth_it(sampler)
        if trim is not None:
            self._evidence = dataclasses.replace(self._evidence or Evidence(), trim=trim)
        if self._pauses is not None:
            self._pauses.uninstall()
        self.verdict = self.diagnose()
        sampler.record(EVENT_VERDICT, self.verdict.to_json())
        if self.timeline is not None and self._owns_timeline:
            self.timeline.close()
        return self.verdict

    def _trim_if_worth_it(self, sampler: Sampler) -> TrimEvidence | None:
        """``malloc_trim(0)`` when glibc holds enough free bytes; recorded as an action and as evidence."""
        if not self.trim_at_stop:
            return None
        free = getattr(sampler.latest("libc"), "free_bytes", None)
        if free is None or free < TRIM_WORTH_BYTES:
            return None
        try:
            result = trim_malloc(f"end of run: glibc held {free:,} free bytes")
        except Exception as exc:
            sampler.observer_errors.append(f"malloc_trim failed: {exc!r}")
            return None
        sampler.record(EVENT_ACTION, result.to_json())
        evidence = TrimEvidence(result.rss_before_bytes or 0, result.rss_after_bytes or 0, result.freed_bytes)
        sampler.record(EVENT_TRIM, evidence.to_json())
        return evidence

    def _abandon(self) -> None:
        """Stop without a verdict (for :func:`reset`): no trim, no final sample."""
        _running.discard(self)
        if self.sampler is not None:
            self.sampler.stop(final_sample=False)
            if self.investigator is not None:
                with contextlib.suppress(Exception):
                    self.investigator.conclude(self.sampler.tick())
        if self._pauses is not None:
            self._pauses.uninstall()
        if self.timeline is not None and self._owns_timeline:
            self.timeline.close()

    # -- reading --------------------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """A bounded view of the whole run: an evenly spaced digest, then the recent samples in full."""
        if self.sampler is None:
            return []
        recent = self.sampler.samples()
        if not recent:
            return self._history.samples()
        first = recent[0].mono
        return [s for s in self._history.samples() if s.mono < first] + recent

    def events(self) -> list[Event]:
        """The latest events recorded in this run (windows, actions, the verdict), oldest first."""
        return list(self.sampler.events) if self.sampler is not None else []

    def evidence(self) -> Evidence:
        """What attribution has found so far."""
        if self._evidence is not None:
            return self._evidence
        if self.investigator is not None:
            return self.investigator.evidence()
        return Evidence()

    def diagnose(self) -> Verdict:
        """The verdict on what has been sampled so far (its cost is bounded however long the run)."""
        if self.sampler is None:
            raise UsageError("this monitor was never started (call start() first)")
        if self._forked_from is not None and self.verdict is not None:
            return self.verdict
        return classify(
            self.samples(), self.evidence(), self.diagnosis_config, total_samples=self.sampler.ticks
        )

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.sampler is not None and self.verdict is None and self._forked_from is None:
            self.stop()

    # -- fork -----------------------------------------------------------------------------------------

    def _after_fork_in_child(self, parent_pid: int) -> None:
        """In a forked child: drop what belongs to the parent, then restart or stay stopped."""
        if self.investigator is not None:
            self.investigator.abandon_in_child()
        if self._pauses is not None:
            self._pauses._install_lock = threading.Lock()  # the parent's thread may have held it
            self._pauses.uninstall()  # the parent's gc callback came along in the copy
        if self.on_fork == "restart" and self.sampler is not None:
            try:
                self._restart_in_child(parent_pid)
                return
            except Exception as exc:  # a child that cannot write its file still runs, unwatched
                _fork.errors.append(f"monitor restart in pid {os.getpid()} failed: {exc!r}")
        # inert: the parent's sampler and timeline are not ours; stop() and diagnose() say so
        _running.discard(self)
        self._forked_from = parent_pid
        self.verdict = _forked_verdict(parent_pid)

    def _restart_in_child(self, parent_pid: int) -> None:
        timeline: Timeline | None = None
        if self._db_template is not None:
            timeline = Timeline(_fork.pid_path(self._db_template), max_samples=self._max_samples)
            with contextlib.suppress(Exception):
                timeline.set_meta(pid=os.getpid(), parent_pid=parent_pid, interval=self.interval)
        self.timeline = timeline
        self._owns_timeline = timeline is not None
        self.sampler = None
        self._evidence = None
        self._fresh_parts()
        # the first sample (and the investigator's first cache scan) is taken in the new thread,
        # not here: this runs inside os.fork() and must not delay the child
        self._start(first_sample_now=False)


def _forked_verdict(parent_pid: int) -> Verdict:
    return classify([], Evidence(notes=(f"this monitor belongs to process {parent_pid}; not sampled here",)))


_running: weakref.WeakSet[Monitor] = weakref.WeakSet()
_global_lock = threading.Lock()
_global: Monitor | None = None
_global_options: dict[str, Any] = {}
_last_verdict: Verdict | None = None
_parent_pid = os.getpid()


def _before_fork() -> None:
    global _parent_pid
    _parent_pid = os.getpid()


def _in_child() -> None:
    global _global_lock
    _global_lock = threading.Lock()
    from .attribution._caches import _WATCHLIST

    _WATCHLIST._lock = threading.Lock()
    for mon in list(_running):
        mon._after_fork_in_child(_parent_pid)


_hooked = False
_hook_lock = threading.Lock()


def _watch_for_fork() -> None:
    global _hooked
    with _hook_lock:
        if not _hooked:
            _hooked = True
            _fork.on_fork(before=_before_fork, child=_in_child)


def start(**options: Any) -> Monitor:
    """Start the process-wide monitor (options as :class:`Monitor`).

    A second call with the same options (or none) returns the running monitor; different options
    raise :class:`UsageError` (stop it first).
    """
    global _global, _global_options
    with _global_lock:
        if _global is not None:
            if options and options != _global_options:
                raise UsageError(
                    f"memwarden is already running with {_describe(_global_options)}; "
                    "call memwarden.stop() first to start it with other options"
                )
            return _global
        _global = Monitor(**options).start()
        _global_options = dict(options)
        return _global


def _describe(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "the default options"


def stop() -> Verdict:
    """Stop the process-wide monitor and return its verdict (a second call returns it again)."""
    global _global, _last_verdict
    with _global_lock:
        mon, _global = _global, None
        if mon is None:
            if _last_verdict is not None:
                return _last_verdict
            raise UsageError("memwarden was not started (call memwarden.start() first)")
    _last_verdict = mon.stop()
    return _last_verdict


def reset() -> None:
    """Forget everything process-wide: stop the monitor without a verdict, empty the watch list.

    For tests and notebooks; a service has no need of it.
    """
    global _global, _last_verdict, _global_options
    with _global_lock:
        mon, _global = _global, None
        _last_verdict = None
        _global_options = {}
    if mon is not None:
        mon._abandon()
    from .attribution._caches import _WATCHLIST
    from .sampler import PackedMetrics

    _WATCHLIST.clear()
    PackedMetrics._interned.clear()


def diagnose(
    source: Monitor | Timeline | str | os.PathLike[str] | None = None,
    *,
    config: DiagnosisConfig | None = None,
) -> Verdict:
    """The verdict: of the process-wide monitor so far (no argument), of a :class:`Monitor`, or of a
    recorded run (a :class:`Timeline` or the path of a timeline file, with the evidence stored in it).
    """
    if source is None:
        with _global_lock:
            mon = _global
        if mon is None:
            raise UsageError("memwarden was not started (call memwarden.start() first, or give a timeline)")
        return mon.diagnose()
    if isinstance(source, Monitor):
        return source.diagnose()
    if isinstance(source, Timeline):
        return _diagnose_recorded(source, config)
    if isinstance(source, (str, os.PathLike)):
        with Timeline.open_existing(Path(source)) as timeline:
            return _diagnose_recorded(timeline, config)
    raise UsageError(
        f"diagnose() takes a Monitor, a Timeline or a timeline path, not {type(source).__name__}"
    )


def _diagnose_recorded(timeline: Timeline, config: DiagnosisConfig | None) -> Verdict:
    """The verdict on a recorded run, from a bounded digest of its samples (a week reads in under 1 s)."""
    events = [e for e in timeline.events() if e.kind != EVENT_VERDICT]
    digest = timeline.sample_digest()
    return classify(digest.samples, Evidence.from_events(events), config, total_samples=digest.total)
