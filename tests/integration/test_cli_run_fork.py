"""`memwarden run` of programs that fork: the children end as under python, the parent's run is intact.

A forked child is a copy of the whole process, memwarden's monitor and output paths included; it must
end exactly as under python (its exit code, its traceback, its atexit handlers) and leave the parent's
verdict, JSON, timeline and summary alone. Every run here is guarded by a timeout that kills the whole
process group, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ._run_support import MEMWARDEN, before_summary, db_facts, read_verdict, run_guarded, summaries, write

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only")

FORKER = """
import atexit, os, sys

kind = sys.argv[1]


def child():
    atexit.register(lambda: print("atexit of the child", flush=True))
    if kind == "exit":
        sys.exit(3)
    if kind == "_exit":
        os._exit(4)
    if kind == "raise":
        raise ValueError("raised in the child")
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "grandchild":
        pid = os.fork()
        if pid == 0:
            sys.exit(6)
        _, status = os.waitpid(pid, 0)
        print("grandchild ended with", os.waitstatus_to_exitcode(status), flush=True)
        sys.exit(5)
    # "return": the child falls off the end of the script


pid = os.fork()
if pid == 0:
    child()
else:
    _, status = os.waitpid(pid, 0)
    print("child ended with", os.waitstatus_to_exitcode(status), flush=True)
    with open("parent.pid", "w") as fh:
        fh.write(str(os.getpid()))
    sys.exit(9)
"""

KINDS = ["exit", "_exit", "raise", "grandchild", "return"]
REPEATS = 10  # 5 kinds x 10 = 50 runs: a hang that shows one time in many still shows here


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(REPEATS))
@pytest.mark.parametrize("kind", KINDS)
def test_forked_children_end_as_under_python_and_the_parent_run_is_intact(
    kind: str, repeat: int, tmp_path: Path
) -> None:
    """A child that sys.exit()s, os._exit()s, raises, forks a grandchild or returns: no hang, the
    same exit codes and output as under python, one summary, the parent's JSON and timeline only."""
    write(tmp_path / "forker.py", FORKER)
    plain = run_guarded([sys.executable, "forker.py", kind], tmp_path)  # same folder: same paths
    cmd = [*MEMWARDEN, "run", "--interval", "0.05", "--json", "v.json", "--db", "r.db", "forker.py", kind]
    mw = run_guarded(cmd, tmp_path, timeout=60)

    assert mw.returncode == plain.returncode == 9, mw.stderr
    assert mw.stdout == plain.stdout, (mw.stdout, plain.stdout)
    assert summaries(mw.stderr) == 1, mw.stderr
    # the program's own stderr (the child's traceback for "raise") is python's, byte for byte
    assert before_summary(mw.stderr) == plain.stderr
    if kind == "raise":
        assert "ValueError: raised in the child" in plain.stderr
    verdict = read_verdict(tmp_path / "v.json")
    assert verdict["samples"] >= 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v.json")) == ["v.json"]
    facts = db_facts(tmp_path / "r.db")
    assert facts["meta"]["pid"] == int((tmp_path / "parent.pid").read_text())
    assert facts["meta"]["exit_code"] == 9
    assert facts["verdicts"] == 1


def test_each_child_s_status_and_atexit_are_python_s(tmp_path: Path) -> None:
    """The child's status as the parent sees it, and whether its atexit handlers ran, are python's:
    3 for sys.exit(3), 4 for os._exit(4) (no atexit), 1 after a traceback for a raise, death by SIGINT
    (-2, after atexit) for an uncaught KeyboardInterrupt, 0 for a child that returns."""
    write(tmp_path / "forker.py", FORKER)
    expected = {"exit": 3, "_exit": 4, "raise": 1, "interrupt": -2, "return": 0, "grandchild": 5}
    for kind, status in expected.items():
        plain = run_guarded([sys.executable, "forker.py", kind], tmp_path)
        mw = run_guarded([*MEMWARDEN, "run", "-q", "--interval", "0.05", "forker.py", kind], tmp_path)
        assert f"child ended with {status}\n" in plain.stdout, (kind, plain.stdout, plain.stderr)
        assert mw.stdout == plain.stdout, (kind, mw.stdout, mw.stderr)
        assert mw.stderr == plain.stderr, kind  # --quiet: only the child's own traceback, if any
        assert ("atexit of the child" in mw.stdout) == (kind != "_exit")
    assert "grandchild ended with 6" in mw.stdout


MULTIPROCESSING = """
import multiprocessing as mp
import subprocess
import sys


def work(n):
    if n == 1:
        sys.exit(3)
    if n == 2:
        raise ValueError("in the worker")


def square(x):
    return x * x


if __name__ == "__main__":
    ctx = mp.get_context("fork")
    for n in (0, 1, 2):
        p = ctx.Process(target=work, args=(n,))
        p.start()
        p.join()
        print("process exitcode", p.exitcode, flush=True)
    with ctx.Pool(2) as pool:
        print("pool", pool.map(square, range(6)), flush=True)
    done = subprocess.run([sys.executable, "-c", "import sys; print('sub'); sys.exit(6)"], capture_output=True)
    print("subprocess", done.returncode, done.stdout.decode().strip(), flush=True)
"""


def test_multiprocessing_fork_and_subprocess_behave_as_under_python(tmp_path: Path) -> None:
    """multiprocessing (fork start method: Process exit codes, a Pool, which SIGTERMs its workers at
    the end) and subprocess give the same output and exit code as under python, and one summary."""
    write(tmp_path / "mp.py", MULTIPROCESSING)
    plain = run_guarded([sys.executable, "mp.py"], tmp_path)
    mw = run_guarded([*MEMWARDEN, "run", "--interval", "0.05", "--json", "v.json", "mp.py"], tmp_path)
    assert plain.returncode == mw.returncode == 0, mw.stderr
    assert mw.stdout == plain.stdout
    assert "process exitcode 3" in mw.stdout and "process exitcode 1" in mw.stdout
    assert "pool [0, 1, 4, 9, 16, 25]" in mw.stdout and "subprocess 6 sub" in mw.stdout
    assert "ValueError: in the worker" in before_summary(mw.stderr)
    assert summaries(mw.stderr) == 1, mw.stderr
    read_verdict(tmp_path / "v.json")


def test_sigterm_to_a_forked_child_ends_only_that_child(tmp_path: Path) -> None:
    """A forked child given SIGTERM dies by it at once, as under python (it finishes no run of its
    own, even though it inherited memwarden's SIGTERM handler), and the parent's run ends normally."""
    write(
        tmp_path / "term_child.py",
        """
        import os, signal, sys, time
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        print("child ended with", os.waitstatus_to_exitcode(status), flush=True)
        """,
    )
    plain = run_guarded([sys.executable, "term_child.py"], tmp_path)
    mw = run_guarded([*MEMWARDEN, "run", "--interval", "0.05", "--json", "v.json", "term_child.py"], tmp_path)
    assert plain.stdout == mw.stdout == f"child ended with {-signal.SIGTERM}\n", mw.stderr
    assert plain.returncode == mw.returncode == 0
    assert summaries(mw.stderr) == 1, mw.stderr
    read_verdict(tmp_path / "v.json")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def test_a_child_that_outlives_the_parent_leaves_the_parent_s_files_unchanged(tmp_path: Path) -> None:
    """A forked child still running when the parent's run has ended and written its files ends later
    without changing them: the timeline's bytes, its sibling files and the JSON stay as the parent left them."""
    write(
        tmp_path / "orphan.py",
        """
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # let the test's pipes close when the parent ends
            os.dup2(devnull, 2)
            time.sleep(1.5)
            sys.exit(0)
        print(pid, flush=True)
        """,
    )
    cmd = [*MEMWARDEN, "run", "-q", "--interval", "0.05", "--json", "v.json", "--db", "r.db", "orphan.py"]
    mw = run_guarded(cmd, tmp_path, keep_children=True)
    assert mw.returncode == 0, mw.stderr
    child = int(mw.stdout)
    db = tmp_path / "r.db"
    before = (db.read_bytes(), (tmp_path / "v.json").read_bytes(), sorted(p.name for p in tmp_path.iterdir()))
    assert not _gone(child), "the child ended before the parent's run did; the test proves nothing"
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(child):
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child did not end")
    after = (db.read_bytes(), (tmp_path / "v.json").read_bytes(), sorted(p.name for p in tmp_path.iterdir()))
    assert after == before
    assert db_facts(db)["verdicts"] == 1
