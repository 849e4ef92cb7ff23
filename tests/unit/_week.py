"""A recorded week of a service, written into a real SQLite timeline by a deterministic generator.

Used by ``tests/unit/test_long_history.py`` and ``benchmarks/long_history.py``. One row every 10 s
(60,480 for 7 days) holds the metrics the sampler records (about 70 keys, 2 KB of JSON), with:

- RSS jitter: Gaussian noise of 256 KiB, rounded to 4 KiB pages, and a one-sample burst of
  +24 MiB (a large request) every ~3,000 samples;
- a daily sawtooth of allocator churn: RSS, glibc's free chunks and the live block count climb
  4 MiB (20,000 blocks) over the day and fall back at 03:00 UTC, when traffic is low and the
  allocator trims;
- Python's allocated-block count with noise of 1,500 blocks;
- optionally a leak of ``leak_bytes_per_h`` from ``leak_start_s`` (until ``leak_stop_s``): a
  ``"python"`` leak grows the block count (one block per 96 bytes), pymalloc's in-use bytes and
  arenas along with RSS; a ``"native"`` leak grows malloc's in-use bytes with RSS, and nothing
  Python sees.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memwarden.timeline import Timeline

MiB = 1024 * 1024
DAY = 86_400.0
HOUR = 3_600.0
START = 1_796_083_200.0  # 2026-12-01 00:00:00 UTC
"""Wall time of the first sample."""


@dataclass(frozen=True)
class Week:
    """What was written: the file, how many rows, and where a leak truly began (wall epoch)."""

    path: Path
    rows: int
    leak_start_t: float | None
    leak_stop_t: float | None


def write_week(
    path: Path,
    *,
    days: float = 7.0,
    interval_s: float = 10.0,
    leak_start_s: float | None = None,
    leak_stop_s: float | None = None,
    leak_bytes_per_h: float = 2 * MiB,
    kind: Literal["python", "native"] = "python",
    seed: int = 0,
    lean: bool = False,
) -> Week:
    """Write ``days`` of samples every ``interval_s`` into a new timeline at ``path``.

    ``lean`` leaves out the 36 metrics that never move (rows of 1 KB instead of 2 KB: quicker to
    write, the same verdicts).
    """
    Timeline(path).close()  # the real schema, as memwarden writes it
    rng = random.Random(seed)
    n = int(days * DAY / interval_s)
    rows = []
    for i in range(n):
        offset = i * interval_s
        wall = START + offset + rng.uniform(0.0, 0.05)
        mono = 5_000.0 + offset + rng.uniform(0.0, 0.05)
        leaked = 0.0
        if leak_start_s is not None and offset > leak_start_s:
            leaked = (min(offset, leak_stop_s or math.inf) - leak_start_s) / HOUR * leak_bytes_per_h
        churn = ((wall - START - 3 * HOUR) % DAY) / DAY  # 0 at 03:00 UTC, 1 just before the next
        rows.append((wall, mono, _metrics(rng, leaked, churn, kind, "}" if lean else _STEADY)))
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO samples (t, mono, data) VALUES (?, ?, ?)", rows)
    conn.close()
    return Week(
        path,
        n,
        None if leak_start_s is None else START + leak_start_s,
        None if leak_stop_s is None else START + leak_stop_s,
    )


def _metrics(rng: random.Random, leaked: float, churn: float, kind: str, steady: str) -> str:
    """One row's JSON: the figures that move, then the ones that stay put."""
    python = leaked if kind == "python" else 0.0
    native = leaked if kind == "native" else 0.0
    burst = 24 * MiB if rng.random() < 1 / 3000 else 0.0
    rss = 420 * MiB + 4 * MiB * churn + leaked + burst + rng.gauss(0.0, 256 * 1024)
    rss = 4096 * round(rss / 4096)
    blocks = int(1_200_000 + 20_000 * churn + python / 96 + rng.gauss(0.0, 1500))
    pym_used = int(118 * MiB + 1.9 * MiB * churn + 0.9 * python + rng.gauss(0.0, 150_000))
    arenas = math.ceil((pym_used + 6 * MiB) / MiB)
    libc_used = int(210 * MiB + native + rng.gauss(0.0, 60_000))
    libc_free = int(9 * MiB + 2 * MiB * churn + rng.gauss(0.0, 100_000))
    gen2 = 40 + int(rng.random() * 3)
    moving = {
        "process.rss_bytes": rss,
        "process.pss_bytes": rss - 2 * MiB,
        "process.uss_bytes": rss - 3 * MiB,
        "process.anon_bytes": rss - 60 * MiB,
        "process.cgroup_usage_bytes": rss + 40 * MiB,
        "objects.allocated_blocks": blocks,
        "objects.gc_count_gen0": rng.randrange(700),
        "objects.gc_count_gen1": rng.randrange(10),
        "objects.gc_count_gen2": rng.randrange(10),
        "objects.gc_collections_gen2": gen2,
        "objects.gc_pauses_gen2": gen2,
        "pymalloc.arenas_allocated_total": arenas + 300,
        "pymalloc.arenas_highwater": arenas + 4,
        "pymalloc.arenas_current": arenas,
        "pymalloc.arena_bytes": arenas * MiB,
        "pymalloc.allocated_block_bytes": pym_used,
        "pymalloc.available_block_bytes": arenas * MiB - pym_used - 2 * MiB,
        "pymalloc.total_bytes": arenas * MiB,
        "pymalloc.pools_in_use": pym_used // 16384,
        "pymalloc.blocks_in_use": blocks - 20_000,
        "pymalloc.utilisation": pym_used / (arenas * MiB),
        "pymalloc.fragmentation": 1.0 - pym_used / (arenas * MiB),
        "libc.arena_bytes": libc_used + libc_free,
        "libc.in_use_bytes": libc_used,
        "libc.free_bytes": libc_free,
        "libc.free_chunks": 4000 + rng.randrange(500),
        "libc.fastbin_free_bytes": rng.randrange(20_000),
        "libc.top_releasable_bytes": rng.randrange(200_000),
    }
    return json.dumps(moving, separators=(",", ":"))[:-1] + steady


_STEADY = (
    ","
    + json.dumps(
        {
            "process.swap_bytes": 0,
            "process.vms_bytes": 2_400 * MiB,
            "process.cgroup_version": 2,
            "process.cgroup_limit_bytes": 2_048 * MiB,
            "process.cgroup_peak_bytes": 1_100 * MiB,
            "process.cgroup_oom_kills": 0,
            "process.cgroup_oom_events": 0,
            "process.cgroup_high_events": 0,
            "process.cgroup_max_events": 0,
            "process.cgroup_limit_path": None,
            "objects.gc_enabled": 1,
            "objects.gc_collections_gen0": 1_000_000,
            "objects.gc_collections_gen1": 90_000,
            "objects.gc_collected_total": 4_000_000,
            "objects.gc_uncollectable_total": 0,
            "objects.gc_garbage": 0,
            "objects.gc_frozen": 0,
            "objects.gc_pauses_total": 1_090_040,
            "objects.gc_pause_total_s": 310.5,
            "objects.gc_pause_max_s": 0.21,
            "objects.gc_pause_total_s_gen2": 6.2,
            "pymalloc.arena_size_bytes": MiB,
            "pymalloc.pool_size_bytes": 16384,
            "pymalloc.size_class_count": 32,
            "pymalloc.small_block_threshold": 512,
            "pymalloc.arenas_reclaimed": 300,
            "pymalloc.unused_pool_bytes": MiB,
            "pymalloc.pool_header_bytes": 300_000,
            "pymalloc.quantization_bytes": 500_000,
            "pymalloc.alignment_bytes": 131072,
            "libc.mmapped_bytes": 30 * MiB,
            "libc.mmapped_chunks": 12,
            "memwarden.attributed_rss_bytes": 0,
            "memwarden.work_s": 0.4,
            "memwarden.ring_samples": 600,
            "memwarden.timeline_bytes": 130 * MiB,
        },
        separators=(",", ":"),
    )[1:]
)
