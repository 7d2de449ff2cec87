#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The whole test suite.  Installs what is missing first (GLib headers through apt, the package
# into .venv), then runs every check; pytest runs last so that its summary closes the output.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
for step in "$ROOT"/scripts/test.d/*.sh; do
    [ -e "$step" ] || continue
    printf '== %s\n' "$(basename "$step")"
    bash "$step"
done
printf '== pytest\n'
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
