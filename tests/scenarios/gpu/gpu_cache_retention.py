"""PyTorch's caching allocator keeping memory: random square matmuls, nothing kept between steps.

Each step allocates two random square matrices of a random size between 1024² and 10240²
(fp32), multiplies them and drops all three. Live tensors stay at a few tens of MB (cuBLAS's
workspace), but the default caching allocator keeps segments of every size it has seen, so
reserved memory climbs far above the peak working set (3.26 GB for a 1.26 GB peak on an H100
with torch 2.11). Not a leak. Run with ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``
and reserved memory stays near the working set (0.88 GB there).

Needs a CUDA device: without one it prints why and exits with status 77 (skipped).

memwarden-expect: gpu_cache_retention
memwarden-expect-with-expandable-segments: stable
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "12"))
SKIPPED = 77
SMALLEST, LARGEST = 1024, 10240


def cuda_torch() -> Any:
    """The torch module when a CUDA device can be used, else None (with the reason printed)."""
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed", file=sys.stderr)
        return None
    if not torch.cuda.is_available():
        print("skipped: torch.cuda.is_available() is False (no CUDA device)", file=sys.stderr)
        return None
    return torch


def step(torch: Any, rng: random.Random) -> int:
    """One matmul of a random size; everything it allocates is dropped before it returns."""
    n = rng.randrange(SMALLEST, LARGEST + 1, 256)
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    c = a @ b
    torch.cuda.synchronize()
    del a, b, c
    return n


def main(
    seconds: float = SECONDS, *, steps: int | None = None, on_step: Callable[[int], None] | None = None
) -> int:
    """Run the loop for ``seconds`` (or exactly ``steps`` steps); ``on_step(i)`` after each step."""
    torch = cuda_torch()
    if torch is None:
        return SKIPPED
    rng = random.Random(1234)
    deadline = time.monotonic() + seconds
    done = 0
    while (done < steps) if steps is not None else (time.monotonic() < deadline):
        step(torch, rng)
        done += 1
        if on_step is not None:
            on_step(done)
    mib = 1024 * 1024
    print(
        f"gpu_cache_retention: {done} steps, allocated {torch.cuda.memory_allocated() / mib:.1f} MiB, "
        f"reserved {torch.cuda.memory_reserved() / mib:.1f} MiB, "
        f"peak allocated {torch.cuda.max_memory_allocated() / mib:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
