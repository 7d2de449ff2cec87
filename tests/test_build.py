# SPDX-License-Identifier: GPL-2.0-or-later
"""The build's promises: a missing GLib is one clear line; the extension has debug info; the
benchmark figures in docs/benchmarks.md are those of the committed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_script_error(pkg_config_libdir: Path, cwd: Path) -> str:
    """The one line the cffi build script prints when it stops, with pkg-config looking for
    glib-2.0.pc in ``pkg_config_libdir`` only; fails the test unless it stops that way."""
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(pkg_config_libdir), PKG_CONFIG_PATH="")
    result = subprocess.run(
        [sys.executable, str(ROOT / "src" / "iova_native" / "_build.py")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_missing_glib_is_one_line_naming_the_debian_package(tmp_path: Path) -> None:
    """With pkg-config unable to find glib-2.0, the cffi build script stops at once with one
    line on stderr that names libglib2.0-dev, and no traceback."""
    assert "libglib2.0-dev" in build_script_error(Path("/nonexistent"), cwd=tmp_path)


def test_too_old_glib_is_one_line_naming_found_and_needed(tmp_path: Path) -> None:
    """A GLib older than 2.68 (no g_tree_lower_bound) stops the build with one line that names
    the version pkg-config found and the one needed, before anything is compiled."""
    (tmp_path / "glib-2.0.pc").write_text(
        "Name: GLib\nDescription: old\nVersion: 2.66.8\nCflags: -I/nonexistent\nLibs: -lglib-2.0\n")
    line = build_script_error(tmp_path, cwd=tmp_path)
    assert "GLib 2.66.8 was found" in line and "2.68 or later is needed" in line


def test_extension_is_built_with_debug_info_and_frame_pointers() -> None:
    """perf and callgrind attribute time to our functions only with symbols and frame
    pointers: the compiled module must carry DWARF info naming the core's functions."""
    core = pytest.importorskip("iova_native._core")
    readelf = subprocess.run(["readelf", "-S", core.__file__], capture_output=True, text=True,
                             check=False)
    if readelf.returncode != 0:
        pytest.skip("readelf is not available")
    assert ".debug_info" in readelf.stdout
    producer = subprocess.run(["readelf", "--debug-dump=info", core.__file__],
                              capture_output=True, text=True, check=False).stdout
    assert "-fno-omit-frame-pointer" in producer
    assert "-O2" in producer
    symbols = subprocess.run(["nm", core.__file__], capture_output=True, text=True, check=False)
    assert "iova_tree_find_iova" in symbols.stdout
    assert "iova_holes_fit" in symbols.stdout



def test_extension_exports_only_its_module_init() -> None:
    """The core's functions are hidden in the extension (``_build.extension_compile_args``):
    its calls to them stay direct, and nothing in the process's global scope that defines
    the same names (an embedding program's ``iova_tree_*``) can take them over."""
    core = pytest.importorskip("iova_native._core")
    nm = subprocess.run(["nm", "-D", "--defined-only", core.__file__], capture_output=True,
                        text=True, check=False)
    if nm.returncode != 0:
        pytest.skip("nm is not available")
    exported = {line.split()[-1] for line in nm.stdout.splitlines()
                if line.split()[-2:-1] in (["T"], ["D"], ["B"], ["R"])}
    assert exported == {"PyInit__core"}

def test_documented_benchmarks_are_the_committed_run() -> None:
    """Every figure in docs/benchmarks.md is bench/results/RESULTS.md's (one run):
    scripts/docs_results.py copies them, and --check fails when someone edits one side."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_results.py"),
                             "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
