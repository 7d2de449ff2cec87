#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Leak checks of the native backend.
#
#   scripts/leakcheck.sh            # all three checks below (about 3 minutes)
#   scripts/leakcheck.sh --quick    # RSS check + valgrind of the C core alone (what CI runs)
#   scripts/leakcheck.sh --rss      # only the RSS check
#   scripts/leakcheck.sh --valgrind [pytest args]   # only valgrind of pytest (default subset)
#
# 1. RSS: 1M insert/remove cycles on one IOVATree, 1M map_alloc/remove cycles on one
#    VhostIOVATree, 1M alloc/remove cycles, 100k trees made, filled and dropped; RSS printed at
#    the start, every 100k cycles and at the end.  Fails if it grows by more than 2 MiB after
#    the first 100k cycles (the allocator's and GLib's caches settle during those).
# 2. valgrind --leak-check=full over a pytest subset, PYTHONMALLOC=malloc and
#    G_SLICE=always-malloc so that every allocation is visible.  CPython itself leaves memory
#    behind at exit, so the leak records are filtered to those whose allocation stack passes
#    through our C code (iova_*/ib_*/vhost_*/gpa_tree_*/avl_*/hole_* functions, csrc/ files);
#    the figure is "bytes definitely lost from our code", which must be 0.
#    Memory errors (invalid reads/writes, uninitialised values) in our code fail it too.
# 3. valgrind of the C core alone: the standalone fuzz replayer (fuzz/iova_fuzz.c) over the
#    libFuzzer corpus build/fuzz/corpus-c (or a generated one), no interpreter, no filtering:
#    0 bytes definitely, indirectly or possibly lost, 0 errors.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
OUT=$ROOT/build/leakcheck
mkdir -p "$OUT"
cd "$ROOT"

say() { printf 'leakcheck: %s\n' "$*" >&2; }

do_rss=1 do_valgrind=1 do_core=1
pytest_args=()
case ${1:-} in
--quick) do_valgrind=0; shift ;;
--rss) do_valgrind=0; do_core=0; shift ;;
--valgrind) do_rss=0; do_core=0; shift; pytest_args=("$@") ;;
-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
esac
if ((${#pytest_args[@]} == 0)); then
    # Every public method on every class (test_api, test_bad_input), closing and dropping
    # trees (test_lifetimes), QEMU's deviations.  Hypothesis-heavy files are left out: under
    # valgrind they take long and reach the same C paths.
    pytest_args=(tests/test_api.py tests/test_lifetimes.py tests/test_bad_input.py
        tests/test_deviations.py)
fi

status=0

# ------------------------------------------------------------------------------------ 1. RSS
if ((do_rss)); then
    say "RSS over 1M insert/remove cycles (and more)"
    "$PY" - <<'PYEOF' || status=1
"""RSS stays flat over millions of insert/remove cycles."""
import gc
import os
import sys
import time

from iova_native import DMAMap, native

PAGE = os.sysconf("SC_PAGE_SIZE")
CYCLES = 1_000_000
STEP = 100_000
LIMIT = 2 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def run(name, cycle):
    gc.collect()
    start = rss()
    settled = None
    marks = []
    t0 = time.perf_counter()
    for i in range(CYCLES):
        cycle(i)
        if (i + 1) % STEP == 0:
            now = rss()
            marks.append(now)
            if settled is None:
                settled = now
    gc.collect()
    end = rss()
    growth = end - settled
    print(f"{name}: {CYCLES} cycles in {time.perf_counter() - t0:.1f} s; RSS start "
          f"{start / 2**20:.1f} MiB, every {STEP // 1000}k: "
          + " ".join(f"{m / 2**20:.1f}" for m in marks)
          + f", end {end / 2**20:.1f} MiB ({growth / 2**10:+.0f} KiB after the first "
          f"{STEP // 1000}k)")
    return growth <= LIMIT


ok = True

tree = native.IOVATree()
for k in range(1000):  # a populated tree: inserts and removes rebalance real subtrees
    tree.insert(DMAMap(k * 0x10000, k * 0x1000, 0xFFF, id=k % 7))


def insert_remove(i):
    iova = (i % 1000) * 0x10000 + 0x8000
    tree.insert(DMAMap(iova, i * 0x1000 % (1 << 40), 0x7FF, id=i % 5))
    tree.remove(iova)


ok &= run("IOVATree insert/remove", insert_remove)
tree.check()


def alloc_remove(i):
    m = tree.alloc(0xFFF + (i % 7) * 0x1000, i * 0x1000 % (1 << 40), align=0x1000,
                   policy="last" if i & 1 else "first")
    tree.remove(m.iova)


ok &= run("IOVATree alloc/remove", alloc_remove)
tree.check()

vhost = native.VhostIOVATree(0, 1 << 36)
for k in range(500):
    vhost.map_alloc(0xFFF, 0x7F0000000000 + k * 0x1000)
    vhost.map_alloc_gpa(0xFFF, k * 0x2000)


def vhost_cycle(i):
    if i & 1:
        m = vhost.map_alloc(0x1FFF, 0x7E0000000000 + i * 0x1000 % (1 << 36))
        vhost.remove(m.iova)
    else:
        vhost.map_alloc_gpa(0x1FFF, (1 << 40) + i * 0x1000 % (1 << 36))
        vhost.remove_gpa((1 << 40) + i * 0x1000 % (1 << 36))


ok &= run("VhostIOVATree map_alloc/remove", vhost_cycle)
vhost.check()

CYCLES, STEP = 100_000, 10_000


def make_drop(i):
    t = native.IOVATree() if i % 3 else native.VhostIOVATree(0, 1 << 30)
    if i % 3:
        for k in range(8):
            t.insert(DMAMap(k * 0x1000, k, 0xFF))
        if i % 2:
            t.close()
    else:
        for k in range(4):
            t.map_alloc_gpa(0xFF, k * 0x1000)


ok &= run("trees made, filled and dropped", make_drop)
print("RSS check:", "flat" if ok else "GREW")
sys.exit(0 if ok else 1)
PYEOF
fi

# ---------------------------------------------------------------- valgrind report filtering
# Reads valgrind's XML; prints our figures; exits 1 if our code lost bytes or had errors.
summarise() {
    "$PY" - "$@" <<'PYEOF'
"""Sum valgrind's leak records and errors, split into 'our code' and the rest."""
import re
import sys
import xml.etree.ElementTree as ET

path, scope = sys.argv[1], sys.argv[2]  # scope: "ours" filters to our code, "all" does not
# Our C functions (csrc/): a record is ours when its stack passes through one of them.  The
# cffi glue of the extension (_cffi_init, PyInit__core) is cffi's: its one-time module set-up
# (288 bytes the cffi backend never frees) is counted with the interpreter's records.
OURS = re.compile(r"^(iova_|ib_|vhost_|gpa_tree_|avl_|hole_|dma_map_|tree_|model_)")


def ours(error) -> bool:
    if scope == "all":
        return True
    for frame in error.iter("frame"):
        fn = frame.findtext("fn") or ""
        directory = frame.findtext("dir") or ""
        if OURS.match(fn) or directory.endswith("/csrc"):
            return True
    return False


lost = {}
errors = {}
first_ours = None
for error in ET.parse(path).getroot().iter("error"):
    kind = error.findtext("kind")
    mine = ours(error)
    if kind.startswith("Leak_"):
        nbytes = int(error.findtext("xwhat/leakedbytes") or 0)
        key = (kind, mine)
        lost[key] = lost.get(key, 0) + nbytes
    else:
        errors[mine] = errors.get(mine, 0) + 1
    if mine and first_ours is None and (kind != "Leak_PossiblyLost" or scope == "all") \
            and kind not in ("Leak_StillReachable",):
        first_ours = error

definite = lost.get(("Leak_DefinitelyLost", True), 0)
indirect = lost.get(("Leak_IndirectlyLost", True), 0)
possible = lost.get(("Leak_PossiblyLost", True), 0)
where = "from our code" if scope == "ours" else "in all"
print(f"  {definite} bytes definitely lost {where} ({indirect} indirectly, {possible} possibly); "
      f"{errors.get(True, 0)} memory errors {where}")
if scope == "ours":
    other = sum(v for (k, m), v in lost.items() if not m and k == "Leak_DefinitelyLost")
    print(f"  (CPython's and the cffi backend's records, not ours: {other} bytes definitely lost, "
          f"{errors.get(False, 0)} errors)")
bad = definite or indirect or errors.get(True, 0) or (scope == "all" and possible)
if bad and first_ours is not None:
    print("  first record of ours:", first_ours.findtext("kind"))
    for frame in list(first_ours.iter("frame"))[:12]:
        print("     ", frame.findtext("fn"), frame.findtext("file") or frame.findtext("obj"),
              frame.findtext("line") or "")
sys.exit(1 if bad else 0)
PYEOF
}

need_valgrind() {
    if command -v valgrind >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing valgrind"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind \
            >/dev/null && return 0
    fi
    say "SKIP: valgrind is not installed (apt-get install valgrind)"
    return 1
}

# ------------------------------------------------------------------- 2. valgrind over pytest
if ((do_valgrind)) && need_valgrind; then
    say "valgrind --leak-check=full: pytest ${pytest_args[*]} (several minutes)"
    start=$SECONDS
    xml=$OUT/pytest.xml
    PYTHONMALLOC=malloc G_SLICE=always-malloc IOVA_THREAD_OPS=${IOVA_THREAD_OPS:-500} \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --num-callers=30 --xml=yes --xml-file="$xml" \
        "$PY" -m pytest -q -p no:cacheprovider "${pytest_args[@]}" | tail -n 3 || status=1
    say "valgrind of pytest took $((SECONDS - start)) s; report: $xml"
    summarise "$xml" ours || status=1
fi

# --------------------------------------------------------------- 3. valgrind of the C core
if ((do_core)) && need_valgrind; then
    replay=$ROOT/build/fuzz/iova_fuzz_replay
    mkdir -p "$ROOT/build/fuzz"
    # shellcheck disable=SC2046
    cc -std=c11 -O1 -g -Wall -Wextra -DIOVA_FUZZ_STANDALONE -Icsrc $(pkg-config --cflags glib-2.0) \
        fuzz/iova_fuzz.c csrc/iova-*.c csrc/vhost-*.c $(pkg-config --libs glib-2.0) -o "$replay"
    corpus=$ROOT/build/fuzz/corpus-c
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        corpus=$OUT/random-corpus  # no libFuzzer corpus yet: random inputs
        mkdir -p "$corpus"
        for i in $(seq 1 300); do
            head -c $((RANDOM % 2000 + 16)) /dev/urandom >"$corpus/random-$i"
        done
    fi
    files=("$corpus"/*)
    files=("${files[@]:0:3000}")  # bounded: the corpus grows from run to run
    say "valgrind of the C core alone: $replay over ${#files[@]} inputs of $corpus"
    start=$SECONDS
    xml=$OUT/core.xml
    G_SLICE=always-malloc valgrind --tool=memcheck --leak-check=full \
        --show-leak-kinds=definite,indirect,possible --num-callers=30 --xml=yes \
        --xml-file="$xml" "$replay" "${files[@]}" >/dev/null || status=1
    say "valgrind of the C core took $((SECONDS - start)) s; report: $xml"
    summarise "$xml" all || status=1
fi

if ((status)); then
    say "FAILED"
else
    say "passed"
fi
exit $status
