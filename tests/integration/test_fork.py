"""A monitor survives fork(): the child never blocks on the parent's locks and gets a monitor of its own.

Each program runs in a fresh interpreter with a timeout, so a hang fails the test instead of
stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memwarden import Timeline

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def _run(tmp_path: Path, code: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "prog.py"
    program.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=tmp_path,
    )


_CHILD_LEAKS = """
    import json, os, sys, time
    import memwarden

    KEPT = []

    class Turn:
        def __init__(self, n):
            self.n = n
            self.text = "x" * 100_000

    def leak_in_child():
        KEPT.append(Turn(len(KEPT)))  # the child's leak

    mon = memwarden.start(interval=0.1, db="app.db",
                          investigator=memwarden.InvestigatorConfig(warmup_s=0.3, window_s=1.5))
    time.sleep(0.5)
    pid = os.fork()
    if pid == 0:
        child = memwarden.start()  # the same options give the child's own running monitor
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:
            leak_in_child()
            time.sleep(0.02)
        ticks = child.sampler.ticks
        v = memwarden.stop()
        print(json.dumps({"who": "child", "pid": os.getpid(), "verdict": v.verdict, "ticks": ticks,
                          "functions": [s.function for s in v.sites[:3]], "samples": v.samples,
                          "holders": [h.path for h in v.holders]}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    time.sleep(0.3)
    v = memwarden.stop()
    print(json.dumps({"who": "parent", "pid": os.getpid(), "child": pid, "status": status,
                      "verdict": v.verdict, "samples": v.samples}), flush=True)
"""


def test_a_forked_child_samples_at_its_interval_and_names_its_own_leak(tmp_path: Path) -> None:
    """start() then fork(): the child's monitor ticks at 0.1 s, writes app.<pid>.db and finds its leak."""
    out = _run(tmp_path, _CHILD_LEAKS)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    child = next(x for x in lines if x["who"] == "child")
    parent = next(x for x in lines if x["who"] == "parent")
    assert parent["status"] == 0
    # 4 s at 0.1 s is 40 ticks; a window's attribution work delays a few, a child without its own
    # sampler thread would have 1-3
    assert child["ticks"] >= 12, child
    assert child["verdict"] == "python_leak", child
    assert "leak_in_child" in child["functions"], child
    assert any("KEPT" in h for h in child["holders"]), child
    assert parent["verdict"] != "python_leak", parent
    # each process wrote its own timeline; the parent's file holds only the parent's run
    child_db = tmp_path / f"app.{child['pid']}.db"
    assert child_db.exists()
    with Timeline.open_existing(child_db) as tl:
        assert tl.meta()["parent_pid"] == parent["pid"]
        assert tl.sample_count() >= 12
        assert tl.events("verdict")[-1].data["verdict"] == "python_leak"
    with Timeline.open_existing(tmp_path / "app.db") as tl:
        assert tl.sample_count() == parent["samples"]
        assert tl.events("verdict")[-1].data["verdict"] == parent["verdict"]


_FORK_STORM = """
    import os, sys, time
    import memwarden

    mon = memwarden.Monitor(interval=0.01, db="storm.db", investigate=False).start()
    codes = []
    for i in range(30):
        pid = os.fork()
        if pid == 0:
            # the sampler thread was writing to SQLite at 100 Hz when we forked: none of its locks
            # may be held here, and the parent's file must be left alone
            m = memwarden.Monitor(interval=0.01, investigate=False).start()
            time.sleep(0.03)
            m.stop()
            sys.exit(i % 4)
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    v = mon.stop()
    print(codes == [i % 4 for i in range(30)], v.samples > 10)
"""


def test_forking_under_a_busy_sampler_never_hangs(tmp_path: Path) -> None:
    """30 forks while a 100 Hz sampler writes its timeline: every child runs and exits with its code."""
    out = _run(tmp_path, _FORK_STORM, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr
    with Timeline.open_existing(tmp_path / "storm.db") as tl:
        assert len(tl.events("verdict")) == 1  # no child wrote into the parent's file
        parent_pid = tl.meta().get("pid")
    # the parent's monitor restarted in each child, into a file of the child's own (storm.<pid>.db)
    children = sorted(p for p in tmp_path.glob("storm.*.db"))
    assert len(children) == 30
    for path in children:
        with Timeline.open_existing(path) as tl:
            meta = tl.meta()
            assert path.name == f"storm.{meta['pid']}.db" and meta["parent_pid"] != meta["pid"]
            assert parent_pid in (None, meta["parent_pid"])
            assert tl.sample_count() >= 1


_ON_FORK_STOP = """
    import json, os, threading, time
    import memwarden

    mon = memwarden.Monitor(interval=0.05, db="parent.db", on_fork="stop").start()
    time.sleep(0.2)
    pid = os.fork()
    if pid == 0:
        threads = [t.name for t in threading.enumerate()]
        v = mon.stop()  # the parent's monitor: inert here, answers at once
        with mon:  # and leaving a with-block in the child does nothing either
            pass
        print(json.dumps({"threads": threads, "verdict": v.verdict, "summary": v.summary}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    v = mon.stop()
    print(json.dumps({"parent": v.samples}), flush=True)
"""


def test_on_fork_stop_leaves_the_child_without_a_monitor(tmp_path: Path) -> None:
    """With on_fork="stop" the child has no sampler thread and no file; stop() there returns at once."""
    out = _run(tmp_path, _ON_FORK_STOP)
    assert out.returncode == 0, out.stderr
    child, parent = (json.loads(line) for line in out.stdout.splitlines())
    assert "memwarden-sampler" not in child["threads"]
    assert child["verdict"] == "inconclusive"
    assert sorted(p.name for p in tmp_path.glob("parent*.db")) == ["parent.db"]
    assert parent["parent"] >= 3


_MULTIPROCESSING = """
    import multiprocessing as mp, os, time
    import memwarden

    def work(n):
        mon = memwarden.start()  # each worker has its own running monitor, from the fork
        time.sleep(0.3)
        return (os.getpid(), mon.sampler.ticks)

    if __name__ == "__main__":
        memwarden.start(interval=0.05, db="mp-{pid}.db", investigate=False)
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(work, range(4))
        memwarden.stop()
        print(all(ticks >= 3 for _, ticks in results), len({pid for pid, _ in results}) >= 1)
"""


def test_multiprocessing_fork_workers_get_their_own_monitor(tmp_path: Path) -> None:
    """A fork-context Pool under a running monitor: each worker samples, into mp-<its pid>.db."""
    out = _run(tmp_path, _MULTIPROCESSING)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr
    files = {p.name for p in tmp_path.glob("mp-*.db")}
    assert len(files) >= 2  # the parent's and at least one worker's


_TWO_LEAKS = """
    import json, time
    import memwarden

    SESSIONS = []
    EMBEDDINGS = []

    class Session:
        def __init__(self):
            self.history = "h" * 50_000

    class Embedding:
        def __init__(self):
            self.vector = "v" * 50_000

    def open_session():
        SESSIONS.append(Session())  # the first leak

    def embed():
        EMBEDDINGS.append(Embedding())  # the second leak, at a new site, later

    def phase(seconds, step=None):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if step is not None:
                step()
            time.sleep(0.01)

    # time compressed through the config: a window may follow another 0.5 s after it closes
    config = memwarden.InvestigatorConfig(warmup_s=0.3, window_s=1.0, cooldown_s=0.5,
                                          windows_per_hour=3600, max_tracing_share=0.5)
    with memwarden.Monitor(interval=0.1, investigator=config) as mon:
        phase(1.5)
        phase(3.0, open_session)
        phase(2.0)
        phase(3.0, embed)
    v = mon.verdict
    print(json.dumps({"verdict": v.verdict, "functions": [s.function for s in v.sites],
                      "holders": [h.path for h in v.holders],
                      "windows": [(w.opened_s, w.closed_s) for w in mon.evidence().windows]}))
"""


@pytest.mark.slow
def test_a_leak_after_a_quiet_spell_at_a_new_site_is_attributed_too(tmp_path: Path) -> None:
    """Flat, leak at one site, flat, leak at another: a window opens for each, and both sites are named.

    (Holders of strings kept in instance attributes are often not found within the 2 s sample
    budget on a loaded machine: that is issue 9's holder work, not asserted here.)
    """
    out = _run(tmp_path, _TWO_LEAKS)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["verdict"] == "python_leak", result
    assert len(result["windows"]) >= 2, result
    assert {"open_session", "embed"} <= set(result["functions"]), result


_CHILD_CANNOT_WRITE = """
    import json, os, time
    import memwarden

    os.mkdir(str(os.getpid()))
    mon = memwarden.Monitor(interval=0.05, db="{pid}/app.db", investigate=False).start()
    time.sleep(0.2)
    pid = os.fork()
    if pid == 0:
        # the child's file would be <child pid>/app.db, whose folder does not exist: it runs unwatched
        v = mon.stop()
        print(json.dumps({"verdict": v.verdict, "running": mon.running}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    v = mon.stop()
    print(json.dumps({"status": status, "samples": v.samples}), flush=True)
"""


def test_a_child_that_cannot_open_its_timeline_runs_unwatched_and_does_not_hang(tmp_path: Path) -> None:
    """If the restart fails in the child (no folder for its file), the monitor there is inert, not stuck."""
    out = _run(tmp_path, _CHILD_CANNOT_WRITE)
    assert out.returncode == 0, out.stderr
    child, parent = (json.loads(line) for line in out.stdout.splitlines())
    assert child == {"verdict": "inconclusive", "running": False}
    assert parent["status"] == 0 and parent["samples"] >= 3
