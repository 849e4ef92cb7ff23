"""The public API: a curated, sorted __all__ that imports cheaply and starts nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import memwarden

EXPECTED = {
    "ActionResult", "CacheInfo", "CacheRelease", "DiagnosisConfig", "EmptyCachePolicy", "Event", "Evidence",
    "Holder", "InvestigatorConfig", "MemwardenError", "Monitor", "Observer", "ProbeUnavailable",
    "ProgramNotFound", "Sample", "Sampler", "Site", "Tick", "Timeline", "TimelineError", "TracemallocWindow",
    "TypeGrowth", "UsageError", "Verdict", "__version__", "default_probes", "diagnose", "find_caches",
    "find_holders", "reset", "start", "stop", "unwatch", "watch",
}  # fmt: skip


def test_all_is_the_curated_list_sorted_and_importable() -> None:
    """__all__ holds exactly the public names, sorted, each importable from memwarden."""
    assert set(memwarden.__all__) == EXPECTED
    assert memwarden.__all__ == sorted(memwarden.__all__)
    for name in memwarden.__all__:
        assert hasattr(memwarden, name), name


def test_import_starts_nothing_and_imports_no_heavy_optional_module() -> None:
    """Importing memwarden starts no thread, no tracemalloc, and never imports torch or cachetools."""
    code = textwrap.dedent(
        """
        import sys, threading, tracemalloc, gc
        n = threading.active_count()
        callbacks = len(gc.callbacks)
        import memwarden
        assert threading.active_count() == n, "a thread was started"
        assert not tracemalloc.is_tracing()
        assert len(gc.callbacks) == callbacks
        for mod in ("torch", "cachetools", "pynvml"):
            assert mod not in sys.modules, mod
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_docs_name_only_public_modules() -> None:
    """No page under docs/ nor the README sends users to a private module (``memwarden.x._y``)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    private = re.compile(r"memwarden(?:\.[a-z]\w*)*\._[a-z]\w*")
    offenders = [
        f"{page.relative_to(root)}:{n}: {m.group(0)}"
        for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for m in private.finditer(line)
    ]
    assert not offenders, "\n".join(offenders)
