"""A short program that leaks fast: fixed work, every record kept in a module-level dict.

``build_record`` makes one session record (a dict with a 1 KB payload and a list of tokens) and
``remember_session`` files it in ``SESSIONS`` under a fresh key; nothing ever reads or drops it.
Each round also does a little churn (a sorted, joined batch that is dropped). The work is fixed,
not the time, so a slower run means overhead: the default 100 000 records keep about 180 MiB and
take about 5 s on a 2-core shared VM.

The leak a tool should name: the site ``build_record`` (or ``remember_session``), held by ``SESSIONS``.

    python benchmarks/_workload_fastleak.py [--records N]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

SESSIONS: dict[str, dict[str, object]] = {}
PAYLOAD = "s" * 1000


def build_record(session_id: int) -> dict[str, object]:
    """One session's record: its id, a 1 KB payload and a few tokens (about 1.8 KB in all)."""
    return {
        "id": session_id,
        "payload": f"{session_id:010d}" + PAYLOAD,
        "tokens": [f"tok-{session_id}-{k}" for k in range(8)],
    }


def remember_session(session_id: int) -> None:
    """The leak: every session is kept, keyed by a fresh id."""
    SESSIONS[f"session-{session_id:010d}"] = build_record(session_id)


def churn(session_id: int) -> int:
    """Work that is dropped at once: a small sorted, joined batch."""
    batch = sorted(f"{(session_id * 7919 + k) % 10007:05d}" for k in range(40))
    return len(";".join(batch))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fixed-work fast leak into a module-level dict")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    checksum = 0
    for session_id in range(args.records):
        remember_session(session_id)
        checksum = (checksum + churn(session_id)) % 1_000_003
    print(f"records={len(SESSIONS)} checksum={checksum}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
