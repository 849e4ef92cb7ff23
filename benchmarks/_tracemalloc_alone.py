"""Run a script under tracemalloc and print what a plain snapshot diff says (for detection.py).

Snapshot after 1 s, run to the end, snapshot again, print the top growing line: the workflow of a
user with tracemalloc alone.
"""

from __future__ import annotations

import runpy
import sys
import threading
import time
import tracemalloc

first: list[tracemalloc.Snapshot] = []


def _take_first() -> None:
    time.sleep(1.0)
    first.append(tracemalloc.take_snapshot())


def main() -> None:
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    threading.Thread(target=_take_first, daemon=True).start()
    g = runpy.run_path(script, run_name="__main__")
    last = tracemalloc.take_snapshot()
    del g
    if not first:
        print("(ran less than 1 s)")
        return
    stats = last.compare_to(first[0], "lineno")
    top = stats[0]
    frame = top.traceback[0]
    name = frame.filename.rsplit("/", 1)[-1]
    print(f"{name}:{frame.lineno} {top.size_diff / 1e6:+.2f} MB")


if __name__ == "__main__":
    main()
