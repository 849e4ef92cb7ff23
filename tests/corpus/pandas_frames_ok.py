"""Report builder churning DataFrames of very different sizes, keeping none of them.

``pandas_frames_leak`` fixed: each DataFrame (1 k to 400 k rows, log-uniform, three a second) is
built, aggregated and dropped. Large column buffers come from ``mmap`` and go back to the system
when freed; small ones are reused. RSS moves up and down by up to ~13 MB with the frame in hand,
around a flat line: churn of large native buffers, not a leak. (After the first ``mmap``'d buffer
is freed, glibc raises its mmap threshold, so later buffers come from the heap and what they
leave free stays with glibc: in a short run RSS can creep up into glibc's free chunks while its
bytes in use stay flat, which is ``allocator_retention``, also right.)

memwarden-expect: stable|plateau|allocator_retention
"""

from __future__ import annotations

import math
import os
import random
import time

import numpy as np
import pandas as pd

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
FRAMES_PER_SECOND = 3


def frame_rows(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(1_000), math.log(400_000))))


def build_frame(gen: np.random.Generator, rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": np.arange(rows, dtype=np.int64),
            "price": gen.random(rows),
            "qty": gen.integers(0, 100, rows),
            "score": gen.standard_normal(rows),
        }
    )


def summarise(frame: pd.DataFrame) -> float:
    return float(frame.groupby(frame["qty"] % 10)["price"].mean().sum())


def main() -> None:
    rng = random.Random(7)
    gen = np.random.default_rng(7)
    period = 1.0 / FRAMES_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    built = 0
    total = 0.0
    while time.monotonic() < deadline:
        frame = build_frame(gen, frame_rows(rng))
        total += summarise(frame)
        built += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"pandas_frames_ok: {built} frames built, {total:.1f}")


if __name__ == "__main__":
    main()
