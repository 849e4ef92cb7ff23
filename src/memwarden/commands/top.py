"""``memwarden top PID|DB``: a live terminal view of a running monitor."""

from __future__ import annotations

import argparse
import sys
import time

from ..exceptions import UsageError

HELP = "a live terminal view of a running monitor (by pid or timeline file)"
DESCRIPTION = (
    "Show every memory layer of a running monitor, its growth and verdict, refreshed every INTERVAL seconds, "
    "from its control socket (PID) or its timeline file (DB). Ctrl-C quits."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="PID|DB", help="a process id with a control socket, or a timeline file")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument(
        "--iterations", type=int, default=0, help="stop after this many refreshes (0: until Ctrl-C)"
    )


def execute(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise UsageError(f"--interval must be a positive number of seconds, not {args.interval}")
    from rich.console import Console
    from rich.live import Live

    from ..exporters._live import LiveSource, render

    source = LiveSource(str(args.target))
    console = Console(file=sys.stdout)
    done = 0
    with Live(
        render(source.read()), console=console, refresh_per_second=4, screen=False, auto_refresh=False
    ) as live:
        while True:
            done += 1
            if args.iterations and done >= args.iterations:
                break
            time.sleep(args.interval)
            live.update(render(source.read()), refresh=True)
    return 0
