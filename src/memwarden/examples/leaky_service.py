"""A fake LLM chat service that leaks memory, for trying memwarden out.

Run it under memwarden::

    memwarden run -m memwarden.examples.leaky_service

It answers fake chat requests for ten seconds (``--seconds N`` to change that) and prints one
line per second. It makes two mistakes real LLM services make:

* ``remember_turn`` appends every turn to ``HISTORY``, a dict of conversation id to the list of
  its turns, and nothing ever trims a conversation or drops an idle one. This is the main leak,
  about 0.6 MB/s.
* ``system_prompt`` renders each user's system prompt once and memoises it with
  ``functools.lru_cache(maxsize=None)``: one entry per user, forever, as new users keep arriving.

memwarden should call it a ``python_leak`` and point at ``remember_turn``.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Sequence

REQUESTS_PER_SECOND = 40
NEW_USER_SHARE = 0.3
ANSWER_WORDS = 220

HISTORY: dict[str, list[dict[str, object]]] = {}

PERSONA = (
    "You are Quill, the support assistant of a bookshop. Be brief and friendly, quote order numbers, "
    "never promise delivery dates, and hand over to a person for refunds above 50 EUR. "
)
WORDS = (
    "your order shipped yesterday tracking number parcel courier delivery address refund invoice "
    "book volume edition paperback hardcover signed copy warehouse stock reprint voucher "
    "discount please thanks sorry certainly tomorrow morning afternoon weekend"
)
VOCABULARY = WORDS.split()
QUESTIONS = (
    "Where is my order?",
    "Can I still change the delivery address?",
    "Is the signed edition back in stock?",
    "The parcel arrived damaged, what now?",
    "Can I get an invoice with my company name?",
)


@functools.lru_cache(maxsize=None)  # noqa: UP033 (the spelling found in real services)
def system_prompt(user_id: str) -> str:
    """The system prompt for one user: the persona plus what we know about them."""
    return f"{PERSONA * 4}\nCustomer: {user_id}. Language: en. Tier: standard.\n"


def generate_answer(rng: random.Random, prompt: str) -> str:
    """Stand-in for the model: a plausible answer of ANSWER_WORDS words."""
    words = rng.choices(VOCABULARY, k=ANSWER_WORDS)
    return f"({len(prompt)} prompt chars) " + " ".join(words)


def remember_turn(conversation_id: str, question: str, answer: str) -> int:
    """Store one turn of a conversation; returns the size of the stored transcript."""
    transcript = f"User: {question}\nAssistant: {answer}\n"
    turn: dict[str, object] = {"transcript": transcript, "tokens": transcript.split(), "at": time.time()}
    HISTORY.setdefault(conversation_id, []).append(turn)
    return len(transcript)


def handle_request(rng: random.Random, users: list[str]) -> int:
    """Serve one chat request end to end; returns the bytes of history it added."""
    if not users or rng.random() < NEW_USER_SHARE:
        users.append(f"user-{len(users):06d}")
        user_id = users[-1]
    else:
        user_id = rng.choice(users)
    question = rng.choice(QUESTIONS)
    answer = generate_answer(rng, system_prompt(user_id) + question)
    return remember_turn(f"conv-{user_id}", question, answer)


def serve(seconds: float) -> None:
    """Serve requests for ``seconds`` seconds, printing a progress line each second."""
    rng = random.Random(2024)
    users: list[str] = []
    history_chars = 0
    served = 0
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    next_tick = start
    next_report = start + 1.0
    while (now := time.monotonic()) < start + seconds:
        history_chars += handle_request(rng, users)
        served += 1
        if now >= next_report:
            turns = sum(len(turns) for turns in HISTORY.values())
            print(
                f"[{now - start:4.0f}s] served {served} requests; history holds {turns} turns in "
                f"{len(HISTORY)} conversations ({history_chars / 1e6:.1f} MB of text); "
                f"prompt cache holds {system_prompt.cache_info().currsize} prompts",
                flush=True,
            )
            next_report += 1.0
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"done: served {served} requests in {time.monotonic() - start:.1f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m memwarden.examples.leaky_service [--seconds N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m memwarden.examples.leaky_service",
        description="A fake LLM chat service that leaks memory, for trying memwarden out.",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to serve (default: 10)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    serve(args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
