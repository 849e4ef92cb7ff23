"""How long the trend statistics take, from 10 to 100,000 samples.

Run: ``python benchmarks/trend_cost.py`` (``PYTHONPATH=src`` from a checkout). Prints the best of
several runs, in milliseconds of wall time and of CPU time (the second is steadier on a busy
machine), for :func:`theil_sen`, :func:`mann_kendall`, :func:`sen_slope_ci` and :func:`analyse`
on a linear leak under noise, and :func:`analyse` on a garbage-collection sawtooth.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from functools import partial

from memwarden.diagnosis._trend import analyse, mann_kendall, sen_slope_ci, theil_sen


def best_ms(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The fastest of ``repeat`` runs: (wall ms, CPU ms)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        action()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall * 1e3, cpu * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    print(f"{'n':>7} {'function':<22} {'wall ms':>8} {'cpu ms':>8}")
    for n in (10, 100, 300, 1_000, 10_000, 100_000):
        t = [i * 0.1 for i in range(n)]
        leak = [1e8 + 1e4 * x + rng.gauss(0.0, 1e6) for x in t]
        saw = [5e6 + (i % 300) / 300 * 5e7 + rng.gauss(0.0, 3e5) for i in range(n)]
        cases: list[tuple[str, Callable[[], object]]] = [
            ("theil_sen", partial(theil_sen, t, leak)),
            ("sen_slope_ci", partial(sen_slope_ci, t, leak)),
            ("mann_kendall", partial(mann_kendall, leak)),
            ("analyse (leak)", partial(analyse, t, leak)),
            ("analyse (sawtooth)", partial(analyse, t, saw)),
        ]
        for name, action in cases:
            wall, cpu = best_ms(action, args.repeat)
            print(f"{n:>7} {name:<22} {wall:>8.2f} {cpu:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
