"""Memory baselines: a workload's memory profile in a JSON file, and whether a new run regressed.

``memwarden baseline record`` runs a workload (a script, ``-m module``, or ``-m pytest ...`` for a
test selection) a few times under ``memwarden run`` and keeps, per layer, three figures of each
run: its **peak**, its **steady** state (the median of the last third of the run) and its
**growth per second** (the robust trend slope, counted only when the trend analysis calls the
series growing: a flat run's slope is exactly 0, not noise). The file stores each figure's
median over the runs and its *noise* (the largest distance of a run from that median), and is
meant to be committed.

``memwarden baseline compare`` runs the workload again and compares each figure with the stored
one. A figure regresses when it exceeds the stored value by more than its allowance: the
largest of ``tolerance`` x the stored value, ``noise_factor`` x the measured noise, and a floor
per unit (so that a figure near zero does not fail on a few bytes).

This module computes; :mod:`memwarden.commands.baseline` runs the workloads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from memwarden import metrics
from memwarden.exceptions import MemwardenError

SCHEMA = "memwarden.baseline/1"

LAYERS: dict[str, tuple[tuple[str, ...], str]] = {
    # layer: (the metrics summed into its series, unit)
    "process": ((metrics.PROCESS_RSS_BYTES,), "B"),
    "python": ((metrics.OBJECTS_ALLOCATED_BLOCKS,), "blocks"),
    "native": ((metrics.LIBC_IN_USE_BYTES, metrics.LIBC_MMAPPED_BYTES), "B"),
}
KINDS = ("peak", "steady", "growth_per_s")

DURATION = "run.duration_s"
"""How long the workload was sampled (stored with the figures; it scales the growth allowances)."""
DEFAULT_TOLERANCE = 0.10
DEFAULT_NOISE_FACTOR = 3.0
FLOORS = {"B": 2 * 1024 * 1024, "blocks": 5000.0}
"""The smallest allowance per unit, for a level (peak, steady)."""
RATE_FLOORS = {"B": 256 * 1024, "blocks": 1000.0}
"""The smallest allowance per unit, for a growth per second."""


class BaselineError(MemwardenError, ValueError):
    """A baseline file cannot be read, is not a memwarden baseline, or its workload cannot be run."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of a baseline: the median over the recorded runs, their noise, and each run's value."""

    value: float
    noise: float
    unit: str
    runs: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "noise": self.noise, "unit": self.unit, "runs": list(self.runs)}


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A workload and its memory figures (``"process.peak"``, ``"native.growth_per_s"``, ...)."""

    workload: tuple[str, ...]
    interval: float
    figures: dict[str, Figure]
    tolerance: float = DEFAULT_TOLERANCE
    noise_factor: float = DEFAULT_NOISE_FACTOR
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "workload": list(self.workload),
            "interval": self.interval,
            "tolerance": self.tolerance,
            "noise_factor": self.noise_factor,
            "meta": self.meta,
            "figures": {name: f.to_json() for name, f in sorted(self.figures.items())},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline as indented JSON (stable key order, so that diffs in review are small)."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"
        tmp = Path(f"{os.fspath(path)}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


@dataclasses.dataclass(frozen=True)
class FigureCheck:
    """One figure compared: the stored value, the new one, the allowance, and whether it regressed."""

    name: str
    unit: str
    baseline: float
    current: float
    allowed: float
    regressed: bool

    @property
    def change(self) -> float:
        return self.current - self.baseline


def figures_of_run(series: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, float]:
    """The figures of one run from its series per layer (``layer -> (seconds, values)``)."""
    from memwarden.diagnosis._trend import analyse

    out: dict[str, float] = {}
    spans = [float(ts[-1] - ts[0]) for ts, _ in series.values() if len(ts) >= 2]
    if spans:
        out[DURATION] = max(spans)  # not compared: it scales the growth allowances (see compare)
    for layer, (ts, ys) in series.items():
        if not ys:
            continue
        tail = list(ys[len(ys) - max(1, len(ys) // 3) :])
        out[f"{layer}.peak"] = float(max(ys))
        out[f"{layer}.steady"] = float(statistics.median(tail))
        growth = 0.0
        if len(ys) >= 5:
            trend = analyse(list(ts), list(ys), unit=LAYERS.get(layer, ((), "B"))[1])
            if trend.status == "growing":
                growth = float(trend.rate_per_s)
        out[f"{layer}.growth_per_s"] = growth
    return out


def combine(runs: Sequence[Mapping[str, float]]) -> dict[str, Figure]:
    """Each figure's median over the runs and its noise (the largest distance of a run from the median)."""
    names = sorted({name for run in runs for name in run})
    figures: dict[str, Figure] = {}
    for name in names:
        values = [float(run[name]) for run in runs if name in run]
        mid = statistics.median(values)
        noise = max(abs(v - mid) for v in values)
        figures[name] = Figure(mid, noise, _unit(name), tuple(values))
    return figures


def compare(
    baseline: Baseline,
    current: Mapping[str, Figure],
    *,
    tolerance: float | None = None,
    noise_factor: float | None = None,
) -> list[FigureCheck]:
    """Each stored figure against the current one (see the module docstring for the allowance)."""
    tol = baseline.tolerance if tolerance is None else tolerance
    k = baseline.noise_factor if noise_factor is None else noise_factor
    checks: list[FigureCheck] = []
    durations = [f.value for f in (baseline.figures.get(DURATION), current.get(DURATION)) if f is not None]
    shortest = min(durations) if durations and min(durations) > 0 else None
    for name, base in sorted(baseline.figures.items()):
        now = current.get(name)
        if now is None or name == DURATION:
            continue
        rate = name.endswith("growth_per_s")
        floor = (RATE_FLOORS if rate else FLOORS).get(base.unit, 0.0)
        if rate and shortest is not None:
            # over a short run a growth per second is mostly start-up: allow at least a level's
            # floor spread over the run (2 MiB over a 2 s pytest run is 1 MiB/s)
            floor = max(floor, FLOORS.get(base.unit, 0.0) / shortest)
        noise = max(base.noise, now.noise)
        allowed = max(tol * abs(base.value), k * noise, floor)
        checks.append(
            FigureCheck(name, base.unit, base.value, now.value, allowed, now.value - base.value > allowed)
        )
    return checks


def load(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline file; a missing, corrupt or foreign file raises :class:`BaselineError` (one line)."""
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(
            f"{where}: no such baseline file (record one with `memwarden baseline record`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{where}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise BaselineError(
            f"{where}: not a memwarden baseline (a JSON object with schema {SCHEMA!r} expected)"
        )
    schema = data.get("schema")
    if schema != SCHEMA:
        raise BaselineError(f"{where}: not a memwarden baseline (schema {schema!r}, expected {SCHEMA!r})")
    try:
        workload = data["workload"]
        if not (isinstance(workload, list) and workload and all(isinstance(a, str) for a in workload)):
            raise ValueError("workload must be a non-empty list of strings")
        figures: dict[str, Figure] = {}
        raw_figures = data["figures"]
        if not isinstance(raw_figures, dict) or not raw_figures:
            raise ValueError("figures must be a non-empty object")
        for name, f in raw_figures.items():
            if not isinstance(f, dict):
                raise ValueError(f"figure {name!r} must be an object")
            value, noise = _number(f["value"], name), _number(f["noise"], name)
            runs = tuple(_number(v, name) for v in f.get("runs", [value]))
            figures[str(name)] = Figure(value, noise, str(f.get("unit", _unit(name))), runs)
        return Baseline(
            workload=tuple(workload),
            interval=_number(data.get("interval", 0.2), "interval"),
            figures=figures,
            tolerance=_number(data.get("tolerance", DEFAULT_TOLERANCE), "tolerance"),
            noise_factor=_number(data.get("noise_factor", DEFAULT_NOISE_FACTOR), "noise_factor"),
            meta=dict(data.get("meta") or {}),
        )
    except KeyError as exc:
        raise BaselineError(f"{where}: corrupt baseline (missing {exc.args[0]!r})") from None
    except (TypeError, ValueError) as exc:
        raise BaselineError(f"{where}: corrupt baseline ({exc})") from None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return float(value)


def _unit(name: str) -> str:
    if name == DURATION:
        return "s"
    return LAYERS.get(name.split(".", 1)[0], ((), "B"))[1]


__all__ = [
    "DEFAULT_NOISE_FACTOR",
    "DEFAULT_TOLERANCE",
    "KINDS",
    "LAYERS",
    "SCHEMA",
    "Baseline",
    "BaselineError",
    "Figure",
    "FigureCheck",
    "combine",
    "compare",
    "figures_of_run",
    "load",
]
