"""What one Prometheus scrape of memwarden costs, beside client_python's own process collectors.

Builds a heap of ``--objects`` live objects, runs a ``memwarden.Monitor`` at 1 s for a few ticks,
then times ``generate_latest`` on three registries, interleaved, ``--scrapes`` times each:

- ``client_python``: its default collectors (``ProcessCollector``, ``GCCollector``,
  ``PlatformCollector``): RSS, CPU, fds and GC counts, what a service exports today;
- ``memwarden (cached)``: :class:`MemwardenCollector` within its verdict TTL (every layer, the
  cached verdict, growth rates, caches, actions, the GC pause histogram): every scrape but one per TTL;
- ``memwarden (TTL expired)``: the same with ``verdict_ttl_s=0``, so each scrape runs the
  diagnosis, the growth fits and the cache census again: the worst scrape, once per TTL.

Prints medians, series counts and exposition sizes.

    python benchmarks/scrape_cost.py [--objects 300000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from memwarden import Monitor
from memwarden.exporters.prometheus import MemwardenCollector


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=300_000)
    ap.add_argument("--scrapes", type=int, default=200)
    args = ap.parse_args(argv)
    heap = [{"id": i, "name": f"user-{i}"} for i in range(args.objects // 3)]
    mon = Monitor(interval=1.0, investigate=False, trim_at_stop=False).start()
    time.sleep(6)  # a few ticks, the costly pymalloc table among them

    peer = CollectorRegistry()
    ProcessCollector(registry=peer)
    GCCollector(registry=peer)
    PlatformCollector(registry=peer)
    cached = CollectorRegistry()
    cached.register(MemwardenCollector(mon, verdict_ttl_s=3600))
    expired = CollectorRegistry()
    expired.register(MemwardenCollector(mon, verdict_ttl_s=0))
    registries = {"client_python": peer, "memwarden (cached)": cached, "memwarden (TTL expired)": expired}
    times: dict[str, list[float]] = {k: [] for k in registries}
    sizes: dict[str, tuple[int, int]] = {}
    for _ in range(args.scrapes):
        for name, reg in registries.items():
            started = time.perf_counter()
            text = generate_latest(reg)
            times[name].append(time.perf_counter() - started)
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith(b"#")]
            sizes[name] = (len(lines), len(text))
    mon.stop()
    print(f"heap: {args.objects:,} objects ({len(heap):,} dicts), {args.scrapes} scrapes each, interleaved")
    print(f"{'registry':26} {'median':>10} {'p90':>10} {'series':>7} {'bytes':>7}")
    for name, ts in times.items():
        ts.sort()
        print(
            f"{name:26} {statistics.median(ts) * 1e3:8.2f} ms {ts[int(len(ts) * 0.9)] * 1e3:7.2f} ms"
            f" {sizes[name][0]:7} {sizes[name][1]:7}"
        )
    base = statistics.median(times["client_python"])
    print(f"ratio cached / client_python: {statistics.median(times['memwarden (cached)']) / base:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
