"""How memwarden writes numbers for people: bytes, rates, durations."""

from __future__ import annotations

import os

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float | None, *, signed: bool = False) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` -> ``"n/a"``. ``signed`` adds a ``+`` to growth."""
    if n is None:
        return "n/a"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    value = abs(float(n))
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{value:.0f} B"
            return f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_rate(bytes_per_s: float | None) -> str:
    """A growth rate: ``"+1.2 MiB/s"``."""
    if bytes_per_s is None:
        return "n/a"
    return f"{format_bytes(bytes_per_s, signed=True)}/s"


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1 min 15 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def short_path(path: str, cwd: str | None = None) -> str:
    """A source path as a person reads it: relative to the working directory when under it, from the
    package down when installed (``site-packages/pandas/core/frame.py`` -> ``pandas/core/frame.py``)."""
    if path.startswith("<"):
        return path
    cwd = cwd if cwd is not None else os.getcwd()
    base = os.path.join(cwd, "")
    if path.startswith(base):
        return path[len(base) :]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    return path
