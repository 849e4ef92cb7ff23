"""The metric catalogue: every metric memwarden records, with its unit, kind and help.

Each metric is declared once, on the field of its probe's reading
(``rss_bytes: int | None = dataclasses.field(metadata=metric("bytes", "gauge", "..."))``, see
:func:`memwarden.probes._base.metric`). This module gathers those declarations into
:data:`CATALOGUE`, keyed by the flat name the sampler stores (``"<layer>.<field>"``, as
:func:`memwarden.probes.flatten` writes it), and gives each metric a name constant
(:data:`PROCESS_RSS_BYTES` is ``"process.rss_bytes"``). Code that reads a metric uses the
constant, never a retyped string: the constants are made by :func:`name_of`, which raises when
the module is imported if the field was renamed or declares no metric, so a rename fails loudly
instead of silently emptying a series.

Units follow OpenMetrics base units: ``"bytes"``, ``"seconds"``, ``"ratio"`` (0 to 1), and
``""`` (no unit) for plain counts and flags. Kinds are ``"gauge"`` (goes up and down) and
``"counter"`` (only grows while the process lives). :attr:`MetricSpec.prometheus_name` follows
Prometheus naming: ``memwarden_<layer>_<field>``, the unit as suffix, ``_total`` for counters.

Importing this module reads nothing: it looks at dataclass fields only.
``python -m memwarden.metrics`` prints the Markdown table of ``docs/reference/metrics.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from ..exceptions import UnknownMetric, UsageError
from ..probes._base import MetricKind, MetricUnit, declared_metric
from ..probes.gpu import GpuProbe, GpuReading
from ..probes.libc import LibcProbe, LibcReading
from ..probes.objects import ObjectsProbe, ObjectsReading
from ..probes.own import OwnFootprintProbe, OwnReading
from ..probes.process import ProcessProbe, ProcessReading
from ..probes.pymalloc import PymallocProbe, PymallocReading
from ..probes.tracing import TracingProbe, TracingReading

__all__ = [
    "CATALOGUE",
    "READINGS",
    "MetricSpec",
    "UnknownMetric",
    "markdown_table",
    "metrics_of",
    "name_of",
    "spec",
    # the name constants, one per metric, <LAYER>_<FIELD>
    "GPU_ACTIVE_BYTES",
    "GPU_ALLOCATED_BYTES",
    "GPU_ALLOC_RETRIES",
    "GPU_DEVICE_COUNT",
    "GPU_INACTIVE_SPLIT_BYTES",
    "GPU_NVML_TOTAL_BYTES",
    "GPU_NVML_USED_BYTES",
    "GPU_OOMS",
    "GPU_PEAK_ALLOCATED_BYTES",
    "GPU_PEAK_RESERVED_BYTES",
    "GPU_RESERVED_BYTES",
    "GPU_SEGMENTS",
    "LIBC_ARENA_BYTES",
    "LIBC_FASTBIN_FREE_BYTES",
    "LIBC_FREE_BYTES",
    "LIBC_FREE_CHUNKS",
    "LIBC_IN_USE_BYTES",
    "LIBC_MMAPPED_BYTES",
    "LIBC_MMAPPED_CHUNKS",
    "LIBC_TOP_RELEASABLE_BYTES",
    "MEMWARDEN_ATTRIBUTED_RSS_BYTES",
    "MEMWARDEN_RING_SAMPLES",
    "MEMWARDEN_TIMELINE_BYTES",
    "MEMWARDEN_WORK_S",
    "OBJECTS_ALLOCATED_BLOCKS",
    "OBJECTS_GC_COLLECTED_TOTAL",
    "OBJECTS_GC_COLLECTIONS_GEN0",
    "OBJECTS_GC_COLLECTIONS_GEN1",
    "OBJECTS_GC_COLLECTIONS_GEN2",
    "OBJECTS_GC_COUNT_GEN0",
    "OBJECTS_GC_COUNT_GEN1",
    "OBJECTS_GC_COUNT_GEN2",
    "OBJECTS_GC_ENABLED",
    "OBJECTS_GC_FROZEN",
    "OBJECTS_GC_GARBAGE",
    "OBJECTS_GC_PAUSES_GEN2",
    "OBJECTS_GC_PAUSES_TOTAL",
    "OBJECTS_GC_PAUSE_MAX_S",
    "OBJECTS_GC_PAUSE_TOTAL_S",
    "OBJECTS_GC_PAUSE_TOTAL_S_GEN2",
    "OBJECTS_GC_UNCOLLECTABLE_TOTAL",
    "PROCESS_ANON_BYTES",
    "PROCESS_CGROUP_HIGH_EVENTS",
    "PROCESS_CGROUP_LIMIT_BYTES",
    "PROCESS_CGROUP_MAX_EVENTS",
    "PROCESS_CGROUP_OOM_EVENTS",
    "PROCESS_CGROUP_OOM_KILLS",
    "PROCESS_CGROUP_PEAK_BYTES",
    "PROCESS_CGROUP_USAGE_BYTES",
    "PROCESS_CGROUP_VERSION",
    "PROCESS_PSS_BYTES",
    "PROCESS_RSS_BYTES",
    "PROCESS_SWAP_BYTES",
    "PROCESS_USS_BYTES",
    "PROCESS_VMS_BYTES",
    "PYMALLOC_ALIGNMENT_BYTES",
    "PYMALLOC_ALLOCATED_BLOCK_BYTES",
    "PYMALLOC_ARENAS_ALLOCATED_TOTAL",
    "PYMALLOC_ARENAS_CURRENT",
    "PYMALLOC_ARENAS_HIGHWATER",
    "PYMALLOC_ARENAS_RECLAIMED",
    "PYMALLOC_ARENA_BYTES",
    "PYMALLOC_ARENA_SIZE_BYTES",
    "PYMALLOC_AVAILABLE_BLOCK_BYTES",
    "PYMALLOC_BLOCKS_IN_USE",
    "PYMALLOC_FRAGMENTATION",
    "PYMALLOC_POOLS_IN_USE",
    "PYMALLOC_POOL_HEADER_BYTES",
    "PYMALLOC_POOL_SIZE_BYTES",
    "PYMALLOC_QUANTIZATION_BYTES",
    "PYMALLOC_SIZE_CLASS_COUNT",
    "PYMALLOC_SMALL_BLOCK_THRESHOLD",
    "PYMALLOC_TOTAL_BYTES",
    "PYMALLOC_UNUSED_POOL_BYTES",
    "PYMALLOC_UTILISATION",
    "TRACING_OVERHEAD_BYTES",
    "TRACING_PEAK_TRACED_BYTES",
    "TRACING_TRACEBACK_FRAMES",
    "TRACING_TRACED_BYTES",
]

#: The reading class of every layer the sampler records, in the order reports show the layers.
READINGS: Mapping[str, type[Any]] = MappingProxyType(
    {
        ProcessProbe.layer: ProcessReading,
        ObjectsProbe.layer: ObjectsReading,
        PymallocProbe.layer: PymallocReading,
        LibcProbe.layer: LibcReading,
        TracingProbe.layer: TracingReading,
        GpuProbe.layer: GpuReading,
        OwnFootprintProbe.layer: OwnReading,
    }
)

_LAYER_OF: Mapping[type[Any], str] = MappingProxyType({cls: layer for layer, cls in READINGS.items()})

#: Words of a field name that say its unit, dropped from the Prometheus name (the unit is its suffix).
_UNIT_WORDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "bytes": frozenset({"bytes"}),
        "seconds": frozenset({"s", "seconds"}),
        "ratio": frozenset({"ratio"}),
        "": frozenset(),
    }
)
_PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One metric: its flat ``name`` (``"<layer>.<field>"``), where it is declared, and what it is.

    ``unit`` is an OpenMetrics base unit (``"bytes"``, ``"seconds"``, ``"ratio"``) or ``""`` for
    a plain count; ``kind`` is ``"gauge"`` or ``"counter"``; ``help`` is one line for people.
    """

    name: str
    layer: str
    field: str
    unit: MetricUnit
    kind: MetricKind
    help: str
    prometheus_base: str | None = None
    """The words of the Prometheus name after the layer, when they differ from the field's."""

    @property
    def prometheus_name(self) -> str:
        """The metric's name for Prometheus/OpenMetrics.

        ``memwarden_<layer>_<field>`` (just ``memwarden_<field>`` for memwarden's own layer), with
        the unit's words taken out of the field (``_s``, ``_bytes``) and put back as a suffix,
        and ``_total`` last for a counter: ``process.rss_bytes`` is ``memwarden_process_rss_bytes``,
        ``objects.gc_pause_total_s`` is ``memwarden_objects_gc_pause_seconds_total``.
        """
        drop = set(_UNIT_WORDS[self.unit])
        if self.kind == "counter":
            drop.add("total")
        base = self.prometheus_base if self.prometheus_base is not None else self.field
        words = ["memwarden"] if self.layer == "memwarden" else ["memwarden", self.layer]
        words += [w for w in base.split("_") if w and w not in drop]
        if self.unit:
            words.append(self.unit)
        if self.kind == "counter":
            words.append("total")
        name = "_".join(words)
        if not _PROMETHEUS_NAME.match(name):  # pragma: no cover - the catalogue test keeps this out
            raise UsageError(f"{self.name}: {name!r} is not a valid Prometheus name")
        return name


def _build() -> dict[str, MetricSpec]:
    catalogue: dict[str, MetricSpec] = {}
    for layer, cls in READINGS.items():
        for f in dataclasses.fields(cls):
            declared = declared_metric(f)
            if declared is None:
                continue
            name = f"{layer}.{f.name}"
            catalogue[name] = MetricSpec(
                name=name,
                layer=layer,
                field=f.name,
                unit=declared.unit,
                kind=declared.kind,
                help=declared.help,
                prometheus_base=declared.prometheus,
            )
    return catalogue


#: Every metric memwarden records, by flat name, layer by layer in declaration order.
CATALOGUE: Mapping[str, MetricSpec] = MappingProxyType(_build())


def _close_matches(name: str) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def spec(name: str) -> MetricSpec:
    """The spec of the metric ``name`` (``"process.rss_bytes"``); :class:`UnknownMetric` if none."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownMetric(name, "no probe declares this metric" + _close_matches(name)) from None


def metrics_of(layer: str) -> tuple[MetricSpec, ...]:
    """The specs of one layer's metrics, in declaration order; :class:`UnknownMetric` for an unknown layer."""
    if layer not in READINGS:
        raise UnknownMetric(layer, f"no such layer (layers: {', '.join(READINGS)})")
    return tuple(s for s in CATALOGUE.values() if s.layer == layer)


def name_of(reading: type[Any], field: str) -> str:
    """The flat name of the metric that ``reading``'s field ``field`` declares.

    Raises :class:`UnknownMetric` when ``reading`` is no layer's reading class, has no field
    of that name, or the field declares no metric. The name constants of this module are made
    with it, so a renamed field fails when :mod:`memwarden.metrics` is imported.
    """
    layer = _LAYER_OF.get(reading)
    where = f"{getattr(reading, '__name__', reading)}.{field}"
    if layer is None:
        raise UnknownMetric(
            where, f"not a reading of any layer (readings: {', '.join(c.__name__ for c in _LAYER_OF)})"
        )
    name = f"{layer}.{field}"
    if name in CATALOGUE:
        return name
    if field in {f.name for f in dataclasses.fields(reading)}:
        raise UnknownMetric(name, f"{where} declares no metric (it is not in the time series)")
    raise UnknownMetric(name, f"{reading.__name__} has no field {field!r}" + _close_matches(name))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The catalogue as a Markdown table: flat name, Prometheus name, unit, kind, help."""
    rows = [
        "| metric | Prometheus name | unit | kind | help |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| `{s.name}` | `{s.prometheus_name}` | {s.unit or '—'} | {s.kind} | {_cell(s.help)} |"
        for s in CATALOGUE.values()
    ]
    return "\n".join(rows) + "\n"


# -- the name constants ---------------------------------------

PROCESS_RSS_BYTES: Final = name_of(ProcessReading, "rss_bytes")
PROCESS_PSS_BYTES: Final = name_of(ProcessReading, "pss_bytes")
PROCESS_USS_BYTES: Final = name_of(ProcessReading, "uss_bytes")
PROCESS_ANON_BYTES: Final = name_of(ProcessReading, "anon_bytes")
PROCESS_SWAP_BYTES: Final = name_of(ProcessReading, "swap_bytes")
PROCESS_VMS_BYTES: Final = name_of(ProcessReading, "vms_bytes")
PROCESS_CGROUP_VERSION: Final = name_of(ProcessReading, "cgroup_version")
PROCESS_CGROUP_LIMIT_BYTES: Final = name_of(ProcessReading, "cgroup_limit_bytes")
PROCESS_CGROUP_USAGE_BYTES: Final = name_of(ProcessReading, "cgroup_usage_bytes")
PROCESS_CGROUP_PEAK_BYTES: Final = name_of(ProcessReading, "cgroup_peak_bytes")
PROCESS_CGROUP_OOM_KILLS: Final = name_of(ProcessReading, "cgroup_oom_kills")
PROCESS_CGROUP_OOM_EVENTS: Final = name_of(ProcessReading, "cgroup_oom_events")
PROCESS_CGROUP_HIGH_EVENTS: Final = name_of(ProcessReading, "cgroup_high_events")
PROCESS_CGROUP_MAX_EVENTS: Final = name_of(ProcessReading, "cgroup_max_events")

OBJECTS_ALLOCATED_BLOCKS: Final = name_of(ObjectsReading, "allocated_blocks")
OBJECTS_GC_ENABLED: Final = name_of(ObjectsReading, "gc_enabled")
OBJECTS_GC_COUNT_GEN0: Final = name_of(ObjectsReading, "gc_count_gen0")
OBJECTS_GC_COUNT_GEN1: Final = name_of(ObjectsReading, "gc_count_gen1")
OBJECTS_GC_COUNT_GEN2: Final = name_of(ObjectsReading, "gc_count_gen2")
OBJECTS_GC_COLLECTIONS_GEN0: Final = name_of(ObjectsReading, "gc_collections_gen0")
OBJECTS_GC_COLLECTIONS_GEN1: Final = name_of(ObjectsReading, "gc_collections_gen1")
OBJECTS_GC_COLLECTIONS_GEN2: Final = name_of(ObjectsReading, "gc_collections_gen2")
OBJECTS_GC_COLLECTED_TOTAL: Final = name_of(ObjectsReading, "gc_collected_total")
OBJECTS_GC_UNCOLLECTABLE_TOTAL: Final = name_of(ObjectsReading, "gc_uncollectable_total")
OBJECTS_GC_GARBAGE: Final = name_of(ObjectsReading, "gc_garbage")
OBJECTS_GC_FROZEN: Final = name_of(ObjectsReading, "gc_frozen")
OBJECTS_GC_PAUSES_TOTAL: Final = name_of(ObjectsReading, "gc_pauses_total")
OBJECTS_GC_PAUSE_TOTAL_S: Final = name_of(ObjectsReading, "gc_pause_total_s")
OBJECTS_GC_PAUSE_MAX_S: Final = name_of(ObjectsReading, "gc_pause_max_s")
OBJECTS_GC_PAUSES_GEN2: Final = name_of(ObjectsReading, "gc_pauses_gen2")
OBJECTS_GC_PAUSE_TOTAL_S_GEN2: Final = name_of(ObjectsReading, "gc_pause_total_s_gen2")

PYMALLOC_ARENA_SIZE_BYTES: Final = name_of(PymallocReading, "arena_size_bytes")
PYMALLOC_POOL_SIZE_BYTES: Final = name_of(PymallocReading, "pool_size_bytes")
PYMALLOC_SIZE_CLASS_COUNT: Final = name_of(PymallocReading, "size_class_count")
PYMALLOC_SMALL_BLOCK_THRESHOLD: Final = name_of(PymallocReading, "small_block_threshold")
PYMALLOC_ARENAS_ALLOCATED_TOTAL: Final = name_of(PymallocReading, "arenas_allocated_total")
PYMALLOC_ARENAS_RECLAIMED: Final = name_of(PymallocReading, "arenas_reclaimed")
PYMALLOC_ARENAS_HIGHWATER: Final = name_of(PymallocReading, "arenas_highwater")
PYMALLOC_ARENAS_CURRENT: Final = name_of(PymallocReading, "arenas_current")
PYMALLOC_ARENA_BYTES: Final = name_of(PymallocReading, "arena_bytes")
PYMALLOC_ALLOCATED_BLOCK_BYTES: Final = name_of(PymallocReading, "allocated_block_bytes")
PYMALLOC_AVAILABLE_BLOCK_BYTES: Final = name_of(PymallocReading, "available_block_bytes")
PYMALLOC_UNUSED_POOL_BYTES: Final = name_of(PymallocReading, "unused_pool_bytes")
PYMALLOC_POOL_HEADER_BYTES: Final = name_of(PymallocReading, "pool_header_bytes")
PYMALLOC_QUANTIZATION_BYTES: Final = name_of(PymallocReading, "quantization_bytes")
PYMALLOC_ALIGNMENT_BYTES: Final = name_of(PymallocReading, "alignment_bytes")
PYMALLOC_TOTAL_BYTES: Final = name_of(PymallocReading, "total_bytes")
PYMALLOC_POOLS_IN_USE: Final = name_of(PymallocReading, "pools_in_use")
PYMALLOC_BLOCKS_IN_USE: Final = name_of(PymallocReading, "blocks_in_use")
PYMALLOC_UTILISATION: Final = name_of(PymallocReading, "utilisation")
PYMALLOC_FRAGMENTATION: Final = name_of(PymallocReading, "fragmentation")

LIBC_ARENA_BYTES: Final = name_of(LibcReading, "arena_bytes")
LIBC_MMAPPED_BYTES: Final = name_of(LibcReading, "mmapped_bytes")
LIBC_MMAPPED_CHUNKS: Final = name_of(LibcReading, "mmapped_chunks")
LIBC_IN_USE_BYTES: Final = name_of(LibcReading, "in_use_bytes")
LIBC_FREE_BYTES: Final = name_of(LibcReading, "free_bytes")
LIBC_FREE_CHUNKS: Final = name_of(LibcReading, "free_chunks")
LIBC_FASTBIN_FREE_BYTES: Final = name_of(LibcReading, "fastbin_free_bytes")
LIBC_TOP_RELEASABLE_BYTES: Final = name_of(LibcReading, "top_releasable_bytes")

TRACING_TRACED_BYTES: Final = name_of(TracingReading, "traced_bytes")
TRACING_PEAK_TRACED_BYTES: Final = name_of(TracingReading, "peak_traced_bytes")
TRACING_OVERHEAD_BYTES: Final = name_of(TracingReading, "overhead_bytes")
TRACING_TRACEBACK_FRAMES: Final = name_of(TracingReading, "traceback_frames")

GPU_DEVICE_COUNT: Final = name_of(GpuReading, "device_count")
GPU_ALLOCATED_BYTES: Final = name_of(GpuReading, "allocated_bytes")
GPU_RESERVED_BYTES: Final = name_of(GpuReading, "reserved_bytes")
GPU_ACTIVE_BYTES: Final = name_of(GpuReading, "active_bytes")
GPU_INACTIVE_SPLIT_BYTES: Final = name_of(GpuReading, "inactive_split_bytes")
GPU_SEGMENTS: Final = name_of(GpuReading, "segments")
GPU_ALLOC_RETRIES: Final = name_of(GpuReading, "alloc_retries")
GPU_OOMS: Final = name_of(GpuReading, "ooms")
GPU_PEAK_ALLOCATED_BYTES: Final = name_of(GpuReading, "peak_allocated_bytes")
GPU_PEAK_RESERVED_BYTES: Final = name_of(GpuReading, "peak_reserved_bytes")
GPU_NVML_USED_BYTES: Final = name_of(GpuReading, "nvml_used_bytes")
GPU_NVML_TOTAL_BYTES: Final = name_of(GpuReading, "nvml_total_bytes")

MEMWARDEN_ATTRIBUTED_RSS_BYTES: Final = name_of(OwnReading, "attributed_rss_bytes")
MEMWARDEN_WORK_S: Final = name_of(OwnReading, "work_s")
MEMWARDEN_RING_SAMPLES: Final = name_of(OwnReading, "ring_samples")
MEMWARDEN_TIMELINE_BYTES: Final = name_of(OwnReading, "timeline_bytes")
