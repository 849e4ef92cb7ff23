"""memwarden: find, explain and stop memory growth in long-running Python services.

Importing memwarden starts nothing: sampling begins with :func:`start`, a :class:`Monitor`, or the
``memwarden run`` command.
"""

from __future__ import annotations

from ._monitor import Monitor, diagnose, diagnose_timeline, start, stop
from ._version import __version__
from .diagnosis import DiagnosisConfig, InvestigatorConfig, Verdict
from .exceptions import MemwardenError, ProbeUnavailable, ProgramNotFound, TimelineError, UsageError
from .sampler import Sampler
from .timeline import Sample, Timeline

__all__ = [
    "DiagnosisConfig",
    "InvestigatorConfig",
    "MemwardenError",
    "Monitor",
    "ProbeUnavailable",
    "ProgramNotFound",
    "Sample",
    "Sampler",
    "Timeline",
    "TimelineError",
    "UsageError",
    "Verdict",
    "__version__",
    "diagnose",
    "diagnose_timeline",
    "start",
    "stop",
]
