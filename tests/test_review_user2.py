# SPDX-License-Identifier: GPL-2.0-or-later
"""A second review playing the package's users (SPEC read alone, probes written before the code
was read), on the differential backend's reproducers: each test failed before its fix.

SPEC section 7: the reproducer is Python source defining ``reproduce(tree)`` that makes the
sides disagree.  Each test plants a backend that disagrees, catches the ``DivergenceError`` and
runs its reproducer on a fresh tree of each side: the outcomes must differ again.
"""

from __future__ import annotations

import math
from array import array
from decimal import Decimal
from typing import Any

import pytest

from iova_native import DivergenceError, DMAMap, differential, native, reference
from iova_native.differential import same_outcome
from iova_native.strategies import OnlyInt


def _diverge(call: Any) -> DivergenceError:
    with pytest.raises(DivergenceError) as info:
        call()
    return info.value


def _reproduces(err: DivergenceError, left: Any, right: Any) -> bool:
    """Whether ``err.reproducer``, run on a fresh ``left`` and a fresh ``right``, disagrees."""
    namespace: dict[str, Any] = {}
    exec(err.reproducer, namespace)
    return not same_outcome(namespace["reproduce"](left), namespace["reproduce"](right))


# --------------------------------------------------------------------------- one-shot iterators


class _NoRollbackUpdate(reference.IOVATree):
    """A planted disagreement: ``update`` keeps what it inserted when the iterable raises."""

    def update(self, maps: Any) -> None:
        for m in maps:
            self.insert(m)


def _raising_maps() -> Any:
    yield DMAMap(0x1000, 0, 0xFFF)
    raise RuntimeError("the caller's iterator broke")


def test_reproducer_raises_where_the_callers_iterator_raised() -> None:
    """The one-shot iterator was written as ``iter([...])`` without its exception: the
    reproducer's update() succeeded on both sides and the disagreement was gone."""
    tree = differential.IOVATree(right=_NoRollbackUpdate)
    with pytest.raises(RuntimeError):
        tree.update(_raising_maps())
    err = _diverge(lambda: len(tree))
    assert "RuntimeError(" in err.reproducer
    assert _reproduces(err, native.IOVATree(), _NoRollbackUpdate())


# --------------------------------------------------------------------------- buffer layouts


class _RawBuffer(reference.IOVATree):
    """A planted disagreement: reads a buffer's memory as contiguous native uint64 (ignoring
    its byte order and its strides), as a careless C binding would."""

    def to_translated_many(self, iovas: Any, missing: Any = None) -> Any:
        try:
            view = memoryview(iovas)
        except TypeError:
            return super().to_translated_many(iovas, missing)
        size, count = view.itemsize, len(view)
        if view.contiguous:
            raw = view.tobytes()
        else:  # from the first item on, as if contiguous
            np = pytest.importorskip("numpy")
            arr = np.asarray(view)
            start = arr[-1:] if view.strides[0] < 0 else arr[:1]
            raw = np.lib.stride_tricks.as_strided(start, (count,), (size,)).tobytes()
        if size != 8:
            return super().to_translated_many(iovas, missing)
        return super().to_translated_many(array("Q", raw), missing)


def _layouts() -> list[Any]:
    np = pytest.importorskip("numpy")
    return [
        pytest.param(lambda: np.array([0x10, 0x20], dtype=">u8"), id="numpy-big-endian"),
        pytest.param(lambda: np.arange(0x10, 0x16, dtype=np.uint64)[::2], id="numpy-strided"),
        pytest.param(lambda: np.arange(0x10, 0x16, dtype=np.uint64)[::-2], id="numpy-backwards"),
        pytest.param(lambda: memoryview(array("Q", range(0x10, 0x16)))[::2], id="view-strided"),
        pytest.param(lambda: memoryview(array("Q", range(0x10, 0x16)))[::-3], id="view-back"),
    ]


@pytest.mark.parametrize("make", _layouts())
def test_reproducer_keeps_a_buffers_layout(make: Any) -> None:
    """A NumPy array was written with ``dtype=numpy.uint64`` whatever its byte order, and a
    strided array or view was logged and written contiguous: the shrinker's replays did not
    diverge ("could not reproduce on a fresh pair"), nor did the reproducer."""
    maps = [DMAMap(0, 0x5000, 0xFFFF)]
    tree = differential.IOVATree(maps, right=_RawBuffer)
    err = _diverge(lambda: tree.to_translated_many(make(), missing=0))
    assert "could not reproduce" not in str(err)
    assert _reproduces(err, native.IOVATree(), _RawBuffer())


class _RefusesWritable(reference.IOVATree):
    """A planted disagreement: refuses a writable buffer (as a binding asking for the wrong
    buffer flags would refuse the other kind)."""

    def to_iova_many(self, addrs: Any, id: Any = None, missing: Any = None) -> Any:
        if isinstance(addrs, memoryview) and not addrs.readonly:
            raise TypeError("writable buffer")
        return super().to_iova_many(addrs, id, missing)


class _RefusesReadOnly(reference.IOVATree):
    def to_iova_many(self, addrs: Any, id: Any = None, missing: Any = None) -> Any:
        if isinstance(addrs, memoryview) and addrs.readonly:
            raise TypeError("read-only buffer")
        return super().to_iova_many(addrs, id, missing)


@pytest.mark.parametrize("readonly", [False, True], ids=["writable", "read-only"])
def test_reproducer_keeps_a_views_read_only_flag(readonly: bool) -> None:
    """The log kept every memoryview as a read-only copy (of bytes), and the reproducer wrote a
    writable one."""
    planted = _RefusesReadOnly if readonly else _RefusesWritable
    view = memoryview(array("Q", [0x5000, 0x5001]))
    tree = differential.IOVATree([DMAMap(0, 0x5000, 0xFFF)], right=planted)
    err = _diverge(lambda: tree.to_iova_many(view.toreadonly() if readonly else view))
    assert "could not reproduce" not in str(err)
    assert _reproduces(err, native.IOVATree(), planted())


def test_big_endian_view_batch_is_cut() -> None:
    """A long batch in a memoryview of another byte order was not cut (its elements could not
    be listed): the reproducer held every address."""
    np = pytest.importorskip("numpy")

    class LastFlipped(reference.IOVATree):
        def to_translated_many(self, values: Any, missing: Any = None) -> Any:
            answers = super().to_translated_many(values, missing)
            answers[-1] ^= 1
            return answers

    tree = differential.IOVATree([DMAMap(0, 0x10000, 0xFFFF)], left=LastFlipped)
    err = _diverge(lambda: tree.to_translated_many(memoryview(np.arange(400, dtype=">u8"))))
    assert "cut from 400 to" in str(err)
    assert _reproduces(err, LastFlipped(), reference.IOVATree())


# --------------------------------------------------------------------------- values to import


class _IntConverting(reference.IOVATree):
    """The scalar bug of issue 15: anything with ``__int__`` taken as an int."""

    def remove(self, iova: Any, size: Any = 0) -> int:
        return super().remove(int(iova), int(size))


@pytest.mark.parametrize(
    "value",
    [Decimal("4096.7"), OnlyInt(0x1000)],
    ids=["Decimal", "strategies.OnlyInt"],
)
def test_reproducer_imports_the_classes_of_its_values(value: Any) -> None:
    """``Decimal('4096.7')`` and ``OnlyInt(0x1000)`` (one of the package's own bad values) were
    written without their imports: the reproducer raised NameError on both sides."""
    tree = differential.IOVATree([DMAMap(0x1000, 0x5000, 0xFFF)], left=_IntConverting)
    err = _diverge(lambda: tree.remove(value))
    assert _reproduces(err, _IntConverting(), reference.IOVATree())


class _Normalising(reference.IOVATree):
    """A planted disagreement: rebuilds every map from its first five fields, so a forged map
    of six fields is taken."""

    def insert(self, map: Any) -> None:
        super().insert(DMAMap(*tuple(tuple.__iter__(map))[:5]))


def test_reproducer_passes_a_forged_map_as_forged() -> None:
    """A ``DMAMap`` forged with ``tuple.__new__`` (as ``strategies.bad_values('map')`` makes)
    was written as an honest constructor call: both sides took it."""
    forged = tuple.__new__(DMAMap, (0x1000, 0x1000, 0xFFF, 3, 0, 0))
    tree = differential.IOVATree(right=_Normalising)
    err = _diverge(lambda: tree.insert(forged))
    assert "tuple.__new__(DMAMap" in err.reproducer
    assert _reproduces(err, native.IOVATree(), _Normalising())


class _IntVhost(reference.VhostIOVATree):
    def __init__(self, iova_first: Any, iova_last: Any, page_size: Any = None) -> None:
        super().__init__(int(iova_first), int(iova_last), page_size)


def test_constructor_reproducer_has_its_imports() -> None:
    err = _diverge(lambda: differential.VhostIOVATree(Decimal(0), 0xFFFFF, right=_IntVhost))
    namespace: dict[str, Any] = {}
    exec(err.reproducer, namespace)
    left = namespace["reproduce"](native.VhostIOVATree(0, 0xFFFFF))
    right = namespace["reproduce"](_IntVhost(0, 0xFFFFF))
    assert isinstance(left, TypeError) and isinstance(right, _IntVhost)


# --------------------------------------------------------------------------- constructor errors


@pytest.mark.parametrize("bad", ["10", None, math.nan, -1.0])
def test_bad_shrink_timeout_is_refused_when_the_tree_is_made(bad: Any) -> None:
    """``shrink_timeout="10"`` was taken, and the first divergence raised TypeError in place of
    the DivergenceError; NaN never timed out."""
    if bad is None:
        differential.IOVATree(shrink_timeout=bad)  # None: the default
        return
    with pytest.raises(TypeError if isinstance(bad, str) else ValueError):
        differential.IOVATree(shrink_timeout=bad)
    with pytest.raises(TypeError if isinstance(bad, str) else ValueError):
        differential.VhostIOVATree(0, 0xFFFFF, shrink_timeout=bad)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_module_or_an_instance_as_a_side_is_a_type_error(side: str) -> None:
    """``left=native`` (the module) was reported as the two sides disagreeing on
    ``IOVATree()``."""
    for wrong in (native, native.IOVATree()):
        with pytest.raises(TypeError, match=f"{side}="):
            differential.IOVATree(**{side: wrong})
        with pytest.raises(TypeError, match=f"{side}="):
            differential.GPATree(**{side: wrong})


# --------------------------------------------------------------------------- comparing results


class _FloatBatch(reference.IOVATree):
    """A planted disagreement: batch answers as floats (which lose addresses above 2**53)."""

    def to_translated_many(self, iovas: Any, missing: Any = None) -> Any:
        return array("d", super().to_translated_many(iovas, missing))


class _SignedBatch(reference.IOVATree):
    """A planted disagreement: batch answers as signed integers (no room for 2**64-1)."""

    def to_iova_many(self, addrs: Any, id: Any = None, missing: Any = None) -> Any:
        return array("q", super().to_iova_many(addrs, id, missing))


def test_a_batch_answer_of_another_element_type_diverges() -> None:
    """SPEC section 4: the batch forms return ``array('Q')``.  Answers were compared as lists of
    ``int(x)``: a backend answering ``array('d')`` or ``array('q')`` agreed with the reference
    on every small address, and the differential returned its floats to the caller."""
    maps = [DMAMap(0, 0x1000, 0xFFF)]
    tree = differential.IOVATree(maps, left=_FloatBatch)
    err = _diverge(lambda: tree.to_translated_many([1, 2]))
    assert _reproduces(err, _FloatBatch(), reference.IOVATree())
    tree = differential.IOVATree(maps, left=_SignedBatch)
    _diverge(lambda: tree.to_iova_many([0x1000]))
    assert same_outcome(array("Q", [1, 2]), array("Q", [1, 2]))
    assert not same_outcome(array("Q", [1, 2]), array("d", [1, 2]))
    np = pytest.importorskip("numpy")
    assert same_outcome(array("Q", [1, 2]), np.array([1, 2], dtype=np.uint64))
    assert not same_outcome(array("Q", [1, 2]), np.array([1, 2], dtype=np.float64))


# --------------------------------------------------------------------------- the fewest calls


class _TwoWays(reference.IOVATree):
    """A planted disagreement with two causes: three maps of any kind, or two of id 7."""

    def find(self, iova: Any, size: Any = 0) -> Any:
        maps = self.maps()
        if len(maps) >= 3 or sum(m.id == 7 for m in maps) >= 2:
            return None
        return super().find(iova, size)


def test_reproducer_is_the_fewest_calls_of_the_log() -> None:
    """SPEC section 7: "the fewest operations".  Delta debugging kept the first half of the log
    that diverged (three plain inserts) and cut it to where no single call can go: three
    inserts, where the two inserts of id 7 later in the log suffice."""
    tree = differential.IOVATree(right=_TwoWays)
    for i in range(3):
        tree.insert(DMAMap(i * 0x1000, 0, 0xFFF))
    tree.insert(DMAMap(0x10000, 0, 0xFFF, id=7))
    tree.insert(DMAMap(0x20000, 0, 0xFFF, id=7))
    err = _diverge(lambda: tree.find(0, 0xFFFFF))
    body = err.reproducer.split("def reproduce(tree):")[1]
    inserts = [line for line in body.splitlines() if line.strip().startswith("tree.insert(")]
    assert len(inserts) == 2 and all("id=0x7" in line for line in inserts)
    assert _reproduces(err, native.IOVATree(), _TwoWays())


# --------------------------------------------------------------------------- in, VhostIOVATree


@pytest.mark.parametrize("backend", [native, reference, differential], ids=lambda m: m.__name__)
def test_vhost_in_tries_the_guest_tree_when_the_iova_is_no_int(backend: Any) -> None:
    """A map forged with a ``Decimal`` IOVA and a guest map's other fields: the reference found
    it through the GPA tree (the key there is the GPA, an int) and answered True; native gave
    up after the host tree's key check and answered False (the differential diverged)."""
    tree = backend.VhostIOVATree(0, 0xFFFFFF)
    guest = tree.map_alloc_gpa(0xFFF, 0x50000)
    host = tree.map_alloc(0xFFF, 0x90000)

    def forged(m: DMAMap, field: int, value: Any) -> DMAMap:
        fields = [value if i == field else x for i, x in enumerate(m)]
        return tuple.__new__(DMAMap, tuple(fields))  # type: ignore[no-any-return]

    assert forged(guest, 0, Decimal(guest.iova)) in tree
    assert forged(guest, 0, float(guest.iova)) in tree
    assert forged(host, 1, Decimal(host.translated_addr)) in tree
    assert forged(guest, 1, Decimal(guest.translated_addr)) not in tree  # the GPA is its key
    assert forged(host, 0, Decimal(host.iova)) not in tree  # the IOVA is its key


# --------------------------------------------------------------------------- reprs not Python


class _LastFlipped(reference.IOVATree):
    """A planted disagreement: the last answer of a batch is off by one, and ``find`` takes
    anything ``int()`` converts."""

    def to_translated_many(self, values: Any, missing: Any = None) -> Any:
        answers = super().to_translated_many(values, missing)
        answers[-1] ^= 1
        return answers

    def find(self, iova: Any, size: Any = 0) -> Any:
        return super().find(int(iova), size)


class _OldSequence:
    """A sequence by ``__getitem__`` alone, with the default repr (``<... object at 0x...>``)."""

    def __init__(self, values: list[int]) -> None:
        self.values = values

    def __getitem__(self, i: int) -> int:
        return self.values[i]


class _WithInt:
    """A number by ``__int__`` alone, with the default repr."""

    def __int__(self) -> int:
        return 0x10


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda t: t.to_translated_many(_OldSequence([1, 2, 3])), id="sequence"),
        pytest.param(lambda t: t.to_translated_many({1: 0, 2: 0}.keys()), id="dict-keys"),
        pytest.param(lambda t: t.find(_WithInt()), id="object"),
    ],
)
def test_reproducer_runs_when_an_argument_has_no_python_repr(call: Any) -> None:
    """An argument whose repr is not Python (``<... object at 0x...>``) was written as that
    repr: the reproducer raised SyntaxError when run, and ``dict_keys([...])`` NameError."""
    tree = differential.IOVATree([DMAMap(0, 0x1000, 0xFFF)], left=_LastFlipped)
    err = _diverge(lambda: call(tree))
    assert _reproduces(err, _LastFlipped(), reference.IOVATree())


class _BadRepr:
    """A number by ``__int__`` alone whose repr raises."""

    def __int__(self) -> int:
        return 0x10

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_divergence_on_an_argument_whose_repr_raises_is_reported() -> None:
    """Rendering the call raised the repr's RuntimeError in place of the DivergenceError."""
    tree = differential.IOVATree([DMAMap(0, 0x1000, 0xFFF)], left=_LastFlipped)
    err = _diverge(lambda: tree.find(_BadRepr()))
    assert _reproduces(err, _LastFlipped(), reference.IOVATree())
