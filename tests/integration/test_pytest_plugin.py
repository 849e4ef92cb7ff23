"""The pytest plugin end to end: real pytest sessions (pytester, in subprocesses) using the markers and fixture."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

# Heavy churn, a cache that warms up to its bound, garbage cycles, a deque that grows and then
# stays full: none of them leaks per call.
NO_LEAK_SCENARIOS = """
import collections
import functools
import itertools

import pytest

_keys = itertools.count()

def churn():
    rows = [{"id": i, "name": str(i) * 8, "tags": [i, i + 1]} for i in range(500)]
    return len(rows)

@functools.lru_cache(maxsize=32)
def _render(key):
    return f"template {key:08d} " * 40

def warm_cache():
    _render(next(_keys))

class Node:
    def __init__(self, parent=None):
        self.parent = parent
        self.children = []
        self.me = self

def gc_cycles():
    root = Node()
    for _ in range(200):
        root.children.append(Node(root))

RECENT = collections.deque(maxlen=40)

def bounded_deque():
    RECENT.append(bytearray(512))

SCENARIOS = {"churn": churn, "warm_cache": warm_cache, "gc_cycles": gc_cycles, "bounded_deque": bounded_deque}
"""

LEAKY = """
import pytest

SESSIONS = {}

def remember(user):
    SESSIONS[len(SESSIONS)] = bytearray(4096)

@pytest.mark.leaks
def test_marked():
    remember("ada")

def test_fixture(leak_check):
    leak_check(remember, "ada")
"""


def _run(pytester: pytest.Pytester, *args: str, timeout: float = 240) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)


def test_a_leaking_test_fails_naming_rate_site_and_holder(pytester: pytest.Pytester) -> None:
    """A test that keeps 4 KiB per call fails, marker and fixture alike, with the rate per call, the line
    that allocates, a traceback through the user's code and the global that holds it."""
    pytester.makepyfile(test_app=LEAKY)
    result = _run(pytester)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert re.search(r"test_marked leaks \+4\.\d KiB/call of Python objects", out), out
    assert re.search(r"remember leaks \+4\.\d KiB/call of Python objects", out), out
    assert "allocated at test_app.py:6 in remember()" in out
    assert "held by test_app.SESSIONS[<int>]" in out
    assert "memwarden leak check" in out  # the report section
    assert "test_app.py:10 in test_marked" in out  # the traceback, from the user's outermost frame
    assert "_pytest" not in out.split("memwarden leak check")[1].split("short test summary")[0]


def test_tests_that_do_not_leak_pass(pytester: pytest.Pytester) -> None:
    """Churn, a warming cache, gc cycles and a deque that fills up to its bound pass, and report ~0 B/call."""
    pytester.makepyfile(scenarios=NO_LEAK_SCENARIOS)
    pytester.makepyfile(
        test_ok="""
        import pytest
        from scenarios import SCENARIOS

        @pytest.mark.parametrize("name", sorted(SCENARIOS))
        def test_no_leak(name, leak_check):
            report = leak_check(SCENARIOS[name])
            assert not report.leak
        """
    )
    result = _run(pytester, "-rA")
    result.assert_outcomes(passed=4)
    assert "Captured leak check call" in result.stdout.str()  # the figures of a pass, with -rA


@pytest.mark.slow
def test_no_false_alarm_in_twenty_repetitions(pytester: pytest.Pytester) -> None:
    """Each non-leaking scenario, checked 20 times over, never fails: 80 leak checks, no flake."""
    pytester.makepyfile(scenarios=NO_LEAK_SCENARIOS)
    pytester.makepyfile(
        test_ok="""
        import pytest
        from scenarios import SCENARIOS

        @pytest.mark.parametrize("run", range(20))
        @pytest.mark.parametrize("name", sorted(SCENARIOS))
        def test_no_leak(name, run, leak_check):
            leak_check(SCENARIOS[name])
        """
    )
    result = _run(pytester, "-q", timeout=600)
    result.assert_outcomes(passed=80)


def test_a_native_leak_fails_too(pytester: pytest.Pytester) -> None:
    """Memory that ctypes mallocs and never frees is a native leak: the test fails and says so."""
    pytester.makepyfile(
        test_native="""
        import ctypes
        import pytest

        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]

        @pytest.mark.leaks
        def test_native():
            libc.malloc(8192)
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"test_native leaks \+8\.\d KiB/call of native memory \(not Python objects\)", out), out
    assert "no Python allocation grows" in out


def test_memory_cap_fails_and_passes_as_it_should(pytester: pytest.Pytester) -> None:
    """memory_cap fails a test whose peak or kept memory is over its cap, naming the kept allocation's line,
    and passes one under its caps."""
    pytester.makepyfile(
        test_cap="""
        import pytest

        KEPT = []

        @pytest.mark.memory_cap(peak="1 MiB")
        def test_peak_over():
            block = bytearray(4 * 1024 * 1024)
            del block

        @pytest.mark.memory_cap(peak="8 MiB", net="64 KiB")
        def test_under():
            block = bytearray(4 * 1024 * 1024)
            del block

        @pytest.mark.memory_cap(net="1 MiB")
        def test_net_over():
            KEPT.append(bytearray(3 * 1024 * 1024))
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert re.search(r"test_peak_over: peak 4\.\d MiB of Python allocations over the cap of 1\.0 MiB", out), (
        out
    )
    assert re.search(
        r"test_net_over: kept 3\.\d MiB of Python objects after the call, over the net cap", out
    ), out
    assert "test_cap.py:17 in test_net_over()" in out
    assert "memwarden memory cap" in out


def test_a_slow_function_is_refused_within_budget_with_a_clear_message(pytester: pytest.Pytester) -> None:
    """A marked test taking 10 s a call stops after its first call with one line saying why, not after
    minutes of calls."""
    pytester.makepyfile(
        test_slow="""
        import time
        import pytest

        @pytest.mark.leaks
        def test_slow():
            time.sleep(10)
        """
    )
    result = _run(pytester, "--durations=1")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "memwarden: leak check of test_slow: one call takes 10.0 s" in out
    assert "over the 1 min 0 s budget (stopped after 1 call(s)" in out
    assert "Traceback" not in out
    seconds = float(re.search(r"([\d.]+)s call +test_slow.py::test_slow", out).group(1))  # type: ignore[union-attr]
    assert seconds < 15


def test_bad_marker_arguments_are_one_line_errors(pytester: pytest.Pytester) -> None:
    """Too few iterations, an unknown option or a size that is not one fail the test with one line."""
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.leaks(iterations=3)
        def test_few():
            pass

        @pytest.mark.leaks(iteration=30)
        def test_typo():
            pass

        @pytest.mark.memory_cap(peak="lots")
        def test_size():
            pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "memwarden: iterations=3 is too few for a trend test at alpha=0.001: use at least" in out
    assert "memwarden: unknown leaks option(s) iteration" in out
    assert "memwarden: memory_cap peak must be a number of bytes or a size like '64 MiB', not 'lots'" in out


def test_options_come_from_ini_and_flags(pytester: pytest.Pytester) -> None:
    """An ini setting sets the iterations; the command-line flag wins over it; a marker argument over both."""
    pytester.makeini(
        """
        [pytest]
        memwarden_leak_iterations = 15
        memwarden_leak_warmup = 2
        """
    )
    pytester.makepyfile(
        test_opts="""
        import pytest

        @pytest.mark.leaks
        def test_default():
            pass

        @pytest.mark.leaks(iterations=17)
        def test_marker():
            pass
        """
    )
    out = _run(pytester, "-rA").stdout.str()
    assert "in 1 round(s) of 15 after 2 warm-up" in out
    assert "in 1 round(s) of 17 after 2 warm-up" in out
    out = _run(pytester, "-rA", "--memwarden-leak-iterations=16").stdout.str()
    assert "in 1 round(s) of 16 after 2 warm-up" in out
    assert "in 1 round(s) of 17 after 2 warm-up" in out


def test_test_arguments_named_like_options_reach_the_test(pytester: pytest.Pytester) -> None:
    """A parameter called ``name`` (an option of the check too) goes to the test, not to the check."""
    pytester.makepyfile(
        test_names="""
        import pytest

        SEEN = []

        @pytest.mark.parametrize("name", ["ada"])
        @pytest.mark.leaks(iterations=12, warmup=1)
        def test_param(name):
            SEEN.append(name) if len(SEEN) < 3 else None

        def test_fixture(leak_check):
            got = []
            leak_check(lambda name: got.append(name) if not got else None, name="grace", iterations=12)
            assert got == ["grace"]
        """
    )
    result = _run(pytester, "-rA")
    result.assert_outcomes(passed=2)
    assert "test_param[ada]: no growth per call" in result.stdout.str()


def test_leak_checks_can_be_switched_off(pytester: pytest.Pytester) -> None:
    """--memwarden-no-leak-checks runs a marked test once, unchecked: the leaky one passes."""
    pytester.makepyfile(test_app=LEAKY)
    result = _run(pytester, "--memwarden-no-leak-checks", "-k", "marked")
    result.assert_outcomes(passed=1, deselected=1)


def test_unused_plugin_costs_nothing(pytester: pytest.Pytester) -> None:
    """A session without the markers or fixture never traces, starts no thread and loads no checker."""
    pytester.makepyfile(
        test_plain="""
        import sys, threading, tracemalloc

        def test_plain():
            assert "memwarden.pytest_plugin" in sys.modules  # the plugin is loaded ...
            assert not tracemalloc.is_tracing()
            assert threading.active_count() == 1
            assert "memwarden.leakcheck" not in sys.modules  # ... and did nothing
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1)


def test_a_users_tracemalloc_session_is_left_running(pytester: pytest.Pytester) -> None:
    """A test that traces with tracemalloc itself keeps its session (and depth) after a leak check."""
    pytester.makepyfile(
        test_own="""
        import tracemalloc

        def test_own(leak_check):
            tracemalloc.start(3)
            try:
                report = leak_check(lambda: None)
                assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 3
                assert any("already tracing" in n for n in report.notes)
            finally:
                tracemalloc.stop()
        """
    )
    _run(pytester).assert_outcomes(passed=1)


@pytest.mark.skipif(sys.platform != "linux", reason="xdist workers are forked subprocesses here")
def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    """Under pytest-xdist each worker measures its own tests: the leaky ones fail, the clean ones pass."""
    pytest.importorskip("xdist", reason="pytest-xdist is in the dev extra")
    pytester.makepyfile(test_app=LEAKY)
    pytester.makepyfile(
        test_clean=textwrap.dedent(
            """
            import pytest

            @pytest.mark.leaks
            def test_clean_a():
                [str(i) for i in range(100)]

            @pytest.mark.leaks
            def test_clean_b():
                {i: i for i in range(100)}
            """
        )
    )
    result = _run(pytester, "-p", "xdist", "-n", "2")
    result.assert_outcomes(failed=2, passed=2)
    assert "held by test_app.SESSIONS[<int>]" in result.stdout.str()
