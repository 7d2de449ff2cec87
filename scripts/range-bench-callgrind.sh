#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Instructions per look-up of the range walks against the single look-ups (iova-range-bench),
# counted by callgrind, one run per size: a figure no other load on the machine can disturb.
# Prints a Markdown table with the growth from the first size to the last.
# Usage: scripts/range-bench-callgrind.sh [10k 100k 1M]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null || {
    echo "range-bench-callgrind: valgrind is not installed" >&2
    exit 1
}
bash "$ROOT/scripts/build-tools.sh" iova-range-bench >/dev/null
sizes=("$@")
((${#sizes[@]})) || sizes=(10k 100k 1M)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each loop_* function runs ROUNDS times over QUERIES needles (see the tool's source).
per_call=$((5 * 4096))
for n in "${sizes[@]}"; do
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" --collect-atstart=no \
        --toggle-collect='loop_*' "$ROOT/tools-build/iova-range-bench" --sizes "$n" \
        >/dev/null 2>"$work/log.$n"
    callgrind_annotate --inclusive=yes "$work/cg.$n" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) .*:\(loop_[a-z_]*\) .*/\2 \1/p' | tr -d , >"$work/counts.$n"
done
printf '| loop | %s | growth |\n|---|%s---:|\n' "$(printf '%s | ' "${sizes[@]/#/N=}" |
    sed 's/ | $//')" "$(printf -- '---:|%.0s' "${sizes[@]}")"
for loop in loop_find loop_find_all loop_find_iova loop_find_iova_all loop_find_iova_id \
    loop_find_iova_all_id loop_adversarial_find_iova loop_adversarial_find_iova_all; do
    row="| \`${loop#loop_}\` |"
    first="" last=""
    for n in "${sizes[@]}"; do
        count=$(awk -v l="$loop" '$1 == l { print $2 }' "$work/counts.$n")
        per=$((count / per_call))
        row+=" $per |"
        first=${first:-$per}
        last=$per
    done
    printf '%s %s |\n' "$row" "$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.2fx", b / a }')"
done
