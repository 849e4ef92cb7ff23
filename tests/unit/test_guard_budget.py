"""The guard's budget, configuration, ladder and decisions, with injected readings and clocks."""

from __future__ import annotations

import functools
import gc
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cachetools
import pytest

from memwarden.exceptions import UsageError
from memwarden.guards.budget import Budget, measure_reader, parse_size
from memwarden.guards.config import GuardConfig, parse_budget
from memwarden.guards.gcgov import GcPauseHistogram, freeze, set_thresholds
from memwarden.guards.ladder import CacheShrinker, Ladder
from memwarden.guards.recycle import RecycleLock, WorkerGuard
from memwarden.probes.process import read_cgroup_memory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "process"
MiB = 1 << 20


def _resolve(budget: Budget, tree: str):  # type: ignore[no-untyped-def]
    root = FIXTURES / tree
    return budget.resolve(proc_root=root / "proc", sys_root=root)


# -- sizes and budgets -------------------------------------------------------------------------


def test_sizes_parse_in_binary_and_decimal_units() -> None:
    """'512MiB', '1.5G', '300000' are bytes; anything else is a UsageError naming it."""
    assert parse_size("512MiB") == 512 * MiB
    assert parse_size("1.5G") == 1_500_000_000
    assert parse_size("300000") == 300_000
    with pytest.raises(UsageError, match="not a size: '12 parsecs'"):
        parse_size("12 parsecs")


def test_a_fraction_reads_the_effective_limit_of_a_recorded_cgroup_v2_tree() -> None:
    """0.7 of v2-nested is 0.7 of the 512 MiB two levels up (not the 2 GiB nor the leaf's 'max')."""
    r = _resolve(Budget(fraction=0.7), "v2-nested")
    assert r.container_limit_bytes == 512 * MiB
    assert r.hard_bytes == int(512 * MiB * 0.7)
    assert r.soft_bytes == int(r.hard_bytes * 0.85)
    assert r.rearm_bytes < r.soft_bytes
    assert "system.slice/memory.max" in r.source


def test_a_fraction_reads_a_recorded_cgroup_v1_container() -> None:
    """v1-limit's memory.limit_in_bytes of 256 MiB is the base of the fraction."""
    r = _resolve(Budget(fraction=0.5), "v1-limit")
    assert r.container_limit_bytes == 256 * MiB
    assert r.hard_bytes == 128 * MiB


def test_a_fraction_without_a_container_limit_fails_at_start_up() -> None:
    """v2-nolimit has memory.max 'max': a fraction of nothing is a one-line error saying so."""
    with pytest.raises(UsageError, match="needs a container memory limit"):
        _resolve(Budget(fraction=0.7), "v2-nolimit")


def test_a_budget_at_or_above_the_container_limit_is_refused() -> None:
    """300 MiB in a 256 MiB container: the OOM killer would act first, so start-up fails."""
    with pytest.raises(UsageError, match="not below the container limit 256 MiB"):
        _resolve(Budget(limit_bytes=300 * MiB), "v1-limit")
    assert _resolve(Budget(limit_bytes=200 * MiB), "v1-limit").hard_bytes == 200 * MiB


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0.0}, r"fraction must be in \(0, 1\]"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"limit_bytes": 1, "measure": "peak_rss"}, "unknown budget measure 'peak_rss'"),
        ({"limit_bytes": 1, "fraction": 0.5}, "exactly one of"),
        ({}, "exactly one of"),
        ({"limit_bytes": 1, "soft": 0}, "soft must be"),
        ({"limit_bytes": 1, "min_lifetime_s": -1}, "min_lifetime_s"),
    ],
)
def test_bad_budgets_fail_with_one_clear_line(kwargs: dict[str, object], message: str) -> None:
    """Each bad value is a UsageError (a ValueError) with a single-line message."""
    with pytest.raises(UsageError, match=message) as info:
        Budget(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_environment_configuration_and_its_errors(tmp_path: Path) -> None:
    """MEMWARDEN_* variables give the budget and ladder; a bad one is named in the error; a file works too."""
    cfg = GuardConfig.from_env(
        {
            "MEMWARDEN_BUDGET": "256MiB",
            "MEMWARDEN_BUDGET_MEASURE": "pss",
            "MEMWARDEN_LADDER": "alert,recycle",
            "MEMWARDEN_DRAIN_S": "5",
        }
    )
    assert cfg.budget.limit_bytes == 256 * MiB and cfg.budget.measure == "pss"
    assert cfg.steps == ("alert", "recycle") and cfg.drain_s == 5.0
    assert parse_budget("70%").fraction == pytest.approx(0.7)
    assert parse_budget("0.6").fraction == pytest.approx(0.6)
    with pytest.raises(UsageError, match=r"fraction must be in \(0, 1\]"):
        GuardConfig.from_env({"MEMWARDEN_BUDGET": "150%"})
    with pytest.raises(UsageError, match="unknown budget measure 'peak'"):
        GuardConfig.from_env({"MEMWARDEN_BUDGET": "1GiB", "MEMWARDEN_BUDGET_MEASURE": "peak"})
    with pytest.raises(UsageError, match="MEMWARDEN_LADDER: unknown step 'pray'"):
        GuardConfig.from_env({"MEMWARDEN_BUDGET": "1GiB", "MEMWARDEN_LADDER": "alert,pray"})
    with pytest.raises(UsageError, match="MEMWARDEN_DRAIN_S='soon': not a number"):
        GuardConfig.from_env({"MEMWARDEN_BUDGET": "1GiB", "MEMWARDEN_DRAIN_S": "soon"})
    path = tmp_path / "guard.json"
    path.write_text(json.dumps({"budget": "0.5", "min_lifetime_s": 60}))
    cfg = GuardConfig.from_env({"MEMWARDEN_GUARD_CONFIG": str(path), "MEMWARDEN_MIN_LIFETIME_S": "10"})
    assert cfg.budget.fraction == 0.5 and cfg.budget.min_lifetime_s == 10.0  # the variable wins
    path.write_text(json.dumps({"budgit": "1GiB"}))
    with pytest.raises(UsageError, match="unknown key 'budgit'"):
        GuardConfig.from_env({"MEMWARDEN_GUARD_CONFIG": str(path)})


def test_measures_read_this_process() -> None:
    """rss, pss and uss are read from /proc/self and are plausible for this process; peak RSS is no measure."""
    rss, pss, uss = (measure_reader(m)() for m in ("rss", "pss", "uss"))
    assert 10 * MiB < rss < 4096 * MiB
    assert 0 < uss <= pss <= rss * 1.05
    with pytest.raises(UsageError, match="unknown budget measure"):
        measure_reader("maxrss")


# -- decisions: hysteresis, lifetime, the ladder -----------------------------------------------


class Values:
    """A measure that returns the next value of a script each time it is read."""

    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.i = 0

    def set(self, v: int) -> None:
        self.values = [v]
        self.i = 0

    def __call__(self) -> int:
        v = self.values[min(self.i, len(self.values) - 1)]
        self.i += 1
        return v


def _guard(
    tmp_path: Path,
    read: Values,
    *,
    min_lifetime_s: float = 0.0,
    clock: Iterator[float] | None = None,
    steps: tuple[str, ...] = ("alert", "collect", "recycle"),
) -> tuple[WorkerGuard, list[str]]:
    recycled: list[str] = []
    budget = Budget(limit_bytes=100 * MiB, soft=0.8, hysteresis=0.1, min_lifetime_s=min_lifetime_s)
    ticks = clock if clock is not None else iter(float(i) for i in range(10**6))
    guard = WorkerGuard(
        budget,
        recycle=recycled.append,
        read=read,
        state_dir=tmp_path,
        steps=steps,
        resolved=budget.resolve(
            cgroup=read_cgroup_memory(
                proc_root=FIXTURES / "v2-nolimit" / "proc", sys_root=FIXTURES / "v2-nolimit"
            )
        ),
        clock=lambda: next(ticks),
        on_deadline=lambda: None,
        drain_s=60,
    )
    return guard, recycled


def test_hysteresis_climbs_the_ladder_once_per_crossing_under_a_spiky_load(tmp_path: Path) -> None:
    """Spikes between soft (80 MiB) and hard (100 MiB) climb once until the value falls below 72 MiB again; no recycle."""
    read = Values([0])
    guard, recycled = _guard(tmp_path, read)
    spiky = [70, 85, 79, 95, 78, 99, 76, 81, 73, 90, 60, 85, 79, 88]  # MiB; dips below 72 only at 60
    for mib in spiky:
        read.set(mib * MiB)
        guard.check()
    alerts = [a for a in guard.actions if a.action == "alert"]
    assert len(alerts) == 2  # the first crossing, and the one after the dip to 60
    assert recycled == []
    assert not guard.draining


def test_a_young_worker_is_not_recycled_however_high_it_spikes(tmp_path: Path) -> None:
    """Within min_lifetime_s a worker over the hard limit stays (no storm); once old enough, it is recycled once."""
    read = Values([150 * MiB])
    times = iter([0.0, *[1.0] * 20, *[100.0] * 20])
    guard, recycled = _guard(tmp_path, read, min_lifetime_s=30, clock=times)
    assert [guard.check() for _ in range(5)] == ["young"] * 5
    assert recycled == []
    for _ in range(15):
        next(times)
    assert guard.check() == "draining"
    assert guard.check() == "draining"
    assert len(recycled) == 1
    guard.drain_ended()


def test_the_guard_keeps_a_reserve_for_what_its_open_connections_may_still_send(tmp_path: Path) -> None:
    """With 4 open connections and 1 MiB per request, it recycles at 96 MiB of 100 (not 100), and says why."""
    read = Values([0])
    guard, recycled = _guard(tmp_path, read)
    over: list[int] = []
    guard.outstanding = lambda: 4
    guard.on_over = lambda: over.append(1)
    states = []
    for mib in range(70, 101):
        read.set(mib * MiB)
        states.append(guard.check())
        guard.check(request_end=False)  # a check that is not a request's end leaves the mean alone
        if guard.draining:
            break
    assert guard.growth_bytes == MiB
    assert states[-1] == "draining" and states.count("draining") == 1
    assert mib == 96, f"recycled at {mib} MiB"
    assert guard.reserve_bytes == 4 * MiB
    assert recycled == ["rss 96 MiB + 4.0 MiB in flight >= budget 100 MiB"]
    assert over == [1]
    guard.drain_ended()


def test_the_reserve_is_never_more_than_the_soft_margin_nor_taken_below_soft(tmp_path: Path) -> None:
    """A burst of growth and 1,000 connections reserve at most hard - soft (20 MiB): no recycle below soft (80 MiB)."""
    read = Values([0])
    guard, recycled = _guard(tmp_path, read)
    guard.outstanding = lambda: 1000
    for mib in (10, 40, 79):  # 34.5 MiB a request on average
        read.set(mib * MiB)
        assert guard.check() == "ok"
    assert guard.reserve_bytes == 0
    read.set(80 * MiB)
    assert guard.check() == "draining"
    assert guard.reserve_bytes == 20 * MiB
    assert len(recycled) == 1
    guard.drain_ended()


def test_guarded_wsgi_closes_the_connection_of_the_response_that_crosses_the_budget(tmp_path: Path) -> None:
    """Checked before the app and at start_response: the crossing response's gunicorn Response is force-closed."""
    from memwarden.guards.gunicorn import GuardedWSGI

    read = Values([50 * MiB])
    guard, recycled = _guard(tmp_path, read)

    class Response:  # gunicorn's start_response is a bound method of its Response
        closed = False

        def start_response(
            self, status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> None:
            self.status = status

        def force_close(self) -> None:
            self.closed = True

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        read.set(int(environ["leak_to"]))  # type: ignore[call-overload]
        start_response("200 OK", [])  # type: ignore[operator]
        return [b"ok"]

    wrapped = GuardedWSGI(app, guard)
    first, second = Response(), Response()
    assert wrapped({"leak_to": 60 * MiB}, first.start_response) == [b"ok"]
    assert not first.closed and recycled == []
    wrapped({"leak_to": 101 * MiB}, second.start_response)
    assert second.closed and second.status == "200 OK" and len(recycled) == 1
    guard.drain_ended()


def test_a_step_that_frees_enough_stops_the_ladder() -> None:
    """After 'collect' brings the value under the target, trim and recycle are never taken."""
    read = Values([60 * MiB])
    taken: list[str] = []
    ladder = Ladder(
        read=read,
        order=("alert", "collect", "trim", "recycle"),
        recycle=lambda ctx: taken.append("recycle") or {},
    )  # type: ignore[func-returns-value]
    results = ladder.climb("test", 120 * MiB, 80 * MiB, "rss")
    assert [r.action for r in results] == ["alert", "gc_collect"]
    assert taken == []
    read2 = Values([120 * MiB])
    results = Ladder(
        read=read2, order=("alert", "collect", "recycle"), recycle=lambda ctx: {"why": ctx.reason}
    ).climb("over", 120 * MiB, 80 * MiB, "rss")
    assert [r.action for r in results] == ["alert", "gc_collect", "recycle"]
    assert results[-1].details == {"why": "over"}


def test_unknown_ladder_steps_are_refused() -> None:
    """A misspelt step is an error when the ladder is built, not when it is climbed."""
    with pytest.raises(UsageError, match="unknown ladder step 'gc'"):
        Ladder(read=lambda: 0, order=("alert", "gc"))


def test_the_evidence_file_is_written_before_the_recycle(tmp_path: Path) -> None:
    """When the recycle is called, evidence-<pid>.json and exit-<pid>.json already exist, with the reason and the budget."""
    import os

    seen: dict[str, object] = {}
    read = Values([130 * MiB])
    budget = Budget(limit_bytes=100 * MiB, min_lifetime_s=0)

    def recycle(reason: str) -> None:
        path = tmp_path / f"evidence-{os.getpid()}.json"
        seen["evidence"] = json.loads(path.read_text())
        seen["exit"] = json.loads((tmp_path / f"exit-{os.getpid()}.json").read_text())

    guard = WorkerGuard(
        budget,
        recycle=recycle,
        read=read,
        state_dir=tmp_path,
        steps=("alert", "recycle"),
        resolved=budget.resolve(cgroup=read_cgroup_memory(proc_root=tmp_path / "none")),
        on_deadline=lambda: None,
    )
    assert guard.check() == "draining"
    ev = seen["evidence"]
    assert isinstance(ev, dict)
    assert ev["schema"] == "memwarden.guard_evidence/1"
    assert ev["value_bytes"] == 130 * MiB
    assert ev["budget"]["hard_bytes"] == 100 * MiB  # type: ignore[index]
    assert [a["action"] for a in ev["actions"]] == ["alert"]  # type: ignore[index]
    assert ev["verdict"] is None and "no memwarden monitor" in ev["note"]  # type: ignore[operator]
    assert seen["exit"]["reason"] == "rss 130 MiB >= budget 100 MiB"  # type: ignore[index]
    guard.drain_ended()
    events = [json.loads(line)["event"] for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert events == ["drain_start", "drain_end"]


def test_the_evidence_carries_the_monitors_verdict_and_lands_in_its_timeline(tmp_path: Path) -> None:
    """With a running monitor, the evidence has its verdict (memwarden.verdict/1) and a guard_evidence event."""
    import memwarden

    mon = memwarden.Monitor(interval=0.05, db=tmp_path / "t.db", investigate=False).start()
    try:
        import time

        time.sleep(0.3)
        budget = Budget(limit_bytes=100 * MiB, min_lifetime_s=0)
        guard = WorkerGuard(
            budget,
            recycle=lambda r: None,
            read=Values([130 * MiB]),
            state_dir=tmp_path,
            steps=("recycle",),
            monitor=mon,
            on_deadline=lambda: None,
            resolved=budget.resolve(cgroup=read_cgroup_memory(proc_root=tmp_path / "none")),
        )
        guard.check()
        guard.drain_ended()
        import os

        ev = json.loads((tmp_path / f"evidence-{os.getpid()}.json").read_text())
        assert (
            ev["verdict"]["verdict"] in ("leak", "flat", "inconclusive", "growth", "bounded") or ev["verdict"]
        )
        kinds = [e.kind for e in mon.events()]
        assert "guard_evidence" in kinds and "action" in kinds
    finally:
        mon.stop()


def test_only_one_process_holds_the_recycle_lock(tmp_path: Path) -> None:
    """While another process holds the lock, try_acquire fails; when it exits, the kernel frees it."""
    path = tmp_path / "recycle.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from memwarden.guards.recycle import RecycleLock
            lock = RecycleLock({str(path)!r})
            assert lock.try_acquire()
            print("held", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = RecycleLock(path)
        assert not lock.try_acquire()
        assert lock.holder() == holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert lock.try_acquire()
    lock.release()


# -- caches and GC ---------------------------------------------------------------------------


def test_the_cache_step_clears_lru_caches_evicts_cachetools_and_asks_bounded_stores() -> None:
    """lru_cache is cleared, a cachetools LRUCache loses half, a shrink(fraction) store and a callback are called."""

    @functools.cache
    def square(n: int) -> int:
        return n * n

    for i in range(100):
        square(i)
    lru = cachetools.LRUCache(maxsize=1000)
    for i in range(100):
        lru[i] = i

    class Store:
        def __init__(self) -> None:
            self.items = list(range(10))

        def __len__(self) -> int:
            return len(self.items)

        def shrink(self, fraction: float) -> int:
            drop = int(len(self.items) * fraction)
            del self.items[:drop]
            return drop

    store = Store()
    called: list[float] = []
    shrinker = CacheShrinker(fraction=0.5)
    shrinker.register(square, "square")
    shrinker.register(lru, "lru")
    shrinker.register(store, "store")
    shrinker.register(called.append, "hook")
    done = {d["name"]: d for d in shrinker.shrink()}
    assert square.cache_info().currsize == 0 and done["square"]["how"] == "cache_clear"
    assert len(lru) == 50 and done["lru"] == {"name": "lru", "how": "popitem", "before": 100, "after": 50}
    assert len(store) == 5 and done["store"]["how"] == "shrink"
    assert called == [0.5]
    with pytest.raises(UsageError):
        shrinker.register(42)


def test_gc_governance_freezes_sets_thresholds_and_counts_pauses() -> None:
    """freeze() moves objects to the permanent generation; thresholds round-trip; the histogram counts collections."""
    try:
        result = freeze("test")
        assert result.details["frozen"] == gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    old = set_thresholds(5000, 20)
    try:
        assert gc.get_threshold()[:2] == (5000, 20)
    finally:
        gc.set_threshold(*old)
    with pytest.raises(UsageError):
        set_thresholds(-1)
    hist = GcPauseHistogram().install()
    try:
        for _ in range(3):
            gc.collect(2)
    finally:
        hist.uninstall()
    data = hist.to_json()
    assert data["generations"][2]["count"] >= 3
    assert len(data["generations"][2]["counts"]) == len(data["buckets_s"]) + 1


def test_the_guards_package_loads_its_names_lazily_and_no_server() -> None:
    """Every name in memwarden.guards.__all__ resolves; importing the guards imports neither gunicorn nor uvicorn."""
    code = textwrap.dedent("""
        import sys, memwarden.guards as g
        for name in g.__all__:
            getattr(g, name)
        import memwarden.guards.gunicorn, memwarden.guards.asgi
        print(sorted(m for m in ("gunicorn", "uvicorn", "torch") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_install_chains_the_users_own_gunicorn_hooks() -> None:
    """install(globals()) keeps a hook already in the config (it runs first) and adds memwarden's."""
    from memwarden.guards import gunicorn as hooks

    calls: list[str] = []
    namespace: dict[str, object] = {
        "worker_exit": lambda server, worker: calls.append("theirs"),
        "post_request": lambda worker, req, environ, resp: calls.append("theirs post_request"),
        "post_worker_init": lambda worker: calls.append("theirs post_worker_init"),
    }
    hooks.install(namespace)
    assert set(hooks.HOOKS) <= set(namespace)
    namespace["worker_exit"](None, None)  # type: ignore[operator]
    assert calls == ["theirs"]
    assert namespace["pre_fork"] is hooks.pre_fork
    gunicorn_config = pytest.importorskip("gunicorn.config")
    cfg = gunicorn_config.Config()
    for name in hooks.HOOKS:  # gunicorn's own validation: each hook has the arity it calls it with
        cfg.set(name, namespace[name])


def test_the_state_folder_stays_bounded(tmp_path: Path) -> None:
    """Evidence files beyond the newest 20 are removed at each recycle; a journal over 1 MiB is rotated once."""
    import os

    from memwarden.guards import recycle as rec

    for i in range(25):
        path = tmp_path / f"evidence-{100000 + i}.json"
        path.write_text("{}")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "journal.jsonl").write_bytes(b"x" * (rec.JOURNAL_MAX_BYTES + 1))
    budget = Budget(limit_bytes=100 * MiB, min_lifetime_s=0)
    guard = WorkerGuard(
        budget,
        recycle=lambda r: None,
        read=Values([130 * MiB]),
        state_dir=tmp_path,
        steps=("recycle",),
        on_deadline=lambda: None,
        resolved=budget.resolve(cgroup=read_cgroup_memory(proc_root=tmp_path / "none")),
    )
    guard.check()
    guard.drain_ended()
    left = sorted(p.name for p in tmp_path.glob("evidence-*.json"))
    assert len(left) == rec.EVIDENCE_KEEP
    assert f"evidence-{os.getpid()}.json" in left
    assert "evidence-100000.json" not in left
    assert (tmp_path / "journal.jsonl.1").stat().st_size > rec.JOURNAL_MAX_BYTES
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 2


def test_the_short_gunicorn_config_name_gives_gunicorn_the_guard_hooks() -> None:
    """`gunicorn -c python:memwarden.gunicorn`: the module gunicorn loads carries the guard's hooks."""
    gunicorn_base = pytest.importorskip("gunicorn.app.base", reason="gunicorn is in the dev extra")
    from gunicorn.config import Config

    from memwarden.guards import gunicorn as hooks

    loaded = gunicorn_base.Application.get_config_from_module_name(None, "memwarden.gunicorn")
    cfg = Config()
    for name in ("on_starting", "post_fork", "post_request", "child_exit", "worker_exit"):
        assert loaded[name] is getattr(hooks, name)
        cfg.set(name, loaded[name])  # gunicorn's own validator accepts them
