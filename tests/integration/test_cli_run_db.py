"""`memwarden run --db`: one file holds one run; another program's database is never touched."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from ._run_support import MEMWARDEN, db_facts, run_guarded, write


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """--db naming another program's SQLite file (tables, no memwarden schema): one line, exit 2, the
    program not run, and the file byte-identical with no -wal/-shm beside it, --db-overwrite or not."""
    write(tmp_path / "app.py", "open('ran.txt', 'w').write('yes')\n")
    db = tmp_path / "shop.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = _digest(db)
    for extra in ([], ["--db-overwrite"]):
        mw = run_guarded([*MEMWARDEN, "run", *extra, "--db", "shop.db", "app.py"], tmp_path)
        assert mw.returncode == 2, mw.stderr
        lines = mw.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memwarden: error: shop.db: "), mw.stderr
        assert "another program" in lines[0] and "users" in lines[0]
        assert not (tmp_path / "ran.txt").exists()
        assert _digest(db) == before
        assert _siblings(db) == ["shop.db"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("users",)]
    conn.close()


def test_a_db_that_holds_a_run_is_refused_unless_overwrite_then_holds_only_the_new_run(
    tmp_path: Path,
) -> None:
    """A second run into a used --db file is refused (one line naming --db-overwrite, exit 2, file
    intact); with --db-overwrite the file then holds the new run only: report and diagnose show it alone."""
    write(tmp_path / "first.py", "import time\ntime.sleep(1.0)\n")
    write(tmp_path / "second.py", "import time\nprint('second ran')\ntime.sleep(0.3)\n")
    first = run_guarded([*MEMWARDEN, "run", "-q", "--interval", "0.05", "--db", "r.db", "first.py"], tmp_path)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "r.db"
    first_facts = db_facts(db)
    before = _digest(db)

    again = run_guarded(
        [*MEMWARDEN, "run", "-q", "--interval", "0.05", "--db", "r.db", "second.py"], tmp_path
    )
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds a run" in lines[0] and "--db-overwrite" in lines[0], (
        again.stderr
    )
    assert "first.py" in lines[0]
    assert again.stdout == ""
    assert _digest(db) == before
    assert _siblings(db) == ["r.db"]  # read without leaving -wal/-shm files behind

    cmd = [*MEMWARDEN, "run", "-q", "--interval", "0.05", "--db-overwrite", "--db", "r.db", "second.py"]
    replaced = run_guarded(cmd, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout == "second ran\n"
    facts = db_facts(db)
    assert facts["meta"]["command"] == ["memwarden", "run", "second.py"]
    assert facts["meta"]["pid"] != first_facts["meta"]["pid"]
    assert facts["verdicts"] == 1
    assert 2 <= facts["samples"] < first_facts["samples"], (facts, first_facts)

    report = run_guarded([*MEMWARDEN, "report", "r.db"], tmp_path)
    assert report.returncode == 0, report.stderr
    assert "second.py" in report.stdout and "first.py" not in report.stdout
    diagnosed = run_guarded([*MEMWARDEN, "diagnose", "r.db", "--json", "-"], tmp_path)
    assert diagnosed.returncode == 0, diagnosed.stderr
    verdict = json.loads(diagnosed.stdout)
    assert verdict["samples"] == facts["samples"]
    assert verdict["duration_s"] < 1.0  # the 0.3 s run alone, not the 1 s run before it


def test_an_empty_file_or_unused_timeline_is_accepted(tmp_path: Path) -> None:
    """A zero-byte file (from mktemp) and an SQLite file with no tables are fresh timelines, not refused."""
    write(tmp_path / "app.py", "print('ok')\n")
    (tmp_path / "empty.db").write_bytes(b"")
    conn = sqlite3.connect(tmp_path / "blank.db")  # an SQLite file whose only table was dropped
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")
    conn.commit()
    conn.close()
    assert (tmp_path / "blank.db").read_bytes().startswith(b"SQLite format 3\x00")
    for name in ("empty.db", "blank.db"):
        mw = run_guarded([*MEMWARDEN, "run", "-q", "--interval", "0.05", "--db", name, "app.py"], tmp_path)
        assert mw.returncode == 0, mw.stderr
        assert db_facts(tmp_path / name)["verdicts"] == 1


def test_the_db_check_runs_before_the_program(tmp_path: Path) -> None:
    """A refused --db stops memwarden before the program starts (no side effect of the program)."""
    write(tmp_path / "app.py", "open('ran.txt', 'w').write('yes')\n")
    ok = run_guarded([*MEMWARDEN, "run", "-q", "--db", "r.db", "app.py"], tmp_path)
    assert ok.returncode == 0 and (tmp_path / "ran.txt").exists()
    (tmp_path / "ran.txt").unlink()
    refused = run_guarded([*MEMWARDEN, "run", "-q", "--db", "r.db", "app.py"], tmp_path)
    assert refused.returncode == 2
    assert not (tmp_path / "ran.txt").exists()
