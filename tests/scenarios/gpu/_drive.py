"""Runs a GPU scenario with memwarden's GPU layer attached and prints what it found, as JSON.

    python tests/scenarios/gpu/_drive.py gpu_leak --steps 120 --record --out result.json
    python tests/scenarios/gpu/_drive.py gpu_cache_retention --steps 150 --policy-threshold 268435456
    python tests/scenarios/gpu/_drive.py gpu_leak --steps 120 --record --dump recorded/ --tag leak

``--dump DIR`` also writes what the run saw, as fixtures of the shapes in tests/fixtures/gpu/
(recorded, not built by hand): ``stats_<tag>.json`` (``torch.cuda.memory_stats(0)`` at the end),
``series_<tag>.json`` (the probe's series, seconds since the first reading) and, with
``--record``, ``snapshot_<tag>.json`` (``torch.cuda.memory._snapshot()``, its event history cut
to the last 2,000 entries).

It reads the GPU probe after every step (the sampler's job in ``memwarden run``), diagnoses
the series, and optionally records allocation sites for the whole run (``--record``) and
tries the empty-cache policy at the end (``--policy-threshold``). The integration tests run it
in a fresh process per scenario, so each starts with an empty caching allocator and
``PYTORCH_CUDA_ALLOC_CONF`` can be set for it. Exits 77 without a CUDA device.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from memwarden.attribution._gpu_history import GpuHistoryRecorder, find_gpu_holders
from memwarden.diagnosis._gpu import diagnose_gpu
from memwarden.guards.gpu import EmptyCachePolicy
from memwarden.probes._base import flatten, to_jsonable
from memwarden.probes.gpu import GpuProbe

HERE = Path(__file__).parent
SKIPPED = 77


def load_scenario(name: str) -> Any:
    """Import tests/scenarios/gpu/<name>.py as module ``name`` (so its globals have a module path)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def leak_line(name: str) -> int | None:
    """The line of the scenario marked ``# the leak``."""
    for number, text in enumerate((HERE / f"{name}.py").read_text().splitlines(), start=1):
        if text.rstrip().endswith("# the leak"):
            return number
    return None


def dump(
    torch: Any, folder: Path, tag: str, series: dict[str, list[tuple[float, Any]]], *, snapshot: bool
) -> None:
    """Write the run's memory_stats, series and (while recording) snapshot as JSON fixtures."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    stats = dict(torch.cuda.memory_stats(0))
    (folder / f"stats_{tag}.json").write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
    t0 = min((points[0][0] for points in series.values() if points), default=0.0)
    recorded = {k: [[round(t - t0, 4), v] for t, v in points] for k, points in series.items()}
    (folder / f"series_{tag}.json").write_text(
        json.dumps({"description": f"recorded: {tag}", **meta, "series": recorded}, indent=1) + "\n"
    )
    if snapshot:
        snap = torch.cuda.memory._snapshot()
        snap["device_traces"] = [trace[-2000:] for trace in snap.get("device_traces", [])]
        (folder / f"snapshot_{tag}.json").write_text(json.dumps(snap, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between steps")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--policy-threshold", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dump", type=Path, default=None, help="write recorded fixtures to this folder")
    parser.add_argument("--tag", default=None, help="fixture name suffix (default: the scenario)")
    args = parser.parse_args(argv)

    scenario = load_scenario(args.scenario)
    torch = scenario.cuda_torch()
    if torch is None:
        return SKIPPED
    # The program starts CUDA and cuBLAS (memwarden never does); one small matmul does both.
    warm = torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")
    torch.cuda.synchronize()
    del warm

    probe = GpuProbe()
    assert probe.available(), probe.available().reason
    series: dict[str, list[tuple[float, Any]]] = {}
    read_s: list[float] = []

    def sample(_: int) -> None:
        time.sleep(args.pause)
        started = time.perf_counter()
        reading = probe.read()
        read_s.append(time.perf_counter() - started)
        now = time.monotonic()
        for key, value in flatten("gpu", reading).items():
            series.setdefault(key, []).append((now, value))

    recorder = GpuHistoryRecorder(max_entries=20_000) if args.record else None
    if recorder is not None:
        recorder.start()
    sample(0)
    status = scenario.main(steps=args.steps, on_step=sample)
    if args.dump is not None:
        dump(torch, args.dump, args.tag or args.scenario, series, snapshot=recorder is not None)
    report = recorder.stop() if recorder is not None else None

    result: dict[str, Any] = {
        "scenario": args.scenario,
        "status": status,
        "finding": to_jsonable(diagnose_gpu(series)),
        "probe_read_us_median": sorted(read_s)[len(read_s) // 2] * 1e6 if read_s else None,
        "leak_line": leak_line(args.scenario),
        "scenario_file": str(HERE / f"{args.scenario}.py"),
    }
    if report is not None:
        result["report"] = to_jsonable(report)
        holders = find_gpu_holders(torch, report.sites[0]) if report.sites else []
        result["holders"] = [h.path for h in holders]
    if args.policy_threshold is not None:
        policy = EmptyCachePolicy(args.policy_threshold, min_interval_s=0.0)
        result["release"] = to_jsonable(policy.maybe_release())
        result["policy_error"] = policy.last_error
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
