# SPDX-License-Identifier: GPL-2.0-or-later
"""One test (at least) per row of the tables in docs/contract.md, with concrete expected values.

Every test that takes a tree fixture runs once per backend (see ``conftest.py``).
"""

from __future__ import annotations

import pickle
from array import array

import pytest

from iova_native import (
    IOVA_ERR_INVALID,
    IOVA_ERR_NOMEM,
    IOVA_ERR_OVERLAP,
    MAX_U64,
    DMAMap,
    InvalidMapError,
    IOVAError,
    NoSpaceError,
    OverlapError,
    Perm,
    TranslationError,
)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def page(iova: int, hva: int, pages: int = 1, perm: Perm = Perm.RW, id: int = 0) -> DMAMap:
    """A map of ``pages`` 4 KiB pages (inclusive size ``pages * 4096 - 1``)."""
    return DMAMap(iova, hva, pages * 4096 - 1, perm, id)


def vhost_state(v):
    return (v.host_maps(), v.gpa_maps(), v.allocated())


# ====================================================================== §3 DMAMap, Perm, errors


class TestPerm:
    def test_values(self):
        assert (int(Perm.NONE), int(Perm.RO), int(Perm.WO), int(Perm.RW)) == (0, 1, 2, 3)
        assert Perm.RO | Perm.WO == Perm.RW
        assert Perm.RW & Perm.WO == Perm.WO
        assert Perm(3) is Perm.RW


class TestDMAMap:
    def test_fields_and_defaults(self):
        m = DMAMap(0x1000, 0x7F00_0000, 0xFFF)
        assert (m.iova, m.translated_addr, m.size, m.perm, m.id) == (
            0x1000,
            0x7F00_0000,
            0xFFF,
            Perm.RW,
            0,
        )
        assert m.perm is Perm.RW

    def test_inclusive_last(self):
        m = DMAMap(0x1000, 0x5000, 0xFFF, Perm.RO, 7)
        assert m.last == 0x1FFF
        assert m.translated_last == 0x5FFF
        one = DMAMap(0x10, 0x20, 0)
        assert one.last == 0x10 and one.translated_last == 0x20

    def test_top_of_address_space(self):
        m = DMAMap(MAX_U64 - 0xFFF, MAX_U64 - 0xFFF, 0xFFF)
        assert m.last == MAX_U64 and m.translated_last == MAX_U64
        whole = DMAMap(0, 0, MAX_U64)
        assert whole.last == MAX_U64

    def test_equality_and_hash(self):
        a = DMAMap(0x1000, 0x2000, 0xFFF, Perm.WO, 3)
        b = DMAMap(0x1000, 0x2000, 0xFFF, Perm.WO, 3)
        assert a == b and hash(a) == hash(b)
        assert len({a, b}) == 1
        for other in (
            DMAMap(0x2000, 0x2000, 0xFFF, Perm.WO, 3),
            DMAMap(0x1000, 0x3000, 0xFFF, Perm.WO, 3),
            DMAMap(0x1000, 0x2000, 0x7FF, Perm.WO, 3),
            DMAMap(0x1000, 0x2000, 0xFFF, Perm.RO, 3),
            DMAMap(0x1000, 0x2000, 0xFFF, Perm.WO, 4),
        ):
            assert a != other

    def test_int_perm_is_normalised(self):
        assert DMAMap(0, 0, 0, 1).perm is Perm.RO
        assert DMAMap(0, 0, 0, 1) == DMAMap(0, 0, 0, Perm.RO)

    def test_repr_is_hex(self):
        m = DMAMap(0x1000, 0x7F00_0000, 0xFFF, Perm.RO, 0x42)
        assert repr(m) == (
            "DMAMap(iova=0x1000, translated_addr=0x7f000000, size=0xfff, perm=Perm.RO, id=0x42)"
        )

    def test_immutable(self):
        m = DMAMap(0x1000, 0x2000, 0xFFF)
        with pytest.raises(AttributeError):
            m.iova = 0  # type: ignore[misc]
        with pytest.raises(TypeError):
            m[0] = 0  # type: ignore[index]
        with pytest.raises(AttributeError):
            m.extra = 1  # type: ignore[attr-defined]
        assert m == DMAMap(0x1000, 0x2000, 0xFFF)

    def test_replace_and_pickle(self):
        m = DMAMap(0x1000, 0x2000, 0xFFF, Perm.RO, 9)
        assert m.replace(iova=0x5000) == DMAMap(0x5000, 0x2000, 0xFFF, Perm.RO, 9)
        assert m == DMAMap(0x1000, 0x2000, 0xFFF, Perm.RO, 9)
        with pytest.raises(InvalidMapError):
            m.replace(size=MAX_U64)
        assert pickle.loads(pickle.dumps(m)) == m

    @pytest.mark.parametrize(
        "args, error",
        [
            ((-1, 0, 0), InvalidMapError),
            ((1 << 64, 0, 0), InvalidMapError),
            ((0, -1, 0), InvalidMapError),
            ((0, 0, 1 << 64), InvalidMapError),
            ((MAX_U64, 0, 1), InvalidMapError),  # IOVA side wraps
            ((0, MAX_U64, 1), InvalidMapError),  # translated side wraps
            ((0, 0, 0, Perm.NONE), InvalidMapError),
            ((0, 0, 0, 4), InvalidMapError),
            ((0, 0, 0, Perm.RW, -1), InvalidMapError),
            ((0, 0, 0, Perm.RW, 1 << 64), InvalidMapError),
            ((0.0, 0, 0), TypeError),
            (("0", 0, 0), TypeError),
            ((None, 0, 0), TypeError),
            ((0, 0, 0, "RW"), TypeError),
        ],
    )
    def test_validation(self, args, error):
        with pytest.raises(error):
            DMAMap(*args)


class TestErrors:
    def test_codes(self):
        assert InvalidMapError.code == IOVA_ERR_INVALID == -1
        assert OverlapError.code == IOVA_ERR_OVERLAP == -2
        assert NoSpaceError.code == IOVA_ERR_NOMEM == -3
        assert InvalidMapError("x").code == -1
        assert OverlapError("x").code == -2
        assert NoSpaceError("x").code == -3

    def test_hierarchy(self):
        for cls in (InvalidMapError, OverlapError, NoSpaceError, TranslationError):
            assert issubclass(cls, IOVAError)
        assert issubclass(InvalidMapError, ValueError)
        assert issubclass(TranslationError, LookupError)
        assert not issubclass(OverlapError, ValueError)
        assert not issubclass(NoSpaceError, ValueError)

    def test_payloads(self):
        m = DMAMap(0x1000, 0, 0xFFF)
        assert OverlapError("o", existing=m).existing == m
        assert TranslationError("t", address=0x1234).address == 0x1234


# =========================================================================== §4 IOVATree


class TestIOVATreeBasics:
    def test_new_is_empty(self, IOVATree):
        t = IOVATree()
        assert len(t) == 0
        assert t.maps() == []
        assert list(t) == []
        assert t.find(0, MAX_U64) is None
        assert t.find_iova(0, MAX_U64) is None
        assert t.closed is False
        t.check()

    def test_repr_mentions_count(self, IOVATree):
        t = IOVATree()
        t.insert(page(0x1000, 0))
        t.insert(page(0x3000, 0))
        t.insert(page(0x5000, 0))
        assert "IOVATree" in repr(t) and "3" in repr(t)

    def test_insert_and_find_inclusive_size(self, IOVATree):
        t = IOVATree()
        m = DMAMap(0x1000, 0x10000, 0xFFF)
        assert t.insert(m) is None
        assert len(t) == 1
        assert t.find(0x1000) == m
        assert t.find(0x1FFF) == m  # the last byte iova + size is covered
        assert t.find(0x2000) is None
        assert t.find(0xFFF) is None
        assert t.find(0xFFF, 1) == m  # [0xfff, 0x1000] touches the first byte
        assert t.find(0, 0xFFE) is None
        # size 0 is one byte
        t.insert(DMAMap(0x2000, 0, 0))
        assert t.find(0x2000) == DMAMap(0x2000, 0, 0)
        assert t.find(0x2001) is None

    def test_adjacent_maps_do_not_overlap(self, IOVATree):
        t = IOVATree()
        t.insert(page(0x1000, 0))
        t.insert(page(0x2000, 0))  # starts right after 0x1fff
        t.insert(page(0x0, 0))  # ends right before 0x1000
        assert [m.iova for m in t] == [0x0, 0x1000, 0x2000]
        t.check()

    def test_insert_overlap(self, IOVATree):
        t = IOVATree()
        a = page(0x1000, 0x10000)
        b = page(0x3000, 0x30000)
        t.insert(a)
        t.insert(b)
        with pytest.raises(OverlapError) as info:
            t.insert(DMAMap(0x1800, 0x90000, 0x2000))  # overlaps a and b
        assert info.value.existing == a  # lowest IOVA hit
        assert info.value.code == -2
        with pytest.raises(OverlapError) as info:
            t.insert(DMAMap(0x3FFF, 0x90000, 0))  # the last byte of b
        assert info.value.existing == b
        with pytest.raises(OverlapError) as info:
            t.insert(DMAMap(0x0, 0x0, MAX_U64))
        assert info.value.existing == a
        assert t.maps() == [a, b]
        t.check()

    def test_insert_same_translated_range_is_allowed(self, IOVATree):
        t = IOVATree()
        t.insert(page(0x1000, 0x7000))
        t.insert(page(0x2000, 0x7000))
        assert len(t) == 2

    def test_insert_needs_a_dmamap(self, IOVATree):
        t = IOVATree()
        for bad in ((0x1000, 0, 0xFFF, 3, 0), None, 0x1000, "map"):
            with pytest.raises(TypeError):
                t.insert(bad)
        assert t.maps() == []

    def test_find_returns_lowest_iova(self, IOVATree):
        t = IOVATree()
        for iova in (0x9000, 0x1000, 0x5000, 0x3000, 0x7000):
            t.insert(page(iova, iova * 16))
        assert t.find(0, MAX_U64) == page(0x1000, 0x10000)
        assert t.find(0x1800, 0x4000) == page(0x1000, 0x10000)
        assert t.find(0x2000, 0x4000) == page(0x3000, 0x30000)
        assert t.find(0x4000, 0xFFF) is None
        assert t.find(0x4000, 0x1000) == page(0x5000, 0x50000)
        assert t.find(0x9FFF, MAX_U64 - 0x9FFF) == page(0x9000, 0x90000)


class TestFindIova:
    HVA = 0x7F12_3456_0000

    def aliased(self, IOVATree):
        """Two GPAs (0x0 and 0x100000) aliasing one HVA page, plus an unrelated map."""
        t = IOVATree()
        t.insert(DMAMap(0x5000, self.HVA, 0xFFF, Perm.RW, 0x10_0000))
        t.insert(DMAMap(0x2000, self.HVA, 0xFFF, Perm.RW, 0x0))
        t.insert(DMAMap(0x9000, 0x1000, 0xFFF, Perm.RO, 0x1000))
        return t

    def test_without_id_lowest_iova(self, IOVATree):
        t = self.aliased(IOVATree)
        assert t.find_iova(self.HVA) == DMAMap(0x2000, self.HVA, 0xFFF, Perm.RW, 0)
        assert t.find_iova(self.HVA + 0xFFF) == DMAMap(0x2000, self.HVA, 0xFFF, Perm.RW, 0)
        assert t.find_iova(self.HVA + 0x1000) is None
        assert t.find_iova(self.HVA - 1) is None
        assert t.find_iova(self.HVA - 1, 1).iova == 0x2000
        assert t.find_iova(0x1800).iova == 0x9000

    def test_with_id(self, IOVATree):
        t = self.aliased(IOVATree)
        assert t.find_iova(self.HVA, 0, 0x10_0000) == DMAMap(
            0x5000, self.HVA, 0xFFF, Perm.RW, 0x10_0000
        )
        assert t.find_iova(self.HVA + 0x800, 0, 0) == DMAMap(0x2000, self.HVA, 0xFFF, Perm.RW, 0)
        assert t.find_iova(self.HVA, 0, id=0x20_0000) is None
        assert t.find_iova(0x1000, 0, id=0) is None
        assert t.find_iova(0x1000, 0, id=0x1000).iova == 0x9000

    def test_range_overlap_not_just_start(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x40000, 0x5000, 0xFFF))
        assert t.find_iova(0x4000, 0xFFF) is None
        assert t.find_iova(0x4000, 0x1000).iova == 0x40000
        assert t.find_iova(0, MAX_U64).iova == 0x40000

    def test_lowest_iova_among_partial_overlaps(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x9000, 0x1000, 0xFFF))  # HVA 0x1000..0x1fff
        t.insert(DMAMap(0x3000, 0x1800, 0xFFF))  # HVA 0x1800..0x27ff
        t.insert(DMAMap(0x1000, 0x2400, 0xFFF))  # HVA 0x2400..0x33ff
        assert t.find_iova(0x1000).iova == 0x9000
        assert t.find_iova(0x1900).iova == 0x3000
        assert t.find_iova(0x1000, 0x1400).iova == 0x1000
        assert t.find_iova(0x2500).iova == 0x1000


class TestTranslate:
    def test_seed_larger_map_wins(self, IOVATree):
        """A 0x3000-byte buffer at 0x1000 over maps of 0x2000 and 0x3000 bytes at that HVA."""
        t = IOVATree()
        t.insert(DMAMap(0x10000, 0x1000, 0x1FFF))
        t.insert(DMAMap(0x20000, 0x1000, 0x2FFF))
        assert t.translate(0x1000, 0x3000) == [(0x20000, 0x3000)]
        # it takes the map reaching furthest even when a shorter one would do
        assert t.translate(0x1000, 0x1000) == [(0x20000, 0x1000)]
        assert t.translate(0x1800, 0x800) == [(0x20800, 0x800)]

    def test_seed_disjoint_regions_and_a_bridge(self, IOVATree):
        """A [0x1000,0x1fff] and B [0x3000,0x3fff] disjoint, C [0x1800,0x37ff] over both."""
        t = IOVATree()
        t.insert(DMAMap(0x10000, 0x1000, 0xFFF))  # A
        t.insert(DMAMap(0x30000, 0x3000, 0xFFF))  # B
        t.insert(DMAMap(0x50000, 0x1800, 0x1FFF))  # C
        assert t.translate(0x1000, 0x3000) == [
            (0x10000, 0x1000),
            (0x50800, 0x1800),
            (0x30800, 0x800),
        ]
        # starting inside C where it reaches further than A
        assert t.translate(0x1800, 0x2000) == [(0x50000, 0x2000)]
        # C alone
        assert t.translate(0x2000, 0x1000) == [(0x50800, 0x1000)]

    def test_seed_hole(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x10000, 0x1000, 0xFFF))
        t.insert(DMAMap(0x30000, 0x3000, 0xFFF))
        with pytest.raises(TranslationError) as info:
            t.translate(0x1000, 0x3000)
        assert info.value.address == 0x2000
        assert isinstance(info.value, LookupError)
        with pytest.raises(TranslationError) as info:
            t.translate(0x800, 0x1000)
        assert info.value.address == 0x800
        with pytest.raises(TranslationError) as info:
            t.translate(0x3000, 0x1001)
        assert info.value.address == 0x4000
        assert t.translate(0x3000, 0x1000) == [(0x30000, 0x1000)]

    def test_length_zero(self, IOVATree):
        t = IOVATree()
        assert t.translate(0x1234, 0) == []
        t.insert(DMAMap(0x10000, 0x1000, 0xFFF))
        assert t.translate(0x1000, 0) == []
        assert t.translate(0x9999, 0) == []

    def test_ties_to_lowest_iova(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x9000, 0x1000, 0xFFF))
        t.insert(DMAMap(0x4000, 0x1000, 0xFFF))
        t.insert(DMAMap(0x6000, 0x1000, 0xFFF))
        assert t.translate(0x1000, 0x1000) == [(0x4000, 0x1000)]

    def test_id_filters_aliases(self, IOVATree):
        hva = 0x7F00_0000_0000
        t = IOVATree()
        t.insert(DMAMap(0x1000, hva, 0xFFF, Perm.RW, 0xA0000))
        t.insert(DMAMap(0x8000, hva, 0x1FFF, Perm.RW, 0xC0000))
        assert t.translate(hva, 0x1000) == [(0x8000, 0x1000)]  # reaches furthest
        assert t.translate(hva, 0x1000, 0xA0000) == [(0x1000, 0x1000)]
        assert t.translate(hva + 0x10, 0x20, id=0xC0000) == [(0x8010, 0x20)]
        with pytest.raises(TranslationError) as info:
            t.translate(hva, 0x1800, 0xA0000)
        assert info.value.address == hva + 0x1000
        with pytest.raises(TranslationError) as info:
            t.translate(hva, 1, 0x12345)
        assert info.value.address == hva

    def test_contiguous_maps_give_one_segment_each(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x1000, 0x1000, 0xFFF))
        t.insert(DMAMap(0x2000, 0x2000, 0xFFF))
        assert t.translate(0x1800, 0x1000) == [(0x1800, 0x800), (0x2000, 0x800)]

    def test_top_of_address_space(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x1000, MAX_U64 - 0xFFF, 0xFFF))
        assert t.translate(MAX_U64 - 0xFFF, 0x1000) == [(0x1000, 0x1000)]
        assert t.translate(MAX_U64, 1) == [(0x1FFF, 1)]
        t.insert(DMAMap(0x8000, MAX_U64 - 0x1FFF, 0xFFF))
        assert t.translate(MAX_U64 - 0x1FFF, 0x2000) == [(0x8000, 0x1000), (0x1000, 0x1000)]


class TestAlloc:
    def test_first_fit(self, IOVATree):
        t = IOVATree()
        a = t.alloc(0xFFF, 0x7F00_0000, Perm.RO, 0x42)
        assert a == DMAMap(0x0, 0x7F00_0000, 0xFFF, Perm.RO, 0x42)
        assert t.find(0) == a
        b = t.alloc(0x1FFF)
        assert b == DMAMap(0x1000, 0, 0x1FFF, Perm.RW, 0)
        t.remove(0x0)
        c = t.alloc(0x7FF)  # reuses the freed low hole
        assert c.iova == 0x0
        d = t.alloc(0xFFF)  # 0x800..0xfff is too small; next hole is after b
        assert d.iova == 0x3000
        assert [m.iova for m in t] == [0x0, 0x1000, 0x3000]
        t.check()

    def test_first_fit_with_iova_begin_and_last(self, IOVATree):
        t = IOVATree()
        assert t.alloc(0xFFF, iova_begin=0x1000).iova == 0x1000
        assert t.alloc(0xFFF, iova_begin=0x1000).iova == 0x2000
        assert t.alloc(0xFFF, iova_begin=0x800, iova_last=0x3FFF).iova == 0x3000
        with pytest.raises(NoSpaceError):
            t.alloc(0xFFF, iova_begin=0x800, iova_last=0x4FFE)
        assert t.alloc(0x7FF, iova_begin=0x800, iova_last=0xFFF).iova == 0x800

    def test_align(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x0, 0, 0x1234))
        assert t.alloc(0xFFF, align=0x1000).iova == 0x2000
        assert t.alloc(0xFF, align=0x10000).iova == 0x10000
        assert t.alloc(0, align=1).iova == 0x1235
        assert t.alloc(0, align=2).iova == 0x1236
        assert t.alloc(0xFFF, iova_begin=0x2001, align=0x1000).iova == 0x3000

    def test_last_fit(self, IOVATree):
        t = IOVATree()
        assert t.alloc(0xFFF, policy="last") == DMAMap(MAX_U64 - 0xFFF, 0, 0xFFF)
        assert t.alloc(0xFFF, policy="last").iova == MAX_U64 - 0x1FFF
        assert t.alloc(0xFFF, iova_last=0xFFFF, policy="last").iova == 0xF000
        assert t.alloc(0xFFF, iova_last=0xFFFF, policy="last").iova == 0xE000
        assert t.alloc(0x17FF, iova_last=0xFFFF, align=0x1000, policy="last").iova == 0xC000
        # [0xc000, 0xd7ff] taken: the highest hole left below 0xe000 is 0xd800..0xdfff
        assert t.alloc(0x7FF, iova_last=0xFFFF, policy="last").iova == 0xD800
        with pytest.raises(NoSpaceError):  # 0xb000..0xbfff is one byte short
            t.alloc(0x1000, iova_begin=0xB000, iova_last=0xFFFF, policy="last")
        assert t.alloc(0x7FF, iova_begin=0xB000, iova_last=0xFFFF, policy="last").iova == 0xB800
        assert t.alloc(0x7FF, iova_begin=0xB000, iova_last=0xFFFF, policy="first").iova == 0xB000
        t.check()

    def test_returned_map_fields(self, IOVATree):
        t = IOVATree()
        m = t.alloc(0x3FFF, translated_addr=0xABC000, perm=Perm.WO, id=0x99, iova_begin=0x5000)
        assert m == DMAMap(0x5000, 0xABC000, 0x3FFF, Perm.WO, 0x99)
        assert t.maps() == [m]
        assert t.find_iova(0xABC000, 0, 0x99) == m

    def test_no_space(self, IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x1000, 0, 0xFFF))
        before = t.maps()
        with pytest.raises(NoSpaceError) as info:
            t.alloc(0xFFF, iova_begin=0x1000, iova_last=0x1FFF)
        assert info.value.code == -3
        with pytest.raises(NoSpaceError):
            t.alloc(0x1000, iova_last=0x1FFF)
        with pytest.raises(NoSpaceError):
            t.alloc(0xFFF, iova_begin=0x800, iova_last=0x27FF, policy="last")
        with pytest.raises(NoSpaceError):
            t.alloc(0xFFF, iova_begin=1, iova_last=0xFFFF, align=1 << 63)
        assert t.maps() == before

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"iova_begin": 0x2000, "iova_last": 0x1FFF},
            {"align": 0},
            {"align": 3},
            {"align": 0x1800},
            {"policy": "middle"},
            {"perm": Perm.NONE},
            {"translated_addr": MAX_U64},
        ],
    )
    def test_invalid(self, IOVATree, kwargs):
        t = IOVATree()
        t.insert(DMAMap(0x1000, 0, 0xFFF))
        with pytest.raises(InvalidMapError):
            t.alloc(0xFFF, **kwargs)
        assert t.maps() == [DMAMap(0x1000, 0, 0xFFF)]


class TestRemove:
    def test_counts(self, IOVATree):
        t = IOVATree()
        for iova in (0x1000, 0x3000, 0x5000, 0x7000):
            t.insert(page(iova, iova))
        assert t.remove(0x1800, 0x2000) == 2  # 0x1800..0x3800 hits 0x1000 and 0x3000
        assert [m.iova for m in t] == [0x5000, 0x7000]
        assert t.remove(0x9000) == 0
        assert t.remove(0x4FFF) == 0
        assert t.remove(0x5FFF) == 1
        assert t.remove(0, MAX_U64) == 1
        assert len(t) == 0
        assert t.remove(0, MAX_U64) == 0

    def test_remove_exact_then_reinsert(self, IOVATree):
        t = IOVATree()
        m = page(0x4000, 0x1000, 4)
        t.insert(m)
        assert t.remove(m.iova, m.size) == 1
        assert t.find(0x4000, 0x3FFF) is None
        t.insert(m)
        assert t.maps() == [m]


class TestListing:
    def test_len_iter_maps_in_iova_order(self, IOVATree):
        t = IOVATree()
        order = [0x7000, 0x1000, 0xF000, 0x3000, 0xB000]
        for i, iova in enumerate(order):
            t.insert(DMAMap(iova, 0x100000 * i, 0xFFF, Perm.RO, i))
        expected = sorted(
            (DMAMap(iova, 0x100000 * i, 0xFFF, Perm.RO, i) for i, iova in enumerate(order)),
            key=lambda m: m.iova,
        )
        assert len(t) == 5
        assert list(t) == expected
        assert t.maps() == expected
        assert isinstance(t.maps(), list)

    def test_clear(self, IOVATree):
        t = IOVATree()
        for iova in (0x1000, 0x3000):
            t.insert(page(iova, 0))
        assert t.clear() is None
        assert len(t) == 0 and t.maps() == [] and t.find(0, MAX_U64) is None
        t.insert(page(0x1000, 0))
        assert len(t) == 1
        t.check()

    def test_returned_maps_are_copies(self, IOVATree):
        t = IOVATree()
        a = t.alloc(0xFFF, 0x5000, Perm.RO, 1)
        t.insert(page(0x8000, 0x6000))
        found = t.find(0x8000)
        listed = t.maps()
        t.remove(0, MAX_U64)
        t.insert(DMAMap(0x0, 0x9999, 0x10))
        assert a == DMAMap(0, 0x5000, 0xFFF, Perm.RO, 1)
        assert (a.iova, a.translated_addr, a.size, a.perm, a.id) == (0, 0x5000, 0xFFF, Perm.RO, 1)
        assert found == page(0x8000, 0x6000)
        assert listed == [DMAMap(0, 0x5000, 0xFFF, Perm.RO, 1), page(0x8000, 0x6000)]
        t.close()
        assert found.translated_addr == 0x6000

    def test_check_passes(self, IOVATree):
        t = IOVATree()
        t.check()
        for i in range(64):
            t.alloc(i * 0x10, i * 0x1000, Perm.RW, i % 3, align=0x1000)
        t.check()
        t.remove(0x5000, 0x10000)
        t.check()


class TestIterationWhileMutating:
    @pytest.mark.parametrize(
        "mutate",
        [
            lambda t: t.insert(page(0x100000, 0)),
            lambda t: t.remove(0x1000),
            lambda t: t.alloc(0xFFF),
            lambda t: t.clear(),
        ],
        ids=["insert", "remove", "alloc", "clear"],
    )
    def test_runtime_error(self, IOVATree, mutate):
        t = IOVATree()
        for iova in (0x1000, 0x3000, 0x5000):
            t.insert(page(iova, 0))
        it = iter(t)
        assert next(it) == page(0x1000, 0)
        mutate(t)
        with pytest.raises(RuntimeError):
            next(it)

    def test_failed_call_does_not_invalidate(self, IOVATree):
        t = IOVATree()
        for iova in (0x1000, 0x3000):
            t.insert(page(iova, 0))
        it = iter(t)
        assert next(it) == page(0x1000, 0)
        with pytest.raises(OverlapError):
            t.insert(page(0x1000, 0))
        assert t.find(0x3000) == page(0x3000, 0)
        assert next(it) == page(0x3000, 0)
        with pytest.raises(StopIteration):
            next(it)

    def test_reads_do_not_invalidate(self, IOVATree):
        t = IOVATree()
        for iova in (0x1000, 0x3000, 0x5000):
            t.insert(page(iova, iova))
        seen = []
        for m in t:
            seen.append(m.iova)
            assert t.find(m.iova) == m
            assert t.find_iova(m.translated_addr) == m
            assert len(t) == 3
        assert seen == [0x1000, 0x3000, 0x5000]


class TestCloseAndContext:
    def test_close(self, IOVATree):
        t = IOVATree()
        t.insert(page(0x1000, 0))
        assert t.close() is None
        assert t.closed is True
        t.close()  # idempotent
        assert t.closed is True
        calls = [
            lambda: t.insert(page(0x9000, 0)),
            lambda: t.find(0x1000),
            lambda: t.find_iova(0),
            lambda: t.translate(0, 1),
            lambda: t.alloc(0xFFF),
            lambda: t.remove(0x1000),
            lambda: t.to_translated_many([0x1000]),
            lambda: t.to_iova_many([0]),
            lambda: len(t),
            lambda: iter(t),
            lambda: t.maps(),
            lambda: t.clear(),
            lambda: t.check(),
        ]
        for call in calls:
            with pytest.raises(ValueError) as info:
                call()
            assert not isinstance(info.value, IOVAError)
        assert "closed" in repr(t)

    def test_context_manager(self, IOVATree):
        with IOVATree() as t:
            assert t.closed is False
            t.insert(page(0x1000, 0))
            assert len(t) == 1
        assert t.closed is True
        with pytest.raises(ValueError):
            t.find(0x1000)

    def test_context_manager_closes_on_error(self, IOVATree):
        with pytest.raises(KeyError):
            with IOVATree() as t:
                raise KeyError("boom")
        assert t.closed is True

    def test_iterator_after_close(self, IOVATree):
        t = IOVATree()
        t.insert(page(0x1000, 0))
        t.insert(page(0x2000, 0))
        it = iter(t)
        next(it)
        t.close()
        with pytest.raises((ValueError, RuntimeError)):
            next(it)


class TestBatch:
    @staticmethod
    def tree(IOVATree):
        t = IOVATree()
        t.insert(DMAMap(0x1000, 0x7F00_0000, 0xFFF, Perm.RW, 1))
        t.insert(DMAMap(0x5000, 0x7F00_0000, 0xFFF, Perm.RW, 2))
        t.insert(DMAMap(0x9000, 0x9000_0000, 0x1FFF, Perm.RO, 3))
        return t

    IOVAS = [0x1000, 0x1FFF, 0x5010, 0x9000, 0xAFFF]
    TRANSLATED = [0x7F00_0000, 0x7F00_0FFF, 0x7F00_0010, 0x9000_0000, 0x9000_1FFF]

    @pytest.mark.parametrize("kind", ["list", "tuple", "generator", "array", "memoryview"])
    def test_to_translated_many(self, IOVATree, kind):
        t = self.tree(IOVATree)
        data = {
            "list": list(self.IOVAS),
            "tuple": tuple(self.IOVAS),
            "generator": (x for x in self.IOVAS),
            "array": array("Q", self.IOVAS),
            "memoryview": memoryview(array("Q", self.IOVAS)),
        }[kind]
        out = t.to_translated_many(data)
        assert isinstance(out, array) and out.typecode == "Q"
        assert list(out) == self.TRANSLATED

    def test_to_translated_many_numpy(self, IOVATree):
        np = pytest.importorskip("numpy")
        t = self.tree(IOVATree)
        out = t.to_translated_many(np.array(self.IOVAS, dtype=np.uint64))
        assert isinstance(out, array) and out.typecode == "Q"
        assert list(out) == self.TRANSLATED
        assert list(t.to_iova_many(np.array([0x7F00_0008], dtype=np.uint64))) == [0x1008]

    def test_to_translated_many_empty(self, IOVATree):
        t = self.tree(IOVATree)
        assert list(t.to_translated_many([])) == []
        assert list(t.to_iova_many(array("Q"))) == []

    def test_to_translated_many_missing(self, IOVATree):
        t = self.tree(IOVATree)
        with pytest.raises(TranslationError) as info:
            t.to_translated_many([0x1000, 0x3000, 0x4000])
        assert info.value.address == 0x3000
        out = t.to_translated_many([0x1000, 0x3000, 0x9001, 0x0], missing=MAX_U64)
        assert list(out) == [0x7F00_0000, MAX_U64, 0x9000_0001, MAX_U64]
        assert list(t.to_translated_many([0x3000], missing=0)) == [0]

    def test_to_iova_many_with_and_without_id(self, IOVATree):
        t = self.tree(IOVATree)
        addrs = [0x7F00_0000, 0x7F00_0ABC, 0x9000_1000]
        assert list(t.to_iova_many(addrs)) == [0x1000, 0x1ABC, 0xA000]
        assert list(t.to_iova_many(array("Q", addrs[:2]), id=2)) == [0x5000, 0x5ABC]
        with pytest.raises(TranslationError) as info:
            t.to_iova_many(addrs, 2)
        assert info.value.address == 0x9000_1000
        assert list(t.to_iova_many(addrs, id=2, missing=7)) == [0x5000, 0x5ABC, 7]
        assert list(t.to_iova_many(memoryview(array("Q", [0x9000_0000, 1])), missing=0)) == [
            0x9000,
            0,
        ]

    def test_matches_scalar_lookups(self, IOVATree):
        t = self.tree(IOVATree)
        addrs = list(range(0x7F00_0000 - 2, 0x7F00_1002, 0x101))
        expected = []
        for a in addrs:
            m = t.find_iova(a)
            expected.append(0xDEAD if m is None else m.iova + a - m.translated_addr)
        assert list(t.to_iova_many(addrs, missing=0xDEAD)) == expected


# =========================================================================== §5 GPATree


class TestGPATree:
    def test_insert_find_order(self, GPATree):
        t = GPATree()
        a = DMAMap(0x9000, 0x0, 0x9FFFF, Perm.RW, 0x0)
        b = DMAMap(0x1000, 0x100000, 0xFFFF, Perm.RW, 0x100000)
        c = DMAMap(0x5000, 0x200000, 0xFFF, Perm.RO, 0x200000)
        for m in (c, a, b):
            t.insert(m)
        assert len(t) == 3
        assert list(t) == [a, b, c]  # translated order, not IOVA order
        assert t.maps() == [a, b, c]
        assert t.find(0x9FFFF) == a
        assert t.find(0xA0000) is None
        assert t.find(0xA0000, 0x5FFFF) is None
        assert t.find(0xA0000, 0x60000) == b
        assert t.find(0, MAX_U64) == a
        assert t.find(0x10FFFF, 0x100000) == b  # lowest translated address overlapping
        assert t.find(0x200FFF) == c
        t.check()

    def test_overlap_is_on_the_translated_side(self, GPATree):
        t = GPATree()
        a = DMAMap(0x1000, 0x10000, 0xFFF)
        b = DMAMap(0x2000, 0x12000, 0xFFF)
        t.insert(a)
        t.insert(b)
        with pytest.raises(OverlapError) as info:
            t.insert(DMAMap(0x50000, 0x10800, 0x2000))  # GPA overlaps a and b
        assert info.value.existing == a
        with pytest.raises(OverlapError) as info:
            t.insert(DMAMap(0x50000, 0x12FFF, 0))
        assert info.value.existing == b
        assert t.maps() == [a, b]
        t.insert(DMAMap(0x1000, 0x11000, 0xFFF))  # same IOVA, free GPA: fine
        assert len(t) == 3
        with pytest.raises(TypeError):
            t.insert((0x1000, 0x11000, 0xFFF, 3, 0))

    def test_remove_counts(self, GPATree):
        t = GPATree()
        for gpa in (0x1000, 0x3000, 0x5000):
            t.insert(DMAMap(0x10 * gpa, gpa, 0xFFF))
        assert t.remove(0x1FFF, 0x1001) == 2
        assert [m.translated_addr for m in t] == [0x5000]
        assert t.remove(0x0) == 0
        assert t.remove(0, MAX_U64) == 1
        assert len(t) == 0

    def test_to_iova_many(self, GPATree):
        t = GPATree()
        t.insert(DMAMap(0x1000, 0x0, 0x9FFFF))
        t.insert(DMAMap(0x800000, 0x100000, 0xFFFFF))
        gpas = [0x0, 0x9FFFF, 0x100000, 0x1FFFFF]
        assert list(t.to_iova_many(gpas)) == [0x1000, 0xA0FFF, 0x800000, 0x8FFFFF]
        assert list(t.to_iova_many(array("Q", gpas))) == [0x1000, 0xA0FFF, 0x800000, 0x8FFFFF]
        with pytest.raises(TranslationError) as info:
            t.to_iova_many([0x0, 0xA0000, 0x200000])
        assert info.value.address == 0xA0000
        assert list(t.to_iova_many([0xA0000, 0x5], missing=1)) == [1, 0x1005]

    def test_iteration_while_mutating(self, GPATree):
        t = GPATree()
        t.insert(DMAMap(0x1000, 0x1000, 0xFFF))
        t.insert(DMAMap(0x2000, 0x2000, 0xFFF))
        it = iter(t)
        next(it)
        t.remove(0x2000)
        with pytest.raises(RuntimeError):
            next(it)

    def test_clear_close_context(self, GPATree):
        with GPATree() as t:
            t.insert(DMAMap(0x1000, 0x1000, 0xFFF))
            t.clear()
            assert len(t) == 0 and t.maps() == []
            t.insert(DMAMap(0x1000, 0x1000, 0xFFF))
            t.check()
        assert t.closed is True
        t.close()
        for call in (
            lambda: t.insert(DMAMap(0, 0, 0)),
            lambda: t.find(0),
            lambda: t.remove(0),
            lambda: t.to_iova_many([0]),
            lambda: len(t),
            lambda: iter(t),
            lambda: t.maps(),
            lambda: t.clear(),
            lambda: t.check(),
        ):
            with pytest.raises(ValueError):
                call()


# =========================================================================== §6 VhostIOVATree


class TestVhostIOVATree:
    def test_realistic_svq(self, VhostIOVATree):
        """Guest RAM below and above 4 GiB, one RAM page aliased at two GPAs, and SVQ vrings and
        control-queue buffers mapped and unmapped many times."""
        v = VhostIOVATree(0, (1 << 40) - 1)
        ram_hva = 0x7F00_0000_0000
        # the memory listener: RAM below the PCI hole, split by the legacy VGA window, and above
        low0 = v.map_alloc_gpa(0x9FFFF, 0x0)
        low1 = v.map_alloc_gpa(0x7FEF_FFFF, 0x10_0000)
        high = v.map_alloc_gpa(0x7FFF_FFFF, 0x1_0000_0000)
        assert low0 == DMAMap(0x1000, 0x0, 0x9FFFF, Perm.RW, 0x0)
        assert low1 == DMAMap(0xA1000, 0x10_0000, 0x7FEF_FFFF, Perm.RW, 0x10_0000)
        assert high == DMAMap(0x7FFA_1000, 0x1_0000_0000, 0x7FFF_FFFF, Perm.RW, 0x1_0000_0000)
        # one RAM page that the guest also sees at a second GPA (an alias region)
        alias = v.map_alloc_gpa(0xFFF, 0xFEDA_0000, Perm.RO)
        assert alias == DMAMap(0xFFFA_1000, 0xFEDA_0000, 0xFFF, Perm.RO, 0xFEDA_0000)
        v.check()

        # SVQ vrings: host-only memory
        vring_hva = 0x7F80_0000_0000
        avail = v.map_alloc(0x3FFF, vring_hva, Perm.RO)
        used = v.map_alloc(0x3FFF, vring_hva + 0x4000, Perm.RW)
        assert avail == DMAMap(0xFFFA_2000, vring_hva, 0x3FFF, Perm.RO, 0)
        assert used == DMAMap(0xFFFA_6000, vring_hva + 0x4000, 0x3FFF, Perm.RW, 0)
        assert len(v) == 6
        assert v.find_iova(vring_hva + 0x10) == avail
        assert v.find_iova(vring_hva + 0x4000, 0x10) == used
        assert v.find_iova(ram_hva) is None  # guest RAM is not in the host-only tree
        assert v.find_gpa(0xFEDA_0010) == alias
        assert v.find_gpa(0x1_2345_6789) == high
        assert v.find_gpa(0xA0000) is None  # the VGA hole

        # a guest buffer at GPA 0x10_0ff0 spanning into the next page, and one at the alias
        assert v.translate(ram_hva + 0x10_0FF0, 0x20, gpa=0x10_0FF0) == [(0xA1FF0, 0x20)]
        assert v.translate(ram_hva + 0xC0000, 0x10, gpa=0xFEDA_0FF0) == [(0xFFFA_1FF0, 0x10)]
        with pytest.raises(TranslationError) as info:
            v.translate(ram_hva, 0x20, gpa=0x9FFF0)  # runs into the VGA hole
        assert info.value.address == 0xA0000
        # the whole of low RAM: the VGA window is a hole in the GPA space
        with pytest.raises(TranslationError) as info:
            v.translate(ram_hva, 0x8000_0000, gpa=0x0)
        assert info.value.address == 0xA0000
        assert v.translate(ram_hva, 0xA0000, gpa=0x0) == [(0x1000, 0xA0000)]
        assert v.translate(ram_hva, 0x7FF0_0000, gpa=0x10_0000) == [(0xA1000, 0x7FF0_0000)]

        # control-queue buffers: mapped and unmapped around every command
        cvq_hva = 0x7F90_0000_0000
        for i in range(50):
            out = v.map_alloc(0xFFF, cvq_hva, Perm.RO)
            inb = v.map_alloc(0xFFF, cvq_hva + 0x1000, Perm.WO)
            assert out == DMAMap(0xFFFA_A000, cvq_hva, 0xFFF, Perm.RO, 0)
            assert inb == DMAMap(0xFFFA_B000, cvq_hva + 0x1000, 0xFFF, Perm.WO, 0)
            assert v.translate(cvq_hva + i, 0x100) == [(0xFFFA_A000 + i, 0x100)]
            assert v.translate(cvq_hva + 0xF00, 0x200) == [
                (0xFFFA_AF00, 0x100),
                (0xFFFA_B000, 0x100),
            ]
            assert list(v.to_iova_many([cvq_hva, cvq_hva + 0x1FFF])) == [0xFFFA_A000, 0xFFFA_BFFF]
            assert len(v) == 8
            v.check()
            assert v.remove(out.iova, out.size) == 1
            assert v.remove(inb.iova) == 1
            assert v.find_iova(cvq_hva) is None
        assert len(v.allocated()) == 6
        assert list(v.gpa_to_iova_many([0x0, 0x10_0000, 0x1_0000_0000, 0xFEDA_0FFF])) == [
            0x1000,
            0xA1000,
            0x7FFA_1000,
            0xFFFA_1FFF,
        ]

        # the device is reset: vrings go, guest memory is unmapped by the listener
        assert v.remove(avail.iova, used.last - avail.iova) == 2
        assert v.remove_gpa(0x0, 0xFFFF_FFFF) == 3  # low0, low1 and the alias below 4 GiB
        assert v.gpa_maps() == [high]
        assert v.host_maps() == []
        assert v.allocated() == [DMAMap(high.iova, 0, high.size, Perm.RW, 0)]
        # freed IOVA space is reused from the bottom
        assert v.map_alloc(0xFFF, vring_hva).iova == 0x1000
        v.check()
        v.close()
        assert v.closed

    def test_listings(self, VhostIOVATree):
        v = VhostIOVATree(0x10000, 0xFFFF_FFFF)
        g2 = v.map_alloc_gpa(0xFFF, 0x200000)
        h1 = v.map_alloc(0x1FFF, 0x7000_0000, Perm.RO)
        g1 = v.map_alloc_gpa(0xFFF, 0x100000, Perm.WO)
        assert g2 == DMAMap(0x10000, 0x200000, 0xFFF, Perm.RW, 0x200000)
        assert h1 == DMAMap(0x11000, 0x7000_0000, 0x1FFF, Perm.RO, 0)
        assert g1 == DMAMap(0x13000, 0x100000, 0xFFF, Perm.WO, 0x100000)
        assert len(v) == 3
        assert v.host_maps() == [h1]
        assert v.gpa_maps() == [g1, g2]  # GPA order
        assert v.allocated() == [  # IOVA order, IOVA-only
            DMAMap(0x10000, 0, 0xFFF, Perm.RW, 0),
            DMAMap(0x11000, 0, 0x1FFF, Perm.RO, 0),
            DMAMap(0x13000, 0, 0xFFF, Perm.WO, 0),
        ]
        v.check()
        v.clear()
        assert vhost_state(v) == ([], [], [])
        assert len(v) == 0
        assert v.map_alloc(0, 0).iova == 0x10000
        v.check()

    def test_iova_first_below_4096_is_raised(self, VhostIOVATree):
        for first in (0, 1, 0xFFF):
            v = VhostIOVATree(first, 0xFFFF)
            assert v.map_alloc(0xFFF, 0x1000).iova == 0x1000
            assert v.allocated()[0].iova == 0x1000
        v = VhostIOVATree(0x1001, 0xFFFF)
        assert v.map_alloc(0, 0x1000).iova == 0x1001
        v = VhostIOVATree(0, 0x1000)  # exactly one usable byte
        assert v.map_alloc(0, 0x5000) == DMAMap(0x1000, 0x5000, 0, Perm.RW, 0)
        with pytest.raises(NoSpaceError):
            v.map_alloc(0, 0x6000)
        with pytest.raises(InvalidMapError):
            VhostIOVATree(0, 0xFFF)
        with pytest.raises(InvalidMapError):
            VhostIOVATree(0x3000, 0x2FFF)

    def test_no_space_and_iova_last(self, VhostIOVATree):
        v = VhostIOVATree(0, 0x2FFF)
        a = v.map_alloc(0xFFF, 0x1000)
        b = v.map_alloc_gpa(0xFFF, 0x5000)
        assert (a.iova, b.iova) == (0x1000, 0x2000)
        before = vhost_state(v)
        with pytest.raises(NoSpaceError):
            v.map_alloc(0, 0x1000)
        with pytest.raises(NoSpaceError):
            v.map_alloc_gpa(0, 0x9000)
        with pytest.raises(NoSpaceError):  # NoSpaceError wins over the taken GPA range
            v.map_alloc_gpa(0, 0x5000)
        assert vhost_state(v) == before
        v.check()

    def test_map_alloc_gpa_rolls_back(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        g = v.map_alloc_gpa(0x1FFF, 0x10000)
        h = v.map_alloc(0xFFF, 0x7000_0000)
        before = vhost_state(v)
        with pytest.raises(OverlapError) as info:
            v.map_alloc_gpa(0xFFF, 0x11000)
        assert info.value.existing == g
        assert info.value.code == -2
        with pytest.raises(OverlapError):
            v.map_alloc_gpa(0x10000, 0x0)  # its last byte is g's first
        assert vhost_state(v) == before
        assert v.allocated() == [
            DMAMap(0x1000, 0, 0x1FFF, Perm.RW, 0),
            DMAMap(0x3000, 0, 0xFFF, Perm.RW, 0),
        ]
        v.check()
        # the rolled-back range is handed out again
        assert v.map_alloc_gpa(0xFFF, 0x20000).iova == 0x4000
        assert h in v.host_maps()

    def test_remove_only_host_maps(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        g = v.map_alloc_gpa(0xFFF, 0x0)
        h1 = v.map_alloc(0xFFF, 0x7000_0000)
        h2 = v.map_alloc(0xFFF, 0x7000_1000)
        assert v.remove(0, MAX_U64 - 1) == 2  # g's IOVA range is in there too, it stays
        assert v.host_maps() == []
        assert v.gpa_maps() == [g]
        assert v.allocated() == [DMAMap(g.iova, 0, g.size, Perm.RW, 0)]
        assert v.remove(g.iova) == 0
        assert (h1.iova, h2.iova) == (0x2000, 0x3000)
        v.check()

    def test_remove_gpa_frees_the_allocation(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        g1 = v.map_alloc_gpa(0xFFF, 0x100000)
        g2 = v.map_alloc_gpa(0xFFF, 0x200000)
        h = v.map_alloc(0xFFF, 0x7000_0000)
        assert v.remove_gpa(0x100000) == 1
        assert v.gpa_maps() == [g2]
        assert v.allocated() == [
            DMAMap(g2.iova, 0, 0xFFF, Perm.RW, 0),
            DMAMap(h.iova, 0, 0xFFF, Perm.RW, 0),
        ]
        assert v.find_gpa(0x100000) is None
        assert v.map_alloc(0xFFF, 0x7100_0000).iova == g1.iova  # reused
        assert v.remove_gpa(0x0, 0x1FFFFF) == 0
        assert v.remove_gpa(0x200FFF, 0x10) == 1
        assert v.gpa_maps() == []
        v.check()

    def test_find_iova_lowest_among_host_aliases(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        a = v.map_alloc(0x1FFF, 0x7000_0000)
        b = v.map_alloc(0xFFF, 0x7000_1000)
        assert v.find_iova(0x7000_1000) == a
        v.remove(a.iova)
        assert v.find_iova(0x7000_1000) == b
        assert v.find_iova(0x7000_0000) is None
        assert v.find_iova(0x7000_0000, 0x1000) == b

    def test_translate_host_and_gpa(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        g1 = v.map_alloc_gpa(0xFFF, 0x10000)  # iova 0x1000
        g2 = v.map_alloc_gpa(0xFFF, 0x11000)  # iova 0x2000, contiguous GPA
        h = v.map_alloc(0xFFF, 0x7000_0000)  # iova 0x3000
        assert (g1.iova, g2.iova, h.iova) == (0x1000, 0x2000, 0x3000)
        assert v.translate(0x7000_0800, 0x100) == [(0x3800, 0x100)]
        assert v.translate(0x7000_0800, 0x100, gpa=0x10F80) == [(0x1F80, 0x80), (0x2000, 0x80)]
        assert v.translate(0x7000_0800, 0) == []
        assert v.translate(0x7000_0800, 0, gpa=0x5) == []
        with pytest.raises(TranslationError) as info:
            v.translate(0x7000_0800, 0x1000)
        assert info.value.address == 0x7000_1000
        with pytest.raises(TranslationError) as info:
            v.translate(0x7000_0800, 0x2000, gpa=0x10800)
        assert info.value.address == 0x12000
        with pytest.raises(TranslationError) as info:
            v.translate(0x10000, 0x10)  # a GPA is not an HVA
        assert info.value.address == 0x10000

    def test_batch(self, VhostIOVATree):
        v = VhostIOVATree(0, 0xFFFF_FFFF)
        v.map_alloc_gpa(0xFFF, 0x10000)
        v.map_alloc(0xFFF, 0x7000_0000)
        assert list(v.to_iova_many([0x7000_0000, 0x7000_0FFF])) == [0x2000, 0x2FFF]
        assert list(v.gpa_to_iova_many(array("Q", [0x10000, 0x10ABC]))) == [0x1000, 0x1ABC]
        with pytest.raises(TranslationError) as info:
            v.to_iova_many([0x7000_0000, 0x10000])
        assert info.value.address == 0x10000
        with pytest.raises(TranslationError) as info:
            v.gpa_to_iova_many([0x7000_0000])
        assert info.value.address == 0x7000_0000
        assert list(v.to_iova_many([0x10000], missing=0)) == [0]
        assert list(v.gpa_to_iova_many([0x11000, 0x10001], missing=5)) == [5, 0x1001]

    def test_close_and_context(self, VhostIOVATree):
        with VhostIOVATree(0, 0xFFFF_FFFF) as v:
            v.map_alloc(0xFFF, 0x1000)
            assert len(v) == 1
        assert v.closed
        v.close()
        for call in (
            lambda: v.map_alloc(0xFFF, 0),
            lambda: v.map_alloc_gpa(0xFFF, 0),
            lambda: v.find_iova(0),
            lambda: v.find_gpa(0),
            lambda: v.remove(0),
            lambda: v.remove_gpa(0),
            lambda: v.translate(0, 1),
            lambda: v.to_iova_many([0]),
            lambda: v.gpa_to_iova_many([0]),
            lambda: len(v),
            lambda: v.host_maps(),
            lambda: v.gpa_maps(),
            lambda: v.allocated(),
            lambda: v.clear(),
            lambda: v.check(),
        ):
            with pytest.raises(ValueError) as info:
                call()
            assert not isinstance(info.value, IOVAError)
        assert "closed" in repr(v)


# ====================================================================== reference check() itself


class TestReferenceCheckDetectsCorruption:
    """``check()`` of the reference backend must name broken invariants, not just pass."""

    @staticmethod
    def corrupt(t, maps):
        t._store.maps[:] = maps
        t._store.keys[:] = [t._store.first(m) for m in maps]

    def test_iova_tree(self):
        from iova_native import reference

        t = reference.IOVATree()
        a, b = page(0x1000, 0), page(0x3000, 0)
        t.insert(a)
        t.insert(b)
        t.check()
        self.corrupt(t, [b, a])
        with pytest.raises(AssertionError, match="order"):
            t.check()
        self.corrupt(t, [a, DMAMap(0x1800, 0, 0xFFF)])
        with pytest.raises(AssertionError, match="overlap"):
            t.check()
        self.corrupt(t, [DMAMap._trusted((0x1000, MAX_U64, 1, Perm.RW, 0))])
        with pytest.raises(AssertionError, match="wraps"):
            t.check()
        self.corrupt(t, [DMAMap._trusted((0x1000, 0, 1, Perm.NONE, 0))])
        with pytest.raises(AssertionError, match="perm"):
            t.check()
        t._store.keys.append(0)
        with pytest.raises(AssertionError, match="length"):
            t.check()

    def test_gpa_tree_overlap_is_on_the_translated_side(self):
        from iova_native import reference

        t = reference.GPATree()
        self.corrupt(t, [DMAMap(0x9000, 0x1000, 0xFFF), DMAMap(0x1000, 0x1800, 0xFFF)])
        with pytest.raises(AssertionError, match="overlap"):
            t.check()
        self.corrupt(t, [DMAMap(0x1000, 0x1000, 0xFFF), DMAMap(0x1000, 0x2000, 0xFFF)])
        t.check()  # the same IOVA twice is fine in a GPATree

    def test_vhost(self):
        from iova_native import reference

        v = reference.VhostIOVATree(0, 0xFFFF_FFFF)
        g = v.map_alloc_gpa(0xFFF, 0x0)
        h = v.map_alloc(0xFFF, 0x7000_0000)
        v.check()
        v._alloc._store.discard(h.iova, h.last)
        with pytest.raises(AssertionError, match="without an allocation"):
            v.check()
        v._alloc.insert(DMAMap(h.iova, 0, h.size))
        v.check()
        v._alloc.insert(DMAMap(0x8000, 0, 0xFFF))
        with pytest.raises(AssertionError, match="belongs to 0 maps"):
            v.check()
        v._alloc.remove(0x8000)
        v._alloc.insert(DMAMap(0x0, 0, 0xFFF))
        with pytest.raises(AssertionError, match="below iova_first"):
            v.check()
        v._alloc.remove(0x0)
        v._host.insert(DMAMap(g.iova, 0x7100_0000, g.size))  # a second map on g's allocation
        with pytest.raises(AssertionError, match="belongs to 2 maps"):
            v.check()
