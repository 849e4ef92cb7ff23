"""The GPU layer: what PyTorch's CUDA caching allocator holds, per device and in total.

PyTorch does not hand freed GPU memory back to the driver. Its caching allocator keeps the
segments it got from ``cudaMalloc`` and reuses them for later tensors, so two numbers matter:

- **allocated**: bytes in blocks that live tensors occupy now;
- **reserved**: bytes the allocator holds from the driver, used or not (what ``nvidia-smi``
  shows for this process, less the CUDA context itself).

Growing *allocated* means tensors are being kept alive (a leak); a large, growing *reserved*
with flat *allocated* is the cache at work (retention), which is not a leak.

:class:`GpuProbe` reads ``torch.cuda.memory_stats(i)`` for every device, plus, where
``nvidia-ml-py`` is installed, what NVML says the whole device has in use. It never imports
torch and never starts CUDA: it reads only when the program has imported torch *and* already
initialised CUDA itself.

Cost: one ``memory_stats`` call took about 70 µs per device on an H100 with torch 2.11
(``benchmarks/gpu_probe.py`` measures it on your machine), so a read costs about
70 µs x devices, plus about 5 µs of our own (25 µs for eight devices). The sampler reads
this ``"cheap"`` probe every tick (1 s under ``memwarden run``, 10 s in production): under
0.1 % of one core even with eight devices.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from memwarden.exceptions import ProbeUnavailable
from memwarden.probes._base import Availability, Cost, metric

__all__ = [
    "GpuDeviceReading",
    "GpuProbe",
    "GpuReading",
    "NvmlMemory",
    "TorchModuleSource",
    "StatsSource",
    "DeviceCountSource",
    "NvmlSource",
    "torch_if_cuda_initialised",
]

TorchModuleSource = Callable[[], Any]
"""Returns the program's ``torch`` module, or ``None`` when the program has not imported it."""

StatsSource = Callable[[int], Mapping[str, int]]
"""Returns ``torch.cuda.memory_stats(index)`` (or a recorded copy of it) for a device index."""

DeviceCountSource = Callable[[], int]
"""Returns how many CUDA devices the program can see."""

NvmlSource = Callable[[int], "tuple[int, int] | None"]
"""Returns ``(used_bytes, total_bytes)`` of the whole device as NVML sees it, or ``None``."""

# The memory_stats keys the probe reads (names as in torch.cuda.memory_stats' documentation).
_ALLOCATED = "allocated_bytes.all.current"
_PEAK_ALLOCATED = "allocated_bytes.all.peak"
_RESERVED = "reserved_bytes.all.current"
_PEAK_RESERVED = "reserved_bytes.all.peak"
_ACTIVE = "active_bytes.all.current"
_INACTIVE_SPLIT = "inactive_split_bytes.all.current"
_SEGMENTS = "segment.all.current"
_RETRIES = "num_alloc_retries"
_OOMS = "num_ooms"
_KEYS = (
    _ALLOCATED,
    _PEAK_ALLOCATED,
    _RESERVED,
    _PEAK_RESERVED,
    _ACTIVE,
    _INACTIVE_SPLIT,
    _SEGMENTS,
    _RETRIES,
    _OOMS,
)


def _default_torch() -> Any:
    return sys.modules.get("torch")


def torch_if_cuda_initialised(torch_module: TorchModuleSource) -> tuple[Any, str]:
    """The program's torch module when CUDA is already running in it, else ``(None, reason)``.

    Never imports torch and never initialises CUDA: both must have been done by the program.
    """
    try:
        torch = torch_module()
    except Exception as exc:  # a broken source must not break the host
        return None, f"torch could not be looked up ({type(exc).__name__}: {exc})"
    if torch is None:
        return None, "torch not imported"
    cuda = getattr(torch, "cuda", None)
    is_initialized = getattr(cuda, "is_initialized", None)
    if not callable(is_initialized):
        return None, "this torch has no CUDA support"
    try:
        initialised = bool(is_initialized())
    except Exception as exc:
        return None, f"torch.cuda.is_initialized() failed ({type(exc).__name__}: {exc})"
    if not initialised:
        return None, "CUDA not initialised by the program"
    return torch, ""


def _stats_reader(torch: Any) -> StatsSource:
    """Reads the few stats the probe needs from the real allocator, as flat ``memory_stats`` keys.

    ``memory_stats()`` builds ~150 flat keys from the nested dictionary in Python and sorts
    them on every call; ``memory_stats_as_nested_dict()`` (public, same numbers) skips that,
    so the probe reads it when this torch has it and picks out its keys.
    """
    cuda = torch.cuda
    nested_source = getattr(cuda, "memory_stats_as_nested_dict", None)
    if not callable(nested_source):
        flat: StatsSource = cuda.memory_stats
        return flat

    def read(index: int) -> Mapping[str, int]:
        nested = nested_source(index)
        out: dict[str, int] = {}
        for key in _KEYS:
            node: Any = nested
            for part in key.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is not None:
                out[key] = _as_int(node)
        return out

    return read


def _as_int(value: object) -> int:
    """A stat as an int; absent or non-numeric stats (some allocator backends leave them out) read 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


@dataclasses.dataclass(frozen=True)
class GpuDeviceReading:
    """What one CUDA device's caching allocator holds (bytes), and its event counters.

    ``allocated_bytes`` is held by live tensors; ``reserved_bytes`` is held from the driver
    (cached or used); ``active_bytes`` also counts blocks freed but still in use by a stream;
    ``inactive_split_bytes`` are free pieces of split blocks that ``empty_cache()`` cannot
    release; ``segments`` counts ``cudaMalloc`` segments; ``alloc_retries`` counts failed
    ``cudaMalloc`` calls that made the allocator flush its cache and retry; ``ooms`` counts
    out-of-memory errors. The NVML fields are what the driver says the whole device has in
    use and in total (every process, the CUDA context included), or ``None`` without NVML.
    """

    index: int
    name: str | None
    allocated_bytes: int
    reserved_bytes: int
    active_bytes: int
    inactive_split_bytes: int
    segments: int
    alloc_retries: int
    ooms: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    nvml_used_bytes: int | None = None
    nvml_total_bytes: int | None = None

    @classmethod
    def from_memory_stats(
        cls,
        index: int,
        stats: Mapping[str, object],
        *,
        name: str | None = None,
        nvml_used_bytes: int | None = None,
        nvml_total_bytes: int | None = None,
    ) -> GpuDeviceReading:
        """A reading built from one ``torch.cuda.memory_stats(index)`` dictionary."""
        return cls(
            index=index,
            name=name,
            allocated_bytes=_as_int(stats.get(_ALLOCATED)),
            reserved_bytes=_as_int(stats.get(_RESERVED)),
            active_bytes=_as_int(stats.get(_ACTIVE)),
            inactive_split_bytes=_as_int(stats.get(_INACTIVE_SPLIT)),
            segments=_as_int(stats.get(_SEGMENTS)),
            alloc_retries=_as_int(stats.get(_RETRIES)),
            ooms=_as_int(stats.get(_OOMS)),
            peak_allocated_bytes=_as_int(stats.get(_PEAK_ALLOCATED)),
            peak_reserved_bytes=_as_int(stats.get(_PEAK_RESERVED)),
            nvml_used_bytes=nvml_used_bytes,
            nvml_total_bytes=nvml_total_bytes,
        )

    @property
    def cached_bytes(self) -> int:
        """Bytes the allocator holds that no live tensor uses (reserved - allocated)."""
        return max(self.reserved_bytes - self.allocated_bytes, 0)


@dataclasses.dataclass(frozen=True)
class GpuReading:
    """What PyTorch's caching allocator holds on all devices together, and per device.

    The scalar fields are sums over ``devices``. ``peak_allocated_bytes`` and
    ``peak_reserved_bytes`` add up each device's own peak, which is an upper bound of the peak
    the devices reached together. NVML totals are ``None`` when no device could be read
    through NVML.
    """

    device_count: int = dataclasses.field(
        metadata=metric("", "gauge", "CUDA devices the program's PyTorch sees", prometheus="devices")
    )
    allocated_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "GPU memory held by live tensors (PyTorch caching allocator), all devices"
        )
    )
    reserved_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes",
            "gauge",
            "GPU memory the caching allocator holds from the driver, used or cached, all devices",
        )
    )
    active_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes",
            "gauge",
            "GPU memory in active blocks, freed ones still in use by a stream included, all devices",
        )
    )
    inactive_split_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Free pieces of split GPU blocks that empty_cache() cannot release, all devices"
        )
    )
    segments: int = dataclasses.field(
        metadata=metric("", "gauge", "cudaMalloc segments the caching allocator holds, all devices")
    )
    alloc_retries: int = dataclasses.field(
        metadata=metric(
            "", "counter", "Failed cudaMalloc calls that made the allocator flush its cache and retry"
        )
    )
    ooms: int = dataclasses.field(
        metadata=metric("", "counter", "CUDA out-of-memory errors the caching allocator raised")
    )
    peak_allocated_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Sum of each device's peak GPU memory held by live tensors")
    )
    peak_reserved_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Sum of each device's peak GPU memory held from the driver")
    )
    nvml_used_bytes: int | None = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "GPU memory in use on the devices by every process, as NVML reports it"
        )
    )
    nvml_total_bytes: int | None = dataclasses.field(
        metadata=metric("bytes", "gauge", "Total GPU memory of the devices, as NVML reports it")
    )
    devices: tuple[GpuDeviceReading, ...]

    @classmethod
    def from_devices(cls, devices: tuple[GpuDeviceReading, ...]) -> GpuReading:
        """The total over per-device readings."""
        allocated = reserved = active = split = segments = retries = ooms = peak_a = peak_r = 0
        nvml_used: int | None = None
        nvml_total: int | None = None
        for d in devices:  # one pass: the sampler calls this every tick
            allocated += d.allocated_bytes
            reserved += d.reserved_bytes
            active += d.active_bytes
            split += d.inactive_split_bytes
            segments += d.segments
            retries += d.alloc_retries
            ooms += d.ooms
            peak_a += d.peak_allocated_bytes
            peak_r += d.peak_reserved_bytes
            if d.nvml_used_bytes is not None:
                nvml_used = (nvml_used or 0) + d.nvml_used_bytes
            if d.nvml_total_bytes is not None:
                nvml_total = (nvml_total or 0) + d.nvml_total_bytes
        return cls(
            device_count=len(devices),
            allocated_bytes=allocated,
            reserved_bytes=reserved,
            active_bytes=active,
            inactive_split_bytes=split,
            segments=segments,
            alloc_retries=retries,
            ooms=ooms,
            peak_allocated_bytes=peak_a,
            peak_reserved_bytes=peak_r,
            nvml_used_bytes=nvml_used,
            nvml_total_bytes=nvml_total,
            devices=devices,
        )

    @property
    def cached_bytes(self) -> int:
        """Bytes the allocator holds that no live tensor uses (reserved - allocated)."""
        return max(self.reserved_bytes - self.allocated_bytes, 0)


class NvmlMemory:
    """Device memory as NVML sees it (``nvidia-ml-py``), read lazily; ``None`` when it can't be.

    Imports ``pynvml`` and calls ``nvmlInit()`` on first use only. Torch's device ``i`` is
    matched to NVML's device by UUID (then PCI bus id), because ``CUDA_VISIBLE_DEVICES``
    renumbers devices for CUDA but not for NVML; without torch it falls back to the index
    when ``CUDA_VISIBLE_DEVICES`` is unset. Any failure reads as ``None``: NVML is extra
    information, never a reason to fail.
    """

    def __init__(self, torch_module: TorchModuleSource = _default_torch) -> None:
        self._torch_module = torch_module
        self._lock = threading.Lock()
        self._pynvml: Any = None
        self._failed = False
        self._handles: dict[int, Any] = {}

    def _library(self) -> Any:
        if self._failed:
            return None
        if self._pynvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
            except Exception:  # not installed, no driver, no permission: no NVML numbers
                self._failed = True
                return None
            self._pynvml = pynvml
        return self._pynvml

    def _handle(self, nvml: Any, index: int) -> Any:
        if index in self._handles:
            return self._handles[index]
        handle: Any = None
        torch, _ = torch_if_cuda_initialised(self._torch_module)
        if torch is not None:
            try:
                props = torch.cuda.get_device_properties(index)
            except Exception:
                props = None
            uuid = str(getattr(props, "uuid", "") or "")
            if uuid:
                try:
                    handle = nvml.nvmlDeviceGetHandleByUUID(
                        uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
                    )
                except Exception:
                    handle = None
            bus = getattr(props, "pci_bus_id", None)
            if handle is None and isinstance(bus, int):
                domain = getattr(props, "pci_domain_id", 0)
                device = getattr(props, "pci_device_id", 0)
                try:
                    handle = nvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{device:02x}.0")
                except Exception:
                    handle = None
        if handle is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception:
                handle = None
        if handle is not None:
            self._handles[index] = handle
        return handle

    def __call__(self, index: int) -> tuple[int, int] | None:
        with self._lock:
            nvml = self._library()
            if nvml is None:
                return None
            handle = self._handle(nvml, index)
            if handle is None:
                return None
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
                return int(info.used), int(info.total)
            except Exception:
                return None


class GpuProbe:
    """Reads what PyTorch's CUDA caching allocator holds, on every device the program uses.

    Available only when the program itself imported torch and initialised CUDA (memwarden
    never does either), or when a ``stats_source`` is given (tests, recorded fixtures).
    ``torch_module`` finds the program's torch (default: ``sys.modules.get("torch")``);
    ``stats_source(i)`` returns ``memory_stats(i)`` (default: the real one);
    ``device_count_source()`` the number of devices; ``nvml(i)`` the device's NVML
    ``(used, total)`` bytes (default: :class:`NvmlMemory`, only if ``nvidia-ml-py`` imports).

    Cost: about 70 µs per device per read (one ``memory_stats`` call each), read every
    sampler tick.
    """

    layer: ClassVar[str] = "gpu"
    cost: ClassVar[Cost] = "cheap"

    def __init__(
        self,
        torch_module: TorchModuleSource = _default_torch,
        stats_source: StatsSource | None = None,
        device_count_source: DeviceCountSource | None = None,
        nvml: NvmlSource | None = None,
    ) -> None:
        self._torch_module = torch_module
        self._stats_source = stats_source
        self._device_count_source = device_count_source
        self._nvml: NvmlSource = nvml if nvml is not None else NvmlMemory(torch_module)
        self._names: dict[int, str | None] = {}

    def available(self) -> Availability:
        """Yes when CUDA stats can be read without starting anything; else why not."""
        if self._stats_source is not None:
            return Availability.yes()
        torch, reason = torch_if_cuda_initialised(self._torch_module)
        if torch is None:
            return Availability.no(reason)
        cuda = torch.cuda
        if not any(callable(getattr(cuda, n, None)) for n in ("memory_stats_as_nested_dict", "memory_stats")):
            return Availability.no("this torch has no torch.cuda.memory_stats")
        return Availability.yes()

    def read(self) -> GpuReading:
        """Every device's allocator numbers now; raises ``ProbeUnavailable`` when they can't be read."""
        torch, reason = torch_if_cuda_initialised(self._torch_module)
        stats_source = self._stats_source
        if stats_source is None:
            if torch is None:
                raise ProbeUnavailable(self.layer, reason)
            stats_source = _stats_reader(torch)
        try:
            count = self._device_count(torch)
        except Exception as exc:
            raise ProbeUnavailable(self.layer, f"device count failed ({type(exc).__name__}: {exc})") from exc
        devices = []
        for index in range(count):
            try:
                stats = stats_source(index)
            except Exception as exc:
                raise ProbeUnavailable(
                    self.layer, f"memory_stats({index}) failed ({type(exc).__name__}: {exc})"
                ) from exc
            nvml = self._nvml_reading(index)
            devices.append(
                GpuDeviceReading.from_memory_stats(
                    index,
                    stats,
                    name=self._name(torch, index),
                    nvml_used_bytes=None if nvml is None else nvml[0],
                    nvml_total_bytes=None if nvml is None else nvml[1],
                )
            )
        return GpuReading.from_devices(tuple(devices))

    def _device_count(self, torch: Any) -> int:
        if self._device_count_source is not None:
            return max(int(self._device_count_source()), 0)
        if torch is not None:
            return max(int(torch.cuda.device_count()), 0)
        return 1  # an injected stats source with no torch: one device

    def _name(self, torch: Any, index: int) -> str | None:
        if index in self._names:
            return self._names[index]
        if torch is None:
            return None
        try:
            name: str | None = str(torch.cuda.get_device_name(index))
        except Exception:
            name = None
        self._names[index] = name
        return name

    def _nvml_reading(self, index: int) -> tuple[int, int] | None:
        try:
            got = self._nvml(index)
        except Exception:
            return None
        if got is None:
            return None
        try:
            used, total = got
            return int(used), int(total)
        except (TypeError, ValueError):
            return None
