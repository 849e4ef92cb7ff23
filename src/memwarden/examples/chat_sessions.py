"""A chat backend's session history, unbounded or kept by memwarden.llm's stores: try both under memwarden.

    memwarden run -m memwarden.examples.chat_sessions              # history in a dict: python_leak
    memwarden run -m memwarden.examples.chat_sessions --bounded  # memwarden.llm: plateau or stable

It serves chat turns for ten seconds (``--seconds N``): each turn stores a user message and an
assistant reply in one of many sessions (new ones keep arriving, as in a real service) and then
builds the next prompt from the history. Unbounded, ``SESSIONS`` maps each session id to the
list of all its messages (dicts with their metadata) and nothing ever drops one: the usual
LLM-service leak, about 0.4 MB/s. With ``--bounded``, a :class:`memwarden.llm.SessionStore` keeps at most 100 sessions
of at most 8 messages each (full within the first seconds), archives what it lets go to an
SQLite file, and reports its size to memwarden's cache registry.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Sequence

TURNS_PER_SECOND = 150
NEW_SESSION_SHARE = 0.3

SESSIONS: dict[str, list[dict[str, object]]] = {}
_TEXT = (
    "your order shipped yesterday tracking number parcel courier delivery address refund invoice book "
    "edition paperback warehouse stock voucher discount please thanks sorry tomorrow weekend café déjà"
)
WORDS = _TEXT.split()


def reply(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def store_turn_unbounded(session: str, user: str, assistant: str) -> int:
    history = SESSIONS.setdefault(session, [])
    now = time.time()
    history.append({"role": "user", "content": user, "meta": {"at": now}})
    history.append({"role": "assistant", "content": assistant, "meta": {"at": now, "model": "gpt-x"}})
    return len(history[-12:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="memwarden.examples.chat_sessions")
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "10"))
    )
    parser.add_argument(
        "--bounded", action="store_true", help="keep the history in memwarden.llm's SessionStore"
    )
    args = parser.parse_args(argv)
    rng = random.Random(5)
    tmp = tempfile.TemporaryDirectory()
    store = None
    if args.bounded:
        from memwarden.llm import SessionStore, SQLiteArchive

        store = SessionStore(
            max_sessions=100,
            memory={"max_messages": 8, "counter": "approx"},
            archive=SQLiteArchive(os.path.join(tmp.name, "archive.db")),
            archive_every=64,
            name="memwarden.examples.chat_sessions.store",
        )
    sessions = 0
    period = 1.0 / TURNS_PER_SECOND
    deadline = time.monotonic() + args.seconds
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        if sessions == 0 or rng.random() < NEW_SESSION_SHARE:
            sessions += 1
            session = f"session-{sessions:07d}"
        else:
            session = f"session-{rng.randint(max(1, sessions - 400), sessions):07d}"
        user, assistant = reply(rng, 60), reply(rng, 180)
        if store is None:
            store_turn_unbounded(session, user, assistant)
        else:
            store.append(session, "user", user)
            store.append(session, "assistant", assistant)
            store.get(session).as_chat()
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    if store is not None:
        store.flush()
        print(
            f"chat_sessions (bounded): {served} turns, {len(store)} live sessions, "
            f"{store.stats().archived_messages} messages archived"
        )
    else:
        print(
            f"chat_sessions (unbounded): {served} turns, {len(SESSIONS)} sessions, "
            f"{sum(len(h) for h in SESSIONS.values())} messages kept"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
