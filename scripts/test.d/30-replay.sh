#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The trace replay end to end: builds tools-build/iova-replay, converts the embedded default
# trace into an op stream, replays it in C (reverse tree, then --linear) and in Python
# (native and reference backends), and fails unless all four print the same state and outcome
# digests.  No timing is asserted.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bash "$ROOT/scripts/build-tools.sh" iova-replay
"$PY" -m iova_native.cli convert --no-progress -o "$work/default.ops" >/dev/null

# The one line both sides print: "digest   state 0x... outcomes 0x...".
digest() { grep -E '^digest +state 0x[0-9a-f]{16} +outcomes 0x[0-9a-f]{16}$' "$1" | tr -s ' '; }

"$ROOT/tools-build/iova-replay" "$work/default.ops" >"$work/c-tree.txt"
"$ROOT/tools-build/iova-replay" --linear "$work/default.ops" >"$work/c-linear.txt"
"$PY" -m iova_native.cli replay --no-progress --backend native "$work/default.ops" \
    >"$work/py-native.txt"
"$PY" -m iova_native.cli replay --no-progress --backend reference "$work/default.ops" \
    >"$work/py-reference.txt"

expected=$(digest "$work/py-reference.txt")
[ -n "$expected" ] || { echo "replay: no digest line in Python's report" >&2; exit 1; }
status=0
for run in c-tree c-linear py-native; do
    got=$(digest "$work/$run.txt" || true)
    if [ "$got" != "$expected" ]; then
        printf 'replay: %s printed "%s", the reference "%s"\n' "$run" "$got" "$expected" >&2
        status=1
    fi
done
[ "$status" = 0 ] && printf 'replay: C (tree, --linear) and Python (native, reference) agree: %s\n' \
    "$expected"
exit "$status"
