"""asyncio notification service that keeps a reference to each background task only while it runs.

``asyncio_tasks_leak`` fixed: each task is added to ``BACKGROUND`` with
``task.add_done_callback(BACKGROUND.discard)``, so a finished task and its result go as soon as it
is done; the set holds the few in flight. Same 400 tasks a second: flat.

memwarden-expect: stable
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
    task.add_done_callback(BACKGROUND.discard)


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
