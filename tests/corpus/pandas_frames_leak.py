"""Report builder that keeps every DataFrame it built in a global list.

Three times a second ``build_frame`` makes a DataFrame of a size drawn between 1 k and 400 k rows
(log-uniform: most are small, a few are large) with four numeric columns, and the report code
aggregates it. ``KEPT.append(frame)`` was meant to let an admin page show "recent reports"; it is
never trimmed. The frames' column buffers are NumPy arrays (allocated through tracemalloc-aware
allocators): about 6 MB/s on average, in steps of very different sizes.

memwarden-expect: python_leak
memwarden-leak-function: build_frame
memwarden-holder: KEPT
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
KEPT: list[pd.DataFrame] = []


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
        KEPT.append(frame)
        built += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    rows = sum(len(f) for f in KEPT)
    print(f"pandas_frames_leak: {built} frames built, {len(KEPT)} kept ({rows} rows), {total:.1f}")


if __name__ == "__main__":
    main()
