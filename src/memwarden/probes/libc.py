"""The ``libc`` layer: what glibc's ``malloc`` holds, and handing its free memory back.

Everything CPython does not serve from its own small-object allocator (objects over 512 bytes,
buffers, most C extensions) goes through ``malloc``. glibc keeps freed chunks for reuse instead
of returning them to the operating system, so RSS can stay high after a program has freed most of
what it allocated. :class:`LibcProbe` reads glibc's own account of that (``mallinfo2()``) and
:func:`malloc_trim` asks glibc to give the free pages back, measuring how much RSS dropped.

Both need glibc 2.33 or later (``mallinfo2``; ``malloc_trim`` is older). On musl, macOS or an old
glibc the probe says it is unavailable and why; it never crashes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from memwarden.exceptions import ProbeUnavailable, UsageError
from memwarden.probes._base import Availability, metric

if TYPE_CHECKING:
    import ctypes

__all__ = ["LibcProbe", "LibcReading", "TrimResult", "malloc_trim"]

_LAYER = "libc"


@functools.cache
def _mallinfo2_struct() -> Any:
    """glibc's ``struct mallinfo2`` (every field a ``size_t``) as a ctypes structure.

    Built on first use: ``ctypes`` is imported only when the C library is called, never when
    memwarden is imported.
    """
    import ctypes

    class _Mallinfo2(ctypes.Structure):
        _fields_ = [
            ("arena", ctypes.c_size_t),
            ("ordblks", ctypes.c_size_t),
            ("smblks", ctypes.c_size_t),
            ("hblks", ctypes.c_size_t),
            ("hblkhd", ctypes.c_size_t),
            ("usmblks", ctypes.c_size_t),
            ("fsmblks", ctypes.c_size_t),
            ("uordblks", ctypes.c_size_t),
            ("fordblks", ctypes.c_size_t),
            ("keepcost", ctypes.c_size_t),
        ]

    return _Mallinfo2


@dataclasses.dataclass(frozen=True)
class LibcReading:
    """glibc malloc's own account of its memory, summed over all its arenas (bytes and counts).

    - ``arena_bytes``: memory malloc got from the system with ``brk``/``mmap`` for its heaps
      (``arena``); in use plus free.
    - ``mmapped_bytes`` / ``mmapped_chunks``: large allocations served by their own ``mmap``
      (``hblkhd`` / ``hblks``); these go back to the system as soon as they are freed.
    - ``in_use_bytes``: bytes in chunks the program holds (``uordblks``).
    - ``free_bytes`` / ``free_chunks``: bytes and chunks freed but kept by malloc (``fordblks`` /
      ``ordblks``): the retention that RSS shows and Python does not.
    - ``fastbin_free_bytes``: the part of ``free_bytes`` in fastbins (``fsmblks``).
    - ``top_releasable_bytes``: free memory at the top of the main heap that ``malloc_trim`` could
      release by shrinking it (``keepcost``); ``malloc_trim`` can also release free pages in the
      middle of heaps, which this does not count.
    """

    arena_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Memory glibc malloc got from the system for its heaps, in use and free (arena)"
        )
    )
    mmapped_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Memory in large allocations malloc served with their own mmap (hblkhd)"
        )
    )
    mmapped_chunks: int = dataclasses.field(
        metadata=metric("", "gauge", "Large allocations malloc served with their own mmap (hblks)")
    )
    in_use_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes in malloc chunks the program holds (uordblks)")
    )
    free_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Bytes freed but kept by malloc for reuse (fordblks)")
    )
    free_chunks: int = dataclasses.field(
        metadata=metric("", "gauge", "Free chunks malloc keeps for reuse (ordblks)")
    )
    fastbin_free_bytes: int = dataclasses.field(
        metadata=metric("bytes", "gauge", "Part of malloc's free bytes in fastbins (fsmblks)")
    )
    top_releasable_bytes: int = dataclasses.field(
        metadata=metric(
            "bytes", "gauge", "Free memory at the top of the main heap malloc_trim could release (keepcost)"
        )
    )


@dataclasses.dataclass(frozen=True)
class TrimResult:
    """What one ``malloc_trim`` call did.

    ``released`` is glibc's own answer (true when it gave any memory back); ``returned_bytes`` is
    how much the process's RSS fell across the call (``max(0, before - after)``; other threads
    allocating meanwhile can hide part of it). ``duration_s`` is how long the call took, during
    which it held malloc's locks.
    """

    released: bool
    rss_before_bytes: int
    rss_after_bytes: int
    returned_bytes: int
    duration_s: float


def _libc_description() -> str:
    """Which C library this interpreter runs on, in words, for "unavailable" reasons."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        version = None
    if version:
        return version
    import platform

    try:
        name, release = platform.libc_ver()
    except OSError:
        name, release = "", ""
    if name:
        return f"{name} {release}".strip()
    return f"the C library of {sys.platform} (not glibc)"


@functools.cache
def _default_libc() -> Any:
    """This process's C library, or ``None`` where none can be opened (opened once)."""
    if os.name != "posix":
        return None
    import ctypes

    try:
        # The symbols the interpreter already links against: glibc's on a glibc system.
        return ctypes.CDLL(None)
    except OSError:
        pass
    from ctypes.util import find_library

    name = find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _is_cdll(libc: object) -> bool:
    """Whether ``libc`` is a real ctypes library (a test's stand-in is not; it needs no signatures)."""
    import ctypes

    return isinstance(libc, ctypes.CDLL)


def _function(libc: Any, name: str) -> Any:
    """``libc.<name>`` or ``None`` when the library has no such symbol."""
    if libc is None:
        return None
    try:
        return getattr(libc, name)
    except (AttributeError, OSError):
        return None


class LibcProbe:
    """Reads the ``libc`` layer: glibc ``mallinfo2()``.

    ``libc`` is the C library to ask (this process's own by default); tests pass any object with
    a ``mallinfo2`` callable that returns an object with ``mallinfo2``'s fields.
    """

    layer: ClassVar[str] = _LAYER
    cost: ClassVar[Literal["cheap", "costly"]] = "cheap"

    def __init__(self, libc: ctypes.CDLL | None = None) -> None:
        self._libc: Any = libc
        self._explicit = libc is not None
        self._mallinfo2: Any = None
        self._reason: str | None = None
        self._resolved = False

    def _resolve(self) -> Any:
        if self._resolved:
            return self._mallinfo2
        libc = self._libc if self._explicit else _default_libc()
        fn = _function(libc, "mallinfo2")
        if fn is None:
            self._reason = (
                f"no mallinfo2() in {_libc_description()}: it needs glibc 2.33 or later"
                if libc is not None
                else f"no C library can be loaded on {sys.platform}"
            )
        elif _is_cdll(libc):
            fn.restype = _mallinfo2_struct()
            fn.argtypes = []
        self._mallinfo2 = fn
        self._resolved = True
        return fn

    def available(self) -> Availability:
        """Whether ``mallinfo2()`` exists in this process's C library."""
        if self._resolve() is None:
            return Availability.no(self._reason or "mallinfo2() is not available")
        return Availability.yes()

    def read(self) -> LibcReading:
        """glibc's malloc figures now; raises :class:`ProbeUnavailable` without ``mallinfo2()``."""
        fn = self._resolve()
        if fn is None:
            raise ProbeUnavailable(self.layer, self._reason or "mallinfo2() is not available")
        try:
            info = fn()
            return LibcReading(
                arena_bytes=int(info.arena),
                mmapped_bytes=int(info.hblkhd),
                mmapped_chunks=int(info.hblks),
                in_use_bytes=int(info.uordblks),
                free_bytes=int(info.fordblks),
                free_chunks=int(info.ordblks),
                fastbin_free_bytes=int(info.fsmblks),
                top_releasable_bytes=int(info.keepcost),
            )
        except (AttributeError, TypeError, ValueError, OSError) as exc:
            raise ProbeUnavailable(self.layer, f"mallinfo2() gave an unusable answer: {exc}") from exc


def _statm_rss() -> int:
    """This process's resident set size from ``/proc/self/statm``: the cheapest RSS there is."""
    with open("/proc/self/statm", "rb") as f:
        fields = f.read().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss(reader: Callable[[], int]) -> int:
    try:
        return int(reader())
    except (OSError, ValueError, IndexError, TypeError) as exc:
        raise ProbeUnavailable(_LAYER, f"cannot read the process's RSS around malloc_trim: {exc}") from exc


def malloc_trim(
    pad: int = 0,
    *,
    rss_reader: Callable[[], int] | None = None,
    libc: ctypes.CDLL | None = None,
) -> TrimResult:
    """Ask glibc to give its free memory back to the operating system, and measure what it gave.

    ``pad`` is the free space to keep at the top of the heap (glibc's argument). Since glibc 2.8
    the call also returns whole free pages from the middle of every arena, which is where memory
    freed by a long-running program usually sits. It takes malloc's locks, so other threads that
    allocate wait while it runs. ``rss_reader`` returns the RSS in bytes (``/proc/self/statm`` by
    default); ``libc`` is the C library to call (this process's own by default).

    Raises :class:`ProbeUnavailable` where the C library has no ``malloc_trim`` (musl, macOS) or
    the RSS cannot be read (then nothing is trimmed).
    """
    if pad < 0:
        raise UsageError(f"pad must be 0 or more bytes, not {pad}")
    lib: Any = libc if libc is not None else _default_libc()
    fn = _function(lib, "malloc_trim")
    if fn is None:
        raise ProbeUnavailable(_LAYER, f"no malloc_trim() in {_libc_description()}")
    if _is_cdll(lib):
        import ctypes

        fn.argtypes = [ctypes.c_size_t]
        fn.restype = ctypes.c_int
    reader = rss_reader if rss_reader is not None else _statm_rss
    before = _rss(reader)
    start = time.perf_counter()
    released = bool(fn(pad))
    duration = time.perf_counter() - start
    after = _rss(reader)
    return TrimResult(
        released=released,
        rss_before_bytes=before,
        rss_after_bytes=after,
        returned_bytes=max(0, before - after),
        duration_s=duration,
    )
