"""Exporters: memwarden's readings in Prometheus and OpenTelemetry, and the live endpoint.

Each exporter lives in its own module and imports its library only when used:
:mod:`memwarden.exporters.prometheus` (``pip install 'memwarden[prometheus]'``),
:mod:`memwarden.exporters.otel` (``'memwarden[otel]'``), :mod:`memwarden.exporters.endpoint`
(ASGI/WSGI, no dependency) and :mod:`memwarden.exporters.control` (a local Unix socket for
``memwarden top`` and ``memwarden status``). All of them read the same :class:`MonitorReadings`.
"""

from __future__ import annotations

from ._readings import DERIVED, SEMCONV, VERDICTS, Family, GcPauseHistogram, MonitorReadings, Point

__all__ = [
    "DERIVED",
    "SEMCONV",
    "VERDICTS",
    "Family",
    "GcPauseHistogram",
    "MonitorReadings",
    "Point",
]
