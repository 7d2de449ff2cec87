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


@pytest.mark.parametrize("backend_name", ["native", "reference"])
def test_size_first_signatures_check_size_first(backend_name: str) -> None:
    """api.py: arguments are checked in signature order.  ``alloc(size, translated_addr)`` and
    ``map_alloc(size, hva)`` checked the address before ``size``."""
    import importlib

    from iova_native import InvalidMapError

    mod = importlib.import_module(f"iova_native.{backend_name}")
    with pytest.raises(InvalidMapError, match="size"):
        mod.IOVATree().alloc(-1, "not an address")
    with pytest.raises(InvalidMapError, match="size"):
        mod.VhostIOVATree(0, 1 << 40).map_alloc(-1, None)
    with pytest.raises(InvalidMapError, match="size"):
        mod.VhostIOVATree(0, 1 << 40).map_alloc_gpa(1 << 64, 1.5)


@pytest.mark.parametrize("backend_name", ["native", "reference"])
@pytest.mark.parametrize("data", [b"\0" * 8, bytearray(16), "ab"])
def test_batch_refuses_bytes_and_text(backend_name: str, data: object) -> None:
    """The reference read ``bytes`` as a sequence of byte values while native refused it; a
    buffer of bytes is not a buffer of uint64, so both raise TypeError."""
    import importlib

    mod = importlib.import_module(f"iova_native.{backend_name}")
    tree = mod.IOVATree()
    with pytest.raises(TypeError):
        tree.to_translated_many(data, missing=0)
    with pytest.raises(TypeError):
        tree.to_iova_many(data, missing=0)
