"""What sampling costs a busy program, timed inside its own process (no start-up, no final report).

Runs the overhead benchmark's allocation-heavy loop (``_workload_alloc.one_round``) in this process,
plain and with a ``memwarden.Monitor`` around it at each interval, interleaved, and prints the median
of each and the ratio to plain. The investigator is on, as under ``memwarden run``; the loop does not
grow, so no tracemalloc window opens: what is measured is the sampler's ticks.

    python benchmarks/inprocess.py [--rounds 60000] [--repetitions 3] [--intervals 1 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workload_alloc import one_round

from memwarden import Monitor


def timed_rounds(rounds: int) -> float:
    started = time.perf_counter()
    for i in range(rounds):
        one_round(i)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60_000)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--intervals", type=float, nargs="*", default=[1.0, 0.1])
    args = ap.parse_args(argv)
    timed_rounds(args.rounds // 20)  # warm up
    times: dict[float | None, list[float]] = {None: [], **{i: [] for i in args.intervals}}
    ticks: dict[float, int] = {}
    for _ in range(args.repetitions):
        for interval, taken in times.items():
            if interval is None:
                taken.append(timed_rounds(args.rounds))
                continue
            monitor = Monitor(interval=interval).start()
            taken.append(timed_rounds(args.rounds))
            ticks[interval] = monitor.sampler.ticks if monitor.sampler else 0
            monitor.stop()
    plain = statistics.median(times[None])
    print(f"{'mode':<20} {'median s':>9} {'ratio':>7}  ticks")
    print(f"{'plain':<20} {plain:9.3f} {1.0:7.3f}")
    for interval in args.intervals:
        median = statistics.median(times[interval])
        print(f"{f'Monitor({interval:g} s)':<20} {median:9.3f} {median / plain:7.3f}  {ticks[interval]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
