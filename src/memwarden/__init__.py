"""memwarden: find, explain and stop memory growth in long-running Python services.

Importing memwarden starts nothing: sampling begins with :func:`start`, a :class:`Monitor`, or the
``memwarden run`` command.
"""

from __future__ import annotations

from ._monitor import Monitor, diagnose, diagnose_timeline, start, stop
from ._version import __version__
from .attribution import InvestigatorConfig
from .attribution._caches import find_caches, unwatch, watch
from .attribution._holders import find_holders
from .diagnosis import DiagnosisConfig, Verdict, classify
from .exceptions import MemwardenError, ProbeUnavailable, ProgramNotFound, TimelineError, UsageError
from .guards.gpu import EmptyCachePolicy
from .probes import default_probes
from .probes.tracing import TracemallocWindow
from .sampler import Sampler
from .timeline import Sample, Timeline

__all__ = [
    "DiagnosisConfig",
    "EmptyCachePolicy",
    "InvestigatorConfig",
    "MemwardenError",
    "Monitor",
    "ProbeUnavailable",
    "ProgramNotFound",
    "Sample",
    "Sampler",
    "Timeline",
    "TimelineError",
    "TracemallocWindow",
    "UsageError",
    "Verdict",
    "__version__",
    "classify",
    "default_probes",
    "diagnose",
    "diagnose_timeline",
    "find_caches",
    "find_holders",
    "start",
    "stop",
    "unwatch",
    "watch",
]
