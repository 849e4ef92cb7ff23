"""Upload service that keeps every failed request's exception for a debug page, and never trims it.

``RECENT_ERRORS`` was meant to show the last few validation errors on ``/debug/errors``, but
nothing ever removes an entry. Each stored exception keeps its ``__traceback__``, the traceback
keeps the frames it passed through, and those frames keep their locals: the raw upload body and
every row that ``parse_upload`` split out of it. One rejected 8 KB CSV upload therefore pins about
90 KB; one upload in ten is rejected (six a second), so memory grows by roughly 0.5 MB/s. The fix
is to keep ``traceback.format_exception(exc)`` text in a bounded deque, or to drop the traceback.

memwarden-expect: python_leak
memwarden-leak-function: parse_upload
memwarden-holder: RECENT_ERRORS
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 60
BAD_UPLOAD_EVERY = 10
ROWS = 200
COLUMNS = 5

RECENT_ERRORS: list[Exception] = []


def receive_upload(rng: random.Random, bad: bool) -> bytes:
    """The request body: a CSV of ROWS rows; a bad one has a short row near the end."""
    lines = []
    for row in range(ROWS):
        fields = [f"{rng.randrange(10**6):06d}", "item", f"{rng.random():.4f}", "EUR", "ok"]
        if bad and row == ROWS - 3:
            fields = fields[:3]
        lines.append(",".join(fields))
    return "\n".join(lines).encode("ascii")


def parse_upload(body: bytes) -> list[list[str]]:
    text = body.decode("ascii")
    rows = []
    for line in text.splitlines():
        rows.append(line.split(","))
    for number, row in enumerate(rows):
        if len(row) != COLUMNS:
            raise ValueError(f"row {number}: expected {COLUMNS} columns, got {len(row)}")
    return rows


def handle_request(request_id: int, rng: random.Random) -> int:
    """Accept one upload; returns the HTTP status sent back."""
    body = receive_upload(rng, bad=request_id % BAD_UPLOAD_EVERY == BAD_UPLOAD_EVERY - 1)
    try:
        rows = parse_upload(body)
    except ValueError as exc:
        RECENT_ERRORS.append(exc)
        return 422
    return 200 if rows else 204


def main() -> None:
    rng = random.Random(5)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(served, rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"stored_exceptions: served {served} requests, {len(RECENT_ERRORS)} errors kept")


if __name__ == "__main__":
    main()
