# SPDX-License-Identifier: GPL-2.0-or-later
"""The common alloc (first fit over the whole space, defaults) asks C without a word for the
IOVA: C then places the map only where its IOVA crosses back as a plain key, below the top 128
bytes of the space, and otherwise answers IB_TOP storing nothing, and Python asks again with a
word.  These allocations are the ones the bound could get wrong."""

from __future__ import annotations

from typing import Any

import pytest
from iova_native._core import ffi, lib

from iova_native import DMAMap, NoSpaceError, Perm, native, reference

W = 2**64 - 1
TOP = 2**64 - 128  # the first IOVA whose key would read as a code (IB_CODE_MIN)

#: (maps stored, size allocated): the first fit lies below the top bytes, straddles their
#: start, lies inside them, ends at the last byte, or does not exist.
LAYOUTS = [
    pytest.param([(0, TOP - 0x1001)], 0xFFF, id="fit-below-the-top"),
    pytest.param([(0, TOP - 0x11)], 0x1F, id="fit-straddles-the-top"),
    pytest.param([(0, TOP - 1)], 0, id="fit-at-the-first-top-byte"),
    pytest.param([(0, TOP + 9)], 0x3F, id="fit-inside-the-top"),
    pytest.param([(0, W - 1)], 0, id="fit-at-the-last-byte"),
    pytest.param([(0, W - 0x10)], 0xF, id="fit-ends-at-the-last-byte"),
    pytest.param([(0, W - 0x10)], 0x10, id="no-fit"),
    pytest.param([(0, 0xFFF), (0x3000, TOP - 0x3001)], 0x1FFF, id="a-low-hole-fits"),
    pytest.param([(0, 0xFFF), (0x3000, TOP - 0x3001)], 0x2000, id="only-the-top-fits"),
]


def fill(backend: Any, layout: list[tuple[int, int]]) -> Any:
    tree = backend.IOVATree()
    for iova, last in layout:
        tree.insert(DMAMap(iova, 0, last - iova, Perm.RW, 0))
    return tree


def outcome(tree: Any, size: int) -> Any:
    try:
        m = tree.alloc(size, 0xABC000, Perm.RO, 7)
    except NoSpaceError as exc:
        return ("NoSpaceError", str(exc) != "")
    return m


@pytest.mark.parametrize("layout, size", LAYOUTS)
def test_default_allocs_near_the_top_agree_with_the_reference(layout: Any, size: int) -> None:
    trees = [fill(native, layout), fill(reference, layout)]
    answers = [outcome(t, size) for t in trees]
    assert answers[0] == answers[1]
    assert trees[0].maps() == trees[1].maps()
    for t in trees:
        t.check()
    got = answers[0]
    if isinstance(got, DMAMap):
        assert trees[0].find(got.iova) == got and got in trees[0]


@pytest.mark.parametrize("layout, size", LAYOUTS)
def test_without_a_word_c_stores_nothing_it_cannot_answer(layout: Any, size: int) -> None:
    """The call itself: a plain key, or IB_TOP and the tree as it was."""
    with fill(native, layout) as tree:
        before = tree.maps()
        r = lib.ib_tree_alloc_first_key(tree._h, size, 0xABC000, Perm.RO, 7, ffi.NULL)
        if r == lib.IB_TOP:
            assert tree.maps() == before
        else:
            iova = r + 2**64 if r < lib.IB_CODE_MIN else r
            assert 0 <= iova < TOP and iova + size < TOP
            assert len(tree) == len(before) + 1
            assert tree.find(iova) == DMAMap(iova, 0xABC000, size, Perm.RO, 7)
        tree.check()
