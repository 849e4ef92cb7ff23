"""memwarden's own footprint, as a layer of its own (``memwarden.*`` metrics).

A memory tool must not mistake its own work for the program's growth, and must show what it
costs. :class:`OwnFootprint` records the RSS that memwarden's attribution work leaves behind (a
census, a tracemalloc diff, a holder search allocate and free memory the allocator then keeps)
and how big its ring buffer and timeline file are; :class:`OwnFootprintProbe` reads it every tick.
The diagnosis subtracts ``memwarden.attributed_rss_bytes`` from the process's RSS.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ._base import Availability, metric


def statm_rss_bytes() -> int | None:
    """This process's RSS from /proc/self/statm (about 10 µs), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class OwnFootprint:
    """What memwarden itself holds: RSS its own work left behind, samples in memory, timeline size."""

    def __init__(self, rss_reader: Callable[[], int | None] = statm_rss_bytes) -> None:
        self._rss = rss_reader
        self._lock = threading.Lock()
        self.attributed_rss_bytes = 0
        self.work_s = 0.0
        self.ring_len: Callable[[], int] = lambda: 0
        self.timeline_path: str | None = None

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        """Attribute the RSS growth of the enclosed work to memwarden."""
        import time

        before = self._rss()
        started = time.perf_counter()
        try:
            yield
        finally:
            after = self._rss()
            with self._lock:
                self.work_s += time.perf_counter() - started
                if before is not None and after is not None and after > before:
                    self.attributed_rss_bytes += after - before


@dataclass(frozen=True)
class OwnReading:
    """memwarden's own cost at one tick."""

    attributed_rss_bytes: int = field(
        metadata=metric("bytes", "gauge", "RSS that memwarden's own attribution work has left behind")
    )
    """RSS left behind by memwarden's attribution work (windows, census, holder search)."""
    work_s: float = field(
        metadata=metric("seconds", "counter", "Time memwarden has spent in attribution work")
    )
    """Seconds spent in that work so far."""
    ring_samples: int = field(
        metadata=metric("", "gauge", "Samples memwarden holds in its in-memory ring buffer")
    )
    """Samples in the sampler's ring buffer now."""
    timeline_bytes: int | None = field(
        metadata=metric("bytes", "gauge", "Size of memwarden's timeline file and its write-ahead log")
    )
    """Size of the timeline file with its WAL; ``None`` without a timeline file."""


class OwnFootprintProbe:
    """Reads :class:`OwnFootprint` as the ``memwarden`` layer."""

    layer: ClassVar[str] = "memwarden"
    cost: ClassVar[Literal["cheap", "costly"]] = "cheap"

    def __init__(self, footprint: OwnFootprint) -> None:
        self.footprint = footprint

    def available(self) -> Availability:
        return Availability.yes()

    def read(self) -> OwnReading:
        fp = self.footprint
        size = None
        if fp.timeline_path and fp.timeline_path != ":memory:":
            size = 0
            for suffix in ("", "-wal"):
                with contextlib.suppress(OSError):
                    size += os.stat(fp.timeline_path + suffix).st_size
        return OwnReading(fp.attributed_rss_bytes, round(fp.work_s, 6), fp.ring_len(), size)
