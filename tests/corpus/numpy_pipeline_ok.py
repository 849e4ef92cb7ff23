"""Signal-processing worker that keeps running statistics of its features, not the features.

``numpy_pipeline_leak`` fixed: the 256 x 33 feature matrix of each batch updates a running mean
(one fixed 33-float array) and is dropped. Same 20 batches a second of FFTs: flat.

memwarden-expect: stable
"""

from __future__ import annotations

import os
import time

import numpy as np

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
BATCHES_PER_SECOND = 20


def normalise(batch: np.ndarray) -> np.ndarray:
    return (batch - batch.mean(axis=1, keepdims=True)) / (batch.std(axis=1, keepdims=True) + 1e-9)


def extract_features(batch: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(normalise(batch), axis=1))


def main() -> None:
    gen = np.random.default_rng(1)
    period = 1.0 / BATCHES_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    batches = 0
    score = 0.0
    running = np.zeros(33)
    while time.monotonic() < deadline:
        features = extract_features(gen.standard_normal((256, 64)))
        score += float(features[:, 1:5].mean())
        running += (features.mean(axis=0) - running) / (batches + 1)
        batches += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"numpy_pipeline_ok: {batches} batches ({score:.2f}, {running[1]:.2f})")


if __name__ == "__main__":
    main()
