"""Packaged examples: Prometheus alert rules (``alerts.yml``, with their promtool unit tests in
``alerts_test.yml``) and a Grafana dashboard (``grafana-dashboard.json``).

``python -m memwarden.exporters.assets`` prints where they are installed.
"""
