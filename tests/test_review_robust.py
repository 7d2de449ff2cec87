# SPDX-License-Identifier: GPL-2.0-or-later
"""A review of the native backend's robustness, played as a hostile but legitimate user:
each test failed before its fix.  Every scenario runs in a fresh interpreter, so that a crash
is seen as a crash and a hang as a timeout, not as a stuck test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("iova_native.native")


#: The sanitizers' own allocators are not safe across fork() while other threads allocate
#: (a child of the ASan build waited for ever on a mutex of ASan's allocator that a parent's
#: thread held): the tests that fork beside busy threads run on the plain build only.
UNDER_SANITIZER = any(name in os.environ.get("LD_PRELOAD", "") for name in ("asan", "tsan"))
forks_beside_threads = pytest.mark.skipif(
    not hasattr(os, "register_at_fork") or UNDER_SANITIZER,
    reason="needs fork(), and an allocator that is safe across it (not a sanitizer's)")


def run(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter; a hang fails the test rather than stalling it."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script hung ({timeout} s): {exc.stdout!r} {exc.stderr!r}")


# The collector runs the finalizers of one garbage cycle in no set order.  The handle's own
# (cffi's ffi.gc, a tp_finalize) freed the C tree, and a __del__ of the same cycle that called
# the tree afterwards read freed memory: ASan saw a heap-use-after-free in guard_lock(), the
# ordinary build waited for ever on the "lock" in the freed block (or crashed).
CYCLE = """
    import gc
    from iova_native import native, DMAMap

    maps = [DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(100)]
    seen = []

    class Buffer:
        '''Unmaps itself in __del__, and is in a reference cycle with its tree.'''
        def __init__(self, tree, call):
            self.tree, self.call, self.me = tree, call, self
        def __del__(self):
            try:
                self.call(self.tree)
                seen.append("answered")
            except ValueError as exc:
                seen.append(str(exc))

    for _ in range(20):
        for tree, call in [
            (native.IOVATree(maps), lambda t: (t.remove(0x1000), t.find(0x2000), len(t))),
            (native.GPATree(maps), lambda t: (t.remove(0x1000), t.maps(), list(t))),
        ]:
            Buffer(tree, call)
            del tree
            gc.collect()
        vhost = native.VhostIOVATree(0x1000, 1 << 40)
        vhost.map_alloc(0xfff, 0)
        Buffer(vhost, lambda v: (v.host_maps(), v.remove(0x1000), len(v)))
        del vhost
        gc.collect()
    print(sorted(set(seen)))
"""


def test_a_del_in_the_trees_garbage_cycle_never_sees_freed_memory() -> None:
    result = run(CYCLE)
    assert result.returncode == 0, result.stderr
    # Whichever finalizer runs first, the tree is never freed under a caller: it answers,
    # or (its own finalizer ran first) it is closed.
    answers = eval(result.stdout)  # noqa: S307 - our own script's printed list
    assert set(answers) <= {"answered", "IOVATree is closed", "GPATree is closed",
                            "VhostIOVATree is closed"}, answers


def test_a_tree_brought_back_to_life_by_a_del_stays_closed_and_usable() -> None:
    result = run("""
        import gc
        from iova_native import native, DMAMap

        kept = []

        class Keeper:
            def __init__(self, tree):
                self.tree, self.me = tree, self
            def __del__(self):
                kept.append(self.tree)  # the tree lives on, after its own finalizer maybe

        for _ in range(20):
            Keeper(native.IOVATree([DMAMap(0x1000, 0, 0xfff)]))
            gc.collect()
        states = set()
        for tree in kept:
            try:
                states.add(len(tree))
                tree.insert(DMAMap(0x4000, 0, 0xfff))
                tree.check()
            except ValueError as exc:
                states.add(str(exc))
            tree.close()
        print(sorted(states, key=str))
    """)
    assert result.returncode == 0, result.stderr
    assert set(eval(result.stdout)) <= {1, "IOVATree is closed"}, result.stdout  # noqa: S307


def test_interpreter_exit_with_a_tree_a_live_iterator_and_a_del_that_uses_them() -> None:
    """A tree in a module global, an iterator on it alive, and an object whose ``__del__``
    reads both: at exit the collector finalizes them in one batch.  Before the fix the
    interpreter hung at exit (1 run in 1)."""
    result = run("""
        from iova_native import native, DMAMap

        TREE = native.IOVATree([DMAMap(i * 0x1000, 0, 0xfff) for i in range(1000)])
        ITER = iter(TREE)
        next(ITER)
        REV = reversed(TREE)
        next(REV)

        class AtExit:
            def __del__(self):
                try:
                    print("del", len(TREE), next(ITER).iova, flush=True)
                except (ValueError, RuntimeError, NameError, TypeError) as exc:
                    print("del raised", type(exc).__name__, flush=True)

        GUARD = AtExit()
        print("end", flush=True)
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "end" in result.stdout


# A signal handler that raises (Ctrl-C's KeyboardInterrupt, or a timer's exception) cut the
# fork hooks short: CPython reports what a hook raises and goes on with the fork, so the hooks
# left the objects' locks, the hooks' own lock (_fork_serial) or the blocked signal mask held
# for good, and the next copy(), close() or new tree of any other thread waited for ever.
# Under a timer raising every 50 us, forking in a loop beside two threads churning trees:
# before the fix _fork_serial stayed held by the forking thread within 2 forks (1 run in 1).
FORK_UNDER_TIMER = """
    import os, signal, sys, threading, time
    from iova_native import native, DMAMap

    tree = native.IOVATree([DMAMap(i * 0x1000, i * 0x1000, 0xfff) for i in range(100)])
    vhost = native.VhostIOVATree(0x1000, 1 << 40)
    vhost.map_alloc(0xfff, 0)

    class Tick(Exception):
        pass

    me, in_fork, stop = os.getpid(), [False], [False]

    def handler(*args):
        # Raises only around os.fork(): the script's own loop must not be cut short.
        if in_fork[0] and os.getpid() == me:
            raise Tick()

    signal.signal(signal.SIGALRM, handler)
    sys.unraisablehook = lambda info: None  # what the hooks raise: reported, by design

    def churn():
        own = native.IOVATree()
        while not stop[0]:
            own.insert(DMAMap(0x1000, 0, 0xfff))
            own.find(0x1000)
            own.remove(0x1000)
            own.copy().close()

    helpers = [threading.Thread(target=churn, daemon=True) for _ in range(2)]
    for h in helpers:
        h.start()
    forks = bad = 0
    deadline = time.monotonic() + SECONDS
    signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
    while time.monotonic() < deadline:
        pid = -1
        try:
            in_fork[0] = True
            pid = os.fork()
        except Tick:
            pass
        in_fork[0] = False
        if os.getpid() != me:  # the child: every tree works
            signal.alarm(20)
            try:
                tree.insert(DMAMap(1 << 40, 0, 0xfff))
                tree.check()
                vhost.map_alloc(0xfff, 0)
                vhost.check()
                native.IOVATree().close()
                tree.copy().close()
                os._exit(0)
            except BaseException:
                os._exit(7)
        if pid > 0:
            forks += 1
            bad += os.waitpid(pid, 0)[1] != 0
    signal.setitimer(signal.ITIMER_REAL, 0)
    stop[0] = True
    for h in helpers:
        h.join(10)
    after = []

    def other_thread():
        got = native._fork_serial.acquire(timeout=5)
        after.append(got)
        if got:
            native._fork_serial.release()
            own = native.IOVATree([DMAMap(0, 0, 0)])
            own.copy().close()
            tree.find(0x1000)
            tree.copy().close()
            vhost.copy().close()
            own.close()
            after.append("used")

    t = threading.Thread(target=other_thread, daemon=True)
    t.start()
    t.join(15)
    print(repr([forks, bad, sum(h.is_alive() for h in helpers), t.is_alive(), after,
                len(signal.pthread_sigmask(signal.SIG_BLOCK, []))]), flush=True)
    os._exit(0)
"""


@forks_beside_threads
def test_fork_hooks_cut_short_by_a_signal_handler_leave_nothing_held() -> None:
    result = run("SECONDS = 4\n" + textwrap.dedent(FORK_UNDER_TIMER), timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    forks, bad, helpers_stuck, other_stuck, after, blocked = eval(result.stdout)  # noqa: S307
    assert forks > 0 and bad == 0, result.stdout  # every child used every tree
    # No thread waits for ever: not the churning ones, not a fresh one, which takes the
    # hooks' lock and copies every tree; and the forking thread's signals are unblocked.
    assert (helpers_stuck, other_stuck, after, blocked) == (0, False, [True, "used"], 0), (
        result.stdout)


@forks_beside_threads
def test_threads_forking_at_once_each_get_their_signals_back() -> None:
    """The hooks save the forking thread's signal mask in one record, which _fork_serial keeps
    to one forking thread: the mask is restored before that lock is given back, or a second
    thread forking in between would find the record taken and never get its mask back."""
    result = run("""
        import os, signal, threading
        from iova_native import native, DMAMap

        trees = [native.IOVATree([DMAMap(i * 0x1000, 0, 0xfff) for i in range(50)])
                 for _ in range(20)]
        masks = {}

        def forker(name):
            for _ in range(150):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
            masks[name] = len(signal.pthread_sigmask(signal.SIG_BLOCK, []))

        threads = [threading.Thread(target=forker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        print(repr([sorted(masks.items()), [t.is_alive() for t in threads]]))
    """, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    assert eval(result.stdout) == [[(0, 0), (1, 0), (2, 0)], [False] * 3], result.stdout  # noqa: S307
