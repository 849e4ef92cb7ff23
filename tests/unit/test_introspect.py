"""memwarden looks at the host's objects without running their code.

Found on a real PyTorch program: ``isinstance(obj, type)`` on ``torch.distributed.reduce_op``
looked up ``obj.__class__``, which ran the object's ``__getattribute__`` and printed a
FutureWarning from memwarden's thread. Here the host's objects are tripwires: a class whose
``__getattribute__`` logs, a metaclass whose ``__getattribute__`` logs, and a lazily loading
module subclass in ``sys.modules``. Every heap walk memwarden does must leave the log empty.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden._introspect import is_a, module_file, module_namespace, type_module, type_name
from memwarden.attribution._caches import find_caches
from memwarden.attribution._holders import find_holders, sample_objects
from memwarden.probes.objects import census

from ._support import tracing

TEST_BUDGET_S = 60.0
"""The search stops once it has what it looks for: a test gives it time enough on a busy machine
with a big heap (the 2 s default is for production, where finding nothing only costs the holder)."""

TRIPWIRE_SOURCE = textwrap.dedent(
    """
    import functools
    import types

    LOG = []


    class Meta(type):
        def __getattribute__(cls, name):
            LOG.append(("class", name))
            return super().__getattribute__(name)


    class Tripwire(metaclass=Meta):
        def __init__(self):
            self.items = []

        def __getattribute__(self, name):
            LOG.append(("instance", name))
            return object.__getattribute__(self, name)


    class LazyModule(types.ModuleType):
        def __getattribute__(self, name):
            LOG.append(("module", name))
            return super().__getattribute__(name)


    WIRE = Tripwire()


    @functools.lru_cache(maxsize=None)
    def cached(key):
        return [key]


    def grow(n):
        for i in range(n):
            object.__getattribute__(WIRE, "items").append({"n": i})  # allocation: kept
            cached(i)
    """
)


@pytest.fixture
def tripwire(tmp_path: Path) -> Iterator[types.ModuleType]:
    """The tripwire module, imported, with a LazyModule registered in sys.modules beside it."""
    name = "mw_tripwire_app"
    (tmp_path / f"{name}.py").write_text(TRIPWIRE_SOURCE)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    module = importlib.import_module(name)
    lazy = module.LazyModule("mw_tripwire_lazy")
    sys.modules["mw_tripwire_lazy"] = lazy
    try:
        yield module
    finally:
        sys.modules.pop("mw_tripwire_lazy", None)
        sys.modules.pop(name, None)
        sys.path.remove(str(tmp_path))


def _line(marker: str) -> int:
    return next(
        n for n, text in enumerate(TRIPWIRE_SOURCE.splitlines(), 1) if f"# allocation: {marker}" in text
    )


def test_is_a_does_not_look_up_the_objects_class(tripwire: types.ModuleType) -> None:
    wire = tripwire.WIRE
    log = tripwire.LOG
    log.clear()
    assert not is_a(wire, str)
    assert not is_a(wire, (list, dict))
    assert is_a(wire, object)
    assert is_a(wire, tripwire.Tripwire)
    assert log == []
    assert not isinstance(wire, str)  # what is_a avoids: plain isinstance runs the class's code
    assert ("instance", "__class__") in log


def test_type_and_module_facts_are_read_past_metaclasses_and_module_subclasses(
    tripwire: types.ModuleType,
) -> None:
    log = tripwire.LOG
    lazy = sys.modules["mw_tripwire_lazy"]
    log.clear()
    assert type_module(tripwire.Tripwire) == "mw_tripwire_app"
    assert type_name(tripwire.Tripwire) == "mw_tripwire_app.Tripwire"
    assert type_name(dict) == "dict"
    assert module_namespace(lazy) is not None
    assert module_namespace(lazy)["__name__"] == "mw_tripwire_lazy"  # type: ignore[index]
    assert module_namespace(object()) is None
    assert module_file(tripwire) == tripwire.__dict__["__file__"]
    assert module_file(lazy) is None
    assert log == []


def test_heap_walks_run_none_of_the_hosts_code(tripwire: types.ModuleType) -> None:
    """Census, cache scan, object sampling and the holder search leave the tripwires untouched."""
    log = tripwire.LOG
    with tracing():
        tripwire.grow(400)
        log.clear()
        kept = sample_objects(
            str(tripwire.__dict__["__file__"]), _line("kept"), limit=3, time_budget_s=TEST_BUDGET_S
        )
    counted = census(top=None, include_untracked=True)
    caches = find_caches()
    paths = find_holders(kept)
    assert log == [], log
    assert len(kept) == 3
    assert all(type(k) is dict and "n" in k for k in kept)
    assert [p.path for p in paths] == ["mw_tripwire_app.WIRE.items[<int>]"] * 3
    assert any(t.type == "mw_tripwire_app.Tripwire" for t in counted.types)
    assert any(c.name == "mw_tripwire_app.cached" and c.currsize == 400 for c in caches)
