"""The ladder's steps on a real process: malloc_trim gives back what glibc kept, caches shrink and RSS falls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

MiB = 1 << 20

_SCRIPT = textwrap.dedent("""
    import functools, json, os
    from memwarden.guards.budget import Budget, measure_reader
    from memwarden.guards.ladder import CacheShrinker, Ladder
    from memwarden.probes.process import CgroupMemory

    rss = measure_reader("rss")
    MiB = 1 << 20

    # glibc retention: 2 KiB blocks (malloc, not pymalloc), all freed but the last, which pins the top
    blocks = [bytes(2048) * 1 for _ in range(100_000)]
    pin = blocks[-1]
    blocks = [b"x" * 2048 for _ in range(100_000)]
    keep = b"y" * 2048
    del blocks
    # a cache holding ~60 MiB
    @functools.lru_cache(maxsize=None)
    def page(n):
        return b"z" * (64 * 1024) + str(n).encode()
    for i in range(1000):
        page(i)

    shrinker = CacheShrinker()
    shrinker.register(page, "page")
    ladder = Ladder(read=rss, order=("alert", "collect", "trim", "caches"), caches=shrinker)
    before = rss()
    trim_only = Ladder(read=rss, order=("trim",)).climb("test", before, 0, "rss")
    after_trim = rss()
    taken = ladder.climb("test", after_trim, 0, "rss")
    print(json.dumps({"before": before, "after_trim": after_trim, "after": rss(),
                      "trim": trim_only[0].to_json(), "steps": [t.to_json() for t in taken],
                      "cache_size": page.cache_info().currsize}))
""")


def test_trim_gives_back_glibc_retained_memory_and_the_cache_step_frees_a_cache() -> None:
    """~200 MiB freed but retained by glibc come back with malloc_trim; clearing a 60 MiB lru_cache lowers RSS."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    doc = json.loads(out.stdout)
    assert doc["trim"]["action"] == "malloc_trim"
    assert doc["trim"]["freed_bytes"] > 100 * MiB, doc["trim"]
    assert doc["before"] - doc["after_trim"] > 100 * MiB
    steps = {s["action"]: s for s in doc["steps"]}
    assert list(steps) == ["alert", "gc_collect", "malloc_trim", "shrink_caches"]
    shrink = steps["shrink_caches"]
    assert shrink["details"]["caches"][0]["before"] == 1000 and shrink["details"]["caches"][0]["after"] == 0
    assert doc["cache_size"] == 0
    assert shrink["freed_bytes"] > 40 * MiB, shrink
