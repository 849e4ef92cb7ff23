"""`memwarden baseline record|compare` end to end, on two versions of a small app, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_memwarden

APP_V1 = '''
"""A small service: 30 requests; each builds a response and drops it."""
import time

SEEN = []

def handle(i):
    body = [{"id": i, "text": "x" * 200} for _ in range(200)]
    return len(body)

for i in range(30):
    handle(i)
    time.sleep(0.04)
'''

# Version 2 keeps 200 kB of every request.
APP_V2 = APP_V1.replace("    return len(body)", "    SEEN.append(bytearray(200_000))\n    return len(body)")


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """app.py (version 1) with a baseline recorded from three runs."""
    (tmp_path / "app.py").write_text(APP_V1)
    done = run_memwarden(["baseline", "record", "--out", "memory-baseline.json", "app.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_compare_passes_on_the_same_version_and_fails_on_the_leaky_one(recorded: Path) -> None:
    """The unchanged app is within every allowance; the version that keeps 200 kB a request fails with exit 3,
    naming the native and process figures that regressed, and leaves the Python block count alone."""
    data = json.loads((recorded / "memory-baseline.json").read_text())
    assert data["schema"] == "memwarden.baseline/1" and data["workload"] == ["app.py"]
    assert set(data["figures"]) >= {"process.peak", "python.steady", "native.growth_per_s"}
    assert len(data["figures"]["process.peak"]["runs"]) == 3

    same = run_memwarden(["baseline", "compare"], recorded)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "all 9 figures within their allowance" in same.stderr

    (recorded / "app.py").write_text(APP_V2)
    leaky = run_memwarden(["baseline", "compare", "--json", "cmp.json"], recorded)
    assert leaky.returncode == 3, leaky.stdout + leaky.stderr
    summary = leaky.stderr.strip().splitlines()[-1]
    assert summary.startswith("memwarden: ") and "figure(s) regressed: " in summary
    assert "native.growth_per_s" in summary and "native.steady" in summary
    report = json.loads((recorded / "cmp.json").read_text())
    assert {"native.growth_per_s", "native.steady", "process.steady"} <= set(report["regressed"])
    assert not any(name.startswith("python.") for name in report["regressed"])
    assert "REGRESSED" in leaky.stdout


@pytest.mark.slow
def test_ten_compares_of_the_unchanged_app_never_fail(recorded: Path) -> None:
    """Ten compares of the version that was recorded: no false failure."""
    codes = [run_memwarden(["baseline", "compare"], recorded).returncode for _ in range(10)]
    assert codes == [0] * 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "memwarden.baseline/1", "workl', "not valid JSON (line 1"),
        (
            '{"schema": "memwarden.verdict/1", "verdict": "stable"}',
            "not a memwarden baseline (schema 'memwarden.verdict/1'",
        ),
        ("[1, 2]", "not a memwarden baseline (a JSON object"),
        (
            '{"schema": "memwarden.baseline/1", "workload": ["app.py"]}',
            "corrupt baseline (missing 'figures')",
        ),
        (
            '{"schema": "memwarden.baseline/1", "workload": ["app.py"], '
            '"figures": {"process.peak": {"value": "big", "noise": 0}}}',
            "corrupt baseline (process.peak: 'big' is not a finite number)",
        ),
    ],
)
def test_a_bad_baseline_file_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    """A corrupt, foreign or incomplete baseline file gives exit 2 and one line naming the file and the fault."""
    (tmp_path / "bad.json").write_text(content)
    done = run_memwarden(["baseline", "compare", "--baseline", "bad.json"], tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwarden: error: bad.json: "), done.stderr
    assert message in lines[0]


def test_a_failing_or_missing_workload_is_one_line(tmp_path: Path) -> None:
    """A workload that exits non-zero, a missing baseline file and no workload at all are one-line errors."""
    (tmp_path / "crash.py").write_text("raise SystemExit('database unreachable')\n")
    crash = run_memwarden(["baseline", "record", "crash.py"], tmp_path)
    assert crash.returncode == 2
    assert crash.stderr.strip() == (
        "memwarden: error: the workload `crash.py` exited with code 1: database unreachable"
    )
    missing = run_memwarden(["baseline", "compare"], tmp_path)
    assert missing.returncode == 2 and "no such baseline file" in missing.stderr
    nothing = run_memwarden(["baseline", "record"], tmp_path)
    assert nothing.returncode == 2 and "needs a workload" in nothing.stderr


def test_a_pytest_selection_is_a_workload(tmp_path: Path) -> None:
    """`record -m pytest -q FILE` keeps pytest's own options (even in a project whose pytest turns
    warnings into errors), and compare runs the same selection again."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "test_api.py").write_text(
        "import time\n\ndef test_a():\n    rows = [str(i) for i in range(10000)]\n    time.sleep(0.6)\n"
    )
    # the default 3 recorded runs: their spread is the noise compare allows for (a pytest run's
    # native peak moves by several MiB from run to run on a busy machine)
    rec = run_memwarden(["baseline", "record", "-m", "pytest", "-q", "test_api.py"], tmp_path)
    assert rec.returncode == 0, rec.stderr
    data = json.loads((tmp_path / "memory-baseline.json").read_text())
    assert data["workload"] == ["-m", "pytest", "-q", "test_api.py"]
    # the median of three compare runs, as docs/pytest.md advises for a workload this short: one
    # run's native peak can catch a transient few MiB of pytest's own start-up
    same = run_memwarden(["baseline", "compare", "--repeat", "3"], tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
