"""Real gunicorn ``--preload`` with 2 workers: the monitor started in the master restarts in each worker.

The app calls ``memwarden.start(db=".../app-{pid}.db")`` at import, which ``--preload`` does once in
the master before it forks the workers. Each worker must then sample on its own (its own thread, its
own timeline file), and requests over loopback show it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from memwarden import Timeline

pytest.importorskip("gunicorn", reason="gunicorn is in the dev extra: pip install -e '.[dev]'")

APP = """
    import json, os
    import memwarden

    DB = os.environ["MW_TEST_DB"]
    memwarden.start(interval=0.1, db=DB, investigate=False)

    def app(environ, start_response):
        mon = memwarden.start()  # the running monitor of this process
        body = json.dumps({"pid": os.getpid(), "ticks": mon.sampler.ticks,
                           "db": mon.timeline.path}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        data: dict[str, object] = json.loads(resp.read())
        return data


@pytest.mark.slow
def test_each_preloaded_worker_samples_into_its_own_timeline(tmp_path: Path) -> None:
    """Two --preload workers each report their own pid, a ticking monitor and app-<pid>.db."""
    (tmp_path / "mwapp.py").write_text(textwrap.dedent(APP))
    port = _free_port()
    env = dict(os.environ, MW_TEST_DB=str(tmp_path / "app-{pid}.db"), PYTHONPATH=str(tmp_path))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "5", "mwapp:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        seen: dict[int, list[dict[str, object]]] = {}
        while time.monotonic() < deadline and (len(seen) < 2 or min(len(v) for v in seen.values()) < 2):
            try:
                reply = _get(f"http://127.0.0.1:{port}/")
            except OSError:
                time.sleep(0.1)
                continue
            seen.setdefault(int(reply["pid"]), []).append(reply)  # type: ignore[call-overload]
            time.sleep(0.05)
        assert len(seen) == 2, seen
        time.sleep(0.5)
        for _ in range(80):  # ask the workers again, later: their ticks went on
            reply = _get(f"http://127.0.0.1:{port}/")
            seen[int(reply["pid"])].append(reply)  # type: ignore[call-overload]
        master_pid = server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    for pid, replies in seen.items():
        assert pid != master_pid
        assert replies[0]["db"] == str(tmp_path / f"app-{pid}.db")
        ticks = [int(r["ticks"]) for r in replies]  # type: ignore[call-overload]
        assert max(ticks) - min(ticks) >= 3, (pid, ticks)  # its own sampler thread ticks
        with Timeline.open_existing(tmp_path / f"app-{pid}.db") as tl:
            meta = tl.meta()
            assert meta["pid"] == pid and meta["parent_pid"] == master_pid
            assert tl.sample_count() >= 3
    # the master's own timeline is the file named for its pid, and no worker wrote into it
    with Timeline.open_existing(tmp_path / f"app-{master_pid}.db") as tl:
        assert "parent_pid" not in tl.meta()
