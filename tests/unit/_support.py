"""Helpers shared by the unit tests."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Iterator


@contextlib.contextmanager
def tracing(frames: int = 5) -> Iterator[None]:
    """tracemalloc on for the block, unless the test run already traces (then it is left alone)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(frames)
    try:
        yield
    finally:
        if not was_tracing:
            tracemalloc.stop()
