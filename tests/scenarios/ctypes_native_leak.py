"""Thumbnail service whose native decoder leaks its output buffer on every request.

The image library (modelled here with ``ctypes`` calls into libc) ``malloc``s a 64 KB pixel
buffer per request and fills it; the wrapper copies a few bytes out and drops the buffer's
address without calling ``free``. Python sees only a small int that is thrown away, so
tracemalloc, the gc and ``sys.getallocatedblocks()`` stay flat, while the process RSS and glibc's
in-use bytes (``mallinfo2().uordblks``) grow by roughly 0.75 MB/s. This is what a leak inside a C
extension looks like from Python. The fix is in the native code (free the buffer), or a worker
recycled before it reaches its budget.

memwarden-expect: native_leak
"""

from __future__ import annotations

import ctypes
import os
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
REQUESTS_PER_SECOND = 12
BUFFER_BYTES = 64 * 1024


def open_libc() -> ctypes.CDLL:
    """The C library already loaded into this process, with malloc/memset typed."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.memset.restype = ctypes.c_void_p
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return libc


def make_thumbnail(libc: ctypes.CDLL, request_id: int) -> bytes:
    """Decode into a native buffer, return a tiny header; the buffer is never freed."""
    address = libc.malloc(BUFFER_BYTES)
    if not address:
        raise MemoryError("malloc failed")
    libc.memset(address, request_id % 251 + 1, BUFFER_BYTES)
    return ctypes.string_at(address, 16)


def main() -> None:
    libc = open_libc()
    period = 1.0 / REQUESTS_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    served = 0
    checksum = 0
    while time.monotonic() < deadline:
        checksum ^= make_thumbnail(libc, served)[0]
        served += 1
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    leaked_mb = served * BUFFER_BYTES / 1e6
    print(f"ctypes_native_leak: served {served} requests, leaked {leaked_mb:.1f} MB natively ({checksum})")


if __name__ == "__main__":
    main()
