"""``memwarden run``: run a program as ``python`` would, sample every layer, and say what memory did."""

from __future__ import annotations

import argparse
import builtins
import contextlib
import functools
import importlib.machinery
import io
import json
import os
import platform
import runpy
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .._monitor import Monitor
from ..attribution._investigator import InvestigatorConfig
from ..diagnosis._verdict import Verdict
from ..exceptions import ProgramNotFound, TimelineError, UsageError
from ..sampler import validate_interval
from ..timeline import SCHEMA, Timeline

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
        "--db",
        metavar="PATH",
        help="record the timeline in this SQLite file (kept after the run; one file holds one run)",
    )
    p.add_argument(
        "--db-overwrite",
        action="store_true",
        help="replace the run already recorded in the --db file (without it such a file is refused)",
    )
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        default="auto",
        help=(
            "seconds between samples; the default, auto, samples every 0.2 s at first and slows "
            "evenly to every 1 s over the first 30 s (a fixed number: that cadence throughout)"
        ),
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


def module_args_verbatim(argv: list[str]) -> list[str]:
    """``memwarden run [options] -m MODULE ARGS``: every ARG is the module's, as under ``python -m``.

    argparse would otherwise read the module's own options (``-m pytest -q``) as memwarden's. A
    ``--`` is put right after the module name, so what follows reaches it verbatim (a ``--`` of the
    user's own included, as python passes it). Scripts need nothing: their arguments already are the
    remainder once the script's name is seen. A ``--`` right after the module name is kept as
    memwarden's separator (``memwarden run -m app -- --port 1``, as earlier releases needed) and
    dropped; that is the one difference from python.
    """
    if not argv or argv[0] != "run":
        return argv
    probe = argparse.ArgumentParser(add_help=False)
    add_arguments(probe)
    takes_value = {o for act in probe._actions if act.nargs is None for o in act.option_strings}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-"):
            return argv  # the script (or an explicit end of memwarden's options): nothing to do
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            end = i + 2 if arg == "-m" else i + 1  # -m MODULE, or -mMODULE
            if end > len(argv) or argv[end : end + 1] == ["--"]:
                return argv
            return [*argv[:end], "--", *argv[end:]]
        i += 2 if arg in takes_value else 1
    return argv


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
            # python: "No module named x", exit 1
            raise ProgramNotFound(
                f"cannot run module {name!r}: {exc} (check the name and that it is installed)", exit_code=1
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
        _check_has_main(script)
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


def _check_has_main(script: str) -> None:
    """A folder or zip archive runs its ``__main__`` module; without one python exits 1, so do we."""
    import pkgutil

    importer = pkgutil.get_importer(script)
    if importer is None or not hasattr(importer, "find_spec"):
        return  # not a folder or archive after all: python (runpy) runs the file as a script
    try:
        spec = importer.find_spec("__main__")
    except Exception:  # an unreadable archive: let runpy report it as python would
        return
    if spec is None:
        kind = "folder" if os.path.isdir(script) else "archive"
        raise ProgramNotFound(
            f"can't find '__main__' module in {script!r} (a {kind} is run through its __main__.py; "
            "give a script in it, or add one)",
            exit_code=1,
        )


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
    """Print the traceback as python would: through ``sys.excepthook`` (the program may have set its
    own), starting at the program's own frames, not memwarden's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    exc = exc.with_traceback(tb)
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:
        traceback.print_exception(type(exc), exc, tb)


_INTERRUPTED = -signal.SIGINT
"""The exit status of a program that ended with an uncaught ``KeyboardInterrupt`` (death by SIGINT)."""


def _program_exit(exc: BaseException) -> int:
    """What python prints when ``exc`` ends the program, printed; and the exit status it then gives.

    ``SystemExit``: its code (a message is printed, exit 1); ``KeyboardInterrupt``: the traceback, then
    death by SIGINT (:data:`_INTERRUPTED`); any other exception: the traceback, exit 1.
    """
    if isinstance(exc, SystemExit):
        return _exit_code(exc)
    _print_program_traceback(exc)
    return _INTERRUPTED if isinstance(exc, KeyboardInterrupt) else 1


_PASS_THROUGH = "_memwarden_program_interrupt"


def passes_through(exc: BaseException) -> bool:
    """Whether ``exc`` is the program's ``KeyboardInterrupt`` that must reach the interpreter's top level."""
    return getattr(exc, _PASS_THROUGH, False) is True


def _end_interrupted() -> NoReturn:
    """End as python ends after an uncaught ``KeyboardInterrupt`` (its traceback already printed).

    Python 3.11, seeing a ``KeyboardInterrupt`` reach the top level, prints it, finalises the
    interpreter (``atexit`` handlers run, streams are flushed) and then kills itself with SIGINT, so
    that a shell or supervisor sees death by SIGINT (bpo-1054041). To get exactly that, a bare
    ``KeyboardInterrupt`` goes up to the interpreter (``commands.main`` lets it pass), and
    ``sys.excepthook`` skips printing that one exception, whose traceback was printed already.
    """
    interrupt = KeyboardInterrupt()
    setattr(interrupt, _PASS_THROUGH, True)
    previous = sys.excepthook

    def excepthook(tp: type[BaseException], value: BaseException, tb: types.TracebackType | None) -> None:
        sys.excepthook = previous
        if value is not interrupt:
            previous(tp, value, tb)

    sys.excepthook = excepthook
    raise interrupt


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _die_by_signal(signum: int) -> NoReturn:
    """End this process by ``signum``'s default action, so the parent sees death by that signal."""
    _flush_streams()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # only if the signal did not end the process (it is blocked here)


_SIGTERM_FINISH_S = 5.0
"""How long a SIGTERM waits for the verdict, the JSON and the summary before the process ends anyway."""


class _SigtermFinish:
    """While the program runs, SIGTERM still ends it at once, but with the verdict written first.

    Python's default action for SIGTERM ends the process on the spot: no ``finally``, no ``atexit``;
    so a supervisor stopping a service run under ``memwarden run`` would get no verdict. This handler,
    installed only while the program runs, only where SIGTERM has its default action (not ignored,
    not handled by whoever started memwarden) and removed afterwards unless the program replaced it
    (then the program's own handler is in charge, as under python), does this:

    1. it puts the default action back, so a second SIGTERM ends the process at once, and ignores
       SIGINT (nothing may unwind the program from here on);
    2. in the process that started the run, it finishes the run in a helper thread (stops the
       monitor, records the exit status, writes the JSON and the summary) and waits for that at most
       :data:`_SIGTERM_FINISH_S`;
    3. it sends itself SIGTERM, which now ends the process by the signal, as under python.

    A child the program forks gets SIGTERM's default action back at once (an ``os.register_at_fork``
    hook): a Python-level handler only runs when the main thread next executes bytecode, so a child
    blocked in a call that a just-missed signal no longer interrupts (a multiprocessing worker waiting
    on its queue's lock) would never die, where under python the kernel ends it on the spot. Should
    the handler still run in a child (a signal between the fork and the hook), it finishes nothing
    and ends the child by the signal.

    The program's code never runs again once the handler starts, as with the default action; in
    particular it is not unwound (raising from the handler would run its ``finally`` blocks and could
    be swallowed by an ``except BaseException``, so the service might never stop). The finishing runs
    in another thread with a time limit because the handler interrupts the main thread at an
    arbitrary point: if that point holds a lock the finishing needs, the limit turns a deadlock into
    a process that ends without a verdict, as it would have ended under python.
    """

    def __init__(self, owner_pid: int, finish: Callable[[int], object]) -> None:
        self._owner_pid = owner_pid
        self._finish = finish
        self._handler = self._on_sigterm  # one object, so getsignal() can tell it is ours
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        _register_fork_hook()
        signal.signal(signal.SIGTERM, self._handler)
        self._installed = True

    def restore(self) -> None:
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = False
        if signal.getsignal(signal.SIGTERM) is self._handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() == self._owner_pid:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            worker = threading.Thread(
                target=self._finish, args=(-signum,), name="memwarden-sigterm", daemon=True
            )
            worker.start()
            worker.join(_SIGTERM_FINISH_S)
        _die_by_signal(signum)


@functools.cache
def _register_fork_hook() -> None:
    """Register :func:`_default_sigterm_in_child` once per process (a hook cannot be removed)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_default_sigterm_in_child)


def _default_sigterm_in_child() -> None:
    """In a freshly forked child: SIGTERM's default action again, if memwarden's handler was set."""
    with contextlib.suppress(Exception):
        if isinstance(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), _SigtermFinish):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _RunOutputs:
    """The end of a run in the process that started it: verdict, exit status, JSON, summary; once."""

    def __init__(
        self,
        args: argparse.Namespace,
        monitor: Monitor,
        timeline: Timeline,
        scratch: str | None,
        render: Callable[[Verdict], None],
    ) -> None:
        self._args = args
        self._monitor = monitor
        self._timeline = timeline
        self._scratch = scratch
        self._render = render
        self._lock = threading.Lock()
        self.verdict: Verdict | None = None

    def finish(self, code: int) -> Verdict | None:
        """Stop the monitor, record ``code`` and write the outputs (the first call only)."""
        if not self._lock.acquire(blocking=False):
            return self.verdict  # already finishing (a SIGTERM during the normal end)
        _flush_streams()
        try:
            verdict = self.verdict = self._monitor.stop()
            self._timeline.set_meta(exit_code=code)
            if self._args.report:  # before the (scratch) timeline is closed and deleted
                _write_report(self._timeline, verdict, self._args.report, quiet=self._args.quiet)
        finally:
            self._timeline.close()
            if self._scratch is not None:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(self._scratch + suffix)
        if self._args.json:
            _write_json(self._args.json, verdict)
        if not self._args.quiet:
            self._render(verdict)
        _flush_streams()
        return verdict


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


def _prepare_db(path: str, *, overwrite: bool) -> None:
    """Refuse a ``--db`` file memwarden must not write into; with ``overwrite``, remove a previous run.

    One file holds one run. A file that is not SQLite or is corrupt is left to :class:`Timeline`,
    which refuses it without writing. An SQLite database of another program (tables, but no
    memwarden schema) is refused, even with ``overwrite``, and nothing in it is touched (it is read
    through a read-only connection). A timeline that already holds a run is refused unless
    ``overwrite``, which deletes it (and its ``-wal``/``-shm`` files) so the new run starts afresh.
    A file created but never used (no samples, no command) and an SQLite file with no tables are
    fresh timelines.
    """
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return
    with p.open("rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            return
    # No -wal file: the main file holds everything, and immutable=1 reads it without locking it or
    # creating -wal/-shm files beside it. A -wal file (a run killed, or one still writing) must be read
    # too: mode=ro does, through a -shm file it may create.
    mode = "mode=ro" if os.path.exists(path + "-wal") else "immutable=1"
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?{mode}", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            tables.discard("sqlite_sequence")
            meta: dict[str, str] = {}
            if "meta" in tables:
                meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            samples = 0
            if "samples" in tables:
                samples = int(conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return
    if not tables:
        return  # an empty SQLite file: a new timeline
    schema = _json_or_text(meta.get("schema"))
    if schema is None:
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TimelineError(
            path,
            f"is an SQLite database of another program (tables: {names}), not a memwarden timeline; "
            "memwarden will not write into it: give a new --db path",
        )
    if schema != SCHEMA:
        raise TimelineError(
            path, f"was written with timeline schema {schema!r}; this memwarden writes {SCHEMA!r}"
        )
    if samples == 0 and "command" not in meta:
        return  # a timeline created but never used
    if not overwrite:
        command = _json_or_text(meta.get("command"))
        started = _json_or_text(meta.get("started"))
        what = " ".join(command) if isinstance(command, list) else "a run"
        when = f", started {started}" if isinstance(started, str) else ""
        raise UsageError(
            f"--db {path} already holds a run ({what}{when}, {samples} samples); one file holds one "
            "run: give a new path, or add --db-overwrite to replace it"
        )
    for suffix in ("-wal", "-shm", ""):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _json_or_text(value: str | None) -> object:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def execute(args: argparse.Namespace) -> int:
    ramp_from: float | None = None
    if args.interval == "auto":
        interval, ramp_from = 1.0, 0.2
    else:
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
        _prepare_db(args.db, overwrite=args.db_overwrite)
        db_path = args.db
    else:
        # the diagnosis reads the whole run, not just the in-memory ring: keep it in a scratch file
        fd, scratch = tempfile.mkstemp(prefix="memwarden-", suffix=".db")
        os.close(fd)
        db_path = scratch
    timeline = Timeline(db_path)
    owner_pid = os.getpid()
    timeline.set_meta(
        command=["memwarden", "run", *program.display],
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=platform.platform(),
        pid=owner_pid,
        interval=interval,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    monitor = Monitor(
        interval=interval,
        ramp_from=ramp_from,
        db=timeline,
        investigate=not args.no_trace,
        investigator=InvestigatorConfig(window_s=window),
        on_fork="stop",  # a forked child of the program runs no monitor: it behaves as under python
    )
    # loaded now, so that finishing after a SIGTERM imports nothing while the program is stopped
    # (not with --quiet, which prints no summary: the terminal reporter pulls in rich)
    render_verdict = None if args.quiet else _terminal_renderer()

    def render(verdict: Verdict) -> None:
        if render_verdict is not None:
            render_verdict(verdict, sys.stderr, color=None if sys.stderr.isatty() else False)

    outputs = _RunOutputs(args, monitor, timeline, scratch, render)
    sigterm = _SigtermFinish(owner_pid, outputs.finish)
    saved_argv, saved_path0 = list(sys.argv), sys.path[0]
    code = 0
    monitor.start()
    sigterm.install()
    try:
        run_program()
    except BaseException as exc:
        code = _program_exit(exc)
    finally:
        sigterm.restore()
    if os.getpid() != owner_pid:
        # A child the program forked (os.fork, multiprocessing's fork) left the program's code by an
        # exception or by returning. The monitor, the timeline and the output files are the parent's:
        # touch none of them (no stop, no summary, no JSON, no DB write, no scratch unlink) and end as
        # python would, through the normal interpreter exit, so the child's atexit handlers run.
        _keep_inherited.append((monitor, timeline))
        if code == _INTERRUPTED:
            _end_interrupted()
        return code
    verdict = outputs.finish(code)
    sys.argv = saved_argv
    sys.path[0] = saved_path0
    # leave the program's __main__ in sys.modules: atexit handlers and threads still use it
    if code == _INTERRUPTED:
        _end_interrupted()
    if code == 0 and args.fail_on_leak and verdict is not None and verdict.leak:
        return 3
    return code


def _terminal_renderer() -> Callable[..., None]:
    from ..reporters.terminal import render_verdict

    return render_verdict


_keep_inherited: list[object] = []
"""A forked child's copies of the parent's monitor and timeline, kept referenced (never closed) so the
child does not close the parent's SQLite connection before its interpreter exits."""


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
