# SPDX-License-Identifier: GPL-2.0-or-later
"""Python's IOVATree keeps its index of free IOVA ranges from birth, so that no alloc walks
every map (the contract's promise), the first one included.  The C library's iova_tree_new()
trees build that index at their first alloc instead; iova_tree_keep_holes() is how the binding
opts out of that, and these tests hold it to it on every way a tree comes to be."""

from __future__ import annotations

import copy
import pickle

import pytest
from iova_native._core import lib

from iova_native import DMAMap, native


def _has_holes(tree: native.IOVATree | native.GPATree) -> int:
    return int(lib.ib_tree_has_holes(tree._h))


def _filled(n: int = 500) -> native.IOVATree:
    return native.IOVATree(DMAMap(0x10000 * i + 0x3000, 0x7000 * i, 0xFFF) for i in range(n))


@pytest.mark.parametrize(
    "make",
    [
        native.IOVATree,
        _filled,
        lambda: _filled().copy(),
        lambda: copy.deepcopy(_filled()),
        lambda: pickle.loads(pickle.dumps(_filled())),
    ],
    ids=["new", "maps=", "copy", "deepcopy", "pickle"],
)
def test_every_iova_tree_keeps_its_holes_before_any_alloc(make) -> None:
    tree = make()
    assert _has_holes(tree) == 1
    tree.check()


def test_holes_survive_clear_and_the_first_alloc_after_it_is_logarithmic() -> None:
    tree = _filled()
    tree.clear()
    assert _has_holes(tree) == 1
    tree.update(DMAMap(0x2000 * i, 0, 0xFFF) for i in range(1, 100, 2))
    assert _has_holes(tree) == 1
    assert tree.alloc(0xFFF).iova == 0
    tree.check()


def test_gpa_trees_keep_no_holes() -> None:
    assert _has_holes(native.GPATree()) == 0
