# SPDX-License-Identifier: GPL-2.0-or-later
"""The C library as a drop-in for QEMU's util/iova-tree.c (SPEC section 9): C programs built
against the project's headers and sources, the way QEMU's own callers use the tree."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
C_TESTS = ROOT / "tests" / "c"
CORE = ["iova-arena.c", "iova-avl.c", "iova-holes.c", "iova-reverse.c", "iova-tree.c",
        "vhost-iova-tree.c"]
WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Werror"]


def glib_flags() -> list[str]:
    """GLib's compile and link flags, or a skip naming what is missing."""
    if shutil.which("cc") is None or shutil.which("pkg-config") is None:
        pytest.skip("no C compiler or pkg-config on PATH")
    result = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip("GLib's development files are missing (pkg-config glib-2.0)")
    return shlex.split(result.stdout)


def build(tmp_path: Path, name: str, sources: list[Path], flags: list[str]) -> Path:
    """Compile and link @sources into tmp_path/name; the compiler's output is the message."""
    binary = tmp_path / name
    cmd = ["cc", *WARNINGS, "-O1", "-g", *flags, "-o", str(binary),
           *map(str, sources), *glib_flags()]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{shlex.join(cmd)}\n{result.stderr}"
    return binary


def run(binary: Path) -> str:
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_memcmp_of_a_found_map_against_an_equal_target_is_zero(tmp_path: Path) -> None:
    """QEMU's vIOMMUs compare a looked-up map with memcmp(mapped, &target, sizeof(DMAMap)):
    with the library's bookkeeping outside the packed 36-byte DMAMap, equal maps compare
    equal and a changed permission does not."""
    binary = build(tmp_path, "memcmp-find", [C_TESTS / "memcmp-find.c",
                                             *(CSRC / s for s in CORE)], [f"-I{CSRC}"])
    assert run(binary).strip() == "equal 4096, changed 4096"
