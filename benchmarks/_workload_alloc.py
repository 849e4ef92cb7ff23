"""An allocation-heavy workload with a fixed amount of work, for measuring memwarden's overhead.

It builds and drops dicts, lists and strings in a loop: ``--rounds`` rounds (default 90 000, about
six seconds on a 2020s server core). The work is fixed, not the time, so a slower run means overhead.
Nothing is retained between rounds, so memory is flat: memwarden should call it ``stable``.

    python benchmarks/_workload_alloc.py [--rounds N]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

ROWS_PER_ROUND = 60


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fixed-work allocation-heavy loop")
    parser.add_argument("--rounds", type=int, default=90_000)
    args = parser.parse_args(argv)
    checksum = 0
    for round_number in range(args.rounds):
        checksum = (checksum + one_round(round_number)) % 1_000_003
    print(f"rounds={args.rounds} checksum={checksum}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
