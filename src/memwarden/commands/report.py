"""``memwarden report DB...``: the summary of a recorded run, in the terminal or as an HTML report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .._format import format_bytes
from .._monitor import diagnose
from ..diagnosis import Evidence, classify, layer_figures
from ..diagnosis._evidence import EVENT_VERDICT
from ..diagnosis._verdict import Verdict
from ..exceptions import UsageError
from ..timeline import Event, Sample, Timeline

HELP = "summarise recorded runs (--db timelines), in the terminal or as an HTML report"
DESCRIPTION = (
    "Print what a recorded run did: the command, each layer's first/last/peak figures and the verdict. "
    "With --html, write one self-contained HTML file instead: every layer's timeline as charts, the "
    "verdict and its evidence, the growing sites, holders, caches and guard actions. Give several "
    "timelines (one per worker, e.g. app-*.db) to see them side by side in one report."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "db", metavar="DB", nargs="+", help="timeline files written by `memwarden run --db` or a Monitor"
    )
    p.add_argument("--json", action="store_true", help="print the verdict as JSON instead (one DB)")
    p.add_argument(
        "--html",
        metavar="PATH",
        help="write a self-contained HTML report to PATH (charts, verdict, sites, holders, actions)",
    )


def stored_or_new_verdict(timeline: Timeline) -> Verdict:
    """The verdict recorded at the end of the run, or a fresh one if the run died before it."""
    stored = timeline.events(EVENT_VERDICT)
    if stored:
        try:
            return Verdict.from_json(dict(stored[-1].data))
        except (KeyError, TypeError, ValueError):
            pass
    return diagnose(timeline)


def verdict_of(samples: list[Sample], events: list[Event]) -> Verdict:
    """:func:`stored_or_new_verdict` on samples and events already read (a long timeline is read once)."""
    stored = [e for e in events if e.kind == EVENT_VERDICT]
    if stored:
        try:
            return Verdict.from_json(dict(stored[-1].data))
        except (KeyError, TypeError, ValueError):
            pass
    return classify(samples, Evidence.from_events([e for e in events if e.kind != EVENT_VERDICT]))


def check_html_path(path: str, what: str = "--html") -> None:
    """A one-line usage error before any work when the report could not be written there."""
    target = Path(path)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise UsageError(
            f"{what} {path}: the folder {parent} does not exist (create it or pick another path)"
        )
    if target.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file path such as report.html")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: cannot write in {parent} (check its permissions)")


def execute(args: argparse.Namespace) -> int:
    paths: list[str] = list(args.db)
    if args.html:
        if args.json:
            raise UsageError("give --json or --html, not both")
        return _write_html(paths, args.html)
    if args.json and len(paths) > 1:
        raise UsageError("--json prints one verdict: give one DB (or use --html for several)")
    for i, path in enumerate(paths):
        with Timeline.open_existing(path) as timeline:
            verdict = stored_or_new_verdict(timeline)
            if args.json:
                json.dump(verdict.to_json(), sys.stdout, indent=2)
                sys.stdout.write("\n")
                return 0
            from ..reporters.terminal import render_run

            if len(paths) > 1:
                sys.stdout.write(("\n" if i else "") + f"== {path}\n")
            render_run(timeline.meta(), layer_figures(timeline.samples()), verdict, sys.stdout)
    return 0


def _write_html(paths: list[str], out: str) -> int:
    from ..reporters.html import RecordedRun, report_progress, write_report

    check_html_path(out)
    if len(set(paths)) != len(paths):
        raise UsageError("the same timeline is given twice")
    labels = _labels(paths)
    runs = []
    # steps: read each timeline, decide each verdict, chart each, write the file
    with report_progress(3 * len(paths) + 1) as progress:
        for path, label in zip(paths, labels):
            with Timeline.open_existing(path) as timeline:
                meta, samples, events = timeline.meta(), timeline.samples(), timeline.events()
            progress.advance(f"reading {label}")
            verdict = verdict_of(samples, events)
            progress.advance(f"verdict of {label}")
            runs.append(RecordedRun(label, path, meta, samples, events, verdict))
        size = write_report(runs, out, progress=progress)
    workers = f", {len(runs)} timelines" if len(runs) > 1 else ""
    print(f"memwarden: wrote {out} ({format_bytes(size)}{workers})", file=sys.stderr)
    return 0


def _labels(paths: list[str]) -> list[str]:
    """Each timeline's name in the report: its file name without .db, or its path when names repeat."""
    names = [Path(p).name.removesuffix(".db") for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p)) for p in paths]
