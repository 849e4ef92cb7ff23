"""client_python's multiprocess mode under real gunicorn workers, scraped over loopback.

The app module (loaded once in the master with --preload) starts memwarden and installs the
multiprocess writer; each forked worker's monitor then writes its own readings to
PROMETHEUS_MULTIPROC_DIR, and any worker's /metrics serves all of them: gauges one series per
live process (a ``pid`` label), counters summed. A worker that dies is dropped from the gauges
once gunicorn's child_exit hook marks it dead.
"""

from __future__ import annotations

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

pytest.importorskip("gunicorn", reason="gunicorn is in the dev extra: pip install -e '.[dev]'")
pytest.importorskip("prometheus_client", reason="pip install -e '.[prometheus]'")
from prometheus_client.parser import text_string_to_metric_families

APP = """
    import os
    import memwarden
    from memwarden.exporters.prometheus import install_multiprocess, make_wsgi_app

    memwarden.start(interval=0.1, investigate=False)
    install_multiprocess()
    metrics = make_wsgi_app()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            return metrics(environ, start_response)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
"""

CONF = """
    from prometheus_client import multiprocess

    def child_exit(server, worker):
        multiprocess.mark_process_dead(worker.pid)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _rss_by_pid(text: str) -> dict[int, float]:
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {int(s.labels["pid"]): s.value for s in fams["memwarden_process_rss_bytes"].samples}


@pytest.mark.slow
def test_workers_metrics_are_aggregated_and_dead_workers_dropped(tmp_path: Path) -> None:
    """Each live worker's RSS is a series of its own pid; counters are one summed series; a killed worker leaves."""
    (tmp_path / "mwapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gconf.py").write_text(textwrap.dedent(CONF))
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
        PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "-c", "gconf.py",
         "--graceful-timeout", "5", "mwapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            try:
                workers.add(int(_get(base + "/")))
            except OSError:
                time.sleep(0.1)
        assert len(workers) == 2, workers
        rss: dict[int, float] = {}
        while time.monotonic() < deadline and not workers <= set(rss):
            rss = _rss_by_pid(_get(base + "/metrics"))
            time.sleep(0.2)
        assert workers <= set(rss), (workers, rss)
        assert all(v > 1 << 20 for v in rss.values())
        text = _get(base + "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        gen0 = fams["memwarden_objects_gc_collections_gen0"]
        assert gen0.type == "counter"
        totals = [s for s in gen0.samples if s.name.endswith("_total")]
        assert len(totals) == 1 and "pid" not in totals[0].labels and totals[0].value > 0
        assert {s.labels["verdict"] for s in fams["memwarden_verdict"].samples} >= {"stable", "python_leak"}

        victim = min(workers)
        os.kill(victim, signal.SIGTERM)
        gone = False
        while time.monotonic() < deadline + 30 and not gone:
            time.sleep(0.3)
            try:
                gone = victim not in _rss_by_pid(_get(base + "/metrics"))
            except OSError:
                continue
        assert gone, f"worker {victim} is still in the gauges after it died"
    except BaseException:
        server.send_signal(signal.SIGTERM)
        print(server.communicate(timeout=60)[0])  # gunicorn's log, for the failure report
        raise
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
