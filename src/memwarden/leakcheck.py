"""Per-call leak checks: call a function again and again and decide whether memory grows per call.

This is what the pytest plugin (``@pytest.mark.leaks``, the ``leak_check`` fixture) runs, and it
works outside pytest too::

    from memwarden.leakcheck import check_leaks

    report = check_leaks(handle_request, payload, iterations=30)
    assert not report.leak, report.render()

How it decides. After ``warmup`` calls (caches fill, code gets specialised, free lists settle),
each call is followed by a full garbage collection (which also empties the free lists) and two
readings: the number of
blocks Python's object allocator has handed out and not taken back (``sys.getallocatedblocks()``:
the *python* layer) and the bytes glibc's ``malloc`` has in use (the *native* layer: C extensions,
ctypes, native libraries, and Python's own large blocks). Both are exact counts, read without
tracemalloc (whose own bookkeeping lives in ``malloc`` and would blur the native layer), so a
function that does not leak gives a flat line, whatever it allocates and frees on the way. Each
series, indexed by call, goes through the same robust trend analysis as the diagnosis
(:func:`memwarden.diagnosis._trend.analyse`: Theil-Sen slope, Mann-Kendall test, warm-up, plateau
and step detection). A round that grows is *confirmed* by another round analysed on its own: a
leak grows in every round, while a warm-up, a cache filling up to its bound or a
``deque(maxlen=N)`` filling up stops growing. Only a layer that grows in ``confirm`` consecutive
rounds is a leak (native memory alone: ``confirm + 1`` rounds, for it moves with more than the
function).

Only then is tracemalloc started, for a short *attribution* round: the bytes per call it traces,
the lines that allocated what stayed (a tracemalloc diff over that round) and what holds it (a
holder search from a few live objects allocated there). A passing check never traces.

The whole check has a time budget (``budget_s``): a function too slow to be called the needed
number of times within it is refused after its first call, with a message that says why, and
never run for minutes.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import gc
import itertools
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, Literal

from memwarden._format import format_bytes, format_duration, short_path
from memwarden.exceptions import MemwardenError, UsageError

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BUDGET_S",
    "DEFAULT_CONFIRM",
    "DEFAULT_ITERATIONS",
    "DEFAULT_MIN_BLOCKS_PER_CALL",
    "DEFAULT_MIN_BYTES_PER_CALL",
    "DEFAULT_WARMUP",
    "LayerTrend",
    "LeakBudgetExceeded",
    "LeakDetected",
    "LeakHolder",
    "LeakReport",
    "LeakSite",
    "MemoryCapExceeded",
    "MemoryUse",
    "check_leaks",
    "decide_layer",
    "fewest_calls",
    "measure_memory",
    "parse_size",
]

DEFAULT_ITERATIONS = 30
"""Measured calls per round."""
DEFAULT_WARMUP = 5
"""Calls made before measuring (not analysed)."""
DEFAULT_CONFIRM = 2
"""Consecutive growing rounds that make a leak."""
DEFAULT_ALPHA = 0.001
"""Significance level of the trend test in each round."""
DEFAULT_MIN_BYTES_PER_CALL = 16.0
"""Native growth slower than this per call is treated as none."""
DEFAULT_MIN_BLOCKS_PER_CALL = 0.5
"""Python growth slower than this many allocator blocks per call is treated as none."""
DEFAULT_BUDGET_S = 60.0
"""Wall-clock budget of one check, warm-up included."""
ATTRIBUTION_CALLS = 20
"""Calls traced by tracemalloc once a leak is found, to name its bytes, lines and holders."""

Layer = Literal["python", "native"]

_RECENT = 9  # calls whose median duration projects the time left


class LeakBudgetExceeded(MemwardenError):
    """The function is too slow to be called often enough within the check's time budget."""


class LeakDetected(AssertionError):
    """Raised by :meth:`LeakReport.raise_for_leak`: memory grows per call. ``report`` has the details."""

    def __init__(self, report: LeakReport) -> None:
        super().__init__(report.summary)
        self.report = report


@dataclasses.dataclass(frozen=True)
class LayerTrend:
    """What one layer did per call.

    ``unit`` is ``"blocks"`` for the python layer (allocator blocks) and ``"B"`` for the native
    one. ``status`` is the trend's call in the last round (``growing``, ``plateau``, ``step``,
    ``flat``, ``shrinking``, ``insufficient``); ``per_call`` the Theil-Sen slope per call (the
    median of each round's slope); ``p_value`` the Mann-Kendall p-value of the last round;
    ``growing_rounds`` how many rounds in a row, ending with the last, grew; ``reason`` the
    trend's own sentence for the last round (its rates read per call); ``total`` how much the
    layer grew within the rounds (the check's own work between rounds left out).
    """

    layer: Layer
    unit: str
    status: str
    per_call: float
    p_value: float | None
    growing_rounds: int
    reason: str
    total: float


@dataclasses.dataclass(frozen=True)
class LeakSite:
    """A line that allocated memory which stayed alive over the attribution round."""

    file: str
    line: int
    function: str | None
    size_diff_bytes: int
    count_diff: int
    traceback: tuple[tuple[str, int, str | None], ...]  # outermost frame first


@dataclasses.dataclass(frozen=True)
class LeakHolder:
    """What keeps sampled objects from the top site alive (``count`` samples had this path)."""

    type: str
    path: str
    root_kind: str
    count: int
    bound: str | None = None


@dataclasses.dataclass(frozen=True)
class LeakReport:
    """The outcome of one :func:`check_leaks`.

    ``leak`` is True when a layer grew in ``confirm`` consecutive rounds (native memory alone:
    ``confirm + 1``); ``layer`` is then the
    one to blame (``python`` when Python's allocator blocks grow, ``native`` when only native
    memory does) and ``bytes_per_call`` the growth per call in bytes (traced by tracemalloc for a
    Python leak, ``malloc``'s in-use bytes for a native one). ``calls`` counts the measured calls,
    ``warmup`` the calls before them, ``attribution_calls`` the traced calls after a leak was
    found; ``seconds_per_call`` is the median duration of one untraced call. ``traced_bytes_per_call``
    is what tracemalloc saw grow per call in the attribution round (``None`` without one);
    ``sites`` and ``holders`` come from it. ``notes`` say what else is worth knowing.
    ``python_readings`` / ``native_readings`` are the values read after each measured call.
    """

    name: str
    leak: bool
    layer: Layer | None
    bytes_per_call: float
    python: LayerTrend
    native: LayerTrend | None
    calls: int
    rounds: int
    warmup: int
    iterations: int
    seconds_per_call: float
    elapsed_s: float
    traced_bytes_per_call: float | None = None
    attribution_calls: int = 0
    sites: tuple[LeakSite, ...] = ()
    holders: tuple[LeakHolder, ...] = ()
    notes: tuple[str, ...] = ()
    python_readings: tuple[int, ...] = ()
    native_readings: tuple[int, ...] = ()

    @property
    def summary(self) -> str:
        """One line: the verdict, the rate, and the first site and holder when there are some."""
        if not self.leak:
            native = f", native {_per_call(self.native.per_call)}" if self.native else ""
            return (
                f"{self.name}: no growth per call over {self.calls} calls after {self.warmup} warm-up "
                f"(python {self.python.per_call:+.2g} blocks/call{native})"
            )
        what = "Python objects" if self.layer == "python" else "native memory (not Python objects)"
        line = f"{self.name} leaks {_per_call(self.bytes_per_call)} of {what}, over {self.calls} calls"
        if self.sites:
            s = self.sites[0]
            line += f"; allocated at {short_path(s.file)}:{s.line}"
            if s.function:
                line += f" in {s.function}()"
        if self.holders:
            line += f"; held by {self.holders[0].path}"
        return line

    def render(self, *, summary: bool = True) -> str:
        """The readable report: figures per layer, top sites with tracebacks, holder paths
        (``summary=False``: without the first line, :attr:`summary`)."""
        from memwarden.reporters.leaks import render_leak_report

        return render_leak_report(self, summary=summary)

    def raise_for_leak(self) -> None:
        """Raise :class:`LeakDetected` when the report says leak."""
        if self.leak:
            raise LeakDetected(self)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return dataclasses.asdict(self)


def fewest_calls(alpha: float = DEFAULT_ALPHA) -> int:
    """The fewest measured calls per round in which a steady trend can pass the test at ``alpha``."""
    from memwarden.diagnosis._trend import _fewest_testable

    return max(5, _fewest_testable(alpha))


def decide_layer(
    rounds: list[list[float]],
    layer: Layer,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_per_call: float = DEFAULT_MIN_BYTES_PER_CALL,
    unit: str = "B",
) -> LayerTrend:
    """The trend of one layer, from the readings after each call, one list per round.

    Pure: the same readings give the same answer. Each round is analysed on its own (is it
    still growing?); the rate is the median of each round's Theil-Sen slope.
    """
    from memwarden.diagnosis._trend import analyse, theil_sen

    if not rounds or not rounds[-1]:
        raise UsageError("a leak decision needs at least one round of readings")
    growing = 0
    last = None
    slopes: list[float] = []
    total = 0.0
    for values in rounds:
        calls = [float(i) for i in range(len(values))]
        trend = analyse(calls, values, alpha=alpha, min_rate=min_per_call, unit=unit)
        growing = growing + 1 if trend.status == "growing" else 0
        last = trend
        if len(values) >= 2:
            slopes.append(theil_sen(calls, values)[0])
            total += values[-1] - values[0]
    assert last is not None
    # Each round on its own: between rounds the check itself allocates (the analysis), a jump
    # that says nothing about the function.
    slope = statistics.median(slopes) if slopes else 0.0
    return LayerTrend(
        layer=layer,
        unit=unit,
        status=last.status,
        per_call=slope,
        p_value=last.mk.p_value if last.mk is not None else None,
        growing_rounds=growing,
        reason=last.reason.replace("/s", "/call"),
        total=total,
    )


class _Readers:
    """The readings after each call, made without allocating Python objects that stay."""

    def __init__(self) -> None:
        from memwarden.probes.libc import LibcProbe

        probe = LibcProbe()
        self.native_reason: str | None = None
        self._libc: LibcProbe | None = probe
        if not probe.available():
            self.native_reason = probe.available().reason
            self._libc = None

    @property
    def has_native(self) -> bool:
        return self._libc is not None

    def native(self) -> int:
        """Bytes in use in malloc, less what tracemalloc uses for itself (0 when it does not trace)."""
        if self._libc is None:
            return 0
        r = self._libc.read()
        return r.in_use_bytes + r.mmapped_bytes - tracemalloc.get_tracemalloc_memory()


def check_leaks(
    fn: Callable[..., object],
    *args: Any,
    iterations: int = DEFAULT_ITERATIONS,
    warmup: int = DEFAULT_WARMUP,
    confirm: int = DEFAULT_CONFIRM,
    alpha: float = DEFAULT_ALPHA,
    min_bytes_per_call: float = DEFAULT_MIN_BYTES_PER_CALL,
    min_blocks_per_call: float = DEFAULT_MIN_BLOCKS_PER_CALL,
    budget_s: float = DEFAULT_BUDGET_S,
    frames: int = 10,
    name: str | None = None,
    native: bool = True,
    holders: bool = True,
    **kwargs: Any,
) -> LeakReport:
    """Call ``fn(*args, **kwargs)`` repeatedly and decide whether memory grows per call.

    ``warmup`` calls come first and are not analysed; then rounds of ``iterations`` calls each,
    until a round does not grow or ``confirm`` rounds in a row did (a leak). ``alpha`` is the
    significance level of each round's trend test; ``min_blocks_per_call`` (python layer) and
    ``min_bytes_per_call`` (native layer) the growth treated as none. ``native=False`` leaves out
    the native layer; ``holders=False`` skips the holder search. ``budget_s`` bounds the wall
    time: a function too slow for it raises :class:`LeakBudgetExceeded` after its first call.
    ``frames`` is the traceback depth when the attribution round starts tracemalloc; a
    tracemalloc session already running is used as it is and left running.
    """
    label = name or getattr(fn, "__qualname__", None) or repr(fn)
    _check_arguments(iterations, warmup, confirm, alpha, min_bytes_per_call, budget_s, frames)
    if not (math.isfinite(min_blocks_per_call) and min_blocks_per_call >= 0.0):
        raise UsageError(f"min_blocks_per_call must be a finite number >= 0, not {min_blocks_per_call!r}")
    needed = fewest_calls(alpha)
    if iterations < needed:
        raise UsageError(
            f"iterations={iterations} is too few for a trend test at alpha={alpha:g}: use at least {needed}"
        )
    readers = _Readers() if native else None
    read_native = readers.native if readers is not None and readers.has_native else None
    notes: list[str] = []
    if tracemalloc.is_tracing():
        notes.append(
            "tracemalloc was already tracing: its own bookkeeping in malloc blurs the native layer, and the "
            "check used that session as it is and left it running"
        )
    started = time.perf_counter()
    most_calls = warmup + iterations * (confirm + 1)
    least_calls = warmup + iterations * (1 if confirm == 1 else 2)
    # Preallocated: the check must not keep objects alive per call (they would read as a leak).
    durations = array.array("d", bytes(8 * (most_calls + ATTRIBUTION_CALLS + 2)))
    done = array.array("q", [0])
    clock = time.perf_counter

    def call(check_budget: bool = True) -> None:
        t0 = clock()
        fn(*args, **kwargs)
        durations[done[0]] = clock() - t0
        done[0] += 1
        if check_budget:
            _check_budget(label, durations, done[0], started, budget_s, least_calls)

    for _ in range(warmup):
        call()
    py_buf = array.array("q", bytes(8 * most_calls))
    nat_buf = array.array("q", bytes(8 * most_calls))
    blocks = sys.getallocatedblocks
    n = 0
    bounds: list[int] = []
    py_rounds: list[list[float]] = []
    nat_rounds: list[list[float]] = []
    python = native_trend = None
    # A full collection after every call: it frees every cycle and empties the free lists (which
    # otherwise fill by a block or so a call, and read as growth). What existed before the rounds
    # is frozen out of the collector's scans, so that a full collection costs what the function
    # made, not the size of the whole test process (a program that froze objects itself is left
    # as it is, and its collections cost more).
    freeze = gc.get_freeze_count() == 0
    gc.collect()
    if freeze:
        gc.freeze()
    try:
        for r in range(confirm + 1):  # a native-only growth needs one more round (see below)
            for _ in range(iterations):
                call()
                gc.collect()
                py_buf[n] = blocks()
                if read_native is not None:
                    nat_buf[n] = read_native()
                n += 1
            bounds.append(n)
            start = bounds[-2] if len(bounds) > 1 else 0
            py_rounds.append([float(v) for v in py_buf[start:n]])
            if read_native is not None:
                nat_rounds.append([float(v) for v in nat_buf[start:n]])
            python = decide_layer(
                py_rounds, "python", alpha=alpha, min_per_call=min_blocks_per_call, unit="blocks"
            )
            native_trend = (
                decide_layer(nat_rounds, "native", alpha=alpha, min_per_call=min_bytes_per_call)
                if nat_rounds
                else None
            )
            py_grew = python.growing_rounds
            nat_grew = native_trend.growing_rounds if native_trend is not None else 0
            if py_grew >= confirm or nat_grew >= confirm + 1:
                break  # confirmed
            if py_grew != r + 1 and nat_grew != r + 1:
                break  # neither layer is still growing
    finally:
        if freeze:
            gc.unfreeze()
    assert python is not None
    py_leak = python.growing_rounds >= confirm
    # malloc's figure is exact but process-wide, and moves with more than the function (glibc's own
    # bookkeeping): growth of native memory alone must hold for one round more.
    nat_leak = native_trend is not None and native_trend.growing_rounds >= confirm + 1
    layer: Layer | None = "python" if py_leak else "native" if nat_leak else None
    untraced_calls = done[0]
    seconds_per_call = statistics.median(durations[:untraced_calls]) if untraced_calls else 0.0

    traced: float | None = None
    sites: tuple[LeakSite, ...] = ()
    found: tuple[LeakHolder, ...] = ()
    attribution = 0
    if layer is not None:
        left = budget_s - (time.perf_counter() - started)
        # tracemalloc slows allocation-heavy code several times over
        if seconds_per_call * (ATTRIBUTION_CALLS + 2) * 5 > left:
            notes.append("no attribution round (tracemalloc): it would not fit in the time budget")
        else:
            traced, sites, found, attribution, more = _attribute(
                lambda: call(check_budget=False), frames, holders, min_bytes_per_call
            )
            notes.extend(more)
    if readers is not None and not readers.has_native:
        notes.append(f"native layer not measured: {readers.native_reason}")
    rate = 0.0
    if layer == "python":
        if traced is not None:
            rate = traced
        elif native_trend is not None:
            rate = native_trend.per_call
    elif layer == "native" and native_trend is not None:
        rate = native_trend.per_call
    return LeakReport(
        name=label,
        leak=layer is not None,
        layer=layer,
        bytes_per_call=rate,
        python=python,
        native=native_trend,
        calls=n,
        rounds=len(bounds),
        warmup=warmup,
        iterations=iterations,
        seconds_per_call=seconds_per_call,
        elapsed_s=time.perf_counter() - started,
        traced_bytes_per_call=traced,
        attribution_calls=attribution,
        sites=sites,
        holders=found,
        notes=tuple(notes),
        python_readings=tuple(py_buf[:n]),
        native_readings=tuple(nat_buf[:n]) if nat_rounds else (),
    )


def _attribute(
    call: Callable[[], None], frames: int, holders: bool, min_bytes: float
) -> tuple[float | None, tuple[LeakSite, ...], tuple[LeakHolder, ...], int, list[str]]:
    """One traced round: bytes per call, the growing sites, what holds their objects."""
    from memwarden.diagnosis._trend import theil_sen
    from memwarden.probes.tracing import TracemallocWindow

    notes: list[str] = []
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(frames)
    window: TracemallocWindow | None = None
    samples: list[object] = []
    diffs: list[Any] = []
    buf = array.array("q", bytes(8 * ATTRIBUTION_CALLS))
    traced = 0.0
    get_traced = tracemalloc.get_traced_memory
    try:
        for _ in range(2):  # tracemalloc's own tables and the traced code settle
            call()
        gc.collect()
        window = TracemallocWindow(frames=frames).open()
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()  # as in the measured rounds: full collections that cost what the calls made
        try:
            for i in range(ATTRIBUTION_CALLS):
                call()
                gc.collect()
                buf[i] = get_traced()[0]
        finally:
            if freeze:
                gc.unfreeze()
        traced = theil_sen([float(i) for i in range(len(buf))], [float(v) for v in buf])[0]
        if traced >= min_bytes:  # tracemalloc sees the growth: name its lines and holders
            diffs = window.diff(group_by="traceback", top=10, name_functions=False)
            # what grew by about the leak's amount, not the odd allocation that happened meanwhile
            least = max(min_bytes * ATTRIBUTION_CALLS, 0.05 * traced * ATTRIBUTION_CALLS)
            diffs = [d for d in diffs if d.size_diff_bytes >= least][:5]
            if holders:
                samples = _sample(diffs)
    finally:
        if window is not None:
            window.close()
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
    sites = tuple(_site(d) for d in window.name_functions(diffs)) if window is not None else ()
    found: tuple[LeakHolder, ...] = ()
    if samples:
        found, note = _holders(samples)
        if note:
            notes.append(note)
    samples.clear()
    return traced, sites, found, ATTRIBUTION_CALLS + 2, notes


def _check_arguments(
    iterations: int, warmup: int, confirm: int, alpha: float, min_bytes: float, budget_s: float, frames: int
) -> None:
    if not isinstance(iterations, int) or iterations < 1:
        raise UsageError(f"iterations must be a positive whole number, not {iterations!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise UsageError(f"warmup must be a whole number >= 0, not {warmup!r}")
    if not isinstance(confirm, int) or confirm < 1:
        raise UsageError(f"confirm must be a positive whole number, not {confirm!r}")
    if not 0.0 < alpha < 0.5:
        raise UsageError(f"alpha must be between 0 and 0.5, not {alpha!r}")
    if not (math.isfinite(min_bytes) and min_bytes >= 0.0):
        raise UsageError(f"min_bytes_per_call must be a finite number >= 0, not {min_bytes!r}")
    if not (math.isfinite(budget_s) and budget_s > 0.0):
        raise UsageError(f"budget_s must be a positive number of seconds, not {budget_s!r}")
    if not isinstance(frames, int) or frames < 1:
        raise UsageError(f"frames must be a positive whole number, not {frames!r}")


def _check_budget(
    label: str, durations: array.array[float], done: int, started: float, budget_s: float, least: int
) -> None:
    """Stop as soon as the calls still needed cannot fit in the budget.

    The first call may be slow for reasons that do not repeat (imports, a cache filling), so
    after it alone the check gives up only when even ``least`` calls that fast would not fit.
    """
    elapsed = time.perf_counter() - started
    # The median of the last few calls: a bounded number of floats, so that the float free list
    # (which tracemalloc counts as allocated) does not grow with every call.
    per_call = durations[0] if done == 1 else statistics.median(durations[max(1, done - _RECENT) : done])
    projected = per_call * least if done == 1 else elapsed + per_call * max(0, least - done)
    if projected <= budget_s:
        return
    raise LeakBudgetExceeded(
        f"leak check of {label}: one call takes {format_duration(per_call)}, so the {least} calls it needs "
        f"would take about {format_duration(per_call * least)}, over the {format_duration(budget_s)} budget "
        f"(stopped after {done} call(s), {format_duration(elapsed)}); check a smaller unit of work, lower "
        "iterations/warmup, or raise budget_s (ini: memwarden_leak_budget)"
    )


def _sample(diffs: list[Any]) -> list[object]:
    """A few live objects allocated at the top sites (tracemalloc must still be tracing)."""
    from memwarden._introspect import type_module
    from memwarden.attribution._holders import is_memwarden_module, sample_objects

    quick = _sample_from_globals(diffs[:3])
    if quick:
        return quick
    deadline = time.monotonic() + 2.0
    for d in diffs[:3]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            found = sample_objects(d.file, d.line, limit=8, time_budget_s=left, survivors_first=True)
        except MemwardenError:
            return []
        objs = [o for o in found if not is_memwarden_module(type_module(type(o)) or "")]
        if objs:
            return objs[:5]
    return []


_CONTAINERS = (dict, list, set, frozenset, tuple, collections.deque)
_GLOBALS_ITEMS = 2000  # items looked at per container


def _sample_from_globals(diffs: list[Any]) -> list[object]:
    """Objects allocated at the sites, found in the containers that the user's modules keep in globals
    (and in the attributes of the objects kept there): where a leak in a test's code usually sits.

    Quick, and finds what the heap-wide sampler misses: small dicts of bytes or strings are not
    tracked by the collector, so no heap scan lists them.
    """
    from memwarden.probes._codemap import default_code_places

    places = default_code_places()
    wanted = {(d.file, d.line) for d in diffs}
    if not wanted:
        return []
    get_tb = tracemalloc.get_object_traceback
    found: list[object] = []
    seen: set[int] = set()

    def made_there(obj: object) -> bool:
        tb = get_tb(obj)
        return tb is not None and any((f.filename, f.lineno) in wanted for f in tb)

    def look(container: object) -> bool:
        if id(container) in seen:
            return False
        seen.add(id(container))
        items: Any = container.values() if isinstance(container, dict) else container
        try:
            for item in itertools.islice(items, _GLOBALS_ITEMS):
                if made_there(item):
                    found.append(item)
                    if len(found) >= 5:
                        return True
        except RuntimeError:  # changed size while read
            return False
        return False

    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not places.is_user(file):
            continue
        namespace = getattr(module, "__dict__", {})
        for value in list(namespace.values()):
            candidates = [value]
            attrs = getattr(value, "__dict__", None)
            if isinstance(attrs, dict) and not isinstance(value, type):
                candidates.extend(attrs.values())
            elif isinstance(value, type):
                candidates.extend(v for k, v in vars(value).items() if not k.startswith("__"))
            for c in candidates:
                if isinstance(c, _CONTAINERS) and look(c):
                    return found
    return found


def _holders(samples: list[object]) -> tuple[tuple[LeakHolder, ...], str | None]:
    from memwarden.attribution._holders import search_holders, summarise_paths

    search = search_holders(samples, time_budget_s=3.0)
    holders: list[LeakHolder] = []
    for p in summarise_paths(search.paths):
        holders.append(LeakHolder(p.type, p.path, p.root_kind, p.count, p.bound))
    found = [h for h in holders if not h.path.startswith("<")]
    note = None if search.complete else f"holder search cut short ({search.stop_reason})"
    return tuple((found or holders)[:3]), note


def _site(d: Any) -> LeakSite:
    from memwarden.probes._codemap import default_code_places

    places = default_code_places()
    frames = [(f.file, f.line, f.function) for f in d.traceback if not places.is_memwarden(f.file)]
    # From the outermost frame of the user's own code on (the test runner's frames say nothing).
    first_user = next((i for i, f in enumerate(frames) if places.is_user(f[0])), 0)
    frames = frames[first_user:]
    return LeakSite(
        file=d.file,
        line=d.line,
        function=d.function,
        size_diff_bytes=d.size_diff_bytes,
        count_diff=d.count_diff,
        traceback=tuple(frames) or tuple((f.file, f.line, f.function) for f in d.traceback),
    )


def _per_call(value: float) -> str:
    return f"{format_bytes(value, signed=True)}/call"


# ----------------------------------------------------------------------------------------------
# Memory caps: one call, its peak and what it left behind


class MemoryCapExceeded(AssertionError):
    """A call used more memory than its cap allows; ``use`` has the figures, ``failures`` the causes."""

    def __init__(self, use: MemoryUse, failures: tuple[str, ...]) -> None:
        super().__init__(f"{use.name}: " + "; ".join(failures))
        self.use = use
        self.failures = failures


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """What one call of a function used.

    ``peak_bytes`` is the highest Python-traced memory during the call above what was traced
    before it (tracemalloc's peak; native allocations that bypass Python's allocator are not in
    it). ``net_python_bytes`` is what stayed traced after the call and a full collection;
    ``net_native_bytes`` what stayed in use in ``malloc`` (``None`` without glibc). ``sites``
    are the lines that allocated what stayed, largest first.
    """

    name: str
    peak_bytes: int
    net_python_bytes: int
    net_native_bytes: int | None
    seconds: float
    sites: tuple[LeakSite, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def net_bytes(self) -> int:
        """The larger of the two net figures (a Python leak of big objects shows in both)."""
        return max(self.net_python_bytes, self.net_native_bytes or 0)

    def check(self, *, peak: int | None = None, net: int | None = None) -> tuple[str, ...]:
        """The caps this use exceeds, as sentences (empty when it fits)."""
        failures = []
        if peak is not None and self.peak_bytes > peak:
            failures.append(
                f"peak {format_bytes(self.peak_bytes)} of Python allocations over the cap of {format_bytes(peak)}"
            )
        if net is not None and self.net_bytes > net:
            # Python's big blocks come from malloc too: Python objects unless native memory is far larger
            python = self.net_python_bytes >= 0.9 * (self.net_native_bytes or 0)
            layer = "Python objects" if python else "native memory"
            failures.append(
                f"kept {format_bytes(self.net_bytes)} of {layer} after the call, over the net cap of "
                f"{format_bytes(net)}"
            )
        return tuple(failures)

    def render(self) -> str:
        """The figures and the top sites, as plain text."""
        from memwarden.reporters.leaks import render_memory_use

        return render_memory_use(self)


def measure_memory(
    fn: Callable[..., object], *args: Any, frames: int = 10, name: str | None = None, **kwargs: Any
) -> MemoryUse:
    """Call ``fn(*args, **kwargs)`` once and measure its peak and net memory (see :class:`MemoryUse`).

    tracemalloc is started for the call unless it already runs; a session already running is
    used as it is, except that its peak counter is reset (tracemalloc has one peak per process).
    """
    from memwarden.probes.tracing import TracemallocWindow

    if not isinstance(frames, int) or frames < 1:
        raise UsageError(f"frames must be a positive whole number, not {frames!r}")
    label = name or getattr(fn, "__qualname__", None) or repr(fn)
    readers = _Readers()
    notes: list[str] = []
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(frames)
    else:
        notes.append("tracemalloc was already tracing: its peak counter was reset for the call")
    window: TracemallocWindow | None = None
    try:
        gc.collect()
        window = TracemallocWindow(frames=frames).open()
        native_before = readers.native() if readers.has_native else 0
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - before
        gc.collect()
        net_python = tracemalloc.get_traced_memory()[0] - before
        net_native = readers.native() - native_before if readers.has_native else None
        diffs = window.diff(group_by="traceback", top=5, name_functions=False)
    finally:
        if window is not None:
            window.close()
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
    if not readers.has_native:
        notes.append(f"native layer not measured: {readers.native_reason}")
    return MemoryUse(
        name=label,
        peak_bytes=max(0, peak),
        net_python_bytes=net_python,
        net_native_bytes=net_native,
        seconds=seconds,
        sites=tuple(_site(d) for d in window.name_functions(diffs)),
        notes=tuple(notes),
    )


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: object, *, what: str = "size") -> int:
    """A number of bytes from ``1024``, ``"64 MiB"``, ``"1.5GB"``, ``"200 KB"`` (KB = 1000, KiB = 1024)."""
    if isinstance(value, bool):
        raise UsageError(f"{what} must be a number of bytes or a size like '64 MiB', not {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
        unit = text[len(digits) :].strip().lower() if digits else ""
        try:
            number = float(digits)
        except ValueError:
            number = math.nan
    else:
        raise UsageError(f"{what} must be a number of bytes or a size like '64 MiB', not {value!r}")
    if unit not in _SIZE_UNITS or not math.isfinite(number) or number < 0:
        raise UsageError(f"{what} must be a number of bytes or a size like '64 MiB', not {value!r}")
    return int(number * _SIZE_UNITS[unit])
