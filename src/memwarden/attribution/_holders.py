"""Who holds it: the chain of references that keeps an object alive.

Given a few sample objects (typically the objects allocated at a growing site), memwarden
walks the object graph forward from the places a program keeps things — module globals, class
attributes, closures, ``functools.lru_cache`` wrappers, thread-locals and the local variables of
live threads — and reports, for each sample, the first path it finds, written the way a person
would reach the object in code::

    app.cache.EMBEDDINGS._cache[<str>]
    app.models.Registry.instances[<int>]
    app.templates.get_prompt_template <lru_cache>
    app.handlers.make_handler.<locals>.seen[<int>]
    <thread MainThread> app.main:main() locals.history[<int>]

How it works: one breadth-first search over ``gc.get_referents`` from all roots at once, so
the paths found are the shortest ones; the search remembers only ``id() -> parent id`` and stops
when every sample is found or when a node or time budget runs out (a search cut short says so).
Edges are named only afterwards, only along the paths found. The search never reads an
object's ``__dict__`` (on CPython 3.11+ that would create a dict for every instance it passes);
only the few instances on a found path are asked for their attribute names.

What it cannot see: references held inside C extensions that do not report them to the garbage
collector, and objects kept alive only by the C stack (arguments of a C call in progress).
Such samples come back with ``root_kind="unknown"``. A sample that nothing but the caller's
list of targets holds any more (a temporary the program let go of since it was sampled) comes
back with ``root_kind="temporary"``: what was traced there was in flight, not kept.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import re
import struct
import sys
import threading
import time
import tracemalloc
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

from memwarden._introspect import (
    is_a,
    module_file,
    module_namespace,
    type_bare_name,
    type_bases,
    type_flags,
    type_module,
    type_mro,
    type_namespace,
    type_qualname,
)
from memwarden._introspect import type_name as _type_name
from memwarden.diagnosis._verdict import Holder
from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._codemap import CodePlaces, default_code_places

RootKind = Literal[
    "module_global",
    "class_attribute",
    "closure",
    "lru_cache",
    "thread_local",
    "frame_local",
    "temporary",
    "unknown",
]

TEMPORARY = "<a temporary: nothing in the program holds it any more>"
"""The path of a sample that only the list of targets handed to the search still held."""

DEFAULT_MAX_NODES = 5_000_000
DEFAULT_TIME_BUDGET_S = 5.0

_SKIPPED_MODULES = frozenset({"gc", "tracemalloc", "_tracemalloc"})
_LRU_WRAPPER = functools._lru_cache_wrapper
_THREAD_LOCAL = threading.local
_UNTRACKED_CONTAINERS = (tuple, dict)
_CHECK_EVERY = 4096
_NEWEST_FIRST_LEN = 512
"""A dict with more referents than this is walked newest items first."""


@dataclasses.dataclass(frozen=True)
class HolderSearch:
    """The outcome of one holder search: the paths, and what the search cost.

    ``complete`` is False when the search stopped on its node or time budget before finding
    every object; ``stop_reason`` says why it stopped.
    """

    paths: tuple[Holder, ...]
    nodes_visited: int
    elapsed_s: float
    complete: bool
    stop_reason: str


@dataclasses.dataclass
class _Root:
    obj: object
    label: str
    kind: Literal["module", "frame"]
    user: bool = False
    """Whether the root is the user's own (``__main__``, a user module, a frame of user code): a
    path from it into a library's object internals is cut at the object the user reaches."""


def find_holders(
    targets: Sequence[object],
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
) -> list[Holder]:
    """One holder path per target, in the order given (see :func:`search_holders`)."""
    return list(search_holders(targets, max_nodes=max_nodes, time_budget_s=time_budget_s).paths)


def search_holders(
    targets: Sequence[object],
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    include_current_thread: bool = False,
    places: CodePlaces | None = None,
) -> HolderSearch:
    """Find what keeps each target alive, and report what the search cost.

    The frames of the calling thread are left out by default: the caller's own variables hold
    the targets, and a path through them would say nothing. memwarden's own modules, objects
    and threads, and the ``gc``/``tracemalloc`` modules, are not searched.
    """
    if max_nodes < 1:
        raise UsageError(f"max_nodes must be at least 1, not {max_nodes}")
    if time_budget_s <= 0:
        raise UsageError(f"time_budget_s must be positive, not {time_budget_s}")
    started = time.perf_counter()
    places = places if places is not None else default_code_places()
    wanted = list(targets)
    dropped = _held_only_by_the_search(wanted)
    roots = _roots(places, include_current_thread)
    search = _Search(wanted, roots, places, dropped)
    search.ignore(targets, wanted, roots, search)
    search.run(max_nodes, started + time_budget_s)
    elapsed = time.perf_counter() - started
    paths = search.describe(wanted)
    complete = search.remaining == 0
    return HolderSearch(paths, search.nodes, elapsed, complete, search.stop_reason)


def _held_only_by_the_search(wanted: list[object]) -> set[int]:
    """The ids of the targets that nothing holds but the caller's list and ``wanted``.

    Their reference counts are compared with that of a probe held the same way (one list
    standing for the caller's, a copy standing for ``wanted``, a loop variable): a target with
    no reference more than the probe is one the program has dropped since it was sampled. A
    caller that holds a target in a variable or a second container makes its count higher, so
    it is never taken for a temporary; objects in a garbage cycle hold each other and are not
    told apart from held ones either.
    """
    probe_list = [object()]
    probe_wanted = list(probe_list)
    base = 0
    for probe in probe_wanted:
        base = sys.getrefcount(probe)
    del probe_list, probe_wanted
    return {id(t) for t in wanted if sys.getrefcount(t) <= base}


class _Search:
    """The breadth-first search state: parent ids, the frontier, the targets left."""

    def __init__(
        self,
        targets: list[object],
        roots: list[_Root],
        places: CodePlaces,
        dropped: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.dropped = dropped
        """Targets only the search's caller still held (see :func:`_held_only_by_the_search`)."""
        self.roots = roots
        self.places = places
        self.target_ids = {id(t) for t in targets}
        self.remaining = len(self.target_ids)
        self.want_untracked = any(not gc.is_tracked(t) for t in targets)
        self.parent: dict[int, int] = {}
        self.nodes = 0
        self.stop_reason = "not run"
        self._skip_type: dict[type, bool] = {}
        for index, root in enumerate(roots):
            self.parent.setdefault(id(root.obj), -1 - index)
        for module in _skipped_modules(places):
            self.parent.setdefault(id(module.__dict__), -1 - len(roots))

    def ignore(self, *objs: object) -> None:
        """Never walk through these (the search's own bookkeeping)."""
        for obj in objs:
            self.parent.setdefault(id(obj), -1 - len(self.roots))

    def run(self, max_nodes: int, deadline: float) -> None:
        if self.remaining == 0:
            self.stop_reason = "nothing to find"
            return
        parent = self.parent
        target_ids = self.target_ids
        want_untracked = self.want_untracked
        get_referents = gc.get_referents
        is_tracked = gc.is_tracked
        skip_type = self._skip_type
        clock = time.perf_counter
        queue: deque[object] = deque()
        for root in self.roots:
            if root.obj is not None:
                queue.append(root.obj)
            if id(root.obj) in target_ids:
                self.remaining -= 1
        nodes = 0
        next_check = min(_CHECK_EVERY, max_nodes)
        self.stop_reason = "searched everything reachable"
        while queue:
            if nodes >= next_check:
                if nodes >= max_nodes:
                    self.stop_reason = f"node budget reached ({nodes} objects)"
                    break
                if clock() > deadline:
                    self.stop_reason = f"time budget reached ({nodes} objects)"
                    break
                next_check = min(nodes + _CHECK_EVERY, max_nodes)
            node = queue.popleft()
            nodes += 1
            tp = type(node)
            skip = skip_type.get(tp)
            if skip is None:
                skip = skip_type[tp] = self._is_memwarden_type(tp)
            if skip:
                continue
            pid = id(node)
            children = get_referents(node)
            if tp is dict and len(children) > _NEWEST_FIRST_LEN:
                # a dict lists its oldest items first, and what leaks is what was added lately: the
                # samples sit among the newest items of a big dict (a list already lists its last first)
                children.reverse()
            for child in children:
                if is_tracked(child):
                    cid = id(child)
                    if cid not in parent:
                        parent[cid] = pid
                        queue.append(child)
                        if cid in target_ids:
                            self.remaining -= 1
                            if not self.remaining:
                                self.nodes = nodes
                                self.stop_reason = "found every object"
                                return
                elif want_untracked:
                    cid = id(child)
                    if cid in parent:
                        continue
                    if cid in target_ids:
                        parent[cid] = pid
                        self.remaining -= 1
                        if not self.remaining:
                            self.nodes = nodes
                            self.stop_reason = "found every object"
                            return
                    elif type(child) in _UNTRACKED_CONTAINERS:
                        parent[cid] = pid
                        queue.append(child)
        self.nodes = nodes

    @staticmethod
    def _is_memwarden_type(tp: type) -> bool:
        module = type_module(tp)
        return module is not None and is_memwarden_module(module)

    def chain(self, target: object) -> tuple[_Root, list[int]] | None:
        """The root and the ids from it down to ``target`` (the target's id last)."""
        ids: list[int] = []
        current = id(target)
        seen: set[int] = set()
        while True:
            if current in seen:
                return None
            seen.add(current)
            parent = self.parent.get(current)
            if parent is None:
                return None
            if parent < 0:
                index = -1 - parent
                if index >= len(self.roots):
                    return None
                ids.reverse()
                return self.roots[index], ids
            ids.append(current)
            current = parent

    def describe(self, targets: list[object]) -> tuple[Holder, ...]:
        """Name the path to each target.

        Every path is found again (by ``gc.get_referents``) before any is named: naming reads
        the ``__dict__`` of the instances on a path, which on CPython 3.11+ changes what those
        instances report as referents, and so would break paths that share them.
        """
        resolved: list[tuple[_Root, list[object]] | str] = []
        index = _DictIndex()  # shared by every path: they go through the same big dicts
        for target in targets:
            found = self.chain(target)
            if found is None:
                if id(target) in self.dropped:
                    resolved.append(TEMPORARY)
                elif self.remaining and self.stop_reason.startswith(("node", "time")):
                    resolved.append(f"<not found: the search stopped early, {self.stop_reason}>")
                else:
                    resolved.append("<not found: held only by the caller, a C extension or the C stack>")
                continue
            root, ids = found
            objs = _resolve(root.obj, ids, index)
            resolved.append((root, objs) if objs is not None else "<path changed while it was being read>")
        out: list[Holder] = []
        roles: dict[type, str] = {}
        for target, item in zip(targets, resolved, strict=True):
            type_name = qualified_type_name(type(target))
            if isinstance(item, str):
                out.append(Holder(type_name, item, "temporary" if item == TEMPORARY else "unknown"))
            else:
                root, objs = item
                writer = _PathWriter(root, objs, index)
                path, kind = writer.write()
                cut = writer.cut(self.places, roles)
                if cut is not None:  # the path entered a library's internals: stop at the user's owner
                    path, end = cut
                    objs = objs[: end + 1]
                    type_name = qualified_type_name(type(objs[-1]))
                bound = _full_bound(objs[-2]) if len(objs) >= 2 else None
                via = tuple(qualified_type_name(type(o)) for o in objs[1:-1])
                untracked = not gc.is_tracked(objs[-1])
                out.append(Holder(type_name, path, kind, bound, len(objs) - 1, via=via, untracked=untracked))
        return tuple(out)


def _full_bound(container: object) -> str | None:
    """``"collections.deque(maxlen=N), full"`` for a deque at its bound; ``None`` otherwise."""
    if type(container) is deque:
        maxlen = container.maxlen
        if maxlen is not None and len(container) >= maxlen:
            return f"collections.deque(maxlen={maxlen}), full"
    return None


def _resolve(root: object, ids: list[int], index: _DictIndex | None = None) -> list[object] | None:
    """The objects along a path of ids, found again from the root (None if it changed)."""
    objs: list[object] = [root]
    current = root
    for wanted in ids:
        child = None
        if type(current) is dict:
            hit = index.find(current, wanted) if index is not None else None
            child = hit[2] if hit is not None else _dict_child(current, wanted)
        if child is None:
            for child in gc.get_referents(current):
                if id(child) == wanted:
                    break
            else:
                return None
        current = child
        objs.append(current)
    return objs


def _dict_child(d: dict[object, object], wanted: int) -> object | None:
    """The value or key of ``d`` whose id is ``wanted``, newest items first, without copying ``d``
    (a list of a big dict's referents costs more than the walk); ``None`` if not found or if ``d``
    changed meanwhile (the caller then looks through its referents)."""
    try:
        for key, value in reversed(d.items()):
            if id(value) == wanted:
                return value
            if id(key) == wanted:
                return key
    except RuntimeError:  # changed size during iteration
        return None
    return None


def qualified_type_name(tp: type) -> str:
    """``module.QualName`` for a type; builtins by their bare name (``dict``, ``str``)."""
    return _type_name(tp)


def is_memwarden_module(name: str) -> bool:
    """Whether a module name is memwarden's own (its examples, which play a user's program, aside)."""
    return (name == "memwarden" or name.startswith("memwarden.")) and not name.startswith(
        "memwarden.examples"
    )


def _skipped_modules(places: CodePlaces) -> list[types.ModuleType]:
    out: list[types.ModuleType] = []
    for name, module in list(sys.modules.items()):
        if is_a(module, types.ModuleType) and (name in _SKIPPED_MODULES or is_memwarden_module(name)):
            out.append(module)
    return out


def _module_rank(name: str, module: object, places: CodePlaces) -> int:
    if name == "__main__":
        return 0
    filename = module_file(module)
    if filename is None:
        return 3  # built into the interpreter
    kind = places.kind(filename)
    if kind == "user":
        return 1
    return 2 if "site-packages" in filename or "dist-packages" in filename else 3


def _roots(places: CodePlaces, include_current_thread: bool) -> list[_Root]:
    modules: list[tuple[int, str, dict[str, Any]]] = []
    entries: list[tuple[str, object]] = list(sys.modules.items())  # not always modules
    for name, module in entries:
        namespace = module_namespace(module)
        if namespace is None or name in _SKIPPED_MODULES or is_memwarden_module(name):
            continue
        modules.append((_module_rank(name, module, places), name, namespace))
    modules.sort(key=lambda item: (item[0], item[1]))
    roots: list[_Root] = []
    seen_dicts: set[int] = set()
    for rank, name, namespace in modules:
        if id(namespace) in seen_dicts:
            continue
        seen_dicts.add(id(namespace))
        roots.append(_Root(namespace, name, "module", user=rank <= 1))
    roots.extend(_frame_roots(places, include_current_thread))
    return roots


def _frame_roots(places: CodePlaces, include_current_thread: bool) -> list[_Root]:
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    main_ident = threading.main_thread().ident
    roots: list[_Root] = []
    for ident, top in sys._current_frames().items():
        if ident == me and not include_current_thread:
            continue
        thread_name = names.get(ident, str(ident))
        if thread_name.startswith("memwarden"):
            continue
        frame: types.FrameType | None = top
        while frame is not None:
            code = frame.f_code
            # a module's top level keeps its variables in the module, already a root
            owner = sys.modules.get(str(frame.f_globals.get("__name__")))
            top_level = code.co_name == "<module>" and frame.f_globals is module_namespace(owner)
            if not top_level and not places.is_memwarden(code.co_filename):
                module = frame.f_globals.get("__name__", "?")
                qualname = getattr(code, "co_qualname", code.co_name)
                try:
                    local_vars = dict(frame.f_locals)
                except Exception:  # a frame that cannot show its locals keeps nothing we can see
                    local_vars = {}
                roots.append(
                    _Root(
                        local_vars,
                        frame_label(thread_name, module, qualname, main_thread=ident == main_ident),
                        "frame",
                        user=places.is_user(code.co_filename),
                    )
                )
            frame = frame.f_back
        del frame
    return roots


def frame_label(thread: str, module: object, qualname: str, *, main_thread: bool) -> str:
    """How a frame's locals are named as a root: ``main() locals`` for the program's own main
    function, ``app.cli:main() locals`` in another module, ``<thread worker-1> app.jobs:run()
    locals`` in another thread."""
    where = f"{qualname}()" if module == "__main__" else f"{module}:{qualname}()"
    return f"{where} locals" if main_thread else f"<thread {thread}> {where} locals"


def _key_label(key: object) -> str:
    return f"[<{type(key).__name__}>]"


class _DictIndex:
    """For the big dicts along the paths being named: where each value and key sits, found once.

    Naming ten paths through a global dict of 170,000 records looks the dict up twenty or thirty
    times, while the program keeps adding to it: a walk from its newest items passes everything
    added since the samples were taken each time. Dicts of ``_INDEX_LEN`` to ``_INDEX_MAX`` items
    are indexed on the first look (three dicts keyed by id, no tuple per item: millions of new
    tracked objects would set off full collections of the program's heap); smaller ones are
    walked, larger ones too (their index would cost memwarden too much memory).
    """

    def __init__(self) -> None:
        self._indexes: dict[int, tuple[dict[Any, Any], _Index]] = {}

    def find(self, d: dict[Any, Any], wanted: int) -> tuple[str, object, object] | None:
        """``("value" or "key", key, the object)`` for the object of id ``wanted`` in ``d``, or None."""
        if not _INDEX_LEN <= len(d) <= _INDEX_MAX:
            return None
        entry = self._indexes.get(id(d))
        if entry is None or entry[0] is not d:
            entry = self._indexes[id(d)] = (d, _index_dict(d))
        key_of_value, value_of, key_of = entry[1]
        if wanted in key_of_value:
            return ("value", key_of_value[wanted], value_of[wanted])
        if wanted in key_of:
            return ("key", key_of[wanted], key_of[wanted])
        return None

    def hop(self, d: dict[Any, Any], child: object) -> tuple[str, object] | None:
        hit = self.find(d, id(child))
        return (hit[0], hit[1]) if hit is not None and hit[2] is child else _dict_hop(d, child)


_INDEX_LEN = 2048
_INDEX_MAX = 1_000_000
_Index = tuple[dict[int, object], dict[int, object], dict[int, object]]


def _index_dict(d: dict[Any, Any]) -> _Index:
    """``({id(value): key}, {id(value): value}, {id(key): key})``; empty if ``d`` changed while read."""
    keys = list(d.keys())
    values = list(d.values())
    if len(keys) != len(values) or len(keys) != len(d):  # the program changed it in between
        return ({}, {}, {})
    # the oldest item wins where a value sits under several keys (as _dict_hop's walk finds it)
    value_ids = list(map(id, values))
    value_ids.reverse()
    keys_newest_first = keys[::-1]
    key_of_value = dict(zip(value_ids, keys_newest_first, strict=True))
    values.reverse()
    value_of = dict(zip(value_ids, values, strict=True))
    key_of = dict(zip(map(id, keys), keys, strict=True))
    return key_of_value, value_of, key_of


def _dict_hop(d: dict[Any, Any], child: object) -> tuple[str, object] | None:
    """(``"value"``, key) when ``child`` is a value of ``d``, (``"key"``, key) when it is a key.

    The newest items are looked at first and ``d`` is not copied: a leak's samples are among the
    last items of a big dict, and copying a dict of 120,000 items for each hop of each path took
    1.8 s of a window's close. A dict that changes size meanwhile is copied and read again."""
    try:
        return _dict_hop_in(reversed(d.items()), child)
    except RuntimeError:  # changed size during iteration: read a copy
        try:
            items = list(d.items())
        except RuntimeError:
            return None
        return _dict_hop_in(reversed(items), child)


def _dict_hop_in(items: Iterable[tuple[Any, Any]], child: object) -> tuple[str, object] | None:
    keys: list[Any] = []
    for key, value in items:
        if value is child:
            return ("value", key)
        keys.append(key)
    for key in keys:
        if key is child:
            return ("key", key)
    return None


def _slot_name(owner: object, child: object) -> str | None:
    for klass in type_mro(type(owner)):
        for name, attr in list(type_namespace(klass).items()):
            if is_a(attr, types.MemberDescriptorType):
                try:
                    value = attr.__get__(owner, klass)
                except AttributeError:
                    continue
                if value is child:
                    return name
    return None


def _instance_dict(owner: object) -> dict[str, Any] | None:
    try:
        d = object.__getattribute__(owner, "__dict__")
    except (AttributeError, TypeError):
        return None
    return d if is_a(d, dict) else None


def attribute_name(owner: object, child: object) -> str | None:
    """The attribute of ``owner`` that refers to ``child`` (slots first, then its dict).

    Reading the instance dict creates one on CPython 3.11+ when the instance had none: call
    this only for the few objects that matter, never while walking the heap.
    """
    name = _slot_name(owner, child)
    if name is not None:
        return name
    d = _instance_dict(owner)
    if d is not None:
        hop = _dict_hop(d, child)
        if hop is not None and hop[0] == "value" and is_a(hop[1], str):
            return str(hop[1])
    return None


def _closure_var(func: types.FunctionType, cell: object) -> str | None:
    closure = func.__closure__ or ()
    for name, c in zip(func.__code__.co_freevars, closure, strict=False):
        if c is cell:
            return name
    return None


def _code_qualname(func: types.FunctionType) -> str:
    return str(getattr(func.__code__, "co_qualname", func.__qualname__))


class _PathWriter:
    """Names each reference along a found path, and decides the root kind.

    ``pending`` says how to name the next hops out of dicts: ``"attrs"`` for namespaces
    (``.name``), ``"silent"`` for internal dicts (a lru_cache's cache, a thread-local's
    per-thread table); with nothing pending a dict hop is named by its key's type
    (``[<str>]``).
    """

    def __init__(self, root: _Root, objs: list[object], index: _DictIndex | None = None) -> None:
        self.root = root
        self.index = index or _DictIndex()
        self.objs = objs
        self.special: RootKind | None = None
        self.first_is_class = False
        self.marks: list[tuple[str, int]] = []
        """The text written so far after each hop, and the index in ``objs`` of the object it reached."""

    def _mark(self, kind: RootKind) -> None:
        if self.special is None:
            self.special = kind

    def write(self) -> tuple[str, RootKind]:
        objs = self.objs
        last = len(objs) - 1
        text = self.root.label
        pending: list[str] = ["attrs"]
        i = 0
        while i < last:
            parent, child = objs[i], objs[i + 1]
            hop_mode = pending.pop(0) if pending else "items"
            if is_a(parent, types.FunctionType) and child is parent.__closure__ and i + 2 <= last:
                # function -> closure tuple -> cell -> value reads as one name: the variable
                var = _closure_var(parent, objs[i + 2]) or "<cell>"
                self._mark("closure")
                text = self._closure(text, parent, var, i)
                i += 3 if i + 3 <= last else 2
                self.marks.append((text, i))
                continue
            text, pending = self._hop(text, parent, child, mode=hop_mode, i=i, pending=pending)
            i += 1
            self.marks.append((text, i))
        if self.root.kind == "frame":
            kind: RootKind = "frame_local"
        elif self.special is not None:
            kind = self.special
        elif self.first_is_class:
            kind = "class_attribute"
        else:
            kind = "module_global"
        return text, kind

    def cut(self, places: CodePlaces, roles: dict[type, str]) -> tuple[str, int] | None:
        """Where the written path should stop: ``(text, index in objs)``, or None to keep it whole.

        A path from the user's own root (``__main__``, a user module, a frame of user code) is
        cut before the first hop into a library object's internals (a private attribute, an
        unnamed reference, a set member or dict key), so that it ends at the object the user
        holds: ``KEPT[<int>]`` (a ``pandas.DataFrame``), not ``KEPT[<int>]._mgr.<ref tuple>``.
        Public attributes and items of library objects are kept (``handler.buffer[<int>]``).
        """
        if not self.root.user:
            return None
        in_library = False
        prev_text, prev_index = self.root.label, 0
        for text, index in self.marks:
            segment = text[len(prev_text) :] if text.startswith(prev_text) else None
            if segment == "":
                continue  # into an instance's own __dict__: the owner is still the instance
            if in_library and segment is not None and _is_internal_hop(segment):
                return (prev_text, prev_index) if prev_index > 0 else None
            role = _type_role(type(self.objs[index]), places, roles)
            if role == "library":
                in_library = True
            elif role == "user":
                in_library = False
            prev_text, prev_index = text, index
        return None

    def _hop(
        self, text: str, parent: object, child: object, *, mode: str, i: int, pending: list[str]
    ) -> tuple[str, list[str]]:
        if is_a(parent, dict):
            hop = self.index.hop(parent, child)
            if hop is None:
                name = attribute_name(parent, child)
                text += f".{name}" if name is not None else f".<ref {type(child).__name__}>"
            elif hop[0] == "key":
                text += "{…}"
            elif mode == "silent":
                pass
            elif mode == "attrs" and is_a(hop[1], str):
                text += f".{hop[1]}"
            else:
                text += _key_label(hop[1])
            if i == 0 and self.root.kind == "module":
                text = self._defining_module(text, child)
            return text, pending
        if is_a(parent, type):
            if self._is_type_dict(parent, child):
                if i == 1 and self.root.kind == "module":
                    self.first_is_class = True
                return text, ["attrs"]
            if child is type_mro(parent):
                return text + ".__mro__", pending
            if child is type_bases(parent):
                return text + ".__bases__", pending
            return text + f".<ref {type(child).__name__}>", pending
        if is_a(parent, _LRU_WRAPPER):
            self._mark("lru_cache")
            if child is _instance_dict(parent):
                return text, ["attrs"]
            if child is getattr(parent, "__wrapped__", None):
                return text + ".__wrapped__", pending
            return text + " <lru_cache>", (["silent"] if child is _lru_cache_dict(parent) else pending)
        if is_a(parent, types.FunctionType):
            if child is parent.__globals__:
                return text + ".__globals__", ["attrs"]
            if child is parent.__defaults__:
                return text + ".__defaults__", pending
            if child is parent.__kwdefaults__:
                return text + ".__kwdefaults__", ["attrs"]
            if child is parent.__closure__:
                return text + ".__closure__", pending
            if child is _instance_dict(parent):
                return text, ["attrs"]
            return text + f".<ref {type(child).__name__}>", pending
        if is_a(parent, types.CellType):
            return text + ".cell_contents", pending
        if is_a(parent, _THREAD_LOCAL) and is_a(child, dict):
            # local -> {per-thread key: per-thread dict} -> per-thread dict -> value
            self._mark("thread_local")
            return text, ["silent", "attrs"]
        if is_a(parent, types.MethodType):
            return text + (".__self__" if child is parent.__self__ else ".__func__"), pending
        if is_a(parent, (list, tuple, deque)):
            return text + "[<int>]", pending
        if is_a(parent, (set, frozenset)):
            return text + "{…}", pending
        if is_a(parent, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
            return text + self._suspended_local(parent, child), pending
        if is_a(parent, types.FrameType):
            if child is parent.f_back:
                return text + ".f_back", pending
            return text + ".f_locals", ["attrs"]
        if child is type(parent):
            return text + ".__class__", pending
        if child is _instance_dict(parent):
            return text, ["attrs"]
        name = attribute_name(parent, child)
        return text + (f".{name}" if name is not None else f".<ref {type(child).__name__}>"), pending

    @staticmethod
    def _suspended_local(gen: object, child: object) -> str:
        frames = (getattr(gen, attr, None) for attr in ("gi_frame", "cr_frame", "ag_frame"))
        frame = next((f for f in frames if f is not None), None)
        if is_a(frame, types.FrameType):
            hop = _dict_hop(dict(frame.f_locals), child)
            if hop is not None and hop[0] == "value":
                return f".<locals>.{hop[1]}"
        return f".<ref {type(child).__name__}>"

    @staticmethod
    def _is_type_dict(klass: type, child: object) -> bool:
        return any(r is child for r in gc.get_referents(type_namespace(klass)))

    def _defining_module(self, text: str, child: object) -> str:
        """Name a module-level class or function after the module that defines it."""
        if is_a(child, type):
            module_name: object = type_module(child)
            qualname: object = type_qualname(child)
        elif is_a(child, (types.FunctionType, _LRU_WRAPPER)):
            module_name = getattr(child, "__module__", None)
            qualname = getattr(child, "__qualname__", None)
        else:
            return text
        if not is_a(module_name, str) or not is_a(qualname, str) or "<locals>" in str(qualname):
            return text
        module_name, qualname = str(module_name), str(qualname)
        found: object = sys.modules.get(module_name)
        for part in qualname.split("."):
            if found is None:
                return text
            found = _static_attr(found, part)
        return f"{module_name}.{qualname}" if found is child else text

    def _closure(self, text: str, func: types.FunctionType, var: str, index: int) -> str:
        qualname = _code_qualname(func)
        if index == 1 and self.root.kind == "module" and ".<locals>." in qualname:
            module_name = func.__globals__.get("__name__", "?")
            outer = qualname.rsplit(".", 1)[0]
            return f"{module_name}.{outer}.{var}"
        return f"<closure of {text}>.{var}"


_NEUTRAL_MODULES = frozenset({"builtins", "collections", "array", "types", "weakref", "_collections"})
"""Modules whose types are plain containers and language objects: neither the user's nor a library's."""


def _type_role(tp: type, places: CodePlaces, cache: dict[type, str]) -> str:
    """``"user"``, ``"library"`` or ``"neutral"`` (containers, functions, modules, memwarden's) for a type.

    ``cache`` lives as long as one search: a module-level one would keep the types, and through
    their methods' globals whole modules, alive.
    """
    role = cache.get(tp)
    if role is not None:
        return role
    module = type_module(tp)
    if tp in (_LRU_WRAPPER, _THREAD_LOCAL) or module is None or module in _NEUTRAL_MODULES:
        role = "neutral"  # named by the path writer itself: `f <lru_cache>`, a thread-local's attributes
    elif is_memwarden_module(module):
        role = "neutral"
    elif module == "__main__":
        role = "user"
    else:
        filename = module_file(sys.modules.get(module))
        role = "library" if filename is None or places.kind(filename) != "user" else "user"
    cache[tp] = role
    return role


def _is_internal_hop(segment: str) -> bool:
    """Whether a written hop reaches into an object's internals (``._mgr``, ``.<ref tuple>``, ``{…}``)."""
    return segment.startswith(("._", ".<", "{", " <"))


def _static_attr(owner: object, name: str) -> object:
    """An attribute read from a module's or class's own namespace (no descriptors run)."""
    namespace = module_namespace(owner)
    if namespace is not None:
        return namespace.get(name)
    if is_a(owner, type):
        return type_namespace(owner).get(name)
    return None


def _lru_cache_dict(wrapper: object) -> object:
    """The cache dict inside a lru_cache wrapper: the referent just before the wrapped function.

    CPython's wrapper reports its cache dict right before the function it wraps; the wrapper's
    own ``__dict__`` and, for bounded caches, the cached keys and results are reported too.
    """
    func = getattr(wrapper, "__wrapped__", None)
    refs = gc.get_referents(wrapper)
    for index in range(1, len(refs)):
        if refs[index] is func and is_a(refs[index - 1], dict):
            return refs[index - 1]
    return None


def summarise_paths(paths: Iterable[Holder]) -> list[Holder]:
    """Collapse paths of the same shape into one pattern each, most common first.

    Paths already name dict keys and list positions by type (``[<str>]``, ``[<int>]``); here
    thread names that differ only by a number (``Thread-3``, ``Thread-7``) are merged too.
    """
    counts: dict[tuple[str, str, str, int, str | None, tuple[str, ...], bool], int] = {}
    for p in paths:
        key = (p.type, _shape(p.path), p.root_kind, p.depth, p.bound, p.via, p.untracked)
        counts[key] = counts.get(key, 0) + p.count
    patterns = [
        Holder(t, path, kind, bound, depth, n, via, untracked)
        for (t, path, kind, depth, bound, via, untracked), n in counts.items()
    ]
    patterns.sort(key=lambda p: (-p.count, p.depth, p.path))
    return patterns


_THREAD_NUMBER = re.compile(r"<thread ([^>]*?)\d+( \(\w+\))?>")


def _shape(path: str) -> str:
    return _THREAD_NUMBER.sub(lambda m: f"<thread {m.group(1)}*{m.group(2) or ''}>", path)


def sample_objects(
    site_file: str,
    site_line: int,
    *,
    type_name: str | None = None,
    limit: int = 5,
    time_budget_s: float = 2.0,
    survivors_first: bool = False,
    global_containers: GlobalContainers | None = None,
) -> list[object]:
    """Up to ``limit`` live objects that tracemalloc saw allocated at ``site_file:site_line``.

    ``survivors_first`` looks in the oldest gc generation first, newest survivors first: in a
    running service the youngest objects are a request's in-flight temporaries, and what outlived
    collections is what a leak keeps.

    An object qualifies when its allocation traceback includes that line anywhere (so a site
    that calls a library still finds what the library built for it). Tracked objects come from
    ``gc.get_objects()``. Objects the collector does not track (``str``, ``bytes``, numbers, and
    dicts or tuples holding only those) are looked for among the references of containers: of
    each container made while tracing, as it is met (the list that a request filled with small
    dicts), then of big containers (256+ items), then of every other one. ``type_name`` keeps
    only objects of that type (``"UserEmbedding"`` or ``"app.cache.UserEmbedding"``). Needs
    tracemalloc tracing since before the objects were made; raises ProbeUnavailable otherwise.

    ``global_containers`` is what :func:`global_containers` found, if the caller looked before
    tracing began (under tracing the walk of every namespace costs 10-20 times more); the
    containers made since are then not looked at first.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    if not tracemalloc.is_tracing():
        raise ProbeUnavailable("tracing", "tracemalloc is not tracing, so allocation sites are unknown")
    deadline = time.perf_counter() + time_budget_s
    same_file = _file_matcher(site_file)
    type_ok = _type_matcher(type_name)
    get_traceback, sees_managed_dicts = _raw_traceback_reader()
    untraceable = (lambda obj: False) if sees_managed_dicts else _untraceable

    def made_at_site(tb: Sequence[tuple[str, int]]) -> bool:
        return any(lineno == site_line and same_file(filename) for filename, lineno in tb)

    found: list[object] = []  # tracked objects: preferred, they are what holds the rest
    loose: list[object] = []  # objects the collector does not track (str, numbers, dicts of them)
    taken: set[int] = set()
    is_tracked = gc.is_tracked
    get_referents = gc.get_referents

    def result() -> list[object]:
        return (found + loose)[:limit]

    def take(obj: object) -> bool:
        """Keep a tracked ``obj``; True once there are enough."""
        if id(obj) not in taken:
            found.append(obj)
            taken.add(id(obj))
        return len(found) >= limit

    def take_loose_children(container: object, at_most: int | None = None) -> bool:
        """Keep the untracked objects made at the site that ``container`` refers to; True once enough."""
        if len(loose) >= limit:
            return False
        for n, child in enumerate(itertools.islice(_newest_first(container), at_most)):
            if not n & 0xFF and n and time.perf_counter() > deadline:
                return True  # out of time: a container of 10**6 numbers must not hold the search
            if is_tracked(child) or id(child) in taken:
                continue
            if not type_ok(type(child)):
                if type(child) in _NESTED and take_nested(child):
                    return True
                continue
            tb = get_traceback(child)
            if tb is not None and made_at_site(tb):
                loose.append(child)
                taken.add(id(child))
                if len(loose) >= limit:
                    return True
            elif tb is not None and type(child) in _NESTED and take_nested(child):
                return True
        return False

    def glance_tracked(container: object) -> bool:
        """Keep the tracked objects made at the site among a list's newest items; True once enough.
        (Young objects are what the survivors-first scan reaches last, after the whole old heap.)"""
        for child in itertools.islice(get_referents(container), _GLANCE):
            if is_tracked(child) and type_ok(type(child)):
                tb = get_traceback(child)
                if tb is not None and made_at_site(tb) and take(child):
                    return True
        return False

    def glance_dict(container: object) -> bool:
        """Keep what the site made among a tracked dict's newest values, and among the untracked
        objects those values hold (a record ``{"payload": "..."}`` filed under a fresh key); True
        once enough of either."""
        try:
            newest = list(itertools.islice(reversed(container.values()), _GLANCE))  # type: ignore[attr-defined]
        except RuntimeError:  # changed size during iteration
            return False
        for value in newest:
            if is_tracked(value) and type_ok(type(value)):
                tb = get_traceback(value)
                if tb is not None and made_at_site(tb) and take(value):
                    return True
            if take_loose_children(value, _GLANCE):
                return True
        return False

    def take_nested(container: object) -> bool:
        """Look one level into an untracked dict or tuple made while tracing (a task's result
        ``{"thumb": b"..."}`` kept in a global dict): what the site made may sit inside it."""
        if get_traceback(container) is None:
            return False
        for child in get_referents(container):
            if is_tracked(child) or id(child) in taken or not type_ok(type(child)):
                continue
            tb = get_traceback(child)
            if tb is not None and made_at_site(tb):
                loose.append(child)
                taken.add(id(child))
                if len(loose) >= limit:
                    return True
        return False

    big: list[object] = []  # large containers: where a growing site's strings usually end up
    scanned: set[int] = set()
    if survivors_first:  # the newest survivors of the oldest generation first: gc lists grow at the end
        objects = []
        for generation in (2, 1, 0):  # in C: a comprehension over a million objects took 0.05 s
            listed = gc.get_objects(generation)
            listed.reverse()
            objects.extend(listed)
            del listed
    else:
        objects = gc.get_objects()
    try:
        # Big containers kept in module globals and class attributes come first: they are where
        # leaks usually grow. Those the collector does not track (a global dict of str) are never
        # listed by gc.get_objects(), and are looked into whole; a tracked list may be young, and
        # the scan below reaches the young generations last, so its newest items are glanced at.
        # The glances first: they are bounded (64 items a list), while one huge untracked global
        # (a library's table of 10**6 numbers) can take the whole budget.
        untracked, lists, caches, dicts = global_containers or _big_globals()
        # an lru_cache's dict maps keys to results (maxsize=None) or to [prev, next, key, result]
        # links: a growing cache is where its function's results pile up, so it is looked at first,
        # newest entries first (a dict keeps insertion order; those made before tracing have no site)
        for cache in caches:
            if time.perf_counter() > deadline:
                break
            newest = list(itertools.islice(reversed(cache.values()), _CACHE_LOOK))  # type: ignore[attr-defined]
            if take_loose_children(newest) or any(take_loose_children(v) for v in newest if type(v) is list):
                break
        for container in lists:
            if time.perf_counter() > deadline or take_loose_children(container, _GLANCE):
                break
            if glance_tracked(container):  # a global list of DataFrames: its newest items
                return result()
        for container in dicts:  # a global dict of records: its newest values, and what they hold
            if time.perf_counter() > deadline or glance_dict(container):
                break
        for container in untracked:
            if time.perf_counter() > deadline or take_loose_children(container):
                break
        last_hit = 0
        # Enough untracked samples already from the global containers (whose tracked items made
        # at the site were looked at too): a short look for tracked ones elsewhere. Under tracing
        # this loop costs ~60 us an object, and 4,096 of them were half the cost of a close.
        patience = _GLANCED_PATIENCE if len(loose) >= limit else _PATIENCE
        for n, obj in enumerate(objects):
            if not n & 0xFF and time.perf_counter() > deadline:
                return result()
            if len(loose) >= limit and n - last_hit > patience:
                return result()  # enough untracked samples, and no tracked one in sight
            tp = type(obj)
            if tp in _BIG_CONTAINERS and len(obj) >= _BIG_LEN:
                big.append(obj)
                # a list reports its items last first: a glance finds what a growing list got lately
                if tp is list:
                    take_loose_children(obj, _GLANCE)
            tb = get_traceback(obj)
            if tb is None:
                # made before tracing began (or a 3.11 instance tracemalloc cannot name)
                if (
                    untraceable(obj)
                    and type_ok(tp)
                    and any(
                        (t := get_traceback(c)) is not None and made_at_site(t) for c in get_referents(obj)
                    )
                ):
                    last_hit = n
                    if take(obj):
                        return result()
                continue
            if type_ok(tp) and made_at_site(tb):
                last_hit = n
                if take(obj):
                    return result()
            # A container made while tracing holds what the same code made with it; objects the
            # collector does not track (str, numbers, small dicts of them) are only found this way.
            if tp in _BIG_CONTAINERS or type_module(tp) != "builtins":
                scanned.add(id(obj))
                take_loose_children(obj)
        # Untracked objects kept in containers made before tracing began: big ones first.
        for phase, containers in enumerate((big, objects)):
            for n, container in enumerate(containers):
                if len(found) + len(loose) >= limit or (not n & 0xFF and time.perf_counter() > deadline):
                    return result()
                if id(container) in scanned:
                    continue
                if phase == 0:
                    scanned.add(id(container))
                take_loose_children(container)
        return result()
    finally:
        del objects, big


_BIG_CONTAINERS = (list, dict, set, frozenset, tuple, deque)
_LIST_LEN = 32
"""A tracked global list this long is glanced at (a list of 160 numpy arrays was missed at 256)."""
_CACHE_LOOK = 4096
"""Entries of an lru_cache's dict looked at, at most."""
_NESTED = (dict, tuple)
"""Untracked containers looked into one level deep for what a site made."""
_BIG_LEN = 256
_GLANCE = 64
_PATIENCE = 4096
"""Objects to look at for a tracked sample, once there are enough untracked ones, before giving up."""
_GLANCED_PATIENCE = 512
"""The same, when the glance at the global containers found enough untracked ones."""


def _newest_first(container: object) -> Iterator[object]:
    """What ``container`` refers to, its newest items first where it keeps an order: a dict's
    values and keys from the last inserted (a global dict of 20,000 strings made before the
    window is otherwise read through before the few made in it), a list from its end (as
    ``gc.get_referents`` gives it). A dict that another thread changes meanwhile ends the walk."""
    if type(container) is not dict:
        yield from gc.get_referents(container)
        return
    try:
        for key, value in reversed(container.items()):
            yield value
            yield key
    except RuntimeError:  # changed size during iteration: what was read is enough
        return


GlobalContainers = tuple[list[object], list[object], list[object], list[object]]
"""Big containers in module globals and class attributes: untracked ones, tracked lists, the
lru_caches' dicts, tracked dicts (see :func:`global_containers`)."""


def global_containers() -> GlobalContainers:
    """Big containers kept in module globals or class attributes, where leaks usually grow: for
    :func:`sample_objects`, looked for before tracing starts (cheaper then). Also readies the
    traceback reader (which imports ctypes: 30 ms more under tracing)."""
    _raw_traceback_reader()
    return _big_globals()


def _big_globals() -> GlobalContainers:
    """Big containers kept in module globals or class attributes: those the collector does not
    track (any of ``_BIG_CONTAINERS``), the tracked lists, the dicts of the lru_caches with
    entries (``_LIST_LEN`` items make a list big enough here: a glance at one is cheap), and the
    tracked dicts of ``_BIG_LEN`` items or more.

    A dict holding only strings and numbers is untracked, so ``gc.get_objects()`` never lists it,
    yet it is where a global cache of strings grows. Namespaces are read as dicts (no attribute
    lookups, no descriptors run) and without copies: under tracemalloc every allocation is
    traced, and a namespace that changes while it is read is skipped.
    """
    untracked: dict[int, object] = {}
    lists: dict[int, object] = {}
    caches: dict[int, object] = {}
    dicts: dict[int, object] = {}
    is_tracked = gc.is_tracked

    def keep(v: object) -> None:
        tp = type(v)
        if tp is list and len(v) >= _LIST_LEN:  # type: ignore[arg-type]
            if is_tracked(v):
                lists[id(v)] = v
            elif len(v) >= _BIG_LEN:  # type: ignore[arg-type]
                untracked[id(v)] = v
        elif tp is dict and len(v) >= _BIG_LEN and is_tracked(v):  # type: ignore[arg-type]
            dicts[id(v)] = v
        elif tp in _BIG_CONTAINERS and len(v) >= _BIG_LEN and not is_tracked(v):  # type: ignore[arg-type]
            untracked[id(v)] = v
        elif tp is _LRU_WRAPPER:
            table = _lru_cache_dict(v)
            if is_a(table, dict) and table:
                caches[id(table)] = table

    # the same walk as the cache finder's names (attribution._caches._names_for), in one pass and
    # without copies: it runs under tracing, where a shared two-pass walk took 0.25 s, not 0.21 s
    for name, module in list(sys.modules.items()):
        namespace = module_namespace(module)
        if namespace is None or is_memwarden_module(name):
            continue
        try:
            for value in namespace.values():
                keep(value)
                if is_a(value, type) and type_module(value) == name:
                    for attr in type_namespace(value).values():
                        keep(attr)
        except RuntimeError:  # changed size during iteration: another thread is importing
            continue
    return list(untracked.values()), list(lists.values()), list(caches.values()), list(dicts.values())


def _raw_traceback_reader() -> tuple[Callable[[object], Sequence[tuple[str, int]] | None], bool]:
    """A function giving an object's allocation traceback as plain ``(filename, lineno)`` pairs,
    and whether it also sees the instances that CPython 3.11's tracemalloc misses.

    ``tracemalloc.get_object_traceback`` wraps every frame in a ``Frame`` object as it is read
    (and under tracing each of those allocations is traced too): a scan of 20,000 objects took
    2.5 s that way and 1.5 s with the raw pairs underneath it (the C function that the public
    one calls, present on 3.10-3.13).

    On CPython 3.11 that function also misses every instance of a class with a managed
    ``__dict__`` (ordinary classes, and ``torch.Tensor``): their memory starts two pointers
    before the GC header, which it does not allow for (fixed in 3.12). For those the reader
    asks tracemalloc's own C lookup, ``_PyTraceMalloc_GetTraceback(domain, address)``, at the
    address where the memory really starts. It only looks the address up in tracemalloc's
    table, under its lock, with the GIL held; without that function the second value is False.
    """
    raw = getattr(tracemalloc, "_get_object_traceback", None)
    if not callable(raw):

        def public(obj: object) -> Sequence[tuple[str, int]] | None:
            tb = tracemalloc.get_object_traceback(obj)
            return None if tb is None else [(f.filename, f.lineno) for f in tb]

        return public, False
    by_address = _traceback_by_address() if sys.version_info[:2] == (3, 11) else None
    if by_address is None:
        return raw, False
    pre_header = 2 * _POINTER + _GC_HEAD  # the managed dict and weakref pointers, then the GC header

    managed: dict[type, bool] = {}  # per type: this runs once for every object of the heap

    def read(obj: object) -> Sequence[tuple[str, int]] | None:
        tp = type(obj)
        has = managed.get(tp)
        if has is None:
            has = managed[tp] = _has_managed_dict(tp)
        if has:
            return by_address(0, id(obj) - pre_header)  # type: ignore[no-any-return]
        return raw(obj)  # type: ignore[no-any-return]

    return read, True


_POINTER = struct.calcsize("P")
_GC_HEAD = 2 * _POINTER  # PyGC_Head: two pointers on CPython 3.8-3.13
_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT on CPython 3.11


def _has_managed_dict(tp: type) -> bool:
    """Whether instances of ``tp`` keep their ``__dict__`` before the object (CPython 3.11's flag)."""
    return bool(type_flags(tp) & _MANAGED_DICT)


def _traceback_by_address() -> Callable[[int, int], Any] | None:
    """CPython's ``_PyTraceMalloc_GetTraceback(domain, ptr)`` through ctypes, or ``None``."""
    try:
        import ctypes

        func = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    except (ImportError, AttributeError, OSError):
        return None
    func.restype = ctypes.py_object
    func.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    return func


def _untraceable(obj: object) -> bool:
    """Whether tracemalloc cannot name this object's allocation although it traced it.

    CPython 3.11's ``tracemalloc.get_object_traceback`` misses instances of ordinary classes
    (see :func:`_raw_traceback_reader`, which finds them where ctypes can call tracemalloc's C
    lookup). Where it cannot, such an instance is taken as made at a site when an object it
    refers to was made there (its ``__init__`` ran from that line): ``self.vector = [...]``
    gives it away.
    """
    return sys.version_info[:2] == (3, 11) and _has_managed_dict(type(obj))


def _file_matcher(site_file: str) -> Callable[[str], bool]:
    cache: dict[str, bool] = {}
    wanted = site_file.replace("\\", "/")

    def same(filename: str) -> bool:
        hit = cache.get(filename)
        if hit is None:
            name = filename.replace("\\", "/")
            hit = name == wanted or name.endswith("/" + wanted) or wanted.endswith("/" + name)
            cache[filename] = hit
        return hit

    return same


_NOT_GC_TRACKED_TYPES = (str, bytes, int, float, complex, bool)


def _type_matcher(type_name: str | None) -> Callable[[type], bool]:
    if type_name is None:
        return lambda tp: True
    cache: dict[type, bool] = {}

    def ok(tp: type) -> bool:
        hit = cache.get(tp)
        if hit is None:
            names = (type_bare_name(tp), type_qualname(tp), qualified_type_name(tp))
            hit = type_name in names
            cache[tp] = hit
        return hit

    return ok
