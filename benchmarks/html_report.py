"""The HTML report's size and render time on long timelines, beside a plotly page of the same data.

Writes two synthetic timelines with every metric a real monitor records (the metric names and
magnitudes come from one real reading of this process): 24 hours at 10 s (8 640 samples) and 1 hour
at 0.1 s (36 000 samples), RSS growing slowly with noise and rare spikes. For each it times

- ``memwarden report T.db --html`` (read, diagnose, downsample, render; the real CLI, a subprocess);
- the page in headless Chromium: ``page_ms`` (navigation start to the last chart drawn, from the
  page's own ``performance.now()``) and the wall time of ``chromium --dump-dom``;

and, when plotly is installed (``pip install plotly``), the page a user would make instead: the same
charts with ``plotly.graph_objects`` and ``write_html(include_plotlyjs=True)``, every sample drawn.

    python benchmarks/html_report.py [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import html
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import memwarden
from memwarden.metrics import CATALOGUE, PROCESS_RSS_BYTES
from memwarden.reporters.html import CHARTS
from memwarden.timeline import Timeline

CASES = (("24 h at 10 s", 24 * 3600, 10.0), ("1 h at 0.1 s", 3600, 0.1))


def _template() -> dict[str, float | int | None]:
    """One real reading of every layer this process has (names and magnitudes)."""
    mon = memwarden.Monitor(interval=0.05, investigate=False, trim_at_stop=False)
    mon.start()
    time.sleep(0.4)
    mon.stop()
    merged: dict[str, float | int | None] = {}
    for s in mon.samples():
        merged.update({k: v for k, v in s.metrics.items() if v is not None})
    return merged


def write_timeline(path: Path, duration_s: float, interval: float, template: dict[str, Any]) -> int:
    rng = random.Random(11)
    n = int(duration_s / interval)
    t0 = 1.75e9
    with Timeline(path, max_samples=max(100_000, n + 1)) as tl:
        tl.set_meta(command=["memwarden", "run", "service.py"], interval=interval, pid=4242)
        with tl._lock:  # one transaction: the benchmark times the report, not the writing
            tl._conn.execute("BEGIN")
        for i in range(n):
            frac = i / n
            metrics: dict[str, float | int | None] = {}
            for name, v in template.items():
                if v is None or isinstance(v, bool) or name not in CATALOGUE:
                    continue
                spec = CATALOGUE[name]
                if spec.kind == "counter":
                    metrics[name] = v + i // 7
                elif spec.unit == "bytes":
                    metrics[name] = float(v) * (1 + 0.5 * frac) * (1 + rng.uniform(-0.01, 0.01))
                else:
                    metrics[name] = v
            if rng.random() < 0.0005:
                metrics[PROCESS_RSS_BYTES] = float(metrics[PROCESS_RSS_BYTES] or 0) * 3  # a rare spike
            with tl._lock:
                tl._conn.execute(
                    "INSERT INTO samples (t, mono, data) VALUES (?, ?, ?)",
                    (t0 + i * interval, 100.0 + i * interval, json.dumps(metrics, separators=(",", ":"))),
                )
        with tl._lock:
            tl._conn.execute("COMMIT")
    return n


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def browse(page: Path, attr: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``chromium --dump-dom`` and the JSON the page wrote into ``attr``."""
    chromium = _chromium()
    assert chromium is not None
    started = time.perf_counter()
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=20000",
            "--window-size=1280,2400",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - started
    m = re.search(attr + r'="([^"]*)"', proc.stdout)
    status = json.loads(html.unescape(m.group(1))) if m and m.group(1) else {}
    return wall, status


def plotly_page(db: Path, out: Path) -> bool:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return False
    with Timeline.open_existing(db) as tl:
        samples = tl.samples()
    xs = [s.t for s in samples]
    charts = [c for c in CHARTS if any(samples[0].metrics.get(m) is not None for m, _ in c.metrics)]
    fig = make_subplots(rows=len(charts), cols=1, subplot_titles=[c.title for c in charts])
    for row, chart in enumerate(charts, start=1):
        for name, label in chart.metrics:
            ys = [s.metrics.get(name) for s in samples]
            if any(v is not None for v in ys):
                fig.add_trace(go.Scatter(x=xs, y=ys, name=label, mode="lines"), row=row, col=1)
    fig.update_layout(height=260 * len(charts), width=1200)
    post = (
        "document.body.setAttribute('data-plotly-status', JSON.stringify("
        "{page_ms: Math.round(performance.now())}));"
    )
    fig.write_html(str(out), include_plotlyjs=True, full_html=True, post_script=post)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="keep the timelines and pages in DIR")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="memwarden-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    template = _template()
    have_chromium = _chromium() is not None
    print(f"metrics per sample: {len(template)}; chromium: {_chromium() or 'not found'}")
    rows = []
    for label, duration, interval in CASES:
        db = work / f"t-{int(duration)}-{interval:g}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        n = write_timeline(db, duration, interval, template)
        out = work / f"{db.stem}.html"
        builds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "memwarden", "report", str(db), "--html", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            builds.append(time.perf_counter() - started)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
        row: dict[str, Any] = {
            "case": label,
            "samples": n,
            "db_mib": db.stat().st_size / 2**20,
            "build_s": statistics.median(builds),
            "html_kib": out.stat().st_size / 1024,
        }
        if have_chromium:
            walls, page_ms = [], []
            for _ in range(args.repeat):
                wall, status = browse(out, "data-render-status")
                assert status.get("rendered") and not status.get("errors"), status
                walls.append(wall)
                page_ms.append(status["page_ms"])
            row["render_ms"] = statistics.median(page_ms)
            row["chromium_s"] = statistics.median(walls)
        peer = work / f"{db.stem}-plotly.html"
        started = time.perf_counter()
        if plotly_page(db, peer):
            row["plotly_build_s"] = time.perf_counter() - started
            row["plotly_kib"] = peer.stat().st_size / 1024
            if have_chromium:
                walls, page_ms = [], []
                for _ in range(args.repeat):
                    wall, status = browse(peer, "data-plotly-status")
                    walls.append(wall)
                    page_ms.append(status.get("page_ms", math.nan))
                row["plotly_render_ms"] = statistics.median(page_ms)
                row["plotly_chromium_s"] = statistics.median(walls)
        rows.append(row)
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}))
    print()
    print(
        "| timeline | samples | memwarden page | build (CLI) | render in Chromium | plotly page | plotly render |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['case']} | {r['samples']:,} | {r['html_kib']:,.0f} KiB | {r['build_s']:.2f} s | "
            f"{r.get('render_ms', math.nan):,.0f} ms | {r.get('plotly_kib', math.nan):,.0f} KiB | "
            f"{r.get('plotly_render_ms', math.nan):,.0f} ms |"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
