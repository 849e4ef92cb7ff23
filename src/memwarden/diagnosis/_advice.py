"""What to do about a verdict: concrete, per cause, naming the user's own objects."""

from __future__ import annotations

import re
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
        if owner is not None and owner_kind(owner[1]) == "python_buffer":
            # bytes, str, bytearray: Python's own allocator gives their memory out, tracemalloc sees it
            site, holder = owner
            out.append(
                f"{holder.path} keeps {holder.type} objects made at {site.file}:{site.line}: their memory is "
                f"Python's own (tracemalloc traces it), so this is a Python leak held by "
                f"{container_of(holder.path)}: bound it (collections.deque(maxlen=N), an LRU) or drop entries "
                f"once they are handled."
            )
        else:
            if owner is not None:
                site, holder = owner
                out.append(
                    f"{holder.path} keeps {holder.type} objects made at {site.file}:{site.line}, and each owns "
                    f"memory outside Python's heap: bound that container or drop the references. For tensors and "
                    f"arrays, keep only what you need of them (a number with .item(), a summary) rather than the "
                    f"object: it holds its whole storage and, with requires_grad, its autograd graph."
                )
            else:
                out.extend(_by_kind(holders, types))
            out.append(
                "The growth is outside Python's allocators: look at C extensions, ctypes/cffi allocations that are "
                "never freed, and native libraries (run `memray run --native` or heaptrack on a short reproduction)."
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
        kind = owner_kind(h, types)
        if kind is not None and h.bound is None and (kind_advice := _kind_sentence(kind, h)) is not None:
            out.append(kind_advice)
        elif h.bound is not None:
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
                f"Bound {container_of(path)}: evict old entries (cachetools.LRUCache(maxsize=N) or TTLCache), "
                f"or hold values with weakref.WeakValueDictionary if others own them."
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


# -- advice by what holds the objects ------------------------------------------------------------------

_SESSIONS = {
    "sqlalchemy.orm.session.Session": "sqlalchemy",
    "sqlalchemy.orm.scoping.scoped_session": "sqlalchemy",
    "sqlalchemy.ext.asyncio.session.AsyncSession": "sqlalchemy",
    "requests.sessions.Session": "http",
    "httpx.Client": "http",
    "httpx.AsyncClient": "http",
    "aiohttp.client.ClientSession": "http",
}
_QUEUES = frozenset(
    {
        "queue.Queue",
        "queue.LifoQueue",
        "queue.PriorityQueue",
        "queue.SimpleQueue",
        "_queue.SimpleQueue",
        "asyncio.queues.Queue",
        "asyncio.queues.LifoQueue",
        "asyncio.queues.PriorityQueue",
        "multiprocessing.queues.Queue",
        "collections.deque",
    }
)
_FUTURES = frozenset(
    {
        "concurrent.futures._base.Future",
        "_asyncio.Future",
        "asyncio.futures.Future",
        "_asyncio.Task",
        "asyncio.tasks.Task",
    }
)
_FRAMEWORKS = (
    "flask",
    "fastapi",
    "starlette",
    "django",
    "celery",
    "blinker",
    "prometheus_client",
    "pydantic",
)
_REGISTRY_TYPES = frozenset(
    {"sqlalchemy.sql.schema.MetaData", "sqlalchemy.orm.decl_api.registry", "logging.Manager"}
)
_NATIVE_OWNERS = frozenset(
    {
        "numpy.ndarray",
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
        "pandas.DataFrame",
        "pandas.Series",
        "pandas.Index",
        "pyarrow.lib.Table",
        "pyarrow.lib.RecordBatch",
        "PIL.Image.Image",
    }
)
_PYTHON_BUFFERS = frozenset({"bytes", "bytearray", "str", "int", "float", "complex"})
_PLAIN_CONTAINERS = frozenset({"tuple", "dict"})
"""Containers that hold nothing but Python's own memory when the collector does not track them
(it stops tracking a tuple or dict whose items are all numbers, strings and such)."""
_ITEM = re.compile(r"(\[<[^>\]]*>\]|\{…\})+$")


def container_of(path: str) -> str:
    """The container a path's objects sit in: ``app.KEPT`` for ``app.KEPT[<int>]``."""
    return _ITEM.sub("", path) or path


def owner_kind(holder: Holder, types: Sequence[TypeGrowth] = ()) -> str | None:
    """What kind of thing holds the objects, from the holder's type, the types on its path and the
    growing types: ``"session"``, ``"logging"``, ``"loggers"``, ``"queue"``, ``"future"``,
    ``"registry"``, ``"native_owner"`` (each object owns a buffer: arrays, tensors, DataFrames),
    ``"python_buffer"`` (bytes, str, numbers, and tuples or dicts of them: memory Python's
    allocator gives out) or None."""
    names = (*holder.via, holder.type)
    if any(n in _SESSIONS for n in names):
        return "session"
    if ".loggerDict[" in holder.path:
        return "loggers"
    growing = {t.type for t in types[:5]}
    if holder.type == "logging.LogRecord" or any(
        n.startswith("logging.") and n.endswith("Handler") for n in names
    ):
        return "logging"
    if "logging.LogRecord" in growing and "handler" in holder.path.lower():
        return "logging"
    if any(n in _FUTURES for n in names) or (growing & _FUTURES and holder.type in _FUTURES):
        return "future"
    if any(n in _QUEUES for n in names):
        return "queue"
    if any(n.partition(".")[0] in _FRAMEWORKS or n in _REGISTRY_TYPES for n in names):
        return "registry"
    if holder.type in _NATIVE_OWNERS:
        return "native_owner"
    if holder.type in _PYTHON_BUFFERS or (holder.untracked and holder.type in _PLAIN_CONTAINERS):
        return "python_buffer"
    return None


def _framework(holder: Holder) -> str:
    for n in (*holder.via, holder.type):
        top = n.partition(".")[0]
        if top in _FRAMEWORKS or n in _REGISTRY_TYPES:
            return top
    return "a framework"


def _kind_sentence(kind: str, h: Holder) -> str | None:
    """One piece of advice that fits what holds the objects (None: the generic advice fits)."""
    path, box = h.path, container_of(h.path)
    if kind == "session":
        if any(_SESSIONS.get(n) == "sqlalchemy" for n in (*h.via, h.type)):
            return (
                f"{path} is a SQLAlchemy Session kept for the whole run: it holds every object added to it "
                f"until it is flushed and every object it loaded while they are referenced. Use one session per "
                f"unit of work (`with Session(engine) as session, session.begin():` per request or batch), or "
                f"commit and call session.expunge_all() / close() after each batch."
            )
        return (
            f"{path} is an HTTP client session kept for the whole run, and state added per request piles up in "
            f"it (hooks appended on every call, cookies from every response, adapters mounted again): add hooks "
            f"and adapters once, clear session.cookies or use a session per job, and close() it when done."
        )
    if kind == "logging":
        return (
            f"Log records pile up in {box}: a handler that buffers (logging.handlers.MemoryHandler, a handler "
            f"that appends records to a list) keeps every record, with its arguments and exc_info, until it "
            f"flushes. Give it a capacity it reaches and a target (MemoryHandler(capacity=N, target=...)), "
            f"flush() it regularly, or hand records to a QueueHandler whose QueueListener writes them out."
        )
    if kind == "loggers":
        return (
            f"A new logger is made per name in {box} (a request or user id in the logger's name), and logging "
            f"keeps every logger for ever: log through one logger per module and put the id in the message or "
            f"in `extra=`."
        )
    if kind == "queue":
        return (
            f"{box} is a queue that is filled faster than it is drained, or that nobody drains: give it a bound "
            f"so producers wait or drop (queue.Queue(maxsize=N), asyncio.Queue(maxsize=N), "
            f"collections.deque(maxlen=N)), and check that its consumer runs and keeps up."
        )
    if kind == "future":
        return (
            f"Finished futures pile up in {box}, and each keeps its result (or its exception, traceback and "
            f"frames) alive: drop a future once its result is read (concurrent.futures.as_completed), keep the "
            f"results rather than the futures, and keep asyncio tasks in a set with "
            f"task.add_done_callback(tasks.discard)."
        )
    if kind == "registry":
        return (
            f"{box} is a registry of {_framework(h)}, and something registers into it on every call (routes, "
            f"request hooks, signal receivers, mapped classes or models, metrics): register once at start-up, "
            f"outside the request path."
        )
    if kind == "native_owner":
        return (
            f"{box} keeps {h.type} objects, and each owns a buffer of its own (its data): bound {box}, or keep "
            f"only what you need of each (an aggregate, a small .copy() of a slice, a number with .item())."
        )
    return None


def _by_kind(holders: Sequence[Holder], types: Sequence[TypeGrowth]) -> list[str]:
    out: list[str] = []
    for h in holders[:3]:
        kind = owner_kind(h, types)
        if not h.path.startswith("<") and kind is not None and (line := _kind_sentence(kind, h)) is not None:
            out.append(line)
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
