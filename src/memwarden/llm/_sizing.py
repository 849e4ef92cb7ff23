"""How many bytes a value really keeps alive: its own size plus everything it alone refers to."""

from __future__ import annotations

import gc
import sys
import types
from typing import Any

_LEAVES = (str, bytes, int, float, bool, complex, type(None))
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def deep_sizeof(value: object, *, limit: int = 100_000) -> int:
    """Bytes held by ``value`` and what it refers to (each object counted once).

    Follows containers (dict, list, tuple, set, deque), instance dicts and slots through the
    garbage collector's referents; NumPy arrays count their buffer when they own it (a view counts
    its header only). Classes, modules and functions are shared, so they are not counted. At most
    ``limit`` objects are visited, so a huge graph costs a bounded time (and the figure is then a floor).
    """
    seen: set[int] = set()
    stack: list[Any] = [value]
    total = 0
    visited = 0
    while stack and visited < limit:
        obj = stack.pop()
        key = id(obj)
        if key in seen or isinstance(obj, _SKIP):
            continue
        seen.add(key)
        visited += 1
        try:
            total += sys.getsizeof(obj)
        except TypeError:
            continue
        if isinstance(obj, _LEAVES):
            continue
        if _is_array(obj):
            continue  # ndarray.__sizeof__ includes the buffer it owns; a view only its header
        if isinstance(obj, dict):  # the collector does not visit str keys; count them too
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)) or gc.is_tracked(obj):
            stack.extend(gc.get_referents(obj))
    return total


def _is_array(obj: object) -> bool:
    tp = type(obj)
    return tp.__name__ == "ndarray" and tp.__module__ == "numpy"
