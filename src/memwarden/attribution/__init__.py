"""Attribution: live work that finds *where* memory grows and *who holds it*, as evidence.

It runs in the monitor's sampler thread (the :class:`Investigator` is an observer) or on demand, and
costs something, so it is budgeted per hour of wall time. It reads the process and produces plain
evidence (:mod:`memwarden.diagnosis`'s types); it never acts on the host: freeing memory is the
guards' job (:mod:`memwarden.guards`).

| module           | what it finds                                                          |
|------------------|------------------------------------------------------------------------|
| `_investigator`  | when to open a tracemalloc window, and what the window saw             |
| `_holders`       | the path from a root that keeps objects alive                          |
| `_caches`        | `lru_cache`, cachetools and watched containers, and how they grow      |
| `_gpu_history`   | PyTorch's allocation history: the lines that allocate live CUDA memory |
"""

from __future__ import annotations

from ._caches import CacheInfo, find_caches, unwatch, watch
from ._holders import find_holders
from ._investigator import Investigator, InvestigatorConfig

__all__ = [
    "CacheInfo",
    "Investigator",
    "InvestigatorConfig",
    "find_caches",
    "find_holders",
    "unwatch",
    "watch",
]
