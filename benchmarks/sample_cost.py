"""How long ``sample_objects`` takes to find live objects allocated at a growing site.

Run: ``python benchmarks/sample_cost.py`` (``PYTHONPATH=src`` from a checkout). For each heap size
it builds a background heap before tracing starts (a service's start-up state), starts
tracemalloc with 16 frames (the investigator's depth), runs a leaking "request" loop with
in-flight temporaries, and times how long ``sample_objects(..., survivors_first=True)`` takes
to find 20 objects (the investigator's sample) of three shapes:

- ``tracked``: instances with a list each, kept in a global dict (an embedding cache);
- ``small dicts``: dicts of strings (which the collector does not track) in a list per session,
  sessions kept in a class-level list (the class-registry scenario);
- ``str in old dict``: strings kept as values of a dict that existed before tracing began.

Prints the best of ``--repeat`` runs, in seconds of wall time.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import types

SOURCE = """
class Embedding:
    def __init__(self, key):
        self.key = key
        self.vector = [0.5] * 32                      # site: tracked

class Session:
    instances = []
    def __init__(self, i):
        self.cart = [{"sku": f"SKU-{i}-{k}", "qty": "1"} for k in range(24)]   # site: small dicts
        Session.instances.append(self)

EMBEDDINGS = {}
NAMES = {}

def request(i):
    temp = [str(i)] * 50                              # in flight, freed at once
    EMBEDDINGS[f"user-{i}"] = Embedding(i)
    Session(i)
    NAMES[i] = f"name-{i:08d}-" + "x" * 40            # site: str in old dict
    return len(temp)
"""


def site_line(marker: str) -> int:
    return next(n for n, text in enumerate(SOURCE.splitlines(), 1) if f"# site: {marker}" in text)


def build(background: int) -> types.ModuleType:
    module = types.ModuleType("bench_app")
    module.__file__ = "bench_app.py"
    exec(compile(SOURCE, "bench_app.py", "exec"), module.__dict__)
    sys.modules["bench_app"] = module
    module.BACKGROUND = [[i] for i in range(background // 2)]  # tracked lists, made before tracing
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    from memwarden.attribution._holders import sample_objects

    print(f"{'background objects':>18} {'shape':<18} {'found':>5} {'seconds':>8}")
    for background in (100_000, 1_000_000):
        module = build(background)
        gc.collect()
        tracemalloc.start(16)
        try:
            for i in range(args.requests):
                module.request(i)
            for shape, marker in (
                ("tracked", "tracked"),
                ("small dicts", "small dicts"),
                ("str in old dict", "str"),
            ):
                best = float("inf")
                found = 0
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    objs = sample_objects(
                        "bench_app.py",
                        site_line(marker),
                        limit=20,
                        time_budget_s=30,
                        survivors_first=True,
                    )
                    best = min(best, time.perf_counter() - started)
                    found = len(objs)
                    del objs
                print(f"{background:>18,} {shape:<18} {found:>5} {best:>8.3f}")
        finally:
            tracemalloc.stop()
            del sys.modules["bench_app"]
            del module
            gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
