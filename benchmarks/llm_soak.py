"""Soak: chat turns across many sessions, against memwarden's bounded stores and the peers' memories.

A turn is one user message (20-60 words) and one assistant reply (40-150 words), with code,
accented words and emoji mixed in; each turn goes to a session drawn at random from
``--sessions``, and then the prompt for the next model call is built from the stored history
(what a chat service does per request). Three contenders, each in its own fresh process:

* ``memwarden``: ``SessionStore(max_sessions=10_000, max_bytes=64 MiB)`` of
  ``ConversationMemory(max_messages=20, max_tokens=2_000)``, evicted turns archived to an
  SQLite file in batches of 256 (``archive_every=256``); prompt = ``memory.as_chat()``.
* ``langchain``: a dict of ``InMemoryChatMessageHistory`` (what LangChain's
  ``RunnableWithMessageHistory`` examples use) and ``trim_messages(max_tokens=2_000,
  strategy="last")`` to build the prompt: the prompt is bounded, the stored history is not.
* ``llamaindex``: one ``SimpleChatStore`` with a ``ChatMemoryBuffer(token_limit=2_000)`` per
  session; prompt = ``memory.get()``. Its chat store keeps every message.

Every contender counts tokens with the same counter (``--counter``: ``approx`` = chars/4, the
default, so that the comparison is about storage and not tokenizer speed; ``exact`` = cl100k
with memwarden's offline counter, for all three). Each prints its RSS and the median time per
turn at 20 points of its run: memwarden's RSS must be flat after warm-up, and the time per turn
the same at the end as at the start.

    python benchmarks/llm_soak.py --turns 1000000 --sessions 100000 --peer-turns 50000
    python benchmarks/llm_soak.py --turns 50000 --sessions 5000 --peer-turns 50000   # quick

The peers run ``--peer-turns`` turns (their memory grows with every turn, so a million turns
would take gigabytes of this shared machine); their figures per turn and per stored message are
what they would be at the same point of memwarden's run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
POINTS = 20
BUDGET_TOKENS = 2_000

_TEXT = (
    "the order shipment refund account password invoice delivery address warehouse customer tracking "
    "parcel courier weekend monday please thanks could would update status payment card declined retry "
    "subscription plan upgrade cancel renew discount voucher def return import async await lambda "
    'naïve café résumé déjà Straße über 日本語 テスト 📦 ✅ 🙏 😊 {"id": 42} SELECT * FROM users;'
)
WORDS = _TEXT.split()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_counter(kind: str) -> Callable[[str], int]:
    if kind == "approx":
        return lambda text: math.ceil(len(text) / 4)
    from memwarden.llm import default_counter

    return default_counter().count


class Contender:
    """One way of storing chat history: ``turn(session, user, assistant)`` returns the prompt."""

    name = ""

    def turn(self, session: str, user: str, assistant: str) -> int:
        raise NotImplementedError

    def stored_messages(self) -> int:
        raise NotImplementedError

    def close(self) -> dict[str, Any]:
        return {}


class Memwarden(Contender):
    name = "memwarden"

    def __init__(self, counter: Callable[[str], int], tmp: Path) -> None:
        from memwarden.llm import SessionStore, SQLiteArchive

        class Counter:
            exact = True
            name = "soak"

            def count(self, text: str) -> int:
                return counter(text)

        self.archive = SQLiteArchive(tmp / "soak-archive.db")
        self.store = SessionStore(
            max_sessions=10_000,
            max_bytes=64 << 20,
            archive=self.archive,
            archive_every=256,
            memory={"max_messages": 20, "max_tokens": BUDGET_TOKENS, "counter": Counter()},
            name="soak.sessions",
        )

    def turn(self, session: str, user: str, assistant: str) -> int:
        self.store.append(session, "user", user)
        self.store.append(session, "assistant", assistant)
        return len(self.store.get(session).as_chat())

    def stored_messages(self) -> int:
        return sum(len(self.store.get(s)) for s in self.store.session_ids())

    def close(self) -> dict[str, Any]:
        self.store.flush()
        return {
            "archived_messages": self.archive.count(),
            "live_sessions": len(self.store),
            "store_nbytes": self.store.nbytes,
        }


class LangChain(Contender):
    name = "langchain"

    def __init__(self, counter: Callable[[str], int], tmp: Path) -> None:
        from langchain_core.chat_history import InMemoryChatMessageHistory
        from langchain_core.messages import trim_messages

        self._history_cls = InMemoryChatMessageHistory
        self._trim = trim_messages
        self.histories: dict[str, Any] = {}
        # trim_messages calls this with a list of messages, every time: it recounts the history
        self._count = lambda msgs: sum(
            counter(m.content if isinstance(m.content, str) else str(m.content)) for m in msgs
        )

    def turn(self, session: str, user: str, assistant: str) -> int:
        history = self.histories.get(session)
        if history is None:
            history = self.histories[session] = self._history_cls()
        history.add_user_message(user)
        history.add_ai_message(assistant)
        prompt = self._trim(
            history.messages, max_tokens=BUDGET_TOKENS, token_counter=self._count, strategy="last"
        )
        return len(prompt)

    def stored_messages(self) -> int:
        return sum(len(h.messages) for h in self.histories.values())


class LlamaIndex(Contender):
    name = "llamaindex"

    def __init__(self, counter: Callable[[str], int], tmp: Path) -> None:
        from llama_index.core.llms import ChatMessage
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.core.storage.chat_store import SimpleChatStore

        self._message = ChatMessage
        self._buffer = ChatMemoryBuffer
        self.chat_store = SimpleChatStore()
        self.memories: dict[str, Any] = {}
        self._tokenizer = lambda text: [0] * counter(text)

    def turn(self, session: str, user: str, assistant: str) -> int:
        memory = self.memories.get(session)
        if memory is None:
            memory = self.memories[session] = self._buffer.from_defaults(
                token_limit=BUDGET_TOKENS,
                chat_store=self.chat_store,
                chat_store_key=session,
                tokenizer_fn=self._tokenizer,
            )
        memory.put(self._message(role="user", content=user))
        memory.put(self._message(role="assistant", content=assistant))
        return len(memory.get())

    def stored_messages(self) -> int:
        return sum(len(self.chat_store.get_messages(k)) for k in self.chat_store.get_keys())


CONTENDERS: dict[str, type[Contender]] = {
    "memwarden": Memwarden,
    "langchain": LangChain,
    "llamaindex": LlamaIndex,
}


def text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def worker(name: str, turns: int, sessions: int, counter_kind: str) -> None:
    """Run one contender in this process; print one JSON line per point, then a summary line."""
    import gc

    rng = random.Random(2024)
    counter = make_counter(counter_kind)
    counter("warm the tokenizer up")
    gc.collect()
    base = rss_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        contender = CONTENDERS[name](counter, Path(tmp))
        every = max(1, turns // POINTS)
        times: list[float] = []
        t_start = time.perf_counter()
        for t in range(1, turns + 1):
            session = f"session-{rng.randrange(sessions):06d}"
            user, assistant = text(rng, 20, 60), text(rng, 40, 150)
            t0 = time.perf_counter()
            contender.turn(session, user, assistant)
            times.append(time.perf_counter() - t0)
            if t % every == 0 or t == turns:
                print(
                    json.dumps(
                        {
                            "point": t,
                            "rss": rss_bytes() - base,
                            "us_per_turn": statistics.median(times) * 1e6,
                            "elapsed_s": time.perf_counter() - t_start,
                        }
                    ),
                    flush=True,
                )
                times.clear()
        stored = contender.stored_messages()
        extra = contender.close()
        print(
            json.dumps(
                {
                    "done": True,
                    "stored_messages": stored,
                    "rss": rss_bytes() - base,
                    "wall_s": time.perf_counter() - t_start,
                    **extra,
                }
            ),
            flush=True,
        )


def run(name: str, turns: int, sessions: int, counter: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--turns",
        str(turns),
        "--sessions",
        str(sessions),
        "--counter",
        counter,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [x for x in lines if "point" in x], next(x for x in lines if x.get("done"))


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--peer-turns", type=int, default=50_000, help="turns for the peers (default 50,000)")
    ap.add_argument("--counter", choices=["approx", "exact"], default="approx")
    ap.add_argument("--only", nargs="*", choices=list(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.turns, args.sessions, args.counter)
        return 0
    results: dict[str, Any] = {
        "turns": args.turns,
        "sessions": args.sessions,
        "peer_turns": args.peer_turns,
        "counter": args.counter,
        "contenders": {},
    }
    for name in args.only:
        turns = args.turns if name == "memwarden" else min(args.turns, args.peer_turns)
        print(
            f"\n== {name}: {turns:,} turns across {args.sessions:,} sessions (counter: {args.counter})",
            flush=True,
        )
        points, done = run(name, turns, args.sessions, args.counter)
        print(f"{'turns':>10} {'RSS MiB':>8} {'us/turn':>9}")
        for p in points:
            print(f"{p['point']:>10,} {mib(p['rss'])} {p['us_per_turn']:9.1f}")
        first, last = points[len(points) // 4], points[-1]
        print(
            f"stored messages at the end: {done['stored_messages']:,}; RSS +{mib(done['rss']).strip()} MiB; "
            f"wall {done['wall_s']:.1f} s; us/turn at 25 % {first['us_per_turn']:.1f}, at the end "
            f"{last['us_per_turn']:.1f}"
            + "".join(f"; {k} {v:,}" for k, v in done.items() if k in ("archived_messages", "live_sessions"))
        )
        results["contenders"][name] = {"turns": turns, "points": points, **done}
    if len(results["contenders"]) > 1:
        print("\nsummary (same turns for all: the peers' run length)")
        n = min(c["turns"] for c in results["contenders"].values())
        print(
            f"{'contender':>12} {'RSS MiB at ' + format(n, ','):>20} {'median us/turn':>15} {'stored msgs':>12}"
        )
        for name, c in results["contenders"].items():
            at = min(c["points"], key=lambda p: abs(p["point"] - n))
            med = statistics.median(p["us_per_turn"] for p in c["points"] if p["point"] <= n)
            stored = c["stored_messages"] if c["turns"] == n else "-"
            print(f"{name:>12} {mib(at['rss']):>20} {med:15.1f} {stored:>12}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
