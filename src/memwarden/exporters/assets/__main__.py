"""Print the paths of the packaged alert rules and Grafana dashboard."""

from pathlib import Path

here = Path(__file__).parent
for name in ("alerts.yml", "alerts_test.yml", "grafana-dashboard.json"):
    print(here / name)
