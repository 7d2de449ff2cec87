# SPDX-License-Identifier: GPL-2.0-or-later
"""A review playing the package's users (SPEC read alone, probes written before the code was
read): each test failed before its fix."""

from __future__ import annotations

import copy
import pickle
import struct
from array import array
from typing import Any

import pytest

from iova_native import (
    DivergenceError,
    DMAMap,
    InvalidMapError,
    IOVAError,
    OverlapError,
    TranslationError,
    differential,
    native,
    reference,
)

BACKENDS = [native, reference, differential]
IDS = ["native", "reference", "differential"]


def _raised(call: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


class _WrongFind(reference.IOVATree):
    """A planted disagreement: finds nothing."""

    def find(self, iova: Any, size: Any = 0) -> Any:
        return None


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_errors_survive_pickle_and_copy(backend: Any) -> None:
    """An error raised in a worker process reaches the parent pickled (multiprocessing, a
    process pool). TranslationError took ``address`` as a required argument, so
    ``cls(*args)`` failed: pickle.loads, copy and deepcopy raised TypeError."""
    tree = backend.IOVATree([DMAMap(0x1000, 0x10000, 0xFFF)])
    errors = [
        _raised(lambda: tree.translate(0x10000, 0x1001)),
        _raised(lambda: tree.to_iova_many([0x20000])),
        _raised(lambda: tree.insert(DMAMap(0x1800, 0, 0))),
        _raised(lambda: tree.find(-1)),
    ]
    assert [type(e) for e in errors] == [
        TranslationError,
        TranslationError,
        OverlapError,
        InvalidMapError,
    ]
    for exc in errors:
        for again in (pickle.loads(pickle.dumps(exc)), copy.copy(exc), copy.deepcopy(exc)):
            assert type(again) is type(exc)
            assert str(again) == str(exc) and again.args == exc.args
            assert again.code == exc.code
            assert getattr(again, "address", None) == getattr(exc, "address", None)
            assert getattr(again, "existing", None) == getattr(exc, "existing", None)


def test_divergence_error_survives_pickle() -> None:
    tree = differential.IOVATree(left=_WrongFind)
    tree.insert(DMAMap(0, 0, 0))
    exc = _raised(lambda: tree.find(0))
    assert isinstance(exc, DivergenceError)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is DivergenceError and str(again) == str(exc)
    fields = ("operation", "left", "right", "reproducer")
    assert [getattr(again, f) for f in fields] == [getattr(exc, f) for f in fields]
    assert copy.deepcopy(exc).reproducer == exc.reproducer


def _cast(data: bytes, fmt: str) -> memoryview:
    """A memoryview of ``data`` in ``fmt``: memoryview.cast() takes only native formats, and
    NumPy is where such views come from."""
    np = pytest.importorskip("numpy")
    order = {"<": "<", ">": ">", "!": ">", "=": "="}[fmt[0]]
    code = {"Q": "u8", "q": "i8", "I": "u4", "H": "u2"}[fmt[1]]
    return memoryview(np.frombuffer(data, dtype=order + code))


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_memoryview_of_another_byte_order_is_read_as_integers(backend: Any) -> None:
    """A memoryview of big-endian uint64 (NumPy's ``>u8``) is a buffer of unsigned 64-bit
    integers: it raised NotImplementedError (memoryview cannot iterate that format), where
    the NumPy array itself worked."""
    tree = backend.IOVATree([DMAMap(0x1000, 0x10000, 0xFFF)])
    for fmt in (">Q", "<Q", ">I", ">H"):
        view = _cast(struct.pack(f"{fmt[0]}2{fmt[1]}", 0x1000, 0x1FFF), fmt)
        assert list(tree.to_translated_many(view)) == [0x10000, 0x10FFF], fmt
        assert list(tree.to_iova_many(view, missing=7)) == [7, 7], fmt
        assert list(tree.to_translated_many(view[::-1])) == [0x10FFF, 0x10000], fmt
    negative = _cast(struct.pack(">q", -1), ">q")
    with pytest.raises(InvalidMapError):
        tree.to_translated_many(negative)


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_memoryview_of_records_is_a_type_error(backend: Any) -> None:
    """A memoryview whose elements are not integers (a structured record, a float of another
    byte order) is a wrong type: TypeError, not NotImplementedError."""
    np = pytest.importorskip("numpy")
    tree = backend.IOVATree([DMAMap(0x1000, 0x10000, 0xFFF)])
    views = [
        memoryview(np.zeros(2, dtype=[("a", "<u8")])),
        memoryview(np.zeros(2, dtype=">f8")),
    ]
    for view in views:
        with pytest.raises(TypeError):
            tree.to_translated_many(view)
        with pytest.raises(TypeError):
            tree.to_iova_many(view, missing=0)
    assert tree.maps() == [DMAMap(0x1000, 0x10000, 0xFFF)]
    assert list(tree.to_translated_many(array("Q", [0x1000]))) == [0x10000]


class _LastFlipped(reference.IOVATree):
    """A planted disagreement: the last answer of a batch is off by one."""

    def to_translated_many(self, values: Any, missing: Any = None) -> Any:
        answers = super().to_translated_many(values, missing)
        answers[-1] ^= 1
        return answers


def test_reproducer_rebuilds_a_memoryview_of_another_byte_order() -> None:
    """The reproducer wrote such a view as ``memoryview(b'...').cast('>Q')``, which cast()
    refuses: exec'd, it raised ValueError on both sides instead of reproducing."""
    view = _cast(struct.pack(">3Q", 0x1000, 0x1FFF, 0x2000), ">Q")
    tree = differential.IOVATree(left=_LastFlipped)
    tree.insert(DMAMap(0x1000, 0x10000, 0xFFF))
    with pytest.raises(DivergenceError) as info:
        tree.to_translated_many(view, missing=0)
    namespace: dict[str, Any] = {}
    exec(info.value.reproducer, namespace)
    left = namespace["reproduce"](_LastFlipped())
    right = namespace["reproduce"](reference.IOVATree())
    assert isinstance(right, array) and isinstance(left, array)
    assert not differential.same_outcome(left, right)


def _hammer(work: Any, seconds: float) -> list[str]:
    """Run ``work(rng)`` in four threads for ``seconds`` with the GIL switched as often as it
    can be; return what the threads raised besides the package's own errors."""
    import random
    import sys
    import threading
    import time

    errors: list[str] = []
    stop = time.monotonic() + seconds

    def run(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                work(rng)
            except IOVAError:
                pass
            except Exception as exc:
                errors.append(repr(exc))
                return

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(before)
    return errors


def test_reference_trees_stay_whole_under_threads() -> None:
    """Swapping the native backend for the reference one changes speed, never results; under
    threads the reference's steps interleaved: inserts stored overlapping maps (``check()``
    failed), ``insert`` and ``remove`` raised IndexError, and a VhostIOVATree kept a guest
    map without its allocation."""
    tree, gpa = reference.IOVATree(), reference.GPATree()
    vhost = reference.VhostIOVATree(0, 1 << 40, page_size=4096)

    def work(rng: Any) -> None:
        if rng.random() < 0.5:
            tree.insert(DMAMap(rng.randrange(1 << 8), 0, rng.randrange(16)))
            gpa.insert(DMAMap(0, rng.randrange(1 << 8), rng.randrange(16)))
        else:
            tree.remove(rng.randrange(1 << 8), rng.randrange(16))
            gpa.remove(rng.randrange(1 << 8), rng.randrange(16))
        m = vhost.map_alloc_gpa(rng.randrange(16), rng.randrange(1 << 8))
        vhost.remove_gpa(m.translated_addr)

    assert _hammer(work, 1.0) == []
    tree.check()
    gpa.check()
    vhost.check()


def test_reference_lock_held_by_a_thread_does_not_hang_a_forked_child() -> None:
    """The locks are new in a child of fork(): one held by a parent thread (here, inside a
    call, by an argument's ``__index__``) would be held there for good."""
    import os
    import threading

    if not hasattr(os, "fork"):
        pytest.skip("no fork()")
    tree = reference.IOVATree([DMAMap(0, 0, 0xFFF)])
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def __index__(self) -> int:
            entered.set()
            release.wait(10)
            return 0

    thread = threading.Thread(target=lambda: tree.find(Slow()))
    thread.start()
    assert entered.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: its only thread must get the tree's lock
        import signal

        signal.alarm(10)
        ok = tree.find(0) is not None and len(tree.copy()) == 1
        os._exit(0 if ok else 1)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_bytes_through_a_memoryview_are_refused_like_bytes(backend: Any) -> None:
    """``bytes`` and ``bytearray`` raise TypeError (read as small ints they would hide a
    caller's mistake), but the same bytes in a memoryview or an mmap were looked up one byte
    an address: two packed uint64 became sixteen look-ups, answered without a word."""
    import mmap

    tree = backend.IOVATree([DMAMap(0, 0x10000, 0xFFF)])
    packed = array("Q", [0x10, 0x20]).tobytes()
    region = mmap.mmap(-1, len(packed))
    region.write(packed)
    for raw in (
        memoryview(packed),
        memoryview(bytearray(packed)),
        memoryview(packed)[::2],
        memoryview(packed).cast("b"),
        memoryview(memoryview(packed)),
        memoryview(region),
    ):
        with pytest.raises(TypeError):
            tree.to_translated_many(raw)
        with pytest.raises(TypeError):
            tree.to_iova_many(raw, missing=0)
    cast = memoryview(packed).cast("Q")
    assert list(tree.to_translated_many(cast)) == [0x10010, 0x10020]
    assert list(tree.to_translated_many(memoryview(array("B", [0x10, 0x20])))) == [
        0x10010,
        0x10020,
    ]
