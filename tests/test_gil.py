# SPDX-License-Identifier: GPL-2.0-or-later
"""The calls that keep the GIL (csrc/iova-cffi.h): the ``_try`` functions of iova-binding.h.

Their cffi wrappers skip the GIL's release and errno's save and restore, which is 30 to 60 ns
of every look-up, insert and one-byte removal.  That is safe only because they never wait for a
tree's lock: they answer IB_BUSY when another call holds it, and the Python side then asks a
form that waits with the GIL released.  These tests hold each part to it: the wrappers do keep
the GIL, each ``_try`` function answers IB_BUSY instead of waiting, and every method answers
right (as the reference does) when it finds its tree held by another thread.
"""

from __future__ import annotations

import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from iova_native import DMAMap, OverlapError, Perm, reference

MAX_U64 = (1 << 64) - 1

native = pytest.importorskip("iova_native.native")
from iova_native._core import ffi, lib  # noqa: E402

CDEF = Path(native.__file__).with_name("_cdef.h")
TRY_FUNCTIONS = {
    "ib_tree_find_entry_try", "ib_tree_find_entry_at_try", "ib_tree_find_iova_entry_try",
    "ib_tree_find_iova_entry_at_try", "ib_tree_find_iova_id_entry_try",
    "ib_tree_insert_map_try", "ib_tree_insert_obj_try", "ib_tree_remove_at_try",
    "ib_tree_remove_entries_try",
    "ib_tree_removals_try", "ib_tree_find_map_try", "ib_tree_alloc_key_try",
    "ib_tree_alloc_first_key_try", "ib_spin_try",
}
HOLD_S = 0.15


def test_the_functions_that_keep_the_gil_are_the_ones_that_never_wait() -> None:
    # A function named *_try keeps the GIL whatever it does: one that could wait for a lock
    # would deadlock with the fork hooks.  A new one must be added here on purpose.
    names = set(re.findall(r"\b(\w+_try)\s*\(", CDEF.read_text()))
    assert names == TRY_FUNCTIONS


def other_thread_steps(call: Callable[[], None]) -> int:
    """How many times another Python thread got to run while ``call()`` ran.  The switch
    interval is long, so that this thread, once it runs, is not asked to hand the GIL over
    before ``call()`` returns: only a call that lets go of it lets the other thread run."""
    steps = [0]
    started = threading.Event()
    stop = False

    def count() -> None:
        started.set()
        while not stop:
            steps[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.3)
    worker = threading.Thread(target=count)
    worker.start()
    try:
        started.wait()
        before = steps[0]  # read holding the GIL: the worker is not running now
        call()
        return steps[0] - before
    finally:
        stop = True
        worker.join()
        sys.setswitchinterval(interval)


def test_a_try_wrapper_keeps_the_gil() -> None:
    assert other_thread_steps(lambda: lib.ib_spin_try(50_000_000)) == 0


def test_any_other_wrapper_lets_go_of_it() -> None:
    # The control: the same spin through a wrapper that releases the GIL lets the other
    # thread run (the test above could not fail if no wrapper ever let go).
    for _ in range(5):
        if other_thread_steps(lambda: lib.ib_spin(200_000_000)) > 0:
            return
    pytest.fail("the other thread never ran while a GIL-releasing call spun")


@contextmanager
def held_by_another_thread(tree: Any, seconds: float = 0.0) -> Iterator[None]:
    """The tree's lock held by another thread (as the fork hooks hold it) from entry until
    ``seconds`` later, or until the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        lib.ib_tree_fork_lock(tree._h)
        taken.set()
        release.wait(seconds or None)
        lib.ib_tree_fork_unlock(tree._h)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    try:
        yield
    finally:
        release.set()
        holder.join()


def sample_tree(cls: Any) -> Any:
    return cls([DMAMap(0x1000, 0x10000, 0xFFF, Perm.RW, 7),
                DMAMap(0x3000, 0x20000, 0x1FFF, Perm.RO, 8)])


SPARE_MAP = DMAMap(0x9000, 0x90000, 0xFFF)  # held here, so its id() stays its address
TRY_CALLS: list[tuple[str, Callable[[Any], int]]] = [
    ("find_entry", lambda h: lib.ib_tree_find_entry_try(h, 0x1000, 4)),
    ("find_entry_at", lambda h: lib.ib_tree_find_entry_at_try(h, 0x1000)),
    ("find_iova_entry", lambda h: lib.ib_tree_find_iova_entry_try(h, 0x10000, 4)),
    ("find_iova_entry_at", lambda h: lib.ib_tree_find_iova_entry_at_try(h, 0x10000)),
    ("find_iova_id_entry", lambda h: lib.ib_tree_find_iova_id_entry_try(h, 0x10000, 0, 7)),
    ("insert_map", lambda h: lib.ib_tree_insert_map_try(h, 0x9000, 0x90000, 0xFFF, 3, 0)),
    ("insert_obj", lambda h: lib.ib_tree_insert_obj_try(h, id(SPARE_MAP))),
    ("remove_at", lambda h: lib.ib_tree_remove_at_try(h, 0x3000)),
    ("remove_entries", lambda h: lib.ib_tree_remove_entries_try(h, 0, 0x4000, ffi.NULL, 0)),
    ("removals", lambda h: lib.ib_tree_removals_try(h)),
    ("alloc_key", lambda h: lib.ib_tree_alloc_key_try(h, 0xFFF, 0, 3, 0, 0, MAX_U64, 1, 1,
                                                      ffi.new("uint64_t[1]"))),
    ("alloc_first_key", lambda h: lib.ib_tree_alloc_first_key_try(h, 0xFFF, 0, 3, 0,
                                                                  ffi.new("uint64_t[1]"))),
    ("find_map", lambda h: lib.ib_tree_find_map_try(h, 0, 0x1000, 0, 0, 0,
                                                     ffi.new("uint64_t[6]"))),
    ("find_iova_map", lambda h: lib.ib_tree_find_map_try(h, 1, 0x10000, 0, 1, 7,
                                                          ffi.new("uint64_t[6]"))),
]


@pytest.mark.parametrize("name, call", TRY_CALLS, ids=[n for n, _ in TRY_CALLS])
def test_a_try_function_answers_busy_and_changes_nothing_while_the_tree_is_held(
        name: str, call: Callable[[Any], int]) -> None:
    tree = sample_tree(native.IOVATree)
    before = tree.maps()
    with held_by_another_thread(tree):
        assert call(tree._h) == lib.IB_BUSY
    assert tree.maps() == before
    assert call(tree._h) != lib.IB_BUSY
    tree.check()


def test_a_try_function_on_a_closed_tree_answers_closed() -> None:
    tree = sample_tree(native.IOVATree)
    tree.close()
    for _, call in TRY_CALLS:
        assert call(tree._h) == lib.IB_CLOSED


def uncached(tree: Any) -> Any:
    """``tree`` with its cache of DMAMaps emptied (a native one's): the next look-up fills it."""
    getattr(tree, "_cache", []).clear()
    return tree


IOVA_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("find", lambda t: t.find(0x3004)),
    ("find, a range", lambda t: t.find(0x800, 0x1000)),
    ("find, a miss", lambda t: t.find(0x2000)),
    ("find, not cached", lambda t: uncached(t).find(0x3004)),
    ("find_iova", lambda t: t.find_iova(0x20010)),
    ("find_iova, not cached", lambda t: uncached(t).find_iova(0x20010)),
    ("find_iova, a range", lambda t: t.find_iova(0xF000, 0x2000)),
    ("find_iova, with id", lambda t: t.find_iova(0x10010, 0, 7)),
    ("find_iova, another id", lambda t: t.find_iova(0x10010, 0, 8)),
    ("insert", lambda t: t.insert(DMAMap(0x8000, 0x80000, 0xFFF))),
    ("insert, an overlap", lambda t: t.insert(DMAMap(0x3800, 0x80000, 0xFFF))),
    ("remove", lambda t: t.remove(0x3000)),
    ("remove, a miss", lambda t: t.remove(0x2000)),
    ("remove, a range", lambda t: t.remove(0, 0x4000)),
    ("remove, a range, not cached", lambda t: uncached(t).remove(0, 0x4000)),
]
GPA_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("find", lambda t: t.find(0x20004)),
    ("find, a miss", lambda t: t.find(0x30000)),
    ("find, not cached", lambda t: uncached(t).find(0x20004)),
    ("insert", lambda t: t.insert(DMAMap(0x8000, 0x80000, 0xFFF))),
    ("insert, an overlap", lambda t: t.insert(DMAMap(0x8000, 0x10800, 0xFFF))),
    ("remove", lambda t: t.remove(0x10000)),
    ("remove, a miss", lambda t: t.remove(0x30000)),
    ("remove, a range", lambda t: t.remove(0, 0x30000)),
]


def outcome(call: Callable[[Any], Any], tree: Any) -> Any:
    try:
        return ("answer", call(tree))
    except OverlapError as e:
        return ("OverlapError", e.existing)


def check_waits_and_agrees(cls: str, call: Callable[[Any], Any]) -> None:
    tree = sample_tree(getattr(native, cls))
    twin = sample_tree(getattr(reference, cls))
    # Found once first, so the look-ups below would answer from the cache if they did not ask C.
    for m in twin.maps():
        assert tree.find(m[0] if cls == "IOVATree" else m[1]) == m
    start = time.monotonic()
    with held_by_another_thread(tree, HOLD_S):
        got = outcome(call, tree)
    waited = time.monotonic() - start
    assert got == outcome(call, twin)
    assert waited >= HOLD_S * 0.9, "the call answered while another thread held the tree"
    assert tree.maps() == twin.maps()
    tree.check()


@pytest.mark.parametrize("name, call", IOVA_CALLS, ids=[n for n, _ in IOVA_CALLS])
def test_an_iova_tree_call_waits_for_a_held_tree_and_answers_as_the_reference(
        name: str, call: Callable[[Any], Any]) -> None:
    check_waits_and_agrees("IOVATree", call)


@pytest.mark.parametrize("name, call", GPA_CALLS, ids=[n for n, _ in GPA_CALLS])
def test_a_gpa_tree_call_waits_for_a_held_tree_and_answers_as_the_reference(
        name: str, call: Callable[[Any], Any]) -> None:
    check_waits_and_agrees("GPATree", call)



def test_a_thread_waiting_for_the_cache_lock_gets_it_while_others_churn() -> None:
    """Four threads churn one tree (one-byte and range removals, inserts, look-ups that fill
    the cache) while a fifth removes, inserts and finally closes.  The calls made under the
    binding's cache lock keep the GIL (the _try forms), and the GIL changes hands mostly right
    after such a call, inside the lock: a lock that a waiter could take only while holding
    the GIL (the queue of one token it was) starved the fifth thread for more than ten
    minutes here.  A threading.Lock is taken without the GIL: a second or so."""
    maps = [DMAMap(i * 2 * 0x1000, (1 << 33) + i * 2 * 0x1000, 0xFFF, Perm.RW, i)
            for i in range(400)]
    tree = native.IOVATree(maps)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(k: int) -> None:
        mine = maps[k + 4::4]
        try:
            while not stop.is_set():
                for m in mine:
                    tree.find(m.iova + 5)
                    if k == 3:
                        uncached(tree)  # the others' look-ups fill the cache again and again
                    if k % 2:
                        tree.remove(m.iova, 0xFFF)
                    else:
                        tree.remove(m.iova)
                    tree.find_iova(m.translated_addr)
                    tree.insert(m)
        except ValueError:
            pass  # closed
        except BaseException as exc:  # reported below
            errors.append(exc)

    def fifth() -> None:
        try:
            for m in maps[:4] * 5:
                assert tree.remove(m.iova, 0xFFF) == 1
                tree.insert(m)
                time.sleep(0.001)
        except BaseException as exc:  # reported below
            errors.append(exc)
        tree.close()

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    closer = threading.Thread(target=fifth)
    closer.start()
    closer.join(60)
    starved = closer.is_alive()
    stop.set()  # lets a starved fifth thread through, so that the test ends
    for t in [*threads, closer]:
        t.join()
    assert not errors
    assert not starved, "the fifth thread was starved of the cache lock"
    assert tree.closed


# ------------------------------------------------------------------ the cache, with no lock

A = DMAMap(0x10000, 0x7F0000000000, 0xFFF, Perm.RW, 1)
B = DMAMap(0x40000, 0x7E0000000000, 0xFFF, Perm.RO, 2)  # lands in A's slot once A goes


def overtake_the_next_fill(tree: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the next fill's copy of A and its caching, A goes and B takes its slot."""
    real = native._ib_find_map_try

    def overtaken(h: Any, reverse: int, *args: Any) -> int:
        monkeypatch.setattr(native, "_ib_find_map_try", real)
        answer = int(real(h, reverse, *args))
        assert tree.remove(A.iova) == 1
        tree.insert(B)
        return answer

    monkeypatch.setattr(native, "_ib_find_map_try", overtaken)


def test_a_fill_overtaken_by_a_removal_leaves_no_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal (and an insert into the slot it freed) runs between a fill's copy of a map
    and its caching, as another thread's may.  The removal dropped the entry before the fill
    wrote it, so the fill must notice (the removal count moved) and take it back out: else
    the next look-up of the map now in that slot answers the one removed."""
    tree = native.IOVATree([A])
    overtake_the_next_fill(tree, monkeypatch)
    assert tree.find(A.iova + 4) == A  # what C found when the look-up asked
    assert tree.find(B.iova) == B
    assert tree.find_iova(B.translated_addr) == B
    assert tree.find(A.iova) is None
    tree.check()


def test_a_range_removal_drops_what_a_fill_cached_beside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fill runs to its end while a range removal on an empty cache is under way, before
    the removal's C call: the fill's count check passes, so only the removal can drop the
    entry, which it must, even though the cache was empty when it started."""
    tree = native.IOVATree([A])
    real = native._ib_remove_entries_try

    def beside(h: Any, key: int, size: int, entries: Any, cap: int) -> int:
        monkeypatch.setattr(native, "_ib_remove_entries_try", real)
        assert tree.find(A.iova) == A  # cached now
        return int(real(h, key, size, entries, cap))

    monkeypatch.setattr(native, "_ib_remove_entries_try", beside)
    assert tree.remove(A.iova, A.size) == 1
    tree.insert(B)
    assert tree.find(B.iova) == B
    assert tree.find_iova(B.translated_addr) == B
    tree.check()


@pytest.mark.parametrize("cls", ["IOVATree", "GPATree"])
def test_an_operation_that_raises_still_ends(cls: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal or a fill that raises (here a KeyboardInterrupt in its C call) still ends
    as an operation: later look-ups trust the cache again, and answer from it."""
    tree = getattr(native, cls)([A])
    key = A[0] if cls == "IOVATree" else A[1]

    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    for name, call in [("_ib_remove_at_try", lambda: tree.remove(key)),
                       ("_ib_find_map_try", lambda: tree.find(key))]:
        with monkeypatch.context() as m:
            m.setattr(native, name, interrupted)
            with pytest.raises(KeyboardInterrupt):
                call()
        assert not tree._active
    first = tree.find(key)
    assert first == A and tree.find(key) is first  # the same object: from the cache


class Interrupted(Exception):
    pass


ARMED = [False]


def interrupt(signum: int, frame: Any) -> None:
    if ARMED[0]:
        ARMED[0] = False
        raise Interrupted


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("cls", ["IOVATree", "GPATree"])
def test_interrupts_at_any_instruction_leave_no_operation_half_done(cls: str) -> None:
    """A signal handler that raises, every 20 to 70 microseconds, into a loop of removals
    (one byte and ranges), inserts, fills and look-ups: whichever instruction it lands on,
    no operation's item stays on ``_active`` (look-ups would never trust the cache again) and
    no cached entry is a map the tree does not hold.  3.9 and 3.10 may run the handler inside
    an operation's ``finally`` and keep its item there (the class's comment): there the test
    counts those, and forgets them and the cache before it goes on, as no operation runs
    between two of its loops."""
    maps = [DMAMap(i * 0x2000, (1 << 33) + i * 0x2000, 0xFFF, Perm.RW, i) for i in range(64)]
    tree = getattr(native, cls)(maps)
    key = 0 if cls == "IOVATree" else 1
    rng = random.Random(5)
    interrupted = kept = 0

    def churn() -> None:
        # A function of its own: an exception raised at a loop's jump back is caught by the
        # caller's ``try`` (3.13.0 can miss a ``try`` of the frame that jumps, CPython #108214)
        for _ in range(50):
            m = rng.choice(maps)
            tree.find(m[key] + 8)
            if rng.random() < 0.5:
                tree.remove(m[key])
            else:
                tree.remove(m[key], m.size)
            getattr(tree, "_cache", []).clear() if rng.random() < 0.1 else None
            try:
                tree.insert(m)
            except OverlapError:
                pass

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                try:
                    ARMED[0] = True
                    signal.setitimer(signal.ITIMER_REAL, rng.uniform(20e-6, 70e-6))
                    churn()
                finally:
                    ARMED[0] = False  # (3.9 and 3.10 may raise here: the handler disarms)
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Interrupted:
                interrupted += 1
            if tree._active and sys.version_info < (3, 11):
                kept += 1
                tree._active.clear()
                tree._cache = type(tree._cache)()
    finally:
        ARMED[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert interrupted > 100
    assert tree._active == []
    assert kept < interrupted // 10  # rare even where it can happen
    tree.check()
    stored = tree.maps()
    cache = tree._cache
    for m in cache if type(cache) is list else cache.values():
        assert m is None or m in stored
    for m in stored:
        assert tree.find(m[key]) == m
        assert tree.find(m[key]) is tree.find(m[key])  # trusted: from the cache


def test_a_removal_interrupted_after_its_c_call_leaves_no_stale_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt right after C removed a cached map, before the binding dropped its
    entry: the entry must not outlive the removal (the cache is forgotten instead), or the
    map that takes the slot next would be answered as the removed one."""
    tree = native.IOVATree([A])
    assert tree.find(A.iova) == A  # cached
    real = native._ib_remove_at_try

    def cut_short(h: Any, key: int) -> int:
        real(h, key)
        raise KeyboardInterrupt

    monkeypatch.setattr(native, "_ib_remove_at_try", cut_short)
    with pytest.raises(KeyboardInterrupt):
        tree.remove(A.iova)
    monkeypatch.undo()
    tree.insert(B)
    assert tree.find(B.iova) == B
    assert tree.find_iova(B.translated_addr) == B
    assert tree._active == []


def test_a_fill_interrupted_before_its_check_leaves_no_stale_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal and an insert into the freed slot run between a fill's copy and its caching
    (as in the test above it), and then the fill is interrupted before it checks the removal
    count: its entry must go all the same."""
    tree = native.IOVATree([A])
    def interrupted(h: Any) -> int:
        raise KeyboardInterrupt

    overtake_the_next_fill(tree, monkeypatch)
    monkeypatch.setattr(native, "_ib_removals_try", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tree.find(A.iova)
    monkeypatch.undo()
    assert tree.find(B.iova) == B
    assert tree.find_iova(B.translated_addr) == B
    assert tree._active == []


def test_an_alloc_at_the_top_answers_its_own_iova_whatever_runs_between(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An alloc that places a map in the top 128 bytes of the space (answer IB_TOP) once read
    its IOVA from errno, after the call: a cffi call made in between, by a signal handler or a
    finalizer (here another tree's alloc at the top), changed it, and alloc answered another
    IOVA than the one stored.  C now writes it into a buffer of the call's own."""
    tree, other = native.IOVATree(), native.IOVATree()

    nested = [False]

    def between(real: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any) -> int:
            answer = int(real(*args))
            if not nested[0]:
                nested[0] = True
                other.alloc(0, iova_begin=MAX_U64 - 100, iova_last=MAX_U64)  # its own IB_TOP
                nested[0] = False
            return answer
        return call

    for name in ("_ib_alloc_key_try", "_ib_alloc_key"):  # (the first did not exist before)
        if hasattr(native, name):
            monkeypatch.setattr(native, name, between(getattr(native, name)))
    m = tree.alloc(0, 7, iova_begin=MAX_U64 - 3, iova_last=MAX_U64, policy="last")
    assert m.iova == MAX_U64 and tree.maps() == [m]
    m = tree.alloc(0, 7, iova_begin=MAX_U64 - 3, iova_last=MAX_U64, policy="last")
    assert m.iova == MAX_U64 - 1 and tree.maps()[0] == m


def test_a_removal_s_drop_survives_the_cache_emptied_between_two_entries() -> None:
    """With no lock, a clear() (another thread's at a switch, a finalizer's in this thread)
    can empty the cache list while a range removal drops its entries one by one: the drop
    must go on, not raise IndexError out of remove() after C has removed the maps."""
    tree = native.IOVATree([A, B])
    assert tree.find(A.iova) == A and tree.find(B.iova) == B  # both cached
    slots = [i for i, m in enumerate(tree._cache) if m is not None]

    def emptied_midway() -> Iterator[int]:
        yield slots[0]
        tree._cache.clear()
        yield slots[1]

    tree._drop(emptied_midway())
    assert tree.find(A.iova) == A and tree.find(B.iova) == B
    tree.check()
