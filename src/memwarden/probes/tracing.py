"""The ``tracing`` layer: tracemalloc windows, growing sites, and tracemalloc's own figures.

A *window* is a stretch of time watched by tracemalloc: :class:`TracemallocWindow` notes what
is allocated where when it opens; :meth:`TracemallocWindow.diff` then lists the places in the
code where memory grew since then (:class:`SiteDiff`), largest growth first.

Each site names the innermost frame of its traceback that is in the user's own code (not the
standard library, not an installed package, not memwarden): a dict growing inside
``functools`` or ``json`` is reported at the user's line that calls it. Tracebacks are listed
**outermost frame first, innermost frame last**, as Python prints them and as
``tracemalloc.Traceback`` orders them.

If the program already runs tracemalloc itself, the window borrows that session read-only: it
never stops it, restarts it or changes its depth (``owns_tracing`` is False and ``note`` says
so).

:class:`TracingProbe` reads tracemalloc's counters (traced bytes, peak, tracemalloc's own
overhead) whenever someone is tracing; it never starts tracing itself.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import linecache
import os
import re
import tracemalloc
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import ClassVar, Literal, Protocol

from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._base import Availability, Cost, metric
from memwarden.probes._codemap import (
    CodePlaces,
    FunctionIndex,
    default_code_places,
    default_function_index,
    memwarden_file_patterns,
)

GroupBy = Literal["traceback", "lineno"]


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame of an allocation traceback: file, line and the function around that line."""

    file: str
    line: int
    function: str | None


@dataclasses.dataclass(frozen=True)
class SiteDiff:
    """A place in the code where traced memory grew during a window.

    ``file``/``line``/``function`` name the site: the innermost frame in the user's own code
    (the innermost frame when no frame is the user's). ``size_diff_bytes``/``count_diff`` are
    the growth since the window opened; ``size_bytes``/``count`` what the site holds now.
    ``traceback`` runs outermost frame first, innermost last.
    """

    file: str
    line: int
    function: str | None
    size_diff_bytes: int
    count_diff: int
    size_bytes: int
    count: int
    traceback: tuple[Frame, ...]


def default_exclude() -> tuple[str, ...]:
    """Filename patterns a window leaves out by default.

    memwarden's own files (its examples excepted), the import machinery, tracemalloc itself,
    linecache, and allocations with no known frame (``<unknown>``). A trace is left out when
    its *innermost* frame matches: code called from these files still counts.
    """
    patterns = list(memwarden_file_patterns())
    patterns.append("<frozen importlib._bootstrap*>")
    importlib_file = getattr(importlib, "__file__", None)
    if importlib_file:
        patterns.append(os.path.join(os.path.dirname(importlib_file), "*"))
    for module in (tracemalloc, linecache):
        if module.__file__:
            patterns.append(module.__file__)
    patterns.append("<unknown>")
    return tuple(patterns)


class TracemallocWindow:
    """Watches memory between :meth:`open` and :meth:`close` and names where it grew.

    ``frames`` is the traceback depth asked for when this window starts tracemalloc itself.
    If tracemalloc is already tracing (the user started it), the window uses that session as
    it is: ``owns_tracing`` is False, ``frames`` reports the depth in force, ``note`` says so,
    and :meth:`close` leaves tracing running. ``exclude`` are filename patterns (``fnmatch``)
    whose allocations are left out; see :func:`default_exclude`. ``hide_own_work`` also leaves
    out what memwarden's own code allocates through the standard library (a trace whose
    innermost frame outside the standard library and installed packages is memwarden's).

    Use it as a context manager or call :meth:`open` and :meth:`close`::

        with TracemallocWindow(frames=25) as window:
            serve_some_requests()
            for site in window.diff(top=5):
                print(site.file, site.line, site.function, site.size_diff_bytes)
    """

    def __init__(
        self,
        frames: int = 25,
        exclude: Sequence[str] | None = None,
        *,
        hide_own_work: bool = True,
        places: CodePlaces | None = None,
        functions: FunctionIndex | None = None,
    ) -> None:
        if frames < 1:
            raise UsageError(f"a tracemalloc window needs at least 1 frame, not {frames}")
        self._requested_frames = frames
        self._frames = frames
        self.exclude: tuple[str, ...] = tuple(exclude) if exclude is not None else default_exclude()
        self._filters = [tracemalloc.Filter(False, pattern) for pattern in self.exclude]
        # one regex, compiled now: fnmatch would compile (and cache in the standard library) a pattern
        # per exclusion on first use, inside the window, where a census counts them as the program's
        self._exclude_match = re.compile(
            "|".join(fnmatch.translate(os.path.normcase(p)) for p in self.exclude) or "(?!)"
        ).match
        self._excluded_files: dict[str, bool] = {}
        self.hide_own_work = hide_own_work
        self._places = places if places is not None else default_code_places()
        self._functions = functions if functions is not None else default_function_index()
        self._baseline: dict[_RawFrames, tuple[int, int]] | None = None
        self.owns_tracing = False
        self.note = ""

    @property
    def frames(self) -> int:
        """The traceback depth in force for this window."""
        return self._frames

    @property
    def is_open(self) -> bool:
        """Whether the window has a baseline and has not been closed."""
        return self._baseline is not None

    def open(self) -> TracemallocWindow:
        """Start tracing if nobody is, and take the baseline."""
        if self._baseline is not None:
            return self
        if tracemalloc.is_tracing():
            self.owns_tracing = False
            self._frames = tracemalloc.get_traceback_limit()
            self.note = (
                f"tracemalloc was already tracing with {self._frames} frame(s); memwarden reads "
                "that session and leaves it as it is"
            )
            if self._frames < self._requested_frames:
                self.note += f" (asked for {self._requested_frames} frames, so tracebacks are shorter)"
        else:
            tracemalloc.start(self._requested_frames)
            self.owns_tracing = True
            self._frames = tracemalloc.get_traceback_limit()
            self.note = f"memwarden started tracemalloc with {self._frames} frame(s)"
        try:
            self._baseline = self._totals()
        except BaseException:
            if self.owns_tracing:
                tracemalloc.stop()
                self.owns_tracing = False
            raise
        return self

    def snapshot(self) -> tracemalloc.Snapshot:
        """A tracemalloc snapshot of the traced memory now, with this window's exclusions applied."""
        raw = self._raw_snapshot()
        traces = _raw_traces(raw)
        if traces is None:  # a tracemalloc without the layout we know
            return raw.filter_traces(self._filters)
        keep: dict[_RawFrames, bool] = {}
        kept = []
        for trace in traces:
            frames = trace[2]
            verdict = keep.get(frames)
            if verdict is None:
                verdict = keep[frames] = self._keeps(frames)
            if verdict:
                kept.append(trace)
        return tracemalloc.Snapshot(kept, raw.traceback_limit)

    def diff(
        self, group_by: GroupBy = "traceback", top: int | None = 10, *, name_functions: bool = True
    ) -> list[SiteDiff]:
        """The sites that grew since the window opened, largest growth first.

        ``group_by="traceback"`` keeps different call paths to the same site apart (paths
        that differ only inside library code below the site are merged);
        ``group_by="lineno"`` merges every path into one entry per site line. Either way the
        traceback shown is that of the site's largest contributor. Only sites that grew are
        listed; ``top`` limits how many (None: all).

        Naming the function of each frame parses its source file (once per file), which is
        slow under tracing. With ``name_functions=False`` the functions are left ``None``:
        call :meth:`name_functions` once tracing has stopped.
        """
        if group_by not in ("traceback", "lineno"):
            raise UsageError(f"group_by must be 'traceback' or 'lineno', not {group_by!r}")
        if top is not None and top < 1:
            raise UsageError(f"top must be at least 1, not {top}")
        baseline = self._baseline
        if baseline is None:
            raise UsageError("the window is not open: call open() first")
        now = self._totals()
        merged: dict[tuple[tuple[str, int], ...], _Site] = {}
        for raw_frames in now.keys() | baseline.keys():
            size, count = now.get(raw_frames, (0, 0))
            size_before, count_before = baseline.get(raw_frames, (0, 0))
            if size == size_before and count == count_before:
                continue
            frames = raw_frames[::-1]  # outermost first from here on
            if not frames:
                continue
            site_index = self._site_index(frames)
            key = (frames[site_index],) if group_by == "lineno" else frames[: site_index + 1]
            site = merged.get(key)
            if site is None:
                site = merged[key] = _Site(frames[site_index])
            site.add(frames, size, size - size_before, count, count - count_before)
        grown = sorted(
            (s for s in merged.values() if s.size_diff > 0), key=lambda s: (-s.size_diff, -s.count_diff)
        )
        if top is not None:
            grown = grown[:top]
        diffs = [self._site_diff(s) for s in grown]
        return self.name_functions(diffs) if name_functions else diffs

    def name_functions(self, diffs: Iterable[SiteDiff]) -> list[SiteDiff]:
        """The same sites with the function around each frame's line filled in.

        memwarden's own frames (``memwarden run`` calling the program) are left unnamed, like
        frozen modules: naming means parsing their source, a quarter of a second for nothing
        the reader looks for."""
        function_at = self._functions.function_at
        kind = self._places.kind

        def name(file: str, line: int) -> str | None:
            return None if kind(file) == "memwarden" else function_at(file, line)

        return [
            dataclasses.replace(
                d,
                function=name(d.file, d.line),
                traceback=tuple(Frame(f.file, f.line, name(f.file, f.line)) for f in d.traceback),
            )
            for d in diffs
        ]

    def traced_bytes(self) -> tuple[int, int]:
        """(current, peak) bytes traced by tracemalloc; (0, 0) when nobody traces."""
        if not tracemalloc.is_tracing():
            return (0, 0)
        return tracemalloc.get_traced_memory()

    def close(self) -> None:
        """Drop the baseline; stop tracemalloc only if this window started it."""
        self._baseline = None
        if self.owns_tracing:
            self.owns_tracing = False
            if tracemalloc.is_tracing():
                tracemalloc.stop()

    def __enter__(self) -> TracemallocWindow:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _raw_snapshot(self) -> tracemalloc.Snapshot:
        if not tracemalloc.is_tracing():
            raise ProbeUnavailable("tracing", "tracemalloc is not tracing (was it stopped elsewhere?)")
        return tracemalloc.take_snapshot()

    def _totals(self) -> dict[_RawFrames, tuple[int, int]]:
        """Bytes and blocks per distinct traceback (innermost frame first), exclusions applied.

        Kept per traceback rather than per trace: the baseline stays small however many
        objects are alive, and the sums run in C (``sum``), which matters while tracemalloc
        traces every int that Python code creates.
        """
        raw = self._raw_snapshot()
        traces = _raw_traces(raw)
        sizes: dict[_RawFrames, list[int]] = {}
        if traces is not None:
            for _domain, size, frames, _total in traces:
                bucket = sizes.get(frames)
                if bucket is None:
                    sizes[frames] = [size]
                else:
                    bucket.append(size)
        else:  # the public, slower route
            for trace in raw.traces:
                key = tuple((f.filename, f.lineno) for f in reversed(trace.traceback))
                sizes.setdefault(key, []).append(trace.size)
        del raw, traces
        return {frames: (sum(b), len(b)) for frames, b in sizes.items() if self._keeps(frames)}

    def _keeps(self, frames: _RawFrames) -> bool:
        """Whether a traceback (innermost frame first) survives the window's exclusions."""
        if frames and self._excluded(frames[0][0]):
            return False
        return not (self.hide_own_work and self._own_work(frames))

    def _own_work(self, frames: _RawFrames) -> bool:
        """Whether memwarden made this allocation: its innermost non-library frame is memwarden's.

        Catches what memwarden's own code allocates inside the standard library (a census
        filling ``abc`` caches, a report formatting JSON); ``frames`` run innermost first.
        """
        for filename, _ in frames:
            kind = self._places.kind(filename)
            if kind != "library":
                return kind == "memwarden"
        return False

    def _excluded(self, filename: str) -> bool:
        hit = self._excluded_files.get(filename)
        if hit is None:
            hit = self._exclude_match(os.path.normcase(filename)) is not None
            if len(self._excluded_files) > 65536:
                self._excluded_files.clear()
            self._excluded_files[filename] = hit
        return hit

    def _site_index(self, frames: Sequence[tuple[str, int]]) -> int:
        for i in range(len(frames) - 1, -1, -1):
            if self._places.is_user(frames[i][0]):
                return i
        return len(frames) - 1

    def _site_diff(self, site: _Site) -> SiteDiff:
        filename, line = site.where
        return SiteDiff(
            file=filename,
            line=line,
            function=None,
            size_diff_bytes=site.size_diff,
            count_diff=site.count_diff,
            size_bytes=site.size,
            count=site.count,
            traceback=tuple(Frame(f, n, None) for f, n in site.largest),
        )


_RawFrames = tuple[tuple[str, int], ...]


def _raw_traces(snapshot: tracemalloc.Snapshot) -> list[tuple[int, int, _RawFrames, int]] | None:
    """The snapshot's traces as tracemalloc stores them: (domain, size, frames, total frames).

    ``frames`` run innermost first, and traces with the same traceback share one tuple. This
    is tracemalloc's internal layout (stable since 3.9); None where it differs.
    """
    traces = getattr(getattr(snapshot, "traces", None), "_traces", None)
    if not isinstance(traces, (list, tuple)):
        return None
    if traces and not (isinstance(traces[0], tuple) and len(traces[0]) == 4):
        return None
    return list(traces) if isinstance(traces, tuple) else traces


class _Site:
    """Running totals for one reported site while merging tracebacks."""

    __slots__ = ("count", "count_diff", "largest", "largest_diff", "size", "size_diff", "where")

    def __init__(self, where: tuple[str, int]) -> None:
        self.where = where
        self.size = self.size_diff = self.count = self.count_diff = 0
        self.largest: _RawFrames = ()
        self.largest_diff: int | None = None

    def add(self, frames: _RawFrames, size: int, size_diff: int, count: int, count_diff: int) -> None:
        self.size += size
        self.size_diff += size_diff
        self.count += count
        self.count_diff += count_diff
        if self.largest_diff is None or size_diff > self.largest_diff:
            self.largest = frames
            self.largest_diff = size_diff


class _Tracer(Protocol):
    """What :class:`TracingProbe` needs from tracemalloc (the module fits)."""

    def is_tracing(self) -> bool: ...

    def get_traced_memory(self) -> tuple[int, int]: ...

    def get_tracemalloc_memory(self) -> int: ...

    def get_traceback_limit(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class TracingReading:
    """tracemalloc's counters: bytes traced now and at peak, its own overhead, its depth."""

    traced_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes of memory blocks tracemalloc traces now")
    )
    peak_traced_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Most bytes tracemalloc has traced at once since tracing started")
    )
    overhead_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Memory tracemalloc itself uses to store its traces")
    )
    traceback_frames: int = dataclasses.field(
        metadata=metric("", "gauge", "Frames tracemalloc keeps per traceback")
    )


class TracingProbe:
    """Reads tracemalloc's counters while anyone (memwarden or the program) is tracing.

    ``overhead_bytes`` is the memory tracemalloc itself uses to store its traces: the price
    of watching. The probe never starts or stops tracing.
    """

    layer: ClassVar[str] = "tracing"
    cost: ClassVar[Cost] = "cheap"

    def __init__(self, tracer: _Tracer | None = None) -> None:
        self._tracer: _Tracer = tracer if tracer is not None else tracemalloc

    def available(self) -> Availability:
        """Yes while tracemalloc is tracing; no (and why) otherwise."""
        try:
            tracing = self._tracer.is_tracing()
        except Exception as exc:  # a broken injected source must not crash the host
            return Availability.no(f"tracemalloc cannot be queried: {exc}")
        if not tracing:
            return Availability.no(
                "tracemalloc is not tracing (open a window, or start Python with -X tracemalloc)"
            )
        return Availability.yes()

    def read(self) -> TracingReading:
        """The counters now; raises ProbeUnavailable when nobody is tracing."""
        avail = self.available()
        if not avail:
            raise ProbeUnavailable(self.layer, avail.reason)
        try:
            current, peak = self._tracer.get_traced_memory()
            overhead = self._tracer.get_tracemalloc_memory()
            depth = self._tracer.get_traceback_limit()
        except Exception as exc:
            raise ProbeUnavailable(self.layer, f"tracemalloc cannot be read: {exc}") from exc
        return TracingReading(
            traced_bytes=int(current),
            peak_traced_bytes=int(peak),
            overhead_bytes=int(overhead),
            traceback_frames=int(depth),
        )
