# SPDX-License-Identifier: GPL-2.0-or-later
"""The reference backend: the classes of docs/contract.md in plain Python.

Written to be obviously right rather than fast.  Each tree keeps its maps in a Python list sorted
by key (the IOVA for ``IOVATree``, the translated address for ``GPATree``) with a parallel list of
keys for ``bisect``; everything that is not a plain ordered look-up (``find_iova``, ``translate``,
``alloc``) is a linear scan over that list, so its result follows directly from the definition in
docs/contract.md.  The native backend must give exactly the same answers.

Every method checks, in this order: that the object is open (``ValueError`` otherwise), then its
arguments in signature order with the shared helpers of ``_types``; only then does it look at or
change the tree, so a failed call changes nothing.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any, Callable, TypeVar

from ._container import Container, TreeContainer, vhost_state
from ._types import (
    MAX_U64,
    DMAMap,
    IOVAError,
    OverlapError,
    Perm,
    TranslationError,
    batch_input,
    check_alloc,
    check_length,
    check_map,
    check_missing,
    check_optional_id,
    check_perm,
    check_range,
    check_sized,
    check_u64_list,
    check_vhost_bounds,
    gpa_overlap,
    no_space,
    overlap,
)
from .api import Segment, U64Array, U64Input

__all__ = ["IOVATree", "GPATree", "VhostIOVATree"]

_VALID_PERMS = (Perm.RO, Perm.WO, Perm.RW)
_T = TypeVar("_T", bound="_TreeBase")
_V = TypeVar("_V", bound="VhostIOVATree")
_F = TypeVar("_F", bound=Callable[..., Any])

# --------------------------------------------------------------------------- threads
#
# Each tree has a reentrant lock that every public call holds, so that a call's steps (the
# overlap check and the insert, the allocation and the map) are one step for other threads:
# swapping the native backend for this one under threads changes speed, never results.  An
# iterator holds it only for each step.  A child of fork() gets new locks (a lock a parent
# thread held would be held for good there).

#: Every live tree by id, for the fork handler (trees are unhashable).
_TREES: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _new_lock(tree: Any) -> None:
    tree._lock = threading.RLock()
    _TREES[id(tree)] = tree


def _reset_after_fork() -> None:
    for tree in list(_TREES.values()):
        tree._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


def _lock_calls(cls: type, names: tuple[str, ...]) -> None:
    """Make each call ``names`` of ``cls`` (its own or inherited) hold the tree's lock."""
    for name in names:
        setattr(cls, name, _locked(getattr(cls, name)))


#: The calls of IOVATree and GPATree that hold the lock (IOVATree's own are added to them).
#: Not ``update``: it reads the caller's iterable first, which must not run under the lock
#: (a generator waiting on a thread that uses the tree would wait for good); each of its
#: inserts holds it, as in the native backend.
_TREE_CALLS = (
    "insert", "find", "find_all", "remove", "to_iova_many", "clear", "close", "check",
    "maps", "__len__", "__iter__", "__contains__", "__enter__", "__repr__",
    "_change_count", "_equality_state",
)


# --------------------------------------------------------------------------- helpers


def _u64_list(values: U64Input) -> list[int]:
    """Every element of ``values`` (an iterable of ints or a buffer of uint64), checked.

    ``bytes``, ``bytearray`` and ``str`` are refused: they are buffers of bytes or text, not of
    uint64, and reading them as a sequence of small ints would hide a caller's mistake.  A
    one-shot iterator is read once; a buffer must be one-dimensional (``_types.batch_input``,
    which the native backend uses too).
    """
    source, _, checked = batch_input(values)
    return source if checked else check_u64_list(source)


def _check_map_fields(m: Any, where: str) -> None:
    """Raise ``AssertionError`` unless ``m`` is a ``DMAMap`` with valid fields."""
    if type(m) is not DMAMap:
        raise AssertionError(f"{where}: stored object is not a DMAMap: {m!r}")
    if len(m) != 5:
        raise AssertionError(f"{where}: DMAMap does not have five fields: {m!r}")
    for name, value in zip(("iova", "translated_addr", "size", "id"), (m[0], m[1], m[2], m[4])):
        if type(value) is not int or not 0 <= value <= MAX_U64:
            raise AssertionError(f"{where}: field {name} is not a u64: {m!r}")
    if m.iova + m.size > MAX_U64:
        raise AssertionError(f"{where}: IOVA range wraps past 2**64-1: {m!r}")
    if m.translated_addr + m.size > MAX_U64:
        raise AssertionError(f"{where}: translated range wraps past 2**64-1: {m!r}")
    if type(m.perm) is not Perm or m.perm not in _VALID_PERMS:
        raise AssertionError(f"{where}: invalid perm: {m!r}")


class _SortedMaps:
    """Maps kept sorted by a key range that no two of them may share.

    ``first(m)`` and ``last(m)`` give a map's key range (inclusive).  Used by ``IOVATree`` (keyed
    by the IOVA range) and ``GPATree`` (keyed by the translated range).
    """

    def __init__(self, first: Callable[[DMAMap], int], last: Callable[[DMAMap], int]) -> None:
        self.first = first
        self.last = last
        self.maps: list[DMAMap] = []
        self.keys: list[int] = []  # self.first(m) for every m in self.maps, same order
        self.mods = 0  # bumped by every successful change; iterators compare it

    def _span(self, start: int, last: int) -> tuple[int, int]:
        """``i, j`` such that ``maps[i:j]`` are the maps overlapping ``[start, last]``."""
        # A map that starts at or before ``start`` can only be the one just before the insertion
        # point (no overlaps); every later map overlaps while it starts at or before ``last``.
        i = bisect_right(self.keys, start) - 1
        if i < 0 or self.last(self.maps[i]) < start:
            i += 1
        return i, bisect_right(self.keys, last)

    def overlapping(self, start: int, last: int) -> list[DMAMap]:
        """Every stored map whose key range overlaps ``[start, last]``, in key order."""
        i, j = self._span(start, last)
        return self.maps[i:j]

    def find(self, start: int, last: int) -> DMAMap | None:
        """The stored map with the lowest key that overlaps ``[start, last]``."""
        hits = self.overlapping(start, last)
        return hits[0] if hits else None

    def add(self, m: DMAMap) -> None:
        """Store ``m``, which the caller has checked overlaps nothing."""
        key = self.first(m)
        i = bisect_left(self.keys, key)
        # Slice assignments, not insert() calls: from 3.11 on a signal handler runs at a call's
        # return, never between two of these, whose exception (Ctrl-C) left the two lists
        # one item apart, and every later answer of the tree wrong.
        self.maps[i:i] = (m,)
        self.keys[i:i] = (key,)
        self.mods += 1

    def discard(self, start: int, last: int) -> list[DMAMap]:
        """Remove every map whose key range overlaps ``[start, last]``; return them."""
        i, j = self._span(start, last)
        hits = self.maps[i:j]
        if hits:
            del self.maps[i:j]
            del self.keys[i:j]
            self.mods += 1
        return hits

    def clear(self) -> None:
        del self.maps[:]  # no call between the two (see add())
        del self.keys[:]
        self.mods += 1

    def check(self, where: str) -> None:
        """Raise ``AssertionError`` naming the first broken invariant."""
        if len(self.keys) != len(self.maps):
            raise AssertionError(f"{where}: key list and map list differ in length")
        previous: DMAMap | None = None
        for key, m in zip(self.keys, self.maps):
            _check_map_fields(m, where)
            if key != self.first(m):
                raise AssertionError(f"{where}: key {key:#x} does not match {m!r}")
            if previous is not None:
                if self.first(previous) >= self.first(m):
                    raise AssertionError(f"{where}: order broken: {previous!r} before {m!r}")
                if self.last(previous) >= self.first(m):
                    raise AssertionError(f"{where}: overlap: {previous!r} and {m!r}")
            previous = m


def _iova_first(m: DMAMap) -> int:
    return m.iova


def _iova_last(m: DMAMap) -> int:
    return m.last


def _translated_first(m: DMAMap) -> int:
    return m.translated_addr


def _translated_last(m: DMAMap) -> int:
    return m.translated_last


class _TreeBase(TreeContainer):
    """What ``IOVATree`` and ``GPATree`` share: storage, closing, listing, iteration, and the
    container API of ``_container``."""

    _name = "tree"
    _lock: Any  # threading.RLock(): see "threads" above

    def __init__(self, first: Callable[[DMAMap], int], last: Callable[[DMAMap], int]) -> None:
        _new_lock(self)
        self._store = _SortedMaps(first, last)
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self._name} is closed")

    def _change_count(self) -> int:
        self._check_open()
        return self._store.mods

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._closed

    def close(self) -> None:
        """Free the tree; every later call except ``close()`` raises ``ValueError``."""
        if not self._closed:
            self._store.clear()
            self._closed = True

    def _find_all(self, start: Any, size: Any, name: str) -> list[DMAMap]:
        self._check_open()
        start, size = check_range(start, size, name)
        self._check_open()  # an argument's __index__ may have closed it
        return self._store.overlapping(start, start + size)

    def clear(self) -> None:
        """Remove every map."""
        self._check_open()
        self._store.clear()

    def __enter__(self: _T) -> _T:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- listing

    def __len__(self) -> int:
        self._check_open()
        return len(self._store.maps)

    def maps(self) -> list[DMAMap]:
        """Every stored map, in key order."""
        self._check_open()
        return list(self._store.maps)

    def __iter__(self) -> Iterator[DMAMap]:
        """The maps in key order; ``RuntimeError`` if the tree changes while iterating."""
        self._check_open()
        return self._iterate(self._store.mods)

    def _iterate(self, mods: int) -> Iterator[DMAMap]:
        i = 0
        while True:
            with self._lock:  # each step, never across a yield
                self._check_open()
                if self._store.mods != mods:
                    raise RuntimeError(f"{self._name} changed during iteration")
                if i >= len(self._store.maps):
                    return
                m = self._store.maps[i]
            yield m
            i += 1

    def _insert_checked(self, map: Any) -> DMAMap:
        """Type-check and re-validate ``map``; raise ``OverlapError`` if its key is taken."""
        # Rebuilding through the constructor validates every field again (a DMAMap built with
        # ``_trusted`` or ``tuple.__new__`` is not checked) and normalises it to a plain DMAMap.
        m = check_map(map)
        self._check_open()  # a field's __index__ may have closed it
        store = self._store
        existing = store.find(store.first(m), store.last(m))
        if existing is not None:
            raise overlap(m, existing)
        store.add(m)
        return m

    def check(self) -> None:
        """Verify every invariant; ``AssertionError`` naming the first broken one."""
        self._check_open()
        self._store.check(self._name)

    def __repr__(self) -> str:
        if self._closed:
            return f"<reference.{self._name}: closed>"
        n = len(self._store.maps)
        return f"<reference.{self._name}: {n} map{'' if n == 1 else 's'}>"


# --------------------------------------------------------------------------- IOVATree


class IOVATree(_TreeBase):
    """QEMU's ``IOVATree``: maps keyed by IOVA; translated ranges may overlap (aliasing)."""

    _name = "IOVATree"

    def __init__(self, maps: Iterable[DMAMap] = ()) -> None:
        """An empty tree (``iova_tree_new``), then every map of ``maps`` inserted, all or
        nothing."""
        super().__init__(_iova_first, _iova_last)
        self._fill(maps)

    def insert(self, map: DMAMap) -> None:
        """Store ``map``.

        ``TypeError`` unless a ``DMAMap``; ``OverlapError`` (``.existing`` = the stored map with
        the lowest IOVA that overlaps it) if its IOVA range is taken.
        """
        self._check_open()
        self._insert_checked(map)

    def find(self, iova: int, size: int = 0) -> DMAMap | None:
        """The stored map with the lowest IOVA overlapping ``[iova, iova + size]``, else None."""
        self._check_open()
        iova, size = check_range(iova, size, "iova")
        self._check_open()  # an argument's __index__ may have closed it
        return self._store.find(iova, iova + size)

    def find_all(self, iova: int, size: int = 0) -> list[DMAMap]:
        """Every stored map whose IOVA range overlaps ``[iova, iova + size]``, in IOVA order."""
        return self._find_all(iova, size, "iova")

    def find_iova_all(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> list[DMAMap]:
        """Every stored map whose translated range overlaps ``[translated_addr,
        translated_addr + size]`` (and whose ``id`` equals ``id`` unless it is None), in IOVA
        order."""
        self._check_open()
        translated_addr, size = check_range(translated_addr, size, "translated_addr")
        id = check_optional_id(id)
        self._check_open()  # an argument's __index__ may have closed it
        last = translated_addr + size
        return [
            m
            for m in self._store.maps
            if m.translated_addr <= last
            and translated_addr <= m.translated_last
            and (id is None or m.id == id)
        ]

    def _find_iova(self, addr: int, last: int, id: int | None) -> DMAMap | None:
        for m in self._store.maps:  # IOVA order: the first hit has the lowest IOVA
            if m.translated_addr <= last and addr <= m.translated_last:
                if id is None or m.id == id:
                    return m
        return None

    def find_iova(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> DMAMap | None:
        """Reverse look-up.

        Among maps whose translated range overlaps ``[translated_addr, translated_addr + size]``
        (and whose ``id`` equals ``id`` unless it is None): the one with the lowest IOVA, else
        None.
        """
        self._check_open()
        translated_addr, size = check_range(translated_addr, size, "translated_addr")
        id = check_optional_id(id)
        self._check_open()  # an argument's __index__ may have closed it
        return self._find_iova(translated_addr, translated_addr + size, id)

    def _translate(self, addr: int, length: int, id: int | None) -> list[Segment]:
        segments: list[Segment] = []
        if length == 0:
            return segments
        end = addr + length - 1  # last byte of the buffer; <= MAX_U64 (checked)
        p = addr
        while True:
            best: DMAMap | None = None
            for m in self._store.maps:  # IOVA order, so ties keep the lowest IOVA
                if (id is None or m.id == id) and m.translated_addr <= p <= m.translated_last:
                    if best is None or m.translated_last > best.translated_last:
                        best = m
            if best is None:
                raise TranslationError(f"no map covers translated address {p:#x}", address=p)
            stop = min(best.translated_last, end)
            segments.append((best.iova + (p - best.translated_addr), stop - p + 1))
            if stop == end:
                return segments
            p = stop + 1  # stop < end <= MAX_U64, so no wrap

    def translate(self, translated_addr: int, length: int, id: int | None = None) -> list[Segment]:
        """Minimal ``(iova, nbytes)`` segments covering ``length`` bytes from ``translated_addr``.

        At each position the qualifying map (``id`` matching unless None) that covers it and
        reaches furthest is used, ties to the lowest IOVA.  ``length=0`` gives ``[]``.  The first
        byte no qualifying map covers raises ``TranslationError`` with ``.address`` set to it.
        """
        self._check_open()
        translated_addr, length = check_length(translated_addr, length, "translated_addr")
        id = check_optional_id(id)
        self._check_open()  # an argument's __index__ may have closed it
        return self._translate(translated_addr, length, id)

    def _holes(self) -> Iterator[tuple[int, int]]:
        """The free IOVA ranges ``(first, last)`` in ascending order, inclusive."""
        start = 0  # lowest IOVA not yet known to be taken
        for m in self._store.maps:
            if m.iova > start:
                yield start, m.iova - 1
            start = m.last + 1
        if start <= MAX_U64:
            yield start, MAX_U64

    def _place(
        self, size: int, iova_begin: int, iova_last: int, align: int, policy: str
    ) -> int | None:
        """The IOVA ``alloc`` would use, or None when nothing fits."""
        found: int | None = None
        for hole_first, hole_last in self._holes():
            lo = max(hole_first, iova_begin)
            hi = min(hole_last, iova_last)
            if lo > hi or hi - lo < size:
                continue
            if policy == "first":
                iova = -(-lo // align) * align  # round up
                if iova + size <= hi:
                    return iova
            else:
                iova = (hi - size) // align * align  # round down
                if iova >= lo:
                    found = iova  # keep the highest: later holes are higher
        return found

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
        """Place, insert and return a map of ``size`` (inclusive) in ``[iova_begin, iova_last]``.

        ``policy="first"``: the lowest IOVA ``>= iova_begin``, a multiple of ``align``, where
        ``[iova, iova + size]`` overlaps no stored map and ``iova + size <= iova_last``;
        ``policy="last"``: the highest such IOVA.  ``InvalidMapError`` for bad arguments,
        ``NoSpaceError`` when no hole fits.
        """
        self._check_open()
        size, translated_addr, perm, id, iova_begin, iova_last, align, policy = check_alloc(
            size, translated_addr, perm, id, iova_begin, iova_last, align, policy
        )
        self._check_open()  # an argument's __index__ may have closed it
        iova = self._place(size, iova_begin, iova_last, align, policy)
        if iova is None:
            raise no_space(size, iova_begin, iova_last, align)
        m = DMAMap(iova, translated_addr, size, perm, id)
        self._store.add(m)
        return m

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove every map whose IOVA range overlaps ``[iova, iova + size]``; return how many."""
        self._check_open()
        iova, size = check_range(iova, size, "iova")
        self._check_open()  # an argument's __index__ may have closed it
        return len(self._store.discard(iova, iova + size))

    def to_translated_many(self, iovas: U64Input, missing: int | None = None) -> U64Array:
        """For each IOVA, ``map.translated_addr + (iova - map.iova)`` as ``array('Q')``.

        A miss raises ``TranslationError`` naming the first IOVA missed, unless ``missing`` is
        an int, which is written in its place.
        """
        self._check_open()
        missing = check_missing(missing)
        self._check_open()  # an argument's __index__ may have closed it
        values = _u64_list(iovas)
        self._check_open()  # an argument's __index__ may have closed it
        out = array("Q")
        for iova in values:
            m = self._store.find(iova, iova)
            if m is not None:
                out.append(m.translated_addr + (iova - m.iova))
            elif missing is not None:
                out.append(missing)
            else:
                raise TranslationError(f"no map covers IOVA {iova:#x}", address=iova)
        return out

    def to_iova_many(
        self, translated_addrs: U64Input, id: int | None = None, missing: int | None = None
    ) -> U64Array:
        """For each translated address, the IOVA through ``find_iova(addr, 0, id)``.

        A miss raises ``TranslationError`` naming the first address missed, unless ``missing``
        is an int, which is written in its place.
        """
        self._check_open()
        id = check_optional_id(id)
        self._check_open()  # an argument's __index__ may have closed it
        missing = check_missing(missing)
        self._check_open()
        values = _u64_list(translated_addrs)
        self._check_open()  # an argument's __index__ may have closed it
        out = array("Q")
        for addr in values:
            m = self._find_iova(addr, addr, id)
            if m is not None:
                out.append(m.iova + (addr - m.translated_addr))
            elif missing is not None:
                out.append(missing)
            else:
                raise TranslationError(f"no map covers translated address {addr:#x}", address=addr)
        return out


# --------------------------------------------------------------------------- GPATree


class GPATree(_TreeBase):
    """QEMU's ``gpa_tree_new``: maps keyed by the translated address (GPA), never overlapping."""

    _name = "GPATree"
    _key_field = 1

    def __init__(self, maps: Iterable[DMAMap] = ()) -> None:
        """An empty tree, then every map of ``maps`` inserted, all or nothing."""
        super().__init__(_translated_first, _translated_last)
        self._fill(maps)

    def find_all(self, translated_addr: int, size: int = 0) -> list[DMAMap]:
        """Every map whose translated range overlaps the range, in translated order."""
        return self._find_all(translated_addr, size, "translated_addr")

    def insert(self, map: DMAMap) -> None:
        """Store ``map``.

        ``TypeError`` unless a ``DMAMap``; ``OverlapError`` (``.existing`` = the stored map with
        the lowest translated address that overlaps it) if its translated range is taken.
        """
        self._check_open()
        self._insert_checked(map)

    def find(self, translated_addr: int, size: int = 0) -> DMAMap | None:
        """The map with the lowest translated address overlapping the range, else None."""
        self._check_open()
        translated_addr, size = check_range(translated_addr, size, "translated_addr")
        self._check_open()  # an argument's __index__ may have closed it
        return self._store.find(translated_addr, translated_addr + size)

    def remove(self, translated_addr: int, size: int = 0) -> int:
        """Remove every map whose translated range overlaps the range; return how many."""
        self._check_open()
        translated_addr, size = check_range(translated_addr, size, "translated_addr")
        self._check_open()  # an argument's __index__ may have closed it
        return len(self._store.discard(translated_addr, translated_addr + size))

    def _translate(self, addr: int, length: int) -> list[Segment]:
        """Segments for ``length`` bytes of GPA from ``addr`` (maps never overlap here)."""
        segments: list[Segment] = []
        if length == 0:
            return segments
        end = addr + length - 1
        p = addr
        while True:
            m = self._store.find(p, p)
            if m is None:
                raise TranslationError(f"no map covers GPA {p:#x}", address=p)
            stop = min(m.translated_last, end)
            segments.append((m.iova + (p - m.translated_addr), stop - p + 1))
            if stop == end:
                return segments
            p = stop + 1

    def to_iova_many(self, translated_addrs: U64Input, missing: int | None = None) -> U64Array:
        """For each GPA, ``map.iova + (gpa - map.translated_addr)`` as ``array('Q')``.

        A miss raises ``TranslationError`` naming the first GPA missed, unless ``missing`` is an
        int, which is written in its place.
        """
        self._check_open()
        missing = check_missing(missing)
        self._check_open()  # an argument's __index__ may have closed it
        values = _u64_list(translated_addrs)
        self._check_open()  # an argument's __index__ may have closed it
        out = array("Q")
        for gpa in values:
            m = self._store.find(gpa, gpa)
            if m is not None:
                out.append(m.iova + (gpa - m.translated_addr))
            elif missing is not None:
                out.append(missing)
            else:
                raise TranslationError(f"no map covers GPA {gpa:#x}", address=gpa)
        return out


# --------------------------------------------------------------------------- VhostIOVATree


class VhostIOVATree(Container):
    """QEMU's ``VhostIOVATree``: an IOVA allocation tree, host-only IOVA->HVA maps and
    GPA->IOVA maps for guest memory.

    Every stored map (host or guest) owns exactly one allocation with the same IOVA range, and
    every allocation belongs to exactly one map.  Allocations are listed as
    ``DMAMap(iova, 0, size, perm, 0)``.
    """

    _lock: Any  # threading.RLock(): see "threads" above

    def __init__(self, iova_first: int, iova_last: int, page_size: int | None = None) -> None:
        """Hand out IOVAs in ``[max(iova_first, page_size), iova_last]``; ``page_size`` defaults
        to the host's and must be a power of two.

        ``InvalidMapError`` if it is not, or if ``iova_last`` is below the effective first IOVA.
        """
        _new_lock(self)
        first, iova_last, _ = check_vhost_bounds(iova_first, iova_last, page_size)
        self._iova_first = first
        self._iova_last = iova_last
        self._alloc = IOVATree()  # IOVA-only: what is taken
        self._host = IOVATree()  # IOVA -> HVA, host-only buffers (id 0)
        self._gpa = GPATree()  # GPA -> IOVA, guest memory (id = GPA)
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("VhostIOVATree is closed")

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._closed

    def close(self) -> None:
        """Free all three trees; every later call except ``close()`` raises ``ValueError``."""
        if not self._closed:
            self._alloc.close()
            self._host.close()
            self._gpa.close()
            self._closed = True

    def clear(self) -> None:
        """Remove every map and every allocation."""
        self._check_open()
        try:  # the maps first: an interrupt between the steps leaves allocations, not maps
            self._host.clear()
            self._gpa.clear()
            self._alloc.clear()
        except BaseException:
            self._settle()
            raise

    def _unmap(self, hits: list[DMAMap], guest: bool) -> None:
        """Remove the host-only (or guest) maps ``hits`` and their allocations.  The loop is
        a function of its own: on 3.13.0 an exception raised at a loop's jump back can miss
        the ``try`` of the frame that jumps (docs/reliability.md)."""
        for m in hits:
            if guest:
                self._gpa.remove(m.translated_addr, m.size)
            else:
                self._host.remove(m.iova, m.size)
            self._alloc.remove(m.iova, m.size)

    def _settle(self) -> None:
        """After an exception in a change of two steps (a KeyboardInterrupt, which comes at a
        call's return, between the allocation and the map, or between the map's removal and
        the allocation's): take back every allocation that no map owns, so that the call
        leaves the tree as if it had not begun, or as if it had ended."""
        if self._closed:
            return
        owned = {(m.iova, m.size) for m in self._host.maps() + self._gpa.maps()}
        for a in self._alloc.maps():
            if (a.iova, a.size) not in owned:
                self._alloc.remove(a.iova, a.size)

    def __enter__(self: _V) -> _V:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _equality_state(self) -> tuple[int, int, list[DMAMap], list[DMAMap], list[DMAMap]]:
        self._check_open()
        return (self._iova_first, self._iova_last, self._alloc.maps(), self._host.maps(),
                self._gpa.maps())

    @classmethod
    def _from_state(cls, state: Any) -> VhostIOVATree:
        first, last, allocated, host, guest = vhost_state(state)
        tree = cls(first, last, 1)  # @first is already the effective first IOVA
        try:
            tree._alloc.update(allocated)
            tree._host.update(host)
            tree._gpa.update(guest)
            tree.check()
        except (IOVAError, AssertionError) as exc:  # maps that no VhostIOVATree holds together
            tree.close()
            raise ValueError(f"VhostIOVATree state: {exc}") from None
        except BaseException:
            tree.close()
            raise
        return tree

    def __contains__(self, item: object) -> bool:
        """Whether a host-only or a guest map equals ``item``."""
        self._check_open()
        return item in self._host or item in self._gpa

    def __repr__(self) -> str:
        if self._closed:
            return "<reference.VhostIOVATree: closed>"
        return (
            f"<reference.VhostIOVATree: {len(self._host)} host maps, {len(self._gpa)} guest maps>"
        )

    # ----------------------------------------------------------------- mapping

    def _allocate(self, size: int, perm: Perm) -> DMAMap:
        """Take the lowest free IOVA range of ``size``; ``NoSpaceError`` if none."""
        return self._alloc.alloc(size, 0, perm, 0, self._iova_first, self._iova_last, 1, "first")

    def map_alloc(self, size: int, hva: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate the lowest free IOVA range and record IOVA->HVA (``id`` 0); return the map.

        ``NoSpaceError`` if no IOVA range of ``size`` is free.
        """
        self._check_open()
        hva, size = check_sized(size, hva, "hva")
        perm = check_perm(perm)
        self._check_open()  # an argument's __index__ may have closed it
        try:
            a = self._allocate(size, perm)
            m = DMAMap(a.iova, hva, size, perm, 0)
            self._host.insert(m)  # cannot overlap: the IOVA range was just allocated
        except IOVAError:  # NoSpaceError: refused before anything changed
            raise
        except BaseException:  # it may have come between the steps
            self._settle()
            raise
        return m

    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate an IOVA range and record GPA->IOVA; the map has ``translated_addr = id =
        gpa``.

        ``NoSpaceError`` first; then ``OverlapError`` (``.existing`` = the guest map hit) if the
        GPA range is taken, after the allocation has been rolled back.
        """
        self._check_open()
        gpa, size = check_sized(size, gpa, "gpa")
        perm = check_perm(perm)
        self._check_open()  # an argument's __index__ may have closed it
        try:
            a = self._allocate(size, perm)
            m = DMAMap(a.iova, gpa, size, perm, gpa)
            self._gpa.insert(m)
        except OverlapError as exc:
            self._alloc.remove(a.iova, a.size)  # roll back: nothing leaks (contract, deviation 5)
            raise gpa_overlap(gpa, size, exc.existing) from None
        except IOVAError:  # NoSpaceError: refused before anything changed
            raise
        except BaseException:  # it may have come between the steps
            self._settle()
            raise
        return m

    def find_iova(self, hva: int, size: int = 0) -> DMAMap | None:
        """The host-only map with the lowest IOVA whose HVA range overlaps ``[hva, hva +
        size]``, else None."""
        self._check_open()
        hva, size = check_range(hva, size, "hva")
        self._check_open()  # an argument's __index__ may have closed it
        return self._host._find_iova(hva, hva + size, None)

    def find_gpa(self, gpa: int, size: int = 0) -> DMAMap | None:
        """The guest map with the lowest GPA overlapping ``[gpa, gpa + size]``, else None."""
        self._check_open()
        gpa, size = check_range(gpa, size, "gpa")
        self._check_open()  # an argument's __index__ may have closed it
        return self._gpa.find(gpa, size)

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove the host-only maps overlapping the IOVA range and their allocations; return
        how many maps."""
        self._check_open()
        iova, size = check_range(iova, size, "iova")
        self._check_open()  # an argument's __index__ may have closed it
        hits = self._host._store.overlapping(iova, iova + size)
        try:
            self._unmap(hits, False)
        except BaseException:
            self._settle()
            raise
        return len(hits)

    def remove_gpa(self, gpa: int, size: int = 0) -> int:
        """Remove the guest maps overlapping the GPA range and their allocations; return how
        many maps."""
        self._check_open()
        gpa, size = check_range(gpa, size, "gpa")
        self._check_open()  # an argument's __index__ may have closed it
        hits = self._gpa._store.overlapping(gpa, gpa + size)
        try:
            self._unmap(hits, True)
        except BaseException:
            self._settle()
            raise
        return len(hits)

    # ----------------------------------------------------------------- translation

    def translate(self, hva: int, length: int, gpa: int | None = None) -> list[Segment]:
        """``(iova, nbytes)`` segments for the ``length`` bytes at ``hva``.

        Without ``gpa``: through the host-only tree (as ``IOVATree.translate``).  With ``gpa``:
        the buffer ``[gpa, gpa + length)`` through the GPA->IOVA tree, each position taken from
        the guest map covering it (``hva`` is only checked, as SVQ does).  ``TranslationError``
        (``.address`` = the first uncovered byte, an HVA or a GPA) on a hole.
        """
        self._check_open()
        hva, length = check_length(hva, length, "hva")
        if gpa is None:
            self._check_open()  # an argument's __index__ may have closed it
            return self._host._translate(hva, length, None)
        gpa, length = check_length(gpa, length, "gpa")
        self._check_open()  # an argument's __index__ may have closed it
        return self._gpa._translate(gpa, length)

    def to_iova_many(self, hvas: U64Input, missing: int | None = None) -> U64Array:
        """Batch HVA -> IOVA through the host-only maps (lowest IOVA among aliases)."""
        self._check_open()
        return self._host.to_iova_many(hvas, None, missing)

    def gpa_to_iova_many(self, gpas: U64Input, missing: int | None = None) -> U64Array:
        """Batch GPA -> IOVA through the guest maps."""
        self._check_open()
        return self._gpa.to_iova_many(gpas, missing)

    # ----------------------------------------------------------------- listing

    def __len__(self) -> int:
        """Host-only maps plus guest maps."""
        self._check_open()
        return len(self._host) + len(self._gpa)

    def host_maps(self) -> list[DMAMap]:
        """The host-only maps, in IOVA order."""
        self._check_open()
        return self._host.maps()

    def gpa_maps(self) -> list[DMAMap]:
        """The guest maps, in GPA order."""
        self._check_open()
        return self._gpa.maps()

    def allocated(self) -> list[DMAMap]:
        """The allocations, ``DMAMap(iova, 0, size, perm, 0)``, in IOVA order."""
        self._check_open()
        return self._alloc.maps()

    def check(self) -> None:
        """Verify every invariant; ``AssertionError`` naming the first broken one."""
        self._check_open()
        self._alloc.check()
        self._host.check()
        self._gpa.check()
        allocs = self._alloc.maps()
        by_range: dict[tuple[int, int], list[DMAMap]] = {}
        for a in allocs:
            if a.translated_addr != 0 or a.id != 0:
                raise AssertionError(f"VhostIOVATree: allocation is not IOVA-only: {a!r}")
            if a.iova < self._iova_first:
                raise AssertionError(
                    f"VhostIOVATree: allocation below iova_first={self._iova_first:#x}: {a!r}"
                )
            if a.last > self._iova_last:
                raise AssertionError(
                    f"VhostIOVATree: allocation above iova_last={self._iova_last:#x}: {a!r}"
                )
            by_range[(a.iova, a.size)] = []
        for m in self._host.maps():
            if m.id != 0:
                raise AssertionError(f"VhostIOVATree: host-only map with id != 0: {m!r}")
        for m in self._gpa.maps():
            if m.id != m.translated_addr:
                raise AssertionError(f"VhostIOVATree: guest map with id != GPA: {m!r}")
        for m in self._host.maps() + self._gpa.maps():
            owners = by_range.get((m.iova, m.size))
            if owners is None:
                raise AssertionError(f"VhostIOVATree: map without an allocation: {m!r}")
            owners.append(m)
        for a in allocs:
            owners = by_range[(a.iova, a.size)]
            if len(owners) != 1:
                raise AssertionError(
                    f"VhostIOVATree: allocation {a!r} belongs to {len(owners)} maps: {owners!r}"
                )
            if owners[0].perm != a.perm:
                raise AssertionError(
                    f"VhostIOVATree: allocation {a!r} and its map {owners[0]!r} differ in perm"
                )


_lock_calls(
    IOVATree,
    _TREE_CALLS
    + ("find_iova", "find_iova_all", "translate", "alloc", "to_translated_many"),
)
_lock_calls(GPATree, _TREE_CALLS)
_lock_calls(
    VhostIOVATree,
    (
        "map_alloc", "map_alloc_gpa", "find_iova", "find_gpa", "remove", "remove_gpa",
        "translate", "to_iova_many", "gpa_to_iova_many", "clear", "close", "check",
        "host_maps", "gpa_maps", "allocated", "__len__", "__contains__", "__enter__",
        "__repr__", "_equality_state",
    ),
)
