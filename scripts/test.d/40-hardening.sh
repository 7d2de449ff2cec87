#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Hardening, short forms (issue 9): what CI runs of the fuzzers, the sanitizer build and the
# leak checks, in about 3 minutes.  Run by test.sh as `bash 40-hardening.sh`; each script
# installs what it lacks (clang, valgrind: apt-get, as root) or prints a SKIP line.
#
#   scripts/fuzz.sh --seconds 20       libFuzzer (C core vs brute-force model) 20 s, then
#                                      atheris (native vs reference) 20 s
#   scripts/sanitize.sh --quick        ASan+UBSan build in build/venv-asan; pytest subset
#   scripts/leakcheck.sh --quick       RSS flat over 1M insert/remove cycles (and more);
#                                      valgrind of the C core alone over the fuzz corpus
#
# The long forms (hours of fuzzing, the whole suite under ASan, valgrind over pytest, TSan):
#   scripts/fuzz.sh --seconds 14400 --parallel
#   scripts/sanitize.sh                # whole test suite, ASan+UBSan
#   scripts/sanitize.sh --tsan         # thread tests under ThreadSanitizer
#   scripts/leakcheck.sh               # RSS + valgrind over a pytest subset + the C core
#   IOVA_THREAD_OPS=100000 .venv/bin/python -m pytest tests/test_threads.py   # 8 x 100k
# IOVA_HARDENING_SKIP=1 skips this step.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export IOVA_NATIVE_VENV=${IOVA_NATIVE_VENV:-$ROOT/.venv}
PY=$IOVA_NATIVE_VENV/bin/python

if [ -n "${IOVA_HARDENING_SKIP:-}" ]; then
    echo "hardening: SKIP (IOVA_HARDENING_SKIP is set)"
    exit 0
fi
if [ ! -x "$PY" ]; then
    echo "hardening: SKIP: no $PY (run ./test.sh, which creates it)"
    exit 0
fi

status=0
step() {
    local name=$1 start=$SECONDS
    shift
    echo "hardening: $name"
    if "$@"; then
        echo "hardening: $name: ok ($((SECONDS - start)) s)"
    else
        echo "hardening: $name: FAILED ($((SECONDS - start)) s)"
        status=1
    fi
}

step "fuzzers, 20 s each" bash "$ROOT/scripts/fuzz.sh" --seconds "${IOVA_FUZZ_SECONDS:-20}"
step "ASan+UBSan build, test subset" bash "$ROOT/scripts/sanitize.sh" --quick
step "leaks: RSS flat, valgrind of the C core" bash "$ROOT/scripts/leakcheck.sh" --quick
exit $status
