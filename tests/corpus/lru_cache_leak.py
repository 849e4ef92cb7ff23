"""Pricing service memoising its price cards with ``functools.lru_cache(maxsize=None)``.

``price_card(sku, locale, request_id)`` renders a ~0.7 KB card. The request id is part of the key
(it is printed in the card's footer), so every call is a miss and the unbounded cache keeps every
card it ever rendered: about 3,000 cards a second, roughly 2 MB/s. ``cache_info()`` shows
``maxsize=None`` and ``currsize`` climbing with the request count.

memwarden-expect: python_leak
memwarden-leak-function: price_card
memwarden-holder: price_card
"""

from __future__ import annotations

import functools
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
CALLS_PER_TICK = 30  # 100 ticks a second
CACHE_SIZE: int | None = None

TEMPLATE = (
    "<div class='card'><h3>{sku}</h3><p>{price}</p><ul>{rows}</ul><footer>{locale} {rid}</footer></div>"
)


@functools.lru_cache(maxsize=CACHE_SIZE)
def price_card(sku: str, locale: str, request_id: int) -> str:
    rows = "".join(f"<li>tier {t}: {(request_id % 97) * t / 7:.2f}</li>" for t in range(24))
    return TEMPLATE.format(sku=sku, price=request_id % 1000, rows=rows, locale=locale, rid=request_id)


def main() -> None:
    rng = random.Random(8)
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    calls = 0
    chars = 0
    while time.monotonic() < deadline:
        for _ in range(CALLS_PER_TICK):
            chars += len(price_card(f"SKU-{rng.randrange(5000):04d}", rng.choice(("en", "de", "fr")), calls))
            calls += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"{os.path.basename(__file__)[:-3]}: {calls} calls, {price_card.cache_info()} ({chars} chars)")


if __name__ == "__main__":
    main()
