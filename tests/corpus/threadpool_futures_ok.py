"""Report service that collects each job's result from its Future and lets the Future go.

``threadpool_futures_leak`` fixed: the submitted Futures wait in a short in-flight list; every tick
the finished ones are taken out, their ``result()`` summed into a counter, and dropped. Same pool,
same 150 jobs a second: flat.

memwarden-expect: stable
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
    collected = 0
    while time.monotonic() < deadline:
        FUTURES.append(EXECUTOR.submit(render_report, submitted, submitted * 7919))
        submitted += 1
        finished = [f for f in FUTURES if f.done()]
        for f in finished:
            collected += f.result()["total"]
            FUTURES.remove(f)
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    EXECUTOR.shutdown(wait=True)
    print(f"threadpool_futures_ok: {submitted} jobs, {len(FUTURES)} still listed, {collected} bytes of rows")


if __name__ == "__main__":
    main()
