"""Guard configuration without code: environment variables, or a small JSON file.

| variable                        | meaning                                               | default   |
|---------------------------------|-------------------------------------------------------|-----------|
| `MEMWARDEN_BUDGET`              | `512MiB` (bytes), or `0.7` / `70%` of the container   | `0.7`     |
| `MEMWARDEN_BUDGET_MEASURE`      | `rss`, `pss`, `uss` or `cgroup`                       | `rss`     |
| `MEMWARDEN_BUDGET_SOFT`         | soft threshold, a share of the budget                 | `0.85`    |
| `MEMWARDEN_BUDGET_HYSTERESIS`   | how far below soft before a new crossing counts       | `0.05`    |
| `MEMWARDEN_MIN_LIFETIME_S`      | a worker younger than this is never recycled          | `30`      |
| `MEMWARDEN_DRAIN_S`             | the drain's deadline (seconds)                        | `30`      |
| `MEMWARDEN_LADDER`              | steps, in order, comma-separated                      | all six   |
| `MEMWARDEN_GUARD_DIR`           | lock, evidence and exit files                         | per server in the temp dir |
| `MEMWARDEN_GC_FREEZE`           | `1`: ``gc.freeze()`` in the master before each fork   | `0`       |
| `MEMWARDEN_MONITOR`             | `1`: a memwarden monitor in each worker (the verdict) | `0`       |
| `MEMWARDEN_GUARD_CONFIG`        | a JSON file with the same keys, lower case, no prefix | none      |

Environment variables win over the file. Every bad value is a one-line
:class:`~memwarden.UsageError` naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import UsageError
from .budget import Budget, parse_size
from .ladder import STEP_NAMES

_KEYS = (
    "budget",
    "budget_measure",
    "budget_soft",
    "budget_hysteresis",
    "min_lifetime_s",
    "drain_s",
    "ladder",
    "guard_dir",
    "gc_freeze",
    "monitor",
)


def parse_budget(text: str, **options: Any) -> Budget:
    """``"512MiB"`` -> absolute; ``"0.7"`` or ``"70%"`` -> a fraction of the container limit."""
    raw = text.strip()
    try:
        number = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        return Budget(limit_bytes=parse_size(raw), **options)
    if raw.endswith("%") or "." in raw or number <= 1:
        return Budget(fraction=number, **options)
    return Budget(limit_bytes=int(number), **options)


@dataclass(frozen=True)
class GuardConfig:
    """Everything a server integration needs, read once at start-up."""

    budget: Budget
    steps: tuple[str, ...] = STEP_NAMES
    drain_s: float = 30.0
    guard_dir: str | None = None
    gc_freeze: bool = False
    monitor: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GuardConfig:
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        path = env.get("MEMWARDEN_GUARD_CONFIG")
        if path:
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"MEMWARDEN_GUARD_CONFIG={path}: cannot read it as JSON ({exc})") from exc
            if not isinstance(data, dict):
                raise UsageError(f"MEMWARDEN_GUARD_CONFIG={path}: must hold a JSON object")
            for key, value in data.items():
                if key not in _KEYS:
                    raise UsageError(
                        f"MEMWARDEN_GUARD_CONFIG={path}: unknown key {key!r} (keys: {', '.join(_KEYS)})"
                    )
                values[key] = str(value)
        for key in _KEYS:
            name = f"MEMWARDEN_{key.upper()}"
            if name in env:
                values[key] = env[name]
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> GuardConfig:
        def num(key: str, default: float) -> float:
            if key not in values:
                return default
            try:
                return float(values[key])
            except ValueError:
                raise UsageError(f"MEMWARDEN_{key.upper()}={values[key]!r}: not a number") from None

        def flag(key: str) -> bool:
            v = values.get(key, "0").strip().lower()
            if v not in ("0", "1", "true", "false", "yes", "no", ""):
                raise UsageError(f"MEMWARDEN_{key.upper()}={values[key]!r}: write 1 or 0")
            return v in ("1", "true", "yes")

        try:
            budget = parse_budget(
                values.get("budget", "0.7"),
                measure=values.get("budget_measure", "rss").strip(),
                soft=num("budget_soft", 0.85),
                hysteresis=num("budget_hysteresis", 0.05),
                min_lifetime_s=num("min_lifetime_s", 30.0),
            )
        except UsageError as exc:
            raise UsageError(f"memwarden guard: {exc}") from None
        steps = tuple(s.strip() for s in values.get("ladder", ",".join(STEP_NAMES)).split(",") if s.strip())
        unknown = [s for s in steps if s not in STEP_NAMES]
        if unknown:
            raise UsageError(
                f"MEMWARDEN_LADDER: unknown step {unknown[0]!r} (steps: {', '.join(STEP_NAMES)})"
            )
        drain = num("drain_s", 30.0)
        if drain <= 0:
            raise UsageError(f"MEMWARDEN_DRAIN_S must be positive, not {drain}")
        return cls(budget, steps, drain, values.get("guard_dir") or None, flag("gc_freeze"), flag("monitor"))


__all__ = ["GuardConfig", "parse_budget"]
