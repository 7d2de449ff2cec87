"""Regression tests: each bug found once stays found."""

from __future__ import annotations

import gc
from array import array

import pytest

from iova_native import DMAMap, TranslationError

pytest.importorskip("iova_native._core")
from iova_native import native  # noqa: E402


def test_batch_buffer_in_a_collected_cycle_does_not_crash() -> None:
    """A memoryview handed to a batch call, with the TranslationError's traceback kept in a
    reference cycle, crashed the interpreter in a later garbage collection (cffi released the
    view's buffer after the view itself had been cleared)."""
    tree = native.IOVATree()
    tree.insert(DMAMap(0x1000, 0x10000, 0xFFF))
    kept = []
    for _ in range(200):
        addresses = memoryview(array("Q", [0x1000, 0x9000]))
        try:
            tree.to_translated_many(addresses)
        except TranslationError as err:
            cycle: list[object] = [err]
            cycle.append(cycle)  # exception -> traceback -> frame -> cdata, in a cycle
            kept.append(err.address)
        del addresses
    gc.collect()
    assert kept == [0x9000] * 200
    assert list(tree.to_translated_many(memoryview(array("Q", [0x1800])))) == [0x10800]
