"""Every scenario under tests/scenarios/ gets its expected verdict from `memwarden run --json`.

Each scenario's docstring carries machine-readable lines:

    memwarden-expect: python_leak            (or several, separated by |)
    memwarden-leak-function: add_message     (python leaks: a top-3 site must be in this function)
    memwarden-holder: CONVERSATIONS          (a holder path must contain this)
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest

from .conftest import run_memwarden

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _expectations(path: Path) -> dict[str, str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^memwarden-([a-z-]+):\s*(.+)$", doc, re.M)}


def _scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.py") if "expect" in _expectations(p))


def _function_matches(site: dict, wanted: str) -> bool:
    names = [site.get("function") or ""] + [f.get("function") or "" for f in site.get("traceback", [])]
    return any(n == wanted or n.endswith("." + wanted) for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda p: p.stem)
def test_scenario_verdict(scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict is one the scenario expects; python leaks name the leaking function and the holder.

    A run whose verdict is not one of those expected is run once more, and the second run decides
    (both verdicts are in the failure message). Some 8 s scenarios sit on an edge that memwarden's
    own start-up moves: periodic_flush's sawtooth reads as growth when the heap has no freed memory
    to reuse at start (with memwarden's .pyc files present, say), and as stable when it has. That is
    issue 9's work (short runs, sawtooths seen through a window); `benchmarks/detection.py` measures
    the rates, this test only keeps a scenario from being wrong twice running. Each run compiles
    memwarden afresh (an empty ``PYTHONPYCACHEPREFIX``), so the start-up state is the same whether or
    not an earlier test left .pyc files behind: the state the corpus was calibrated in.
    """
    expect = _expectations(scenario)
    allowed = set(expect["expect"].split("|"))
    os.environ.setdefault("MEMWARDEN_SCENARIO_SECONDS", "8")
    tries: list[str] = []
    for attempt in range(2):
        out = tmp_path / f"verdict{attempt}.json"
        monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / f"pycache{attempt}"))
        proc = run_memwarden(["run", "--json", str(out), str(scenario)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        verdict = json.loads(out.read_text())
        tries.append(verdict["verdict"])
        if verdict["verdict"] in allowed:
            break
    assert verdict["verdict"] in allowed, f"{scenario.stem}: got {tries}\n{proc.stderr[-4000:]}"
    if verdict["verdict"] == "python_leak" and "leak-function" in expect:
        top = verdict["sites"][:3]
        assert any(_function_matches(s, expect["leak-function"]) for s in top), json.dumps(top, indent=1)
    if "holder" in expect and verdict["leak"]:
        paths = [h["path"] for h in verdict["holders"]]
        assert any(expect["holder"] in p for p in paths), paths
