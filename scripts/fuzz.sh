#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Both fuzzers, each for N seconds (default 20: the CI form).
#
#   scripts/fuzz.sh                        # libFuzzer (C core) 20 s, then atheris (Python) 20 s
#   scripts/fuzz.sh --seconds 14400 --parallel   # 4 hours, both at once (one core each)
#   scripts/fuzz.sh --c-only --seconds 3600 --fork 2   # the C core alone, 2 processes
#   scripts/fuzz.sh --py-only --seconds 600
#   scripts/fuzz.sh --lockbench            # the lock microbenchmark (fuzz/lockbench.c) only
#
# libFuzzer: fuzz/iova_fuzz.c built with clang -fsanitize=fuzzer,address,undefined (LeakSanitizer
#   on: a leak in the core fails too); corpus build/fuzz/corpus-c.
# atheris: fuzz/fuzz_diff.py, native against reference on the same calls; corpus
#   build/fuzz/corpus-py.  Without atheris, random bytes (not coverage-guided) instead.
# Corpora persist between runs, so each run continues where the last stopped.  A finding is
# written to build/fuzz/artifacts/ and the script exits 1, naming the file and the command that
# replays it:
#   IOVA_FUZZ_TRACE=1 build/fuzz/iova_fuzz_replay build/fuzz/artifacts/crash-...   (C)
#   IOVA_FUZZ_TRACE=1 .venv/bin/python fuzz/fuzz_diff.py build/fuzz/artifacts/crash-...  (Python)
# clang is installed with apt-get when missing (as root); otherwise the C fuzzer is skipped
# with a SKIP line.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
FUZZ=$ROOT/build/fuzz
ART=$FUZZ/artifacts

seconds=20 run_c=1 run_py=1 parallel=0 fork=0 lockbench=0
while (($#)); do
    case $1 in
    --seconds) seconds=$2; shift ;;
    --c-only) run_py=0 ;;
    --py-only) run_c=0 ;;
    --parallel) parallel=1 ;;
    --fork) fork=$2; shift ;;
    --lockbench) lockbench=1 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'fuzz: %s\n' "$*" >&2; }
mkdir -p "$FUZZ/corpus-c" "$FUZZ/corpus-py" "$ART"
cd "$ROOT"

glib_flags() { pkg-config --cflags --libs glib-2.0; }

if ((lockbench)); then
    # shellcheck disable=SC2046
    cc -std=c11 -O2 -Wall -Wextra -Icsrc $(pkg-config --cflags glib-2.0) fuzz/lockbench.c \
        csrc/iova-*.c csrc/vhost-*.c $(pkg-config --libs glib-2.0) -o "$FUZZ/lockbench"
    exec "$FUZZ/lockbench"
fi

have_clang() {
    command -v clang >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing clang with apt-get"
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null &&
            command -v clang >/dev/null 2>&1 && return 0
    fi
    return 1
}

# "executions / seconds" from a libFuzzer log.
stats() {
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n 1)
    if [ -z "$runs" ]; then  # -fork mode: the last status line "#RUNS: cov: ..."
        runs=$(sed -n 's/^#\([0-9]*\):* .*/\1/p' "$1" | tail -n 1)
    fi
    printf '%s executions' "${runs:-?}"
}

new_findings() {  # artifacts newer than the marker file $1
    find "$ART" -type f -newer "$1" 2>/dev/null
}

build_c() {
    # shellcheck disable=SC2046
    clang -std=c11 -g -O1 -Wall -Wextra -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -Icsrc fuzz/iova_fuzz.c csrc/iova-*.c csrc/vhost-*.c \
        $(glib_flags) -o "$1" 2>"$FUZZ/build-c.log"
}

fuzz_c() {
    if ! have_clang; then
        say "SKIP: libFuzzer harness: clang is not installed (apt-get install clang)"
        return 0
    fi
    local bin=$FUZZ/iova_fuzz log=$FUZZ/iova_fuzz.log
    if ! build_c "$bin"; then
        # libFuzzer's runtime is in libclang-rt-<version>-dev, only recommended by clang.
        local version rt
        version=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
        rt=libclang-rt-$version-dev
        if grep -q "fuzzer" "$FUZZ/build-c.log" && [ "$(id -u)" -eq 0 ] &&
            command -v apt-get >/dev/null 2>&1; then
            say "installing $rt with apt-get"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$rt" >/dev/null 2>&1 || true
        fi
        if ! build_c "$bin"; then
            if grep -q "fuzzer" "$FUZZ/build-c.log"; then
                say "SKIP: libFuzzer harness: clang cannot link -fsanitize=fuzzer" \
                    "(apt-get install $rt)"
                return 0
            fi
            cat "$FUZZ/build-c.log" >&2
            return 1
        fi
    fi
    # The standalone replayer, for findings (gcc or clang, no sanitizer).
    # shellcheck disable=SC2046
    cc -std=c11 -O1 -g -DIOVA_FUZZ_STANDALONE -Icsrc fuzz/iova_fuzz.c csrc/iova-*.c \
        csrc/vhost-*.c $(glib_flags) -o "$FUZZ/iova_fuzz_replay"
    local extra=()
    ((fork > 0)) && extra+=("-fork=$fork" "-ignore_crashes=0")
    say "libFuzzer on the C core for $seconds s (corpus $FUZZ/corpus-c)"
    local rc=0
    G_SLICE=always-malloc "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$ART/" "${extra[@]}" "$FUZZ/corpus-c" >"$log" 2>&1 || rc=$?
    say "libFuzzer: $seconds s, $(stats "$log"), corpus $(ls "$FUZZ/corpus-c" | wc -l) inputs," \
        "exit status $rc (log $log)"
    if ((rc != 0)); then
        grep -E "MISMATCH|ERROR|SUMMARY|Test unit written" "$log" | head -n 20 >&2 || true
    fi
    return $rc
}

fuzz_py() {
    local log=$FUZZ/fuzz_diff.log rc=0
    if ! "$PY" -c 'import atheris' 2>/dev/null; then
        "$PY" -m pip install -q --disable-pip-version-check atheris >/dev/null 2>&1 || true
    fi
    if ! "$PY" -c 'import atheris' 2>/dev/null; then
        say "atheris is not installable here: random bytes instead (not coverage-guided)"
        (cd "$ART" && "$PY" "$ROOT/fuzz/fuzz_diff.py" --random "$seconds") || rc=$?
        return $rc
    fi
    say "atheris, native against reference, for $seconds s (corpus $FUZZ/corpus-py)"
    "$PY" fuzz/fuzz_diff.py -max_total_time="$seconds" -timeout=20 -max_len=2048 \
        -print_final_stats=1 -artifact_prefix="$ART/" "$FUZZ/corpus-py" >"$log" 2>&1 || rc=$?
    say "atheris: $seconds s, $(stats "$log"), corpus $(ls "$FUZZ/corpus-py" | wc -l) inputs," \
        "exit status $rc (log $log)"
    if ((rc != 0)); then
        grep -E -A 12 "Divergence|Uncaught|Test unit written" "$log" | head -n 40 >&2 || true
    fi
    return $rc
}

marker=$FUZZ/.started
touch "$marker"
status=0
if ((parallel && run_c && run_py)); then
    fuzz_c & c_pid=$!
    fuzz_py & py_pid=$!
    wait $c_pid || status=1
    wait $py_pid || status=1
else
    if ((run_c)); then fuzz_c || status=1; fi
    if ((run_py)); then fuzz_py || status=1; fi
fi

findings=$(new_findings "$marker")
if [ -n "$findings" ]; then
    status=1
    say "FINDINGS (replay with IOVA_FUZZ_TRACE=1):"
    for f in $findings; do
        say "  $f"
    done
    say "  C: build/fuzz/iova_fuzz_replay FILE    Python: $PY fuzz/fuzz_diff.py FILE"
fi
if ((status)); then
    say "FAILED"
else
    say "passed: no finding"
fi
exit $status
