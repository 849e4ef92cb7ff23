"""EmptyCachePolicy: gives PyTorch's cache back only over a threshold, rate-limited, recording each call."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from memwarden.guards.gpu import CacheRelease, EmptyCachePolicy
from memwarden.testing import FakeClock

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gpu"
MiB = 1024 * 1024
GiB = 1024 * MiB


class FakeAllocator:
    """torch.cuda's memory counters for some devices; empty_cache() drops reserved to allocated."""

    def __init__(
        self,
        devices: list[tuple[int, int]],
        clock: FakeClock,
        *,
        initialised: bool = True,
        sync_s: float = 0.25,
        error: Exception | None = None,
    ) -> None:
        self.devices = [list(d) for d in devices]  # [allocated, reserved]
        self.clock = clock
        self.initialised = initialised
        self.sync_s = sync_s
        self.error = error
        self.empty_cache_calls = 0

    def is_initialized(self) -> bool:
        return self.initialised

    def device_count(self) -> int:
        return len(self.devices)

    def memory_allocated(self, index: int) -> int:
        return self.devices[index][0]

    def memory_reserved(self, index: int) -> int:
        return self.devices[index][1]

    def empty_cache(self) -> None:
        self.empty_cache_calls += 1
        self.clock.advance(self.sync_s)  # the device synchronisation the call waits for
        if self.error is not None:
            raise self.error
        for device in self.devices:
            device[1] = device[0]

    def grow_cache(self, index: int, extra: int) -> None:
        self.devices[index][1] += extra


def policy_for(cuda: FakeAllocator, clock: FakeClock, **kwargs: Any) -> EmptyCachePolicy:
    torch = types.SimpleNamespace(cuda=cuda)
    return EmptyCachePolicy(clock=clock, torch_module=lambda: torch, **kwargs)


def retention_end_state() -> tuple[int, int]:
    stats = json.loads((FIXTURES / "stats_retention_end.json").read_text())
    return stats["allocated_bytes.all.current"], stats["reserved_bytes.all.current"]


def test_over_the_threshold_the_cache_is_released_and_recorded() -> None:
    """With the retention loop's end state over a 1 GiB threshold, one call frees reserved - allocated."""
    clock = FakeClock()
    allocated, reserved = retention_end_state()
    cuda = FakeAllocator([(allocated, reserved)], clock)
    policy = policy_for(cuda, clock, threshold_bytes=GiB)
    release = policy.maybe_release()
    assert isinstance(release, CacheRelease)
    assert cuda.empty_cache_calls == 1
    assert release.reserved_before_bytes == reserved
    assert release.reserved_after_bytes == allocated
    assert release.freed_bytes == reserved - allocated
    assert release.allocated_bytes == allocated
    assert release.duration_s == pytest.approx(0.25)
    assert policy.history == (release,)


def test_under_the_threshold_nothing_is_called() -> None:
    """A cache at or under the threshold is left alone: empty_cache() is not called."""
    clock = FakeClock()
    cuda = FakeAllocator([(GiB, GiB + 512 * MiB)], clock)
    policy = policy_for(cuda, clock, threshold_bytes=512 * MiB)
    assert policy.maybe_release() is None
    assert cuda.empty_cache_calls == 0
    assert policy.cached_bytes() == 512 * MiB


def test_calls_are_rate_limited() -> None:
    """Within min_interval_s of a release the cache is not emptied again, after it is."""
    clock = FakeClock()
    cuda = FakeAllocator([(0, 4 * GiB)], clock)
    policy = policy_for(cuda, clock, threshold_bytes=GiB, min_interval_s=60.0)
    assert policy.maybe_release() is not None
    cuda.grow_cache(0, 3 * GiB)
    clock.advance(30.0)
    assert policy.maybe_release() is None
    assert cuda.empty_cache_calls == 1
    clock.advance(30.0)
    assert policy.maybe_release() is not None
    assert cuda.empty_cache_calls == 2


def test_every_device_is_counted() -> None:
    """The cache and the freed bytes are summed over all devices (empty_cache releases them all)."""
    clock = FakeClock()
    cuda = FakeAllocator([(GiB, GiB + 600 * MiB), (2 * GiB, 2 * GiB + 600 * MiB)], clock)
    policy = policy_for(cuda, clock, threshold_bytes=GiB)
    release = policy.maybe_release()
    assert release is not None
    assert release.freed_bytes == 1200 * MiB
    assert release.reserved_before_bytes == 3 * GiB + 1200 * MiB


def test_history_is_bounded() -> None:
    """Only the last history_size releases are kept, oldest first."""
    clock = FakeClock()
    cuda = FakeAllocator([(0, 0)], clock)
    policy = policy_for(cuda, clock, threshold_bytes=0, min_interval_s=0.0, history_size=3)
    for _ in range(5):
        cuda.grow_cache(0, GiB)
        clock.advance(1.0)
        assert policy.maybe_release() is not None
    assert len(policy.history) == 3
    times = [r.at for r in policy.history]
    assert times == sorted(times)
    assert times[-1] == clock.now - 0.25


def test_no_torch_or_no_cuda_does_nothing() -> None:
    """Without torch, or before the program starts CUDA, the policy neither acts nor raises; it says why."""
    clock = FakeClock()
    no_torch = EmptyCachePolicy(torch_module=lambda: None, clock=clock)
    assert no_torch.maybe_release() is None
    assert no_torch.last_error == "torch not imported"
    cuda = FakeAllocator([(0, 8 * GiB)], clock, initialised=False)
    policy = policy_for(cuda, clock, threshold_bytes=0)
    assert policy.maybe_release() is None
    assert policy.last_error == "CUDA not initialised by the program"
    assert policy.cached_bytes() is None
    assert cuda.empty_cache_calls == 0


def test_a_failing_empty_cache_is_recorded_not_raised() -> None:
    """An error from empty_cache() is kept in last_error, and not retried before the interval passes."""
    clock = FakeClock()
    cuda = FakeAllocator([(0, 8 * GiB)], clock, error=RuntimeError("CUDA error: unspecified launch failure"))
    policy = policy_for(cuda, clock, threshold_bytes=GiB, min_interval_s=10.0)
    assert policy.maybe_release() is None
    assert policy.last_error is not None
    assert "unspecified launch failure" in policy.last_error
    assert policy.maybe_release() is None
    assert cuda.empty_cache_calls == 1
    assert policy.history == ()


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold_bytes": -1}, {"min_interval_s": -1.0}, {"history_size": 0}],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    """Negative thresholds or intervals and an empty history are a ValueError."""
    with pytest.raises(ValueError, match="must"):
        EmptyCachePolicy(torch_module=lambda: None, **kwargs)
