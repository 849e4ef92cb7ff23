"""`memwarden run` and signals: SIGINT and SIGTERM end the process as under python, verdict written.

Python 3.11 on an uncaught KeyboardInterrupt prints the traceback, runs atexit handlers and then kills
itself with SIGINT (the shell sees death by SIGINT); on SIGTERM with no handler it dies on the spot (no
``finally``, no atexit). Under ``memwarden run`` both end the same way, and the verdict, the JSON, the
timeline and the summary are written first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._run_support import MEMWARDEN, before_summary, db_facts, read_verdict, summaries, write
from .conftest import _env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SLEEPER = """
import atexit, sys, time
atexit.register(lambda: print("atexit ran", file=sys.stderr, flush=True))
print("ready", flush=True)
try:
    time.sleep(30)
finally:
    print("finally ran", file=sys.stderr, flush=True)
"""

ALLOCATOR = """
import atexit, sys, time
atexit.register(lambda: print("atexit ran", file=sys.stderr, flush=True))
KEEP = []
t0 = time.monotonic()
try:
    while True:
        KEEP.append(bytearray(100_000))
        if len(KEEP) == 20:
            print("ready", flush=True)
        if time.monotonic() - t0 > 30:
            break
        time.sleep(0.005)
finally:
    print("finally ran", file=sys.stderr, flush=True)
"""


@contextlib.contextmanager
def _started(cmd: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """Start ``cmd`` in its own session and wait for the program's "ready" line; kill it at the end."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _signal_and_wait(
    proc: subprocess.Popen[str], signum: int, timeout: float = 30
) -> tuple[int, str, str, float]:
    """Send ``signum`` to the process (not its group, as a supervisor or ``kill`` does), then wait:
    the exit status, the rest of stdout, stderr and the seconds it took to end."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout} s after signal {signum}") from None
    return proc.returncode, out, err, time.monotonic() - sent


def _launchers() -> list[list[str]]:
    out = [MEMWARDEN]
    script = Path(sys.executable).parent / "memwarden"
    if script.exists() or shutil.which("memwarden"):
        out.append([str(script if script.exists() else shutil.which("memwarden"))])
    return out


@pytest.mark.parametrize(
    "launcher", _launchers(), ids=lambda cmd: "console-script" if len(cmd) == 1 else "dash-m"
)
def test_sigint_prints_the_traceback_runs_atexit_and_dies_by_sigint(
    launcher: list[str], tmp_path: Path
) -> None:
    """SIGINT (Ctrl-C) to a program in time.sleep: the same traceback, finally and atexit output as
    python, then death by SIGINT (-2); memwarden writes one summary, the JSON and the timeline."""
    write(tmp_path / "sleeper.py", SLEEPER)
    with _started([sys.executable, "sleeper.py"], tmp_path) as plain_proc:
        time.sleep(0.3)  # into time.sleep, so both tracebacks end at the same line
        plain_code, _, plain_err, _ = _signal_and_wait(plain_proc, signal.SIGINT)
    args = ["run", "--interval", "0.05", "--json", "v.json", "--db", "r.db", "sleeper.py"]
    with _started([*launcher, *args], tmp_path) as proc:
        time.sleep(0.3)
        code, _, err, _ = _signal_and_wait(proc, signal.SIGINT)
    assert plain_code == code == -signal.SIGINT, err
    assert "KeyboardInterrupt" in plain_err
    # the program's stderr (finally, then the traceback) is python's; atexit runs after the summary
    assert before_summary(err) == plain_err.replace("atexit ran\n", "")
    assert err.endswith("atexit ran\n"), err
    assert summaries(err) == 1, err
    assert "memwarden: interrupted" not in err
    read_verdict(tmp_path / "v.json")
    facts = db_facts(tmp_path / "r.db")
    assert facts["meta"]["exit_code"] == -signal.SIGINT
    assert facts["verdicts"] == 1


def test_sigterm_while_allocating_writes_the_verdict_and_dies_by_sigterm(tmp_path: Path) -> None:
    """SIGTERM to a program that is allocating: as under python it dies by SIGTERM at once (-15), its
    finally and atexit never run; memwarden first writes the verdict JSON, the timeline and one summary."""
    write(tmp_path / "alloc.py", ALLOCATOR)
    with _started([sys.executable, "alloc.py"], tmp_path) as plain_proc:
        plain_code, _, plain_err, _ = _signal_and_wait(plain_proc, signal.SIGTERM)
    assert plain_code == -signal.SIGTERM and plain_err == ""
    args = ["run", "--interval", "0.05", "--json", "v.json", "--db", "r.db", "alloc.py"]
    with _started([*MEMWARDEN, *args], tmp_path) as proc:
        time.sleep(2.5)  # past the 2 s a verdict needs, so it can say the program grew
        code, _, err, took = _signal_and_wait(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM, err
    assert "finally ran" not in err and "atexit ran" not in err
    assert summaries(err) == 1, err
    assert before_summary(err) == ""
    assert took < 10, took
    verdict = read_verdict(tmp_path / "v.json")
    assert verdict["samples"] >= 5, verdict
    assert verdict["verdict"] != "inconclusive" and verdict["duration_s"] >= 2, verdict
    assert (verdict["growth_bytes_per_s"]["rss"] or 0) > 1e6, verdict  # it allocates ~20 MB/s
    facts = db_facts(tmp_path / "r.db")
    assert facts["meta"]["exit_code"] == -signal.SIGTERM
    assert facts["verdicts"] == 1 and facts["samples"] >= 5


def test_a_program_s_own_sigterm_handler_is_used(tmp_path: Path) -> None:
    """A program that handles SIGTERM itself (a graceful shutdown) keeps that behaviour: its handler
    runs, it exits with its own code, and memwarden ends the run normally with one summary."""
    write(
        tmp_path / "graceful.py",
        """
        import signal, sys, time
        def stop(signum, frame):
            print("graceful stop", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    with _started([sys.executable, "graceful.py"], tmp_path) as plain_proc:
        plain_code, _, _, _ = _signal_and_wait(plain_proc, signal.SIGTERM)
    with _started(
        [*MEMWARDEN, "run", "--interval", "0.05", "--json", "v.json", "graceful.py"], tmp_path
    ) as proc:
        code, out, err, _ = _signal_and_wait(proc, signal.SIGTERM)
    assert plain_code == code == 7, err
    assert out == "graceful stop\n"
    assert summaries(err) == 1, err
    read_verdict(tmp_path / "v.json")


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    """SIGTERM ignored by whoever started memwarden (inherited SIG_IGN) stays ignored, as under python:
    the program runs on to its normal end."""
    write(
        tmp_path / "brief.py",
        """
        import time
        print("ready", flush=True)
        time.sleep(1.0)
        print("done", flush=True)
        """,
    )
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited across exec by the child
    try:
        with _started([*MEMWARDEN, "run", "--interval", "0.05", "brief.py"], tmp_path) as proc:
            time.sleep(0.2)
            code, out, err, _ = _signal_and_wait(proc, signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 0, err
    assert out == "done\n"
    assert summaries(err) == 1
