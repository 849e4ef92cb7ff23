"""Chat backend that keeps a sliding window of history per conversation, for a fixed set of chats.

The fixed version of ``chat_history.py``: each of 100 conversations keeps its last 50 messages in
a ``collections.deque(maxlen=50)``, so adding a message beyond the window drops the oldest. The
conversation set is fixed (a support desk with 100 open tickets), so the history fills in the
first two to three seconds (about 5 MB) and then stays at its bound while chat traffic goes on.
A warm-up that levels off: ``plateau``, or ``stable`` if the fill is read as start-up.

memwarden-expect: plateau|stable
"""

from __future__ import annotations

import collections
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
TICKS_PER_SECOND = 100
REQUESTS_PER_TICK = 10
CONVERSATION_COUNT = 100
WINDOW = 50

HISTORIES: dict[str, collections.deque[dict[str, object]]] = {
    f"ticket-{i:04d}": collections.deque(maxlen=WINDOW) for i in range(CONVERSATION_COUNT)
}
PHRASES = [
    "I still have not received the parcel. ",
    "Could you check the tracking number again? ",
    "We have escalated this to the courier. ",
    "Thanks, that solved it. ",
]


def add_message(conversation_id: str, role: str, text: str) -> None:
    HISTORIES[conversation_id].append({"role": role, "text": text, "at": time.time()})


def handle_request(rng: random.Random, request_id: int) -> None:
    """One chat turn on one of the open tickets."""
    conversation_id = f"ticket-{request_id % CONVERSATION_COUNT:04d}"
    add_message(conversation_id, "user", f"[{request_id}] " + rng.choice(PHRASES) * 20)
    add_message(conversation_id, "agent", f"[{request_id}] " + rng.choice(PHRASES) * 30)


def main() -> None:
    rng = random.Random(53)
    period = 1.0 / TICKS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            handle_request(rng, served)
            served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    messages = sum(len(history) for history in HISTORIES.values())
    print(f"bounded_history: served {served} requests, {messages} messages in {len(HISTORIES)} windows")


if __name__ == "__main__":
    main()
