"""Event importer that commits its SQLAlchemy Session every few hundred rows and starts afresh.

``sqlalchemy_session_leak`` fixed: rows are added to a Session opened per batch of ``BATCH_SIZE``
(200) rows on the same SQLite file; each batch is committed and the Session closed, which expunges
its objects. The database file grows on disk; memory holds at most one batch: flat, after
SQLite's page cache (2 MB a connection by default) warms up to its bound in the first ~4 s, which
reads as a ``plateau``.

memwarden-expect: stable|plateau
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
BATCH_SIZE = 200


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
    in_batch = 0
    rng = random.Random(5)
    per_tick = EVENTS_PER_SECOND // 100
    deadline = time.monotonic() + SECONDS
    next_tick = time.monotonic()
    imported = 0
    while time.monotonic() < deadline:
        for _ in range(per_tick):
            session.add(make_event(rng, imported))
            imported += 1
            in_batch += 1
        if in_batch >= BATCH_SIZE:
            session.commit()
            session.close()
            session = Session(engine, autoflush=False)
            in_batch = 0
        next_tick += 0.01
        time.sleep(max(0.0, next_tick - time.monotonic()))
    session.commit()
    session.close()
    print(f"sqlalchemy_session_ok: {imported} events imported")


if __name__ == "__main__":
    main()
