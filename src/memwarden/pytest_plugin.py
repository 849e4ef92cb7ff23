"""memwarden's pytest plugin: leak checks per call and memory caps, as markers and a fixture.

Installed with memwarden (entry point ``pytest11``) and inactive unless a test uses it: a test
without the markers or the fixture runs exactly as before (no tracemalloc, no thread, nothing
measured). Everything heavier than this module is imported only when a check runs.

- ``@pytest.mark.leaks(iterations=30, warmup=5, ...)``: the test body is called ``warmup`` times,
  then in rounds of ``iterations`` calls; the test fails when memory grows per call
  (:func:`memwarden.leakcheck.check_leaks` says how it decides).
- ``leak_check(fn, *args, **kwargs)``: the same check on one function, inside a test.
- ``@pytest.mark.memory_cap(peak="64 MiB", net="1 MiB")``: the test fails when its peak of
  Python allocations, or what it leaves allocated, exceeds the cap.

Every option is a command-line flag and an ini setting (the flag wins; a marker's own
arguments win over both). Each pytest-xdist worker measures the tests it runs in its own
process, so the plugin works the same under ``-n``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from memwarden.leakcheck import LeakReport

_SECTION = "memwarden leak check"
_CHECK_OPTIONS = (
    "iterations",
    "warmup",
    "confirm",
    "budget_s",
    "min_bytes_per_call",
    "min_blocks_per_call",
    "alpha",
    "native",
    "holders",
)
_CAP_SECTION = "memwarden memory cap"

_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    # (ini / dest name, flag, type, help)
    (
        "memwarden_leak_iterations",
        "--memwarden-leak-iterations",
        "int",
        "measured calls per round (default 30)",
    ),
    ("memwarden_leak_warmup", "--memwarden-leak-warmup", "int", "calls before measuring (default 5)"),
    (
        "memwarden_leak_confirm",
        "--memwarden-leak-confirm",
        "int",
        "consecutive growing rounds that make a leak (default 2)",
    ),
    (
        "memwarden_leak_budget",
        "--memwarden-leak-budget",
        "float",
        "seconds one leak check may take, warm-up included (default 60)",
    ),
    (
        "memwarden_leak_min_bytes",
        "--memwarden-leak-min-bytes",
        "float",
        "growth per call treated as none, in bytes (default 16)",
    ),
)


@dataclasses.dataclass(frozen=True)
class LeakCheckSettings:
    """The leak check's settings for a session, from flags, ini and memwarden's defaults."""

    iterations: int
    warmup: int
    confirm: int
    budget_s: float
    min_bytes_per_call: float
    enabled: bool = True

    def merged(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for :func:`~memwarden.leakcheck.check_leaks`: these, then ``overrides``."""
        known = set(_CHECK_OPTIONS)
        unknown = sorted(set(overrides) - known)
        if unknown:
            from memwarden.exceptions import UsageError

            raise UsageError(
                f"unknown leaks option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        out: dict[str, Any] = {
            "iterations": self.iterations,
            "warmup": self.warmup,
            "confirm": self.confirm,
            "budget_s": self.budget_s,
            "min_bytes_per_call": self.min_bytes_per_call,
        }
        out.update({k: v for k, v in overrides.items() if v is not None})
        return out


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memwarden", "memwarden leak checks and memory caps")
    for name, flag, kind, help_text in _OPTIONS:
        group.addoption(flag, dest=name, type=int if kind == "int" else float, default=None, help=help_text)
        parser.addini(name, help_text, type="string", default=None)
    group.addoption(
        "--memwarden-no-leak-checks",
        dest="memwarden_no_leak_checks",
        action="store_true",
        default=False,
        help="run tests marked leaks once, without a leak check",
    )
    parser.addini(
        "memwarden_leak_checks", "false: run tests marked leaks once, unchecked", type="bool", default=True
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leaks(iterations=30, warmup=5, confirm=2, budget_s=60, min_bytes_per_call=16, native=True): "
        "call the test repeatedly and fail if memory grows per call (memwarden)",
    )
    config.addinivalue_line(
        "markers",
        "memory_cap(peak=None, net=None): fail if the test's peak Python allocations or the memory it "
        "leaves allocated exceed these sizes, e.g. peak='64 MiB' (memwarden)",
    )
    config.pluginmanager.register(MemwardenPlugin(config), "memwarden-plugin")


def _setting(config: pytest.Config, name: str, kind: type[int] | type[float], default: float) -> Any:
    from memwarden.exceptions import UsageError

    value = config.getoption(name, default=None)
    if value is not None:
        return value
    raw = config.getini(name)
    if raw in (None, ""):
        return kind(default)
    try:
        return kind(str(raw).strip())
    except ValueError:
        raise UsageError(f"ini option {name} must be a number, not {raw!r}") from None


class MemwardenPlugin:
    """The plugin's state for one pytest session: the settings, read once on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._settings: LeakCheckSettings | None = None

    @property
    def settings(self) -> LeakCheckSettings:
        if self._settings is None:
            from memwarden.leakcheck import (
                DEFAULT_BUDGET_S,
                DEFAULT_CONFIRM,
                DEFAULT_ITERATIONS,
                DEFAULT_MIN_BYTES_PER_CALL,
                DEFAULT_WARMUP,
            )

            c = self.config
            self._settings = LeakCheckSettings(
                iterations=_setting(c, "memwarden_leak_iterations", int, DEFAULT_ITERATIONS),
                warmup=_setting(c, "memwarden_leak_warmup", int, DEFAULT_WARMUP),
                confirm=_setting(c, "memwarden_leak_confirm", int, DEFAULT_CONFIRM),
                budget_s=_setting(c, "memwarden_leak_budget", float, DEFAULT_BUDGET_S),
                min_bytes_per_call=_setting(c, "memwarden_leak_min_bytes", float, DEFAULT_MIN_BYTES_PER_CALL),
                enabled=not c.getoption("memwarden_no_leak_checks")
                and bool(c.getini("memwarden_leak_checks")),
            )
        return self._settings

    # Old-style hook wrappers (``hookwrapper=True``): every pluggy that pytest 7 and later ship
    # understands them, so an old pytest in the environment is never broken by this plugin.
    @pytest.hookimpl(hookwrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Generator[None, object, None]:
        leaks = pyfuncitem.get_closest_marker("leaks")
        cap = pyfuncitem.get_closest_marker("memory_cap")
        if leaks is None and cap is None:
            yield
            return
        func = pyfuncitem.obj
        wrapped: Callable[..., object] = func
        if leaks is not None:
            if leaks.args:
                from memwarden.exceptions import UsageError

                raise UsageError("the leaks marker takes keyword arguments only, e.g. leaks(iterations=40)")
            if self.settings.enabled:
                wrapped = self._leak_wrapper(wrapped, pyfuncitem, dict(leaks.kwargs))
        if cap is not None:
            wrapped = self._cap_wrapper(wrapped, pyfuncitem, cap)
        pyfuncitem.obj = wrapped
        try:
            yield
        finally:
            # Put the test function back: plugins that rerun tests call this hook again.
            pyfuncitem.obj = func

    def _leak_wrapper(
        self, func: Callable[..., object], item: pytest.Function, options: dict[str, Any]
    ) -> Callable[..., object]:
        settings = self.settings

        @functools.wraps(func)
        def run_leak_check(*args: Any, **kwargs: Any) -> None:
            from memwarden.leakcheck import check_leaks

            # The test's own arguments are bound here: a fixture or parameter may share a name with
            # an option of the check (``name``, ``warmup`` ...).
            bound = functools.partial(func, *args, **kwargs)
            report = check_leaks(bound, name=item.name, **settings.merged(options))
            _record(item, report)
            report.raise_for_leak()

        return run_leak_check

    @staticmethod
    def _cap_wrapper(
        func: Callable[..., object], item: pytest.Function, marker: pytest.Mark
    ) -> Callable[..., object]:
        from memwarden.exceptions import UsageError
        from memwarden.leakcheck import parse_size

        unknown = sorted(set(marker.kwargs) - {"peak", "net"})
        if marker.args or unknown or not marker.kwargs:
            raise UsageError(
                "memory_cap takes peak= and/or net=, e.g. memory_cap(peak='64 MiB', net='1 MiB')"
            )
        peak = (
            parse_size(marker.kwargs["peak"], what="memory_cap peak")
            if marker.kwargs.get("peak") is not None
            else None
        )
        net = (
            parse_size(marker.kwargs["net"], what="memory_cap net")
            if marker.kwargs.get("net") is not None
            else None
        )

        @functools.wraps(func)
        def run_capped(*args: Any, **kwargs: Any) -> None:
            from memwarden.leakcheck import MemoryCapExceeded, measure_memory

            use = measure_memory(func, *args, name=item.name, **kwargs)
            failures = use.check(peak=peak, net=net)
            if failures:
                raise MemoryCapExceeded(use, failures)
            item.add_report_section("call", "memory cap", use.render())

        return run_capped

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if call.when != "call" or call.excinfo is None:
            return
        report = outcome.get_result()
        from memwarden.exceptions import MemwardenError
        from memwarden.leakcheck import LeakDetected, MemoryCapExceeded

        exc = call.excinfo.value
        if isinstance(exc, LeakDetected):
            report.longrepr = exc.report.summary
            report.sections.append((_SECTION, exc.report.render(summary=False)))
        elif isinstance(exc, MemoryCapExceeded):
            report.longrepr = str(exc)
            report.sections.append((_CAP_SECTION, exc.use.render()))
        elif isinstance(exc, MemwardenError):
            report.longrepr = f"memwarden: {exc}"


def _record(item: pytest.Item, report: LeakReport) -> None:
    """Keep the figures on the test's report: a section (shown with ``-rA``) and user properties (JUnit XML)."""
    if not report.leak:  # a failure gets its own section (pytest_runtest_makereport)
        item.add_report_section("call", "leak check", report.render())
    item.user_properties.append(("memwarden_leak", report.leak))
    item.user_properties.append(("memwarden_bytes_per_call", round(report.bytes_per_call, 1)))


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> Callable[..., LeakReport]:
    """``leak_check(fn, *args, iterations=..., warmup=..., **kwargs)``: fail the test if ``fn`` leaks per call.

    Returns the :class:`~memwarden.leakcheck.LeakReport` when it does not. Options are the
    ``leaks`` marker's; every other keyword argument goes to ``fn``.
    """
    plugin = request.config.pluginmanager.get_plugin("memwarden-plugin")
    assert isinstance(plugin, MemwardenPlugin)
    item = request.node
    option_names = _CHECK_OPTIONS

    def check(fn: Callable[..., object], *args: Any, **kwargs: Any) -> LeakReport:
        from memwarden.leakcheck import check_leaks

        options = {k: kwargs.pop(k) for k in option_names if k in kwargs}
        name = getattr(fn, "__qualname__", None) or repr(fn)
        bound = functools.partial(fn, *args, **kwargs)
        report = check_leaks(bound, name=name, **plugin.settings.merged(options))
        _record(item, report)
        report.raise_for_leak()
        return report

    return check
