"""Web service whose per-request handlers subscribe to a config-reload event and never unsubscribe.

``EventBus.listeners`` is a class attribute: one list shared by the whole process. Each request
creates a ``RequestContext`` (request headers, body, user) and subscribes its bound method
``on_config_reload`` so that a config change during a long request is noticed. Nobody
unsubscribes when the request ends, so the bus keeps every bound method, each bound method keeps
its context, and each context keeps the request's headers and body: roughly 0.5 MB/s. The fix is
to unsubscribe in a ``finally`` block, or to hold listeners in a ``weakref.WeakMethod`` list.

memwarden-expect: python_leak
memwarden-leak-function: handle_request
memwarden-holder: EventBus.listeners
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import ClassVar

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 100
RELOAD_EVERY_S = 2.0


class EventBus:
    """Process-wide publish/subscribe for configuration events."""

    listeners: ClassVar[list[Callable[[dict[str, str]], None]]] = []

    @classmethod
    def subscribe(cls, listener: Callable[[dict[str, str]], None]) -> None:
        cls.listeners.append(listener)

    @classmethod
    def publish(cls, event: dict[str, str]) -> None:
        for listener in list(cls.listeners):
            listener(event)


class RequestContext:
    """Everything one request needs while it is being served."""

    def __init__(self, request_id: int, headers: dict[str, str], body: str) -> None:
        self.request_id = request_id
        self.headers = headers
        self.body = body
        self.config_version = "v1"

    def on_config_reload(self, event: dict[str, str]) -> None:
        self.config_version = event["version"]


def handle_request(request_id: int, rng: random.Random) -> int:
    headers = {
        "host": "api.example.com",
        "user-agent": f"shop-app/{rng.randrange(100)}.{rng.randrange(10)} (build {rng.randrange(10**6)})",
        "x-request-id": f"req-{request_id:010d}-{rng.getrandbits(64):016x}",
        "authorization": f"Bearer {rng.getrandbits(256):064x}",
        "accept-language": "en-GB,en;q=0.9",
        "cookie": ";".join(f"k{i}={rng.getrandbits(64):016x}" for i in range(12)),
    }
    body = f'{{"cart": [{", ".join(str(rng.randrange(10**9)) for _ in range(300))}]}}'
    context = RequestContext(request_id, headers, body)
    EventBus.subscribe(context.on_config_reload)
    return len(context.body)


def main() -> None:
    rng = random.Random(17)
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    deadline = start + SECONDS
    next_tick = start
    next_reload = start + RELOAD_EVERY_S
    served = 0
    while time.monotonic() < deadline:
        handle_request(served, rng)
        served += 1
        if time.monotonic() >= next_reload:
            EventBus.publish({"version": f"v{served}"})
            next_reload += RELOAD_EVERY_S
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"listener_leak: served {served} requests, {len(EventBus.listeners)} listeners subscribed")


if __name__ == "__main__":
    main()
