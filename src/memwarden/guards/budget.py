"""A memory budget for one worker: how much, measured how, and when to act.

A :class:`Budget` is either absolute bytes or a fraction of the container's limit (read from
cgroup v2 or v1, walking up the hierarchy to the smallest limit). It is measured on one of:

| measure  | what it reads                                   | cost per check                       |
|----------|-------------------------------------------------|--------------------------------------|
| `rss`    | ``/proc/self/statm`` resident pages             | one small read (microseconds)        |
| `pss`    | ``/proc/self/smaps_rollup`` proportional size   | a page walk (~9 ms per GiB of RSS)   |
| `uss`    | ``smaps_rollup`` private pages                  | the same page walk                   |
| `cgroup` | the container's own usage (``memory.current``)  | one small read                       |

Peak RSS (``ru_maxrss``) is never a measure: a forked child inherits its parent's peak and would
start "over budget" (Celery's ``worker_max_memory_per_child`` does this).

``soft`` (a share of the budget, 0.85 by default) starts the light steps of the ladder (collect,
trim, shrink caches); the budget itself is the hard threshold, where the worker is recycled.
``hysteresis`` is how far below the soft threshold the value must fall before a new crossing
counts again, and ``min_lifetime_s`` is how long a worker lives before it may be recycled, so a
spike cannot start a recycle storm. Every bad value is a one-line :class:`~memwarden.UsageError`
at start-up (:meth:`Budget.resolve`), never a surprise at the first recycle.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..exceptions import UsageError
from ..probes.process import CgroupMemory, read_cgroup_memory

Measure = Literal["rss", "pss", "uss", "cgroup"]
MEASURES: tuple[Measure, ...] = ("rss", "pss", "uss", "cgroup")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """``"512MiB"``, ``"1.5G"``, ``"300000000"`` -> bytes (``UsageError`` for anything else)."""
    match = _SIZE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise UsageError(f"not a size: {text!r} (write bytes, or a number with KiB/MiB/GiB/KB/MB/GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _mib(n: float) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"


@dataclass(frozen=True)
class ResolvedBudget:
    """A budget turned into byte thresholds for this process (see :meth:`Budget.resolve`)."""

    measure: Measure
    hard_bytes: int
    soft_bytes: int
    rearm_bytes: int
    min_lifetime_s: float
    container_limit_bytes: int | None
    source: str

    def to_json(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "hard_bytes": self.hard_bytes,
            "soft_bytes": self.soft_bytes,
            "rearm_bytes": self.rearm_bytes,
            "min_lifetime_s": self.min_lifetime_s,
            "container_limit_bytes": self.container_limit_bytes,
            "source": self.source,
        }


@dataclass(frozen=True)
class Budget:
    """How much memory one worker may use, on which measure, and how to act around it.

    Give ``limit_bytes`` (absolute) or ``fraction`` (of the container's limit, in (0, 1]; 0.7 is a
    good start: it leaves the other workers, the master and the page cache room below
    ``memory.max``), not both. See the module docs for ``measure``, ``soft``, ``hysteresis`` and
    ``min_lifetime_s``.
    """

    limit_bytes: int | None = None
    fraction: float | None = None
    measure: str = "rss"
    soft: float = 0.85
    hysteresis: float = 0.05
    min_lifetime_s: float = 30.0

    def __post_init__(self) -> None:
        if (self.limit_bytes is None) == (self.fraction is None):
            raise UsageError("a budget needs exactly one of limit_bytes or fraction")
        if self.limit_bytes is not None and self.limit_bytes <= 0:
            raise UsageError(f"budget limit_bytes must be positive, not {self.limit_bytes}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise UsageError(f"budget fraction must be in (0, 1], not {self.fraction}")
        if self.measure not in MEASURES:
            raise UsageError(f"unknown budget measure {self.measure!r} (one of {', '.join(MEASURES)})")
        if not 0 < self.soft <= 1:
            raise UsageError(f"budget soft must be in (0, 1] (a share of the budget), not {self.soft}")
        if not 0 <= self.hysteresis < 1:
            raise UsageError(f"budget hysteresis must be in [0, 1), not {self.hysteresis}")
        if self.min_lifetime_s < 0:
            raise UsageError(f"budget min_lifetime_s must not be negative, not {self.min_lifetime_s}")

    def resolve(
        self,
        *,
        cgroup: CgroupMemory | None = None,
        proc_root: Path = Path("/proc"),
        sys_root: Path = Path("/"),
    ) -> ResolvedBudget:
        """Byte thresholds for this process, checked against the container's limit.

        ``cgroup`` is the container reading to use (read from ``proc_root``/``sys_root`` when
        omitted: a recorded tree in tests). Raises ``UsageError`` for a fraction with no container
        limit, or an absolute budget at or above the container's limit.
        """
        cg = cgroup if cgroup is not None else read_cgroup_memory(proc_root=proc_root, sys_root=sys_root)
        limit = cg.limit_bytes
        if self.fraction is not None:
            if limit is None:
                raise UsageError(
                    f"budget fraction {self.fraction} needs a container memory limit, and none was found"
                    " (no memory.max / memory.limit_in_bytes set): give the budget in bytes"
                )
            hard = int(limit * self.fraction)
            source = f"{self.fraction:g} of the container limit {_mib(limit)} ({cg.limit_path})"
        else:
            assert self.limit_bytes is not None
            hard = self.limit_bytes
            if limit is not None and hard >= limit:
                raise UsageError(
                    f"budget {_mib(hard)} is not below the container limit {_mib(limit)} ({cg.limit_path}):"
                    " the OOM killer would act first; set it below, e.g. 0.7 of the limit"
                )
            source = f"{_mib(hard)} given"
        soft = int(hard * self.soft)
        return ResolvedBudget(
            measure=self.measure,  # type: ignore[arg-type]  # checked in __post_init__
            hard_bytes=hard,
            soft_bytes=soft,
            rearm_bytes=int(soft * (1 - self.hysteresis)),
            min_lifetime_s=self.min_lifetime_s,
            container_limit_bytes=limit,
            source=source,
        )


def _statm_rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rollup(field: str) -> Callable[[], int]:
    def read() -> int:
        total = 0
        with open("/proc/self/smaps_rollup", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                if name.decode() in fields:
                    total += int(rest.split()[0]) * 1024
        return total

    fields = {"pss": ("Pss",), "uss": ("Private_Clean", "Private_Dirty")}[field]
    return read


def measure_reader(
    measure: str, *, proc_root: Path = Path("/proc"), sys_root: Path = Path("/")
) -> Callable[[], int]:
    """A function that reads ``measure`` for this process now, in bytes (located once, read cheaply).

    ``UsageError`` for an unknown measure, or ``cgroup`` where the process is in no readable cgroup.
    """
    if measure == "rss":
        return _statm_rss
    if measure in ("pss", "uss"):
        return _rollup(measure)
    if measure == "cgroup":
        cg = read_cgroup_memory(proc_root=proc_root, sys_root=sys_root)
        if cg.version is None or cg.path is None:
            raise UsageError("budget measure 'cgroup' needs a readable memory cgroup, and none was found")
        name = "memory.current" if cg.version == 2 else "memory.usage_in_bytes"
        path = Path(cg.path) / name

        def read_cgroup() -> int:
            return int(path.read_text().strip())

        return read_cgroup
    raise UsageError(f"unknown budget measure {measure!r} (one of {', '.join(MEASURES)})")


__all__ = ["MEASURES", "Budget", "Measure", "ResolvedBudget", "measure_reader", "parse_size"]
