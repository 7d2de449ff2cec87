# SPDX-License-Identifier: GPL-2.0-or-later
"""Review r22 of the cache with no Python lock and the calls that keep the GIL (3d89e22).

What held: the cache under threads with slot reuse, signal handlers and finalizers calling the
same tree, interrupts (docs/reliability.md, the seventh review).  What did not:

* Python code that runs in the thread forking, while the fork hooks hold every tree's lock,
  and calls a tree: its call waited for its own thread for ever (a try form answered IB_BUSY,
  and the waiting form then waited).  The hooks turn the collector off and block the forking
  thread's signals (tests/test_review_r21.py), which leaves: a signal delivered to another
  thread, whose Python handler runs in the main thread all the same; a fork hook registered
  before iova_native was imported (run between ours); (not seen, by the same path) a
  finalizer run by a reference count reaching zero.  Now the thread holding a guard's lock
  for fork() goes in without locking (csrc/iova-guard.h): no other thread is inside then.

Each scenario runs in a fresh interpreter, so that a hang is a timeout, not a stuck test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("iova_native.native")

TIMEOUT = 30

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs fork()")


def run_script(body: str) -> str:
    """Run ``body`` in a fresh interpreter; it must print ``ok`` last, within TIMEOUT."""
    code = textwrap.dedent(body)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the scenario hung (no answer in {TIMEOUT} s): {exc.stdout!r}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok", result.stdout[-2000:]
    return result.stdout


@pytest.mark.parametrize("cls", ["IOVATree", "GPATree", "VhostIOVATree"])
def test_a_fork_hook_that_runs_after_ours_can_use_a_tree(cls: str) -> None:
    """Hooks registered before iova_native was imported run after its ``before`` hook (which
    has locked every tree) and before its child and parent hooks (which unlock them).  Their
    calls on a tree hung; now they answer, and change the tree that both processes keep."""
    run_script(f"""
        import os
        T, seen = [], []

        def use(where):
            if not T:
                return
            t = T[0]
            if {cls!r} == "VhostIOVATree":
                m = t.map_alloc(0xFFF, 0x5000)
                seen.append((where, t.find_iova(0x5000) == m, t.remove(m.iova, m.size) == 1))
                return
            from iova_native import DMAMap
            k = 0 if {cls!r} == "IOVATree" else 1
            m = DMAMap(0x9000, 0x90000, 0xFFF)
            seen.append((where, t.find(0x1000 if k == 0 else 0x10000) is not None))
            t.insert(m)
            seen.append((where, t.find(m[k] + 4) == m, t.remove(m[k]) == 1, t.find(m[k]) is None))

        os.register_at_fork(before=lambda: use("before"),
                            after_in_parent=lambda: use("parent"),
                            after_in_child=lambda: use("child"))
        from iova_native import DMAMap, native
        if {cls!r} == "VhostIOVATree":
            T.append(native.VhostIOVATree(0x1000, (1 << 40) - 1))
        else:
            T.append(native.{cls}([DMAMap(0x1000, 0x10000, 0xFFF)]))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            T[0].check()
            os.write(w, repr(seen).encode())
            os._exit(0 if all(all(s[1:]) for s in seen) and len(seen) >= 2 else 1)
        _, status = os.waitpid(pid, 0)
        child = os.read(r, 10000).decode()
        assert status == 0, child
        assert all(all(s[1:]) for s in seen), seen
        assert {{s[0] for s in seen}} == {{"before", "parent"}}, seen
        T[0].check()
        print("ok")
    """)


def test_a_finalizer_run_while_fork_holds_the_trees_can_use_a_tree() -> None:
    """Another thread makes cyclic garbage whose finalizer looks up, removes and inserts on a
    tree, and the collector runs at threshold 1: the forking thread's finalizers must not
    wait for the trees it holds (before the hooks turned the collector off, this hung within
    a few dozen forks), and every answer in the finalizers is right."""
    run_script("""
        import gc, os, threading, time
        from iova_native import DMAMap, native

        trees = [native.IOVATree([DMAMap(0x1000 * i, 0x100000 + 0x1000 * i, 0xFFF)
                                  for i in range(1, 50)]) for _ in range(40)]
        T = trees[-1]
        M = DMAMap(0x1000, 0x101000, 0xFFF)
        wrong = []

        class Cycle:
            def __init__(self):
                self.me = self

            def __del__(self):
                if T.find(0x1004) != M or T.find_iova(0x101004) != M:
                    wrong.append("find")
                if T.remove(0x1000) != 1:
                    wrong.append("remove")
                T.insert(M)

        stop = []

        def garbage():
            while not stop:
                Cycle()
                time.sleep(0)  # the GIL to the forking thread, between its fork hooks' calls

        worker = threading.Thread(target=garbage, daemon=True)
        worker.start()
        gc.set_threshold(1)
        for _ in range(100):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        stop.append(True)
        worker.join()
        gc.set_threshold(700)
        gc.collect()
        assert not wrong, wrong[:5]
        for t in trees:
            t.check()
        assert T.find(0x1000) == M
        print("ok")
    """)


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="needs setitimer")
def test_a_signal_taken_by_another_thread_during_fork_never_deadlocks() -> None:
    """A 100 µs timer while the main thread forks 300 times beside a thread that does not
    block signals: the kernel hands SIGALRM to that thread, and Python runs the handler in the
    main thread at its next check, inside the fork hooks (blocking the forking thread's
    signals does not stop it).  The handler's look-up hung there; now every one answers."""
    run_script("""
        import os, signal, threading, time
        from iova_native import DMAMap, native

        trees = [native.IOVATree([DMAMap(0x1000 * i, 0x100000 + 0x1000 * i, 0xFFF)
                                  for i in range(1, 50)]) for _ in range(40)]
        T = trees[-1]
        M = DMAMap(0x1000, 0x101000, 0xFFF)
        wrong, ran = [], []

        def handler(signum, frame):
            ran.append(1)
            if T.find(0x1004) != M or T.find_iova(0x101004) != M:
                wrong.append(1)

        signal.signal(signal.SIGALRM, handler)
        stop = []

        def other():
            while not stop:
                time.sleep(0.0001)

        worker = threading.Thread(target=other, daemon=True)
        worker.start()
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        for _ in range(300):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        stop.append(True)
        worker.join()
        assert ran and not wrong, (len(ran), len(wrong))
        for t in trees:
            t.check()
        print("ok")
    """)


MAX_U64 = (1 << 64) - 1


@pytest.mark.parametrize("policy", ["first", "last"])
@pytest.mark.parametrize("align", [1, 2])
def test_an_alloc_at_the_top_answers_its_own_iova_whatever_runs_after_the_call(
        policy: str, align: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A map allocated in the top 128 bytes of the space: C's key answer (IB_TOP) carried its
    IOVA in errno, which Python read after the call.  Python runs signal handlers right after
    a call, and a handler's own cffi call that sets errno (another tree's alloc at the top,
    or ``ffi.errno`` set by any other cffi code) made the alloc answer a wrong IOVA: a map
    that is not the one stored (fixed in c7ccd5f, found here too).  Every C entry point of
    alloc is wrapped to run such a handler right after it returns."""
    from iova_native._core import ffi

    from iova_native import DMAMap, native, reference

    other = native.IOVATree()
    inside = [False]

    def handler() -> None:
        if inside[0]:
            return
        inside[0] = True
        try:
            m = other.alloc(1, policy="last")
            other.remove(m.iova)
            ffi.errno = 99
        finally:
            inside[0] = False

    names = [name for name in vars(native) if name.startswith("_ib_alloc")]
    assert "_ib_alloc_key" in names
    for name in names:
        real = getattr(native, name)

        def wrapped(*args: object, _real: object = real) -> int:
            answer = _real(*args)  # type: ignore[operator]
            handler()  # as a signal handler may run here
            return int(answer)

        monkeypatch.setattr(native, name, wrapped)
    below = [DMAMap(0, 0, MAX_U64 - 128)] if policy == "first" else []
    tree, twin = native.IOVATree(below), reference.IOVATree(below)
    for size in (15, 0, 3, 127) if policy == "first" else (15, 0, 3, 127, 128, 0x1000):
        kwargs = {"policy": policy, "align": align}
        got, want = tree.alloc(size, 0x5000, **kwargs), twin.alloc(size, 0x5000, **kwargs)
        assert got == want
        assert tree.find(got.iova) == got
        tree.remove(got.iova)
        twin.remove(want.iova)
    assert tree.maps() == twin.maps()
