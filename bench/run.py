#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every comparison of the suite, side by side in one run: native, reference, the C core's
linear walks, and the PyPI ``intervaltree`` package as the peer a Python user would pick.

    .venv/bin/python bench/run.py            # N = 1k, 10k, 100k, 1M; tables and PNG plots
    .venv/bin/python bench/run.py --quick    # N = 1k, 10k, a few seconds, no plots (CI)

Writes ``RESULTS.md`` (and, unless ``--quick`` without ``--plots``, one log-log PNG per op
family) into ``--out`` (default ``bench/results``) and prints the Markdown as it goes.

How it measures, and why:

* Layout (a) of issue 4 at every N: disjoint 4 KiB maps at consecutive IOVAs, their HVAs the
  same pages shuffled, distinct GPA-like ids.  The trees are built once per N and backend.
* Needles are generated beforehand with a fixed seed; each timed loop holds only the calls.
  A figure is the fastest of a few loops sized to a time budget, so an O(n) operation of the
  reference at 1M maps runs a handful of calls while an O(log n) one runs thousands.
* ``insert`` and ``remove`` take batches of random existing maps out and put them back (at
  most 1% of N a batch), timing one half: random positions in every structure, state kept.
* The reference and ``intervaltree`` are capped (``--ref-cap``, ``--peer-cap``): above the cap
  they are not built, and the table says so.  Their slow calls are sampled by the budget.
* Memory per map is measured in a fresh interpreter per figure: tracemalloc for Python objects
  (the reference and intervaltree keep the ``DMAMap`` objects, so those count), glibc's
  ``mallinfo2`` in-use bytes (``ib_heap_in_use``) for the native core, which keeps no Python
  objects: GTree node, entry with the reverse and id trees, holes; plus the arena blocks the
  tree mapped outside malloc (``ib_tree_mapped_bytes``).
* The C benchmark (``tools-build/iova-bench``, built by ``scripts/build-tools.sh``) runs first,
  with the same sizes, alone on the machine; its per-address cost of the C-only reverse loop
  is the floor ``to_iova_many`` is held against, and its Markdown is appended verbatim.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # a checkout works even where the package is not installed

from iova_native import DMAMap, Perm, native, reference  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import overhead  # noqa: E402

PAGE = 0x1000
MAP_SIZE = PAGE - 1  # sizes are inclusive
HVA_BASE = 0x7F0000000000
GPA_BASE = 0x100000000
TR_LEN = 4 * PAGE  # translate() buffers: 4 pages at a random offset, 5 segments
OVERLAP_LEN = 4 * PAGE  # the overlap query's window
SEED = 20240515
REPEATS = 3  # whole-input batch calls: the fastest of this many
LOOP_S = 0.0005  # one timed loop: well under a time slice of a loaded machine
MIN_LOOPS = 3
MIN_CALLS = 8
MIN_ITERS_FOR_MIN = 64  # loops of fewer calls than this report the mean (see measure)
HARD_LIMIT = 5
QUERIES = 4096  # needles per op at least ...
MAX_QUERIES = 1 << 18  # ... and at most: as many as maps in between
BATCH_ADDRS_FULL = 1_000_000
LOOP_SAMPLE_FULL = 200_000

Op = Callable[[int], int]  # op(k): run k operations, return the nanoseconds of the timed part

# --------------------------------------------------------------------------- measuring


def measure(op: Op, budget_s: float) -> float:
    """ns per operation.  k grows until one loop lasts LOOP_S; then loops run until the budget
    is spent (at least MIN_LOOPS loops and MIN_CALLS calls, at most HARD_LIMIT budgets).

    Why many short loops: on a shared 2-core machine a long loop is preempted, and the time it
    waits counts as if the calls had spent it; the fastest of many short loops is the
    undisturbed cost.  But a loop of a few slow calls (the reference's O(n) scans, whose cost
    depends on where the answer sits) is no fair sample of the needles: the fastest one is
    merely the luckiest, so below MIN_ITERS_FOR_MIN calls a loop the mean of all calls is
    reported instead."""
    budget, loop = int(budget_s * 1e9), int(LOOP_S * 1e9)
    # One call first, outside the figures: a one-time cost (native's cache list made for the
    # tree's maps at its first look-up, 10 ms at 1M) would otherwise stop k growing at 1 and
    # leave a mean of single calls, which a full garbage collection inside it then dominates.
    op(1)
    k, spent, calls = 1, 0, 0
    while True:
        dt = op(k)
        spent, calls = spent + dt, calls + k
        if dt >= loop // 2:
            break
        k *= min(16, loop // max(dt, 1) + 1)
    best, loops = dt / k, 1
    while (loops < MIN_LOOPS or spent < budget or calls < MIN_CALLS) and (
        spent < HARD_LIMIT * budget
    ):
        dt = op(k)
        best, spent, calls, loops = min(best, dt / k), spent + dt, calls + k, loops + 1
    return best if k >= MIN_ITERS_FOR_MIN else spent / calls


class Cursor:
    """Hands out the needles of ``xs`` in turn, cycling, built outside the clock.  Why a
    cursor: ``measure`` runs many short loops; if each started at the first needle it would
    re-ask the same few, whose paths are then in cache."""

    def __init__(self, xs: Sequence[Any]) -> None:
        self.xs = xs
        self.pos = 0

    def take(self, k: int) -> list[Any]:
        xs, start = self.xs, self.pos % len(self.xs)
        self.pos = start + k
        out = list(xs[start : start + k])
        while len(out) < k:
            out.extend(xs[: k - len(out)])
        return out


def now() -> int:
    return time.perf_counter_ns()


# --------------------------------------------------------------------------- the layout


@dataclass
class Layout:
    """Issue 4's layout (a) at ``n`` maps, and the needles every backend is asked."""

    n: int
    maps: list[DMAMap]
    fwd: list[int]  # IOVAs that some map covers
    rev: list[int]  # translated addresses that some map covers
    rev_id: list[tuple[int, int]]  # (address, id of the map covering it)
    tr: list[int]  # starts of TR_LEN-byte buffers, fully covered
    batches: list[list[DMAMap]]  # random distinct maps, taken out and put back
    batch: int


def make_layout(n: int) -> Layout:
    rng = random.Random(SEED + n)
    perm = list(range(n))
    rng.shuffle(perm)
    maps = [
        DMAMap(PAGE + i * PAGE, HVA_BASE + perm[i] * PAGE, MAP_SIZE, Perm.RW, GPA_BASE + i * PAGE)
        for i in range(n)
    ]
    fwd, rev, rev_id, tr = [], [], [], []
    for _ in range(min(max(n, QUERIES), MAX_QUERIES)):
        m = maps[rng.randrange(n)]
        off = rng.randrange(PAGE)
        fwd.append(m.iova + off)
        rev.append(m.translated_addr + off)
        rev_id.append((m.translated_addr + off, m.id))
        tr.append(HVA_BASE + rng.randrange(max(n - 4, 1)) * PAGE + rng.randrange(PAGE))
    batch = max(16, min(1024, n // 100))
    batches = [rng.sample(maps, batch) for _ in range(32)]
    return Layout(n, maps, fwd, rev, rev_id, tr, batches, batch)


def hva_hits(n: int, count: int, seed: int) -> array[int]:
    """``count`` random translated addresses covered by layout (a) of ``n`` maps."""
    rng = random.Random(seed)
    pages = [HVA_BASE + rng.randrange(n) * PAGE for _ in range(count)]
    return array("Q", [p + rng.randrange(PAGE) for p in pages])


# --------------------------------------------------------------------------- results


@dataclass
class Results:
    sizes: list[int]
    # values[(family, op, backend)][n] = ns/op (or bytes/map for family "memory")
    values: dict[tuple[str, str, str], dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    c_markdown: str = ""
    c_values: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    peer_names: dict[str, str] = field(default_factory=dict)  # op -> intervaltree's call

    def put(self, family: str, op: str, backend: str, n: int, value: float) -> None:
        self.values.setdefault((family, op, backend), {})[n] = value

    def get(self, family: str, op: str, backend: str, n: int) -> float | None:
        return self.values.get((family, op, backend), {}).get(n)


def fmt_ns(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}×"
    if v >= 10:
        return f"{v:.1f}×"
    return f"{v:.2f}×"


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


# --------------------------------------------------------------------------- backends


def api_ops(tree: Any, lay: Layout, with_alloc: bool = True) -> dict[str, Op]:
    """The timed operations of a tree with the contract's API (native, reference, differential)."""
    find, find_iova = tree.find, tree.find_iova
    insert, remove, translate = tree.insert, tree.remove, tree.translate
    fwd, ovl, rev_id, rev, tr = (Cursor(lay.fwd), Cursor(lay.fwd), Cursor(lay.rev_id),
                                 Cursor(lay.rev), Cursor(lay.tr))

    def op_find(k: int) -> int:
        xs = fwd.take(k)
        t0 = now()
        for a in xs:
            find(a)
        return now() - t0

    def op_overlap(k: int) -> int:
        xs = ovl.take(k)
        t0 = now()
        for a in xs:
            find(a, OVERLAP_LEN - 1)
        return now() - t0

    def op_find_iova_id(k: int) -> int:
        xs = rev_id.take(k)
        t0 = now()
        for a, i in xs:
            find_iova(a, 0, i)
        return now() - t0

    def op_find_iova_any(k: int) -> int:
        xs = rev.take(k)
        t0 = now()
        for a in xs:
            find_iova(a)
        return now() - t0

    batches = Cursor(lay.batches)
    churn = functools.partial(overhead.churn_op, remove, insert, lambda: batches.take(1)[0])

    def op_translate(k: int) -> int:
        xs = tr.take(k)
        t0 = now()
        for a in xs:
            translate(a, TR_LEN)
        return now() - t0

    ops: dict[str, Op] = {
        "find (point)": op_find,
        "overlap query (16 KiB)": op_overlap,
        "find_iova, with id": op_find_iova_id,
        "find_iova, no id": op_find_iova_any,
        "insert": churn(True),
        "remove": churn(False),
        "translate (16 KiB, 5 segs)": op_translate,
    }
    if with_alloc:
        ops["alloc (first fit, top)"] = overhead.alloc_op(tree, lay.batch)
    return ops


def peer_ops(lay: Layout) -> tuple[dict[str, Op], dict[str, str]]:
    """intervaltree's nearest equivalents: one tree keyed by IOVA, one by HVA (find_iova)."""
    from intervaltree import Interval, IntervalTree

    ivs = {m: Interval(m.iova, m.last + 1, m) for m in lay.maps}
    fwd_tree = IntervalTree(ivs.values())
    rev_tree = IntervalTree(Interval(m.translated_addr, m.translated_last + 1, m) for m in lay.maps)
    at, overlap, rev_at = fwd_tree.at, fwd_tree.overlap, rev_tree.at
    fwd, ovl, rev = Cursor(lay.fwd), Cursor(lay.fwd), Cursor(lay.rev)

    def op_at(k: int) -> int:
        xs = fwd.take(k)
        t0 = now()
        for a in xs:
            at(a)
        return now() - t0

    def op_overlap(k: int) -> int:
        xs = ovl.take(k)
        t0 = now()
        for a in xs:
            overlap(a, a + OVERLAP_LEN)
        return now() - t0

    def op_rev_at(k: int) -> int:
        xs = rev.take(k)
        t0 = now()
        for a in xs:
            rev_at(a)
        return now() - t0

    batches = Cursor(lay.batches)

    def churn(k: int, mode: str) -> int:
        spent, done = 0, 0
        while done < k:
            victims = [ivs[m] for m in batches.take(1)[0][: k - done]]
            t0 = now()
            if mode == "remove_overlap":
                for iv in victims:
                    fwd_tree.remove_overlap(iv.begin, iv.end)
            else:
                for iv in victims:
                    fwd_tree.remove(iv)
            t1 = now()
            for iv in victims:
                fwd_tree.addi(iv.begin, iv.end, iv.data)
            t2 = now()
            spent += t2 - t1 if mode == "insert" else t1 - t0
            done += len(victims)
        return spent

    ops: dict[str, Op] = {
        "find (point)": op_at,
        "overlap query (16 KiB)": op_overlap,
        "find_iova, no id": op_rev_at,
        "insert": lambda k: churn(k, "insert"),
        "remove": lambda k: churn(k, "remove"),
        "remove (remove_overlap)": lambda k: churn(k, "remove_overlap"),
    }
    names = {
        "find (point)": "`at(p)`",
        "overlap query (16 KiB)": "`overlap(a, b)`",
        "find_iova, no id": "`at(p)` on a second tree keyed by HVA",
        "insert": "`addi(b, e, map)`",
        "remove": "`remove(interval)` (exact)",
        "remove (remove_overlap)": "`remove_overlap(b, e)`",
    }
    return ops, names


# --------------------------------------------------------------------------- the C bench


def provenance(res: Results) -> str:
    """Which core was measured: the commit, whether csrc/ differs from it, and a warning when
    the compiled extension is older than the C sources (the native rows would then measure
    an older core than the C rows)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "csrc", "src"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    sources = list((ROOT / "csrc").glob("*.[ch]"))
    built = list((ROOT / "src" / "iova_native").glob("_core*.so"))
    if sources and built:
        newest = max(p.stat().st_mtime for p in sources)
        if min(p.stat().st_mtime for p in built) < newest:
            res.notes.append("the native extension is older than csrc/: the native rows measure "
                             "an older core (rebuild: pip install --no-build-isolation -e .)")
    return f"commit {head}" + (" with uncommitted changes in csrc/ or src/" if dirty else "")


def run_c_bench(args: argparse.Namespace, res: Results) -> None:
    binary = ROOT / "tools-build" / "iova-bench"
    build = ROOT / "scripts" / "build-tools.sh"
    if build.exists():
        rc = subprocess.run(["bash", str(build), "iova-bench"], cwd=ROOT).returncode
        if rc != 0:
            res.notes.append(f"scripts/build-tools.sh failed ({rc}): C rows missing")
    if not binary.exists():
        res.notes.append("tools-build/iova-bench not available: C rows missing")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "c.tsv"
        cmd = [str(binary), "--sizes", ",".join(label(n) for n in args.sizes), "--tsv", str(tsv)]
        if args.quick:
            cmd.insert(1, "--quick")
        print(f"running {' '.join(cmd[:1] + cmd[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"iova-bench failed ({proc.returncode}): {proc.stderr.strip()}")
        res.c_markdown = proc.stdout
        for line in tsv.read_text().splitlines():
            key, row, n, value = line.split("\t")
            res.c_values.setdefault((key, row), {})[int(n)] = float(value)


def copy_c_rows(res: Results) -> None:
    """The C figures that belong in the Python tables, as backend "C core"."""
    picks = [
        ("lookup", "find (point)", "a", "find"),
        ("lookup", "find_iova, with id", "a", "find_iova (with id)"),
        ("lookup", "find_iova, no id", "a", "find_iova_any (no id)"),
        ("lookup", "find_iova, linear walk (QEMU)", "a", "linear walk, no id (QEMU)"),
        ("update", "insert", "a", "insert"),
        ("update", "remove", "a", "remove"),
        ("update", "alloc (first fit, top)", "alloc", "alloc_map (hole tree)"),
        ("update", "alloc, linear walk (QEMU)", "alloc", "alloc_map_linear (QEMU walk)"),
        ("translate", "translate (16 KiB, 5 segs)", "a", "translate (multi-page)"),
        ("batch", "per address", "a", "to_iova loop, 1M addrs (per addr)"),
        ("memory", "bytes/map", "mem", "IOVATree, layout (a)"),  # the same tree, built in C
    ]
    for family, op, key, row in picks:
        for n, v in res.c_values.get((key, row), {}).items():
            res.put(family, op, "C core", n, v)


# --------------------------------------------------------------------------- memory probes


def mem_probe(backend: str, n: int) -> float:
    """Bytes per map of ``backend`` holding layout (a) of ``n`` maps: run in a child."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--mem-probe", backend, str(n)],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["bytes_per_map"])


def mem_probe_child(backend: str, n: int) -> None:
    """Build the structure in this fresh interpreter, maps made on the fly, and print JSON."""
    rng = random.Random(SEED + n)
    perm = list(range(n))
    rng.shuffle(perm)

    def maps() -> Any:
        for i in range(n):
            yield DMAMap(PAGE + i * PAGE, HVA_BASE + perm[i] * PAGE, MAP_SIZE, Perm.RW,
                         GPA_BASE + i * PAGE)

    if backend in ("native", QEMU_LAYOUT):
        from iova_native._core import lib

        # The tree and its first arena block count; cffi's small answer buffers come from
        # Python's own allocator (not malloc), so they do not.  A native GPATree is QEMU's
        # layout exactly: a GTree of g_new() DMAMaps, no reverse tree, no holes.
        before = lib.ib_heap_in_use()
        tree = native.IOVATree() if backend == "native" else native.GPATree()
        for m in maps():
            tree.insert(m)
        used = lib.ib_heap_in_use() - before + lib.ib_tree_mapped_bytes(tree._h)
        assert len(tree) == n
    else:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        if backend == "reference":
            ref = reference.IOVATree()
            for m in maps():
                ref.insert(m)
            keep: Any = ref
        else:
            from intervaltree import Interval, IntervalTree

            keep = IntervalTree(Interval(m.iova, m.last + 1, m) for m in maps())
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert len(keep) == n
    print(json.dumps({"bytes_per_map": used / n}))


# --------------------------------------------------------------------------- the run


def bench_size(args: argparse.Namespace, res: Results, n: int) -> None:
    budget = args.budget

    def say(msg: str) -> None:
        print(f"  N={label(n)}: {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    lay = make_layout(n)

    # native
    tree = native.IOVATree()
    t0 = now()
    for m in lay.maps:
        tree.insert(m)
    say(f"native built in {(now() - t0) / 1e9:.1f} s")
    for op, fn in api_ops(tree, lay).items():
        res.put(fam(op), op, "native", n, measure(fn, budget))
    batch_and_loops(args, res, n, tree)
    tree.check()
    tree.close()

    # reference
    if n <= args.ref_cap:
        ref = reference.IOVATree()
        for m in lay.maps:
            ref.insert(m)
        say("reference built")
        for op, fn in api_ops(ref, lay).items():
            res.put(fam(op), op, "reference", n, measure(fn, budget))
        ref_batch(args, res, n, ref)
        del ref

    # intervaltree
    if n <= args.peer_cap:
        try:
            ops, names = peer_ops(lay)
        except ImportError:
            if n == args.sizes[0]:
                res.notes.append("intervaltree is not installed (pip install intervaltree): "
                                 "peer rows missing")
        else:
            say("intervaltree built")
            for op, fn in ops.items():
                res.put(fam(op), op, "intervaltree", n, measure(fn, budget))
            res.peer_names = names

    # differential
    if n <= args.diff_cap:
        bench_differential(args, res, n, lay)
    say(f"done in {time.perf_counter() - t_start:.1f} s")


def fam(op: str) -> str:
    if op.startswith(("insert", "remove", "alloc")):
        return "update"
    if op.startswith("translate"):
        return "translate"
    return "lookup"


def batch_and_loops(args: argparse.Namespace, res: Results, n: int, tree: Any) -> None:
    """to_iova_many over 1M addresses against a Python loop of find_iova (native)."""
    count = args.batch_addrs
    addrs = hva_hits(n, count, SEED + 7 * n)
    best = min(timed(lambda: tree.to_iova_many(addrs)) for _ in range(REPEATS))
    res.put("batch", "per address", "native to_iova_many", n, best / count)
    out = tree.to_iova_many(addrs)
    # the answers must be right, or the speed means nothing
    probe = tree.find_iova(addrs[0])
    assert probe is not None and out[0] == probe.iova + (addrs[0] - probe.translated_addr)

    sample = addrs[: args.loop_sample].tolist()
    find_iova = tree.find_iova

    def python_loop() -> None:
        out: list[int] = []
        append = out.append
        for a in sample:
            m = find_iova(a)
            append(m.iova + (a - m.translated_addr))

    best = min(timed(python_loop) for _ in range(REPEATS))
    res.put("batch", "per address", "native, Python loop of find_iova", n, best / len(sample))


def ref_batch(args: argparse.Namespace, res: Results, n: int, ref: Any) -> None:
    addrs = Cursor(hva_hits(n, 4096, SEED + 7 * n))

    def op(k: int) -> int:
        xs = array("Q", addrs.take(k))
        t0 = now()
        ref.to_iova_many(xs)
        return now() - t0

    res.put("batch", "per address", "reference to_iova_many", n, measure(op, args.budget))


#: Addresses of the long rows of the alias table: far past the 128 from which C sorts a batch.
ALIAS_LONG = 100_000


def alias_batches(args: argparse.Namespace) -> list[str]:
    """Batches whose every address lies under many aliases (issue 15): the single look-up is
    dear there (O(log n + k) for k covering maps and no id), and a sorted batch must never pay
    more per address than the same addresses unsorted.  Batches of fewer than 128 addresses
    are answered in input order, so 127 against 128 is unsorted against sorted."""
    k = args.alias_maps
    tree = native.IOVATree()
    base = 0x5000_0000  # every map covers [base, base + 1 MiB): a page-long spread of starts
    for i in range(k):
        j = i % 1000
        tree.insert(DMAMap(0x10_0000_0000 + i * 0x100_0000, base - j * PAGE,
                           0x10_0000 + j * PAGE))
    x = base + 0x800

    def per_address(addrs: list[int]) -> float:
        batch = array("Q", addrs)
        return min(timed(lambda: tree.to_iova_many(batch)) for _ in range(REPEATS)) / len(addrs)

    single = min(timed(lambda: tree.find_iova(x)) for _ in range(REPEATS))
    rows = [
        ("x repeated", [x] * 127, [x] * 128, [x] * ALIAS_LONG),
        ("x, x+1, x+2, ...", list(range(x, x + 127)), list(range(x, x + 128)),
         list(range(x, x + ALIAS_LONG))),
    ]
    lines = [f"| addresses | 127 (input order) | 128 (sorted) | {ALIAS_LONG:,} (sorted) "
             "| 128 ÷ 127 |", "|---|---:|---:|---:|---:|"]
    for name, short, sorted_, long in rows:
        a, b, c = per_address(short), per_address(sorted_), per_address(long)
        lines.append(f"| {name} | {fmt_ns(a)} | {fmt_ns(b)} | {fmt_ns(c)} | {fmt_ratio(b / a)} |")
    lines.append(f"| one `find_iova(x)`, for scale | {fmt_ns(single)} | | | |")
    tree.close()
    return lines


def alias_section(args: argparse.Namespace) -> list[str]:
    return ["", "## Batches under many aliases (ns per address)", "",
            f"{args.alias_maps:,} maps alias one MiB of HVA (starts a page apart), so every "
            "address of these batches has them all over it and no id to tell them apart; one "
            "look-up is O(log n + k) for k such maps.  A repeated address reuses the answer "
            "(hit or miss), and in a sorted batch, so does an address with no map starting "
            "since the previous one while the previous answer still covers it.  "
            "`bench/run.py --aliases-only` prints this table alone.", ""] + alias_batches(args)


def timed(fn: Callable[[], object]) -> int:
    t0 = now()
    fn()
    return now() - t0


def bench_differential(args: argparse.Namespace, res: Results, n: int, lay: Layout) -> None:
    try:
        from iova_native import differential

        tree = differential.IOVATree()
        for m in lay.maps:
            tree.insert(m)
    except Exception as exc:  # being written elsewhere: a failure is a note, not a crash
        if n == args.sizes[0]:
            res.notes.append(f"differential backend skipped: {type(exc).__name__}: {exc}")
        return
    find, fwd = tree.find, Cursor(lay.fwd)

    def op(k: int) -> int:
        xs = fwd.take(k)
        t0 = now()
        for a in xs:
            find(a)
        return now() - t0

    res.put("differential", "find (point)", "differential", n, measure(op, args.budget))


def memory(args: argparse.Namespace, res: Results) -> None:
    for n in args.sizes:
        res.put("memory", "bytes/map", "native", n, mem_probe("native", n))
        res.put("memory", "bytes/map", QEMU_LAYOUT, n, mem_probe(QEMU_LAYOUT, n))
        if n <= min(args.ref_cap, args.mem_cap):
            res.put("memory", "bytes/map", "reference", n, mem_probe("reference", n))
        if n <= min(args.peer_cap, args.mem_cap):
            try:
                res.put("memory", "bytes/map", "intervaltree", n, mem_probe("intervaltree", n))
            except subprocess.CalledProcessError:
                pass  # not installed: noted by the timing part


# --------------------------------------------------------------------------- the report

BACKENDS = ["native", "reference", "intervaltree", "C core"]
QEMU_LAYOUT = "QEMU's layout (GTree of g_new DMAMaps)"
BACKEND_STYLE = {  # line style and marker in the plots
    "native": ("-", "o"),
    "reference": (":", "s"),
    "intervaltree": ("-.", "^"),
    "C core": ("--", "x"),
}
OPS = [
    "find (point)",
    "overlap query (16 KiB)",
    "find_iova, with id",
    "find_iova, no id",
    "find_iova, linear walk (QEMU)",
    "insert",
    "remove",
    "remove (remove_overlap)",
    "alloc (first fit, top)",
    "alloc, linear walk (QEMU)",
    "translate (16 KiB, 5 segs)",
]


def header(res: Results, first: str) -> list[str]:
    cols = " | ".join(f"N={label(n)}" for n in res.sizes)
    return [f"| {first} | {cols} |", "|---|---|" + "---:|" * len(res.sizes)]


def op_table(res: Results) -> list[str]:
    lines = header(res, "op | backend")
    lines[1] = "|---|---|" + "---:|" * len(res.sizes)
    for op in OPS:
        for backend in BACKENDS:
            vals = res.values.get((fam(op), op, backend))
            if not vals:
                continue
            cells = " | ".join(fmt_ns(vals.get(n)) for n in res.sizes)
            lines.append(f"| {op} | {backend} | {cells} |")
        for other in ("reference", "intervaltree"):
            if (fam(op), op, other) in res.values and (fam(op), op, "native") in res.values:
                cells = " | ".join(
                    fmt_ratio(ratio(res.get(fam(op), op, other, n),
                                    res.get(fam(op), op, "native", n)))
                    for n in res.sizes
                )
                lines.append(f"| {op} | **{other} / native** | {cells} |")
    return lines


def simple_table(res: Results, family: str, first: str) -> list[str]:
    lines = header(res, first)
    for (f, op, backend), vals in res.values.items():
        if f != family:
            continue
        cells = " | ".join(fmt_ns(vals.get(n)) for n in res.sizes)
        lines.append(f"| {op} | {backend} | {cells} |")
    return lines


def batch_table(res: Results) -> list[str]:
    lines = simple_table(res, "batch", "ns per address | how")
    many = "native to_iova_many"
    for other, text in (
        ("C core", "to_iova_many / C-only loop"),
        ("native, Python loop of find_iova", "Python loop / to_iova_many"),
        ("reference to_iova_many", "reference / native to_iova_many"),
    ):
        cells = []
        for n in res.sizes:
            a = res.get("batch", "per address", many, n)
            b = res.get("batch", "per address", other, n)
            cells.append(fmt_ratio(ratio(a, b) if other == "C core" else ratio(b, a)))
        lines.append(f"| **ratio** | {text} | {' | '.join(cells)} |")
    return lines


def memory_table(res: Results) -> list[str]:
    lines = simple_table(res, "memory", "bytes per map | backend")
    for other, base in (("reference", "native"), ("intervaltree", "native"),
                        ("reference", QEMU_LAYOUT)):
        cells = [
            fmt_ratio(ratio(res.get("memory", "bytes/map", other, n),
                            res.get("memory", "bytes/map", base, n)))
            for n in res.sizes
        ]
        shown = "QEMU's layout" if base == QEMU_LAYOUT else base
        lines.append(f"| **ratio** | {other} / {shown} | {' | '.join(cells)} |")
    return lines


CEILING_OPS = ("find (point)", "find_iova, no id", "insert", "remove")


def ceilings(res: Results) -> list[str]:
    """What a binding that cost nothing could show: intervaltree against the C core itself,
    and the reference's memory against QEMU's bare layout."""
    n = key_size(res)
    lines = [f"| at N={label(n)} | intervaltree | C core | native | intervaltree / C core "
             "(zero-cost binding) | intervaltree / native | binding's cost (native − C) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for op in CEILING_OPS:
        peer = res.get(fam(op), op, "intervaltree", n)
        c_core = res.get(fam(op), op, "C core", n)
        nat = res.get(fam(op), op, "native", n)
        cost = nat - c_core if nat is not None and c_core is not None else None
        lines.append(f"| {op} (ns) | {fmt_ns(peer)} | {fmt_ns(c_core)} | {fmt_ns(nat)} | "
                     f"{fmt_ratio(ratio(peer, c_core))} | {fmt_ratio(ratio(peer, nat))} | "
                     f"{fmt_ns(cost)} |")
    ref = res.get("memory", "bytes/map", "reference", n)
    qemu = res.get("memory", "bytes/map", QEMU_LAYOUT, n)
    mem = res.get("memory", "bytes/map", "native", n)
    lines += ["", f"| at N={label(n)}, bytes per map | reference | QEMU's layout | native | "
              "reference / QEMU's layout (no reverse tree at all) | reference / native |",
              "|---|---:|---:|---:|---:|---:|",
              f"| memory | {fmt_ns(ref)} | {fmt_ns(qemu)} | {fmt_ns(mem)} | "
              f"{fmt_ratio(ratio(ref, qemu))} | {fmt_ratio(ratio(ref, mem))} |"]
    return lines


def diff_table(res: Results) -> list[str]:
    lines = header(res, "find (point), ns/op | backend")
    sums: dict[int, float] = {}
    for n in res.sizes:
        a = res.get("lookup", "find (point)", "native", n)
        b = res.get("lookup", "find (point)", "reference", n)
        if a is not None and b is not None and res.get(
            "differential", "find (point)", "differential", n
        ) is not None:
            sums[n] = a + b
    d = res.values.get(("differential", "find (point)", "differential"), {})
    lines.append("| differential | native vs reference | "
                 + " | ".join(fmt_ns(d.get(n)) for n in res.sizes) + " |")
    lines.append("| native + reference | sum of the two finds | "
                 + " | ".join(fmt_ns(sums.get(n)) for n in res.sizes) + " |")
    lines.append("| **ratio** | differential / (native + reference) | "
                 + " | ".join(fmt_ratio(ratio(d.get(n), sums.get(n))) for n in res.sizes)
                 + " |")
    return lines


def key_size(res: Results) -> int:
    return 100_000 if 100_000 in res.sizes else max(res.sizes)


# What each group of targets is about, for the Targets table (the rows name it by its number).
TARGET_AREAS = {"4": "reverse look-up", "5": "vhost look-up", "6": "allocation",
                "7": "Python binding", "17": "C core"}


def targets(res: Results) -> list[str]:
    """The issues' 'must show' ratios, at 100k (or the largest N run)."""
    n = key_size(res)
    rows: list[tuple[str, str, float | None, Callable[[float], bool]]] = []
    c = res.c_values

    def cv(key: str, row: str, size: int = n) -> float | None:
        return c.get((key, row), {}).get(size)

    rows.append(("4", "layout (a): linear walk / find_iova (id)",
                 ratio(cv("a", "linear walk, id (QEMU)"), cv("a", "find_iova (with id)")),
                 lambda v: v >= 500))
    rows.append(("4", "layout (a): linear walk / find_iova_any",
                 ratio(cv("a", "linear walk, no id (QEMU)"), cv("a", "find_iova_any (no id)")),
                 lambda v: v >= 500))
    rows.append(("4", "layout (a): find_iova (id) / find",
                 ratio(cv("a", "find_iova (with id)"), cv("a", "find")), lambda v: v <= 2))
    rows.append(("4", "layout (a): find_iova_any / find",
                 ratio(cv("a", "find_iova_any (no id)"), cv("a", "find")), lambda v: v <= 2))
    rows.append(("6", "dense: alloc_map_linear / alloc_map",
                 ratio(cv("alloc", "alloc_map_linear (QEMU walk)"),
                       cv("alloc", "alloc_map (hole tree)")), lambda v: v >= 500))
    for op in ("find (point)", "find_iova, with id", "find_iova, no id", "insert", "remove"):
        nat = res.get(fam(op), op, "native", n)
        rows.append(("7", f"{op}: reference / native",
                     ratio(res.get(fam(op), op, "reference", n), nat), lambda v: v >= 1))
        peer = res.get(fam(op), op, "intervaltree", n)
        if op == "remove":
            alt = res.get("update", "remove (remove_overlap)", "intervaltree", n)
            peer = min(peer, alt) if peer is not None and alt is not None else peer
        if op != "find_iova, with id":
            rows.append(("7", f"{op}: intervaltree / native", ratio(peer, nat),
                         lambda v: v >= 20))
    many = res.get("batch", "per address", "native to_iova_many", n)
    rows.append(("7", "to_iova_many (1M addrs) / C-only loop",
                 ratio(many, res.get("batch", "per address", "C core", n)), lambda v: v <= 1.5))
    rows.append(("7", "Python loop of find_iova / to_iova_many",
                 ratio(res.get("batch", "per address", "native, Python loop of find_iova", n),
                       many), lambda v: v >= 10))
    mem = res.get("memory", "bytes/map", "native", n)
    rows.append(("7", "native bytes/map (≤ 128)", mem, lambda v: v <= 128))
    rows.append(("7", "reference bytes/map / native",
                 ratio(res.get("memory", "bytes/map", "reference", n), mem), lambda v: v >= 3))

    lines = []
    if n != 100_000:
        lines += [f"The targets are set at N=100k; this run's largest N is {label(n)}, so the "
                  "verdicts below are a smoke test only.", ""]
    lines += [f"| area | at N={label(n)} | measured | target met? |", "|---|---|---:|---|"]
    for area, what, value, ok in rows:
        if value is None:
            verdict, shown = "not measured", "–"
        else:
            verdict = "yes" if ok(value) else "**NO**"
            shown = f"{value:.1f}" if "bytes/map (" in what else fmt_ratio(value)
        lines.append(f"| {TARGET_AREAS[area]} | {what} | {shown} | {verdict} |")
    return lines


OVERHEAD_ROWS = [*overhead.OPS, "find, first look-up of each map", "DMAMap(...)"]


def overhead_table(res: Results) -> list[str]:
    sizes = sorted({n for (f, _, _), v in res.values.items() if f == "overhead" for n in v})
    if not sizes:
        return ["(not measured)"]
    lines = ["| op | what | " + " | ".join(f"N={label(n)}" for n in sizes) + " |",
             "|---|---|" + "---:|" * len(sizes)]

    def get(op: str, backend: str, n: int) -> float | None:
        return res.get("overhead", op, backend, n)

    for op in OVERHEAD_ROWS:
        for backend in ("C core", "native", "sortedcontainers", "ncls"):
            if any(get(op, backend, n) is not None for n in sizes):
                lines.append(f"| {op} | {backend} (ns) | "
                             + " | ".join(fmt_ns(get(op, backend, n)) for n in sizes) + " |")
        if any(get(op, "C core", n) is not None for n in sizes):
            cells = []
            for n in sizes:
                a, b = get(op, "native", n), get(op, "C core", n)
                cells.append(fmt_ns(a - b) if a is not None and b is not None else "–")
            lines.append(f"| {op} | **binding adds (native − C, ns)** | {' | '.join(cells)} |")
        if any(get(op, "sortedcontainers", n) is not None for n in sizes):
            lines.append(f"| {op} | **sortedcontainers / native** | "
                         + " | ".join(fmt_ratio(ratio(get(op, "sortedcontainers", n),
                                                      get(op, "native", n))) for n in sizes)
                         + " |")
    for backend in ("native", "native, every map found once", "reference"):
        vals = res.values.get(("rss", "bytes/map", backend), {})
        if vals:
            lines.append(f"| memory (C + Python) | {backend} (bytes/map) | "
                         + " | ".join(fmt_ns(vals.get(n)) for n in sizes) + " |")
    return lines


def overhead_targets(res: Results) -> list[str]:
    """Issue 18's must-show figures, at every N of the table."""
    sizes = sorted({n for (f, _, _), v in res.values.items() if f == "overhead" for n in v})
    lines = ["| binding target | " + " | ".join(f"N={label(n)}" for n in sizes) + " | target |",
             "|---|" + "---:|" * len(sizes) + "---|"]

    def row(what: str, values: list[float | None], ok: Callable[[float], bool], shown: str,
            target: str) -> None:
        cells = []
        for v in values:
            if v is None:
                cells.append("–")
            else:
                text = fmt_ratio(v) if shown == "ratio" else fmt_ns(v)
                cells.append(text if ok(v) else f"**{text} NO**")
        lines.append(f"| {what} | {' | '.join(cells)} | {target} |")

    def added(op: str, n: int) -> float | None:
        a, b = res.get("overhead", op, "native", n), res.get("overhead", op, "C core", n)
        return a - b if a is not None and b is not None else None

    for op, limit in (("find", 250), ("find_iova", 250), ("insert", 400), ("remove", 400),
                      ("alloc", 400)):
        row(f"binding adds to {op} (ns)", [added(op, n) for n in sizes],
            lambda v, limit=limit: v <= limit, "ns", f"≤ {limit}")
    row("DMAMap(...) (ns)", [res.get("overhead", "DMAMap(...)", "native", n) for n in sizes],
        lambda v: v <= 300, "ns", "≤ 300")
    for op in ("find", "find_iova", "insert", "remove"):
        row(f"{op}: sortedcontainers / native",
            [ratio(res.get("overhead", op, "sortedcontainers", n),
                   res.get("overhead", op, "native", n)) for n in sizes],
            lambda v: v > 1, "ratio", "> 1×")
    row("memory (C + Python): reference / native",
        [ratio(res.get("rss", "bytes/map", "reference", n),
               res.get("rss", "bytes/map", "native", n)) for n in sizes],
        lambda v: v >= 1, "ratio", "≥ 1×")
    row("memory (C + Python): reference / native with every map found once",
        [ratio(res.get("rss", "bytes/map", "reference", n),
               res.get("rss", "bytes/map", "native, every map found once", n)) for n in sizes],
        lambda v: v >= 1, "ratio", "≥ 1× (not a target: the cache's worst case)")
    return lines


def growth(res: Results) -> list[str]:
    pairs = [(a, b) for a, b in ((10_000, 100_000), (100_000, 1_000_000))
             if a in res.sizes and b in res.sizes]
    if not pairs:
        return []
    lines = ["| op | backend | " + " | ".join(f"{label(a)}→{label(b)}" for a, b in pairs) + " |",
             "|---|---|" + "---:|" * len(pairs)]
    for op in ("find (point)", "find_iova, with id", "find_iova, no id", "insert", "remove",
               "alloc (first fit, top)", "translate (16 KiB, 5 segs)"):
        for backend in ("native", "C core"):
            vals = res.values.get((fam(op), op, backend), {})
            cells = [fmt_ratio(ratio(vals.get(b), vals.get(a))) for a, b in pairs]
            if any(c != "–" for c in cells):
                lines.append(f"| {op} | {backend} | {' | '.join(cells)} |")
    return lines


def report(args: argparse.Namespace, res: Results) -> str:
    caps = []
    if any(n > args.ref_cap for n in res.sizes):
        caps.append(f"the reference is built only up to N={label(args.ref_cap)}")
    if any(n > args.peer_cap for n in res.sizes):
        caps.append(f"intervaltree only up to N={label(args.peer_cap)}")
    if any(n > args.mem_cap for n in res.sizes):
        caps.append(f"Python memory (tracemalloc) only up to N={label(args.mem_cap)}")
    if any(n > args.diff_cap for n in res.sizes):
        caps.append(f"the differential backend only up to N={label(args.diff_cap)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [
        "# iova_native benchmark results",
        "",
        f"`{args.command}` — {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"{args.provenance}, "
        f"{'**quick mode** (indicative only)' if args.quick else 'full run'}; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {args.load_start:.2f} at the start, {load:.2f} at the end; each figure "
        f"is the fastest of the {LOOP_S * 1000:g} ms loops that fit in "
        f"{args.budget * 1000:.0f} ms.",
        "",
        "Layout (a) at every N: disjoint 4 KiB maps at consecutive IOVAs, HVAs "
        "shuffled.  Every figure comes from this one run.  "
        + ("Caps: " + "; ".join(caps) + " (\"–\" in the tables).  " if caps else "")
        + "The slow O(n) calls of the reference run a handful of times (the time budget "
        "decides); `to_iova_many` is one call over the whole input.",
        "",
    ]
    for note in res.notes:
        out.append(f"- note: {note}")
    if res.notes:
        out.append("")
    out += ["## Targets", ""] + targets(res)
    out += ["", "## Binding overhead", "",
            "Random sparse layout: one-page maps at random distinct pages among 16 N, HVAs "
            "random.  Each operation from Python (`native`) and the same operation on the same "
            "tree with the same needles called from C in the same process (`C core`: the "
            "core's own functions, as QEMU calls them, from `ib_time_*` in iova-binding.c), "
            "alternating, the faster of two figures each, each the fastest loop of about "
            "0.25 ms (short loops survive a loaded machine).  Look-ups are timed with the maps' "
            "`DMAMap`s already cached (every look-up after a map's first); the first look-up "
            "of a map has its own row.  Peers: `sortedcontainers` (a SortedDict by IOVA and "
            "one by HVA, both updated on insert and remove, searched with bisect) and `ncls` "
            "(static NCLS64 indexes, look-ups only).  Memory: bytes added per map in a fresh "
            "interpreter, C and Python objects together (glibc's in-use bytes for C, tracemalloc "
            "for Python objects; the RSS itself would hide the tree in the pages the layout's "
            f"freed temporaries leave behind), at max(N, {label(overhead.RSS_MIN_MAPS)}) maps.",
            ""] + overhead_table(res)
    out += [""] + overhead_targets(res)
    out += ["", "### The ceilings: what no binding could beat", "",
            "intervaltree against the C core called from C is the ratio a binding that cost "
            "nothing would show; the reference's memory against QEMU's bare layout (a GTree of "
            "g_new DMAMaps: what `native.GPATree` is, without the reverse and id trees or the "
            "holes) is the ratio a native tree without any structure beside QEMU's would show.",
            ""] + ceilings(res)
    out += ["", "## Cost per operation from Python (ns/op)", "",
            "`native` and `reference` through the contract's API; `C core` is the same operation "
            "called from C (iova-bench), the floor the binding is held against.  "
            "intervaltree's equivalents: "
            + "; ".join(f"{op}: {name}" for op, name in res.peer_names.items())
            + ".  intervaltree does not check overlaps on insert; native and reference do.",
            ""] + op_table(res)
    g = growth(res)
    if g:
        out += ["", "### Growth of the cost per op (native from Python, and the C core)", ""] + g
    out += ["", "## Batch reverse translation (ns per address)", "",
            f"`to_iova_many` over {args.batch_addrs:,} random covered HVAs in one call; the "
            f"Python loop calls `find_iova` and adds the offset for {args.loop_sample:,} of "
            "them; the C-only loop is iova-bench's, over 1M addresses (100k in quick mode).",
            ""] + batch_table(res)
    out += alias_section(args)
    out += ["", "## Memory per map (bytes)", "",
            "Each figure in a fresh interpreter: native = glibc in-use bytes "
            "(`ib_heap_in_use()`) added by the tree, plus the arena blocks it mapped outside "
            "malloc (`ib_tree_mapped_bytes()`) (GTree node, entry with the reverse and id "
            "trees, holes, arena blocks of 4096 entries); reference and intervaltree = "
            "tracemalloc of every Python object they keep, the `DMAMap`s included (native "
            "keeps none).  intervaltree holds only the IOVA-keyed tree; `find_iova` would need "
            "a second one.", ""] + memory_table(res)
    out += ["", "## Differential backend", "",
            "A `differential.IOVATree` (native vs reference, every call on both and compared) "
            "against the sum of the two backends' own `find`.", ""] + diff_table(res)
    if res.c_markdown:
        # its headings go two levels down, under this file's own
        c_md = re.sub(r"(?m)^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ",
                      res.c_markdown)
        out += ["", "---", "", "## The C benchmark (tools-build/iova-bench, same run)", "",
                c_md]
    return "\n".join(out) + "\n"


def plots(res: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = {
        "lookup": ("Look-ups", "ns per op"),
        "update": ("Insert, remove, alloc", "ns per op"),
        "translate": ("translate (16 KiB buffer)", "ns per op"),
        "batch": ("Reverse translation, per address", "ns per address"),
        "memory": ("Memory per map", "bytes per map"),
    }
    written = []
    for family, (title, ylabel) in families.items():
        series = [(op, backend, vals) for (f, op, backend), vals in res.values.items()
                  if f == family and vals]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(10, 5.5))
        # colour says which operation, line and marker say which backend
        ops = sorted({op for op, _, _ in series}, key=lambda o: (o not in OPS, OPS.index(o)
                                                                 if o in OPS else 0, o))
        palette = plt.get_cmap("tab10")
        for op, backend, vals in series:
            xs = sorted(vals)
            name = backend if family in ("batch", "memory") else f"{op} — {backend}"
            line, marker = BACKEND_STYLE.get(backend, ("-", "o"))
            colour = palette(ops.index(op) % 10) if family not in ("batch", "memory") else None
            ax.plot(xs, [vals[x] for x in xs], linestyle=line, marker=marker, color=colour,
                    label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N maps")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = out_dir / f"{family}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        mult = 1_000_000 if tok.endswith("m") else 1000 if tok.endswith("k") else 1
        sizes.append(int(float(tok.rstrip("mk")) * mult))
    if any(n < 16 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be at least 16")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 1k, 10k, short budgets (CI)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--plots", action="store_true", help="write PNGs also in --quick mode")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--sizes", type=parse_sizes, help="e.g. 1k,10k,100k,1M")
    p.add_argument("--budget", type=float, help="seconds a figure (default 0.2; quick 0.02)")
    p.add_argument("--ref-cap", type=int, default=1_000_000)
    p.add_argument("--peer-cap", type=int, default=100_000)
    p.add_argument("--mem-cap", type=int, default=100_000)
    p.add_argument("--diff-cap", type=int, default=10_000)
    p.add_argument("--no-c", action="store_true", help="skip the C benchmark")
    p.add_argument("--overhead-sizes", type=parse_sizes,
                   help="N of the binding-overhead table (default 1k,100k; quick 1k,10k)")
    p.add_argument("--alias-maps", type=int, help="aliases over the batch table's addresses "
                   "(default 120k; quick 10k)")
    p.add_argument("--aliases-only", action="store_true",
                   help="print the many-aliases batch table alone, write nothing")
    p.add_argument("--mem-probe", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.mem_probe:
        mem_probe_child(args.mem_probe[0], int(args.mem_probe[1]))
        return 0

    args.alias_maps = args.alias_maps or (10_000 if args.quick else 120_000)
    if args.aliases_only:
        print("\n".join(alias_section(args)))
        return 0
    args.command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.sizes = args.sizes or ([1000, 10_000] if args.quick
                                else [1000, 10_000, 100_000, 1_000_000])
    args.budget = args.budget or (0.02 if args.quick else 0.2)
    args.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    args.batch_addrs = 100_000 if args.quick else BATCH_ADDRS_FULL
    args.loop_sample = 20_000 if args.quick else LOOP_SAMPLE_FULL
    args.overhead_sizes = args.overhead_sizes or ([1000, 10_000] if args.quick
                                                  else [1000, 100_000])
    res = Results(args.sizes)
    args.provenance = provenance(res)
    started = time.time()
    t0 = time.perf_counter()

    if not args.no_c:
        run_c_bench(args, res)
        copy_c_rows(res)
        print(f"C benchmark done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for n in args.sizes:
        bench_size(args, res, n)
    for n in args.overhead_sizes:
        print(f"  binding overhead, N={label(n)}", file=sys.stderr, flush=True)
        overhead.bench_overhead(n, args.budget, lambda op, backend, v, n=n: res.put(
            "overhead", op, backend, n, v))
        for backend in ("native", "reference"):
            rss = overhead.rss_probe(backend, n)
            res.put("rss", "bytes/map", backend, n, rss["built"])
            if "found" in rss:
                res.put("rss", "bytes/map", "native, every map found once", n, rss["found"])
    memory(args, res)
    changed = [p.name for p in [*(ROOT / "csrc").glob("*.[ch]"),
                                *(ROOT / "src" / "iova_native").glob("_core*.so")]
               if p.stat().st_mtime > started]
    if changed:
        res.notes.append(f"changed during the run (the figures may mix two cores): "
                         f"{', '.join(sorted(changed))}")

    text = report(args, res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(text)
    print(text)
    if (args.plots or not args.quick) and not args.no_plots:
        try:
            for path in plots(res, args.out):
                print(f"wrote {path}", file=sys.stderr)
        except ImportError:
            print("matplotlib is not installed: no plots", file=sys.stderr)
    print(f"wrote {args.out / 'RESULTS.md'} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
