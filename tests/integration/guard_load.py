"""Helpers for the guard's server tests and benchmarks: a server on loopback, a bounded load, an RSS watch.

Used by tests/integration/test_guard_servers.py and benchmarks/guard_compare.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

APPS = Path(__file__).parent / "apps"
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/pid", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready in time")


class RssWatch:
    """Polls the RSS of every child of a server's master, keeping each worker's highest reading."""

    def __init__(self, master_pid: int, every_s: float = 0.005) -> None:
        self.master = psutil.Process(master_pid)
        self.every_s = every_s
        self.peaks: dict[int, int] = {}
        self.first: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self.master.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss = child.memory_info().rss
                        self.first.setdefault(child.pid, rss)
                        if rss > self.peaks.get(child.pid, 0):
                            self.peaks[child.pid] = rss
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class LoadResult:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def p(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_load(
    port: int,
    n: int = 3000,
    concurrency: int = 8,
    path: str = "/leak",
    leak_every: int = 1,
    other: str = "/pid",
) -> LoadResult:
    """``n`` GETs from ``concurrency`` threads sharing one keep-alive client; every failure kept.

    One request in ``leak_every`` goes to ``path``, the others to ``other``.
    """
    import httpx

    result = LoadResult()
    lock = threading.Lock()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

        def one(i: int) -> None:
            t0 = time.perf_counter()
            try:
                r = client.get(path if i % leak_every == 0 else other)
                r.raise_for_status()
                text = r.text
            except Exception as exc:
                with lock:
                    result.failed.append(f"{type(exc).__name__}: {exc}")
                return
            dt = time.perf_counter() - t0
            with lock:
                result.ok += 1
                result.latencies_s.append(dt)
                result.pids[text] = result.pids.get(text, 0) + 1

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
    return result


@contextlib.contextmanager
def server(
    argv: Sequence[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    full_env = {**os.environ, **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=APPS, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(port, proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def journal(state_dir: Path) -> list[dict[str, object]]:
    path = state_dir / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drain_intervals(entries: list[dict[str, object]]) -> list[tuple[int, float, float]]:
    """``(pid, start, end)`` of each drain, from the journal (monotonic clock, shared by all processes)."""
    starts: dict[int, float] = {}
    out = []
    for e in entries:
        pid = int(e["pid"])  # type: ignore[call-overload]
        if e["event"] == "drain_start":
            starts[pid] = float(e["mono"])  # type: ignore[arg-type]
        elif e["event"] in ("drain_end", "drain_deadline") and pid in starts:
            out.append((pid, starts.pop(pid), float(e["mono"])))  # type: ignore[arg-type]
    out.extend((pid, start, float("inf")) for pid, start in starts.items())
    return sorted(out, key=lambda x: x[1])
