"""NumPy, imported when a store first needs it, with an install hint when it is missing."""

from __future__ import annotations

import importlib
from typing import Any

from memwarden.exceptions import UsageError


def numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        raise UsageError('this store needs NumPy: pip install "memwarden[llm]"') from None
