"""``memwarden report DB``: the summary of a recorded run."""

from __future__ import annotations

import argparse
import json
import sys

from .._monitor import diagnose
from ..diagnosis import layer_figures
from ..diagnosis._evidence import EVENT_VERDICT
from ..diagnosis._verdict import Verdict
from ..timeline import Timeline

HELP = "summarise a recorded run (a --db timeline)"
DESCRIPTION = (
    "Print what a recorded run did: the command, each layer's first/last/peak figures and the verdict."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="a timeline file written by `memwarden run --db`")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON instead")


def stored_or_new_verdict(timeline: Timeline) -> Verdict:
    """The verdict recorded at the end of the run, or a fresh one if the run died before it."""
    stored = timeline.events(EVENT_VERDICT)
    if stored:
        try:
            return Verdict.from_json(dict(stored[-1].data))
        except (KeyError, TypeError, ValueError):
            pass
    return diagnose(timeline)


def execute(args: argparse.Namespace) -> int:
    with Timeline.open_existing(args.db) as timeline:
        verdict = stored_or_new_verdict(timeline)
        if args.json:
            json.dump(verdict.to_json(), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        from ..reporters.terminal import render_run

        render_run(timeline.meta(), layer_figures(timeline.samples()), verdict, sys.stdout)
    return 0
