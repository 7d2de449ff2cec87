# SPDX-License-Identifier: GPL-2.0-or-later
"""One test per item of docs/contract.md, "Deviations from QEMU".

Each docstring quotes the item; each test asserts the exact outcome this project promises where
QEMU behaves differently.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from iova_native import (
    MAX_U64,
    DMAMap,
    InvalidMapError,
    NoSpaceError,
    OverlapError,
    Perm,
)


def test_1_translated_range_wrapping_is_rejected(IOVATree, GPATree, VhostIOVATree):
    """1. A translated range that wraps past 2**64-1 is rejected (QEMU checks only the IOVA
    side)."""
    # The IOVA side [0x1000, 0x10ff] is fine; the translated side would end at 2**64 + 0xef.
    with pytest.raises(InvalidMapError):
        DMAMap(0x1000, MAX_U64 - 0x10, 0x100)
    # ... while ending exactly at 2**64-1 is accepted.
    edge = DMAMap(0x1000, MAX_U64 - 0x100, 0x100)
    assert edge.translated_last == MAX_U64

    t = IOVATree()
    t.insert(edge)
    with pytest.raises(InvalidMapError):
        t.alloc(0x100, translated_addr=MAX_U64 - 0x10)
    with pytest.raises(InvalidMapError):
        t.find_iova(MAX_U64, 1)
    with pytest.raises(InvalidMapError):
        t.translate(MAX_U64, 2)
    assert t.translate(MAX_U64, 1) == [(0x1100, 1)]
    assert t.maps() == [edge]

    g = GPATree()
    with pytest.raises(InvalidMapError):
        g.find(MAX_U64 - 1, 2)
    with pytest.raises(InvalidMapError):
        g.remove(MAX_U64, 1)

    v = VhostIOVATree(0, 0xFFFF_FFFF)
    with pytest.raises(InvalidMapError):
        v.map_alloc(0x100, MAX_U64 - 0x10)
    with pytest.raises(InvalidMapError):
        v.map_alloc_gpa(0x100, MAX_U64 - 0x10)
    assert (v.host_maps(), v.gpa_maps(), v.allocated()) == ([], [], [])


def test_2_alloc_can_end_exactly_at_iova_last(IOVATree):
    """2. `alloc` can place a map whose last byte is exactly `iova_last`, also when that is
    2**64-1 (QEMU's last-hole test is off by one there)."""
    t = IOVATree()
    assert t.alloc(0xFFF, iova_begin=0xF000, iova_last=0xFFFF) == DMAMap(0xF000, 0, 0xFFF)
    t.insert(DMAMap(0x0, 0, 0xDFFF))
    assert t.alloc(0xFFF, iova_last=0xEFFF).last == 0xEFFF

    # the top of the address space: the hole above the last map ends at 2**64-1
    top = IOVATree()
    top.insert(DMAMap(0x0, 0, MAX_U64 - 0x1000))
    m = top.alloc(0xFFF)
    assert m == DMAMap(MAX_U64 - 0xFFF, 0, 0xFFF)
    assert m.last == MAX_U64
    with pytest.raises(NoSpaceError):
        top.alloc(0)

    # a single byte at 2**64-1, with both policies
    for policy in ("first", "last"):
        one = IOVATree()
        one.insert(DMAMap(0x0, 0, MAX_U64 - 1))
        assert one.alloc(0, policy=policy).iova == MAX_U64

    # the whole address space in one map
    whole = IOVATree()
    assert whole.alloc(MAX_U64) == DMAMap(0, 0, MAX_U64)


def test_3_no_space_not_overlap_after_a_map_ending_at_the_top(IOVATree):
    """3. `alloc` with a stored map ending at 2**64-1 answers `NoSpaceError` when nothing fits
    (QEMU's hole arithmetic wraps and it answers `IOVA_ERR_OVERLAP`)."""
    t = IOVATree()
    t.insert(DMAMap(0x1000, 0, MAX_U64 - 0x1000))  # 0x1000 .. 2**64-1
    before = t.maps()
    with pytest.raises(NoSpaceError) as info:
        t.alloc(0x1000)  # 0x1001 bytes; only 0x1000 are free below the map
    assert not isinstance(info.value, OverlapError)
    with pytest.raises(NoSpaceError):
        t.alloc(0, iova_begin=0x2000)
    with pytest.raises(NoSpaceError):
        t.alloc(0xFFF, policy="last", iova_begin=0x1)
    assert t.maps() == before
    # the space that is left is still found
    assert t.alloc(0xFFF).iova == 0x0


def test_4_find_and_find_iova_return_the_lowest_iova(IOVATree):
    """4. `find` and `find_iova` on a needle that overlaps several maps return the lowest IOVA
    (QEMU returns whichever the tree walk meets first, which depends on the tree's shape)."""
    maps = [DMAMap(0x1000 * (2 * i + 1), 0x5000_0000 + 0x800 * i, 0xFFF) for i in range(32)]
    for order in (maps, maps[::-1], random.Random(4).sample(maps, len(maps))):
        t = IOVATree()
        for m in order:
            t.insert(m)
        assert t.find(0, MAX_U64) == maps[0]
        assert t.find(0x4000, 0x10000) == maps[2]  # first map at 0x5000
        assert t.find(0x7FFF, 0x20000) == maps[3]  # 0x7000..0x7fff ends inside the needle
        # translated ranges overlap pairwise (0x800 apart, 0x1000 long)
        assert t.find_iova(0x5000_0000, MAX_U64 - 0x5000_0000) == maps[0]
        assert t.find_iova(0x5000_8800) == maps[16]  # maps 16 and 17 both cover it
        assert t.find_iova(0x5000_8800 + 0x7FF, 0x1000) == maps[16]


def test_5_vhost_rolls_back_the_allocation(VhostIOVATree):
    """5. `VhostIOVATree` rolls back the IOVA allocation when the GPA insert fails (QEMU leaks
    it)."""
    v = VhostIOVATree(0, 0xFFFF_FFFF)
    ram = v.map_alloc_gpa(0x7FFF_FFFF, 0x0)
    vring = v.map_alloc(0x3FFF, 0x7F00_0000_0000)
    before = (v.host_maps(), v.gpa_maps(), v.allocated())
    for _ in range(100):  # QEMU would leak 100 IOVA ranges here
        with pytest.raises(OverlapError) as info:
            v.map_alloc_gpa(0xFFF, 0x1000)
        assert info.value.existing == ram
    assert (v.host_maps(), v.gpa_maps(), v.allocated()) == before
    assert v.allocated() == [
        DMAMap(0x1000, 0, 0x7FFF_FFFF, Perm.RW, 0),
        DMAMap(0x8000_1000, 0, 0x3FFF, Perm.RW, 0),
    ]
    v.check()
    assert v.map_alloc_gpa(0xFFF, 0x8000_0000).iova == vring.last + 1


def _lowest_iova(maps: list[DMAMap], addr: int, last: int, id: int | None) -> DMAMap | None:
    """The contract's definition of find_iova, from the listing alone."""
    hits = [
        m
        for m in maps
        if m.translated_addr <= last and addr <= m.translated_last and (id is None or m.id == id)
    ]
    return min(hits, key=lambda m: m.iova) if hits else None


def test_6_find_iova_answers_by_definition_on_aliased_layouts(IOVATree):
    """6. `find_iova` is O(log n) through a reverse tree (QEMU walks every node).

    The speed is benchmarked elsewhere; here the answer of the reverse tree must equal the
    definition (lowest IOVA among qualifying maps) on layouts full of aliases, before and after
    removals that reshape the reverse tree."""
    rng = random.Random(6)
    hvas = [0x7F00_0000_0000 + 0x1000 * k for k in range(8)]
    t = IOVATree()
    iova = 0x1000
    for _ in range(200):
        pages = rng.randint(1, 4)
        hva = rng.choice(hvas) + rng.choice((0, 0x800))
        t.insert(DMAMap(iova, hva, pages * 0x1000 - 1, Perm.RW, rng.randrange(4)))
        iova += rng.randint(pages, pages + 3) * 0x1000
    for round_ in range(3):
        maps = t.maps()
        for _ in range(400):
            addr = rng.choice(hvas) + rng.randrange(-0x1000, 0x5000)
            size = rng.choice((0, 0, 0x7FF, 0x2FFF))
            id = rng.choice((None, 0, 1, 2, 3, 9))
            assert t.find_iova(addr, size, id) == _lowest_iova(maps, addr, addr + size, id)
        for _ in range(60):
            victim = rng.choice(t.maps())
            t.remove(victim.iova)
        t.check()
        assert len(t) == 200 - 60 * (round_ + 1)


def test_7_alloc_looks_past_a_map_straddling_iova_begin(IOVATree):
    """7. `alloc` when a stored map straddles `iova_begin` (starts below it, ends at or above it)
    looks past that map for a hole. QEMU's hole arithmetic underflows there, it proposes
    `iova_begin` itself, and the insert fails with `IOVA_ERR_OVERLAP` even when the tree has
    room."""
    t = IOVATree()
    t.insert(DMAMap(0x1000, 0, 0x1FFF))  # 0x1000 .. 0x2fff
    assert t.alloc(0xFFF, iova_begin=0x2000) == DMAMap(0x3000, 0, 0xFFF)
    assert t.alloc(0xFFF, iova_begin=0x2FFF) == DMAMap(0x4000, 0, 0xFFF)  # ends at iova_begin
    assert t.alloc(0xFFF, iova_begin=0x1800, align=0x2000) == DMAMap(0x6000, 0, 0xFFF)
    assert t.alloc(0x7FF, iova_begin=0x1800) == DMAMap(0x5000, 0, 0x7FF)
    assert t.alloc(0x7FF, iova_begin=0x4800, iova_last=0x6FFF, policy="last") == DMAMap(
        0x5800, 0, 0x7FF
    )
    with pytest.raises(NoSpaceError):
        t.alloc(0, iova_begin=0x1800, iova_last=0x6FFF)
    assert [m.iova for m in t] == [0x1000, 0x3000, 0x4000, 0x5000, 0x5800, 0x6000]
    t.check()


def test_10_alloc_of_a_map_without_permission_is_invalid_before_any_search(IOVATree):
    """10. `alloc` of a map with `Perm.NONE` raises `InvalidMapError` whether or not a hole
    fits, and (in C) leaves the caller's map untouched. QEMU looks for the hole first: it
    answers `IOVA_ERR_NOMEM` when none fits, and otherwise writes the hole's address into
    `map->iova` before its insert refuses the map with `IOVA_ERR_INVALID`."""
    t = IOVATree()
    t.insert(DMAMap(0, 0, 0xFFFF))
    for iova_last in (0xFFFF, MAX_U64 - 1):  # no hole fits; a hole fits
        with pytest.raises(InvalidMapError):
            t.alloc(0xFFF, perm=Perm.NONE, iova_last=iova_last)
    assert t.maps() == [DMAMap(0, 0, 0xFFFF)]
    t.check()


def test_11_a_permission_outside_qemus_flags_is_invalid(IOVATree, GPATree, VhostIOVATree):
    """11. A map whose permission is none of `IOMMUAccessFlags`' values (a `Perm` outside
    0..3) is refused with `InvalidMapError` by `insert`, `alloc`, `GPATree.insert` and
    `VhostIOVATree`'s allocations, as `IOMMU_NONE` is. QEMU refuses only `IOMMU_NONE`."""
    for perm in (Perm(4), Perm.RW | 8, Perm(7)):
        forged = tuple.__new__(DMAMap, (0x1000, 0x2000, 0xFFF, perm, 0))
        for tree in (IOVATree(), GPATree()):
            with pytest.raises(InvalidMapError):
                tree.insert(forged)
            assert tree.maps() == []
        t = IOVATree()
        with pytest.raises(InvalidMapError):
            t.alloc(0xFFF, perm=perm)
        v = VhostIOVATree(0, 1 << 20, 0x1000)
        with pytest.raises(InvalidMapError):
            v.map_alloc(0xFFF, 0x5000, perm)
        with pytest.raises(InvalidMapError):
            v.map_alloc_gpa(0xFFF, 0x5000, perm)
        assert (t.maps(), v.allocated()) == ([], [])


def test_8_a_wrapping_needle_is_refused(IOVATree, GPATree, VhostIOVATree):
    """8. A wrapping needle given to `find`, `find_iova`, `remove` or their GPA forms raises
    `InvalidMapError`. QEMU compares the wrapped values, so there `find(1, 2**64-1)` can return
    a map and `remove` can remove one."""
    low = DMAMap(0, 0, 0xFFF)
    t = IOVATree([low])
    for call in (t.find, t.find_iova, t.remove, t.find_all, t.find_iova_all):
        with pytest.raises(InvalidMapError):
            call(1, MAX_U64)
    g = GPATree([low])
    for call in (g.find, g.remove, g.find_all):
        with pytest.raises(InvalidMapError):
            call(1, MAX_U64)
    v = VhostIOVATree(0, 0xFFFF_FFFF, 0x1000)
    host, guest = v.map_alloc(0xFFF, 0x1000), v.map_alloc_gpa(0xFFF, 0x1000)
    for call in (v.find_iova, v.find_gpa, v.remove, v.remove_gpa):
        with pytest.raises(InvalidMapError):
            call(MAX_U64, 1)
    # ... while a needle that ends exactly at 2**64-1 is a look-up like any other.
    assert t.find(1, MAX_U64 - 1) == low and g.find(1, MAX_U64 - 1) == low
    assert (t.maps(), g.maps(), v.host_maps(), v.gpa_maps()) == ([low], [low], [host], [guest])


def test_9_gpa_tree_refuses_a_map_whose_iova_side_wraps(GPATree):
    """9. `GPATree` refuses a map whose IOVA side wraps. QEMU's `gpa_tree_insert` checks only
    the translated side."""
    # DMAMap(...) refuses it already, so the map is forged past the constructor's check.
    wrapping = tuple.__new__(DMAMap, (MAX_U64 - 0x10, 0x1000, 0x100, Perm.RW, 0))
    g = GPATree()
    with pytest.raises(InvalidMapError):
        g.insert(wrapping)
    with pytest.raises(InvalidMapError):
        g.update([DMAMap(0, 0, 0xFFF), wrapping])
    assert g.maps() == []
    g.check()


def test_every_deviation_of_the_contract_has_its_test() -> None:
    """The contract says each deviation has a test here: one `test_N_` per numbered item of
    docs/contract.md's "Deviations from QEMU", and none for an item that is not there."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "contract.md").read_text()
    section = page.split("## Deviations from QEMU", 1)[1].split("\n## ", 1)[0]
    items = {int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)}
    tests = {int(n) for n in re.findall(r"^def test_(\d+)_", Path(__file__).read_text(),
                                        re.MULTILINE)}
    assert items == set(range(1, len(items) + 1)) and len(items) >= 9, sorted(items)
    assert tests == items, f"items without a test: {sorted(items - tests)}, " \
        f"tests without an item: {sorted(tests - items)}"
