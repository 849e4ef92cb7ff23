"""Signal-processing worker that keeps every feature matrix it computed.

Twenty times a second a batch of 256 sensor traces (256 x 64 float64) is normalised and
``extract_features`` computes its spectrum magnitudes (a 256 x 33 float64 array, ~68 KB). The
features are scored and then appended to ``HISTORY`` "for the drift dashboard", which never
drops old ones: about 1.4 MB/s of NumPy arrays.

memwarden-expect: python_leak
memwarden-leak-function: extract_features
memwarden-holder: HISTORY
"""

from __future__ import annotations

import os
import time

import numpy as np

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
BATCHES_PER_SECOND = 20
HISTORY: list[np.ndarray] = []


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
    while time.monotonic() < deadline:
        features = extract_features(gen.standard_normal((256, 64)))
        score += float(features[:, 1:5].mean())
        HISTORY.append(features)
        batches += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"numpy_pipeline_leak: {batches} batches, {len(HISTORY)} feature arrays kept ({score:.2f})")


if __name__ == "__main__":
    main()
