"""Templating service that creates cyclic garbage per request and collects it between requests.

Each request builds a document tree in which every node points at its parent and its children
(reference cycles), renders it and drops it. Reference counting alone cannot free cycles; the
cyclic garbage collector does. Like many latency-tuned services this one turns automatic
collection off (``gc.disable()``) and runs ``gc.collect()`` between requests every two seconds,
so garbage piles up (about 25 MB) before each collection knocks it back down: memory saws up and
down around a flat line. Nothing is retained; this is not a leak. Each cycle may leave pymalloc an
arena or two it cannot give back (a pool still in use pins its arena), so RSS's floor can creep up
a few MiB: sampled fast enough to see that, the allocator's retention is as right an answer.

memwarden-expect: stable|allocator_retention
"""

from __future__ import annotations

import gc
import os
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 100
NODES_PER_DOCUMENT = 500
COLLECT_EVERY_S = 2.0


def build_document(request_id: int) -> dict[str, object]:
    """A tree of NODES_PER_DOCUMENT nodes with parent back-references."""
    root: dict[str, object] = {"tag": "html", "parent": None, "children": [], "text": ""}
    parent = root
    for i in range(NODES_PER_DOCUMENT):
        node: dict[str, object] = {
            "tag": "div",
            "parent": parent,
            "children": [],
            "text": f"r{request_id} n{i}",
        }
        parent["children"].append(node)
        if i % 10 == 9:
            parent = node
    return root


def render(root: dict[str, object]) -> int:
    """Walk the tree and count the characters it would render to."""
    size = 0
    stack = [root]
    while stack:
        node = stack.pop()
        size += len(str(node["text"])) + 11
        stack.extend(node["children"])
    return size


def main() -> None:
    gc.disable()
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    deadline = start + SECONDS
    next_tick = start
    next_collect = start + COLLECT_EVERY_S
    served = 0
    collected = 0
    try:
        while time.monotonic() < deadline:
            render(build_document(served))
            served += 1
            if time.monotonic() >= next_collect:
                collected += gc.collect()
                next_collect += COLLECT_EVERY_S
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        gc.enable()
    print(f"gc_sawtooth: served {served} requests, collected {collected} objects")


if __name__ == "__main__":
    main()
