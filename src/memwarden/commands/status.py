"""``memwarden status PID|DB``: one look at a running monitor (its control socket) or a timeline file."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "show a running monitor's layers and verdict once (by pid or timeline file)"
DESCRIPTION = (
    "Print the latest readings of every layer, their growth and the verdict of a process that runs "
    "memwarden (by PID, through its control socket: memwarden.exporters.control.serve_control()) or "
    "of a timeline file; no ptrace, no web server."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="PID|DB", help="a process id with a control socket, or a timeline file")
    p.add_argument("--json", action="store_true", help="print the readings and verdict as JSON")


def execute(args: argparse.Namespace) -> int:
    from ..exporters._live import LiveSource, render

    view = LiveSource(str(args.target)).read()
    if args.json:
        json.dump(
            {
                "source": view.source,
                "pid": view.pid,
                "samples": view.ticks,
                "metrics": dict(view.samples[-1][1]) if view.samples else {},
                "verdict": view.verdict,
            },
            sys.stdout,
            indent=2,
            default=str,
        )
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    Console(file=sys.stdout).print(render(view))
    return 0
