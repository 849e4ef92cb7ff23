"""The README's example: ``with memwarden.Monitor(interval=0.5) as mon:`` around a dict that grows.

``handle_requests`` serves for ``MEMWARDEN_SCENARIO_SECONDS`` and ``remember`` stores ~100 new
entries every 10 ms in ``STORE`` (a short string each, about 10,000 blocks and ~1 MB a second),
all inside the ``with`` block, as the README shows. This one runs memwarden itself, in-process:
run it with plain ``python``. It prints the verdict's summary, and writes the verdict JSON to the
path in ``MEMWARDEN_CORPUS_JSON`` when that is set (how the benchmark and the tests read it);
with ``MEMWARDEN_CORPUS_PLAIN`` set it serves without the monitor (the benchmark's plain wall time).

memwarden-expect: python_leak
memwarden-leak-function: remember
memwarden-holder: STORE
memwarden-inprocess: yes
"""

from __future__ import annotations

import json
import os
import time

import memwarden

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
ENTRIES_PER_TICK = 100  # 100 ticks a second
KEYS: int | None = None  # None: every key is new
STORE: dict[str, str] = {}


def remember(i: int) -> None:
    key = f"session-{i if KEYS is None else i % KEYS:09d}"
    STORE[key] = f"user={i * 7919 % 1_000_003};cart={i % 977};seen={time.time():.6f};" + "x" * 24


def handle_requests() -> int:
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        for _ in range(ENTRIES_PER_TICK):
            remember(served)
            served += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return served


def main() -> None:
    if os.environ.get("MEMWARDEN_CORPUS_PLAIN"):  # the benchmark's plain-python wall time: no monitor
        print(f"{os.path.basename(__file__)[:-3]}: {handle_requests()} requests (unmonitored)")
        return
    with memwarden.Monitor(interval=0.5) as mon:
        served = handle_requests()
    verdict = mon.verdict
    assert verdict is not None
    print(f"{os.path.basename(__file__)[:-3]}: {served} requests, {len(STORE)} entries; {verdict.summary}")
    out = os.environ.get("MEMWARDEN_CORPUS_JSON")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(verdict.to_json(), f)


if __name__ == "__main__":
    main()
