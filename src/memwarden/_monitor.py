"""The Python API for services and notebooks: start watching, ask for a verdict, stop.

::

    import memwarden

    memwarden.start(interval=10, db="/var/tmp/app-memory.db")   # a daemon thread; returns at once
    ...
    verdict = memwarden.diagnose()      # what memory did so far, as plain data
    memwarden.stop()

    with memwarden.Monitor(interval=0.5) as mon:   # or scoped to a block
        work()
    print(mon.verdict.summary)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .attribution._investigator import Investigator, InvestigatorConfig
from .diagnosis._classify import DiagnosisConfig, classify
from .diagnosis._evidence import EVENT_VERDICT, Evidence
from .diagnosis._verdict import Verdict
from .exceptions import UsageError
from .probes import GcPauseTimer, default_probes
from .probes._base import Probe
from .probes.own import OwnFootprint, OwnFootprintProbe
from .sampler import Sampler, validate_interval
from .timeline import Timeline


class Monitor:
    """Samples every memory layer of this process in a daemon thread and diagnoses what it sees.

    ``interval`` is the tick in seconds (10 s suits production; ``memwarden run`` uses 1 s).
    ``db`` is a timeline file to write (or an open :class:`Timeline`); ``None`` keeps samples only in
    memory. ``investigate`` opens tracemalloc windows when growth is suspected (see
    :mod:`memwarden.attribution._investigator`); turn it off to only sample.
    """

    def __init__(
        self,
        *,
        interval: float = 10.0,
        db: str | Timeline | None = None,
        probes: Sequence[Probe[Any]] | None = None,
        investigate: bool = True,
        investigator: InvestigatorConfig | None = None,
        diagnosis: DiagnosisConfig | None = None,
        ring_size: int = 600,
        max_samples: int = 100_000,
        gc_pauses: bool = True,
    ) -> None:
        self.interval = validate_interval(interval)
        if isinstance(db, Timeline):
            self.timeline: Timeline | None = db
            self._owns_timeline = False
        elif db is not None:
            self.timeline = Timeline(db, max_samples=max_samples)
            self._owns_timeline = True
        else:
            self.timeline = None
            self._owns_timeline = False
        self._pauses = GcPauseTimer() if gc_pauses and probes is None else None
        self.footprint = OwnFootprint()
        self.footprint.timeline_path = self.timeline.path if self.timeline is not None else None
        self._probes = list(probes) if probes is not None else default_probes(gc_pauses=self._pauses)
        if probes is None:
            self._probes.append(OwnFootprintProbe(self.footprint))
        self.investigator = Investigator(investigator, footprint=self.footprint) if investigate else None
        self.diagnosis_config = diagnosis
        self._ring_size = ring_size
        self.sampler: Sampler | None = None
        self.verdict: Verdict | None = None
        self._evidence: Evidence | None = None

    def start(self) -> Monitor:
        """Start sampling (idempotent)."""
        if self.sampler is not None:
            return self
        if self._pauses is not None:
            self._pauses.install()
        observers = [self.investigator] if self.investigator is not None else []
        self.sampler = Sampler(
            self._probes,
            interval=self.interval,
            ring_size=self._ring_size,
            timeline=self.timeline,
            observers=list(observers),
        )
        sampler = self.sampler
        self.footprint.ring_len = lambda: len(sampler.ring)
        self.sampler.start()
        return self

    def stop(self) -> Verdict:
        """Stop sampling, conclude the investigation and return (and record) the verdict."""
        if self.sampler is None:
            raise UsageError("this monitor was never started (call start() first)")
        self.sampler.stop(final_sample=False)
        if self.investigator is not None:
            # close an open tracemalloc window first: pymalloc cannot be read while it traces
            self.investigator.conclude(self.sampler)
        self.sampler.refresh_availability()
        self.sampler.sample_once(force_all=True)
        if self.investigator is not None:
            self._evidence = self.investigator.finish(self.sampler)
        if self._pauses is not None:
            self._pauses.uninstall()
        self.verdict = self.diagnose()
        if self.timeline is not None:
            self.timeline.add_event(EVENT_VERDICT, self.verdict.to_json())
            if self._owns_timeline:
                self.timeline.close()
        return self.verdict

    def diagnose(self) -> Verdict:
        """The verdict on what has been sampled so far (the whole timeline when there is one)."""
        if self.sampler is None:
            raise UsageError("this monitor was never started (call start() first)")
        samples = self.sampler.samples()
        if self.timeline is not None and self.timeline.sample_count() > len(samples):
            samples = self.timeline.samples()
        evidence = self._evidence
        if evidence is None and self.investigator is not None:
            evidence = self.investigator.evidence()
        return classify(samples, evidence, self.diagnosis_config)

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.sampler is not None and self.verdict is None:
            self.stop()


_global_lock = threading.Lock()
_global: Monitor | None = None


def start(**options: Any) -> Monitor:
    """Start the process-wide monitor (options as :class:`Monitor`); a second call returns the same one."""
    global _global
    with _global_lock:
        if _global is None:
            _global = Monitor(**options).start()
        return _global


def stop() -> Verdict:
    """Stop the process-wide monitor and return its verdict."""
    global _global
    with _global_lock:
        if _global is None:
            raise UsageError("memwarden was not started (call memwarden.start() first)")
        mon, _global = _global, None
    return mon.stop()


def diagnose() -> Verdict:
    """The process-wide monitor's verdict so far, without stopping it."""
    with _global_lock:
        mon = _global
    if mon is None:
        raise UsageError("memwarden was not started (call memwarden.start() first)")
    return mon.diagnose()


def diagnose_timeline(timeline: Timeline, config: DiagnosisConfig | None = None) -> Verdict:
    """Re-run the decision on a recorded timeline, with the evidence stored in it."""
    events = [e for e in timeline.events() if e.kind != EVENT_VERDICT]
    return classify(timeline.samples(), Evidence.from_events(events), config)
