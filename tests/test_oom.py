# SPDX-License-Identifier: GPL-2.0-or-later
"""Out of memory: every allocating call of every native class raises MemoryError, the tree
intact (issue 15, class 4).

GLib aborts the process when its own allocation fails (``g_malloc``, and GSlice, where
``g_tree_insert`` takes its nodes); ``GPATree.insert`` and ``VhostIOVATree.map_alloc_gpa`` died
that way under a tight ``RLIMIT_AS``.  Each scenario runs in a fresh interpreter: it lowers the
address-space limit to a little above what the process uses, calls until ``MemoryError``, lifts
the limit again and checks the object.  It does so for several margins, so the limit falls at
many different points inside the C code.  An abort shows as a negative return code (SIGABRT).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("iova_native.native")
resource = pytest.importorskip("resource")

SETUP = """
import resource, sys
from iova_native import DMAMap, Perm, native

soft, hard = resource.getrlimit(resource.RLIMIT_AS)

def vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()

def until_memory_error(call, margin):
    # Calls call(i) for i = 0, 1, ... under a limit of the current size + margin bytes; returns
    # how many calls succeeded and the MemoryError's text.
    n = 0
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + margin, hard))
    try:
        while True:
            call(n)
            n += 1
    except MemoryError as exc:
        message = str(exc)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return n, message

def ours(message):
    # The C core refused: nothing changed.  (Python itself may run out too, e.g. building the
    # answer of a call that succeeded in C; then the call did happen.)
    return message == "iova_native: out of memory"

MARGINS = [(1 << 20) + k * 12_345 for k in range(12)]
"""

SCENARIOS = {
    "IOVATree.insert": """
        t = native.IOVATree()
        base = 0
        for margin in MARGINS:
            n, msg = until_memory_error(
                lambda i: t.insert(DMAMap((base + i) * 0x2000, 0x1000, 0xFFF, Perm.RW, i)), margin)
            base += n
            assert len(t) == base or not ours(msg), (len(t), base, msg)
            base = len(t)
            t.check()
    """,
    "IOVATree.alloc": """
        t = native.IOVATree()
        for k, margin in enumerate(MARGINS):
            before = len(t)
            policy = "last" if k % 2 else "first"
            n, msg = until_memory_error(
                lambda i: t.alloc(0xFFF, 0x1000 * i, align=0x2000, policy=policy), margin)
            assert len(t) == before + n or (not ours(msg) and len(t) == before + n + 1)
            t.check()
    """,
    "GPATree.insert": """
        t = native.GPATree()
        base = 0
        for margin in MARGINS:
            n, msg = until_memory_error(
                lambda i: t.insert(DMAMap(0x1000, (base + i) * 0x1000, 0xFFF)), margin)
            base += n
            assert len(t) == base or not ours(msg), (len(t), base, msg)
            base = len(t)
            t.check()
    """,
    "VhostIOVATree.map_alloc_gpa": """
        v = native.VhostIOVATree(0, 1 << 60)
        base = 0
        for margin in MARGINS:
            before = len(v)
            n, msg = until_memory_error(lambda i: v.map_alloc_gpa(0xFFF, (base + i) * 0x1000),
                                        margin)
            assert len(v) == before + n or (not ours(msg) and len(v) == before + n + 1)
            base = len(v)
            v.check()
            assert len(v.allocated()) == len(v)
    """,
    "VhostIOVATree.map_alloc": """
        v = native.VhostIOVATree(0, 1 << 60)
        for margin in MARGINS:
            before = len(v)
            n, msg = until_memory_error(lambda i: v.map_alloc(0xFFF, 0x7000_0000 + i), margin)
            assert len(v) == before + n or (not ours(msg) and len(v) == before + n + 1)
            v.check()
            assert len(v.allocated()) == len(v)
    """,
    "constructors": """
        for cls in (native.IOVATree, native.GPATree, lambda: native.VhostIOVATree(0, 1 << 40)):
            kept = []
            for margin in MARGINS[:4]:
                until_memory_error(lambda i: kept.append(cls()), margin)
            for obj in kept[:: max(1, len(kept) // 100)]:
                obj.check()
            del kept
    """,
    "copy": """
        import copy, pickle
        t = native.IOVATree()
        g = native.GPATree()
        v = native.VhostIOVATree(0, 1 << 60)
        for i in range(30_000):
            t.insert(DMAMap(i * 0x2000, 0x1000, 0xFFF))
            g.insert(DMAMap(0x1000, i * 0x1000, 0xFFF))
            v.map_alloc_gpa(0xFFF, i * 0x1000)
        for obj in (t, g, v):
            before = obj.maps() if hasattr(obj, "maps") else obj.gpa_maps()
            for how in (lambda o: o.copy(), copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))):
                kept = []
                for margin in MARGINS[:3]:
                    until_memory_error(lambda i: kept.append(how(obj)), margin)
                for twin in kept:
                    twin.check()
                    assert len(twin) == len(obj)
                del kept
            obj.check()
            assert (obj.maps() if hasattr(obj, "maps") else obj.gpa_maps()) == before
    """,
    "VhostIOVATree.check": """
        v = native.VhostIOVATree(0, 1 << 60)
        for i in range(200_000):
            v.map_alloc_gpa(0xFFF, i * 0x1000)
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (256 << 10), hard))
        try:
            v.check()
        except MemoryError:
            pass  # refused before building its index: fine
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        v.check()
    """,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_out_of_memory_raises_memory_error(scenario: str) -> None:
    source = SETUP + textwrap.dedent(SCENARIOS[scenario]) + "\nprint('ok')\n"
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip().endswith("ok")
