# SPDX-License-Identifier: GPL-2.0-or-later
"""``alloc`` held to a brute-force first-fit / last-fit model, on random trees, every alignment.

The model knows nothing of trees: it lists the gaps between the sorted maps and tries each one
in order (lowest first, or highest first for ``policy="last"``), clipped to
``[iova_begin, iova_last]``, for the lowest (or highest) multiple of ``align`` where the map
fits.  Both backends run it (the fixture ``backend``); the native one is what this guards: its
hole tree prunes subtrees by their longest hole and by the highest alignment any of their holes
can offer, and neither shortcut may ever change an answer.  (The fixture's backend module is
the same for every example; nothing of it is changed.)

Layouts are drawn at a scale (bytes, pages, 2^40, 2^60) so that boundaries fall on and just off
multiples of every alignment, including runs of holes that are long enough but misaligned.
"""

from __future__ import annotations

import random
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iova_native import MAX_U64, DMAMap, NoSpaceError, OverlapError

SCALES = (1, 0x10, 0x1000, 1 << 40, 1 << 60)


@st.composite
def boundaries(draw: st.DrawFn) -> list[int]:
    """An even number of distinct sorted points: maps [p0, p1], [p2, p3], ..."""
    scale = draw(st.sampled_from(SCALES))
    near = st.builds(lambda k, d: (k * scale + d) % (MAX_U64 + 1),
                     st.integers(0, 48), st.integers(-2, 2))
    top = st.integers(MAX_U64 - 3 * scale, MAX_U64).filter(lambda v: v >= 0)
    points = draw(st.lists(near | top | st.integers(0, MAX_U64), max_size=40, unique=True))
    points.sort()
    return points[: len(points) // 2 * 2]


def gaps(maps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The complement of the (sorted, disjoint, inclusive) maps in [0, 2^64 - 1]."""
    out, cursor = [], 0
    for first, last in maps:
        if first > cursor:
            out.append((cursor, first - 1))
        cursor = last + 1
    if cursor <= MAX_U64:
        out.append((cursor, MAX_U64))
    return out


def model(maps: list[tuple[int, int]], size: int, begin: int, last: int, align: int,
          policy: str) -> int | None:
    """Where a map of ``size`` (inclusive) goes, by trying every gap: None when none fits."""
    candidates = []
    for lo, hi in gaps(maps):
        lo, hi = max(lo, begin), min(hi, last)
        if lo > hi or hi - lo < size:
            continue
        if policy == "first":
            at = -(-lo // align) * align
            if at + size <= hi:
                return at
        else:
            at = (hi - size) // align * align
            if at >= lo:
                candidates.append(at)
    return max(candidates) if candidates else None


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=boundaries(), data=st.data())
def test_alloc_matches_brute_force(backend: ModuleType, points: list[int],
                                   data: st.DataObject) -> None:
    maps = list(zip(points[::2], points[1::2]))
    tree = backend.IOVATree()
    for first, last in maps:
        tree.insert(DMAMap(first, 0, last - first))
    scale = data.draw(st.sampled_from(SCALES), label="size scale")
    for _ in range(6):
        size = data.draw(st.integers(0, 3 * scale) | st.integers(0, MAX_U64), label="size")
        align = 1 << data.draw(st.integers(0, 63), label="align log2")
        policy = data.draw(st.sampled_from(["first", "last"]), label="policy")
        ends = data.draw(st.lists(st.sampled_from(points) if points else st.integers(0, MAX_U64),
                                  min_size=2, max_size=2) | st.tuples(st.just(0),
                                                                      st.just(MAX_U64)),
                         label="iova_begin, iova_last")
        begin, last = min(ends), max(ends)
        want = model(maps, size, begin, last, align, policy)
        try:
            got = tree.alloc(size, iova_begin=begin, iova_last=last, align=align,
                             policy=policy).iova
        except NoSpaceError:
            got = None
        assert got == want, (maps, size, hex(begin), hex(last), hex(align), policy)
        if got is not None:
            maps = sorted(maps + [(got, got + size)])
        tree.check()
    tree.close()


def test_hole_summaries_survive_churn(backend: ModuleType) -> None:
    """Holes shrunk, grown, split and merged in place on a tree of a few hundred maps, with
    ``check()`` (the hole tree's longest-hole links and alignment maxima among the rest) after
    every step: a summary left stale above a hole that changed where it stands fails here.
    Fixed seed, so that a failure is reproducible."""
    rng = random.Random(17)
    tree = backend.IOVATree()
    stored: list[DMAMap] = []
    for _ in range(300):
        first = rng.randrange(0, 1 << 24) * 0x10
        m = DMAMap(first, 0, rng.choice([0xF, 0xFFF, 0x3FFF, 0x10]))
        if tree.find(m.iova, m.size) is None:
            tree.insert(m)
            stored.append(m)
    for _ in range(600):
        what = rng.random()
        if what < 0.4 and stored:
            gone = stored.pop(rng.randrange(len(stored)))
            assert tree.remove(gone.iova, gone.size) == 1
        else:
            size = rng.choice([0, 0xF, 0xFFF, 0x1FFF, 0xFFFF, 0xFFFFF])
            align = 1 << rng.randrange(0, 16)
            policy = rng.choice(["first", "last"])
            try:
                stored.append(tree.alloc(size, align=align, policy=policy,
                                         iova_begin=rng.randrange(0, 1 << 28)))
            except NoSpaceError:
                pass
        tree.check()
    tree.close()


def test_freed_ranges_taken_again_match_the_model(backend: ModuleType) -> None:
    """A removal's range may wait before it goes back to the native hole tree (design.md,
    "Freed ranges wait"): an insert of exactly that range takes it back, one that overlaps it
    otherwise (two neighbours freed and their union inserted, a byte past it) and an alloc
    whose answer it could change give the waiting ranges back first.  Batches of removals
    longer than the 16 that wait, re-inserts, unions and allocs of both policies on a crowded
    layout, each answer held to the model and ``check()`` after every step.  Fixed seed."""
    rng = random.Random(29)
    tree = backend.IOVATree()
    page = 0x1000
    stored = {}
    for k in range(0, 400, 2):
        stored[k * page] = DMAMap(k * page, 0, page - 1)
    for k in rng.sample(range(1, 400, 2), 120):
        stored[k * page] = DMAMap(k * page, 0, page - 1)
    for m in stored.values():
        tree.insert(m)
    for _ in range(60):
        freed = [stored.pop(k) for k in rng.sample(sorted(stored), rng.randrange(1, 24))]
        for m in freed:
            assert tree.remove(m.iova, m.size) == 1
            tree.check()
        rng.shuffle(freed)
        for m in freed:
            what = rng.random()
            if what < 0.15 and m.iova + m.size + 1 not in stored and m.iova + page < 400 * page:
                m = DMAMap(m.iova, 0, 2 * page - 1)  # with the next page, if that is free
            elif what < 0.25:
                m = DMAMap(m.iova, 0, m.size + 1)  # a byte past it
            maps = sorted((s.iova, s.iova + s.size) for s in stored.values())
            fits = all(last < m.iova or first > m.iova + m.size for first, last in maps)
            try:
                tree.insert(m)
                assert fits, m
                stored[m.iova] = m
            except OverlapError:
                assert not fits, m
            tree.check()
            if rng.random() < 0.2:
                policy = rng.choice(["first", "last"])
                last = rng.choice([MAX_U64, 400 * page])
                maps = sorted((s.iova, s.iova + s.size) for s in stored.values())
                want = model(maps, page - 1, 0, last, page, policy)
                got = tree.alloc(page - 1, iova_last=last, align=page, policy=policy)
                assert got.iova == want
                stored[got.iova] = got
                tree.check()
    tree.close()
