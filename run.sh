#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job on its embedded default: replay the packaged QEMU trace in the native and the
# reference backend, print the report and whether both ended in identical trees.
# Installs what is missing first (GLib headers through apt, the package into .venv).
# Arguments, if any, go to `iova-native replay` instead (try --help).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The main job needs the package and its replay extra (a progress bar), nothing for tests.
IOVA_NATIVE_EXTRAS=${IOVA_NATIVE_EXTRAS:-replay} source "$ROOT/scripts/bootstrap.sh"
[ $# -gt 0 ] || set -- --compare
exec "$VENV/bin/iova-native" replay "$@"
