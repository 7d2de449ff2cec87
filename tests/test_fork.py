# SPDX-License-Identifier: GPL-2.0-or-later
"""fork() while another thread is inside a native call (issue 15, class 3).

A child inherits each tree's GMutex as it was at the fork: held, if another thread was inside a
call, by a thread that does not exist in the child, so every use and ``close()`` of that tree in
the child blocked forever.  The native backend's fork hooks now take every tree's lock before
the fork (waiting for calls in flight) and give them back on both sides.

Each scenario runs in a fresh interpreter (``subprocess``), so that a hang is a timeout, not a
stuck test run, and pytest's own process never forks with threads running.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("iova_native.native")
if not hasattr(__import__("os"), "register_at_fork"):
    pytest.skip("no os.fork on this platform", allow_module_level=True)

#: Seconds a whole scenario may take; the child itself gets CHILD_TIMEOUT.
TIMEOUT = 120

SETUP = """
import os, sys, threading, time
from array import array
from iova_native import DMAMap, Perm, native

MAPS = 20_000
tree = native.IOVATree()
for i in range(MAPS):
    tree.insert(DMAMap(i * 0x2000, 0x1000_0000, 0xFFF, Perm.RW, i))  # all alias one HVA page
gpa = native.GPATree()
for i in range(1000):
    gpa.insert(DMAMap(i * 0x1000, i * 0x1000, 0xFFF))
vhost = native.VhostIOVATree(0, 1 << 40)
for i in range(1000):
    vhost.map_alloc_gpa(0xFFF, i * 0x1000)
    vhost.map_alloc(0xFFF, 0x7000_0000 + i * 0x1000)
closed = native.IOVATree()
closed.close()
trees = {"tree": tree, "gpa": gpa, "vhost": vhost}

# A long batch: every address hits the 20k aliases of one page, in unsorted order.
addresses = array("Q", [0x1000_0000 + (i * 7919) % 0x1000 for i in range(2_000_000)])
inside = threading.Event()
stop = False

def busy(obj, call):
    while not stop:
        inside.set()
        call(obj)

calls = {
    "tree": lambda t: t.to_iova_many(addresses),
    "gpa": lambda t: t.to_iova_many(array("Q", range(0, 1000 * 0x1000, 3)) * 4),
    "vhost": lambda t: t.gpa_to_iova_many(array("Q", range(0, 1000 * 0x1000, 3)) * 4),
}

def use_everything_and_exit():
    # In the child: every tree answers, changes, checks and closes; then a clean exit.
    try:
        assert tree.find(0x2000).id == 1
        assert tree.to_iova_many(array("Q", [0x1000_0000]))[0] == 0
        tree.insert(DMAMap(MAPS * 0x2000, 0x9000_0000, 0xFFF))
        assert len(tree) == MAPS + 1
        tree.check()
        assert gpa.find(0x5000).iova == 0x5000
        gpa.remove(0x5000)
        gpa.check()
        m = vhost.map_alloc_gpa(0xFFF, 0x1_0000_0000)
        assert vhost.find_gpa(0x1_0000_0000) == m
        vhost.check()
        for obj in (tree, gpa, vhost, closed):
            obj.close()
            assert obj.closed
        os._exit(0)
    except BaseException as exc:  # the parent reads the status; say why on stderr
        print("child:", type(exc).__name__, exc, file=sys.stderr, flush=True)
        os._exit(3)

def fork_and_wait(child, timeout):
    pid = os.fork()
    if pid == 0:
        child()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

# Fork `times` times while a thread loops over `work`; print every child's exit code.
def forks_beside(work, child, times, pause=lambda k: 0):
    global stop
    def looping():
        while not stop:
            work()
            inside.set()
    worker = threading.Thread(target=looping)
    worker.start()
    inside.wait()
    codes = []
    for k in range(times):
        time.sleep(pause(k))
        codes.append(fork_and_wait(child, 60))
    stop = True
    worker.join()
    print("codes:", codes)
"""


def run(script: str) -> subprocess.CompletedProcess[str]:
    source = SETUP + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


@pytest.mark.parametrize("busy_tree", ["tree", "gpa", "vhost"])
def test_child_uses_every_tree_while_a_thread_is_inside_a_batch(busy_tree: str) -> None:
    result = run(f"""
        worker = threading.Thread(target=busy, args=(trees[{busy_tree!r}], calls[{busy_tree!r}]))
        worker.start()
        inside.wait()
        time.sleep(0.05)  # well inside a call now: one batch takes longer than this
        code = fork_and_wait(use_everything_and_exit, 60)
        stop = True
        worker.join()
        # The parent's trees work too after the fork.
        tree.check(); gpa.check(); vhost.check()
        print("child exit:", code)
    """)
    assert result.returncode == 0, result.stderr
    assert "child exit: 0" in result.stdout, result.stdout + result.stderr


def test_many_forks_while_threads_call() -> None:
    """Forks in a loop while two threads keep calling: every child exits cleanly."""
    result = run("""
        workers = [threading.Thread(target=busy, args=(trees[name], calls[name]))
                   for name in ("tree", "vhost")]
        for w in workers:
            w.start()
        inside.wait()
        codes = []
        for _ in range(5):
            def child():
                assert len(tree) == MAPS and len(vhost) == 2000
                for obj in (tree, gpa, vhost):
                    obj.check()
                    obj.close()
                os._exit(0)
            codes.append(fork_and_wait(child, 60))
        stop = True
        for w in workers:
            w.join()
        print("codes:", codes)
    """)
    assert result.returncode == 0, result.stderr
    assert "codes: [0, 0, 0, 0, 0]" in result.stdout, result.stdout + result.stderr


def test_a_tree_locked_behind_the_hooks_is_lost_but_closable() -> None:
    """A tree the before-fork hook did not lock (here: left out on purpose; in life, one made by
    another thread in the instant before the fork) whose lock a thread held at the fork: the
    child refuses it with a ValueError naming the cause, and close() works."""
    result = run("""
        real_prepare = native._fork_prepare

        def prepare_without_the_busy_tree():
            del native._live[id(tree)]
            try:
                real_prepare()
            finally:
                native._live[id(tree)] = tree

        native._fork_prepare = prepare_without_the_busy_tree
        worker = threading.Thread(target=busy, args=(tree, calls["tree"]))
        worker.start()
        inside.wait()
        time.sleep(0.05)

        def child():
            try:
                tree.find(0)
            except ValueError as exc:
                assert "forked" in str(exc), exc
            else:
                os._exit(4)
            assert tree.closed
            tree.close()
            gpa.check()
            vhost.check()  # the others were locked by the hook: usable
            gpa.close()
            vhost.close()
            os._exit(0)

        code = fork_and_wait(child, 60)
        stop = True
        worker.join()
        tree.check()
        print("child exit:", code)
    """)
    assert result.returncode == 0, result.stderr
    assert "child exit: 0" in result.stdout, result.stdout + result.stderr


def test_forks_while_a_thread_copies() -> None:
    """copy() holds the source's lock and then the new tree's: the fork hooks must never hold
    the new tree's lock while waiting for the source's (a deadlock, which the timeout shows)."""
    result = run("""
        def copying():
            for obj in (tree, gpa, vhost):
                obj.copy().close()

        def child():
            for obj in (tree, gpa, vhost):
                obj.copy().check()
                obj.close()
            os._exit(0)

        forks_beside(copying, child, 10)
    """)
    assert result.returncode == 0, result.stderr
    assert "codes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in result.stdout, result.stdout + result.stderr


def test_forks_while_a_thread_drops_and_makes_trees() -> None:
    """Making a tree and the finalizer's free of a dropped one run under no tree's lock, yet
    both go through GLib's slice allocator, whose own lock a fork could leave held in the
    child (the child then hung in g_slice_free1 when it closed a tree: 1 run in 3 with three
    forks, found by the review).  Both now exclude the fork hooks."""
    result = run("""
        big = native.IOVATree(DMAMap(i * 0x2000, i * 0x1000, 0xFFF) for i in range(200_000))

        def dropping():
            big.copy()            # dropped at once: the finalizer frees 200k GTree nodes
            native.GPATree()      # made and dropped

        def child():
            for obj in (tree, gpa, vhost, big):
                len(obj)
                obj.check()
                obj.close()
            native.IOVATree().close()
            os._exit(0)

        forks_beside(dropping, child, 12, pause=lambda k: 0.01 * (k % 4))
    """)
    assert result.returncode == 0, result.stderr
    assert "codes: [" + ", ".join(["0"] * 12) + "]" in result.stdout, result.stdout + result.stderr


def test_a_dropped_tree_is_freed_outside_any_fork() -> None:
    """The finalizer holds the fork hooks' lock while it closes (white box: the fork itself is
    the test above, which can only ever be likely to catch a regression)."""
    from iova_native import native

    owned = []
    native._close_outside_fork(
        lambda handle: owned.append(native._fork_serial._is_owned()), None, None)
    assert owned == [True]
