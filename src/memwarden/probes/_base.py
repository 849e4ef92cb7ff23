"""The one small protocol every layer's probe follows.

A probe reads one memory layer. ``available()`` says whether that layer can be read here (and
why not); ``read()`` returns a frozen dataclass (a *reading*). Each probe takes its data source
as a constructor argument, so tests replay recorded fixtures and production reads the real
thing.

Readings flatten to ``{"<layer>.<field>": number | None}`` through :func:`flatten`: that flat
form is what the sampler stores in the timeline and what diagnosis reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

Number = float | int
Metrics = dict[str, "Number | None"]
Cost = Literal["cheap", "costly"]


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


def flatten(layer: str, reading: Any) -> Metrics:
    """The numeric scalar fields of a reading, as ``{"layer.field": value}``.

    Booleans become 0/1; nested structures (tables, lists) are left out: they belong in the
    reading's JSON form (:func:`to_jsonable`), not in the time series.
    """
    out: Metrics = {}
    if not dataclasses.is_dataclass(reading):
        raise TypeError(f"a reading must be a dataclass, not {type(reading).__name__}")
    for f in dataclasses.fields(reading):
        value = getattr(reading, f.name)
        if isinstance(value, bool):
            out[f"{layer}.{f.name}"] = int(value)
        elif value is None or isinstance(value, (int, float)):
            out[f"{layer}.{f.name}"] = value
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
