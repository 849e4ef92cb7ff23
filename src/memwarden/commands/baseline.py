"""``memwarden baseline record|compare``: a workload's memory figures kept in a JSON file, and checked again.

Exit codes: 0 when every figure is within its allowance, 3 when one regressed, 2 for bad input (a
corrupt or foreign baseline file, a workload that fails).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .._format import format_bytes
from ..baseline import (
    DEFAULT_NOISE_FACTOR,
    DEFAULT_TOLERANCE,
    LAYERS,
    Baseline,
    BaselineError,
    Figure,
    FigureCheck,
    combine,
    compare,
    figures_of_run,
    load,
)
from ..exceptions import UsageError

HELP = "record a workload's memory figures in a JSON file, or compare a new run with them"
DESCRIPTION = (
    "record: run a workload (script.py, -m module, or -m pytest TESTS) a few times under `memwarden run` and "
    "write its peak, steady state and growth per second, per layer, to a JSON file meant to be committed. "
    "compare: run it again and fail (exit code 3) when a figure regresses beyond a tolerance that accounts for "
    "the noise measured when recording."
)
EXIT_REGRESSED = 3
DEFAULT_FILE = "memory-baseline.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="action", parser_class=type(p))
    rec = actions.add_parser("record", help="run the workload and write the baseline file")
    rec.add_argument("--out", "-o", metavar="PATH", default=DEFAULT_FILE, help=f"(default: {DEFAULT_FILE})")
    rec.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="runs to record, for the noise (default 3)"
    )
    rec.add_argument("--interval", type=float, default=0.2, metavar="SECONDS", help="sampling interval (0.2)")
    rec.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="FRACTION",
        help=f"relative growth of a figure allowed by compare (default {DEFAULT_TOLERANCE})",
    )
    rec.add_argument(
        "--noise-factor",
        type=float,
        default=DEFAULT_NOISE_FACTOR,
        metavar="K",
        help=f"a figure may also move K times its recorded noise (default {DEFAULT_NOISE_FACTOR:g})",
    )
    rec.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE ...",
        help="run a module, like python -m; everything after it is the module's (e.g. -m pytest -q tests/)",
    )
    rec.add_argument(
        "program", nargs=argparse.REMAINDER, help="script.py [args...] (or, with -m, the module's args)"
    )
    cmp = actions.add_parser("compare", help="run the workload again and compare with the baseline file")
    cmp.add_argument(
        "--baseline", "-b", metavar="PATH", default=DEFAULT_FILE, help=f"(default: {DEFAULT_FILE})"
    )
    cmp.add_argument("--repeat", type=int, default=1, metavar="N", help="runs to compare (median; default 1)")
    cmp.add_argument("--tolerance", type=float, default=None, metavar="FRACTION", help="override the file's")
    cmp.add_argument("--json", metavar="PATH", help="write the comparison as JSON ('-' for stdout)")


def execute(args: argparse.Namespace) -> int:
    if args.action == "record":
        return _record(args)
    if args.action == "compare":
        return _compare(args)
    raise UsageError("baseline needs an action: record or compare (see `memwarden baseline --help`)")


def _record(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, not {args.repeat}")
    if not args.interval > 0:
        raise UsageError(f"--interval must be positive, not {args.interval}")
    if not 0 <= args.tolerance < 10:
        raise UsageError(f"--tolerance must be a fraction such as 0.1, not {args.tolerance}")
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if args.module is not None:
        if not args.module:
            raise UsageError("-m needs a module name, e.g. -m pytest tests/")
        workload = ["-m", *args.module]
    elif program:
        workload = program
    else:
        raise UsageError("baseline record needs a workload: script.py [args] or -m module [args]")
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"--out: the directory {out.parent} does not exist")
    runs = _run_many(workload, args.interval, args.repeat)
    baseline = Baseline(
        workload=tuple(workload),
        interval=args.interval,
        figures=combine(runs),
        tolerance=args.tolerance,
        noise_factor=args.noise_factor,
        meta={
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": args.repeat,
            "python": sys.version.split()[0],
        },
    )
    baseline.save(out)
    print(
        f"memwarden: baseline of {' '.join(workload)} ({args.repeat} runs) written to {out}", file=sys.stderr
    )
    _print_figures(baseline.figures)
    return 0


def _compare(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, not {args.repeat}")
    baseline = load(args.baseline)
    runs = _run_many(list(baseline.workload), baseline.interval, args.repeat)
    current = combine(runs)
    checks = compare(baseline, current, tolerance=args.tolerance)
    regressed = [c for c in checks if c.regressed]
    if args.json:
        data = {
            "schema": "memwarden.baseline-compare/1",
            "baseline": str(args.baseline),
            "regressed": [c.name for c in regressed],
            "figures": [
                {
                    "name": c.name,
                    "unit": c.unit,
                    "baseline": c.baseline,
                    "current": c.current,
                    "allowed": c.allowed,
                    "regressed": c.regressed,
                }
                for c in checks
            ],
        }
        if args.json == "-":
            json.dump(data, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.json != "-":
        _print_checks(checks, args.baseline, args.repeat)
    if regressed:
        worst = "; ".join(
            f"{c.name} {_amount(c.current, c)} vs {_amount(c.baseline, c)} (allowed {_signed(c.allowed, c)})"
            for c in regressed
        )
        print(f"memwarden: {len(regressed)} figure(s) regressed: {worst}", file=sys.stderr)
        return EXIT_REGRESSED
    print(f"memwarden: all {len(checks)} figures within their allowance", file=sys.stderr)
    return 0


def _run_many(workload: Sequence[str], interval: float, repeat: int) -> list[dict[str, float]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="memwarden-baseline-") as tmp:
        for i in range(repeat):
            runs.append(_run_once(workload, interval, Path(tmp) / f"run{i}.db"))
    return runs


def _run_once(workload: Sequence[str], interval: float, db: Path) -> dict[str, float]:
    """One run of the workload under ``memwarden run --no-trace``, reduced to its figures."""
    from ..timeline import Timeline, series

    cmd = [sys.executable, "-m", "memwarden", "run", "--no-trace", "--quiet", "--interval", str(interval)]
    cmd += ["--db", str(db), *_run_args(workload)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise BaselineError(f"the workload `{' '.join(workload)}` exited with code {done.returncode}: {last}")
    with Timeline.open_existing(db) as timeline:
        samples = timeline.samples()
    layers: dict[str, tuple[list[float], list[float]]] = {}
    for layer, (metrics, _unit) in LAYERS.items():
        parts = [series(samples, m) for m in metrics]
        if not parts or any(not ys for _, ys in parts):
            continue
        ts = parts[0][0]
        n = min(len(ys) for _, ys in parts)
        layers[layer] = (ts[:n], [sum(ys[i] for _, ys in parts) for i in range(n)])
    if not layers or max(len(ys) for _, ys in layers.values()) < 2:
        raise BaselineError(
            f"the workload `{' '.join(workload)}` ran too briefly to sample (under two samples at {interval} s): "
            "lower --interval or make it run longer"
        )
    return figures_of_run(layers)


def _run_args(workload: Sequence[str]) -> list[str]:
    """The workload as ``memwarden run`` takes it: a module's own options after ``--``.

    For ``-m pytest`` the warning that memwarden (loaded by ``memwarden run`` before pytest starts)
    cannot be assert-rewritten is silenced: it says nothing about the tests, and a project whose
    pytest turns warnings into errors would fail on it.
    """
    if len(workload) >= 2 and workload[0] == "-m":
        module, rest = workload[1], list(workload[2:])
        if module == "pytest":
            rest = ["-W", "ignore::pytest.PytestAssertRewriteWarning", *rest]
        return ["-m", module, *rest]  # memwarden run passes everything after the module to it
    return list(workload)


def _amount(value: float, check: FigureCheck | Figure) -> str:
    unit = check.unit
    per_s = "/s" if getattr(check, "name", "").endswith("growth_per_s") else ""
    if unit == "B":
        return f"{format_bytes(value)}{per_s}"
    return f"{value:,.0f} {unit}{per_s}"


def _signed(value: float, check: FigureCheck) -> str:
    text = _amount(abs(value), check)
    return ("-" if value < 0 else "+") + text


def _print_figures(figures: dict[str, Figure]) -> None:
    print(f"{'figure':<22} {'value':>14} {'noise':>12}")
    for name, f in sorted(figures.items()):
        per_s = "/s" if name.endswith("growth_per_s") else ""
        value = format_bytes(f.value) + per_s if f.unit == "B" else f"{f.value:,.0f} {f.unit}{per_s}"
        noise = format_bytes(f.noise) if f.unit == "B" else f"{f.noise:,.0f}"
        print(f"{name:<22} {value:>14} {'±' + noise:>12}")


def _print_checks(checks: list[FigureCheck], path: str, repeat: int) -> None:
    print(f"compared with {path} ({repeat} run(s) now)")
    print(f"{'figure':<22} {'baseline':>14} {'now':>14} {'change':>14} {'allowed':>14}")
    for c in checks:
        status = "REGRESSED" if c.regressed else "ok"
        print(
            f"{c.name:<22} {_amount(c.baseline, c):>14} {_amount(c.current, c):>14} "
            f"{_signed(c.change, c):>14} {_signed(c.allowed, c):>14}  {status}"
        )
