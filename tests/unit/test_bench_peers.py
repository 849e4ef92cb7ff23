"""benchmarks/peers.py's reading of memwarden's verdicts, its targets, and its fast-leak workload."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("peers")
    finally:
        sys.path.remove(str(BENCHMARKS))


def verdict(sites: list[str], holders: list[str], windows: list[float]) -> dict[str, Any]:
    return {
        "verdict": "python_leak",
        "sites": [{"function": name, "file": "x.py", "line": 1} for name in sites],
        "holders": [{"path": path} for path in holders],
        "evidence_items": [
            {"code": "trend.process.rss_bytes", "figures": {}},
            *({"code": "window.traced", "figures": {"opened_s": c - 2, "closed_s": c}} for c in windows),
        ],
        "layers": {"memwarden": {"work_s": {"first": 0, "last": 1.5}}},
    }


def test_findings_name_the_leak_from_the_top_three_sites_and_the_holders(peers: ModuleType) -> None:
    """A leak counts as named when a top-three site is the leaking function and a holder path names
    the holder; "named at" is the close of the first window, and the windows are counted."""
    workload = peers.Workload("w", "w", ["p.py"], leak_function=("build_record",), holder="SESSIONS")
    found = peers.memwarden_findings(
        verdict(["main", "x.build_record"], ["__main__.SESSIONS[<str>]"], [9.0, 5.5]), workload
    )
    assert (found.site_named, found.holder_named, found.windows) == (True, True, 2)
    assert found.named_at_s == 5.5
    assert found.work_s == 1.5
    assert found.holder == "__main__.SESSIONS[<str>]"


def test_findings_do_not_count_a_fourth_site_or_another_holder(peers: ModuleType) -> None:
    """The leaking function fourth among the sites, or a holder that is not the program's, is not named."""
    workload = peers.Workload("w", "w", ["p.py"], leak_function=("build_record",), holder="SESSIONS")
    found = peers.memwarden_findings(
        verdict(["a", "b", "c", "build_record"], ["__main__.OTHER[<int>]"], [5.0]), workload
    )
    assert (found.site_named, found.holder_named, found.named_at_s) == (False, False, None)


def test_steady_target_fails_when_a_window_opened(peers: ModuleType) -> None:
    """On the steady program a cheap run that opened a window still misses the target."""
    steady = peers.Workload("steady", "steady", ["p.py"])
    rows = [
        {"mode": "memwarden 1 s", "ratio_wall_median": 1.01, "runs_with_window": 0},
        {"mode": "memwarden 0.1 s", "ratio_wall_median": 1.01, "runs_with_window": 1},
    ]
    checks = peers.targets([(steady, rows)], 3)
    assert [c["met"] for c in checks] == [True, False]


def test_fast_leak_workload_keeps_every_record_in_its_module_dict(peers: ModuleType) -> None:
    """The fast-leak program keeps one ~1 KB record per session in SESSIONS (the holder it names)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        leak = importlib.import_module("_workload_fastleak")
    finally:
        sys.path.remove(str(BENCHMARKS))
    leak.SESSIONS.clear()
    assert leak.main(["--records", "300"]) == 0
    assert len(leak.SESSIONS) == 300
    record = leak.SESSIONS["session-0000000299"]
    assert record["id"] == 299 and len(str(record["payload"])) == 1010
    leak.SESSIONS.clear()
