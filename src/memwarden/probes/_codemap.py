"""Where a line of code lives: whose code it is, and which function it is in.

Two questions memwarden asks about every ``file:line`` it reports:

* *Whose code is this?* The user's own code, a library (the standard library or an installed
  package), or memwarden itself. Attribution walks a traceback to the innermost frame in the
  user's code, because "a dict grows in ``functools``" helps nobody while "your line 42 keeps
  calling it" does. memwarden's bundled examples (``memwarden/examples``) count as user code: they
  play the part of a user's program.
* *Which function is it in?* tracemalloc records only file and line. :class:`FunctionIndex`
  reads the source once, finds the innermost ``def``/``class`` around the line and returns its
  qualified name the way Python spells ``__qualname__`` (``EmbeddingCache.get``,
  ``make_handler.<locals>.handler``).
"""

from __future__ import annotations

import ast
import contextlib
import glob
import os
import site
import sys
import sysconfig
import threading
import tokenize
from collections import OrderedDict
from collections.abc import Iterable

_MEMWARDEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_USER_SUBPACKAGES = frozenset({"examples"})
"""memwarden subpackages that hold code playing the user's part (demo programs)."""


def memwarden_dirs() -> tuple[str, ...]:
    """The directory of the memwarden package, as written and as resolved (symlinks followed)."""
    real = os.path.realpath(_MEMWARDEN_DIR)
    return (_MEMWARDEN_DIR,) if real == _MEMWARDEN_DIR else (_MEMWARDEN_DIR, real)


def memwarden_file_patterns() -> list[str]:
    """``fnmatch`` patterns that match memwarden's own source files, but not its examples.

    ``*`` in fnmatch crosses ``/``, so ``memwarden/*.py`` would match the examples too: the
    package's top-level files are listed one by one, and each subpackage but the examples
    gets its own ``memwarden/<sub>/*``.
    """
    patterns: list[str] = []
    for root in memwarden_dirs():
        try:
            entries = sorted(os.listdir(root))
        except OSError:
            continue
        escaped = glob.escape(root)
        for entry in entries:
            if entry in _USER_SUBPACKAGES or entry.startswith(("__pycache__", ".")):
                continue
            path = os.path.join(root, entry)
            if os.path.isdir(path):
                patterns.append(os.path.join(escaped, glob.escape(entry), "*"))
            elif entry.endswith(".py"):
                patterns.append(os.path.join(escaped, glob.escape(entry)))
    return patterns


def _library_dirs() -> tuple[str, ...]:
    dirs: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if key in paths:
            dirs.add(paths[key])
    if hasattr(site, "getsitepackages"):  # some virtualenv versions ship a site.py without it
        dirs.update(site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site:
        dirs.add(user_site)
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        dirs.add(os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    out: set[str] = set()
    for d in dirs:
        out.add(os.path.normcase(os.path.abspath(d)))
        out.add(os.path.normcase(os.path.realpath(d)))
    return tuple(sorted(out))


class CodePlaces:
    """Tells the user's own source files from libraries and from memwarden itself.

    A file is *library* code when it lives in the standard library, in an installed package
    (``site-packages``), is a frozen module (``<frozen importlib._bootstrap>``) or is
    ``<string>`` (methods that ``dataclasses`` and ``namedtuple`` generate with ``exec``) or says it
    was generated (``<sqlalchemy generated __init__ for class app.Event>``); it is
    *memwarden* code when it lives in the memwarden package (the examples excepted); everything
    else, ``<stdin>`` and notebook cells included, is the user's.
    """

    def __init__(
        self, library_dirs: Iterable[str] | None = None, memwarden_roots: Iterable[str] | None = None
    ) -> None:
        self._library = tuple(
            os.path.join(d, "") for d in (library_dirs if library_dirs is not None else _library_dirs())
        )
        roots = tuple(memwarden_roots) if memwarden_roots is not None else memwarden_dirs()
        self._memwarden = tuple(os.path.join(os.path.normcase(r), "") for r in roots)
        self._memwarden_user = tuple(
            os.path.join(os.path.normcase(r), sub, "") for r in roots for sub in sorted(_USER_SUBPACKAGES)
        )
        self._kind: dict[str, str] = {}
        self._lock = threading.Lock()

    def kind(self, filename: str) -> str:
        """``"user"``, ``"library"`` or ``"memwarden"`` for a source file name."""
        cached = self._kind.get(filename)
        if cached is not None:
            return cached
        kind = self._classify(filename)
        with self._lock:
            if len(self._kind) > 8192:
                self._kind.clear()
            self._kind[filename] = kind
        return kind

    def is_user(self, filename: str) -> bool:
        """Whether a source file is the user's own code."""
        return self.kind(filename) == "user"

    def is_memwarden(self, filename: str) -> bool:
        """Whether a source file belongs to memwarden itself (its examples excepted)."""
        return self.kind(filename) == "memwarden"

    def _classify(self, filename: str) -> str:
        if filename.startswith("<"):
            # "<string>" is code generated by exec(): dataclass and namedtuple methods, mostly; the
            # libraries that name what they generate say so ("<sqlalchemy generated __init__ ...>",
            # "<attrs generated init ...>")
            generated = filename.startswith("<frozen ") or filename == "<string>" or " generated " in filename
            return "library" if generated else "user"
        norm = os.path.normcase(os.path.abspath(filename))
        candidates = {norm}
        with contextlib.suppress(OSError, ValueError):
            candidates.add(os.path.normcase(os.path.realpath(filename)))
        for path in candidates:
            if path.startswith(self._memwarden):
                return "user" if path.startswith(self._memwarden_user) else "memwarden"
        for path in candidates:
            if path.startswith(self._library):
                return "library"
        return "user"


_default_places: CodePlaces | None = None


def default_code_places() -> CodePlaces:
    """The :class:`CodePlaces` for this interpreter (built on first use)."""
    global _default_places  # noqa: PLW0603 - a lazily built, read-mostly lookup table
    if _default_places is None:
        _default_places = CodePlaces()
    return _default_places


_Scope = tuple[int, int, str]  # (first line, last line, qualified name)


def _scopes(tree: ast.AST) -> list[_Scope]:
    out: list[_Scope] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                end = getattr(child, "end_lineno", None) or child.lineno
                out.append((child.lineno, end, qual))
                if isinstance(child, ast.ClassDef):
                    visit(child, qual + ".")
                else:
                    visit(child, qual + ".<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


class FunctionIndex:
    """Names the function (or class body) that encloses a line of a source file.

    Lines outside any ``def``/``class`` are ``"<module>"``. Lambdas are not named on their own
    (a lambda usually shares its line with the function around it, and that name is the one
    a person looks for). Parsed files are cached per file and modification time; at most
    ``max_files`` are kept, least recently used first out. Thread-safe.
    """

    def __init__(self, max_files: int = 256) -> None:
        self._max = max(1, max_files)
        self._cache: OrderedDict[str, tuple[float, list[_Scope] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def function_at(self, filename: str, line: int) -> str | None:
        """The qualified name of the function around ``filename:line``; None if unreadable."""
        scopes = self._scopes_for(filename)
        if scopes is None:
            return None
        best: _Scope | None = None
        for scope in scopes:
            start, end, _ = scope
            if start <= line <= end and (
                best is None or start > best[0] or (start == best[0] and end < best[1])
            ):
                best = scope
        return best[2] if best is not None else "<module>"

    def _scopes_for(self, filename: str) -> list[_Scope] | None:
        if filename.startswith("<"):
            return None
        try:
            mtime = os.stat(filename).st_mtime
        except (OSError, ValueError):
            return None
        with self._lock:
            hit = self._cache.get(filename)
            if hit is not None and hit[0] == mtime:
                self._cache.move_to_end(filename)
                return hit[1]
        scopes: list[_Scope] | None
        try:
            with tokenize.open(filename) as fh:
                source = fh.read()
            scopes = _scopes(ast.parse(source, filename=filename))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            scopes = None
        with self._lock:
            self._cache[filename] = (mtime, scopes)
            self._cache.move_to_end(filename)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return scopes


_default_index: FunctionIndex | None = None


def default_function_index() -> FunctionIndex:
    """The shared :class:`FunctionIndex` (built on first use)."""
    global _default_index  # noqa: PLW0603 - a lazily built, bounded cache
    if _default_index is None:
        _default_index = FunctionIndex()
    return _default_index
