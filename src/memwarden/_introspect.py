"""Looking at the host's objects without running any of the host's code.

memwarden walks objects it did not make: everything in ``gc.get_objects()``, every module in
``sys.modules``. Plain Python introspection runs code those objects define:

- ``isinstance(obj, cls)``, when ``type(obj)`` is not a subclass of ``cls``, looks up
  ``obj.__class__``, so a ``__getattribute__`` of the object's class runs (torch's deprecated
  ``torch.distributed.reduce_op`` warns there; a lazy proxy may import or connect);
- ``module.__dict__`` and ``getattr(module, "__file__")`` go through a module subclass's
  ``__getattribute__`` (``importlib.util.LazyLoader`` modules load themselves there);
- ``cls.__module__`` or ``cls.__dict__`` go through the metaclass.

These helpers read the same facts through the C-level descriptors of ``type`` and
``types.ModuleType``, which no class can intercept, and test types with ``issubclass`` on
``type(obj)``, which reads the MRO only.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, TypeGuard, TypeVar, overload

__all__ = [
    "is_a",
    "module_file",
    "module_namespace",
    "type_bare_name",
    "type_bases",
    "type_flags",
    "type_module",
    "type_mro",
    "type_name",
    "type_namespace",
    "type_qualname",
]

_TYPE_MRO = type.__dict__["__mro__"]
_TYPE_BASES = type.__dict__["__bases__"]
_TYPE_FLAGS = type.__dict__["__flags__"]
_TYPE_DICT = type.__dict__["__dict__"]
_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_QUALNAME = type.__dict__["__qualname__"]
_TYPE_NAME = type.__dict__["__name__"]
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_T = TypeVar("_T")


@overload
def is_a(obj: object, classinfo: type[_T]) -> TypeGuard[_T]: ...


@overload
def is_a(obj: object, classinfo: tuple[type, ...]) -> bool: ...


def is_a(obj: object, classinfo: type | tuple[type, ...]) -> bool:
    """``isinstance(obj, classinfo)`` for builtin classes, without looking up ``obj.__class__``.

    Only for classes whose ``__subclasscheck__`` is ``type``'s own (builtins, plain classes):
    an ABC's runs Python code.
    """
    return issubclass(type(obj), classinfo)


def type_mro(cls: type) -> tuple[type, ...]:
    """``cls.__mro__``, read past any metaclass."""
    mro: tuple[type, ...] = _TYPE_MRO.__get__(cls, type)
    return mro


def type_namespace(cls: type) -> Mapping[str, Any]:
    """``cls.__dict__`` (a read-only view), read past any metaclass."""
    namespace: Mapping[str, Any] = _TYPE_DICT.__get__(cls, type)
    return namespace


def type_module(cls: type) -> str | None:
    """``cls.__module__`` when it is a string, read past any metaclass; else ``None``."""
    try:
        module = _TYPE_MODULE.__get__(cls, type)
    except Exception:  # a type whose __module__ slot was deleted
        return None
    return module if is_a(module, str) else None


def type_bases(cls: type) -> tuple[type, ...]:
    """``cls.__bases__``, read past any metaclass."""
    bases: tuple[type, ...] = _TYPE_BASES.__get__(cls, type)
    return bases


def type_flags(cls: type) -> int:
    """``cls.__flags__`` (the C-level ``tp_flags``), read past any metaclass."""
    flags: int = _TYPE_FLAGS.__get__(cls, type)
    return flags


def type_qualname(cls: type) -> str:
    """``cls.__qualname__`` (``__name__`` if that was deleted), read past any metaclass."""
    try:
        return str(_TYPE_QUALNAME.__get__(cls, type))
    except Exception:
        return str(_TYPE_NAME.__get__(cls, type))


def type_bare_name(cls: type) -> str:
    """``cls.__name__``, read past any metaclass."""
    return str(_TYPE_NAME.__get__(cls, type))


def type_name(cls: type) -> str:
    """``module.QualName`` of a type, builtins by their bare name, read past any metaclass."""
    qualname = type_qualname(cls)
    module = type_module(cls)
    if module is None or module == "builtins":
        return qualname
    return f"{module}.{qualname}"


def module_namespace(module: object) -> dict[str, Any] | None:
    """A module's globals, read past a module subclass's ``__getattribute__``; ``None`` if not a module.

    ``sys.modules`` holds whatever was put there: only real modules (and their subclasses)
    give a namespace.
    """
    if not is_a(module, types.ModuleType):
        return None
    try:
        namespace = _MODULE_DICT.__get__(module, types.ModuleType)
    except Exception:
        return None
    return namespace if type(namespace) is dict else None


def module_file(module: object) -> str | None:
    """A module's ``__file__`` when it is a string (read from its namespace), else ``None``."""
    namespace = module_namespace(module)
    if namespace is None:
        return None
    filename = namespace.get("__file__")
    return filename if is_a(filename, str) else None
