"""How long diagnosing a week-long timeline takes: the bounded digest against the full read.

Run: ``python benchmarks/long_history.py`` (``PYTHONPATH=src`` from a checkout). Writes a recorded
week (10 s samples, 60,480 rows of about 2 KB of JSON, flat for 3 d 14 h, then a Python leak of
2 MiB/h; the generator of ``tests/unit/_week.py``) into a temporary SQLite timeline, then times,
side by side:

- **digest**: ``Timeline.open_existing`` + ``timeline.sample_digest()`` (2,000 strided rows and
  the latest 500) + ``classify(digest.samples, total_samples=digest.total)``;
- **full read**: ``Timeline.open_existing`` + ``timeline.samples()`` (every row) + ``classify``.

Prints the median of ``--repeat`` runs (wall and CPU seconds) of each, their ratio and both
verdicts. ``--db PATH`` keeps the week in PATH (written once, reused by later runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the generator lives with the tests

from tests.unit._week import DAY, HOUR, write_week

from memwarden.diagnosis._classify import classify
from memwarden.diagnosis._verdict import Verdict
from memwarden.timeline import Timeline


def digest_read(path: Path) -> Verdict:
    with Timeline.open_existing(path) as timeline:
        digest = timeline.sample_digest()
    return classify(digest.samples, total_samples=digest.total)


def full_read(path: Path) -> Verdict:
    with Timeline.open_existing(path) as timeline:
        samples = timeline.samples()
    return classify(samples)


def median_s(action: Callable[[], Verdict], repeat: int) -> tuple[float, float, Verdict]:
    """The median of ``repeat`` runs: (wall s, CPU s, the last verdict)."""
    walls, cpus = [], []
    verdict = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        verdict = action()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    assert verdict is not None
    return statistics.median(walls), statistics.median(cpus), verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each path (median); 5 unless told")
    parser.add_argument("--db", type=Path, help="keep the generated week here (reused if present)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "week.db"
        if not path.exists():
            w = time.perf_counter()
            week = write_week(path, leak_start_s=3 * DAY + 14 * HOUR, seed=11)
            print(
                f"wrote {week.rows:,} samples ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - w:.1f} s"
            )
        new = median_s(lambda: digest_read(path), args.repeat)
        old = median_s(lambda: full_read(path), args.repeat)
    print(f"{'path':<11} {'wall s':>7} {'cpu s':>7}  verdict")
    for name, (wall, cpu, v) in (("digest", new), ("full read", old)):
        began = v.growth_began
        since = f", growth began at +{began.offset_s / HOUR:.2f} h" if began is not None else ""
        print(f"{name:<11} {wall:7.3f} {cpu:7.3f}  {v.verdict} ({v.samples:,} samples{since})")
    print(
        f"full read / digest: {old[0] / new[0]:.1f}x wall, {old[1] / new[1]:.1f}x CPU (median of {args.repeat})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
