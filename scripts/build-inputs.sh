#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints the contents of the C extension's build inputs, then of each file named as an
# argument, for a stamp: `bash scripts/build-inputs.sh [FILE ...] | cksum` changes when any of
# them does.  bootstrap.sh and sanitize.sh rebuild when it changed.  The public headers go
# through find -print0, so that a clone under a path with spaces works as any other.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cat "$ROOT"/pyproject.toml "$ROOT"/setup.py "$ROOT"/src/iova_native/_cdef.h "$ROOT"/csrc/*.c \
    "$ROOT"/csrc/*.h "$@"
find "$ROOT"/csrc/include -name "*.h" -print0 | LC_ALL=C sort -z | xargs -0 cat
