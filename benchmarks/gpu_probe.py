"""How much one GPU probe read costs: µs per GpuProbe.read() and per raw torch.cuda.memory_stats().

    python benchmarks/gpu_probe.py [--repeat 2000] [--json PATH]

Always measures memwarden's own share (the probe fed a recorded memory_stats dictionary, no
GPU involved). With torch and a CUDA device it also measures, on device 0 after starting CUDA
the way a program would: ``torch.cuda.memory_stats(0)`` (what most tools call),
``torch.cuda.memory_stats_as_nested_dict(0)`` (what the probe calls) and a full
``GpuProbe().read()``. Without a device it says so and skips that part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "src"))

from memwarden.probes.gpu import GpuProbe  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "gpu" / "stats_retention_end.json"


def per_call_us(fn: Callable[[], Any], repeat: int, rounds: int = 5) -> float:
    """The median over ``rounds`` of the mean µs per call over ``repeat`` calls."""
    fn()  # warm caches (names, NVML handles)
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        means.append((time.perf_counter() - started) / repeat * 1e6)
    return statistics.median(means)


def cuda_torch() -> tuple[Any, str]:
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "torch.cuda.is_available() is False (no CUDA device)"
    return torch, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"python": sys.version.split()[0]}

    stats = json.loads(FIXTURE.read_text())
    for devices in (1, 8):
        probe = GpuProbe(
            torch_module=lambda: None,
            stats_source=lambda i: stats,
            device_count_source=lambda n=devices: n,
            nvml=lambda i: None,
        )
        us = per_call_us(probe.read, args.repeat)
        results[f"memwarden_overhead_us_{devices}_devices"] = us
        print(f"memwarden's own cost per read, {devices} device(s), recorded stats: {us:.1f} µs")

    torch, reason = cuda_torch()
    if torch is None:
        print(f"skipped the real-GPU part: {reason}")
        results["gpu"] = None
        results["skipped"] = reason
    else:
        x = torch.ones(1024, 1024, device="cuda")  # the program starts CUDA; memwarden never does
        torch.cuda.synchronize()
        results["gpu"] = torch.cuda.get_device_name(0)
        results["torch"] = torch.__version__
        results["memory_stats_us"] = per_call_us(lambda: torch.cuda.memory_stats(0), args.repeat)
        results["memory_stats_as_nested_dict_us"] = per_call_us(
            lambda: torch.cuda.memory_stats_as_nested_dict(0), args.repeat
        )
        real = GpuProbe()
        results["devices"] = real.read().device_count
        results["gpu_probe_read_us"] = per_call_us(real.read, args.repeat)
        del x
        print(f"device: {results['gpu']} (torch {results['torch']}), {results['devices']} device(s) visible")
        print(f"torch.cuda.memory_stats(0):                 {results['memory_stats_us']:.1f} µs")
        print(
            f"torch.cuda.memory_stats_as_nested_dict(0):  {results['memory_stats_as_nested_dict_us']:.1f} µs"
        )
        print(f"GpuProbe().read() (all devices, NVML if any): {results['gpu_probe_read_us']:.1f} µs")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
