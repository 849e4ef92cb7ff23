"""The command line: ``memwarden <command> ...`` (also ``python -m memwarden``).

One module per command, each with ``add_arguments(parser)`` and ``execute(args) -> int``; this module
is the only place where errors become a one-line message and an exit code:

- 0: success (for ``run``: the program's own exit status is passed through, death by a signal
  included; see docs/reference/cli.md);
- 1: ``run`` could not run the program where python exits 1 too (no such module, a folder without
  ``__main__.py``);
- 2: bad usage or bad input (a missing script, a corrupt or foreign timeline, a bad interval ...);
- 3: ``run --fail-on-leak`` found a leak.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from ..exceptions import MemwardenError, ProgramNotFound, UsageError
from . import baseline, diagnose, report, run, snapshot
from . import status as status_cmd
from . import top as top_cmd

EXIT_USAGE = 2
EXIT_LEAK = 3

_COMMANDS = {
    "run": run,
    "snapshot": snapshot,
    "report": report,
    "diagnose": diagnose,
    "baseline": baseline,
    "status": status_cmd,
    "top": top_cmd,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="memwarden",
        description="Find, explain and stop memory growth in long-running Python services.",
    )
    parser.add_argument("--version", action="version", version=f"memwarden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    for name, module in _COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(run.module_args_verbatim(list(sys.argv[1:] if argv is None else argv)))
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(_COMMANDS[args.command].execute(args))
    except MemwardenError as exc:
        print(f"memwarden: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, ProgramNotFound) else EXIT_USAGE
    except KeyboardInterrupt as exc:
        if run.passes_through(exc):
            raise  # the program's: the interpreter prints nothing more and ends by SIGINT, as python
        print("memwarden: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def console_main() -> NoReturn:
    """The ``memwarden`` console script."""
    sys.exit(main())
