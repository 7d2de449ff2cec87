# SPDX-License-Identifier: GPL-2.0-or-later
"""A tree with few maps costs the process one arena block of address space and one mapping
per arena, as a block from ``aligned_alloc()`` did (docs/design.md, "The arena is flat";
docs/reliability.md, "Address space and mappings").

An arena that reserved its whole range at its first block made every one-map ``IOVATree``
512 MiB of address space and four mappings: at about 17,000 of them ``vm.max_map_count`` ran
out (``insert`` raised ``MemoryError`` and the rest of the process was starved of mappings),
and under an ``RLIMIT_AS`` a handful of tiny trees took the whole budget from other code.
Each check runs in a fresh interpreter, so that nothing else in the test process moves the
counts, and reads ``/proc/self``: Linux only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/maps and VmSize, and sets RLIMIT_AS")

PRELUDE = """
import resource, sys
from iova_native import DMAMap, Perm
import iova_native.native as native

def mappings():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)

def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmSize")

def limit_address_space(margin):
    limit = vm_size() + margin
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < limit:
        print("the hard RLIMIT_AS is below the test's limit")
        sys.exit(77)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit

def one_map_tree(i):
    t = native.IOVATree()
    t.insert(DMAMap(i * 0x2000, i * 0x1000, 0xFFF, Perm.RW))
    return t
"""


def run_python(body: str) -> str:
    script = PRELUDE + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_one_map_trees_cost_a_block_and_a_mapping_per_arena() -> None:
    """2,000 one-map trees kept alive: at most about two mappings and 1 MiB of address space
    a tree (its two arenas' first blocks: 256 KiB of entries, 128 KiB of holes); dropped, the
    address space comes back."""
    out = run_python("""
        n = 2000
        keep = [one_map_tree(i) for i in range(50)]  # the interpreter's own first arenas
        maps0, vm0 = mappings(), vm_size()
        trees = [one_map_tree(i) for i in range(n)]
        maps, vm = mappings() - maps0, vm_size() - vm0
        print(f"{n} one-map trees: {maps / n:.2f} mappings and {vm / n / 1024:.0f} KiB a tree")
        assert maps <= 2.2 * n, f"{maps} mappings for {n} trees"
        assert vm <= n << 20, f"{vm >> 20} MiB of address space for {n} trees"
        del trees
        assert vm_size() - vm0 < 64 << 20, f"{(vm_size() - vm0) >> 20} MiB not given back"
    """)
    print(out)


def test_trees_leave_other_code_its_address_space_under_rlimit_as() -> None:
    """Under an RLIMIT_AS 1 GiB above what the interpreter holds, 16 one-map trees and a tree
    of 20,000 maps (grown well past one block) work and pass check(), and a 256 MiB buffer
    can still be had beside them."""
    out = run_python("""
        limit = limit_address_space(1 << 30)
        small = [one_map_tree(i) for i in range(16)]
        big = native.IOVATree()
        for i in range(20000):
            big.insert(DMAMap(i * 0x2000, i * 0x1000, 0xFFF, Perm.RW))
        big.alloc(0xFFF)  # the holes too
        for t in small + [big]:
            t.check()
        buffer = bytearray(256 << 20)
        print(f"ok: {len(big)} maps, {len(buffer) >> 20} MiB buffer, "
              f"{(limit - vm_size()) >> 20} MiB of the limit left")
    """)
    assert out.startswith("ok"), out


def test_grown_trees_leave_other_code_its_address_space_under_rlimit_as() -> None:
    """Under an RLIMIT_AS 1 GiB above what the interpreter holds, 8 trees of 5,000 maps each
    (every arena past its first block) work and pass check(), and a 256 MiB buffer can still
    be had beside them.  An arena that mapped at its second block all the address space it
    may ever grow to held 256 MiB of the limit each: two such trees took the whole budget,
    the third tree's insert raised MemoryError and the buffer could not be had."""
    out = run_python("""
        limit = limit_address_space(1 << 30)
        trees = []
        for k in range(8):
            t = native.IOVATree()
            for i in range(5000):
                t.insert(DMAMap(i * 0x2000, i * 0x1000, 0xFFF, Perm.RW))
            t.alloc(0xFFF)  # the holes too
            trees.append(t)
        for t in trees:
            t.check()
        buffer = bytearray(256 << 20)
        print(f"ok: {len(trees)} trees of {len(trees[0])} maps, {len(buffer) >> 20} MiB "
              f"buffer, {(limit - vm_size()) >> 20} MiB of the limit left")
    """)
    assert out.startswith("ok"), out
