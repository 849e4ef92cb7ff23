"""Holder paths: who keeps an object alive, found from real modules imported from a tmp dir."""

from __future__ import annotations

import collections
import gc
import importlib
import itertools
import sys
import textwrap
import threading
import time
import tracemalloc
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memwarden.attribution._holders import (
    _big_globals,
    _newest_first,
    _raw_traceback_reader,
    find_holders,
    frame_label,
    sample_objects,
    search_holders,
    summarise_paths,
)
from memwarden.diagnosis._verdict import Holder
from memwarden.exceptions import ProbeUnavailable, UsageError

from ._support import tracing

TEST_BUDGET_S = 60.0
"""The search stops once it has what it looks for: a test gives it time enough on a busy machine
with a big heap (the 2 s default is for production, where finding nothing only costs the holder)."""

APP_SOURCE = textwrap.dedent(
    """\
    import functools
    import threading


    class Embedding:
        def __init__(self, key):
            self.key = key
            self.vector = [0.0] * 4


    class EmbeddingCache:
        def __init__(self):
            self._cache = {}

        def get(self, key):
            hit = self._cache.get(key)
            if hit is None:
                hit = self._cache[key] = Embedding(key)  # allocation: embedding
            return hit


    EMBEDDINGS = EmbeddingCache()
    SESSIONS = {}
    NAMES = []


    @functools.lru_cache(maxsize=None)
    def embedding_for(user_id):
        return Embedding(user_id)


    class EventBus:
        listeners = []

        @classmethod
        def subscribe(cls, listener):
            cls.listeners.append(listener)


    class Session:
        instances = []

        def __init__(self):
            Session.instances.append(self)


    def make_handler():
        seen = []

        def handler(event):
            seen.append(event)

        return handler


    HANDLER = make_handler()
    CONTEXT = threading.local()


    class Slotted:
        __slots__ = ("held",)

        def __init__(self, held):
            self.held = held


    HOLDER = None


    def remember_names(n):
        for i in range(n):
            NAMES.append("-".join(["name", str(i), "x" * 20]))  # allocation: names


    def worker(ready, stop, out):
        history = [Embedding("in-thread")]
        out.append(history[0])
        del out
        ready.set()
        stop.wait()
    """
)

_counter = iter(range(1_000_000))


def _line_of(source: str, marker: str) -> int:
    return next(n for n, text in enumerate(source.splitlines(), 1) if f"# allocation: {marker}" in text)


@pytest.fixture
def load_module(tmp_path: Path) -> Iterator[Callable[[str], types.ModuleType]]:
    """Write source to a uniquely named module in tmp_path and import it; unload it after."""
    names: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def load(source: str) -> types.ModuleType:
        name = f"mw_holders_app_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield load
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def app(load_module: Callable[[str], types.ModuleType]) -> types.ModuleType:
    """The sample application module."""
    return load_module(APP_SOURCE)


def _one(target: object) -> Holder:
    paths = find_holders([target])
    assert len(paths) == 1
    return paths[0]


def test_dict_cache_inside_a_global_instance(app: types.ModuleType) -> None:
    """A value in an instance's dict cache is held by module.GLOBAL._cache[<str>]."""
    emb = app.EMBEDDINGS.get("alice")
    path = _one(emb)
    assert path.path == f"{app.__name__}.EMBEDDINGS._cache[<str>]"
    assert path.root_kind == "module_global"
    assert path.type == f"{app.__name__}.Embedding"
    assert path.depth >= 3


def test_dict_keyed_by_uuid_names_the_key_type(app: types.ModuleType) -> None:
    """A module-level dict keyed by UUIDs is written [<UUID>]."""
    value = app.Embedding("x")
    app.SESSIONS[uuid.uuid4()] = value
    del value
    path = _one(app.SESSIONS[next(iter(app.SESSIONS))])
    assert path.path == f"{app.__name__}.SESSIONS[<UUID>]"


def test_unbounded_lru_cache_keyed_by_uuid(app: types.ModuleType) -> None:
    """A result kept by lru_cache(maxsize=None) is held by 'module.function <lru_cache>'."""
    result = app.embedding_for(uuid.uuid4())
    path = _one(result)
    assert path.path == f"{app.__name__}.embedding_for <lru_cache>"
    assert path.root_kind == "lru_cache"


def test_bounded_lru_cache_results_are_found_too(load_module: Callable[[str], types.ModuleType]) -> None:
    """A bounded lru_cache keeps results in linked entries; the wrapper still reports them."""
    mod = load_module(
        "import functools\n"
        "class R:\n    pass\n"
        "@functools.lru_cache(maxsize=8)\n"
        "def build(i):\n    return R()\n"
    )
    result = mod.build(3)
    path = _one(result)
    assert path.path == f"{mod.__name__}.build <lru_cache>"
    assert path.root_kind == "lru_cache"


def test_event_bus_listener_list_on_a_class(app: types.ModuleType) -> None:
    """A listener appended to a class-level list is held by module.Class.listeners[<int>]."""

    class Listener:
        def __call__(self, event: object) -> None:
            pass

    listener = Listener()
    app.EventBus.subscribe(listener)
    path = _one(listener)
    assert path.path == f"{app.__name__}.EventBus.listeners[<int>]"
    assert path.root_kind == "class_attribute"


def test_class_level_registry_of_instances(app: types.ModuleType) -> None:
    """Instances registering themselves on their class are held by module.Class.instances[<int>]."""
    session = app.Session()
    path = _one(session)
    assert path.path == f"{app.__name__}.Session.instances[<int>]"
    assert path.root_kind == "class_attribute"
    assert path.type == f"{app.__name__}.Session"


def test_closure_variable(app: types.ModuleType) -> None:
    """An event kept by a closure is named after the enclosing function's variable."""
    event = app.Embedding("event")
    app.HANDLER(event)
    path = _one(event)
    assert path.path == f"{app.__name__}.make_handler.<locals>.seen[<int>]"
    assert path.root_kind == "closure"


def test_closure_reached_through_a_container(app: types.ModuleType) -> None:
    """A closure held in a list is written <closure of PATH>.var."""
    handler = app.make_handler()
    app.EventBus.listeners.append(handler)
    event = app.Embedding("e")
    handler(event)
    del handler
    path = _one(event)
    assert path.path == f"<closure of {app.__name__}.EventBus.listeners[<int>]>.seen[<int>]"
    assert path.root_kind == "closure"


def test_thread_local(app: types.ModuleType) -> None:
    """A list on a threading.local global is held by module.CONTEXT.items[<int>]."""
    item = app.Embedding("ctx")
    app.CONTEXT.items = [item]
    path = _one(item)
    assert path.path == f"{app.__name__}.CONTEXT.items[<int>]"
    assert path.root_kind == "thread_local"


def test_slot_attribute(app: types.ModuleType) -> None:
    """An object held through __slots__ is named by its slot."""
    held = app.Embedding("slot")
    setattr(app, "HOLDER", app.Slotted(held))  # noqa: B010 - a module attribute mypy cannot see
    assert _one(held).path == f"{app.__name__}.HOLDER.held"


def test_local_variable_of_a_live_thread(app: types.ModuleType) -> None:
    """A list local to a running thread's function is found through that thread's frame."""
    ready, stop = threading.Event(), threading.Event()
    out: list[object] = []
    thread = threading.Thread(target=app.worker, args=(ready, stop, out), name="holders-worker", daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        target = out.pop()
        path = _one(target)
        assert path.path == f"<thread holders-worker> {app.__name__}:worker() locals.history[<int>]"
        assert path.root_kind == "frame_local"
    finally:
        stop.set()
        thread.join(10)


def test_the_callers_own_frames_are_left_out_unless_asked() -> None:
    """An object held only by the calling function is 'not found', unless the current thread is searched."""
    lonely = types.SimpleNamespace()
    path = _one(lonely)
    assert path.root_kind == "unknown"
    assert path.path.startswith("<not found")
    found = search_holders([lonely], include_current_thread=True).paths[0]
    assert found.root_kind == "frame_local"
    assert found.path == f"{__name__}:test_the_callers_own_frames_are_left_out_unless_asked() locals.lonely"


def test_search_cut_short_says_so() -> None:
    """A tiny node budget stops the search and the result says it is incomplete."""
    target = object()  # held here: not a temporary
    result = search_holders([target], max_nodes=10)
    assert not result.complete
    assert "node budget" in result.stop_reason
    assert result.nodes_visited <= 10
    assert result.paths[0].root_kind == "unknown"
    assert "stopped early" in result.paths[0].path


def test_a_sample_nothing_holds_any_more_is_a_temporary(app: types.ModuleType) -> None:
    """Objects sampled in flight that the program dropped since: only the list handed to the
    search holds them, and they are told apart from held ones and from what the search cannot
    see (an object held by a variable of the caller)."""
    held = app.EMBEDDINGS.get("bob")
    mine = object()
    samples = [types.SimpleNamespace(n=n) for n in range(2)] + [held, mine]  # nobody holds the first two
    paths = search_holders(samples).paths
    assert [p.root_kind for p in paths[:2]] == ["temporary", "temporary"]
    assert "temporary" in paths[0].path
    assert paths[2].root_kind != "temporary" and "EMBEDDINGS" in paths[2].path
    assert paths[3].root_kind == "unknown"  # held by `mine` here, out of the search's sight
    del mine


def test_budgets_are_validated() -> None:
    """Zero or negative budgets are usage errors."""
    with pytest.raises(UsageError):
        find_holders([object()], max_nodes=0)
    with pytest.raises(UsageError):
        find_holders([object()], time_budget_s=0)


def test_several_targets_each_get_their_own_path(app: types.ModuleType) -> None:
    """One search answers for every target, in the order given."""
    emb = app.EMBEDDINGS.get("bob")
    session = app.Session()
    paths = find_holders([session, emb])
    assert [p.path for p in paths] == [
        f"{app.__name__}.Session.instances[<int>]",
        f"{app.__name__}.EMBEDDINGS._cache[<str>]",
    ]


def test_search_does_not_materialise_instance_dicts(load_module: Callable[[str], types.ModuleType]) -> None:
    """Walking 50k plain instances leaves the allocated block count where it was."""
    mod = load_module(
        "class Plain:\n"
        "    def __init__(self, i):\n"
        "        self.a = i\n"
        "        self.b = None\n"
        "PLAINS = [Plain(i) for i in range(50_000)]\n"
    )
    search_holders([object()], time_budget_s=60)  # warm the lookup tables
    gc.collect()
    before = sys.getallocatedblocks()
    result = search_holders([object()], time_budget_s=60)
    gc.collect()
    after = sys.getallocatedblocks()
    assert result.nodes_visited >= 50_000
    assert after - before < 5_000, f"{after - before} blocks more after the search"
    assert len(mod.PLAINS) == 50_000


def test_sample_objects_finds_objects_allocated_at_a_site(app: types.ModuleType) -> None:
    """Objects whose allocation traceback includes the site line are found, tracked or not."""
    emb_line = _line_of(APP_SOURCE, "embedding")
    names_line = _line_of(APP_SOURCE, "names")
    with tracing():
        # enough objects that most come from fresh memory, not from CPython's free lists
        # (an object reused from a free list was never seen allocated by tracemalloc)
        for i in range(500):
            app.EMBEDDINGS.get(f"user-{i}")
        app.remember_names(500)
        site_file = str(app.__file__)
        embeddings = sample_objects(
            site_file, emb_line, type_name="Embedding", limit=5, time_budget_s=TEST_BUDGET_S
        )
        names = sample_objects(site_file, names_line, type_name="str", limit=3, time_budget_s=TEST_BUDGET_S)
        anything = sample_objects(site_file, emb_line, limit=50, time_budget_s=TEST_BUDGET_S)
    assert len(embeddings) == 5
    assert all(type(e).__name__ == "Embedding" for e in embeddings)
    assert len({id(e) for e in embeddings}) == 5
    assert len(names) == 3
    assert all(isinstance(n, str) and n.startswith("name-") for n in names)
    assert any(type(o).__name__ == "Embedding" for o in anything)
    assert [p.path for p in find_holders(names)] == [f"{app.__name__}.NAMES[<int>]"] * 3
    patterns = summarise_paths(find_holders(embeddings))
    assert len(patterns) == 1
    assert patterns[0].path == f"{app.__name__}.EMBEDDINGS._cache[<str>]"
    assert patterns[0].count == 5


def test_sample_objects_needs_tracing() -> None:
    """Without tracemalloc there are no allocation sites: ProbeUnavailable."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is tracing in this interpreter")
    with pytest.raises(ProbeUnavailable):
        sample_objects(__file__, 1)


def test_summarise_paths_collapses_same_shapes_and_numbered_threads() -> None:
    """Equal paths and thread names differing only by number collapse; most common first."""
    paths = [
        Holder("app.Item", "app.CACHE[<str>]", "module_global", depth=2),
        Holder("app.Item", "app.CACHE[<str>]", "module_global", depth=2),
        Holder("app.Item", "app.CACHE[<str>]", "module_global", depth=2),
        Holder("app.Item", "<thread Worker-1> app:run() locals.batch[<int>]", "frame_local", depth=2),
        Holder("app.Item", "<thread Worker-12> app:run() locals.batch[<int>]", "frame_local", depth=2),
        Holder("app.Other", "app.CACHE[<str>]", "module_global", depth=2),
    ]
    patterns = summarise_paths(paths)
    assert [(p.type, p.path, p.count) for p in patterns] == [
        ("app.Item", "app.CACHE[<str>]", 3),
        ("app.Item", "<thread Worker-*> app:run() locals.batch[<int>]", 2),
        ("app.Other", "app.CACHE[<str>]", 1),
    ]


@pytest.mark.slow
def test_search_cost_on_a_million_object_heap(
    load_module: Callable[[str], types.ModuleType], record_property: Callable[[str, object], None]
) -> None:
    """On a heap of a million tracked objects the search finds a deep target and reports its cost."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc slows the walk several times; measured without it")
    mod = load_module(
        "class Rec:\n"
        "    def __init__(self, i):\n"
        "        self.tags = [i]\n"
        "        self.meta = {'k': [i]}\n"
        "HEAP = [Rec(i) for i in range(250_000)]\n"
        "class Target:\n    pass\n"
        "HEAP[0].meta['t'] = Target()\n"
    )
    assert len(gc.get_objects()) >= 1_000_000
    target = mod.HEAP[0].meta["t"]  # lists report their items last first: HEAP[0] comes last
    started = time.perf_counter()
    result = search_holders([target], time_budget_s=120)
    found_s = time.perf_counter() - started
    started = time.perf_counter()
    everything = search_holders([object()], time_budget_s=120)
    walk_s = time.perf_counter() - started
    record_property("holders_found_seconds", found_s)
    record_property("holders_found_nodes", result.nodes_visited)
    record_property("holders_full_walk_seconds", walk_s)
    record_property("holders_full_walk_nodes", everything.nodes_visited)
    assert result.complete
    assert result.paths[0].path == f"{mod.__name__}.HEAP[<int>].meta[<str>]"
    assert result.nodes_visited > 750_000
    assert everything.stop_reason == "searched everything reachable"
    assert everything.nodes_visited >= 1_000_000


def test_sample_objects_can_look_at_survivors_first(app: types.ModuleType) -> None:
    """survivors_first returns objects that outlived a collection before fresh ones from the same site."""
    import gc

    emb_line = _line_of(APP_SOURCE, "embedding")
    with tracing():
        for i in range(200):
            app.EMBEDDINGS.get(f"old-{i}")
        gc.collect()  # the old ones are now in the oldest generation
        for i in range(200):
            app.EMBEDDINGS.get(f"new-{i}")
        found = sample_objects(
            str(app.__file__),
            emb_line,
            type_name="Embedding",
            limit=5,
            survivors_first=True,
            time_budget_s=TEST_BUDGET_S,
        )
    assert len(found) == 5
    assert all(getattr(e, "key", "").startswith("old-") for e in found), [
        getattr(e, "key", None) for e in found
    ]


_UNTRACKED_SOURCE = textwrap.dedent(
    """\
    class Session:
        instances = []

        def __init__(self, i):
            self.cart = [{"sku": f"SKU-{i}-{k}", "qty": "1"} for k in range(8)]  # allocation: cart
            Session.instances.append(self)


    TOKENS = {}


    def remember(i):
        TOKENS[i] = f"token-{i:08d}-" + "x" * 30  # allocation: token
    """
)


def test_sample_objects_finds_objects_the_collector_does_not_track(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """Small dicts of strings in a list, and strings in a global dict of str, are found and their holders named.

    Neither the dicts nor the global dict are gc-tracked, so gc.get_objects() lists none of them:
    the dicts are reached through the list made with them, the global dict through the module.
    """
    with tracing():
        mod = load_module(_UNTRACKED_SOURCE)
        for i in range(400):
            mod.Session(i)
            mod.remember(i)
        assert not gc.is_tracked(mod.TOKENS) and not gc.is_tracked(mod.Session.instances[0].cart[0])
        # the line makes the list too: ask for its dicts
        carts = sample_objects(
            str(mod.__file__),
            _line_of(_UNTRACKED_SOURCE, "cart"),
            type_name="dict",
            limit=6,
            time_budget_s=TEST_BUDGET_S,
        )
        tokens = sample_objects(
            str(mod.__file__), _line_of(_UNTRACKED_SOURCE, "token"), limit=6, time_budget_s=TEST_BUDGET_S
        )
        either = sample_objects(
            str(mod.__file__), _line_of(_UNTRACKED_SOURCE, "cart"), limit=6, time_budget_s=TEST_BUDGET_S
        )
    assert len(tokens) == 6 and all(isinstance(t, str) and t.startswith("token-") for t in tokens)
    assert {p.path for p in find_holders(tokens)} == {f"{mod.__name__}.TOKENS[<int>]"}
    assert len(carts) == 6
    if sys.version_info < (3, 11):
        # 3.10 makes each instance's own __dict__ at that line too; it is tracked, so it comes first
        assert all(isinstance(c, dict) and "cart" in c for c in carts)
        assert {p.path for p in find_holders(carts)} == {f"{mod.__name__}.Session.instances[<int>]"}
        return
    assert all(isinstance(c, dict) and c["sku"].startswith("SKU-") for c in carts)
    assert {p.path for p in find_holders(carts)} == {f"{mod.__name__}.Session.instances[<int>].cart[<int>]"}
    # the line makes a tracked list and untracked dicts: what holds the dicts comes first (the lists,
    # and on 3.11 the Session instances, which count as made where their attributes were)
    assert len(either) == 6 and all(gc.is_tracked(o) for o in either), [type(o) for o in either]
    assert any(type(o) is list for o in either)


_PLAIN_INSTANCES_SOURCE = textwrap.dedent(
    """\
    class Point:
        def __init__(self, i):
            self.i = i  # a small int: nothing made here gives the instance away


    POINTS = []


    def add(n):
        for i in range(n):
            POINTS.append(Point(i))  # allocation: point
    """
)


def test_instances_of_plain_classes_are_traced_to_their_line(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """On 3.11 tracemalloc's own lookup misses them; memwarden reads them at their real address."""
    mod = load_module(_PLAIN_INSTANCES_SOURCE)
    line = _line_of(_PLAIN_INSTANCES_SOURCE, "point")
    with tracing():
        mod.add(300)
        reader, _ = _raw_traceback_reader()
        traced = reader(mod.POINTS[-1])
        found = sample_objects(
            str(mod.__file__), line, type_name="Point", limit=3, time_budget_s=TEST_BUDGET_S
        )
    assert traced is not None
    assert (str(mod.__file__), line) in [tuple(frame) for frame in traced]
    assert len(found) == 3
    assert [p.path for p in find_holders(found)] == [f"{mod.__name__}.POINTS[<int>]"] * 3


def test_a_young_global_list_is_looked_at_before_the_heap(
    load_module: Callable[[str], types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in CI with torch imported: the scan reaches young generations last, past 170,000 old
    objects, and ran out of time before the global list of small dicts (untracked, so they never
    trigger a collection that would age the list). Module-global lists are glanced at first.
    (Strings here: 3.10 hands out dicts from a free list, which tracemalloc never saw made.)"""
    source = _UNTRACKED_SOURCE.replace("TOKENS = {}", "TOKENS = {}\nLOG = []") + LOG_SOURCE
    mod = load_module(source)
    line = _line_of(source, "log")
    with tracing():
        mod.log(400)
        # stand for a heap too big to scan in the time given: the scan finds nothing
        with monkeypatch.context() as patched:
            patched.setattr(gc, "get_objects", lambda generation=None: [])
            found = sample_objects(str(mod.__file__), line, limit=5, time_budget_s=TEST_BUDGET_S)
    assert len(found) == 5
    assert all(type(o) is str and o.startswith("request ") for o in found)


LOG_SOURCE = textwrap.dedent(
    """

    def log(n):
        for i in range(n):
            LOG.append(f"request {i:06d} /v1/chat " + "x" * 40)  # allocation: log
    """
)


def test_a_full_bounded_deque_is_named_as_the_bound() -> None:
    """Objects in a deque at its maxlen: the path says so; one in a deque with room, or a list, does not."""
    mod = types.ModuleType("mw_bounded_app")
    mod.WINDOW = collections.deque((object() for _ in range(50)), maxlen=50)
    mod.ROOMY = collections.deque((object() for _ in range(10)), maxlen=50)
    mod.PLAIN = [object()]
    sys.modules[mod.__name__] = mod
    try:
        full, roomy, plain = find_holders([mod.WINDOW[-1], mod.ROOMY[-1], mod.PLAIN[0]])
    finally:
        del sys.modules[mod.__name__]
    assert full.path == "mw_bounded_app.WINDOW[<int>]"
    assert full.bound == "collections.deque(maxlen=50), full"
    assert (roomy.bound, plain.bound) == (None, None)
    patterns = summarise_paths([full, full, roomy])
    assert [(p.path, p.count, p.bound) for p in patterns] == [
        ("mw_bounded_app.WINDOW[<int>]", 2, "collections.deque(maxlen=50), full"),
        ("mw_bounded_app.ROOMY[<int>]", 1, None),
    ]


_LIBRARY_OWNERS_SOURCE = textwrap.dedent(
    """\
    import asyncio
    import logging
    import logging.handlers

    HANDLER = logging.handlers.MemoryHandler(capacity=10**9, flushLevel=logging.CRITICAL + 10)
    FRAMES = []


    def keep_record(i):
        HANDLER.buffer.append(logging.makeLogRecord({"msg": f"request {i}"}))


    def worker(ready, stop, out):
        jobs = asyncio.Queue()
        jobs.put_nowait({"job": 1})
        out.append(jobs._queue[0])
        del out
        ready.set()
        stop.wait()
    """
)


def test_a_path_into_a_dataframes_internals_stops_at_the_dataframe(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """An object deep inside a pandas DataFrame kept in a user list is held by `KEPT[<int>]`, typed DataFrame."""
    pd = pytest.importorskip("pandas")
    mod = load_module("KEPT = []\n")
    frame = pd.DataFrame({"a": list(range(100)), "b": [float(i) for i in range(100)]})
    mod.KEPT.append(frame)
    holder = _one(frame._mgr)  # the block manager: pandas's own internals, reached through the frame
    assert holder.path == f"{mod.__name__}.KEPT[<int>]"
    assert holder.type == "pandas.DataFrame"
    assert holder.root_kind == "module_global"
    assert holder.via == ("list",)
    assert holder.depth == 2


def test_public_attributes_of_a_library_object_are_kept(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A LogRecord in a MemoryHandler's buffer is named through `.buffer`, a public attribute, not cut."""
    mod = load_module(_LIBRARY_OWNERS_SOURCE)
    mod.keep_record(1)
    holder = _one(mod.HANDLER.buffer[0])
    assert holder.path == f"{mod.__name__}.HANDLER.buffer[<int>]"
    assert holder.type == "logging.LogRecord"
    assert holder.via == ("logging.handlers.MemoryHandler", "list")


def test_a_frame_local_library_object_is_the_owner(load_module: Callable[[str], types.ModuleType]) -> None:
    """An item inside an asyncio.Queue that is a thread's local is held by that local, typed asyncio Queue."""
    mod = load_module(_LIBRARY_OWNERS_SOURCE)
    ready, stop = threading.Event(), threading.Event()
    out: list[object] = []
    thread = threading.Thread(target=mod.worker, args=(ready, stop, out), name="queue-worker", daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        holder = _one(out.pop())
        assert holder.path == f"<thread queue-worker> {mod.__name__}:worker() locals.jobs"
        assert holder.type == "asyncio.queues.Queue"
        assert holder.root_kind == "frame_local"
    finally:
        stop.set()
        thread.join(10)


def test_paths_from_a_librarys_own_globals_are_not_cut() -> None:
    """A path that starts in a library module (not the user's) is written in full: no user owner to stop at."""
    import logging

    logger = logging.getLogger(f"mw-holders-{uuid.uuid4()}")
    logger.propagate = False
    record = logging.makeLogRecord({"msg": "kept"})
    logger.__dict__["_mw_kept"] = [record]  # a library object's private attribute, reached from logging
    try:
        holder = _one(record)  # reached from some library's `logger` global, through logging's registry
        assert ".loggerDict[<str>]._mw_kept[<int>]" in holder.path, holder.path
        assert holder.type == "logging.LogRecord"
    finally:
        logging.Logger.manager.loggerDict.pop(logger.name, None)


def test_frame_roots_are_named_by_function() -> None:
    """The main thread's frames read `main() locals` (in __main__) or `module:func() locals`; others name the thread."""
    assert frame_label("MainThread", "__main__", "main", main_thread=True) == "main() locals"
    assert frame_label("MainThread", "app.cli", "run", main_thread=True) == "app.cli:run() locals"
    assert (
        frame_label("worker-1", "app", "Job.run", main_thread=False)
        == "<thread worker-1> app:Job.run() locals"
    )


_NESTED_SOURCE = textwrap.dedent(
    """\
    RESULTS = {}


    def resize_image(i):
        thumb = bytes(range(256)) * 8 + i.to_bytes(4, "little")  # allocation: thumb
        return {"image": i, "thumb": thumb, "format": "webp"}


    def worker(i):
        RESULTS[f"task-{i:08d}"] = resize_image(i)
    """
)


def test_bytes_inside_untracked_dicts_of_an_untracked_global_are_found_and_held(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A result backend keeping ``{"thumb": bytes, ...}`` dicts in a global dict: the dicts hold only
    atoms, so the collector does not track them and gc.get_objects() never lists them, and the bytes
    sit one level inside them; they are found and held by ``RESULTS[<str>][<str>]`` (a Celery-style
    loop had no holder before)."""
    with tracing():
        mod = load_module(_NESTED_SOURCE)
        for i in range(400):
            mod.worker(i)
        thumbs = sample_objects(
            str(mod.__file__), _line_of(_NESTED_SOURCE, "thumb"), limit=5, time_budget_s=TEST_BUDGET_S
        )
    assert len(thumbs) == 5 and all(isinstance(t, bytes) and len(t) == 2052 for t in thumbs)
    assert {p.path for p in find_holders(thumbs)} == {f"{mod.__name__}.RESULTS[<str>][<str>]"}


_CACHE_SOURCE = textwrap.dedent(
    """\
    import functools

    HISTORY = []


    @functools.lru_cache(maxsize=None)
    def price_card(i):
        return f"<div>{i:08d}</div>" + "x" * 200  # allocation: card


    def keep(i):
        HISTORY.append(f"feature-{i:08d}" + "y" * 100)  # allocation: feature
    """
)


def test_an_lru_cache_filled_before_tracing_is_searched_newest_first(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A cache holding 20,000 results from before the window and 50 made in it: the cache is one
    of the first places looked at (newest entries first), and the holder of what it keeps is the
    cache (the strings are untracked)."""
    mod = load_module(_CACHE_SOURCE)
    for i in range(20_000):
        mod.price_card(i)
    with tracing():
        for i in range(20_000, 20_050):
            mod.price_card(i)
        cards = sample_objects(
            str(mod.__file__), _line_of(_CACHE_SOURCE, "card"), limit=5, time_budget_s=TEST_BUDGET_S
        )
    assert len(cards) == 5 and all(isinstance(c, str) and c.startswith("<div>0002") for c in cards)
    # looked at among the first places, not found at the end of a whole-heap scan
    assert any(len(table) == 20_050 for table in _big_globals()[2])
    assert {p.path for p in find_holders(cards)} == {f"{mod.__name__}.price_card <lru_cache>"}


def test_a_short_global_list_of_untracked_objects_is_glanced_at(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A global list of 100 strings (fewer than the 256 that make a container big) made while
    tracing: they are found through the list, and held by it."""
    mod = load_module(_CACHE_SOURCE)
    with tracing():
        for i in range(100):
            mod.keep(i)
        found = sample_objects(
            str(mod.__file__), _line_of(_CACHE_SOURCE, "feature"), limit=5, time_budget_s=TEST_BUDGET_S
        )
    assert len(found) == 5 and all(isinstance(f, str) and f.startswith("feature-") for f in found)
    assert any(glanced is mod.HISTORY for glanced in _big_globals()[1])  # glanced at first
    assert {p.path for p in find_holders(found)} == {f"{mod.__name__}.HISTORY[<int>]"}


def test_a_global_dict_filled_before_tracing_is_read_newest_first(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A global dict of 30,000 strings made before the window and 20 made in it (it is untracked):
    the first 64 items looked at are the newest, so the ones made at the site are among them."""
    mod = load_module(_UNTRACKED_SOURCE)
    for i in range(30_000):
        mod.remember(i)
    with tracing():
        for i in range(30_000, 30_020):
            mod.remember(i)
        assert not gc.is_tracked(mod.TOKENS)
        first = list(itertools.islice(_newest_first(mod.TOKENS), 64))
        tokens = sample_objects(
            str(mod.__file__), _line_of(_UNTRACKED_SOURCE, "token"), limit=5, time_budget_s=TEST_BUDGET_S
        )
    assert mod.TOKENS[30_019] in first and mod.TOKENS[0] not in first
    assert len(tokens) == 5 and {p.path for p in find_holders(tokens)} == {f"{mod.__name__}.TOKENS[<int>]"}


def test_a_holder_says_whether_the_collector_tracks_what_it_holds() -> None:
    """A tuple of numbers is one the collector stops tracking: nothing in it owns native memory,
    and the holder says so (a tuple holding a list stays tracked)."""
    plain, mixed = (1, 2.0, 3), (1, [2.0])
    gc.collect()  # the collector untracks tuples of atomic items when it first looks at them
    box = types.SimpleNamespace(items=[plain, mixed])
    paths = search_holders([plain, mixed], include_current_thread=True).paths
    assert [p.untracked for p in paths] == [True, False], paths
    del box
