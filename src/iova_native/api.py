# SPDX-License-Identifier: GPL-2.0-or-later
"""The API every backend implements, as typing Protocols (docs/contract.md).

``native``, ``reference`` and ``differential`` all satisfy these; so must a user's own class that
is put on one side of a ``differential`` tree.  The docstrings here are the precise contract where
docs/contract.md leaves a choice open.

Conventions shared by every method:

* Addresses, sizes and ids are ints in 0..2**64-1.  A value of the wrong *type* (float, str,
  None, ...) raises ``TypeError``; an out-of-range value or a range that wraps past 2**64-1 raises
  ``InvalidMapError``.  Arguments are checked in signature order, each for type then range.
* A closed object raises ``ValueError`` from every method except ``close()`` itself (which may
  be called again) and the ``closed`` property; that check comes before argument checks.
* A failed call changes nothing.
* Iterating while the tree is changed (by the same or another thread) raises ``RuntimeError``
  from the iterator's next step.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Union

from ._types import DMAMap, Perm

#: What the batch forms accept: a sequence of ints, or any buffer of unsigned 64-bit integers.
U64Input = Union[Sequence[int], Iterable[int], memoryview, array, Any]
if TYPE_CHECKING:
    #: What the batch forms return: ``array('Q')``, whose items a type checker sees as ints.
    U64Array = array[int]
else:  # array is not subscriptable at run time before Python 3.12
    U64Array = array
#: A segment of a translation: ``(iova, nbytes)``.
Segment = tuple[int, int]


class ContainerAPI(Protocol):
    """What every class has of a Python container: ``in``, ``==`` (``__hash__`` is None: the
    trees are mutable), copies and pickling."""

    def __contains__(self, item: object) -> bool:
        """Whether a stored map (``VhostIOVATree``: a host-only or a guest map) equals the
        ``DMAMap`` ``item`` in all five fields; O(log n).  Anything that is not a ``DMAMap`` is
        not in the tree."""

    def __eq__(self, other: object) -> bool:
        """Same class name and equal contents, whichever backend each is.  The contents of a
        ``VhostIOVATree``: its effective first IOVA and ``iova_last``, allocations, host-only
        and guest maps."""

    def copy(self) -> Any:
        """An independent tree of the same backend and class with equal contents (also
        ``copy.copy``, ``copy.deepcopy`` and pickling)."""


class TreeContainerAPI(ContainerAPI, Protocol):
    """``IOVATree`` and ``GPATree`` also: ``reversed``, and ``update`` (and ``cls(maps)``)."""

    def __reversed__(self) -> Iterator[DMAMap]:
        """The maps in descending key order."""

    def update(self, maps: Iterable[DMAMap]) -> None:
        """Insert every map of ``maps``, all or nothing."""


class IOVATreeAPI(TreeContainerAPI, Protocol):
    """QEMU's ``IOVATree`` plus the reverse tree."""

    def insert(self, map: DMAMap) -> None:
        """Store ``map``.  ``TypeError`` unless a ``DMAMap``; ``OverlapError`` (``.existing`` =
        the stored map with the lowest IOVA that overlaps it) if its IOVA range is taken."""

    def find(self, iova: int, size: int = 0) -> DMAMap | None:
        """The stored map with the lowest IOVA overlapping ``[iova, iova + size]``."""

    def find_iova(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> DMAMap | None:
        """Among maps whose translated range overlaps ``[translated_addr, translated_addr +
        size]`` (and whose ``id`` equals ``id`` unless it is None): the lowest IOVA."""

    def translate(
        self, translated_addr: int, length: int, id: int | None = None
    ) -> list[Segment]:
        """Minimal ``(iova, nbytes)`` segments covering ``length`` bytes from
        ``translated_addr``; ``TranslationError`` (``.address``) at the first uncovered byte."""

    def alloc(
        self,
        size: int,
        translated_addr: int = 0,
        perm: Perm = Perm.RW,
        id: int = 0,
        iova_begin: int = 0,
        iova_last: int = (1 << 64) - 1,
        align: int = 1,
        policy: str = "first",
    ) -> DMAMap:
        """Place, insert and return a map of ``size`` (inclusive) in ``[iova_begin,
        iova_last]``: lowest (``"first"``) or highest (``"last"``) aligned IOVA that fits."""

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove every map overlapping ``[iova, iova + size]``; return how many."""

    def find_all(self, iova: int, size: int = 0) -> list[DMAMap]:
        """Every stored map overlapping ``[iova, iova + size]``, in IOVA order; O(log n + k)."""

    def find_iova_all(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> list[DMAMap]:
        """Every stored map whose translated range overlaps (and whose ``id`` equals ``id``
        unless it is None), in IOVA order."""

    def to_translated_many(self, iovas: U64Input, missing: int | None = None) -> U64Array:
        """Batch IOVA -> translated address."""

    def to_iova_many(
        self, translated_addrs: U64Input, id: int | None = None, missing: int | None = None
    ) -> U64Array:
        """Batch translated address -> IOVA, through ``find_iova(addr, 0, id)``."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[DMAMap]: ...
    def maps(self) -> list[DMAMap]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def check(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


class GPATreeAPI(TreeContainerAPI, Protocol):
    """QEMU's ``gpa_tree_new``: keyed by the translated address (GPA)."""

    def insert(self, map: DMAMap) -> None:
        """``OverlapError`` (``.existing`` = lowest translated address hit) if the translated
        range is taken."""

    def find(self, translated_addr: int, size: int = 0) -> DMAMap | None:
        """The map with the lowest translated address overlapping the range."""

    def remove(self, translated_addr: int, size: int = 0) -> int:
        """Remove every map whose translated range overlaps; return how many."""

    def find_all(self, translated_addr: int, size: int = 0) -> list[DMAMap]:
        """Every map whose translated range overlaps the range, in translated order."""

    def to_iova_many(self, translated_addrs: U64Input, missing: int | None = None) -> U64Array:
        """Batch GPA -> IOVA."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[DMAMap]: ...
    def maps(self) -> list[DMAMap]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def check(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


class VhostIOVATreeAPI(ContainerAPI, Protocol):
    """QEMU's ``VhostIOVATree``: allocation tree, host-only IOVA->HVA tree, GPA->IOVA tree."""

    def map_alloc(self, size: int, hva: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate the lowest free IOVA range and record IOVA->HVA (``id`` 0)."""

    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate and record GPA->IOVA; the map has ``translated_addr = id = gpa``.
        ``NoSpaceError`` first, then ``OverlapError`` if the GPA range is taken (rolled back)."""

    def find_iova(self, hva: int, size: int = 0) -> DMAMap | None: ...
    def find_gpa(self, gpa: int, size: int = 0) -> DMAMap | None: ...
    def remove(self, iova: int, size: int = 0) -> int: ...
    def remove_gpa(self, gpa: int, size: int = 0) -> int: ...

    def translate(self, hva: int, length: int, gpa: int | None = None) -> list[Segment]:
        """Without ``gpa``: the buffer at ``hva`` through the host-only tree.  With ``gpa``: the
        same buffer, known to the guest at ``gpa``, through the GPA->IOVA tree (``hva`` is only
        checked, as SVQ does)."""

    def to_iova_many(self, hvas: U64Input, missing: int | None = None) -> U64Array: ...
    def gpa_to_iova_many(self, gpas: U64Input, missing: int | None = None) -> U64Array: ...
    def __len__(self) -> int: ...
    def host_maps(self) -> list[DMAMap]: ...
    def gpa_maps(self) -> list[DMAMap]: ...
    def allocated(self) -> list[DMAMap]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def check(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
