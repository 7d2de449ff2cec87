# SPDX-License-Identifier: GPL-2.0-or-later
"""The container API (issue 19): range queries both ways, ``in``, ``==``, ``reversed``, the
``maps=`` constructor and ``update``, ``copy`` and pickling, in every backend; and the static
types of the top-level import, checked with ``mypy --strict``."""

from __future__ import annotations

import copy
import importlib
import os
import pickle
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from conftest import BACKENDS, _backend_param
from iova_native import MAX_U64 as TOP
from iova_native import DMAMap, InvalidMapError, OverlapError, Perm

PAGE = 0x1000
ALL_BACKENDS = [*BACKENDS, "iova_native.differential"]


@pytest.fixture(params=[_backend_param(name) for name in ALL_BACKENDS])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    """Each backend, the differential one too (native against reference)."""
    if request.param.endswith("differential"):
        pytest.importorskip("iova_native.native")
    return importlib.import_module(request.param)


def three_pages(mod: ModuleType) -> Any:
    """Maps at 0x1000, 0x3000 and 0x5000 whose translated order is the reverse of IOVA's."""
    return mod.IOVATree(
        [
            DMAMap(0x1000, 0x90000, PAGE - 1, Perm.RW, 1),
            DMAMap(0x3000, 0x80000, PAGE - 1, Perm.RO, 2),
            DMAMap(0x5000, 0x70000, PAGE - 1, Perm.WO, 1),
        ]
    )


def sample_vhost(mod: ModuleType) -> Any:
    v = mod.VhostIOVATree(0, 1 << 32)
    first = v.map_alloc(PAGE - 1, 0x700000)
    v.map_alloc_gpa(2 * PAGE - 1, 0x900000)
    v.map_alloc(PAGE - 1, 0x700000, Perm.RO)  # an alias of the first host buffer
    v.map_alloc_gpa(PAGE - 1, 0x100000, Perm.WO)
    v.remove(first.iova)  # a hole at the bottom: a copy must keep it
    return v


# ----------------------------------------------------------------------------- range queries


def test_find_all_in_iova_order(mod: ModuleType) -> None:
    t = three_pages(mod)
    maps = t.maps()
    assert t.find_all(0x1800, 0x2000) == maps[:2]  # 0x1800..0x3800
    assert t.find_all(0, TOP) == maps
    assert t.find_all(0x2000, PAGE - 1) == []
    assert t.find_all(0x5FFF) == [maps[2]]
    for key, size in ((0, TOP), (0x1800, 0x2000), (0x2000, 0)):
        hits = t.find_all(key, size)
        assert (hits[0] if hits else None) == t.find(key, size)


def test_find_iova_all_in_iova_order_and_by_id(mod: ModuleType) -> None:
    t = three_pages(mod)
    maps = t.maps()
    # Translated order is 0x5000, 0x3000, 0x1000: the answer is sorted by IOVA all the same.
    assert t.find_iova_all(0x70000, 0x20FFF) == maps
    assert t.find_iova_all(0x70000, 0x20FFF, id=1) == [maps[0], maps[2]]
    assert t.find_iova_all(0x80800, 0, id=1) == []
    assert t.find_iova_all(0x80800) == [maps[1]]
    assert t.find_iova_all(0, TOP, id=2) == [maps[1]]


def test_find_iova_all_many_aliases(mod: ModuleType) -> None:
    """More hits than the first C call has room for; aliases of one range, ids mixed."""
    t = mod.IOVATree(
        [DMAMap(i * PAGE, 0x40000 + (i % 3) * 0x800, PAGE - 1, Perm.RW, i % 2) for i in range(60)]
    )
    assert t.find_iova_all(0x40000, 0x1FFF) == t.maps()
    covering = [m for m in t.maps() if m.translated_addr <= 0x40FFF <= m.translated_last]
    assert len(covering) == 40
    assert t.find_iova_all(0x40FFF, 0, id=1) == [m for m in covering if m.id == 1]
    at_start = [m for m in t.maps() if m.translated_addr <= 0x40000]
    assert t.find_iova_all(0x40000, 0, id=0) == [m for m in at_start if m.id == 0]
    assert t.find_all(0, TOP) == t.maps()


def test_gpa_tree_find_all(mod: ModuleType) -> None:
    g = mod.GPATree([DMAMap(0x9000, 0x2000, PAGE - 1), DMAMap(0x1000, 0x4000, 2 * PAGE - 1)])
    assert g.find_all(0x2800, 0x2000) == g.maps()
    assert g.find_all(0x3000, PAGE - 1) == []
    assert g.find_all(0x5FFF) == [DMAMap(0x1000, 0x4000, 2 * PAGE - 1)]


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda t: t.find_all("x"), TypeError),
        (lambda t: t.find_all(1.0), TypeError),
        (lambda t: t.find_all(Decimal(0x1000)), TypeError),  # cffi alone would take it
        (lambda t: t.find_iova_all(0x90000, 0, Decimal(1)), TypeError),
        (lambda t: t.find_all(1, TOP), InvalidMapError),
        (lambda t: t.find_all(-1), InvalidMapError),
        (lambda t: t.find_iova_all(0, None), TypeError),
        (lambda t: t.find_iova_all(TOP, 1), InvalidMapError),
        (lambda t: t.find_iova_all(0, 0, id=-1), InvalidMapError),
        (lambda t: t.find_iova_all(0, 0, id="1"), TypeError),
    ],
)
def test_range_queries_refuse_bad_input(
    mod: ModuleType, call: Callable[[Any], Any], error: type
) -> None:
    t = three_pages(mod)
    with pytest.raises(error):
        call(t)
    t.close()
    with pytest.raises(ValueError):  # closed comes first
        call(t)


# ----------------------------------------------------------------------------- in, ==, reversed


def test_contains(mod: ModuleType) -> None:
    t = three_pages(mod)
    m = t.maps()[1]
    assert m in t
    assert m.replace(perm=Perm.RW) not in t
    assert m.replace(id=7) not in t
    assert m.replace(size=0) not in t
    assert m.replace(translated_addr=0) not in t
    for value in (0x3000, 0x3800, None, "m", tuple(m), list(m)):
        assert value not in t
    g = mod.GPATree([m])
    assert m in g and m.replace(iova=0) not in g
    # Forged maps (found by the stateful machines): no error; a key that is no int never
    # matches, in C as in Python.
    empty = tuple.__new__(DMAMap, ())
    assert empty not in t and empty not in g and empty not in sample_vhost(mod)
    decimal_iova = tuple.__new__(DMAMap, (Decimal(0x3000), *m[1:]))
    assert decimal_iova not in t and decimal_iova not in sample_vhost(mod)


def test_vhost_contains_both_trees(mod: ModuleType) -> None:
    v = sample_vhost(mod)
    for m in v.host_maps() + v.gpa_maps():
        assert m in v
    for a in v.allocated():  # allocations are not maps: translated_addr and id 0
        assert a not in v
    assert 0x900000 not in v


def test_equality_across_backends(mod: ModuleType) -> None:
    t = three_pages(mod)
    assert t == three_pages(importlib.import_module("iova_native.reference"))
    if "iova_native.native" in sys.modules or mod.__name__ != "iova_native.reference":
        native = importlib.import_module("iova_native.native")
        assert three_pages(native) == t and not three_pages(native) != t
    other = three_pages(mod)
    other.remove(0x5000)
    assert t != other
    assert t != t.maps() and t != object() and t != None  # noqa: E711
    assert mod.GPATree(t.maps()) != t  # another class, the same maps
    with pytest.raises(TypeError):
        hash(t)


def test_vhost_equality(mod: ModuleType) -> None:
    assert sample_vhost(mod) == sample_vhost(mod)
    # The effective first IOVA is what counts: max(iova_first, 4096).
    assert mod.VhostIOVATree(0, 1 << 32) == mod.VhostIOVATree(PAGE, 1 << 32)
    assert mod.VhostIOVATree(0, 1 << 32) != mod.VhostIOVATree(0, 1 << 31)
    changed = sample_vhost(mod)
    changed.map_alloc(PAGE - 1, 0x123000)
    assert changed != sample_vhost(mod)
    reference = importlib.import_module("iova_native.reference")
    assert sample_vhost(mod) == sample_vhost(reference)
    with pytest.raises(TypeError):
        hash(changed)


def test_closed_trees_refuse_equality(mod: ModuleType) -> None:
    t, u = three_pages(mod), three_pages(mod)
    t.close()
    with pytest.raises(ValueError):
        t == u  # noqa: B015
    assert t != 5  # not a tree: not equal, whatever its state


def test_reversed(mod: ModuleType) -> None:
    t = three_pages(mod)
    assert list(reversed(t)) == t.maps()[::-1]
    g = mod.GPATree(t.maps())
    assert list(reversed(g)) == sorted(t.maps(), key=lambda m: -m.translated_addr)
    if mod.__name__.endswith("differential"):
        return  # its iteration is eager, by design
    it = reversed(t)
    next(it)
    t.remove(0x1000)
    with pytest.raises(RuntimeError):
        next(it)


# ----------------------------------------------------------------------------- maps= and update


def test_update_is_all_or_nothing(mod: ModuleType) -> None:
    t = three_pages(mod)
    before = t.maps()
    new = DMAMap(0x8000, 0, PAGE - 1)
    with pytest.raises(OverlapError):
        t.update([new, DMAMap(0x9000, 0, 0), DMAMap(0x1800, 0, 0)])
    assert t.maps() == before
    with pytest.raises(OverlapError):  # two new maps that overlap each other
        t.update(iter([new, new.replace(translated_addr=5)]))
    assert t.maps() == before
    with pytest.raises(TypeError):
        t.update([new, (0x9000, 0, 0)])
    assert t.maps() == before
    with pytest.raises(TypeError):
        t.update(new)  # one map, not an iterable of maps
    with pytest.raises(TypeError):
        t.update(5)
    assert t.maps() == before
    t.check()
    t.update(m for m in [new])  # a one-shot iterator
    assert t.maps() == [*before, new]


def test_constructor_takes_maps(mod: ModuleType) -> None:
    maps = three_pages(mod).maps()
    assert mod.IOVATree(reversed(maps)).maps() == maps
    assert mod.IOVATree(maps=maps) == mod.IOVATree(maps)
    with pytest.raises(OverlapError):
        mod.IOVATree([*maps, maps[0]])
    with pytest.raises(TypeError):
        mod.GPATree([1, 2])


# ----------------------------------------------------------------------------- copy and pickle

COPIES: dict[str, Callable[[Any], Any]] = {
    "copy": lambda t: t.copy(),
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "pickle": lambda t: pickle.loads(pickle.dumps(t)),
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("kind", ["IOVATree", "GPATree", "VhostIOVATree"])
def test_copies_are_independent(mod: ModuleType, how: str, kind: str) -> None:
    original = sample_vhost(mod) if kind == "VhostIOVATree" else getattr(mod, kind)(
        three_pages(mod).maps()
    )
    state = original._equality_state()
    twin = COPIES[how](original)
    assert type(twin) is type(original)  # native to native, reference to reference
    if mod.__name__.endswith("differential"):
        assert type(twin.left) is type(original.left)
        assert type(twin.right) is type(original.right)
    assert twin == original
    twin.check()
    # Change the original: the copy keeps what it had.
    original.clear()
    assert twin._equality_state() == state
    # Change and close the copy: the original is untouched and open.
    restored = COPIES["copy"](twin)
    twin.clear()
    twin.close()
    assert not original.closed and len(original) == 0
    assert restored._equality_state() == state
    restored.check()


def test_closing_a_copy_leaves_the_original(mod: ModuleType) -> None:
    """The bug of the issue: the reference's copy.copy() shared its maps, so closing the copy
    emptied the original; the native one shared the C tree and closed it."""
    t = three_pages(mod)
    before = t.maps()
    c = copy.copy(t)
    c.close()
    assert not t.closed and t.maps() == before


def test_vhost_copy_allocates_as_the_original(mod: ModuleType) -> None:
    v = sample_vhost(mod)
    c = pickle.loads(pickle.dumps(v))
    assert c.allocated() == v.allocated()
    # Both place the next buffer in the same hole (the one left at the bottom).
    assert c.map_alloc(PAGE - 1, 0x5000) == v.map_alloc(PAGE - 1, 0x5000)
    assert c == v


@pytest.mark.parametrize("how", sorted(COPIES))
def test_closed_trees_refuse_copies(mod: ModuleType, how: str) -> None:
    for obj in (three_pages(mod), sample_vhost(mod)):
        obj.close()
        with pytest.raises(ValueError):
            COPIES[how](obj)


# ----------------------------------------------------------------------------- static types

GOOD_SCRIPT = """\
from __future__ import annotations  # int | None on Python 3.9 too

from iova_native import DMAMap, GPATree, IOVATree, Perm, VhostIOVATree


def lowest_iova(tree: IOVATree, hva: int) -> int | None:
    found = tree.find_iova(hva)
    return None if found is None else found.iova


with IOVATree([DMAMap(0x1000, 0x8000, 0xFFF, Perm.RW)]) as tree:
    hits: list[DMAMap] = tree.find_all(0, 0xFFFF) + tree.find_iova_all(0x8000, id=0)
    twin: IOVATree = tree.copy()
    present: bool = hits[0] in twin and twin == tree
    print(lowest_iova(tree, 0x8000), present, list(reversed(tree)))
gpas: list[DMAMap] = GPATree().find_all(0)
vhost: VhostIOVATree = VhostIOVATree(0, 1 << 32).copy()
"""

BAD_SCRIPT = """\
import iova_native

tree = iova_native.IOVATree()
tree.find("x")
count: str = len(iova_native.VhostIOVATree(0, 1 << 32))
"""


MISSPELT_SCRIPT = """\
import iova_native
import iova_native.differential
from iova_native import IOVATre

tree = iova_native.IOVATre()
count: str = iova_native.differential.GPATree().copy()
"""


def run_mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    script = tmp_path / "user_script.py"
    script.write_text(source)
    src = Path(importlib.import_module("iova_native").__file__).resolve().parent.parent  # type: ignore[arg-type]
    env = dict(os.environ)
    if src.name == "src":  # a source checkout; an installed package mypy finds by itself (and
        env["MYPYPATH"] = str(src)  # refuses site-packages in MYPYPATH)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False,
    )


def test_mypy_strict_accepts_a_user_script(tmp_path: Path) -> None:
    result = run_mypy(tmp_path, GOOD_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_refuses_a_misuse(tmp_path: Path) -> None:
    """``iova_native.IOVATree`` is the native class to mypy, not ``Any``: misuses are caught."""
    result = run_mypy(tmp_path, BAD_SCRIPT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'user_script.py:4: error: Argument 1 to "find" of "IOVATree" has incompatible type' \
        in result.stdout or "user_script.py:4: error: Argument 1" in result.stdout, result.stdout
    assert "user_script.py:5: error" in result.stdout, result.stdout


# ----------------------------------------------------------------------------- threads


def test_copies_and_range_queries_while_another_thread_changes_the_tree() -> None:
    """Each copy and each range answer is one consistent look: copy_into takes the original's
    lock, then the new tree's (no other thread can hold that one: no deadlock)."""
    import threading

    native = pytest.importorskip("iova_native.native")
    t = native.IOVATree([DMAMap(i * PAGE, 0x100000, PAGE - 1, Perm.RW, i % 4) for i in range(64)])
    v = sample_vhost(native)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        i = 0
        while not stop.is_set():
            m = DMAMap((64 + i % 64) * PAGE, 0x100000, PAGE - 1, Perm.RW, i % 4)
            t.insert(m)
            t.remove(m.iova)
            v.remove(v.map_alloc(PAGE - 1, 0x200000).iova)
            i += 1

    def read() -> None:
        try:
            for _ in range(200):
                twin = t.copy()
                twin.check()
                assert len(twin) in (64, 65)
                twin.close()
                assert len(t.find_all(0, TOP)) in (64, 65)
                hits = t.find_iova_all(0x100000, 0, id=1)
                assert hits == sorted(hits) and len(hits) in (16, 17)
                vt = v.copy()
                vt.check()
                vt.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=churn)
    readers = [threading.Thread(target=read) for _ in range(2)]
    writer.start()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    writer.join()
    assert not errors, errors[0]
    t.check()
    v.check()


def _changing_between_looks(tree: Any, change: Callable[[], None], name: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``tree``'s method ``name`` run ``change`` once, right after its first answer, as
    another thread could between two looks at the tree."""
    original = getattr(type(tree), name)
    pending = [change]

    def look(self: Any, *args: Any) -> Any:
        answer = original(self, *args)
        if self is tree and pending:
            pending.pop()()
        return answer

    monkeypatch.setattr(type(tree), name, look)


@pytest.mark.parametrize("kind", ["IOVATree", "GPATree", "VhostIOVATree"])
def test_a_tree_equals_itself_while_another_thread_changes_it(
    backend: ModuleType, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``t == t`` is one look, not two that a change in between could make differ."""
    if kind == "VhostIOVATree":
        t: Any = sample_vhost(backend)

        def change() -> None:
            t.map_alloc(PAGE - 1, 0x300000)
    else:
        t = getattr(backend, kind)([DMAMap(PAGE, 0x10000, PAGE - 1)])

        def change() -> None:
            t.insert(DMAMap(4 * PAGE, 0x40000, PAGE - 1))
    _changing_between_looks(t, change, "_equality_state", monkeypatch)
    assert t == t
    assert not (t != t)
    t.close()
    with pytest.raises(ValueError):
        t == t  # noqa: B015


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_native_vhost_state_is_one_look_while_another_thread_changes_it(
    protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A native VhostIOVATree's pickled (and compared) state is read as three listings; a change
    between them gave a state no tree had: a pickle that failed to load with ValueError."""
    native = pytest.importorskip("iova_native.native")
    v = sample_vhost(native)
    _changing_between_looks(v, lambda: v.map_alloc(PAGE - 1, 0x300000), "allocated", monkeypatch)
    twin = pickle.loads(pickle.dumps(v, protocol))
    assert twin == v and len(twin.allocated()) == len(v.allocated()) == 4
    twin.check()
    _changing_between_looks(v, lambda: v.remove(v.host_maps()[0].iova), "host_maps", monkeypatch)
    state = v._equality_state()
    assert state == v._equality_state() and len(state[2]) == 3


def test_mypy_strict_refuses_names_the_package_lacks(tmp_path: Path) -> None:
    """The package's lazy ``__getattr__`` is hidden from mypy: to it, any name would be ``Any``
    (a misspelt class type-checked); and a differential ``copy()`` is its own class."""
    result = run_mypy(tmp_path, MISSPELT_SCRIPT)
    assert result.returncode == 1, result.stdout + result.stderr
    for line in (3, 5, 6):
        assert f"user_script.py:{line}: error" in result.stdout, result.stdout
