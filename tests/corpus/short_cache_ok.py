"""A five-second program whose ``lru_cache(maxsize=10000)`` fills in two seconds, then evicts.

``render_row`` renders a 2 KB row for a fresh key on every call (one cheap string repeat, so the
pace holds on a loaded machine and while traced), 5,000 calls a second: the bounded cache is full
(~20 MB) after two seconds and stays there for the last three while calls keep coming. A warm-up
of a bounded cache, not a leak. It always runs a fixed 5 s (``MEMWARDEN_SCENARIO_SECONDS`` is
ignored).

memwarden-expect: plateau
"""

from __future__ import annotations

import functools
import time

SECONDS = 5.0
CALLS_PER_TICK = 50  # 100 ticks a second


@functools.lru_cache(maxsize=10_000)
def render_row(key: int) -> str:
    return f"{key:09d}|" * 200  # one C-level repeat: cheap enough to keep the pace on a loaded box


def main() -> None:
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    calls = chars = 0
    while time.monotonic() < deadline:
        for _ in range(CALLS_PER_TICK):
            chars += len(render_row(calls))
            calls += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"short_cache_ok: {calls} calls, {render_row.cache_info()}")


if __name__ == "__main__":
    main()
