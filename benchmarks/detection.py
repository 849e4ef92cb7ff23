"""How fast and how right is memwarden's verdict on each scenario? (a benchmark, not a test)

For every program under ``tests/scenarios/`` it runs:

* ``python scenario.py``: the plain wall time;
* ``memwarden run --db --json scenario.py``: the verdict, whether it is one the scenario expects, when
  the leak was named (the end of the first tracemalloc window whose top three sites include the
  scenario's leaking function: seconds since start, and the RSS growth by then), and the wall-time
  ratio to plain;
* ``python -X tracemalloc=16 _tracemalloc_alone.py scenario.py``: what a tracemalloc diff alone (first
  snapshot after 1 s vs the last) would tell: its top line and how much it grew. It names lines for
  leaks and non-leaks alike; it cannot say which is which.

    python benchmarks/detection.py [--seconds 8] [--only NAME ...] [--json results.json]

* with ``--memray PATH`` (the ``memray`` executable of an environment where ``pip install memray`` was run,
  e.g. ``python -m venv /tmp/mrv && /tmp/mrv/bin/pip install memray``): ``PYTHONMALLOC=malloc memray run``
  then ``memray table --leaks``: the largest allocation still alive at exit and its size. memray sees every
  allocation (native ones too) but reports what is alive at exit, for leaks and caches alike.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = ROOT / "tests" / "scenarios"


def expectations(path: Path) -> dict[str, str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^memwarden-([a-z-]+):\s*(.+)$", doc, re.M)}


def env(seconds: float, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ, MEMWARDEN_SCENARIO_SECONDS=str(seconds), PYTHONUNBUFFERED="1", **(extra or {}))
    src = str(ROOT / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def timed(
    cmd: list[str], seconds: float, extra_env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env(seconds, extra_env), timeout=600, check=False
    )
    return time.perf_counter() - t0, proc


def memwarden_run(db: Path, out: Path, program: list[str]) -> list[str]:
    """The command line of a quiet ``memwarden run`` recording ``db`` and writing the verdict to ``out``."""
    return [
        sys.executable,
        "-m",
        "memwarden",
        "run",
        "--quiet",
        "--db",
        str(db),
        "--json",
        str(out),
        *program,
    ]


def named_at(db: Path, function: str | None) -> tuple[float | None, float | None]:
    """(seconds since start, RSS growth in bytes) when a window first named ``function``."""
    if not function:
        return None, None
    conn = sqlite3.connect(db)
    try:
        rows = [
            json.loads(d) for (d,) in conn.execute("SELECT data FROM events WHERE kind='tracemalloc_window'")
        ]
        samples = [(m, json.loads(d)) for m, d in conn.execute("SELECT mono, data FROM samples ORDER BY seq")]
    finally:
        conn.close()
    if not samples:
        return None, None
    t0 = samples[0][0]
    rss0 = samples[0][1].get("process.rss_bytes") or 0
    for w in rows:
        names = [(s.get("function") or "").rsplit(".", 1)[-1] for s in w.get("sites", [])[:3]]
        if function in names:
            at = w["closed_s"]
            rss = [d.get("process.rss_bytes") for m, d in samples if m - t0 <= at + 1e-6]
            return at, (rss[-1] or 0) - rss0 if rss else None
    return None, None


def memray_leaks(memray: str, path: Path, seconds: float, tmp: str) -> str:
    """The top "leak" memray's --leaks table reports for ``path``: location and size."""
    out_bin, out_html = Path(tmp) / f"{path.stem}.bin", Path(tmp) / f"{path.stem}.html"
    e = env(seconds)
    e["PYTHONMALLOC"] = "malloc"
    subprocess.run(
        [memray, "run", "-q", "-f", "-o", str(out_bin), str(path)],
        capture_output=True,
        env=e,
        timeout=600,
        check=False,
    )
    subprocess.run(
        [memray, "table", "--leaks", "-f", "-o", str(out_html), str(out_bin)],
        capture_output=True,
        timeout=600,
        check=False,
    )
    if not out_html.exists():
        return "(memray failed)"
    text = out_html.read_text(errors="replace")
    m = re.search(r"const packed_data = (\[.*?\]);\n", text, re.S)
    if not m:
        return "(no table)"
    rows = [r for r in json.loads(m.group(1)) if "memray" not in r.get("stack_trace", "")]
    if not rows:
        return "(nothing)"
    top = max(rows, key=lambda r: r["size"])
    where = top["stack_trace"].split(" at ")
    loc = where[-1].rsplit("/", 1)[-1] if len(where) > 1 else top["stack_trace"]
    return f"{where[0]} {loc} {top['size'] / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="how long each scenario serves (default 8)")
    ap.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--memray", help="path to a memray executable: add what memray's --leaks mode reports")
    args = ap.parse_args(argv)
    rows = []
    paths = sorted(p for p in SCENARIOS.glob("*.py") if "expect" in expectations(p))
    if args.only:
        paths = [p for p in paths if p.stem in set(args.only)]
    print(
        f"{'scenario':24} {'expected':26} {'verdict':20} ok  named@  grown    ratio  tracemalloc alone (top line, growth)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            exp = expectations(path)
            plain_s, _ = timed([sys.executable, str(path)], args.seconds)
            db, out = Path(tmp) / f"{path.stem}.db", Path(tmp) / f"{path.stem}.json"
            mw_s, proc = timed(memwarden_run(db, out, [str(path)]), args.seconds)
            if proc.returncode != 0 or not out.exists():
                print(f"{path.stem}: memwarden run failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            verdict = json.loads(out.read_text())
            at, grown = named_at(db, exp.get("leak-function"))
            _, tm = timed(
                [sys.executable, "-X", "tracemalloc=16", str(HERE / "_tracemalloc_alone.py"), str(path)],
                args.seconds,
            )
            alone = tm.stdout.strip().splitlines()[-1] if tm.stdout.strip() else "(failed)"
            ok = verdict["verdict"] in exp["expect"].split("|")
            mr = memray_leaks(args.memray, path, args.seconds, tmp) if args.memray else None
            row = {
                "scenario": path.stem,
                "expected": exp["expect"],
                "verdict": verdict["verdict"],
                "ok": ok,
                "named_at_s": at,
                "grown_bytes_when_named": grown,
                "plain_s": round(plain_s, 2),
                "memwarden_s": round(mw_s, 2),
                "ratio": round(mw_s / plain_s, 3),
                "tracemalloc_alone": alone,
                "memray_leaks": mr,
            }
            rows.append(row)
            at_s = f"{at:5.1f}s" if at is not None else "   - "
            grown_s = f"{grown / 1e6:5.1f}MB" if grown is not None else "    - "
            print(
                f"{path.stem:24} {exp['expect']:26} {verdict['verdict']:20} {'yes' if ok else 'NO ':3} "
                f"{at_s} {grown_s} {row['ratio']:6.2f}  {alone}" + (f"  | memray: {mr}" if mr else "")
            )
    right = sum(r["ok"] for r in rows)
    print(f"\n{right}/{len(rows)} verdicts right")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if right == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
