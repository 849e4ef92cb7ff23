"""A five-second program whose native buffers (libc ``malloc`` via ctypes) are never freed.

``convert`` ``malloc``s a 256 KB buffer, fills it and drops its address: 100 a second, about
25 MB/s of native memory for five seconds (~130 MB), while Python's allocations stay flat. It
always runs a fixed 5 s (``MEMWARDEN_SCENARIO_SECONDS`` is ignored).

memwarden-expect: native_leak
"""

from __future__ import annotations

import ctypes
import time

SECONDS = 5.0
BUFFER_BYTES = 256 * 1024

LIBC = ctypes.CDLL(None)
LIBC.malloc.restype = ctypes.c_void_p
LIBC.malloc.argtypes = [ctypes.c_size_t]
LIBC.memset.restype = ctypes.c_void_p
LIBC.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def convert(i: int) -> int:
    address = LIBC.malloc(BUFFER_BYTES)
    if not address:
        raise MemoryError("malloc failed")
    LIBC.memset(address, i % 251 + 1, BUFFER_BYTES)
    return int(ctypes.string_at(address, 1)[0])


def main() -> None:
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    done = check = 0
    while time.monotonic() < deadline:
        check ^= convert(done)
        done += 1
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"short_native_leak: {done} buffers, {done * BUFFER_BYTES / 1e6:.0f} MB leaked ({check})")


if __name__ == "__main__":
    main()
