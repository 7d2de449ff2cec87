# SPDX-License-Identifier: GPL-2.0-or-later
"""Sphinx configuration: these Markdown pages (myst-parser) and an API reference generated
from the docstrings (autodoc).  Built by scripts/build-docs.sh, and by tests/test_docs.py on
every pytest run, with warnings as errors:

    .venv/bin/python -m sphinx -W --keep-going -b html docs build/docs
"""

from __future__ import annotations

import iova_native

project = "iova_native"
author = "The iova_native developers"
copyright = "the iova_native developers; GPL-2.0-or-later"
release = version = iova_native.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
# Headings up to ### get anchors, so "[...](contract.md#deviations-from-qemu)" resolves.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = f"iova_native {release}"
