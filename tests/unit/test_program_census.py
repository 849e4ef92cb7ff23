"""The investigator's census of the program: memwarden's own objects never counted, str and bytes counted.

Real objects throughout: a real Sampler whose ring fills with samples, a module that keeps bytes and
strings, a real tracemalloc window.
"""

from __future__ import annotations

import gc
import re
import types

from memwarden.attribution._census import program_census
from memwarden.probes.objects import census
from memwarden.probes.tracing import TracemallocWindow
from memwarden.sampler import Sampler
from memwarden.testing import FakeClock, ReplayProbe

from ._support import tracing


def _count(c: object, name: str) -> int:
    return next((t.count for t in c.types if t.type == name), 0)  # type: ignore[attr-defined]


def test_the_samplers_ring_is_not_the_programs() -> None:
    """The array rows of a real sampler's ring are memwarden's: the plain census counts them, the program's does not."""
    before_plain, before = census(top=None), program_census()
    clock = FakeClock()
    sampler = Sampler([ReplayProbe("process", [{"rss_bytes": 1}])], interval=1.0, clock=clock)
    for _ in range(400):
        sampler.sample_once()
        clock.advance(1.0)
    after_plain, after = census(top=None), program_census()
    assert _count(after_plain, "array.array") - _count(before_plain, "array.array") >= 400
    assert abs(_count(after, "array.array") - _count(before, "array.array")) < 20
    assert len(sampler.ring) == 400


def test_strings_and_bytes_kept_by_the_program_are_counted() -> None:
    """bytes in a list and strings in an (untracked) dict of str are counted; the plain census sees neither."""
    app = types.ModuleType("mw_census_app")
    app.CHUNKS = []  # type: ignore[attr-defined]
    app.NAMES = {}  # type: ignore[attr-defined]
    before_plain, before = census(top=None), program_census()
    app.CHUNKS.extend(bytes([i % 256]) * 4096 for i in range(2000))  # type: ignore[attr-defined]
    app.NAMES.update((i, f"user-{i:08d}") for i in range(3000))  # type: ignore[attr-defined]
    import sys

    sys.modules[app.__name__] = app
    try:
        after_plain, after = census(top=None), program_census()
    finally:
        del sys.modules[app.__name__]
    assert _count(after_plain, "bytes") == _count(before_plain, "bytes") == 0
    grew_bytes = _count(after, "bytes") - _count(before, "bytes")
    grew_str = _count(after, "str") - _count(before, "str")
    assert 1900 <= grew_bytes <= 2100, grew_bytes
    assert 2800 <= grew_str <= 3300, grew_str
    size = next(t.shallow_bytes for t in after.types if t.type == "bytes")
    assert size >= 2000 * 4096


def test_a_shared_string_counts_once_however_many_hold_it() -> None:
    """A string that many dicts share as a value counts about once, not once per dict."""
    shared = "-".join(["shared", "value"])
    before = program_census()
    rows = [{"k": shared, "n": i} for i in range(5000)]  # untracked dicts of str/int, in a big list
    after = program_census()
    assert _count(after, "str") - _count(before, "str") < 50
    assert 4900 <= _count(after, "dict") - _count(before, "dict") <= 5100
    assert len(rows) == 5000


def test_a_window_compiles_its_exclusions_before_it_opens() -> None:
    """Opening, diffing and closing a window makes no new re.Pattern (once made, the window compiles nothing)."""
    with tracing(5):
        window = TracemallocWindow(frames=5)
        patterns = sum(1 for o in gc.get_objects() if type(o) is re.Pattern)
        window.open()
        junk = [f"{i}-x" * 3 for i in range(2000)]
        window.diff(top=5)
        window.close()
        assert sum(1 for o in gc.get_objects() if type(o) is re.Pattern) == patterns
        assert junk
