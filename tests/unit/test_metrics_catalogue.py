"""The metric catalogue: every metric declared once on its reading, named through constants."""

from __future__ import annotations

import ast
import dataclasses
import gc
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memwarden import metrics
from memwarden.exceptions import MemwardenError, UnknownMetric
from memwarden.metrics import CATALOGUE, READINGS, MetricSpec, markdown_table, metrics_of, name_of, spec
from memwarden.probes import (
    GcPauseTimer,
    GpuDeviceReading,
    GpuProbe,
    LibcProbe,
    ObjectsProbe,
    ProcessProbe,
    ProcessReading,
    PymallocProbe,
    TracingProbe,
    flatten,
)
from memwarden.probes._base import METRIC_KINDS, METRIC_UNITS, metric
from memwarden.probes.own import OwnFootprint, OwnFootprintProbe

from ._support import tracing

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "memwarden"
FIXTURES = ROOT / "tests" / "fixtures"
DOCS_PAGE = ROOT / "docs" / "reference" / "metrics.md"

#: What a metric name looks like in code: the guard test checks every literal of this shape.
METRIC_LIKE = re.compile(r"^(process|objects|pymalloc|libc|tracing|gpu|memwarden)\.[a-z0-9_.]+$")
PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
#: Suffixes OpenMetrics gives the samples of summaries, histograms and info metrics.
RESERVED_SUFFIXES = ("_count", "_sum", "_bucket", "_created", "_info", "_gcount", "_gsum")


# -- real readings, one per layer ------------------------------------------------------------------


def _process(tmp_path: Path) -> Any:
    return ProcessProbe().read()


def _objects(tmp_path: Path) -> Any:
    with GcPauseTimer() as timer:
        gc.collect()
        return ObjectsProbe(pause_timer=timer).read()


def _pymalloc(tmp_path: Path) -> Any:
    probe = PymallocProbe()
    if not probe.available():  # e.g. the test run traces with tracemalloc: replay this Python's report
        fixture = FIXTURES / "pymalloc" / f"python-{sys.version_info.major}.{sys.version_info.minor}.txt"
        text = (
            fixture.read_text()
            if fixture.exists()
            else (FIXTURES / "pymalloc" / "python-3.11.txt").read_text()
        )
        probe = PymallocProbe(source=lambda: text)
    return probe.read()


def _libc(tmp_path: Path) -> Any:
    probe = LibcProbe()
    available = probe.available()
    if not available:
        pytest.skip(f"the libc layer cannot be read here: {available.reason}")
    return probe.read()


def _tracing(tmp_path: Path) -> Any:
    with tracing():
        return TracingProbe().read()


def _gpu(tmp_path: Path) -> Any:
    stats = json.loads((FIXTURES / "gpu" / "stats_retention_end.json").read_text())
    return GpuProbe(
        torch_module=lambda: None,
        stats_source=lambda index: stats,
        device_count_source=lambda: 2,
        nvml=lambda index: (3 << 30, 80 << 30),
    ).read()


def _memwarden(tmp_path: Path) -> Any:
    footprint = OwnFootprint()
    timeline = tmp_path / "run.db"
    timeline.write_bytes(b"x" * 4096)
    footprint.timeline_path = str(timeline)
    with footprint.measure():
        _ = [bytearray(1024) for _ in range(100)]
    return OwnFootprintProbe(footprint).read()


READERS: dict[str, Callable[[Path], Any]] = {
    "process": _process,
    "objects": _objects,
    "pymalloc": _pymalloc,
    "libc": _libc,
    "tracing": _tracing,
    "gpu": _gpu,
    "memwarden": _memwarden,
}


def test_every_layer_of_the_catalogue_is_read_here() -> None:
    """The readers below cover exactly the layers the catalogue knows."""
    assert set(READERS) == set(READINGS)


@pytest.mark.parametrize("layer", list(READERS))
def test_flatten_emits_exactly_the_declared_metrics(layer: str, tmp_path: Path) -> None:
    """Each name a real reading flattens to has a spec, and each spec of its layer is in the flat form."""
    reading = READERS[layer](tmp_path)
    assert isinstance(reading, READINGS[layer])
    emitted = set(flatten(layer, reading))
    declared = {s.name for s in metrics_of(layer)}
    assert emitted - declared == set(), f"flattened but declared by no field: {sorted(emitted - declared)}"
    assert declared - emitted == set(), f"declared but not flattened: {sorted(declared - emitted)}"


def test_a_reading_without_a_cgroup_leaves_its_text_fields_out(tmp_path: Path) -> None:
    """An unknown cgroup path (None) stays out of the time series; the unknown numbers stay in as None."""
    tree = Path(shutil.copytree(FIXTURES / "process" / "v2-nested", tmp_path / "tree"))
    (tree / "proc" / "self" / "cgroup").unlink()
    reading = ProcessProbe(tree / "proc", "self", tree).read()
    assert reading.cgroup_path is None
    flat = flatten("process", reading)
    assert "process.cgroup_path" not in flat
    assert "process.cgroup_limit_path" not in flat
    assert "process.source" not in flat
    assert "process.cgroup_limit_bytes" in flat
    assert flat["process.cgroup_limit_bytes"] is None
    assert set(flat) == {s.name for s in metrics_of("process")}


def test_flatten_of_a_reading_that_declares_nothing_keeps_its_numbers() -> None:
    """A reading of the user's own probe, with no declarations, still flattens its numbers and flags."""

    @dataclasses.dataclass(frozen=True)
    class QueueReading:
        depth: int
        busy: bool
        oldest_s: float | None
        name: str | None

    flat = flatten("queue", QueueReading(depth=3, busy=True, oldest_s=None, name=None))
    assert flat == {"queue.depth": 3, "queue.busy": 1}


def test_gpu_device_fields_share_the_totals_specs() -> None:
    """Every number of a per-device GPU reading (the index aside) has the spec of the gpu total of that name."""
    numeric = [
        f.name
        for f in dataclasses.fields(GpuDeviceReading)
        if f.name not in ("index", "name")  # the device's label, not a measurement
    ]
    assert numeric
    for name in numeric:
        assert f"gpu.{name}" in CATALOGUE, name


# -- the specs themselves --------------------------------------------------------------------------


def test_every_spec_has_a_unit_a_kind_and_one_line_of_help() -> None:
    """Units and kinds come from the known sets; help is one non-empty line; names match layer.field."""
    assert len(CATALOGUE) > 50
    for name, s in CATALOGUE.items():
        assert isinstance(s, MetricSpec)
        assert s.name == name == f"{s.layer}.{s.field}"
        assert s.unit in METRIC_UNITS, name
        assert s.kind in METRIC_KINDS, name
        assert s.help.strip() and "\n" not in s.help, name
        assert METRIC_LIKE.match(name), name


def test_counts_of_events_are_counters_and_sizes_are_gauges() -> None:
    """The monotonic counts named in the issue are counters; sizes and ratios read now are gauges."""
    for name in (
        metrics.OBJECTS_GC_COLLECTIONS_GEN2,
        metrics.OBJECTS_GC_COLLECTED_TOTAL,
        metrics.PROCESS_CGROUP_OOM_KILLS,
        metrics.GPU_OOMS,
        metrics.GPU_ALLOC_RETRIES,
        metrics.OBJECTS_GC_PAUSE_TOTAL_S,
    ):
        assert spec(name).kind == "counter", name
    for name in (
        metrics.PROCESS_RSS_BYTES,
        metrics.LIBC_IN_USE_BYTES,
        metrics.GPU_ALLOCATED_BYTES,
        metrics.PYMALLOC_UTILISATION,
        metrics.OBJECTS_ALLOCATED_BLOCKS,
    ):
        assert spec(name).kind == "gauge", name
    assert spec(metrics.OBJECTS_GC_PAUSE_MAX_S).unit == "seconds"
    assert spec(metrics.PYMALLOC_FRAGMENTATION).unit == "ratio"
    assert spec(metrics.OBJECTS_ALLOCATED_BLOCKS).unit == ""


def test_prometheus_names_are_valid_and_unique() -> None:
    """Names match Prometheus' grammar, counters end in _total, units are suffixes, no family clashes."""
    names = [s.prometheus_name for s in CATALOGUE.values()]
    assert len(set(names)) == len(names)
    families = []
    for s in CATALOGUE.values():
        name = s.prometheus_name
        assert PROMETHEUS_NAME.match(name), name
        assert name.startswith("memwarden_")
        assert "memwarden_memwarden" not in name
        assert "__" not in name and not name.endswith("_")
        if s.kind == "counter":
            assert name.endswith("_total"), name
            family = name.removesuffix("_total")
        else:
            assert not name.endswith("_total"), name
            family = name
        assert not family.endswith(RESERVED_SUFFIXES), name
        if s.unit:
            assert family.endswith(f"_{s.unit}"), name
            assert f"_{s.unit}_" not in family, name  # the unit once, as the suffix
        families.append(family)
    assert len(set(families)) == len(families)


def test_prometheus_name_examples() -> None:
    """The rule gives the names exporters and dashboards will use."""
    assert spec("process.rss_bytes").prometheus_name == "memwarden_process_rss_bytes"
    assert (
        spec("objects.gc_collections_gen2").prometheus_name == "memwarden_objects_gc_collections_gen2_total"
    )
    assert spec("objects.gc_collected_total").prometheus_name == "memwarden_objects_gc_collected_total"
    assert spec("objects.gc_pause_total_s").prometheus_name == "memwarden_objects_gc_pause_seconds_total"
    assert spec("objects.gc_pause_max_s").prometheus_name == "memwarden_objects_gc_pause_max_seconds"
    assert spec("pymalloc.utilisation").prometheus_name == "memwarden_pymalloc_utilisation_ratio"
    assert spec("memwarden.work_s").prometheus_name == "memwarden_work_seconds_total"
    assert spec("gpu.device_count").prometheus_name == "memwarden_gpu_devices"


def test_a_declaration_with_an_unknown_unit_kind_or_no_help_is_refused() -> None:
    """metric() refuses what exporters could not publish, when the reading class is defined."""
    with pytest.raises(ValueError, match="unit"):
        metric("furlongs", "gauge", "distance")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        metric("bytes", "histogram", "sizes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="help"):
        metric("bytes", "gauge", "  ")


# -- looking metrics up ----------------------------------------------------------------------------


def test_every_metric_has_its_constant_and_every_constant_is_a_metric() -> None:
    """<LAYER>_<FIELD> names each metric; the module exports exactly those constants and the API."""
    constants = {
        attr: value
        for attr, value in vars(metrics).items()
        if attr.isupper() and isinstance(value, str) and not attr.startswith("_")
    }
    assert set(constants.values()) == set(CATALOGUE)
    for attr, value in constants.items():
        assert attr == value.replace(".", "_").upper(), attr
    api = {
        "CATALOGUE",
        "READINGS",
        "MetricSpec",
        "UnknownMetric",
        "markdown_table",
        "metrics_of",
        "name_of",
        "spec",
    }
    assert set(metrics.__all__) == api | set(constants)
    assert len(metrics.__all__) == len(set(metrics.__all__))


def test_name_of_gives_the_flat_name() -> None:
    """name_of(ProcessReading, "rss_bytes") is the name the sampler stores."""
    assert name_of(ProcessReading, "rss_bytes") == "process.rss_bytes" == metrics.PROCESS_RSS_BYTES


def test_name_of_an_unknown_field_raises() -> None:
    """A renamed or misspelt field fails loudly, naming the reading and the field."""
    with pytest.raises(UnknownMetric, match=r"ProcessReading has no field 'rss'") as caught:
        name_of(ProcessReading, "rss")
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, MemwardenError)
    assert caught.value.name == "process.rss"
    assert "did you mean process.rss_bytes" in str(caught.value)


def test_name_of_a_field_that_declares_no_metric_raises() -> None:
    """A text field is not a metric: name_of refuses it."""
    with pytest.raises(UnknownMetric, match="declares no metric"):
        name_of(ProcessReading, "cgroup_path")


def test_name_of_a_class_that_is_no_reading_raises() -> None:
    """Only the readings the sampler records have metrics."""
    with pytest.raises(UnknownMetric, match="not a reading of any layer"):
        name_of(GpuDeviceReading, "allocated_bytes")


def test_spec_of_an_unknown_name_raises_a_clear_key_error() -> None:
    """spec() names the unknown metric and the close ones; the message is not quoted like a bare KeyError."""
    with pytest.raises(KeyError) as caught:
        spec("libc.in_use")
    assert isinstance(caught.value, UnknownMetric)
    assert str(caught.value) == "libc.in_use: no probe declares this metric (did you mean libc.in_use_bytes?)"
    with pytest.raises(UnknownMetric, match=r"no probe declares this metric$"):
        spec("zzz")


def test_metrics_of_a_layer_in_declaration_order() -> None:
    """metrics_of gives one layer's specs in the order its reading declares them."""
    libc = metrics_of("libc")
    assert [s.field for s in libc][:4] == ["arena_bytes", "mmapped_bytes", "mmapped_chunks", "in_use_bytes"]
    assert all(s.layer == "libc" for s in libc)
    assert sum(len(metrics_of(layer)) for layer in READINGS) == len(CATALOGUE)
    with pytest.raises(UnknownMetric, match="no such layer"):
        metrics_of("heap")


# -- the guard: code never names a metric that no probe declares --------------------------------


def _metric_literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` shaped like a metric name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and METRIC_LIKE.match(node.value):
            yield node.lineno, node.value


def _is_memwarden_module(text: str) -> bool:
    """Whether ``memwarden.x.y`` names one of memwarden's modules (a logger, a module check), or a
    name in one (``memwarden.examples.chat_sessions.store``), not a metric."""
    parts = text.split(".")
    if parts[0] != "memwarden":
        return False
    for end in (len(parts), len(parts) - 1):
        path = PACKAGE.joinpath(*parts[1:end])
        if end > 1 and (path.is_dir() or path.with_suffix(".py").is_file()):
            return True
    return False


def _unknown_metric_names(root: Path, package: Path) -> list[str]:
    """``file:line: 'name'`` for each metric-shaped literal under ``root`` that the catalogue lacks."""
    offenders = []
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(package)
        if relative.parts[0] in ("probes", "metrics"):
            continue  # where metrics are declared and catalogued
        for line, text in _metric_literals(file.read_text(encoding="utf-8")):
            if text not in CATALOGUE and not _is_memwarden_module(text):
                offenders.append(f"{file.relative_to(root.parent)}:{line}: {text!r}")
    return offenders


def test_no_code_names_a_metric_that_no_probe_declares() -> None:
    """Every metric-shaped string literal in memwarden's code (probes and catalogue aside) is in the catalogue."""
    offenders = _unknown_metric_names(PACKAGE, PACKAGE)
    assert offenders == [], "metric names no probe declares:\n" + "\n".join(offenders)


def test_the_guard_finds_a_misspelt_metric(tmp_path: Path) -> None:
    """The scan reports file and line of an undeclared name, and lets declared names and module names pass."""
    package = tmp_path / "memwarden"
    (package / "diagnosis").mkdir(parents=True)
    (package / "probes").mkdir()
    (package / "diagnosis" / "rules.py").write_text(
        '"""Rules (process.rss_bytes in prose is not a literal of its own)."""\n'
        'RSS = "process.rss_bytes"\n'
        'FREE = "libc.free_byte"\n'
        'LOGGER = "memwarden.sampler"\n'
        'def f(m):\n    return m.get("gpu.alocated_bytes") or m.get(f"gpu.{RSS}")\n',
        encoding="utf-8",
    )
    (package / "probes" / "x.py").write_text('NAME = "process.not_checked_here"\n', encoding="utf-8")
    assert _unknown_metric_names(package, package) == [
        "memwarden/diagnosis/rules.py:3: 'libc.free_byte'",
        "memwarden/diagnosis/rules.py:6: 'gpu.alocated_bytes'",
    ]


# -- the docs page and the command that writes its table ------------------------------------------


def _generated_part(page: str) -> str:
    start = page.index("<!-- generated by `python -m memwarden.metrics`")
    end = page.index("<!-- end of generated table -->")
    return page[page.index("\n", start) + 1 : end].strip() + "\n"


def test_the_docs_table_is_the_catalogue() -> None:
    """docs/reference/metrics.md shows exactly the table the catalogue gives (regenerate it if this fails)."""
    table = markdown_table()
    assert _generated_part(DOCS_PAGE.read_text(encoding="utf-8")) == table, (
        "docs/reference/metrics.md is out of date: replace its table by `python -m memwarden.metrics`"
    )
    assert table.count("\n") == len(CATALOGUE) + 2
    assert "| `process.rss_bytes` | `memwarden_process_rss_bytes` | bytes | gauge |" in table


def test_python_m_memwarden_metrics_prints_the_table() -> None:
    """`python -m memwarden.metrics` prints the Markdown table, with no warning."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "memwarden.metrics"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == markdown_table()


# -- importing the catalogue costs nothing ----------------------------------------------------------

_IMPORT_CHECK = """
import sys
seen = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(("/proc", "/sys")):
        seen.append(args[0])
    elif event in ("ctypes.dlopen", "subprocess.Popen", "os.system"):
        seen.append(event)
sys.addaudithook(hook)
import memwarden.metrics
heavy = sorted(m for m in ("torch", "pynvml", "psutil", "numpy") if m in sys.modules)
print(seen, heavy)
"""


def test_importing_the_catalogue_reads_nothing_and_imports_nothing_heavy() -> None:
    """Importing memwarden.metrics opens no /proc or /sys file, loads no C library, imports no torch."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"
