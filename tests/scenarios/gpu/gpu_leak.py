"""A GPU leak: every step's output tensor is appended to a module-level list and never dropped.

Each step makes an 8 MiB tensor on the GPU and keeps it in ``KEPT`` (think of a list of
losses stored without ``.item()``, or a cache of embeddings keyed by request). Live tensors
grow steadily; memwarden should call it ``gpu_leak``, its GPU allocation recorder should name
the line marked ``the leak`` below, and the holder search should reach ``KEPT``.

Needs a CUDA device: without one it prints why and exits with status 77 (skipped).

memwarden-expect: gpu_leak
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "12"))
STEPS_PER_SECOND = 20
SKIPPED = 77
ROWS = 1024  # a ROWS x 2048 float32 tensor is 8 MiB

KEPT: list[Any] = []


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


def step(torch: Any) -> None:
    """Make one output and keep it forever."""
    out = torch.randn(ROWS, 2048, device="cuda")  # the leak
    KEPT.append(out)


def main(
    seconds: float = SECONDS, *, steps: int | None = None, on_step: Callable[[int], None] | None = None
) -> int:
    """Run for ``seconds`` (or exactly ``steps`` steps); ``on_step(i)`` after each step."""
    torch = cuda_torch()
    if torch is None:
        return SKIPPED
    period = 1.0 / STEPS_PER_SECOND
    deadline = time.monotonic() + seconds
    done = 0
    while (done < steps) if steps is not None else (time.monotonic() < deadline):
        step(torch)
        done += 1
        if on_step is not None:
            on_step(done)
        else:
            time.sleep(period)
    print(f"gpu_leak: kept {len(KEPT)} tensors, allocated {torch.cuda.memory_allocated() / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
