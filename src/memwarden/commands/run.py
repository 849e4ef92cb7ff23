"""``memwarden run``: run a program as ``python`` would, sample every layer, and say what memory did."""

from __future__ import annotations

import argparse
import builtins
import contextlib
import importlib.machinery
import io
import json
import os
import platform
import runpy
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._monitor import Monitor
from ..attribution._investigator import InvestigatorConfig
from ..diagnosis._verdict import Verdict
from ..exceptions import ProgramNotFound, UsageError
from ..sampler import validate_interval
from ..timeline import Timeline

HELP = "run a script or module and diagnose its memory"
DESCRIPTION = (
    "Run a Python program in this process exactly as `python` would (same sys.argv, __main__ and exit "
    "code), sample every memory layer while it runs, and print what memory did: a verdict (leak, "
    "retention, plateau, stable), the evidence, the growing sites and who holds them."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", help="write the verdict (schema memwarden.verdict/1) to PATH")
    p.add_argument(
        "--report", metavar="PATH", help="write a self-contained HTML report (charts, verdict) to PATH"
    )
    p.add_argument(
        "--db", metavar="PATH", help="record the timeline in this SQLite file (kept after the run)"
    )
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        default="1",
        help="seconds between samples (default 1; production: 10)",
    )
    p.add_argument(
        "--fail-on-leak", action="store_true", help="exit with code 3 when the verdict is a leak (for CI)"
    )
    p.add_argument(
        "--no-trace",
        action="store_true",
        help="never open tracemalloc windows (no attribution, lowest overhead)",
    )
    p.add_argument(
        "--window",
        metavar="SECONDS",
        default="4",
        help="length of a tracemalloc window when growth is suspected",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print no summary (the JSON and DB are still written)"
    )
    p.add_argument(
        "-m", dest="module", metavar="MODULE", help="run a library module as a script, like python -m"
    )
    p.add_argument(
        "program", nargs=argparse.REMAINDER, help="script.py [args...] (or, with -m, the module's args)"
    )


@dataclass(frozen=True)
class Program:
    """What to run: a script path or a module name, and its arguments."""

    argv: list[str]
    module: str | None = None

    @property
    def display(self) -> list[str]:
        return (["-m", self.module] if self.module else []) + self.argv


def _resolve(args: argparse.Namespace) -> tuple[Program, Callable[[], None]]:
    """Check the program exists and build the function that runs it (no side effects yet)."""
    rest = list(args.program or [])
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.module:
        name = args.module
        try:
            mod_name, spec, code = runpy._get_module_details(name)  # type: ignore[attr-defined]
        except ImportError as exc:
            raise ProgramNotFound(
                f"cannot run module {name!r}: {exc} (check the name and that it is installed)"
            ) from None
        origin = spec.origin or name
        return Program([origin, *rest], module=name), lambda: _exec_module(
            mod_name, spec, code, [origin, *rest]
        )
    if not rest:
        raise UsageError(
            "give a script to run (memwarden run script.py [args]) or a module (memwarden run -m module)"
        )
    script = rest[0]
    path = Path(script)
    if not path.exists():
        raise ProgramNotFound(f"no such script: {script} (check the path)")
    if path.is_dir() or script.endswith((".zip", ".pyz")):
        return Program(rest), lambda: _exec_path(script, rest)
    if not os.access(path, os.R_OK):
        raise ProgramNotFound(f"cannot read the script {script} (check its permissions)")
    try:
        with io.open_code(str(path)) as fh:
            source = fh.read()
        code = compile(source, os.path.abspath(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        # python prints the SyntaxError and exits 1: do the same, before sampling anything
        raise _ProgramSyntaxError(exc) from None
    return Program(rest), lambda: _exec_script(os.path.abspath(path), code, rest)


class _ProgramSyntaxError(Exception):
    def __init__(self, exc: SyntaxError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _new_main(file: str | None) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if file is not None:
        main.__file__ = file
    main.__cached__ = None  # type: ignore[attr-defined]
    return main


def _exec_script(path: str, code: types.CodeType, argv: list[str]) -> None:
    main = _new_main(path)
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__spec__ = None
    main.__package__ = None
    sys.modules["__main__"] = main
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.realpath(path))  # python resolves symlinks here, not in __file__
    exec(code, main.__dict__)


def _exec_module(
    mod_name: str, spec: importlib.machinery.ModuleSpec, code: types.CodeType, argv: list[str]
) -> None:
    main = _new_main(spec.origin)
    main.__loader__ = spec.loader
    main.__spec__ = spec
    main.__package__ = spec.parent
    sys.modules["__main__"] = main
    sys.argv = list(argv)
    sys.path[0] = os.getcwd()
    exec(code, main.__dict__)


def _exec_path(path: str, argv: list[str]) -> None:
    sys.argv = list(argv)
    runpy.run_path(path, run_name="__main__")


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    print(code, file=sys.stderr)
    return 1


def _print_program_traceback(exc: BaseException) -> None:
    """Print the traceback as python would: starting at the program's own frames, not memwarden's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _check_output_path(path: str, what: str) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(
            f"{what} {path}: the folder {parent} does not exist (create it or pick another path)"
        )
    if Path(path).is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file path")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: cannot write in {parent} (check its permissions)")


def execute(args: argparse.Namespace) -> int:
    interval = validate_interval(args.interval, "--interval")
    window = validate_interval(args.window, "--window")
    if args.json:
        _check_output_path(args.json, "--json")
    if args.report:
        _check_output_path(args.report, "--report")
    try:
        program, run_program = _resolve(args)
    except _ProgramSyntaxError as err:
        traceback.print_exception(type(err.exc), err.exc, None)
        return 1
    scratch: str | None = None
    if args.db:
        _check_output_path(args.db, "--db")
        db_path = args.db
    else:
        # the diagnosis reads the whole run, not just the in-memory ring: keep it in a scratch file
        fd, scratch = tempfile.mkstemp(prefix="memwarden-", suffix=".db")
        os.close(fd)
        db_path = scratch
    timeline = Timeline(db_path)
    timeline.set_meta(
        command=["memwarden", "run", *program.display],
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=platform.platform(),
        pid=os.getpid(),
        interval=interval,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    monitor = Monitor(
        interval=interval,
        db=timeline,
        investigate=not args.no_trace,
        investigator=InvestigatorConfig(window_s=window),
    )
    saved_argv, saved_path0, saved_main = list(sys.argv), sys.path[0], sys.modules["__main__"]
    code = 0
    monitor.start()
    try:
        run_program()
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt as exc:
        _print_program_traceback(exc)
        code = 130
    except BaseException as exc:
        _print_program_traceback(exc)
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        verdict = monitor.stop()
        timeline.set_meta(exit_code=code)
        if args.report:
            _write_report(timeline, verdict, args.report, quiet=args.quiet)
        timeline.close()
        if scratch is not None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(scratch + suffix)
        sys.argv = saved_argv
        sys.path[0] = saved_path0
        # leave the program's __main__ in sys.modules: atexit handlers and threads still use it
        del saved_main
    if args.json:
        _write_json(args.json, verdict)
    if not args.quiet:
        from ..reporters.terminal import render_verdict

        render_verdict(verdict, sys.stderr, color=None if sys.stderr.isatty() else False)
    if code == 0 and args.fail_on_leak and verdict.leak:
        return 3
    return code


def _write_json(path: str, verdict: Verdict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(verdict.to_json(), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _write_report(timeline: Timeline, verdict: Verdict, path: str, *, quiet: bool) -> None:
    """The HTML report, from the timeline before it is closed (a scratch one is deleted after)."""
    from .._format import format_bytes
    from ..reporters.html import write_run_report

    try:
        size = write_run_report(timeline, verdict, path)
    except Exception as exc:  # the program has run: its exit code and verdict still come out
        print(f"memwarden: could not write the report {path}: {exc}", file=sys.stderr)
        return
    if not quiet:
        print(f"memwarden: wrote {path} ({format_bytes(size)})", file=sys.stderr)
