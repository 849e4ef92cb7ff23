"""Job scheduler that registers every job it builds and never unregisters finished ones.

Each request builds a job: a parent ``Job`` with 20 ``Task`` children, each child pointing back
at its parent, so every job is a reference cycle. ``build_job`` registers the job in the global
``REGISTRY`` so that the status endpoint can look it up, and nothing removes finished jobs. The
garbage collector runs all the time, but it only frees cycles that are unreachable, and these
stay reachable from ``REGISTRY``: memory grows by roughly 0.5 MB/s. Running ``gc.collect()`` more
often does not help; removing finished jobs (or a ``weakref.WeakValueDictionary``) does.

memwarden-expect: python_leak
memwarden-leak-function: build_job
memwarden-holder: REGISTRY
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 60
TASKS_PER_JOB = 20


class Job:
    """A unit of scheduled work; knows its tasks."""

    def __init__(self, job_id: int, owner: str) -> None:
        self.job_id = job_id
        self.owner = owner
        self.tasks: list[Task] = []
        self.state = "queued"


class Task:
    """One step of a job; knows its job (the back-reference that makes the cycle)."""

    def __init__(self, job: Job, name: str, params: dict[str, object]) -> None:
        self.job = job
        self.name = name
        self.params = params
        self.state = "queued"


REGISTRY: list[Job] = []


def build_job(job_id: int, owner: str, rng: random.Random) -> Job:
    job = Job(job_id, owner)
    for step in range(TASKS_PER_JOB):
        params = {"step": step, "retries": 3, "timeout_s": 30.0 + step, "shard": f"shard-{rng.randrange(64)}"}
        job.tasks.append(Task(job, f"job{job_id}-step{step}", params))
    REGISTRY.append(job)
    return job


def run_job(job: Job) -> None:
    """Pretend to run the job; marks everything done."""
    for task in job.tasks:
        task.state = "done"
    job.state = "done"


def main() -> None:
    rng = random.Random(13)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        run_job(build_job(served, f"team-{served % 17}", rng))
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"cycle_registry: served {served} requests, {len(REGISTRY)} jobs registered")


if __name__ == "__main__":
    main()
