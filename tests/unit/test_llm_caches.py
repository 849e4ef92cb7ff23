"""Application caches: bounded by deep bytes, TTL expiry that frees, weak values, a bounded buffer pool."""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
import weakref

import pytest

import memwarden
from memwarden.exceptions import UsageError
from memwarden.llm import BufferPool, BytesCache, WeakValueCache, deep_sizeof
from memwarden.testing import FakeClock


def test_deep_sizeof_counts_what_a_value_refers_to() -> None:
    """deep_sizeof of a dict of lists of strings is the sum of every object's size, each once."""
    s1, s2 = "a" * 1000, "b" * 2000
    inner = [s1, s2]
    value = {"k": inner, "again": inner}
    expected = (
        sys.getsizeof(value)
        + sys.getsizeof("k")
        + sys.getsizeof("again")
        + sys.getsizeof(inner)
        + sys.getsizeof(s1)
        + sys.getsizeof(s2)
    )
    assert deep_sizeof(value) == expected


def test_deep_sizeof_counts_a_numpy_buffer_once() -> None:
    """An array that owns its data counts its buffer; a view counts only its header."""
    np = pytest.importorskip("numpy", reason="numpy is not installed")
    a = np.zeros(10_000, dtype=np.float64)
    assert 80_000 <= deep_sizeof(a) < 80_500
    assert deep_sizeof(a[:10]) < 500


def test_bounded_by_deep_bytes_not_items() -> None:
    """Values of very different sizes: the sum of their deep sizes stays under max_bytes, and the
    least recently used go first."""
    cache: BytesCache[str, object] = BytesCache(max_bytes=100_000, watch=False)
    cache["small"] = "s"
    for i in range(50):
        cache[f"big{i}"] = ["x" * 5_000, {"nested": "y" * 5_000}]
        cache.get("small")  # keep it recently used
        assert cache.nbytes <= 100_000
    assert "small" in cache and "big0" not in cache
    assert cache.nbytes == sum(deep_sizeof(cache[k]) for k in list(cache._lru))
    assert cache.stats().evicted > 30


def test_max_items_bounds_the_count_too() -> None:
    """max_items evicts by count on top of the byte budget."""
    cache: BytesCache[int, int] = BytesCache(max_bytes=10**9, max_items=3, watch=False)
    for i in range(10):
        cache[i] = i
    assert sorted(cache._lru) == [7, 8, 9]


def test_value_over_the_whole_budget_is_refused() -> None:
    """A value larger than max_bytes is a ValueError (UsageError) and the cache is unchanged."""
    cache: BytesCache[str, str] = BytesCache(max_bytes=1000, watch=False)
    cache["a"] = "ok"
    with pytest.raises(ValueError, match="over the cache's whole budget"):
        cache["b"] = "z" * 5000
    assert len(cache) == 1


def test_ttl_expiry_really_frees_without_a_write() -> None:
    """Unlike cachetools' lazy TTLCache, expired entries leave at any call (here a read of another
    key, or expire()), and their memory comes back."""
    clock = FakeClock()
    cache: BytesCache[int, bytes] = BytesCache(max_bytes=10**8, ttl_s=30, clock=clock, watch=False)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            cache[i] = bytes(10_000) + i.to_bytes(4, "big")
        full = tracemalloc.get_traced_memory()[0] - base
        clock.advance(31)
        assert cache.get("other") is None  # any call sweeps
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.stats().expired == 200
    assert full > 2_000_000 and left < full * 0.05


def test_sweeper_thread_expires_an_idle_cache() -> None:
    """With sweep_s, an idle cache's expired entries leave without any call on it."""
    cache: BytesCache[str, str] = BytesCache(max_bytes=10**6, ttl_s=0.05, sweep_s=0.02, watch=False)
    cache["a"] = "value"
    deadline = time.monotonic() + 5
    while cache._lru and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(cache._lru) == 0
    cache.close()


def test_shrink_protocol_and_registry() -> None:
    """shrink(0.5) releases at least half the bytes (LRU first); the cache reports its bytes
    against max_bytes to find_caches()."""
    cache: BytesCache[int, str] = BytesCache(max_bytes=10**6, name="tests.bytes_cache")
    for i in range(100):
        cache[i] = "v" * 1000
    (info,) = [c for c in memwarden.find_caches() if c.name == "tests.bytes_cache"]
    assert (info.currsize, info.maxsize) == (cache.nbytes, 10**6)
    before = cache.nbytes
    released = cache.shrink(0.5)
    assert released >= before / 2 and released == before - cache.nbytes
    assert 0 not in cache and 99 in cache
    assert cache.clear() > 0 and len(cache) == 0
    memwarden.unwatch(cache)


def test_weak_value_cache_never_keeps_a_value_alive() -> None:
    """An entry lasts while the value is used elsewhere and vanishes when it is not."""

    class Model:
        pass

    cache: WeakValueCache[str, Model] = WeakValueCache(watch=False)
    m = cache.get_or_set("m", Model)
    assert cache.get_or_set("m", Model) is m and cache.hits == 1
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None and "m" not in cache and len(cache) == 0


def test_buffer_pool_reuses_and_bounds() -> None:
    """Released buffers are reused (zeroed); idle ones are capped at max_free; max_total refuses
    to allocate beyond the bound."""
    np = pytest.importorskip("numpy", reason="numpy is not installed")
    pool = BufferPool.numpy((256, 256), "float32", max_free=2, max_total=3, watch=False)
    with pool.buffer() as a:
        a[0, 0] = 5.0
        a_id = id(a)
    with pool.buffer() as b:
        assert id(b) == a_id and b[0, 0] == 0.0
    bufs = [pool.acquire() for _ in range(3)]
    with pytest.raises(UsageError, match="exhausted"):
        pool.acquire()
    for buf in bufs:
        pool.release(buf)
    assert len(pool) == 2 and pool.created == 3
    assert pool.nbytes == 2 * deep_sizeof(np.zeros((256, 256), dtype=np.float32))
    assert pool.shrink(1.0) > 0 and len(pool) == 0
