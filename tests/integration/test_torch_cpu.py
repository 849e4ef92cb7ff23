"""memwarden with a real PyTorch, on the CPU: what a user without a GPU (and CI) can check.

The GPU layer's promises are about torch itself: memwarden never imports it, never starts CUDA,
says why the GPU layer is not read, and its heap walks cope with torch's objects. These run
where torch is installed (``pip install torch``; CI installs the CPU build when it is on the
machine) and are skipped elsewhere. The GPU itself is tested in test_gpu_real.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import textwrap
from pathlib import Path

import pytest

from .conftest import run_memwarden, run_python

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="needs torch (pip install torch; the CPU build is enough)",
)

ROOT = Path(__file__).parents[2]
TORCH = ROOT / "tests" / "scenarios" / "torch"
SCENARIO = TORCH / "cpu_matmul.py"


@pytest.mark.slow
def test_memwarden_run_on_a_torch_cpu_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The matmul loop: retention (not a leak), the GPU layer not read and why, CUDA never started."""
    report = tmp_path / "torch.json"
    monkeypatch.setenv("MEMWARDEN_TORCH_REPORT", str(report))
    monkeypatch.setenv("MEMWARDEN_SCENARIO_SECONDS", "12")  # the flat part decides
    out = run_memwarden(["run", "--json", "verdict.json", str(SCENARIO)], tmp_path)
    assert out.returncode == 0, out.stderr
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["verdict"] == "allocator_retention", verdict["summary"]
    assert verdict["leak"] is False
    assert verdict["layers"]["gpu"] == {"unavailable": "CUDA not initialised by the program"}
    summary = out.stderr  # the summary goes to stderr, the program's output to stdout
    assert "not read: " in summary and "gpu (CUDA not initialised by the program)" in summary
    # torch's own few-entry lru_caches fill while it warms up: they are not advice
    assert not [c["name"] for c in verdict["caches"] if c["name"].startswith("torch.")]
    # memwarden's heap walks ran none of torch's code (a deprecated attribute warned before)
    assert not re.search(r"\w+Warning:", summary), summary
    seen = json.loads(report.read_text())
    assert seen == {"cuda_initialised": False, "lazy_init_calls": 0}


@pytest.mark.slow
def test_kept_cpu_tensors_are_named_with_their_line_and_holder(tmp_path: Path) -> None:
    """Tensor data is native memory: native_leak, but with the line that makes the tensors and KEPT."""
    leak = TORCH / "cpu_tensor_leak.py"
    line = next(n for n, text in enumerate(leak.read_text().splitlines(), 1) if text.endswith("# the leak"))
    out = run_memwarden(["run", "--json", "verdict.json", str(leak)], tmp_path)
    assert out.returncode == 0, out.stderr
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["verdict"] == "native_leak", verdict["summary"]
    assert verdict["leak"] is True
    assert (verdict["sites"][0]["file"], verdict["sites"][0]["line"]) == (str(leak), line)
    # on CPython 3.11 tracemalloc cannot name a torch.Tensor's allocation itself; memwarden can
    assert verdict["holders"][0]["path"] == "__main__.KEPT[<int>]"
    assert verdict["holders"][0]["type"] == "torch.Tensor"
    assert "torch.Tensor objects" in verdict["summary"] and "__main__.KEPT[<int>]" in verdict["summary"]
    assert ".item()" in verdict["advice"][0]


def test_memwarden_run_never_imports_torch_for_a_program_that_does_not(tmp_path: Path) -> None:
    """With torch installed, a plain program under memwarden run still has no torch at exit."""
    program = tmp_path / "plain.py"
    program.write_text(
        textwrap.dedent(
            """
            import atexit, sys, time
            atexit.register(lambda: open("modules.txt", "w").write(str("torch" in sys.modules)))
            data = []
            for i in range(30):
                data.append(bytearray(100_000))
                time.sleep(0.1)
            """
        )
    )
    out = run_memwarden(["run", "--json", "verdict.json", "--interval", "0.5", str(program)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "modules.txt").read_text() == "False"
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["layers"]["gpu"] == {"unavailable": "torch not imported"}


def test_the_gpu_parts_stand_back_when_torch_has_no_cuda_running(tmp_path: Path) -> None:
    """Probe, recorder, holder search and empty-cache policy on real torch with CUDA not started."""
    script = tmp_path / "check.py"
    script.write_text(
        textwrap.dedent(
            """
            import json
            import torch
            from memwarden.attribution._gpu_history import (
                GpuAllocationSite, GpuHistoryRecorder, find_gpu_holders, live_cuda_tensors,
            )
            from memwarden.attribution._holders import find_holders
            from memwarden.guards.gpu import EmptyCachePolicy
            from memwarden.probes.gpu import GpuProbe

            KEPT = [torch.ones(1024) for _ in range(4)]
            view = KEPT[0][10:]                      # a view shares its base's storage
            addresses = [t.untyped_storage().data_ptr() for t in KEPT]
            site = GpuAllocationSite("x.py", 1, "f", 4096, 4, True, sample_addresses=tuple(addresses))
            found = live_cuda_tensors(torch, addresses=addresses, limit=10, device_type="cpu")
            policy = EmptyCachePolicy(threshold_bytes=0, min_interval_s=0.0)
            print(json.dumps({
                "probe": GpuProbe().available().reason,
                "recorder": GpuHistoryRecorder().available().reason,
                "gpu_holders": find_gpu_holders(torch, site),
                "cuda_tensors": len(live_cuda_tensors(torch, addresses=addresses)),
                "cpu_tensors": len(found),
                "cpu_are_kept": sorted(any(t is k for k in KEPT) for t in found),
                "holder_paths": sorted({p.path for p in find_holders(found)}),
                "release": policy.maybe_release(),
                "policy_error": policy.last_error,
                "cuda_initialised": torch.cuda.is_initialized(),
            }))
            """
        )
    )
    out = run_python([str(script)], tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["probe"] == "CUDA not initialised by the program"
    assert got["recorder"] == "CUDA not initialised by the program"
    assert got["gpu_holders"] == []
    assert got["cuda_tensors"] == 0
    # one tensor per storage, views skipped: the four kept ones, found by their real addresses
    assert got["cpu_tensors"] == 4
    assert got["cpu_are_kept"] == [True] * 4
    assert got["holder_paths"] == ["__main__.KEPT[<int>]"]
    assert got["release"] is None
    assert got["policy_error"] == "CUDA not initialised by the program"
    assert got["cuda_initialised"] is False
