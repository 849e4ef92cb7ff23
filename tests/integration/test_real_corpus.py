"""A fast subset of the real-library corpus (tests/corpus/) gets its expected verdict, site and holder.

The whole corpus, many runs each, is measured by ``benchmarks/real_corpus.py``; CI runs these five,
once each: the four cases issue 9 requires right in every run (a FastAPI endpoint keeping request
bodies, a slow leak of small tuples under heavy churn, the README's ``Monitor(interval=0.5)``,
DataFrame churn that is not a leak) and a leak held only by a local of ``main()`` (a SQLAlchemy
Session). Each workload's docstring carries the lines of tests/scenarios/README.md. Three of them
are still wrong in some runs (``KNOWN_MISSES``): they are marked xfail, not strict, with the reason,
so they run on every CI and a fix shows as XPASS; issue 9 stays open until they pass.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from .conftest import run_memwarden, run_python

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

SUBSET = {
    "fastapi_bodies_leak": ("fastapi", "uvicorn", "httpx"),
    "tuple_churn_leak": (),
    "readme_monitor_leak": (),
    "pandas_frames_ok": ("pandas", "numpy"),
    "sqlalchemy_session_leak": ("sqlalchemy",),
}


KNOWN_MISSES = {
    "tuple_churn_leak": "a 0.2 MB/s tuple leak under heavy churn: RSS and blocks barely show it, and the "
    "window's top site is often the batch's dict in flight: right in 15 of 20 runs (issue 9, open)",
    "sqlalchemy_session_leak": "right verdict, no holder: the window is still open when main() returns, and "
    "its locals (the Session) are gone by the search (issue 9, open)",
}
"""Workloads issue 9 still gets wrong in some runs (docs/diagnosis/corpus.md measures how often): they
run, and a pass is reported as XPASS, so a fix shows at once."""


def _expectations(path: Path) -> dict[str, str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^memwarden-([a-z-]+):\s*(.+)$", doc, re.M)}


def _function_matches(site: dict, wanted: str) -> bool:
    names = [site.get("function") or ""] + [f.get("function") or "" for f in site.get("traceback", [])]
    return any(n == wanted or n.endswith("." + wanted) for n in names)


def _run(path: Path, expect: dict[str, str], out: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The verdict JSON of one run: under ``memwarden run``, or plain python for the in-process ones."""
    if expect.get("inprocess") == "yes":
        monkeypatch.setenv("MEMWARDEN_CORPUS_JSON", str(out))
        proc = run_python([str(path)], cwd)
    else:
        proc = run_memwarden(["run", "--json", str(out), str(path)], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_MISSES[n], strict=False))
        if n in KNOWN_MISSES
        else n
        for n in sorted(SUBSET)
    ],
)
def test_real_corpus_workload(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workload's verdict is one it expects; a leak names the leaking function in the top three
    sites and a holder path containing the user's own name (a global, or ``main() locals.session``).

    A run whose verdict is wrong is run once more and the second run decides (both verdicts are in
    the failure message), as in test_scenarios.py: the accuracy over many runs is the benchmark's.
    """
    for module in SUBSET[name]:
        pytest.importorskip(module, reason=f"{name} needs {module}, which cannot be imported here")

    path = CORPUS / f"{name}.py"
    expect = _expectations(path)
    allowed = set(expect["expect"].split("|"))
    monkeypatch.setenv("MEMWARDEN_SCENARIO_SECONDS", "8")
    tries: list[str] = []
    for attempt in range(2):
        verdict = _run(path, expect, tmp_path / f"verdict{attempt}.json", tmp_path, monkeypatch)
        tries.append(f"{verdict['verdict']}: {verdict['summary']}")
        if verdict["verdict"] in allowed:
            break
    assert verdict["verdict"] in allowed, f"{name}: got {tries}"
    if verdict["leak"] and "leak-function" in expect:
        top = verdict["sites"][:3]
        assert any(_function_matches(s, expect["leak-function"]) for s in top), json.dumps(top, indent=1)
    if verdict["leak"] and "holder" in expect:
        paths = [h["path"] for h in verdict["holders"]]
        assert any(expect["holder"] in p for p in paths), paths
