#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Profile the C core on the embedded default trace, with the reverse tree and with the linear
# walks QEMU does (tools-build/iova-replay --linear: find_iova by iova_tree_find_iova_linear,
# translate by a walk over every map per segment, alloc by iova_tree_alloc_map_linear), to put
# numbers on the seed thread's question: is the reverse look-up a bottleneck?
#
# Writes bench/results/:
#   profile-callgrind-{tree,linear}.txt  valgrind --tool=callgrind, replay loop only: top
#                                        functions by instructions (Ir)
#   profile-perf-{tree,linear}.txt       perf record -g + perf report: top functions by samples
#   profile-replay-{tree,linear}.txt     the driver's own per-operation timings
#   profile-summary.txt                  instruction totals and instructions per call of each
#                                        operation, reverse tree vs linear; the same totals for
#                                        the same VM with 64 queue pairs (more maps)
# Usage: scripts/profile.sh
# Environment: REPEAT (perf and wall-clock passes, default 200), TOP (functions listed,
# default 15), LARGE_QP (queue pairs of the larger VM, default 64; 0 skips it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/bench/results
PY=${PY:-$ROOT/.venv/bin/python}
DRIVER=$ROOT/tools-build/iova-replay
TABLES=$ROOT/scripts/callgrind_tables.py
REPEAT=${REPEAT:-200}
TOP=${TOP:-15}
LARGE_QP=${LARGE_QP:-64}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf 'profile: %s\n' "$*" >&2; }
flag_of() { [ "$1" = linear ] && echo --linear || true; }

mkdir -p "$OUT"
bash "$ROOT/scripts/build-tools.sh" iova-replay
say "converting the embedded default trace"
"$PY" -m iova_native.cli convert --no-progress -o "$WORK/default.ops" >&2

# perf: hardware counters are often missing in a VM; cpu-clock sampling works there too.
PERF_EVENT=""
if ! command -v perf >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing linux-perf"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
fi
if command -v perf >/dev/null 2>&1; then
    if perf stat -x, -e instructions true 2>&1 >/dev/null | grep -q '^[0-9]'; then
        PERF_EVENT=cycles
    elif perf record -q -e cpu-clock -o "$WORK/probe.data" true >/dev/null 2>&1; then
        PERF_EVENT=cpu-clock
    fi
fi
[ -n "$PERF_EVENT" ] || say "perf does not work here: no perf profiles"
HAVE_VALGRIND=$(command -v valgrind >/dev/null 2>&1 && echo 1 || echo 0)
[ "$HAVE_VALGRIND" = 1 ] || say "valgrind is missing: no callgrind profiles"

# callgrind OPS MODE NAME: annotate the replay loop (replay_pass is never inlined) into
# $WORK/NAME-{self,incl}.txt.
callgrind() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$3.out" \
        --collect-atstart=no --toggle-collect=replay_pass \
        "$DRIVER" $(flag_of "$2") --no-timing "$1" >/dev/null 2>"$WORK/$3.log"
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$WORK/$3.out" >"$WORK/$3-self.txt"
    callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$WORK/$3.out" >"$WORK/$3-incl.txt"
}
ir_total() { awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$1"; }

for mode in tree linear; do
    flag=$(flag_of $mode)
    say "iova-replay${flag:+ $flag}: timings"
    "$DRIVER" $flag "$WORK/default.ops" >"$OUT/profile-replay-$mode.txt"
    "$DRIVER" $flag --no-timing --repeat "$REPEAT" "$WORK/default.ops" >"$WORK/wall-$mode.txt"
    if [ "$HAVE_VALGRIND" = 1 ]; then
        say "callgrind${flag:+ $flag}"
        callgrind "$WORK/default.ops" $mode "default-$mode"
        {
            echo "# valgrind --tool=callgrind --collect-atstart=no --toggle-collect=replay_pass \\"
            echo "#     tools-build/iova-replay${flag:+ $flag} --no-timing default.ops"
            echo "# embedded default trace; top $TOP functions by instructions executed (Ir,"
            echo "# self) in the replay loop; inlined header code and recursion added to their function"
            grep 'PROGRAM TOTALS' "$WORK/default-$mode-self.txt"
            echo
            "$PY" "$TABLES" top "$WORK/default-$mode-self.txt" "$TOP"
        } >"$OUT/profile-callgrind-$mode.txt"
    fi
    if [ -n "$PERF_EVENT" ]; then
        say "perf${flag:+ $flag}"
        perf record -q -g -e "$PERF_EVENT" -o "$WORK/perf-$mode.data" \
            "$DRIVER" $flag --no-timing --repeat "$REPEAT" "$WORK/default.ops" >/dev/null 2>&1
        {
            echo "# perf record -g -e $PERF_EVENT tools-build/iova-replay${flag:+ $flag} --no-timing \\"
            echo "#     --repeat $REPEAT default.ops"
            echo "# perf report --stdio --no-children --sort sym: top $TOP functions by samples (self)"
            perf report --stdio --no-children -g none --sort sym -i "$WORK/perf-$mode.data" \
                2>/dev/null | awk -v n="$TOP" '/^# Samples/ { print } /^#/ || !NF { next }
                                                c < n { print; c++ }'
            echo
            echo "# perf report --stdio --children: top $TOP by samples with callees (inclusive)"
            perf report --stdio --children -g none --sort sym -i "$WORK/perf-$mode.data" \
                2>/dev/null | awk -v n="$TOP" '/^#/ || !NF { next } c < n { print; c++ }'
        } >"$OUT/profile-perf-$mode.txt"
    fi
done

if [ "$LARGE_QP" -gt 0 ] && [ "$HAVE_VALGRIND" = 1 ]; then
    say "the same VM with $LARGE_QP queue pairs (more vrings, so more maps)"
    "$PY" "$ROOT/scripts/gen_default_trace.py" --queue-pairs "$LARGE_QP" \
        -o "$WORK/large.log.gz" 2>/dev/null
    "$PY" -m iova_native.cli convert --no-progress -o "$WORK/large.ops" "$WORK/large.log.gz" >&2
    for mode in tree linear; do
        say "callgrind$([ $mode = linear ] && echo " --linear") ($LARGE_QP queue pairs)"
        callgrind "$WORK/large.ops" $mode "large-$mode"
    done
fi

row() {  # label ops-file name
    local n t l peak
    n=$(( ($(stat -c %s "$2") - 32) / 48 ))
    t=$(ir_total "$WORK/$3-tree-self.txt")
    l=$(ir_total "$WORK/$3-linear-self.txt")
    peak=$("$DRIVER" --no-timing "$2" | sed -n 's/^maps .* peak \([0-9]*\);.*/\1/p')
    awk -v lab="$1, peak $peak maps" -v n="$n" -v t="$t" -v l="$l" 'BEGIN {
        printf "%-30s %7d %14d %14d %6.0f %6.0f %6.2fx\n", lab, n, t, l, t / n, l / n, l / t }'
}
{
    echo "# scripts/profile.sh: instructions executed by tools-build/iova-replay's replay loop"
    echo "# (valgrind --tool=callgrind, Ir), reverse tree vs --linear (QEMU's walks); the embedded"
    echo "# default trace (8 queue pairs) and the same VM with $LARGE_QP queue pairs (more vrings)"
    if [ "$HAVE_VALGRIND" = 1 ]; then
        printf '%-30s %7s %14s %14s %6s %6s %7s\n' trace ops "Ir tree" "Ir linear" \
            "Ir/op" "linear" "ratio"
        row "default (8 QP)" "$WORK/default.ops" default
        if [ -e "$WORK/large-tree-self.txt" ]; then
            row "$LARGE_QP QP" "$WORK/large.ops" large
        fi
        echo
        echo "# instructions per call, embedded default trace"
        "$PY" "$TABLES" perop "$WORK/default.ops" "$WORK/default-tree-incl.txt" \
            "$WORK/default-linear-incl.txt"
        if [ -e "$WORK/large-tree-incl.txt" ]; then
            echo
            echo "# instructions per call, $LARGE_QP queue pairs"
            "$PY" "$TABLES" perop "$WORK/large.ops" "$WORK/large-tree-incl.txt" \
                "$WORK/large-linear-incl.txt"
        fi
    fi
    echo
    echo "# wall clock: tools-build/iova-replay [--linear] --no-timing --repeat $REPEAT (this machine)"
    for mode in tree linear; do
        grep -E '^(run|digest)' "$WORK/wall-$mode.txt" | sed "s/^/$mode: /"
    done
} >"$OUT/profile-summary.txt"
cat "$OUT/profile-summary.txt"
