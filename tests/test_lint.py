# SPDX-License-Identifier: GPL-2.0-or-later
"""The tree stays as pyproject configures its checkers: mypy over the package (the types users
see through ``py.typed`` are the ones the code is checked against) and ruff over the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _needs_source_tree() -> None:
    if not (ROOT / "pyproject.toml").exists() or not (ROOT / "src" / "iova_native").is_dir():
        pytest.skip("needs the source tree (pyproject.toml and src/iova_native)")


def test_the_package_is_mypy_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    _needs_source_tree()
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_ruff_clean() -> None:
    pytest.importorskip("ruff")
    _needs_source_tree()
    checked = ("src", "tests", "bench", "examples", "fuzz", "scripts")
    dirs = [d for d in checked if (ROOT / d).is_dir()]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *dirs],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
