"""The HTML report's data and page: downsampling, self-containment, escaping, merged workers, actions."""

from __future__ import annotations

import html
import io
import json
import random
import re
from pathlib import Path

import pytest

import memwarden
from memwarden.diagnosis._verdict import EvidenceItem, Site, Verdict
from memwarden.exceptions import UsageError
from memwarden.guards.actions import EVENT_ACTION, ActionResult
from memwarden.metrics import OBJECTS_ALLOCATED_BLOCKS, PROCESS_RSS_BYTES, PROCESS_USS_BYTES
from memwarden.reporters.html import (
    REPORT_SCHEMA,
    RecordedRun,
    ReportProgress,
    build_report,
    downsample,
    render_report,
    write_report,
)
from memwarden.timeline import Event, Sample, Timeline

MiB = 1024 * 1024


def _timeline(path: Path, n: int, growth_per_s: float, *, interval: float = 1.0, t0: float = 1.7e9) -> Path:
    """A synthetic recorded run: RSS and USS grow at ``growth_per_s`` (plus noise), blocks are flat."""
    rng = random.Random(n)
    with Timeline(path) as tl:
        tl.set_meta(command=["memwarden", "run", "app.py"], interval=interval, pid=1234)
        for i in range(n):
            rss = 200 * MiB + growth_per_s * i * interval + rng.uniform(-0.2, 0.2) * MiB
            tl.append(
                Sample(
                    t=t0 + i * interval,
                    mono=1000.0 + i * interval,
                    metrics={
                        PROCESS_RSS_BYTES: rss,
                        PROCESS_USS_BYTES: rss - 20 * MiB,
                        OBJECTS_ALLOCATED_BLOCKS: 50_000 + rng.randint(-50, 50),
                    },
                )
            )
    return path


def _run(path: Path, verdict: Verdict | None = None) -> RecordedRun:
    with Timeline.open_existing(path) as tl:
        return RecordedRun.read(tl, verdict or memwarden.diagnose(tl))


def _page(runs: list[RecordedRun], **kw: int) -> tuple[str, dict[str, object]]:
    out = io.StringIO()
    render_report(build_report(runs, **kw), out)
    page = out.getvalue()
    m = re.search(r'<script type="application/json" id="memwarden-data">(.*?)</script>', page, re.S)
    assert m is not None
    return page, json.loads(m.group(1))


def test_downsample_keeps_spikes_and_bounds_points() -> None:
    """100 000 points become at most 2 x buckets, and a one-sample spike and dip keep their full height."""
    n = 100_000
    xs = [float(i) for i in range(n)]
    ys: list[float | None] = [10.0 + (i % 7) for i in range(n)]
    ys[31_337] = 1e6
    ys[77_777] = -5.0
    dx, (dy,) = downsample(xs, [ys], buckets=500)
    assert len(dx) == len(dy) <= 1000
    assert max(v for v in dy if v is not None) == 1e6
    assert min(v for v in dy if v is not None) == -5.0
    assert dx == sorted(dx) and dx[0] == 0.0 and dx[-1] == n - 1


def test_downsample_orders_min_and_max_as_they_happened_and_keeps_gaps() -> None:
    """Within a bucket the earlier extreme comes first; an all-gap bucket stays a gap."""
    xs = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    falling: list[float | None] = [9.0, 1.0, 5.0, 5.0, 2.0, 8.0, 3.0, 3.0]
    gaps: list[float | None] = [None, None, 1.0, 2.0, None, None, None, None]
    dx, (f, g) = downsample(xs, [falling, gaps], buckets=2)
    assert dx == [0.0, 3.0, 4.0, 7.0]
    assert f == [9.0, 1.0, 2.0, 8.0]  # first bucket falls (max first), second rises (min first)
    assert g == [1.0, 2.0, None, None]


def test_downsample_leaves_short_series_alone_and_rejects_zero_buckets() -> None:
    """Series already short enough come back as they were; zero buckets is a usage error."""
    xs, cols = downsample([0.0, 1.0, 2.0], [[1.0, None, 3.0]], buckets=10)
    assert xs == [0.0, 1.0, 2.0] and cols == [[1.0, None, 3.0]]
    with pytest.raises(UsageError):
        downsample([0.0], [[1.0]], buckets=0)


def test_page_is_self_contained_and_carries_the_data(tmp_path: Path) -> None:
    """No external script, stylesheet, font or image; the embedded JSON holds the charts and the verdict."""
    run = _run(_timeline(tmp_path / "app.db", 600, 0.0))
    page, data = _page([run])
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", page, re.I)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "uPlot" in page and "MIT" in page  # the chart library is inlined with its licence
    assert data["schema"] == REPORT_SCHEMA
    worker = data["workers"][0]  # type: ignore[index]
    assert worker["verdict"] == run.verdict.verdict == "stable"
    assert worker["samples"] == 600
    charts = {c["id"]: c for c in worker["charts"]}
    assert set(charts) == {"w0-process", "w0-objects"}  # only the layers that were recorded
    assert charts["w0-process"]["labels"] == ["RSS", "USS (private)"]
    assert len(charts["w0-process"]["x"]) == 600
    assert html.escape(run.verdict.summary, quote=False) in page


def test_long_timeline_is_downsampled_so_the_page_stays_small(tmp_path: Path) -> None:
    """A 5 000-sample run charts at most 2 x buckets points per series and the page stays under 200 KiB."""
    run = _run(_timeline(tmp_path / "long.db", 5_000, 1000.0))
    page, data = _page([run], buckets=300)
    chart = data["workers"][0]["charts"][0]  # type: ignore[index]
    assert len(chart["x"]) <= 600
    assert len(page.encode()) < 200 * 1024


def test_text_from_the_program_is_escaped(tmp_path: Path) -> None:
    """A file name or summary carrying HTML cannot close the data block or inject a script."""
    path = _timeline(tmp_path / "app.db", 30, 0.0)
    evil = "</script><script>alert(1)</script>"
    verdict = Verdict(
        verdict="python_leak",
        confidence=0.9,
        summary=f"grows at {evil}",
        duration_s=29.0,
        samples=30,
        sites=(Site(f"/app/{evil}.py", 3, "f", 1000, 10),),
        evidence=(f"evidence {evil}",),
    )
    page, data = _page([_run(path, verdict)])
    assert "<script>alert(1)" not in page
    assert page.count("</script>") == 3  # the data block, uPlot and the report's script: nothing more
    assert data["workers"][0]["summary"] == f"grows at {evil}"  # type: ignore[index]


def test_actions_are_listed_and_marked_on_the_time_axis(tmp_path: Path) -> None:
    """A guard's action event becomes a table row (what, why, freed) and a mark at its time."""
    path = _timeline(tmp_path / "app.db", 60, 0.0)
    result = ActionResult("gc_collect", "rss over budget", 3 * MiB, 0.012, 300 * MiB, 297 * MiB, {})
    with Timeline(path) as tl:
        tl.add_event(EVENT_ACTION, result.to_json(), t=1.7e9 + 42)
    page, data = _page([_run(path)])
    worker = data["workers"][0]  # type: ignore[index]
    assert worker["actions"] == [
        {
            "at": "42.0 s",
            "action": "gc_collect",
            "reason": "rss over budget",
            "freed": "3.0 MiB",
            "rss": "300.0 MiB → 297.0 MiB",
            "took": "12.0 ms",
        }
    ]
    assert {"kind": "action", "t": 42.0, "label": "gc_collect: freed 3.0 MiB"} in worker["marks"]
    assert "rss over budget" in page and "No guard acted" not in page


def test_several_workers_merge_into_one_report_naming_the_one_that_grows(tmp_path: Path) -> None:
    """Three timelines: the report's headline names the growing worker, and one chart overlays their RSS."""
    runs = [
        _run(_timeline(tmp_path / "app-101.db", 300, 0.0, t0=1.7e9)),
        _run(_timeline(tmp_path / "app-102.db", 300, 0.0, t0=1.7e9 + 0.3)),
        _run(_timeline(tmp_path / "app-103.db", 300, 2 * MiB, t0=1.7e9 + 0.6)),
    ]
    assert [r.verdict.leak for r in runs] == [False, False, True]
    page, data = _page(runs)
    headline = data["headline"]
    assert isinstance(headline, str)
    assert headline.startswith("1 of 3 workers leaks: app-103 (")
    assert headline.endswith("the other 2 are stable.")
    workers = data["workers"]
    assert [w["label"] for w in workers] == ["app-103", "app-101", "app-102"]  # type: ignore[union-attr]
    overlay = data["overlay"]
    assert overlay["labels"] == ["app-101", "app-102", "app-103"]  # type: ignore[index]
    assert len(overlay["x"]) == 900  # type: ignore[index]  # the union of the workers' times
    # each worker's line has a value exactly at its own sample times and a gap at the others'
    assert sum(v is not None for v in overlay["ys"][2]) == 300  # type: ignore[index]
    assert 'href="#worker-2"' in page


def test_evidence_renders_as_structured_items(tmp_path: Path) -> None:
    """Each evidence item travels as {code, figures, sentence}, with the classifier's codes and figures."""
    run = _run(_timeline(tmp_path / "app.db", 200, 2 * MiB))
    _, data = _page([run])
    evidence = data["workers"][0]["evidence"]  # type: ignore[index]
    assert [e["sentence"] for e in evidence] == list(run.verdict.evidence)
    assert [e["code"] for e in evidence] == [e.code for e in run.verdict.evidence_items]
    assert any(e["code"].startswith("trend.") and e["figures"]["status"] for e in evidence)
    item = EvidenceItem("trend.process.rss_bytes", "grows 2 MiB/s", {"rate_bytes_per_s": 2.0 * MiB})
    assert EvidenceItem.from_json(item.to_json()) == item


def test_write_report_replaces_the_file_atomically(tmp_path: Path) -> None:
    """write_report returns the size it wrote and leaves no temporary file beside the report."""
    out = tmp_path / "report.html"
    out.write_text("old")
    size = write_report([_run(_timeline(tmp_path / "app.db", 50, 0.0))], out)
    assert size == out.stat().st_size > 50_000
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_after_the_delay_and_only_on_a_terminal() -> None:
    """Quick reports print nothing; a slow one shows a bar on a terminal, never into a pipe or log."""
    quick = ReportProgress(3, after_s=60.0, file=_Tty())
    quick.advance("reading")
    assert not quick.shown
    slow = ReportProgress(3, after_s=0.0, file=_Tty())
    slow.advance("reading")
    assert slow.shown
    slow.close()
    piped = io.StringIO()
    logged = ReportProgress(3, after_s=0.0, file=piped)
    logged.advance("reading")
    assert not logged.shown and piped.getvalue() == ""


GOLDEN = Path(__file__).parent.parent / "fixtures" / "report" / "golden_report.json"


def _golden_runs() -> list[RecordedRun]:
    """Two fixed workers with a hand-made verdict each (the classifier's own output is not under test)."""
    from memwarden.diagnosis._verdict import CacheGrowthInfo, Holder, SourceFrame, TypeGrowth

    runs = []
    for w, growth in ((0, 0.0), (1, 1.5 * MiB)):
        samples = [
            Sample(
                t=1.7e9 + i * 10.0 + w,
                mono=i * 10.0,
                metrics={
                    PROCESS_RSS_BYTES: 100 * MiB + growth * i * 10,
                    OBJECTS_ALLOCATED_BLOCKS: 40_000 + (i % 3),
                },
            )
            for i in range(12)
        ]
        leak = growth > 0
        verdict = Verdict(
            verdict="python_leak" if leak else "stable",
            confidence=0.97 if leak else 0.9,
            summary="Python objects leak at +1.5 MiB/s." if leak else "No meaningful growth.",
            duration_s=110.0,
            samples=12,
            growth_bytes_per_s={"rss": growth, "python": growth, "native": 0.0, "gpu": None},
            sites=(
                Site("app/cache.py", 42, "get", 20 * MiB, 1024, (SourceFrame("app/cache.py", 42, "get"),)),
            )
            if leak
            else (),
            types=(TypeGrowth("app.cache.Embedding", 1024, 9 * MiB),) if leak else (),
            holders=(
                Holder("app.cache.Embedding", "app.cache.CACHE._d[<str>]", "module_global", None, 3, 1024),
            )
            if leak
            else (),
            caches=(CacheGrowthInfo("app.prompts.render", "lru_cache", None, 500, 4.5),) if leak else (),
            advice=("Bound app.cache.CACHE._d.",) if leak else (),
            evidence=("process.rss_bytes: grows 1.5 MiB/s",) if leak else (),
            layers={"gpu": {"unavailable": "torch not imported"}},
        )
        events = [
            Event(1.7e9 + 55.0, EVENT_ACTION, {"action": "gc_collect", "reason": "budget", "freed_bytes": 0})
        ]
        runs.append(
            RecordedRun(
                f"app-{w}", f"app-{w}.db", {"pid": 100 + w, "interval": 10.0}, samples, events, verdict
            )
        )
    return runs


def test_report_data_matches_the_golden_file() -> None:
    """The report's data for fixed input is exactly the reviewed golden file (MEMWARDEN_UPDATE_GOLDEN=1 rewrites it)."""
    import os

    data = build_report(_golden_runs())
    data.pop("generated")
    data.pop("memwarden_version")
    if os.environ.get("MEMWARDEN_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert json.loads(json.dumps(data)) == expected


def test_a_timeline_without_samples_still_reports(tmp_path: Path) -> None:
    """A run that died before its first tick gives a page that says so (inconclusive, no charts)."""
    path = tmp_path / "empty.db"
    with Timeline(path) as tl:
        tl.set_meta(pid=1)
    page, data = _page([_run(path), _run(_timeline(tmp_path / "app.db", 40, 0.0))])
    empty = next(w for w in data["workers"] if w["label"] == "empty")  # type: ignore[union-attr]
    assert empty["verdict"] == "inconclusive" and empty["charts"] == []
    assert "No samples were recorded." in page
    assert data["overlay"]["labels"] == ["empty", "app"]  # type: ignore[index]
