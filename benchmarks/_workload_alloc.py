"""An allocation-heavy workload with a fixed amount of work, for measuring memwarden's overhead.

It builds and drops dicts, lists and strings in a loop: ``--rounds`` rounds (default 90 000, about
six seconds on a 2020s server core). The work is fixed, not the time, so a slower run means overhead.
Nothing is retained between rounds, so memory is flat: memwarden should call it ``stable``.

With ``--leak-kbps K`` it also keeps about K KB per second of small records in a module global
(``remember_request``, paced by the clock, not by the rounds): the same churn with a slow leak
under it, for ``benchmarks/leak_rate.py``.

    python benchmarks/_workload_alloc.py [--rounds N] [--leak-kbps K]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

ROWS_PER_ROUND = 60
RECORD_BYTES = 440  # one kept record: its dict, its 200-character payload and its list slot (sys.getsizeof)
KEPT: list[dict[str, object]] = []


def one_round(round_number: int) -> int:
    """Build a small table of records, index it, render it, and drop it all."""
    rows = []
    for j in range(ROWS_PER_ROUND):
        rows.append(
            {
                "id": round_number * ROWS_PER_ROUND + j,
                "name": f"item-{round_number}-{j}",
                "tags": [str(j), "sale" if j % 3 else "new", f"bucket{j % 7}"],
                "price": j * 0.25 + round_number % 10,
            }
        )
    index = {row["name"]: row for row in rows}
    rendered = ";".join(f"{row['name']}={row['price']:.2f}" for row in rows)
    pairs = sorted(zip(rendered.split(";"), range(len(rows)), strict=True))
    return len(index) + len(rendered) + len(pairs)


def remember_request(request_id: int) -> None:
    """The leak: every request's record is kept, and nothing ever reads or drops it."""
    KEPT.append({"request": request_id, "payload": f"{request_id:08d}" + "x" * 192})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fixed-work allocation-heavy loop")
    parser.add_argument("--rounds", type=int, default=90_000)
    parser.add_argument("--leak-kbps", type=float, default=0.0, help="also keep this many KB per second")
    args = parser.parse_args(argv)
    checksum = 0
    started = time.monotonic()
    kept = 0
    for round_number in range(args.rounds):
        checksum = (checksum + one_round(round_number)) % 1_000_003
        if args.leak_kbps > 0:
            due = int((time.monotonic() - started) * args.leak_kbps * 1000 / RECORD_BYTES)
            while kept < due:
                remember_request(kept)
                kept += 1
    print(f"rounds={args.rounds} checksum={checksum} kept={kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
