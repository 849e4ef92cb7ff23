"""Evidence gathered while a program runs, as plain data that survives in the timeline.

The investigator (live, in the sampler's thread) produces it; the classifier reads it. Because each
piece is also stored as a timeline event, ``memwarden diagnose run.db`` re-runs the decision after the
fact with the same evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..timeline import Event
from ._verdict import CacheGrowthInfo, Holder, Site, TypeGrowth

EVENT_WINDOW = "tracemalloc_window"
EVENT_CACHES = "caches"
EVENT_TRIM = "malloc_trim"
EVENT_VERDICT = "verdict"
EVENT_GPU_SITES = "gpu_sites"
EVENT_UNAVAILABLE = "layers_unavailable"


@dataclass(frozen=True)
class WindowEvidence:
    """What one tracemalloc window saw: the growing sites, types and their holders."""

    opened_s: float
    """Seconds since the run started when the window opened."""
    closed_s: float
    frames: int
    owns_tracing: bool
    traced_start_bytes: int
    traced_end_bytes: int
    sites: tuple[Site, ...] = ()
    types: tuple[TypeGrowth, ...] = ()
    holders: tuple[Holder, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return max(0.0, self.closed_s - self.opened_s)

    @property
    def traced_growth_per_s(self) -> float | None:
        if self.duration_s <= 0:
            return None
        return (self.traced_end_bytes - self.traced_start_bytes) / self.duration_s

    def to_json(self) -> dict[str, Any]:
        return {
            "opened_s": self.opened_s,
            "closed_s": self.closed_s,
            "frames": self.frames,
            "owns_tracing": self.owns_tracing,
            "traced_start_bytes": self.traced_start_bytes,
            "traced_end_bytes": self.traced_end_bytes,
            "sites": [s.to_json() for s in self.sites],
            "types": [t.to_json() for t in self.types],
            "holders": [h.to_json() for h in self.holders],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowEvidence:
        return cls(
            opened_s=float(data["opened_s"]),
            closed_s=float(data["closed_s"]),
            frames=int(data.get("frames", 0)),
            owns_tracing=bool(data.get("owns_tracing", True)),
            traced_start_bytes=int(data.get("traced_start_bytes", 0)),
            traced_end_bytes=int(data.get("traced_end_bytes", 0)),
            sites=tuple(Site.from_json(x) for x in data.get("sites", [])),
            types=tuple(TypeGrowth.from_json(x) for x in data.get("types", [])),
            holders=tuple(Holder.from_json(x) for x in data.get("holders", [])),
            notes=tuple(data.get("notes", [])),
        )


@dataclass(frozen=True)
class TrimEvidence:
    """What one ``malloc_trim(0)`` gave back to the OS."""

    rss_before_bytes: int
    rss_after_bytes: int
    returned_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rss_before_bytes": self.rss_before_bytes,
            "rss_after_bytes": self.rss_after_bytes,
            "returned_bytes": self.returned_bytes,
        }


@dataclass(frozen=True)
class Evidence:
    """Everything the investigator found, beyond the sampled time series."""

    windows: tuple[WindowEvidence, ...] = ()
    caches: tuple[CacheGrowthInfo, ...] = ()
    trim: TrimEvidence | None = None
    gpu_sites: tuple[Site, ...] = ()
    gpu_holders: tuple[Holder, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    unavailable: tuple[tuple[str, str], ...] = ()
    """``(layer, why)`` for each layer that could not be read at the end of the run."""

    @classmethod
    def from_events(cls, events: list[Event]) -> Evidence:
        """Rebuild the evidence from a timeline's events (latest caches and trim win)."""
        windows: list[WindowEvidence] = []
        caches: tuple[CacheGrowthInfo, ...] = ()
        trim: TrimEvidence | None = None
        gpu_sites: tuple[Site, ...] = ()
        gpu_holders: tuple[Holder, ...] = ()
        notes: list[str] = []
        unavailable: tuple[tuple[str, str], ...] = ()
        for ev in events:
            try:
                if ev.kind == EVENT_WINDOW:
                    windows.append(WindowEvidence.from_json(dict(ev.data)))
                elif ev.kind == EVENT_CACHES:
                    caches = tuple(CacheGrowthInfo.from_json(c) for c in ev.data.get("caches", []))
                elif ev.kind == EVENT_TRIM:
                    trim = TrimEvidence(
                        int(ev.data["rss_before_bytes"]),
                        int(ev.data["rss_after_bytes"]),
                        int(ev.data["returned_bytes"]),
                    )
                elif ev.kind == EVENT_GPU_SITES:
                    gpu_sites = tuple(Site.from_json(x) for x in ev.data.get("sites", []))
                    gpu_holders = tuple(Holder.from_json(h) for h in ev.data.get("holders", []))
                elif ev.kind == EVENT_UNAVAILABLE:
                    unavailable = tuple((str(k), str(v)) for k, v in dict(ev.data["layers"]).items())
            except (KeyError, TypeError, ValueError) as exc:
                notes.append(f"skipped a malformed {ev.kind} event ({exc!r})")
        return cls(tuple(windows), caches, trim, gpu_sites, gpu_holders, tuple(notes), unavailable)
