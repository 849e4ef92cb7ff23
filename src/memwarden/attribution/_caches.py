"""Caches: every ``lru_cache``, every cachetools cache, every container you asked to watch.

A cache that never evicts is the most common "leak" in long-running services: an
``lru_cache(maxsize=None)`` keyed by user input, a module-level dict of embeddings. This module
finds them all and measures them, so diagnosis can say *which* cache grows and whether anything
bounds it:

* every ``functools.lru_cache`` / ``functools.cache`` wrapper alive in the process (found among
  the objects the garbage collector tracks), with its hits, misses, size and bound;
* every ``cachetools`` cache (``Cache`` and its subclasses), but only when the program already
  imported cachetools: memwarden never imports it;
* any container registered with :func:`watch` (a dict, a list, anything with ``len()``).

:func:`cache_growth` compares two readings and lists the caches that grew, unbounded ones
first.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from memwarden._introspect import is_a, module_namespace, type_module, type_namespace
from memwarden.attribution._holders import attribute_name, is_memwarden_module, qualified_type_name
from memwarden.exceptions import UsageError

CacheKind = Literal["lru_cache", "cachetools", "watched"]

_LRU_WRAPPER: type = functools._lru_cache_wrapper
_C = TypeVar("_C")


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """One cache and how full it is now.

    ``name`` is where the cache lives (``app.templates.get_prompt_template``,
    ``app.cache.EmbeddingCache._cache``); ``maxsize`` is its bound, None when nothing bounds it;
    ``currsize`` how much it holds (entries, or the cache's own size unit for cachetools caches
    with a ``getsizeof``); ``hits``/``misses`` where the cache counts them. ``object_id`` is the
    cache's ``id()``, to match two readings of the same cache.
    """

    name: str
    kind: CacheKind
    maxsize: int | None
    currsize: int
    hits: int | None
    misses: int | None
    object_id: int = 0


@dataclasses.dataclass(frozen=True)
class CacheGrowth:
    """A cache that grew between two readings, and how fast."""

    name: str
    kind: CacheKind
    maxsize: int | None
    currsize: int
    growth_per_s: float
    unbounded: bool


class _Watched:
    __slots__ = ("maxsize", "name", "ref", "strong")

    def __init__(self, name: str | None, maxsize: int | None, ref: Any, strong: object) -> None:
        self.name = name
        self.maxsize = maxsize
        self.ref = ref
        self.strong = strong

    def get(self) -> object:
        return self.strong if self.ref is None else self.ref()


class _Watchlist:
    """The containers registered with :func:`watch`, held weakly where the type allows it."""

    def __init__(self) -> None:
        self._entries: dict[int, _Watched] = {}
        self._lock = threading.Lock()

    def add(self, obj: object, name: str | None, maxsize: int | None) -> None:
        key = id(obj)

        def forget(_: object, key: int = key) -> None:
            with self._lock:
                self._entries.pop(key, None)

        try:
            entry = _Watched(name, maxsize, weakref.ref(obj, forget), None)
        except TypeError:  # dict, list, set: not weakly referenceable, so held strongly
            entry = _Watched(name, maxsize, None, obj)
        with self._lock:
            self._entries[key] = entry

    def remove(self, obj: object) -> bool:
        with self._lock:
            entry = self._entries.get(id(obj))
            if entry is not None and entry.get() is obj:
                del self._entries[id(obj)]
                return True
        return False

    def items(self) -> list[tuple[object, _Watched]]:
        with self._lock:
            entries = list(self._entries.values())
        out: list[tuple[object, _Watched]] = []
        for entry in entries:
            obj = entry.get()
            if obj is not None:
                out.append((obj, entry))
        return out

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_WATCHLIST = _Watchlist()


def watch(obj: _C, name: str | None = None, *, maxsize: int | None = None) -> _C:
    """Have :func:`find_caches` report this container (its ``len()``) from now on.

    ``name`` is how reports call it (found from where the program keeps it when omitted);
    ``maxsize`` is the bound you enforce yourself, if any (None: unbounded). The container is
    held weakly when its type allows (a plain ``dict`` or ``list`` does not: it is then held
    until :func:`unwatch`). Returns ``obj``, so ``CACHE = watch({}, "app.CACHE")`` works.
    """
    if not hasattr(type(obj), "__len__"):
        raise UsageError(f"watch() needs a container with len(), not {type(obj).__name__}")
    if maxsize is not None and maxsize < 0:
        raise UsageError(f"maxsize must be None or >= 0, not {maxsize}")
    _WATCHLIST.add(obj, name, maxsize)
    return obj


def unwatch(obj: object) -> bool:
    """Stop reporting a watched container; False if it was not watched."""
    return _WATCHLIST.remove(obj)


def find_caches(*, objects: Callable[[], Iterable[object]] | None = None) -> list[CacheInfo]:
    """Every lru_cache wrapper, cachetools cache and watched container alive now.

    ``objects`` supplies the objects to look through (default ``gc.get_objects``). One pass
    over them; caches that no module, class or instance names come out as ``Type@0x…``.
    Sorted by name.
    """
    cachetools = sys.modules.get("cachetools")
    cache_base = getattr(cachetools, "Cache", None) if cachetools is not None else None
    if not isinstance(cache_base, type):
        cache_base = None
    watched = _WATCHLIST.items()
    watched_ids = {id(obj) for obj, _ in watched}
    wrappers: list[object] = []
    others: list[object] = []
    is_cachetools: dict[type, bool] = {}
    source = objects() if objects is not None else gc.get_objects()
    for obj in source:
        tp = type(obj)
        if tp is _LRU_WRAPPER:
            wrappers.append(obj)
        elif cache_base is not None:
            hit = is_cachetools.get(tp)
            if hit is None:
                hit = is_cachetools[tp] = issubclass(tp, cache_base)
            if hit and id(obj) not in watched_ids:
                others.append(obj)
    del source
    infos = [_lru_info(w) for w in wrappers]
    unnamed = others + [obj for obj, entry in watched if entry.name is None]
    names = _names_for(unnamed) if unnamed else {}
    for obj in others:
        infos.append(_cachetools_info(obj, names.get(id(obj)) or _anonymous(obj)))
    for obj, entry in watched:
        infos.append(_watched_info(obj, entry, entry.name or names.get(id(obj)) or _anonymous(obj)))
    infos.sort(key=lambda info: (info.name, info.object_id))
    return infos


def cache_growth(before: Sequence[CacheInfo], after: Sequence[CacheInfo], dt_s: float) -> list[CacheGrowth]:
    """The caches that grew from ``before`` to ``after`` (``dt_s`` seconds apart).

    Unbounded caches come first, then the fastest growing. A cache absent from ``before``
    counts as having started empty. A bounded cache full to its bound does not grow, so it
    is not listed.
    """
    if not dt_s > 0:
        raise UsageError(f"dt_s must be positive, not {dt_s}")
    earlier = {(c.kind, c.object_id, c.name): c for c in before}
    out: list[CacheGrowth] = []
    for cache in after:
        prev = earlier.get((cache.kind, cache.object_id, cache.name))
        grown = cache.currsize - (prev.currsize if prev is not None else 0)
        if grown <= 0:
            continue
        out.append(
            CacheGrowth(
                name=cache.name,
                kind=cache.kind,
                maxsize=cache.maxsize,
                currsize=cache.currsize,
                growth_per_s=grown / dt_s,
                unbounded=cache.maxsize is None,
            )
        )
    out.sort(key=lambda g: (not g.unbounded, -g.growth_per_s, g.name))
    return out


def _lru_info(wrapper: Any) -> CacheInfo:
    module = getattr(wrapper, "__module__", None)
    qualname = getattr(wrapper, "__qualname__", None) or getattr(wrapper, "__name__", None) or "<lru_cache>"
    name = f"{module}.{qualname}" if isinstance(module, str) and module else str(qualname)
    hits: int | None = None
    misses: int | None = None
    maxsize: object = None
    currsize = 0
    try:
        info = wrapper.cache_info()
        hits, misses, maxsize, currsize = int(info.hits), int(info.misses), info.maxsize, int(info.currsize)
    except Exception:  # a wrapper in an odd state must not stop the scan
        pass
    return CacheInfo(name, "lru_cache", _bound(maxsize), currsize, hits, misses, id(wrapper))


def _cachetools_info(cache: Any, name: str) -> CacheInfo:
    try:
        maxsize = _bound(cache.maxsize)
        currsize = int(cache.currsize)
    except Exception:
        maxsize, currsize = None, _length(cache)
    return CacheInfo(name, "cachetools", maxsize, currsize, None, None, id(cache))


def _watched_info(obj: object, entry: _Watched, name: str) -> CacheInfo:
    # a store that knows its own size and bound (memwarden.llm's stores) reports them itself:
    # ``__memwarden_cache__() -> (currsize, maxsize)``, in the unit that bounds it
    own = getattr(type(obj), "__memwarden_cache__", None)
    if own is not None:
        try:
            currsize, maxsize = own(obj)
            return CacheInfo(name, "watched", _bound(maxsize), int(currsize), None, None, id(obj))
        except Exception:  # a store in an odd state must not stop the scan
            pass
    return CacheInfo(name, "watched", entry.maxsize, _length(obj), None, None, id(obj))


def _bound(maxsize: object) -> int | None:
    if maxsize is None or isinstance(maxsize, bool):
        return None
    if isinstance(maxsize, (int, float)):
        if isinstance(maxsize, float) and (math.isinf(maxsize) or math.isnan(maxsize)):
            return None
        return int(maxsize)
    return None


def _length(obj: object) -> int:
    try:
        return len(obj)  # type: ignore[arg-type]
    except Exception:
        return 0


def _anonymous(obj: object) -> str:
    return f"{qualified_type_name(type(obj))}@{id(obj):#x}"


def _names_for(objs: list[object]) -> dict[int, str]:
    """Where the program keeps each object: a module global, a class attribute, an attribute.

    Looks in module namespaces and the classes defined there first (cheap), then asks the
    garbage collector who refers to the rest (one pass over the heap).
    """
    wanted = {id(o): o for o in objs}
    names: dict[int, str] = {}
    for mod_name, module in list(sys.modules.items()):
        module_dict = module_namespace(module)
        if module_dict is None or is_memwarden_module(mod_name):
            continue
        try:
            namespace = list(module_dict.items())
        except RuntimeError:  # changed size while copied: another thread is importing
            continue
        for global_name, value in namespace:
            if id(value) in wanted and id(value) not in names:
                names[id(value)] = f"{mod_name}.{global_name}"
            elif is_a(value, type) and type_module(value) == mod_name:
                class_name = qualified_type_name(value)
                for cls_attr, cls_value in list(type_namespace(value).items()):
                    if id(cls_value) in wanted and id(cls_value) not in names:
                        names[id(cls_value)] = f"{class_name}.{cls_attr}"
        if len(names) == len(wanted):
            return names
    rest = [o for i, o in wanted.items() if i not in names]
    if not rest:
        return names
    referrers = [r for r in gc.get_referrers(*rest) if not _is_bookkeeping(r, wanted)]
    for owner in referrers:
        if is_a(owner, (list, tuple, set, frozenset)):
            continue
        for child in gc.get_referents(owner):
            cid = id(child)
            if cid not in wanted or cid in names:
                continue
            if is_a(owner, dict):
                continue  # an instance's dict: named from its owner below
            attr = attribute_name(owner, child)
            if attr is not None:
                names[cid] = f"{qualified_type_name(type(owner))}.{attr}"
    still = [o for i, o in wanted.items() if i not in names]
    if still:
        # on Python 3.10, or where an instance dict was made, the attribute lives in a dict
        dicts = [d for d in referrers if is_a(d, dict)]
        if dicts:
            for owner in gc.get_referrers(*dicts):
                if is_a(owner, (dict, list, tuple)) or _is_bookkeeping(owner, wanted):
                    continue
                for child in still:
                    if id(child) in names:
                        continue
                    attr = attribute_name(owner, child)
                    if attr is not None:
                        names[id(child)] = f"{qualified_type_name(type(owner))}.{attr}"
    del referrers
    return names


def _is_bookkeeping(obj: object, wanted: object) -> bool:
    """memwarden's own objects, and the frames running this search: never a cache's owner."""
    if obj is wanted or is_a(obj, types.FrameType):
        return True
    module = type_module(type(obj))
    return module is not None and is_memwarden_module(module)
