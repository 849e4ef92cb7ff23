"""Every error memwarden raises on purpose.

The tree::

    MemwardenError
    ├── ProbeUnavailable          a layer cannot be read here (no /proc, no glibc, no CUDA ...)
    ├── UsageError (ValueError)   bad input from the user: a bad interval, a bad option
    ├── ProgramNotFound (FileNotFoundError)
    │                             the script or module given to ``memwarden run`` does not exist
    │                             or cannot be run (``exit_code``: python's for the same case)
    ├── TimelineError (OSError)   a timeline file cannot be opened, is not a memwarden timeline,
    │                             or is corrupt
    ├── UnknownMetric (KeyError)  a metric name no probe declares (see :mod:`memwarden.metrics`)
    ├── MessageTooLarge (UsageError)
    │                             one message is over a conversation's whole budget (memwarden.llm)
    ├── TokenizerError (RuntimeError)
    │                             a token counter is missing or fails its known-count self-check
    └── ArchiveError (OSError)    long-term storage (SQLite, Redis) cannot be written or read
        └── ArchiveUnavailable    the archive is unreachable now (Redis gone); nothing was dropped

Each carries a message that says the cause and, where there is one, the fix; the command line
prints it as one line and exits non-zero.
"""

from __future__ import annotations


class MemwardenError(Exception):
    """The root of every error memwarden raises on purpose."""


class ProbeUnavailable(MemwardenError):
    """A memory layer cannot be read in this process; ``reason`` says why."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"{layer}: unavailable ({reason})")
        self.layer = layer
        self.reason = reason


class UsageError(MemwardenError, ValueError):
    """The user asked for something that cannot be done as asked."""


class ProgramNotFound(MemwardenError, FileNotFoundError):
    """The script or module to run does not exist, or cannot be run.

    ``exit_code`` is what ``python`` exits with in the same case, and so what ``memwarden run`` exits
    with: 2 for a script it cannot open, 1 for a module it cannot find or a folder without
    ``__main__.py``.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TimelineError(MemwardenError, OSError):
    """A timeline database cannot be opened, created or read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownMetric(MemwardenError, KeyError):
    """A metric name that no probe declares; ``name`` is the name asked for."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __str__(self) -> str:  # KeyError would show the message quoted, as a key
        return f"{self.name}: {self.reason}"


class MessageTooLarge(UsageError):
    """One message is over a conversation's whole budget, so no window could hold it."""

    def __init__(self, what: str, size: int, budget: int) -> None:
        super().__init__(
            f"message of {size} {what} is over the conversation's whole budget of {budget} {what}"
        )
        self.what = what
        self.size = size
        self.budget = budget


class TokenizerError(MemwardenError, RuntimeError):
    """A token counter cannot be loaded here, or returns wrong counts for known texts."""


class ArchiveError(MemwardenError, OSError):
    """Long-term storage for conversation history cannot be written or read."""


class ArchiveUnavailable(ArchiveError):
    """The archive cannot be reached now; the turns it was given are kept to be written later."""
