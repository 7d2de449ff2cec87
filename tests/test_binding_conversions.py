# SPDX-License-Identifier: GPL-2.0-or-later
"""How Python values cross into C, where the binding converts them itself.

Native ``insert`` hands C the map's address, and C reads the five fields from the tuple
(csrc/iova-pymap.h).  Whatever a ``DMAMap`` holds, forged with ``tuple.__new__`` or not, the
insert must end as the reference's does: the same map stored (with plain ``int`` fields and a
``Perm``), or the same exception with the same message and nothing stored.

Every other 64-bit argument of a cffi call is converted by the binding's own function when it is
an exact int (csrc/iova-cffi.h), and by cffi's otherwise: the same value either way, and the same
OverflowError out of range."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any

import pytest

from iova_native import DMAMap, Perm, reference

native = pytest.importorskip("iova_native.native")
from iova_native._core import lib  # noqa: E402

MAX_U64 = (1 << 64) - 1
PAGE = 0x1000


class Int(int):
    """An int subclass: its value is the int's, whatever its methods say."""

    def __index__(self) -> int:  # never called for an int subclass's value
        return 7

    def __repr__(self) -> str:
        return f"Int({int(self)})"


GOOD = (8 * PAGE, 0x7F00_0000_0000, PAGE - 1, Perm.RW, 0x100)
FIELD_VALUES: list[list[Any]] = [
    # iova
    [0, True, Int(8 * PAGE), -1, 1 << 64, MAX_U64, 8.0 * PAGE, "0x8000", None],
    # translated_addr
    [0, False, Int(5), -5, 1 << 64, MAX_U64, 1.5],
    # size
    [0, True, Int(PAGE - 1), -1, 1 << 64, MAX_U64, MAX_U64 - 8 * PAGE, MAX_U64 - 8 * PAGE + 1],
    # perm
    [Perm.RO, Perm.WO, Perm.NONE, 1, 2, 3, 0, 4, -1, True, False, Int(3), 1 << 64, 3.0, "RW"],
    # id
    [0, True, Int(9), -1, 1 << 63, MAX_U64, 1 << 64, 2.0],
]


def forged_maps() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [("plain", DMAMap(*GOOD))]
    for i, values in enumerate(FIELD_VALUES):
        for v in values:
            fields = list(GOOD)
            fields[i] = v
            cases.append((f"field {i} = {v!r}", tuple.__new__(DMAMap, fields)))
    for n in (0, 1, 4, 6):
        cases.append((f"{n} fields", tuple.__new__(DMAMap, (GOOD * 2)[:n])))
    return cases


def outcome(tree: Any, m: Any) -> tuple[Any, ...]:
    try:
        tree.insert(m)
    except Exception as e:  # noqa: BLE001 - the outcome is compared whatever it is
        return ("raised", type(e), str(e), tree.maps())
    stored = tree.maps()
    return ("stored", [(tuple(map(type, s)), s) for s in stored])


@pytest.mark.parametrize("kind", ["IOVATree", "GPATree"])
@pytest.mark.parametrize("label, m", forged_maps(), ids=[label for label, _ in forged_maps()])
def test_insert_of_any_dmamap_ends_as_the_reference_s(kind: str, label: str, m: Any) -> None:
    base = [DMAMap(0x100 * PAGE, 0x100 * PAGE, PAGE - 1, Perm.RW, 1)]
    mine, theirs = getattr(native, kind)(base), getattr(reference, kind)(base)
    assert outcome(mine, m) == outcome(theirs, m), label
    mine.check()
    # No exception is left pending by the read of the fields: the next call is not disturbed.
    assert sys.exc_info() == (None, None, None)
    assert mine.find(0x100 * PAGE) == base[0]


@pytest.mark.parametrize("kind", ["IOVATree", "GPATree"])
def test_an_overlap_is_reported_in_the_reference_s_words_for_a_forged_map(kind: str) -> None:
    stored = DMAMap(8 * PAGE, 0x7F00_0000_0000, PAGE - 1, Perm.RW, 0)
    forged = tuple.__new__(DMAMap, (Int(8 * PAGE), Int(0x7F00_0000_0000), True, 3, Int(2)))
    outcomes = []
    for backend in (native, reference):
        tree = getattr(backend, kind)([stored])
        outcomes.append(outcome(tree, forged))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "raised" and "overlaps" in outcomes[0][2]


def test_inserts_from_threads_each_store_their_own_map() -> None:
    # C reads each caller's map while that caller holds it; nothing of another thread's
    # (its maps, made and dropped meanwhile) may leak into what is stored.
    tree = native.IOVATree()
    per_thread, threads = 2000, 4

    def work(t: int) -> None:
        for i in range(per_thread):
            k = t * per_thread + i
            tree.insert(DMAMap(k * PAGE, (k ^ 0x5555) * PAGE, PAGE - 1, Perm(1 + k % 3), k))
            if i % 64 == 0:
                gc.collect(0)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    want = [DMAMap(k * PAGE, (k ^ 0x5555) * PAGE, PAGE - 1, Perm(1 + k % 3), k)
            for k in range(per_thread * threads)]
    assert tree.maps() == want
    tree.check()


U64_EDGES = [0, 1, (1 << 30) - 1, 1 << 30, (1 << 31) + 5, (1 << 32) - 1, 1 << 32, (1 << 60) + 3,
             (1 << 62) - 1, 1 << 63, MAX_U64 - 1, MAX_U64]


U64_ARGS = [*U64_EDGES, *map(Int, U64_EDGES), False, True]


@pytest.mark.parametrize("arg", U64_ARGS, ids=repr)
def test_a_u64_argument_reaches_c_as_its_value(arg: int) -> None:
    # Through a raw cffi call, which converts each argument: the stored map shows what C got.
    # The IOVA and the translated address take the value, the id too; the size stays 0.
    value = int(arg)
    tree = native.IOVATree()
    assert lib.ib_tree_insert_map_try(tree._h, arg, arg, 0, 3, arg) == lib.IOVA_OK
    stored = tree.maps()
    assert stored == [DMAMap(value, value, 0, Perm.RW, value)]
    assert all(type(f) is int for f in stored[0][:3])
    tree.check()


@pytest.mark.parametrize("value", [-1, -(1 << 30), -(1 << 64), 1 << 64, (1 << 64) + 5, 1 << 100],
                         ids=hex)
@pytest.mark.parametrize("make", [int, Int], ids=["int", "int subclass"])
def test_a_u64_argument_out_of_range_raises_overflow_error(value: int, make: Any) -> None:
    tree = native.IOVATree()
    for position in range(3):
        args = [PAGE, PAGE, 0]
        args[position] = make(value)
        with pytest.raises(OverflowError):
            lib.ib_tree_insert_map_try(tree._h, *args, 3, 0)
    assert tree.maps() == []
    assert sys.exc_info() == (None, None, None)


@pytest.mark.parametrize("value", [1.0, "1", None, b"1"], ids=repr)
def test_a_u64_argument_of_another_type_is_refused_by_cffi_as_before(value: Any) -> None:
    tree = native.IOVATree()
    with pytest.raises(TypeError):
        lib.ib_tree_insert_map_try(tree._h, value, PAGE, 0, 3, 0)
    assert tree.maps() == []
