"""Celery-style task worker whose result backend expires results after a second.

``celery_results_leak`` fixed: results older than ``RESULT_EXPIRES_S`` (1 s, Celery's
``result_expires``) are dropped by the worker every 100 results, so ``RESULTS`` holds about one
second of results (~0.6 MB) at any time. Same queue, same 250 tasks a second: flat after the
first second.

memwarden-expect: stable|plateau
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
TASKS_PER_SECOND = 250
RESULT_EXPIRES_S: float | None = 1.0

INBOX: queue.Queue[tuple[str, str, tuple[Any, ...]] | None] = queue.Queue()
RESULTS: dict[str, dict[str, Any]] = {}


def resize_image(image_id: int, width: int) -> dict[str, Any]:
    thumb = random.Random(image_id).randbytes(2048)
    return {"image": image_id, "width": width, "thumb": thumb, "format": "webp", "at": time.time()}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {"resize_image": resize_image}


def expire(now: float) -> None:
    if RESULT_EXPIRES_S is None:
        return
    for task_id in [t for t, r in RESULTS.items() if now - r["at"] > RESULT_EXPIRES_S]:
        del RESULTS[task_id]


def worker() -> None:
    while (job := INBOX.get()) is not None:
        task_id, name, args = job
        RESULTS[task_id] = TASKS[name](*args)
        if len(RESULTS) % 100 == 0:
            expire(time.time())


def main() -> None:
    thread = threading.Thread(target=worker, name="worker-1")
    thread.start()
    rng = random.Random(6)
    per_tick = TASKS_PER_SECOND // 50
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    sent = 0
    while time.monotonic() < deadline:
        for _ in range(per_tick):
            INBOX.put((f"task-{sent:08d}", "resize_image", (sent, rng.choice((64, 128, 256)))))
            sent += 1
        next_tick += 0.02
        time.sleep(max(0.0, next_tick - time.monotonic()))
    INBOX.put(None)
    thread.join()
    print(f"{os.path.basename(__file__)[:-3]}: {sent} tasks, {len(RESULTS)} results stored")


if __name__ == "__main__":
    main()
