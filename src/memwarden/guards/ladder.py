"""The escalation ladder: the cheapest thing that might give memory back first, recycling last.

| step        | what it does                                                        |
|-------------|---------------------------------------------------------------------|
| `alert`     | logs a warning and records an event; frees nothing                  |
| `collect`   | ``gc.collect()``                                                    |
| `trim`      | glibc ``malloc_trim(0)``                                            |
| `caches`    | shrinks the registered caches (:class:`CacheShrinker`), trims again  |
| `gpu`       | PyTorch's GPU cache release (:class:`~memwarden.EmptyCachePolicy`)  |
| `recycle`   | the graceful recycle (given by the integration: gunicorn, ASGI)     |

:meth:`Ladder.climb` runs the steps in order, measures after each, and stops at the first one
after which the value is below the target. Each step taken becomes an
:class:`~memwarden.ActionResult` (what it freed, what it cost) handed to ``record``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..exceptions import ProbeUnavailable, UsageError
from .actions import ActionResult, collect, trim_malloc
from .gpu import EmptyCachePolicy

log = logging.getLogger("memwarden.guards")

STEP_NAMES = ("alert", "collect", "trim", "caches", "gpu", "recycle")


@runtime_checkable
class Shrinkable(Protocol):
    """A bounded store that can give back a share of what it holds (memwarden.llm stores do)."""

    def shrink(self, fraction: float) -> Any: ...


def _entries(obj: Any) -> int | None:
    info = getattr(obj, "cache_info", None)
    if callable(info):
        try:
            return int(info().currsize)
        except Exception:
            return None
    try:
        return len(obj)
    except TypeError:
        return None


class CacheShrinker:
    """Caches the ``caches`` step may shrink, registered by the application.

    - a ``functools.lru_cache`` wrapper (anything with ``cache_clear``): cleared;
    - a ``cachetools`` cache (a mapping with ``popitem``): its oldest/least-used share evicted;
    - anything with ``shrink(fraction)`` (memwarden's bounded stores): asked to shrink;
    - a callable: called with the fraction (your own hook).

    Caches are held weakly where the object allows, so registering never keeps one alive;
    callbacks are held.
    """

    def __init__(self, fraction: float = 0.5) -> None:
        if not 0 < fraction <= 1:
            raise UsageError(f"cache shrink fraction must be in (0, 1], not {fraction}")
        self.fraction = fraction
        self._items: list[tuple[str, Callable[[], Any]]] = []

    def register(self, obj: Any, name: str | None = None) -> Any:
        """Add a cache (or a callback taking the fraction); returns ``obj`` for decorator use."""
        if not (
            callable(getattr(obj, "cache_clear", None))
            or callable(getattr(obj, "shrink", None))
            or callable(getattr(obj, "popitem", None))
            or callable(obj)
        ):
            raise UsageError(f"cannot shrink a {type(obj).__name__}: give a cache or a callable")
        label = name or getattr(obj, "__qualname__", None) or type(obj).__name__
        is_cache = any(callable(getattr(obj, a, None)) for a in ("cache_clear", "shrink", "popitem"))
        try:
            if not is_cache:
                raise TypeError  # a callback is held: a bound method's weak reference dies at once
            ref: Callable[[], Any] = weakref.ref(obj)
        except TypeError:
            ref = lambda: obj  # noqa: E731  # plain dicts cannot be weakly referenced
        self._items.append((str(label), ref))
        return obj

    def __len__(self) -> int:
        return len(self._items)

    def shrink(self, fraction: float | None = None) -> list[dict[str, Any]]:
        """Shrink every live registered cache by ``fraction``; what each held before and after."""
        share = self.fraction if fraction is None else fraction
        done: list[dict[str, Any]] = []
        alive: list[tuple[str, Callable[[], Any]]] = []
        for name, ref in self._items:
            obj = ref()
            if obj is None:
                continue
            alive.append((name, ref))
            before = _entries(obj)
            try:
                if callable(getattr(obj, "cache_clear", None)):
                    obj.cache_clear()
                    how = "cache_clear"
                elif callable(getattr(obj, "shrink", None)):
                    obj.shrink(share)
                    how = "shrink"
                elif callable(getattr(obj, "popitem", None)) and before is not None:
                    for _ in range(int(before * share + 0.999)):
                        try:
                            obj.popitem()
                        except KeyError:
                            break
                    how = "popitem"
                else:
                    obj(share)
                    how = "callback"
            except Exception as exc:  # a user's cache must not stop the ladder
                done.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            done.append({"name": name, "how": how, "before": before, "after": _entries(obj)})
        self._items = alive
        return done


@dataclass
class StepContext:
    """What a step is told: why it runs, the value and the target (bytes), the measure."""

    reason: str
    value_bytes: int
    target_bytes: int
    measure: str


Step = Callable[[StepContext], ActionResult]


def _timed(
    name: str, ctx: StepContext, read: Callable[[], int], act: Callable[[], dict[str, Any]]
) -> ActionResult:
    before = read()
    started = time.perf_counter()
    details = act()
    duration = time.perf_counter() - started
    after = read()
    return ActionResult(name, ctx.reason, max(0, before - after), duration, before, after, details)


@dataclass
class Ladder:
    """The steps to climb, in order, and how to measure between them.

    ``steps`` maps names (see :data:`STEP_NAMES`) to step functions; ``order`` the names to take
    (a step can be left out); ``read`` the measure now in bytes; ``record`` receives each
    :class:`ActionResult`.
    """

    read: Callable[[], int]
    order: Sequence[str] = STEP_NAMES
    caches: CacheShrinker = field(default_factory=CacheShrinker)
    gpu_policy: EmptyCachePolicy | None = None
    recycle: Callable[[StepContext], dict[str, Any]] | None = None
    record: Callable[[ActionResult], None] | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.order if s not in STEP_NAMES]
        if unknown:
            raise UsageError(f"unknown ladder step {unknown[0]!r} (steps: {', '.join(STEP_NAMES)})")

    def _step(self, name: str, ctx: StepContext) -> ActionResult | None:
        if name == "alert":
            log.warning(
                "memwarden: %s at %d MiB, target below %d MiB (%s)",
                ctx.measure,
                ctx.value_bytes >> 20,
                ctx.target_bytes >> 20,
                ctx.reason,
            )
            return ActionResult(
                "alert",
                ctx.reason,
                0,
                0.0,
                ctx.value_bytes,
                ctx.value_bytes,
                {"measure": ctx.measure, "target_bytes": ctx.target_bytes},
            )
        if name == "collect":
            return collect(ctx.reason)
        if name == "trim":
            try:
                return trim_malloc(ctx.reason)
            except ProbeUnavailable as exc:
                return ActionResult("malloc_trim", ctx.reason, 0, 0.0, details={"unavailable": exc.reason})
        if name == "caches":
            if not len(self.caches):
                return None

            def shrink() -> dict[str, Any]:
                done: dict[str, Any] = {"caches": self.caches.shrink()}
                # what the caches held goes back to glibc's free lists, not the OS: trim again
                try:
                    done["trimmed_bytes"] = trim_malloc(ctx.reason).freed_bytes
                except ProbeUnavailable as exc:
                    done["trim_unavailable"] = exc.reason
                return done

            return _timed("shrink_caches", ctx, self.read, shrink)
        if name == "gpu":
            if self.gpu_policy is None:
                return None
            policy = self.gpu_policy

            def release() -> dict[str, Any]:
                rel = policy.maybe_release()
                if rel is None:
                    return {"released": False, "why": policy.last_error}
                return {
                    "released": True,
                    "gpu_freed_bytes": rel.freed_bytes,
                    "gpu_duration_s": rel.duration_s,
                }

            return _timed("gpu_empty_cache", ctx, self.read, release)
        if name == "recycle":
            if self.recycle is None:
                return None
            hook = self.recycle
            return ActionResult("recycle", ctx.reason, 0, 0.0, ctx.value_bytes, None, hook(ctx))
        raise AssertionError(name)

    def climb(
        self, reason: str, value_bytes: int, target_bytes: int, measure: str, *, allow_recycle: bool = True
    ) -> list[ActionResult]:
        """Take the steps in order until the measure is below ``target_bytes``; the steps taken."""
        taken: list[ActionResult] = []
        value = value_bytes
        for name in self.order:
            if name == "recycle" and not allow_recycle:
                break
            result = self._step(name, StepContext(reason, value, target_bytes, measure))
            if result is None:
                continue
            taken.append(result)
            if self.record is not None:
                self.record(result)
            if name == "recycle":
                break
            if name != "alert":
                value = self.read()
                if value < target_bytes:
                    break
        return taken


__all__ = ["STEP_NAMES", "CacheShrinker", "Ladder", "Shrinkable", "Step", "StepContext"]
