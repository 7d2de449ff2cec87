# SPDX-License-Identifier: GPL-2.0-or-later
"""DMAMap's constructor in C (csrc/dmamap-binding.c) against its Python ``__new__``.

``DMAMap(...)`` is answered by the metaclass in C when the call is plain; everything else goes
to ``DMAMap.__new__``.  Calling ``DMAMap.__new__(DMAMap, ...)`` directly always runs the Python
code, so the two can be held to each other: the same map, or the same exception with the same
message, for every call."""

from __future__ import annotations

import copy
import gc
import pickle
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iova_native import DMAMap, InvalidMapError, Perm, _dmamap, native, reference

W = 2**64 - 1
EDGES = [0, 1, 0xFFF, 2**32, 2**63 - 1, 2**63, W - 1, W, W + 1, -1, -(2**64)]
FIELDS = ("iova", "translated_addr", "size", "perm", "id")


class SubInt(int):
    pass


class Indexable:
    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def scalar() -> st.SearchStrategy[Any]:
    ints = st.one_of(st.sampled_from(EDGES), st.integers(0, W), st.integers(-10, 2**65))
    return st.one_of(
        ints, ints, ints,
        ints.map(SubInt), ints.map(Indexable), st.booleans(),
        st.sampled_from([1.0, "1", None, b"\x01"]),
    )


def perm_value() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(list(Perm)), st.integers(-1, 5), st.just(Perm.RW | 8),
                     st.sampled_from([1.0, None, "RW"]))


@st.composite
def calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments of a DMAMap call: some positional, some by keyword, now and then a call
    Python itself refuses (too many, a keyword twice, an unknown one)."""
    values = [draw(scalar()), draw(scalar()), draw(scalar()), draw(perm_value()), draw(scalar())]
    count = draw(st.integers(0, 5))
    positional = tuple(values[:count])
    keywords = {name: values[i] for i, name in enumerate(FIELDS) if i >= count
                and (i < 3 or draw(st.booleans()))}
    odd = draw(st.integers(0, 9))
    if odd == 0:
        positional += (0,)
    elif odd == 1 and count:
        keywords[FIELDS[0]] = 0
    elif odd == 2:
        keywords["colour"] = 1
    elif odd == 3 and keywords:
        keywords.pop(next(iter(keywords)))
    return positional, keywords


@pytest.fixture(params=[False, True], ids=["fast-alloc", "generic-alloc"], autouse=True)
def alloc_path(request: Any) -> Any:
    """Every test twice: maps allocated directly (CPython 3.9 to 3.13), and through tuple's
    own tp_new (every other version, whose tuple may hold more than its items)."""
    before = _dmamap._set_generic_alloc(request.param)
    yield request.param
    _dmamap._set_generic_alloc(before)


def outcome(build: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        m = build(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the answer compared
        return ("raised", type(exc), str(exc))
    return ("built", type(m), tuple(m), tuple(type(f) for f in m))


def python_new(*args: Any, **kwargs: Any) -> DMAMap:
    return DMAMap.__new__(DMAMap, *args, **kwargs)


@settings(max_examples=1500, deadline=None)
@given(calls())
def test_the_c_constructor_answers_what_the_python_one_does(call: Any) -> None:
    args, kwargs = call
    assert outcome(DMAMap, args, kwargs) == outcome(python_new, args, kwargs)


def test_hashes_are_the_tuples_hashes() -> None:
    """A map hashes as the tuple of its fields, whichever way it was built (3.14 caches a
    tuple's hash in the tuple: a map allocated without resetting it would hash as 0)."""
    built = [DMAMap(0x1000, 0x2000, 0xFFF, Perm.RO, 5),
             DMAMap(iova=0x1000, translated_addr=0x2000, size=0xFFF, perm=Perm.RO, id=5),
             _dmamap.from_fields((0x1000, 0x2000, 0xFFF, Perm.RO, 5)),
             DMAMap(0x1000, 0x2000, 0xFFF, 1, 5)]
    plain = (0x1000, 0x2000, 0xFFF, Perm.RO, 5)
    for m in built:
        assert hash(m) == hash(plain) != 0
        assert {plain: "found"}[m] == "found" and {m: "found"}[plain] == "found"


def test_dmamaps_are_built_by_the_metaclass() -> None:
    assert type(DMAMap) is _dmamap.DMAMapType
    m = DMAMap(0x1000, 0x2000, 0xFFF)
    assert type(m) is DMAMap and isinstance(m, tuple)
    assert m == (0x1000, 0x2000, 0xFFF, Perm.RW, 0)
    assert m.perm is Perm.RW and type(m.id) is int


@pytest.mark.parametrize("args", [
    (W, 0, 0), (0, W, 0), (W - 5, W - 5, 5), (0, 0, W), (2**63, 2**63, 2**63 - 1),
])
def test_the_last_byte_of_the_space_is_valid(args: tuple[int, int, int]) -> None:
    m = DMAMap(*args, Perm.RO, W)
    assert tuple(m) == (*args, Perm.RO, W)


@pytest.mark.parametrize("args", [(W, 0, 1), (0, W, 1), (1, 0, W), (W + 1, 0, 0), (0, 0, 0, 0)])
def test_invalid_maps_are_refused(args: tuple[int, ...]) -> None:
    with pytest.raises(InvalidMapError):
        DMAMap(*args)


def test_normalised_fields() -> None:
    m = DMAMap(True, SubInt(5), Indexable(7), 3, SubInt(9))
    assert tuple(m) == (1, 5, 7, Perm.RW, 9)
    assert all(type(f) is int for f in (m.iova, m.translated_addr, m.size, m.id))
    assert m.perm is Perm.RW


def test_python_refuses_odd_calls_with_its_own_words() -> None:
    with pytest.raises(TypeError, match="multiple values"):
        DMAMap(1, 2, 3, iova=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        DMAMap(1, 2, 3, colour=1)
    with pytest.raises(TypeError, match="positional argument"):
        DMAMap(1, 2, 3, Perm.RW, 0, 6)
    with pytest.raises(TypeError, match="missing"):
        DMAMap(1, 2)


def test_a_subclass_runs_its_own_new_and_init() -> None:
    seen: list[str] = []

    class Tagged(DMAMap):
        __slots__ = ()

        def __new__(cls, *args: Any, **kwargs: Any) -> Tagged:
            seen.append("new")
            return super().__new__(cls, *args, **kwargs)  # type: ignore[return-value]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append("init")

    t = Tagged(1, 2, 3)
    assert type(t) is Tagged and seen == ["new", "init"]
    assert t == DMAMap(1, 2, 3)


def test_a_plain_subclass_is_built_as_itself() -> None:
    class Plain(DMAMap):
        __slots__ = ()

    p = Plain(iova=1, translated_addr=2, size=3)
    assert type(p) is Plain and tuple(p) == (1, 2, 3, Perm.RW, 0)


def test_no_reference_is_leaked_or_lost() -> None:
    """Built and dropped many times: the class, the field values and the Perm members keep
    their reference counts (a lost one would free them under a live map; a leaked one keeps
    every map's fields alive)."""
    iova, taddr = 10**12 + 7, 10**13 + 9  # not small ints: their counts are their own
    gc.collect()  # earlier tests' subclasses and maps hold references too
    before = [sys.getrefcount(x) for x in (DMAMap, iova, taddr, Perm.RO)]
    for _ in range(10_000):
        DMAMap(iova, taddr, 0xFFF, Perm.RO, iova)
        DMAMap(iova=iova, translated_addr=taddr, size=0, perm=Perm.RO)
        _dmamap.from_fields((iova, taddr, 1, Perm.RO, 0))
        try:
            DMAMap(iova, taddr, W, Perm.RO)
        except InvalidMapError:
            pass
    gc.collect()
    assert [sys.getrefcount(x) for x in (DMAMap, iova, taddr, Perm.RO)] == before


def test_from_fields_refuses_anything_but_a_five_tuple() -> None:
    for bad in ([1, 2, 3, Perm.RW, 0], (1, 2, 3), None):
        with pytest.raises(TypeError):
            _dmamap.from_fields(bad)  # type: ignore[arg-type]
    m = _dmamap.from_fields((1, 2, 3, Perm.WO, 4))
    assert type(m) is DMAMap and m == DMAMap(1, 2, 3, Perm.WO, 4)


def test_copies_and_pickles_are_equal_maps() -> None:
    m = DMAMap(0x1000, 0x2000, 0xFFF, Perm.WO, 7)
    for other in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m)), m.replace()):
        assert other == m and type(other) is DMAMap and hash(other) == hash(m)
    assert m.replace(perm=Perm.RO).perm is Perm.RO


@pytest.mark.parametrize("backend", [native, reference], ids=["native", "reference"])
def test_maps_answered_by_a_tree_are_plain_dmamaps(backend: Any) -> None:
    with backend.IOVATree() as tree:
        tree.insert(DMAMap(0x1000, 0x2000, 0xFFF, Perm.RO, 5))
        got = tree.alloc(0xFFF, 0x9000)
        for m in (tree.find(0x1000), tree.find_iova(0x2000), got, *tree):
            assert type(m) is DMAMap and type(m.iova) is int and type(m.perm) is Perm
