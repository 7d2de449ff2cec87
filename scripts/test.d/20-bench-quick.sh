#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Keeps the benchmarks from rotting: builds the C tools, then runs bench/run.py in quick mode,
# which runs the C benchmark (tools-build/iova-bench --quick), parses it, and runs the Python
# side.  No timing is asserted anywhere; this fails only when a build fails or a benchmark
# crashes or reports an error (each one checks its own answers).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

bash "$ROOT/scripts/build-tools.sh"
# Results go to a scratch directory, not the tree; the log is shown only on failure.
if ! "$PY" "$ROOT/bench/run.py" --quick --out "$out" >"$out/bench.md" 2>"$out/bench.log"; then
    cat "$out/bench.log" >&2
    echo "bench: bench/run.py --quick failed" >&2
    exit 1
fi
grep -q '^## The C benchmark' "$out/RESULTS.md" || {
    cat "$out/bench.log" >&2
    echo "bench: the C benchmark's tables are missing from RESULTS.md" >&2
    exit 1
}
printf 'bench: iova-bench --quick and bench/run.py --quick ok (%s lines of results)\n' \
    "$(wc -l <"$out/RESULTS.md")"
if ! "$PY" "$ROOT/bench/range_queries.py" --quick >"$out/range.md" 2>"$out/range.log"; then
    cat "$out/range.log" >&2
    echo "bench: bench/range_queries.py --quick failed" >&2
    exit 1
fi
echo "bench: bench/range_queries.py --quick ok"
