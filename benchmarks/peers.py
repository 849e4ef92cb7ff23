"""What memwarden costs next to memray and scalene, in one run (a benchmark, not a test).

Three fixed-work programs (and an empty one, ``_workload_alloc.py --rounds 0``: each tool's fixed cost
a run), each run ``--repetitions`` times in every mode, interleaved (the order of
the modes rotates each round, so slow drifts of a shared machine hit every mode alike):

* ``steady``: ``_workload_alloc.py`` (builds and drops dicts, lists and strings; nothing kept: no
  growth, ~5 s plain);
* ``fast leak``: ``_workload_fastleak.py`` (~5 s, ~180 MiB of records kept in the module-level dict
  ``SESSIONS`` by ``remember_session`` / ``build_record``);
* ``leak 100 KB/s``: ``_workload_alloc.py --leak-kbps 100`` (``benchmarks/leak_rate.py``'s program:
  heavy churn with ``remember_request`` keeping 100 KB/s in ``KEPT``); ``--skip-leak-rate`` leaves it out.

The modes:

* ``plain``: ``python program.py``;
* ``memwarden auto`` / ``memwarden 1 s`` / ``memwarden 0.1 s``: ``memwarden run --json`` at its default
  cadence (``--interval auto``), and at ``--interval 1`` and ``--interval 0.1`` (for the 100 KB/s leak
  only the default, with ``--quiet --db`` as ``leak_rate.py`` times it, so "named at" is read from the
  timeline); for the leaks also ``memwarden run --no-trace`` (sampling alone: what the window costs);
* ``memray``: ``memray run -q -f -o TMP.bin`` (its default: allocations that reach malloc), and for the
  fast leak also ``memray run --trace-python-allocators`` (every Python allocation);
* ``scalene``: ``scalene run --memory -o TMP.json`` (CPU and memory profile to a JSON file; no browser).

Wall time is taken from outside (``time.perf_counter()`` around the subprocess: interpreter start-up,
the tool's set-up and its final report included; the peers' viewers, ``memray flamegraph`` and
``scalene view``, are not run), CPU time (user + system) from the child's resource usage. The table
gives each mode's median and its ratio to plain's median. For memwarden it also gives the verdicts,
how many runs opened a tracemalloc window (the verdict's ``window.traced`` evidence), memwarden's own
work (``layers.memwarden.work_s``), and for the leaks how many runs named the leaking function among
the top three sites and the holder by name, and when (the close of the first naming window).

memray and scalene are installed in a venv of their own (``--peers-venv``, default
``/tmp/memwarden-peers``; created with ``python -m venv`` and ``pip install memray`` / ``pip install
scalene`` when missing, reused when present). A peer that cannot be installed is left out, with a line
saying why.

    python benchmarks/peers.py [--repetitions 5] [--peers-venv PATH] [--json results.json]
    python benchmarks/peers.py --repetitions 1 --steady-rounds 20000 --leak-records 20000 --leak-rate-rounds 60000

memwarden is imported from this checkout's ``src/``. Exits 1 when a run fails (its stderr is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detection import named_at

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
DEFAULT_VENV = Path("/tmp/memwarden-peers")
PEERS = ("memray", "scalene")

STEADY_TARGET = 1.05  # at --interval 1 and 0.1, with no window opened
FAST_LEAK_TARGET = 1.3  # with the site and the holder named
LEAK_RATE_NAMED_S = 10.0  # the 100 KB/s leak named within 10 s ...
LEAK_RATE_BASELINE = 1.33  # ... at no more than leak_rate.py's documented cost (docs/diagnosis/index.md)


@dataclass
class Workload:
    """One program: its command line, and what a leak finder should name in it."""

    key: str
    title: str
    args: list[str]
    leak_function: tuple[str, ...] = ()  # any of these among the top three sites counts as named
    holder: str = ""  # a holder path naming this counts as named
    use_db: bool = False  # memwarden runs record a --db timeline ("named at" read from it, as leak_rate.py)


@dataclass
class Run:
    """One timed run and what memwarden said in it."""

    wall_s: float
    cpu_s: float
    verdict: str | None = None
    windows: int | None = None
    work_s: float | None = None
    site_named: bool | None = None
    holder_named: bool | None = None
    named_at_s: float | None = None
    holder: str | None = None


@dataclass
class Mode:
    """One way of running a program, and its runs."""

    name: str
    prefix: list[str]
    tool: str  # "plain", "memwarden", "memray" or "scalene"
    separator: bool = False  # scalene: ``---`` between the program and its arguments
    runs: list[Run] = field(default_factory=list)


class RunFailed(Exception):
    """A timed run exited with a non-zero status."""


def child_env() -> dict[str, str]:
    """The runs' environment: this checkout's src/ first on PYTHONPATH, no tracemalloc from outside."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONTRACEMALLOC", None)
    env.pop("PYTHONMALLOC", None)
    return env


def ensure_peers(venv: Path, base_python: str) -> tuple[dict[str, Path], list[str]]:
    """The peers' executables in ``venv`` (created and filled when missing), and a note per missing one."""
    notes: list[str] = []
    bindir = venv / "bin"
    if not (bindir / "python").exists():
        print(f"creating {venv} (python -m venv) ...", flush=True)
        made = subprocess.run(
            [base_python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            return {}, [f"could not create the peers' venv {venv}: {made.stderr.strip()[-300:]}"]
    found: dict[str, Path] = {}
    for peer in PEERS:
        exe = bindir / peer
        if not exe.exists():
            print(f"pip install {peer} into {venv} ...", flush=True)
            pip = subprocess.run(
                [str(bindir / "python"), "-m", "pip", "install", "-q", peer],
                capture_output=True,
                text=True,
                check=False,
            )
            if pip.returncode != 0 or not exe.exists():
                last = (pip.stderr.strip().splitlines() or ["no output"])[-1]
                notes.append(f"{peer}: could not be installed ({last}); going on without it")
                continue
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
        if version.returncode != 0:
            notes.append(f"{peer}: installed but `{peer} --version` fails; going on without it")
            continue
        found[peer] = exe
        print(f"{peer}: {(version.stdout or version.stderr).strip().splitlines()[0]}", flush=True)
    return found, notes


def calibrate(python: str, env: dict[str, str], scratch: Path) -> float:
    """Seconds one round of ``_workload_alloc.py`` takes here, plain (start-up taken out)."""

    def best(rounds: int) -> float:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            subprocess.run(
                [python, str(HERE / "_workload_alloc.py"), "--rounds", str(rounds)],
                env=env,
                cwd=scratch,
                capture_output=True,
                check=True,
            )
            times.append(time.perf_counter() - started)
        return min(times)

    return max(best(10_000) - best(0), 1e-3) / 10_000


def rounds_for(seconds: float, per_round_s: float) -> int:
    """Rounds of ``_workload_alloc.py`` that take about ``seconds`` plain, to the thousand."""
    return max(1000, round(seconds / per_round_s / 1000) * 1000)


def make_modes(workload: Workload, python: str, peers: dict[str, Path], scratch: Path) -> list[Mode]:
    """Every way this workload is run (plain first)."""
    memwarden = [python, "-m", "memwarden", "run"]
    modes = [Mode("plain", [python], "plain"), Mode("memwarden auto", memwarden, "memwarden")]
    if (
        not workload.use_db
    ):  # the 100 KB/s leak's target is memwarden's default cadence: the long run kept short
        modes += [
            Mode("memwarden 1 s", [*memwarden, "--interval", "1"], "memwarden"),
            Mode("memwarden 0.1 s", [*memwarden, "--interval", "0.1"], "memwarden"),
        ]
    if workload.leak_function:
        # Reference: sampling alone, no tracemalloc window (what the window and its close cost).
        modes.append(Mode("memwarden auto --no-trace", [*memwarden, "--no-trace"], "memwarden"))
    if "memray" in peers:
        out = str(scratch / "memray.bin")
        modes.append(Mode("memray", [str(peers["memray"]), "run", "-q", "-f", "-o", out], "memray"))
        if workload.leak_function and not workload.use_db:
            modes.append(
                Mode(
                    "memray --trace-python-allocators",
                    [str(peers["memray"]), "run", "-q", "-f", "--trace-python-allocators", "-o", out],
                    "memray",
                )
            )
    if "scalene" in peers:
        out = str(scratch / "scalene.json")
        modes.append(
            Mode("scalene --memory", [str(peers["scalene"]), "run", "--memory", "-o", out], "scalene", True)
        )
    return modes


def memwarden_findings(verdict: dict[str, Any], workload: Workload) -> Run:
    """What one memwarden verdict (schema memwarden.verdict/1) says about ``workload``: verdict,
    windows opened, memwarden's own work, whether the leak's site and holder were named and when."""
    windows = [e for e in verdict.get("evidence_items") or [] if e.get("code") == "window.traced"]
    work = ((verdict.get("layers") or {}).get("memwarden") or {}).get("work_s") or {}
    found = Run(
        wall_s=0.0,
        cpu_s=0.0,
        verdict=str(verdict.get("verdict")),
        windows=len(windows),
        work_s=work.get("last"),
    )
    if workload.leak_function:
        top = [(s.get("function") or "").rsplit(".", 1)[-1] for s in (verdict.get("sites") or [])[:3]]
        found.site_named = any(name in workload.leak_function for name in top)
        paths = [str(h.get("path") or "") for h in verdict.get("holders") or []]
        found.holder = paths[0] if paths else None
        found.holder_named = any(workload.holder in p for p in paths)
        if found.site_named and windows:
            found.named_at_s = min(float(w["figures"]["closed_s"]) for w in windows)
    return found


def run_once(mode: Mode, workload: Workload, env: dict[str, str], scratch: Path) -> None:
    """Run ``workload`` once in ``mode``, timed from outside; record the run (and memwarden's findings)."""
    verdict_path, db = scratch / "verdict.json", scratch / "run.db"
    command = list(mode.prefix)
    if mode.tool == "memwarden":
        verdict_path.unlink(missing_ok=True)
        if workload.use_db:
            db.unlink(missing_ok=True)
            command += ["--quiet", "--db", str(db)]
        command += ["--json", str(verdict_path)]
    command += [
        workload.args[0],
        *(["---"] if mode.separator and workload.args[1:] else []),
        *workload.args[1:],
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        command, env=env, cwd=scratch, capture_output=True, text=True, timeout=900, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RunFailed(
            f"{workload.title} / {mode.name} exited with status {completed.returncode}\n"
            f"command: {' '.join(command)}\n--- stderr ---\n{completed.stderr.rstrip()[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if mode.tool == "memwarden":
        try:
            run = memwarden_findings(json.loads(verdict_path.read_text()), workload)
        except (OSError, ValueError) as exc:
            run = Run(0.0, 0.0, verdict=f"(no verdict: {type(exc).__name__})")
        if workload.use_db and workload.leak_function:
            at, _grown = named_at(db, workload.leak_function[0])
            run.named_at_s = at
        run.wall_s, run.cpu_s = wall, cpu
    else:
        run = Run(wall, cpu)
    mode.runs.append(run)


def mode_row(mode: Mode, plain: Mode) -> dict[str, Any]:
    """One mode's figures: medians, ratios to plain, and memwarden's findings."""
    walls, cpus = [r.wall_s for r in mode.runs], [r.cpu_s for r in mode.runs]
    row: dict[str, Any] = {
        "mode": mode.name,
        "tool": mode.tool,
        "command": mode.prefix,
        "wall_s": walls,
        "cpu_s": cpus,
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "cpu_median_s": statistics.median(cpus),
        "ratio_wall_median": statistics.median(walls) / statistics.median(r.wall_s for r in plain.runs),
        "ratio_cpu_median": statistics.median(cpus) / statistics.median(r.cpu_s for r in plain.runs),
    }
    if mode.tool == "memwarden":
        row["runs"] = [dataclasses.asdict(r) for r in mode.runs]
        verdicts = [r.verdict or "?" for r in mode.runs]
        row["verdicts"] = {v: verdicts.count(v) for v in sorted(set(verdicts))}
        row["runs_with_window"] = sum(1 for r in mode.runs if r.windows)
        works = [r.work_s for r in mode.runs if r.work_s is not None]
        row["work_median_s"] = statistics.median(works) if works else None
        ats = [r.named_at_s for r in mode.runs if r.named_at_s is not None]
        row["site_named"] = sum(1 for r in mode.runs if r.site_named)
        row["holder_named"] = sum(1 for r in mode.runs if r.holder_named)
        row["named_at_median_s"] = statistics.median(ats) if ats else None
    return row


def notes_cell(row: dict[str, Any], workload: Workload, n: int) -> str:
    if row["tool"] != "memwarden":
        return ""
    verdicts = ", ".join(f"{v}×{c}" if c > 1 else v for v, c in row["verdicts"].items())
    parts = [verdicts, f"window {row['runs_with_window']}/{n}"]
    if row["work_median_s"] is not None:
        parts.append(f"own work {row['work_median_s']:.2f} s")
    if workload.leak_function:
        parts.append(f"site {row['site_named']}/{n}, holder {row['holder_named']}/{n}")
        if row["named_at_median_s"] is not None:
            parts.append(f"named at {row['named_at_median_s']:.1f} s")
    return "; ".join(parts)


def print_table(results: list[tuple[Workload, list[dict[str, Any]]]], n: int) -> None:
    print(f"\n{n} run(s) each, interleaved; wall and CPU medians in seconds (ratio to plain's median)")
    header = f"{'program':<14} {'mode':<33} {'wall':>17} {'CPU':>17}  memwarden: verdict; windows; named"
    print(header)
    print("-" * len(header))
    for workload, rows in results:
        for row in rows:
            print(
                f"{workload.title:<14} {row['mode']:<33} "
                f"{row['wall_median_s']:7.2f} ({row['ratio_wall_median']:5.2f}x) "
                f"{row['cpu_median_s']:7.2f} ({row['ratio_cpu_median']:5.2f}x)  {notes_cell(row, workload, n)}"
            )


def targets(results: list[tuple[Workload, list[dict[str, Any]]]], n: int) -> list[dict[str, Any]]:
    """The issue's cost targets, each met or not, with the figure."""
    by = {(w.key, r["mode"]): r for w, rows in results for r in rows}
    out: list[dict[str, Any]] = []
    for mode in ("memwarden 1 s", "memwarden 0.1 s"):
        row = by.get(("steady", mode))
        if row:
            met = row["ratio_wall_median"] <= STEADY_TARGET and row["runs_with_window"] == 0
            out.append(
                {
                    "target": f"steady, {mode}: <= {STEADY_TARGET}x, no window",
                    "met": met,
                    "figure": f"{row['ratio_wall_median']:.3f}x, window in {row['runs_with_window']}/{n}",
                }
            )
    row = by.get(("fast_leak", "memwarden auto"))
    if row:
        met = (
            row["ratio_wall_median"] <= FAST_LEAK_TARGET
            and row["site_named"] == n
            and row["holder_named"] == n
        )
        out.append(
            {
                "target": f"fast leak, memwarden auto: <= {FAST_LEAK_TARGET}x, site and holder named",
                "met": met,
                "figure": f"{row['ratio_wall_median']:.3f}x, site {row['site_named']}/{n}, holder {row['holder_named']}/{n}",
            }
        )
    row = by.get(("leak_rate", "memwarden auto"))
    if row:
        runs = row["runs"]
        in_time = sum(1 for r in runs if r["named_at_s"] is not None and r["named_at_s"] <= LEAK_RATE_NAMED_S)
        met = in_time == n and row["ratio_wall_median"] <= LEAK_RATE_BASELINE
        ats = [r["named_at_s"] for r in runs]
        out.append(
            {
                "target": f"100 KB/s leak, memwarden auto: named within {LEAK_RATE_NAMED_S:.0f} s, "
                f"<= {LEAK_RATE_BASELINE}x (leak_rate.py's documented cost)",
                "met": met,
                "figure": f"{row['ratio_wall_median']:.3f}x, named within {LEAK_RATE_NAMED_S:.0f} s in {in_time}/{n}"
                f" (at {', '.join('-' if a is None else f'{a:.1f}' for a in ats)} s)",
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repetitions", "-n", type=int, default=5, help="runs per mode (default: 5)")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV, help=f"default: {DEFAULT_VENV}")
    parser.add_argument("--python", default=sys.executable, help="interpreter for plain and memwarden runs")
    parser.add_argument(
        "--steady-rounds", type=int, help="steady program's rounds (default: calibrated to --steady-seconds)"
    )
    parser.add_argument(
        "--steady-seconds", type=float, default=5.0, help="steady program's plain length (default 5)"
    )
    parser.add_argument(
        "--leak-records", type=int, default=100_000, help="fast leak's records (~5 s, ~180 MiB)"
    )
    parser.add_argument(
        "--leak-rate-rounds",
        type=int,
        help="100 KB/s leak program's rounds (default: calibrated to --leak-rate-seconds)",
    )
    parser.add_argument(
        "--leak-rate-seconds",
        type=float,
        default=15.0,
        help="100 KB/s leak program's plain length (default 15, as in leak_rate.py's documented run)",
    )
    parser.add_argument("--skip-leak-rate", action="store_true", help="leave out the 100 KB/s leak program")
    parser.add_argument("--no-peers", action="store_true", help="run plain and memwarden only")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")

    peers: dict[str, Path] = {}
    notes: list[str] = []
    if not args.no_peers:
        peers, notes = ensure_peers(args.peers_venv, args.python)
        for note in notes:
            print(note, flush=True)
    env = child_env()
    # This machine sets PYTHONDONTWRITEBYTECODE: without .pyc files every memwarden run would compile its
    # sources again (~25 ms); the peers' venv was compiled by pip.
    subprocess.run(
        [args.python, "-m", "compileall", "-q", str(SRC)], env=env, capture_output=True, check=False
    )
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="memwarden-peers-") as tmp:
        scratch = Path(tmp)
        steady_rounds, leak_rate_rounds = args.steady_rounds, args.leak_rate_rounds
        if steady_rounds is None or (leak_rate_rounds is None and not args.skip_leak_rate):
            per_round = calibrate(args.python, env, scratch)
            steady_rounds = steady_rounds or rounds_for(args.steady_seconds, per_round)
            leak_rate_rounds = leak_rate_rounds or rounds_for(args.leak_rate_seconds, per_round)
            print(
                f"calibrated: {per_round * 1e6:.0f} us a round -> steady {steady_rounds} rounds, "
                f"100 KB/s leak {leak_rate_rounds} rounds",
                flush=True,
            )
        workloads = [
            Workload("empty", "empty", [str(HERE / "_workload_alloc.py"), "--rounds", "0"]),
            Workload("steady", "steady", [str(HERE / "_workload_alloc.py"), "--rounds", str(steady_rounds)]),
            Workload(
                "fast_leak",
                "fast leak",
                [str(HERE / "_workload_fastleak.py"), "--records", str(args.leak_records)],
                leak_function=("build_record", "remember_session"),
                holder="SESSIONS",
            ),
        ]
        if not args.skip_leak_rate:
            workloads.append(
                Workload(
                    "leak_rate",
                    "leak 100 KB/s",
                    [
                        str(HERE / "_workload_alloc.py"),
                        "--rounds",
                        str(leak_rate_rounds),
                        "--leak-kbps",
                        "100",
                    ],
                    leak_function=("remember_request",),
                    holder="KEPT",
                    use_db=True,
                )
            )
        plans = [(w, make_modes(w, args.python, peers, scratch)) for w in workloads]
        try:
            # Untimed warm-up: page in the interpreter, memwarden and the peers.
            warm = Workload("warm-up", "warm-up", [str(HERE / "_workload_alloc.py"), "--rounds", "2000"])
            for mode in make_modes(warm, args.python, peers, scratch):
                run_once(mode, warm, env, scratch)
            for rep in range(args.repetitions):
                for workload, modes in plans:
                    k = rep % len(modes)
                    for mode in modes[k:] + modes[:k]:
                        run_once(mode, workload, env, scratch)
                        last = mode.runs[-1]
                        extra = (
                            f"  {last.verdict}, windows {last.windows}" if mode.tool == "memwarden" else ""
                        )
                        print(
                            f"  round {rep + 1}/{args.repetitions} {workload.title:<14} {mode.name:<33} "
                            f"{last.wall_s:7.2f} s wall {last.cpu_s:7.2f} s CPU{extra}",
                            flush=True,
                        )
        except (RunFailed, subprocess.TimeoutExpired) as failure:
            print(f"\npeers benchmark: a run failed: {failure}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(scratch / "__pycache__", ignore_errors=True)
    results = [(w, [mode_row(m, modes[0]) for m in modes]) for w, modes in plans]
    print_table(results, args.repetitions)
    checks = targets(results, args.repetitions)
    print()
    empty = {r["mode"]: r["wall_median_s"] for w, rows in results if w.key == "empty" for r in rows}
    fixed = {mode: empty[mode] - empty["plain"] for mode in empty if mode != "plain"}
    print(
        "fixed cost a run (empty program, median less plain's): "
        + ", ".join(f"{m} {s:.2f} s" for m, s in fixed.items())
    )
    for check in checks:
        print(f"target: {check['target']}: {'met' if check['met'] else 'NOT met'} ({check['figure']})")
    if args.json:
        document = {
            "benchmark": "memwarden.peers/1",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_end": os.getloadavg(),
            "repetitions": args.repetitions,
            "peers": {name: str(path) for name, path in peers.items()},
            "peer_notes": notes,
            "workloads": [{**dataclasses.asdict(w), "modes": rows} for w, rows in results],
            "targets": checks,
            "fixed_cost_s": fixed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
