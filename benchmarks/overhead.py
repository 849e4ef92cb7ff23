"""How much slower does a program run under ``memwarden run``? (a benchmark, not a test)

Runs the fixed-work, allocation-heavy loop in ``_workload_alloc.py`` four ways, interleaved, N
times each:

* ``plain``: ``python _workload_alloc.py``
* ``memwarden 1 s``: ``python -m memwarden run --interval 1 _workload_alloc.py``
* ``memwarden 0.1 s``: ``python -m memwarden run --interval 0.1 _workload_alloc.py``
* ``tracemalloc``: ``python -X tracemalloc=1 _workload_alloc.py`` (what always-on tracing costs)

Each run is timed from outside with ``time.perf_counter()`` around the subprocess (so interpreter
start-up, memwarden's import and its final diagnosis are included: what a user waits for), and
its CPU time (user + system) is taken from the child's resource usage, which is steadier than
wall time on a shared machine. It prints the median and minimum of each and the ratio to plain.
The target is a median wall-time ratio of at most 1.02 at the default 1 s interval.

It also runs plain and ``memwarden 1 s`` on an empty workload (``--rounds 0``), interleaved, to
separate memwarden's fixed cost (import, set-up, final diagnosis: paid once per run) from its
steady-state cost while the program works: the "steady-state ratio" is
``(memwarden - memwarden's empty run) / (plain - plain's empty run)``.

    python benchmarks/overhead.py [--repetitions 5] [--rounds 90000] [--skip-tracemalloc] [--json results.json]
    python benchmarks/overhead.py --workload benchmarks/_workload_torch.py --skip-tracemalloc   # PyTorch, CPU

memwarden is imported from this checkout's ``src/`` when it is not installed. If ``memwarden run``
fails, its stderr is printed and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "_workload_alloc.py"
SRC = HERE.parent / "src"
TARGET_RATIO_AT_1S = 1.02


@dataclass
class Mode:
    """One way of running the workload, and the timings collected for it."""

    name: str
    prefix: list[str]
    uses_memwarden: bool
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)


class RunFailed(Exception):
    """A timed run exited with a non-zero status."""


def child_env() -> dict[str, str]:
    """The environment for the runs: this checkout's src/ first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONTRACEMALLOC", None)
    return env


def make_modes(python: str) -> list[Mode]:
    memwarden = [python, "-m", "memwarden", "run"]
    return [
        Mode("plain", [python], uses_memwarden=False),
        Mode("memwarden 1 s", [*memwarden, "--interval", "1"], uses_memwarden=True),
        Mode("memwarden 0.1 s", [*memwarden, "--interval", "0.1"], uses_memwarden=True),
        Mode("tracemalloc", [python, "-X", "tracemalloc=1"], uses_memwarden=False),
    ]


def run_once(
    mode: Mode, workload_args: list[str], env: dict[str, str], scratch: Path, workload: Path = WORKLOAD
) -> None:
    """Run the workload once in ``mode`` and record its wall and CPU time (and verdict)."""
    verdict_path = scratch / "verdict.json"
    verdict_path.unlink(missing_ok=True)
    command = list(mode.prefix)
    if mode.uses_memwarden:
        command += ["--json", str(verdict_path)]
    command += [str(workload), *workload_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RunFailed(
            f"{mode.name} exited with status {completed.returncode}\n"
            f"command: {' '.join(command)}\n--- stderr ---\n{completed.stderr.rstrip()}"
        )
    mode.wall_s.append(wall)
    mode.cpu_s.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    if mode.uses_memwarden:
        mode.verdicts.append(read_verdict(verdict_path))


def read_verdict(path: Path) -> str:
    """The verdict memwarden wrote, or a short note saying why there is none."""
    try:
        return str(json.loads(path.read_text())["verdict"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"(no verdict: {type(exc).__name__})"


@dataclass
class Summary:
    """One mode's figures: medians, minimum, ratios to plain."""

    mode: str
    wall_s: list[float]
    cpu_s: list[float]
    wall_median_s: float
    wall_min_s: float
    cpu_median_s: float
    ratio_wall_median: float
    ratio_wall_min: float
    ratio_cpu_median: float
    verdicts: list[str]


def summarise(modes: list[Mode]) -> list[Summary]:
    """Median, minimum and ratio to plain for each mode (the first mode is plain)."""
    plain = modes[0]
    return [
        Summary(
            mode=mode.name,
            wall_s=mode.wall_s,
            cpu_s=mode.cpu_s,
            wall_median_s=statistics.median(mode.wall_s),
            wall_min_s=min(mode.wall_s),
            cpu_median_s=statistics.median(mode.cpu_s),
            ratio_wall_median=statistics.median(mode.wall_s) / statistics.median(plain.wall_s),
            ratio_wall_min=min(mode.wall_s) / min(plain.wall_s),
            ratio_cpu_median=statistics.median(mode.cpu_s) / statistics.median(plain.cpu_s),
            verdicts=mode.verdicts,
        )
        for mode in modes
    ]


def print_table(rows: list[Summary], repetitions: int) -> None:
    print(f"\n{repetitions} runs each, interleaved; seconds (ratio to plain)")
    header = f"{'mode':<16} {'wall median':>18} {'wall min':>18} {'CPU median':>18}  verdicts"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.mode:<16} "
            f"{row.wall_median_s:>8.3f} ({row.ratio_wall_median:6.3f}x) "
            f"{row.wall_min_s:>8.3f} ({row.ratio_wall_min:6.3f}x) "
            f"{row.cpu_median_s:>8.3f} ({row.ratio_cpu_median:6.3f}x)  {', '.join(sorted(set(row.verdicts)))}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repetitions", "-n", type=int, default=5, help="runs per mode (default: 5)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="workload size (default: the workload's own)"
    )
    parser.add_argument(
        "--workload",
        type=Path,
        default=WORKLOAD,
        help="a script taking --rounds N (default: _workload_alloc.py; _workload_torch.py is PyTorch on the CPU)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to benchmark")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs")
    parser.add_argument(
        "--skip-tracemalloc", action="store_true", help="leave out the (slow) -X tracemalloc=1 comparison"
    )
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")

    env = child_env()
    modes = make_modes(args.python)
    if args.skip_tracemalloc:
        modes = [mode for mode in modes if mode.name != "tracemalloc"]
    workload: Path = args.workload
    workload_args = ["--rounds", str(args.rounds)] if args.rounds is not None else []
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"workload: {workload.name} {' '.join(workload_args)}"
    )
    with tempfile.TemporaryDirectory(prefix="memwarden-overhead-") as tmp:
        scratch = Path(tmp)
        try:
            if not args.no_warmup:
                warm = [Mode("warm-up", [args.python], False), Mode("warm-up", modes[1].prefix, True)]
                for mode in warm:
                    run_once(mode, workload_args, env, scratch, workload)
            for repetition in range(args.repetitions):
                # Rotate the order each repetition so slow drifts of the machine hit every mode alike.
                order = modes[repetition % len(modes) :] + modes[: repetition % len(modes)]
                for mode in order:
                    run_once(mode, workload_args, env, scratch, workload)
                    print(
                        f"  run {repetition + 1}/{args.repetitions} {mode.name:<16} "
                        f"{mode.wall_s[-1]:7.3f} s wall, {mode.cpu_s[-1]:7.3f} s CPU",
                        flush=True,
                    )
            empty = [
                Mode("plain, empty", modes[0].prefix, False),
                Mode("memwarden 1 s, empty", modes[1].prefix, True),
            ]
            for _ in range(args.repetitions):
                for mode in empty:
                    run_once(mode, ["--rounds", "0"], env, scratch, workload)
        except RunFailed as failure:
            print(f"\nmemwarden overhead benchmark: a run failed: {failure}", file=sys.stderr)
            return 1

    rows = summarise(modes)
    print_table(rows, args.repetitions)
    fixed = {mode.name: statistics.median(mode.wall_s) for mode in empty}
    fixed_cost = fixed["memwarden 1 s, empty"] - fixed["plain, empty"]
    steady = (rows[1].wall_median_s - fixed["memwarden 1 s, empty"]) / (
        rows[0].wall_median_s - fixed["plain, empty"]
    )
    print(
        f"\nempty program: plain {fixed['plain, empty']:.3f} s, memwarden 1 s {fixed['memwarden 1 s, empty']:.3f} s "
        f"-> fixed cost {fixed_cost:.3f} s per run; steady-state ratio at 1 s: {steady:.3f}x"
    )
    ratio = rows[1].ratio_wall_median
    met = "met" if ratio <= TARGET_RATIO_AT_1S else "NOT met"
    print(f"\ntarget: median wall ratio <= {TARGET_RATIO_AT_1S} at --interval 1: {met} ({ratio:.3f}x)")
    if args.json:
        result = {
            "benchmark": "memwarden.overhead/1",
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "repetitions": args.repetitions,
            "workload": {"script": workload.name, "rounds": args.rounds},
            "target_ratio_at_1s": TARGET_RATIO_AT_1S,
            "modes": [dataclasses.asdict(row) for row in rows],
            "empty_program_wall_median_s": fixed,
            "fixed_cost_s": fixed_cost,
            "steady_state_ratio_at_1s": steady,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
