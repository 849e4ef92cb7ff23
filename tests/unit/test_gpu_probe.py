"""The GPU probe and the GPU allocation recorder, replayed on recorded CUDA fixtures (no GPU needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import Probe, flatten, to_jsonable
from memwarden.probes.gpu import GpuDeviceReading, GpuProbe, GpuReading, NvmlMemory

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gpu"
SRC = Path(__file__).parents[2] / "src"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def nested(flat: Mapping[str, int]) -> dict[str, Any]:
    """The nested form torch.cuda.memory_stats_as_nested_dict() returns for a flat memory_stats()."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


class FakeCuda:
    """The slice of ``torch.cuda`` memwarden touches, with a record of every call."""

    def __init__(
        self, stats: list[Mapping[str, int]], *, initialised: bool = True, nested_api: bool = True
    ) -> None:
        self.stats = stats
        self.initialised = initialised
        self.calls: list[str] = []
        self.names = [f"NVIDIA H100 80GB HBM3 #{i}" for i in range(len(stats))]
        if nested_api:
            self.memory_stats_as_nested_dict = self._nested

    def is_initialized(self) -> bool:
        self.calls.append("is_initialized")
        return self.initialised

    def device_count(self) -> int:
        self.calls.append("device_count")
        return len(self.stats)

    def memory_stats(self, index: int) -> Mapping[str, int]:
        self.calls.append(f"memory_stats({index})")
        return self.stats[index]

    def _nested(self, index: int) -> dict[str, Any]:
        self.calls.append(f"memory_stats_as_nested_dict({index})")
        return nested(self.stats[index])

    def get_device_name(self, index: int) -> str:
        self.calls.append(f"get_device_name({index})")
        return self.names[index]

    def get_device_properties(self, index: int) -> Any:
        return types.SimpleNamespace(uuid=f"{index:08x}-aaaa-bbbb-cccc-dddddddddddd")


def fake_torch(cuda: FakeCuda) -> Any:
    return types.SimpleNamespace(cuda=cuda, __name__="torch")


def no_nvml(index: int) -> None:
    return None


# --- availability ------------------------------------------------------------------------------


def test_unavailable_when_program_did_not_import_torch() -> None:
    """Without torch in the program, the probe says so and read() raises ProbeUnavailable."""
    probe = GpuProbe(torch_module=lambda: None, nvml=no_nvml)
    got = probe.available()
    assert not got
    assert got.reason == "torch not imported"
    with pytest.raises(ProbeUnavailable, match="torch not imported"):
        probe.read()


def test_unavailable_until_the_program_initialises_cuda() -> None:
    """With torch imported but CUDA not started, the probe reads nothing and calls no CUDA function."""
    cuda = FakeCuda([load("stats_idle.json")], initialised=False)
    probe = GpuProbe(torch_module=lambda: fake_torch(cuda), nvml=no_nvml)
    got = probe.available()
    assert not got
    assert got.reason == "CUDA not initialised by the program"
    with pytest.raises(ProbeUnavailable, match="CUDA not initialised"):
        probe.read()
    assert set(cuda.calls) == {"is_initialized"}


def test_unavailable_with_a_torch_built_without_cuda() -> None:
    """A torch module with no torch.cuda is reported, not crashed on."""
    probe = GpuProbe(torch_module=types.SimpleNamespace, nvml=no_nvml)
    assert probe.available().reason == "this torch has no CUDA support"


def test_is_initialized_raising_reads_as_unavailable() -> None:
    """An exception from torch.cuda.is_initialized() makes the layer unavailable, with the error."""

    class Broken(FakeCuda):
        def is_initialized(self) -> bool:
            raise RuntimeError("driver gone")

    probe = GpuProbe(torch_module=lambda: fake_torch(Broken([{}])), nvml=no_nvml)
    assert "driver gone" in probe.available().reason


def test_an_injected_stats_source_is_available_without_torch() -> None:
    """A recorded stats source makes the probe available even where torch is absent."""
    probe = GpuProbe(torch_module=lambda: None, stats_source=lambda i: load("stats_idle.json"), nvml=no_nvml)
    assert probe.available()
    assert probe.read().device_count == 1


def test_probe_follows_the_protocol() -> None:
    """GpuProbe is a Probe of layer "gpu" that the sampler reads every tick."""
    probe = GpuProbe(torch_module=lambda: None, nvml=no_nvml)
    assert isinstance(probe, Probe)
    assert GpuProbe.layer == "gpu"
    assert GpuProbe.cost == "cheap"


def test_importing_the_gpu_modules_imports_no_torch(tmp_path: Path) -> None:
    """Importing and asking the GPU probe, recorder and policy never imports torch (an importable one)."""
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('memwarden imported torch')\n")
    code = (
        "import sys\n"
        "from memwarden.probes.gpu import GpuProbe\n"
        "from memwarden.guards.gpu import EmptyCachePolicy\n"
        "from memwarden.attribution._gpu_history import GpuHistoryRecorder\n"
        "print(GpuProbe().available().reason)\n"
        "print(GpuProbe().available().reason)\n"
        "print(EmptyCachePolicy().maybe_release())\n"
        "print(GpuHistoryRecorder().available().reason)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{tmp_path}:{SRC}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["torch not imported"] * 2 + ["None", "torch not imported", "False"]


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["stats_idle.json", "stats_retention_end.json", "stats_leak.json", "stats_fragmented.json"]
)
def test_reading_carries_the_allocator_numbers(name: str) -> None:
    """Each field of a device reading is the matching memory_stats key of the fixture."""
    stats = load(name)
    reading = GpuProbe(torch_module=lambda: None, stats_source=lambda i: stats, nvml=no_nvml).read()
    device = reading.devices[0]
    assert device.allocated_bytes == stats["allocated_bytes.all.current"]
    assert device.reserved_bytes == stats["reserved_bytes.all.current"]
    assert device.active_bytes == stats["active_bytes.all.current"]
    assert device.inactive_split_bytes == stats["inactive_split_bytes.all.current"]
    assert device.segments == stats["segment.all.current"]
    assert device.alloc_retries == stats["num_alloc_retries"]
    assert device.ooms == stats["num_ooms"]
    assert device.peak_allocated_bytes == stats["allocated_bytes.all.peak"]
    assert device.peak_reserved_bytes == stats["reserved_bytes.all.peak"]
    assert reading.cached_bytes == stats["reserved_bytes.all.current"] - stats["allocated_bytes.all.current"]


def test_totals_add_up_every_device() -> None:
    """With two devices, the totals are the sums and each device keeps its own numbers and name."""
    a, b = load("stats_retention_end.json"), load("stats_fragmented.json")
    nvml = {0: (4 * 2**30, 80 * 2**30), 1: None}
    cuda = FakeCuda([a, b])
    reading = GpuProbe(torch_module=lambda: fake_torch(cuda), nvml=nvml.get).read()
    assert reading.device_count == 2
    assert [d.index for d in reading.devices] == [0, 1]
    assert [d.name for d in reading.devices] == cuda.names
    for field in ("allocated_bytes", "reserved_bytes", "inactive_split_bytes", "alloc_retries", "ooms"):
        assert getattr(reading, field) == sum(getattr(d, field) for d in reading.devices)
    assert reading.reserved_bytes == a["reserved_bytes.all.current"] + b["reserved_bytes.all.current"]
    assert reading.segments == a["segment.all.current"] + b["segment.all.current"]
    assert reading.devices[0].nvml_used_bytes == 4 * 2**30
    assert reading.devices[1].nvml_used_bytes is None
    assert (reading.nvml_used_bytes, reading.nvml_total_bytes) == (4 * 2**30, 80 * 2**30)


def test_real_path_reads_the_nested_stats_and_matches_memory_stats() -> None:
    """By default the probe reads memory_stats_as_nested_dict() and gets what memory_stats() says."""
    stats = load("stats_leak.json")
    cuda = FakeCuda([stats])
    reading = GpuProbe(torch_module=lambda: fake_torch(cuda), nvml=no_nvml).read()
    assert "memory_stats_as_nested_dict(0)" in cuda.calls
    assert "memory_stats(0)" not in cuda.calls
    expected = GpuProbe(torch_module=lambda: None, stats_source=lambda i: stats, nvml=no_nvml).read()
    assert reading.devices[0].allocated_bytes == expected.devices[0].allocated_bytes
    assert dataclasses_equal_except_name(reading.devices[0], expected.devices[0])


def dataclasses_equal_except_name(x: GpuDeviceReading, y: GpuDeviceReading) -> bool:
    return {**to_jsonable(x), "name": None} == {**to_jsonable(y), "name": None}


def test_real_path_falls_back_to_memory_stats() -> None:
    """A torch without memory_stats_as_nested_dict is read through memory_stats()."""
    stats = load("stats_fragmented.json")
    cuda = FakeCuda([stats], nested_api=False)
    reading = GpuProbe(torch_module=lambda: fake_torch(cuda), nvml=no_nvml).read()
    assert "memory_stats(0)" in cuda.calls
    assert reading.alloc_retries == stats["num_alloc_retries"]


def test_missing_keys_read_as_zero() -> None:
    """Stats an allocator backend leaves out (cudaMallocAsync) read as 0 instead of failing."""
    reading = GpuProbe(
        torch_module=lambda: None, stats_source=lambda i: {"allocated_bytes.all.current": 5}, nvml=no_nvml
    ).read()
    assert reading.allocated_bytes == 5
    assert reading.reserved_bytes == 0
    assert reading.segments == 0


def test_a_failing_stats_source_raises_probe_unavailable() -> None:
    """An error inside memory_stats becomes ProbeUnavailable naming it, never another exception."""

    def boom(index: int) -> Mapping[str, int]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    probe = GpuProbe(torch_module=lambda: None, stats_source=boom, nvml=no_nvml)
    with pytest.raises(ProbeUnavailable, match="illegal memory access"):
        probe.read()


def test_failing_nvml_and_names_leave_none() -> None:
    """NVML and device-name failures give None fields; the allocator numbers are still read."""

    def nvml_boom(index: int) -> tuple[int, int]:
        raise OSError("NVML Shared Library Not Found")

    class Nameless(FakeCuda):
        def get_device_name(self, index: int) -> str:
            raise RuntimeError("no name")

    stats = load("stats_leak.json")
    reading = GpuProbe(torch_module=lambda: fake_torch(Nameless([stats])), nvml=nvml_boom).read()
    assert reading.devices[0].name is None
    assert reading.nvml_used_bytes is None
    assert reading.nvml_total_bytes is None
    assert reading.allocated_bytes == stats["allocated_bytes.all.current"]


def test_flatten_gives_the_gpu_series_names() -> None:
    """A reading flattens to gpu.<field> numbers (the names diagnosis reads), without the device table."""
    stats = load("stats_retention_end.json")
    flat = flatten(
        "gpu", GpuProbe(torch_module=lambda: None, stats_source=lambda i: stats, nvml=no_nvml).read()
    )
    assert flat["gpu.allocated_bytes"] == stats["allocated_bytes.all.current"]
    assert flat["gpu.reserved_bytes"] == stats["reserved_bytes.all.current"]
    assert flat["gpu.peak_allocated_bytes"] == stats["allocated_bytes.all.peak"]
    assert flat["gpu.nvml_used_bytes"] is None
    assert "gpu.devices" not in flat


def test_readings_are_frozen() -> None:
    """A reading cannot be changed after it is taken."""
    reading = GpuReading.from_devices((GpuDeviceReading.from_memory_stats(0, load("stats_idle.json")),))
    with pytest.raises(AttributeError):
        reading.allocated_bytes = 1  # type: ignore[misc]


# --- NVML --------------------------------------------------------------------------------------


def test_nvml_without_the_package_reads_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nvidia-ml-py installed, NVML numbers are None and nothing raises."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert NvmlMemory(lambda: None)(0) is None


def fake_pynvml(*, init_error: Exception | None = None) -> Any:
    calls: list[str] = []

    def nvmlInit() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    def by_uuid(uuid: str) -> str:
        calls.append(f"uuid:{uuid}")
        return f"handle-{uuid}"

    def by_index(index: int) -> str:
        calls.append(f"index:{index}")
        return f"handle-{index}"

    def memory(handle: str) -> Any:
        return types.SimpleNamespace(used=len(handle) * 2**20, total=80 * 2**30)

    return types.SimpleNamespace(
        nvmlInit=nvmlInit,
        nvmlDeviceGetHandleByUUID=by_uuid,
        nvmlDeviceGetHandleByIndex=by_index,
        nvmlDeviceGetMemoryInfo=memory,
        calls=calls,
    )


def test_nvml_matches_torch_devices_by_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch running, NVML's device is found by the torch device's UUID (not by index)."""
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    cuda = FakeCuda([{}, {}])
    reader = NvmlMemory(lambda: fake_torch(cuda))
    used, total = reader(1) or (None, None)
    assert nvml.calls == ["init", "uuid:GPU-00000001-aaaa-bbbb-cccc-dddddddddddd"]
    assert used == len("handle-GPU-00000001-aaaa-bbbb-cccc-dddddddddddd") * 2**20
    assert total == 80 * 2**30
    reader(1)
    assert nvml.calls.count("init") == 1


def test_nvml_init_failure_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """When nvmlInit fails (no driver), reads return None and NVML is not retried on every tick."""
    nvml = fake_pynvml(init_error=OSError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    reader = NvmlMemory(lambda: None)
    assert reader(0) is None
    assert reader(0) is None
    assert nvml.calls == ["init"]


def test_nvml_without_torch_uses_the_index_only_when_devices_are_not_renumbered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without torch, NVML index i is used unless CUDA_VISIBLE_DEVICES renumbers the devices."""
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert NvmlMemory(lambda: None)(0) is not None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert NvmlMemory(lambda: None)(0) is None
