"""How soon does ``memwarden run`` name a slow leak under heavy allocation churn, and at what cost?

The workload is the overhead benchmark's allocation-heavy loop (``_workload_alloc.py``) with a leak
under it: ``remember_request`` keeps ``--kbps`` KB per second of small records in a module global
(paced by the clock). For each rate it runs, interleaved, ``--repetitions`` times:

* ``python _workload_alloc.py --leak-kbps K``: the plain wall time;
* ``memwarden run --db --json`` on the same: the verdict, when the leak was first named (the close of
  the first tracemalloc window whose top three sites include ``remember_request``), the RSS grown by
  then, the holder path, and the wall-time ratio to plain (tracemalloc windows and holder search
  included).

    python benchmarks/leak_rate.py [--kbps 100 ...] [--rounds N] [--repetitions N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from detection import memwarden_run, named_at, timed

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "_workload_alloc.py"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kbps", type=float, nargs="*", default=[100.0], help="leak rates in KB/s (default 100)")
    ap.add_argument("--rounds", type=int, default=300_000, help="workload rounds (default 300,000: ~15 s)")
    ap.add_argument("--repetitions", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{'KB/s':>6} {'run':>3} {'verdict':<12} {'named at':>8} {'RSS by then':>11} {'ratio':>6}  holder")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kbps in args.kbps:
            workload = [str(WORKLOAD), "--rounds", str(args.rounds), "--leak-kbps", str(kbps)]
            ratios: list[float] = []
            for rep in range(args.repetitions):
                plain_s, plain = timed([sys.executable, *workload], 0)
                db, out = Path(tmp) / f"{kbps}-{rep}.db", Path(tmp) / f"{kbps}-{rep}.json"
                mw_s, proc = timed(memwarden_run(db, out, workload), 0)
                if plain.returncode != 0 or proc.returncode != 0 or not out.exists():
                    print(f"run failed:\n{plain.stderr[-1000:]}\n{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                verdict = json.loads(out.read_text())
                at, grown = named_at(db, "remember_request")
                ratios.append(mw_s / plain_s)
                holder = verdict["holders"][0]["path"] if verdict["holders"] else "-"
                at_s = f"{at:7.1f}s" if at is not None else "      -"
                grown_s = f"{grown / 1e6:9.2f}MB" if grown is not None else "          -"
                print(
                    f"{kbps:6.0f} {rep + 1:3} {verdict['verdict']:<12} {at_s} {grown_s} {ratios[-1]:6.2f}  {holder}"
                )
                failures += verdict["verdict"] != "python_leak" or at is None
            print(f"{kbps:6.0f} median wall ratio {statistics.median(ratios):.3f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
