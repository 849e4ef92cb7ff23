"""The classifier turns sampled layers plus evidence into the right verdict, with reasons."""

from __future__ import annotations

import io
import random

from memwarden.diagnosis._classify import DiagnosisConfig, classify
from memwarden.diagnosis._evidence import EVENT_UNAVAILABLE, Evidence, TrimEvidence, WindowEvidence
from memwarden.diagnosis._verdict import CacheGrowthInfo, Holder, Site, SourceFrame, Verdict
from memwarden.reporters.terminal import render_verdict
from memwarden.testing import samples_from_series
from memwarden.timeline import Event, Sample

MiB = 1024 * 1024


def _noise(n: int, scale: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, scale) for _ in range(n)]


def _window(opened: float, closed: float, traced_growth: int, *, with_site: bool = True) -> WindowEvidence:
    site = Site(
        "app/cache.py",
        42,
        "EmbeddingCache.get",
        traced_growth,
        1000,
        (SourceFrame("app/main.py", 10, "main"), SourceFrame("app/cache.py", 42, "EmbeddingCache.get")),
    )
    return WindowEvidence(
        opened_s=opened,
        closed_s=closed,
        frames=16,
        owns_tracing=True,
        traced_start_bytes=0,
        traced_end_bytes=traced_growth,
        sites=(site,) if with_site else (),
        holders=(Holder("builtins.list", "app.cache.EMBEDDINGS._cache[<str>]", "module_global"),)
        if with_site
        else (),
    )


def test_steady_python_growth_with_a_window_is_a_python_leak() -> None:
    """RSS and live blocks grow steadily and tracemalloc saw the growth: python_leak, naming site and holder."""
    n = 20
    rss = [200 * MiB + i * 500_000 + e for i, e in enumerate(_noise(n, 100_000))]
    blocks = [100_000 + i * 3000 for i in range(n)]
    traced = [None] * 5 + [i * 480_000 for i in range(8)] + [None] * 7
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks, "tracing.traced_bytes": traced}
    )
    v = classify(samples, Evidence(windows=(_window(5.0, 12.0, 7 * 480_000),)))
    assert v.verdict == "python_leak"
    assert v.leak
    assert v.confidence > 0.8
    assert v.sites[0].function == "EmbeddingCache.get"
    assert "app.cache.EMBEDDINGS._cache[<str>]" in v.summary
    assert v.growth_bytes_per_s["python"] is not None and v.growth_bytes_per_s["python"] > 300_000
    assert any("EMBEDDINGS" in a for a in v.advice)


def test_growth_tracemalloc_cannot_see_is_a_native_leak() -> None:
    """RSS grows while the window's traced bytes and the block count stay flat: native_leak."""
    n = 20
    rss = [100 * MiB + i * 700_000 for i in range(n)]
    blocks = [50_000 + int(e) for e in _noise(n, 30)]
    traced = [None] * 5 + [1000.0 + e for e in _noise(8, 200)] + [None] * 7
    samples = samples_from_series(
        {"process.rss_bytes": rss, "objects.allocated_blocks": blocks, "tracing.traced_bytes": traced}
    )
    v = classify(samples, Evidence(windows=(_window(5.0, 12.0, 2000, with_site=False),)))
    assert v.verdict == "native_leak"
    assert v.leak
    assert v.growth_bytes_per_s["native"] is not None and v.growth_bytes_per_s["native"] > 500_000


def test_freed_but_kept_memory_is_allocator_retention() -> None:
    """RSS stays high and flat while pymalloc's arenas are mostly free and live blocks fell: retention."""
    n = 15
    rss = [400 * MiB + e for e in _noise(n, 50_000)]
    blocks = [3_000_000] * 2 + [60_000] * (n - 2)
    arena = [300 * MiB] * n
    allocated = [280 * MiB] * 2 + [8 * MiB] * (n - 2)
    samples = samples_from_series(
        {
            "process.rss_bytes": rss,
            "objects.allocated_blocks": blocks,
            "pymalloc.arena_bytes": arena,
            "pymalloc.allocated_block_bytes": allocated,
            "libc.free_bytes": [2 * MiB] * n,
        }
    )
    v = classify(samples, Evidence())
    assert v.verdict == "allocator_retention"
    assert not v.leak
    assert any("pymalloc arenas hold" in e for e in v.evidence)


def test_glibc_free_chunks_confirmed_by_trim_are_retention() -> None:
    """Flat RSS with a large glibc free pool that malloc_trim gave back: allocator_retention."""
    n = 12
    samples = samples_from_series(
        {
            "process.rss_bytes": [220 * MiB] * n,
            "libc.free_bytes": [180 * MiB] * n,
            "libc.in_use_bytes": [20 * MiB] * n,
        }
    )
    v = classify(samples, Evidence(trim=TrimEvidence(220 * MiB, 40 * MiB, 180 * MiB)))
    assert v.verdict == "allocator_retention"
    assert any("malloc_trim(0) gave back" in e for e in v.evidence)


def _native_growth(*, free_step: float, used_step: float) -> list[Sample]:
    """RSS rising 40 MiB a sample outside Python; glibc's free and in-use bytes rising as given."""
    n = 12
    return samples_from_series(
        {
            "process.rss_bytes": [300 * MiB + i * 40 * MiB for i in range(n)],
            "objects.allocated_blocks": [80_000 + int(e) for e in _noise(n, 30)],
            "libc.free_bytes": [10 * MiB + i * free_step for i in range(n)],
            "libc.in_use_bytes": [90 * MiB + i * used_step for i in range(n)],
        }
    )


def test_rss_rising_into_glibc_free_chunks_is_retention_not_a_native_leak() -> None:
    """Seen on a PyTorch CPU loop: RSS rose ~300 MiB/s, all of it glibc free chunks that trim gave back."""
    samples = _native_growth(free_step=38 * MiB, used_step=0.5 * MiB)
    trim = TrimEvidence(rss_before_bytes=740 * MiB, rss_after_bytes=330 * MiB, returned_bytes=410 * MiB)
    v = classify(samples, Evidence(trim=trim))
    assert v.verdict == "allocator_retention", v.summary
    assert not v.leak
    assert any("glibc keeps it" in e for e in v.evidence)
    assert any("MALLOC_ARENA_MAX" in a for a in v.advice)


def test_rss_rising_with_mallocs_bytes_in_use_stays_a_native_leak() -> None:
    """Free chunks growing too does not excuse a leak: malloc's in-use bytes grow with RSS."""
    samples = _native_growth(free_step=20 * MiB, used_step=20 * MiB)
    v = classify(samples, Evidence(trim=TrimEvidence(740 * MiB, 520 * MiB, 220 * MiB)))
    assert v.verdict == "native_leak"
    assert v.leak


def test_a_leak_that_fragments_the_heap_stays_a_native_leak() -> None:
    """Seen on a PyTorch loop keeping a 4 KiB slice of each step: free chunks +33, in use +15 MiB."""
    samples = _native_growth(free_step=26 * MiB, used_step=12 * MiB)
    v = classify(samples, Evidence(trim=TrimEvidence(740 * MiB, 520 * MiB, 220 * MiB)))
    assert v.verdict == "native_leak"


def test_growth_that_levels_off_is_a_plateau() -> None:
    """Memory that rises then stays flat to the end (a cache at its bound) is a plateau, not a leak."""
    rss = [100 * MiB + min(i, 8) * 2 * MiB + e for i, e in enumerate(_noise(30, 30_000))]
    v = classify(samples_from_series({"process.rss_bytes": rss}))
    assert v.verdict == "plateau"
    assert not v.leak


def test_flat_memory_is_stable() -> None:
    """Noise around a flat level is stable."""
    rss = [150 * MiB + e for e in _noise(30, 200_000)]
    v = classify(samples_from_series({"process.rss_bytes": rss}))
    assert v.verdict == "stable"


def test_gc_sawtooth_is_stable() -> None:
    """Memory that climbs and is knocked down by the collector again and again, with a flat floor, is stable."""
    rss = [100 * MiB + (i % 5) * 4 * MiB for i in range(40)]
    v = classify(samples_from_series({"process.rss_bytes": rss}, interval=0.5))
    assert v.verdict == "stable", v.evidence


def test_slow_growth_below_the_floor_rate_is_stable() -> None:
    """Growth slower than min_rate_bytes_per_s is not called a leak."""
    rss = [100 * MiB + i * 1000 for i in range(30)]
    assert classify(samples_from_series({"process.rss_bytes": rss})).verdict == "stable"
    strict = DiagnosisConfig(min_rate_bytes_per_s=500, min_growth_bytes=10_000)
    assert classify(samples_from_series({"process.rss_bytes": rss}), config=strict).leak


def test_too_few_samples_are_inconclusive() -> None:
    """Two samples say nothing: inconclusive, with advice to run longer."""
    v = classify(samples_from_series({"process.rss_bytes": [1.0, 2.0]}))
    assert v.verdict == "inconclusive"
    assert v.confidence == 0.0
    assert "longer" in v.advice[0]


def test_unbounded_cache_growth_is_named_in_summary_and_advice() -> None:
    """A growing lru_cache with maxsize=None is named with a concrete fix."""
    n = 20
    rss = [100 * MiB + i * 400_000 for i in range(n)]
    blocks = [10_000 + i * 2000 for i in range(n)]
    caches = (CacheGrowthInfo("app.templates.render", "lru_cache", None, 5000, 480.0),)
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(caches=caches),
    )
    assert v.verdict == "python_leak"
    assert "app.templates.render" in v.summary
    assert any("maxsize" in a and "app.templates.render" in a for a in v.advice)


def test_a_librarys_few_entry_caches_are_not_named() -> None:
    """A PyTorch import fills a dozen lru_caches with an entry or two: not worth a line each."""
    n = 20
    rss = [100 * MiB + i * 400_000 for i in range(n)]
    blocks = [10_000 + i * 2000 for i in range(n)]
    caches = (
        CacheGrowthInfo("torch._native.get_user_ordering_fn", "lru_cache", None, 1, 0.1),
        CacheGrowthInfo("torch._sources.make_source_context", "lru_cache", None, 26, 4.3),
        CacheGrowthInfo("torch.backends.opt_einsum.is_available", "lru_cache", 128, 1, 0.1),
        CacheGrowthInfo("app.cache.EmbeddingCache.get", "lru_cache", None, 12, 1.0),
    )
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(_window(5.0, 12.0, 7 * 480_000),), caches=caches),
    )
    # the small cache that the top growing site is in is named; the library's are not
    assert [c.name for c in v.caches] == ["app.cache.EmbeddingCache.get"]
    assert not any("torch." in a for a in v.advice)


def test_verdict_json_round_trips() -> None:
    """A verdict's JSON form rebuilds the same verdict (what `memwarden report` relies on)."""
    from memwarden.diagnosis._verdict import Verdict

    n = 20
    rss = [200 * MiB + i * 500_000 for i in range(n)]
    blocks = [100_000 + i * 3000 for i in range(n)]
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(_window(5.0, 12.0, 3_000_000),)),
    )
    again = Verdict.from_json(v.to_json())
    assert again.to_json() == v.to_json()


def test_growth_into_a_full_bounded_cache_is_a_plateau() -> None:
    """Growth allocated inside a bounded lru_cache that is now at its maxsize is a plateau, not a leak."""
    n = 12
    rss = [100 * MiB + i * 400_000 for i in range(n)]
    blocks = [10_000 + i * 2000 for i in range(n)]
    site = Site("app/cards.py", 35, "render_card", 3_000_000, 2000)
    window = WindowEvidence(2.0, 6.0, 16, True, 0, 3_000_000, sites=(site,))
    full = CacheGrowthInfo("app.cards.render_card", "lru_cache", 2000, 2000, 250.0)
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,), caches=(full,)),
    )
    assert v.verdict == "plateau"
    assert any("now full" in e for e in v.evidence)
    not_full = CacheGrowthInfo("app.cards.render_card", "lru_cache", 5000, 2000, 250.0)
    v2 = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,), caches=(not_full,)),
    )
    assert v2.verdict == "python_leak"


def test_nested_holder_paths_give_one_piece_of_advice() -> None:
    """Holders that are the same container seen at two depths are advised on once."""
    from memwarden.diagnosis._advice import advise

    holders = (
        Holder("list", "app.HISTORY[<str>][<int>][<str>]", "module_global"),
        Holder("dict", "app.HISTORY[<str>][<int>]", "module_global"),
    )
    advice = advise("python_leak", holders=holders)
    assert sum("HISTORY" in a for a in advice) == 1


def test_a_fast_fill_of_a_bounded_cache_is_a_plateau() -> None:
    """RSS that jumps while a bounded cache fills, then stays flat, is a plateau naming the cache."""
    rss = [50 * MiB] + [80 * MiB + e for e in _noise(14, 20_000)]
    site = Site("app/cards.py", 35, "render_card", 30 * MiB, 2000)
    window = WindowEvidence(1.0, 5.0, 16, True, 0, 30 * MiB, sites=(site,))
    full = CacheGrowthInfo("app.cards.render_card", "lru_cache", 2000, 2000, 250.0)
    v = classify(samples_from_series({"process.rss_bytes": rss}), Evidence(windows=(window,), caches=(full,)))
    assert v.verdict == "plateau", v.evidence
    assert any("filled to its maxsize" in e for e in v.evidence)


def test_a_collector_sawtooth_with_free_arenas_is_not_retention() -> None:
    """Free pymalloc space at the end of a gc sawtooth, refilled every cycle, is stable, not retention."""
    n = 24
    blocks = [200_000 + (i % 4) * 400_000 for i in range(n)]  # rises and is collected, again and again
    samples = samples_from_series(
        {
            "process.rss_bytes": [300 * MiB] * n,
            "objects.allocated_blocks": blocks,
            "pymalloc.arena_bytes": [250 * MiB] * n,
            "pymalloc.allocated_block_bytes": [20 * MiB] * n,
        }
    )
    assert classify(samples).verdict == "stable"


def test_layers_that_could_not_be_read_say_why_in_the_verdict_and_summary() -> None:
    """A layer never read (no torch, CUDA not started) is in the verdict's layers with its reason."""
    samples = samples_from_series({"process.rss_bytes": [100 * MiB] * 10})
    recorded = [
        Event(1.0, EVENT_UNAVAILABLE, {"layers": {"gpu": "torch not imported", "tracing": "not tracing"}})
    ]
    v = classify(samples, Evidence.from_events(recorded))
    assert v.layers["gpu"] == {"unavailable": "torch not imported"}
    assert v.layers["process"]["rss_bytes"]["last"] == 100 * MiB
    text = io.StringIO()
    render_verdict(v, text, color=False)
    assert "not read: gpu (torch not imported)" in text.getvalue()
    assert "tracing (" not in text.getvalue()  # read only in windows: not worth a word


def test_a_layer_read_earlier_in_the_run_keeps_its_figures() -> None:
    """Unavailable at the end but sampled before (CUDA torn down): the figures are what counts."""
    samples = samples_from_series({"process.rss_bytes": [100 * MiB] * 10, "gpu.allocated_bytes": [0] * 10})
    v = classify(samples, Evidence(unavailable=(("gpu", "CUDA not initialised by the program"),)))
    assert "allocated_bytes" in v.layers["gpu"]


def test_native_growth_alongside_kept_objects_names_them_as_the_owners() -> None:
    """Tensors are small Python objects over native buffers: the site and holder lead the answer."""
    n = 20
    rss = [300 * MiB + i * 5 * MiB for i in range(n)]
    blocks = [80_000 + i * 1100 for i in range(n)]
    site = Site("app/infer.py", 6, "step", 157_000, 1731, ())
    holder = Holder("torch.Tensor", "__main__.KEPT[<int>]", "module_global")
    window = WindowEvidence(3.0, 7.0, 16, True, 0, 182_000, sites=(site,), holders=(holder,))
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,)),
    )
    assert v.verdict == "native_leak"
    assert (
        "torch.Tensor objects allocated at app/infer.py:6 in step() and held by __main__.KEPT[<int>]"
        in v.summary
    )
    assert v.advice[0].startswith("__main__.KEPT[<int>] keeps torch.Tensor objects made at app/infer.py:6")
    # without a holder the answer stays the generic one
    bare = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(WindowEvidence(3.0, 7.0, 16, True, 0, 182_000, sites=(site,)),)),
    )
    assert bare.verdict == "native_leak"
    assert "C extension" in bare.summary


def test_objects_in_a_full_bounded_deque_are_not_called_the_pile_up() -> None:
    """A holder at its bound (a full deque(maxlen=N)) is named as such, not as where objects pile up."""
    n = 20
    rss = [300 * MiB + i * 5 * MiB for i in range(n)]
    blocks = [80_000 + i * 1100 for i in range(n)]
    site = Site("app/infer.py", 6, "step", 157_000, 1731, ())
    bounded = Holder(
        "torch.Tensor", "__main__.SCALARS[<int>]", "module_global", "collections.deque(maxlen=600), full"
    )
    window = WindowEvidence(3.0, 7.0, 16, True, 0, 182_000, sites=(site,), holders=(bounded,))
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,)),
    )
    assert v.verdict == "native_leak"
    assert "C extension" in v.summary and "SCALARS" not in v.summary
    assert Holder.from_json(bounded.to_json()) == bounded
    text = io.StringIO()
    render_verdict(v, text, color=False)
    assert "collections.deque(maxlen=600), full" in text.getvalue()


def test_python_leak_advice_says_a_full_bounded_holder_cannot_grow() -> None:
    n = 20
    rss = [100 * MiB + i * 400_000 for i in range(n)]
    blocks = [10_000 + i * 2000 for i in range(n)]
    holder = Holder(
        "dict", "app.HISTORY[<str>][<int>]", "module_global", "collections.deque(maxlen=50), full"
    )
    window = WindowEvidence(
        3.0, 7.0, 16, True, 0, 7 * 480_000, sites=(_window(0, 1, 1).sites[0],), holders=(holder,)
    )
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,)),
    )
    assert v.verdict == "python_leak"
    assert any("cannot grow" in a and "app.HISTORY[<str>][<int>]" in a for a in v.advice), v.advice


def test_a_sampled_gc_sawtooth_with_glibc_free_chunks_is_not_retention() -> None:
    """Seen on CPython 3.12: collections every 2 s sampled every 1 s, glibc holding 24 MiB free at the end."""
    blocks = [75_649, 281_197, 486_561, 279_011, 484_328, 612_026, 80_909, 199_126, 77_995, 78_821]
    rss = [22, 38, 54, 38, 54, 60, 44, 49, 52, 57]
    samples = samples_from_series(
        {
            "process.rss_bytes": [r * MiB for r in rss],
            "objects.allocated_blocks": blocks,
            "pymalloc.arena_bytes": [20 * MiB] * 10,
            "pymalloc.allocated_block_bytes": [7 * MiB] * 10,
            "libc.free_bytes": [24 * MiB] * 10,
            "libc.in_use_bytes": [10 * MiB] * 10,
        }
    )
    v = classify(samples, Evidence(trim=TrimEvidence(57 * MiB, 34 * MiB, 23 * MiB)))
    assert v.verdict == "stable", v.evidence


def test_a_working_set_freed_over_two_samples_is_still_retention() -> None:
    """One free that spreads over two samples is one knock-down, not a sawtooth."""
    blocks = [75_000, 2_000_000, 2_000_000, 1_200_000, 200_000, 200_000, 205_000, 201_000, 203_000, 200_000]
    samples = samples_from_series(
        {
            "process.rss_bytes": [300 * MiB] * 10,
            "objects.allocated_blocks": blocks,
            "pymalloc.arena_bytes": [250 * MiB] * 10,
            "pymalloc.allocated_block_bytes": [30 * MiB] * 10,
        }
    )
    v = classify(samples, Evidence())
    assert v.verdict == "allocator_retention", v.evidence


def test_evidence_comes_as_data_with_codes_and_figures() -> None:
    """Each evidence sentence has an item with a stable code and its figures, which survives the JSON."""
    n = 20
    rss = [100 * MiB + i * 400_000 for i in range(n)]
    blocks = [10_000 + i * 2000 for i in range(n)]
    window = WindowEvidence(3.0, 7.0, 16, True, 0, 7 * 480_000, sites=(_window(0, 1, 1).sites[0],))
    v = classify(
        samples_from_series({"process.rss_bytes": rss, "objects.allocated_blocks": blocks}),
        Evidence(windows=(window,)),
    )
    assert v.verdict == "python_leak"
    assert [e.sentence for e in v.evidence_items] == list(v.evidence)
    items = {e.code: e for e in v.evidence_items}
    rss_item = items["trend.process.rss_bytes"]
    assert rss_item.figures["status"] == "growing"
    assert abs(float(rss_item.figures["rate_per_s"]) - 400_000) < 40_000  # type: ignore[arg-type]
    assert items["window.traced"].figures["traced_bytes"] == 7 * 480_000
    again = Verdict.from_json(v.to_json())
    assert again.evidence_items == v.evidence_items


def test_memory_that_rose_over_too_few_samples_for_a_trend_is_inconclusive_not_stable() -> None:
    """A 4 s program at --interval 1 keeping 330 MiB: five samples, too few to show a trend at
    p<0.01. It is no evidence of stability: the verdict says it could not tell, with the rise."""
    mib = 1024 * 1024
    rss = [22 * mib, 137 * mib, 249 * mib, 343 * mib, 353 * mib]
    v = classify(samples_from_series({"process.rss_bytes": rss}, interval=1.0), Evidence())
    assert v.verdict == "inconclusive", v.summary
    assert "rose 331.0 MiB over 4.0 s" in v.summary and "run longer" in v.summary
    flat = classify(samples_from_series({"process.rss_bytes": [22 * mib] * 5}, interval=1.0), Evidence())
    assert flat.verdict == "stable", flat.summary  # nothing rose: no growth to be unsure about
