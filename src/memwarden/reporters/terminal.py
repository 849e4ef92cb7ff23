"""The terminal: a verdict, a snapshot and a recorded run, rendered for a person with rich.

Every function takes the plain data and a file object; nothing here computes a figure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._format import format_bytes, format_duration, format_rate, short_path
from ..diagnosis._verdict import LEAK_VERDICTS, VERDICT_MEANINGS, Site, SourceFrame, Verdict
from ..metrics import (
    GPU_ALLOCATED_BYTES,
    GPU_INACTIVE_SPLIT_BYTES,
    GPU_RESERVED_BYTES,
    LIBC_FREE_BYTES,
    LIBC_IN_USE_BYTES,
    LIBC_MMAPPED_BYTES,
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
    PYMALLOC_UTILISATION,
    TRACING_TRACED_BYTES,
)
from ..probes._codemap import CodePlaces, default_code_places

_STYLE = {
    "python_leak": "bold red",
    "native_leak": "bold red",
    "gpu_leak": "bold red",
    "allocator_retention": "bold yellow",
    "gpu_cache_retention": "bold yellow",
    "plateau": "bold cyan",
    "stable": "bold green",
    "inconclusive": "bold magenta",
}

# metrics shown in the tables, in order, with how to write them
_KEY_FIGURES: tuple[tuple[str, str, str], ...] = (
    (PROCESS_RSS_BYTES, "RSS", "bytes"),
    (PROCESS_USS_BYTES, "USS (private)", "bytes"),
    (PROCESS_PSS_BYTES, "PSS", "bytes"),
    (PROCESS_SWAP_BYTES, "swap", "bytes"),
    (PROCESS_CGROUP_LIMIT_BYTES, "container limit", "bytes"),
    (PROCESS_CGROUP_USAGE_BYTES, "container usage", "bytes"),
    (OBJECTS_ALLOCATED_BLOCKS, "Python allocated blocks", "count"),
    (OBJECTS_GC_COLLECTIONS_GEN2, "gc gen-2 collections", "count"),
    (OBJECTS_GC_PAUSE_MAX_S, "longest gc pause", "seconds"),
    (PYMALLOC_ARENA_BYTES, "pymalloc arenas", "bytes"),
    (PYMALLOC_ALLOCATED_BLOCK_BYTES, "pymalloc in use", "bytes"),
    (PYMALLOC_UTILISATION, "pymalloc utilisation", "ratio"),
    (LIBC_IN_USE_BYTES, "malloc in use", "bytes"),
    (LIBC_FREE_BYTES, "malloc free (kept)", "bytes"),
    (LIBC_MMAPPED_BYTES, "malloc mmapped", "bytes"),
    (TRACING_TRACED_BYTES, "tracemalloc traced", "bytes"),
    (GPU_ALLOCATED_BYTES, "GPU allocated (live tensors)", "bytes"),
    (GPU_RESERVED_BYTES, "GPU reserved (cached)", "bytes"),
    (GPU_INACTIVE_SPLIT_BYTES, "GPU inactive split", "bytes"),
)


def _console(file: IO[str], color: bool | None) -> Console:
    return Console(
        file=file,
        force_terminal=color,
        no_color=color is False,
        width=max(100, Console(file=file).width) if color is not False else 110,
        highlight=False,
        soft_wrap=False,
    )


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return format_bytes(float(value))
    if unit == "ratio":
        return f"{float(value):.0%}"
    if unit == "seconds":
        return f"{float(value) * 1000:.2f} ms"
    return f"{float(value):,.0f}"


def render_verdict(
    verdict: Verdict, file: IO[str], *, color: bool | None = None, title: str = "memwarden"
) -> None:
    """The end-of-run summary: the verdict, the evidence, the top sites and holders, the advice."""
    con = _console(file, color)
    style = _STYLE.get(verdict.verdict, "bold")
    head = Text()
    head.append(f"{title}: ", style="bold")
    head.append(verdict.verdict, style=style)
    head.append(f"  (confidence {verdict.confidence:.0%}, {verdict.samples} samples over ")
    head.append(f"{format_duration(verdict.duration_s)})")
    con.print(head)
    # sentences that name paths are not wrapped by rich (a path cut in two cannot be copied): the
    # terminal wraps them, and a log keeps each on one line
    con.print(Text(verdict.summary), soft_wrap=True)
    meaning = VERDICT_MEANINGS.get(verdict.verdict)
    if meaning and verdict.verdict not in LEAK_VERDICTS:
        con.print(Text(f"  {verdict.verdict}: {meaning}", style="dim"))
    growth = ", ".join(
        f"{k} {format_rate(v)}" for k, v in verdict.growth_bytes_per_s.items() if v is not None
    )
    if growth:
        con.print(Text(f"growth: {growth}{_growth_note(verdict)}"), soft_wrap=True)
    began = verdict.growth_began
    if began is not None and began.offset_s > 0:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(began.t))
        rate = began.rate_bytes_per_s
        since = f"{format_bytes(rate * 3600)}/h" if verdict.duration_s >= 3600 else format_rate(rate)
        con.print(Text(f"growth began: {when}, after {format_duration(began.offset_s)} flat ({since} since)"))
    if verdict.evidence:
        con.print(Text("evidence:", style="bold"))
        for line in verdict.evidence:
            con.print(Text(f"  - {line}"), soft_wrap=True)
    if verdict.sites:
        # the figures first and the place last, on one line each: a path is never wrapped or cut
        con.print(Text(f"{'grew':>11} {'objects':>10}  top growing sites", style="bold"))
        for label, s in site_rows(verdict.sites[:5]):
            grew = format_bytes(s.size_diff_bytes, signed=True)
            con.print(Text(f"{grew:>11} {s.count_diff:>+10,}  {label}"), soft_wrap=True)
    if verdict.types:
        con.print(
            Text(
                "growing types: "
                + ", ".join(
                    f"{t.type} ({t.count_diff:+,}, {format_bytes(t.size_diff_bytes, signed=True)})"
                    for t in verdict.types[:5]
                )
            ),
            soft_wrap=True,
        )
    found = [h for h in verdict.holders[:3] if not h.path.startswith("<")]
    for h in found:
        bound = f", {h.bound}" if h.bound else ""
        con.print(Text(f"held by: {h.path}  [{h.type}, {h.root_kind}{bound}]"), soft_wrap=True)
    if verdict.holders and not found and verdict.verdict in LEAK_VERDICTS:
        con.print(
            Text("held by: not found (only a C extension or the C stack refers to the objects)", style="dim")
        )
    for c in verdict.caches[:5]:
        bound = "unbounded" if c.maxsize is None else f"maxsize {c.maxsize:,}"
        con.print(
            Text(f"cache: {c.name} ({c.kind}, {bound}): {c.currsize:,} entries, {c.growth_per_s:+,.1f}/s")
        )
    not_read = [  # tracing is read only while a window is open: not worth a word when none was
        f"{layer} ({figures['unavailable']})"
        for layer, figures in verdict.layers.items()
        if layer != "tracing" and isinstance(figures, Mapping) and isinstance(figures.get("unavailable"), str)
    ]
    if not_read:
        con.print(Text("not read: " + ", ".join(not_read), style="dim"))
    if verdict.advice:
        con.print(Text("what to do:", style="bold"))
        for line in verdict.advice:
            con.print(Text(f"  * {line}"), soft_wrap=True)


def _growth_note(verdict: Verdict) -> str:
    """Why Python's figure is above RSS's, when it is: otherwise the line reads as a mistake."""
    rss, python = verdict.growth_bytes_per_s.get("rss"), verdict.growth_bytes_per_s.get("python")
    if rss is None or python is None or python <= max(rss, 0.0) * 1.05 or python <= 0:
        return ""
    return (
        " (python is above rss: it is what tracemalloc saw kept during its window, and part of it went into "
        "memory the allocators already held, which RSS does not count again)"
    )


def _frame_label(file: str, line: int, function: str | None) -> str:
    fn = f" in {function}()" if function else ""
    return f"{short_path(file)}:{line}{fn}"


def site_rows(sites: Sequence[Site], places: CodePlaces | None = None) -> list[tuple[str, Site]]:
    """One row per site as a person tells them apart.

    Sites are grouped by traceback, so one line (``app.py:48 in main()``) can come back several
    times: reached along different call paths, or along one path whose tracebacks differ only in
    library frames (below the line, or cut off at the outer end by the traceback limit). Sites whose
    frames in the user's own code are the same are one row (their growth added up); the others get
    the first of their own frames, from the line outwards, where they part (``via app.py:60 in main()``).
    """
    places = places if places is not None else default_code_places()

    def own(site: Site) -> tuple[SourceFrame, ...]:  # innermost first
        return tuple(f for f in reversed(site.traceback) if places.is_user(f.file))

    merged: dict[tuple[str, int, tuple[tuple[str, int], ...]], Site] = {}
    for site in sites:
        key = (site.file, site.line, tuple((f.file, f.line) for f in own(site)))
        twin = merged.get(key)
        merged[key] = (
            site
            if twin is None
            else dataclasses.replace(
                twin,
                size_diff_bytes=twin.size_diff_bytes + site.size_diff_bytes,
                count_diff=twin.count_diff + site.count_diff,
            )
        )
    rows: list[tuple[str, Site]] = []
    for site in merged.values():
        label = _frame_label(site.file, site.line, site.function)
        others = [
            own(m) for m in merged.values() if m is not site and (m.file, m.line) == (site.file, site.line)
        ]
        if others:
            frame = _first_difference(own(site), others)
            if frame is not None:
                label += f" via {_frame_label(frame.file, frame.line, frame.function)}"
        rows.append((label, site))
    return rows


def _first_difference(
    mine: Sequence[SourceFrame], others: Sequence[Sequence[SourceFrame]]
) -> SourceFrame | None:
    """The first of ``mine`` (innermost first) where it parts from every one of ``others``."""
    for depth, frame in enumerate(mine):
        key = (frame.file, frame.line)
        if all(len(o) <= depth or (o[depth].file, o[depth].line) != key for o in others):
            return frame
    return None


def render_snapshot(
    metrics: Mapping[str, float | int | None],
    unavailable: Mapping[str, str],
    file: IO[str],
    *,
    extra: Sequence[tuple[str, str]] = (),
    color: bool | None = None,
) -> None:
    """One reading of every layer as a table; unavailable layers say why."""
    con = _console(file, color)
    table = Table(title="memwarden snapshot", show_edge=False, box=None)
    table.add_column("layer")
    table.add_column("figure")
    table.add_column("value", justify="right")
    shown = set()
    for key, label, unit in _KEY_FIGURES:
        if key in metrics:
            shown.add(key)
            table.add_row(key.partition(".")[0], label, _fmt(metrics[key], unit))
    for label, value in extra:
        table.add_row("", label, value)
    con.print(table)
    for layer, reason in unavailable.items():
        con.print(Text(f"{layer}: unavailable ({reason})", style="dim"))


def render_run(
    meta: Mapping[str, Any],
    figures: Mapping[str, Mapping[str, Any]],
    verdict: Verdict | None,
    file: IO[str],
    *,
    color: bool | None = None,
) -> None:
    """A recorded run: what ran, each layer's first/last/peak, then the verdict."""
    con = _console(file, color)
    command = meta.get("command")
    if command:
        con.print(Text(f"run: {' '.join(command) if isinstance(command, list) else command}", style="bold"))
    facts = [f"{k}={meta[k]}" for k in ("python", "pid", "interval", "started") if k in meta]
    if facts:
        con.print(Text("  " + "  ".join(facts), style="dim"))
    table = Table(show_edge=False, box=None)
    table.add_column("figure")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    table.add_column("peak", justify="right")
    for key, label, unit in _KEY_FIGURES:
        layer, _, name = key.partition(".")
        f = figures.get(layer, {}).get(name)
        if isinstance(f, Mapping):
            table.add_row(
                label, _fmt(f.get("first"), unit), _fmt(f.get("last"), unit), _fmt(f.get("max"), unit)
            )
    con.print(table)
    if verdict is not None:
        render_verdict(verdict, file, color=color)
