"""The tracing layer: tracemalloc windows, site attribution, function names, the probe."""

from __future__ import annotations

import copy
import fnmatch
import gc
import os
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._base import flatten
from memwarden.probes._codemap import CodePlaces, FunctionIndex, memwarden_dirs
from memwarden.probes.tracing import (
    Frame,
    SiteDiff,
    TracemallocWindow,
    TracingProbe,
    TracingReading,
    default_exclude,
)

HERE = os.path.abspath(__file__)


def _line_of(marker: str) -> int:
    """The line of this file that carries ``# site: <marker>``."""
    lines = Path(HERE).read_text().splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if text.rstrip().endswith(f"# site: {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


def _keep_many(store: list[object], n: int = 10_000) -> None:
    for i in range(n):
        store.append({"i": i, "payload": [i]})  # site: keep


def _copy_many(store: list[object], n: int = 2_000) -> None:
    template = {"a": [1, 2, 3], "b": {"c": [4, 5]}}
    for _ in range(n):
        store.append(copy.deepcopy(template))  # site: deepcopy


def _first_caller(store: list[object]) -> None:
    _keep_many(store, 3_000)


def _second_caller(store: list[object]) -> None:
    _keep_many(store, 3_000)


@pytest.fixture
def not_tracing() -> Iterator[None]:
    """Nobody traces before the test; whatever the test started is stopped after it."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this interpreter (PYTHONTRACEMALLOC?)")
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


@pytest.mark.usefixtures("not_tracing")
def test_window_names_the_function_that_keeps_objects() -> None:
    """The largest growing site is the line, file and function that kept 10k objects."""
    store: list[object] = []
    with TracemallocWindow(frames=10) as window:
        assert window.owns_tracing
        _keep_many(store)
        sites = window.diff(top=5)
    assert sites, "no growth seen"
    top = sites[0]
    assert (top.file, top.line, top.function) == (HERE, _line_of("keep"), "_keep_many")
    assert top.count_diff >= 10_000
    assert top.size_diff_bytes > 10_000 * 64
    assert top.traceback[-1] == Frame(HERE, _line_of("keep"), "_keep_many")
    assert any(f.function == "test_window_names_the_function_that_keeps_objects" for f in top.traceback)
    sizes = [s.size_diff_bytes for s in sites]
    assert sizes == sorted(sizes, reverse=True)
    assert all(s.size_diff_bytes > 0 for s in sites)
    assert not tracemalloc.is_tracing(), "the window started tracing, so closing it stops it"


@pytest.mark.usefixtures("not_tracing")
def test_functions_can_be_named_after_tracing_stops() -> None:
    """name_functions=False leaves the names out (parsing sources under tracing is slow); add them later."""
    store: list[object] = []
    with TracemallocWindow(frames=10) as window:
        _keep_many(store)
        bare = window.diff(top=5, name_functions=False)
    assert bare and bare[0].function is None
    assert all(f.function is None for f in bare[0].traceback)
    named = window.name_functions(bare)
    assert not tracemalloc.is_tracing()
    assert (named[0].file, named[0].line, named[0].function) == (HERE, _line_of("keep"), "_keep_many")
    assert named[0].traceback[-1] == Frame(HERE, _line_of("keep"), "_keep_many")
    assert [(d.file, d.line, d.size_diff_bytes) for d in named] == [
        (d.file, d.line, d.size_diff_bytes) for d in bare
    ]


@pytest.mark.usefixtures("not_tracing")
def test_users_tracemalloc_session_is_left_untouched() -> None:
    """A session the user started with 3 frames is still tracing, with 3 frames, after the window."""
    tracemalloc.start(3)
    store: list[object] = []
    window = TracemallocWindow(frames=25).open()
    assert not window.owns_tracing
    assert window.frames == 3
    assert "already tracing" in window.note
    assert "3 frame" in window.note
    _keep_many(store, 5_000)
    sites = window.diff(top=3)
    assert sites[0].line == _line_of("keep")
    assert len(sites[0].traceback) <= 3
    window.close()
    assert tracemalloc.is_tracing()
    assert tracemalloc.get_traceback_limit() == 3
    with window:
        pass
    assert tracemalloc.is_tracing()
    assert tracemalloc.get_traceback_limit() == 3


@pytest.mark.usefixtures("not_tracing")
def test_site_is_the_users_line_that_calls_the_library() -> None:
    """Memory allocated inside copy.deepcopy is reported at the user's line that calls it."""
    store: list[object] = []
    with TracemallocWindow(frames=25) as window:
        _copy_many(store)
        sites = window.diff(group_by="lineno", top=3)
        by_traceback = window.diff(group_by="traceback", top=3)
    top = sites[0]
    assert (top.file, top.line, top.function) == (HERE, _line_of("deepcopy"), "_copy_many")
    assert top.traceback[-1].file == copy.__file__, "the allocations really happen inside the library"
    assert by_traceback[0].line == _line_of("deepcopy")


@pytest.mark.usefixtures("not_tracing")
def test_lineno_grouping_merges_call_paths_that_traceback_grouping_keeps_apart() -> None:
    """Two callers of one growing line: two traceback sites, one lineno site holding both."""
    store: list[object] = []
    with TracemallocWindow(frames=10) as window:
        _first_caller(store)
        _second_caller(store)
        per_path = [s for s in window.diff(group_by="traceback", top=None) if s.line == _line_of("keep")]
        per_line = [s for s in window.diff(group_by="lineno", top=None) if s.line == _line_of("keep")]
    assert len(per_path) == 2
    callers = {f.function for s in per_path for f in s.traceback if (f.function or "").endswith("_caller")}
    assert callers == {"_first_caller", "_second_caller"}
    assert len(per_line) == 1
    assert per_line[0].count_diff == sum(s.count_diff for s in per_path)


@pytest.mark.usefixtures("not_tracing")
def test_top_limits_and_validation() -> None:
    """top caps the list; bad group_by/top and diff before open are usage errors."""
    store: list[object] = []
    window = TracemallocWindow(frames=5)
    with pytest.raises(UsageError):
        window.diff()
    with window:
        _keep_many(store, 2_000)
        assert len(window.diff(top=1)) == 1
        with pytest.raises(UsageError):
            window.diff(group_by="file")  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            window.diff(top=0)
    with pytest.raises(UsageError):
        TracemallocWindow(frames=0)


@pytest.mark.usefixtures("not_tracing")
def test_default_filters_hide_memwarden_and_custom_filters_hide_user_files(tmp_path: Path) -> None:
    """memwarden's own allocations are left out by default; a user pattern leaves out that file."""
    files = []
    for i in range(40):
        f = tmp_path / f"m{i}.py"
        f.write_text("\n".join(f"def f{j}():\n    return {j}\n" for j in range(30)))
        files.append(str(f))
    index = FunctionIndex(max_files=100)
    mw_roots = tuple(os.path.join(d, "") for d in memwarden_dirs())

    def innermost_in_memwarden(sites: list[SiteDiff]) -> bool:
        return any(s.traceback[-1].file.startswith(mw_roots) for s in sites)

    with TracemallocWindow(frames=5) as window:
        for name in files:
            index.function_at(name, 3)
        filtered = window.diff(top=None)
    assert not innermost_in_memwarden(filtered)

    index = FunctionIndex(max_files=100)
    with TracemallocWindow(frames=5, exclude=(), hide_own_work=False) as window:
        for name in files:
            index.function_at(name, 3)
        unfiltered = window.diff(top=None)
    assert innermost_in_memwarden(unfiltered), "without filters memwarden's own allocations show"

    store: list[object] = []
    with TracemallocWindow(frames=5, exclude=[HERE], hide_own_work=False) as window:
        _keep_many(store, 5_000)
        assert all(s.traceback[-1].file != HERE for s in window.diff(top=None))
        # no collection between the two snapshots: garbage that an earlier test left in cycles
        # would be freed by one, and the second snapshot would count hundreds fewer traces
        gc.collect()
        gc.disable()
        try:
            ours = window.snapshot()
            theirs = tracemalloc.take_snapshot().filter_traces(window._filters)
        finally:
            gc.enable()
        assert not [t for t in ours.traces if t.traceback[-1].filename == HERE]
        assert abs(len(ours.traces) - len(theirs.traces)) < 50, "same filtering as tracemalloc's own"


@pytest.mark.usefixtures("not_tracing")
def test_memwardens_own_work_inside_the_standard_library_is_hidden(tmp_path: Path) -> None:
    """Allocations memwarden makes through the stdlib (ast, tokenize) are left out unless asked."""
    places = CodePlaces()
    files = []
    for i in range(30):
        f = tmp_path / f"w{i}.py"
        f.write_text("\n".join(f"class C{j}:\n    def m(self):\n        return {j}\n" for j in range(20)))
        files.append(str(f))

    def made_by_memwarden(site: SiteDiff) -> bool:
        for frame in reversed(site.traceback):  # innermost first
            kind = places.kind(frame.file)
            if kind != "library":
                return kind == "memwarden"
        return False

    seen = {}
    for hide in (True, False):
        index = FunctionIndex(max_files=100)
        with TracemallocWindow(frames=10, hide_own_work=hide) as window:
            for name in files:
                index.function_at(name, 3)
            seen[hide] = [s for s in window.diff(top=None) if made_by_memwarden(s)]
    assert not seen[True]
    assert seen[False], "memwarden's parsing really allocates through the standard library"


def test_default_exclude_names_the_documented_sources() -> None:
    """Default filters cover importlib, tracemalloc, linecache, <unknown> and memwarden, not its examples."""
    patterns = default_exclude()
    assert "<unknown>" in patterns
    assert tracemalloc.__file__ in patterns
    assert any("importlib._bootstrap" in p for p in patterns)
    assert any(p.endswith(os.path.join("probes", "*")) for p in patterns)
    assert not any("examples" in p for p in patterns)
    package = memwarden_dirs()[0]
    for own in ("__init__.py", os.path.join("probes", "tracing.py"), os.path.join("diagnosis", "x.py")):
        assert any(fnmatch.fnmatch(os.path.join(package, own), p) for p in patterns), own
    example = os.path.join(package, "examples", "leaky_service.py")
    assert not any(fnmatch.fnmatch(example, p) for p in patterns), "the examples play the user's program"


def test_function_names_for_nested_functions_methods_and_classes(tmp_path: Path) -> None:
    """Lines resolve to the innermost def/class, spelled like __qualname__."""
    source = textwrap.dedent(
        """\
        import functools
        X = 1

        class EmbeddingCache:
            size = 0

            def get(self, key):
                return key

            class Inner:
                def deep(self):
                    return 1

        def make_handler():
            seen = []
            def handler(event):
                seen.append(event)
            class Local:
                def method(self):
                    return seen
            return handler

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return [x]

        async def fetch():
            return lambda y: y
        """
    )
    path = tmp_path / "app_mod.py"
    path.write_text(source)
    lines = source.splitlines()

    def line(text: str) -> int:
        return next(i + 1 for i, t in enumerate(lines) if text in t)

    index = FunctionIndex()
    name = str(path)
    assert index.function_at(name, line("X = 1")) == "<module>"
    assert index.function_at(name, line("size = 0")) == "EmbeddingCache"
    assert index.function_at(name, line("return key")) == "EmbeddingCache.get"
    assert index.function_at(name, line("return 1")) == "EmbeddingCache.Inner.deep"
    assert index.function_at(name, line("seen = []")) == "make_handler"
    assert index.function_at(name, line("seen.append(event)")) == "make_handler.<locals>.handler"
    assert index.function_at(name, line("return seen")) == "make_handler.<locals>.Local.method"
    assert index.function_at(name, line("return [x]")) == "cached"
    assert index.function_at(name, line("return lambda")) == "fetch"
    assert index.function_at("<string>", 1) is None
    assert index.function_at(str(tmp_path / "missing.py"), 1) is None


def test_function_index_rereads_a_changed_file_and_stays_bounded(tmp_path: Path) -> None:
    """A rewritten file is parsed again; the cache keeps at most max_files files."""
    path = tmp_path / "m.py"
    path.write_text("def old():\n    return 1\n")
    index = FunctionIndex(max_files=2)
    assert index.function_at(str(path), 2) == "old"
    path.write_text("def new():\n    return 1\n")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert index.function_at(str(path), 2) == "new"
    for i in range(5):
        other = tmp_path / f"o{i}.py"
        other.write_text(f"def f{i}():\n    pass\n")
        assert index.function_at(str(other), 2) == f"f{i}"
    assert len(index._cache) <= 2


def test_code_places_tell_user_code_from_libraries_and_memwarden(tmp_path: Path) -> None:
    """Files under library dirs are library, memwarden's are memwarden (examples aside), others the user's."""
    lib = tmp_path / "lib"
    mw = tmp_path / "memwarden"
    places = CodePlaces(library_dirs=[str(lib)], memwarden_roots=[str(mw)])
    assert places.kind(str(lib / "json" / "decoder.py")) == "library"
    assert places.kind(str(mw / "probes" / "tracing.py")) == "memwarden"
    assert places.kind(str(mw / "examples" / "leaky_cache.py")) == "user"
    assert places.kind(str(tmp_path / "app" / "cache.py")) == "user"
    assert places.kind("<frozen importlib._bootstrap>") == "library"
    assert places.kind("<string>") == "library", "dataclass and namedtuple methods are generated code"
    assert places.kind("<stdin>") == "user"


class _FakeTracer:
    def __init__(self, tracing: bool) -> None:
        self.tracing = tracing

    def is_tracing(self) -> bool:
        return self.tracing

    def get_traced_memory(self) -> tuple[int, int]:
        return (1000, 5000)

    def get_tracemalloc_memory(self) -> int:
        return 300

    def get_traceback_limit(self) -> int:
        return 7


def test_tracing_probe_reads_an_injected_tracer() -> None:
    """The probe reports traced, peak, overhead and depth from its source, and flattens them."""
    probe = TracingProbe(_FakeTracer(True))
    assert probe.available()
    reading = probe.read()
    assert reading == TracingReading(1000, 5000, 300, 7)
    assert flatten(probe.layer, reading) == {
        "tracing.traced_bytes": 1000,
        "tracing.peak_traced_bytes": 5000,
        "tracing.overhead_bytes": 300,
        "tracing.traceback_frames": 7,
    }
    assert (TracingProbe.layer, TracingProbe.cost) == ("tracing", "cheap")


def test_tracing_probe_is_unavailable_when_nobody_traces() -> None:
    """Not tracing: available() says why, read() raises ProbeUnavailable."""
    probe = TracingProbe(_FakeTracer(False))
    assert not probe.available()
    assert "not tracing" in probe.available().reason
    with pytest.raises(ProbeUnavailable):
        probe.read()


@pytest.mark.usefixtures("not_tracing")
def test_tracing_probe_reads_the_live_session_without_starting_one() -> None:
    """On the real tracemalloc the probe sees traced bytes and overhead only while a window is open."""
    probe = TracingProbe()
    assert not probe.available()
    store: list[object] = []
    with TracemallocWindow(frames=3) as window:
        _keep_many(store, 2_000)
        reading = probe.read()
        current, peak = window.traced_bytes()
        assert reading.traced_bytes > 0
        assert reading.overhead_bytes > 0
        assert reading.peak_traced_bytes >= reading.traced_bytes
        assert reading.traceback_frames == 3
        assert peak >= current > 0
    assert not tracemalloc.is_tracing()
    assert window.traced_bytes() == (0, 0)


@pytest.mark.usefixtures("not_tracing")
def test_diff_fails_clearly_when_tracing_was_stopped_elsewhere() -> None:
    """If someone stops tracemalloc under an open window, diff raises ProbeUnavailable."""
    window = TracemallocWindow(frames=2).open()
    tracemalloc.stop()
    with pytest.raises(ProbeUnavailable):
        window.diff()
    window.close()
    assert not tracemalloc.is_tracing()
