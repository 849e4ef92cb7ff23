"""What the guard costs a server that never reaches its budget: requests/s and p99, with and without.

gunicorn sync ``-w 2`` serving tests/integration/apps/leaky.py's ``/pid`` (no leak), the same load
(``--requests`` from ``--concurrency`` threads sharing a keep-alive client) with and without
``-c python:memwarden.guards.gunicorn`` (budget 4 GiB: checked after every request, never reached),
alternated ``--rounds`` times; prints the medians and the ratio. Target: within 2 %. The server
figures move by more than that from run to run on a shared VM, so it also times what the guard adds
to each request in-process (``WorkerGuard.check()`` under the budget: one ``/proc/self/statm``
read), the stable part of the answer.

    python benchmarks/guard_overhead.py [--requests 3000] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integration.guard_load import free_port, run_load, server


def one(guarded: bool, args: argparse.Namespace, tmp: Path) -> tuple[float, float]:
    port = free_port()
    argv = ["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "leaky:app"]
    env: dict[str, str] = {}
    if guarded:
        argv = ["gunicorn", "-c", "python:memwarden.guards.gunicorn", *argv[1:]]
        env = {"MEMWARDEN_BUDGET": "4GiB", "MEMWARDEN_GUARD_DIR": str(tmp / "state")}
    with server(argv, env, port, tmp / "server.log"):
        run_load(port, 200, args.concurrency, path="/pid")  # warm up
        t0 = time.perf_counter()
        result = run_load(port, args.requests, args.concurrency, path="/pid")
        elapsed = time.perf_counter() - t0
    assert not result.failed, result.failed[:3]
    return result.ok / elapsed, result.p(0.99)


def check_cost_us(n: int = 20000) -> float:
    from memwarden.guards.budget import Budget
    from memwarden.guards.recycle import WorkerGuard

    with tempfile.TemporaryDirectory() as d:
        guard = WorkerGuard(Budget(limit_bytes=1 << 40), state_dir=d)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                guard.check()
            times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            for guarded in (False, True):
                runs[guarded].append(one(guarded, args, Path(d)))
    rps = {g: statistics.median(r[0] for r in runs[g]) for g in runs}
    p99 = {g: statistics.median(r[1] for r in runs[g]) for g in runs}
    print(
        f"gunicorn sync -w 2, /pid, {args.requests} requests from {args.concurrency} threads, "
        f"median of {args.rounds} alternated rounds\n"
    )
    print("| | requests/s | p99 ms |")
    print("|---|---|---|")
    print(f"| no guard | {rps[False]:.0f} | {p99[False] * 1000:.2f} |")
    print(f"| memwarden guard | {rps[True]:.0f} | {p99[True] * 1000:.2f} |")
    print(f"| ratio (guard / none) | {rps[True] / rps[False]:.3f} | {p99[True] / p99[False]:.3f} |")
    per_request = statistics.median(1 / r[0] for r in runs[False]) * 2 * 1e6  # µs per request per worker
    cost = check_cost_us()
    print(
        f"\nWorkerGuard.check() under budget: {cost:.1f} µs per request, {cost / per_request * 100:.2f} % of"
        f" a request's {per_request / 1000:.1f} ms here"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
