# SPDX-License-Identifier: GPL-2.0-or-later
"""The README's examples run, and the README shows them as they are."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_is_in_the_readme(path: Path) -> None:
    pytest.importorskip("iova_native._core")
    runpy.run_path(str(path), run_name="__main__")  # its asserts are the test
    assert path.read_text() in (ROOT / "README.md").read_text(), f"README is stale: {path.name}"
