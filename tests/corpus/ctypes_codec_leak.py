"""Image service whose native codec (libc ``malloc`` via ctypes) never frees its output buffers.

``decode`` asks the "codec" for a pixel buffer of 32 to 256 KB (the image's size), fills it with
``memset`` and copies the 64-byte header out; the buffer's address is an int dropped on return,
never passed to ``free``. Buffers above glibc's mmap threshold come from ``mmap``, the others from
the heap: either way RSS grows by about 1.5 MB/s while Python's own allocations stay flat.

memwarden-expect: native_leak
"""

from __future__ import annotations

import ctypes
import os
import random
import time

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
IMAGES_PER_SECOND = 12
FREE_BUFFERS = False

LIBC = ctypes.CDLL(None)
LIBC.malloc.restype = ctypes.c_void_p
LIBC.malloc.argtypes = [ctypes.c_size_t]
LIBC.free.restype = None
LIBC.free.argtypes = [ctypes.c_void_p]
LIBC.memset.restype = ctypes.c_void_p
LIBC.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def decode(size: int, fill: int) -> bytes:
    address = LIBC.malloc(size)
    if not address:
        raise MemoryError("malloc failed")
    LIBC.memset(address, fill, size)
    header = ctypes.string_at(address, 64)
    if FREE_BUFFERS:
        LIBC.free(address)
    return header


def main() -> None:
    rng = random.Random(14)
    period = 1.0 / IMAGES_PER_SECOND
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    decoded = native = 0
    while time.monotonic() < deadline:
        size = rng.randrange(32, 257) * 1024
        decode(size, decoded % 251 + 1)
        decoded += 1
        native += size
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    state = "freed" if FREE_BUFFERS else "leaked"
    print(f"{os.path.basename(__file__)[:-3]}: {decoded} images, {native / 1e6:.1f} MB of buffers {state}")


if __name__ == "__main__":
    main()
