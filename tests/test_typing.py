# SPDX-License-Identifier: GPL-2.0-or-later
"""The package type-checks as pyproject's ``[tool.mypy]`` configures it: the types users see
through ``py.typed`` are the ones the code itself is checked against."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_is_mypy_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    if not (ROOT / "pyproject.toml").exists() or not (ROOT / "src" / "iova_native").is_dir():
        pytest.skip("needs the source tree (pyproject.toml and src/iova_native)")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
