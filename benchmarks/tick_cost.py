"""What one sampler tick costs at the production cadence, and what that is per hour.

Builds a heap of ``--objects`` live objects (a service's steady state), makes the default probes a
``memwarden.Monitor`` uses, and times ``Sampler.sample_once()`` directly: plain ticks (the cheap
probes, every tick) and full ticks (with the costly pymalloc table, read every 5th tick by default),
with the investigator and the history digest as observers, as in a running monitor. Prints the
medians and what sampling every 10 s costs per hour of wall time.

    python benchmarks/tick_cost.py [--objects 1000000] [--ticks 200] [--interval 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

from memwarden import Monitor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args(argv)
    heap = [{"id": i, "name": f"user-{i}"} for i in range(args.objects // 3)]  # ~3 objects each
    mon = Monitor(interval=args.interval, trim_at_stop=False)
    mon.start()
    sampler = mon.sampler
    assert sampler is not None
    sampler.stop(final_sample=False)  # time the ticks by hand, with nothing else in the thread
    plain: list[float] = []
    full: list[float] = []
    for i in range(args.ticks):
        started = time.perf_counter()
        sampler.sample_once(force_all=i % 5 == 0)
        (full if i % 5 == 0 else plain).append(time.perf_counter() - started)
    per_tick = (4 * statistics.median(plain) + statistics.median(full)) / 5
    per_hour = per_tick * 3600 / args.interval
    print(f"heap: {len(heap) * 3:,} objects; {args.ticks} ticks")
    print(f"plain tick (cheap probes):  median {statistics.median(plain) * 1e3:.2f} ms")
    print(f"full tick (with pymalloc):  median {statistics.median(full) * 1e3:.2f} ms")
    print(
        f"at one tick every {args.interval:g} s: {per_tick * 1e3:.2f} ms a tick on average, "
        f"{per_hour:.2f} s of CPU an hour ({per_hour / 36:.4f} % of one core)"
    )
    mon._abandon()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
