# SPDX-License-Identifier: GPL-2.0-or-later
"""The documentation stays usable: Sphinx builds docs/ and the API reference without a warning,
every relative link in README.md and docs/*.md names a file in the repository, the README stays
short, and every source file carries its licence line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), outside code; the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
SPDX = "SPDX-License-Identifier: GPL-2.0-or-later"
SOURCE_SUFFIXES = {".c", ".h", ".py", ".sh"}
SOURCE_DIRS = ("csrc", "src", "tests", "bench", "scripts", "fuzz", "examples", "docs")


def relative_links(page: Path) -> list[str]:
    """The link targets of ``page`` that point into the repository (no scheme, no bare anchor)."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_sphinx_builds_the_docs_without_warnings(tmp_path: Path) -> None:
    """docs/*.md (myst-parser) and the API reference (autodoc over every public module) build
    with warnings as errors: a docstring that is not valid reStructuredText, a link to a page
    or heading that does not exist, or a module that no longer imports fails here.  The same
    build as scripts/build-docs.sh, which keeps the HTML."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install .[docs])")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    pytest.importorskip("iova_native._core")  # autodoc imports the native backend
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert (tmp_path / "html" / "api.html").exists()


def dead_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` that name no file or directory inside ``root``."""
    dead = []
    for target in relative_links(page):
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or (root not in path.parents and path != root):
            dead.append(target)
    return dead


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    dead = dead_links(page)
    assert not dead, f"{page.name}: links to nothing in the repository: {dead}"


def test_the_link_check_sees_links(tmp_path: Path) -> None:
    """Guards the check itself: the README links into docs/, and dead links are reported."""
    assert "docs/contract.md" in relative_links(ROOT / "README.md")
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[a](there.md) [b](gone.md#x) ![c](../outside.png) [d](https://x.org/)\n"
                    "`[e](in-code.md)`\n```\n[f](in-fence.md)\n```\n")
    assert dead_links(page, root=tmp_path) == ["gone.md#x", "../outside.png"]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < 300, f"README.md has {lines} lines; move the depth into docs/"


def test_nothing_points_outside_the_repository() -> None:
    """Users never see the developers' ../shared directory: no page links or refers to it."""
    for page in [ROOT / "README.md", ROOT / "docs" / "contract.md"]:
        assert "../shared" not in page.read_text(), page.name


def source_files() -> list[Path]:
    files = [p for p in ROOT.glob("*") if p.suffix in SOURCE_SUFFIXES]
    for top in SOURCE_DIRS:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in SOURCE_SUFFIXES]
    skip = ("/build/", "/.venv", "/__pycache__/", "/_build/", "/tools-build/")
    return sorted(p for p in files if p.is_file() and not any(s in p.as_posix() for s in skip))


def test_every_source_file_starts_with_its_spdx_line() -> None:
    """Line 1 (line 2 after a shebang) names the licence, in the file's own comment syntax."""
    assert len(source_files()) > 20
    untagged = []
    for path in source_files():
        head = path.read_text(errors="replace").split("\n", 2)[:2]
        if not any(SPDX in line for line in head):
            untagged.append(path.relative_to(ROOT).as_posix())
    assert not untagged, f"no SPDX line at the top: {untagged}"
