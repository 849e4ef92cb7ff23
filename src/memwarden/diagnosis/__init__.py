"""Diagnosis: from sampled layers and evidence to a verdict with sites, holders and advice.

Everything here is pure: the same samples and evidence give the same verdict, and nothing in this
package reads the live process or acts on it. Live work (tracemalloc windows, the type census, holder
searches, cache scans, GPU allocation history) is in :mod:`memwarden.attribution`; actions on the
host (``gc.collect()``, ``malloc_trim``) are in :mod:`memwarden.guards`.
"""

from __future__ import annotations

from ._classify import DiagnosisConfig, classify, layer_figures
from ._evidence import Evidence, TrimEvidence, WindowEvidence
from ._gpu import GpuFinding, GpuThresholds, diagnose_gpu
from ._trend import ChangePoint, MannKendall, Trend, analyse, detect_change, mann_kendall, theil_sen
from ._verdict import (
    LEAK_VERDICTS,
    SCHEMA,
    VERDICT_MEANINGS,
    CacheGrowthInfo,
    EvidenceItem,
    GrowthStart,
    Holder,
    Site,
    SourceFrame,
    TypeGrowth,
    Verdict,
)

__all__ = [
    "LEAK_VERDICTS",
    "SCHEMA",
    "VERDICT_MEANINGS",
    "CacheGrowthInfo",
    "ChangePoint",
    "DiagnosisConfig",
    "Evidence",
    "EvidenceItem",
    "GpuFinding",
    "GpuThresholds",
    "GrowthStart",
    "Holder",
    "MannKendall",
    "Site",
    "SourceFrame",
    "Trend",
    "TrimEvidence",
    "TypeGrowth",
    "Verdict",
    "WindowEvidence",
    "analyse",
    "classify",
    "detect_change",
    "diagnose_gpu",
    "layer_figures",
    "mann_kendall",
    "theil_sen",
]
