"""Application caches that stay bounded: by deep bytes (not items), by weak values, and a buffer pool."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from memwarden.exceptions import UsageError

from ._registry import register
from ._sizing import deep_sizeof

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
B = TypeVar("B")

_MISSING: Any = object()


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A cache's size now, and its hits, misses and evictions since it was made."""

    items: int
    nbytes: int
    hits: int
    misses: int
    evicted: int
    expired: int


class _Item:
    __slots__ = ("expires", "nbytes", "value")

    def __init__(self, value: Any, nbytes: int, expires: float) -> None:
        self.value = value
        self.nbytes = nbytes
        self.expires = expires


class BytesCache(Generic[K, V]):
    """A cache bounded by the *deep* bytes of its values, with LRU eviction and a TTL that frees.

    ``max_bytes`` bounds the sum of ``sizeof(value)`` (default :func:`deep_sizeof`: the value and
    everything it refers to; a part shared by two values is counted in both, so the bound errs
    on the safe side); ``max_items`` may bound the count too. ``cachetools`` caches count items
    unless given a ``getsizeof``, and their TTL expiry is lazy: an expired entry stays until the
    cache is next written. Here expired entries leave at every call (O(1) amortised: entries
    expire in the order they were written), at :meth:`expire`, and every ``sweep_s`` seconds from
    a daemon thread if you ask for one, so an idle cache gives its memory back too.

    A value larger than the whole budget is refused (``UsageError``, a ``ValueError``).
    Thread-safe. Registered with memwarden's cache registry, reporting its bytes against
    ``max_bytes``. Shrink protocol: :meth:`shrink`, :meth:`clear`.
    """

    def __init__(
        self,
        max_bytes: int,
        *,
        max_items: int | None = None,
        ttl_s: float | None = None,
        sizeof: Callable[[Any], int] = deep_sizeof,
        sweep_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        watch: bool = True,
    ) -> None:
        if max_bytes < 1 or (max_items is not None and max_items < 1):
            raise UsageError("max_bytes and max_items must be >= 1")
        if ttl_s is not None and not ttl_s > 0:
            raise UsageError(f"ttl_s must be positive, not {ttl_s}")
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._sizeof = sizeof
        self._clock = clock
        self._lock = threading.RLock()
        self._lru: collections.OrderedDict[K, _Item] = collections.OrderedDict()
        self._by_write: collections.OrderedDict[K, None] = collections.OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evicted = self._expired = 0
        self._stop: threading.Event | None = None
        if sweep_s is not None:
            self._start_sweeper(sweep_s)
        if watch:
            register(self, name or f"memwarden.llm.BytesCache@{id(self):#x}", max_bytes)

    # -- mapping ------------------------------------------------------------------------------

    def get(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` (marked recently used), or ``default``."""
        with self._lock:
            self._sweep()
            item = self._lru.get(key)
            if item is None:
                self._misses += 1
                return default
            self._lru.move_to_end(key)
            self._hits += 1
            return item.value

    def set(self, key: K, value: V) -> None:
        """Store ``value``; then evict least recently used entries until within the budget."""
        nbytes = int(self._sizeof(value))
        if nbytes > self.max_bytes:
            raise UsageError(
                f"a value of {nbytes} bytes is over the cache's whole budget of {self.max_bytes} bytes"
            )
        with self._lock:
            self._sweep()
            old = self._lru.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
                del self._by_write[key]
            expires = self._clock() + self.ttl_s if self.ttl_s is not None else float("inf")
            self._lru[key] = _Item(value, nbytes, expires)
            self._by_write[key] = None
            self._bytes += nbytes
            while self._bytes > self.max_bytes or (
                self.max_items is not None and len(self._lru) > self.max_items
            ):
                self._drop(next(iter(self._lru)))
                self._evicted += 1

    def get_or_set(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, or ``make()`` stored and returned (``make`` runs without the lock held)."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = make()
            self.set(key, value)
        return value  # type: ignore[no-any-return]

    def pop(self, key: K, default: Any = None) -> Any:
        with self._lock:
            if key not in self._lru:
                return default
            value = self._lru[key].value
            self._drop(key)
            return value

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        self.set(key, value)

    def __delitem__(self, key: K) -> None:
        if self.pop(key, _MISSING) is _MISSING:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._sweep()
            return key in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def nbytes(self) -> int:
        """The sum of the stored values' sizes."""
        return self._bytes

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                len(self._lru), self._bytes, self._hits, self._misses, self._evicted, self._expired
            )

    def __memwarden_cache__(self) -> tuple[int, int | None]:
        return self._bytes, self.max_bytes

    # -- expiry and the shrink protocol ---------------------------------------------------------

    def expire(self) -> int:
        """Drop every expired entry now; returns how many."""
        with self._lock:
            return self._sweep()

    def shrink(self, fraction: float) -> int:
        """Shrink protocol: evict least recently used entries until ``fraction`` of the bytes are
        released; returns the bytes released."""
        if not 0 <= fraction <= 1:
            raise UsageError(f"fraction must be in [0, 1], not {fraction}")
        with self._lock:
            before = self._bytes
            target = before * (1 - fraction)
            while self._lru and self._bytes > target:
                self._drop(next(iter(self._lru)))
                self._evicted += 1
            return before - self._bytes

    def clear(self) -> int:
        """Shrink protocol: drop everything; returns the bytes released."""
        return self.shrink(1.0)

    def close(self) -> None:
        """Stop the sweeper thread, if there is one."""
        if self._stop is not None:
            self._stop.set()

    def _drop(self, key: K) -> None:
        item = self._lru.pop(key)
        del self._by_write[key]
        self._bytes -= item.nbytes

    def _sweep(self) -> int:
        if self.ttl_s is None or not self._by_write:
            return 0
        now = self._clock()
        n = 0
        while self._by_write:
            key = next(iter(self._by_write))
            if self._lru[key].expires > now:
                break
            self._drop(key)
            n += 1
        self._expired += n
        return n

    def _start_sweeper(self, every_s: float) -> None:
        if not every_s > 0:
            raise UsageError(f"sweep_s must be positive, not {every_s}")
        stop = self._stop = threading.Event()
        ref = weakref.ref(self)

        def loop() -> None:
            while not stop.wait(every_s):
                cache = ref()
                if cache is None:
                    return
                cache.expire()
                del cache

        threading.Thread(target=loop, name="memwarden-cache-sweeper", daemon=True).start()

    def __del__(self) -> None:
        if self._stop is not None:
            self._stop.set()


class WeakValueCache(Generic[K, V]):
    """A cache that holds its values weakly: an entry lasts as long as something else uses the value.

    For objects that are expensive to build and already kept alive by whoever uses them (loaded
    models, compiled templates): the cache never keeps one alive by itself, so it cannot leak.
    Registered with memwarden's cache registry. Shrink protocol: :meth:`shrink`, :meth:`clear`.
    """

    def __init__(self, *, name: str | None = None, watch: bool = True) -> None:
        self._data: weakref.WeakValueDictionary[K, V] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        if watch:
            register(self, name or f"memwarden.llm.WeakValueCache@{id(self):#x}", None)

    def get(self, key: K, default: Any = None) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return default
            self.hits += 1
            return value

    def get_or_set(self, key: K, make: Callable[[], V]) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = make()
            with self._lock:
                self._data[key] = value
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        """0: the values are held elsewhere, not by this cache."""
        return 0

    def shrink(self, fraction: float) -> int:
        """Shrink protocol: forget ``fraction`` of the entries (the values live on where used).
        Returns 0: a weak cache holds no bytes of its own values."""
        with self._lock:
            keys = list(self._data.keys())
            for key in keys[: round(len(keys) * fraction)]:
                self._data.pop(key, None)
        return 0

    def clear(self) -> int:
        return self.shrink(1.0)


class BufferPool(Generic[B]):
    """Reusable fixed-shape buffers (NumPy arrays, bytearrays), with a bound on how many exist.

    :meth:`acquire` hands out a free buffer or makes one with ``factory()``; :meth:`release`
    returns it (``reset(buf)`` first, if given). At most ``max_free`` idle buffers are kept (more
    are let go); with ``max_total``, acquiring beyond that many live buffers raises instead of
    allocating. ``with pool.buffer() as buf:`` releases on exit.
    Shrink protocol: :meth:`shrink`, :meth:`clear` (idle buffers only).
    """

    def __init__(
        self,
        factory: Callable[[], B],
        *,
        max_free: int = 8,
        max_total: int | None = None,
        reset: Callable[[B], None] | None = None,
        sizeof: Callable[[Any], int] = deep_sizeof,
        name: str | None = None,
        watch: bool = True,
    ) -> None:
        if max_free < 0 or (max_total is not None and max_total < 1):
            raise UsageError("max_free must be >= 0 and max_total >= 1")
        self._factory = factory
        self._reset = reset
        self.max_free = max_free
        self.max_total = max_total
        self._free: list[B] = []
        self._lock = threading.Lock()
        self._live = 0
        self.created = 0
        self._buffer_bytes: int | None = None
        self._sizeof = sizeof
        if watch:
            register(self, name or f"memwarden.llm.BufferPool@{id(self):#x}", max_free)

    @classmethod
    def numpy(cls, shape: tuple[int, ...], dtype: str = "float32", **kwargs: Any) -> BufferPool[Any]:
        """A pool of zeroed NumPy arrays of one shape and dtype (zeroed again when released)."""
        from ._numpy import numpy

        np = numpy()

        def zero(a: Any) -> None:
            a.fill(0)

        pool: BufferPool[Any] = BufferPool(lambda: np.zeros(shape, dtype=dtype), reset=zero, **kwargs)
        return pool

    def acquire(self) -> B:
        with self._lock:
            if self._free:
                self._live += 1
                return self._free.pop()
            if self.max_total is not None and self._live >= self.max_total:
                raise UsageError(
                    f"buffer pool exhausted: {self._live} buffers in use (max_total={self.max_total})"
                )
            self._live += 1
            self.created += 1
        buf = self._factory()
        if self._buffer_bytes is None:
            self._buffer_bytes = int(self._sizeof(buf))
        return buf

    def release(self, buf: B) -> None:
        if self._reset is not None:
            self._reset(buf)
        with self._lock:
            self._live -= 1
            if len(self._free) < self.max_free:
                self._free.append(buf)

    @contextlib.contextmanager
    def buffer(self) -> Iterator[B]:
        buf = self.acquire()
        try:
            yield buf
        finally:
            self.release(buf)

    def __len__(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        """Bytes of the idle buffers the pool keeps."""
        return len(self._free) * (self._buffer_bytes or 0)

    def __memwarden_cache__(self) -> tuple[int, int | None]:
        return len(self._free), self.max_free

    def shrink(self, fraction: float) -> int:
        with self._lock:
            n = round(len(self._free) * fraction)
            del self._free[:n]
        return n * (self._buffer_bytes or 0)

    def clear(self) -> int:
        return self.shrink(1.0)
