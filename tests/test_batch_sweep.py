# SPDX-License-Identifier: GPL-2.0-or-later
"""The batch forms' sweep (csrc/iova-binding.c, ``ib_batch``): a batch of 128 addresses or more
is sorted in C and answered by moving from each answer to the next (a finger search over the
reverse or id tree, node steps in the GTree) instead of a look-up per address.  Aliases (maps
whose translated ranges overlap) make the reverse sweep ask the tree, and far jumps make it
climb and descend, so that is where it can go wrong: these trees are small and crowded with
aliases, ids, gaps and edges, and every answer is held to the reference's batch and to
native's own single look-ups.
"""

from __future__ import annotations

import random
from array import array

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iova_native import DMAMap, OverlapError, TranslationError, native, reference

PAGE = 0x1000
HVA = 0x7F00_0000_0000
MISSING = 0xDEAD
BATCH = 300  # above the 128 from which batches are sorted and swept


@st.composite
def crowded_maps(draw: st.DrawFn) -> list[DMAMap]:
    """Up to 40 maps whose HVA ranges alias each other often; sizes of one byte to 4 pages."""
    maps = []
    for i in range(draw(st.integers(0, 40))):
        iova = draw(st.integers(0, 200)) * PAGE
        hva = HVA + draw(st.integers(0, 30)) * PAGE + draw(st.sampled_from([0, 0, 1, 0x800]))
        size = draw(st.sampled_from([0, PAGE - 1, 2 * PAGE - 1, 4 * PAGE - 1, 0x1234]))
        maps.append(DMAMap(iova, hva, size, id=draw(st.integers(0, 2)) if i % 3 else 0))
    return maps


def edges(maps: list[DMAMap], key: str) -> list[int]:
    """Addresses where an answer changes: every map's first and last byte and their outsides."""
    out = [HVA - 1, HVA, 0, 2**64 - 1]
    for m in maps:
        first = m.translated_addr if key == "translated" else m.iova
        last = first + m.size
        out += [first - 1, first, first + m.size // 2, last, last + 1]
    return [a for a in out if 0 <= a < 2**64]


def batch_of(addrs: list[int], seed: int) -> list[int]:
    """BATCH addresses drawn from ``addrs`` (repeats included), in a random order."""
    rng = random.Random(seed)
    return [rng.choice(addrs) for _ in range(BATCH)]


def both(maps: list[DMAMap], kind: str = "iova") -> tuple[object, object]:
    trees = (native.IOVATree(), reference.IOVATree()) if kind == "iova" else (
        native.GPATree(), reference.GPATree())
    for m in maps:
        for t in trees:
            try:
                t.insert(m)
            except OverlapError:
                pass
    return trees


def single_iova(tree: native.IOVATree, addr: int, id: int | None) -> int:
    m = tree.find_iova(addr, 0, id)
    return MISSING if m is None else m.iova + (addr - m.translated_addr)


FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(crowded_maps(), st.integers(0, 2**32), st.sampled_from([None, 0, 1, 2, 7]))
def test_to_iova_many_sweep_equals_reference_and_single_lookups(
    maps: list[DMAMap], seed: int, id: int | None
) -> None:
    nat, ref = both(maps)
    addrs = batch_of(edges(maps, "translated"), seed)
    got = nat.to_iova_many(addrs, id=id, missing=MISSING)
    assert list(got) == list(ref.to_iova_many(addrs, id=id, missing=MISSING))
    assert list(got) == [single_iova(nat, a, id) for a in addrs]


@FAST
@given(crowded_maps(), st.integers(0, 2**32))
def test_forward_sweeps_equal_reference(maps: list[DMAMap], seed: int) -> None:
    nat, ref = both(maps)
    addrs = batch_of(edges(maps, "iova"), seed)
    assert list(nat.to_translated_many(addrs, missing=MISSING)) == list(
        ref.to_translated_many(addrs, missing=MISSING))
    gnat, gref = both(maps, "gpa")
    gaddrs = batch_of(edges(maps, "translated"), seed + 1)
    assert list(gnat.to_iova_many(gaddrs, missing=MISSING)) == list(
        gref.to_iova_many(gaddrs, missing=MISSING))


def first_miss(tree: object, addrs: list[int]) -> int | None:
    """The address a batch without ``missing`` names in its TranslationError, or None."""
    try:
        tree.to_iova_many(array("Q", addrs))
    except TranslationError as e:
        return e.address
    return None


@FAST
@given(crowded_maps(), st.integers(0, 2**32))
def test_sweep_reports_the_first_miss_in_input_order(maps: list[DMAMap], seed: int) -> None:
    nat, ref = both(maps)
    addrs = batch_of(edges(maps, "translated"), seed)
    expected = next((a for a in addrs if ref.find_iova(a) is None), None)
    assert first_miss(ref, addrs) == expected
    assert first_miss(nat, addrs) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 40)), max_size=30),
       st.integers(0, 2**32))
def test_vhost_sweeps_equal_reference(allocs: list[tuple[int, int]], seed: int) -> None:
    nat = native.VhostIOVATree(0x1000, 2**40)
    ref = reference.VhostIOVATree(0x1000, 2**40)
    for pages, slot in allocs:  # host-only maps over aliasing HVAs, guest maps at their GPAs
        for t in (nat, ref):
            t.map_alloc(pages * PAGE - 1, HVA + slot * PAGE)
            try:
                t.map_alloc_gpa(pages * PAGE - 1, 0x1_0000_0000 + slot * 3 * PAGE)
            except OverlapError:
                pass
    hvas = batch_of(edges(nat.host_maps(), "translated"), seed)
    gpas = batch_of(edges(nat.gpa_maps(), "translated"), seed + 1)
    assert list(nat.to_iova_many(hvas, missing=MISSING)) == list(
        ref.to_iova_many(hvas, missing=MISSING))
    assert list(nat.gpa_to_iova_many(gpas, missing=MISSING)) == list(
        ref.gpa_to_iova_many(gpas, missing=MISSING))


def test_sweep_at_scale_with_a_long_alias_over_the_whole_range() -> None:
    """A large sweep (5,000 addresses over 33k maps: long jumps, so the finger search climbs and
    descends), where one map reaching over every other forces the look-up at every address
    after it, while a second id's group sweeps cleanly."""
    tree = native.IOVATree()
    for i in range(33_000):
        tree.insert(DMAMap(2**32 + PAGE * 2 * i, HVA + PAGE * i, PAGE - 1, id=i % 2))
    tree.insert(DMAMap(0, HVA + PAGE * 10, PAGE * 40_000, id=0))  # lowest IOVA: always wins
    rng = random.Random(5)
    addrs = [HVA + rng.randrange(PAGE * 33_010) for _ in range(5_000)]
    for id in (None, 0, 1):
        got = tree.to_iova_many(addrs, id=id, missing=MISSING)
        assert list(got) == [single_iova(tree, a, id) for a in addrs]


@st.composite
def runs_of_addresses(draw: st.DrawFn, starts: list[int]) -> list[int]:
    """Runs of neighbouring addresses (x, x+1, x+2, ...) from the given starts, each address
    possibly repeated: the sweep's shortcuts (a repeated address, no map started since the last
    answer) are taken on exactly these."""
    out: list[int] = []
    while len(out) < BATCH:
        x = draw(st.sampled_from(starts))
        for k in range(draw(st.integers(1, 6))):
            out += [min(x + k, 2**64 - 1)] * draw(st.integers(1, 3))
    return out


@FAST
@given(crowded_maps(), st.data(), st.sampled_from([None, 0, 1, 2]))
def test_sweep_runs_and_repeats_equal_single_lookups(
    maps: list[DMAMap], data: st.DataObject, id: int | None
) -> None:
    tree, ref = both(maps)
    addrs = data.draw(runs_of_addresses(edges(maps, "translated")))
    expected = [single_iova(tree, a, id) for a in addrs]
    for batch in (addrs, sorted(addrs), sorted(addrs, reverse=True)):
        want = [single_iova(tree, a, id) for a in batch]
        assert list(tree.to_iova_many(batch, id=id, missing=MISSING)) == want
        assert list(ref.to_iova_many(batch, id=id, missing=MISSING)) == want
    assert len(expected) == len(addrs)


def test_sweep_under_staggered_aliases() -> None:
    """k aliases over one page, the lowest IOVA ending first, then the next lowest, ...: along
    x, x+1, ... the previous answer keeps running out, and each address needs the tree again;
    a repeated address still needs nothing."""
    k = 400
    base = 0x5000_0000
    tree = native.IOVATree()
    for i in range(k):
        tree.insert(DMAMap(i * PAGE, base, PAGE - 1 - (k - 1 - i) if i < PAGE else 0))
        tree.insert(DMAMap((k + i) * PAGE + 0x100_0000, base + i, k - i))  # staggered starts too
    addrs = [base + j for j in range(2 * k) for _ in range(2)]
    want = [single_iova(tree, a, None) for a in addrs]
    assert list(tree.to_iova_many(addrs, missing=MISSING)) == want
    assert list(tree.to_iova_many(array("Q", sorted(addrs, reverse=True)), missing=MISSING)) == (
        [single_iova(tree, a, None) for a in sorted(addrs, reverse=True)])
