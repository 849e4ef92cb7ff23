"""`memwarden snapshot`, `report` and `diagnose`: real subprocesses, real files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import run_memwarden


def test_snapshot_json_reads_every_layer_or_says_why(workdir: Path) -> None:
    """snapshot --json gives each layer's reading, and a reason for each layer that is unavailable."""
    proc = run_memwarden(["snapshot", "--json", "--census", "--top", "5"], workdir)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert snap["layers"]["process"]["rss_bytes"] > 0
    pym = snap["layers"]["pymalloc"]
    assert pym["arena_size_bytes"] >= 256 * 1024 and pym["pool_size_bytes"] >= 4096
    assert snap["unavailable"]["gpu"]  # no torch in this interpreter: the reason is given
    assert len(snap["census"]["types"]) == 5


def test_snapshot_table_is_readable(workdir: Path) -> None:
    """The table names the layers and the interpreter's real pymalloc geometry."""
    proc = run_memwarden(["snapshot"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "RSS" in proc.stdout and "pymalloc geometry" in proc.stdout


def test_report_and_diagnose_read_a_recorded_run(workdir: Path) -> None:
    """A --db run can be summarised (report) and decided again (diagnose) with the same verdict."""
    (workdir / "app.py").write_text(
        "import time\nKEEP=[]\nt0=time.monotonic()\nwhile time.monotonic()-t0<3:\n"
        "    KEEP.append(bytearray(150_000))\n    time.sleep(0.05)\n"
    )
    run = run_memwarden(
        ["run", "--quiet", "--interval", "0.2", "--db", "run.db", "--json", "v.json", "app.py"], workdir
    )
    assert run.returncode == 0, run.stderr
    recorded = json.loads((workdir / "v.json").read_text())
    report = run_memwarden(["report", "run.db"], workdir)
    assert report.returncode == 0, report.stderr
    assert recorded["verdict"] in report.stdout and "app.py" in report.stdout
    again = run_memwarden(["diagnose", "run.db", "--json", "-"], workdir)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["verdict"] == recorded["verdict"] == "python_leak"
    fail = run_memwarden(["diagnose", "run.db", "--fail-on-leak"], workdir)
    assert fail.returncode == 3


def test_report_on_bad_files_is_one_line(workdir: Path) -> None:
    """report/diagnose on a missing, non-SQLite or foreign SQLite file: one line, exit 2."""
    (workdir / "text.db").write_text("hello")
    conn = sqlite3.connect(workdir / "other.db")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    for args in (["report", "missing.db"], ["report", "text.db"], ["diagnose", "other.db"]):
        proc = run_memwarden(args, workdir)
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_no_command_prints_help_and_exits_2(workdir: Path) -> None:
    """`memwarden` alone prints the help and exits 2."""
    proc = run_memwarden([], workdir)
    assert proc.returncode == 2
    assert "run" in proc.stderr and "snapshot" in proc.stderr
