"""GPU diagnosis (leak, cache retention, fragmentation) and GPU allocation attribution, on fixtures."""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memwarden.attribution._gpu_history import (
    FrameClassifier,
    GpuHistoryRecorder,
    find_gpu_holders,
    live_cuda_tensors,
    parse_snapshot,
)
from memwarden.diagnosis._evidence import EVENT_GPU_SITES, Evidence
from memwarden.diagnosis._gpu import (
    ALLOC_RETRIES,
    ALLOCATED,
    INACTIVE_SPLIT,
    OOMS,
    PEAK_ALLOCATED,
    RESERVED,
    GpuFinding,
    GpuThresholds,
    classify_gpu,
    diagnose_gpu,
)
from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import flatten
from memwarden.probes.gpu import GpuProbe
from memwarden.testing import FakeClock
from memwarden.timeline import Event, Sample

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gpu"
MiB = 1024 * 1024
GiB = 1024 * MiB
Series = dict[str, list[tuple[float, float | int | None]]]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def series_fixture(name: str) -> Series:
    data = load(name)["series"]
    return {key: [(float(t), v) for t, v in points] for key, points in data.items()}


def make_series(n: int, **metrics: Callable[[int], float]) -> Series:
    """``n`` ticks of 1 s; each metric given as a function of the tick."""
    names = {
        "allocated": ALLOCATED,
        "reserved": RESERVED,
        "peak": PEAK_ALLOCATED,
        "split": INACTIVE_SPLIT,
        "retries": ALLOC_RETRIES,
        "ooms": OOMS,
    }
    return {names[k]: [(float(i), f(i)) for i in range(n)] for k, f in metrics.items()}


# --- verdicts on the recorded scenarios ---------------------------------------------------------


def test_leaking_tensors_are_a_gpu_leak() -> None:
    """Live tensors growing 8 MiB a second are a gpu_leak, with their rate and the advice to find holders."""
    finding = diagnose_gpu(series_fixture("series_leak.json"))
    assert finding.verdict == "gpu_leak"
    assert finding.leak
    assert finding.confidence > 0.95
    rate = finding.evidence["allocated_slope_bytes_per_s"]
    assert rate is not None
    assert 7 * MiB < rate < 9 * MiB
    assert any("GpuHistoryRecorder" in a for a in finding.advice)
    assert "kept alive" in finding.summary


def test_random_size_matmul_loop_is_cache_retention() -> None:
    """Flat live tensors under a pool far above them and their peak: gpu_cache_retention, not a leak."""
    series = series_fixture("series_retention.json")
    finding = diagnose_gpu(series)
    assert finding.verdict == "gpu_cache_retention"
    assert not finding.leak
    reserved_last = series[RESERVED][-1][1]
    assert isinstance(reserved_last, int)
    assert finding.evidence["reserved_end_bytes"] == reserved_last
    assert any("expandable_segments:True" in a for a in finding.advice)
    assert any("empty_cache()" in a and "synchronises" in a for a in finding.advice)
    assert "not leaked" in finding.summary


def test_expandable_segments_loop_is_not_retention() -> None:
    """The loop with expandable segments (reserved within the peak's needs) is stable, its cache explained."""
    finding = diagnose_gpu(series_fixture("series_expandable.json"))
    assert finding.verdict == "stable"
    assert "no more than the run's peak" in finding.summary
    reserved = finding.evidence["reserved_end_bytes"]
    peak = finding.evidence["peak_allocated_bytes"]
    assert reserved is not None
    assert peak is not None
    assert reserved < peak


def test_idle_process_is_stable() -> None:
    """A process with CUDA started and nothing allocated is stable, with no advice."""
    finding = diagnose_gpu(series_fixture("series_idle.json"))
    assert finding.verdict == "stable"
    assert not finding.fragmentation
    assert finding.advice == ()


def test_model_load_then_serving_is_a_plateau() -> None:
    """Tensors that grow during start-up and then stay are a plateau, not a leak."""
    finding = diagnose_gpu(series_fixture("series_plateau.json"))
    assert finding.verdict == "plateau"
    rise = finding.evidence["allocated_rise_bytes"]
    assert rise is not None
    assert rise > GiB


def test_fragmented_cache_is_flagged_with_its_remedies() -> None:
    """Growing split pieces and cudaMalloc retries flag fragmentation, with advice naming each cause."""
    series = series_fixture("series_fragmented.json")
    finding = diagnose_gpu(series)
    assert finding.fragmentation
    assert finding.verdict in ("stable", "gpu_cache_retention")
    retries = [v for _, v in series[ALLOC_RETRIES]]
    assert finding.evidence["alloc_retries_rise"] == retries[-1] - retries[0]
    text = " ".join(finding.advice)
    assert "expandable_segments:True" in text
    assert "max_split_size_mb" in text
    assert "retried" in text
    assert "out-of-memory" in text


def test_too_few_samples_are_inconclusive() -> None:
    """Three ticks cannot show a trend: inconclusive with zero confidence."""
    finding = diagnose_gpu(make_series(3, allocated=lambda i: i * 100 * MiB, reserved=lambda i: GiB))
    assert finding.verdict == "inconclusive"
    assert finding.confidence == 0.0
    assert finding.evidence["samples"] == 3


def test_no_gpu_series_is_inconclusive() -> None:
    """Without any GPU samples the finding is inconclusive, not an error."""
    assert diagnose_gpu({}).verdict == "inconclusive"


# --- thresholds ---------------------------------------------------------------------------------


def test_cache_must_exceed_twice_the_live_tensors() -> None:
    """With 1 GiB live and no peak series, 1.9 GiB cached is normal, 2.1 GiB cached is retention."""
    below = make_series(30, allocated=lambda i: GiB, reserved=lambda i: GiB + 1.9 * GiB)
    above = make_series(30, allocated=lambda i: GiB, reserved=lambda i: GiB + 2.1 * GiB)
    assert diagnose_gpu(below).verdict == "stable"
    assert diagnose_gpu(above).verdict == "gpu_cache_retention"


def test_cache_must_exceed_the_absolute_floor() -> None:
    """A 200 MiB cache over 10 MiB of tensors is under the 256 MiB floor; 300 MiB is over it."""
    small = make_series(30, allocated=lambda i: 10 * MiB, reserved=lambda i: 210 * MiB)
    large = make_series(30, allocated=lambda i: 10 * MiB, reserved=lambda i: 310 * MiB)
    assert diagnose_gpu(small).verdict == "stable"
    assert diagnose_gpu(large).verdict == "gpu_cache_retention"
    floors = GpuThresholds(min_cache_bytes=400 * MiB)
    assert diagnose_gpu(large, floors).verdict == "stable"


def test_a_cache_the_peak_needed_is_not_retention() -> None:
    """Reserved within 1.5x the run's peak of live tensors is not retention; beyond it, it is."""
    within = make_series(30, allocated=lambda i: 32 * MiB, reserved=lambda i: 1400 * MiB, peak=lambda i: GiB)
    beyond = make_series(30, allocated=lambda i: 32 * MiB, reserved=lambda i: 1700 * MiB, peak=lambda i: GiB)
    assert diagnose_gpu(within).verdict == "stable"
    assert diagnose_gpu(beyond).verdict == "gpu_cache_retention"


def test_growth_below_the_leak_floor_is_not_a_leak() -> None:
    """A steady 100 KiB/s for 60 s (6 MiB) stays under the 16 MiB floor; a lower floor calls it a leak."""
    creeping = make_series(60, allocated=lambda i: GiB + i * 100 * 1024, reserved=lambda i: 2 * GiB)
    assert diagnose_gpu(creeping).verdict != "gpu_leak"
    assert diagnose_gpu(creeping, GpuThresholds(min_leak_bytes=MiB)).verdict == "gpu_leak"


def test_a_leak_wins_over_retention() -> None:
    """Growing live tensors are a leak even when the cache around them is also large."""
    series = make_series(40, allocated=lambda i: 100 * MiB + i * 10 * MiB, reserved=lambda i: 8 * GiB)
    assert diagnose_gpu(series).verdict == "gpu_leak"


def test_retries_alone_flag_fragmentation() -> None:
    """A rise of alloc_retries flags fragmentation even with no split pieces."""
    series = make_series(
        20, allocated=lambda i: GiB, reserved=lambda i: 2 * GiB, split=lambda i: 0, retries=lambda i: i // 10
    )
    finding = diagnose_gpu(series)
    assert finding.fragmentation
    assert finding.evidence["alloc_retries_rise"] == 1


def test_split_pieces_under_the_floor_do_not_flag_fragmentation() -> None:
    """100 MiB of split pieces in a 2 GiB pool is under both the 128 MiB floor and 20 % share."""
    series = make_series(20, allocated=lambda i: GiB, reserved=lambda i: 2 * GiB, split=lambda i: 100 * MiB)
    assert not diagnose_gpu(series).fragmentation
    series[INACTIVE_SPLIT] = [(t, 600 * MiB) for t, _ in series[INACTIVE_SPLIT]]
    assert diagnose_gpu(series).fragmentation


def test_a_counter_reset_is_not_a_rise() -> None:
    """reset_accumulated_memory_stats() dropping the retry counter to 0 is not counted as retries."""
    series = make_series(
        20, allocated=lambda i: GiB, reserved=lambda i: GiB, retries=lambda i: 5 if i < 10 else 0
    )
    finding = diagnose_gpu(series)
    assert finding.evidence["alloc_retries_rise"] == 0
    assert not finding.fragmentation


def test_gaps_in_a_series_are_skipped() -> None:
    """None values (ticks where the GPU layer was not read) are left out of the trend."""
    series = series_fixture("series_leak.json")
    series[ALLOCATED] = [(t, None if i % 3 == 0 else v) for i, (t, v) in enumerate(series[ALLOCATED])]
    finding = diagnose_gpu(series)
    assert finding.verdict == "gpu_leak"
    assert finding.evidence["samples"] == 40


def test_findings_are_frozen() -> None:
    """A finding cannot be changed after it is made."""
    finding = diagnose_gpu(series_fixture("series_idle.json"))
    assert isinstance(finding, GpuFinding)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.verdict = "gpu_leak"  # type: ignore[misc]


def test_classify_gpu_reads_sampler_ticks() -> None:
    """classify_gpu over timeline samples reaches the same verdict as diagnose_gpu over the series."""
    series = series_fixture("series_retention.json")
    ticks = len(series[ALLOCATED])
    samples = [
        Sample(
            t=1.7e9 + i,
            mono=500.0 + i,
            metrics={key: points[i][1] for key, points in series.items()},
        )
        for i in range(ticks)
    ]
    assert classify_gpu(samples).verdict == diagnose_gpu(series).verdict == "gpu_cache_retention"


def test_probe_readings_feed_the_diagnosis() -> None:
    """Flattened GpuProbe readings of the retention end state, tick after tick, diagnose as retention."""
    stats = load("stats_retention_end.json")
    probe = GpuProbe(torch_module=lambda: None, stats_source=lambda i: stats, nvml=lambda i: None)
    series: Series = {}
    for tick in range(10):
        for key, value in flatten("gpu", probe.read()).items():
            series.setdefault(key, []).append((float(tick), value))
    assert diagnose_gpu(series).verdict == "gpu_cache_retention"


# --- the snapshot parser ------------------------------------------------------------------------

CLASSIFIER = FrameClassifier(library_prefixes=("/usr/lib/python3.11",))


def active_blocks(snapshot: dict[str, Any], where: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return [
        b
        for seg in snapshot["segments"]
        for b in seg["blocks"]
        if b["state"] == "active_allocated" and where(b)
    ]


def innermost(block: dict[str, Any]) -> tuple[str, int]:
    frame = block["frames"][0] if block["frames"] else {"filename": "", "line": 0}
    return frame["filename"], frame["line"]


def test_snapshot_sites_name_the_user_line_holding_the_blocks() -> None:
    """The largest site is the user's line whose blocks are still allocated, with their bytes and count."""
    snapshot = load("snapshot_leak.json")
    report = parse_snapshot(snapshot, classifier=CLASSIFIER)
    top = report.sites[0]
    assert (top.file, top.line, top.function) == ("/srv/app/train.py", 27, "train_step")
    leak_blocks = active_blocks(snapshot, lambda b: innermost(b) == ("/srv/app/train.py", 27))
    assert top.bytes == sum(b["size"] for b in leak_blocks)
    assert top.count == len(leak_blocks)
    assert top.user_code
    assert set(top.sample_addresses) == {b["address"] for b in leak_blocks}
    assert [s.bytes for s in report.sites] == sorted((s.bytes for s in report.sites), reverse=True)


def test_torch_frames_are_skipped_to_reach_user_code() -> None:
    """A block allocated inside nn.Linear is put on the user's model line, not on torch's."""
    report = parse_snapshot(load("snapshot_leak.json"), classifier=CLASSIFIER)
    files = {(s.file, s.line) for s in report.sites}
    assert ("/srv/app/model.py", 18) in files
    assert not any("/torch/" in f for f, _ in files)
    model = next(s for s in report.sites if s.file == "/srv/app/model.py")
    assert model.count == 1  # the block awaiting a stream's free is not counted
    assert model.traceback[0].file.endswith("torch/nn/modules/linear.py")


def test_library_only_tracebacks_fall_back_to_the_third_party_frame() -> None:
    """With no user frame at all, the site is the innermost non-torch package frame, marked as library."""
    report = parse_snapshot(load("snapshot_leak.json"), classifier=CLASSIFIER)
    third = [s for s in report.sites if not s.user_code]
    assert len(third) == 1
    assert "transformers/models/llama" in third[0].file


def test_snapshot_totals_and_untraced_blocks() -> None:
    """Reserved is the segments' total; blocks allocated before recording are counted as untraced."""
    snapshot = load("snapshot_leak.json")
    report = parse_snapshot(snapshot, classifier=CLASSIFIER)
    assert report.reserved_bytes == sum(seg["total_size"] for seg in snapshot["segments"])
    assert report.allocated_bytes == sum(b["size"] for b in active_blocks(snapshot, lambda b: True))
    untraced = active_blocks(snapshot, lambda b: not b["frames"])
    assert report.untraced_bytes == sum(b["size"] for b in untraced)
    assert report.untraced_blocks == len(untraced)
    assert report.untraced_bytes + sum(s.bytes for s in report.sites) == report.allocated_bytes


def test_window_allocations_count_churn_per_site() -> None:
    """The trace's alloc events are counted per site, freed ones included."""
    snapshot = load("snapshot_leak.json")
    report = parse_snapshot(snapshot, classifier=CLASSIFIER)
    allocs = [
        e
        for e in snapshot["device_traces"][0]
        if e["action"] == "alloc"
        and (e["frames"][0]["filename"], e["frames"][0]["line"]) == ("/srv/app/train.py", 27)
    ]
    assert report.sites[0].allocations_in_window == len(allocs)
    assert report.trace_events == sum(len(t) for t in snapshot["device_traces"])


def test_malformed_snapshots_do_not_raise() -> None:
    """Missing keys, odd types and empty snapshots give an empty report, not an exception."""
    assert parse_snapshot({}).sites == ()
    odd = {"segments": [None, {"blocks": [{"state": "active_allocated", "size": "x", "frames": [1, {}]}]}]}
    report = parse_snapshot(odd, classifier=CLASSIFIER)
    assert report.allocated_bytes == 0
    assert parse_snapshot({"segments": "nope", "device_traces": 3}).trace_events == 0


@pytest.mark.parametrize(
    ("filename", "rank"),
    [
        ("/srv/app/train.py", 0),
        ("<string>", 0),
        ("/opt/venv/lib/python3.11/site-packages/transformers/modeling_utils.py", 1),
        ("/opt/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", 2),
        ("/usr/lib/python3/dist-packages/memwarden/sampler.py", 2),
        ("/usr/lib/python3.11/runpy.py", 2),
        ("<frozen importlib._bootstrap>", 2),
        ("??", 2),
        ("/pytorch/c10/cuda/CUDACachingAllocator.cpp", 2),
    ],
)
def test_frame_classifier_ranks(filename: str, rank: int) -> None:
    """User code ranks 0, third-party packages 1, torch/memwarden/stdlib/C++ frames 2."""
    assert CLASSIFIER.rank(filename) == rank


def test_report_becomes_a_gpu_sites_event_the_classifier_reads() -> None:
    """The report's event data is read back by Evidence.from_events as the GPU sites of the verdict."""
    report = parse_snapshot(load("snapshot_leak.json"), classifier=CLASSIFIER)
    data = report.to_event_data([{"type": "torch.Tensor", "path": "app.train.KEPT[<int>]"}])
    evidence = Evidence.from_events([Event(t=1.0, kind=EVENT_GPU_SITES, data=json.loads(json.dumps(data)))])
    assert [(s.file, s.line, s.size_diff_bytes) for s in evidence.gpu_sites] == [
        (s.file, s.line, s.bytes) for s in report.sites
    ]
    assert evidence.gpu_holders[0].path == "app.train.KEPT[<int>]"


# --- the recorder, on a fake torch --------------------------------------------------------------


class FakeMemory:
    """torch.cuda.memory's recorder API, returning a fixture snapshot."""

    def __init__(self, snapshot: dict[str, Any], *, snapshot_error: Exception | None = None) -> None:
        self.snapshot = snapshot
        self.snapshot_error = snapshot_error
        self.history_calls: list[dict[str, Any]] = []
        self.enabled = False

    def _record_memory_history(self, enabled: str | None = "all", **kwargs: Any) -> None:
        self.history_calls.append({"enabled": enabled, **kwargs})
        self.enabled = enabled is not None

    def _snapshot(self) -> dict[str, Any]:
        if self.snapshot_error is not None:
            raise self.snapshot_error
        return self.snapshot


def recorder_torch(memory: FakeMemory, *, initialised: bool = True) -> Any:
    cuda = types.SimpleNamespace(is_initialized=lambda: initialised, memory=memory)
    c = types.SimpleNamespace(_cuda_isHistoryEnabled=lambda: memory.enabled)
    return types.SimpleNamespace(cuda=cuda, _C=c)


def test_recorder_turns_history_on_for_the_window_and_off_after() -> None:
    """start() records with python stacks and a bounded ring; stop() snapshots, turns it off and reports."""
    memory = FakeMemory(load("snapshot_leak.json"))
    clock = FakeClock()
    recorder = GpuHistoryRecorder(
        lambda: recorder_torch(memory), max_entries=5000, classifier=CLASSIFIER, clock=clock
    )
    recorder.start()
    assert memory.history_calls == [
        {"enabled": "all", "context": "all", "stacks": "python", "max_entries": 5000}
    ]
    clock.advance(2.5)
    report = recorder.stop()
    assert memory.history_calls[-1] == {"enabled": None}
    assert not memory.enabled
    assert report.window_s == 2.5
    assert report.sites[0].file == "/srv/app/train.py"
    assert not recorder.recording


def test_record_waits_for_the_window() -> None:
    """record(seconds) opens the window, waits that long, and leaves the recorder off."""
    memory = FakeMemory(load("snapshot_leak.json"))
    waited: list[float] = []
    recorder = GpuHistoryRecorder(lambda: recorder_torch(memory), classifier=CLASSIFIER)
    report = recorder.record(3.0, wait=waited.append)
    assert waited == [3.0]
    assert report.sites
    assert not memory.enabled


def test_recorder_needs_cuda_started_by_the_program() -> None:
    """Without CUDA initialised the recorder refuses to start and never calls _record_memory_history."""
    memory = FakeMemory(load("snapshot_leak.json"))
    recorder = GpuHistoryRecorder(lambda: recorder_torch(memory, initialised=False))
    assert recorder.available().reason == "CUDA not initialised by the program"
    with pytest.raises(ProbeUnavailable, match="CUDA not initialised"):
        recorder.start()
    assert memory.history_calls == []


def test_recorder_leaves_the_programs_own_recording_alone() -> None:
    """If the program already records history, memwarden neither restarts nor stops it."""
    memory = FakeMemory(load("snapshot_leak.json"))
    memory.enabled = True
    recorder = GpuHistoryRecorder(lambda: recorder_torch(memory), classifier=CLASSIFIER)
    with recorder:
        pass
    assert memory.history_calls == []
    assert memory.enabled
    assert recorder.report is not None
    assert any("left it on" in n for n in recorder.report.notes)


def test_recorder_turns_history_off_even_when_the_snapshot_fails() -> None:
    """A failing _snapshot() raises ProbeUnavailable, and the recorder is still turned off."""
    memory = FakeMemory({}, snapshot_error=RuntimeError("CUDA error"))
    recorder = GpuHistoryRecorder(lambda: recorder_torch(memory))
    recorder.start()
    with pytest.raises(ProbeUnavailable, match="CUDA error"):
        recorder.stop()
    assert memory.history_calls[-1] == {"enabled": None}
    assert not recorder.recording


def test_stop_without_start_is_refused() -> None:
    """stop() with no open window raises ProbeUnavailable rather than snapshotting."""
    with pytest.raises(ProbeUnavailable, match="no recording window"):
        GpuHistoryRecorder(lambda: None).stop()


# --- from a site to the tensors and their holders -----------------------------------------------


class FakeStorage:
    def __init__(self, ptr: int, nbytes: int) -> None:
        self._ptr, self._nbytes = ptr, nbytes

    def data_ptr(self) -> int:
        return self._ptr

    def nbytes(self) -> int:
        return self._nbytes


class FakeTensor:
    """Stands for a CUDA tensor: a storage pointer and size, and its device (``.device.type``)."""

    def __init__(self, ptr: int, nbytes: int, *, is_cuda: bool = True) -> None:
        self.device = types.SimpleNamespace(type="cuda" if is_cuda else "cpu")
        self._storage = FakeStorage(ptr, nbytes)

    def untyped_storage(self) -> FakeStorage:
        return self._storage


def tensor_torch() -> Any:
    return types.SimpleNamespace(
        is_tensor=lambda o: isinstance(o, FakeTensor),
        cuda=types.SimpleNamespace(is_initialized=lambda: True),
    )


KEPT_FOR_HOLDER_TEST: list[FakeTensor] = []


def test_live_tensors_are_found_by_block_address_then_by_size() -> None:
    """Live CUDA tensors at the site's addresses are found (one per storage); sizes are the fallback."""
    a, view_of_a = FakeTensor(0x1000, 8 * MiB), FakeTensor(0x1000, 8 * MiB)
    b, cpu = FakeTensor(0x9000, 4 * MiB), FakeTensor(0x1000, 8 * MiB, is_cuda=False)
    keep = [a, view_of_a, b, cpu]
    found = live_cuda_tensors(tensor_torch(), addresses=[0x1000], sizes=[4 * MiB])
    assert len(found) == 1
    assert found[0] in (a, view_of_a)
    by_size = live_cuda_tensors(tensor_torch(), addresses=[0xDEAD], sizes=[4 * MiB])
    assert by_size == [b]
    del keep


def test_find_gpu_holders_names_the_global_that_keeps_the_tensors() -> None:
    """The holder search, given the site's live tensors, reports the module global holding them."""
    snapshot = load("snapshot_leak.json")
    report = parse_snapshot(snapshot, classifier=CLASSIFIER)
    top = report.sites[0]
    KEPT_FOR_HOLDER_TEST[:] = [FakeTensor(addr, 8 * MiB) for addr in top.sample_addresses]
    try:
        paths = find_gpu_holders(tensor_torch(), top, max_targets=2, time_budget_s=5.0)
    finally:
        KEPT_FOR_HOLDER_TEST.clear()
    assert paths
    assert all("KEPT_FOR_HOLDER_TEST" in p.path for p in paths)


def test_find_gpu_holders_without_cuda_finds_nothing() -> None:
    """Without a running CUDA there are no GPU tensors to look for."""
    site = parse_snapshot(load("snapshot_leak.json"), classifier=CLASSIFIER).sites[0]
    assert find_gpu_holders(None, site) == []
