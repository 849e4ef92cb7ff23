"""Chat gateway that memoises prompt rendering on a key that is unique per request.

Someone put ``@functools.lru_cache(maxsize=None)`` on ``render_prompt`` so that retries would not
re-render the prompt, but the arguments include the request id, a fresh ``uuid4`` string on every
request. Every call is a miss, and every rendered prompt (about 2.5 KB of text) stays in the
cache forever: roughly 0.5 MB/s. ``render_prompt.cache_info()`` shows ``maxsize=None`` and a
``currsize`` that only grows. The fix is a bound (``maxsize=1024``) or a key without the id.

memwarden-expect: python_leak
memwarden-leak-function: render_prompt
memwarden-holder: render_prompt
"""

from __future__ import annotations

import functools
import os
import random
import time
import uuid

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 200

SYSTEM_PROMPT = (
    "You are a careful assistant for an online bookshop. Answer in the customer's language, "
    "cite the order number when you refer to an order, never invent prices, and hand over to a "
    "human agent when the customer asks for a refund above the automatic limit. "
) * 6
PROMPT_TEMPLATE = "{system}\n\n[request {request_id}]\nCustomer {user}: {question}\nAssistant:"
USERS = [f"customer-{i:05d}" for i in range(500)]
QUESTIONS = [
    "Where is my order?",
    "Can I change the delivery address?",
    "Do you ship to Norway?",
    "The second volume arrived damaged, what now?",
]


@functools.lru_cache(maxsize=None)  # noqa: UP033 (the spelling found in real services)
def render_prompt(request_id: str, user: str, question: str) -> str:
    return PROMPT_TEMPLATE.format(system=SYSTEM_PROMPT, request_id=request_id, user=user, question=question)


def handle_request(rng: random.Random) -> int:
    """Answer one chat request; returns the prompt length sent to the model."""
    prompt = render_prompt(str(uuid.uuid4()), rng.choice(USERS), rng.choice(QUESTIONS))
    return len(prompt)


def main() -> None:
    rng = random.Random(3)
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        handle_request(rng)
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"lru_cache_uuid: served {served} requests, {render_prompt.cache_info()}")


if __name__ == "__main__":
    main()
