# SPDX-License-Identifier: GPL-2.0-or-later
"""No Python object ever points into freed C memory (issue 9, "Lifetimes").

* Returned maps are copies: a ``DMAMap`` keeps its values after the map is removed, the tree
  cleared, closed or dropped, and however the tree changes afterwards.
* Every method of a closed object raises ``ValueError`` (before looking at its arguments);
  ``close()`` may be called again; ``closed`` and ``repr`` keep working.
* A tree dropped without ``close()`` frees its C memory: ``ib_heap_in_use()`` (glibc's count of
  bytes handed out) comes back to where it was, and so does the process's address space (the
  arenas' own mappings, whose blocks ``ib_tree_mapped_bytes()`` counts, are unmapped).
* An iterator keeps its tree's C object alive; changing the tree while iterating raises
  ``RuntimeError``, closing it raises ``ValueError``.
"""

from __future__ import annotations

import copy
import gc
import inspect
import pickle
import threading
from array import array
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from iova_native import DMAMap, OverlapError, Perm, TranslationError

PAGE = 0x1000


def sample_iova_tree(backend: ModuleType) -> Any:
    t = backend.IOVATree()
    for i in range(10):
        t.insert(DMAMap(i * 2 * PAGE, 0x100000 + i * PAGE, PAGE - 1, Perm.RW, i % 3))
    return t


def sample_vhost(backend: ModuleType) -> Any:
    v = backend.VhostIOVATree(0, 1 << 32)
    for i in range(5):
        v.map_alloc(PAGE - 1, 0x700000 + i * PAGE)
        v.map_alloc_gpa(PAGE - 1, 0x900000 + i * PAGE)
    return v


# ----------------------------------------------------------------------------- copies


def test_maps_survive_remove_clear_close(backend: ModuleType) -> None:
    """Every way a map comes out of an IOVATree gives a copy that outlives it."""
    t = sample_iova_tree(backend)
    m0 = DMAMap(0, 0x100000, PAGE - 1, Perm.RW, 0)
    kept = {
        "find": t.find(0),
        "find_iova": t.find_iova(0x100000),
        "find_iova_id": t.find_iova(0x101000, 0, 1),
        "alloc": t.alloc(PAGE - 1, 0x555000, Perm.RO, 7, policy="last"),
        "maps": t.maps(),
        "iter": list(t),
    }
    with pytest.raises(OverlapError) as caught:
        t.insert(DMAMap(0x10, 0, 0))
    kept["existing"] = caught.value.existing
    frozen = {k: repr(v) for k, v in kept.items()}

    assert t.remove(0) == 1
    t.insert(DMAMap(0, 0xDEAD000, 0x7FF, Perm.WO, 99))  # new values in the same place
    assert kept["find"] == m0 and kept["existing"] == m0
    t.clear()
    for i in range(50):  # reuse the freed C memory
        t.insert(DMAMap(i * PAGE, 0xBAD000, 0, Perm.RO, 1))
    t.close()
    del t
    gc.collect()
    assert {k: repr(v) for k, v in kept.items()} == frozen
    assert kept["find"] == m0
    assert kept["alloc"].translated_addr == 0x555000 and kept["alloc"].id == 7
    assert len(kept["maps"]) == 11 and kept["maps"] == kept["iter"]
    for m in kept["maps"]:
        assert type(m) is DMAMap
        # A plain tuple of Python ints and a Perm: nothing that refers to C memory.
        assert all(type(x) is int for x in (m[0], m[1], m[2], m[4])) and type(m[3]) is Perm


def test_vhost_maps_survive_close(backend: ModuleType) -> None:
    v = sample_vhost(backend)
    kept = [
        v.find_iova(0x700000),
        v.find_gpa(0x900000),
        v.host_maps(),
        v.gpa_maps(),
        v.allocated(),
        v.map_alloc(0xFFF, 0xABC000),
    ]
    with pytest.raises(OverlapError) as caught:
        v.map_alloc_gpa(0xFFF, 0x900000)
    kept.append(caught.value.existing)
    frozen = repr(kept)
    v.remove_gpa(0, 1 << 40)
    v.remove(0, 1 << 40)
    v.close()
    del v
    gc.collect()
    assert repr(kept) == frozen
    assert kept[0].translated_addr == 0x700000 and kept[1].id == 0x900000


def test_batch_results_are_independent(backend: ModuleType) -> None:
    """The batch forms return new arrays: not views of the input, not of C memory."""
    t = sample_iova_tree(backend)
    src = array("Q", [0, 2 * PAGE, 4 * PAGE + 5])
    out = t.to_translated_many(src)
    assert type(out) is array and out.typecode == "Q"
    expected = list(out)
    src[0] = 12345
    t.clear()
    t.close()
    assert list(out) == expected == [0x100000, 0x101000, 0x102005]
    out[0] = 1  # writable, and ours
    assert src[0] == 12345


def test_iterator_keeps_tree_alive(backend: ModuleType) -> None:
    """An iterator holds its tree: dropping the last other reference frees nothing early."""
    t = sample_iova_tree(backend)
    expected = t.maps()
    it = iter(t)
    first = next(it)
    del t
    gc.collect()
    assert [first, *it] == expected


def test_close_during_iteration(backend: ModuleType) -> None:
    t = sample_iova_tree(backend)
    it = iter(t)
    next(it)
    t.close()
    with pytest.raises(ValueError):
        next(it)


def test_change_during_iteration_same_thread(backend: ModuleType) -> None:
    t = sample_iova_tree(backend)
    it = iter(t)
    next(it)
    t.alloc(0xFFF)
    with pytest.raises(RuntimeError):
        next(it)


def test_change_during_iteration_other_thread(backend: ModuleType) -> None:
    t = sample_iova_tree(backend)
    it = iter(t)
    next(it)
    worker = threading.Thread(target=lambda: t.remove(0, 1 << 30))
    worker.start()
    worker.join()
    with pytest.raises(RuntimeError):
        next(it)


# ----------------------------------------------------------------------------- after close

# The container calls every class has (issue 19).
CONTAINER_CALLS: dict[str, Callable[[Any], Any]] = {
    "__contains__": lambda t: DMAMap(0, 0x100000, PAGE - 1) in t,
    "__eq__": lambda t: t == t.copy() if not t.closed else t == t,
    "copy": lambda t: t.copy(),
    "__copy__": copy.copy,
    "__deepcopy__": copy.deepcopy,
    "__reduce__": pickle.dumps,
}
# Every public method with valid arguments.  test_every_public_method_is_listed keeps this in
# step with the classes.
IOVA_CALLS: dict[str, Callable[[Any], Any]] = {
    "insert": lambda t: t.insert(DMAMap(1 << 40, 0, 0)),
    "find": lambda t: t.find(0),
    "find_iova": lambda t: t.find_iova(0x100000, 0, 0),
    "translate": lambda t: t.translate(0x100000, 16),
    "alloc": lambda t: t.alloc(0xFFF),
    "remove": lambda t: t.remove(0),
    "to_translated_many": lambda t: t.to_translated_many([0]),
    "to_iova_many": lambda t: t.to_iova_many(array("Q", [0x100000]), id=0, missing=0),
    "maps": lambda t: t.maps(),
    "clear": lambda t: t.clear(),
    "check": lambda t: t.check(),
    "__len__": len,
    "__iter__": iter,
    "__enter__": lambda t: t.__enter__(),
    "find_all": lambda t: t.find_all(0, 0xFFFFF),
    "find_iova_all": lambda t: t.find_iova_all(0x100000, 0xFFFFF, id=0),
    "__reversed__": lambda t: list(reversed(t)),
    "update": lambda t: t.update([DMAMap(1 << 41, 0, 0)]),
    **CONTAINER_CALLS,
}
GPA_CALLS: dict[str, Callable[[Any], Any]] = {
    "insert": lambda t: t.insert(DMAMap(0, 1 << 40, 0)),
    "find": lambda t: t.find(0x100000),
    "remove": lambda t: t.remove(0x100000),
    "to_iova_many": lambda t: t.to_iova_many([0x100000], missing=0),
    "maps": lambda t: t.maps(),
    "clear": lambda t: t.clear(),
    "check": lambda t: t.check(),
    "__len__": len,
    "__iter__": iter,
    "__enter__": lambda t: t.__enter__(),
    "find_all": lambda t: t.find_all(0x100000, 0xFFFFF),
    "__reversed__": lambda t: list(reversed(t)),
    "update": lambda t: t.update([DMAMap(0, 1 << 41, 0)]),
    **CONTAINER_CALLS,
}
VHOST_CALLS: dict[str, Callable[[Any], Any]] = {
    "map_alloc": lambda v: v.map_alloc(0xFFF, 0x1000),
    "map_alloc_gpa": lambda v: v.map_alloc_gpa(0xFFF, 1 << 40),
    "find_iova": lambda v: v.find_iova(0x700000),
    "find_gpa": lambda v: v.find_gpa(0x900000),
    "remove": lambda v: v.remove(0x1000),
    "remove_gpa": lambda v: v.remove_gpa(0x900000),
    "translate": lambda v: v.translate(0x700000, 16),
    "to_iova_many": lambda v: v.to_iova_many([0x700000]),
    "gpa_to_iova_many": lambda v: v.gpa_to_iova_many([0x900000]),
    "host_maps": lambda v: v.host_maps(),
    "gpa_maps": lambda v: v.gpa_maps(),
    "allocated": lambda v: v.allocated(),
    "clear": lambda v: v.clear(),
    "check": lambda v: v.check(),
    "__len__": len,
    "__enter__": lambda v: v.__enter__(),
    **CONTAINER_CALLS,
}
# The same methods with bad arguments: the closed check comes first, so still ValueError.
BAD_ARG_CALLS: dict[str, Callable[[Any], Any]] = {
    "find": lambda t: t.find("zero"),
    "remove": lambda t: t.remove(-1),
    "insert": lambda t: t.insert(None),
    "to_iova_many": lambda t: t.to_iova_many(None),
}
NOT_METHODS = {"close", "closed"}  # allowed after close
# The special methods of the API (the container protocol, copy and pickle).
API_DUNDERS = {"__len__", "__iter__", "__enter__", "__contains__", "__eq__", "__reversed__",
               "__copy__", "__deepcopy__", "__reduce__"}
ALL_CALLS = {"IOVATree": IOVA_CALLS, "GPATree": GPA_CALLS, "VhostIOVATree": VHOST_CALLS}


def make(backend: ModuleType, cls: str) -> Any:
    if cls == "IOVATree":
        return sample_iova_tree(backend)
    if cls == "GPATree":
        t = backend.GPATree()
        t.insert(DMAMap(0x5000, 0x100000, PAGE - 1))
        return t
    return sample_vhost(backend)


@pytest.mark.parametrize("cls", sorted(ALL_CALLS))
def test_every_public_method_is_listed(backend: ModuleType, cls: str) -> None:
    """The tables above name every public method (so a new one gets a closed test too)."""
    public = {
        name
        for name, member in inspect.getmembers(getattr(backend, cls))
        if (not name.startswith("_") or name in API_DUNDERS)
        and (callable(member) or isinstance(member, property))
        and (name != "__reduce__" or member is not object.__reduce__)
    }
    assert public - NOT_METHODS == set(ALL_CALLS[cls])


@pytest.mark.parametrize(
    "cls,method", [(cls, m) for cls, calls in sorted(ALL_CALLS.items()) for m in calls]
)
def test_every_method_after_close_raises_value_error(
    backend: ModuleType, cls: str, method: str
) -> None:
    obj = make(backend, cls)
    ALL_CALLS[cls][method](obj)  # works while open
    obj.close()
    with pytest.raises(ValueError) as caught:
        ALL_CALLS[cls][method](obj)
    assert type(caught.value) is ValueError  # not a subclass such as InvalidMapError
    assert obj.closed
    obj.close()  # again: no error
    assert "closed" in repr(obj)


@pytest.mark.parametrize("cls", ["IOVATree", "GPATree"])
@pytest.mark.parametrize("method", sorted(BAD_ARG_CALLS))
def test_closed_check_comes_before_argument_checks(
    backend: ModuleType, cls: str, method: str
) -> None:
    obj = make(backend, cls)
    obj.close()
    with pytest.raises(ValueError) as caught:
        BAD_ARG_CALLS[method](obj)
    assert type(caught.value) is ValueError


def test_with_statement_closes_even_on_error(backend: ModuleType) -> None:
    with pytest.raises(TranslationError):
        with backend.IOVATree() as t:
            t.translate(0, 1)
    assert t.closed
    with pytest.raises(ValueError):
        len(t)


# ----------------------------------------------------------------------------- finalizer


def heap() -> int:
    from iova_native._core import lib

    gc.collect()
    return int(lib.ib_heap_in_use())


def mapped(native: ModuleType, objects: list[Any]) -> int:
    """The arena blocks of ``objects``' IOVATrees and GPATrees mapped outside malloc, which
    ``ib_heap_in_use()`` does not see (csrc/iova-arena.h)."""
    from iova_native._core import lib

    return sum(int(lib.ib_tree_mapped_bytes(o._h)) for o in objects
               if isinstance(o, (native.IOVATree, native.GPATree)))


def address_space() -> int:
    """The process's mapped address space (VmSize), the arenas' mappings included."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def churn(native: ModuleType, trees: int, maps: int) -> list[Any]:
    """``trees`` objects of every class, each with ``maps`` maps."""
    made: list[Any] = []
    for _ in range(trees):
        t = native.IOVATree()
        g = native.GPATree()
        v = native.VhostIOVATree(0, 1 << 40)
        for i in range(maps):
            t.insert(DMAMap(i * PAGE, i * 8, 0xF, Perm.RW, i % 5))
            g.insert(DMAMap(i * 8, i * PAGE, 0x3))
            v.map_alloc(0xFF, i * PAGE) if i % 2 else v.map_alloc_gpa(0xFF, i * PAGE)
        made += [t, g, v]
    return made


@pytest.fixture
def native() -> ModuleType:
    """The native backend, when ``ib_heap_in_use()`` can see its allocations (it reads glibc's
    malloc statistics: under AddressSanitizer, whose allocator replaces malloc, it cannot)."""
    module = pytest.importorskip("iova_native.native")
    before = heap()
    probe = churn(module, 1, 2000)
    if heap() - before < 100_000:
        pytest.skip("ib_heap_in_use() does not see this allocator (a sanitizer build?)")
    del probe
    return module


def warm_up(native: ModuleType, trees: int, maps: int) -> None:
    """One round of the same size first: GLib 2.74's slice allocator (GTree nodes) keeps freed
    chunks in per-thread caches that grow to a plateau; that memory is reused, not leaked, and
    disappears with G_SLICE=always-malloc."""
    churn(native, trees, maps)
    gc.collect()


def test_dropped_trees_free_their_memory(native: ModuleType) -> None:
    """Trees dropped without close() give their C memory back (ffi.gc finalizer)."""
    warm_up(native, 30, 1000)
    before, space_before = heap(), address_space()
    alive = churn(native, 30, 1000)
    during = heap() + mapped(native, alive)
    grown = during - before
    assert grown > 5_000_000, f"the measure does not see the trees ({grown} bytes)"
    del alive
    after, space_after = heap(), address_space()
    print(
        f"\nheap in use: {before} before, {during} with 90 trees of 1000 maps, "
        f"{after} after dropping them ({after - before:+d} bytes); address space "
        f"{space_after - space_before:+d} bytes"
    )
    assert after - before < 256 * 1024
    if space_before:
        assert space_after - space_before < 64 << 20, "the arenas' address space not unmapped"


def test_dropped_trees_in_cycles_and_closed_trees_free_their_memory(native: ModuleType) -> None:
    warm_up(native, 20, 500)
    before = heap()
    for _ in range(3):
        made = churn(native, 20, 500)
        for obj in made[::2]:
            obj.close()  # closed now, freed (the handle) by the finalizer later
        holder: dict[str, Any] = {"trees": made}
        holder["self"] = holder  # a reference cycle: only gc.collect() frees it
        del made, holder
        gc.collect()
    after = heap()
    assert after - before < 512 * 1024, f"{after - before} bytes not given back"


def test_finalizer_runs_with_iterator_last(native: ModuleType) -> None:
    """The tree's last reference is an iterator: freed when the iterator goes."""
    warm_up(native, 1, 1000)
    before = heap()
    for _ in range(10):
        t = churn(native, 1, 1000)[0]
        it = iter(t)
        next(it)
        del t
        gc.collect()
        assert len(list(it)) == 999
        del it
    after = heap()
    assert after - before < 512 * 1024, f"{after - before} bytes not given back"
