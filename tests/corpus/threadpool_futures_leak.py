"""Report service that keeps every Future its thread pool returned, and so every result.

``main()`` submits ``render_report`` jobs to a module-level ``ThreadPoolExecutor`` (4 workers) about
150 times a second and appends each ``Future`` to ``FUTURES`` "to wait for them at shutdown". A
finished Future keeps its result (a ~8 KB report dict: 80 row strings) until the Future itself goes: about
1.2 MB/s of results reachable only through that list.

memwarden-expect: python_leak
memwarden-leak-function: render_report
memwarden-holder: FUTURES
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
JOBS_PER_SECOND = 150

EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports")
FUTURES: list[Future[dict[str, Any]]] = []


def render_report(job: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rows = [
        f"{job:08d};{rng.randrange(10**6)};{rng.random():.8f};region-{rng.randrange(40)}" for _ in range(80)
    ]
    return {"job": job, "rows": rows, "total": sum(len(r) for r in rows)}


def main() -> None:
    period = 1.0 / JOBS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    submitted = 0
    while time.monotonic() < deadline:
        FUTURES.append(EXECUTOR.submit(render_report, submitted, submitted * 7919))
        submitted += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    EXECUTOR.shutdown(wait=True)
    done = sum(f.done() for f in FUTURES)
    print(f"threadpool_futures_leak: {submitted} jobs, {done} finished futures kept")


if __name__ == "__main__":
    main()
