# SPDX-License-Identifier: GPL-2.0-or-later
"""Every public method against every bad-input class of docs/contract.md (types and errors).

For each (method, argument, bad value) the call must raise the named error -- ``TypeError`` for a
wrong type, ``InvalidMapError`` for an out-of-range value, a wrapping range or a bad perm /
alignment / policy, ``ValueError`` for a closed object -- and leave the tree exactly as it was
(``maps()``, and for ``VhostIOVATree`` also ``host_maps()``, ``gpa_maps()`` and ``allocated()``).
"""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from iova_native import MAX_U64, DMAMap, InvalidMapError, IOVAError, Perm

try:
    np: Any = importlib.import_module("numpy")
except ImportError:  # the NumPy cases are left out
    np = None

# ------------------------------------------------------------------------ bad values by kind

#: (value, error, label) for an argument that must be an int in 0..2**64-1.
U64_BAD = [
    (-1, InvalidMapError, "negative"),
    (1 << 64, InvalidMapError, "2**64"),
    (1.0, TypeError, "float"),
    ("1", TypeError, "str"),
    (None, TypeError, "None"),
]
#: The same for an argument where None is allowed (``id``, ``missing``, ``gpa``).
OPT_U64_BAD = [case for case in U64_BAD if case[2] != "None"]
PERM_BAD = [
    (Perm.NONE, InvalidMapError, "Perm.NONE"),
    (0, InvalidMapError, "perm0"),
    (4, InvalidMapError, "perm4"),
    (-1, InvalidMapError, "perm-1"),
    (1.0, TypeError, "float"),
    ("RW", TypeError, "str"),
    (None, TypeError, "None"),
]
#: For a batch input: the container itself, or one bad element among good ones.
BATCH_BAD = [
    (None, TypeError, "None"),
    (5, TypeError, "int"),
    ([0x1000, -1], InvalidMapError, "elem-negative"),
    ([0x1000, 1 << 64], InvalidMapError, "elem-2**64"),
    ([0x1000, 1.0], TypeError, "elem-float"),
    ([0x1000, "1"], TypeError, "elem-str"),
    ([0x1000, None], TypeError, "elem-None"),
]
MAP_BAD = [
    ((0x9000, 0, 0xFFF, 3, 0), TypeError, "tuple"),
    ([0x9000, 0, 0xFFF, 3, 0], TypeError, "list"),
    (None, TypeError, "None"),
    (0x9000, TypeError, "int"),
    ("map", TypeError, "str"),
    # maps that only private constructors can build: insert must still refuse them
    (DMAMap._trusted((MAX_U64, 0, 1, Perm.RW, 0)), InvalidMapError, "forged-iova-wrap"),
    (DMAMap._trusted((0x9000, MAX_U64, 1, Perm.RW, 0)), InvalidMapError, "forged-xlat-wrap"),
    (DMAMap._trusted((0x9000, 0, 0xFFF, Perm.NONE, 0)), InvalidMapError, "forged-perm-none"),
]
KINDS = {
    "u64": U64_BAD,
    "opt": OPT_U64_BAD,
    "perm": PERM_BAD,
    "batch": BATCH_BAD,
    "map": MAP_BAD,
}

# ------------------------------------------------------------------------ hostile scalars
#
# Values that pass for an int by ``__int__`` but have no ``__index__``: cffi's own conversion
# takes them, so the native backend must never hand them to C (issue 15, class 2).  Each stands
# for the good value of its argument, so a backend that accepted one would answer or change the
# tree, not fail for some other reason.


class Make:
    """A value built afresh for every call (a one-shot iterator cannot be shared by the runs)."""

    def __init__(self, build: Callable[[], Any], label: str) -> None:
        self.build = build
        self.label = label

    def __repr__(self) -> str:
        return self.label


def built(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.build() if isinstance(a, Make) else a for a in args)


class OnlyInt:
    """Converts with ``int()`` but is no integer (no ``__index__``)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


class IndexBoom(Exception):
    """What ``RaisingIndex.__index__`` raises: propagated unchanged by both backends."""


class RaisingIndex:
    def __int__(self) -> int:
        return 0x1000

    def __index__(self) -> int:
        raise IndexBoom("__index__ refuses")


class Index:
    """An integer type of the user's own: accepted through ``__index__``, like NumPy ints."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def hostile_scalars(good: Any) -> list[tuple[Any, type[BaseException], str]]:
    """Non-integers that convert to ``good`` with ``int()``; each must raise ``TypeError``."""
    value = int(good) if isinstance(good, int) else 1
    cases: list[tuple[Any, type[BaseException], str]] = [
        (Decimal(value) + Decimal("0.7"), TypeError, "Decimal"),
        (Fraction(value), TypeError, "Fraction"),
        (OnlyInt(value), TypeError, "only-__int__"),
        (RaisingIndex(), IndexBoom, "raising-__index__"),
    ]
    if np is not None:
        cases += [
            (np.float32(value), TypeError, "np.float32"),
            (np.float64(value), TypeError, "np.float64"),
            (np.bool_(bool(value)), TypeError, "np.bool_"),
        ]
    return cases


def _two_d() -> memoryview:
    return memoryview(array("Q", [0x1000] * 4)).cast("B").cast("Q", [2, 2])


def hostile_batches(good: list[int]) -> list[tuple[Any, type[BaseException], str]]:
    """Batch inputs each backend must refuse whole, one-shot iterators first (class 1)."""
    x = good[0]
    cases: list[tuple[Any, type[BaseException], str]] = [
        (Make(lambda: (v for v in [x, x + 1, -1]), "gen-last-bad"), InvalidMapError, "gen-last"),
        (Make(lambda: iter([-1, x]), "iter-first-bad"), InvalidMapError, "iter-first"),
        (Make(lambda: iter([x, Decimal(x)]), "iter-Decimal"), TypeError, "iter-Decimal"),
        (Make(lambda: iter([x, RaisingIndex()]), "iter-raising"), IndexBoom, "iter-raising"),
        ([x, Decimal(x)], TypeError, "elem-Decimal"),
        ([x, Fraction(x)], TypeError, "elem-Fraction"),
        ([x, OnlyInt(x)], TypeError, "elem-only-__int__"),
        ((x, RaisingIndex()), IndexBoom, "elem-raising-__index__"),
        (Make(_two_d, "2-D memoryview"), TypeError, "memoryview-2d"),
        (Make(lambda: memoryview(b"").cast("B", [0, 0]), "2-D empty"), TypeError, "mv-2d-empty"),
        (array("d", [float(x)]), TypeError, "array-d"),
    ]
    if np is not None:
        cases += [
            ([x, np.float32(x)], TypeError, "elem-np.float32"),
            ([x, np.bool_(True)], TypeError, "elem-np.bool_"),
            (Make(lambda: np.array([x, x], dtype="datetime64[s]"), "dt64"), TypeError, "dt64"),
            (Make(lambda: np.array([x], dtype=np.float64), "f64 array"), TypeError, "np-f64"),
            (Make(lambda: np.full((2, 2), x, dtype=np.uint64), "2-D"), TypeError, "np-2d"),
            (Make(lambda: np.uint64(x), "np 0-d"), TypeError, "np-scalar"),
            (Make(lambda: np.array(x, dtype=np.uint64), "0-d array"), TypeError, "np-0d"),
        ]
    return cases


def forged_maps() -> list[tuple[Any, type[BaseException], str]]:
    """DMAMaps built around the constructor with ``tuple.__new__`` (class 5 and class 2)."""
    forge = tuple.__new__
    cases: list[tuple[Any, type[BaseException], str]] = [
        (forge(DMAMap, (0x9000, 0, 0xFFF, Perm.RW)), TypeError, "forged-4-fields"),
        (forge(DMAMap, ()), TypeError, "forged-0-fields"),
        (forge(DMAMap, (0x9000, 0, 0xFFF, Perm.RW, 0, 0)), TypeError, "forged-6-fields"),
        (forge(DMAMap, (Decimal(0x9000), 0, 0xFFF, Perm.RW, 0)), TypeError, "forged-Decimal"),
        (forge(DMAMap, (0x9000, OnlyInt(0), 0xFFF, Perm.RW, 0)), TypeError, "forged-only-int"),
        (forge(DMAMap, (0x9000, 0, 0xFFF, Perm.RW, Fraction(1))), TypeError, "forged-Fraction"),
        (forge(DMAMap, (0x9000, 0, 0xFFF, 3.0, 0)), TypeError, "forged-perm-float"),
        (forge(DMAMap, (0x9000, 0, RaisingIndex(), 3, 0)), IndexBoom, "forged-raising"),
        (forge(DMAMap, (0x9000, 0, -1, 3, 0)), InvalidMapError, "forged-negative"),
    ]
    if np is not None:
        cases += [
            (forge(DMAMap, (np.float32(0x9000), 0, 0xFFF, Perm.RW, 0)), TypeError, "forged-f32"),
            (forge(DMAMap, (0x9000, 0, 0xFFF, np.bool_(True), 0)), TypeError, "forged-np.bool_"),
        ]
    return cases


def hostile(kind: str, good: Any) -> list[tuple[Any, type[BaseException], str]]:
    if kind in ("u64", "opt", "perm"):
        return hostile_scalars(3 if kind == "perm" else good)
    if kind == "batch":
        return hostile_batches(good)
    if kind == "map":
        return forged_maps()
    return []


@dataclass(frozen=True)
class Method:
    """A method, its valid arguments with their kinds, and extra bad combinations."""

    cls: str
    name: str
    params: tuple[tuple[str, str, Any], ...]  # (name, kind, good value)
    extra: tuple[tuple[tuple[Any, ...], type[BaseException], str], ...] = ()


W = MAX_U64
GOOD_MAP = DMAMap(0x9000, 0x9000_0000, 0xFFF)

METHODS = [
    # ------------------------------------------------------------------ IOVATree
    Method("IOVATree", "insert", (("map", "map", GOOD_MAP),)),
    Method(
        "IOVATree",
        "find",
        (("iova", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "iova-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "IOVATree",
        "find_iova",
        (("translated_addr", "u64", 0x1000), ("size", "u64", 0), ("id", "opt", None)),
        (((W, 1, None), InvalidMapError, "xlat-wrap"), ((2, W, 0), InvalidMapError, "size-wrap")),
    ),
    Method(
        "IOVATree",
        "find_all",
        (("iova", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "iova-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "IOVATree",
        "find_iova_all",
        (("translated_addr", "u64", 0x1000), ("size", "u64", 0), ("id", "opt", None)),
        (((W, 1, None), InvalidMapError, "xlat-wrap"), ((2, W, 0), InvalidMapError, "size-wrap")),
    ),
    Method(
        "IOVATree",
        "translate",
        (("translated_addr", "u64", 0x1000_0000), ("length", "u64", 0x10), ("id", "opt", None)),
        (((W, 2, None), InvalidMapError, "xlat-wrap"), ((2, W, None), InvalidMapError, "len-wrap")),
    ),
    Method(
        "IOVATree",
        "alloc",
        (
            ("size", "u64", 0xFFF),
            ("translated_addr", "u64", 0x5000),
            ("perm", "perm", Perm.RW),
            ("id", "u64", 0),
            ("iova_begin", "u64", 0),
            ("iova_last", "u64", W),
            ("align", "u64", 1),
            ("policy", "policy", "first"),
        ),
        (
            ((1, W, Perm.RW, 0, 0, W, 1, "first"), InvalidMapError, "xlat-wrap"),
            ((W, 1, Perm.RW, 0, 0, W, 1, "first"), InvalidMapError, "size-xlat-wrap"),
            ((0xFFF, 0, Perm.RW, 0, 0x2000, 0x1FFF, 1, "first"), InvalidMapError, "last<begin"),
            ((0xFFF, 0, Perm.RW, 0, 1, 0, 1, "last"), InvalidMapError, "last<begin-2"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 0, "first"), InvalidMapError, "align0"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 3, "first"), InvalidMapError, "align3"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 0x1800, "first"), InvalidMapError, "align0x1800"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 1, "middle"), InvalidMapError, "policy-middle"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 1, ""), InvalidMapError, "policy-empty"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 1, "FIRST"), InvalidMapError, "policy-FIRST"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 1, None), TypeError, "policy-None"),
            ((0xFFF, 0, Perm.RW, 0, 0, W, 1, 0), TypeError, "policy-int"),
        ),
    ),
    Method(
        "IOVATree",
        "remove",
        (("iova", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "iova-wrap"), ((0x1000, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "IOVATree",
        "to_translated_many",
        (("iovas", "batch", [0x1000]), ("missing", "opt", None)),
    ),
    Method(
        "IOVATree",
        "to_iova_many",
        (("translated_addrs", "batch", [0x1000_0000]), ("id", "opt", None), ("missing", "opt", 0)),
    ),
    # ------------------------------------------------------------------ GPATree
    Method("GPATree", "insert", (("map", "map", GOOD_MAP),)),
    Method(
        "GPATree",
        "find",
        (("translated_addr", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "xlat-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "GPATree",
        "find_all",
        (("translated_addr", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "xlat-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "GPATree",
        "remove",
        (("translated_addr", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "xlat-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "GPATree",
        "to_iova_many",
        (("translated_addrs", "batch", [0x1000]), ("missing", "opt", None)),
    ),
    # ------------------------------------------------------------------ VhostIOVATree
    Method(
        "VhostIOVATree",
        "map_alloc",
        (("size", "u64", 0xFFF), ("hva", "u64", 0x7000_0000), ("perm", "perm", Perm.RW)),
        (((0x100, W - 0x10, Perm.RW), InvalidMapError, "hva-wrap"),),
    ),
    Method(
        "VhostIOVATree",
        "map_alloc_gpa",
        (("size", "u64", 0xFFF), ("gpa", "u64", 0x4000_0000), ("perm", "perm", Perm.RW)),
        (((0x100, W - 0x10, Perm.RW), InvalidMapError, "gpa-wrap"),),
    ),
    Method(
        "VhostIOVATree",
        "find_iova",
        (("hva", "u64", 0x7000_0000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "hva-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "VhostIOVATree",
        "find_gpa",
        (("gpa", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "gpa-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "VhostIOVATree",
        "remove",
        (("iova", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "iova-wrap"), ((0x1000, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "VhostIOVATree",
        "remove_gpa",
        (("gpa", "u64", 0x1000), ("size", "u64", 0)),
        (((W, 1), InvalidMapError, "gpa-wrap"), ((1, W), InvalidMapError, "size-wrap")),
    ),
    Method(
        "VhostIOVATree",
        "translate",
        (("hva", "u64", 0x7000_0000), ("length", "u64", 0x10), ("gpa", "opt", None)),
        (
            ((W, 2, None), InvalidMapError, "hva-wrap"),
            ((2, W, None), InvalidMapError, "len-wrap"),
            ((0x7000_0000, 2, W), InvalidMapError, "gpa-wrap"),
        ),
    ),
    Method(
        "VhostIOVATree",
        "to_iova_many",
        (("hvas", "batch", [0x7000_0000]), ("missing", "opt", None)),
    ),
    Method(
        "VhostIOVATree",
        "gpa_to_iova_many",
        (("gpas", "batch", [0x1000]), ("missing", "opt", None)),
    ),
]

#: Methods without arguments; checked on closed objects only.
NULLARY = {
    "IOVATree": ("__len__", "__iter__", "maps", "clear", "check", "__enter__"),
    "GPATree": ("__len__", "__iter__", "maps", "clear", "check", "__enter__"),
    "VhostIOVATree": (
        "__len__",
        "host_maps",
        "gpa_maps",
        "allocated",
        "clear",
        "check",
        "__enter__",
    ),
}

POLICY_BAD: list[tuple[Any, type[BaseException], str]] = []  # covered by ``extra``


def _bad_cases() -> Iterator[Any]:
    for m in METHODS:
        good = tuple(value for _, _, value in m.params)
        for pos, (pname, kind, _) in enumerate(m.params):
            for value, error, label in KINDS.get(kind, POLICY_BAD) + hostile(kind, good[pos]):
                args = good[:pos] + (value,) + good[pos + 1 :]
                yield pytest.param(
                    m.cls, m.name, args, error, id=f"{m.cls}.{m.name}-{pname}-{label}"
                )
        for args, error, label in m.extra:
            yield pytest.param(m.cls, m.name, args, error, id=f"{m.cls}.{m.name}-{label}")


def _good_calls() -> Iterator[Any]:
    for m in METHODS:
        good = tuple(value for _, _, value in m.params)
        yield pytest.param(m.cls, m.name, good, id=f"{m.cls}.{m.name}")
    for cls, names in NULLARY.items():
        for name in names:
            yield pytest.param(cls, name, (), id=f"{cls}.{name}")


def _closed_bad_calls() -> Iterator[Any]:
    """Each method with its first bad argument: on a closed object ``ValueError`` wins."""
    for m in METHODS:
        good = tuple(value for _, _, value in m.params)
        _, kind, _ = m.params[0]
        value = KINDS[kind][0][0]
        yield pytest.param(m.cls, m.name, (value,) + good[1:], id=f"{m.cls}.{m.name}")


# ------------------------------------------------------------------------ populated objects


def make(backend: Any, cls: str) -> Any:
    """A populated object of class ``cls`` from ``backend``."""
    if cls == "IOVATree":
        t = backend.IOVATree()
        t.insert(DMAMap(0x1000, 0x1000_0000, 0xFFF, Perm.RO, 1))
        t.insert(DMAMap(0x3000, 0x1000_0000, 0x1FFF, Perm.RW, 2))
        t.insert(DMAMap(0x8000, 0x2000_0000, 0x0, Perm.WO, 0))
        return t
    if cls == "GPATree":
        t = backend.GPATree()
        t.insert(DMAMap(0x1000, 0x0, 0x9FFFF, Perm.RW, 0x0))
        t.insert(DMAMap(0xA1000, 0x100000, 0xFFFFF, Perm.RW, 0x100000))
        return t
    v = backend.VhostIOVATree(0, 0xFFFF_FFFF)
    v.map_alloc_gpa(0x9FFFF, 0x0)
    v.map_alloc_gpa(0xFFFF, 0x100000, Perm.RO)
    v.map_alloc(0x3FFF, 0x7000_0000)
    v.map_alloc(0xFFF, 0x7100_0000, Perm.WO)
    return v


def state(obj: Any) -> Any:
    """Everything observable about ``obj``'s contents."""
    if hasattr(obj, "host_maps"):
        return (obj.host_maps(), obj.gpa_maps(), obj.allocated(), len(obj))
    return (obj.maps(), list(obj), len(obj))


# ------------------------------------------------------------------------ tests


@pytest.mark.parametrize("cls, name, args, error", list(_bad_cases()))
def test_bad_argument(backend, cls, name, args, error):
    obj = make(backend, cls)
    before = state(obj)
    with pytest.raises(error):
        getattr(obj, name)(*built(args))
    assert state(obj) == before
    obj.check()


def _index_cases() -> Iterator[Any]:
    """Each scalar argument of each method replaced by an integer that is not an ``int``."""
    for m in METHODS:
        good = tuple(value for _, _, value in m.params)
        for pos, (pname, kind, value) in enumerate(m.params):
            if kind not in ("u64", "opt", "perm") or value is None:
                continue
            raw = int(value)
            kinds: list[tuple[Any, str]] = [(Index(raw), "__index__")]
            if raw in (0, 1):
                kinds.append((bool(raw), "bool"))
            if np is not None:
                kinds.append((np.uint64(raw), "np.uint64"))
            for other, label in kinds:
                args = good[:pos] + (other,) + good[pos + 1 :]
                label = f"{m.cls}.{m.name}-{pname}-{label}"
                yield pytest.param(m.cls, m.name, good, args, id=label)


@pytest.mark.parametrize("cls, name, good, args", list(_index_cases()))
def test_integer_types_are_taken_as_their_int(backend, cls, name, good, args):
    """``__index__`` (NumPy integers, a user's own type; ``True`` is 1) is what makes an int:
    the call answers and changes the tree exactly as with the plain int."""
    plain, other = make(backend, cls), make(backend, cls)
    expected = outcome(lambda: getattr(plain, name)(*good))
    got = outcome(lambda: getattr(other, name)(*args))
    assert got == expected
    assert state(other) == state(plain)


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # compared by type and text
        return (type(exc), str(exc))


class Closer:
    """An integer whose ``__index__`` closes the object it is passed to (class 6)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.victim: Any = None

    def __index__(self) -> int:
        self.victim.close()
        return self.value


def _with_closer(kind: str, value: Any, closer: Closer) -> Any:
    if kind == "batch":
        return [*value, closer]
    if kind == "map":
        return tuple.__new__(DMAMap, (value[0], value[1], closer, value[3], value[4]))
    return closer


def _closer_cases() -> Iterator[Any]:
    for m in METHODS:
        for pos, (pname, kind, value) in enumerate(m.params):
            if kind == "policy":
                continue
            # The int the closer stands for: the good value (a map's size field, a batch's
            # first address; an id for None), so only the closing makes the call fail.
            raw = {"perm": 3, "batch": value[0] if kind == "batch" else 0}.get(kind, value)
            if kind == "map":
                raw = value[2]
            elif raw is None:
                raw = 1
            yield pytest.param(m.cls, m.name, pos, kind, raw, id=f"{m.cls}.{m.name}-{pname}")


@pytest.mark.parametrize("cls, name, pos, kind, raw", list(_closer_cases()))
def test_index_that_closes_the_tree(backend, cls, name, pos, kind, raw):
    """The call sees the tree closed, as any call on a closed tree: ``ValueError``, and no
    answer or map from a closed tree."""
    m = next(m for m in METHODS if m.cls == cls and m.name == name)
    obj = make(backend, cls)
    closer = Closer(raw)
    closer.victim = obj
    args = [value for _, _, value in m.params]
    args[pos] = _with_closer(kind, args[pos], closer)
    with pytest.raises(ValueError) as info:
        getattr(obj, name)(*args)
    assert not isinstance(info.value, IOVAError)
    assert obj.closed is True


def _one_shot_cases() -> Iterator[Any]:
    for m in METHODS:
        if m.params[0][1] == "batch":
            yield pytest.param(m.cls, m.name, id=f"{m.cls}.{m.name}")


@pytest.mark.parametrize("cls, name", list(_one_shot_cases()))
@pytest.mark.parametrize(
    "container",
    [
        pytest.param(lambda xs: (x for x in xs), id="generator"),
        pytest.param(iter, id="iterator"),
        pytest.param(lambda xs: dict.fromkeys(xs).keys(), id="dict-keys"),
        pytest.param(lambda xs: map(int, xs), id="map"),
    ],
)
def test_one_shot_iterators_line_up(backend, cls, name, container):
    """A one-shot iterator gives one answer per address, as a list does (class 1)."""
    obj = make(backend, cls)
    addresses = [a for addrs in (obj.host_maps() if cls == "VhostIOVATree" else obj.maps())
                 for a in (addrs.iova, addrs.translated_addr)]
    addresses = list(dict.fromkeys(addresses + [0x5, 0x1234_5678]))
    expected = getattr(obj, name)(addresses, missing=0xDEAD)
    assert len(expected) == len(addresses)
    assert getattr(obj, name)(container(addresses), missing=0xDEAD) == expected


@pytest.mark.parametrize("cls, name, args", list(_good_calls()))
def test_closed_raises_value_error(backend, cls, name, args):
    obj = make(backend, cls)
    obj.close()
    with pytest.raises(ValueError) as info:
        getattr(obj, name)(*args)
    assert not isinstance(info.value, IOVAError)
    assert obj.closed is True
    obj.close()  # still idempotent
    assert obj.closed is True


@pytest.mark.parametrize("cls, name, args", list(_closed_bad_calls()))
def test_closed_check_comes_first(backend, cls, name, args):
    obj = make(backend, cls)
    obj.close()
    with pytest.raises(ValueError) as info:
        getattr(obj, name)(*args)
    assert not isinstance(info.value, IOVAError)


@pytest.mark.parametrize("cls, name, args", [p for p in _good_calls() if p.values[2]])
def test_good_arguments_are_accepted(backend, cls, name, args):
    """The table's good values really are good: the bad-value tests change one at a time."""
    obj = make(backend, cls)
    getattr(obj, name)(*args)
    obj.check()


VHOST_CTOR_BAD = (
    [
        pytest.param((value, 0xFFFF), error, id=f"iova_first-{label}")
        for value, error, label in U64_BAD
    ]
    + [pytest.param((0, value), error, id=f"iova_last-{label}") for value, error, label in U64_BAD]
    + [
        pytest.param((0, 0xFFF), InvalidMapError, id="last-below-4096"),
        pytest.param((0x5000, 0x4FFF), InvalidMapError, id="last-below-first"),
    ]
)


@pytest.mark.parametrize("args, error", VHOST_CTOR_BAD)
def test_vhost_constructor(backend, args, error):
    with pytest.raises(error):
        backend.VhostIOVATree(*args)


DMAMAP_PARAMS = (
    ("iova", "u64", 0x1000),
    ("translated_addr", "u64", 0x2000),
    ("size", "u64", 0xFFF),
    ("perm", "perm", Perm.RW),
    ("id", "u64", 0),
)


def _dmamap_cases() -> Iterator[Any]:
    good = tuple(value for _, _, value in DMAMAP_PARAMS)
    for pos, (pname, kind, _) in enumerate(DMAMAP_PARAMS):
        for value, error, label in KINDS[kind]:
            args = good[:pos] + (value,) + good[pos + 1 :]
            yield pytest.param(args, error, id=f"{pname}-{label}")
    yield pytest.param((W, 0, 1), InvalidMapError, id="iova-wrap")
    yield pytest.param((0, W, 1), InvalidMapError, id="xlat-wrap")
    yield pytest.param((1, 0, W), InvalidMapError, id="size-iova-wrap")
    yield pytest.param((0, 1, W), InvalidMapError, id="size-xlat-wrap")


@pytest.mark.parametrize("args, error", list(_dmamap_cases()))
def test_dmamap_constructor(args, error):
    with pytest.raises(error):
        DMAMap(*args)
    DMAMap(*(value for _, _, value in DMAMAP_PARAMS))  # the good values are good


def _closer_then_bad_batch_cases() -> Iterator[Any]:
    for m in METHODS:
        if m.params[0][1] != "batch":
            continue
        for pos, (pname, kind, _) in enumerate(m.params):
            if kind == "opt":
                yield pytest.param(m.cls, m.name, pos, id=f"{m.cls}.{m.name}-{pname}")


@pytest.mark.parametrize("bad_batch", [[-1], "abc", [1.5]], ids=["negative", "str", "float"])
@pytest.mark.parametrize("cls, name, pos", list(_closer_then_bad_batch_cases()))
def test_closer_before_a_bad_batch(backend, cls, name, pos, bad_batch):
    """A batch form's scalar argument whose ``__index__`` closes the tree, with a bad batch as
    well: the closing is seen first, as native sees it (``ValueError``, not the batch's
    ``TypeError`` or ``InvalidMapError``), so both backends raise the same class."""
    m = next(m for m in METHODS if m.cls == cls and m.name == name)
    obj = make(backend, cls)
    closer = Closer(1)
    closer.victim = obj
    args = [value for _, _, value in m.params]
    args[0] = bad_batch
    args[pos] = closer
    with pytest.raises(ValueError) as info:
        getattr(obj, name)(*args)
    assert not isinstance(info.value, IOVAError)
    assert obj.closed is True
