"""`memwarden run` on the chat-sessions example: a leak when unbounded, not when memwarden.llm keeps it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import run_memwarden


def _verdict(tmp_path: Path, *args: str, interval: str = "auto") -> dict:  # type: ignore[type-arg]
    out = tmp_path / "verdict.json"
    os.environ.setdefault("MEMWARDEN_SCENARIO_SECONDS", "8")
    proc = run_memwarden(
        ["run", "--interval", interval, "--json", str(out), "-m", "memwarden.examples.chat_sessions", *args],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
def test_unbounded_history_is_a_python_leak_held_by_the_sessions_dict(tmp_path: Path) -> None:
    """Without bounds the verdict is python_leak, and a holder path names SESSIONS."""
    verdict = _verdict(tmp_path)
    assert verdict["verdict"] == "python_leak", verdict["summary"]
    assert any("SESSIONS" in h["path"] for h in verdict["holders"]), verdict["holders"]


@pytest.mark.slow
def test_memwarden_stores_plateau_and_report_their_size(tmp_path: Path) -> None:
    """With memwarden.llm's SessionStore the verdict is plateau or stable (no leak), and the store
    is listed among the caches only if it grew, never as unbounded."""
    # at a fixed 1 s cadence: at --interval auto this 8 s run's warm-up (the store filling to its
    # 100 sessions in ~3.5 s, then memwarden's window) read plateau in 12 of 12 runs by hand, but
    # native_leak once in a loaded test run: issue 9's open work on short runs, not this test's
    # subject (the stores' bound)
    verdict = _verdict(tmp_path, "--bounded", interval="1")  # after -m MODULE every option is the module's
    assert verdict["verdict"] in ("plateau", "stable"), verdict["summary"]
    assert not verdict["leak"]
    for cache in verdict["caches"]:
        if "chat_sessions.store" in cache["name"]:
            assert cache["maxsize"] == 100
