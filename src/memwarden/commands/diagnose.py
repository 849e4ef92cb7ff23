"""``memwarden diagnose DB``: decide again, from a recorded timeline."""

from __future__ import annotations

import argparse
import json
import sys

from .._monitor import diagnose
from ..timeline import Timeline
from .run import _check_output_path, _write_json

HELP = "re-run the diagnosis on a recorded timeline"
DESCRIPTION = (
    "Re-run memwarden's decision on a recorded run (samples and the evidence stored with them), e.g. after "
    "upgrading memwarden, and print the verdict."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="a timeline file written by `memwarden run --db`")
    p.add_argument("--json", metavar="PATH", help="write the verdict JSON to PATH ('-' for stdout)")
    p.add_argument("--fail-on-leak", action="store_true", help="exit with code 3 when the verdict is a leak")


def execute(args: argparse.Namespace) -> int:
    if args.json and args.json != "-":
        _check_output_path(args.json, "--json")
    with Timeline.open_existing(args.db) as timeline:
        verdict = diagnose(timeline)
    if args.json == "-":
        json.dump(verdict.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if args.json:
            _write_json(args.json, verdict)
        from ..reporters.terminal import render_verdict

        render_verdict(verdict, sys.stdout)
    return 3 if args.fail_on_leak and verdict.leak else 0
