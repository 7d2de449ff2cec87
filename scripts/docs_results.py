#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Copy bench/results/RESULTS.md into docs/benchmarks.md, so that every figure there comes
from one run.

    .venv/bin/python scripts/docs_results.py [--check]

The tables (RESULTS.md from "## Targets" on) replace the page's, from its own "## Targets" to
the end of the page; the run's provenance replaces the sentence "The figures below are ...".
The prose before the tables, which explains the figures, is left alone: reread it after a run.
With --check nothing is written, and the exit status says whether the page is up to date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "RESULTS.md"
FIRST_TABLE = "\n## Targets"
PROVENANCE = re.compile(r"The figures below are .*?\n\n", re.S)


def synced(page: str, results: str) -> str:
    """``page`` with the tables and the provenance of ``results``."""
    provenance = results.split("\n\n")[1].split(" — ", 1)[1]
    tables = results[results.index(FIRST_TABLE) + 1:].rstrip("\n") + "\n"
    page = page[:page.index(FIRST_TABLE) + 1] + tables
    return PROVENANCE.sub(lambda _: f"The figures below are {provenance}\n\n", page, count=1)


def main(argv: list[str]) -> int:
    old = PAGE.read_text()
    new = synced(old, RESULTS.read_text())
    if "--check" in argv:
        if new != old:
            print("docs/benchmarks.md: the tables differ from bench/results/RESULTS.md;"
                  " run scripts/docs_results.py")
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
