"""The ``libc`` probe (glibc ``mallinfo2``) and ``malloc_trim``: live on glibc, and with fake libraries."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import flatten
from memwarden.probes.libc import LibcProbe, LibcReading, malloc_trim

MiB = 1024 * 1024

needs_glibc = pytest.mark.skipif(
    not LibcProbe().available(), reason="needs glibc 2.33+ (mallinfo2 and malloc_trim)"
)


def statm_rss() -> int:
    """This process's RSS, read here independently of the code under test."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _FakeLibc:
    """A C library stand-in: only the functions it is given."""

    def __init__(self, **functions: Callable[..., Any]) -> None:
        for name, function in functions.items():
            setattr(self, name, function)


def fake_libc(**functions: Callable[..., Any]) -> Any:
    """A fake C library, typed loosely so it can stand where a ctypes.CDLL is expected."""
    return _FakeLibc(**functions)


def fake_mallinfo2(**overrides: int) -> SimpleNamespace:
    fields = {
        "arena": 1000,
        "ordblks": 11,
        "smblks": 22,
        "hblks": 33,
        "hblkhd": 4400,
        "usmblks": 0,
        "fsmblks": 550,
        "uordblks": 660,
        "fordblks": 340,
        "keepcost": 77,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def readings(values: list[int]) -> Callable[[], int]:
    it: Iterator[int] = iter(values)
    return lambda: next(it)


# -- live glibc ----------------------------------------------------------------------------------


@needs_glibc
def test_live_reading_has_sane_fields() -> None:
    """On glibc every mallinfo2 figure is a non-negative count and in-use fits in what malloc holds."""
    reading = LibcProbe().read()
    assert isinstance(reading, LibcReading)
    assert all(isinstance(v, int) and v >= 0 for v in vars(reading).values())
    assert reading.in_use_bytes <= reading.arena_bytes + reading.mmapped_bytes
    assert reading.in_use_bytes > 0


_RETENTION_EXPERIMENT = """
import gc, json, os
from memwarden.probes.libc import LibcProbe, malloc_trim

def statm_rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

probe = LibcProbe()
start_free = probe.read().free_bytes
rss_start = statm_rss()
# 1 KB is above pymalloc's small-object limit, so each object is its own malloc() chunk.
objects = [bytes(1024) for _ in range(200_000)]
allocated = statm_rss() - rss_start
kept = objects[::50]  # every 50th survives and pins its part of the heap
del objects
gc.collect()
rss_freed = statm_rss()
free_after = probe.read().free_bytes
result = malloc_trim(0)
print(json.dumps({"allocated": allocated, "rss_freed": rss_freed - rss_start,
                  "free_grew": free_after - start_free, "released": result.released,
                  "before": result.rss_before_bytes, "after": result.rss_after_bytes,
                  "returned": result.returned_bytes, "duration": result.duration_s, "kept": len(kept)}))
"""


@needs_glibc
def test_glibc_retains_freed_memory_until_malloc_trim() -> None:
    """Freeing 98 % of 200k 1 KB objects leaves RSS high and malloc's free bytes up; trim returns most.

    Run in a fresh interpreter: a test process whose heap already has free chunks would reuse them.
    """
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _RETENTION_EXPERIMENT], capture_output=True, text=True, check=True, timeout=120
    )
    r = json.loads(out.stdout)
    assert r["allocated"] > 150 * MiB
    # RSS stays high: the freed chunks are kept by malloc, not returned.
    assert r["rss_freed"] > r["allocated"] // 2
    assert r["free_grew"] > r["allocated"] // 2
    assert r["released"]
    assert r["after"] < r["before"]
    assert r["returned"] > r["allocated"] // 3
    assert r["duration"] >= 0.0
    assert r["kept"] == 4000


@needs_glibc
def test_live_malloc_trim_with_custom_rss_reader() -> None:
    """malloc_trim reads RSS through the given reader, once before and once after."""
    calls: list[int] = []

    def reader() -> int:
        calls.append(1)
        return 1000 * len(calls)

    result = malloc_trim(0, rss_reader=reader)
    assert len(calls) == 2
    assert (result.rss_before_bytes, result.rss_after_bytes, result.returned_bytes) == (1000, 2000, 0)


# -- fake libraries ------------------------------------------------------------------------------


def test_fields_are_mapped_from_mallinfo2() -> None:
    """Each reading field comes from its mallinfo2 counterpart (arena, hblkhd, hblks, uordblks ...)."""
    libc = fake_libc(mallinfo2=fake_mallinfo2)
    reading = LibcProbe(libc).read()
    assert reading == LibcReading(
        arena_bytes=1000,
        mmapped_bytes=4400,
        mmapped_chunks=33,
        in_use_bytes=660,
        free_bytes=340,
        free_chunks=11,
        fastbin_free_bytes=550,
        top_releasable_bytes=77,
    )


def test_flatten_gives_libc_metrics() -> None:
    """The flat metrics are prefixed with the layer name and carry every field."""
    reading = LibcProbe(fake_libc(mallinfo2=fake_mallinfo2)).read()
    metrics = flatten(LibcProbe.layer, reading)
    assert metrics["libc.free_bytes"] == 340
    assert len(metrics) == len(vars(reading))


def test_no_mallinfo2_is_unavailable_with_a_reason() -> None:
    """A C library without mallinfo2 (musl, macOS, glibc < 2.33) is unavailable and says why."""
    probe = LibcProbe(fake_libc())
    availability = probe.available()
    assert not availability
    assert "mallinfo2" in availability.reason
    with pytest.raises(ProbeUnavailable) as info:
        probe.read()
    assert info.value.layer == "libc"


def test_unusable_mallinfo2_answer_is_unavailable() -> None:
    """A mallinfo2 that returns something without its fields raises ProbeUnavailable, not AttributeError."""
    probe = LibcProbe(fake_libc(mallinfo2=object))
    assert probe.available()
    with pytest.raises(ProbeUnavailable):
        probe.read()


def test_mallinfo2_that_raises_oserror_is_unavailable() -> None:
    """An OSError inside mallinfo2 becomes ProbeUnavailable."""

    def broken() -> Any:
        raise OSError("no")

    with pytest.raises(ProbeUnavailable):
        LibcProbe(fake_libc(mallinfo2=broken)).read()


def test_probe_class_attributes() -> None:
    """The probe is the 'libc' layer and cheap enough for every tick."""
    assert LibcProbe.layer == "libc"
    assert LibcProbe.cost == "cheap"


def test_malloc_trim_without_the_function_is_unavailable() -> None:
    """malloc_trim raises ProbeUnavailable where the C library has no malloc_trim."""
    with pytest.raises(ProbeUnavailable) as info:
        malloc_trim(libc=fake_libc())
    assert "malloc_trim" in info.value.reason


def test_malloc_trim_measures_the_rss_drop() -> None:
    """returned_bytes is the RSS drop across the call; released is the library's answer; pad is passed on."""
    pads: list[int] = []

    def trim(pad: int) -> int:
        pads.append(pad)
        return 1

    result = malloc_trim(4096, rss_reader=readings([300, 100]), libc=fake_libc(malloc_trim=trim))
    assert pads == [4096]
    assert result.released is True
    assert (result.rss_before_bytes, result.rss_after_bytes, result.returned_bytes) == (300, 100, 200)


def test_malloc_trim_never_reports_negative_returns() -> None:
    """When RSS rose across the call (another thread allocating), returned_bytes is 0."""
    result = malloc_trim(rss_reader=readings([100, 150]), libc=fake_libc(malloc_trim=lambda pad: 0))
    assert result.released is False
    assert result.returned_bytes == 0


def test_malloc_trim_with_unreadable_rss_is_unavailable_and_does_not_trim() -> None:
    """An RSS reader that fails makes malloc_trim raise ProbeUnavailable before trimming anything."""

    def unreadable() -> int:
        raise OSError("no /proc")

    trimmed: list[int] = []

    def trim(pad: int) -> int:
        trimmed.append(pad)
        return 1

    with pytest.raises(ProbeUnavailable, match="RSS"):
        malloc_trim(rss_reader=unreadable, libc=fake_libc(malloc_trim=trim))
    assert trimmed == []


def test_malloc_trim_refuses_a_negative_pad() -> None:
    """A negative pad is a ValueError, not a huge size_t."""
    with pytest.raises(ValueError, match="pad"):
        malloc_trim(-1, libc=fake_libc(malloc_trim=lambda pad: 1))
