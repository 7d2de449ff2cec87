#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the documentation into build/docs: Sphinx renders docs/*.md (myst-parser) and the API
# reference generated from the docstrings (autodoc, docs/api.rst).  Any warning (a docstring
# that is not valid reStructuredText, a link to a page or heading that does not exist, a module
# that no longer imports) fails the build.  A few seconds.  tests/test_docs.py runs the same
# build on every pytest run, so that the documentation never rots.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
out=$ROOT/build/docs
if ! "$PY" -c 'import sphinx, myst_parser' 2>/dev/null; then
    echo "docs: sphinx or myst-parser is missing: pip install -e '.[docs]' (test.sh does)" >&2
    exit 1
fi
rm -rf "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$PY" -m sphinx -W --keep-going -q -E -b html "$ROOT/docs" "$out" 2>"$log"; then
    cat "$log" >&2
    echo "docs: the Sphinx build has warnings (above)" >&2
    exit 1
fi
printf 'docs: Sphinx built %s pages with no warnings into build/docs\n' \
    "$(find "$out" -maxdepth 1 -name '*.html' | wc -l)"
