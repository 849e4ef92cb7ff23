"""What ``memwarden top`` and ``memwarden status`` show: a running monitor's layers, from its control
socket (a pid) or its timeline file (a path), rendered with rich."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics as m
from .._format import format_bytes, format_rate
from ..exceptions import UsageError

#: The rows ``top`` shows, layer by layer (metrics with no value are left out).
LAYER_ROWS: Mapping[str, tuple[str, ...]] = {
    "process": (
        m.PROCESS_RSS_BYTES,
        m.PROCESS_USS_BYTES,
        m.PROCESS_PSS_BYTES,
        m.PROCESS_SWAP_BYTES,
        m.PROCESS_CGROUP_USAGE_BYTES,
        m.PROCESS_CGROUP_LIMIT_BYTES,
    ),
    "objects": (
        m.OBJECTS_ALLOCATED_BLOCKS,
        m.OBJECTS_GC_COLLECTIONS_GEN2,
        m.OBJECTS_GC_PAUSE_TOTAL_S,
        m.OBJECTS_GC_PAUSE_MAX_S,
    ),
    "pymalloc": (m.PYMALLOC_ARENA_BYTES, m.PYMALLOC_ALLOCATED_BLOCK_BYTES, m.PYMALLOC_FRAGMENTATION),
    "libc": (m.LIBC_IN_USE_BYTES, m.LIBC_FREE_BYTES, m.LIBC_MMAPPED_BYTES, m.LIBC_TOP_RELEASABLE_BYTES),
    "tracing": (m.TRACING_TRACED_BYTES,),
    "gpu": (m.GPU_ALLOCATED_BYTES, m.GPU_RESERVED_BYTES, m.GPU_NVML_USED_BYTES),
    "memwarden": (m.MEMWARDEN_ATTRIBUTED_RSS_BYTES, m.MEMWARDEN_TIMELINE_BYTES, m.MEMWARDEN_WORK_S),
}


@dataclass
class View:
    """One frame: where it comes from, the recent samples (oldest first), the verdict if known."""

    source: str
    samples: list[tuple[float, Mapping[str, Any]]]
    verdict: Mapping[str, Any] | None = None
    ticks: int | None = None
    pid: int | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)


def _is_pid(target: str) -> bool:
    return target.isdigit()


class LiveSource:
    """Reads frames from a pid's control socket or a timeline file; ``verdict_every_s`` bounds diagnoses."""

    def __init__(self, target: str, *, last: int = 120, verdict_every_s: float = 10.0) -> None:
        self.target = target
        self.last = last
        self.verdict_every_s = verdict_every_s
        self._verdict: Mapping[str, Any] | None = None
        self._verdict_at = -math.inf
        if not _is_pid(target) and not Path(target).exists():
            raise UsageError(f"{target}: neither a pid nor a timeline file")

    def read(self) -> View:
        now = time.monotonic()
        want_verdict = now - self._verdict_at >= self.verdict_every_s
        if _is_pid(self.target):
            from .control import query

            pid = int(self.target)
            tl = query(pid, "timeline", last=self.last)
            head = query(pid, "readings")
            if want_verdict:
                self._verdict, self._verdict_at = query(pid, "verdict"), now
            samples = [(float(s["t"]), s["metrics"]) for s in tl.get("samples", [])]
            ticks = head.get("ticks")
            return View(
                f"pid {pid} (control socket)",
                samples,
                self._verdict,
                ticks if isinstance(ticks, int) else None,
                pid,
                head.get("unavailable") or {},
            )
        from ..timeline import Timeline

        with Timeline.open_existing(self.target) as timeline:
            samples = [(s.t, s.metrics) for s in timeline.samples()[-self.last :]]
            meta = timeline.meta()
            if want_verdict:
                verdicts = timeline.events("verdict")
                if verdicts:
                    self._verdict = verdicts[-1].data
                else:
                    from .._monitor import diagnose

                    self._verdict = diagnose(timeline).to_json()
                self._verdict_at = now
            count = timeline.sample_count()
        meta_pid = meta.get("pid")
        return View(
            f"{self.target} (timeline)",
            samples,
            self._verdict,
            int(count),
            meta_pid if isinstance(meta_pid, int) else None,
        )


def _rate(samples: Sequence[tuple[float, Mapping[str, Any]]], name: str) -> float | None:
    pts = [(t, float(v)) for t, mm in samples if isinstance(v := mm.get(name), (int, float))]
    if len(pts) < 3 or pts[-1][0] - pts[0][0] <= 0:
        return None
    from ..diagnosis._trend import theil_sen

    try:
        slope, _ = theil_sen([p[0] for p in pts], [p[1] for p in pts])
    except Exception:
        return None
    return slope if math.isfinite(slope) else None


def _value(spec: m.MetricSpec, value: float) -> str:
    if spec.unit == "bytes":
        return format_bytes(value)
    if spec.unit == "seconds":
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.1f} s"
    if spec.unit == "ratio":
        return f"{value * 100:.1f} %"
    return f"{value:,.0f}"


def render(view: View) -> Any:
    """The frame as a rich renderable: a header, the verdict, then one table of every layer."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    latest: dict[str, Any] = {}
    for _, sample_metrics in view.samples:  # costly layers are read every few ticks: keep each one's last
        latest.update((k, v) for k, v in sample_metrics.items() if v is not None)
    when = time.strftime("%H:%M:%S", time.localtime(view.samples[-1][0])) if view.samples else "-"
    header = Text.assemble(
        ("memwarden ", "bold"), view.source, f"  samples {view.ticks or 0}", f"  last {when}"
    )
    parts: list[Any] = [header]
    if view.verdict:
        v = view.verdict
        style = "bold red" if v.get("leak") else "bold green"
        parts.append(
            Text.assemble(
                ("verdict ", "bold"), (str(v.get("verdict", "?")), style), f"  {v.get('summary', '')}"
            )
        )
    table = Table(show_edge=False, pad_edge=False, expand=False)
    table.add_column("layer", style="cyan")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("growth", justify="right")
    for layer, names in LAYER_ROWS.items():
        first = True
        for name in names:
            value = latest.get(name)
            if not isinstance(value, (int, float)):
                continue
            spec = m.spec(name)
            rate = _rate(view.samples, name) if spec.kind == "gauge" else None
            growth = format_rate(rate) if rate is not None and spec.unit == "bytes" else ""
            table.add_row(layer if first else "", spec.field, _value(spec, float(value)), growth)
            first = False
        if first and layer in view.unavailable:
            table.add_row(layer, Text(f"unavailable: {view.unavailable[layer][:60]}", style="dim"), "", "")
    parts.append(table)
    return Group(*parts)
