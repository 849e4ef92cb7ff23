"""``python -m memwarden.metrics``: print the metric catalogue as the Markdown table of the docs.

A module of its own (not a ``__main__`` block in :mod:`memwarden.metrics`), so running it never
executes the catalogue module a second time beside the copy that ``import memwarden`` loaded.
"""

from __future__ import annotations

import sys

from . import markdown_table

if __name__ == "__main__":
    sys.stdout.write(markdown_table())
