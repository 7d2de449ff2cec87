# SPDX-License-Identifier: GPL-2.0-or-later
"""A review playing a newcomer and a packager (the set-up scripts, the command, the installed
wheel, the pages' examples): each test failed before its fix."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [ROOT / "run.sh", ROOT / "test.sh", *sorted((ROOT / "scripts").rglob("*.sh"))]


def build_inputs(root: Path) -> subprocess.CompletedProcess[bytes]:
    """``scripts/build-inputs.sh`` of the checkout at ``root``."""
    return subprocess.run(["bash", str(root / "scripts" / "build-inputs.sh")], cwd="/",
                          capture_output=True, timeout=60, check=False)


def test_the_build_stamp_is_read_in_a_clone_under_a_path_with_spaces(tmp_path: Path) -> None:
    """run.sh and test.sh stopped at once in a clone under a path with spaces ("cat: /tmp/a: No
    such file or directory"): the build stamp read the public headers through an unquoted
    $(find ...), which split their paths at the space."""
    clone = tmp_path / "a clone with spaces" / "iova native"
    for name in ("pyproject.toml", "setup.py", "src/iova_native/_cdef.h",
                 "scripts/build-inputs.sh"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    shutil.copytree(ROOT / "csrc", clone / "csrc", ignore=shutil.ignore_patterns("tools"))
    there, here = build_inputs(clone), build_inputs(ROOT)
    assert there.returncode == 0, there.stderr.decode()
    assert there.stdout == here.stdout and here.stdout.count(b"IOVA_TREE_H") >= 1


def test_no_script_splits_a_find_into_words() -> None:
    """A $(find ...) given as arguments splits every path that holds a space; the scripts use
    find -print0 (or quote the substitution where it yields one word)."""
    unquoted = re.compile(r'(?<!")\$\(find\b')
    hits = [f"{path.relative_to(ROOT)}:{number}"
            for path in SCRIPTS
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if unquoted.search(line)]
    assert hits == []
