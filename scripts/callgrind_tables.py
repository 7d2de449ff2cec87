#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Tables for scripts/profile.sh out of ``callgrind_annotate --auto=no`` output.

  callgrind_tables.py top ANNOTATE.txt N
      the N functions with the most instructions (Ir, self); code inlined from headers and
      recursive calls (``f'2``) are added to their function.
  callgrind_tables.py perop OPS.bin TREE_INCLUSIVE.txt LINEAR_INCLUSIVE.txt
      instructions per call of each operation kind (the inclusive cost of the driver's
      never-inlined ``op_<kind>`` function divided by the calls), reverse tree vs linear; then
      what keeping the reverse tree and the hole tree costs inside each alloc and remove,
      beside the GTree insert and remove that QEMU's tree does anyway.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

ROW = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+)", re.M)
TOTAL = re.compile(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS")


def _costs(text: str, inclusive: bool = False) -> tuple[int, Counter[str], dict[str, str]]:
    """Cost per function.  Self costs of one function may be split over several files
    (code inlined from headers): they are added.  Inclusive costs are listed once per spelling
    of the file name: the largest is kept."""
    total_match = TOTAL.search(text)
    if total_match is None:
        sys.exit("callgrind_tables: no PROGRAM TOTALS line")
    total = int(total_match.group(1).replace(",", ""))
    cost: Counter[str] = Counter()
    where: dict[str, str] = {}
    for ir, loc in ROW.findall(text):
        if loc == "PROGRAM":
            continue
        path, _, func = loc.rpartition(":")
        func = func.split("'")[0]
        value = int(ir.replace(",", ""))
        cost[func] = max(cost[func], value) if inclusive else cost[func] + value
        if path.endswith(".c") or func not in where:
            where[func] = path.rsplit("/", 1)[-1] or "?"
    return total, cost, where


def top(path: str, n: int) -> None:
    """Print the ``n`` most expensive functions."""
    total, cost, where = _costs(open(path).read())
    for func, ir in cost.most_common(n):
        print(f"{ir:>14,} {100 * ir / total:6.2f}%  {func}  ({where[func]})")


def perop(ops_path: str, tree_path: str, linear_path: str) -> None:
    """Print instructions per call of each kind, reverse tree vs linear."""
    from iova_native.trace import OP_NAMES, OpKind, OpStream

    counts = OpStream.read(ops_path).counts()
    _, tree, _ = _costs(open(tree_path).read(), inclusive=True)
    _, linear, _ = _costs(open(linear_path).read(), inclusive=True)
    print(f"{'op':<11} {'calls':>7} {'Ir/call tree':>13} {'Ir/call linear':>15} "
          f"{'linear/tree':>12}")
    for kind in OpKind:
        func = f"op_{OP_NAMES[kind]}"
        if not counts[kind] or func not in tree:
            continue
        t, lin = tree[func] / counts[kind], linear[func] / counts[kind]
        print(f"{OP_NAMES[kind]:<11} {counts[kind]:>7} {t:>13,.0f} {lin:>15,.0f} "
              f"{lin / t:>11.2f}x")
    print()
    print("# upkeep, reverse-tree run: Ir per alloc / per remove spent in")
    for label, kind_name, funcs in UPKEEP:
        kind = OpKind[kind_name]
        parts = [f"{name} {tree[name] / counts[kind]:,.0f}" for name in funcs
                 if counts[kind] and name in tree]
        print(f"{label:<7} " + ", ".join(parts))


#: Where alloc and remove spend: the GTree (QEMU's own cost), the reverse tree, the holes.
UPKEEP = [
    ("alloc", "ALLOC", ("g_tree_insert", "iova_reverse_place", "iova_reverse_link",
                        "iova_holes_take_fit", "iova_holes_fit")),
    ("remove", "REMOVE", ("g_tree_remove", "iova_reverse_del", "iova_holes_give_found")),
]


def main(argv: list[str]) -> int:
    """Dispatch."""
    if len(argv) == 3 and argv[0] == "top":
        top(argv[1], int(argv[2]))
    elif len(argv) == 4 and argv[0] == "perop":
        perop(argv[1], argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
