"""A PyTorch program on the CPU that keeps a slice of every step's output: a tensor leak.

Each step runs a small 64x64 layer and keeps a copied 64x16 slice of its output (4 KiB of
tensor data) in a module-level list that nothing ever empties, as code that collects outputs
"for later" does. The data lives in PyTorch's own allocations, outside Python's heap, so RSS
grows several MiB/s while tracemalloc sees only the small Python objects: the growth is
native, the objects that own it are ``torch.Tensor`` instances made at the line marked
``# the leak``, and ``KEPT`` holds them.

memwarden-expect: native_leak
memwarden-holder: KEPT
"""

from __future__ import annotations

import os
import time

import torch

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
KEPT: list[torch.Tensor] = []


def step() -> None:
    x = torch.randn(64, 64)
    y = torch.tanh(x @ x)
    KEPT.append(y[:, :16].clone())  # the leak
    time.sleep(0.002)


def main() -> None:
    started = time.monotonic()
    while time.monotonic() - started < SECONDS:
        step()


if __name__ == "__main__":
    main()
