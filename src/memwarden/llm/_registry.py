"""The shrink protocol: every live memwarden.llm store, and one call to shrink them all.

Each store registers here (weakly: a store that is let go leaves by itself) and with memwarden's
cache registry (:func:`memwarden.watch`), so that it is sampled and reported. A store offers:

* ``shrink(fraction) -> int``: let the least recently used ``fraction`` go through its normal
  eviction path (summarised, archived), returning the bytes released;
* ``clear() -> int``: ``shrink(1.0)``;
* ``nbytes``: what it holds now.

:func:`shrink_all` is what a guard calls under memory pressure.
"""

from __future__ import annotations

import threading
import weakref
from typing import Protocol, runtime_checkable

from memwarden.attribution._caches import watch
from memwarden.exceptions import UsageError


@runtime_checkable
class Shrinkable(Protocol):
    """A store that can give memory back on request."""

    @property
    def nbytes(self) -> int: ...

    def shrink(self, fraction: float) -> int: ...

    def clear(self) -> int: ...


_STORES: weakref.WeakSet[object] = weakref.WeakSet()
_LOCK = threading.Lock()


def register(store: object, name: str, maxsize: int | None) -> None:
    """Register ``store`` with memwarden's cache registry and the shrink protocol."""
    watch(store, name, maxsize=maxsize)
    with _LOCK:
        _STORES.add(store)


def stores() -> list[Shrinkable]:
    """Every live registered store."""
    with _LOCK:
        return [s for s in list(_STORES) if isinstance(s, Shrinkable)]


def shrink_all(fraction: float) -> int:
    """Shrink every live registered store by ``fraction``; returns the bytes released in all.

    A store that fails to shrink (its archive is down, say) is skipped; the others still shrink.
    """
    if not 0 <= fraction <= 1:
        raise UsageError(f"fraction must be in [0, 1], not {fraction}")
    released = 0
    for store in stores():
        try:
            released += int(store.shrink(fraction))
        except Exception:  # a guard's call must not fail on one store
            continue
    return released
