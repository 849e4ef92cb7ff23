"""Helpers for the `memwarden run` process tests: a run that cannot hang the suite, the summary count."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .conftest import _env

MEMWARDEN = [sys.executable, "-m", "memwarden"]
SUMMARY_PREFIX = "memwarden: "


def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def run_guarded(
    cmd: Sequence[str], cwd: Path, timeout: float = 60, *, keep_children: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own session; past ``timeout`` kill the whole group (children too) and fail.
    At the end what is left of the group is killed, unless ``keep_children``.

    ``subprocess.run(timeout=...)`` kills only the direct child and then waits for the pipes, which a
    hung forked child keeps open, so it could hang the suite itself.
    """
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} hung for {timeout} s; stdout={out!r} stderr={err!r}") from None
    finally:
        # a child left behind (the test failed half-way) must not outlive the test
        if not keep_children or proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def summaries(stderr: str) -> int:
    """How many end-of-run summaries memwarden printed (each starts with a ``memwarden: <verdict>`` line)."""
    return sum(1 for line in stderr.splitlines() if line.startswith(SUMMARY_PREFIX))


def before_summary(stderr: str) -> str:
    """The stderr text before memwarden's summary (what the program itself wrote there)."""
    lines = stderr.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(SUMMARY_PREFIX):
            return "".join(lines[:i])
    return stderr


def read_verdict(path: Path) -> dict[str, Any]:
    verdict = json.loads(path.read_text())
    assert isinstance(verdict, dict) and verdict["schema"] == "memwarden.verdict/1", verdict
    return verdict


def db_facts(path: Path) -> dict[str, Any]:
    """The run recorded in a timeline file: its meta, its verdict events and its sample count."""
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"  # immutable: no -wal/-shm made
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    try:
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        verdicts = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'verdict'").fetchone()[0]
        samples = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    finally:
        conn.close()
    return {"meta": meta, "verdicts": verdicts, "samples": samples}
