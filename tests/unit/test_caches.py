"""Caches: finding lru_cache wrappers, cachetools caches and watched containers, and their growth."""

from __future__ import annotations

import gc
import importlib
import sys
import textwrap
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memwarden.attribution._caches import (
    CacheGrowth,
    CacheInfo,
    cache_growth,
    find_caches,
    unwatch,
    watch,
)
from memwarden.exceptions import UsageError

_counter = iter(range(1_000_000))


@pytest.fixture
def load_module(tmp_path: Path) -> Iterator[Callable[[str], types.ModuleType]]:
    """Write source to a uniquely named module in tmp_path and import it; unload it after."""
    names: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def load(source: str) -> types.ModuleType:
        name = f"mw_caches_app_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield load
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


def _named(caches: list[CacheInfo], name: str) -> CacheInfo:
    hits = [c for c in caches if c.name == name]
    assert len(hits) == 1, f"{name}: {[c.name for c in caches if 'mw_caches' in c.name]}"
    return hits[0]


def test_unbounded_lru_cache_growing_is_flagged_first(load_module: Callable[[str], types.ModuleType]) -> None:
    """An lru_cache(maxsize=None) that grows is listed as unbounded, ahead of bounded caches that grow."""
    mod = load_module(
        """\
        import functools

        @functools.lru_cache(maxsize=None)
        def prompt_template(name):
            return f"template for {name}"

        @functools.cache
        def plain_cache(name):
            return name

        @functools.lru_cache(maxsize=1000)
        def roomy(i):
            return i
        """
    )
    before = find_caches()
    for i in range(100):
        mod.prompt_template(f"user-{i}")
        mod.roomy(i)
    for i in range(40):
        mod.plain_cache(f"k{i}")
    mod.prompt_template("user-1")
    after = find_caches()
    info = _named(after, f"{mod.__name__}.prompt_template")
    expected = ("lru_cache", None, 100, 1, 100)
    assert (info.kind, info.maxsize, info.currsize, info.hits, info.misses) == expected
    assert _named(after, f"{mod.__name__}.plain_cache").maxsize is None

    grown = cache_growth(before, after, 2.0)
    ours = [g for g in grown if g.name.startswith(mod.__name__)]
    assert [g.name for g in ours] == [
        f"{mod.__name__}.prompt_template",
        f"{mod.__name__}.plain_cache",
        f"{mod.__name__}.roomy",
    ]
    assert ours[0] == CacheGrowth(f"{mod.__name__}.prompt_template", "lru_cache", None, 100, 50.0, True)
    assert ours[1].unbounded
    assert ours[1].growth_per_s == 20.0
    assert not ours[2].unbounded
    assert ours[2].maxsize == 1000
    first_bounded = next(i for i, g in enumerate(grown) if not g.unbounded)
    assert all(g.unbounded for g in grown[:first_bounded])


def test_bounded_cache_at_its_bound_is_not_flagged(load_module: Callable[[str], types.ModuleType]) -> None:
    """A bounded lru_cache already full keeps evicting and does not grow: it is not listed."""
    mod = load_module(
        """\
        import functools

        @functools.lru_cache(maxsize=8)
        def small(i):
            return [i]
        """
    )
    for i in range(8):
        mod.small(i)
    before = find_caches()
    for i in range(8, 200):
        mod.small(i)
    after = find_caches()
    info = _named(after, f"{mod.__name__}.small")
    assert (info.maxsize, info.currsize) == (8, 8)
    assert not [g for g in cache_growth(before, after, 1.0) if g.name == f"{mod.__name__}.small"]


def test_lru_cache_on_a_method_is_named_by_qualname(load_module: Callable[[str], types.ModuleType]) -> None:
    """A cached method is named module.Class.method."""
    mod = load_module(
        """\
        import functools

        class EmbeddingCache:
            @functools.lru_cache(maxsize=None)
            def get(self, key):
                return [key]
        """
    )
    mod.EmbeddingCache().get("a")
    assert _named(find_caches(), f"{mod.__name__}.EmbeddingCache.get").currsize == 1


def test_cachetools_caches_are_found_and_named(load_module: Callable[[str], types.ModuleType]) -> None:
    """cachetools caches in a global and in an instance attribute are found with their bound and size."""
    pytest.importorskip("cachetools")
    mod = load_module(
        """\
        import cachetools

        CACHE = cachetools.LRUCache(maxsize=50)

        class Service:
            def __init__(self):
                self._cache = cachetools.TTLCache(maxsize=10, ttl=600)

        SERVICE = Service()
        """
    )
    for i in range(20):
        mod.CACHE[i] = i
    for i in range(3):
        mod.SERVICE._cache[i] = i
    caches = find_caches()
    glob = _named(caches, f"{mod.__name__}.CACHE")
    expected = ("cachetools", 50, 20, None, None)
    assert (glob.kind, glob.maxsize, glob.currsize, glob.hits, glob.misses) == expected
    attr = _named(caches, f"{mod.__name__}.Service._cache")
    assert (attr.kind, attr.maxsize, attr.currsize) == ("cachetools", 10, 3)


def test_cachetools_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the program has not imported cachetools, find_caches does not import it either."""
    for name in [n for n in sys.modules if n == "cachetools" or n.startswith("cachetools.")]:
        monkeypatch.delitem(sys.modules, name)
    caches = find_caches()
    assert "cachetools" not in sys.modules
    assert not [c for c in caches if c.kind == "cachetools"]


def test_watched_containers_are_found(load_module: Callable[[str], types.ModuleType]) -> None:
    """A watched dict is reported by len(); named by the caller, or after the global holding it."""
    mod = load_module("SESSIONS = {}\nHISTORY = []\n")
    named = watch(mod.HISTORY, "app.history", maxsize=1000)
    assert named is mod.HISTORY
    watch(mod.SESSIONS)
    try:
        before = find_caches()
        for i in range(30):
            mod.SESSIONS[i] = {"turns": []}
            mod.HISTORY.append(i)
        after = find_caches()
        sessions = _named(after, f"{mod.__name__}.SESSIONS")
        assert (sessions.kind, sessions.maxsize, sessions.currsize) == ("watched", None, 30)
        history = _named(after, "app.history")
        assert (history.maxsize, history.currsize) == (1000, 30)
        grown = {g.name: g for g in cache_growth(before, after, 3.0)}
        assert grown[f"{mod.__name__}.SESSIONS"].unbounded
        assert grown[f"{mod.__name__}.SESSIONS"].growth_per_s == 10.0
        assert not grown["app.history"].unbounded
    finally:
        assert unwatch(mod.SESSIONS)
        assert unwatch(mod.HISTORY)
    assert not unwatch(mod.SESSIONS)
    assert not [c for c in find_caches() if c.kind == "watched" and mod.__name__ in c.name]


def test_watched_container_is_held_weakly_where_possible() -> None:
    """A watched container that supports weak references disappears from the report when it dies."""

    class Bag(list[int]):
        pass

    bag = Bag([1, 2, 3])
    watch(bag, "test.bag")
    assert _named(find_caches(), "test.bag").currsize == 3
    del bag
    gc.collect()
    assert not [c for c in find_caches() if c.name == "test.bag"]


def test_watch_rejects_what_has_no_length() -> None:
    """watch() needs len(); a negative maxsize is a usage error."""
    with pytest.raises(UsageError):
        watch(object())
    with pytest.raises(UsageError):
        watch([], maxsize=-1)


def test_cache_growth_rules() -> None:
    """Growth is per second; new caches start from zero; shrinking ones and bad intervals are handled."""
    before = [
        CacheInfo("a.grows", "lru_cache", 100, 10, 0, 10, 1),
        CacheInfo("a.shrinks", "watched", None, 50, None, None, 2),
        CacheInfo("a.same", "lru_cache", None, 5, 0, 5, 3),
    ]
    after = [
        CacheInfo("a.grows", "lru_cache", 100, 30, 0, 30, 1),
        CacheInfo("a.shrinks", "watched", None, 20, None, None, 2),
        CacheInfo("a.same", "lru_cache", None, 5, 0, 5, 3),
        CacheInfo("a.new", "watched", None, 8, None, None, 4),
    ]
    grown = cache_growth(before, after, 4.0)
    assert grown == [
        CacheGrowth("a.new", "watched", None, 8, 2.0, True),
        CacheGrowth("a.grows", "lru_cache", 100, 30, 5.0, False),
    ]
    with pytest.raises(UsageError):
        cache_growth(before, after, 0.0)


def test_find_caches_uses_an_injected_object_source(load_module: Callable[[str], types.ModuleType]) -> None:
    """The objects to look through can be supplied; only caches among them are reported."""
    mod = load_module("import functools\n@functools.lru_cache(maxsize=None)\ndef f(x):\n    return x\n")
    only = find_caches(objects=lambda: [mod.f, object(), {}])
    assert [c.name for c in only if c.kind == "lru_cache"] == [f"{mod.__name__}.f"]


@pytest.mark.slow
def test_find_caches_cost_on_a_million_object_heap(
    load_module: Callable[[str], types.ModuleType], record_property: Callable[[str, object], None]
) -> None:
    """On a heap of a million tracked objects find_caches still finds the cache; its cost is recorded."""
    mod = load_module(
        """\
        import functools

        HEAP = [[i] for i in range(1_000_000)]

        @functools.lru_cache(maxsize=None)
        def cached(i):
            return i
        """
    )
    mod.cached(1)
    assert len(gc.get_objects()) >= 1_000_000
    started = time.perf_counter()
    caches = find_caches()
    elapsed = time.perf_counter() - started
    record_property("find_caches_seconds", elapsed)
    assert _named(caches, f"{mod.__name__}.cached").currsize == 1
    assert elapsed < 30
