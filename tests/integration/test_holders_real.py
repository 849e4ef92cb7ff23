"""Holders named the user's way on real programs under `memwarden run`: a SQLAlchemy Session that is a
local of main(), and a list of pandas DataFrames (cut at the DataFrame, not inside pandas)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._run_support import MEMWARDEN, read_verdict, run_guarded, write

pytestmark = pytest.mark.slow

SESSION_APP = """\
    import time
    from sqlalchemy import Integer, String, create_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


    class Base(DeclarativeBase):
        pass


    class Event(Base):
        __tablename__ = "events"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        payload: Mapped[str] = mapped_column(String)


    def main():
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        session = Session(engine, autoflush=False)
        started = time.time()
        i = 0
        while time.time() - started < 10:
            for _ in range(200):
                session.add(Event(payload="x" * 200 + str(i)))
                i += 1
            time.sleep(0.01)


    if __name__ == "__main__":
        main()
"""

FRAMES_APP = """\
    import time
    import numpy as np
    import pandas as pd

    KEPT = []


    def main():
        started = time.time()
        while time.time() - started < 10:
            KEPT.append(pd.DataFrame({"a": np.arange(20000), "b": np.random.rand(20000)}))
            time.sleep(0.02)


    if __name__ == "__main__":
        main()
"""


def _run(tmp_path: Path, body: str) -> tuple[dict[str, object], str]:
    app = write(tmp_path / "app.py", body)
    out = tmp_path / "verdict.json"
    proc = run_guarded([*MEMWARDEN, "run", "--json", str(out), str(app)], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return read_verdict(out), proc.stderr


def test_a_session_local_to_main_is_the_holder(tmp_path: Path) -> None:
    """Objects added to a Session kept in main()'s local `session` are held by `main() locals.session`,
    typed Session, with advice for sessions (not the generic 'find who keeps them')."""
    pytest.importorskip("sqlalchemy")
    verdict, stderr = _run(tmp_path, SESSION_APP)
    assert verdict["verdict"] == "python_leak", stderr
    holders = verdict["holders"]
    assert isinstance(holders, list) and holders, stderr
    assert holders[0]["path"] == "main() locals.session", holders
    assert holders[0]["type"] == "sqlalchemy.orm.session.Session"
    assert holders[0]["root_kind"] == "frame_local"
    assert any("SQLAlchemy Session" in a for a in verdict["advice"]), verdict["advice"]  # type: ignore[union-attr]
    assert "held by: main() locals.session" in stderr


def test_a_list_of_dataframes_is_held_by_the_list(tmp_path: Path) -> None:
    """DataFrames kept in a global list are held by `__main__.KEPT[<int>]`, typed DataFrame: no pandas
    internals in the path or the advice, and the sites table shows one row for the line."""
    pytest.importorskip("pandas")
    verdict, stderr = _run(tmp_path, FRAMES_APP)
    assert verdict["verdict"] == "python_leak", stderr
    holders = verdict["holders"]
    assert isinstance(holders, list) and holders, stderr
    assert holders[0]["path"] == "__main__.KEPT[<int>]", holders
    assert holders[0]["type"] == "pandas.DataFrame"
    assert not any("_mgr" in h["path"] for h in holders), holders
    assert not any("_mgr" in a for a in verdict["advice"]), verdict["advice"]  # type: ignore[union-attr]
    rows = [line for line in stderr.splitlines() if line.rstrip().endswith("app.py:11 in main()")]
    assert len(rows) == 1, stderr
