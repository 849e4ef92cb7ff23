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
from pathlib import Path

import pytest

from tests.integration.guard_load import MiB, RssWatch, drain_intervals, free_port, journal, run_load, server

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BUDGET = 150 * MiB
REQUESTS = 3000
# One request keeps 1 MiB (plus a page of allocator overhead); the watcher may see a worker
# between the leak and the check that follows it, once per request in flight in that worker.
ONE_REQUEST = int(1.01 * MiB) + 4096
# The way out costs a little too: the ladder and the evidence (its JSON) run after the crossing.
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


def _exercise(
    argv: list[str], tmp_path: Path, port: int, in_flight_per_worker: int, stream: bool, budget: int = BUDGET
) -> None:
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
    limit = budget + in_flight_per_worker * ONE_REQUEST + WAY_OUT
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
    _exercise(argv, tmp_path, port, in_flight_per_worker=1, stream=False)
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
    # gthread finishes what it has read: the requests queued for its 2 threads while it waited its
    # turn (at most one per client connection), and one more per kept-alive connection during its
    # keep-alive linger. So the bound is 2 x 8 connections + 2 threads; measured 11 to 15.7 MiB over.
    _exercise(argv, tmp_path, port, in_flight_per_worker=2 * 8 + 2, stream=True)


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
    _exercise(argv, tmp_path, port, in_flight_per_worker=8, stream=True, budget=250 * MiB)
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
    _exercise(argv, tmp_path, port, in_flight_per_worker=8, stream=True, budget=250 * MiB)


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
