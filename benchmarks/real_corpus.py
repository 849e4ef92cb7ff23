"""How often is memwarden right on programs built with real libraries? (a benchmark, not a test)

Runs each workload under ``tests/corpus/`` (FastAPI under uvicorn, Flask, SQLAlchemy, pandas, NumPy,
logging, thread pools, pydantic, lru_cache, asyncio, requests, a Celery-style loop, ctypes, short
programs: see tests/corpus/README.md) ``--runs`` times under ``memwarden run --json`` (the in-process
``readme_monitor_*`` ones with plain ``python``: they run ``memwarden.Monitor`` themselves and write
their verdict JSON), and once (``--plain-runs``) under plain ``python`` for the wall time. Prints, per
workload: the expected verdict(s), how many runs got one of them, every verdict seen (the flake
column), in how many runs a top-3 site is in the leaking function and a holder path contains the
expected name, and the median wall-time ratio to plain ``python``. Then the summary line of every
run that was wrong.

    nice -n 10 python benchmarks/real_corpus.py [--runs 20] [--seconds 8] [--only NAME ...] [--json out.json]

Exit status 0 when every run of every workload got an expected verdict, else 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from detection import ROOT, expectations, memwarden_run, timed

CORPUS = ROOT / "tests" / "corpus"


def workloads() -> list[Path]:
    """Every corpus script that carries a ``memwarden-expect`` line, by name."""
    return sorted(p for p in CORPUS.glob("*.py") if "expect" in expectations(p))


def site_matches(site: dict[str, Any], wanted: str) -> bool:
    """The site, or a frame of its traceback, is in function ``wanted`` (or ``<qualname>.wanted``)."""
    names = [site.get("function") or ""] + [f.get("function") or "" for f in site.get("traceback", [])]
    return any(n == wanted or n.endswith("." + wanted) for n in names)


def one_run(path: Path, exp: dict[str, str], seconds: float, tmp: Path, k: int) -> dict[str, Any]:
    """One memwarden run of ``path``: verdict, whether site and holder were named, wall time."""
    out = tmp / f"{path.stem}-{k}.json"
    if exp.get("inprocess") == "yes":
        wall, proc = timed([sys.executable, str(path)], seconds, {"MEMWARDEN_CORPUS_JSON": str(out)})
    else:
        wall, proc = timed(memwarden_run(tmp / f"{path.stem}-{k}.db", out, [str(path)]), seconds)
    if proc.returncode != 0 or not out.exists():
        return {"verdict": "(failed)", "ok": False, "wall_s": wall, "summary": proc.stderr[-600:].strip()}
    verdict = json.loads(out.read_text())
    fn, holder = exp.get("leak-function"), exp.get("holder")
    return {
        "verdict": verdict["verdict"],
        "ok": verdict["verdict"] in exp["expect"].split("|"),
        "site_top3": None if not fn else any(site_matches(s, fn) for s in verdict["sites"][:3]),
        "holder_named": None if not holder else any(holder in h["path"] for h in verdict["holders"]),
        "wall_s": round(wall, 2),
        "summary": verdict["summary"],
        "top_sites": [f"{s['function']} ({Path(s['file']).name}:{s['line']})" for s in verdict["sites"][:3]],
        "holders": [h["path"] for h in verdict["holders"][:3]],
        "growth_bytes_per_s": verdict.get("growth_bytes_per_s"),
    }


def measure(path: Path, runs: int, plain_runs: int, seconds: float, tmp: Path) -> dict[str, Any]:
    exp = expectations(path)
    plain_env = {"MEMWARDEN_CORPUS_PLAIN": "1"}  # the in-process ones then skip their Monitor
    plain = [timed([sys.executable, str(path)], seconds, plain_env)[0] for _ in range(plain_runs)]
    results = [one_run(path, exp, seconds, tmp, k) for k in range(runs)]
    walls = [r["wall_s"] for r in results]
    sites = [r["site_top3"] for r in results if r.get("site_top3") is not None]
    holders = [r["holder_named"] for r in results if r.get("holder_named") is not None]
    return {
        "workload": path.stem,
        "expected": exp["expect"],
        "leak_function": exp.get("leak-function"),
        "holder": exp.get("holder"),
        "runs": runs,
        "right": sum(r["ok"] for r in results),
        "verdicts": dict(Counter(r["verdict"] for r in results).most_common()),
        "site_top3": sum(sites) if sites else None,
        "holder_named": sum(holders) if holders else None,
        "plain_s": round(statistics.median(plain), 2) if plain else None,
        "ratio": round(statistics.median(walls) / statistics.median(plain), 3) if plain else None,
        "results": results,
    }


def _count(value: int | None, runs: int) -> str:
    return "-" if value is None else f"{value}/{runs}"


def print_row(row: dict[str, Any]) -> None:
    seen = " ".join(f"{v}×{n}" for v, n in row["verdicts"].items())
    ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
    print(
        f"{row['workload']:26} {row['expected']:22} {row['right']:>2}/{row['runs']:<2} {seen:44} "
        f"{_count(row['site_top3'], row['runs']):>5} {_count(row['holder_named'], row['runs']):>6} {ratio:>6}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="memwarden runs per workload (default 20)")
    ap.add_argument("--plain-runs", type=int, default=1, help="plain python runs per workload (default 1)")
    ap.add_argument("--seconds", type=float, default=8.0, help="MEMWARDEN_SCENARIO_SECONDS (default 8)")
    ap.add_argument("--only", nargs="*", help="workload names to run (default: all)")
    ap.add_argument("--json", type=Path, help="also write every run's results here")
    args = ap.parse_args(argv)
    paths = workloads()
    if args.only:
        unknown = set(args.only) - {p.stem for p in paths}
        if unknown:
            ap.error(f"no such workload: {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p.stem in set(args.only)]
    print(f"{'workload':26} {'expected':22} right verdicts seen{'':32} site holder  ratio")
    rows = []
    with tempfile.TemporaryDirectory(prefix="real-corpus-") as tmp:
        for path in paths:
            row = measure(path, args.runs, args.plain_runs, args.seconds, Path(tmp))
            rows.append(row)
            print_row(row)
            if args.json:  # after each workload, so that a long run interrupted keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1))
    right, total = sum(r["right"] for r in rows), sum(r["runs"] for r in rows)
    print(
        f"\n{right}/{total} runs right; {sum(r['right'] == r['runs'] for r in rows)}/{len(rows)} workloads right in every run"
    )
    wrong = [(r["workload"], x) for r in rows for x in r["results"] if not x["ok"]]
    if wrong:
        print("\nwrong runs:")
        for name, x in wrong:
            print(f"  {name}: {x['verdict']}: {x['summary']}")
    return 0 if right == total else 1


if __name__ == "__main__":
    sys.exit(main())
