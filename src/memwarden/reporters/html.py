"""The HTML report: one self-contained file with every layer's timeline as charts, and the verdict.

``memwarden report RUN.db --html report.html`` (several timelines, one per worker, merge into one
report) and ``memwarden run --report report.html`` write it. The file needs nothing but a browser: the
chart library (uPlot, MIT, vendored under ``templates/vendor/`` with its licence) and the page's own
script and styles are inlined, and the data travels as one JSON block in the page. Nothing is fetched
from the network, ever.

Two steps, kept apart so each can be tested alone:

- :func:`build_report` turns recorded runs (:class:`RecordedRun`: a timeline's meta, samples, events
  and verdict) into plain, JSON-ready data: the charts, downsampled to min/max per time bucket so that
  a spike survives however long the run; the guard actions and tracemalloc windows as marks on the
  time axis; the source line of each growing site.
- :func:`render_report` writes that data as HTML through the packaged Jinja2 templates. It computes
  nothing.
"""

from __future__ import annotations

import html as _html
import json
import linecache
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from .._format import format_bytes, format_duration, format_rate
from .._version import __version__
from ..diagnosis._evidence import EVENT_WINDOW
from ..diagnosis._verdict import LEAK_VERDICTS, VERDICT_MEANINGS, EvidenceItem, Verdict
from ..exceptions import UsageError
from ..guards.actions import EVENT_ACTION
from ..metrics import (
    GPU_ALLOCATED_BYTES,
    GPU_INACTIVE_SPLIT_BYTES,
    GPU_NVML_USED_BYTES,
    GPU_RESERVED_BYTES,
    LIBC_FREE_BYTES,
    LIBC_IN_USE_BYTES,
    LIBC_MMAPPED_BYTES,
    MEMWARDEN_ATTRIBUTED_RSS_BYTES,
    OBJECTS_ALLOCATED_BLOCKS,
    OBJECTS_GC_COLLECTIONS_GEN2,
    OBJECTS_GC_PAUSE_MAX_S,
    PROCESS_CGROUP_LIMIT_BYTES,
    PROCESS_CGROUP_USAGE_BYTES,
    PROCESS_PSS_BYTES,
    PROCESS_RSS_BYTES,
    PROCESS_SWAP_BYTES,
    PROCESS_USS_BYTES,
    PYMALLOC_ALLOCATED_BLOCK_BYTES,
    PYMALLOC_ARENA_BYTES,
    PYMALLOC_AVAILABLE_BLOCK_BYTES,
    TRACING_TRACED_BYTES,
)
from ..timeline import Event, Sample, Timeline

REPORT_SCHEMA = "memwarden.report/1"
"""The version of the JSON block embedded in the page (``<script id="memwarden-data">``)."""

DEFAULT_BUCKETS = 1000
"""Time buckets per chart: each keeps its minimum and maximum, so a chart has at most 2x this many points."""


@dataclass(frozen=True)
class ChartSpec:
    """One chart of the report: a title, the unit of its y axis and the metrics drawn on it."""

    id: str
    title: str
    unit: str
    """``bytes``, ``count`` or ``seconds``: how the axis and the tooltips write the values."""
    metrics: tuple[tuple[str, str], ...]
    """``(metric name, label)`` pairs, drawn in this order."""
    help: str = ""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "process",
        "Process",
        "bytes",
        (
            (PROCESS_RSS_BYTES, "RSS"),
            (PROCESS_USS_BYTES, "USS (private)"),
            (PROCESS_PSS_BYTES, "PSS"),
            (PROCESS_SWAP_BYTES, "swap"),
        ),
        "What the kernel charges the process for.",
    ),
    ChartSpec(
        "container",
        "Container (cgroup)",
        "bytes",
        (
            (PROCESS_CGROUP_USAGE_BYTES, "usage"),
            (PROCESS_CGROUP_LIMIT_BYTES, "limit"),
        ),
        "The whole container's memory, all its processes and page cache; the limit when one is set.",
    ),
    ChartSpec(
        "objects",
        "Python objects",
        "count",
        ((OBJECTS_ALLOCATED_BLOCKS, "allocated blocks"),),
        "Live blocks of Python's object allocator (sys.getallocatedblocks()).",
    ),
    ChartSpec(
        "pymalloc",
        "pymalloc",
        "bytes",
        (
            (PYMALLOC_ARENA_BYTES, "arenas"),
            (PYMALLOC_ALLOCATED_BLOCK_BYTES, "blocks in use"),
            (PYMALLOC_AVAILABLE_BLOCK_BYTES, "free blocks"),
        ),
        "Python's small-object allocator: arenas held vs blocks in use.",
    ),
    ChartSpec(
        "libc",
        "glibc malloc",
        "bytes",
        (
            (LIBC_IN_USE_BYTES, "in use"),
            (LIBC_FREE_BYTES, "free (kept)"),
            (LIBC_MMAPPED_BYTES, "mmapped"),
        ),
        "The C allocator: bytes in use vs freed but kept.",
    ),
    ChartSpec(
        "tracing",
        "tracemalloc",
        "bytes",
        ((TRACING_TRACED_BYTES, "traced"),),
        "Bytes traced while a tracemalloc window was open.",
    ),
    ChartSpec(
        "gpu",
        "GPU",
        "bytes",
        (
            (GPU_ALLOCATED_BYTES, "allocated (live tensors)"),
            (GPU_RESERVED_BYTES, "reserved (cached)"),
            (GPU_INACTIVE_SPLIT_BYTES, "inactive split"),
            (GPU_NVML_USED_BYTES, "device used (NVML)"),
        ),
        "PyTorch's caching allocator and the device.",
    ),
    ChartSpec(
        "gc",
        "Garbage collector",
        "count",
        ((OBJECTS_GC_COLLECTIONS_GEN2, "gen-2 collections"),),
        "Full collections so far.",
    ),
    ChartSpec(
        "gc_pause",
        "Longest gc pause",
        "seconds",
        ((OBJECTS_GC_PAUSE_MAX_S, "longest pause"),),
    ),
    ChartSpec(
        "memwarden",
        "memwarden's own memory",
        "bytes",
        ((MEMWARDEN_ATTRIBUTED_RSS_BYTES, "attributed to memwarden"),),
        "What memwarden itself holds (its rings, windows and buffers).",
    ),
)


@dataclass(frozen=True)
class RecordedRun:
    """One worker's recorded run, as read from its timeline: what the report is built from."""

    label: str
    path: str
    meta: Mapping[str, Any]
    samples: Sequence[Sample]
    events: Sequence[Event]
    verdict: Verdict

    @classmethod
    def read(cls, timeline: Timeline, verdict: Verdict, *, label: str | None = None) -> RecordedRun:
        """Everything the report needs from an open timeline, with the run's verdict."""
        return cls(
            label=label or _label_of(timeline.path),
            path=timeline.path,
            meta=timeline.meta(),
            samples=timeline.samples(),
            events=timeline.events(),
            verdict=verdict,
        )


def _label_of(path: str) -> str:
    name = Path(path).name
    return name[:-3] if name.endswith(".db") else name or path


# -- progress ---------------------------------------------------------------------------------------


class ReportProgress:
    """Progress on stderr for a long report: shown only once the work has taken more than ``after_s``.

    A rich progress bar, transient, and only on a terminal (a log or a pipe gets nothing).
    """

    def __init__(self, total: int, *, after_s: float = 1.0, file: IO[str] | None = None) -> None:
        self.total = total
        self.after_s = after_s
        self.file = file if file is not None else sys.stderr
        self._started = time.monotonic()
        self._done = 0
        self._progress: Any = None
        self._task: Any = None

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def advance(self, what: str, steps: int = 1) -> None:
        self._done += steps
        if self._progress is None and time.monotonic() - self._started >= self.after_s:
            isatty = getattr(self.file, "isatty", None)
            if callable(isatty) and isatty():
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                self._progress = Progress(
                    TextColumn("memwarden report: {task.description}"),
                    BarColumn(),
                    TimeElapsedColumn(),
                    console=Console(file=self.file),
                    transient=True,
                )
                self._progress.start()
                self._task = self._progress.add_task(what, total=self.total, completed=self._done)
        if self._progress is not None:
            self._progress.update(self._task, completed=self._done, description=what)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def report_progress(
    total: int, *, after_s: float = 1.0, file: IO[str] | None = None
) -> Iterator[ReportProgress]:
    progress = ReportProgress(total, after_s=after_s, file=file)
    try:
        yield progress
    finally:
        progress.close()


# -- downsampling -----------------------------------------------------------------------------------


def downsample(
    xs: Sequence[float], columns: Sequence[Sequence[float | None]], buckets: int = DEFAULT_BUCKETS
) -> tuple[list[float], list[list[float | None]]]:
    """Shrink aligned series to at most ``2 * buckets`` points, keeping each bucket's minimum and maximum.

    ``xs`` must be non-decreasing; the time range is cut into ``buckets`` equal spans. Each span with
    samples gives two points, at its first and its last sample's time; for each column one holds the
    span's minimum and the other its maximum, in the order they happened, so a spike (one sample far
    above its neighbours) is still drawn at its full height. Gaps (``None``) stay gaps. Series already
    short enough come back unchanged.
    """
    if buckets < 1:
        raise UsageError("buckets must be at least 1")
    n = len(xs)
    if n <= 2 * buckets:
        return list(xs), [list(c) for c in columns]
    x0, x1 = xs[0], xs[-1]
    span = (x1 - x0) or 1.0
    out_x: list[float] = []
    out_cols: list[list[float | None]] = [[] for _ in columns]
    start = 0
    while start < n:
        b = min(buckets - 1, int((xs[start] - x0) / span * buckets))
        end = start + 1
        while end < n and min(buckets - 1, int((xs[end] - x0) / span * buckets)) == b:
            end += 1
        if end - start == 1:
            out_x.append(xs[start])
            for col, out in zip(columns, out_cols):
                out.append(col[start])
        else:
            out_x.append(xs[start])
            out_x.append(xs[end - 1])
            for col, out in zip(columns, out_cols):
                lo_i = hi_i = -1
                lo = hi = 0.0
                for i in range(start, end):
                    v = col[i]
                    if v is None:
                        continue
                    if lo_i < 0 or v < lo:
                        lo, lo_i = v, i
                    if hi_i < 0 or v > hi:
                        hi, hi_i = v, i
                if lo_i < 0:
                    out.extend((None, None))
                elif lo_i <= hi_i:
                    out.extend((lo, hi))
                else:
                    out.extend((hi, lo))
        start = end
    return out_x, out_cols


# -- building the report's data ---------------------------------------------------------------------


@dataclass
class _Chart:
    spec: ChartSpec
    labels: list[str] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    ys: list[list[float | None]] = field(default_factory=list)

    def to_json(self, worker: int) -> dict[str, Any]:
        return {
            "id": f"w{worker}-{self.spec.id}",
            "title": self.spec.title,
            "unit": self.spec.unit,
            "help": self.spec.help,
            "labels": self.labels,
            "x": [round(v, 2) for v in self.x],
            "ys": [[_compact(v) for v in col] for col in self.ys],
        }


def _compact(v: float | None) -> float | int | None:
    if v is None or not math.isfinite(v):
        return None
    if abs(v) >= 1000 or float(v).is_integer():
        return round(v)
    return float(f"{v:.4g}")


def _charts_of(samples: Sequence[Sample], t0: float, buckets: int) -> list[_Chart]:
    xs = [s.t - t0 for s in samples]
    rows = [s.metrics for s in samples]
    charts = []
    for spec in CHARTS:
        chart = _Chart(spec)
        cols: list[list[float | None]] = []
        for name, label in spec.metrics:
            col: list[float | None] = [row.get(name) for row in rows]
            if any(v is not None for v in col):
                chart.labels.append(label)
                cols.append(col)
        if cols:
            chart.x, chart.ys = downsample(xs, cols, buckets)
            charts.append(chart)
    return charts


def _source_line(file: str, line: int) -> str | None:
    """The text of a site's line, when the file is readable here (the report is usually made where it ran)."""
    if not file or file.startswith("<") or line <= 0:
        return None
    text = linecache.getline(file, line).strip()
    return text or None


def _evidence_items(verdict: Verdict) -> list[EvidenceItem]:
    # verdicts recorded before the classifier gave items carry sentences only
    return list(verdict.evidence_items) or [EvidenceItem.from_sentence(e) for e in verdict.evidence]


def _marks(events: Sequence[Event], t0: float, run_t0: float) -> list[dict[str, Any]]:
    """Guard actions (a line) and tracemalloc windows (a band) on the report's shared time axis.

    Events carry wall time; a window's bounds count seconds from the run's first sample (``run_t0``).
    """
    marks: list[dict[str, Any]] = []
    for ev in events:
        if ev.kind == EVENT_ACTION:
            action = str(ev.data.get("action", "action"))
            freed = ev.data.get("freed_bytes")
            label = (
                action if not isinstance(freed, (int, float)) else f"{action}: freed {format_bytes(freed)}"
            )
            marks.append({"kind": "action", "t": round(ev.t - t0, 2), "label": label})
        elif ev.kind == EVENT_WINDOW:
            try:
                opened, closed = float(ev.data["opened_s"]), float(ev.data["closed_s"])
            except (KeyError, TypeError, ValueError):
                continue
            marks.append(
                {
                    "kind": "window",
                    "t": round(run_t0 - t0 + opened, 2),
                    "t_end": round(run_t0 - t0 + closed, 2),
                    "label": "tracemalloc window",
                }
            )
    return marks


def _actions(events: Sequence[Event], t0: float) -> list[dict[str, Any]]:
    rows = []
    for ev in events:
        if ev.kind != EVENT_ACTION:
            continue
        d = ev.data
        freed = d.get("freed_bytes")
        before, after = d.get("rss_before_bytes"), d.get("rss_after_bytes")
        duration = d.get("duration_s")
        rows.append(
            {
                "at": format_duration(max(0.0, ev.t - t0)),
                "action": str(d.get("action", "?")),
                "reason": str(d.get("reason", "")),
                "freed": format_bytes(freed) if isinstance(freed, (int, float)) else "n/a",
                "rss": (
                    f"{format_bytes(before)} → {format_bytes(after)}"
                    if isinstance(before, (int, float)) and isinstance(after, (int, float))
                    else "n/a"
                ),
                "took": f"{duration * 1000:.1f} ms" if isinstance(duration, (int, float)) else "n/a",
            }
        )
    return rows


def _worker(index: int, run: RecordedRun, t0: float, buckets: int) -> dict[str, Any]:
    v = run.verdict
    samples = run.samples
    run_t0 = samples[0].t if samples else t0
    marks = _marks(run.events, t0, run_t0)
    command = run.meta.get("command")
    facts = {
        k: run.meta[k]
        for k in ("python", "pid", "interval", "started", "exit_code", "platform")
        if k in run.meta
    }
    not_read = {
        layer: str(figures["unavailable"])
        for layer, figures in v.layers.items()
        if isinstance(figures, Mapping) and isinstance(figures.get("unavailable"), str)
    }
    gpu_layer = v.layers.get("gpu")
    gpu_figures = (
        gpu_layer if isinstance(gpu_layer, Mapping) and "unavailable" not in gpu_layer and gpu_layer else None
    )
    return {
        "index": index,
        "label": run.label,
        "path": run.path,
        "command": " ".join(map(str, command)) if isinstance(command, list) else (command or ""),
        "facts": facts,
        "leak": v.leak,
        "verdict": v.verdict,
        "meaning": VERDICT_MEANINGS.get(v.verdict, ""),
        "confidence": f"{v.confidence:.0%}",
        "summary": v.summary,
        "duration": format_duration(v.duration_s),
        "samples": v.samples,
        "recorded_samples": len(samples),
        "growth": [
            {"layer": k, "rate": format_rate(r), "bytes_per_s": r} for k, r in v.growth_bytes_per_s.items()
        ],
        "evidence": [e.to_json() for e in _evidence_items(v)],
        "sites": [
            {
                "where": f"{s.file}:{s.line}",
                "function": s.function or "",
                "grew": format_bytes(s.size_diff_bytes, signed=True),
                "objects": f"{s.count_diff:+,}",
                "source": _source_line(s.file, s.line),
                "traceback": [
                    f"{f.file}:{f.line}" + (f" in {f.function}()" if f.function else "") for f in s.traceback
                ],
            }
            for s in v.sites[:10]
        ],
        "types": [
            {
                "type": t.type,
                "count": f"{t.count_diff:+,}",
                "grew": format_bytes(t.size_diff_bytes, signed=True),
            }
            for t in v.types[:10]
        ],
        "holders": [h.to_json() for h in v.holders[:10]],
        "caches": [
            {
                "name": c.name,
                "kind": c.kind,
                "bound": "unbounded" if c.maxsize is None else f"maxsize {c.maxsize:,}",
                "currsize": f"{c.currsize:,}",
                "growth": f"{c.growth_per_s:+,.1f}/s",
                "unbounded": c.maxsize is None,
            }
            for c in v.caches[:20]
        ],
        "advice": list(v.advice),
        "actions": _actions(run.events, run_t0),
        "gpu": dict(gpu_figures) if gpu_figures is not None else None,
        "not_read": not_read,
        "marks": marks,
        "charts": [c.to_json(index) for c in _charts_of(samples, t0, buckets)],
        "offset_s": round(run_t0 - t0, 2),
    }


def _overlay(runs: Sequence[RecordedRun], t0: float, buckets: int) -> dict[str, Any] | None:
    """RSS of every worker on one chart (several timelines only)."""
    if len(runs) < 2:
        return None
    per_worker: list[tuple[list[float], list[float | None]]] = []
    for run in runs:
        xs = [s.t - t0 for s in run.samples]
        col: list[float | None] = []
        for s in run.samples:
            v = s.metrics.get(PROCESS_RSS_BYTES)
            col.append(None if v is None else float(v))
        dx, (dcol,) = downsample(xs, [col], buckets)
        per_worker.append((dx, dcol))
    # one shared x axis: the union of the workers' times, each worker null where it has no point
    index: dict[float, int] = {}
    merged_x = sorted({round(x, 2) for xs, _ in per_worker for x in xs})
    for i, x in enumerate(merged_x):
        index[x] = i
    ys: list[list[float | None]] = []
    for xs, col in per_worker:
        out: list[float | None] = [None] * len(merged_x)
        for x, v in zip(xs, col):
            out[index[round(x, 2)]] = v
        ys.append(out)
    return {
        "id": "workers-rss",
        "title": "RSS of each worker",
        "unit": "bytes",
        "help": "One line per timeline, on one time axis.",
        "labels": [r.label for r in runs],
        "x": merged_x,
        "ys": [[_compact(v) for v in col] for col in ys],
    }


def _headline(runs: Sequence[RecordedRun]) -> str:
    """One sentence over all workers: which grow and which do not."""
    if len(runs) == 1:
        return runs[0].verdict.summary
    leaking = [r for r in runs if r.verdict.verdict in LEAK_VERDICTS]
    others = [r for r in runs if r.verdict.verdict not in LEAK_VERDICTS]
    if not leaking:
        kinds = sorted({r.verdict.verdict for r in runs})
        return f"None of the {len(runs)} workers leaks ({', '.join(kinds)})."
    named = ", ".join(
        f"{r.label} ({r.verdict.verdict}, RSS {format_rate(r.verdict.growth_bytes_per_s.get('rss'))})"
        for r in leaking
    )
    if not others:
        return f"All {len(runs)} workers leak: {named}."
    counts: dict[str, int] = {}
    for r in others:
        counts[r.verdict.verdict] = counts.get(r.verdict.verdict, 0) + 1
    other_kinds = (
        next(iter(counts)) if len(counts) == 1 else ", ".join(f"{k} ({n})" for k, n in sorted(counts.items()))
    )
    verb = "leaks" if len(leaking) == 1 else "leak"
    rest = "the other is" if len(others) == 1 else f"the other {len(others)} are"
    return f"{len(leaking)} of {len(runs)} workers {verb}: {named}; {rest} {other_kinds}."


def build_report(
    runs: Sequence[RecordedRun],
    *,
    buckets: int = DEFAULT_BUCKETS,
    progress: ReportProgress | None = None,
) -> dict[str, Any]:
    """The report's data (``memwarden.report/1``): plain JSON-ready values, charts already downsampled."""
    if not runs:
        raise UsageError("a report needs at least one recorded run")
    firsts = [r.samples[0].t for r in runs if r.samples]
    t0 = min(firsts) if firsts else 0.0
    workers = []
    for i, run in enumerate(runs):
        workers.append(_worker(i, run, t0, buckets))
        if progress is not None:
            progress.advance(f"charts of {run.label}")
    order = sorted(range(len(runs)), key=lambda i: (not runs[i].verdict.leak, i))
    return {
        "schema": REPORT_SCHEMA,
        "memwarden_version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "t0": t0,
        "headline": _headline(runs),
        "leak": any(r.verdict.leak for r in runs),
        "workers": [workers[i] for i in order],
        "overlay": _overlay(runs, t0, buckets),
    }


# -- rendering --------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("templates", *name.split("/")).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``</script>``, no ``<!--``."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inline_script(source: str) -> str:
    if "</script" in source.lower():
        raise AssertionError("an inlined script must not contain '</script'")
    return source


def render_report(data: Mapping[str, Any], file: IO[str]) -> None:
    """Write the report's data as one self-contained HTML page."""
    try:
        import jinja2
    except ImportError:  # pragma: no cover - jinja2 is a dependency of memwarden
        raise UsageError("the HTML report needs jinja2: pip install jinja2") from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("memwarden.reporters", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("report.html.j2")
    page = template.render(
        report=data,
        data_json=_script_json(data),
        uplot_js=_inline_script(_asset("vendor/uPlot.iife.min.js")),
        uplot_css=_asset("vendor/uPlot.min.css"),
        uplot_licence=_html.escape(_asset("vendor/uPlot.LICENSE")).replace("--", "- -"),
        report_js=_inline_script(_asset("report.js")),
        report_css=_asset("report.css"),
    )
    file.write(page)


def write_report(
    runs: Sequence[RecordedRun],
    path: str | os.PathLike[str],
    *,
    buckets: int = DEFAULT_BUCKETS,
    progress: ReportProgress | None = None,
) -> int:
    """Build and write the report to ``path`` (atomically); returns the file's size in bytes."""
    data = build_report(runs, buckets=buckets, progress=progress)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            render_report(data, fh)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    if progress is not None:
        progress.advance("written")
    return target.stat().st_size


def write_run_report(timeline: Timeline, verdict: Verdict, path: str | os.PathLike[str]) -> int:
    """The report of the run that just ended (``memwarden run --report``), from its open timeline."""
    return write_report([RecordedRun.read(timeline, verdict)], path)


__all__ = [
    "CHARTS",
    "DEFAULT_BUCKETS",
    "REPORT_SCHEMA",
    "ChartSpec",
    "RecordedRun",
    "ReportProgress",
    "build_report",
    "downsample",
    "render_report",
    "report_progress",
    "write_report",
    "write_run_report",
]
