"""Advice by what holds the objects: each kind of owner (a logging handler, a queue, futures, a session,
a framework's registry, objects over native buffers, plain bytes) gets the advice that fits it.

The holders are found by the real holder search on real objects (a MemoryHandler, a queue.Queue,
concurrent futures, a SQLAlchemy Session, a Flask app), then advised on as the verdict would be.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib
import logging
import logging.handlers
import queue
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memwarden.attribution._holders import find_holders
from memwarden.diagnosis._advice import advise, container_of, owner_kind
from memwarden.diagnosis._verdict import Holder, Site, TypeGrowth

_counter = iter(range(1_000_000))


@pytest.fixture
def load_module(tmp_path: Path) -> Iterator[Callable[[str], types.ModuleType]]:
    """Write source to a uniquely named module in tmp_path and import it (user code); unload it after."""
    names: list[str] = []
    sys.path.insert(0, str(tmp_path))

    def load(source: str) -> types.ModuleType:
        name = f"mw_advice_app_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return importlib.import_module(name)

    yield load
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


def _holder(target: object) -> Holder:
    (found,) = find_holders([target])
    assert not found.path.startswith("<"), found
    return found


def _advice(holder: Holder, verdict: str = "python_leak", types: tuple[TypeGrowth, ...] = ()) -> str:
    return " ".join(advise(verdict, holders=(holder,), types=types))


def test_log_records_in_a_memory_handler_get_logging_advice(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """LogRecords piling up in a MemoryHandler's buffer are advised on the handler, not as listeners."""
    mod = load_module(
        """
        import logging.handlers
        handler = logging.handlers.MemoryHandler(capacity=10**9, flushLevel=100)
        """
    )
    mod.handler.handle(logging.makeLogRecord({"msg": "request done", "levelno": logging.INFO}))
    holder = _holder(mod.handler.buffer[0])
    assert owner_kind(holder) == "logging"
    text = _advice(holder, types=(TypeGrowth("logging.LogRecord", 11_100, 621_000),))
    assert f"Log records pile up in {mod.__name__}.handler.buffer" in text
    assert "MemoryHandler(capacity=N, target=...)" in text
    assert "Listeners" not in text and "WeakMethod" not in text


def test_a_queue_nobody_drains_gets_a_maxsize(load_module: Callable[[str], types.ModuleType]) -> None:
    """Items in a queue.Queue, and in an unbounded deque, are advised to bound the queue and check its consumer."""
    mod = load_module("import queue, collections\nJOBS = queue.Queue()\nPENDING = collections.deque()\n")
    job = {"id": 1}
    mod.JOBS.put(job)
    holder = _holder(job)
    assert holder.via[0] == "queue.Queue"
    text = _advice(holder)
    assert f"{mod.__name__}.JOBS.queue is a queue" in text and "maxsize=N" in text
    item = {"id": 2}
    mod.PENDING.append(item)
    assert "deque(maxlen=N)" in _advice(_holder(item))
    assert isinstance(mod.JOBS, queue.Queue) and isinstance(mod.PENDING, collections.deque)


def test_finished_futures_kept_in_a_list(load_module: Callable[[str], types.ModuleType]) -> None:
    """Results held by futures kept in a list are advised to drop futures once read."""
    mod = load_module("DONE = []\n")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        mod.DONE.append(pool.submit(lambda: ["result"] * 10))
    result = mod.DONE[0].result()
    holder = _holder(result)
    del result
    assert owner_kind(holder) == "future"
    assert "Finished futures pile up in" in _advice(holder)


def test_objects_added_to_a_long_lived_sqlalchemy_session(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """Objects pending in a Session kept in a global are held by the session, and advised a session per unit of work."""
    pytest.importorskip("sqlalchemy")
    mod = load_module(
        """
        from sqlalchemy import Integer, String, create_engine
        from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

        class Base(DeclarativeBase):
            pass

        class Event(Base):
            __tablename__ = "events"
            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            payload: Mapped[str] = mapped_column(String)

        engine = create_engine("sqlite://")
        SESSION = Session(engine, autoflush=False)
        """
    )
    event = mod.Event(payload="x" * 50)
    mod.SESSION.add(event)
    holder = _holder(event)
    assert holder.path == f"{mod.__name__}.SESSION"
    assert holder.type == "sqlalchemy.orm.session.Session"
    text = _advice(holder)
    assert "SQLAlchemy Session kept for the whole run" in text and "expunge_all()" in text


def test_request_hooks_added_to_a_flask_app_are_a_registry(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """Functions registered on a Flask app at every request are advised to register once at start-up."""
    pytest.importorskip("flask")
    mod = load_module("import flask\napp = flask.Flask('mw-advice')\n")

    def hook() -> None:
        return None

    mod.app.before_request(hook)
    holder = _holder(hook)
    assert holder.via[0] == "flask.app.Flask"
    text = _advice(holder)
    assert "registry of flask" in text and "register once at start-up" in text


def test_dataframes_kept_in_a_list_are_owners_of_their_buffers(
    load_module: Callable[[str], types.ModuleType],
) -> None:
    """A list of DataFrames is advised as owners of buffers, naming the list (not a pandas internal)."""
    pd = pytest.importorskip("pandas")
    mod = load_module("KEPT = []\n")
    mod.KEPT.append(pd.DataFrame({"a": range(10)}))
    holder = _holder(mod.KEPT[0]._mgr)
    text = _advice(holder)
    assert text.startswith(f"{mod.__name__}.KEPT keeps pandas.DataFrame objects, and each owns a buffer")
    assert "_mgr" not in text


def test_plain_bytes_are_a_python_leak_even_when_the_verdict_says_native() -> None:
    """bytes kept in a list are Python memory held by the list: no memray --native, no MALLOC_ARENA_MAX."""
    chunks = [b"x" * 65536]
    site = Site("app.py", 6, "main", 43_600_000, 698)
    holder = Holder("bytes", "__main__.CHUNKS[<int>]", "module_global", via=("list",))
    advice = advise("native_leak", sites=(site,), holders=(holder,))
    text = " ".join(advice)
    assert "Python leak held by __main__.CHUNKS" in text
    assert "memray" not in text and "MALLOC_ARENA_MAX" not in text and "native memory" not in text
    # an array over a native buffer keeps the native-memory advice
    tensor = Holder("torch.Tensor", "__main__.KEPT[<int>]", "module_global", via=("list",))
    native = " ".join(advise("native_leak", sites=(site,), holders=(tensor,)))
    assert "outside Python's heap" in native and "memray" in native
    assert chunks


def test_container_of_drops_the_item_subscripts() -> None:
    """The container named in advice is the path without its trailing item subscripts."""
    assert container_of("__main__.KEPT[<int>]") == "__main__.KEPT"
    assert container_of("app.SESSIONS[<str>][<int>]") == "app.SESSIONS"
    assert container_of("app.SEEN{…}") == "app.SEEN"
    assert container_of("main() locals.session") == "main() locals.session"
