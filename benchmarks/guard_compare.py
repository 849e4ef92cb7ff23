"""Side by side: no guard (an OOM-killer stand-in), gunicorn ``max_requests``, memwarden's guard.

The same app (tests/integration/apps/leaky.py: ``/leak`` keeps 1 MiB, ``/pid`` keeps nothing), the
same load (``--requests`` from ``--concurrency`` threads sharing a keep-alive client, one request in
``--leak-every`` leaking), the same limit per worker (``--limit-mib`` of RSS), gunicorn sync ``-w 2``:

- ``oom``: no guard; a watchdog polls the workers' RSS every 5 ms and SIGKILLs one above the limit
  (what the kernel's OOM killer does at ``memory.max``, minus the lost evidence);
- ``max_requests``: gunicorn's blind recycle, tuned as an operator would for the worst case (every
  request leaking: ``(limit - a fresh worker's RSS) / 1 MiB`` requests), jitter 10 %; the watchdog
  stays on;
- ``memwarden``: ``-c python:memwarden.guards.gunicorn`` with the budget at the limit; the watchdog
  stays on.

For each: failed requests, recycles, *needless* recycles (a worker recycled while it had used less
than half its headroom: it was not in danger), and the p50/p99 latency. Prints a Markdown table.

    python benchmarks/guard_compare.py [--requests 3000] [--concurrency 8] [--leak-every 3] [--limit-mib 150]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integration.guard_load import MiB, RssWatch, drain_intervals, free_port, journal, run_load, server


class Watchdog:
    """SIGKILLs any child of ``master`` whose RSS passes ``limit``: the OOM killer's stand-in."""

    def __init__(self, master: int, limit: int) -> None:
        self.master = psutil.Process(master)
        self.limit = limit
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self.master.children():
                    with contextlib.suppress(psutil.Error):
                        if child.memory_info().rss > self.limit:
                            os.kill(child.pid, signal.SIGKILL)
                            self.kills += 1
            self._stop.wait(0.005)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fresh_worker_rss(tmp: Path) -> int:
    port = free_port()
    argv = ["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "leaky:app"]
    with server(argv, {}, port, tmp / "probe.log") as proc:
        time.sleep(0.5)
        return max(c.memory_info().rss for c in psutil.Process(proc.pid).children())


def run_one(name: str, args: argparse.Namespace, tmp: Path, base_rss: int) -> dict[str, object]:
    limit = args.limit_mib * MiB
    port = free_port()
    argv = ["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
    env: dict[str, str] = {}
    state = tmp / f"state-{name}"
    if name == "max_requests":
        n = max(1, (limit - base_rss) // MiB)
        argv += ["--max-requests", str(n), "--max-requests-jitter", str(max(1, n // 10))]
    elif name == "memwarden":
        argv = ["gunicorn", "-c", "python:memwarden.guards.gunicorn", *argv[1:]]
        env = {
            "MEMWARDEN_BUDGET": str(limit - 2 * MiB),
            "MEMWARDEN_MIN_LIFETIME_S": "0",
            "MEMWARDEN_GUARD_DIR": str(state),
            "MEMWARDEN_LADDER": "alert,collect,trim,recycle",
        }
    argv.append("leaky:app")
    with (
        server(argv, env, port, tmp / f"{name}.log") as proc,
        Watchdog(proc.pid, limit) as dog,
        RssWatch(proc.pid) as watch,
    ):
        result = run_load(port, args.requests, args.concurrency, leak_every=args.leak_every)
        time.sleep(0.3)
        alive = {c.pid for c in psutil.Process(proc.pid).children()}
    headroom = limit - base_rss
    recycled = [p for p in watch.peaks if p not in alive]
    needless = [p for p in recycled if watch.peaks[p] - base_rss < headroom / 2]
    n_recycles = len(drain_intervals(journal(state))) if name == "memwarden" else len(recycled)
    return {
        "guard": name,
        "requests": args.requests,
        "failed": len(result.failed),
        "recycles": n_recycles,
        "oom_kills": dog.kills,
        "needless_recycles": len(needless),
        "needless_detail": {p: round((watch.peaks[p] - base_rss) / MiB, 1) for p in needless},
        "journal_pids": sorted({int(e["pid"]) for e in journal(state)}) if name == "memwarden" else [],  # type: ignore[call-overload]
        "p50_ms": round(result.p(0.5) * 1000, 2),
        "p99_ms": round(result.p(0.99) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--leak-every", type=int, default=3)
    ap.add_argument("--limit-mib", type=int, default=150)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=("oom", "max_requests", "memwarden"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = fresh_worker_rss(tmp)
        rows = [
            run_one(name, args, tmp, base)
            for name in ("oom", "max_requests", "memwarden")
            if args.only in (None, name)
        ]
    print(
        f"gunicorn sync -w 2, limit {args.limit_mib} MiB RSS per worker (a fresh worker: {base / MiB:.0f} MiB),"
        f" {args.requests} requests from {args.concurrency} threads, 1 in {args.leak_every} leaking 1 MiB\n"
    )
    print("| guard | failed requests | recycles | OOM kills | needless recycles | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rec = 0 if r["guard"] == "oom" else r["recycles"]
        print(
            f"| {r['guard']} | {r['failed']} | {rec} | {r['oom_kills']} | {r['needless_recycles']} |"
            f" {r['p50_ms']} | {r['p99_ms']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
