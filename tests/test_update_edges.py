# SPDX-License-Identifier: GPL-2.0-or-later
"""The C core's update paths at the edges of the space, native against the reference.

The stateful tests keep to a few low pages, eight-page sizes and ids that differ in low bits.
These drive the ``differential`` backend where the incremental AVL summaries and the hole tree
have their corner cases: maps at 0 and ending at 2**64-1, sizes up to the whole space, ids
that differ only in their high bits, many maps aliasing one translated range, removals that
span many maps or reach the top, and allocations with every alignment and both policies after
churn; ``check()`` runs on both sides after every call and ``OverlapError.existing`` must
agree (the native insert takes the overlap test from the holes, not from the GTree).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iova_native import MAX_U64, DMAMap, IOVAError, NoSpaceError, OverlapError, Perm, differential

try:
    importlib.import_module("iova_native.native")
except (ImportError, OSError) as exc:  # not built: skip
    pytestmark = pytest.mark.skip(reason=f"iova_native.native: {exc}")

#: Ids equal in their low bits: an order that looked at the low word only would mix them.
IDS = (0, 1, 1 << 63, (1 << 63) | 1, 1 << 32, MAX_U64)
#: Few translated ranges, so that most maps alias one another.
TRANSLATED = (0, 0x100, 0x200, MAX_U64 - 0xFFF)
BASES = (0, 1 << 32, 1 << 63, MAX_U64 - 0xFFF)

SETTINGS = settings(max_examples=250, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

addresses = st.one_of(
    st.builds(lambda base, off: base + off, st.sampled_from(BASES), st.integers(0, 0xFFF)),
    st.integers(0, MAX_U64))
sizes = st.one_of(st.integers(0, 0x3FF), st.sampled_from((MAX_U64, 1 << 63, (1 << 62) - 1)),
                  st.builds(lambda shift: MAX_U64 >> shift, st.integers(0, 63)))


def fit(start: int, size: int) -> int:
    """``size`` cut so that ``[start, start + size]`` stays inside the space."""
    return min(size, MAX_U64 - start)


@st.composite
def iova_ops(draw: Any) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(("insert", "insert", "insert", "remove", "alloc", "alloc",
                                 "find_iova", "translate")))
    if kind == "insert":
        iova, taddr = draw(addresses), draw(st.sampled_from(TRANSLATED))
        size = fit(taddr, fit(iova, draw(sizes)))
        return (kind, DMAMap(iova, taddr, size, draw(st.sampled_from(list(Perm)[1:])),
                             draw(st.sampled_from(IDS))))
    if kind == "remove":
        iova = draw(addresses)
        return (kind, iova, fit(iova, draw(st.one_of(sizes, st.just(MAX_U64)))))
    if kind == "alloc":
        begin = draw(st.one_of(st.just(0), addresses))
        last = draw(st.one_of(st.just(MAX_U64), addresses))
        return (kind, draw(st.one_of(st.integers(0, 0xFFF), sizes)),
                draw(st.sampled_from(IDS)), begin, last, 1 << draw(st.integers(0, 63)),
                draw(st.sampled_from(("first", "last"))))
    taddr = draw(st.sampled_from(TRANSLATED))
    return (kind, taddr, fit(taddr, draw(st.integers(0, 0x2FF))),
            draw(st.one_of(st.none(), st.sampled_from(IDS))))


def apply(tree: Any, op: tuple[Any, ...]) -> None:
    kind, *args = op
    if kind == "insert":
        tree.insert(args[0])
    elif kind == "remove":
        tree.remove(*args)
    elif kind == "alloc":
        size, id_, begin, last, align, policy = args
        tree.alloc(size, 0, Perm.RW, id_, begin, last, align, policy)
    elif kind == "find_iova":
        tree.find_iova(*args)
        tree.find_iova_all(*args)
    else:
        taddr, size, id_ = args
        tree.translate(taddr, min(size + 1, MAX_U64 - taddr + 1), id_)


@SETTINGS
@given(st.lists(iova_ops(), min_size=1, max_size=80))
def test_iova_tree_agrees_at_the_edges_of_the_space(ops: list[tuple[Any, ...]]) -> None:
    with differential.IOVATree() as tree:
        for op in ops:
            try:
                apply(tree, op)
            except IOVAError:
                pass  # both sides raised it alike (a disagreement is a DivergenceError)
            tree.check()
            tree.find(0, MAX_U64)
            tree.find_all(0, MAX_U64)


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), addresses, st.sampled_from(TRANSLATED), sizes,
                          st.sampled_from(IDS)), min_size=1, max_size=80))
def test_gpa_tree_agrees_at_the_edges_of_the_space(
        ops: list[tuple[bool, int, int, int, int]]) -> None:
    with differential.GPATree() as tree:
        for insert, iova, taddr, size, id_ in ops:
            try:
                if insert:
                    tree.insert(DMAMap(iova, taddr, fit(iova, fit(taddr, size)), Perm.RW, id_))
                else:
                    tree.remove(taddr, fit(taddr, size))
            except IOVAError:
                pass
            tree.check()


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(("host", "gpa", "remove", "remove_gpa")),
                          st.integers(0, 0x2FFF), st.sampled_from((0, 0x1000, 0x1800, 1 << 63))),
                min_size=1, max_size=80),
       st.sampled_from((0xFFFFFF, MAX_U64)))
def test_vhost_iova_tree_agrees_after_churn(ops: list[tuple[str, int, int]], last: int) -> None:
    with differential.VhostIOVATree(0, last, page_size=0x1000) as tree:
        for kind, size, addr in ops:
            try:
                if kind == "host":
                    tree.map_alloc(size, addr)
                elif kind == "gpa":
                    tree.map_alloc_gpa(size, addr)
                elif kind == "remove":
                    tree.remove(addr & 0xFFFFFF, size)
                else:
                    tree.remove_gpa(addr, size)
            except IOVAError:
                pass
            tree.check()


@pytest.mark.parametrize("keep", ["insert", "alloc"])
def test_overlap_error_names_the_lowest_map_hit_when_the_holes_answer_the_overlap(
        keep: str) -> None:
    """The native insert takes its overlap test from the holes once they exist (after the
    first alloc); ``.existing`` must still be the lowest map the new range overlaps."""
    from iova_native import native

    tree = native.IOVATree()
    if keep == "alloc":
        tree.alloc(0xFFF, iova_begin=0x100000)  # the holes exist from here on
    low = DMAMap(0x1000, 0x100, 0xFFF, Perm.RW, 1 << 63)
    high = DMAMap(0x3000, 0x100, 0xFFF, Perm.RW, (1 << 63) | 1)
    top = DMAMap(MAX_U64 - 0xFFF, 0x100, 0xFFF, Perm.RW, 1)
    tree.update([low, high, top])
    for needle, hit in ((DMAMap(0x1800, 0x100, 0x2000), low), (DMAMap(0x2000, 0, 0x1000), high),
                        (DMAMap(0, 0, MAX_U64), low), (DMAMap(MAX_U64, 0, 0), top)):
        with pytest.raises(OverlapError) as caught:
            tree.insert(needle)
        assert caught.value.existing == hit
    tree.check()
    with differential.VhostIOVATree(0, MAX_U64, page_size=0x1000) as vhost:
        first = vhost.map_alloc_gpa(0x1FFF, 0x10000)
        vhost.map_alloc_gpa(0xFFF, 0x20000)
        with pytest.raises(OverlapError) as caught:
            vhost.map_alloc_gpa(0x20FFF, 0x11000)
        assert caught.value.existing == first
        vhost.check()


@pytest.mark.parametrize("offset", [0, 0x10000, -0xFF000, 0xFF000],
                         ids=["through it", "beside it", "the hole's low end", "its high end"])
def test_a_split_through_the_only_aligned_address_lowers_the_subtrees_alignment(
        offset: int) -> None:
    """A map inserted inside a hole splits it, and the walk up skips the hole tree's
    alignment summary (each subtree's largest k such that one of its holes holds a multiple
    of 2**k) where one of the two parts still holds the hole's most aligned address.  Here
    the map covers that address (offset 0: the hole's only multiple of 2**22, where every
    other hole but the two outer ones holds one of 2**19 at most), so the summaries above it
    must drop: ``check()`` recomputes them, and an alloc aligned to 2**22 must not pick it.
    Beside it the split leaves the address free; at the hole's ends the map only shrinks it."""
    from iova_native import native

    step = 1 << 20
    tree = native.IOVATree(DMAMap(step * i, 0, 0xFFF) for i in range(1, 65) if i != 36)
    tree.check()
    tree.insert(DMAMap(step * 36 + offset, 0, 0xFFF))
    tree.check()
    # every other multiple of 2**22 in the range lies in a map
    if offset == 0:
        with pytest.raises(NoSpaceError):
            tree.alloc(0xFFF, iova_begin=step, iova_last=step * 64, align=1 << 22)
    else:
        assert tree.alloc(0xFFF, iova_begin=step, iova_last=step * 64,
                          align=1 << 22).iova == step * 36
    tree.check()


def test_the_id_tree_waits_for_a_second_id_and_answers_as_the_reference() -> None:
    """While every stored map has one id the core keeps no id tree (iova-reverse.h): a look-up
    with that id walks the reverse tree, one with another id finds nothing.  The first map of
    another id copies the reverse tree's shape into the id tree (here at 3,000 maps, then
    again at every refill), and an emptied tree waits again.  Every kind of look-up with an
    id, native against the reference, in each state; ``check()`` verifies the state."""
    import random

    from iova_native import native, reference

    rng = random.Random(17)
    trees = [native.IOVATree(), reference.IOVATree()]
    translated = [rng.randrange(64) * 0x800 for _ in range(16)]  # aliases: 16 ranges shared

    def answer(tree: Any, call: str, *args: Any) -> Any:
        try:
            return getattr(tree, call)(*args)
        except IOVAError as exc:  # translate() over a gap: both sides alike
            return type(exc), getattr(exc, "address", None)

    def same(call: str, *args: Any) -> None:
        answers = [answer(t, call, *args) for t in trees]
        assert answers[0] == answers[1], (call, args, answers)

    def compare(ids: tuple[int, ...]) -> None:
        for t in trees:
            t.check()
        same("__eq__", trees[1])
        for _ in range(300):
            taddr, size = rng.choice(translated) + rng.randrange(0x1000), rng.randrange(0x2000)
            for id_ in (None, *ids):
                same("find_iova", taddr, size, id_)
                same("find_iova_all", taddr, size, id_)
            same("translate", taddr, 0x1800, rng.choice(ids))
        needles = [rng.choice(translated) + rng.randrange(0x1000) for _ in range(200)]
        for id_ in ids:
            same("to_iova_many", needles, id_, 0)

    def fill(count: int, id_: int) -> None:
        stored = 0
        while stored < count:
            m = DMAMap(rng.randrange(1 << 40) << 12, rng.choice(translated), 0xFFF, Perm.RW, id_)
            outcome = set()
            for t in trees:
                try:
                    t.insert(m)
                    outcome.add("stored")
                except OverlapError:
                    outcome.add("overlap")
            assert len(outcome) == 1
            stored += outcome == {"stored"}

    for t in trees:
        t.alloc(0xFFF)  # the holes, as every Python tree keeps them, beside the reverse trees
    fill(3000, 0)
    compare((0, 1, 1 << 63))          # one id: no id tree
    fill(1, 1 << 63)                  # another id: the reverse tree copied
    compare((0, 1, 1 << 63))
    fill(200, 1)
    compare((0, 1, 1 << 63))
    for t in trees:                   # emptied by removal, not clear(): the id tree waits again
        assert t.remove(0, MAX_U64) == 3202
    fill(500, 5)
    compare((0, 5))
    fill(1, 0)
    compare((0, 5))
    for t in trees:
        t.clear()
    fill(300, MAX_U64)
    compare((0, MAX_U64))
