"""The investigator: a tracemalloc window opens when memory grows, and names the site and the holder.

The sampler is driven by hand (a fake clock, a replayed RSS series that rises) so that the window
opens and closes on known ticks; the leak itself is real: a module imported from a tmp dir keeps
small records in a global list between ticks.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import tracemalloc
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memwarden.attribution._investigator import (
    Investigator,
    InvestigatorConfig,
    site_is_clear,
    suspect_growth,
)
from memwarden.exceptions import UsageError
from memwarden.sampler import Sampler
from memwarden.testing import FakeClock, ReplayProbe, samples_from_series

LEAKY_SOURCE = textwrap.dedent(
    """\
    KEPT = []


    def remember(n):
        for i in range(n):
            KEPT.append({"request": i, "payload": f"{i:08d}" + "x" * 120})  # the leak
    """
)
MIB = 1024 * 1024


@pytest.fixture
def leaky(tmp_path: Path) -> Iterator[types.ModuleType]:
    """A module with a leaking function, imported from a file (so its lines can be named)."""
    (tmp_path / "mw_leaky_app.py").write_text(LEAKY_SOURCE)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("mw_leaky_app")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mw_leaky_app", None)


def _drive(rss: list[int], config: InvestigatorConfig, each_tick: Callable[[], object]) -> Investigator:
    """Tick a sampler by hand over a replayed RSS series, calling ``each_tick`` before each tick."""
    clock = FakeClock()
    investigator = Investigator(config)
    sampler = Sampler(
        [ReplayProbe("process", [{"rss_bytes": v} for v in rss])],
        interval=1.0,
        clock=clock,
        observers=[investigator],
    )
    sampler.started_mono = clock()
    for _ in rss:
        each_tick()
        sampler.sample_once()
        clock.advance(1.0)
    investigator.finish(sampler.tick())
    return investigator


def test_a_window_opens_on_growth_and_names_the_site_and_the_holder(leaky: types.ModuleType) -> None:
    """Rising RSS opens one window; it names the leaking line and function, the global holding it, and its cost."""
    was_tracing = tracemalloc.is_tracing()
    config = InvestigatorConfig(
        warmup_s=0.0,
        window_s=2.0,
        census=False,
        gpu_history=False,
        sample_budget_s=60.0,
        holder_budget_s=60.0,
    )
    rising = [100 * MIB + i * MIB for i in range(8)]
    evidence = _drive(rising, config, lambda: leaky.remember(300)).evidence()
    assert tracemalloc.is_tracing() == was_tracing  # the window stopped only what it started
    assert len(evidence.windows) == 1
    window = evidence.windows[0]
    assert window.owns_tracing is not was_tracing
    assert window.closed_s - window.opened_s >= 2.0
    assert window.traced_end_bytes > window.traced_start_bytes
    top = window.sites[0]
    leak_line = next(n for n, text in enumerate(LEAKY_SOURCE.splitlines(), 1) if "# the leak" in text)
    assert (Path(top.file).name, top.line, top.function) == ("mw_leaky_app.py", leak_line, "remember")
    assert [h.path for h in window.holders] == ["mw_leaky_app.KEPT[<int>]"], window.notes
    assert window.holders[0].root_kind == "module_global"
    assert any(n.startswith("opened because process.rss_bytes rose") for n in window.notes)
    assert any(n.endswith(" s") and "holder samples in" in n for n in window.notes), window.notes


def test_no_window_while_memory_is_flat(leaky: types.ModuleType) -> None:
    """A flat RSS series opens no window and leaves tracemalloc as it was."""
    was_tracing = tracemalloc.is_tracing()
    config = InvestigatorConfig(warmup_s=0.0, gpu_history=False)
    investigator = _drive([100 * MIB] * 8, config, lambda: leaky.remember(300))
    assert investigator.evidence().windows == ()
    assert tracemalloc.is_tracing() == was_tracing


def test_suspect_growth_wants_most_steps_up() -> None:
    """A steady rise is suspect; the same rise as one step in a flat series is not."""
    steady = samples_from_series({"process.rss_bytes": [100 * MIB + i * 200_000 for i in range(6)]})
    one_step = samples_from_series({"process.rss_bytes": [100 * MIB] * 3 + [101 * MIB] * 3})
    assert suspect_growth(steady, since_mono=0.0) is not None
    assert suspect_growth(one_step, since_mono=0.0) is None


INTO_SOURCE = textwrap.dedent(
    """\
    def remember_into(kept, n):
        for i in range(n):
            kept.append({"request": [i], "payload": f"{i:08d}" + "x" * 120})  # the leak
    """
)


def test_a_window_closed_in_the_programs_own_thread_finds_its_locals(tmp_path: Path) -> None:
    """A window that closes in the thread whose function holds the leak (a Monitor stopped in main())
    names that function's local as the holder, not '<not found>'."""
    (tmp_path / "mw_leaky_into.py").write_text(INTO_SOURCE)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        app = importlib.import_module("mw_leaky_into")
        # young objects are looked at last (survivors first): in pytest's big heap that takes a while
        config = InvestigatorConfig(
            warmup_s=0.0, window_s=2.0, census=False, gpu_history=False, sample_budget_s=20.0
        )
        requests: list[dict[str, object]] = []
        rising = [100 * MIB + i * MIB for i in range(8)]
        window = _drive(rising, config, lambda: app.remember_into(requests, 300)).evidence().windows[0]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mw_leaky_into", None)
    name = "test_a_window_closed_in_the_programs_own_thread_finds_its_locals"
    paths = [h.path for h in window.holders]
    assert paths and all(p.startswith(f"{__name__}:{name}() locals.requests[<int>]") for p in paths), paths
    assert window.holders[0].root_kind == "frame_local"


def test_a_window_closes_early_once_it_traced_enough_and_stays_open_for_a_slow_leak(
    leaky: types.ModuleType,
) -> None:
    """A fast leak (3 MiB traced a tick) closes its window at min_window_s, before window_s; a slow
    leak (about 40 KiB a tick) keeps it open past window_s, up to twice it."""
    fast = InvestigatorConfig(warmup_s=0.0, window_s=4.0, min_window_s=1.0, census=False, gpu_history=False)
    rising = [100 * MIB + i * MIB for i in range(12)]
    w = _drive(rising, fast, lambda: leaky.remember(20_000)).evidence().windows[0]
    assert 1.0 <= w.closed_s - w.opened_s < 4.0, (w.opened_s, w.closed_s)
    slow = InvestigatorConfig(warmup_s=0.0, window_s=3.0, census=False, gpu_history=False)
    w = _drive(rising, slow, lambda: leaky.remember(100)).evidence().windows[0]
    traced = w.traced_end_bytes - w.traced_start_bytes
    assert traced >= 64 * 1024 and w.closed_s - w.opened_s > 4.5, (w.opened_s, w.closed_s, traced)


def test_noise_at_a_fast_cadence_opens_no_window() -> None:
    """Forty samples at 0.1 s of a steady program's churn (RSS climbing 300 KiB and falling back,
    over and over) are not suspected; a steady rise over the same samples is."""
    import random

    rng = random.Random(5)
    # three small rises and one fall, over and over: 75 % of the steps go up, and the last sample
    # is a peak 300 KiB above the lowest, which the rise-and-steps test alone took for growth
    noisy = [100 * MIB + (i % 4) * 100 * 1024 + rng.randrange(4 * 1024) for i in range(40)]
    samples = samples_from_series({"process.rss_bytes": noisy}, interval=0.1)
    assert suspect_growth(samples, since_mono=0.0) is None
    rising = [100 * MIB + i * 64 * 1024 + rng.randrange(32 * 1024) for i in range(40)]
    samples = samples_from_series({"process.rss_bytes": rising}, interval=0.1)
    assert suspect_growth(samples, since_mono=0.0) is not None


def test_site_is_clear_wants_the_same_top_site_rising_in_a_row_and_dominating() -> None:
    """A top site that rose in three looks in a row, past the bytes and share floors, is clear; one
    that fell once, changed, is too small or holds too little of the growth is not."""
    a, b = ("app.py", 10), ("app.py", 20)
    kib = 1024
    rising = [
        [(a, 100 * kib), (b, 30 * kib)],
        [(a, 200 * kib), (b, 60 * kib)],
        [(a, 300 * kib), (b, 40 * kib)],
    ]
    assert site_is_clear(rising, rises=3, min_bytes=128 * kib, share=0.4)
    assert not site_is_clear(rising[:2], rises=3, min_bytes=128 * kib, share=0.4)  # too few looks
    fell = [rising[0], [(a, 90 * kib), (b, 30 * kib)], rising[2]]
    assert not site_is_clear(fell, rises=3, min_bytes=128 * kib, share=0.4)
    changed = [rising[0], [(b, 250 * kib), (a, 200 * kib)], rising[2]]
    assert not site_is_clear(changed, rises=3, min_bytes=128 * kib, share=0.4)
    assert not site_is_clear(rising, rises=3, min_bytes=512 * kib, share=0.4)  # still small
    crowded = [*rising[:2], [(a, 300 * kib), (b, 290 * kib), (("lib.py", 1), 290 * kib)]]
    assert not site_is_clear(crowded, rises=3, min_bytes=128 * kib, share=0.4)  # 34 % of the growth
    assert not site_is_clear([[], *rising[1:]], rises=3, min_bytes=128 * kib, share=0.4)


def test_a_fast_leak_closes_its_window_once_its_site_is_clear(leaky: types.ModuleType) -> None:
    """While a program thread keeps leaking, a window closes in its first second, once its top site
    rose in three looks, and still names the site and the holder; with the watch off (clear_poll_s=0,
    the default) the same leak keeps it open for the full tick-based rules."""
    import threading

    def run(config: InvestigatorConfig) -> Investigator:
        stop = threading.Event()

        def leak() -> None:
            while not stop.is_set():
                leaky.remember(200)
                stop.wait(0.005)

        worker = threading.Thread(target=leak, daemon=True)
        worker.start()
        try:
            rising = [100 * MIB + i * MIB for i in range(10)]
            return _drive(rising, config, lambda: None)
        finally:
            stop.set()
            worker.join()

    base = dict(warmup_s=0.0, window_s=4.0, census=False, gpu_history=False, clear_bytes=1 << 40)
    watched = (
        run(InvestigatorConfig(**base, clear_poll_s=0.1, clear_site_bytes=64 * 1024)).evidence().windows[0]
    )  # type: ignore[arg-type]
    assert watched.closed_s - watched.opened_s < 1.0, (watched.opened_s, watched.closed_s, watched.notes)
    assert any(n.startswith("closed once its top site was clear") for n in watched.notes), watched.notes
    leak_line = next(n for n, text in enumerate(LEAKY_SOURCE.splitlines(), 1) if "# the leak" in text)
    assert (Path(watched.sites[0].file).name, watched.sites[0].line) == ("mw_leaky_app.py", leak_line)
    assert [h.path for h in watched.holders] == ["mw_leaky_app.KEPT[<int>]"], watched.notes
    unwatched = run(InvestigatorConfig(**base)).evidence().windows[0]  # type: ignore[arg-type]
    assert unwatched.closed_s - unwatched.opened_s > 3.5, (unwatched.opened_s, unwatched.closed_s)
    assert not any(n.startswith("closed once") for n in unwatched.notes)


def test_the_type_census_is_left_out_when_it_would_cost_too_much_of_the_run_so_far(
    leaky: types.ModuleType,
) -> None:
    """A window whose two censuses are estimated to cost more than census_share of the time sampled
    so far takes none and says why; the same window with a cheap estimate lists the growing types."""
    base = dict(warmup_s=0.0, window_s=2.0, gpu_history=False, clear_poll_s=0.0)
    rising = [100 * MIB + i * MIB for i in range(8)]
    costly = InvestigatorConfig(**base, census_object_s=1.0)  # type: ignore[arg-type]
    w = _drive(rising, costly, lambda: leaky.remember(300)).evidence().windows[0]
    assert w.types == ()
    assert any(n.startswith("type census left out: ") for n in w.notes), w.notes
    assert w.sites and w.holders  # the site and the holder are still named
    cheap = InvestigatorConfig(**base, census_object_s=1e-12)  # type: ignore[arg-type]
    w = _drive(rising, cheap, lambda: leaky.remember(300)).evidence().windows[0]
    assert "dict" in {t.type for t in w.types}, w.types
    assert not any(n.startswith("type census left out") for n in w.notes)


HELD_BY_A_GLOBAL: list[object] = []


def test_a_site_whose_samples_nobody_holds_gives_way_to_a_held_one() -> None:
    """With more than one site sampled (``holder_sites``), the holders come from the first site
    whose samples are held, and its index says the sites above it were in flight; with only the
    top site's temporaries there is nothing to promote."""
    inv = Investigator(InvestigatorConfig(holder_sites=3))
    HELD_BY_A_GLOBAL[:] = [types.SimpleNamespace(n=n) for n in range(2)]
    samples: list[object] = [types.SimpleNamespace(n=n) for n in range(2)] + list(HELD_BY_A_GLOBAL)
    holders, promoted = inv._holders_for(samples, [(0, 2), (1, 2)])
    assert promoted == 1
    assert holders and "HELD_BY_A_GLOBAL" in holders[0].path
    samples = [types.SimpleNamespace(n=n) for n in range(2)]
    holders, promoted = inv._holders_for(samples, [(0, 2)])
    assert promoted is None
    assert holders and all(h.root_kind == "temporary" for h in holders)
    HELD_BY_A_GLOBAL.clear()


def test_holder_sites_must_be_at_least_one() -> None:
    with pytest.raises(UsageError):
        InvestigatorConfig(holder_sites=0)
