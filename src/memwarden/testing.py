"""Helpers for testing code that uses memwarden (memwarden's own tests use them too).

- :class:`ReplayProbe` replays recorded readings, one per ``read()``, for any layer.
- :class:`FakeClock` is a clock you move by hand.
- :func:`samples_from_series` builds timeline samples from plain per-metric lists, to test a
  diagnosis without running anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import make_dataclass
from typing import Any, ClassVar

from .exceptions import ProbeUnavailable, UsageError
from .probes._base import Availability, Cost
from .timeline import Sample


class FakeClock:
    """A monotonic clock that only moves when told: ``clock.advance(1.5)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ReplayProbe:
    """A probe of ``layer`` that returns the given readings in turn, then repeats the last one.

    Readings may be dataclasses or plain mappings (which become a frozen dataclass). Pass
    ``unavailable="why"`` to play a layer that cannot be read.
    """

    layer: ClassVar[str] = "replay"
    cost: ClassVar[Cost] = "cheap"

    def __new__(
        cls,
        layer: str,
        readings: Iterable[Any],
        *,
        cost: Cost = "cheap",
        unavailable: str | None = None,
    ) -> ReplayProbe:
        # one subclass per layer, so that ``layer`` and ``cost`` stay class attributes as the protocol says
        sub = type(f"Replay_{layer}", (cls,), {"layer": layer, "cost": cost})
        return object.__new__(sub)

    def __init__(
        self,
        layer: str,
        readings: Iterable[Any],
        *,
        cost: Cost = "cheap",
        unavailable: str | None = None,
    ) -> None:
        classes: dict[tuple[str, ...], type] = {}  # one reading class per set of fields, not per reading
        self._readings = [self._as_reading(r, classes) for r in readings]
        self._unavailable = unavailable
        self.reads = 0

    @staticmethod
    def _as_reading(r: Any, classes: dict[tuple[str, ...], type] | None = None) -> Any:
        if isinstance(r, Mapping):
            keys = tuple(r)
            classes = {} if classes is None else classes
            cls = classes.get(keys)
            if cls is None:
                cls = classes[keys] = make_dataclass("Reading", [(k, Any) for k in keys], frozen=True)
            return cls(**r)
        return r

    def available(self) -> Availability:
        return Availability.no(self._unavailable) if self._unavailable else Availability.yes()

    def read(self) -> Any:
        if self._unavailable:
            raise ProbeUnavailable(self.layer, self._unavailable)
        if not self._readings:
            raise ProbeUnavailable(self.layer, "no readings to replay")
        r = self._readings[min(self.reads, len(self._readings) - 1)]
        self.reads += 1
        return r


def samples_from_series(
    series: Mapping[str, Sequence[float | None]], *, interval: float = 1.0, start: float = 0.0
) -> list[Sample]:
    """Samples at a fixed ``interval`` from ``{"process.rss_bytes": [...], ...}`` (lists of equal length)."""
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1:
        raise UsageError(f"every series must have the same length, got {sorted(lengths)}")
    (n,) = lengths
    return [
        Sample(
            t=1.7e9 + start + i * interval,
            mono=start + i * interval,
            metrics={k: v[i] for k, v in series.items()},
        )
        for i in range(n)
    ]


__all__ = ["FakeClock", "ReplayProbe", "samples_from_series"]
