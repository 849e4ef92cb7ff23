"""The one small protocol every layer's probe follows.

A probe reads one memory layer. ``available()`` says whether that layer can be read here (and
why not); ``read()`` returns a frozen dataclass (a *reading*). Each probe takes its data source
as a constructor argument, so tests replay recorded fixtures and production reads the real
thing.

Readings flatten to ``{"<layer>.<field>": number | None}`` through :func:`flatten`: that flat
form is what the sampler stores in the timeline and what diagnosis reads.

Each numeric field of a reading declares, once, the metric it is: its unit, its kind and a line
of help (:func:`metric`, in the field's ``metadata``). :mod:`memwarden.metrics` builds the
catalogue of every metric from those declarations; nothing else spells a metric's name.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar, get_args, runtime_checkable

from ..exceptions import UsageError

Number = float | int
Metrics = dict[str, "Number | None"]
Cost = Literal["cheap", "costly"]

#: A metric's unit, as OpenMetrics names base units; ``""`` for a plain count (blocks, events).
MetricUnit = Literal["bytes", "seconds", "ratio", ""]
#: ``"gauge"`` goes up and down; ``"counter"`` only grows (it may start again from 0 when its
#: source restarts, e.g. a new process).
MetricKind = Literal["gauge", "counter"]

METRIC_UNITS: tuple[MetricUnit, ...] = get_args(MetricUnit)
METRIC_KINDS: tuple[MetricKind, ...] = get_args(MetricKind)

#: The key of a field's ``metadata`` that holds its :class:`MetricDeclaration`.
METRIC_METADATA_KEY = "memwarden.metric"


@dataclasses.dataclass(frozen=True)
class MetricDeclaration:
    """What a reading's field declares about the metric it is: unit, kind and one line of help.

    ``prometheus`` replaces the field's name in the metric's Prometheus name where the field's
    name would read wrong there (``size_class_count`` would end in ``_count``, a suffix
    OpenMetrics keeps for summaries and histograms).
    """

    unit: MetricUnit
    kind: MetricKind
    help: str
    prometheus: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in METRIC_UNITS:
            raise UsageError(f"metric unit must be one of {METRIC_UNITS}, not {self.unit!r}")
        if self.kind not in METRIC_KINDS:
            raise UsageError(f"metric kind must be one of {METRIC_KINDS}, not {self.kind!r}")
        if not self.help.strip():
            raise UsageError("a metric needs a line of help")


def metric(
    unit: MetricUnit, kind: MetricKind, help: str, *, prometheus: str | None = None
) -> dict[str, MetricDeclaration]:
    """The ``metadata`` of a reading field that is a metric.

    Used as ``rss_bytes: int | None = dataclasses.field(metadata=metric("bytes", "gauge", "..."))``.
    Raises ``ValueError`` for an unknown unit or kind, or empty help, when the class is defined.
    """
    return {METRIC_METADATA_KEY: MetricDeclaration(unit, kind, help, prometheus)}


def declared_metric(field: dataclasses.Field[Any]) -> MetricDeclaration | None:
    """The metric a dataclass field declares, or ``None`` when it declares none."""
    found = field.metadata.get(METRIC_METADATA_KEY)
    return found if isinstance(found, MetricDeclaration) else None


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a layer can be read here; false with a ``reason`` when not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def yes(cls) -> Availability:
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


R_co = TypeVar("R_co", covariant=True)


@runtime_checkable
class Probe(Protocol[R_co]):
    """Reads one memory layer.

    ``layer`` is the layer's name (``"process"``, ``"pymalloc"`` ...) and the prefix of its
    metrics; ``cost`` tells the sampler whether to read it every tick (``"cheap"``) or on the
    slow cadence (``"costly"``).
    """

    layer: ClassVar[str]
    cost: ClassVar[Cost]

    def available(self) -> Availability: ...

    def read(self) -> R_co: ...


@functools.lru_cache(maxsize=256)
def _series_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(field name, declares a metric) for each field of a reading class, in order."""
    return tuple((f.name, declared_metric(f) is not None) for f in dataclasses.fields(cls))


def flatten(layer: str, reading: Any) -> Metrics:
    """The numeric scalar fields of a reading, as ``{"layer.field": value}``.

    Booleans become 0/1; nested structures (tables, lists) and text are left out: they belong in
    the reading's JSON form (:func:`to_jsonable`), not in the time series. A ``None`` ("not known
    here") is kept for a field that declares a metric (:func:`metric`), and left out for one that
    does not, since nothing says that field is a number (a path that is unknown, say).
    """
    if not dataclasses.is_dataclass(reading) or isinstance(reading, type):
        raise TypeError(f"a reading must be a dataclass instance, not {type(reading).__name__}")
    out: Metrics = {}
    for name, declared in _series_fields(type(reading)):
        value = getattr(reading, name)
        if isinstance(value, bool):
            out[f"{layer}.{name}"] = int(value)
        elif isinstance(value, (int, float)) or (value is None and declared):
            out[f"{layer}.{name}"] = value
    return out


def to_jsonable(value: Any) -> Any:
    """A reading (or anything nested in one) as plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
