# SPDX-License-Identifier: GPL-2.0-or-later
"""Range queries against single look-ups: how ``find_all`` and ``find_iova_all`` grow with N.

Every figure is ns per call on the native backend, the fastest of many short loops
(``bench/run.py``'s ``measure``), best of several rounds that go through every size in turn,
all in this one process, so that the growth ratios (the figure at the largest N over the one at
the smallest) hold on a busy machine.  The number of hits k is fixed (``K``) at every N, so a
range query that is O(log n + k) grows like the single look-up beside it, which is O(log n).

Layouts (each at every N):

* **forward**: ``find_all(iova, K pages)`` over N one-page maps in a row, against
  ``find(iova)``; each answer is K maps.
* **reverse, shuffled**: the translated side is a random permutation of pages, as in
  ``bench/run.py``'s layout (a): ``find_iova_all(hva, K pages)`` finds K maps that lie apart in
  IOVA order (sorted by IOVA in C), against ``find_iova(hva)``.
* **reverse, by id**: the same, with the id of one of the K maps: one hit, through the id tree.
* **reverse, adversarial**: K maps of N reach over a common last page from translated
  addresses spread over the whole range, the other maps one page each in between: the K hits lie
  far apart in the reverse tree's order, so the walk descends to each (O(log n + k log(n/k))).

Run: ``.venv/bin/python bench/range_queries.py [--quick] [--sizes 10k,100k,1M]``.  Prints a
Markdown table; ``--out FILE`` writes it too.  No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iova_native import DMAMap, Perm, native  # noqa: E402
from run import PAGE, Cursor, label, measure, now, parse_sizes  # noqa: E402

K = 8  # hits per range query, at every N
HVA_BASE = 0x7F00_0000_0000
SEED = 20261201
NEEDLES = 4096

Row = tuple[str, str, Callable[[int], int]]  # layout, call, op(k) -> ns


def _timed_calls(call: Callable[[Any], Any], needles: list[Any]) -> Callable[[int], int]:
    cursor = Cursor(needles)

    def op(k: int) -> int:
        batch = cursor.take(k)
        t0 = now()
        for needle in batch:
            call(needle)
        return now() - t0

    return op


def forward_rows(n: int, rng: random.Random) -> tuple[Any, list[Row]]:
    tree = native.IOVATree(
        DMAMap(PAGE + i * PAGE, HVA_BASE + i * PAGE, PAGE - 1, Perm.RW, i) for i in range(n)
    )
    starts = [PAGE + rng.randrange(n - K) * PAGE + rng.randrange(PAGE) for _ in range(NEEDLES)]
    assert len(tree.find_all(starts[0], K * PAGE - 1)) in (K, K + 1)
    return tree, [
        ("forward", "find(iova)", _timed_calls(tree.find, starts)),
        ("forward", f"find_all(iova, {K} pages)",
         _timed_calls(lambda s: tree.find_all(s, K * PAGE - 1), starts)),
    ]


def shuffled_rows(n: int, rng: random.Random) -> tuple[Any, list[Row]]:
    pages = list(range(n))
    rng.shuffle(pages)
    tree = native.IOVATree(
        DMAMap(PAGE + i * PAGE, HVA_BASE + pages[i] * PAGE, PAGE - 1, Perm.RW, pages[i])
        for i in range(n)
    )
    starts = [rng.randrange(n - K) for _ in range(NEEDLES)]
    hvas = [HVA_BASE + p * PAGE for p in starts]
    with_ids = [(HVA_BASE + p * PAGE, p + rng.randrange(K)) for p in starts]
    assert len(tree.find_iova_all(hvas[0], K * PAGE - 1)) == K
    assert len(tree.find_iova_all(with_ids[0][0], K * PAGE - 1, with_ids[0][1])) == 1
    return tree, [
        ("reverse, shuffled", "find_iova(hva)", _timed_calls(tree.find_iova, hvas)),
        ("reverse, shuffled", f"find_iova_all(hva, {K} pages)",
         _timed_calls(lambda h: tree.find_iova_all(h, K * PAGE - 1), hvas)),
        ("reverse, by id", "find_iova(hva, id=)",
         _timed_calls(lambda h: tree.find_iova(h[0], 0, h[1]), with_ids)),
        ("reverse, by id", f"find_iova_all(hva, {K} pages, id=)",
         _timed_calls(lambda h: tree.find_iova_all(h[0], K * PAGE - 1, h[1]), with_ids)),
    ]


def adversarial_rows(n: int, rng: random.Random) -> tuple[Any, list[Row]]:
    small = n - K
    top = HVA_BASE + small * PAGE  # the common last page of the K long maps
    maps = [DMAMap(PAGE + i * PAGE, HVA_BASE + i * PAGE, PAGE - 1, Perm.RW, 0)
            for i in range(small)]
    iova = PAGE + small * PAGE
    for j in range(K):
        start = HVA_BASE + (j * small // K) * PAGE
        size = top + PAGE - 1 - start
        maps.append(DMAMap(iova, start, size, Perm.RW, 0))
        iova += size + 1
    tree = native.IOVATree(maps)
    needles = [top + rng.randrange(PAGE) for _ in range(NEEDLES)]
    assert len(tree.find_iova_all(needles[0])) == K
    return tree, [
        ("reverse, adversarial", "find_iova(hva)", _timed_calls(tree.find_iova, needles)),
        ("reverse, adversarial", "find_iova_all(hva)",
         _timed_calls(tree.find_iova_all, needles)),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 1k, 10k, short budgets (CI)")
    p.add_argument("--sizes", type=parse_sizes, help="default 10k,100k,1M")
    p.add_argument("--budget", type=float, help="seconds a figure (default 0.1; quick 0.02)")
    p.add_argument("--rounds", type=int, help="rounds over every size (default 5; quick 1)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [10_000, 100_000, 1_000_000])
    budget = args.budget or (0.02 if args.quick else 0.1)
    rounds = args.rounds or (1 if args.quick else 5)
    t0 = time.perf_counter()
    figures: dict[tuple[str, str], dict[int, float]] = {}
    for build in (forward_rows, shuffled_rows, adversarial_rows):
        # One layout at every size at once, measured in rounds that go through the sizes in
        # turn: a busy spell of the machine then spoils one round of every size, not one size,
        # and the fastest round is kept.
        built = {n: build(n, random.Random(SEED + n)) for n in sizes}
        for _ in range(rounds):
            for n, (_tree, rows) in built.items():
                for layout, call, op in rows:
                    by_n = figures.setdefault((layout, call), {})
                    by_n[n] = min(by_n.get(n, float("inf")), measure(op, budget))
        for tree, _rows in built.values():
            tree.close()
    lo, hi = sizes[0], sizes[-1]
    lines = [
        f"Range queries, native backend, K = {K} hits at every N; ns per call (fastest of "
        f"many short loops, best of {rounds} rounds), growth = N={label(hi)} over "
        f"N={label(lo)}.",
        "",
        "| layout | call | " + " | ".join(f"N={label(n)}" for n in sizes) + " | growth |",
        "|---|---|" + "---:|" * (len(sizes) + 1),
    ]
    for (layout, call), by_n in figures.items():
        cells = " | ".join(f"{by_n[n]:,.0f}" for n in sizes)
        lines.append(f"| {layout} | `{call}` | {cells} | {by_n[hi] / by_n[lo]:.2f}x |")
    lines += ["", f"({time.perf_counter() - t0:.0f} s)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
