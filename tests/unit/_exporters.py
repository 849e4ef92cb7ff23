"""A running monitor with known readings, for the exporter tests.

The process and GPU layers replay fixed readings (RSS grows by 1 MiB a tick; two CUDA devices),
so the tests can assert exact values; the other layers read this process for real.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import memwarden
from memwarden.probes import ObjectsProbe, PymallocProbe
from memwarden.probes.gpu import GpuDeviceReading, GpuReading
from memwarden.probes.libc import LibcProbe
from memwarden.probes.objects import GcPauseTimer
from memwarden.testing import ReplayProbe

MIB = 1 << 20
BASE_RSS = 200 * MIB


def device(index: int, allocated: int) -> GpuDeviceReading:
    """One device's reading with ``allocated`` bytes held by tensors and twice that reserved."""
    return GpuDeviceReading(
        index=index,
        name=f"fake{index}",
        allocated_bytes=allocated,
        reserved_bytes=2 * allocated,
        active_bytes=allocated,
        inactive_split_bytes=0,
        segments=3,
        alloc_retries=index,
        ooms=0,
        peak_allocated_bytes=allocated,
        peak_reserved_bytes=2 * allocated,
    )


GPU = GpuReading.from_devices((device(0, 64 * MIB), device(1, 32 * MIB)))


def process_readings(n: int = 400) -> list[dict[str, int]]:
    """RSS that grows by 1 MiB per tick; a fixed virtual size."""
    return [{"rss_bytes": BASE_RSS + i * MIB, "vms_bytes": 1 << 32} for i in range(n)]


@contextlib.contextmanager
def running_monitor(ticks: int = 8, interval: float = 0.02, **options: object) -> Iterator[memwarden.Monitor]:
    """A started monitor that has sampled at least ``ticks`` times; stopped afterwards."""
    pauses = GcPauseTimer()
    pauses.install()
    probes = [
        ReplayProbe("process", process_readings()),
        ObjectsProbe(pause_timer=pauses),
        PymallocProbe(),
        LibcProbe(),
        ReplayProbe("gpu", [GPU]),
    ]
    mon = memwarden.Monitor(
        interval=interval, probes=probes, investigate=False, trim_at_stop=False, **options
    )  # type: ignore[arg-type]
    mon.start()
    try:
        wait_ticks(mon, ticks)
        yield mon
    finally:
        mon.stop()
        pauses.uninstall()


def wait_ticks(mon: memwarden.Monitor, ticks: int, timeout: float = 20.0) -> None:
    """Wait until ``mon`` has sampled ``ticks`` times."""
    deadline = time.monotonic() + timeout
    while mon.sampler is None or mon.sampler.ticks < ticks:
        if time.monotonic() > deadline:
            raise AssertionError(f"the monitor did not tick {ticks} times in {timeout} s")
        time.sleep(0.01)


@contextlib.contextmanager
def serve_asgi(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """``app`` served by a real uvicorn server on ``host`` in a thread; yields its base URL."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
