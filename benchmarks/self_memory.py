"""How much memory does memwarden itself use over a long run? (a benchmark, not a test)

Runs the flat service loop in ``_workload_flat.py`` for ``--minutes`` twice, side by side:

* plain: ``python _workload_flat.py``
* under memwarden: ``python -m memwarden run --interval 0.1 --db <tmp>/run.db --json <tmp>/v.json
  _workload_flat.py``

and every ``--every`` seconds reads, from outside, each process's RSS and peak RSS
(``/proc/<pid>/status``) and the size of the timeline database (the file plus its ``-wal`` and
``-shm``). The workload is flat, so the RSS difference between the two is memwarden's own memory,
and any growth of that difference over the run is memwarden's own leak. At the end it prints the
timeline, the start/end/peak figures, the slope of the difference over the second half of the run,
what the timeline database holds (rows per table), and what memwarden says of its in-memory sample
ring (the ``sampler`` section of its verdict JSON, when present).

    python benchmarks/self_memory.py [--minutes 10] [--interval 0.1] [--every 5] [--json results.json]
    python benchmarks/self_memory.py --plain-only --minutes 1      # only the plain half

memwarden is imported from this checkout's ``src/`` when it is not installed. If ``memwarden run``
fails, its stderr is printed and the script exits with status 1 (after printing the plain figures).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "_workload_flat.py"
SRC = HERE.parent / "src"
MB = 1024 * 1024


@dataclasses.dataclass
class Point:
    """One reading taken from outside, ``t`` seconds after the start."""

    t: float
    plain_rss: int | None
    memwarden_rss: int | None
    db_bytes: int | None


@dataclasses.dataclass
class Child:
    """A running workload process and what it left behind."""

    name: str
    process: subprocess.Popen[str]
    stdout_path: Path
    stderr_path: Path
    peak_rss: int | None = None
    returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self.process.poll()
        return self.returncode


def child_env() -> dict[str, str]:
    """The environment for the runs: this checkout's src/ first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def proc_status_bytes(pid: int, field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of a live process in bytes, or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def db_bytes(db: Path) -> int | None:
    """Bytes on disk of the timeline database with its WAL and shared-memory files."""
    sizes = [
        p.stat().st_size
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
        if p.exists()
    ]
    return sum(sizes) if sizes else None


def start(name: str, command: list[str], scratch: Path, env: dict[str, str]) -> Child:
    stdout_path, stderr_path = scratch / f"{name}.out", scratch / f"{name}.err"
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
    return Child(name, process, stdout_path, stderr_path)


def describe_db(db: Path) -> dict[str, Any]:
    """Tables and row counts of the timeline database, read-only."""
    if not db.exists():
        return {"error": "no database file was written"}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
    except sqlite3.Error as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"rows": rows, "bytes_in_pages": page_size * pages}


def sampler_figures(verdict_path: Path) -> dict[str, Any] | None:
    """What memwarden reports about itself (sample ring, timeline, own RSS), from its verdict JSON.

    Read from ``layers.memwarden`` (first/last/max of each figure), or a top-level ``sampler``
    section; None when the verdict has neither.
    """
    try:
        verdict = json.loads(verdict_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict):
        return None
    layers = verdict.get("layers")
    candidates = [layers.get("memwarden") if isinstance(layers, dict) else None, verdict.get("sampler")]
    return next((c for c in candidates if isinstance(c, dict) and c), None)


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Theil-Sen slope of (seconds, bytes) points, in MB per hour."""
    slopes = [
        (b1 - b0) / (t1 - t0) for i, (t0, b0) in enumerate(points) for t1, b1 in points[i + 1 :] if t1 > t0
    ]
    return statistics.median(slopes) * 3600 / MB if slopes else None


def fmt_mb(value: float | None) -> str:
    return "     -" if value is None else f"{value / MB:6.1f}"


def summarise(points: list[Point], key: str) -> dict[str, float | None]:
    """First (after warm-up), last and largest reading of ``key``, and its slope over the second half."""
    values = [(p.t, getattr(p, key)) for p in points if getattr(p, key) is not None]
    if not values:
        return {"first_mb": None, "last_mb": None, "max_mb": None, "second_half_slope_mb_per_h": None}
    warm = min(30.0, values[-1][0] / 10)
    first = next(v for t, v in values if t >= warm)
    half = values[-1][0] / 2
    return {
        "first_mb": first / MB,
        "last_mb": values[-1][1] / MB,
        "max_mb": max(v for _, v in values) / MB,
        "second_half_slope_mb_per_h": slope_mb_per_hour([(t, float(v)) for t, v in values if t >= half]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="run length (default: 10)")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="memwarden's sampling interval (default: 0.1)"
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between readings (default: 5)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run")
    parser.add_argument("--plain-only", action="store_true", help="run only the plain half")
    parser.add_argument("--keep", type=Path, help="copy the timeline database and logs into this folder")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0:
        parser.error("--minutes and --every must be positive")

    seconds = args.minutes * 60
    env = child_env()
    workload = [str(WORKLOAD), "--seconds", str(seconds)]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{WORKLOAD.name} for {args.minutes:g} min; "
        f"memwarden --interval {args.interval:g}{' (skipped: --plain-only)' if args.plain_only else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="memwarden-self-memory-") as tmp:
        scratch = Path(tmp)
        db, verdict_path = scratch / "run.db", scratch / "verdict.json"
        children = [start("plain", [args.python, *workload], scratch, env)]
        if not args.plain_only:
            command = [args.python, "-m", "memwarden", "run", "--interval", str(args.interval)]
            command += ["--db", str(db), "--json", str(verdict_path), *workload]
            children.append(start("memwarden", command, scratch, env))
        by_name = {child.name: child for child in children}

        points: list[Point] = []
        began = time.monotonic()
        next_reading = began + args.every
        print_every = max(args.every, seconds / 40)  # about 40 table rows, however long the run
        next_print = print_every
        print(
            f"\n{'t (s)':>7} {'plain RSS':>10} {'memwarden RSS':>14} {'difference':>11} {'DB size':>8}   (MB)"
        )
        while [child.poll() for child in children].count(None):
            if "memwarden" in by_name and by_name["memwarden"].returncode not in (None, 0):
                by_name["plain"].process.terminate()  # no point finishing the comparison
                by_name["plain"].process.wait()
                break
            now = time.monotonic()
            if now >= next_reading:
                rss = {}
                for child in children:
                    rss[child.name] = proc_status_bytes(child.process.pid, "VmRSS")
                    peak = proc_status_bytes(child.process.pid, "VmHWM")
                    if peak is not None:
                        child.peak_rss = peak
                point = Point(now - began, rss.get("plain"), rss.get("memwarden"), db_bytes(db))
                points.append(point)
                difference = (
                    point.memwarden_rss - point.plain_rss
                    if point.memwarden_rss is not None and point.plain_rss is not None
                    else None
                )
                if point.t >= next_print or not points[:-1]:
                    print(
                        f"{point.t:7.0f} {fmt_mb(point.plain_rss):>10} {fmt_mb(point.memwarden_rss):>14} "
                        f"{fmt_mb(difference):>11} {fmt_mb(point.db_bytes):>8}",
                        flush=True,
                    )
                    next_print += print_every
                next_reading += args.every
            time.sleep(min(0.2, max(0.0, next_reading - time.monotonic())))

        final_db = db_bytes(db)
        database = describe_db(db) if not args.plain_only else {}
        ring = sampler_figures(verdict_path) if not args.plain_only else None
        failed = [child for child in children if child.returncode != 0 and child.name == "memwarden"]
        if not failed:
            failed = [child for child in children if child.returncode != 0]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in scratch.iterdir():
                shutil.copy2(path, args.keep / path.name)

        differences = [
            Point(p.t, None, p.memwarden_rss - p.plain_rss, None)
            for p in points
            if p.memwarden_rss is not None and p.plain_rss is not None
        ]
        result: dict[str, Any] = {
            "benchmark": "memwarden.self_memory/1",
            "python": platform.python_version(),
            "minutes": args.minutes,
            "interval_s": args.interval,
            "plain": summarise(points, "plain_rss") | {"peak_rss_mb": _mb(by_name["plain"].peak_rss)},
            "timeline_db": {"final_bytes": final_db, **database},
            "sampler": ring,
            "points": [dataclasses.asdict(p) for p in points],
        }
        if not args.plain_only:
            result["memwarden"] = summarise(points, "memwarden_rss") | {
                "peak_rss_mb": _mb(by_name["memwarden"].peak_rss)
            }
            result["difference"] = summarise(differences, "memwarden_rss")
            result["timeline_db"]["max_bytes"] = max((p.db_bytes for p in points if p.db_bytes), default=None)
            result["timeline_db"]["second_half_slope_mb_per_h"] = summarise(points, "db_bytes")[
                "second_half_slope_mb_per_h"
            ]

        print_summary(result)
        for child in failed:
            print(f"\n{child.name} run exited with status {child.returncode}; its stderr:", file=sys.stderr)
            print(child.stderr_path.read_text()[-4000:], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 1 if failed else 0


def _mb(value: int | None) -> float | None:
    return None if value is None else value / MB


def print_summary(result: dict[str, Any]) -> None:
    def line(label: str, figures: dict[str, Any]) -> str:
        def f(key: str, unit: str = "MB") -> str:
            value = figures.get(key)
            return "-" if value is None else f"{value:.1f} {unit}"

        return (
            f"  {label:<28} first {f('first_mb'):>10}   last {f('last_mb'):>10}   max {f('max_mb'):>10}   "
            f"peak RSS {f('peak_rss_mb'):>10}   2nd-half slope {f('second_half_slope_mb_per_h', 'MB/h'):>10}"
        )

    print("\nsummary")
    print(line("plain RSS", result["plain"]))
    if "memwarden" in result:
        print(line("memwarden run RSS", result["memwarden"]))
        print(line("difference (memwarden's own)", result["difference"]))
        db = result["timeline_db"]
        final = db.get("final_bytes")
        print(
            f"  timeline DB: {'-' if final is None else f'{final / MB:.2f} MB'} at the end, "
            f"2nd-half growth {db.get('second_half_slope_mb_per_h') or 0.0:.2f} MB/h; "
            f"rows: {db.get('rows', db.get('error'))}"
        )
        ring = result["sampler"]
        if ring is None:
            print("  memwarden's own figures: not reported (no layers.memwarden in its verdict JSON)")
        else:
            print("  memwarden's own figures (from its verdict JSON, layers.memwarden):")
            for name, value in ring.items():
                print(f"    {name}: {value}")


if __name__ == "__main__":
    raise SystemExit(main())
