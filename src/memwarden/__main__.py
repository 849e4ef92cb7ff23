"""``python -m memwarden``: the same command line as ``memwarden``."""

from __future__ import annotations

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
