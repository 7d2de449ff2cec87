#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds every C tool under csrc/tools/ (each *.c that defines main) into tools-build/, linked
# with the core sources and GLib.  The tools are standalone programs (benchmarks, fuzz drivers):
# no Python, no cffi.  Usage: scripts/build-tools.sh [tool-name ...]  (default: all of them).
# CC and EXTRA_CFLAGS are honoured.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/tools-build
CC=${CC:-cc}
CORE=(iova-arena.c iova-avl.c iova-holes.c iova-reverse.c iova-tree.c iova-range.c vhost-iova-tree.c)
CFLAGS=(-O2 -g -fno-omit-frame-pointer -std=c11 -Wall -Wextra)

if ! pkg-config --exists glib-2.0; then
    echo "build-tools: GLib development files not found (pkg-config glib-2.0)" >&2
    exit 1
fi
# shellcheck disable=SC2207  # pkg-config output is a flat list of flags, split on purpose
GLIB=($(pkg-config --cflags --libs glib-2.0))

mkdir -p "$OUT"
core_srcs=()
for src in "${CORE[@]}"; do
    core_srcs+=("$ROOT/csrc/$src")
done

built=0
for tool in "$ROOT"/csrc/tools/*.c; do
    [ -e "$tool" ] || continue
    name=$(basename "$tool" .c)
    if (($#)) && [[ " $* " != *" $name "* ]]; then
        continue
    fi
    # Only whole programs: a helper source without main is not a tool.
    grep -Eq '^[[:space:]]*int[[:space:]]+main[[:space:]]*\(' "$tool" || continue
    # Rebuild only when the tool or any core source or header is newer than the binary.
    bin=$OUT/$name
    if [ -x "$bin" ] && [ -z "$(find "$tool" "$ROOT"/csrc/*.c "$ROOT"/csrc/*.h "${BASH_SOURCE[0]}" \
        -newer "$bin" -print -quit)" ]; then
        continue
    fi
    printf 'build-tools: %s\n' "tools-build/$name" >&2
    # shellcheck disable=SC2086  # EXTRA_CFLAGS is a list of flags
    "$CC" "${CFLAGS[@]}" ${EXTRA_CFLAGS:-} -I"$ROOT/csrc" -o "$bin.tmp" "$tool" \
        "${core_srcs[@]}" "${GLIB[@]}" -lm
    mv "$bin.tmp" "$bin"
    built=$((built + 1))
done
exit 0
