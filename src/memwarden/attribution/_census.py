"""The program's census: live objects by type, without memwarden's own, with its strings and bytes.

The investigator diffs two censuses around a tracemalloc window to say which types grew. A plain
:func:`memwarden.probes.objects.census` gets two things wrong for that purpose:

* It counts memwarden's own objects. Those of memwarden's types are left out by name, but the
  plain containers they keep are not: the sampler's ring gains an ``array.array`` row per tick,
  and every window showed ``array.array`` growing. :func:`memwarden_owned` finds them: the
  objects reachable from memwarden's instances and module globals through plain containers
  (dicts, lists, tuples, sets, deques, arrays), never through another type's instance, so what
  memwarden merely refers to (a sampled object, a user's app) stays the program's.
  (``re.Pattern`` objects showed up too: the window compiled its exclusion patterns through
  ``fnmatch`` after the first census; it now compiles them before.)
* It never counts ``str`` or ``bytes``: the garbage collector does not track them, so
  ``gc.get_objects()`` never lists them, nor the dicts and tuples that hold only such values.
  :func:`atoms_in_big_containers` counts them where leaks keep them: in big containers (256+
  items) and module globals, one level deep through untracked dicts and tuples. A full walk of
  every untracked object (``census(include_untracked=True)``) costs 6x the time and 170 MiB on a
  heap of a million strings; this costs about a third more than the plain census.
"""

from __future__ import annotations

import array
import collections
import gc
import itertools
import operator
import sys
from collections.abc import Iterable

from .._introspect import module_namespace, type_module
from .._introspect import type_name as _type_name
from ..probes.objects import Census, TypeCount, census

_PLAIN = frozenset({dict, list, tuple, set, frozenset, collections.deque, array.array})
"""Containers memwarden's objects keep their data in: what is reached through them is memwarden's."""
_BIG = (list, dict, set, frozenset, tuple, collections.deque)
_BIG_LEN = 256
_ATOMS = frozenset({str, bytes, bytearray})
_COUNTED = (str, bytes, bytearray, dict, tuple)
_BIG_TYPES = frozenset(_BIG)
_BATCH = 2048
_MAX_OWN = 500_000
_MAX_LOOKED_AT = 300_000


def _memwarden_type(tp: type, cache: dict[type, bool]) -> bool:
    hit = cache.get(tp)
    if hit is None:
        from ._holders import is_memwarden_module

        module = type_module(tp) or ""
        # memwarden.llm's stores hold the user's conversations: those are the program's data
        hit = cache[tp] = is_memwarden_module(module) and not module.startswith("memwarden.llm")
    return hit


def memwarden_owned(objs: Iterable[object]) -> set[int]:
    """The ids of the plain containers memwarden's own objects and module globals keep (see the module
    docstring), at most ``_MAX_OWN`` of them."""
    cache: dict[type, bool] = {}
    pool = objs if isinstance(objs, list) else list(objs)
    kinds = list(map(type, pool))
    # one question per type, not per object: a heap of a million objects has a few thousand types
    own_types = {tp for tp in set(kinds) if _memwarden_type(tp, cache)}
    roots: list[object] = (
        list(itertools.compress(pool, map(own_types.__contains__, kinds))) if own_types else []
    )
    del pool, kinds
    from ._holders import is_memwarden_module

    for name, module in list(sys.modules.items()):
        namespace = module_namespace(module)
        if namespace is not None and is_memwarden_module(name) and not name.startswith("memwarden.llm"):
            roots.append(namespace)
    own: set[int] = set()
    frontier = roots
    plain = _PLAIN
    while frontier and len(own) < _MAX_OWN:
        found: list[object] = []
        for start in range(0, len(frontier), _BATCH):
            for child in gc.get_referents(*frontier[start : start + _BATCH]):
                if type(child) in plain and id(child) not in own:
                    own.add(id(child))
                    found.append(child)
        frontier = found
    del roots, frontier
    return own


def atoms_in_big_containers(
    objs: Iterable[object], *, skip: set[int] | None = None
) -> dict[type, list[float]]:
    """``{type: [count, shallow bytes]}`` of the ``str``, ``bytes`` and ``bytearray`` objects, and of the
    untracked dicts and tuples, that big containers and module globals hold, directly or through a
    dict or tuple they hold (see the module docstring).

    Each reference found counts ``1 / refcount`` of its object, so a string that a thousand dicts
    share as a key counts about once, and one held by a single list counts once: an estimate of
    distinct objects that needs no set of every id seen. Past ``_MAX_LOOKED_AT`` references, every
    n-th one is looked at (n odd, so that a dict's keys and values both are) and counts n times.
    """
    skip = skip or set()
    repeat = itertools.repeat
    compress = itertools.compress
    pool = list(objs)
    containers = list(compress(pool, map(_BIG_TYPES.__contains__, map(type, pool))))
    del pool
    big = compress(containers, map(operator.ge, map(len, containers), repeat(_BIG_LEN)))  # type: ignore[arg-type]
    holders: list[object] = [o for o in big if id(o) not in skip]
    del containers
    for module in list(sys.modules.values()):
        namespace = module_namespace(module)
        if namespace is not None and id(namespace) not in skip:
            holders.append(namespace)
    total = sum(map(len, holders))  # type: ignore[arg-type]
    stride = max(1, total // _MAX_LOOKED_AT) | 1
    out: dict[type, list[float]] = {}
    getsizeof = sys.getsizeof
    getrefcount = sys.getrefcount
    is_tracked = gc.is_tracked
    wanted = _COUNTED.__contains__

    def count(kind: type, found: list[object], lists: int) -> None:
        # the references to each object: its refcount less the `lists` that hold it here and the call's own
        weights = list(
            map(
                operator.truediv,
                repeat(float(stride)),
                map(operator.sub, map(getrefcount, found), repeat(lists + 1)),
            )
        )
        entry = out.setdefault(kind, [0.0, 0.0])
        entry[0] += sum(weights)
        entry[1] += sum(map(operator.mul, weights, map(getsizeof, found)))

    def tally(children: list[object], *, descend: bool) -> list[object]:
        picked = list(compress(children, map(wanted, map(type, children))))
        kinds = list(map(type, picked))
        nested: list[object] = []
        for kind in _COUNTED:
            found = list(compress(picked, map(operator.is_, kinds, repeat(kind))))
            if not found:
                continue
            if kind in _ATOMS:
                count(kind, found, 3)  # held by `children`, `picked` and `found`
                continue
            loose = list(itertools.filterfalse(is_tracked, found))  # the census counts the tracked ones
            if loose:
                count(kind, loose, 4)
                if descend:
                    nested.extend(loose)
        return nested

    for start in range(0, len(holders), _BATCH):
        children = gc.get_referents(*holders[start : start + _BATCH])
        if stride > 1:
            children = children[::stride]
        nested = tally(children, descend=True)
        del children
        for inner in range(0, len(nested), _BATCH):
            tally(gc.get_referents(*nested[inner : inner + _BATCH]), descend=False)
        del nested
    return out


def program_census() -> Census:
    """Live objects by type (every type, ``top=None``): memwarden's own left out, strings and bytes in."""
    objs = gc.get_objects()
    own = memwarden_owned(objs)
    mine = (
        list(itertools.compress(objs, map(operator.not_, map(own.__contains__, map(id, objs)))))
        if own
        else objs
    )
    del objs
    base = census(mine, top=None)
    atoms = atoms_in_big_containers(mine, skip=own)
    del mine
    if not atoms:
        return base
    counts = {t.type: [t.count, t.shallow_bytes] for t in base.types}
    added_objects = added_bytes = 0
    for kind, (weight, size) in atoms.items():
        n, nbytes = round(weight), round(size)
        entry = counts.setdefault(_type_name(kind), [0, 0])
        entry[0] += n
        entry[1] += nbytes
        added_objects += n
        added_bytes += nbytes
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
    return Census(
        types=tuple(TypeCount(name, n, size) for name, (n, size) in ranked),
        total_objects=base.total_objects + added_objects,
        total_bytes=base.total_bytes + added_bytes,
        distinct_types=len(counts),
        include_untracked=False,
        duration_s=base.duration_s,
    )
