"""Leak tests in pytest, side by side: memwarden's ``@pytest.mark.leaks`` and pytest-memray's ``limit_leaks``.
(a benchmark, not a test)

The same functions (four that leak, six that do not) are checked by each plugin, each in its own
pytest process, in one run of this script:

* memwarden: ``@pytest.mark.leaks`` on a test calling the function once (the plugin repeats it);
  ``-p no:memray``. Each function is checked ``--runs`` times (parametrised), so the false-alarm
  figure is a rate over that many checks (a flake rate); each leak ``--leak-runs`` times.
* pytest-memray: ``@pytest.mark.limit_leaks(LIMIT)`` on a test calling the function ``--calls`` times
  (its documentation's advice: loop, so that a leak outgrows the limit), under ``PYTHONMALLOC=malloc``
  (also its advice); ``-p no:memwarden``. One check per function: its outcome does not vary.
* the time each adds: the same test files with the plugins switched off (memwarden:
  ``--memwarden-no-leak-checks``; memray: ``-p no:memray``), against the same with them on.

Run it where both plugins are installed::

    python -m venv /tmp/bench && /tmp/bench/bin/pip install -e ".[dev,bench-pytest]"
    /tmp/bench/bin/python benchmarks/pytest_leaks.py [--runs 100] [--leak-runs 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

FUNCS = '''
import collections
import ctypes
import functools
import itertools

# -- leaks ---------------------------------------------------------------------------------------
KEPT = []
def keep_4k():
    """Keeps a 4 KiB buffer per call in a module list."""
    KEPT.append(bytearray(4096))

SESSIONS = {}
def keep_small():
    """Keeps one ~100-byte string per call in a dict."""
    SESSIONS[len(SESSIONS)] = "session-%08d" % len(SESSIONS) + "x" * 64

LISTENERS = []
def add_listener():
    """Registers a new closure per call and never removes it."""
    state = {"calls": 0}
    def on_event(event):
        state["calls"] += 1
    LISTENERS.append(on_event)

_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
def native_malloc():
    """mallocs 8 KiB per call through ctypes and never frees it."""
    _libc.malloc(8192)

# -- no leak -------------------------------------------------------------------------------------
def churn():
    """Builds and drops 500 small dicts per call."""
    rows = [{"id": i, "name": str(i) * 8} for i in range(500)]
    return len(rows)

_TABLE = {}
def warm_once():
    """Fills a 2000-entry lookup table on its first call, then only reads it."""
    if not _TABLE:
        _TABLE.update({i: "entry %d" % i for i in range(2000)})
    return _TABLE[7]

_keys = itertools.count()
@functools.lru_cache(maxsize=32)
def _render(key):
    return "template %08d " % key * 40
def lru_bounded():
    """An lru_cache(maxsize=32) fed a new key per call: fills up, then evicts."""
    _render(next(_keys))

class _Node:
    def __init__(self, parent=None):
        self.parent, self.children, self.me = parent, [], self
def gc_cycles():
    """Builds 200 nodes in reference cycles per call and drops them."""
    root = _Node()
    for _ in range(200):
        root.children.append(_Node(root))

RECENT = collections.deque(maxlen=40)
def bounded_deque():
    """Appends 512 bytes per call to a deque(maxlen=40): grows for 40 calls, then stays full."""
    RECENT.append(bytearray(512))

_BUFFERS = []
def reuse_buffer():
    """Keeps one 64 KiB buffer, allocated on the first call, and reuses it."""
    if not _BUFFERS:
        _BUFFERS.append(bytearray(65536))
    _BUFFERS[0][:5] = b"hello"

LEAKS = ["keep_4k", "keep_small", "add_listener", "native_malloc"]
CLEAN = ["churn", "warm_once", "lru_bounded", "gc_cycles", "bounded_deque", "reuse_buffer"]
'''


def _memwarden_tests(runs: int, leak_runs: int) -> str:
    return textwrap.dedent(
        f"""
        import pytest
        import bench_funcs as f

        @pytest.mark.parametrize("run", range({leak_runs}))
        @pytest.mark.parametrize("name", f.LEAKS)
        @pytest.mark.leaks
        def test_leak(name, run):
            getattr(f, name)()

        @pytest.mark.parametrize("run", range({runs}))
        @pytest.mark.parametrize("name", f.CLEAN)
        @pytest.mark.leaks
        def test_clean(name, run):
            getattr(f, name)()
        """
    )


def _memray_tests(calls: int, limit: str) -> str:
    return textwrap.dedent(
        f"""
        import pytest
        import bench_funcs as f

        @pytest.mark.parametrize("name", f.LEAKS)
        @pytest.mark.limit_leaks("{limit}")
        def test_leak(name):
            fn = getattr(f, name)
            for _ in range({calls}):
                fn()

        @pytest.mark.parametrize("name", f.CLEAN)
        @pytest.mark.limit_leaks("{limit}")
        def test_clean(name):
            fn = getattr(f, name)
            for _ in range({calls}):
                fn()
        """
    )


def _pytest(
    tmp: Path, test_file: str, extra: list[str], env: dict[str, str] | None = None
) -> tuple[float, dict[str, str]]:
    """Run pytest on one file; return its wall time and each test id's outcome."""
    junit = tmp / f"{test_file}-{len(extra)}-{time.monotonic_ns()}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test_file]
    cmd += [f"--junitxml={junit}", *extra]
    started = time.perf_counter()
    subprocess.run(
        cmd, cwd=tmp, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    wall = time.perf_counter() - started
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name", "?")] = "failed" if failed else "passed"
    return wall, outcomes


def _tally(outcomes: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per function: how many checks failed, out of how many."""
    out: dict[str, dict[str, int]] = {}
    for test_id, outcome in outcomes.items():
        params = test_id.split("[", 1)[1].rstrip("]").split("-") if "[" in test_id else [test_id]
        name = next(p for p in params if not p.isdigit())  # ids are [name-run] or [name]
        row = out.setdefault(name, {"checks": 0, "failed": 0})
        row["checks"] += 1
        row["failed"] += outcome == "failed"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="memwarden checks per clean function")
    parser.add_argument("--leak-runs", type=int, default=10, help="memwarden checks per leaking function")
    parser.add_argument("--calls", type=int, default=20, help="calls per pytest-memray test")
    parser.add_argument(
        "--limit",
        nargs="+",
        default=["1 KB", "64 KB"],
        help="pytest-memray's limit_leaks location limits to try",
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    try:
        import pytest_memray  # noqa: F401
    except ImportError:
        print("pytest-memray is not installed here: pip install -e '.[dev,bench-pytest]'", file=sys.stderr)
        return 2
    sys.path.insert(0, "")
    results: dict[str, object] = {"python": sys.version.split()[0], "runs": args.runs, "calls": args.calls}
    with tempfile.TemporaryDirectory(prefix="mw-pytest-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bench_funcs.py").write_text(FUNCS)
        (tmp / "test_mw.py").write_text(_memwarden_tests(args.runs, args.leak_runs))
        mw_off, _ = _pytest(tmp, "test_mw.py", ["-p", "no:memray", "--memwarden-no-leak-checks"])
        mw_on, mw = _pytest(tmp, "test_mw.py", ["-p", "no:memray"])
        memray_runs = []
        for limit in args.limit:
            (tmp / "test_memray.py").write_text(_memray_tests(args.calls, limit))
            mr_off, _ = _pytest(tmp, "test_memray.py", ["-p", "no:memray", "-p", "no:memwarden"])
            malloc = {"PYTHONMALLOC": "malloc"}
            mr_on, mr = _pytest(tmp, "test_memray.py", ["-p", "no:memwarden"], env=malloc)
            memray_runs.append((limit, mr_off, mr_on, mr))
    leaks = ["keep_4k", "keep_small", "add_listener", "native_malloc"]
    mw_t = _tally(mw)
    mr_ts = [(limit, _tally(mr)) for limit, _, _, mr in memray_runs]
    head = "".join(f"{'memray ' + limit:>16}" for limit, _ in mr_ts)
    print(f"{'function':<15} {'leaks?':<7} {'memwarden':>14}{head}   (failed/checks)")
    for name in sorted(mw_t, key=lambda n: (n not in leaks, n)):
        a = mw_t[name]
        cells = "".join(
            f"{t.get(name, {}).get('failed', 0):>14}/{t.get(name, {}).get('checks', 0)}" for _, t in mr_ts
        )
        print(f"{name:<15} {'yes' if name in leaks else 'no':<7} {a['failed']:>12}/{a['checks']:<3}{cells}")

    def rates(t: dict[str, dict[str, int]]) -> tuple[int, int, int, int]:
        fa = sum(r["failed"] for n, r in t.items() if n not in leaks)
        clean = sum(r["checks"] for n, r in t.items() if n not in leaks)
        missed = sum(r["checks"] - r["failed"] for n, r in t.items() if n in leaks)
        leaky = sum(r["checks"] for n, r in t.items() if n in leaks)
        return fa, clean, missed, leaky

    print()
    fa, clean, missed, leaky = rates(mw_t)
    print(
        f"memwarden leaks:               false alarms {fa}/{clean}, missed leaks {missed}/{leaky}; "
        f"{mw_on:.1f} s for {len(mw)} checks vs {mw_off:.1f} s unchecked "
        f"(+{(mw_on - mw_off) / max(1, len(mw)) * 1000:.0f} ms a check)"
    )
    results["memwarden"] = {
        "per_function": mw_t,
        "false_alarms": [fa, clean],
        "missed": [missed, leaky],
        "wall_s": mw_on,
        "wall_off_s": mw_off,
        "checks": len(mw),
    }
    results["pytest_memray"] = []
    for (limit, mr_off, mr_on, mr), (_, t) in zip(memray_runs, mr_ts):
        fa, clean, missed, leaky = rates(t)
        print(
            f"pytest-memray limit_leaks({limit!r}): false alarms {fa}/{clean}, missed leaks {missed}/{leaky}; "
            f"{mr_on:.1f} s for {len(mr)} tests vs {mr_off:.1f} s untracked "
            f"(+{(mr_on - mr_off) / max(1, len(mr)) * 1000:.0f} ms a test)"
        )
        results["pytest_memray"].append(  # type: ignore[attr-defined]
            {
                "limit": limit,
                "per_function": t,
                "false_alarms": [fa, clean],
                "missed": [missed, leaky],
                "wall_s": mr_on,
                "wall_off_s": mr_off,
                "tests": len(mr),
            }
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
