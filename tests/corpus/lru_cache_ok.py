"""Pricing service memoising its price cards with ``functools.lru_cache(maxsize=10000)``.

``lru_cache_leak`` with a bound: every call is still a miss (the request id is in the key), but the
cache stops at 10,000 cards (~7 MB) after about 3.3 seconds and from then on evicts the oldest
card for each new one. Memory rises, then levels off while calls keep coming: a warm-up, not a leak.

memwarden-expect: plateau
"""

from __future__ import annotations

import functools
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
CALLS_PER_TICK = 30  # 100 ticks a second
CACHE_SIZE: int | None = 10_000

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
