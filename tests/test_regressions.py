# SPDX-License-Identifier: GPL-2.0-or-later
"""Regression tests: each bug found once stays found."""

from __future__ import annotations

import gc
from array import array
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from iova_native import DMAMap, TranslationError

pytest.importorskip("iova_native._core")
from iova_native import native  # noqa: E402


def test_batch_buffer_in_a_collected_cycle_does_not_crash() -> None:
    """A memoryview handed to a batch call, with the TranslationError's traceback kept in a
    reference cycle, crashed the interpreter in a later garbage collection (cffi released the
    view's buffer after the view itself had been cleared)."""
    tree = native.IOVATree()
    tree.insert(DMAMap(0x1000, 0x10000, 0xFFF))
    kept = []
    for _ in range(200):
        addresses = memoryview(array("Q", [0x1000, 0x9000]))
        try:
            tree.to_translated_many(addresses)
        except TranslationError as err:
            cycle: list[object] = [err]
            cycle.append(cycle)  # exception -> traceback -> frame -> cdata, in a cycle
            kept.append(err.address)
        del addresses
    gc.collect()
    assert kept == [0x9000] * 200
    assert list(tree.to_translated_many(memoryview(array("Q", [0x1800])))) == [0x10800]


@pytest.mark.parametrize("backend_name", ["native", "reference"])
def test_size_first_signatures_check_size_first(backend_name: str) -> None:
    """api.py: arguments are checked in signature order.  ``alloc(size, translated_addr)`` and
    ``map_alloc(size, hva)`` checked the address before ``size``."""
    import importlib

    from iova_native import InvalidMapError

    mod = importlib.import_module(f"iova_native.{backend_name}")
    with pytest.raises(InvalidMapError, match="size"):
        mod.IOVATree().alloc(-1, "not an address")
    with pytest.raises(InvalidMapError, match="size"):
        mod.VhostIOVATree(0, 1 << 40).map_alloc(-1, None)
    with pytest.raises(InvalidMapError, match="size"):
        mod.VhostIOVATree(0, 1 << 40).map_alloc_gpa(1 << 64, 1.5)


@pytest.mark.parametrize("backend_name", ["native", "reference"])
@pytest.mark.parametrize("data", [b"\0" * 8, bytearray(16), "ab"])
def test_batch_refuses_bytes_and_text(backend_name: str, data: object) -> None:
    """The reference read ``bytes`` as a sequence of byte values while native refused it; a
    buffer of bytes is not a buffer of uint64, so both raise TypeError."""
    import importlib

    mod = importlib.import_module(f"iova_native.{backend_name}")
    tree = mod.IOVATree()
    with pytest.raises(TypeError):
        tree.to_translated_many(data, missing=0)
    with pytest.raises(TypeError):
        tree.to_iova_many(data, missing=0)


def test_maps_is_not_starved_by_a_writer_that_never_pauses() -> None:
    """maps() walked the tree 256 maps per C call and started over whenever it changed, so a
    thread changing the tree in a loop kept it from ever finishing (fuzz/repro_maps_starvation.py).
    It now copies the tree in one locked C call."""
    import threading
    import time

    tree = native.IOVATree()
    for i in range(20_000):
        tree.insert(DMAMap(0x1000 * (i + 1), 0x1000 * i, 0xFFF))
    stop = threading.Event()

    def churn() -> None:
        spare = DMAMap(0x1000 * 50_000, 0, 0xFFF)
        while not stop.is_set():
            tree.insert(spare)
            tree.remove(spare.iova)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        start = time.monotonic()
        for _ in range(5):
            listing = tree.maps()
            assert 20_000 <= len(listing) <= 20_001
            assert listing == sorted(listing)
        assert time.monotonic() - start < 30
    finally:
        stop.set()
        writer.join()


@pytest.mark.parametrize("backend_name", ["native", "reference"])
@pytest.mark.parametrize("cls_name", ["IOVATree", "GPATree"])
@pytest.mark.parametrize("fields", [(-1, 0, 0xFFF), (0, 1 << 64, 0), (0, 0, 0xFFF, 3, -5)])
def test_insert_of_a_forged_map_raises_invalid_map_error(
    backend_name: str, cls_name: str, fields: tuple[int, ...]
) -> None:
    """A DMAMap built around its checks (through the private ``_trusted``) made native raise
    OverflowError where the reference raises InvalidMapError (found by the atheris fuzzer)."""
    import importlib

    from iova_native import InvalidMapError, Perm

    full = (*fields, Perm.RW, 0)[:5] if len(fields) == 3 else fields
    forged = DMAMap._trusted(full)  # type: ignore[arg-type]
    tree = getattr(importlib.import_module(f"iova_native.{backend_name}"), cls_name)()
    with pytest.raises(InvalidMapError):
        tree.insert(forged)
    assert tree.maps() == []


def test_removals_are_all_or_nothing_when_memory_runs_out() -> None:
    """iova_tree_remove() reported a partial count as success, vhost removal orphaned an
    allocation, and a failing host-map removal looped forever under the lock, all when malloc
    failed mid-way.  fuzz/oom_remove.c fails malloc at every point of those paths."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("pkg-config") is None:
        pytest.skip("no C compiler")
    glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True,
                          text=True, check=True).stdout.split()
    out = root / "build" / "oom_remove"
    out.parent.mkdir(exist_ok=True)
    sources = [str(p) for p in sorted((root / "csrc").glob("*.c"))
               if p.name.startswith(("iova-", "vhost-")) and "binding" not in p.name]
    subprocess.run([cc, "-std=c11", "-O1", "-g", f"-I{root / 'csrc'}", str(root / "fuzz" /
                    "oom_remove.c"), *sources, "-Wl,--wrap=malloc", "-Wl,--wrap=realloc",
                    "-Wl,--wrap=aligned_alloc", "-Wl,--wrap=mmap", "-Wl,--wrap=mprotect",
                    *glib, "-o", str(out)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("seed", range(3))
def test_large_batches_equal_single_lookups_and_report_the_first_miss_in_input_order(
    seed: int,
) -> None:
    """Batches of 128 addresses or more are looked up in address order (radix-sorted in C,
    then swept: see test_batch_sweep.py) and scattered back; the answers, and the first miss,
    must be those of input order.  The oracle is native's own single look-ups (which the stateful
    tests hold to the reference): the reference's batch is linear per address at this size."""
    import random

    from iova_native import InvalidMapError

    rng = random.Random(seed)
    tree, gpa = native.IOVATree(), native.GPATree()
    for i in range(33_000):  # aliases: 4 ids over 100 HVA pages near the needles; the rest far
        hva = 0x7F00_0000_0000 + 0x1000 * (i % 100) if i < 400 else 0x7E00_0000_0000 + 0x1000 * i
        tree.insert(DMAMap(0x1000 * (2 * i + 1), hva, 0xFFF, id=i % 4))
        gpa.insert(DMAMap(0x1000 * (2 * i + 1), 0x1000 * (3 * i), 0xFFF))
    hvas = [0x7F00_0000_0000 + rng.randrange(0x70000) for _ in range(3000)]
    iovas = [rng.randrange(0x1000, 0x400000) for _ in range(3000)]

    def one(m: DMAMap | None, addr: int, forward: bool) -> int:
        if m is None:
            return 7
        return m.translated_addr + addr - m.iova if forward else m.iova + addr - m.translated_addr

    for id in (None, 0, 3):
        expected = [one(tree.find_iova(a, 0, id), a, False) for a in hvas]
        assert list(tree.to_iova_many(hvas, id=id, missing=7)) == expected
    assert list(tree.to_translated_many(iovas, missing=7)) == [
        one(tree.find(a), a, True) for a in iovas]
    assert list(gpa.to_iova_many(iovas, missing=7)) == [one(gpa.find(a), a, False) for a in iovas]
    with pytest.raises(TranslationError) as err:
        tree.to_translated_many(iovas)
    assert err.value.address == next(a for a in iovas if tree.find(a) is None)
    with pytest.raises(InvalidMapError):
        tree.to_iova_many([*hvas, -1])


def test_a_translation_gap_is_worded_alike_by_both_backends() -> None:
    """A TranslationError names the kind of address that fell in a gap, the same way in both
    backends: the native one said "no map covers address ..." for every kind, where the
    reference says "translated address", "IOVA" or "GPA"."""
    from iova_native import Perm, reference

    def calls(module: ModuleType) -> list[Callable[[], object]]:
        iova_tree, gpa_tree = module.IOVATree(), module.GPATree()
        vhost = module.VhostIOVATree(0, (1 << 40) - 1)
        iova_tree.insert(DMAMap(0x10000, 0x1000, 0xFFF, Perm.RW, 0))
        gpa_tree.insert(DMAMap(0x10000, 0x1000, 0xFFF, Perm.RW, 0))
        vhost.map_alloc(0xFFF, 0x7000_0000)
        vhost.map_alloc_gpa(0xFFF, 0x8000)
        return [
            lambda: iova_tree.translate(0x1800, 0x1000),
            lambda: iova_tree.translate(0x1800, 0x100, 7),
            lambda: iova_tree.to_iova_many([0x1000, 0x5000]),
            lambda: iova_tree.to_translated_many([0x10000, 0x5000]),
            lambda: gpa_tree.to_iova_many([0x1000, 0x5000]),
            lambda: vhost.translate(0x7000_0800, 0x1000),
            lambda: vhost.translate(0x7000_0000, 0x2000, gpa=0x8000),
            lambda: vhost.to_iova_many([0x7000_0000, 0x5000]),
            lambda: vhost.gpa_to_iova_many([0x8000, 0x5000]),
        ]

    for i, (ours, theirs) in enumerate(zip(calls(native), calls(reference))):
        with pytest.raises(TranslationError) as got:
            ours()
        with pytest.raises(TranslationError) as want:
            theirs()
        assert (str(got.value), got.value.address) == (str(want.value), want.value.address), i


def test_no_space_and_overlap_errors_are_worded_alike_by_both_backends() -> None:
    """NoSpaceError and OverlapError read the same from both backends: the native one said
    only "no free IOVA range fits" (the reference names the size, the alignment and the
    range), and "overlaps the stored" for the reference's "overlaps stored"; the reference's
    map_alloc_gpa named the IOVA it had given back, the native one the GPA range."""
    from iova_native import IOVAError, NoSpaceError, OverlapError, Perm, reference

    def calls(module: ModuleType) -> list[Callable[[], object]]:
        tree = module.IOVATree([DMAMap(0, 0, 0xFFF, Perm.RW, 0)])
        gpas = module.GPATree([DMAMap(0x1000, 0x5000, 0xFFF, Perm.RW, 0)])
        vhost = module.VhostIOVATree(0, 0xFFFFF, 4096)
        vhost.map_alloc_gpa(0xFFF, 0x5000)
        return [
            lambda: tree.alloc(0x10, iova_last=0xFFF),
            lambda: tree.alloc(0x10, iova_begin=0x10, iova_last=0x20, align=0x100),
            lambda: tree.alloc(0x10, iova_last=0xFFF, policy="last"),
            lambda: tree.insert(DMAMap(0x800, 0x9000, 0x10, Perm.RW, 0)),
            lambda: tree.update([DMAMap(0x100000, 0, 0), DMAMap(0x10, 0, 0)]),
            lambda: gpas.insert(DMAMap(0x9000, 0x5800, 0x10, Perm.RW, 0)),
            lambda: vhost.map_alloc(0x100000, 0x7000_0000),
            lambda: vhost.map_alloc_gpa(0x100000, 0x20000),
            lambda: vhost.map_alloc_gpa(0xFFF, 0x5000),
        ]

    for i, (ours, theirs) in enumerate(zip(calls(native), calls(reference))):
        with pytest.raises((NoSpaceError, OverlapError)) as got:
            ours()
        with pytest.raises(IOVAError) as want:
            theirs()
        assert type(got.value) is type(want.value), i
        assert str(got.value) == str(want.value), i
        assert getattr(got.value, "existing", None) == getattr(want.value, "existing", None), i


@pytest.mark.parametrize("state", [
    (4096, 0xFFFF, [DMAMap(0x1000, 0, 0xFFF)], [], []),
    (4096, 0xFFFF, [], [DMAMap(0x1000, 9, 0xFFF)], []),
    (4096, 0xFFFF, [DMAMap(0x10000, 0, 0xFFF)], [DMAMap(0x10000, 9, 0xFFF)], []),
    (4096, 0xFFFF, [DMAMap(0x1000, 0, 0xFFF)], [], [DMAMap(0x1000, 0x5000, 0xFFF, id=9)]),
    (4096, 0xFFFF, [DMAMap(0x1000, 0, 0xFFF), DMAMap(0x2000, 0, 0xFFF)], [],
     [DMAMap(0x1000, 0x5000, 0xFFF, id=0x5000), DMAMap(0x2000, 0x5000, 0xFFF, id=0x5000)]),
], ids=["allocation without a map", "map without an allocation", "above iova_last",
        "guest id not its GPA", "GPA range twice"])
def test_a_bad_vhost_state_is_refused_in_the_same_words_by_both_backends(state: Any) -> None:
    """Unpickling a VhostIOVATree from a state no tree can hold raises ValueError from both
    backends, and now with the same message: the native one said only "maps and allocations
    do not match" where the reference names the map or allocation at fault."""
    from iova_native import reference

    messages = []
    for module in (native, reference):
        rebuild, args = module.VhostIOVATree(0, 0xFFFF, 4096).__reduce__()[:2]
        with pytest.raises(ValueError) as info:
            rebuild(*args[:-1], state)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_an_int_subclass_field_is_stored_as_a_plain_int_on_every_python() -> None:
    """On Python 3.9, ``operator.index()`` hands an int subclass back as it is (3.10 and later
    give a plain int), so a ``DMAMap`` built from ``True`` or an int subclass kept that object:
    the reference's stored map then held a ``bool`` where the native one read back an int.
    Found by tests/test_binding_conversions.py under 3.9 (scripts/test.d/50-package.sh)."""
    from iova_native import Perm, reference
    from iova_native._types import check_u64

    class Int(int):
        def __repr__(self) -> str:
            return "Int"

    assert type(check_u64(True, "iova")) is int and type(check_u64(Int(5), "iova")) is int
    m = DMAMap(True, Int(0x10000), Int(0xFFF), Perm.RW, False)
    assert [type(f) for f in m] == [int, int, int, Perm, int]
    assert m == DMAMap(1, 0x10000, 0xFFF, Perm.RW, 0)
    for backend in (native, reference):
        tree = backend.IOVATree()
        tree.insert(tuple.__new__(DMAMap, (Int(0x1000), True, Int(0xFFF), 3, Int(7))))
        assert [type(f) for f in tree.maps()[0]] == [int, int, int, Perm, int]


SUBINTERPRETER_INSERTS = r"""
import sys
try:
    import _xxsubinterpreters as interpreters
except ImportError:
    import _interpreters as interpreters
code = '''
from iova_native import DMAMap, native
tree = native.IOVATree()
for i in range(64):
    tree.insert(DMAMap(i * 0x1000, 0x7F0000000000 + i * 0x1000, 0xFFF, id=i))
tree.insert(DMAMap(1 << 63, 0, 0xFFF))  # a field in the top half: the slow path
assert len(tree) == 65 and tree.find(0x5000).id == 5
tree.check()
'''
import iova_native.native  # loaded in the main interpreter first, as an embedder would
interp = interpreters.create()
try:
    interpreters.run_string(interp, code)
except Exception as e:  # a Python whose subinterpreters refuse cffi's single-phase module
    if "ImportError" not in repr(e) and "subinterpreter" not in str(e):
        raise
    print("SKIP:", e)
    sys.exit(0)
print("inserted in a subinterpreter")
"""


def test_an_insert_in_a_subinterpreter_does_not_hang() -> None:
    """The first version of the one-word insert (csrc/iova-pymap.h) took the GIL with
    PyGILState_Ensure(), which in a subinterpreter waits for ever for the main interpreter's:
    the first insert there hung the process.  The read needs no thread state now."""
    import subprocess
    import sys

    try:
        import _xxsubinterpreters  # noqa: F401
    except ImportError:
        pytest.importorskip("_interpreters", reason="this Python has no subinterpreter module")
    done = subprocess.run([sys.executable, "-c", SUBINTERPRETER_INSERTS], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    if done.stdout.startswith("SKIP:"):
        pytest.skip(done.stdout.strip())
    assert "inserted in a subinterpreter" in done.stdout
