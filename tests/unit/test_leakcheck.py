"""The per-call leak check: its pure decision on recorded readings, and real checks in this process."""

from __future__ import annotations

import ctypes
import json
import random
import time
import tracemalloc

import pytest

from memwarden.exceptions import UsageError
from memwarden.leakcheck import (
    LeakBudgetExceeded,
    LeakDetected,
    check_leaks,
    decide_layer,
    fewest_calls,
    measure_memory,
    parse_size,
)

KEPT: list[bytearray] = []


def _keep_4k() -> None:
    KEPT.append(bytearray(4096))


def _churn() -> None:
    rows = [{"id": i, "name": str(i) * 4} for i in range(300)]
    del rows


def test_steady_growth_in_every_round_is_a_leak_at_its_rate() -> None:
    """Two rounds that both grow 100 B a call make two growing rounds, and the rate is 100 B/call."""
    rounds = [[1000.0 + 100 * i for i in range(30)], [5000.0 + 100 * i for i in range(30)]]
    trend = decide_layer(rounds, "native")
    assert trend.growing_rounds == 2 and trend.status == "growing"
    assert trend.per_call == pytest.approx(100.0)
    assert trend.total == pytest.approx(2 * 29 * 100)


def test_a_structure_that_fills_then_stays_full_is_not_confirmed() -> None:
    """Growth that stops early in the second round (a deque reaching maxlen) breaks the run of growing rounds."""
    first = [float(1000 * i) for i in range(30)]
    second = [float(1000 * min(30 + i, 35)) for i in range(30)]
    trend = decide_layer([first, second], "native")
    assert trend.growing_rounds == 0
    assert trend.status in {"plateau", "step", "flat"}


def test_noise_and_a_single_step_are_not_growth() -> None:
    """A flat series with +-2 KiB of noise, or one jump, does not grow (seeded noise: no flake)."""
    rng = random.Random(7)
    noisy = [[1e6 + rng.uniform(-2048, 2048) for _ in range(30)] for _ in range(2)]
    assert decide_layer(noisy, "native").growing_rounds == 0
    step = [[0.0] * 12 + [4096.0] * 18]
    assert decide_layer(step, "native").growing_rounds == 0


def test_growth_under_the_minimum_rate_is_none() -> None:
    """0.2 blocks a call is below the python layer's 0.5-block floor."""
    slow = [[float(i // 5) for i in range(30)]]
    assert decide_layer(slow, "python", min_per_call=0.5, unit="blocks").growing_rounds == 0
    assert decide_layer(slow, "python", min_per_call=0.1, unit="blocks").growing_rounds == 1


def test_a_real_python_leak_names_its_line_and_holder() -> None:
    """A function keeping 4 KiB a call in a module list: a python leak near 4 KiB/call, at its line, held by the list."""
    report = check_leaks(_keep_4k, iterations=20)
    assert report.leak and report.layer == "python"
    assert 3900 < report.bytes_per_call < 4400
    assert report.sites and report.sites[0].function == "_keep_4k"
    assert report.sites[0].file.endswith("test_leakcheck.py")
    assert report.holders and report.holders[0].path == "tests.unit.test_leakcheck.KEPT[<int>]"
    with pytest.raises(LeakDetected, match=r"_keep_4k leaks \+4\.\d KiB/call of Python objects"):
        report.raise_for_leak()
    json.dumps(report.to_json())  # plain data


def test_churn_does_not_leak_and_is_never_traced() -> None:
    """A function that builds and drops 300 dicts a call passes, and tracemalloc never starts."""
    calls = []
    started = []

    def watched() -> None:
        started.append(tracemalloc.is_tracing())
        _churn()

    calls.append(check_leaks(watched, iterations=20))
    assert not calls[0].leak and not any(started)
    assert calls[0].traced_bytes_per_call is None


def test_a_ctypes_malloc_leak_is_native() -> None:
    """malloc'd memory never freed grows the native layer only: a native leak near 8 KiB/call."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc 2.33+ for mallinfo2")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    report = check_leaks(lambda: libc.malloc(8192), iterations=20)
    assert report.leak and report.layer == "native"
    assert 8000 < report.bytes_per_call < 8600
    assert report.python.growing_rounds == 0


def test_a_slow_function_is_refused_after_one_call() -> None:
    """0.3 s a call with a 1 s budget: refused after the first call, with the figures in the message."""
    started = time.perf_counter()
    with pytest.raises(LeakBudgetExceeded, match=r"one call takes 0\.3 s.*over the 1\.0 s budget"):
        check_leaks(lambda: time.sleep(0.3), iterations=20, budget_s=1.0)
    assert time.perf_counter() - started < 0.9


def test_bad_arguments_are_usage_errors() -> None:
    """Too few iterations, a negative warm-up or a zero budget are refused before any call."""
    calls: list[int] = []
    for kwargs in ({"iterations": fewest_calls() - 1}, {"warmup": -1}, {"budget_s": 0.0}, {"confirm": 0}):
        with pytest.raises(UsageError):
            check_leaks(lambda: calls.append(1), **kwargs)  # type: ignore[arg-type]
    assert calls == []


def test_measure_memory_reports_peak_and_what_stays() -> None:
    """A call that peaks at 2 MiB and keeps 64 KiB: peak about 2 MiB, net about 64 KiB (other frees aside), at its line."""
    kept: list[bytearray] = []

    def work() -> None:
        big = bytearray(2 * 1024 * 1024)
        kept.append(bytearray(64 * 1024))
        del big

    use = measure_memory(work)
    assert 2 * 1024 * 1024 <= use.peak_bytes < 2.3 * 1024 * 1024
    assert 60 * 1024 <= use.net_python_bytes < 70 * 1024
    assert use.check(peak=1024 * 1024) and not use.check(peak=4 * 1024 * 1024, net=128 * 1024)
    assert (
        use.sites and use.sites[0].function == "test_measure_memory_reports_peak_and_what_stays.<locals>.work"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64 MiB", 64 * 1024**2), ("1.5GB", 1_500_000_000), ("200 KB", 200_000), (1024, 1024), ("10", 10)],
)
def test_sizes_read_like_people_write_them(text: object, expected: int) -> None:
    """KiB/MiB are powers of 1024, KB/MB powers of 1000, and bare numbers are bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1 MiB", "12 parsecs", True, None])
def test_a_size_that_is_not_one_is_a_usage_error(bad: object) -> None:
    """Words, negatives, unknown units and non-numbers are refused with the accepted forms in the message."""
    with pytest.raises(UsageError, match="a size like '64 MiB'"):
        parse_size(bad)
