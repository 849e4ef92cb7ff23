"""Product page service with a correctly bounded render cache: it fills, then stays at its bound.

``render_product_card`` is memoised with ``functools.lru_cache(maxsize=2000)``. Requests ask for
products spread over a large catalogue, so the cache fills in the first two to three seconds
(about 14 MB of rendered HTML) and from then on every new entry evicts the least recently used
one. Memory rises, then levels off while requests keep coming: a warm-up, not a leak.
``cache_info()`` shows ``currsize == maxsize``.

memwarden-expect: plateau
"""

from __future__ import annotations

import functools
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
TICKS_PER_SECOND = 100
REQUESTS_PER_TICK = 8
CATALOGUE_SIZE = 1_000_000
CACHE_SIZE = 2000

CARD_TEMPLATE = (
    '<article class="product" id="p{product_id}"><h2>Product {product_id}</h2>'
    '<p class="price">{price:.2f} EUR</p><ul>{features}</ul></article>'
)
FEATURE = "<li>Feature {n} of product {product_id}: weatherproof, recyclable, two-year warranty.</li>"


@functools.lru_cache(maxsize=CACHE_SIZE)
def render_product_card(product_id: int) -> str:
    features = "".join(FEATURE.format(n=n, product_id=product_id) for n in range(80))
    return CARD_TEMPLATE.format(product_id=product_id, price=product_id % 997 / 3, features=features)


def main() -> None:
    rng = random.Random(41)
    period = 1.0 / TICKS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    while time.monotonic() < deadline:
        for _ in range(REQUESTS_PER_TICK):
            render_product_card(rng.randrange(CATALOGUE_SIZE))
            served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"bounded_cache_fills: served {served} requests, {render_product_card.cache_info()}")


if __name__ == "__main__":
    main()
