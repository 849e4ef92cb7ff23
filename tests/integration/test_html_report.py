"""The HTML report end to end: real recorded runs, the real CLI, opened in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memwarden.guards.actions import EVENT_ACTION, collect
from memwarden.timeline import Timeline

from .conftest import run_memwarden

LEAKY = """\
import time
KEEP = {}
def remember(i):
    KEEP[i] = bytearray(200_000)
t0 = time.monotonic(); i = 0
while time.monotonic() - t0 < 3:
    remember(i); i += 1
    time.sleep(0.03)
"""

FLAT = """\
import time
t0 = time.monotonic()
while time.monotonic() - t0 < 3:
    junk = [bytearray(100_000) for _ in range(5)]
    del junk
    time.sleep(0.03)
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium; .ci/run installs it)")


def _browser(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def render_status(page: Path, width: int = 1280, height: int = 2400) -> dict[str, Any]:
    """Open the page in Chromium and read back what its script wrote into #render-status."""
    proc = _browser(
        "--virtual-time-budget=5000", f"--window-size={width},{height}", "--dump-dom", page.resolve().as_uri()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'data-render-status="([^"]*)"', proc.stdout)
    assert m is not None, "the page has no #render-status element"
    raw = html.unescape(m.group(1))
    assert raw, "the page's script never finished (empty render status)"
    status: dict[str, Any] = json.loads(raw)
    return status


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400) -> Path:
    proc = _browser(
        "--virtual-time-budget=5000",
        f"--window-size={width},{height}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _record(workdir: Path, name: str, source: str) -> Path:
    (workdir / f"{name}.py").write_text(source)
    proc = run_memwarden(["run", "--quiet", "--interval", "0.1", "--db", f"{name}.db", f"{name}.py"], workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir / f"{name}.db"


def _assert_charts_drawn(status: dict[str, Any], expected: set[str]) -> None:
    assert status["errors"] == [], status["errors"]
    assert status["rendered"] is True
    charts = {c["id"]: c for c in status["charts"]}
    assert expected <= set(charts), sorted(charts)
    for c in charts.values():
        assert c["width"] > 200 and c["height"] > 100, c
        assert c["draws"] >= 1 and c["inked"] > 0, c


@pytest.mark.slow
def test_report_of_a_real_leaking_service_renders_in_chromium(workdir: Path) -> None:
    """The example service's report draws every recorded layer, shows the verdict, sites, holders,
    caches and a guard's action, and logs no script error; a screenshot is saved."""
    service = ["-m", "memwarden.examples.leaky_service", "--", "--seconds", "4"]
    proc = run_memwarden(["run", "--quiet", "--interval", "0.2", "--db", "svc.db", *service], workdir)
    assert proc.returncode == 0, proc.stderr
    with Timeline(workdir / "svc.db") as tl:  # a guard acted mid-run (a real gc.collect())
        mid = (tl.samples()[0].t + tl.samples()[-1].t) / 2
        tl.add_event(EVENT_ACTION, collect("rss over budget").to_json(), t=mid)
    proc = run_memwarden(["report", "svc.db", "--html", "report.html"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "wrote report.html" in proc.stderr
    page = workdir / "report.html"
    text = html.unescape(page.read_text())
    assert "python_leak" in text and "in remember_turn()" in text
    assert (
        '<pre class="source">HISTORY.setdefault(conversation_id' in text or "turn: dict[str, object]" in text
    )
    assert "__main__.HISTORY[<str>]" in text  # the holder path
    assert "__main__.system_prompt" in text and "unbounded" in text  # the lru_cache
    assert "rss over budget" in text and "No guard acted" not in text
    status = render_status(page, height=3800)
    _assert_charts_drawn(status, {"w0-process", "w0-objects", "w0-libc", "w0-tracing", "w0-pymalloc"})
    assert status["visible"] == {"headline": True, "verdict:python_leak": True}
    shot = screenshot(page, workdir / "report.png", height=3800)
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one


@pytest.mark.slow
def test_several_workers_timelines_merge_into_one_report(workdir: Path) -> None:
    """Three workers' timelines (one leaks): one page, the overlay chart, the leaking worker named first."""
    procs = {}
    for name, source in (("app-1", FLAT), ("app-2", FLAT), ("app-3", LEAKY)):
        (workdir / f"{name}.py").write_text(source)
        procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memwarden",
                "run",
                "--quiet",
                "--interval",
                "0.1",
                "--db",
                f"{name}.db",
                f"{name}.py",
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, p in procs.items():
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, (name, err)
    proc = run_memwarden(["report", "app-1.db", "app-2.db", "app-3.db", "--html", "workers.html"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "3 timelines" in proc.stderr
    page = workdir / "workers.html"
    text = page.read_text()
    headline = re.search(r'<p class="headline leak" id="headline">(.*?)</p>', text, re.S)
    assert headline is not None
    assert html.unescape(headline.group(1)).startswith("1 of 3 workers leaks: app-3 (python_leak")
    status = render_status(page)
    _assert_charts_drawn(status, {"workers-rss", "w0-process", "w1-process", "w2-process"})
    overlay = next(c for c in status["charts"] if c["id"] == "workers-rss")
    assert overlay["series"] == 3
    screenshot(page, workdir / "workers.png")


def test_report_cli_says_what_is_wrong_in_one_line(workdir: Path) -> None:
    """--html into a missing folder, --json with two timelines, --html with --json: exit 2, one line."""
    db = _record(workdir, "flat", "import time\ntime.sleep(0.5)\n")
    cases = (
        ["report", db.name, "--html", "no/such/folder/r.html"],
        ["report", db.name, db.name, "--json"],
        ["report", db.name, "--json", "--html", "r.html"],
        ["report", db.name, "missing.db", "--html", "r.html"],
    )
    for args in cases:
        proc = run_memwarden(args, workdir)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memwarden: error:"), (args, proc.stderr)
    assert not (workdir / "r.html").exists()
    both = run_memwarden(["report", db.name, db.name], workdir)
    assert both.returncode == 0 and both.stdout.count("== flat.db") == 2


@pytest.mark.slow
def test_run_writes_the_report_of_the_run_it_just_did(workdir: Path) -> None:
    """`memwarden run --report` (no --db: a scratch timeline) leaves a page that renders with the verdict."""
    (workdir / "leaky.py").write_text(LEAKY)
    proc = run_memwarden(
        ["run", "--interval", "0.1", "--json", "v.json", "--report", "run.html", "leaky.py"], workdir
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote run.html" in proc.stderr
    verdict = json.loads((workdir / "v.json").read_text())["verdict"]
    assert verdict == "python_leak"
    assert not list(workdir.glob("*.db"))  # the scratch timeline is gone, the report stays
    status = render_status(workdir / "run.html")
    _assert_charts_drawn(status, {"w0-process", "w0-objects"})
    assert status["visible"] == {"headline": True, f"verdict:{verdict}": True}
    bad = run_memwarden(["run", "--report", "no/such/dir/r.html", "leaky.py"], workdir)
    assert bad.returncode == 2 and "--report" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
