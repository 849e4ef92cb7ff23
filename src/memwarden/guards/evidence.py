"""Evidence before the end: what memwarden knew about a worker, written before it is recycled.

A recycle (or the OOM kill that comes anyway) ends the process and everything it had in memory:
the verdict, the sites, the holders. :func:`write_evidence` writes them first, to a JSON file
(written whole or not at all: a temporary file renamed into place) and, when a monitor runs, to
its timeline as a ``guard_evidence`` event.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .actions import ActionResult

if TYPE_CHECKING:
    from .._monitor import Monitor

EVENT_EVIDENCE = "guard_evidence"
SCHEMA = "memwarden.guard_evidence/1"


def collect_evidence(
    *,
    reason: str,
    value_bytes: int,
    budget: dict[str, Any],
    monitor: Monitor | None = None,
    actions: Sequence[ActionResult] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The evidence as a JSON-ready dict: the verdict (with sites and holders) when a monitor runs.

    It walks no heap of its own (no ``gc.get_objects()``): a worker at its limit must not need
    a list of every object to say goodbye; the monitor's verdict already carries the evidence.
    """
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "pid": os.getpid(),
        "time": time.time(),
        "reason": reason,
        "value_bytes": value_bytes,
        "budget": budget,
        "actions": [a.to_json() for a in actions],
        "verdict": None,
    }
    if monitor is not None and monitor.sampler is not None:
        try:
            doc["verdict"] = monitor.diagnose().to_json()
        except Exception as exc:  # the evidence must never stop the recycle
            doc["verdict_error"] = f"{type(exc).__name__}: {exc}"
    else:
        doc["note"] = "no memwarden monitor ran in this worker: start one (memwarden.start()) for a verdict"
    if extra:
        doc.update(extra)
    return doc


def write_evidence(path: str | os.PathLike[str], doc: dict[str, Any], monitor: Monitor | None = None) -> Path:
    """Write ``doc`` to ``path`` atomically (and to the monitor's timeline); the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    if monitor is not None and monitor.sampler is not None:
        monitor.sampler.record(EVENT_EVIDENCE, {**doc, "path": str(target)})
    return target


__all__ = ["EVENT_EVIDENCE", "SCHEMA", "collect_evidence", "write_evidence"]
