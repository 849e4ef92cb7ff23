"""The worker guard on real servers on loopback: gunicorn (sync, gthread, UvicornWorker) and uvicorn --workers.

Each serves tests/integration/apps/leaky.py, whose ``/leak`` keeps 1 MiB per request, under a
bounded load of 3,000 requests from 8 concurrent threads sharing one keep-alive client. The
guard's budget is 150 MiB of RSS per worker (250 MiB for the ASGI servers, whose respawns cost a
fresh interpreter: fewer recycles keep the test short); a watcher polls every worker's RSS from
outside.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.guard_load import MiB, RssWatch, drain_intervals, free_port, journal, run_load, server

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BUDGET = 150 * MiB
REQUESTS = 3000
# One request keeps 1 MiB (plus a page of allocator overhead): the request that crosses the
# budget may pass it by that much. Every server must stay within it: the guard stops the worker
# taking requests the moment it must go, and keeps a reserve below the budget for the requests its
# open connections already sent (see docs/guards.md).
ONE_REQUEST = int(1.01 * MiB) + 4096
# The way out costs a little too: the ladder and the evidence (its JSON) run after the crossing,
# and the reserve is the mean growth of the last requests, not a bound. Measured: < 1 MiB.
WAY_OUT = 1 * MiB


def _env(state_dir: Path, budget: int) -> dict[str, str]:
    return {
        "MEMWARDEN_BUDGET": str(budget),
        "MEMWARDEN_MIN_LIFETIME_S": "0",
        "MEMWARDEN_DRAIN_S": "20",
        "MEMWARDEN_GUARD_DIR": str(state_dir),
        "MEMWARDEN_LADDER": "alert,collect,trim,recycle",
        "PYTHONUNBUFFERED": "1",
    }


def _stream(port: int, out: dict[str, object]) -> None:
    import httpx

    out["start"] = time.monotonic()
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/stream?chunks=40&delay=0.1", timeout=60) as r:
            out["body"] = r.read().decode()
            out["headers"] = dict(r.headers)
    except Exception as exc:
        out["error"] = repr(exc)
    out["end"] = time.monotonic()


def _exercise(argv: list[str], tmp_path: Path, port: int, stream: bool, budget: int = BUDGET) -> None:
    state = tmp_path / "state"
    log = tmp_path / "server.log"
    with server(argv, _env(state, budget), port, log) as proc, RssWatch(proc.pid) as watch:
        streamed: dict[str, object] = {}
        streamer = threading.Thread(target=_stream, args=(port, streamed))
        result_box: list[object] = []
        loader = threading.Thread(target=lambda: result_box.append(run_load(port, REQUESTS, 8)))
        loader.start()
        time.sleep(0.5)
        if stream:
            streamer.start()
        loader.join()
        if stream:
            streamer.join()
        time.sleep(0.5)
    result = result_box[0]
    text = log.read_text()
    assert result.failed == [], f"{len(result.failed)} failed, e.g. {result.failed[:3]}\n{text[-3000:]}"  # type: ignore[attr-defined]
    assert result.ok == REQUESTS  # type: ignore[attr-defined]
    drains = drain_intervals(journal(state))
    assert len(drains) >= 3, text[-3000:]
    for (_, _, end), (pid, start, _) in itertools.pairwise(drains):
        assert start >= end, f"worker {pid} began draining before the previous drain ended: {drains}"
    recycled = {pid for pid, _, _ in drains}
    limit = budget + ONE_REQUEST + WAY_OUT
    worst = max(watch.peaks.values()) - budget
    print(f"\nworst RSS over budget: {worst / MiB:.3f} MiB; recycles: {len(drains)}")
    over = {
        pid: f"budget + {(rss - budget) / MiB:.3f} MiB" for pid, rss in watch.peaks.items() if rss > limit
    }
    assert not over, f"workers over {limit >> 20} MiB: {over}"
    assert recycled <= set(watch.peaks)
    if stream:
        assert "error" not in streamed, streamed
        assert streamed["body"] == "".join(f"{i}\n" for i in range(40))
        during = [d for d in drains if streamed["start"] < d[1] < streamed["end"]]  # type: ignore[operator]
        assert during, (
            f"no recycle while the stream was in flight: {drains} vs {streamed['start']}..{streamed['end']}"
        )


def test_gunicorn_sync_recycles_leaking_workers_without_losing_a_request(tmp_path: Path) -> None:
    """gunicorn sync -w 2: 3,000 leaking requests, none failed, >= 3 recycles one at a time, RSS <= budget + 1 request."""
    port = free_port()
    argv = [
        "gunicorn",
        "-c",
        "python:memwarden.guards.gunicorn",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "leaky:app",
    ]
    _exercise(argv, tmp_path, port, stream=False)
    assert "memwarden: worker" in (tmp_path / "server.log").read_text()  # the master logged why


def test_gunicorn_gthread_recycles_without_losing_a_request_and_a_stream_arrives_whole(
    tmp_path: Path,
) -> None:
    """gunicorn gthread -w 2 --threads 2: no failure, one drain at a time, a 4 s stream in flight arrives whole."""
    port = free_port()
    argv = [
        "gunicorn",
        "-c",
        "python:memwarden.guards.gunicorn",
        "-w",
        "2",
        "-k",
        "gthread",
        "--threads",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "leaky:app",
    ]
    _exercise(argv, tmp_path, port, stream=True)


def test_gunicorn_uvicorn_worker_heartbeats_while_draining_a_stream(tmp_path: Path) -> None:
    """UvicornWorker -w 2 with timeout 2 s: a 4 s stream outlives the timeout in a draining worker and arrives whole."""
    pytest.importorskip("uvicorn_worker")
    port = free_port()
    argv = [
        "gunicorn",
        "-c",
        "python:memwarden.guards.gunicorn",
        "-w",
        "2",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--timeout",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "leaky:asgi_app",
    ]
    _exercise(argv, tmp_path, port, stream=True, budget=250 * MiB)
    assert "WORKER TIMEOUT" not in (tmp_path / "server.log").read_text()


def test_uvicorn_workers_recycle_through_the_asgi_middleware(tmp_path: Path) -> None:
    """uvicorn --workers 2 with the middleware: no failure, one drain at a time, a stream in flight arrives whole."""
    port = free_port()
    argv = [
        "uvicorn",
        "--factory",
        "leaky:guarded_asgi_app",
        "--workers",
        "2",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-access-log",
    ]
    _exercise(argv, tmp_path, port, stream=True, budget=250 * MiB)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEMWARDEN_BUDGET": "1.5"}, "fraction must be in (0, 1]"),
        (
            {"MEMWARDEN_BUDGET": "1GiB", "MEMWARDEN_BUDGET_MEASURE": "maxrss"},
            "unknown budget measure 'maxrss'",
        ),
    ],
)
def test_gunicorn_refuses_a_bad_budget_at_start_up_in_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    """A bad MEMWARDEN_* value stops gunicorn before any worker starts, with one 'memwarden:' line."""
    import os
    import subprocess
    import sys

    from tests.integration.guard_load import APPS

    port = free_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:memwarden.guards.gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "leaky:app",
        ],
        check=False,
        cwd=APPS,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if message in line]
    assert lines and all(line.count("memwarden:") >= 1 for line in lines), out.stderr[-2000:]
    assert "Booting worker" not in out.stderr


# -- long-lived responses on a real uvicorn: the bounded wait, then a clean close ----------------

LONG_DRAIN_S = 6.0  # streams and WebSockets still open at 0.8 of it (4.8 s) are closed


def _uvicorn_workers(port: int) -> list[str]:
    return [
        "uvicorn",
        "--factory",
        "leaky:guarded_asgi_app",
        "--workers",
        "2",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-access-log",
    ]


def _load_until(port: int, done: threading.Event, failed: list[str], limit_s: float = 90.0) -> None:
    """Leaking requests in rounds (each a new client, so new connections) until ``done``."""
    deadline = time.monotonic() + limit_s
    while not done.is_set() and time.monotonic() < deadline:
        failed.extend(run_load(port, 60, 4).failed)


def _long_lived_env(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path / "state", 100 * MiB)
    env["MEMWARDEN_DRAIN_S"] = str(LONG_DRAIN_S)
    return env


def _assert_recycled_in_time(state: Path, pid: int, ended: float, text: str) -> None:
    """The worker's drain started, ended through the graceful path (not the deadline), and it is gone."""
    import psutil

    entries = [e for e in journal(state) if e["pid"] == pid]
    starts = [float(e["mono"]) for e in entries if e["event"] == "drain_start"]  # type: ignore[arg-type]
    assert starts, f"worker {pid} never drained: {entries}\n{text[-3000:]}"
    assert [e["event"] for e in entries if e["event"] != "drain_start"] == ["drain_end"], entries
    # closed at the stream deadline (0.8 of the drain after it began), not when the app was done
    assert starts[0] + 0.8 * LONG_DRAIN_S - 1.0 < ended < starts[0] + LONG_DRAIN_S + 1.0, (starts, ended)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"worker {pid} still runs after its drain"
        time.sleep(0.1)


def _gthread(port: int) -> list[str]:
    return [
        "gunicorn",
        "-c",
        "python:memwarden.guards.gunicorn",
        "-w",
        "2",
        "-k",
        "gthread",
        "--threads",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "leaky:app",
    ]


@pytest.mark.parametrize("argv", [_uvicorn_workers, _gthread], ids=["uvicorn", "gthread"])
def test_a_stream_longer_than_the_drain_is_closed_cleanly_and_the_worker_exits(
    tmp_path: Path, argv: Callable[[int], list[str]]
) -> None:
    """uvicorn --workers 2, gunicorn gthread: a 60 s stream on a recycled worker ends at the stream deadline.

    The client reads a complete, terminated chunked response (whole lines, no reset); the worker
    exits through the graceful path, before the drain deadline; no request fails.
    """
    import httpx

    port = free_port()
    log = tmp_path / "server.log"
    done = threading.Event()
    failed: list[str] = []
    with server(argv(port), _long_lived_env(tmp_path), port, log):
        loader = threading.Thread(target=_load_until, args=(port, done, failed))
        try:
            with httpx.stream("GET", f"http://127.0.0.1:{port}/stream?chunks=600&delay=0.1", timeout=30) as r:
                pid = int(r.headers["x-pid"])
                loader.start()
                body = r.read().decode()  # raises on a reset or a chunked body cut short
                ended = time.monotonic()
            # closed at once, as a client does after a complete response (gthread's graceful
            # close waits up to 2 s for the client's FIN)
        finally:
            done.set()
            if loader.is_alive():
                loader.join()
    text = log.read_text()
    assert failed == [], f"{len(failed)} failed, e.g. {failed[:3]}\n{text[-3000:]}"
    lines = body.splitlines()
    assert 0 < len(lines) < 600, f"{len(lines)} lines: the stream was not cut at the deadline"
    assert lines == [str(i) for i in range(len(lines))]  # whole lines, in order: a clean end
    _assert_recycled_in_time(tmp_path / "state", pid, ended, text)


def test_uvicorn_closes_a_websocket_with_1001_when_its_worker_recycles(tmp_path: Path) -> None:
    """uvicorn --workers 2: a WebSocket open on a recycled worker is closed with 1001 at the stream deadline.

    Not uvicorn's own 1012 at the signal: the middleware holds the signal while a WebSocket is open.
    The worker exits through the graceful path; no request fails.
    """
    pytest.importorskip("websockets")
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    port = free_port()
    log = tmp_path / "server.log"
    done = threading.Event()
    failed: list[str] = []
    received: list[str] = []
    with server(_uvicorn_workers(port), _long_lived_env(tmp_path), port, log):
        loader = threading.Thread(target=_load_until, args=(port, done, failed))
        with connect(f"ws://127.0.0.1:{port}/ws?messages=1200&delay=0.05", open_timeout=10) as ws:
            pid = int(ws.recv(timeout=10))
            loader.start()
            try:
                while True:
                    received.append(str(ws.recv(timeout=30)))
            except ConnectionClosed as exc:
                closed = exc
            finally:
                ended = time.monotonic()
                done.set()
                loader.join()
    text = log.read_text()
    assert failed == [], f"{len(failed)} failed, e.g. {failed[:3]}\n{text[-3000:]}"
    assert closed.rcvd is not None, f"no close frame from the server: {closed!r}"
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server recycling")
    assert 0 < len(received) < 1200 and received == [str(i) for i in range(len(received))]
    _assert_recycled_in_time(tmp_path / "state", pid, ended, text)
