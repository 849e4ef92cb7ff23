"""The timeline: samples and events in a real SQLite file, bounded, readable after the fact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memwarden.exceptions import TimelineError
from memwarden.timeline import SCHEMA, Sample, Timeline, series


def _sample(i: int, rss: float) -> Sample:
    return Sample(
        t=1.7e9 + i, mono=100.0 + i, metrics={"process.rss_bytes": rss, "objects.allocated_blocks": i}
    )


def test_samples_and_events_survive_close_and_reopen(tmp_path: Path) -> None:
    """What a run wrote is read back, in order, by a new connection after the writer closed."""
    db = tmp_path / "run.db"
    with Timeline(db) as tl:
        tl.set_meta(command=["memwarden", "run", "app.py"], interval=1.0)
        for i in range(5):
            tl.append(_sample(i, 1000.0 * i))
        tl.add_event("verdict", {"verdict": "stable"})
    with Timeline.open_existing(db) as tl:
        samples = tl.samples()
        assert [s.metrics["process.rss_bytes"] for s in samples] == [0, 1000, 2000, 3000, 4000]
        assert tl.meta()["command"] == ["memwarden", "run", "app.py"]
        assert tl.meta()["schema"] == SCHEMA
        assert [e.data["verdict"] for e in tl.events("verdict")] == ["stable"]


def test_retention_keeps_only_the_newest_samples(tmp_path: Path) -> None:
    """Past max_samples the oldest rows go, so a long run's file stays bounded."""
    with Timeline(tmp_path / "run.db", max_samples=100) as tl:
        for i in range(1000):
            tl.append(_sample(i, float(i)))
        kept = tl.samples()
    assert 100 <= len(kept) <= 105  # trimmed in batches of 5 %
    assert kept[-1].metrics["objects.allocated_blocks"] == 999
    assert kept[0].metrics["objects.allocated_blocks"] >= 1000 - 105


def test_non_finite_values_are_stored_as_null(tmp_path: Path) -> None:
    """NaN and infinity are not JSON: they become None rather than corrupting the row."""
    with Timeline(tmp_path / "run.db") as tl:
        tl.append(Sample(1.0, 1.0, {"a.x": float("nan"), "a.y": float("inf"), "a.z": 3}))
        (s,) = tl.samples()
    assert s.metrics == {"a.x": None, "a.y": None, "a.z": 3}


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """Reading a timeline that does not exist names the path and says what to give instead."""
    with pytest.raises(TimelineError, match="no such file"):
        Timeline.open_existing(tmp_path / "nope.db")


def test_a_text_file_is_not_a_timeline(tmp_path: Path) -> None:
    """A file that is not SQLite is refused with a clear reason, for reading and for writing."""
    bad = tmp_path / "bad.db"
    bad.write_text("hello, I am not a database\n" * 10)
    with pytest.raises(TimelineError, match="not an SQLite file"):
        Timeline.open_existing(bad)
    with pytest.raises(TimelineError, match="not an SQLite file"):
        Timeline(bad)
    assert bad.read_text().startswith("hello")  # and it was not overwritten


def test_a_foreign_sqlite_file_is_not_a_timeline(tmp_path: Path) -> None:
    """An SQLite file of another program is refused, not modified."""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(TimelineError, match="not a memwarden timeline"):
        Timeline.open_existing(other)


def test_a_corrupt_timeline_is_a_clear_error(tmp_path: Path) -> None:
    """A timeline whose pages were overwritten gives a TimelineError, not a traceback."""
    db = tmp_path / "run.db"
    with Timeline(db) as tl:
        for i in range(200):
            tl.append(_sample(i, float(i)))
    raw = bytearray(db.read_bytes())
    raw[100:4096] = b"\xff" * (4096 - 100)
    db.write_bytes(bytes(raw))

    def read_all() -> None:
        with Timeline.open_existing(db) as tl2:
            tl2.samples()

    with pytest.raises(TimelineError):
        read_all()


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A --db path whose folder does not exist says so and how to fix it."""
    with pytest.raises(TimelineError, match="does not exist"):
        Timeline(tmp_path / "no" / "such" / "run.db")


def test_series_skips_gaps_and_uses_seconds_since_start() -> None:
    """series() returns (t, value) for one metric, t relative to the first sample, Nones skipped."""
    samples = [
        Sample(0, 10.0, {"m": 1}),
        Sample(0, 11.0, {"m": None}),
        Sample(0, 12.5, {"m": 3}),
    ]
    assert series(samples, "m") == ([0.0, 2.5], [1.0, 3.0])
    assert series([], "m") == ([], [])


def test_an_empty_file_is_not_a_timeline(tmp_path: Path) -> None:
    """Reading an empty file says it is empty, not that it is a foreign database."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(TimelineError, match="is empty"):
        Timeline.open_existing(empty)


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    """Timeline(path) on an unrelated SQLite file raises TimelineError and adds no table to it."""
    import sqlite3

    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = db.read_bytes()
    with pytest.raises(TimelineError, match="another program's SQLite database"):
        Timeline(db)
    assert db.read_bytes() == before
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}
