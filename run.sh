#!/usr/bin/env bash
# The main job on its embedded default: replay the packaged QEMU trace and print the report.
# Installs what is missing first (GLib headers through apt, the package into .venv).
# Extra arguments go to `iova-native replay` (try --help).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$ROOT/scripts/bootstrap.sh"
exec "$VENV/bin/iova-native" replay "$@"
