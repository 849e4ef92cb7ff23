"""asyncio notification service that keeps a reference to every background task it started.

The service loop starts one ``enrich`` task per incoming event with ``asyncio.create_task`` and,
following the advice to keep a reference so the task is not garbage-collected, adds it to
``BACKGROUND``, a module-level set, but never discards it when done. A finished task keeps its
result (a ~3 KB profile dict built in ``enrich``): about 400 tasks a second, roughly 1.5 MB/s. The
fix is ``task.add_done_callback(BACKGROUND.discard)``.

memwarden-expect: python_leak
memwarden-leak-function: enrich
memwarden-holder: BACKGROUND
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
EVENTS_PER_TICK = 4  # 100 ticks a second
BACKGROUND: set[asyncio.Task[dict[str, Any]]] = set()


async def enrich(event_id: int, seed: int) -> dict[str, Any]:
    await asyncio.sleep(0.002)  # the profile service's answer
    rng = random.Random(seed)
    history = [f"{event_id}:{rng.randrange(10**8)}:{rng.random():.6f}" for _ in range(40)]
    return {"event": event_id, "user": f"user-{rng.randrange(10**6)}", "history": history}


def started(task: asyncio.Task[dict[str, Any]]) -> None:
    BACKGROUND.add(task)


async def serve() -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    next_tick = loop.time()
    events = 0
    while loop.time() < deadline:
        for _ in range(EVENTS_PER_TICK):
            started(asyncio.create_task(enrich(events, events * 31)))
            events += 1
        next_tick += 0.01
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    await asyncio.sleep(0.05)
    return events


def main() -> None:
    t0 = time.monotonic()
    events = asyncio.run(serve())
    done = sum(t.done() for t in BACKGROUND)
    print(
        f"{os.path.basename(__file__)[:-3]}: {events} events in {time.monotonic() - t0:.1f} s, {done} done tasks kept"
    )


if __name__ == "__main__":
    main()
