"""The terminal summary a person reads: sites told apart or merged, no empty holder lines, no path
wrapped, and a growth line that says why Python's figure is above RSS's."""

from __future__ import annotations

import io

from memwarden.diagnosis._verdict import Holder, Site, SourceFrame, Verdict
from memwarden.probes._codemap import CodePlaces
from memwarden.reporters.terminal import render_verdict, short_path, site_rows

LIB = "/usr/lib/python3.11/site-packages"
PLACES = CodePlaces(library_dirs=[LIB], memwarden_roots=["/nowhere/memwarden"])


def _site(size: int, tb: list[tuple[str, int, str]]) -> Site:
    frames = tuple(SourceFrame(f, n, fn) for f, n, fn in tb)
    return Site("/srv/app.py", 48, "main", size, size // 100, frames)


def _verdict(**kw: object) -> Verdict:
    base: dict[str, object] = {
        "verdict": "python_leak",
        "confidence": 0.9,
        "summary": "Python objects leak at +1 MiB/s.",
        "duration_s": 10.0,
        "samples": 10,
        "growth_bytes_per_s": {"rss": 1e6, "python": 1e6, "native": 0.0, "gpu": None},
    }
    base.update(kw)
    return Verdict(**base)  # type: ignore[arg-type]


def _render(v: Verdict) -> str:
    out = io.StringIO()
    render_verdict(v, out, color=False)
    return out.getvalue()


def test_sites_that_differ_only_in_library_frames_are_one_row() -> None:
    """Three rows of app.py:48 in main() whose tracebacks differ only inside pandas are merged, growth summed."""
    user = [("/srv/app.py", 60, "<module>"), ("/srv/app.py", 48, "main")]
    sites = [
        _site(3000 * (i + 1), [*user, (f"{LIB}/pandas/core/frame.py", 500 + i, "__init__")]) for i in range(3)
    ]
    rows = site_rows(sites, PLACES)
    assert [label for label, _ in rows] == ["/srv/app.py:48 in main()"]
    assert rows[0][1].size_diff_bytes == 18000


def test_sites_reached_from_different_callers_name_the_frame_that_differs() -> None:
    """The same line reached from two callers reads `via` the first of the user's frames where they part."""
    a = _site(
        5000, [("/srv/app.py", 60, "<module>"), ("/srv/app.py", 70, "serve"), ("/srv/app.py", 48, "main")]
    )
    b = _site(
        4000, [("/srv/app.py", 60, "<module>"), ("/srv/app.py", 90, "batch"), ("/srv/app.py", 48, "main")]
    )
    labels = [label for label, _ in site_rows([a, b], PLACES)]
    assert labels == [
        "/srv/app.py:48 in main() via /srv/app.py:70 in serve()",
        "/srv/app.py:48 in main() via /srv/app.py:90 in batch()",
    ]


def test_paths_are_shortened_to_the_working_directory_or_the_package() -> None:
    """A path under the working directory is relative; an installed one starts at its package."""
    assert short_path("/srv/proj/app/main.py", "/srv/proj") == "app/main.py"
    assert short_path(f"{LIB}/pandas/core/frame.py", "/srv/proj") == "pandas/core/frame.py"
    assert short_path("<stdin>", "/srv/proj") == "<stdin>"


def test_no_empty_holder_line_and_no_wrapped_path() -> None:
    """A plateau whose holder was not found prints no `held by`; long sentences keep their paths on one line."""
    lonely = Holder("dict", "<not found: held only by the caller, a C extension or the C stack>")
    text = _render(_verdict(verdict="plateau", summary="Memory grew then levelled off.", holders=(lonely,)))
    assert "held by" not in text and "<not found" not in text
    deep = "app.services.cache.REGISTRY.entries[<str>].payload.items[<int>]"
    long = _verdict(
        summary="Python objects leak at +1 MiB/s allocated at /srv/very/long/path/to/the/module/app.py:48 "
        f"in main() and held by {deep}, which keeps every request body it was ever given.",
        holders=(Holder("bytes", deep, "module_global"),),
    )
    text = _render(long)
    assert "/srv/very/long/path/to/the/module/app.py:48" in text
    assert f"held by: {deep}" in text


def test_python_above_rss_says_why() -> None:
    """A growth line whose Python figure exceeds RSS's explains it; one where it does not, says nothing more."""
    above = _render(_verdict(growth_bytes_per_s={"rss": 1e6, "python": 3e6, "native": 0.0, "gpu": None}))
    line = next(x for x in above.splitlines() if x.startswith("growth:"))
    assert "python is above rss" in line
    below = _render(_verdict())
    assert "above rss" not in below
