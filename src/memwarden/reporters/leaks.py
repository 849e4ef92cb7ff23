"""Text for the per-call leak check and the memory cap (:mod:`memwarden.leakcheck`): what pytest shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memwarden._format import format_bytes, format_duration, short_path

if TYPE_CHECKING:
    from memwarden.leakcheck import LayerTrend, LeakReport, LeakSite, MemoryUse

_TRACEBACK_FRAMES = 6


def render_leak_report(report: LeakReport, *, summary: bool = True) -> str:
    """The whole report as plain text lines (no colour: pytest sections are plain text).

    ``summary=False`` leaves out the first line, for a pytest failure whose own message already is it.
    """
    lines = [report.summary, ""] if summary else []
    lines.append(
        f"measured {report.calls} calls in {report.rounds} round(s) of {report.iterations} after "
        f"{report.warmup} warm-up call(s); {_seconds(report.seconds_per_call)} a call, "
        f"{format_duration(report.elapsed_s)} in all"
    )
    lines.append(_layer_line(report.python, "python objects (allocator blocks)"))
    if report.native is not None:
        lines.append(_layer_line(report.native, "native memory (malloc in use)"))
    if report.traced_bytes_per_call is not None:
        lines.append(
            f"  traced by tracemalloc over {report.attribution_calls} more calls: "
            f"{format_bytes(report.traced_bytes_per_call, signed=True)}/call"
        )
    if report.sites:
        lines.append("")
        lines.append(f"allocated at (what stayed alive over the {report.attribution_calls} traced calls):")
        for i, site in enumerate(report.sites, 1):
            lines.extend(_site_lines(i, site))
    elif report.leak and report.layer == "native":
        lines.append("")
        lines.append(
            "no Python allocation grows: the memory is allocated by native code (a C extension, ctypes, "
            "a native library) called from this function; tracemalloc cannot name its lines"
        )
    if report.holders:
        lines.append("")
        lines.append("held by:")
        for h in report.holders:
            bound = f", {h.bound}" if h.bound else ""
            lines.append(f"  {h.path}  ({h.type}, {h.root_kind}{bound}; {h.count} sample(s))")
    if report.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)


def _layer_line(t: LayerTrend, label: str) -> str:
    p = "" if t.p_value is None else f", p={t.p_value:.2g}"
    rounds = f"; grew in {t.growing_rounds} round(s) in a row" if t.growing_rounds else ""
    if t.unit == "B":
        rate, total = f"{format_bytes(t.per_call, signed=True)}/call", format_bytes(t.total, signed=True)
    else:
        rate, total = f"{t.per_call:+.3g} {t.unit}/call", f"{t.total:+.0f} {t.unit}"
    return f"  {label}: {rate} ({total} in all; last round {t.status}{p}{rounds})"


def _site_lines(i: int, site: LeakSite) -> list[str]:
    where = f"{short_path(site.file)}:{site.line}" + (f" in {site.function}()" if site.function else "")
    out = [
        f"  {i}. {where}  {format_bytes(site.size_diff_bytes, signed=True)} in {site.count_diff:+d} blocks"
    ]
    frames = site.traceback[-_TRACEBACK_FRAMES:]
    if len(site.traceback) > len(frames):
        out.append(f"       ... {len(site.traceback) - len(frames)} outer frame(s)")
    for file, line, function in frames:
        fn = f" in {function}" if function else ""
        out.append(f"       {short_path(file)}:{line}{fn}")
    return out


def render_memory_use(use: MemoryUse) -> str:
    """What one capped call used, and the lines that allocated what it kept."""
    native = "n/a" if use.net_native_bytes is None else format_bytes(use.net_native_bytes, signed=True)
    lines = [
        f"{use.name}: peak {format_bytes(use.peak_bytes)} of Python allocations; kept "
        f"{format_bytes(use.net_python_bytes, signed=True)} of Python objects and {native} of native memory "
        f"after the call ({_seconds(use.seconds)})"
    ]
    if use.sites:
        lines.append("")
        lines.append("what stayed was allocated at:")
        for i, site in enumerate(use.sites, 1):
            lines.extend(_site_lines(i, site))
    if use.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in use.notes)
    return "\n".join(lines)


def _seconds(value: float) -> str:
    """Durations under a second in milliseconds: a call is often far shorter than 0.1 s."""
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.1f} ms" if value < 1.0 else format_duration(value)
