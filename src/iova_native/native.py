# SPDX-License-Identifier: GPL-2.0-or-later
"""The native backend: the C core in ``csrc/`` (GLib GTree, QEMU-style) reached through cffi.

Each method is thin: one C call, which takes the tree's lock, does the work and writes the
answer into a small buffer; Python slices the buffer once and builds the ``DMAMap``.  Arguments
that are exact ints go straight to C.  Anything else (cffi would take whatever has ``__int__``:
floats, ``Decimal``), or a value cffi refuses (out of range), or a C answer "invalid", sends the
call down the slow path: the shared checks of ``_types``, which raise exactly what the reference
raises, or convert the arguments (a NumPy integer, say) for one more try.

Answer buffers come from a per-object pool, not one shared buffer: cffi releases the GIL during
the call, and two threads must never read each other's answers.

``fork()``: a child inherits every tree's lock in the state it was in, and a lock held by a
thread that does not exist in the child would never open.  So the hooks registered here (with
``os.register_at_fork``) take the lock of every live object before the fork, waiting for calls in
flight in other threads to finish (a fork waits at most for the longest such call), and give them
back after it, in the parent and in the child: every tree is usable in the child, its contents
as they were between two calls.  A tree the hooks did not lock (created by another thread in the
instant before the fork) and that the child finds locked is *lost*: its contents may be
half-changed, so the child treats it as closed (``ValueError`` naming the cause) and never reads
or frees it; ``close()`` works.  Meanwhile the forking thread's signals are blocked, and a
finalizer or a signal handler that runs in it anyway and calls a tree the hooks hold goes in
without locking (``_fork_prepare``).  The hooks are Python code that such a handler's exception
can cut short at any call: each is run to its end again, and C hooks registered after them
give back every lock whatever happened (``_FORK_SET``).
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import threading
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, TypeVar

from . import _types as T
from ._container import Container, TreeContainer, vhost_state
from ._dmamap import from_fields
from ._types import (
    MAX_U64,
    DMAMap,
    InvalidMapError,
    IOVAError,
    NoSpaceError,
    Perm,
    TranslationError,
)
from .api import U64Array


def _load_core() -> tuple[Any, Any]:
    """The extension, loaded with GLib's slice allocator set to plain malloc().

    GTree takes its nodes from GSlice, which before GLib 2.76 keeps per-thread caches: a
    thread that used it gives them back, under the allocator's own locks, as it exits (a
    thread-local destructor, after Python has let the thread go, so no lock of ours can
    cover it).  A fork() at that instant leaves those locks held in the child, and its first
    tree hangs for ever in ``g_slice_alloc``.  ``G_SLICE=always-malloc``, read once as GLib
    initialises (here), sends GSlice to malloc(), which glibc makes safe across fork(); it is
    what every GLib from 2.76 does anyway.  A ``G_SLICE`` the user set is left alone, and
    the variable is taken out again once GLib has read it (child processes see the
    environment they had).  A GLib that something else loaded first keeps its allocator."""
    ours = "G_SLICE" not in os.environ
    if ours:
        os.environ["G_SLICE"] = "always-malloc"
    try:
        from ._core import ffi, lib
    finally:
        if ours:
            os.environ.pop("G_SLICE", None)
    return ffi, lib


ffi, lib = _load_core()

__all__ = ["IOVATree", "GPATree", "VhostIOVATree"]

# A DMAMap from five fields read from C (or already checked): no checks, no temporary tuple.
_make: Callable[[tuple[int, int, int, Perm, int]], DMAMap] = from_fields
_PERMS = T._PERMS
_NULL = ffi.NULL
_CLOSED = lib.IB_CLOSED
_CHANGED = lib.IB_CHANGED
_OK = lib.IOVA_OK
_ERR_INVALID = lib.IOVA_ERR_INVALID
_ERR_OVERLAP = lib.IOVA_ERR_OVERLAP
_ERR_NOMEM = lib.IOVA_ERR_NOMEM
_ERR_TRANSLATION = lib.IOVA_ERR_TRANSLATION
_ERR_OOM = lib.IOVA_ERR_OOM
_WORDS = 5  # a map crosses as iova, translated_addr, size, perm, id
_CHUNK = 256  # maps copied per C call when listing
_SEGS = 64  # segments the pooled translate buffer holds
_ARG_ERRORS = (TypeError, OverflowError)
# Before 3.10, array("Q", ...) falls back on __int__ (a Decimal or a float-like object passes
# with a DeprecationWarning), so there only the checked conversion is trusted.
_ARRAY_USES_INDEX = sys.version_info >= (3, 10)
_POLICIES = {"first": 0, "last": 1}
_FIRST = "first"  # ``policy is _FIRST``: the default left alone (any other "first" takes _POLICIES)
# Module globals are found faster than attributes of ``lib`` on the hot paths.
_ib_find_map = lib.ib_tree_find_map
_ib_find_map_try = lib.ib_tree_find_map_try
_ib_removals_try = lib.ib_tree_removals_try
_ib_remove = lib.ib_tree_remove
_ib_insert = lib.ib_tree_insert
_ib_find_entry = lib.ib_tree_find_entry_try
_ib_find_entry_at = lib.ib_tree_find_entry_at_try
_ib_find_iova_entry = lib.ib_tree_find_iova_entry_try
_ib_find_iova_entry_at = lib.ib_tree_find_iova_entry_at_try
_ib_find_iova_id_entry = lib.ib_tree_find_iova_id_entry_try
_ib_insert_map = lib.ib_tree_insert_map
_ib_insert_obj_try = lib.ib_tree_insert_obj_try
_address = id  # CPython's id() is the object's address
_ib_remove_entries = lib.ib_tree_remove_entries
_ib_remove_entries_try = lib.ib_tree_remove_entries_try
_ib_remove_at = lib.ib_tree_remove_at
_ib_remove_at_try = lib.ib_tree_remove_at_try
_ib_alloc_key = lib.ib_tree_alloc_key
_ib_alloc_key_try = lib.ib_tree_alloc_key_try
_ib_alloc_first_key = lib.ib_tree_alloc_first_key
_ib_alloc_first_key_try = lib.ib_tree_alloc_first_key_try
_NONE = lib.IB_NONE
_TOP = lib.IB_TOP
_BUSY = lib.IB_BUSY
_CODE_MIN = lib.IB_CODE_MIN
_WRAP = 1 << 64  # a key answer below IB_CODE_MIN is the key minus 2**64
_ZERO, _ONE = 0, 1  # ``x is _ZERO``: exactly the int 0 (a default left alone), in one test
_REMOVED_INLINE = 16  # keys of removed maps a removal has room for in its first call
# Every live tree by id (trees are unhashable), for the fork handler.
_TREES: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_ib_find_all = lib.ib_tree_find_all
_ib_find_iova_all = lib.ib_tree_find_iova_all
_POOLED_MAPS = 2 * _SEGS // _WORDS  # maps a range query's first call has room for


def _fill_buffer() -> Any:
    return ffi.new("uint64_t[]", _WORDS + 1)  # a map, and the removal count copied with it


def _removed_buffer() -> Any:
    return ffi.new("uint64_t[]", _REMOVED_INLINE)


_N = TypeVar("_N", bound="_Native")
_T = TypeVar("_T", bound="_Tree")


def _maps(words: list[int]) -> list[DMAMap]:
    return [
        _make((words[i], words[i + 1], words[i + 2], _PERMS[words[i + 3]], words[i + 4]))
        for i in range(0, len(words), _WORDS)
    ]


def _u64_view(values: Any) -> Any:
    """``values`` as a cffi ``uint64_t[]``; a C-contiguous uint64 buffer is used in place.

    Every other input is read once (``_types.batch_input``): a one-shot iterator is never
    consumed by a failed fast attempt and then read again from where it stopped.
    """
    source, in_place, _ = T.batch_input(values)
    if in_place:
        # The object itself, not a memoryview of it: cffi must own the buffer export, or a
        # garbage collection can release the view under it.
        return ffi.from_buffer("uint64_t[]", source)
    if not _ARRAY_USES_INDEX:
        return ffi.from_buffer("uint64_t[]", array("Q", T.check_u64_list(source)))
    try:
        converted = array("Q", source)  # one C pass; __index__ semantics, as check_u64
    except _ARG_ERRORS:
        converted = array("Q", T.check_u64_list(source))  # raises the precise error
    return ffi.from_buffer("uint64_t[]", converted)


def _words(count: int) -> tuple[Any, memoryview]:
    """A C buffer of ``count`` uint64 and a memoryview on it: indexing the view is the
    cheapest way back to Python ints."""
    cbuf = ffi.new("uint64_t[]", count)
    return cbuf, memoryview(ffi.buffer(cbuf)).cast("Q")


def _map_buffer() -> tuple[Any, memoryview]:
    return _words(2 * _WORDS)  # room for an answer and, on overlap, the map hit


def _segments_buffer() -> tuple[Any, memoryview, Any, Any]:
    cbuf, view = _words(2 * _SEGS)
    return cbuf, view, ffi.new("size_t[1]"), ffi.new("uint64_t[1]")


def _pop(pool: list[Any], make: Callable[[], Any]) -> Any:
    """A buffer from ``pool``, or a new one; two threads can never get the same buffer."""
    try:
        return pool.pop()
    except IndexError:  # empty, or emptied by another thread since: no check-then-pop race
        return make()


class _Native:
    """What every native class shares: the C handle, the buffer pools, listing, closing."""

    __slots__ = ("_h", "_memory", "_maps_pool", "_segs_pool", "__weakref__")
    _h: Any
    _len_fn: Callable[[Any], int]
    _generation_fn: Callable[[Any], int]
    _copy_fn: Callable[..., int]
    _dump_fn: Callable[..., int]
    _closed_fn: Callable[[Any], int]
    _close_fn: Callable[[Any], int]
    _check_fn: Callable[..., int]
    _clear_fn: Callable[[Any], int]
    _fork_child_fn: Callable[[Any], int]

    def _setup(self, ctype: str, size: int, init: Callable[[Any], int],
               close: Callable[[Any], int]) -> None:
        # The handle lives in memory Python owns, freed with the last object that holds it
        # and never by a finalizer: the collector runs the finalizers of one garbage cycle in
        # no set order, so the handle's own (which closes the tree) may run before a
        # ``__del__`` of that cycle that still calls the tree.  That call finds the tree
        # closed; were the handle freed there, it would read freed memory (or wait for ever
        # on a "lock" in it).  A tree brought back to life by such a ``__del__`` stays closed.
        memory = ffi.new("uint64_t[]", (size + 7) // 8)  # zeroed, aligned for a pointer
        # The finalizer before the C tree: an exception a signal handler raises anywhere
        # below leaves nothing unfreed (closing a handle never set up, all zeros, does nothing).
        handle = ffi.gc(ffi.cast(ctype, memory),
                        functools.partial(_close_outside_fork, close, memory))
        # GLib's slice allocator has a lock of its own: a fork while another thread is inside
        # it leaves the child's allocator locked for ever.  Every other GLib call on a tree
        # runs under the tree's lock, which the fork hooks take; making a tree and the
        # finalizer's close run under none, so they exclude the hooks here instead.
        with _fork_serial:
            rc = init(handle)
        if rc != _OK:
            raise MemoryError(f"iova_native: cannot create a {type(self).__name__}")
        self._memory = memory
        self._h = handle
        self._maps_pool: list[Any] = []
        self._segs_pool: list[tuple[Any, memoryview, Any, Any]] = []
        _live[id(self)] = self

    # -- errors -------------------------------------------------------------------------

    def _raise_closed(self) -> NoReturn:
        if id(self) in _lost_at_fork and _lost_at_fork[id(self)] is self:
            raise ValueError(
                f"{type(self).__name__} was in use by another thread when this process forked: "
                "its contents may be half-changed, so this child cannot use it (close() works)"
            )
        raise ValueError(f"{type(self).__name__} is closed")

    def _check_open(self) -> None:
        if self._closed_fn(self._h):
            self._raise_closed()

    def _fail(self, rc: int) -> NoReturn:
        """Raise the error for C's answer ``rc`` (callers have run the shared checks first, so
        an "invalid" that reaches here is C's own verdict)."""
        if rc == _CLOSED:
            self._raise_closed()
        if rc == _ERR_INVALID:
            raise InvalidMapError("invalid map or parameters")
        if rc == _ERR_NOMEM:
            raise NoSpaceError("no free IOVA range fits")
        if rc == _ERR_OOM:
            raise MemoryError("iova_native: out of memory")
        raise RuntimeError(f"iova_native: unexpected answer {rc} from C")

    # -- whole-tree reads ---------------------------------------------------------------

    def __len__(self) -> int:
        n = self._len_fn(self._h)
        if n == _CLOSED:
            self._raise_closed()
        return int(n)

    def __repr__(self) -> str:
        n = self._len_fn(self._h)
        state = "closed" if n == _CLOSED else f"{n} maps"
        return f"<native.{type(self).__name__}: {state}>"

    def _copy_all(self, which: tuple[int, ...]) -> list[DMAMap]:
        """Every map of one tree in key order, copied in one look under the lock (a writer
        that never pauses cannot starve it, as it could a walk in steps)."""
        cap = _CHUNK
        while True:
            buf, view = _words(_WORDS * cap)
            total = self._dump_fn(self._h, *which, buf, cap)
            if total == _CLOSED:
                self._raise_closed()
            if total <= cap:
                return _maps(view[0 : _WORDS * total].tolist())
            cap = total + total // 8 + _CHUNK  # it grew since the last look: room to spare

    def _copy_into(self: _N, twin: _N, copy_into: Callable[[Any, Any], int]) -> _N:
        """``twin`` (new, empty) given every map of this object in one C call."""
        # The C call holds this object's lock and then the twin's.  The fork hooks take locks
        # one object at a time in no set order: they must not run meanwhile, or they could
        # hold the twin's lock while waiting for this one's.
        with _fork_serial:
            rc = copy_into(twin._h, self._h)
        if rc != _OK:
            twin.close()
            self._fail(rc)
        return twin

    def _change_count(self) -> int:
        gen = self._generation_fn(self._h)
        if gen == _CLOSED:
            self._raise_closed()
        return int(gen)

    def _iterate(self, which: tuple[int, ...], key_index: int) -> Iterator[DMAMap]:
        gen = self._generation_fn(self._h)  # the snapshot is taken by iter(), not next()
        if gen == _CLOSED:
            self._raise_closed()
        return self._iter_from(gen, which, key_index)

    def _iter_from(self, gen: int, which: tuple[int, ...], key_index: int) -> Iterator[DMAMap]:
        h, generation = self._h, self._generation_fn
        buf, view = _words(_WORDS * _CHUNK)
        key, inclusive = 0, 1
        while True:
            n = self._copy_fn(h, *which, gen, key, inclusive, buf, _CHUNK)
            if n == _CLOSED:
                self._raise_closed()
            if n == _CHANGED:
                raise RuntimeError(f"{type(self).__name__} changed during iteration")
            words = view[0 : _WORDS * n].tolist()
            for m in _maps(words):
                yield m
                if generation(h) != gen:  # like dict: the next step after a change raises
                    self._check_open()
                    raise RuntimeError(f"{type(self).__name__} changed during iteration")
            if n < _CHUNK:
                return
            key, inclusive = words[-_WORDS + key_index], 0

    def clear(self) -> None:
        """Remove every map."""
        if self._clear_fn(self._h) == _CLOSED:
            self._raise_closed()

    def check(self) -> None:
        """Verify every internal invariant; AssertionError names the first broken one."""
        err = ffi.new("char[]", 512)
        rc = self._check_fn(self._h, err, 512)
        if rc == _CLOSED:
            self._raise_closed()
        if rc == _ERR_OOM:
            raise MemoryError("iova_native: out of memory")
        if rc != 0:
            raise AssertionError(ffi.string(err).decode())

    def close(self) -> None:
        """Free the C tree now; every later call raises ValueError.  May be called again."""
        # The C call frees the tree after letting go of its lock, through GLib's slice
        # allocator as the finalizer's free does: like that free, it excludes the fork hooks.
        with _fork_serial:
            self._close_fn(self._h)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return bool(self._closed_fn(self._h))

    def __enter__(self: _N) -> _N:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared call shapes -------------------------------------------------------------

    def _one_map(self, call: Callable[..., int], args: tuple[Any, ...]) -> DMAMap | None:
        """``call(h, *args, buf)`` answering 1 with a map in buf, 0 for none, or an error."""
        pool = self._maps_pool
        pair = _pop(pool, _map_buffer)
        try:
            rc = call(self._h, *args, pair[0])
            if rc == 1:
                o = pair[1]  # read before the buffer goes back to the pool
                return _make((o[0], o[1], o[2], _PERMS[o[3]], o[4]))
        finally:
            pool.append(pair)
        if rc == 0:
            return None
        self._fail(rc)

    def _translate(self, call: Callable[..., int], args: tuple[Any, ...],
                   noun: str = "translated address") -> list[tuple[int, int]]:
        """``call``'s segments; ``noun`` names the address kind a gap is reported in."""
        pool = self._segs_pool
        bufs = _pop(pool, _segments_buffer)
        segs, view, count, fault = bufs
        try:
            rc = call(self._h, *args, segs, _SEGS, count, fault)
            n = count[0]
            if rc == _OK and n > _SEGS:
                while True:  # the tree may change between the calls: grow until it fits
                    segs, view = _words(2 * n)
                    rc = call(self._h, *args, segs, n, count, fault)
                    if rc != _OK or count[0] <= n:
                        break
                    n = count[0]
            n = count[0]
            words = view[0 : 2 * n].tolist() if rc == _OK else None
            address = fault[0]
        finally:
            pool.append(bufs)
        if words is not None:
            return list(zip(words[0::2], words[1::2]))
        if rc == _ERR_TRANSLATION:
            raise TranslationError(f"no map covers {noun} {address:#x}", address)
        self._fail(rc)

    def _batch(self, call: Callable[..., int], values: Any, missing: Any,
               noun: str = "translated address") -> U64Array:
        """``call(src, n, out, has_missing, missing, miss)`` over a whole input at once;
        ``noun`` names the kind of the input's addresses in a TranslationError, as the
        reference does."""
        if missing is not None and (type(missing) is not int or not 0 <= missing <= MAX_U64):
            self._check_open()
            missing = T.check_missing(missing)
        try:
            src = _u64_view(values)
        except Exception:  # whatever an element's __index__ raised: a closed tree says so first
            self._check_open()
            raise
        # Buffer exports are released as soon as the call returns: an exception's traceback
        # can keep these cdata in a reference cycle, and a garbage collection that tears the
        # cycle down in the wrong order would release the exporter's view twice.
        try:
            n = len(src)
            out = array("Q", bytes(8 * n))
            dst = ffi.from_buffer("uint64_t[]", out)
            miss = ffi.new("size_t[1]")
            has_missing = missing is not None
            try:
                rc = call(src, n, dst, has_missing, missing if has_missing else 0, miss)
            finally:
                ffi.release(dst)
            address = int(src[miss[0]]) if rc == _ERR_TRANSLATION else 0
        finally:
            ffi.release(src)
        if rc == _OK:
            return out
        if rc == _CLOSED:
            self._raise_closed()
        raise TranslationError(f"no map covers {noun} {address:#x}", address)


class _Tree(_Native, TreeContainer):
    """IOVATree and GPATree: one C tree, keyed by IOVA (kind 0) or translated address (1).

    The look-ups cross back as one integer, the *entry* of the map found (``IB_CODE_MIN`` in
    iova-binding.h), and ``_cache`` turns it into a ``DMAMap``: the same object every time,
    built once, the first time the map is found.  In an IOVATree the entry is the slot of the
    map in the C tree's arena and ``_cache`` a list indexed by it (a look-up reads one list
    item, where a dictionary would hash, probe and compare keys: 30 ns less at 1k maps, about
    150 ns less at 100k, where each of those is a cache miss); in a GPATree, whose maps have
    no slot, the entry is the map's key and ``_cache`` a dictionary.  Only maps that were
    found get a ``DMAMap``; the list, from the first look-up on, has room (8 bytes a slot)
    for every map stored then, so that it grows once rather than at each higher slot.

    Why this is safe with threads, with no Python lock: the C calls that look up, fill,
    insert and remove keep the GIL (the ``_try`` forms, iova-binding.h), but the GIL can
    still pass to another thread between two steps of a method.  Every removal (``remove``,
    ``clear``, ``close``) and every fill of the cache is an *operation*: it puts an item on
    ``_active`` for its length (``list.append`` and ``pop`` are atomic) and sets ``_seq`` to a
    new token (an int never seen before, ``_next_token``) at its end.  A look-up reads
    ``_seq`` before its C call and trusts the entry it reads after it only if no operation is
    active then and ``_seq`` is the same object: any removal that could have freed the slot
    between the C call and the read of the entry, and any fill that could have written it, is
    either still active or has changed the token.  ``_active`` is read first: 3.9 and 3.10
    may hand the GIL over between the two reads, and an operation active at a first read of
    ``_seq`` and ended by a read of ``_active`` after it would go unseen (it changed ``_seq``
    only after the first read), where one that is active at the read of ``_active`` is seen,
    and one ended before it changed ``_seq`` before the read of ``_seq``.  Otherwise the
    look-up fills, which asks C again.  What keeps an entry that is trusted right:
    - a removal drops the entries of the maps it took away (``None`` is always safe: it sends
      a look-up to the fill);
    - a fill copies the map out of C with the tree's count of removals
      (``ib_tree_find_map``), caches it, then asks the count again
      (``ib_tree_removals_try``): if a removal ran in between, it may have dropped the entry
      before the fill wrote it, so the fill takes its own entry back out (when it is still
      there).  A fill whose count held wrote after any removal of that map could drop it,
      and any later removal drops it.
    Inserts and allocations never touch the cache (a slot or a key that is free has no entry).
    Interrupts (a KeyboardInterrupt, or any exception a signal handler raises) come, on
    CPython 3.11, only where Python runs the handlers: right after a call, at a loop's jump
    back, on entering a function.  So an operation draws its token (its item on
    ``_active``) before its ``try``, appends it as the first call inside it, and its
    ``finally``, written out in each (a helper's entry would be such a place), makes no call
    before it takes the item off: it stores the token, and, when the operation was cut short
    where an entry may be stale (after a removal's C call and before its drop, after a fill's
    caching and before its check), it replaces the whole cache with an empty one.  It
    removes its own item, not the last one: 3.9 and 3.10 may run a handler before any
    instruction, so the ``try`` may be left before the item was appended, and popping would
    end another operation.  What an interrupt can still do there, on 3.9 and 3.10 only, is
    keep an item on ``_active`` for good: safe (look-ups stop trusting the cache), but slow.
    """

    __slots__ = ("_cache", "_seq", "_next_token", "_active", "_fill_pool", "_removed_pool")
    _kind = 0
    _key_name = "iova"
    _len_fn = staticmethod(lib.ib_tree_len)
    _generation_fn = staticmethod(lib.ib_tree_generation)
    _copy_fn = staticmethod(lib.ib_tree_copy)
    _dump_fn = staticmethod(lib.ib_tree_dump)
    _closed_fn = staticmethod(lib.ib_tree_closed)
    _close_fn = staticmethod(lib.ib_tree_close)
    _check_fn = staticmethod(lib.ib_tree_check)
    _clear_fn = staticmethod(lib.ib_tree_clear)
    _fork_child_fn = staticmethod(lib.ib_tree_fork_child)

    def __init__(self, maps: Iterable[DMAMap] = ()) -> None:
        """An empty tree, then every map of ``maps`` inserted, all or nothing."""
        kind = self._kind
        self._setup("IBTree *", lib.ib_tree_size(), lambda h: lib.ib_tree_init(h, kind),
                    lib.ib_tree_close)
        self._cache: Any = self._new_cache()
        # Tokens above the small ints Python keeps a single object of: each one a new object.
        self._next_token = itertools.count(1 << 10).__next__
        self._seq: object = self._next_token()
        self._active: list[int] = []
        self._fill_pool: list[Any] = []
        self._removed_pool: list[Any] = []
        _TREES[id(self)] = self
        self._fill(maps)

    def _after_fork(self) -> None:
        """In a forked child: the operations the parent's other threads had under way are
        gone, halfway through.  ``_active`` is emptied last: an exception that cuts this short
        (it is run again, _run_to_end) must not leave the cache trusted and stale."""
        self._cache = self._new_cache()
        self._seq = self._next_token()
        self._active = []

    def __iter__(self) -> Iterator[DMAMap]:
        return self._iterate((), self._kind)

    def maps(self) -> list[DMAMap]:
        """Every map, in key order."""
        return self._copy_all(())

    # -- the cache ----------------------------------------------------------------------

    def _new_cache(self) -> Any:
        """An empty cache: a list indexed by slot (IOVATree), a dictionary by key (GPATree)."""
        return {} if self._kind else []

    def _cached(self, answer: int, seq: object, reverse: int,
                args: tuple[Any, ...]) -> DMAMap | None:
        """The map of an entry answer that the fast path did not settle: a key at or above
        2**63, a cache miss, IB_BUSY (a _try look-up found the tree held), or an error.
        ``ib_tree_find_map(h, reverse, *args, out)`` is the same look-up copying the map
        out, which the fill asks again (waiting for the tree).  A key in the top
        -IB_CODE_MIN bytes (answer IB_TOP) is not decoded from errno, which the _try forms
        leave alone and any cffi call made since (a finalizer freeing another tree, a signal
        handler) may have changed: the fill reads the key from the map it copies out."""
        if answer == _NONE:
            return None
        if answer < _CODE_MIN:
            entry: int | None = answer + _WRAP
        else:
            entry = answer if answer >= 0 else None  # IB_TOP, or an error the fill raises
        if entry is not None:
            try:
                m = self._cache[entry]
            except LookupError:
                m = None
            if m is not None and not self._active and self._seq is seq:
                return m  # type: ignore[no-any-return]
        return self._fill_cache(reverse, args)

    def _fill_cache(self, reverse: int, args: tuple[Any, ...]) -> DMAMap | None:
        """Ask C again, copying the map out, and cache it (an operation: see the class's
        comment).  The entry already cached is kept when it is the same map, so that a map
        comes back as one object for as long as it is stored."""
        pool, active = self._fill_pool, self._active
        out = _pop(pool, _fill_buffer)
        token, stored = self._next_token(), False
        try:
            active.append(token)
            r = _ib_find_map_try(self._h, reverse, *args, out)
            if r == _BUSY:  # another call holds the tree: wait for it
                r = _ib_find_map(self._h, reverse, *args, out)
            if r == _NONE:
                return None
            if _CODE_MIN <= r < 0 and r != _TOP:
                self._fail(r)
            iova, taddr, size, perm, id, removals = ffi.unpack(out, _WORDS + 1)
            m = _make((iova, taddr, size, _PERMS[perm], id))
            cache = self._cache
            key = r if type(cache) is list else taddr  # the slot, or the map's key
            try:
                cached = cache[key]
            except LookupError:
                cached = None
                if type(cache) is list:
                    # Room for every map stored now, and a quarter more: one extension for a
                    # tree's first look-ups, not one each time a higher slot comes up.
                    want = max(r + 1, int(self._len_fn(self._h)))
                    cache.extend([None] * (want + (want >> 2) + 16 - len(cache)))
            if cached == m:
                return cached  # type: ignore[no-any-return]
            # Noted before the write, not after: 3.9 and 3.10 may run a signal handler right
            # after it, whose exception would leave an entry that may be stale, unnoted.
            stored = True  # until the count is checked (see the finally clause)
            try:
                cache[key] = m
            except IndexError:  # emptied by clear() since: left uncached
                stored = False
                return m
            if _ib_removals_try(self._h) != removals:
                # A removal ran since the copy: it may have dropped this entry before it was
                # written, so it goes (None, or no key, is always safe: the next look-up fills).
                try:
                    if cache[key] is m:
                        if type(cache) is list:
                            cache[key] = None
                        else:
                            del cache[key]
                except LookupError:  # emptied, or taken out by another thread, since
                    pass
            stored = False
            return m
        finally:
            if stored:  # interrupted before the count was checked: the entry may be stale
                self._cache = {} if self._kind else []
            self._seq = token
            try:  # its own item, not the last (see the class's comment)
                active.remove(token)
            except ValueError:  # never appended
                pass
            pool.append(out)

    def _drop(self, entries: Iterable[int]) -> None:
        """Take the maps of ``entries`` (removed from C) out of the cache.  The list's length
        is read at each entry, and a shorter list forgiven: with no lock, a clear() (another
        thread's, or a finalizer's in this one) may empty it between two entries."""
        cache = self._cache
        if type(cache) is list:
            for e in entries:
                if e < len(cache):
                    try:
                        cache[e] = None
                    except IndexError:  # emptied since the length was read
                        pass
        else:
            for e in entries:
                cache.pop(e, None)

    # -- updates ------------------------------------------------------------------------

    def insert(self, map: DMAMap) -> None:
        """Store ``map``; OverlapError (``.existing``, the lowest map hit) if its range is taken."""
        if type(map) is DMAMap:
            # One word crosses: the map's address, whose fields C reads from the tuple itself
            # (csrc/iova-pymap.h).  A field C does not read there (not an int in 0..2**63-1)
            # gives IOVA_ERR_INVALID, as does an invalid map.
            rc = _ib_insert_obj_try(self._h, _address(map))
            if rc == _OK:
                return
            if rc == _ERR_OVERLAP:
                return self._overlap(T.check_map(map))
            if rc != _ERR_INVALID and rc != _BUSY:
                self._fail(rc)
        # Not a DMAMap, a field C did not read, or C found the map invalid: rebuilding it
        # through the constructor raises what the reference raises, or normalises it, and a
        # field in the top half of the space is stored from here.  (Or another call held the
        # tree: this call waits for it.)
        self._check_open()
        map = T.check_map(map)
        rc = _ib_insert_map(self._h, *tuple.__iter__(map))
        if rc == _OK:
            return
        if rc == _ERR_OVERLAP:
            return self._overlap(map)
        self._fail(rc)

    def _overlap(self, map: DMAMap) -> None:
        """Raise the OverlapError of a refused insert of ``map`` (valid, with plain fields)."""
        existing = self._find_key(map[self._kind], map[2])
        if existing is None:  # removed since by another thread: the insert may fit now
            return self.insert(map)
        raise T.overlap(map, existing)

    def _remove_key(self, iova: int, size: int = 0) -> int:
        """Remove every map overlapping ``[iova, iova + size]``; return how many."""
        if type(iova) is not int or type(size) is not int:  # only exact ints go to C
            self._check_open()
            iova, size = T.check_range(iova, size, self._key_name)
        # An operation (see the class's comment): look-ups meanwhile stop trusting the cache.
        active, token, done = self._active, self._next_token(), False
        try:
            active.append(token)
            if size is _ZERO:  # one byte: C answers the entry of the map removed, if any
                r = _ib_remove_at_try(self._h, iova)
                if r == _BUSY:  # another call holds the tree: wait for it
                    r = _ib_remove_at(self._h, iova)
                if r >= 0:
                    cache = self._cache
                    if type(cache) is not list:
                        cache.pop(r, None)
                    elif r < len(cache):
                        try:
                            cache[r] = None
                        except IndexError:  # emptied by clear() since
                            pass
                    n = 1
                elif r == _NONE:
                    n = 0
                elif r < _CODE_MIN:  # a GPATree's key at or above 2**63
                    self._drop((r + _WRAP,))
                    n = 1
                elif r == _TOP:  # a key in the top -IB_CODE_MIN bytes: errno is not trusted
                    self._drop(range(MAX_U64 + 1 + _CODE_MIN, MAX_U64 + 1))  # (see _cached)
                    n = 1
                else:
                    n = r
            else:
                n = self._remove_range(iova, size)
            done = True
        except OverflowError:  # from cffi, before the C call
            n, done = _ERR_INVALID, True
        finally:
            if not done:  # interrupted, maybe between C's removal and the drop: forget all
                self._cache = {} if self._kind else []
            self._seq = token
            try:  # its own item, not the last (see the class's comment)
                active.remove(token)
            except ValueError:  # never appended
                pass
        if n >= 0:
            return n
        if n == _ERR_INVALID:  # out of range, or a wrapping range: the checks name it
            self._check_open()
            T.check_range(iova, size, self._key_name)
        self._fail(n)

    def _remove_range(self, iova: int, size: int) -> int:
        """The removal of ``_remove_key`` for a range of more than one byte: C writes the
        entries of the maps it removed, which leave the cache.  Always, even while the cache
        is empty: a fill running beside this removal may cache one of its maps, and only a
        fill that ends before the removal can notice (by the removal count) and undo it."""
        pool = self._removed_pool
        entries, cap = _pop(pool, _removed_buffer), _REMOVED_INLINE
        try:
            n = _ib_remove_entries_try(self._h, iova, size, entries, cap)
            if n == _BUSY:  # another call holds the tree: wait for it
                n = _ib_remove_entries(self._h, iova, size, entries, cap)
            if 0 < n <= cap:
                self._drop(ffi.unpack(entries, n))
                return int(n)
        finally:
            pool.append(entries)
        while n > cap:
            # Nothing removed: again, with room for all.  Inserts are no operations, so
            # another thread's may have added maps to the range since: then again.
            cap = n + n // 8 + _REMOVED_INLINE
            entries = ffi.new("uint64_t[]", cap)
            n = _ib_remove_entries(self._h, iova, size, entries, cap)
            if 0 < n <= cap:
                self._drop(ffi.unpack(entries, n))
        return int(n)

    def _remove_all(self, call: Callable[[Any], int]) -> int:
        """``call(h)``, which takes every map away (clear, close), as an operation (see the
        class's comment), then the cache emptied.  Answers what ``call`` answers.  (``remove``
        does the same inline: it is a hot path.)"""
        active, token, done = self._active, self._next_token(), False
        try:
            active.append(token)
            rc = call(self._h)
            self._cache.clear()
            done = True
        finally:
            if not done:  # interrupted, maybe between C's removal and the clear
                self._cache = {} if self._kind else []
            self._seq = token
            try:  # its own item, not the last (see the class's comment)
                active.remove(token)
            except ValueError:  # never appended
                pass
        return rc

    def clear(self) -> None:
        """Remove every map."""
        if self._remove_all(self._clear_fn) == _CLOSED:
            self._raise_closed()

    def close(self) -> None:
        """Free the C tree now; every later call raises ValueError.  May be called again."""
        # The fork hooks' lock first (see _Native.close), then the cache's: no holder of the
        # cache's lock ever waits for the hooks' lock.
        with _fork_serial:
            self._remove_all(self._close_fn)

    def _range(self, call: Callable[..., int], args: tuple[Any, ...]) -> list[DMAMap]:
        """``call(h, *args, buf, cap)`` answering how many maps there are.  Up to
        ``_POOLED_MAPS`` come back in a pooled translate buffer; more in one grown until they
        fit (the tree may change between two calls)."""
        pool = self._segs_pool
        bufs = _pop(pool, _segments_buffer)
        try:
            total = call(self._h, *args, bufs[0], _POOLED_MAPS)
            if 0 <= total <= _POOLED_MAPS:
                return _maps(bufs[1][0 : _WORDS * total].tolist())
        finally:
            pool.append(bufs)
        while total >= 0:
            cap = total + total // 8 + _POOLED_MAPS
            buf, view = _words(_WORDS * cap)
            total = call(self._h, *args, buf, cap)
            if 0 <= total <= cap:
                return _maps(view[0 : _WORDS * total].tolist())
        self._fail(total)

    def copy(self: _T) -> _T:
        """An independent tree with the same maps, copied in C in one call (O(n log n))."""
        return self._copy_into(type(self)(), lib.ib_tree_copy_into)

    def _find_all_key(self, key: int, size: int = 0) -> list[DMAMap]:
        # Only exact ints go straight to C (cffi would take anything with __int__).
        if type(key) is int and type(size) is int:
            try:
                return self._range(_ib_find_all, (key, size))
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        return self._range(_ib_find_all, T.check_range(key, size, self._key_name))

    # The look-ups are written out in one frame each: one C call, one read of the cache.  They,
    # insert, the removals and the fill call the _try forms of iova-binding.h, whose cffi
    # wrappers keep the GIL (csrc/iova-cffi.h); IB_BUSY sends them to a form that waits.

    def _find_key(self, iova: int, size: int = 0) -> DMAMap | None:
        """The stored map with the lowest key overlapping ``[iova, iova + size]``."""
        if type(iova) is int:  # only exact ints go straight to C
            seq = self._seq
            try:
                r = _ib_find_entry_at(self._h, iova) if size is _ZERO else (
                    _ib_find_entry(self._h, iova, size) if type(size) is int else _ERR_INVALID)
            except OverflowError:
                r = _ERR_INVALID
            if r >= 0:
                try:
                    m = self._cache[r]
                except LookupError:  # not cached: past a list's end, or not in a dictionary
                    m = None
                if m is not None and not self._active and self._seq is seq:
                    return m  # type: ignore[no-any-return]
                return self._fill_cache(0, (iova, size, 0, 0))
            if r == _NONE:
                return None
            if r != _ERR_INVALID:
                return self._cached(r, seq, 0, (iova, size, 0, 0))
        self._check_open()
        return self._fill_cache(0, (*T.check_range(iova, size, self._key_name), 0, 0))


class IOVATree(_Tree):
    """QEMU's ``IOVATree`` in C, with the O(log n) reverse tree (docs/contract.md)."""

    __slots__ = ()

    find = _Tree._find_key
    remove = _Tree._remove_key

    def find_all(self, iova: int, size: int = 0) -> list[DMAMap]:
        """Every stored map whose IOVA range overlaps ``[iova, iova + size]``, in IOVA order;
        O(log n + k)."""
        return self._find_all_key(iova, size)

    def find_iova_all(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> list[DMAMap]:
        """Every stored map whose translated range overlaps ``[translated_addr,
        translated_addr + size]`` (and whose id is ``id`` unless None), in IOVA order."""
        if type(translated_addr) is int and type(size) is int and (id is None or type(id) is int):
            try:
                if id is None:
                    return self._range(_ib_find_iova_all, (translated_addr, size, 0, 0))
                return self._range(_ib_find_iova_all, (translated_addr, size, 1, id))
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        translated_addr, size = T.check_range(translated_addr, size, "translated_addr")
        id = T.check_optional_id(id)
        args = (translated_addr, size, 0, 0) if id is None else (translated_addr, size, 1, id)
        return self._range(_ib_find_iova_all, args)

    def find_iova(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> DMAMap | None:
        """The lowest-IOVA map whose translated range overlaps (and whose id is ``id``)."""
        if type(translated_addr) is int:
            seq = self._seq
            try:
                if id is None:
                    r = _ib_find_iova_entry_at(self._h, translated_addr) if size is _ZERO else (
                        _ib_find_iova_entry(self._h, translated_addr, size)
                        if type(size) is int else None)
                elif type(id) is int and type(size) is int:
                    r = _ib_find_iova_id_entry(self._h, translated_addr, size, id)
                else:
                    r = None
            except OverflowError:
                r = None
            if r is not None:
                if r >= 0:
                    try:
                        m = self._cache[r]
                    except IndexError:  # past the end: not cached
                        m = None
                    if m is not None and not self._active and self._seq is seq:
                        return m  # type: ignore[no-any-return]
                elif r == _NONE:
                    return None
                if r != _ERR_INVALID:  # a miss, IB_BUSY, or an error (raised by the slow path)
                    return self._fill_cache(1, (translated_addr, size, 0, 0) if id is None
                                            else (translated_addr, size, 1, id))
        self._check_open()
        translated_addr, size = T.check_range(translated_addr, size, "translated_addr")
        id = T.check_optional_id(id)
        args = (translated_addr, size, 0, 0) if id is None else (translated_addr, size, 1, id)
        return self._fill_cache(1, args)

    def translate(
        self, translated_addr: int, length: int, id: int | None = None
    ) -> list[tuple[int, int]]:
        """Minimal ``(iova, nbytes)`` segments covering ``length`` bytes from the address."""
        if type(translated_addr) is int and type(length) is int and (id is None or type(id) is int):
            try:
                return self._translate_raw(translated_addr, length, id)
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        translated_addr, length = T.check_length(translated_addr, length, "translated_addr")
        return self._translate_raw(translated_addr, length, T.check_optional_id(id))

    def _translate_raw(self, addr: Any, length: Any, id: Any) -> list[tuple[int, int]]:
        args = (addr, length, 0, 0) if id is None else (addr, length, 1, id)
        return self._translate(lib.ib_tree_translate, args)

    def alloc(
        self,
        size: int,
        translated_addr: int = 0,
        perm: Perm = Perm.RW,
        id: int = 0,
        iova_begin: int = 0,
        iova_last: int = MAX_U64,
        align: int = 1,
        policy: str = "first",
    ) -> DMAMap:
        """Place, insert and return a map of ``size``: lowest (``"first"``) or highest
        (``"last"``) ``align``-aligned IOVA in ``[iova_begin, iova_last]`` where it fits."""
        if type(size) is type(translated_addr) is type(id) is int and type(perm) is Perm:
            if (iova_begin is _ZERO and iova_last is MAX_U64 and align is _ONE
                    and policy is _FIRST):
                # The defaults, in one C call of five words and no buffer: C places the map
                # only where its IOVA answers as a plain key, and answers IB_TOP otherwise
                # (the first fit is in the top -IB_CODE_MIN bytes, or there is none), or
                # IB_BUSY: then the call below, with a word for the IOVA, decides.
                try:
                    r = _ib_alloc_first_key_try(self._h, size, translated_addr, perm, id, _NULL)
                except OverflowError:
                    r = _ERR_INVALID
                if r >= 0:
                    return _make((r, translated_addr, size, perm, id))
                if r < _CODE_MIN:
                    return _make((r + _WRAP, translated_addr, size, perm, id))
            # A word for C to write an IOVA in the top -IB_CODE_MIN bytes into (IB_TOP): a
            # buffer of this call's own, since another thread's alloc may answer IB_TOP too.
            pool = self._fill_pool
            try:
                top = pool.pop()
            except IndexError:  # empty, or emptied by another thread since
                top = _fill_buffer()
            try:
                if (iova_begin is _ZERO and iova_last is MAX_U64 and align is _ONE
                        and policy is _FIRST):
                    r = _ib_alloc_first_key(self._h, size, translated_addr, perm, id, top)
                elif (type(iova_begin) is type(iova_last) is type(align) is int
                      and type(policy) is str and policy in _POLICIES):
                    r = _ib_alloc_key_try(self._h, size, translated_addr, perm, id,
                                          iova_begin, iova_last, align, _POLICIES[policy], top)
                    if r == _BUSY:
                        r = _ib_alloc_key(self._h, size, translated_addr, perm, id,
                                          iova_begin, iova_last, align, _POLICIES[policy], top)
                else:
                    r = _ERR_INVALID
            except OverflowError:
                r = _ERR_INVALID
            if r >= 0:
                pool.append(top)
                return _make((r, translated_addr, size, perm, id))
            if r == _ERR_NOMEM:  # the arguments passed the type checks above: ints
                raise T.no_space(size, iova_begin, iova_last, align)
            if r != _ERR_INVALID:
                m = self._allocated(r, top, translated_addr, size, perm, id)
                pool.append(top)
                return m
        self._check_open()
        size, translated_addr, perm, id, iova_begin, iova_last, align, policy = T.check_alloc(
            size, translated_addr, perm, id, iova_begin, iova_last, align, policy)
        top = _fill_buffer()
        r = _ib_alloc_key(self._h, size, translated_addr, perm, id, iova_begin, iova_last,
                          align, _POLICIES[policy], top)
        if r == _ERR_NOMEM:
            raise T.no_space(size, iova_begin, iova_last, align)
        return self._allocated(r, top, translated_addr, size, perm, id)

    def _allocated(self, r: int, top: Any, taddr: int, size: int, perm: Perm,
                   id: int) -> DMAMap:
        """The map placed by an alloc whose key answer ``r`` is not a plain key (IB_TOP: the
        IOVA is in ``top[0]``)."""
        if r == _TOP:
            r = int(top[0])
        elif r < _CODE_MIN:
            r += _WRAP
        elif r < 0:
            self._fail(r)
        return _make((r, taddr, size, perm, id))

    def to_translated_many(self, iovas: Any, missing: int | None = None) -> U64Array:
        """For each IOVA, ``map.translated_addr + (iova - map.iova)``, in one C call."""
        h = self._h

        def call(src: Any, n: int, out: Any, has_missing: int, fill: int, miss: Any) -> int:
            return int(lib.ib_tree_to_translated_many(h, src, n, out, has_missing, fill, miss))

        return self._batch(call, iovas, missing, "IOVA")

    def to_iova_many(
        self, translated_addrs: Any, id: int | None = None, missing: int | None = None
    ) -> U64Array:
        """For each translated address, the IOVA ``find_iova(addr, 0, id)`` gives."""
        if id is not None and (type(id) is not int or not 0 <= id <= MAX_U64):
            self._check_open()
            id = T.check_u64(id, "id")
        h, has_id = self._h, id is not None
        key_id = id if id is not None else 0

        def call(src: Any, n: int, out: Any, has_missing: int, fill: int, miss: Any) -> int:
            return int(lib.ib_tree_to_iova_many(h, src, n, out, has_id, key_id, has_missing,
                                                fill, miss))

        return self._batch(call, translated_addrs, missing)


class GPATree(_Tree):
    """QEMU's ``gpa_tree_new()`` tree in C: keyed by translated address (docs/contract.md)."""

    __slots__ = ()
    _kind = 1
    _key_name = "translated_addr"
    _key_field = 1

    def find(self, translated_addr: int, size: int = 0) -> DMAMap | None:
        """The map with the lowest translated address overlapping the range."""
        return self._find_key(translated_addr, size)

    def remove(self, translated_addr: int, size: int = 0) -> int:
        """Remove every map whose translated range overlaps; return how many."""
        return self._remove_key(translated_addr, size)

    def find_all(self, translated_addr: int, size: int = 0) -> list[DMAMap]:
        """Every map whose translated range overlaps the range, in translated order."""
        return self._find_all_key(translated_addr, size)

    def to_iova_many(self, translated_addrs: Any, missing: int | None = None) -> U64Array:
        """For each GPA, ``map.iova + (gpa - map.translated_addr)``, in one C call."""
        h = self._h

        def call(src: Any, n: int, out: Any, has_missing: int, fill: int, miss: Any) -> int:
            return int(lib.ib_tree_to_iova_many(h, src, n, out, 0, 0, has_missing, fill, miss))

        return self._batch(call, translated_addrs, missing, "GPA")


class VhostIOVATree(_Native, Container):
    """QEMU's ``VhostIOVATree`` in C: allocations, host-only and guest trees (docs/contract.md)."""

    __slots__ = ("_iova_first", "_iova_last")
    _len_fn = staticmethod(lib.ib_vhost_len)
    _generation_fn = staticmethod(lib.ib_vhost_generation)
    _copy_fn = staticmethod(lib.ib_vhost_copy)
    _dump_fn = staticmethod(lib.ib_vhost_dump)
    _closed_fn = staticmethod(lib.ib_vhost_closed)
    _close_fn = staticmethod(lib.ib_vhost_close)
    _check_fn = staticmethod(lib.ib_vhost_check)
    _clear_fn = staticmethod(lib.ib_vhost_clear)
    _fork_child_fn = staticmethod(lib.ib_vhost_fork_child)

    def __init__(self, iova_first: int, iova_last: int, page_size: int | None = None) -> None:
        first, last, page = T.check_vhost_bounds(iova_first, iova_last, page_size)
        self._setup("IBVhost *", lib.ib_vhost_size(),
                    lambda h: lib.ib_vhost_init(h, first, last, page), lib.ib_vhost_close)
        self._iova_first = first
        self._iova_last = last

    def _equality_state(self) -> tuple[int, int, list[DMAMap], list[DMAMap], list[DMAMap]]:
        # Three listings are three looks: another thread changing the tree between them would
        # give a state no tree ever had (a pickle that cannot load, a tree unequal to itself).
        before = self._change_count()  # first: a closed tree raises before the listings
        state = (self._iova_first, self._iova_last, self.allocated(), self.host_maps(),
                 self.gpa_maps())
        if self._change_count() == before:
            return state
        # It changed meanwhile: list a private copy, taken in one C call under the lock (a
        # retry loop could be starved by a writer that never pauses).
        twin = self.copy()
        try:
            return twin._equality_state()
        finally:
            twin.close()

    def copy(self) -> VhostIOVATree:
        """An independent tree with the same allocations and maps, copied in C in one call."""
        # Page size 1: ``_iova_first`` is already the effective first IOVA.
        return self._copy_into(type(self)(self._iova_first, self._iova_last, 1),
                               lib.ib_vhost_copy_into)

    @classmethod
    def _from_state(cls, state: Any) -> VhostIOVATree:
        first, last, allocated, host, guest = vhost_state(state)
        tree = cls(first, last, 1)  # @first is already the effective first IOVA
        try:
            _replay_allocations(tree, allocated, host, guest)
        except (IOVAError, ValueError) as exc:  # a state no VhostIOVATree holds
            tree.close()
            # The reference's checks say what is wrong with it, in the words both backends
            # use; the replay's own message is left only should the reference take it.
            from . import reference

            reference.VhostIOVATree._from_state(state).close()
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"VhostIOVATree state: {exc}") from None
        except BaseException:
            tree.close()
            raise
        return tree

    def __contains__(self, item: object) -> bool:
        """Whether a host-only or a guest map equals ``item``; O(log n)."""
        if not isinstance(item, DMAMap):
            self._check_open()
            return False
        for which, field in ((lib.IB_VHOST_HOST, 0), (lib.IB_VHOST_GUEST, 1)):
            try:  # the reference's check of the key, so that forged maps are told alike
                key = T.check_u64(tuple.__getitem__(item, field), "key")
            except (*_ARG_ERRORS, InvalidMapError, IndexError):
                continue  # no key of this tree (a forged field): the other tree may match
            found = self._one_map(lib.ib_vhost_find_key, (which, key, 0))
            if found is not None and tuple.__eq__(found, item):
                return True
        return False

    def _alloc(self, size: Any, taddr: Any, perm: Any, gpa: bool) -> DMAMap:
        if type(size) is int and type(taddr) is int and type(perm) is Perm:
            try:
                return self._alloc_raw(size, taddr, perm, gpa)
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        taddr, size = T.check_sized(size, taddr, "gpa" if gpa else "hva")
        return self._alloc_raw(size, taddr, T.check_perm(perm), gpa)

    def _alloc_raw(self, size: Any, taddr: Any, perm: Any, gpa: bool) -> DMAMap:
        pool = self._maps_pool
        pair = _pop(pool, _map_buffer)
        buf, o = pair
        try:
            if gpa:
                rc = lib.ib_vhost_map_alloc_gpa(self._h, size, taddr, perm, buf, buf + 5)
            else:
                rc = lib.ib_vhost_map_alloc(self._h, size, taddr, perm, buf)
            if rc == _OK:
                answer = _make((o[0], o[1], o[2], _PERMS[o[3]], o[4]))
            elif rc == _ERR_OVERLAP:
                answer = _make((o[5], o[6], o[7], _PERMS[o[8]], o[9]))
        finally:
            pool.append(pair)
        if rc == _OK:
            return answer
        if rc == _ERR_OVERLAP:
            existing = answer
            raise T.gpa_overlap(taddr, size, existing)
        if rc == _ERR_NOMEM:
            raise T.no_space(size, self._iova_first, self._iova_last, 1)
        self._fail(rc)

    def map_alloc(self, size: int, hva: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate the lowest free IOVA range for the host-only buffer at ``hva``."""
        return self._alloc(size, hva, perm, False)

    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate an IOVA range for guest memory at ``gpa`` and record GPA->IOVA; atomic:
        NoSpaceError first, then OverlapError (the allocation rolled back)."""
        return self._alloc(size, gpa, perm, True)

    def _find(self, call: Callable[..., int], addr: int, size: int, name: str) -> DMAMap | None:
        if type(addr) is int and type(size) is int:
            try:
                return self._one_map(call, (addr, size))
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        return self._one_map(call, T.check_range(addr, size, name))

    def find_iova(self, hva: int, size: int = 0) -> DMAMap | None:
        """The host-only map (lowest IOVA) overlapping the HVA range."""
        return self._find(lib.ib_vhost_find_iova, hva, size, "hva")

    def find_gpa(self, gpa: int, size: int = 0) -> DMAMap | None:
        """The guest map (lowest GPA) overlapping the GPA range."""
        return self._find(lib.ib_vhost_find_gpa, gpa, size, "gpa")

    def _remove(self, call: Callable[..., int], key: int, size: int, name: str) -> int:
        n = _ERR_INVALID
        if type(key) is int and type(size) is int:
            try:
                n = call(self._h, key, size)
            except _ARG_ERRORS:
                pass
        if n == _ERR_INVALID:
            self._check_open()
            n = call(self._h, *T.check_range(key, size, name))
        if n >= 0:
            return int(n)
        self._fail(n)

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove host-only maps overlapping the IOVA range, and their allocations."""
        return self._remove(lib.ib_vhost_remove, iova, size, "iova")

    def remove_gpa(self, gpa: int, size: int = 0) -> int:
        """Remove guest maps overlapping the GPA range, and their allocations."""
        return self._remove(lib.ib_vhost_remove_gpa, gpa, size, "gpa")

    def translate(self, hva: int, length: int, gpa: int | None = None) -> list[tuple[int, int]]:
        """Segments of the buffer: through the host-only tree, or, given the ``gpa`` the guest
        knows it by, through the GPA tree (``hva`` is then only checked)."""
        if type(hva) is int and type(length) is int:
            try:
                if gpa is None:
                    return self._translate(lib.ib_vhost_translate, (hva, length, 0))
                if type(gpa) is int and 0 <= hva <= MAX_U64 and hva + length <= MAX_U64 + 1:
                    return self._translate(lib.ib_vhost_translate, (gpa, length, 1), "GPA")
            except (*_ARG_ERRORS, InvalidMapError):
                pass
        self._check_open()
        hva, length = T.check_length(hva, length, "hva")
        if gpa is None:
            return self._translate(lib.ib_vhost_translate, (hva, length, 0))
        gpa = T.check_length(gpa, length, "gpa")[0]
        return self._translate(lib.ib_vhost_translate, (gpa, length, 1), "GPA")

    def to_iova_many(self, hvas: Any, missing: int | None = None) -> U64Array:
        """For each HVA, the IOVA through the host-only map covering it."""
        return self._batch(self._batch_call(0), hvas, missing)

    def gpa_to_iova_many(self, gpas: Any, missing: int | None = None) -> U64Array:
        """For each GPA, the IOVA through the guest map covering it."""
        return self._batch(self._batch_call(1), gpas, missing, "GPA")

    def _batch_call(self, gpa: int) -> Callable[..., int]:
        h = self._h

        def call(src: Any, n: int, out: Any, has_missing: int, fill: int, miss: Any) -> int:
            return int(lib.ib_vhost_to_iova_many(h, gpa, src, n, out, has_missing, fill, miss))

        return call

    def host_maps(self) -> list[DMAMap]:
        """Host-only maps (IOVA -> HVA), in IOVA order."""
        return self._copy_all((lib.IB_VHOST_HOST,))

    def gpa_maps(self) -> list[DMAMap]:
        """Guest maps (GPA -> IOVA; ``translated_addr`` and ``id`` are the GPA), in GPA order."""
        return self._copy_all((lib.IB_VHOST_GUEST,))

    def allocated(self) -> list[DMAMap]:
        """The allocations (``translated_addr`` and ``id`` 0), in IOVA order."""
        return self._copy_all((lib.IB_VHOST_ALLOCATIONS,))


def _translated_addr(m: DMAMap) -> int:
    return m.translated_addr


def _replay_allocations(tree: VhostIOVATree, allocated: list[DMAMap], host: list[DMAMap],
                        guest: list[DMAMap]) -> None:
    """Give the fresh ``tree`` exactly these allocations and maps through its own calls.

    The allocator takes the lowest free range, so the maps are allocated in IOVA order, each
    gap before one first taken by a filler that is removed at the end.  ``ValueError`` when
    the state is not one a VhostIOVATree can hold.
    """
    owners = {(m.iova, m.size): (m, False) for m in host}
    owners.update({(m.iova, m.size): (m, True) for m in guest})
    if len(owners) != len(allocated) or len(host) + len(guest) != len(allocated):
        raise ValueError("VhostIOVATree state: maps and allocations do not match")
    fillers: list[DMAMap] = []
    cursor = tree._iova_first
    for a in sorted(allocated):
        owner = owners.get((a.iova, a.size))
        if owner is None or a.iova < cursor:
            raise ValueError(f"VhostIOVATree state: allocation {a!r} has no map of its own")
        if a.iova > cursor:
            fillers.append(tree.map_alloc(a.iova - cursor - 1, 0))
        m, is_guest = owner
        got = (tree.map_alloc_gpa if is_guest else tree.map_alloc)(
            m.size, m.translated_addr, m.perm)
        if got != m:
            raise ValueError(f"VhostIOVATree state: {m!r} cannot be restored (got {got!r})")
        cursor = a.last + 1
    for f in fillers:
        tree.remove(f.iova, f.size)
    # The calls make each allocation from its map: one listed with other fields (a perm of
    # its own, a translated address) is not what the tree now holds.
    if (tree.allocated(), tree.host_maps(), tree.gpa_maps()) != (
            sorted(allocated), sorted(host), sorted(guest, key=_translated_addr)):
        raise ValueError("VhostIOVATree state: allocations that their maps do not make")


# -- fork() (see the module docstring) ----------------------------------------------------

# By id(): trees compare by contents (``==``) and are not hashable.  An entry goes when its
# object dies, so an id in these is never a stale one.
_live: weakref.WeakValueDictionary[int, _Native] = weakref.WeakValueDictionary()
_lost_at_fork: weakref.WeakValueDictionary[int, _Native] = weakref.WeakValueDictionary()
# Two threads forking at once must not lock trees crosswise.  Reentrant: a finalizer may run
# (and close a tree under it, _close_outside_fork) in the forking thread during _fork_prepare.
_fork_serial = threading.RLock()
# The objects the forking thread has noted for locking (kept alive until their locks are
# given back), and the same in C (``IBForkSet``, iova-binding.h): the C hooks below give those
# locks back whatever exception cut the Python hooks short.
_fork_locked: list[_Native] = []
_FORK_SET = ffi.gc(lib.ib_fork_set_new(), lib.ib_fork_set_free)
if _FORK_SET == ffi.NULL:
    raise MemoryError("iova_native: cannot create the fork hooks' record")


def _close_outside_fork(
    close: Callable[[Any], int], memory: Any, handle: Any,
    serial: threading.RLock = _fork_serial,
) -> None:
    """The finalizer of a handle: ``close`` it (its C tree freed) while no fork is in
    progress.  ``memory``, the handle's own, is bound here so that it outlives the call in
    whatever order the collector lets go of things; ``serial`` is bound now, so that the
    finalizers that run at interpreter exit still find it."""
    with serial:
        close(handle)


def _run_to_end(steps: Callable[[], None], tries: int = 64) -> None:
    """Run ``steps`` to its end, although an exception a signal handler raises (a
    KeyboardInterrupt) may cut it short at any call: each step of the fork hooks may be run
    again, so they are, and the first such exception is raised once they are done (CPython
    reports what a fork hook raises and goes on with the fork).  Written without a loop: a
    loop's jump back is a place where a handler runs too, outside any ``try``."""
    try:
        steps()
    except BaseException:
        if tries:
            try:
                _run_to_end(steps, tries - 1)
            except BaseException:  # the first exception is the one to report
                pass
        raise


def _fork_prepare() -> None:
    """Before fork(): lock every live object.  Each lock call releases the GIL while it waits,
    so other threads can finish their calls (and create objects, picked up by the next pass).

    Python code that runs in this thread meanwhile (a finalizer the garbage collector runs at
    an allocation, a signal handler) and calls an object the hooks hold goes in without
    locking (``IBGuard.fork_owner``).  This thread's signals are blocked until the C hooks
    after the fork unblock them: a signal that comes meanwhile runs its handler once
    ``os.fork()`` has returned, in its caller."""
    _run_to_end(_fork_prepare_steps)


def _fork_prepare_steps() -> None:
    if not _fork_serial._is_owned():  # type: ignore[attr-defined]
        _fork_serial.acquire()  # given back by a C hook after the fork (see below)
    lib.ib_fork_set_block(_FORK_SET)
    again = list(_fork_locked)  # run again after an exception: whatever it left unlocked
    lib.ib_fork_set_reserve(_FORK_SET, len(again))
    for obj in again:
        lib.ib_fork_set_lock(_FORK_SET, obj._h)
    taken = {id(obj) for obj in _fork_locked}
    while True:
        fresh = [obj for key, obj in list(_live.items()) if key not in taken]
        if not fresh:
            return
        lib.ib_fork_set_reserve(_FORK_SET, len(fresh))
        for obj in fresh:
            _fork_locked.append(obj)  # first: what is noted stays alive until given back
            taken.add(id(obj))  # unique: _fork_locked keeps the object alive
            lib.ib_fork_set_lock(_FORK_SET, obj._h)  # noted in C, then locked


def _fork_parent() -> None:
    _run_to_end(_fork_parent_steps)


def _fork_parent_steps() -> None:
    lib.ib_fork_set_release(_FORK_SET, 0)  # before the objects may go (the C hook's again)
    for obj in _fork_locked:  # any the record had no room for
        lib.ib_fork_unlock(obj._h)
    _fork_locked.clear()


def _fork_child() -> None:
    _run_to_end(_fork_child_steps)


def _fork_child_steps() -> None:
    lib.ib_fork_set_release(_FORK_SET, 1)
    for key, obj in list(_live.items()):
        if obj._fork_child_fn(obj._h):
            _lost_at_fork[key] = obj
    _fork_locked.clear()
    for tree in list(_TREES.values()):
        tree._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; the lambdas find the functions by name
    # In the child, before any Python hook: the hooks' own lock afresh (another thread may
    # have held it, if an exception cut the before hook short), since a finalizer that the
    # hooks' own work sets off takes it.  (The child's pending signals are cleared by CPython,
    # and no other thread exists there: nothing interrupts its hooks.)
    os.register_at_fork(after_in_child=_fork_serial._at_fork_reinit)  # type: ignore[attr-defined]
    os.register_at_fork(
        before=lambda: _fork_prepare(),
        after_in_parent=lambda: _fork_parent(),
        after_in_child=lambda: _fork_child(),
    )
    # C functions, which no signal handler interrupts, do what must happen whatever cut the
    # Python hooks short (after hooks run in the order registered, so these run last): give
    # back every lock noted, restore the signals, then give back the hooks' own lock, which
    # keeps the record (and its saved mask) to one forking thread until then.  Should the
    # before hook not have taken _fork_serial, release() raises; CPython reports it and goes on.
    os.register_at_fork(
        after_in_parent=functools.partial(lib.ib_fork_set_release, _FORK_SET, 0),
        after_in_child=functools.partial(lib.ib_fork_set_release, _FORK_SET, 1),
    )
    os.register_at_fork(
        after_in_parent=functools.partial(lib.ib_fork_set_unblock, _FORK_SET),
        after_in_child=functools.partial(lib.ib_fork_set_unblock, _FORK_SET),
    )
    os.register_at_fork(after_in_parent=_fork_serial.release)
