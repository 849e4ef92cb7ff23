"""LangGraph: prune an ``InMemorySaver`` so a long-lived graph's checkpoints stop piling up.

``InMemorySaver`` (``MemorySaver``) adds a checkpoint, its pending writes and a blob per changed
channel at every super-step of every thread, and never drops one. :func:`prune_checkpoints`
keeps the newest ``keep_last`` checkpoints of each thread (what resuming and short time travel
need), deletes the older ones with their writes, and deletes every blob no kept checkpoint
refers to. Call it after each run, or from a timer; ``idle_threads`` also drops whole threads.

    from memwarden.llm.integrations.langgraph import prune_checkpoints
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, config)
    prune_checkpoints(saver, keep_last=2)

Needs ``langgraph`` (``pip install "memwarden[langgraph]"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from memwarden.exceptions import UsageError


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_checkpoints` deleted, and the serialised bytes that went with it."""

    checkpoints: int
    writes: int
    blobs: int
    threads: int
    nbytes: int


def prune_checkpoints(saver: Any, *, keep_last: int = 1, idle_threads: Iterable[str] = ()) -> PruneReport:
    """Keep the newest ``keep_last`` checkpoints per thread and namespace of an ``InMemorySaver``;
    delete older checkpoints, their writes, unreferenced blobs, and the ``idle_threads`` whole."""
    if keep_last < 1:
        raise UsageError(f"keep_last must be >= 1, not {keep_last}")
    for attr in ("storage", "writes", "blobs", "serde"):
        if not hasattr(saver, attr):
            raise UsageError(
                f"prune_checkpoints works on langgraph's InMemorySaver, not {type(saver).__name__}"
            )
    storage, writes, blobs = saver.storage, saver.writes, saver.blobs
    dropped_checkpoints = dropped_writes = dropped_blobs = nbytes = 0
    idle = set(idle_threads)
    for thread in list(idle):
        if thread in storage:
            for per_ns in storage.pop(thread).values():
                dropped_checkpoints += len(per_ns)
                nbytes += sum(_size(v) for v in per_ns.values())
    keep_versions: set[tuple[str, str, str, Any]] = set()
    for thread, namespaces in storage.items():
        for ns, checkpoints in namespaces.items():
            ids = sorted(checkpoints)  # checkpoint ids are time-ordered (uuid6)
            for old in ids[:-keep_last]:
                nbytes += _size(checkpoints.pop(old))
                dropped_checkpoints += 1
            for stored in checkpoints.values():
                checkpoint = saver.serde.loads_typed(stored[0])
                for channel, version in checkpoint.get("channel_versions", {}).items():
                    keep_versions.add((thread, ns, channel, version))
    for key in list(writes):
        thread, ns, checkpoint_id = key[0], key[1], key[2]
        if thread in idle or checkpoint_id not in storage.get(thread, {}).get(ns, {}):
            nbytes += _size(writes.pop(key))
            dropped_writes += 1
    for key in list(blobs):
        if key not in keep_versions:
            nbytes += _size(blobs.pop(key))
            dropped_blobs += 1
    return PruneReport(dropped_checkpoints, dropped_writes, dropped_blobs, len(idle), nbytes)


def _size(value: Any) -> int:
    """Serialised bytes inside a stored tuple or dict (what the saver keeps)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_size(v) for v in value)
    return 0
