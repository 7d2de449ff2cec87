# SPDX-License-Identifier: GPL-2.0-or-later
"""Hypothesis strategies and stateful machines for testing an IOVA tree against the reference.

Needs ``hypothesis`` (``pip install iova-native[testing]``).  Two kinds of pieces:

* **Strategies** over a deliberately *small* address universe, so that overlaps, aliases and
  full trees are frequent rather than astronomically rare: addresses are a few page slots
  (``slot * PAGE`` plus an offset of 0, 1, half a page or a page minus one) or values at the very
  top of the 64-bit space.  :func:`dma_maps`, :func:`disjoint_maps`, :func:`aliasing_layouts`,
  :func:`svq_guest_layouts`, :func:`operations`, :func:`bad_values`.
* **Stateful machines**, :class:`IOVATreeComparison`, :class:`GPATreeComparison` and
  :class:`VhostIOVATreeComparison`.  Each drives one ``iova_native.differential`` object: every
  rule is a call on it, so both sides run and any disagreement raises ``DivergenceError`` (with a
  shrunk reproducer), which fails the test; ``check()`` runs after every step.  Put your class on
  ``left`` (the reference is on ``right`` by default)::

      from hypothesis import settings
      from iova_native.strategies import IOVATreeComparison

      class MyTreeComparison(IOVATreeComparison):
          left = MyTree

      TestMyTree = MyTreeComparison.TestCase
      TestMyTree.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)

  ``left = None`` (the default) means the native backend, ``right = None`` the reference.
"""

from __future__ import annotations

import copy
import pickle
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import Any, Callable

try:
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        consumes,
        initialize,
        invariant,
        multiple,
        rule,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "iova_native.strategies needs hypothesis: pip install 'iova-native[testing]'"
    ) from exc

from . import differential
from ._container import same_kind
from ._types import MAX_U64, DMAMap, IOVAError, Perm
from .api import VhostIOVATreeAPI
from .differential import Operation

__all__ = [
    "PAGE",
    "SLOTS",
    "SCALED_4G",
    "GuestRegion",
    "HostBuffer",
    "SVQLayout",
    "addresses",
    "sizes",
    "lengths",
    "perms",
    "ids",
    "aligns",
    "dma_maps",
    "disjoint_maps",
    "aliasing_layouts",
    "svq_guest_layouts",
    "operations",
    "bad_values",
    "OnlyInt",
    "RaisingIndex",
    "run_operations",
    "IOVATreeComparison",
    "GPATreeComparison",
    "VhostIOVATreeComparison",
]

#: One page; the unit of the small address universe.
PAGE = 0x1000
#: How many page slots the low part of the universe has by default.
SLOTS = 16

# Offsets inside a slot: page-aligned most often, then the awkward ones (one byte in, the middle,
# the last byte) that catch off-by-one errors on inclusive ranges.
_OFFSETS = (0, 0, 0, 1, 0x800, 0xFFF)
# The top of the 64-bit space: ranges ending exactly at 2**64-1, and one byte short of it.
_TOP = (
    MAX_U64,
    MAX_U64 - 1,
    MAX_U64 - 0x7FF,
    MAX_U64 - 0xFFF,
    MAX_U64 - 0x1FFF,
    MAX_U64 - 0x2FFF,
    MAX_U64 - 0x3FFF,
)
# Inclusive sizes: one byte, a few bytes, half a page, whole pages.
_SIZES = (0, 1, 0x7FF, 0xFFF, 0xFFF, 0x1FFF, 0x2FFF, 0x3FFF, 0x7FFF)
_IDS = (0, 0x1000, 0x2000, 0x3000, 0x10000)
_ALIGNS = (1, 1, 2, 0x800, 0x1000, 0x1000, 0x2000, 0x4000, 0x10000, 1 << 63)
_VALID_PERMS = (Perm.RW, Perm.RW, Perm.RO, Perm.WO)

# --------------------------------------------------------------------------- values


@cache  # strategies are immutable: build each once
def addresses(slots: int = SLOTS) -> st.SearchStrategy[int]:
    """A u64 address: ``slot * PAGE + offset`` for ``slot < slots``, or one near 2**64-1."""
    low = st.builds(
        lambda slot, offset: slot * PAGE + offset,
        st.integers(0, max(slots - 1, 0)),
        st.sampled_from(_OFFSETS),
    )
    # Three to one for the low slots, where the maps are.
    return st.one_of(low, low, low, st.sampled_from(_TOP))


@cache  # strategies are immutable: build each once
def sizes() -> st.SearchStrategy[int]:
    """An inclusive size (``size + 1`` bytes): from one byte to eight pages."""
    return st.sampled_from(_SIZES)


@cache  # strategies are immutable: build each once
def lengths() -> st.SearchStrategy[int]:
    """A byte count for ``translate`` (0 included: an empty buffer)."""
    return st.sampled_from((0, 1, 2, 0x800, 0x1000, 0x1001, 0x2000, 0x3000, 0x8000))


@cache  # strategies are immutable: build each once
def perms() -> st.SearchStrategy[Perm]:
    """A valid permission (never ``Perm.NONE``)."""
    return st.sampled_from(_VALID_PERMS)


def ids(values: Sequence[int] = _IDS) -> st.SearchStrategy[int]:
    """An id from a few values, so that ids repeat across maps."""
    return _ids(tuple(values))


@cache
def _ids(values: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.sampled_from(values)


@cache  # strategies are immutable: build each once
def aligns() -> st.SearchStrategy[int]:
    """A power-of-two alignment, including ``2**63``."""
    return st.sampled_from(_ALIGNS)


def _fit(start: int, size: int) -> int:
    # Keep ``[start, start + size]`` inside the 64-bit space: a map that would wrap is moved to
    # end exactly at 2**64-1, which is itself an edge worth testing.
    return min(start, MAX_U64 - size)


@st.composite
def dma_maps(
    draw: Callable[..., Any],
    slots: int = SLOTS,
    translated_slots: int | None = None,
    id_values: Sequence[int] = _IDS,
) -> DMAMap:
    """A valid ``DMAMap`` in the small universe (IOVA and translated side both).

    ``translated_slots`` (default: ``slots``) narrows the translated side: with 2 slots most maps
    alias each other.
    """
    size = draw(sizes())
    iova = _fit(draw(addresses(slots)), size)
    translated = _fit(
        draw(addresses(slots if translated_slots is None else translated_slots)), size
    )
    return DMAMap(iova, translated, size, draw(perms()), draw(ids(id_values)))


@st.composite
def disjoint_maps(
    draw: Callable[..., Any],
    min_size: int = 0,
    max_size: int = 6,
    slots: int = SLOTS,
    key: str = "iova",
) -> list[DMAMap]:
    """Maps that never overlap on the ``key`` side (``"iova"``, ``"translated"`` or ``"both"``),
    so that inserting all of them in any order succeeds.  Sometimes one more map ends exactly at
    2**64-1."""
    if key not in ("iova", "translated", "both"):
        raise ValueError(f"key must be 'iova', 'translated' or 'both', not {key!r}")
    starts = sorted(
        draw(st.lists(st.integers(0, slots - 1), min_size=min_size, max_size=max_size, unique=True))
    )
    ranges: list[tuple[int, int]] = []
    for i, slot in enumerate(starts):
        room = ((starts[i + 1] if i + 1 < len(starts) else slots) - slot) * PAGE
        size = draw(_sizes_below(room))
        ranges.append((slot * PAGE, size))
    if len(ranges) < max_size and draw(st.booleans()):
        size = draw(sizes())
        ranges.append((MAX_U64 - size, size))  # far above every slot: still disjoint
    # With key="both" the translated side reuses the disjoint ranges, shuffled.
    others = draw(st.permutations([start for start, _ in ranges]))
    maps = []
    for (start, size), other in zip(ranges, others):
        free = _fit(draw(addresses(slots)), size)
        if key == "iova":
            iova, translated = start, free
        elif key == "translated":
            iova, translated = free, start
        else:
            iova, translated = start, _fit(other, size)
        maps.append(DMAMap(iova, translated, size, draw(perms()), draw(ids())))
    ok = key != "both" or _disjoint([(m.translated_addr, m.translated_last) for m in maps])
    if not ok:  # shuffled ranges of different sizes can collide: fall back to identity
        maps = [m.replace(translated_addr=m.iova) for m in maps]
    return draw(st.permutations(maps))


@cache
def _sizes_below(room: int) -> st.SearchStrategy[int]:
    return st.sampled_from([s for s in _SIZES if s < room])


def _disjoint(spans: list[tuple[int, int]]) -> bool:
    spans = sorted(spans)
    return all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


@st.composite
def aliasing_layouts(draw: Callable[..., Any], slots: int = SLOTS) -> list[DMAMap]:
    """One translated range mapped at several IOVAs under different ids (two GPAs aliasing one
    HVA, the problem the RFC's ``id`` solves), plus maps whose translated ranges overlap it only
    partly.  The IOVA ranges never overlap, so all of them insert; the order is shuffled."""
    size = draw(st.sampled_from((0xFFF, 0x1FFF, 0x3FFF)))
    hva = _fit(draw(st.integers(0, slots - 1)) * PAGE, size)
    alias_ids = draw(st.lists(ids(), min_size=2, max_size=4, unique=True))
    cursor = draw(st.integers(0, 3)) * PAGE
    maps = []

    def place(translated: int, map_size: int, id: int) -> None:
        nonlocal cursor
        maps.append(DMAMap(cursor, translated, map_size, draw(perms()), id))
        cursor += map_size + 1 + draw(st.sampled_from((0, 0, PAGE)))

    for id in alias_ids:
        place(hva, size, id)
    for _ in range(draw(st.integers(0, 3))):
        shift = draw(st.sampled_from((-0x800, -1, 1, 0x800, PAGE, size)))
        part_size = draw(sizes())
        translated = _fit(max(hva + shift, 0), part_size)
        place(translated, part_size, draw(st.sampled_from((*alias_ids, *_IDS))))
    return draw(st.permutations(maps))


# --------------------------------------------------------------------------- SVQ layouts

#: Where "4 GiB" falls in the scaled SVQ layouts: 4 GiB / 32768, so that a whole guest fits a
#: tree of a few hundred pages while RAM below and above it keeps its shape.
SCALED_4G = 0x20000


@dataclass(frozen=True)
class GuestRegion:
    """Guest memory: ``size + 1`` bytes at ``gpa`` backed by host memory at ``hva``."""

    gpa: int
    hva: int
    size: int
    name: str

    def __repr__(self) -> str:
        return (
            f"GuestRegion(gpa={self.gpa:#x}, hva={self.hva:#x}, size={self.size:#x}, "
            f"name={self.name!r})"
        )


@dataclass(frozen=True)
class HostBuffer:
    """Host-only memory the device must reach (SVQ vring areas, control-queue buffers)."""

    hva: int
    size: int
    name: str

    def __repr__(self) -> str:
        return f"HostBuffer(hva={self.hva:#x}, size={self.size:#x}, name={self.name!r})"


@dataclass(frozen=True)
class SVQLayout:
    """What QEMU maps for a vhost-vDPA device under SVQ, scaled down (see ``SCALED_4G``)."""

    guest: tuple[GuestRegion, ...]
    host: tuple[HostBuffer, ...]

    def dma_maps(self, iova_first: int = PAGE) -> list[DMAMap]:
        """Every region as an ``IOVATree`` map, placed first-fit from ``iova_first`` page by page
        the way SVQ's allocator would: guest maps are ``hva -> iova`` with ``id = gpa``, host
        buffers have ``id = 0``."""
        maps = []
        iova = iova_first
        for region in self.guest:
            maps.append(DMAMap(iova, region.hva, region.size, Perm.RW, region.gpa))
            iova += -(-(region.size + 1) // PAGE) * PAGE
        for buffer in self.host:
            maps.append(DMAMap(iova, buffer.hva, buffer.size, Perm.RW, 0))
            iova += -(-(buffer.size + 1) // PAGE) * PAGE
        return maps

    def apply(self, tree: VhostIOVATreeAPI) -> list[Any]:
        """Map everything into a ``VhostIOVATree`` in QEMU's order (memory listener first, then
        the vrings at device start, then the control buffers); return each call's outcome, the
        returned map or the ``IOVAError`` raised (a small tree may run out of IOVA space)."""
        outcomes: list[Any] = []
        for region in self.guest:
            outcomes.append(_attempt(tree.map_alloc_gpa, region.size, region.gpa))
        for buffer in self.host:
            outcomes.append(_attempt(tree.map_alloc, buffer.size, buffer.hva))
        return outcomes


@st.composite
def svq_guest_layouts(draw: Callable[..., Any]) -> SVQLayout:
    """A guest as SVQ sees it, scaled so that "4 GiB" is ``SCALED_4G``: RAM below 4 GiB split
    around a legacy hole, RAM above 4 GiB whose HVA continues right after the low RAM's (GPA
    jumps, HVA does not), a BIOS page mapped at two GPAs (two GPAs aliasing one HVA), and per
    virtqueue a driver and a device vring area plus, sometimes, control-queue buffers."""
    ram_hva = draw(st.sampled_from((0x7F00_0000_0000, 0x7F12_3450_0000)))
    low_end = draw(st.sampled_from((0x8000, 0x10000, 0x18000)))  # "1, 2 or 3 GiB"
    legacy = (0x2000, 0x4000)  # the "640 KiB to 1 MiB" hole: VGA, option ROMs, BIOS
    high = draw(st.sampled_from((0, PAGE, 0x4000, 0x10000)))  # RAM above "4 GiB"
    guest = [
        GuestRegion(0, ram_hva, legacy[0] - 1, "ram-below-legacy-hole"),
        GuestRegion(legacy[1], ram_hva + legacy[1], low_end - legacy[1] - 1, "ram-below-4g"),
    ]
    if high:
        guest.append(GuestRegion(SCALED_4G, ram_hva + low_end, high - 1, "ram-above-4g"))
    if draw(st.booleans()):
        bios_hva = draw(st.sampled_from((0x7E00_0000_0000, 0x7F00_8000_0000)))
        guest.append(GuestRegion(SCALED_4G - PAGE, bios_hva, PAGE - 1, "bios"))
        guest.append(GuestRegion(legacy[0], bios_hva, PAGE - 1, "bios-legacy-alias"))
    svq_hva = draw(st.sampled_from((0x7F80_0000_0000, 0x5555_5555_0000)))
    host = []
    for queue in range(draw(st.integers(1, 4))):
        base = svq_hva + queue * 4 * PAGE
        driver = draw(st.sampled_from((PAGE - 1, 2 * PAGE - 1)))
        host.append(HostBuffer(base, driver, f"vq{queue}-driver-area"))
        host.append(HostBuffer(base + 2 * PAGE, PAGE - 1, f"vq{queue}-device-area"))
    if draw(st.booleans()):
        cvq = svq_hva + 0x100 * PAGE
        host.append(HostBuffer(cvq, PAGE - 1, "cvq-out"))
        host.append(HostBuffer(cvq + PAGE, PAGE - 1, "cvq-in"))
    return SVQLayout(tuple(draw(st.permutations(guest))), tuple(host))


# --------------------------------------------------------------------------- bad input


class OnlyInt:
    """A number that converts with ``int()`` but is no integer: it has ``__int__`` and no
    ``__index__`` (like ``Decimal``, ``Fraction`` and NumPy floats).  Must raise ``TypeError``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"OnlyInt({self.value:#x})"


class RaisingIndex:
    """An integer type whose ``__index__`` raises (a ``ValueError``, which both backends pass
    on unchanged); ``__int__`` would answer 0x1000."""

    def __int__(self) -> int:
        return 0x1000

    def __index__(self) -> int:
        raise ValueError("RaisingIndex.__index__ refuses")

    def __repr__(self) -> str:
        return "RaisingIndex()"


def _not_integers(value: int) -> tuple[Any, ...]:
    """Non-integers that ``int()`` turns into ``value`` (issue 15: cffi takes them)."""
    found: list[Any] = [Decimal(value) + Decimal("0.5"), Fraction(value), OnlyInt(value)]
    found.append(RaisingIndex())
    try:
        import numpy
    except ImportError:  # the NumPy kinds are left out
        return tuple(found)
    return (*found, numpy.float32(value), numpy.float64(value), numpy.bool_(bool(value)))


@cache  # strategies are immutable: build each once
def bad_values(kind: str = "u64") -> st.SearchStrategy[Any]:
    """Values an argument of ``kind`` must refuse (``TypeError`` or ``InvalidMapError``, or the
    ``ValueError`` of a :class:`RaisingIndex`).

    ``kind``: ``"u64"`` (an address, size or id), ``"perm"``, ``"policy"``, ``"align"``,
    ``"batch"`` (a U64Input) or ``"map"``.  Some are right in type and range but wrong in context
    (2**64-1 as a size wraps any range not starting at 0).  The hostile kinds of issue 15 are in:
    non-integers that convert with ``int()`` (``Decimal``, ``Fraction``, :class:`OnlyInt`, NumPy
    floats and bools), an ``__index__`` that raises, one-shot iterators with a bad element,
    two-dimensional buffers and ``DMAMap``s forged with ``tuple.__new__``.
    """
    forge = tuple.__new__
    values: dict[str, tuple[Any, ...]] = {
        "u64": (-1, 1 << 64, 1.5, 4096.0, "0x1000", b"\x00", None, MAX_U64, [0x1000],
                *_not_integers(0x1000)),
        "perm": (Perm.NONE, 0, 4, -1, "RW", None, 1.5, *_not_integers(3)),
        "policy": ("middle", "", "FIRST", 1, None),
        "align": (0, 3, 0x1800, -1, 1.0, None, *_not_integers(0x1000)),
        "batch": ([-1], [1 << 64], [1.5], ["0x1000"], [None], [0x1000, None], 5, None,
                  *([0x1000, x] for x in _not_integers(0x1000))),
        "map": (
            None,
            (0x1000, 0x1000, 0xFFF, Perm.RW, 0),
            [0x1000, 0x1000, 0xFFF],
            1.5,
            "map",
            forge(DMAMap, (0x1000, 0x1000, 0xFFF, Perm.RW)),
            forge(DMAMap, ()),
            forge(DMAMap, (0x1000, 0x1000, 0xFFF, Perm.RW, 0, 0)),
            forge(DMAMap, (Decimal(0x1000), 0x1000, 0xFFF, Perm.RW, 0)),
            forge(DMAMap, (0x1000, OnlyInt(0x1000), 0xFFF, Perm.RW, 0)),
        ),
    }
    fixed = st.sampled_from(values[kind])
    if kind != "batch":
        return fixed
    # One-shot iterators, built afresh for every draw: the first or the last value is bad.
    one_shot: st.SearchStrategy[list[Any]] = st.sampled_from(
        ([-1, 0x1000], [0x1000, 0x1001, -1], [0x1000, Fraction(1)])
    )
    two_d = st.builds(lambda: memoryview(array("Q", [0x1000] * 4)).cast("B").cast("Q", [2, 2]))
    return st.one_of(fixed, one_shot.map(lambda values: iter(values)), two_d)


# One valid call per method and the kind of each argument; a bad-input rule spoils one or two
# of them.  "opt" is a u64 that may also be None.
_IOVA_CALLS: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]] = {
    "insert": ((DMAMap(0x1000, 0x1000, 0xFFF),), ("map",)),
    "find": ((0x1000, 0), ("u64", "u64")),
    "find_iova": ((0x1000, 0, None), ("u64", "u64", "opt")),
    "find_all": ((0x1000, 0), ("u64", "u64")),
    "find_iova_all": ((0x1000, 0, None), ("u64", "u64", "opt")),
    "translate": ((0x1000, 0x10, None), ("u64", "u64", "opt")),
    "alloc": (
        (0xFFF, 0, Perm.RW, 0, 0, MAX_U64, 1, "first"),
        ("u64", "u64", "perm", "u64", "u64", "u64", "align", "policy"),
    ),
    "remove": ((0x1000, 0), ("u64", "u64")),
    "to_translated_many": (([0x1000],), ("batch",)),
    "to_iova_many": (([0x1000], None, None), ("batch", "opt", "opt")),
}
_GPA_CALLS: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]] = {
    "insert": ((DMAMap(0x1000, 0x1000, 0xFFF),), ("map",)),
    "find": ((0x1000, 0), ("u64", "u64")),
    "find_all": ((0x1000, 0), ("u64", "u64")),
    "remove": ((0x1000, 0), ("u64", "u64")),
    "to_iova_many": (([0x1000], None), ("batch", "opt")),
}
_VHOST_CALLS: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]] = {
    "map_alloc": ((0xFFF, 0x1000, Perm.RW), ("u64", "u64", "perm")),
    "map_alloc_gpa": ((0xFFF, 0x1000, Perm.RW), ("u64", "u64", "perm")),
    "find_iova": ((0x1000, 0), ("u64", "u64")),
    "find_gpa": ((0x1000, 0), ("u64", "u64")),
    "remove": ((0x1000, 0), ("u64", "u64")),
    "remove_gpa": ((0x1000, 0), ("u64", "u64")),
    "translate": ((0x1000, 0x10, None), ("u64", "u64", "opt")),
    "to_iova_many": (([0x1000], None), ("batch", "opt")),
    "gpa_to_iova_many": (([0x1000], None), ("batch", "opt")),
}


@st.composite
def _bad_call(
    draw: Callable[..., Any], calls: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]]
) -> tuple[str, tuple[Any, ...]]:
    method = draw(st.sampled_from(sorted(calls)))
    args, kinds = calls[method]
    spoilt = draw(st.lists(st.integers(0, len(args) - 1), min_size=1, max_size=2, unique=True))
    values = list(args)
    for i in spoilt:
        values[i] = draw(bad_values("u64" if kinds[i] == "opt" else kinds[i]))
    return method, tuple(values)


# --------------------------------------------------------------------------- operations


def _is_one_shot(value: Any) -> bool:
    try:
        return iter(value) is value
    except (TypeError, NotImplementedError):  # NotImplementedError: a 2-D memoryview
        return False


def _op(method: str, *args: Any, **kwargs: Any) -> Operation:
    # None is the default of every optional keyword used here: leave it out, as a caller would.
    if args and _is_one_shot(args[0]):
        # Recorded so that every apply() gets a fresh iterator over the same values.
        args = (differential._OneShot(args[0]), *args[1:])
    return Operation(method, args, tuple((k, v) for k, v in kwargs.items() if v is not None))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _iova_operation() -> st.SearchStrategy[Operation]:
    a, s = addresses(), sizes()
    return st.one_of(
        st.builds(lambda m: _op("insert", m), dma_maps()),
        st.builds(lambda m: _op("insert", m), dma_maps(translated_slots=2)),
        st.builds(lambda i, n: _op("find", i, n), a, s),
        st.builds(lambda t, n, i: _op("find_iova", t, n, id=i), a, s, _optional(ids())),
        st.builds(lambda t, n, i: _op("translate", t, n, id=i), a, lengths(), _optional(ids())),
        st.builds(
            lambda n, t, b, al, p: _op("alloc", n, t, iova_begin=b, align=al, policy=p),
            s,
            a,
            a,
            aligns(),
            st.sampled_from(("first", "last")),
        ),
        st.builds(lambda i, n: _op("remove", i, n), a, s),
        st.builds(lambda xs: _op("to_translated_many", xs, missing=0), st.lists(a, max_size=4)),
        st.builds(
            lambda xs, i: _op("to_iova_many", xs, id=i), st.lists(a, max_size=4), _optional(ids())
        ),
        st.just(_op("clear")),
        st.just(Operation("__len__", kind=differential._LEN)),
        st.just(_op("maps")),
        st.builds(lambda c: _op(c[0], *c[1]), _bad_call(_IOVA_CALLS)),
    )


def _gpa_operation() -> st.SearchStrategy[Operation]:
    a, s = addresses(), sizes()
    return st.one_of(
        st.builds(lambda m: _op("insert", m), dma_maps()),
        st.builds(lambda i, n: _op("find", i, n), a, s),
        st.builds(lambda i, n: _op("remove", i, n), a, s),
        st.builds(lambda xs: _op("to_iova_many", xs, missing=0), st.lists(a, max_size=4)),
        st.just(_op("clear")),
        st.just(_op("maps")),
        st.builds(lambda c: _op(c[0], *c[1]), _bad_call(_GPA_CALLS)),
    )


def _vhost_operation() -> st.SearchStrategy[Operation]:
    a, s = addresses(), sizes()
    return st.one_of(
        st.builds(lambda n, h: _op("map_alloc", n, h), s, a),
        st.builds(lambda n, g: _op("map_alloc_gpa", n, g), s, a),
        st.builds(lambda h, n: _op("find_iova", h, n), a, s),
        st.builds(lambda g, n: _op("find_gpa", g, n), a, s),
        st.builds(lambda i, n: _op("remove", i, n), a, s),
        st.builds(lambda g, n: _op("remove_gpa", g, n), a, s),
        st.builds(lambda h, n, g: _op("translate", h, n, gpa=g), a, lengths(), _optional(a)),
        st.builds(lambda xs: _op("to_iova_many", xs, missing=0), st.lists(a, max_size=4)),
        st.builds(lambda xs: _op("gpa_to_iova_many", xs, missing=0), st.lists(a, max_size=4)),
        st.just(_op("clear")),
        st.just(_op("allocated")),
        st.builds(lambda c: _op(c[0], *c[1]), _bad_call(_VHOST_CALLS)),
    )


def operations(
    kind: str = "IOVATree", min_size: int = 0, max_size: int = 50
) -> st.SearchStrategy[list[Operation]]:
    """A list of calls for an ``IOVATree``, ``GPATree`` or ``VhostIOVATree`` (``kind``), bad
    input included.  Each is a ``differential.Operation``: ``op.apply(tree)`` runs it, ``str(op)``
    shows it; :func:`run_operations` runs a whole list."""
    makers = {"IOVATree": _iova_operation, "GPATree": _gpa_operation}
    makers["VhostIOVATree"] = _vhost_operation
    if kind not in makers:
        raise ValueError(f"kind must be one of {sorted(makers)}, not {kind!r}")
    return st.lists(makers[kind](), min_size=min_size, max_size=max_size)


# Errors a correct tree raises on purpose; anything else (AssertionError from check() or a
# DivergenceError, say) is a failure and propagates.
_EXPECTED = (IOVAError, TypeError, ValueError)


def run_operations(tree: Any, ops: Sequence[Operation]) -> list[Any]:
    """Apply ``ops`` to ``tree`` in order; return each outcome, the value or the expected error
    (``IOVAError``, ``TypeError``, ``ValueError``) it raised."""
    outcomes = []
    for op in ops:
        try:
            outcomes.append(op.apply(tree))
        except _EXPECTED as exc:
            outcomes.append(exc)
    return outcomes


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


_FAILED = _Failed()


def _attempt(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call; an expected error becomes the outcome (both sides raised it alike)."""
    try:
        return function(*args, **kwargs)
    except _EXPECTED as exc:
        return exc


def _ok(outcome: Any) -> bool:
    return not isinstance(outcome, BaseException)


def _near(m: DMAMap, where: str, translated: bool = False) -> int:
    """An address at an edge of ``m``: its first or last byte, inside it, or just outside."""
    first, last = (m.translated_addr, m.translated_last) if translated else (m.iova, m.last)
    return {
        "first": first,
        "last": last,
        "middle": first + (last - first) // 2,
        "before": max(first - 1, 0),
        "after": min(last + 1, MAX_U64),
    }[where]


_WHERE = st.sampled_from(("first", "last", "middle", "before", "after"))


#: Addresses in a "long" batch: past the 128 from which native sorts a batch and answers it
#: in one sweep over the tree (csrc/iova-binding.c), a path short batches never take.
_LONG_BATCH = 150


def _batch(values: list[int], container: str) -> Any:
    # The batch forms take any sequence of ints or a buffer of uint64: vary the container.
    if container == "long" and values:  # the drawn addresses repeated, out of order
        return [values[(i * 7919) % len(values)] for i in range(_LONG_BATCH)]
    if container == "array":
        return array("Q", values)
    if container == "tuple":
        return tuple(values)
    if container == "iterator":
        return iter(values)
    return values


_CONTAINERS = st.sampled_from(("list", "array", "tuple", "iterator", "long"))

# How a tree is copied, and what is then done to the copy (the original must not notice).
_COPY_WAYS = st.sampled_from(("copy", "copy.copy", "copy.deepcopy", "pickle"))
_AFTER_COPY = st.sampled_from(("close", "clear", "change"))


def _copied(tree: Any, how: str) -> Any:
    if how == "copy":
        return tree.copy()
    if how == "copy.copy":
        return copy.copy(tree)
    if how == "copy.deepcopy":
        return copy.deepcopy(tree)
    return pickle.loads(pickle.dumps(tree))


def _changed(m: DMAMap, how: str) -> Any:
    """``m`` with one field changed (a map ``in`` must not mistake for ``m``), or ``m``."""
    try:
        if how == "perm":
            return m.replace(perm=Perm.RO if m.perm != Perm.RO else Perm.RW)
        if how == "id":
            return m.replace(id=m.id ^ 1)
        if how == "translated":
            return m.replace(translated_addr=m.translated_addr ^ 1)
        if how == "size":
            return m.replace(size=m.size // 2)
    except IOVAError:  # the changed map would wrap: probe with the map itself
        pass
    return m


def _check_single_batch(out: Any, hits: list[DMAMap], key: int, translated_key: bool) -> None:
    """A one-address batch answer ``out`` for ``key`` against the first hit of a range query."""
    if not hits:
        assert not _ok(out)
        return
    m = hits[0]
    start, other = (m.translated_addr, m.iova) if translated_key else (m.iova, m.translated_addr)
    assert list(out) == [other + key - start]


_CHANGES = st.sampled_from((None, "perm", "id", "translated", "size"))
# Values that are not maps: ``in`` answers False for each.
_NOT_MAPS = st.one_of(
    st.integers(0, MAX_U64),
    st.none(),
    st.text(max_size=2),
    st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFF)),
)


# --------------------------------------------------------------------------- machines


class _Comparison(RuleBasedStateMachine):
    """Shared: building the differential object, the invariant, closing, listings."""

    #: The class on the left (yours); None means ``iova_native.native``'s.
    left: Any = None
    #: The class on the right; None means ``iova_native.reference``'s.
    right: Any = None
    #: Seconds the differential object may spend shrinking a divergence.  Hypothesis then shrinks
    #: the steps as well and calls it again for each failing attempt: keep it short.
    shrink_timeout: float = 2.0

    tree: Any

    def __init__(self) -> None:
        super().__init__()
        self.tree = self._new_tree()

    def _new_tree(self) -> Any:
        raise NotImplementedError

    def _sides(self) -> dict[str, Any]:
        # Read from the class: a function stored on ``left`` must not become a bound method.
        cls = type(self)
        return {"left": cls.left, "right": cls.right, "shrink_timeout": cls.shrink_timeout}

    @invariant()
    def check(self) -> None:
        """Both sides' invariants hold and their contents agree (differential ``check()``)."""
        self.tree.check()

    @rule(really=st.integers(0, 15))
    def clear(self, really: int) -> None:
        # Only one draw in sixteen clears: otherwise the trees rarely grow.
        if really == 0:
            _attempt(self.tree.clear)

    @rule(really=st.integers(0, 31))
    def close_and_start_over(self, really: int) -> None:
        """Rarely: close, check that both sides refuse calls alike, then go on with a new tree."""
        if really:
            return
        self.tree.close()
        self.tree.close()  # closing twice is allowed
        assert self.tree.closed
        for probe in self._closed_probes():
            _attempt(probe)
        self.tree = self._new_tree()

    def _closed_probes(self) -> list[Callable[[], Any]]:
        return [self.tree.clear, lambda: len(self.tree), self.tree.check, self.tree.copy,
                lambda: pickle.dumps(self.tree), lambda: DMAMap(0, 0, 0) in self.tree]

    def _change_copy(self, twin: Any) -> None:
        raise NotImplementedError

    @rule(how=_COPY_WAYS, then=_AFTER_COPY)
    def copy_round_trip(self, how: str, then: str) -> None:
        """Copy or pickle, each side by its own backend; then close, clear or change the copy:
        the original keeps what it held."""
        before = self.tree._equality_state()
        twin = _copied(self.tree, how)
        assert type(twin) is type(self.tree)
        assert type(twin.left) is type(self.tree.left)
        assert type(twin.right) is type(self.tree.right)
        assert twin == self.tree
        twin.check()
        if then == "close":
            twin.close()
        elif then == "clear":
            twin.clear()
        else:
            self._change_copy(twin)
        assert self.tree._equality_state() == before
        twin.close()
        self.tree.check()

    @rule()
    def equality(self) -> None:
        """Equal across backends, never equal to what is not a tree."""
        left, right = self.tree.left, self.tree.right
        if same_kind(left, right):
            assert left == right and right == left and not left != right
        state = self.tree._equality_state()
        assert self.tree != state and self.tree != object()

    @rule(value=_NOT_MAPS)
    def contains_not_a_map(self, value: Any) -> None:
        assert (value in self.tree) is False

    def teardown(self) -> None:
        self.tree.close()


class _TreeRules(_Comparison):
    """The container rules IOVATree and GPATree share: find_all, in, reversed, update."""

    maps = Bundle("maps")
    #: Whether the tree's key is the translated address (GPATree).
    _by_translated = False

    def _tree_class(self) -> Any:
        raise NotImplementedError

    def _first(self, m: DMAMap) -> int:
        return m.translated_addr if self._by_translated else m.iova

    def _change_copy(self, twin: Any) -> None:
        twin.remove(0, MAX_U64)
        _attempt(twin.insert, DMAMap(PAGE, PAGE, PAGE - 1))

    def _range(self, key: int, size: int) -> None:
        """``find_all`` in key order, its first hit what ``find`` and the batch form give."""
        hits = _attempt(self.tree.find_all, key, size)
        if not _ok(hits):
            return
        assert hits == sorted(hits, key=self._first)
        assert all(self._first(m) <= key + size and key <= self._first(m) + m.size for m in hits)
        assert (hits[0] if hits else None) == self.tree.find(key, size)
        if size == 0:
            self._single_batch_agrees(key, hits)

    def _single_batch_agrees(self, key: int, hits: list[DMAMap]) -> None:
        raise NotImplementedError

    @rule(key=addresses(), size=sizes())
    def find_all(self, key: int, size: int) -> None:
        self._range(key, size)

    @rule(src=maps, where=_WHERE, size=st.sampled_from((0, 1, 0xFFF, 0x7FFF, MAX_U64)))
    def find_all_near(self, src: DMAMap, where: str, size: int) -> None:
        key = _near(src, where, translated=self._by_translated)
        self._range(key, min(size, MAX_U64 - key))

    @rule(src=maps, change=_CHANGES)
    def contains(self, src: DMAMap, change: str | None) -> None:
        probe = src if change is None else _changed(src, change)
        assert (probe in self.tree) == (probe in self.tree.maps())

    @rule()
    def reversed_order(self) -> None:
        assert list(reversed(self.tree)) == list(self.tree)[::-1]

    @rule(
        target=maps,
        new=st.lists(dma_maps(), max_size=4),
        known=st.lists(maps, max_size=1),
        iterator=st.booleans(),
    )
    def update(self, new: list[DMAMap], known: list[DMAMap], iterator: bool) -> Any:
        """Insert several maps at once; one that overlaps (a known one, say) fails them all."""
        batch = new + known
        before = self.tree.maps()
        out = _attempt(self.tree.update, iter(batch) if iterator else batch)
        if _ok(out):
            return multiple(*batch)
        assert self.tree.maps() == before
        return multiple()

    @rule(extra=st.lists(dma_maps(), max_size=2))
    def build_from_maps(self, extra: list[DMAMap]) -> None:
        """``cls(maps)`` equals the tree it was listed from, or fails whole."""
        maps = self.tree.maps() + extra
        built = _attempt(self._tree_class(), maps, **self._sides())
        if _ok(built):
            assert built.maps() == sorted(maps, key=self._first)
            built.close()


class IOVATreeComparison(_TreeRules):
    """An ``IOVATree`` (``left``) against another (``right``) through ``differential.IOVATree``.

    Rules: insert (valid maps, overlapping ones, aliases of a stored translated range with the
    same or another id, partial aliases), find, find_iova (with and without id), translate, alloc
    (power-of-two alignments, both policies, bounds near 0, near 2**64-1 and straddling stored
    maps), remove, clear, the batch forms, listings, closing, and bad input.
    """

    #: Page slots of the translated side; fewer slots, more aliasing.
    translated_slots: int = SLOTS

    maps = Bundle("maps")
    #: Maps removed by ``remove_known``, to be inserted again (as they were, or a little longer
    #: or shorter): the native core's freed-range log (design.md, "Freed ranges wait") takes
    #: an exact re-insert back and gives its ranges to the holes first for the rest.
    removed = Bundle("removed")

    def _new_tree(self) -> Any:
        return differential.IOVATree(**self._sides())

    def _tree_class(self) -> Any:
        return differential.IOVATree

    def _single_batch_agrees(self, key: int, hits: list[DMAMap]) -> None:
        _check_single_batch(_attempt(self.tree.to_translated_many, [key]), hits, key, False)

    def _reverse_range(self, addr: int, size: int, id: int | None) -> None:
        """``find_iova_all`` in IOVA order, its first hit what ``find_iova`` and the batch
        form give."""
        hits = _attempt(self.tree.find_iova_all, addr, size, id)
        if not _ok(hits):
            return
        assert hits == sorted(hits)
        assert all(m.translated_addr <= addr + size and addr <= m.translated_last for m in hits)
        assert id is None or all(m.id == id for m in hits)
        assert (hits[0] if hits else None) == self.tree.find_iova(addr, size, id)
        if size == 0:
            _check_single_batch(_attempt(self.tree.to_iova_many, [addr], id), hits, addr, True)

    @rule(addr=addresses(), size=sizes(), id=_optional(ids()))
    def find_iova_all(self, addr: int, size: int, id: int | None) -> None:
        self._reverse_range(addr, size, id)

    @rule(
        src=maps,
        where=_WHERE,
        size=st.sampled_from((0, 1, 0xFFF, 0x7FFF, MAX_U64)),
        use_id=st.booleans(),
    )
    def find_iova_all_near(self, src: DMAMap, where: str, size: int, use_id: bool) -> None:
        addr = _near(src, where, translated=True)
        self._reverse_range(addr, min(size, MAX_U64 - addr), src.id if use_id else None)

    def _insert(self, m: Any) -> Any:
        return m if _ok(_attempt(self.tree.insert, m)) else multiple()

    @initialize(target=maps, layout=disjoint_maps(max_size=8))
    def start_with(self, layout: list[DMAMap]) -> Any:
        """Start from a few maps, so that look-ups seldom run on an empty tree."""
        return multiple(*[m for m in layout if _ok(_attempt(self.tree.insert, m))])

    @rule(target=maps, m=dma_maps(), narrow=st.booleans())
    def insert(self, m: DMAMap, narrow: bool) -> Any:
        if narrow and self.translated_slots < SLOTS:
            # Fold the translated side into the narrow universe of an aliasing-heavy subclass.
            folded = (m.translated_addr // PAGE % self.translated_slots) * PAGE
            m = m.replace(translated_addr=_fit(folded, m.size))
        return self._insert(m)

    @rule(target=maps, layout=aliasing_layouts())
    def insert_aliasing_layout(self, layout: list[DMAMap]) -> Any:
        return multiple(*[m for m in layout if _ok(_attempt(self.tree.insert, m))])

    @rule(target=maps, src=maps, iova=addresses(), id=_optional(ids()), perm=perms())
    def insert_alias(self, src: DMAMap, iova: int, id: int | None, perm: Perm) -> Any:
        """The translated range of a known map at another IOVA, same id or another."""
        m = DMAMap(
            _fit(iova, src.size), src.translated_addr, src.size, perm, src.id if id is None else id
        )
        return self._insert(m)

    @rule(
        target=maps,
        src=maps,
        iova=addresses(),
        shift=st.sampled_from((-0x800, -1, 1, 0x800, PAGE)),
        size=sizes(),
        id=ids(),
    )
    def insert_partial_alias(self, src: DMAMap, iova: int, shift: int, size: int, id: int) -> Any:
        translated = _fit(min(max(src.translated_addr + shift, 0), MAX_U64), size)
        return self._insert(DMAMap(_fit(iova, size), translated, size, Perm.RW, id))

    @rule(iova=addresses(), size=sizes())
    def find(self, iova: int, size: int) -> None:
        _attempt(self.tree.find, iova, size)

    @rule(src=maps, where=_WHERE, size=sizes())
    def find_near(self, src: DMAMap, where: str, size: int) -> None:
        _attempt(self.tree.find, _near(src, where), size)

    @rule(addr=addresses(), size=sizes(), id=_optional(ids()))
    def find_iova(self, addr: int, size: int, id: int | None) -> None:
        _attempt(self.tree.find_iova, addr, size, id)

    @rule(src=maps, where=_WHERE, size=st.sampled_from((0, 1, 0xFFF)), use_id=st.booleans())
    def find_iova_near(self, src: DMAMap, where: str, size: int, use_id: bool) -> None:
        addr = _near(src, where, translated=True)
        _attempt(self.tree.find_iova, addr, size, src.id if use_id else None)

    @rule(addr=addresses(), length=lengths(), id=_optional(ids()))
    def translate(self, addr: int, length: int, id: int | None) -> None:
        _attempt(self.tree.translate, addr, length, id)

    @rule(src=maps, where=_WHERE, length=lengths(), use_id=st.booleans())
    def translate_near(self, src: DMAMap, where: str, length: int, use_id: bool) -> None:
        addr = _near(src, where, translated=True)
        _attempt(self.tree.translate, addr, length, src.id if use_id else None)

    @rule(
        target=maps,
        size=sizes(),
        translated=addresses(),
        perm=perms(),
        id=ids(),
        begin=st.one_of(addresses(), st.sampled_from((0, PAGE, MAX_U64 - 0x4000))),
        last_kind=st.sampled_from(("max", "span", "span", "any")),
        span=st.sampled_from((0, 0xFFF, 0x1FFF, 0x4FFF, 0xFFFF)),
        any_last=addresses(),
        align=aligns(),
        policy=st.sampled_from(("first", "last")),
    )
    def alloc(
        self,
        size: int,
        translated: int,
        perm: Perm,
        id: int,
        begin: int,
        last_kind: str,
        span: int,
        any_last: int,
        align: int,
        policy: str,
    ) -> Any:
        last = {"max": MAX_U64, "span": min(begin + span, MAX_U64), "any": any_last}[last_kind]
        out = _attempt(
            self.tree.alloc, size, _fit(translated, size), perm, id, begin, last, align, policy
        )
        return out if _ok(out) else multiple()

    @rule(
        target=maps,
        src=maps,
        offset=st.sampled_from((0, 1, 0x800, "last")),
        size=sizes(),
        span=st.sampled_from((None, 0x1FFF, 0x8FFF)),
        align=aligns(),
        policy=st.sampled_from(("first", "last")),
    )
    def alloc_straddling(
        self, src: DMAMap, offset: Any, size: int, span: int | None, align: int, policy: str
    ) -> Any:
        """``iova_begin`` inside a known map: it starts below and ends at or above it."""
        begin = src.last if offset == "last" else min(src.iova + offset, src.last)
        last = MAX_U64 if span is None else min(begin + span, MAX_U64)
        out = _attempt(self.tree.alloc, size, 0, Perm.RW, 0, begin, last, align, policy)
        return out if _ok(out) else multiple()

    @rule(iova=addresses(), size=sizes())
    def remove(self, iova: int, size: int) -> None:
        _attempt(self.tree.remove, iova, size)

    @rule(target=removed, src=consumes(maps))
    def remove_known(self, src: DMAMap) -> DMAMap:
        _attempt(self.tree.remove, src.iova, src.size)
        return src

    @rule(target=maps, src=consumes(removed), grow=st.sampled_from((0, 0, 1, PAGE, -1)))
    def insert_removed_again(self, src: DMAMap, grow: int) -> Any:
        """A removed map inserted again, as it was or ``grow`` bytes longer (shorter)."""
        size = src.size + grow
        if not 0 <= size <= MAX_U64 - max(src.iova, src.translated_addr):
            size = src.size
        return self._insert(src.replace(size=size))

    @rule(
        addrs=st.lists(addresses(), max_size=6),
        container=_CONTAINERS,
        missing=_optional(st.sampled_from((0, MAX_U64))),
    )
    def to_translated_many(self, addrs: list[int], container: str, missing: int | None) -> None:
        _attempt(self.tree.to_translated_many, _batch(addrs, container), missing)

    @rule(
        addrs=st.lists(addresses(), max_size=6),
        container=_CONTAINERS,
        id=_optional(ids()),
        missing=_optional(st.sampled_from((0, MAX_U64))),
    )
    def to_iova_many(
        self, addrs: list[int], container: str, id: int | None, missing: int | None
    ) -> None:
        _attempt(self.tree.to_iova_many, _batch(addrs, container), id, missing)

    @rule(src=maps, where=_WHERE)
    def to_many_near(self, src: DMAMap, where: str) -> None:
        _attempt(self.tree.to_translated_many, [_near(src, where)], None)
        _attempt(self.tree.to_iova_many, [_near(src, where, translated=True)], src.id, None)

    @rule()
    def listings(self) -> None:
        len(self.tree)
        list(self.tree)

    @rule(calls=st.lists(_bad_call(_IOVA_CALLS), min_size=1, max_size=4))
    def bad_input(self, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Calls with one or two arguments spoilt: both sides must refuse them alike."""
        for method, args in calls:
            _attempt(getattr(self.tree, method), *args)


class GPATreeComparison(_TreeRules):
    """A ``GPATree`` against another through ``differential.GPATree``: insert (overlapping
    translated ranges too), find, remove, the batch form, listings, closing, bad input."""

    maps = Bundle("maps")
    _by_translated = True

    def _new_tree(self) -> Any:
        return differential.GPATree(**self._sides())

    def _tree_class(self) -> Any:
        return differential.GPATree

    def _single_batch_agrees(self, key: int, hits: list[DMAMap]) -> None:
        _check_single_batch(_attempt(self.tree.to_iova_many, [key]), hits, key, True)

    @initialize(target=maps, layout=disjoint_maps(max_size=8, key="translated"))
    def start_with(self, layout: list[DMAMap]) -> Any:
        """Start from a few maps, so that look-ups seldom run on an empty tree."""
        return multiple(*[m for m in layout if _ok(_attempt(self.tree.insert, m))])

    @rule(target=maps, m=dma_maps())
    def insert(self, m: DMAMap) -> Any:
        return m if _ok(_attempt(self.tree.insert, m)) else multiple()

    @rule(target=maps, layout=disjoint_maps(key="translated"))
    def insert_disjoint(self, layout: list[DMAMap]) -> Any:
        return multiple(*[m for m in layout if _ok(_attempt(self.tree.insert, m))])

    @rule(addr=addresses(), size=sizes())
    def find(self, addr: int, size: int) -> None:
        _attempt(self.tree.find, addr, size)

    @rule(src=maps, where=_WHERE, size=sizes())
    def find_near(self, src: DMAMap, where: str, size: int) -> None:
        _attempt(self.tree.find, _near(src, where, translated=True), size)

    @rule(addr=addresses(), size=sizes())
    def remove(self, addr: int, size: int) -> None:
        _attempt(self.tree.remove, addr, size)

    @rule(src=consumes(maps))
    def remove_known(self, src: DMAMap) -> None:
        _attempt(self.tree.remove, src.translated_addr, src.size)

    @rule(
        addrs=st.lists(addresses(), max_size=6),
        container=_CONTAINERS,
        missing=_optional(st.sampled_from((0, MAX_U64))),
    )
    def to_iova_many(self, addrs: list[int], container: str, missing: int | None) -> None:
        _attempt(self.tree.to_iova_many, _batch(addrs, container), missing)

    @rule()
    def listings(self) -> None:
        len(self.tree)
        list(self.tree)

    @rule(calls=st.lists(_bad_call(_GPA_CALLS), min_size=1, max_size=4))
    def bad_input(self, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Calls with one or two arguments spoilt: both sides must refuse them alike."""
        for method, args in calls:
            _attempt(getattr(self.tree, method), *args)


# Sizes for VhostIOVATree allocations: the usual ones, plus some that fill a small IOVA range
# or never fit, so that NoSpaceError (and its rollback) happens.
_VHOST_SIZES = st.one_of(sizes(), sizes(), st.sampled_from((0xFFFF, 0x3FFFF, MAX_U64 - 1)))


class VhostIOVATreeComparison(_Comparison):
    """A ``VhostIOVATree`` against another through ``differential.VhostIOVATree``: host-only
    and guest allocations (GPA overlaps roll back), look-ups both ways, removes, translate with
    and without a GPA, the batch forms, whole SVQ guest layouts, closing, bad input."""

    #: Constructor arguments; a small IOVA range so that it fills up.  ``page_size`` None is
    #: the host's.
    iova_first: int = 0
    iova_last: int = 0x7FFFF
    page_size: int | None = None

    host = Bundle("host")
    guest = Bundle("guest")

    def _new_tree(self) -> Any:
        cls = type(self)
        return differential.VhostIOVATree(cls.iova_first, cls.iova_last, cls.page_size,
                                          **self._sides())

    def _change_copy(self, twin: Any) -> None:
        twin.remove_gpa(0, MAX_U64)
        _attempt(twin.map_alloc, PAGE - 1, 0)

    @rule(src=st.one_of(host, guest), change=_CHANGES)
    def contains(self, src: DMAMap, change: str | None) -> None:
        probe = src if change is None else _changed(src, change)
        stored = self.tree.host_maps() + self.tree.gpa_maps()
        assert (probe in self.tree) == (probe in stored)

    @initialize(target=guest, layout=_optional(svq_guest_layouts()))
    def start_with(self, layout: SVQLayout | None) -> Any:
        """Start, most times, from a whole SVQ guest: its guest maps feed the ``guest`` rules."""
        if layout is None:
            return multiple()
        return multiple(*[m for m in layout.apply(self.tree)[: len(layout.guest)] if _ok(m)])

    @rule(target=host, size=_VHOST_SIZES, hva=addresses(), perm=perms())
    def map_alloc(self, size: int, hva: int, perm: Perm) -> Any:
        out = _attempt(self.tree.map_alloc, size, _fit(hva, min(size, MAX_U64)), perm)
        return out if _ok(out) else multiple()

    @rule(target=guest, size=_VHOST_SIZES, gpa=addresses(), perm=perms())
    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm) -> Any:
        out = _attempt(self.tree.map_alloc_gpa, size, _fit(gpa, size), perm)
        return out if _ok(out) else multiple()

    @rule(target=guest, src=guest, shift=st.sampled_from((-0x800, 0, 1, PAGE)), size=sizes())
    def map_alloc_gpa_overlapping(self, src: DMAMap, shift: int, size: int) -> Any:
        """A GPA range that overlaps a known one: ``OverlapError`` and a rolled-back IOVA."""
        gpa = _fit(min(max(src.translated_addr + shift, 0), MAX_U64), size)
        out = _attempt(self.tree.map_alloc_gpa, size, gpa)
        return out if _ok(out) else multiple()

    @rule(target=host, src=host, size=sizes())
    def map_alloc_aliasing(self, src: DMAMap, size: int) -> Any:
        """Another host buffer at an HVA already mapped."""
        out = _attempt(self.tree.map_alloc, size, _fit(src.translated_addr, size))
        return out if _ok(out) else multiple()

    @rule(layout=svq_guest_layouts())
    def map_svq_layout(self, layout: SVQLayout) -> None:
        layout.apply(self.tree)

    @rule(hva=addresses(), size=sizes())
    def find_iova(self, hva: int, size: int) -> None:
        _attempt(self.tree.find_iova, hva, size)

    @rule(src=host, where=_WHERE)
    def find_iova_near(self, src: DMAMap, where: str) -> None:
        _attempt(self.tree.find_iova, _near(src, where, translated=True), 0)

    @rule(gpa=addresses(), size=sizes())
    def find_gpa(self, gpa: int, size: int) -> None:
        _attempt(self.tree.find_gpa, gpa, size)

    @rule(src=guest, where=_WHERE, size=st.sampled_from((0, 0xFFF)))
    def find_gpa_near(self, src: DMAMap, where: str, size: int) -> None:
        _attempt(self.tree.find_gpa, _near(src, where, translated=True), size)

    @rule(iova=addresses(), size=sizes())
    def remove(self, iova: int, size: int) -> None:
        _attempt(self.tree.remove, iova, size)

    @rule(src=consumes(host))
    def remove_known(self, src: DMAMap) -> None:
        _attempt(self.tree.remove, src.iova, src.size)

    @rule(gpa=addresses(), size=sizes())
    def remove_gpa(self, gpa: int, size: int) -> None:
        _attempt(self.tree.remove_gpa, gpa, size)

    @rule(src=consumes(guest))
    def remove_gpa_known(self, src: DMAMap) -> None:
        _attempt(self.tree.remove_gpa, src.translated_addr, src.size)

    @rule(hva=addresses(), length=lengths(), gpa=_optional(addresses()))
    def translate(self, hva: int, length: int, gpa: int | None) -> None:
        _attempt(self.tree.translate, hva, length, gpa)

    @rule(src=host, where=_WHERE, length=lengths())
    def translate_host_near(self, src: DMAMap, where: str, length: int) -> None:
        _attempt(self.tree.translate, _near(src, where, translated=True), length)

    @rule(src=guest, where=_WHERE, length=lengths(), hva=addresses())
    def translate_guest_near(self, src: DMAMap, where: str, length: int, hva: int) -> None:
        _attempt(self.tree.translate, hva, length, _near(src, where, translated=True))

    @rule(
        addrs=st.lists(addresses(), max_size=6),
        container=_CONTAINERS,
        missing=_optional(st.sampled_from((0, MAX_U64))),
    )
    def to_iova_many(self, addrs: list[int], container: str, missing: int | None) -> None:
        _attempt(self.tree.to_iova_many, _batch(addrs, container), missing)

    @rule(
        addrs=st.lists(addresses(), max_size=6),
        container=_CONTAINERS,
        missing=_optional(st.sampled_from((0, MAX_U64))),
    )
    def gpa_to_iova_many(self, addrs: list[int], container: str, missing: int | None) -> None:
        _attempt(self.tree.gpa_to_iova_many, _batch(addrs, container), missing)

    @rule()
    def listings(self) -> None:
        len(self.tree)

    @rule(calls=st.lists(_bad_call(_VHOST_CALLS), min_size=1, max_size=4))
    def bad_input(self, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Calls with one or two arguments spoilt: both sides must refuse them alike."""
        for method, args in calls:
            _attempt(getattr(self.tree, method), *args)
