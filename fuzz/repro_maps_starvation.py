# SPDX-License-Identifier: GPL-2.0-or-later
"""Reproducer (issue 9 report): ``maps()`` starves while another thread keeps changing the tree.

``_Native._copy_all`` copies 256 maps per C call and builds the ``DMAMap`` objects in Python
between calls, with the GIL released around each call; when the tree's change counter moved in
between, it starts again from the first map.  Copying n maps takes about n/256 such rounds, far
longer than the 5 ms GIL switch interval once n is in the tens of thousands, so a thread that
changes the tree in a loop gets in every time and ``maps()`` (``host_maps()``, ``gpa_maps()``,
``allocated()`` likewise) may never return.  No crash, no wrong answer: a liveness bug.

    .venv/bin/python fuzz/repro_maps_starvation.py [MAPS] [SECONDS]

Exit status 1 when one ``maps()`` call took longer than SECONDS (default 10) with 100000 maps.
"""

from __future__ import annotations

import sys
import threading
import time

from iova_native import DMAMap, native


def main(argv: list[str]) -> int:
    """Fill a tree, start one mutating thread, time one maps() call."""
    n = int(argv[1]) if len(argv) > 1 else 100_000
    budget = float(argv[2]) if len(argv) > 2 else 10.0
    tree = native.IOVATree()
    for i in range(n):
        tree.insert(DMAMap(i * 0x2000, i * 0x2000, 0xFFF))
    stop = threading.Event()

    def mutate() -> None:  # insert and remove one map far above the others, forever
        while not stop.is_set():
            tree.insert(DMAMap(1 << 50, 0, 0xFFF))
            tree.remove(1 << 50)

    took: list[float] = []

    def listing() -> None:
        start = time.perf_counter()
        tree.maps()
        took.append(time.perf_counter() - start)

    mutator = threading.Thread(target=mutate)
    mutator.start()
    lister = threading.Thread(target=listing)
    lister.start()
    lister.join(budget)
    starved = lister.is_alive()
    stop.set()
    mutator.join()
    lister.join()
    print(
        f"maps() of {n} maps with one mutating thread: "
        + (f"still running after {budget:.0f} s (starved)" if starved else f"{took[0]:.2f} s")
    )
    return 1 if starved else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
