#!/usr/bin/env python3
"""Copy bench/results/RESULTS.md into the README's Benchmarks section, so that every figure
there comes from one run.

    .venv/bin/python scripts/readme_results.py [--check]

The tables (from "## Targets" on) replace the README's, a heading level down, up to the next
top-level section; the run's provenance replaces the sentence "The figures below are ...".
The prose between the two, which explains the figures, is left alone: reread it after a run.
With --check nothing is written, and the exit status says whether the README is up to date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results" / "RESULTS.md"
FIRST_TABLE = "## Targets"
NEXT_SECTION = "\n## "
PROVENANCE = re.compile(r"The figures below are .*?\n\n", re.S)


def synced(readme: str, results: str) -> str:
    provenance = results.split("\n\n")[1].split(" — ", 1)[1]
    body = results[results.index(FIRST_TABLE):].rstrip("\n") + "\n"
    body = re.sub(r"(?m)^(#+) ", lambda m: "#" + m.group(1) + " ", body)
    start = readme.index("#" + FIRST_TABLE)
    end = readme.index(NEXT_SECTION, start)
    readme = readme[:start] + body + readme[end:]
    return PROVENANCE.sub(lambda _: f"The figures below are {provenance}\n\n", readme, count=1)


def main(argv: list[str]) -> int:
    old = README.read_text()
    new = synced(old, RESULTS.read_text())
    if "--check" in argv:
        if new != old:
            print("README.md: the Benchmarks section differs from bench/results/RESULTS.md")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
