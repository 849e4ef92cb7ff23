"""A PyTorch CPU workload with a fixed amount of work, for measuring memwarden's overhead on ML code.

Each round makes a 256x256 float32 matrix, multiplies it by itself and keeps the 0-d sum of the
product in a bounded deque (the last 600), like tests/scenarios/torch/cpu_matmul.py but with a fixed
number of ``--rounds`` (default 12,000, about 6 s on a 2-vCPU machine) instead of a fixed time, so
a slower run means overhead. torch is imported even with ``--rounds 0``: its import is part of
every run. Its memory is glibc holding freed matrices: memwarden should call it allocator_retention.

    python benchmarks/_workload_torch.py [--rounds N]
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Sequence

import torch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12_000)
    args = parser.parse_args(argv)
    sums: collections.deque[torch.Tensor] = collections.deque(maxlen=600)
    for _ in range(args.rounds):
        x = torch.randn(256, 256)
        sums.append((x @ x).sum())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
