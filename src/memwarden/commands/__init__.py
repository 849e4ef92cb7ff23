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
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from .._version import __version__
from ..exceptions import MemwardenError, ProgramNotFound, UsageError

EXIT_USAGE = 2
EXIT_LEAK = 3

_COMMANDS: dict[str, str] = {
    "run": "run a script or module and diagnose its memory",
    "snapshot": "read every memory layer of this interpreter once",
    "report": "summarise recorded runs (--db timelines), in the terminal or as an HTML report",
    "diagnose": "re-run the diagnosis on a recorded timeline",
    "baseline": "record a workload's memory figures in a JSON file, or compare a new run with them",
    "status": "show a running monitor's layers and verdict once (by pid or timeline file)",
    "top": "a live terminal view of a running monitor (by pid or timeline file)",
}
"""Each command's one-line help (its module's ``HELP``; a test keeps them equal). A command's
module is imported only when it runs, or for ``--help``: ``memwarden run`` must not pay for
``baseline`` and ``diagnose`` (a tenth of a second) before the program starts."""


def command_module(name: str) -> ModuleType:
    """The module of the command ``name`` (``memwarden.commands.<name>``), imported now."""
    return importlib.import_module(f"{__name__}.{name}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``only``, that command's options alone are read in (its
    module imported), the others are listed by name and help."""
    parser = _Parser(
        prog="memwarden",
        description="Find, explain and stop memory growth in long-running Python services.",
    )
    parser.add_argument("--version", action="version", version=f"memwarden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    for name, help_text in _COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = command_module(name)
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # the command is the first argument (the top level has only --help and --version)
    chosen = arguments[0] if arguments and arguments[0] in _COMMANDS else None
    parser = build_parser(only=chosen)
    try:
        if chosen == "run":
            arguments = command_module("run").module_args_verbatim(arguments)
        args = parser.parse_args(arguments)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(command_module(args.command).execute(args))
    except MemwardenError as exc:
        print(f"memwarden: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, ProgramNotFound) else EXIT_USAGE
    except KeyboardInterrupt as exc:
        run = sys.modules.get(f"{__name__}.run")
        if run is not None and run.passes_through(exc):
            raise  # the program's: the interpreter prints nothing more and ends by SIGINT, as python
        print("memwarden: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def console_main() -> NoReturn:
    """The ``memwarden`` console script."""
    sys.exit(main())
