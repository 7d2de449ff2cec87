#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The test suite against a build of the C extension with AddressSanitizer and
# UndefinedBehaviorSanitizer (or ThreadSanitizer with --tsan).
#
#   scripts/sanitize.sh                 # ASan+UBSan, the whole test suite (a few minutes)
#   scripts/sanitize.sh --quick         # ASan+UBSan, a subset (what CI runs, 20-40 s)
#   scripts/sanitize.sh --tsan          # ThreadSanitizer, tests/test_threads.py + test_lifetimes.py
#   scripts/sanitize.sh -- tests/test_api.py -k alloc     # anything after -- goes to pytest
#
# The extension is built from a copy of the sources (build/sanitize/<kind>/src) into its own
# venv (build/venv-asan, build/venv-tsan), so the main .venv and src/iova_native/_core*.so are
# never touched.  It is rebuilt only when csrc/, src/ or the build files change.  The tests run
# on the ordinary interpreter with the sanitizer runtime preloaded:
#   ASan: LD_PRELOAD=libasan, ASAN_OPTIONS=detect_leaks=0 (CPython itself leaks at exit;
#         scripts/leakcheck.sh checks leaks), PYTHONMALLOC=malloc so that Python's own buffers
#         are checked too, G_SLICE=always-malloc so that GLib's slice cache hides nothing.
#   UBSan: -fno-sanitize-recover=undefined: the first report aborts the run.
# With ASan, the differential fuzzer's corpus (build/fuzz/corpus-py) is replayed afterwards.
# Exit status: non-zero if pytest or the replay failed; any sanitizer report aborts the process.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAIN_PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python

kind=asan
quick=0
pytest_args=()
while (($#)); do
    case $1 in
    --quick) quick=1 ;;
    --tsan) kind=tsan ;;
    --) shift; pytest_args=("$@"); break ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) pytest_args+=("$1") ;;
    esac
    shift
done

say() { printf 'sanitize: %s\n' "$*" >&2; }

if [ ! -x "$MAIN_PY" ]; then
    say "no $MAIN_PY: run ./test.sh (or scripts/bootstrap.sh) first"
    exit 2
fi
CC=${CC:-gcc}
case $kind in
asan)
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    runtime=$("$CC" -print-file-name=libasan.so)
    ;;
tsan)
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    runtime=$("$CC" -print-file-name=libtsan.so)
    ;;
esac
if [ ! -e "$runtime" ]; then
    say "SKIP: the $kind runtime of $CC is not installed ($runtime)"
    exit 0
fi

VENV=$ROOT/build/venv-$kind
WORK=$ROOT/build/sanitize/$kind
stamp=$VENV/.iova-native-sanitize-build
inputs=$( (echo "$flags"; bash "$ROOT/scripts/build-inputs.sh" "$ROOT"/src/iova_native/*.py) |
    cksum)

if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
    start=$SECONDS
    say "building the $kind extension into $VENV"
    if [ ! -x "$VENV/bin/python" ] && ! "$MAIN_PY" -m venv "$VENV"; then
        say "SKIP: cannot create the venv $VENV"
        exit 0
    fi
    # The same versions of the build tools and test dependencies as the main venv (from pip's
    # cache); a venv's own setuptools may be too old for pyproject.toml.
    deps='setuptools|wheel|cffi|pycparser|pytest|pluggy|iniconfig|packaging|hypothesis'
    deps="$deps|sortedcontainers|attrs|numpy"
    pins=$("$MAIN_PY" -m pip freeze --all 2>/dev/null | grep -iE "^($deps)==" || true)
    # shellcheck disable=SC2086
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        ${pins:-setuptools wheel cffi pytest}; then
        say "SKIP: cannot install the build and test dependencies into $VENV (offline?)"
        exit 0
    fi
    rm -rf "$WORK"
    mkdir -p "$WORK/src"
    cp -r "$ROOT"/csrc "$ROOT"/pyproject.toml "$ROOT"/setup.py "$WORK/src/"
    cp "$ROOT"/MANIFEST.in "$ROOT"/README.md "$ROOT"/LICENSE "$WORK/src/" 2>/dev/null || true
    mkdir -p "$WORK/src/src"
    cp -r "$ROOT"/src/iova_native "$WORK/src/src/"
    rm -f "$WORK"/src/src/iova_native/_core*.so "$WORK"/src/src/iova_native/_core.c
    (cd "$WORK/src" && IOVA_NATIVE_CFLAGS="$flags" IOVA_NATIVE_LDFLAGS="$flags" \
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
        --no-deps --force-reinstall .)
    printf '%s' "$inputs" >"$stamp"
    say "built in $((SECONDS - start)) s"
fi

# Finding the module imports the package, whose _types loads the instrumented _dmamap: with
# the runtime preloaded, as for the tests.
so=$(LD_PRELOAD=$runtime ASAN_OPTIONS=detect_leaks=0 "$VENV/bin/python" -c \
    'import importlib.util as u; print(u.find_spec("iova_native._core").origin)')
case $so in
"$VENV"/*) ;;
*) say "the $kind venv imports $so, not its own build"; exit 2 ;;
esac
if ! nm -D "$so" | grep "__${kind}_" >/dev/null; then
    say "$so is not instrumented for $kind"
    exit 2
fi

if ((${#pytest_args[@]} == 0)); then
    if [ $kind = tsan ]; then
        pytest_args=(tests/test_threads.py tests/test_lifetimes.py)
    elif ((quick)); then
        # Every class and method (api, bad input, lifetimes), the threads at a small size, and
        # the batch sweeps; the long hypothesis runs are left to the full form.
        pytest_args=(tests/test_api.py tests/test_bad_input.py tests/test_lifetimes.py
            tests/test_deviations.py tests/test_threads.py tests/test_batch_sweep.py)
        export IOVA_THREAD_OPS=${IOVA_THREAD_OPS:-2000}
    else
        pytest_args=(tests)
    fi
fi

cd "$ROOT"
start=$SECONDS
say "running pytest ${pytest_args[*]} with $kind ($so)"
set +e
if [ $kind = asan ]; then
    LD_PRELOAD=$runtime PYTHONMALLOC=malloc G_SLICE=always-malloc \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${pytest_args[@]}"
else
    # GLib's GMutex is invisible to TSan (a futex in an uninstrumented library): the shim
    # fuzz/tsan_gmutex.c tells TSan what each lock and unlock orders.
    shim=$ROOT/build/sanitize/tsan_gmutex.so
    # shellcheck disable=SC2046
    "$CC" -shared -fPIC -O1 $(pkg-config --cflags glib-2.0) "$ROOT/fuzz/tsan_gmutex.c" \
        -Wl,--no-as-needed $(pkg-config --libs glib-2.0) -ldl -o "$shim"
    LD_PRELOAD="$runtime $shim" G_SLICE=always-malloc \
        TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${pytest_args[@]}"
fi
rc=$?
say "$kind: pytest exit status $rc after $((SECONDS - start)) s"

# The differential fuzzer's corpus (scripts/fuzz.sh), replayed on the ASan build: every input
# runs the same calls on native and reference (no atheris needed to replay).
corpus=$ROOT/build/fuzz/corpus-py
if [ $kind = asan ] && [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ]; then
    files=("$corpus"/*)
    files=("${files[@]:0:5000}")
    start=$SECONDS
    LD_PRELOAD=$runtime PYTHONMALLOC=malloc G_SLICE=always-malloc \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$VENV/bin/python" "$ROOT/fuzz/fuzz_diff.py" "${files[@]}" >/dev/null
    replay=$?
    say "$kind: ${#files[@]} inputs of $corpus replayed (native vs reference): exit status" \
        "$replay after $((SECONDS - start)) s"
    ((rc == 0)) && rc=$replay
fi
set -e
exit $rc
