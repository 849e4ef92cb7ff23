"""Public names that load on first use (PEP 562), so importing a package costs almost nothing.

A package lists ``{name: module}`` and gets a module ``__getattr__`` and ``__dir__``::

    __getattr__, __dir__ = lazy_names(__name__, globals(), {"Monitor": "._monitor", ...})

The first lookup of a name imports its module (relative to the package) and keeps the value in the
package's namespace, so later lookups are plain attribute reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_names(
    package: str, namespace: MutableMapping[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``where``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
