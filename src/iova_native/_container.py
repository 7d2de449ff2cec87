# SPDX-License-Identifier: GPL-2.0-or-later
"""What every backend's trees share as Python containers: ``in``, ``==``, ``reversed``,
``update`` and the ``maps=`` constructor, ``copy`` and pickling (docs/contract.md).

Each is written once here on top of the API every backend has (``find``, ``insert``,
``remove``, ``maps``), so the native and the reference trees cannot differ in them, and a tree
of one backend compares equal to an equal tree of another.

Equality is decided by :meth:`_equality_state`: for ``IOVATree`` and ``GPATree`` the list of
maps; for ``VhostIOVATree`` the allocation range (the effective first IOVA and ``iova_last``),
the allocations, the host-only maps and the guest maps.  Two objects compare equal when their
class names are the same and their states are equal, whichever backend each is.  Anything
else (another class, or an object without a state) is not equal.  A closed tree compares by
raising ``ValueError``, as every other call on it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._types import DMAMap, InvalidMapError, IOVAError, check_map

_C = TypeVar("_C", bound="Container")

#: What ``in`` may meet when it looks a forged ``DMAMap`` up (a field that is no u64).
_LOOKUP_ERRORS = (TypeError, OverflowError, InvalidMapError, IndexError)


def same_kind(a: object, b: object) -> bool:
    """Whether ``b`` is the same kind of tree as ``a``: same class name, with a state."""
    return type(a).__name__ == type(b).__name__ and hasattr(type(b), "_equality_state")


def materialize(maps: Iterable[DMAMap]) -> list[Any]:
    """The maps of an ``update()`` call as a list, read whole before anything is inserted."""
    if isinstance(maps, DMAMap):
        raise TypeError("update() needs an iterable of DMAMaps, not one DMAMap")
    if isinstance(maps, (str, bytes, bytearray)):
        raise TypeError(f"update() needs an iterable of DMAMaps, not {type(maps).__name__}")
    return list(maps)


def vhost_state(state: Any) -> tuple[Any, Any, list[DMAMap], list[DMAMap], list[DMAMap]]:
    """A pickled ``VhostIOVATree`` state, unpacked and its maps checked, alike in every backend.

    ``TypeError`` when a part is not an iterable of ``DMAMap``s or a map has a field of the
    wrong type; ``ValueError`` for an invalid map (a wrapping range, ``Perm.NONE``).  Whether
    the maps fit together is each backend's to judge, as it rebuilds the tree.
    """
    first, last, *parts = state  # ValueError unless five parts, as tuple unpacking says
    if len(parts) != 3:
        raise ValueError(f"VhostIOVATree state: 5 parts, not {len(parts) + 2}")
    lists: list[list[DMAMap]] = []
    for part in parts:
        if isinstance(part, (DMAMap, str, bytes, bytearray)):
            raise TypeError(f"VhostIOVATree state: a list of DMAMaps, not {type(part).__name__}")
        try:
            lists.append([check_map(m) for m in part])
        except InvalidMapError as exc:
            raise ValueError(f"VhostIOVATree state: {exc}") from None
    return first, last, lists[0], lists[1], lists[2]


class Container:
    """``==``, ``copy`` and pickling for any of the three classes (``_equality_state`` and
    ``_from_state`` are the class's own)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by contents

    if TYPE_CHECKING:

        def __len__(self) -> int: ...
        def _equality_state(self) -> Any: ...

        @classmethod
        def _from_state(cls, state: Any) -> Any: ...

    def __eq__(self, other: object) -> bool:
        if not same_kind(self, other):
            return NotImplemented
        if other is self:  # two looks at one tree could differ if another thread changes it
            len(self)  # a closed tree raises ValueError
            return True
        return bool(self._equality_state() == other._equality_state())  # type: ignore[attr-defined]

    def copy(self: _C) -> _C:
        """An independent tree of the same backend and class with equal contents; changing or
        closing either never touches the other.  ``ValueError`` on a closed tree."""
        return type(self)._from_state(self._equality_state())  # type: ignore[no-any-return]

    def __copy__(self: _C) -> _C:
        return self.copy()

    def __deepcopy__(self: _C, memo: dict[int, Any]) -> _C:
        return self.copy()  # maps are immutable: a copy of the tree is a deep copy

    def __reduce__(self) -> tuple[Any, ...]:
        return (restore, (type(self), self._equality_state()))


def restore(cls: Any, state: Any) -> Any:
    """Unpickle: rebuild a ``cls`` from the state its ``__reduce__`` saved."""
    return cls._from_state(state)


class TreeContainer(Container):
    """The container API of ``IOVATree`` and ``GPATree`` on top of their own methods."""

    __slots__ = ()
    #: Which field of a map is the tree's key: 0 (iova) or 1 (translated_addr).
    _key_field = 0

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...
        def _change_count(self) -> int: ...
        def maps(self) -> list[DMAMap]: ...
        def insert(self, map: DMAMap) -> None: ...
        def find(self, key: int, size: int = 0, /) -> DMAMap | None: ...
        def remove(self, key: int, size: int = 0, /) -> int: ...
        def close(self) -> None: ...

    def _equality_state(self) -> list[DMAMap]:
        return self.maps()

    @classmethod
    def _from_state(cls, state: list[DMAMap]) -> Any:
        return cls(state)  # type: ignore[call-arg]

    def _fill(self, maps: Iterable[DMAMap]) -> None:
        """The constructor's ``maps=``: on a failure the tree is freed, then the error raised."""
        try:
            self.update(maps)
        except BaseException:
            self.close()
            raise

    def __contains__(self, item: object) -> bool:
        """Whether a stored map equals ``item`` in all five fields; O(log n).  Anything that
        is not a ``DMAMap`` is not in the tree."""
        if not isinstance(item, DMAMap):
            self._check_open()
            return False
        try:  # find() refuses a closed tree
            # Keys never overlap, so the one map that can equal ``item`` covers its key.
            found = self.find(tuple.__getitem__(item, self._key_field), 0)
        except _LOOKUP_ERRORS:
            return False
        return found is not None and tuple.__eq__(found, item)

    def __reversed__(self) -> Iterator[DMAMap]:
        """The maps in descending key order; ``RuntimeError`` if the tree changes meanwhile."""
        changes = self._change_count()
        maps = self.maps()
        return self._reversed_from(changes, maps)

    def _reversed_from(self, changes: int, maps: list[DMAMap]) -> Iterator[DMAMap]:
        for m in reversed(maps):
            if self._change_count() != changes:
                raise RuntimeError(f"{type(self).__name__} changed during iteration")
            yield m

    def _insert_each(self, items: list[Any], inserted: list[DMAMap]) -> None:
        """Insert ``items`` in order, listing each in ``inserted`` once stored.  The loop is
        a function of its own: on 3.13.0 an exception raised at a loop's jump back can miss
        the ``try`` of the frame that jumps (docs/reliability.md)."""
        for m in items:
            self.insert(m)
            inserted.append(m)

    def update(self, maps: Iterable[DMAMap]) -> None:
        """Insert every map of ``maps``, all or nothing: on the first failure the error is
        raised and the tree holds what it held before the call."""
        self._check_open()
        items = materialize(maps)
        inserted: list[DMAMap] = []
        changes = self._change_count()  # read after the iterable ran: it may change the tree
        try:
            self._insert_each(items, inserted)
        except BaseException as exc:
            if len(inserted) < len(items) and not isinstance(exc, (IOVAError, TypeError)):
                # Not the insert's own refusal: a KeyboardInterrupt (any exception a signal
                # handler raises) comes mostly right after insert()'s C call, which stored
                # its map before the map could be listed.  It goes too when the tree changed
                # once more than the listed maps account for and holds that very map.
                pending = items[len(inserted)]
                try:
                    if self._change_count() > changes + len(inserted) and pending in self:
                        inserted.append(pending)
                except ValueError:  # closed meanwhile: nothing to take back
                    pass
            key = self._key_field
            for m in reversed(inserted):  # each covers its own key range alone: remove it
                self.remove(tuple.__getitem__(m, key), tuple.__getitem__(m, 2))
            raise
