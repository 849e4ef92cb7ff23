"""GC governance: freeze what warm-up built, tune the generations, see the pauses as data.

- :func:`freeze` moves every object alive now into the permanent generation (``gc.freeze()``):
  the collector never scans them again, and in a pre-fork server (gunicorn ``--preload``) a
  collection in a worker no longer writes to the pages shared with the master, so copy-on-write
  keeps them shared. Call it after warm-up in the master, just before the workers fork.
- :func:`set_thresholds` sets the generation thresholds, checked.
- :class:`GcPauseHistogram` counts each collection's pause into fixed buckets (``gc.callbacks``).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from ..exceptions import UsageError
from .actions import ActionResult

PAUSE_BUCKETS_S: tuple[float, ...] = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


def freeze(reason: str = "after warm-up", *, collect_first: bool = True) -> ActionResult:
    """``gc.collect()`` (optional) then ``gc.freeze()``; how many objects are frozen now."""
    started = time.perf_counter()
    if collect_first:
        gc.collect()
    gc.freeze()
    return ActionResult(
        "gc_freeze", reason, 0, time.perf_counter() - started, details={"frozen": gc.get_freeze_count()}
    )


def set_thresholds(gen0: int, gen1: int | None = None, gen2: int | None = None) -> tuple[int, int, int]:
    """Set the collector's thresholds (``None`` keeps one); the previous ones."""
    old = gc.get_threshold()
    new = (gen0, old[1] if gen1 is None else gen1, old[2] if gen2 is None else gen2)
    if any(not isinstance(v, int) or v < 0 for v in new):
        raise UsageError(f"gc thresholds must be non-negative integers, not {new}")
    gc.set_threshold(*new)
    return (old[0], old[1], old[2])


class GcPauseHistogram:
    """Each collection's pause, per generation, counted into :data:`PAUSE_BUCKETS_S` (bounded memory)."""

    def __init__(self, buckets_s: tuple[float, ...] = PAUSE_BUCKETS_S) -> None:
        if list(buckets_s) != sorted(buckets_s) or not buckets_s:
            raise UsageError("histogram buckets must be increasing")
        self.buckets_s = buckets_s
        self._counts = [[0] * (len(buckets_s) + 1) for _ in range(3)]
        self._sum = [0.0, 0.0, 0.0]
        self._start: float | None = None
        self._lock = threading.Lock()
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        if self._start is None:
            return
        pause = time.perf_counter() - self._start
        self._start = None
        gen = min(max(int(info.get("generation", 2)), 0), 2)
        i = next((k for k, b in enumerate(self.buckets_s) if pause <= b), len(self.buckets_s))
        with self._lock:
            self._counts[gen][i] += 1
            self._sum[gen] += pause

    def install(self) -> GcPauseHistogram:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def to_json(self) -> dict[str, Any]:
        """``{"buckets_s": [...], "generations": [{"counts": [...], "sum_s": x, "count": n}, ...]}``.

        ``counts[i]`` is the number of pauses at most ``buckets_s[i]`` and above the bucket before;
        the last count is the pauses above the largest bucket.
        """
        with self._lock:
            return {
                "buckets_s": list(self.buckets_s),
                "generations": [
                    {"counts": list(c), "count": sum(c), "sum_s": s} for c, s in zip(self._counts, self._sum)
                ],
            }


__all__ = ["PAUSE_BUCKETS_S", "GcPauseHistogram", "freeze", "set_thresholds"]
