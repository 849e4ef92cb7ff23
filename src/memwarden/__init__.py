"""memwarden: find, explain and stop memory growth in long-running Python services.

Importing memwarden starts nothing: sampling begins with :func:`start`, a :class:`Monitor`, or the
``memwarden run`` command.

The flow is one way: probes (one per layer) -> :class:`Sampler` (a daemon thread) -> :class:`Timeline`
(SQLite) -> attribution (live evidence) -> diagnosis (a pure :class:`Verdict`) -> reporters, exporters
and guards, which plug in as observers of each :class:`Tick`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from ._version import __version__

if TYPE_CHECKING:
    from ._monitor import Monitor, diagnose, reset, start, stop
    from .attribution import CacheInfo, InvestigatorConfig, find_caches, find_holders, unwatch, watch
    from .diagnosis import DiagnosisConfig, Evidence, Holder, Site, TypeGrowth, Verdict
    from .exceptions import MemwardenError, ProbeUnavailable, ProgramNotFound, TimelineError, UsageError
    from .guards.actions import ActionResult
    from .guards.gpu import CacheRelease, EmptyCachePolicy
    from .probes import default_probes
    from .probes.tracing import TracemallocWindow
    from .sampler import Observer, Sampler, Tick
    from .timeline import Event, Sample, Timeline

# Each public name and the module it lives in: imported on first use (PEP 562), so that
# `import memwarden` (and the pytest plugin, loaded in every pytest run) costs almost nothing.
_LAZY = {
    "ActionResult": ".guards.actions",
    "CacheInfo": ".attribution",
    "CacheRelease": ".guards.gpu",
    "DiagnosisConfig": ".diagnosis",
    "EmptyCachePolicy": ".guards.gpu",
    "Event": ".timeline",
    "Evidence": ".diagnosis",
    "Holder": ".diagnosis",
    "InvestigatorConfig": ".attribution",
    "MemwardenError": ".exceptions",
    "Monitor": "._monitor",
    "Observer": ".sampler",
    "ProbeUnavailable": ".exceptions",
    "ProgramNotFound": ".exceptions",
    "Sample": ".timeline",
    "Sampler": ".sampler",
    "Site": ".diagnosis",
    "Tick": ".sampler",
    "Timeline": ".timeline",
    "TimelineError": ".exceptions",
    "TracemallocWindow": ".probes.tracing",
    "TypeGrowth": ".diagnosis",
    "UsageError": ".exceptions",
    "Verdict": ".diagnosis",
    "default_probes": ".probes",
    "diagnose": "._monitor",
    "find_caches": ".attribution",
    "find_holders": ".attribution",
    "reset": "._monitor",
    "start": "._monitor",
    "stop": "._monitor",
    "unwatch": ".attribution",
    "watch": ".attribution",
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)

__all__ = [
    "ActionResult",
    "CacheInfo",
    "CacheRelease",
    "DiagnosisConfig",
    "EmptyCachePolicy",
    "Event",
    "Evidence",
    "Holder",
    "InvestigatorConfig",
    "MemwardenError",
    "Monitor",
    "Observer",
    "ProbeUnavailable",
    "ProgramNotFound",
    "Sample",
    "Sampler",
    "Site",
    "Tick",
    "Timeline",
    "TimelineError",
    "TracemallocWindow",
    "TypeGrowth",
    "UsageError",
    "Verdict",
    "__version__",
    "default_probes",
    "diagnose",
    "find_caches",
    "find_holders",
    "reset",
    "start",
    "stop",
    "unwatch",
    "watch",
]
