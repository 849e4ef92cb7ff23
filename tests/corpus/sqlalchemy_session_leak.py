"""Event importer whose SQLAlchemy Session, a local of ``main()``, holds every row it was given.

``main()`` opens one ``Session`` (``autoflush=False``) on a SQLite file and, per incoming event,
``session.add(make_event(...))``; it commits only when a batch reaches ``BATCH_SIZE`` rows, a
number meant for a nightly file and never reached by the live stream. Until it is flushed, the
Session keeps a strong reference to every pending object (``session.new``), with its ~600 B
payload: about 0.7 MB/s of ORM objects that nothing but a local variable of ``main()`` reaches.
The fix: commit (and ``expunge_all()``) every few hundred rows, or a fresh Session per batch.

memwarden-expect: python_leak
memwarden-leak-function: make_event
memwarden-holder: main() locals.session
"""

from __future__ import annotations

import os
import random
import tempfile
import time

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SECONDS = float(os.environ.get("MEMWARDEN_SCENARIO_SECONDS", "8"))
EVENTS_PER_SECOND = 800
BATCH_SIZE = 1_000_000


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str]


def make_event(rng: random.Random, i: int) -> Event:
    payload = ",".join(f"{rng.random():.6f}" for _ in range(70))
    return Event(
        id=i, kind=rng.choice(("click", "view", "buy")), source=f"host-{rng.randrange(400)}", payload=payload
    )


def main() -> None:
    folder = tempfile.mkdtemp(prefix="corpus-sqla-")
    engine = create_engine(f"sqlite:///{folder}/events.db")
    Base.metadata.create_all(engine)
    session = Session(engine, autoflush=False)
    rng = random.Random(5)
    per_tick = EVENTS_PER_SECOND // 100
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    imported = 0
    while time.monotonic() < deadline:
        for _ in range(per_tick):
            session.add(make_event(rng, imported))
            imported += 1
        if len(session.new) >= BATCH_SIZE:
            session.commit()
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"sqlalchemy_session_leak: {imported} events, {len(session.new)} pending in the session")


if __name__ == "__main__":
    main()
