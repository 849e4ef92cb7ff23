"""Chat backend that keeps every conversation's full history in memory, forever.

``CONVERSATIONS`` maps a conversation id to the list of its messages. ``add_message`` decodes the
request payload and appends a message dict (role, text, the text's tokens kept for context-window
accounting, a timestamp). Conversations are never trimmed, summarised or archived, and new ones
keep starting, so the dict grows by roughly 0.4 MB/s: the unbounded-context leak of LLM services.
The fix is a sliding window (``collections.deque(maxlen=...)``) and archiving idle conversations.

memwarden-expect: python_leak
memwarden-leak-function: add_message
memwarden-holder: CONVERSATIONS
"""

from __future__ import annotations

import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 25
NEW_CONVERSATION_SHARE = 0.2

CONVERSATIONS: dict[str, list[dict[str, object]]] = {}
WORDS = (
    "the order shipment refund account password invoice delivery address warehouse customer "
    "tracking number parcel courier weekend monday please thanks could would update status "
    "payment card declined retry subscription plan upgrade cancel renew discount voucher"
)
VOCABULARY = WORDS.split()


def add_message(conversation_id: str, role: str, payload: bytes) -> None:
    text = payload.decode("utf-8")
    message = {"role": role, "text": text, "tokens": text.split(), "at": time.time()}
    CONVERSATIONS.setdefault(conversation_id, []).append(message)


def fake_completion(rng: random.Random, words: int) -> bytes:
    """What the model would answer; arrives as bytes, like a request body."""
    return " ".join(rng.choices(VOCABULARY, k=words)).encode("utf-8")


def handle_request(rng: random.Random) -> None:
    """One chat turn: store the user's message and the assistant's reply."""
    if not CONVERSATIONS or rng.random() < NEW_CONVERSATION_SHARE:
        conversation_id = f"conv-{len(CONVERSATIONS):07d}"
    else:
        conversation_id = f"conv-{rng.randrange(len(CONVERSATIONS)):07d}"
    add_message(conversation_id, "user", fake_completion(rng, 40))
    add_message(conversation_id, "assistant", fake_completion(rng, 150))


def main() -> None:
    rng = random.Random(11)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    messages = sum(len(history) for history in CONVERSATIONS.values())
    print(f"chat_history: served {served} requests, {len(CONVERSATIONS)} conversations, {messages} messages")


if __name__ == "__main__":
    main()
