# SPDX-License-Identifier: GPL-2.0-or-later
"""The native look-ups' cache of found DMAMaps (native.py, _Tree): a map found is the same
object the next time, and never a map that is no longer stored, also under threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from iova_native import DMAMap, native

PAGE = 0x1000


@pytest.mark.parametrize("cls", [native.IOVATree, native.GPATree])
def test_a_found_map_is_the_same_object_next_time(cls: type) -> None:
    tree = cls([DMAMap(PAGE, 2 * PAGE, PAGE - 1)])
    first = tree.find(PAGE if cls is native.IOVATree else 2 * PAGE)
    assert first == DMAMap(PAGE, 2 * PAGE, PAGE - 1)
    assert tree.find(PAGE + 5 if cls is native.IOVATree else 2 * PAGE + 5) is first


def test_find_iova_shares_the_cache_of_find() -> None:
    tree = native.IOVATree([DMAMap(PAGE, 8 * PAGE, PAGE - 1, id=7)])
    m = tree.find(PAGE)
    assert tree.find_iova(8 * PAGE + 1) is m
    assert tree.find_iova(8 * PAGE + 1, 0, 7) is m
    assert tree.find_iova(8 * PAGE + 1, 0, 8) is None


@pytest.mark.parametrize("cls", [native.IOVATree, native.GPATree])
def test_a_removed_map_is_never_found_again(cls: type) -> None:
    """The entry of a removed map goes with it: a new map under the same key is found."""
    key = 0 if cls is native.IOVATree else 1
    small = DMAMap(PAGE, PAGE, PAGE - 1)
    big = DMAMap(PAGE, PAGE, 2 * PAGE - 1, id=1)
    tree = cls([small])
    assert tree.find(small[key]) == small  # now cached
    assert tree.remove(small[key]) == 1
    assert tree.find(small[key]) is None
    tree.insert(big)
    assert tree.find(small[key]) == big
    assert tree.find(small[key] + PAGE) == big


def test_a_removal_of_many_maps_drops_every_entry() -> None:
    """More maps than the removal's first buffer holds (16)."""
    old = [DMAMap(i * PAGE, i * PAGE, PAGE - 1) for i in range(1, 41)]
    new = [m.replace(translated_addr=m.translated_addr + 0x100000) for m in old]
    tree = native.IOVATree(old)
    assert [tree.find(m.iova) for m in old] == old
    assert tree.remove(PAGE, 40 * PAGE) == 40
    tree.update(new)
    assert [tree.find(m.iova) for m in old] == new
    assert [tree.find_iova(m.translated_addr) for m in new] == new
    tree.check()


@pytest.mark.parametrize("how", ["clear", "close"])
def test_clear_and_close_drop_the_cache(how: str) -> None:
    m = DMAMap(PAGE, PAGE, PAGE - 1)
    tree = native.IOVATree([m])
    assert tree.find(PAGE) == m
    getattr(tree, how)()
    if how == "close":
        with pytest.raises(ValueError):
            tree.find(PAGE)
        return
    assert tree.find(PAGE) is None
    other = m.replace(translated_addr=5 * PAGE)
    tree.insert(other)
    assert tree.find(PAGE) == other


def run_beside(change: Callable[[], None], look: Callable[[], None]) -> None:
    """One thread running ``change`` beside two running ``look``, until all three return."""
    threads = [threading.Thread(target=change)] + [threading.Thread(target=look)
                                                   for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_look_ups_never_see_a_replaced_map_under_threads() -> None:
    """One thread swaps a short and a long map under one key; others look up a byte that only
    the long map covers.  A cache entry left over from the short map would be returned for
    the long one's key: the answer must be the long map or nothing."""
    short = DMAMap(PAGE, PAGE, PAGE - 1)
    long = DMAMap(PAGE, 16 * PAGE, 4 * PAGE - 1)
    tree = native.IOVATree([short])
    stop = threading.Event()
    wrong: list[object] = []

    def swap() -> None:
        for _ in range(3000):
            tree.remove(PAGE)
            tree.insert(long)
            tree.remove(PAGE)
            tree.insert(short)
            tree.find(PAGE)  # caches the short map
        stop.set()

    def look() -> None:
        while not stop.is_set():
            got = tree.find(PAGE + 2 * PAGE)
            if got is not None and got != long:
                wrong.append(got)
            got = tree.find_iova(16 * PAGE + 5)
            if got is not None and got != long:
                wrong.append(got)

    run_beside(swap, look)
    assert wrong == []
    tree.check()


@pytest.mark.parametrize("size", [0, 2 * PAGE])
def test_a_slot_freed_and_taken_by_another_key_is_never_answered_with_the_old_map(
        size: int) -> None:
    """An IOVATree caches by arena slot: the map stored after a removal takes the slot the
    removed map had, under another key.  Its look-ups must find it, not the removed map."""
    old = DMAMap(PAGE, 8 * PAGE, PAGE - 1)
    new = DMAMap(64 * PAGE, 80 * PAGE, 2 * PAGE - 1, id=3)
    tree = native.IOVATree([old])
    assert tree.find(PAGE) == old  # cached under its slot
    assert tree.find_iova(8 * PAGE) == old
    assert tree.remove(PAGE, size) == 1  # one byte, or a range (the entries come in a buffer)
    tree.insert(new)  # the freed slot, another key
    assert tree.find(64 * PAGE) == new
    assert tree.find_iova(80 * PAGE + 5) == new
    assert tree.find_iova(80 * PAGE, 0, 3) == new
    assert tree.find(PAGE) is None
    assert tree.find_iova(8 * PAGE) is None
    tree.check()


def test_look_ups_never_see_the_old_map_of_a_reused_slot_under_threads() -> None:
    """One thread alternates two maps with different keys, which take turns in one arena
    slot; others look each one up by a byte only it covers: the answer must be that map or
    nothing, never the other one."""
    a = DMAMap(PAGE, 16 * PAGE, PAGE - 1)
    b = DMAMap(32 * PAGE, 48 * PAGE, PAGE - 1)
    tree = native.IOVATree([a])
    stop = threading.Event()
    wrong: list[object] = []

    def swap() -> None:
        for _ in range(3000):
            tree.remove(a.iova)
            tree.insert(b)
            tree.find(b.iova)  # caches b under the slot a had
            tree.remove(b.iova)
            tree.insert(a)
            tree.find(a.iova)
        stop.set()

    def look() -> None:
        while not stop.is_set():
            for m in (a, b):
                for got in (tree.find(m.iova + 5), tree.find_iova(m.translated_addr + 5)):
                    if got is not None and got != m:
                        wrong.append(got)

    run_beside(swap, look)
    assert wrong == []
    tree.check()


def test_the_benchmarks_c_churn_leaves_the_cache_true() -> None:
    """bench/overhead.py times removals and inserts from C (ib_time_churn) on a tree whose
    maps the binding has cached by arena slot: each map must get its own slot back, or the
    look-ups timed after it answer other maps."""
    from iova_native._core import ffi, lib

    maps = [DMAMap(i * PAGE, (i + 100) * PAGE, PAGE - 1, id=i) for i in range(1, 41)]
    tree = native.IOVATree(maps)
    assert [tree.find(m.iova) for m in maps] == maps  # every map cached
    batch = maps[5:25]
    words = ffi.new("uint64_t[]", [w for m in batch for w in
                                   (m.iova, m.translated_addr, m.size, int(m.perm), m.id)])
    inserted = ffi.new("int64_t[1]")
    assert lib.ib_time_churn(tree._h, words, len(batch), inserted) >= 0
    assert [tree.find(m.iova) for m in maps] == maps
    assert [tree.find_iova(m.translated_addr) for m in maps] == maps
    tree.check()


def test_a_look_up_at_the_top_of_the_space_does_not_trust_errno(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPATree key in the top 128 bytes of the space comes back from C as IB_TOP with the
    key in errno, which any cffi call made in between (a finalizer freeing another tree, a
    signal handler) overwrites.  The look-up must not decode it from there: a changed errno
    would name another cached map."""
    top = DMAMap(0x1000, (1 << 64) - 1, 0)
    near = DMAMap(0x2000, (1 << 64) - 5, 0)
    tree = native.GPATree([top, near])
    assert tree.find(top.translated_addr) == top  # cached from here on
    assert tree.find(near.translated_addr) == near

    real = native.ffi

    class Clobbered:
        """native's ffi, except that errno reads as another call left it."""

        def __getattr__(self, name: str) -> object:
            return 0 if name == "errno" else getattr(real, name)

    monkeypatch.setattr(native, "ffi", Clobbered())
    assert tree.find(near.translated_addr) == near
    assert tree.find(near.translated_addr, 2) == near
    # A one-byte removal there is answered the same way: its cache entry must go all the same.
    assert tree.remove(near.translated_addr) == 1
    other = near.replace(iova=0x7000, id=9)
    tree.insert(other)
    assert tree.find(other.translated_addr) == other
    assert tree.find(top.translated_addr) == top
    tree.check()
