"""What to do about a verdict: concrete, per cause, naming the user's own objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._verdict import CacheGrowthInfo, Holder, Site, TypeGrowth

_LISTENER_WORDS = ("listener", "callback", "handler", "subscriber", "observer", "hook")
_HISTORY_WORDS = ("history", "messages", "conversation", "chat", "turns", "context")
_EXC_TYPES = ("traceback", "frame", "Exception", "Error")


def advise(
    verdict: str,
    *,
    sites: tuple[Site, ...] = (),
    types: tuple[TypeGrowth, ...] = (),
    holders: tuple[Holder, ...] = (),
    caches: tuple[CacheGrowthInfo, ...] = (),
    gpu: Any = None,
) -> tuple[str, ...]:
    """Advice sentences for ``verdict``, most specific first."""
    out: list[str] = []
    if verdict == "python_leak":
        out.extend(_python_leak(sites, types, holders, caches))
    elif verdict == "native_leak":
        owner = kept_owner(sites, holders)
        if owner is not None:
            site, holder = owner
            out.append(
                f"{holder.path} keeps {holder.type} objects made at {site.file}:{site.line}, and each owns memory "
                f"outside Python's heap: bound that container or drop the references. For tensors and arrays, "
                f"keep only what you need of them (a number with .item(), a summary) rather than the object: it "
                f"holds its whole storage and, with requires_grad, its autograd graph."
            )
        out.append(
            "The growth is outside Python's allocators: look at C extensions, ctypes/cffi allocations that are never "
            "freed, and native libraries (run `memray run --native` or heaptrack on a short reproduction)."
        )
        out.append(
            "If the growth tracks threads, cap glibc's per-thread arenas with MALLOC_ARENA_MAX=2 and compare."
        )
    elif verdict == "allocator_retention":
        out.append(
            "Not a leak: the memory will be reused for new allocations. If the peak matters, avoid building the "
            "whole working set at once (stream or batch it), or do the big job in a subprocess."
        )
        out.append(
            "glibc's free chunks go back to the OS with malloc_trim(0) (memwarden.probes.libc.malloc_trim); "
            "pymalloc arenas only when every pool in them is empty, so a memory budget with graceful worker "
            "recycling is the dependable bound."
        )
        out.append(
            "If glibc's free chunks keep growing in a threaded program (PyTorch, NumPy and BLAS threads), each "
            "thread's malloc arena keeps its own: MALLOC_ARENA_MAX=2 caps them; jemalloc or tcmalloc "
            "(LD_PRELOAD) fragment less."
        )
    elif verdict == "plateau":
        out.append(
            "Growth levelled off (warm-up or a bounded cache). Set the service's memory budget above the plateau, "
            "and check that every cache on the path has a bound."
        )
    elif verdict in ("gpu_leak", "gpu_cache_retention") and gpu is not None:
        out.extend(getattr(gpu, "advice", ()))
    if verdict != "python_leak":
        for c in caches:
            if c.maxsize is None and c.growth_per_s > 0:
                out.append(_bound_cache(c))
    return tuple(dict.fromkeys(out))


def _bound_cache(c: CacheGrowthInfo) -> str:
    if c.kind == "lru_cache":
        return (
            f"Bound {c.name}: it is an lru_cache with maxsize=None ({c.currsize:,} entries, "
            f"+{c.growth_per_s:,.0f}/s); use @functools.lru_cache(maxsize=N) or a cachetools.TTLCache."
        )
    return f"Bound {c.name} ({c.kind}, {c.currsize:,} entries, +{c.growth_per_s:,.0f}/s) with a maxsize or a TTL."


def _python_leak(
    sites: tuple[Site, ...],
    types: tuple[TypeGrowth, ...],
    holders: tuple[Holder, ...],
    caches: tuple[CacheGrowthInfo, ...],
) -> list[str]:
    out: list[str] = []
    unbounded = [c for c in caches if c.maxsize is None and c.growth_per_s > 0]
    for c in unbounded:
        out.append(_bound_cache(c))
    seen: list[str] = []
    for h in holders[:3]:
        path = h.path
        if path.startswith("<") or any(path.startswith(p) or p.startswith(path) for p in seen):
            continue  # not found, or the same container seen from one level up or down
        seen.append(path)
        low = path.lower()
        if h.bound is not None:
            out.append(
                f"The objects sit in {path}, a {h.bound}: that container cannot grow. If memory still grows, it is "
                f"in what holds it (more such containers: one per conversation, request or key that never "
                f"expires) or elsewhere; bound or expire the outer collection."
            )
        elif h.root_kind == "lru_cache" or "<lru_cache>" in path:
            if not unbounded:
                out.append(
                    f"{path} keeps every result: give the lru_cache a maxsize, or key it on something bounded."
                )
        elif any(w in low for w in _LISTENER_WORDS):
            out.append(
                f"Listeners pile up in {path}: unsubscribe them when the request ends, or hold them weakly "
                f"(weakref.WeakMethod / weakref.WeakSet)."
            )
        elif any(w in low for w in _HISTORY_WORDS):
            out.append(
                f"{path} grows without limit: keep a bounded window per conversation "
                f"(collections.deque(maxlen=N)), summarise or archive older turns, and expire idle conversations."
            )
        elif h.root_kind == "class_attribute" and h.type.rsplit(".", 1)[-1] in path:
            out.append(
                f"{path} registers every instance for ever: use weakref.WeakSet or weakref.WeakValueDictionary "
                f"so instances can die."
            )
        elif h.root_kind == "closure":
            out.append(
                f"{path} is a closure variable that only grows: bound it, or move it to an object you reset."
            )
        elif h.root_kind in ("frame_local", "thread_local"):
            out.append(f"{path} grows inside a running function: bound it or drop entries once handled.")
        else:
            out.append(
                f"Bound {path}: evict old entries (cachetools.LRUCache(maxsize=N) or TTLCache), or hold values "
                f"with weakref.WeakValueDictionary if others own them."
            )
    type_names = " ".join(t.type for t in types[:5])
    if any(x in type_names for x in _EXC_TYPES) or any(
        "traceback" in (h.type or "").lower() or "exception" in h.path.lower() for h in holders
    ):
        out.append(
            "Stored exceptions keep their traceback, every frame and every local alive: store "
            "traceback.format_exception(exc) text (or exc.with_traceback(None)) instead of the exception."
        )
    if not out and sites:
        s = sites[0]
        fn = f" ({s.function})" if s.function else ""
        out.append(
            f"Objects allocated at {s.file}:{s.line}{fn} are never freed: find who keeps them and bound it."
        )
    return out


def kept_owner(sites: Sequence[Site], holders: Sequence[Holder]) -> tuple[Site, Holder] | None:
    """The top growing site and its holder when objects made there keep piling up in a container.

    With growth outside Python's allocators, such objects are the likely owners of the memory
    (a ``torch.Tensor`` or ``numpy.ndarray`` is a small Python object over a large native buffer).
    """
    if not sites or not holders:
        return None
    site, holder = sites[0], holders[0]
    if site.count_diff <= 0 or site.size_diff_bytes <= 0 or holder.path.startswith("<"):
        return None
    if holder.bound is not None:
        return None  # a full bounded container (a deque at its maxlen) is not where they pile up
    return site, holder
