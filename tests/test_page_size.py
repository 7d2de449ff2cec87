# SPDX-License-Identifier: GPL-2.0-or-later
"""VhostIOVATree's page size (docs/contract.md, VhostIOVATree): the first IOVA handed out is
max(iova_first, page_size), page_size defaults to the host's, as QEMU's
qemu_real_host_page_size(), and must be a power of two."""

from __future__ import annotations

import os
import resource
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from iova_native import DMAMap, InvalidMapError, NoSpaceError, Perm, differential, strategies


def test_default_is_the_host_page_size(VhostIOVATree: Any) -> None:
    page = os.sysconf("SC_PAGESIZE")
    assert page == resource.getpagesize()
    v = VhostIOVATree(0, (1 << 48) - 1)
    assert v.map_alloc(0xFFF, 0x7F00_0000_0000).iova == page
    assert VhostIOVATree(0, (1 << 48) - 1, None).map_alloc_gpa(0, 0x1000).iova == page


@pytest.mark.parametrize("page", [1, 0x1000, 0x4000, 0x10000, 1 << 63])
def test_first_iova_is_the_page_size_or_iova_first(VhostIOVATree: Any, page: int) -> None:
    v = VhostIOVATree(0, (1 << 64) - 1, page)
    assert v.map_alloc(0xFFF, 0x5000) == DMAMap(page, 0x5000, 0xFFF, Perm.RW, 0)
    assert v.allocated()[0].iova == page
    v.check()
    above = VhostIOVATree(page + 0x123, (1 << 64) - 1, page_size=page)
    assert above.map_alloc_gpa(0, 0x9000).iova == page + 0x123


def test_a_64k_page_leaves_the_first_64k_unused(VhostIOVATree: Any) -> None:
    """As QEMU on a 64 KiB-page arm64 or ppc64 host: IOVAs below 0x10000 are never used."""
    v = VhostIOVATree(0x1000, 0x1FFFF, 0x10000)
    assert v.map_alloc(0xFFFF, 0x1000).iova == 0x10000
    with pytest.raises(NoSpaceError):
        v.map_alloc(0, 0x2000)
    with pytest.raises(InvalidMapError, match="below the first usable IOVA 0x10000"):
        VhostIOVATree(0, 0xFFFF, 0x10000)


@pytest.mark.parametrize("bad", [0, 3, 0x1001, 0x3000, (1 << 64) - 1])
def test_a_page_size_that_is_not_a_power_of_two_is_refused(VhostIOVATree: Any, bad: int) -> None:
    with pytest.raises(InvalidMapError, match="page_size=.* is not a power of two"):
        VhostIOVATree(0, (1 << 48) - 1, bad)


@pytest.mark.parametrize("bad", [-1, 1 << 64])
def test_a_page_size_out_of_range_is_refused(VhostIOVATree: Any, bad: int) -> None:
    with pytest.raises(InvalidMapError):
        VhostIOVATree(0, (1 << 48) - 1, bad)


@pytest.mark.parametrize("bad", [4096.0, "4096", b"\x10"])
def test_a_page_size_of_the_wrong_type_is_a_type_error(VhostIOVATree: Any, bad: Any) -> None:
    with pytest.raises(TypeError):
        VhostIOVATree(0, (1 << 48) - 1, bad)


def test_differential_passes_the_page_size_to_both_sides() -> None:
    v = differential.VhostIOVATree(0, (1 << 40) - 1, 0x10000)
    assert v.map_alloc(0xFFF, 0x1000).iova == 0x10000
    with pytest.raises(InvalidMapError):
        differential.VhostIOVATree(0, (1 << 40) - 1, 0x3000)


@pytest.mark.parametrize("page", [1, 0x10000])
def test_copies_and_pickles_keep_the_first_iova(VhostIOVATree: Any, page: int) -> None:
    """A copy hands out IOVAs from the same first address, whatever the host's page size."""
    import copy
    import pickle

    v = VhostIOVATree(0, (1 << 40) - 1, page)
    for clone in (v.copy(), copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert clone == v
        assert clone.map_alloc(0, 0x1000).iova == page


class _Vhost64KPages(strategies.VhostIOVATreeComparison):
    """The side-by-side VhostIOVATree machine on a 64 KiB-page host's tree."""

    page_size = 0x10000


def test_native_and_reference_agree_with_64k_pages() -> None:
    run_state_machine_as_test(_Vhost64KPages,
                              settings=settings(max_examples=40, stateful_step_count=40,
                                                deadline=None))
