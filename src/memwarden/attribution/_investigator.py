"""The investigator: adaptive attribution that stays cheap until growth is suspected.

It rides on the sampler (it is an observer, so it runs in the sampler's daemon thread, and sees only
the :class:`~memwarden.sampler.Tick` each tick gives it):

1. At the start it lists the process's caches (``lru_cache`` wrappers, cachetools caches, watched
   containers).
2. Each tick it asks whether memory looks like it grows (process RSS, malloc in-use bytes or
   Python's allocated-block count rising through most recent ticks). Until then it costs nothing.
3. When growth is suspected it opens a tracemalloc *window* (``frames`` deep, enough to reach the
   user's code) and takes a census of live object types. After ``window_s`` it diffs both, takes a
   few live objects allocated at the top growing site, searches who holds them, records all of it
   as a ``tracemalloc_window`` event and closes the window (stopping tracemalloc only if it started
   it). Another window can open after ``cooldown_s`` if growth goes on (or starts again at a new
   site), within a budget per hour of wall time (``windows_per_hour``, ``max_tracing_share``), so a
   service that runs for a week still has windows left when a leak starts on day 3.
4. At the end of a run (:meth:`finish`) it concludes an open window and measures cache growth.

It only looks: it never frees memory or changes the process (``malloc_trim`` is an action the monitor
takes and records, see :mod:`memwarden.guards.actions`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..diagnosis._evidence import (
    EVENT_CACHES,
    EVENT_GPU_SITES,
    EVENT_UNAVAILABLE,
    EVENT_WINDOW,
    Evidence,
    WindowEvidence,
)
from ..diagnosis._trend import mann_kendall
from ..diagnosis._verdict import CacheGrowthInfo, Holder, Site, SourceFrame, TypeGrowth
from ..exceptions import UsageError
from ..metrics import GPU_ALLOCATED_BYTES, LIBC_IN_USE_BYTES, OBJECTS_ALLOCATED_BLOCKS, PROCESS_RSS_BYTES
from ..probes.own import OwnFootprint

if TYPE_CHECKING:
    from ..sampler import Tick
    from ..timeline import Sample

log = logging.getLogger("memwarden")

# metrics whose rise makes the investigator suspicious, with the rise (in their unit) that counts
_SUSPECT_KEYS: tuple[tuple[str, float], ...] = (
    (PROCESS_RSS_BYTES, 256 * 1024),
    (LIBC_IN_USE_BYTES, 256 * 1024),
    (OBJECTS_ALLOCATED_BLOCKS, 2000),
)


@dataclass
class InvestigatorConfig:
    """How eagerly the investigator looks, and how much it may spend."""

    warmup_s: float = 1.0
    """Ignore the first seconds (imports, start-up loads) when deciding whether memory grows."""
    window_s: float = 4.0
    """How long a tracemalloc window stays open, unless what it traced says sooner or later:"""
    min_window_s: float = 1.0
    clear_bytes: int = 2 * 1024 * 1024
    """... it closes after ``min_window_s`` once it traced this much growth (the growing sites are
    clear, and tracing slows an allocating program several times over: the shorter the better) ..."""
    slow_leak_bytes: int = 256 * 1024
    """... and stays open up to twice ``window_s`` while it traced some growth, but less than this
    (a slow leak needs longer to stand out of the churn)."""
    clear_poll_s: float = 0.0
    """With ``clear_poll_s`` > 0 (0.1 s, say) it also closes as soon as its top site is clear
    (:func:`site_is_clear`), looked at every ``clear_poll_s`` over its first ``clear_watch_s`` (the
    sampler's thread waits meanwhile): a program slowed by tracing makes little progress per wall
    second, and a fast leak's site is clear in a fraction of one (a 5 s leak of 180 MiB: 1.24x
    instead of 2.85x). Past the watch the rules above decide. 0, the default: no watch, because a
    window closed after 0.3 s leaves objects too young for the holder sampling, which looks at the
    survivors of the old generations first and ran out of its budget on two scenarios (no holder
    named), and because a batch's dict being built rises in three looks as a leak does."""
    clear_watch_s: float = 1.0
    clear_rises: int = 3
    """A clear site rose in this many consecutive looks and was the top site in each ..."""
    clear_site_bytes: int = 64 * 1024
    """... it grew by at least this much ..."""
    clear_share: float = 0.4
    """... and holds at least this share of the window's traced growth."""
    frames: int = 16
    """Traceback depth of the tracemalloc window."""
    cooldown_s: float = 60.0
    """Least time between the close of a window and the opening of the next."""
    windows_per_hour: float = 6.0
    """At most this many windows open in any hour of wall time (a sliding hour)."""
    max_tracing_share: float = 0.05
    """Tracing time as a share of wall time, beyond the first window (0.05: 3 minutes an hour)."""
    max_kept_windows: int = 50
    """Windows kept in memory for the verdict (the timeline keeps every one as an event)."""
    min_points: int = 3
    """Samples after warm-up needed before growth can be suspected."""
    top_sites: int = 10
    holder_samples: int = 10
    holder_budget_s: float = 3.0
    sample_budget_s: float = 2.0
    """Time to find live objects allocated at a site (strings are slow to find: they are not gc-tracked)."""
    holder_sites: int = 1
    """How many of the top sites to sample (up to 3). With more than one, a top site none of whose
    samples is held (a batch's dict in flight as the window closed) gives way to a lower one whose
    samples are held; each costs a scan under tracing (up to 0.25 s, half the samples), which a
    fast leak's short window cannot afford, hence 1 by default."""
    census: bool = True
    census_share: float = 0.05
    """A window's two type censuses (each walks the whole heap) are left out when they would take
    more than this share of the time sampled so far, and more than ``census_min_s``: on a program
    a few seconds old with a heap of a million objects they would cost more than the window; a
    service an hour old can spend three minutes on them."""
    census_min_s: float = 0.2
    census_object_s: float = 1e-6
    """The estimated cost of a census per object the collector tracks (1.0-1.3 us measured on a
    2-core VM, strings in big containers included)."""
    gpu_history: bool = True
    """Record PyTorch's allocation history for one window when live GPU memory grows."""
    gpu_min_rise_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "census_share",
            "census_min_s",
            "census_object_s",
            "warmup_s",
            "cooldown_s",
            "holder_budget_s",
            "sample_budget_s",
            "min_window_s",
            "clear_poll_s",
            "clear_watch_s",
        ):
            if not getattr(self, name) >= 0:
                raise UsageError(f"InvestigatorConfig.{name} must be >= 0, not {getattr(self, name)!r}")
        for name in ("window_s", "windows_per_hour"):
            if not getattr(self, name) > 0:
                raise UsageError(f"InvestigatorConfig.{name} must be > 0, not {getattr(self, name)!r}")
        if not 0 < self.max_tracing_share <= 1:
            raise UsageError(
                f"InvestigatorConfig.max_tracing_share must be in (0, 1], not {self.max_tracing_share!r}"
            )
        if self.frames < 1 or self.max_kept_windows < 1 or self.clear_rises < 1 or self.holder_sites < 1:
            raise UsageError(
                "InvestigatorConfig.frames, max_kept_windows, clear_rises and holder_sites must be at least 1"
            )
        if not 0 < self.clear_share <= 1:
            raise UsageError(f"InvestigatorConfig.clear_share must be in (0, 1], not {self.clear_share!r}")


def suspect_growth(
    samples: Sequence[Sample], *, since_mono: float, min_points: int = 3, min_span_s: float = 1.5
) -> str | None:
    """Why memory looks like it grows in ``samples`` after ``since_mono``, or ``None``.

    Deliberately eager and cheap: a window costs a few seconds of tracing, a missed leak costs the
    answer. A metric is suspect when it rose by its threshold over the considered samples (at least
    ``min_points``, spanning ``min_span_s``) and most of its steps (at least 60 %) went up; more than
    six samples must also rise by a Mann-Kendall test.
    """
    recent = [s for s in samples if s.mono >= since_mono][-30:]
    if len(recent) < min_points or recent[-1].mono - recent[0].mono < min_span_s:
        return None
    for key, threshold in _SUSPECT_KEYS:
        ys = [float(v) for s in recent if (v := s.metrics.get(key)) is not None]
        if len(ys) < min_points:
            continue
        rise = ys[-1] - min(ys)
        steps = [b - a for a, b in itertools.pairwise(ys)]
        ups = sum(1 for d in steps if d > 0)
        if rise >= threshold and steps and ups / len(steps) >= 0.6 and _rises(ys):
            return f"{key} rose by {rise:,.0f} over {len(ys)} samples"
    return None


def site_is_clear(
    looks: Sequence[Sequence[tuple[object, int]]],
    *,
    rises: int = 3,
    min_bytes: int = 128 * 1024,
    share: float = 0.4,
) -> bool:
    """Whether an open window's top growing site is clear from its latest ``looks``.

    Each look lists the sites that grew since the window opened, as ``(site, bytes)``, largest
    first. The site is clear when the same site was the top one in each of the last ``rises``
    looks, its bytes rose at every one of them (from zero at the opening), it grew by at least
    ``min_bytes`` and it holds at least ``share`` of the growth of all sites in the last look. A
    churning site rises and falls; a slow leak under heavy churn takes long to reach ``min_bytes``
    and keeps the window open by the other rules.
    """
    if len(looks) < rises or any(not look for look in looks[-rises:]):
        return False
    recent = looks[-rises:]
    top = recent[-1][0][0]
    previous = 0
    for look in recent:
        site, grown = look[0]
        if site != top or grown <= previous:
            return False
        previous = grown
    total = sum(max(0, grown) for _, grown in recent[-1])
    return previous >= min_bytes and previous >= share * total


def _rises(ys: Sequence[float]) -> bool:
    """Up to 6 samples, any rise passes (the tests above suffice at a 1 s cadence); more must rise
    by the Mann-Kendall test at p < 0.05: at a fast cadence a steady program's churn has runs of
    rises by chance (at 0.1 s one opened a window in 2 runs of 3)."""
    if len(ys) <= 6:
        return True
    mk = mann_kendall(ys)
    return mk.s > 0 and mk.p_value < 0.05


_EXTRA_SITE_BUDGET_S = 0.25
"""The time a site below the first sampled one may take to give its samples (half as many)."""

_SLOW_LEAK_MIN_BYTES = 64 * 1024
"""Traced growth under this at ``window_s`` is none worth waiting for."""


class Investigator:
    """Opens tracemalloc windows when growth is suspected and keeps what they find.

    Add it to a sampler's observers. ``evidence()`` returns everything found so far.
    """

    def __init__(
        self, config: InvestigatorConfig | None = None, *, footprint: OwnFootprint | None = None
    ) -> None:
        self.config = config or InvestigatorConfig()
        self.footprint = footprint or OwnFootprint()
        self._lock = threading.RLock()
        self._windows: collections.deque[WindowEvidence] = collections.deque(
            maxlen=self.config.max_kept_windows
        )
        self._opened_at: collections.deque[float] = collections.deque()
        """Monotonic times windows opened in the last hour (for ``windows_per_hour``)."""
        self._traced_s = 0.0
        """Seconds spent tracing so far (for ``max_tracing_share``)."""
        self._open: dict[str, Any] | None = None
        self._last_closed_mono: float | None = None
        self._start_mono: float | None = None
        self._caches_start: tuple[float, list[Any]] | None = None
        self._caches: tuple[CacheGrowthInfo, ...] = ()
        self._notes: list[str] = []
        self.suspicion: str | None = None
        self._gpu_open: tuple[float, Any] | None = None
        self._gpu_done = False
        self._gpu_sites: tuple[Site, ...] = ()
        self._gpu_holders: tuple[Holder, ...] = ()
        self._unavailable: tuple[tuple[str, str], ...] = ()
        self._concluded = False

    # -- the observer -------------------------------------------------------------------------------

    def __call__(self, tick: Tick) -> None:
        with self._lock:
            if self._concluded:
                return
            sample = tick.sample
            if self._start_mono is None:
                self._start_mono = tick.started_mono
                self._caches_start = (sample.mono, self._find_caches())
            if self.config.gpu_history and not self._gpu_done:
                self._gpu_tick(tick)
            if self._open is not None:
                if self._window_done(sample.mono):
                    with self.footprint.measure():
                        self._close_window(tick, sample.mono)
                return
            if not self.budget_allows(sample.mono):
                return
            since = self._start_mono + self.config.warmup_s
            if self._last_closed_mono is not None:
                since = max(since, self._last_closed_mono)
            # the test looks at the last 30 samples after `since`: only those are copied out of the ring
            why = suspect_growth(tick.recent(30), since_mono=since, min_points=self.config.min_points)
            if why is not None:
                self.suspicion = why
                with self.footprint.measure():
                    self._open_window(sample.mono, why)
                self._watch_open_window(tick)

    def _window_done(self, mono: float) -> bool:
        """Whether the open window has seen enough: see :class:`InvestigatorConfig`'s window fields."""
        assert self._open is not None
        cfg, elapsed = self.config, mono - self._open["mono"]
        if elapsed < cfg.min_window_s:
            return False
        try:
            grown = self._open["window"].traced_bytes()[0] - self._open["traced"]
        except Exception:
            grown = 0
        if grown >= cfg.clear_bytes:
            return True
        if elapsed < cfg.window_s:
            return False
        slow_leak = _SLOW_LEAK_MIN_BYTES <= grown < cfg.slow_leak_bytes
        return not slow_leak or elapsed >= 2 * cfg.window_s

    def _watch_open_window(self, tick: Tick) -> None:
        """Look at the window just opened every ``clear_poll_s`` for ``clear_watch_s``, while the
        program runs (the sampler's thread sleeps), and close it once its top site is clear."""
        cfg, state = self.config, self._open
        if cfg.clear_poll_s <= 0 or state is None:
            return
        started = state["wall"]
        while time.monotonic() - started + cfg.clear_poll_s <= cfg.clear_watch_s:
            time.sleep(cfg.clear_poll_s)
            with self.footprint.measure():
                if self._look():
                    # the time on the sampler's clock: the opening's, plus how long the watch took
                    self._close_window(tick, state["mono"] + (time.monotonic() - started))
                    return

    def _look(self) -> bool:
        """Take one look at the open window's growing sites; whether the top one is clear."""
        assert self._open is not None
        cfg, state = self.config, self._open
        try:
            diffs = state["window"].diff(group_by="lineno", top=None, name_functions=False)
        except Exception as exc:
            state["looks"].clear()
            self._notes.append(f"looking at an open window failed: {exc!r}")
            return False
        state["looks"].append([((d.file, d.line), int(d.size_diff_bytes)) for d in diffs])
        del state["looks"][: -cfg.clear_rises]
        clear = site_is_clear(
            state["looks"], rises=cfg.clear_rises, min_bytes=cfg.clear_site_bytes, share=cfg.clear_share
        )
        if clear:
            state["clear"] = True
        return clear

    def budget_allows(self, mono: float) -> bool:
        """Whether a window may open at ``mono``: cooldown, windows per hour and tracing share.

        The first window is always allowed (a short program gets its attribution); after that,
        tracing may take ``max_tracing_share`` of the time since sampling started, and at most
        ``windows_per_hour`` windows open in any hour.
        """
        cfg = self.config
        if self._last_closed_mono is not None and mono - self._last_closed_mono < cfg.cooldown_s:
            return False
        while self._opened_at and mono - self._opened_at[0] >= 3600.0:
            self._opened_at.popleft()
        if len(self._opened_at) >= cfg.windows_per_hour:
            return False
        elapsed = mono - (self._start_mono if self._start_mono is not None else mono)
        return self._traced_s == 0.0 or self._traced_s + cfg.window_s <= cfg.max_tracing_share * elapsed

    # -- windows ------------------------------------------------------------------------------------

    def _open_window(self, mono: float, why: str) -> None:
        from ..probes.tracing import TracemallocWindow

        window = TracemallocWindow(frames=self.config.frames)
        # The census walks the whole heap and allocates a little per object: before tracing
        # starts, it is 10-20x cheaper (0.05 s against 0.8 s for 170,000 objects under 16 frames).
        census_started = time.perf_counter()
        census_skipped = self._census_too_costly(mono) if self.config.census else None
        census_before = self._census() if self.config.census and census_skipped is None else None
        # the window opens when tracing starts, after the census (0.5 s on a heap of 2 million
        # objects): the samples taken before that saw the program untraced
        census_s = time.perf_counter() - census_started
        # the big global containers, where a leak's samples are looked for first: found before
        # tracing starts, where walking every namespace costs 10-20 times less
        started = time.perf_counter()
        containers = self._global_containers()
        mono += time.perf_counter() - started
        mono += census_s
        self._opened_at.append(mono)
        try:
            window.open()
        except Exception as exc:
            self._notes.append(f"could not open a tracemalloc window: {exc!r}")
            self._last_closed_mono = mono
            return
        traced, _ = window.traced_bytes()
        self._open = {
            "mono": mono,
            "wall": time.monotonic(),
            "window": window,
            "census": census_before,
            "census_s": census_s,
            "census_skipped": census_skipped,
            "containers": containers,
            "traced": traced,
            "why": why,
            "looks": [],
            "clear": False,
        }
        log.debug("memwarden: opened a tracemalloc window (%s)", why)

    def _census_too_costly(self, mono: float) -> str | None:
        """Why a window opening at ``mono`` takes no type census (see ``census_share``), or None."""
        import gc

        cfg = self.config
        objects = len(gc.get_objects())
        estimate = 2 * objects * cfg.census_object_s
        elapsed = mono - (self._start_mono if self._start_mono is not None else mono)
        budget = max(cfg.census_min_s, cfg.census_share * elapsed)
        if estimate <= budget:
            return None
        return (
            f"type census left out: {objects:,} objects, about {estimate:.1f} s for the two, more than "
            f"{cfg.census_share:.0%} of the {elapsed:.1f} s sampled so far"
        )

    def _close_window(self, tick: Tick, mono: float) -> None:
        state, self._open = self._open, None
        if state is None:
            return
        window = state["window"]
        notes = [f"opened because {state['why']}"]
        if state["census_skipped"] is not None:
            notes.append(state["census_skipped"])
        if state["clear"]:
            notes.append(f"closed once its top site was clear ({self.config.clear_rises} rising looks)")
        sites: tuple[Site, ...] = ()
        types: tuple[TypeGrowth, ...] = ()
        holders: tuple[Holder, ...] = ()
        traced_end = state["traced"]
        samples: list[object] = []
        sampled_groups: list[tuple[int, int]] = []
        diffs: list[Any] = []
        owns_tracing = bool(getattr(window, "owns_tracing", True))  # close() resets it
        try:
            traced_end, _ = window.traced_bytes()
            # functions are named once tracing has stopped: that parses source files
            diffed_at = time.perf_counter()
            diffs = window.diff(group_by="traceback", top=self.config.top_sites, name_functions=False)
            notes.append(f"sites diffed in {time.perf_counter() - diffed_at:.2f} s")
            sites = tuple(_site_from_diff(d) for d in diffs)
            sampled_at = time.perf_counter()
            # needs tracemalloc: before the window closes
            samples, sampled_groups = self._sample_objects(sites, state.pop("containers", None))
            notes.append(f"{len(samples)} holder samples in {time.perf_counter() - sampled_at:.2f} s")
        except Exception as exc:
            notes.append(f"attribution failed: {exc!r}")
        finally:
            try:
                window.close()
            except Exception as exc:
                notes.append(f"closing the window failed: {exc!r}")
        try:
            sites = tuple(_site_from_diff(d) for d in window.name_functions(diffs))
        except Exception as exc:
            notes.append(f"naming the sites' functions failed: {exc!r}")
        try:
            if state["census"] is not None:  # like the first one, once tracing has stopped
                counted_at = time.perf_counter()
                types = self._types_grown(state["census"])
                notes.append(
                    f"type census in {state['census_s']:.2f} s at the opening, "
                    f"{time.perf_counter() - counted_at:.2f} s at the close"
                )
        except Exception as exc:
            notes.append(f"type census failed: {exc!r}")
        try:
            # the search walks the whole heap: 10-60x faster once tracemalloc has stopped
            holders, promoted = self._holders_for(samples, sampled_groups, notes)
            if promoted is not None and promoted < len(sites):
                # the sites above it were in flight: the one whose objects are held leads
                notes.append(
                    f"nothing held the objects sampled at the sites above {sites[promoted].file}:"
                    f"{sites[promoted].line} (in flight), and something holds its own: that site is put first"
                )
                sites = (sites[promoted], *sites[:promoted], *sites[promoted + 1 :])
        except Exception as exc:
            notes.append(f"holder search failed: {exc!r}")
        finally:
            samples.clear()
        start = self._start_mono or state["mono"]
        evidence = WindowEvidence(
            opened_s=state["mono"] - start,
            closed_s=mono - start,
            frames=self.config.frames,
            owns_tracing=owns_tracing,
            traced_start_bytes=int(state["traced"]),
            traced_end_bytes=int(traced_end),
            sites=sites,
            types=types,
            holders=holders,
            notes=tuple(notes),
        )
        self._windows.append(evidence)
        self._last_closed_mono = mono
        self._traced_s += max(0.0, mono - state["mono"])
        tick.recheck_layers()  # pymalloc cannot be read while tracemalloc traces
        tick.record(EVENT_WINDOW, evidence.to_json())
        # the sample after this work is distorted by it (the diagnosis leaves it out): take it now,
        # so that the next one on the cadence counts
        tick.sample_again()

    def _census(self) -> Any:
        from ._census import program_census

        return program_census()  # memwarden's own objects left out, str and bytes counted

    def _types_grown(self, before: Any) -> tuple[TypeGrowth, ...]:
        from ..probes.objects import census_diff
        from ._holders import is_memwarden_module

        after = self._census()
        grown = [
            d
            for d in census_diff(before, after)
            if (d.size_diff_bytes > 0 or d.count_diff > 0) and not is_memwarden_module(d.type)
        ]
        return tuple(TypeGrowth(d.type, d.count_diff, d.size_diff_bytes) for d in grown[:10])

    def _global_containers(self) -> Any:
        from ._holders import global_containers

        try:
            return global_containers()
        except Exception as exc:
            self._notes.append(f"listing the global containers failed: {exc!r}")
            return None

    def _sample_objects(
        self, sites: tuple[Site, ...], containers: Any = None
    ) -> tuple[list[object], list[tuple[int, int]]]:
        """A few live objects from the first ``holder_sites`` top sites that still have some (one
        time budget for all), flat, and ``(site index, how many)`` for each site sampled, in order.

        More than one site lets the holder search tell a site whose objects were in flight (a
        batch's dict being built as the window closed) from the one that keeps its objects; sites
        under a tenth of the first one sampled are not worth the heap scan.
        """
        from .._introspect import type_module
        from ._holders import is_memwarden_module, sample_objects

        deadline = time.monotonic() + self.config.sample_budget_s
        flat: list[object] = []
        groups: list[tuple[int, int]] = []
        first_size = 0
        for index, site in enumerate(sites[:3]):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if groups and site.size_diff_bytes < 0.1 * first_size:
                break
            if groups:
                # the sites below the first are a check, not the answer: a scan under tracing costs
                # ~60 us an object, and a fast leak's window should close in a fraction of a second
                left = min(left, _EXTRA_SITE_BUDGET_S)
            want = self.config.holder_samples if not groups else max(1, self.config.holder_samples // 2)
            found = sample_objects(
                site.file,
                site.line,
                limit=want * 2,
                time_budget_s=left,
                survivors_first=True,
                global_containers=containers,
            )
            objs = [o for o in found if not is_memwarden_module(type_module(type(o)) or "")]
            del found
            if objs:
                kept = objs[:want]
                flat.extend(kept)
                groups.append((index, len(kept)))
                first_size = first_size or site.size_diff_bytes
            del objs
            if len(groups) >= self.config.holder_sites:
                break
        return flat, groups

    def _holders_for(
        self, samples: list[object], groups: list[tuple[int, int]], notes: list[str] | None = None
    ) -> tuple[tuple[Holder, ...], int | None]:
        """The holders of the first sampled site whose objects are held, and that site's index.

        A site none of whose samples is held by the time of the search (in flight when the window
        closed: dropped since, or still in the hands of a running call, like a batch's dict being
        sorted) gives way to a later one whose samples are held, and its index is returned;
        otherwise the first sampled site's holders are returned as they are (held, temporaries or
        not found) with ``None``. (A leak only C state reaches would give way too, to a held site
        below it: the summary then names that site and its holder, which agree.)
        """
        if not samples:
            return (), None
        started = time.perf_counter()
        from ._holders import search_holders, summarise_paths

        # the calling thread's frames too: a Monitor stopped inside main() concludes here, in main's
        # thread, and main's locals are what holds the objects (memwarden's own frames are skipped)
        search = search_holders(
            samples, time_budget_s=self.config.holder_budget_s, include_current_thread=True
        )
        if notes is not None:
            notes.append(
                f"holder search in {time.perf_counter() - started:.2f} s "
                f"({search.nodes_visited:,} objects: {search.stop_reason})"
            )
        per_site: list[tuple[int, list[Holder], list[Holder]]] = []
        start = 0
        for index, count in groups:
            holders: dict[tuple[str, str, str, str | None], Holder] = {}
            for h in summarise_paths(search.paths[start : start + count]):
                # patterns that differ only in depth are one holder to the reader: keep the commonest
                holders.setdefault((h.type, h.path, h.root_kind, h.bound), h)
            start += count
            # a sample caught in flight (a request's temporaries) has no holder: say so only if none was found
            found = [h for h in holders.values() if not h.path.startswith("<")]
            per_site.append((index, found, list(holders.values())))
        _, first_found, first_all = per_site[0]
        if not first_found:
            held = next(((index, found) for index, found, _ in per_site[1:] if found), None)
            if held is not None:
                return tuple(held[1][:5]), held[0]
        return tuple((first_found or first_all)[:5]), None

    # -- the GPU: PyTorch's allocation history ---------------------------------------------------------

    def _gpu_tick(self, tick: Tick) -> None:
        sample = tick.sample
        if sample.metrics.get(GPU_ALLOCATED_BYTES) is None:
            return
        if self._gpu_open is not None:
            if sample.mono - self._gpu_open[0] >= self.config.window_s:
                self._close_gpu(tick)
            return
        recent = [s for s in tick.recent(30) if s.mono >= (self._start_mono or 0) + self.config.warmup_s]
        ys = [float(v) for s in recent[-30:] if (v := s.metrics.get(GPU_ALLOCATED_BYTES)) is not None]
        if len(ys) < self.config.min_points:
            return
        steps = [b - a for a, b in itertools.pairwise(ys)]
        if ys[-1] - min(ys) < self.config.gpu_min_rise_bytes or sum(d > 0 for d in steps) < 0.6 * len(steps):
            return
        from ._gpu_history import GpuHistoryRecorder

        recorder = GpuHistoryRecorder()
        if not recorder.available():
            self._gpu_done = True
            return
        try:
            recorder.start()
        except Exception as exc:
            self._notes.append(f"could not record GPU allocation history: {exc!r}")
            self._gpu_done = True
            return
        self._gpu_open = (sample.mono, recorder)

    def _close_gpu(self, tick: Tick) -> None:
        if self._gpu_open is None:
            return
        _, recorder = self._gpu_open
        self._gpu_open = None
        self._gpu_done = True
        try:
            report = recorder.stop()
        except Exception as exc:
            self._notes.append(f"GPU allocation history failed: {exc!r}")
            return
        holders: list[dict[str, Any]] = []
        if report.sites:
            from ._gpu_history import find_gpu_holders

            try:
                paths = find_gpu_holders(
                    sys.modules.get("torch"),
                    report.sites[0],
                    time_budget_s=self.config.holder_budget_s,
                )
                holders = [p.to_json() for p in paths]
            except Exception as exc:
                self._notes.append(f"GPU holder search failed: {exc!r}")
        data = report.to_event_data(holders)
        self._gpu_sites = tuple(Site.from_json(x) for x in data["sites"])
        self._gpu_holders = tuple(Holder.from_json(h) for h in holders)
        tick.record(EVENT_GPU_SITES, data)

    # -- caches and the end of a run -----------------------------------------------------------------

    def _find_caches(self) -> list[Any]:
        try:
            from ._caches import find_caches

            return list(find_caches())
        except Exception as exc:
            self._notes.append(f"cache scan failed: {exc!r}")
            return []

    def conclude(self, tick: Tick) -> None:
        """Close any open window (tracemalloc, GPU history) and open no more."""
        with self._lock:
            self._concluded = True
            if self._open is not None:
                with self.footprint.measure():
                    self._close_window(tick, tick.now())
            if self._gpu_open is not None:
                self._close_gpu(tick)

    def abandon_in_child(self) -> None:
        """In a forked child: stop the tracing the parent's open window started, and open no more."""
        self._lock = threading.RLock()  # the parent's sampler thread may have held it at the fork
        self._concluded = True
        state, self._open = self._open, None
        if state is not None and getattr(state["window"], "owns_tracing", False):
            import tracemalloc

            tracemalloc.stop()
        self._gpu_open = None

    def finish(self, tick: Tick) -> Evidence:
        """Conclude, measure cache growth and note the layers that could not be read; return the evidence."""
        self.conclude(tick)
        with self._lock:
            now = tick.now()
            if self._caches_start is not None:
                from ._caches import cache_growth

                t0, before = self._caches_start
                after = self._find_caches()
                try:
                    grown = cache_growth(before, after, max(now - t0, 1e-9))
                    self._caches = tuple(
                        CacheGrowthInfo(g.name, g.kind, g.maxsize, g.currsize, g.growth_per_s) for g in grown
                    )
                except Exception as exc:
                    self._notes.append(f"cache growth failed: {exc!r}")
                tick.record(EVENT_CACHES, {"caches": [c.to_json() for c in self._caches]})
            self._unavailable = tuple(tick.unavailable().items())
            if self._unavailable:
                tick.record(EVENT_UNAVAILABLE, {"layers": dict(self._unavailable)})
            return self.evidence()

    def evidence(self) -> Evidence:
        """What has been found so far (plain data)."""
        with self._lock:
            return Evidence(
                windows=tuple(self._windows),
                caches=self._caches,
                gpu_sites=self._gpu_sites,
                gpu_holders=self._gpu_holders,
                notes=tuple(self._notes),
                unavailable=self._unavailable,
            )


def _site_from_diff(diff: Any) -> Site:
    return Site(
        file=diff.file,
        line=int(diff.line),
        function=diff.function,
        size_diff_bytes=int(diff.size_diff_bytes),
        count_diff=int(diff.count_diff),
        traceback=tuple(SourceFrame(f.file, int(f.line), f.function) for f in diff.traceback),
    )
