"""``memwarden snapshot``: one reading of every layer of this interpreter."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._format import format_bytes
from ..exceptions import ProbeUnavailable
from ..probes import census, default_probes
from ..probes._base import Metrics, flatten, to_jsonable

HELP = "read every memory layer of this interpreter once"
DESCRIPTION = (
    "Read every memory layer once (process, objects, pymalloc, libc, tracing, gpu) and print it as a "
    "table, or as JSON with --json. Layers that cannot be read here say why."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the readings as JSON")
    p.add_argument(
        "--census", action="store_true", help="also count live objects by type (slower on big heaps)"
    )
    p.add_argument("--top", type=int, default=15, help="how many types the census lists (default 15)")


def take_snapshot(*, with_census: bool = False, top: int = 15) -> dict[str, Any]:
    """Every layer's reading as JSON-ready data: ``{"layers": {...}, "unavailable": {...}, "metrics": {...}}``."""
    layers: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    metrics: Metrics = {}
    for probe in default_probes():
        avail = probe.available()
        if not avail:
            unavailable[probe.layer] = avail.reason
            continue
        try:
            reading = probe.read()
        except ProbeUnavailable as exc:
            unavailable[probe.layer] = exc.reason
            continue
        except Exception as exc:  # a broken layer is reported, never fatal
            unavailable[probe.layer] = f"read failed: {exc!r}"
            continue
        layers[probe.layer] = to_jsonable(reading)
        metrics.update(flatten(probe.layer, reading))
    out: dict[str, Any] = {"layers": layers, "unavailable": unavailable, "metrics": metrics}
    if with_census:
        out["census"] = to_jsonable(census(top=top))
    return out


def execute(args: argparse.Namespace) -> int:
    snap = take_snapshot(with_census=args.census, top=args.top)
    if args.json:
        json.dump(snap, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from ..reporters.terminal import render_snapshot

    extra: list[tuple[str, str]] = []
    pym = snap["layers"].get("pymalloc")
    if pym:
        extra.append(
            (
                "pymalloc geometry",
                f"arena {format_bytes(pym.get('arena_size_bytes'))}, pool {format_bytes(pym.get('pool_size_bytes'))}, "
                f"{pym.get('size_class_count')} size classes",
            )
        )
    if "census" in snap:
        for t in snap["census"].get("types", [])[: args.top]:
            extra.append(
                (f"census: {t['type']}", f"{t['count']:,} objects, {format_bytes(t['shallow_bytes'])}")
            )
    render_snapshot(snap["metrics"], snap["unavailable"], sys.stdout, extra=extra)
    return 0
