"""The control socket (mode 0600 in a 0700 directory, peers of other users refused) and the
`memwarden status` / `memwarden top` commands that read it, top driven in a real pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memwarden
from memwarden.exporters.control import ControlError, ControlSocket, control_path, query
from tests.unit._exporters import running_monitor

from .conftest import run_memwarden

SERVICE = """
    import os, sys, time
    import memwarden
    from memwarden.exporters.control import serve_control

    memwarden.start(interval=0.1, investigate=False, db=sys.argv[1])
    serve_control()
    print(os.getpid(), flush=True)
    held = []
    while True:                       # a slow leak: 256 KiB a tick
        held.append(bytearray(256 * 1024))
        time.sleep(0.1)
"""


@pytest.fixture
def monitor() -> Iterator[memwarden.Monitor]:
    """A running monitor with replayed process and GPU layers."""
    with running_monitor(interval=0.05) as mon:
        yield mon


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real process that runs memwarden.start() and serves its control socket: (pid, its timeline)."""
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(SERVICE))
    db = tmp_path / "service.db"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 30
        while not control_path(pid).exists() or not db.exists():
            assert time.monotonic() < deadline, "the service did not open its control socket"
            time.sleep(0.05)
        time.sleep(0.5)
        yield pid, db
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        with contextlib.suppress(FileNotFoundError):
            control_path(proc.pid).unlink()  # killed: its socket stays behind


def test_socket_mode_is_0600_in_a_private_directory(monitor: memwarden.Monitor) -> None:
    """The socket is 0600, its directory 0700 and ours; close() removes the socket."""
    with ControlSocket(monitor) as cs:
        st = os.stat(cs.path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        parent = os.stat(cs.path.parent)
        assert stat.S_IMODE(parent.st_mode) == 0o700 and parent.st_uid == os.getuid()
        assert cs.path == control_path(os.getpid())
        answer = query(os.getpid())
        assert answer["metrics"]["gpu.allocated_bytes"] == 96 << 20
        assert query(os.getpid(), "timeline", last=2)["samples"][-1]["metrics"]["process.rss_bytes"] > 0
    assert not cs.path.exists()


def test_a_directory_others_may_enter_is_refused(monitor: memwarden.Monitor, tmp_path: Path) -> None:
    """A socket directory with group or world access is not used."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(memwarden.UsageError, match="0700"):
        ControlSocket(monitor, path=shared / "x.sock").start()


def test_a_peer_of_another_user_is_refused(monitor: memwarden.Monitor, tmp_path: Path) -> None:
    """The peer's uid (SO_PEERCRED) must be an allowed one: otherwise one refusal line, and nothing else."""
    private = tmp_path / "ctl"
    with ControlSocket(monitor, path=private / "s.sock", allowed_uids=(os.getuid() + 1,)) as cs:
        with pytest.raises(ControlError, match="its own user only"):
            query(cs.path)
        assert cs.refused == 1
    with ControlSocket(monitor, path=private / "s.sock") as cs:
        assert query(cs.path)["running"] is True


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(
    os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to run a client as the user nobody) and a system python3",
)
def test_another_user_cannot_even_reach_the_socket(monitor: memwarden.Monitor) -> None:
    """A process running as nobody gets EACCES: the directory is 0700 and the socket 0600."""
    with ControlSocket(monitor) as cs:
        code = (
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print(type(e).__name__)"
        )
        out = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", code, str(cs.path)],
            capture_output=True,
            text=True,
            timeout=30,
            user=65534,
            cwd="/",
            env={},
            check=False,
        )
    assert out.stdout.strip() == "PermissionError", out.stderr


def test_a_bad_request_gets_a_clear_answer(monitor: memwarden.Monitor) -> None:
    """Garbage and unknown requests are answered with an error line, and the socket keeps serving."""
    with ControlSocket(monitor) as cs:
        for line, status in ((b"not json\n", 400), (b'{"get": "nothing"}\n', 404)):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(cs.path))
                s.sendall(line)
                assert f'"status": {status}' in s.recv(4096).decode()
        assert query(cs.path, "verdict")["schema"] == "memwarden.verdict/1"


def test_status_of_a_running_service_by_pid(service: tuple[int, Path], tmp_path: Path) -> None:
    """`memwarden status PID` prints every layer the service reads, and --json its metrics and verdict."""
    pid, _ = service
    out = run_memwarden(["status", str(pid)], tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    for word in ("process", "objects", "libc", "rss_bytes", "verdict"):
        assert word in out.stdout
    js = run_memwarden(["status", str(pid), "--json"], tmp_path, timeout=60)
    import json

    data = json.loads(js.stdout)
    assert data["pid"] == pid and data["metrics"]["process.rss_bytes"] > 0 and data["verdict"]["verdict"]


def test_status_of_a_timeline_file(service: tuple[int, Path], tmp_path: Path) -> None:
    """`memwarden status DB` reads the service's timeline file while it is written."""
    pid, db = service
    out = run_memwarden(["status", str(db), "--json"], tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert data["pid"] in (None, pid)  # a timeline records its pid when a forked child writes it
    assert data["samples"] >= 3 and data["metrics"]["process.rss_bytes"] > 0 and data["verdict"]["verdict"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "999999999"], "serve_control"),
        (["top", "no-such-file.db"], "neither a pid nor a timeline file"),
        (["top", "1", "--interval", "0"], "--interval must be a positive"),
    ],
)
def test_bad_targets_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    """A pid without a socket, a missing file or a bad interval: exit 2 and one line that says why."""
    out = run_memwarden(args, tmp_path, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1


def _drive_in_pty(args: list[str], seconds: float) -> str:
    """Run ``python -m memwarden ARGS`` on a real pseudo-terminal for ``seconds``; what it drew."""
    master, slave = pty.openpty()
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "LINES": "50",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memwarden", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunks.append(os.read(master, 65536))
                except OSError:
                    break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.parametrize("by", ["pid", "timeline"])
def test_top_shows_the_layers_and_updates(service: tuple[int, Path], by: str) -> None:
    """In a real terminal, `memwarden top` draws the layers and redraws them with new samples."""
    pid, db = service
    screen = _drive_in_pty(["top", str(pid) if by == "pid" else str(db), "--interval", "0.5"], seconds=6)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for word in ("process", "objects", "libc", "rss_bytes", "allocated_blocks"):
        assert word in plain, plain[-2000:]
    counts = [int(n) for n in re.findall(r"samples (\d+)", plain)]
    assert len(counts) >= 3 and counts[-1] > counts[0], counts
    rss = re.findall(r"rss_bytes\s*│\s*([\d.]+ [KMG]iB)", plain)
    assert len(set(rss)) >= 2, rss  # the service grows, and top shows it


FORKING = """
    import os, sys, time
    import memwarden
    from memwarden.exporters.control import serve_control

    memwarden.start(interval=0.1, investigate=False)
    serve_control()
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print(os.getpid(), child, flush=True)
    time.sleep(60)
"""


def test_a_forked_child_serves_its_own_socket(tmp_path: Path) -> None:
    """After fork() the parent's socket still answers for the parent, and the child serves its own pid."""
    script = tmp_path / "forking.py"
    script.write_text(textwrap.dedent(FORKING))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    child = 0
    try:
        assert proc.stdout is not None
        parent, child = (int(x) for x in proc.stdout.readline().split())
        deadline = time.monotonic() + 30
        while not control_path(child).exists():
            assert time.monotonic() < deadline, "the child opened no control socket"
            time.sleep(0.05)
        time.sleep(0.5)
        assert query(parent)["pid"] == parent
        first = query(child)
        assert first["pid"] == child and first["running"] is True
        time.sleep(0.5)
        assert query(child)["ticks"] > first["ticks"]  # the child's own monitor samples
        assert query(parent)["pid"] == parent  # and the parent's socket is still the parent's
    finally:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        for pid in (proc.pid, child):
            with contextlib.suppress(FileNotFoundError):
                control_path(pid).unlink()


def test_a_census_through_the_socket_is_rate_limited(monitor: memwarden.Monitor) -> None:
    """The socket's census has the endpoint's bound: the second one within the interval is refused."""
    with ControlSocket(monitor, costly_min_interval_s=60) as cs:
        first = query(cs.path, "census")
        assert first["census"]["types"] and "caches" in first
        with pytest.raises(ControlError, match="one per 60 s"):
            query(cs.path, "census")
        assert query(cs.path, "readings")["running"] is True  # the cheap views are not limited
