"""The GPU layer on a real CUDA device: retention, leak, expandable segments, the empty-cache policy.

Every test here needs torch with a CUDA device; elsewhere they are skipped, saying why. Each
scenario runs in its own process (tests/scenarios/gpu/_drive.py), so it starts with an empty
caching allocator and its own PYTORCH_CUDA_ALLOC_CONF.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _why_no_cuda() -> str | None:
    """None when torch sees a CUDA device, else why not.

    Asked in a subprocess, so that torch (580,000 objects) stays out of the test process: other
    tests there walk its heap.
    """
    if importlib.util.find_spec("torch") is None:
        return "the GPU tests need torch (pip install torch) and a CUDA device"
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if probe.returncode != 0:
        return f"importing torch failed: {probe.stderr.strip().splitlines()[-1:]}"
    if probe.stdout.strip() != "True":
        return "needs a CUDA device: torch.cuda.is_available() is False here"
    return None


_NO_CUDA = _why_no_cuda()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_NO_CUDA is not None, reason=_NO_CUDA or "")]

ROOT = Path(__file__).parents[2]
DRIVER = ROOT / "tests" / "scenarios" / "gpu" / "_drive.py"
MiB = 1024 * 1024


def drive(
    scenario: str, *args: str, env: dict[str, str] | None = None, timeout: float = 400
) -> dict[str, Any]:
    """Run one scenario under the driver in a fresh process and return its JSON result."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), full_env.get("PYTHONPATH", "")])
    full_env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    full_env.update(env or {})
    out = subprocess.run(
        [sys.executable, str(DRIVER), scenario, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, f"driver failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    start = out.stdout.index("{")
    result: dict[str, Any] = json.loads(out.stdout[start:])
    return result


def test_random_size_matmul_loop_is_cache_retention() -> None:
    """Random square matmuls 1024²..10240² with the default allocator diagnose as gpu_cache_retention."""
    result = drive("gpu_cache_retention", "--steps", "150", "--pause", "0.005")
    finding = result["finding"]
    assert finding["verdict"] == "gpu_cache_retention", finding["summary"]
    evidence = finding["evidence"]
    assert evidence["reserved_end_bytes"] > 1.5 * evidence["peak_allocated_bytes"]
    assert evidence["allocated_end_bytes"] < 256 * MiB


def test_expandable_segments_loop_is_not_retention() -> None:
    """The same loop with expandable_segments:True keeps reserved near the working set: not retention."""
    result = drive(
        "gpu_cache_retention",
        "--steps",
        "150",
        "--pause",
        "0.005",
        env={"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
    )
    finding = result["finding"]
    assert finding["verdict"] not in ("gpu_cache_retention", "gpu_leak"), finding["summary"]


def test_kept_tensors_are_a_gpu_leak_named_at_their_line() -> None:
    """Tensors kept in a global diagnose as gpu_leak; the recorder names the line, the holder search KEPT."""
    result = drive("gpu_leak", "--steps", "120", "--record")
    finding = result["finding"]
    assert finding["verdict"] == "gpu_leak", finding["summary"]
    top = result["report"]["sites"][0]
    assert top["file"] == result["scenario_file"]
    assert top["line"] == result["leak_line"]
    assert top["count"] >= 100
    assert top["user_code"]
    assert any("KEPT" in path for path in result["holders"]), result["holders"]


def test_empty_cache_policy_frees_reserved_memory() -> None:
    """After the retention loop, the policy over a 256 MiB threshold gives the cache back to the driver."""
    result = drive(
        "gpu_cache_retention", "--steps", "60", "--pause", "0.0", "--policy-threshold", str(256 * MiB)
    )
    release = result["release"]
    assert release is not None, result["policy_error"]
    assert release["freed_bytes"] > 256 * MiB
    assert release["reserved_after_bytes"] < release["reserved_before_bytes"]
    assert release["duration_s"] > 0


def test_probe_read_is_cheap_on_a_real_device() -> None:
    """One GpuProbe.read() on a real device takes well under a millisecond (it is read every tick)."""
    result = drive("gpu_leak", "--steps", "50", "--pause", "0.0")
    assert result["probe_read_us_median"] < 1000


@pytest.mark.slow
def test_memwarden_run_reports_the_gpu_leak(tmp_path: Path) -> None:
    """`memwarden run --json` on the leak scenario gives the gpu_leak verdict with leak true."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["MEMWARDEN_SCENARIO_SECONDS"] = "12"
    out_json = tmp_path / "verdict.json"
    scenario = ROOT / "tests" / "scenarios" / "gpu" / "gpu_leak.py"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "memwarden",
            "run",
            "--interval",
            "0.5",
            "--json",
            str(out_json),
            str(scenario),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    verdict = json.loads(out_json.read_text())
    assert verdict["verdict"] == "gpu_leak", verdict["summary"]
    assert verdict["leak"] is True
