"""Diagnosis: from sampled layers and live evidence to a verdict with sites, holders and advice."""

from __future__ import annotations

from ._classify import DiagnosisConfig, classify, layer_figures
from ._evidence import Evidence, TrimEvidence, WindowEvidence
from ._investigator import Investigator, InvestigatorConfig
from ._verdict import (
    LEAK_VERDICTS,
    SCHEMA,
    VERDICT_MEANINGS,
    CacheGrowthInfo,
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
    "DiagnosisConfig",
    "Evidence",
    "Holder",
    "Investigator",
    "InvestigatorConfig",
    "Site",
    "SourceFrame",
    "TrimEvidence",
    "TypeGrowth",
    "Verdict",
    "WindowEvidence",
    "classify",
    "layer_figures",
]
