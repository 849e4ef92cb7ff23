"""The packaged alert rules and Grafana dashboard: valid, tested by promtool, naming only real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from memwarden import metrics
from memwarden.exporters import DERIVED

ASSETS = Path(str(resources.files("memwarden.exporters.assets")))
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\bmemwarden_[a-z0-9_]+\b")


def exposed_names() -> set[str]:
    """Every series name the collector can expose (a histogram as its _bucket, _sum and _count)."""
    names = {s.prometheus_name for s in metrics.CATALOGUE.values()}
    for d in DERIVED.values():
        names |= (
            {d.prometheus_name + x for x in ("_bucket", "_sum", "_count")}
            if d.kind == "histogram"
            else {d.prometheus_name}
        )
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_alert_rules_name_only_metrics_memwarden_exposes() -> None:
    """Every memwarden_* name in alerts.yml is a series the collector can expose."""
    text = (ASSETS / "alerts.yml").read_text()
    used = set(METRIC.findall(text))
    assert {
        "memwarden_growth_bytes_per_second",
        "memwarden_leak",
        "memwarden_process_cgroup_limit_bytes",
    } <= used
    assert used - exposed_names() == set()


def test_dashboard_is_grafana_json_naming_only_metrics_memwarden_exposes() -> None:
    """The dashboard parses, has unique panel ids and refIds, and its queries name only exposed series."""
    dash = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["title"]
    for p in dash["panels"]:
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
    used = {n for e in dashboard_exprs() for n in METRIC.findall(e)}
    assert {
        "memwarden_verdict",
        "memwarden_gc_pause_seconds_bucket",
        "memwarden_gpu_allocated_bytes",
        "memwarden_cache_entries",
        "memwarden_actions_total",
    } <= used
    assert used - exposed_names() == set()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_checks_and_unit_tests_the_alert_rules(tmp_path: Path) -> None:
    """promtool accepts alerts.yml and its unit tests pass: growth, leak and budget alerts fire as designed."""
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(ASSETS / name, tmp_path / name)
    check = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each dashboard query, its variables filled in, is valid PromQL (checked as a recording rule)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        filled = expr.replace("$job", ".*").replace("$instance", ".*").replace("$metric", ".*")
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(filled)}"]
    (tmp_path / "dash.yml").write_text("\n".join(lines) + "\n")
    check = subprocess.run(
        [PROMTOOL, "check", "rules", "dash.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
