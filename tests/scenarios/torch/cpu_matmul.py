"""A PyTorch program on the CPU: matrix products in a loop, a scalar of each kept.

Each step makes a 256x256 float32 matrix (256 KiB), multiplies it by itself and keeps only the
0-d sum of the product (the last 600 of them). The step's matrices are freed when the next
step replaces them, so each new pair is allocated while the old pair is still alive. PyTorch's
CPU allocator gets them from glibc, which keeps the freed chunks: RSS climbs by hundreds of MiB
while the live data stays at a few MiB, and ``malloc_trim(0)`` gives it back. Not a leak:
allocator retention.

It also checks memwarden's promises about torch: it wraps ``torch.cuda._lazy_init`` (what every
call that would start CUDA goes through) and writes, at exit, whether CUDA was started and how
often something tried to, to the JSON file named by ``MEMWARDEN_TORCH_REPORT``.

memwarden-expect: allocator_retention
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import time

import torch

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REPORT = os.environ.get("MEMWARDEN_TORCH_REPORT")

lazy_init_calls = 0
_real_lazy_init = torch.cuda._lazy_init


def _counting_lazy_init() -> None:
    global lazy_init_calls
    lazy_init_calls += 1
    _real_lazy_init()


torch.cuda._lazy_init = _counting_lazy_init


def _report() -> None:
    if REPORT:
        with open(REPORT, "w") as out:
            json.dump(
                {"cuda_initialised": torch.cuda.is_initialized(), "lazy_init_calls": lazy_init_calls}, out
            )


atexit.register(_report)

SCALARS: collections.deque[torch.Tensor] = collections.deque(maxlen=600)


def main() -> None:
    started = time.monotonic()
    while time.monotonic() - started < SECONDS:
        x = torch.randn(256, 256)  # the last step's x and y are still alive here
        y = x @ x
        SCALARS.append(y.sum())


if __name__ == "__main__":
    main()
