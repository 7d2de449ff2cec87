#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds every C tool under csrc/tools/ (each *.c that defines main) into tools-build/, linked
# with the core sources and GLib.  The tools are standalone programs (benchmarks, fuzz drivers):
# no Python, no cffi.  Usage: scripts/build-tools.sh [tool-name ...]  (default: all of them).
# CC and EXTRA_CFLAGS are honoured.
#
# iova-bench also gets QEMU's own util/iova-tree.c as a baseline when ../shared/qemu (or
# $IOVA_QEMU_DIR) holds it: a copy with the seed patch applied is compiled against QEMU's
# headers and the osdep shim, and its global symbols are renamed qemu_* (objcopy), so that it
# links beside the core.  Without that folder the bench is built without the QEMU column.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/tools-build
CC=${CC:-cc}
CORE=(iova-arena.c iova-avl.c iova-holes.c iova-reverse.c iova-tree.c iova-range.c vhost-iova-tree.c)
CFLAGS=(-O2 -g -fno-omit-frame-pointer -std=c11 -Wall -Wextra)
QEMU_DIR=${IOVA_QEMU_DIR:-$ROOT/../shared/qemu}

if ! pkg-config --exists glib-2.0; then
    echo "build-tools: GLib development files not found (pkg-config glib-2.0)" >&2
    exit 1
fi
# shellcheck disable=SC2207  # pkg-config output is a flat list of flags, split on purpose
GLIB=($(pkg-config --cflags --libs glib-2.0))
# shellcheck disable=SC2207
GLIB_CFLAGS=($(pkg-config --cflags glib-2.0))

mkdir -p "$OUT"
core_srcs=()
for src in "${CORE[@]}"; do
    core_srcs+=("$ROOT/csrc/$src")
done

# QEMU's tree as an object with renamed symbols; prints the extra arguments for the bench.
qemu_object() {
    local missing= cmd
    [ -f "$QEMU_DIR/util/iova-tree.c" ] || missing="$QEMU_DIR/util/iova-tree.c"
    [ -n "$missing" ] || [ -f "$QEMU_DIR/seed-id.patch" ] || missing="$QEMU_DIR/seed-id.patch"
    for cmd in patch objcopy; do
        [ -n "$missing" ] || command -v "$cmd" >/dev/null || missing="the $cmd command"
    done
    if [ -n "$missing" ]; then
        # Said, not silent: a bench without the column must not pass for one with it.
        echo "build-tools: iova-bench without QEMU's column: no $missing (IOVA_QEMU_DIR)" >&2
        return 0
    fi
    local obj=$OUT/qemu-iova-tree.o tmp
    if [ ! -f "$obj" ] || [ -n "$(find "$QEMU_DIR" "${BASH_SOURCE[0]}" -newer "$obj" \
        -print -quit)" ]; then
        tmp=$(mktemp -d)
        cp -r "$QEMU_DIR/util" "$QEMU_DIR/include" "$tmp/"
        if ! (cd "$tmp" && patch -p1 --fuzz=0 -s <"$QEMU_DIR/seed-id.patch" >&2); then
            rm -rf "$tmp"
            echo "build-tools: QEMU's seed patch does not apply; no QEMU column" >&2
            return 0
        fi
        # shellcheck disable=SC2086
        "$CC" -O2 -g -fno-omit-frame-pointer ${EXTRA_CFLAGS:-} -I"$QEMU_DIR/shim" \
            -I"$tmp/include" "${GLIB_CFLAGS[@]}" -c "$tmp/util/iova-tree.c" -o "$obj.tmp"
        rm -rf "$tmp"
        local renames=()
        for sym in $(nm -g --defined-only "$obj.tmp" | awk '{print $3}'); do
            renames+=(--redefine-sym "$sym=qemu_$sym")
        done
        objcopy "${renames[@]}" "$obj.tmp" "$obj"
        rm -f "$obj.tmp"
    fi
    printf '%s\n' -DIOVA_BENCH_QEMU "$obj"
}

built=0
for tool in "$ROOT"/csrc/tools/*.c; do
    [ -e "$tool" ] || continue
    name=$(basename "$tool" .c)
    if (($#)) && [[ " $* " != *" $name "* ]]; then
        continue
    fi
    # Only whole programs: a helper source without main is not a tool.
    grep -Eq '^[[:space:]]*int[[:space:]]+main[[:space:]]*\(' "$tool" || continue
    extra=()
    if [ "$name" = iova-bench ]; then
        mapfile -t extra < <(qemu_object)
    fi
    # Rebuild only when the tool or any core source or header is newer than the binary, or
    # the QEMU baseline came or went.
    bin=$OUT/$name
    stamp=$OUT/.$name.extra
    if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${extra[*]:-}" ] &&
        [ -z "$(find "$tool" "$ROOT"/csrc/*.c "$ROOT"/csrc/*.h "$ROOT"/csrc/include "${BASH_SOURCE[0]}" \
            "${extra[@]:1}" -newer "$bin" -print -quit 2>/dev/null)" ]; then
        continue
    fi
    printf 'build-tools: %s\n' "tools-build/$name" >&2
    # shellcheck disable=SC2086  # EXTRA_CFLAGS is a list of flags
    "$CC" "${CFLAGS[@]}" ${EXTRA_CFLAGS:-} -I"$ROOT/csrc" -o "$bin.tmp" "$tool" \
        "${core_srcs[@]}" "${extra[@]}" "${GLIB[@]}" -lm
    mv "$bin.tmp" "$bin"
    printf '%s' "${extra[*]:-}" >"$stamp"
    built=$((built + 1))
done
exit 0
