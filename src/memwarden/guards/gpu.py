"""A guard for PyTorch's GPU cache: give cached memory back to the driver, rarely and on purpose.

PyTorch keeps freed GPU memory in its caching allocator (*reserved* but not *allocated*), so
other processes on the device cannot use it. ``torch.cuda.empty_cache()`` hands the unused
cached segments back. It is not free:

- it **synchronises the device**: it waits for the work queued on the GPU to finish (the
  allocator must know no kernel still uses a block before it calls ``cudaFree``, and
  ``cudaFree`` itself synchronises), so a call in the middle of a step stalls the pipeline;
- the next allocations that do not fit what is left pay ``cudaMalloc`` again (milliseconds
  for large segments);
- it gives *this* process no more memory than it had: the cache was already its to reuse.

:class:`EmptyCachePolicy` therefore calls it only when the cache exceeds a threshold, at
most once per ``min_interval_s``, and records what each call freed and how long it took.
It never imports torch and never starts CUDA.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import UsageError
from ..probes.gpu import TorchModuleSource, torch_if_cuda_initialised

__all__ = ["CacheRelease", "EmptyCachePolicy"]

_GiB = 1024 * 1024 * 1024


def _default_torch() -> Any:
    return sys.modules.get("torch")


@dataclass(frozen=True)
class CacheRelease:
    """One ``torch.cuda.empty_cache()`` call the policy made: when, what it freed, what it cost.

    Bytes are summed over all devices (``empty_cache`` releases every device's cache).
    ``at`` is the policy's clock when the call began; ``duration_s`` includes the device
    synchronisation the call implies.
    """

    at: float
    reserved_before_bytes: int
    reserved_after_bytes: int
    allocated_bytes: int
    freed_bytes: int
    duration_s: float


class EmptyCachePolicy:
    """Calls ``torch.cuda.empty_cache()`` when PyTorch's cache grows past a threshold, rate-limited.

    ``threshold_bytes`` is the cache (reserved - allocated, all devices) above which to act;
    ``min_interval_s`` is the least time between two calls; ``clock`` is a monotonic clock in
    seconds (injectable for tests); ``torch_module`` finds the program's torch (default:
    ``sys.modules.get("torch")``); ``history_size`` bounds the kept :class:`CacheRelease`
    records. Thread-safe; never raises into its caller (a failed call is kept in
    ``last_error``, and so is the reason nothing was done when CUDA is not running).
    """

    def __init__(
        self,
        threshold_bytes: int = _GiB,
        *,
        min_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        torch_module: TorchModuleSource = _default_torch,
        history_size: int = 32,
    ) -> None:
        if threshold_bytes < 0:
            raise UsageError("threshold_bytes must not be negative")
        if min_interval_s < 0:
            raise UsageError("min_interval_s must not be negative")
        if history_size < 1:
            raise UsageError("history_size must be at least 1")
        self.threshold_bytes = threshold_bytes
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._torch_module = torch_module
        self._history: collections.deque[CacheRelease] = collections.deque(maxlen=history_size)
        self._last_at: float | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def history(self) -> tuple[CacheRelease, ...]:
        """The most recent releases, oldest first (at most ``history_size``)."""
        with self._lock:
            return tuple(self._history)

    def cached_bytes(self) -> int | None:
        """The cache now (reserved - allocated over all devices), or ``None`` when CUDA isn't running."""
        torch, _ = torch_if_cuda_initialised(self._torch_module)
        if torch is None:
            return None
        try:
            reserved, allocated = self._totals(torch)
        except Exception as exc:
            self.last_error = f"reading memory stats failed ({type(exc).__name__}: {exc})"
            return None
        return max(reserved - allocated, 0)

    @staticmethod
    def _totals(torch: Any) -> tuple[int, int]:
        count = int(torch.cuda.device_count())
        reserved = sum(int(torch.cuda.memory_reserved(i)) for i in range(count))
        allocated = sum(int(torch.cuda.memory_allocated(i)) for i in range(count))
        return reserved, allocated

    def maybe_release(self) -> CacheRelease | None:
        """Empty the cache if it is over the threshold and the rate limit allows; what it did, or ``None``."""
        with self._lock:
            torch, why = torch_if_cuda_initialised(self._torch_module)
            if torch is None:
                self.last_error = why  # nothing to release, and never a reason to start CUDA
                return None
            now = self._clock()
            if self._last_at is not None and now - self._last_at < self.min_interval_s:
                return None
            try:
                reserved_before, allocated = self._totals(torch)
            except Exception as exc:
                self.last_error = f"reading memory stats failed ({type(exc).__name__}: {exc})"
                return None
            if reserved_before - allocated <= self.threshold_bytes:
                return None
            started = self._clock()
            try:
                torch.cuda.empty_cache()  # synchronises the device
                duration = self._clock() - started
                reserved_after, allocated_after = self._totals(torch)
            except Exception as exc:
                self.last_error = f"empty_cache() failed ({type(exc).__name__}: {exc})"
                self._last_at = now  # a failing call must not be retried on every tick
                return None
            self._last_at = now
            self.last_error = None
            release = CacheRelease(
                at=started,
                reserved_before_bytes=reserved_before,
                reserved_after_bytes=reserved_after,
                allocated_bytes=allocated_after,
                freed_bytes=max(reserved_before - reserved_after, 0),
                duration_s=max(duration, 0.0),
            )
            self._history.append(release)
            return release
