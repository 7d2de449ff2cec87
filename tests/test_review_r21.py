# SPDX-License-Identifier: GPL-2.0-or-later
"""Review r21, from the contract: Python code that runs *inside* a native call's cache lock.

The native look-ups' cache (native.py, ``_Tree``) is kept right by a lock that removals and
cache fills hold.  Two kinds of Python code can run in the thread that holds it, between two
bytecodes of the locked region, without any thread switch:

* a signal handler (Ctrl-C's ``KeyboardInterrupt`` is one): an exception it raises right after
  the lock was taken, before the ``try`` that gives it back, lost the lock for good, and every
  later removal, first look-up and ``close()`` of that tree blocked forever;
* a finalizer run by the cyclic garbage collector (a ``__del__`` that unmaps a buffer, a
  weakref callback), or a signal handler, that calls the same tree: the lock was not
  reentrant, so the thread waited for itself.

Nothing may hang the process (docs/reliability.md).  A nested call must also leave the cache
right: a map removed by it is never answered afterwards.  Each hang-prone scenario runs in a
fresh interpreter (``subprocess``), so that a hang is a timeout, not a stuck test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from iova_native import DMAMap, InvalidMapError, native

pytest.importorskip("iova_native.native")

TIMEOUT = 60
PAGE = 0x1000


def run_script(body: str) -> str:
    """Run ``body`` in a fresh interpreter; it must print ``ok`` last, within TIMEOUT."""
    code = textwrap.dedent(body)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:  # a hang: the lock was lost or waited for itself
        pytest.fail(f"the scenario hung (no answer in {TIMEOUT} s): {exc.stdout!r}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok", result.stdout[-2000:]
    return result.stdout


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="no setitimer")
def test_an_exception_from_a_signal_handler_never_loses_the_cache_lock() -> None:
    """A timer raises in the main thread while it removes, inserts, looks up and clears; after
    each caught exception the tree must still serve another thread's removals and first
    look-ups (on the old code the lock was lost within a few signals)."""
    run_script("""
        import signal, threading, time
        from iova_native import DMAMap, native

        MAPS = [DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(1, 100)]
        tree = native.IOVATree(MAPS)

        class Tick(Exception):
            pass

        armed = [False]

        def tick(*_):
            if armed[0]:  # only inside the loop's body: the rest of the script runs unharmed
                armed[0] = False
                raise Tick()

        def usable():
            done = []
            def other():
                tree.remove(0x100000, 0x10)  # a range removal
                tree.find(0x100000)
                done.append(1)
            t = threading.Thread(target=other, daemon=True)
            t.start()
            t.join(20)
            return bool(done)

        signal.signal(signal.SIGALRM, tick)
        signal.setitimer(signal.ITIMER_REAL, 1e-4, 3e-5)
        ticks, n, start = 0, 0, time.monotonic()
        while ticks < 400 and time.monotonic() - start < 8:
            try:
                armed[0] = True
                i = 1 + n % 99
                n += 1
                tree.find(i * 0x1000)
                tree.remove(i * 0x1000)
                tree.insert(MAPS[i - 1])
                tree.remove(i * 0x1000, 0x10)
                tree.insert(MAPS[i - 1])
                if n % 50 == 0:
                    tree.clear()
                    tree.update(MAPS)
                armed[0] = False
            except Tick:
                ticks += 1
            except Exception:  # a Tick inside update() or insert() may leave a map in or out
                pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert usable(), "the tree no longer serves removals: its cache lock was lost"
        tree.clear()
        tree.update(MAPS)
        tree.check()
        assert [tree.find(m.iova) for m in MAPS] == MAPS
        tree.close()
        print(ticks, "signals")
        print("ok")
    """)


@pytest.mark.parametrize("call", ["remove", "range_remove", "find", "clear"])
def test_a_finalizer_that_uses_the_tree_never_deadlocks(call: str) -> None:
    """Objects in reference cycles whose ``__del__`` unmaps from the tree, collected by the
    garbage collector while the same thread is inside a removal or a first look-up."""
    run_script(f"""
        import gc
        from iova_native import DMAMap, native

        tree = native.IOVATree()
        CALL = {call!r}

        class Buffer:
            def __init__(self, iova):
                self.iova = iova
                self.me = self  # a cycle: only the collector frees it

            def __del__(self):
                if CALL == "remove":
                    tree.remove(self.iova)
                elif CALL == "range_remove":
                    tree.remove(self.iova, 0x10)
                elif CALL == "find":
                    tree.find(self.iova)  # a map not cached yet: the slow path
                else:
                    tree.clear()

        for rep in range(600):
            gc.set_threshold(1 + rep % 7)
            tree.clear()
            tree.update([DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(1, 60)])
            for i in range(1, 30):
                Buffer((30 + i) * 0x1000)
                tree.find(i * 0x1000)
                tree.remove(i * 0x1000, 0x10)
        gc.set_threshold(700, 10, 10)
        gc.collect()
        tree.check()
        left = tree.maps()
        assert all(tree.find(m.iova) is m or tree.find(m.iova) == m for m in left)
        print("ok")
    """)


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="no setitimer")
def test_a_signal_handler_that_uses_the_tree_never_deadlocks() -> None:
    """A timer's handler removes and re-inserts a map, looks one up and sometimes clears,
    while the main thread churns the same tree; the answers stay stored maps."""
    run_script("""
        import signal, time
        from iova_native import DMAMap, native

        MAPS = [DMAMap(i * 0x1000, (i + 1000) * 0x1000, 0xfff) for i in range(1, 200)]
        tree = native.IOVATree(MAPS)
        state = {"n": 0, "wrong": []}

        def handler(*_):
            if state.get("inside"):  # a signal during the handler: the tree is the point
                return
            state["inside"] = True
            try:
                k = state["n"] = state["n"] + 1
                m = MAPS[k % 199]
                if tree.remove(m.iova):
                    tree.insert(m)  # the main loop may be between its remove and insert
                got = tree.find((k * 7 % 199 + 1) * 0x1000)
                if got is not None and got not in MAPS:
                    state["wrong"].append(got)
                if k % 97 == 0:
                    tree.clear()
                    tree.update(MAPS)
            finally:
                state["inside"] = False

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 1e-4, 5e-5)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 4:
            i += 1
            m = MAPS[i % 199]
            try:
                got = tree.find(m.iova)
                if got is not None and got != m:
                    state["wrong"].append(got)
                if tree.remove(m.iova, 0x10):
                    tree.insert(m)
            except Exception as exc:  # the handler's insert may beat ours: OverlapError
                if type(exc).__name__ != "OverlapError":
                    raise
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert state["wrong"] == [], state["wrong"][:5]
        tree.clear()
        tree.update(MAPS)
        assert [tree.find(m.iova) for m in MAPS] == MAPS
        tree.check()
        print(state["n"], "handler calls")
        print("ok")
    """)


def test_a_nested_removal_during_a_first_look_up_leaves_no_stale_map() -> None:
    """A removal that runs inside a first look-up's fill (as a finalizer would, at the
    allocation of the map's ``DMAMap``), and a new map in the freed slot: the look-up answers
    the map it found, and neither it nor any later look-up answers a removed map."""
    run_script("""
        from iova_native import DMAMap, native

        old = DMAMap(0x1000, 0x10000, 0xfff)
        new = DMAMap(0x5000, 0x20000, 0xfff)
        tree = native.IOVATree([old])
        real_new = native._make
        fired = []

        def new_with_a_finalizer(fields):
            if not fired:  # once: the removal and the insert a finalizer could do here
                fired.append(1)
                assert tree.remove(0x1000) == 1
                tree.insert(new)  # into the slot just freed
            return real_new(fields)

        native._make = new_with_a_finalizer
        try:
            got = tree.find(0x1000)
        finally:
            native._make = real_new
        assert fired and got == old, got
        assert tree.find(0x1000) is None
        assert tree.find(0x5000) == new, tree.find(0x5000)
        assert tree.find_iova(0x20000) == new
        assert tree.find_iova(0x10000) is None
        tree.check()
        print("ok")
    """)


def test_a_nested_removal_during_a_range_removal_drops_both() -> None:
    """A removal that runs inside a range removal, between its C call and the dropping of
    the maps it removed: every removed map leaves the cache, whichever call removed it."""
    run_script("""
        from iova_native import DMAMap, native, _core

        maps = [DMAMap(i * 0x1000, (i + 100) * 0x1000, 0xfff) for i in range(1, 40)]
        tree = native.IOVATree(maps)
        assert [tree.find(m.iova) for m in maps] == maps  # every map cached
        real_unpack = native.ffi.unpack
        fired = []

        class FFI:
            def __getattr__(self, name):
                return getattr(_core.ffi, name)

            def unpack(self, cdata, n):
                if not fired and n > 5:
                    fired.append(1)
                    assert tree.remove(30 * 0x1000, 0x10) == 1  # nested, under the lock
                return real_unpack(cdata, n)

        native.ffi = FFI()
        try:
            assert tree.remove(0x1000, 20 * 0x1000 - 1) == 20
        finally:
            native.ffi = _core.ffi
        assert fired
        fresh = [DMAMap(m.iova, m.translated_addr + 0x1000000, m.size) for m in maps[:20]]
        fresh.append(DMAMap(30 * 0x1000, 0x7000000, 0xfff))
        tree.update(fresh)  # into the freed slots
        for m in fresh:
            assert tree.find(m.iova) == m, (m, tree.find(m.iova))
            assert tree.find_iova(m.translated_addr) == m
        tree.check()
        print("ok")
    """)


def test_the_cache_lock_is_not_lost_by_a_removal_that_fails() -> None:
    """A removal refused (closed tree, bad range) gives the lock back: the next removal and
    first look-up of another tree, and of a copy, go through."""
    tree = native.IOVATree([DMAMap(PAGE, PAGE, PAGE - 1)])
    with pytest.raises(InvalidMapError):
        tree.remove(2**64 - 1, 5)
    with pytest.raises(TypeError):
        tree.remove(1.5)
    assert tree.remove(PAGE) == 1
    tree.insert(DMAMap(PAGE, 2 * PAGE, PAGE - 1))
    assert tree.find(PAGE) == DMAMap(PAGE, 2 * PAGE, PAGE - 1)
    tree.close()
    with pytest.raises(ValueError):
        tree.remove(PAGE)
    with pytest.raises(ValueError):
        tree.find(PAGE)


@pytest.mark.skipif(not hasattr(__import__("os"), "register_at_fork"), reason="no fork")
def test_a_finalizer_run_during_the_fork_hooks_never_deadlocks() -> None:
    """Threads make garbage whose ``__del__`` looks a map up in a tree, while the main thread
    forks: the collector, run at an allocation of the fork hooks (which hold trees' locks),
    called a tree the forking thread had locked, and waited for itself (in the parent or the
    child) within a few hundred forks."""
    run_script("""
        import gc, os, threading
        from iova_native import DMAMap, native

        trees = [native.IOVATree([DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(1, 20)])
                 for _ in range(50)]

        class Buffer:
            def __init__(self, tree, iova):
                self.tree, self.iova, self.me = tree, iova, self  # a cycle

            def __del__(self):
                self.tree.find_iova(self.iova)

        stop = threading.Event()

        def churn():
            j = 0
            while not stop.is_set():
                j += 1
                Buffer(trees[j % 50], 0x1000 * (1 + j % 19))
                trees[j % 50].find(0x1000 * (1 + j % 19))

        threads = [threading.Thread(target=churn, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        for k in range(300):
            gc.set_threshold(1 + k % 5)
            pid = os.fork()
            if pid == 0:
                os._exit(0 if gc.isenabled() else 3)
            _, status = os.waitpid(pid, 0)
            assert status == 0, status
        stop.set()
        for t in threads:
            t.join()
        assert gc.isenabled()
        print("ok")
    """)


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer")
                    or not hasattr(__import__("os"), "register_at_fork"), reason="no fork")
def test_a_signal_handler_run_during_the_fork_hooks_never_deadlocks() -> None:
    """A timer's handler looks maps up in every tree while the main thread forks."""
    run_script("""
        import os, signal
        from iova_native import DMAMap, native

        trees = [native.IOVATree([DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(1, 20)])
                 for _ in range(200)]
        calls = [0]

        def handler(*_):
            calls[0] += 1
            for t in trees[calls[0] % 40::40]:
                t.find_iova(0x3000)

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 1e-4, 1e-4)
        for k in range(300):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert not mask, mask  # the hooks gave the mask back
        print(calls[0], "handler calls")
        print("ok")
    """)
