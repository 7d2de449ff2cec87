# SPDX-License-Identifier: GPL-2.0-or-later
"""The differential backend (issue 11): agreement is invisible, disagreement is pinned down.

Most tests put a subclass of the reference on ``left`` with a bug planted in it, so they test the
differential machinery itself and run whether or not the C extension is built; the ones that
need the native backend skip cleanly without it.
"""

from __future__ import annotations

import ast
import importlib
import random
from array import array
from typing import Any

import pytest

from iova_native import (
    MAX_U64,
    DivergenceError,
    DMAMap,
    InvalidMapError,
    NoSpaceError,
    OverlapError,
    Perm,
    TranslationError,
    differential,
    reference,
)
from iova_native.differential import same_outcome

try:
    native: Any = importlib.import_module("iova_native.native")
except (ImportError, OSError) as exc:  # not built: those tests skip
    native = None
    NATIVE_MISSING = f"iova_native.native: {exc}"
else:
    NATIVE_MISSING = ""

needs_native = pytest.mark.skipif(native is None, reason=NATIVE_MISSING or "native is built")


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- planted bugs

#: The one map the planted ``find`` misanswers for.
TRIGGER = DMAMap(0xA000, 0x5A000, 0xFFF, Perm.RW, 0x42)


class PlantedIOVATree(reference.IOVATree):
    """The reference, except that ``find`` does not see ``TRIGGER``."""

    def find(self, iova: int, size: int = 0) -> DMAMap | None:
        found = super().find(iova, size)
        return None if found == TRIGGER else found


class WrongErrorIOVATree(reference.IOVATree):
    """Raises a plain ``ValueError`` where the API says ``OverlapError``."""

    def insert(self, map: DMAMap) -> None:
        try:
            super().insert(map)
        except OverlapError as exc:
            raise ValueError(str(exc)) from None


class WrongExistingIOVATree(reference.IOVATree):
    """``OverlapError.existing`` is the new map instead of the stored one."""

    def insert(self, map: DMAMap) -> None:
        try:
            super().insert(map)
        except OverlapError as exc:
            raise OverlapError(str(exc), existing=map) from None


class WrongAddressIOVATree(reference.IOVATree):
    """``TranslationError.address`` is the buffer's start, not the first uncovered byte."""

    def translate(self, translated_addr: int, length: int, id: int | None = None) -> list[Any]:
        try:
            return super().translate(translated_addr, length, id)
        except TranslationError as exc:
            raise TranslationError(str(exc), address=translated_addr) from None


class SilentIOVATree(reference.IOVATree):
    """Accepts a float size in ``find`` where the API says ``TypeError``."""

    def find(self, iova: int, size: int = 0) -> DMAMap | None:
        return super().find(iova, int(size) if isinstance(size, float) else size)


class OffByOneBatchIOVATree(reference.IOVATree):
    """``to_translated_many`` answers one too high for the second element."""

    def to_translated_many(self, iovas: Any, missing: int | None = None) -> array:
        out = super().to_translated_many(iovas, missing)
        if len(out) > 1:
            out[1] += 1
        return out


class LeakyVhostIOVATree(reference.VhostIOVATree):
    """QEMU's behaviour (docs/contract.md, deviation 5): a GPA overlap leaks the IOVA allocation."""

    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm = Perm.RW) -> DMAMap:
        existing = self._gpa.find(gpa, size)
        if existing is None:
            return super().map_alloc_gpa(size, gpa, perm)
        self._allocate(size, perm)  # taken, and never given back
        raise OverlapError("GPA range taken", existing=existing)


class LaxVhostIOVATree(reference.VhostIOVATree):
    """Accepts ``iova_last`` below the first usable IOVA (the reference refuses it)."""

    def __init__(self, iova_first: int, iova_last: int) -> None:
        super().__init__(iova_first, max(iova_last, 0x1000))


class GPAFindLowIOVATree(reference.GPATree):
    """``find`` answers the highest overlapping map instead of the lowest."""

    def find(self, translated_addr: int, size: int = 0) -> DMAMap | None:
        hits = self._store.overlapping(translated_addr, translated_addr + size)
        super().find(translated_addr, size)  # the argument checks
        return hits[-1] if hits else None


class Recorder:
    """Counts the operations a reproducer applies, forwarding them to a real tree."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self.tree, name)

    def __len__(self) -> int:
        self.calls += 1
        return len(self.tree)

    def __iter__(self) -> Any:
        self.calls += 1
        return iter(self.tree)


def run_reproducer(source: str, *trees: Any) -> list[Any]:
    """Compile and exec ``source``; return ``reproduce(tree)`` for each tree."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<reproducer>", "exec"), namespace)
    return [namespace["reproduce"](tree) for tree in trees]


def count_operations(source: str, tree: Any) -> int:
    recorder = Recorder(tree)
    run_reproducer(source, recorder)
    return recorder.calls


# --------------------------------------------------------------------------- (a) planted find


def random_operations(tree: Any, rng: random.Random, count: int) -> None:
    """``count`` random calls that never touch the IOVA page of ``TRIGGER`` (0xa000) with a
    map, so the trigger's insert succeeds; look-ups do reach it."""
    slots = [s for s in range(32) if s != 0xA]
    for _ in range(count):
        kind = rng.randrange(8)
        slot = rng.choice(slots) * 0x1000
        any_page = rng.randrange(32) * 0x1000 + rng.choice((0, 0x800, 0xFFF))
        hva = rng.randrange(16) * 0x1000
        try:
            if kind == 0:
                tree.insert(DMAMap(slot, hva, rng.choice((0, 0x7FF, 0xFFF)), Perm.RW, 0))
            elif kind == 1:
                # Finds stay away from page 0xa: the planted answer shows only where the test
                # decides, at the end.
                tree.find(slot + rng.choice((0, 0x800)), rng.choice((0, 0x7FF)))
            elif kind == 2:
                tree.find_iova(hva, rng.choice((0, 0xFFF)), rng.choice((None, 0)))
            elif kind == 3:
                tree.translate(hva, rng.choice((1, 0x1000, 0x1800)))
            elif kind == 4:
                tree.remove(slot, rng.choice((0, 0x7FF)))
            elif kind == 5:
                tree.alloc(0xFFF, hva, iova_begin=0x20000, align=0x1000, policy="last")
            elif kind == 6:
                tree.to_iova_many([hva, hva + 0x10], missing=0)
            else:
                tree.to_translated_many(array("Q", [any_page]), missing=MAX_U64)
        except (InvalidMapError, OverlapError, NoSpaceError, TranslationError):
            pass


def test_planted_find_is_pinned_to_a_tiny_reproducer() -> None:
    tree = differential.IOVATree(left=PlantedIOVATree, right=reference.IOVATree)
    rng = random.Random(0x1F0A)
    random_operations(tree, rng, 250)
    tree.insert(TRIGGER)  # buried: hundreds of calls before it and after it
    random_operations(tree, rng, 250)
    with pytest.raises(DivergenceError) as caught:
        tree.find(0xA800, 0x10)
    err = caught.value
    assert len(tree.log) > 500

    assert err.operation == "tree.find(0xa800, 0x10)"
    assert err.left is None
    assert err.right == TRIGGER
    message = str(err)
    assert "tree.find(0xa800, 0x10)" in message
    constructor = (
        f"differential.IOVATree(left={qualified(PlantedIOVATree)}, "
        f"right={qualified(reference.IOVATree)})"
    )
    assert constructor in message
    assert err.reproducer in message
    assert "stopped early" not in message

    compile(err.reproducer, "<reproducer>", "exec")
    assert "def reproduce(tree):" in err.reproducer
    assert count_operations(err.reproducer, reference.IOVATree()) <= 3
    planted, ref = run_reproducer(err.reproducer, PlantedIOVATree(), reference.IOVATree())
    assert not same_outcome(planted, ref)
    assert planted is None and ref == TRIGGER
    # Literal hex and a DMAMap repr that is valid source.
    assert repr(TRIGGER) in err.reproducer
    assert "0xa800" in err.reproducer


def test_shrinking_is_bounded_in_time() -> None:
    tree = differential.IOVATree(left=PlantedIOVATree, right=reference.IOVATree, shrink_timeout=0.0)
    random_operations(tree, random.Random(7), 50)
    tree.insert(TRIGGER)
    with pytest.raises(DivergenceError) as caught:
        tree.find(0xA000)
    assert "stopped early" in str(caught.value)
    # Not shrunk, but still a working reproducer of the same disagreement.
    planted, ref = run_reproducer(caught.value.reproducer, PlantedIOVATree(), reference.IOVATree())
    assert planted is None and ref == TRIGGER


def test_module_level_shrink_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(differential, "SHRINK_TIMEOUT", 0.0)
    tree = differential.IOVATree(left=PlantedIOVATree, right=reference.IOVATree)
    tree.insert(TRIGGER)
    with pytest.raises(DivergenceError, match="stopped early"):
        tree.find(0xA000)


# --------------------------------------------------------------------------- (b) agreement


@pytest.fixture(
    params=[
        pytest.param(lambda: reference.IOVATree, id="reference"),
        pytest.param(lambda: native.IOVATree, id="native", marks=needs_native),
    ]
)
def agreeing(request: pytest.FixtureRequest) -> differential.IOVATree:
    """A differential IOVATree whose sides should agree on everything."""
    return differential.IOVATree(left=request.param(), right=reference.IOVATree)


def test_agreeing_calls_return_values(agreeing: differential.IOVATree) -> None:
    tree = agreeing
    a = DMAMap(0x1000, 0x10000, 0xFFF, Perm.RW, 1)
    b = DMAMap(0x2000, 0x10000, 0xFFF, Perm.RO, 2)  # aliases a's translated range
    assert tree.insert(a) is None
    tree.insert(b)
    assert tree.find(0x1800) == a
    assert tree.find_iova(0x10000) == a
    assert tree.find_iova(0x10000, id=2) == b
    assert tree.translate(0x10000, 0x1000, id=2) == [(0x2000, 0x1000)]
    placed = tree.alloc(0xFFF, 0x30000, align=0x1000, policy="last")
    assert placed.last == MAX_U64
    assert list(tree.to_translated_many(array("Q", [0x1000, 0x2004]))) == [0x10000, 0x10004]
    assert list(tree.to_iova_many([0x10000, 0x99999], id=2, missing=0)) == [0x2000, 0]
    assert len(tree) == 3
    assert list(tree) == [a, b, placed] == tree.maps()
    assert tree.remove(0x1000, 0x1000) == 2
    tree.check()
    assert not tree.closed
    # The sides are reachable and hold the same maps.
    assert tree.left.maps() == tree.right.maps() == [placed]
    assert [str(op) for op in tree.log][:3] == [
        f"tree.insert({a!r})",
        f"tree.insert({b!r})",
        "tree.find(0x1800)",
    ]


def test_shared_errors_are_raised_as_usual(agreeing: differential.IOVATree) -> None:
    tree = agreeing
    a = DMAMap(0x1000, 0x10000, 0xFFF)
    tree.insert(a)
    with pytest.raises(OverlapError) as overlap:
        tree.insert(DMAMap(0x1800, 0, 0xFFF))
    assert overlap.value.existing == a
    with pytest.raises(TranslationError) as hole:
        tree.translate(0x10800, 0x1000)
    assert hole.value.address == 0x11000
    with pytest.raises(TypeError):
        tree.find(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidMapError):
        tree.find(MAX_U64, 1)
    with pytest.raises(InvalidMapError):
        tree.alloc(0xFFF, align=3)
    with pytest.raises(NoSpaceError):
        tree.alloc(0xFFF, iova_begin=0x1000, iova_last=0x1FFF)
    assert tree.maps() == [a]  # failed calls changed nothing
    tree.check()
    with tree:
        pass
    assert tree.closed
    with pytest.raises(ValueError):
        tree.find(0)
    with pytest.raises(ValueError):
        len(tree)
    tree.close()  # again: allowed


# --------------------------------------------------------------------------- (c) disagreement


@pytest.mark.parametrize(
    ("left", "provoke", "operation"),
    [
        pytest.param(
            WrongErrorIOVATree,
            lambda t: (t.insert(DMAMap(0, 0, 0xFFF)), t.insert(DMAMap(0x800, 0, 0xFFF))),
            "tree.insert(DMAMap(iova=0x800, translated_addr=0x0, size=0xfff, perm=Perm.RW, "
            "id=0x0))",
            id="wrong-error-type",
        ),
        pytest.param(
            WrongExistingIOVATree,
            lambda t: (t.insert(DMAMap(0, 0, 0xFFF)), t.insert(DMAMap(0x800, 0, 0xFFF))),
            "tree.insert(DMAMap(iova=0x800, translated_addr=0x0, size=0xfff, perm=Perm.RW, "
            "id=0x0))",
            id="wrong-existing",
        ),
        pytest.param(
            WrongAddressIOVATree,
            lambda t: (t.insert(DMAMap(0, 0, 0xFFF)), t.translate(0x800, 0x1000)),
            "tree.translate(0x800, 0x1000)",
            id="wrong-address",
        ),
        pytest.param(
            SilentIOVATree,
            lambda t: t.find(0, 1.0),
            "tree.find(0x0, 1.0)",
            id="only-one-side-raises",
        ),
        pytest.param(
            OffByOneBatchIOVATree,
            lambda t: (
                t.insert(DMAMap(0, 0x5000, 0xFFF)),
                t.to_translated_many(array("Q", [0x10, 0x20])),
            ),
            "tree.to_translated_many(array('Q', [0x10, 0x20]))",
            id="batch-array",
        ),
    ],
)
def test_disagreement_diverges(left: type, provoke: Any, operation: str) -> None:
    tree = differential.IOVATree(left=left, right=reference.IOVATree)
    with pytest.raises(DivergenceError) as caught:
        provoke(tree)
    err = caught.value
    assert err.operation == operation
    assert not same_outcome(err.left, err.right)
    mine, ref = run_reproducer(err.reproducer, left(), reference.IOVATree())
    assert not same_outcome(mine, ref)
    assert count_operations(err.reproducer, reference.IOVATree()) <= 2


def test_silent_state_difference_is_caught_by_check() -> None:
    class WrongPermIOVATree(reference.IOVATree):
        """Stores RO maps as RW; no look-up in this test shows it, ``check()`` does."""

        def insert(self, map: DMAMap) -> None:
            super().insert(map.replace(perm=Perm.RW))

    tree = differential.IOVATree(left=WrongPermIOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0x1000, 0, 0xFFF, Perm.RO))
    with pytest.raises(DivergenceError) as caught:
        tree.check()
    assert caught.value.operation == "tree.maps()"
    mine, ref = run_reproducer(caught.value.reproducer, WrongPermIOVATree(), reference.IOVATree())
    assert not same_outcome(mine, ref)


def test_same_outcome() -> None:
    m = DMAMap(0, 0, 0)
    assert same_outcome(m, DMAMap(0, 0, 0))
    assert not same_outcome(m, tuple(m))  # a plain tuple is not a DMAMap
    assert same_outcome(array("Q", [1, 2]), array("Q", [1, 2]))
    assert not same_outcome(array("Q", [1, 2]), array("Q", [1, 3]))
    assert same_outcome(OverlapError("a", existing=m), OverlapError("b", existing=m))
    assert not same_outcome(OverlapError("a", existing=m), OverlapError("a", existing=None))
    assert not same_outcome(TranslationError("a", 1), TranslationError("a", 2))
    assert not same_outcome(InvalidMapError("a"), ValueError("a"))
    assert not same_outcome(None, TypeError("x"))
    assert same_outcome([(1, 2)], [(1, 2)])


# --------------------------------------------------------------------------- (d) the other trees


def test_gpa_tree_smoke_and_divergence() -> None:
    tree = differential.GPATree(left=reference.GPATree, right=reference.GPATree)
    a = DMAMap(0x8000, 0x1000, 0xFFF)
    tree.insert(a)
    tree.insert(DMAMap(0x9000, 0x2000, 0xFFF))
    with pytest.raises(OverlapError):
        tree.insert(DMAMap(0, 0x1800, 0))
    assert tree.find(0x1000, 0x1000) == a
    assert list(tree.to_iova_many([0x1004, 0x5000], missing=0)) == [0x8004, 0]
    assert tree.remove(0x1000) == 1
    tree.check()
    tree.close()

    tree = differential.GPATree(left=GPAFindLowIOVATree, right=reference.GPATree)
    tree.insert(DMAMap(0x8000, 0x1000, 0xFFF))
    tree.insert(DMAMap(0x9000, 0x2000, 0xFFF))
    for i in range(40):  # noise the shrinker must remove
        tree.find(0x1000 + i * 0x10)
    with pytest.raises(DivergenceError) as caught:
        tree.find(0x1000, 0x1000)
    source = caught.value.reproducer
    assert "differential.GPATree(left=" in str(caught.value)
    assert count_operations(source, reference.GPATree()) == 3
    mine, ref = run_reproducer(source, GPAFindLowIOVATree(), reference.GPATree())
    assert not same_outcome(mine, ref)


def test_vhost_tree_smoke() -> None:
    tree = differential.VhostIOVATree(
        0, 0xFFFFF, left=reference.VhostIOVATree, right=reference.VhostIOVATree
    )
    ring = tree.map_alloc(0xFFF, 0x7F00_0000_0000)
    assert ring.iova == 0x1000  # effective first IOVA is 4096
    ram = tree.map_alloc_gpa(0x3FFF, 0x0)
    assert tree.find_gpa(0x2000) == ram
    assert tree.find_iova(0x7F00_0000_0800) == ring
    assert tree.translate(0x7F00_0000_0000, 0x10) == [(0x1000, 0x10)]
    assert tree.translate(0, 0x10, gpa=0x1000) == [(ram.iova + 0x1000, 0x10)]
    with pytest.raises(OverlapError):
        tree.map_alloc_gpa(0xFFF, 0x1000)
    assert list(tree.gpa_to_iova_many([0x10], missing=0)) == [ram.iova + 0x10]
    assert len(tree) == 2 and len(tree.allocated()) == 2
    tree.check()
    assert tree.remove_gpa(0) == 1
    with pytest.raises(InvalidMapError):
        differential.VhostIOVATree(0x5000, 0x10, left=reference.VhostIOVATree)


def test_vhost_leak_is_caught_with_constructor_in_reproducer() -> None:
    tree = differential.VhostIOVATree(
        0x1000, 0xFFFFF, left=LeakyVhostIOVATree, right=reference.VhostIOVATree
    )
    tree.map_alloc(0xFFF, 0x7F00_0000_0000)
    tree.map_alloc_gpa(0x1FFF, 0x0)
    with pytest.raises(OverlapError):  # both refuse the overlap alike...
        tree.map_alloc_gpa(0xFFF, 0x1000)
    with pytest.raises(DivergenceError) as caught:  # ...but one leaked its allocation
        tree.check()
    err = caught.value
    # The reference's own check() sees the orphan allocation before the listings are compared.
    assert err.operation == "tree.check()"
    assert isinstance(err.left, AssertionError) and err.right is None
    assert "differential.VhostIOVATree(0x1000, 0xfffff, left=" in str(err)
    assert "VhostIOVATree(0x1000, 0xfffff)" in err.reproducer
    # The fresh trees for reproduce() are built with the same arguments.
    mine, ref = run_reproducer(
        err.reproducer,
        LeakyVhostIOVATree(0x1000, 0xFFFFF),
        reference.VhostIOVATree(0x1000, 0xFFFFF),
    )
    assert not same_outcome(mine, ref)
    # The failing overlap stays (wrapped in try/except); the host map is not needed.
    tree_ops = count_operations(err.reproducer, reference.VhostIOVATree(0x1000, 0xFFFFF))
    assert tree_ops == 3
    assert "except Exception:" in err.reproducer
    ast.parse(err.reproducer)


def test_vhost_constructor_divergence() -> None:
    with pytest.raises(DivergenceError) as caught:
        differential.VhostIOVATree(0, 0x10, left=LaxVhostIOVATree, right=reference.VhostIOVATree)
    err = caught.value
    assert err.operation == "VhostIOVATree(0x0, 0x10)"
    assert isinstance(err.right, InvalidMapError)
    (outcome,) = run_reproducer(err.reproducer, reference.VhostIOVATree(0, 0xFFFF))
    assert isinstance(outcome, InvalidMapError)


@needs_native
def test_default_sides_are_native_and_reference() -> None:
    tree = differential.IOVATree()
    assert type(tree.left) is native.IOVATree
    assert type(tree.right) is reference.IOVATree
    vhost = differential.VhostIOVATree(0, 0xFFFF)
    assert type(vhost.left) is native.VhostIOVATree
    tree.close()
    vhost.close()


def test_iteration_is_eager_and_reproducer_renders_batch_inputs() -> None:
    tree = differential.IOVATree(left=OffByOneBatchIOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0, 0x5000, 0xFFF))
    tree.insert(DMAMap(0x1000, 0x6000, 0xFFF))
    seen = []
    for m in tree:
        seen.append(m)
        tree.remove(m.iova)  # a plain tree would raise RuntimeError here
    assert len(seen) == 2 and len(tree) == 0
    tree.insert(DMAMap(0, 0x5000, 0xFFF))
    values = iter([0x10, 0x20])  # a one-shot iterator: both sides must see the same values
    with pytest.raises(DivergenceError) as caught:
        tree.to_translated_many(values)
    assert "tree.to_translated_many(iter([0x10, 0x20]))" in caught.value.reproducer


# --------------------------------------------------------------------------- issue 15, 1 and 2


class ConsumingIOVATree(reference.IOVATree):
    """The batch bug of issue 15: a fast conversion eats a one-shot iterator up to its first
    bad value, and the fallback reads only what is left."""

    def to_translated_many(self, iovas: Any, missing: int | None = None) -> array:
        try:
            values: Any = array("Q", iovas)
        except (TypeError, OverflowError):
            values = list(iovas)  # what is left of a one-shot iterator
        return super().to_translated_many(values, missing)


class IntConvertingIOVATree(reference.IOVATree):
    """The scalar bug of issue 15: anything with ``__int__`` taken as an int (cffi's way)."""

    def remove(self, iova: Any, size: Any = 0) -> int:
        return super().remove(int(iova), int(size))


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda: iter([-1, 0x1000]), id="bad-first"),
        pytest.param(lambda: (x for x in [0x1000, 0x1001, -1]), id="bad-last"),
    ],
)
def test_one_shot_iterator_bug_is_caught(values: Any) -> None:
    """Each side gets its own iterator over the same values: a backend that reads one twice
    diverges (a differential that handed both sides a list would hide it)."""
    tree = differential.IOVATree(left=ConsumingIOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0x1000, 0x5000, 0xFFF))
    with pytest.raises(DivergenceError) as caught:
        tree.to_translated_many(values())
    err = caught.value
    assert isinstance(err.right, InvalidMapError)
    assert not isinstance(err.left, InvalidMapError)
    assert "iter([" in err.reproducer
    planted, ref = run_reproducer(err.reproducer, ConsumingIOVATree(), reference.IOVATree())
    assert not same_outcome(planted, ref)


def test_int_conversion_bug_is_caught() -> None:
    from decimal import Decimal

    tree = differential.IOVATree(left=IntConvertingIOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0x1000, 0x5000, 0xFFF))
    with pytest.raises(DivergenceError) as caught:
        tree.remove(Decimal("4096.7"))
    assert caught.value.left == 1 and isinstance(caught.value.right, TypeError)


@needs_native
def test_native_agrees_on_one_shot_iterators_and_non_integers() -> None:
    """The default sides agree where the native backend used to lose data (issue 15)."""
    from decimal import Decimal

    tree = differential.IOVATree()
    tree.insert(DMAMap(0x1000, 0x5000, 0xFFF))
    for values in (iter([-1, 0x1000]), (x for x in [0x1000, 0x1001, -1])):
        with pytest.raises(InvalidMapError):
            tree.to_translated_many(values)
    with pytest.raises(TypeError):
        tree.remove(Decimal("4096.7"))
    assert tree.to_translated_many(iter([0x1000, 0x1FFF])) == array("Q", [0x5000, 0x5FFF])
    tree.check()
    tree.close()


# --------------------------------------------------------------------------- issue 15, 8


class Index149IOVATree(reference.IOVATree):
    """``to_translated_many`` answers one too high at index 149, however long the batch."""

    def to_translated_many(self, iovas: Any, missing: int | None = None) -> array:
        out = super().to_translated_many(iovas, missing)
        if len(out) > 149:
            out[149] += 1
        return out


class OneAddressIOVATree(reference.IOVATree):
    """``to_translated_many`` misanswers one address, wherever it stands."""

    def to_translated_many(self, iovas: Any, missing: int | None = None) -> array:
        values = list(iovas)
        out = super().to_translated_many(values, missing)
        for i, v in enumerate(values):
            if v == 0x1ABC:
                out[i] ^= 1
        return out


BIG = 200_000


@pytest.mark.parametrize("container", [list, lambda xs: array("Q", xs), iter])
def test_batch_reproducer_is_cut_to_the_divergence(container: Any) -> None:
    """A divergence at index 149 of a 200k-address batch: the reproducer keeps at most 150
    addresses, and the message stays small (issue 15: it was 3.2 MB and 6.4 MB)."""
    tree = differential.IOVATree(left=Index149IOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0, 0x10_0000, 0xFFFF))
    addrs = [i % 0x10000 for i in range(BIG)]
    with pytest.raises(DivergenceError) as caught:
        tree.to_translated_many(container(addrs))
    err = caught.value
    assert len(err.reproducer) < 10_000, len(err.reproducer)
    assert len(str(err)) < 20_000, len(str(err))
    assert f"cut from {BIG:,} to 150 addresses" in str(err)
    planted, ref = run_reproducer(err.reproducer, Index149IOVATree(), reference.IOVATree())
    assert not same_outcome(planted, ref)


def test_batch_reproducer_keeps_the_address_and_neighbours() -> None:
    tree = differential.IOVATree(left=OneAddressIOVATree, right=reference.IOVATree)
    tree.insert(DMAMap(0, 0x10_0000, 0xFFFF))
    addrs = [i % 0x10000 for i in range(BIG)]
    with pytest.raises(DivergenceError) as caught:
        tree.to_translated_many(addrs)
    err = caught.value
    # 0x1abc stands at three places: each with two neighbours either side
    assert "cut from 200,000 to 15 addresses" in str(err), str(err)[-3000:]
    assert "0x1abc" in err.reproducer
    planted, ref = run_reproducer(err.reproducer, OneAddressIOVATree(), reference.IOVATree())
    assert not same_outcome(planted, ref)


class DropsMap149IOVATree(reference.IOVATree):
    """``update`` loses the map at index 149 of its iterable, however long it is."""

    def update(self, maps: Any) -> None:
        maps = list(maps)
        super().update(maps)
        if len(maps) > 149:
            self.remove(maps[149].iova)


def test_update_before_the_divergence_is_cut_too() -> None:
    """A divergence that a long ``update`` earlier in the log set up: its maps are cut as the
    divergent call's batch is (issue 15 review: the reproducer held all 200k maps, 15.9 MB)."""
    tree = differential.IOVATree(left=DropsMap149IOVATree, right=reference.IOVATree)
    tree.update([DMAMap(0x1000 * k, 0, 0xFFF) for k in range(BIG)])
    with pytest.raises(DivergenceError) as caught:
        tree.find(0x1000 * 149)
    err = caught.value
    assert len(err.reproducer) < 20_000, len(err.reproducer)
    note = f"the batches of earlier calls cut from {BIG:,} to 150 elements"
    assert note in str(err), str(err)[-600:]
    planted, ref = run_reproducer(err.reproducer, DropsMap149IOVATree(), reference.IOVATree())
    assert not same_outcome(planted, ref)
