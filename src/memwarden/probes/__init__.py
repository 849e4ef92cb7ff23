"""One probe per memory layer, all with the same small protocol (see :mod:`memwarden.probes._base`).

| layer      | probe            | reads                                                           | cost   |
|------------|------------------|-----------------------------------------------------------------|--------|
| process    | ProcessProbe     | RSS/PSS/USS/anon/swap, the container's (cgroup) limit and usage | cheap  |
| objects    | ObjectsProbe     | allocated blocks, gc counts and collections, gc pause times     | cheap  |
| pymalloc   | PymallocProbe    | arenas, pools, size classes, free bytes                         | costly |
| libc       | LibcProbe        | glibc mallinfo2: in-use, free, mmapped, releasable              | cheap  |
| tracing    | TracingProbe     | tracemalloc's traced bytes (only while tracing)                 | cheap  |
| gpu        | GpuProbe         | PyTorch's caching allocator and NVML (only if CUDA is in use)   | cheap  |
"""

from __future__ import annotations

from typing import Any

from ._base import Availability, Probe, flatten, to_jsonable
from .gpu import GpuDeviceReading, GpuProbe, GpuReading
from .libc import LibcProbe, LibcReading, TrimResult, malloc_trim
from .objects import (
    Census,
    GcPauseStats,
    GcPauseTimer,
    ObjectsProbe,
    ObjectsReading,
    TypeCount,
    census,
    census_diff,
)
from .process import CgroupMemory, ProcessProbe, ProcessReading, read_cgroup_memory
from .pymalloc import (
    PymallocProbe,
    PymallocReading,
    SizeClassUsage,
    capture_debugmallocstats,
    parse_debugmallocstats,
)
from .tracing import TracemallocWindow, TracingProbe, TracingReading


def default_probes(*, gc_pauses: GcPauseTimer | None = None) -> list[Probe[Any]]:
    """A fresh probe for every layer, reading this process."""
    return [
        ProcessProbe(rollup_every_s=10.0),
        ObjectsProbe(pause_timer=gc_pauses),
        PymallocProbe(),
        LibcProbe(),
        TracingProbe(),
        GpuProbe(),
    ]


__all__ = [
    "Availability",
    "Census",
    "CgroupMemory",
    "GcPauseStats",
    "GcPauseTimer",
    "GpuDeviceReading",
    "GpuProbe",
    "GpuReading",
    "LibcProbe",
    "LibcReading",
    "ObjectsProbe",
    "ObjectsReading",
    "Probe",
    "ProcessProbe",
    "ProcessReading",
    "PymallocProbe",
    "PymallocReading",
    "SizeClassUsage",
    "TracemallocWindow",
    "TracingProbe",
    "TracingReading",
    "TrimResult",
    "TypeCount",
    "capture_debugmallocstats",
    "census",
    "census_diff",
    "default_probes",
    "flatten",
    "malloc_trim",
    "parse_debugmallocstats",
    "read_cgroup_memory",
    "to_jsonable",
]
