# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU trace replay: parse a vhost-vDPA trace, compile it to an op stream, replay the stream.

Three stages, each usable on its own:

1. **Reader** (:mod:`iova_native.trace_input`, re-exported here: :func:`open_trace`,
   :class:`TraceParser`, :func:`parse_line`): every format QEMU's trace backends and tools
   write (the ``log`` backend bare or with its ``PID@SEC.USEC:``, ISO-8601 or program-name
   prefix, ``syslog``, ``ftrace``, ``qemu-trace-stap``, ``scripts/simpletrace.py`` output and the
   ``simple`` backend's binary files), told apart per file.  Modelled events:

   * ``vhost_vdpa_dma_map`` / ``vhost_vdpa_dma_unmap``, both the older format
     (``vdpa:%p fd: %d msg_type: %u iova: 0x.. size: 0x.. [uaddr: 0x.. perm: 0x..] type: %u``)
     and the newer one with ``asid: %u`` before ``iova:`` (``vdpa_shared:%p ...``).  Fields
     after ``type:`` that a later QEMU may add are ignored;
   * ``vhost_vdpa_listener_region_add`` (``vdpa: %p iova 0x.. llend 0x.. vaddr: %p
     read-only: %d``) and ``vhost_vdpa_listener_region_del`` (``vdpa: %p iova 0x.. llend
     0x..``): the guest-physical side;
   * ``vhost_vdpa_get_iova_range`` (``dev: %p first: 0x.. last: 0x..``): the device's IOVA
     range, the bounds of the allocator.

   Other trace events are counted by name and skipped; lines that are not trace events (QEMU's
   warnings) are counted, never fatal.  A modelled event whose fields are missing (a
   truncated line), malformed or out of range raises :class:`MalformedLine` naming the line
   number and what was expected.  A file without any modelled event raises
   :class:`TraceInputError`.

   **Sizes.**  QEMU prints the ``size`` of ``vhost_vdpa_dma_map``/``_unmap`` as the byte count it
   sends the kernel (``msg.iotlb.size``): a map of ``size: 0x1000`` covers 4096 bytes.  A
   ``DMAMap.size`` is inclusive (docs/contract.md), so the replay stores ``size - 1``, exactly as
   QEMU's callers compute ``llsize - 1`` for the tree and pass ``map->size + 1`` to the kernel.
   The ``llend`` of ``region_add``/``region_del`` is *exclusive*: one past the section's last
   byte (QEMU's ``vhost_vdpa_section_end``, an Int128 printed with ``int128_get64``), so the
   section is ``[iova, llend - 1]`` and its inclusive size is ``llend - iova - 1``.  Their
   ``iova`` is the guest-physical address (GPA), not the device IOVA.

2. **Compiler** (:class:`Compiler`, :func:`compile_trace`): rebuilds what QEMU's shadow
   virtqueue (SVQ) keeps, the seed RFC's way: one IOVA->HVA ``IOVATree`` whose maps carry an
   ``id`` (the GPA for guest memory, 0 for host-only buffers such as SVQ vrings and control-queue
   buffers), and a GPA->IOVA ``GPATree`` (QEMU's ``gpa_iova_map``).  Per event:

   * ``region_add(gpa, llend, vaddr)``: remembered until the ``dma_map`` of the same ``vaddr``
     and byte count, which it attributes to the guest (``id = gpa``).
   * ``dma_map(iova, size, uaddr, perm)``: ``ALLOC`` (SVQ traces: the replay re-allocates the
     IOVA first-fit, as QEMU's ``vhost_iova_tree_map_alloc`` did, and counts whether it lands
     where the trace says) or ``INSERT`` at the traced IOVA (traces without SVQ, where the IOVA
     is the GPA).  The mode is decided at the first ``dma_map``: SVQ unless it is a guest map
     whose IOVA equals its GPA.  A guest map also gets a ``GPA_INSERT``.  Then the look-up SVQ
     makes of a map it just made, ``FIND_IOVA(uaddr, size, id)``.
   * ``dma_unmap(iova, size)``: ``REMOVE``.
   * ``region_del(gpa, llend)``: QEMU's reverse look-up of the section (``FIND_IOVA`` of its HVA
     with ``id = gpa``) and ``GPA_REMOVE``; the ``dma_unmap`` that follows removes the map.
   * After every ``dma_map``/``dma_unmap``, ``lookups`` rounds of data-path look-ups (SVQ
     translating a guest buffer for the device, which a trace does not show): a packet-sized
     buffer at a pseudo-random place in a live read-write guest region, as ``TRANSLATE(hva,
     len, id=gpa)`` (the seed RFC's reverse look-up) and ``FIND_GPA(gpa, len - 1)`` (the
     GPA-tree look-up of later QEMU).  The choice is deterministic (SplitMix64, fixed seed).

   All ASIDs share one tree: QEMU allocates the IOVAs of every ASID of a device from one
   ``VhostIOVATree`` (``VhostVDPAShared``), so they never overlap.  One device per trace.
   The RAM section at GPA 0 has id 0 like the host-only buffers: their HVAs differ, so look-ups
   by HVA still tell them apart.

3. **Replay** (:func:`replay`): runs an :class:`OpStream` against an ``IOVATree`` and a
   ``GPATree`` of any backend (``native``, ``reference``, or ``differential``, which checks the
   two sides at every call), timing each call with ``time.perf_counter_ns``.  It reports peak
   maps, unmaps that matched nothing, aliased HVA ranges (a map inserted over an HVA range that
   a live map under another id covers), per-kind latencies, and two digests that the C driver
   (``csrc/tools/iova-replay.c``) computes identically.

**Op stream file** (``iova-native convert``; read by ``tools-build/iova-replay``).  All
little-endian unsigned 64-bit words.  A 32-byte header: ``magic`` (the 8 bytes
``IOVAOPS\\0``), ``version`` (1), ``fields`` (6, words per record), ``count`` (records); then
``count`` records of 6 words ``kind, a0, a1, a2, a3, a4``:

====  ===========  ==============================================================
kind  name         a0, a1, a2, a3, a4
====  ===========  ==============================================================
0     RANGE        first, last: bounds of ALLOC from here on (not timed)
1     INSERT       iova, hva, size (inclusive), perm, id          -> IOVATree.insert
2     ALLOC        traced iova, hva, size, perm, id               -> IOVATree.alloc
3     REMOVE       iova, size                                     -> IOVATree.remove
4     FIND_IOVA    hva, size, id, has_id (0: any id)              -> IOVATree.find_iova
5     TRANSLATE    hva, length in bytes, id, has_id               -> IOVATree.translate
6     GPA_INSERT   iova, gpa, size, perm, id                      -> GPATree.insert
7     GPA_REMOVE   gpa, size                                      -> GPATree.remove
8     FIND_GPA     gpa, size                                      -> GPATree.find
====  ===========  ==============================================================

Unused words are 0.  When ``ALLOC`` places a map elsewhere than the trace did (or fails), the
replay moves it to the traced IOVA (remove + insert, not timed) so that later unmaps by IOVA
still hit, and counts the mismatch.

**Digests**, FNV-1a 64 applied per 64-bit word (``h = (h ^ word) * 0x100000001b3 mod 2**64``,
from ``0xcbf29ce484222325``):

* *state*: the number of maps in the IOVATree, then its maps in IOVA order as
  ``iova, translated_addr, size, perm, id``; the same for the GPATree in GPA order.
* *outcomes*: one or more words per timed operation: INSERT/GPA_INSERT 0 or the error code
  (two's complement); ALLOC the IOVA the allocator chose, or the error code; REMOVE/GPA_REMOVE
  the count; FIND_IOVA/FIND_GPA the IOVA found or ``2**64 - 1``; TRANSLATE the segment count
  then ``iova, nbytes`` per segment, or ``2**64 - 1`` and the first uncovered address.
"""

from __future__ import annotations

import enum
import sys
import time
from array import array
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ._types import MAX_U64, DMAMap, IOVAError, Perm, TranslationError
from .trace_input import (
    DEFAULT_TRACE,
    FORMATS,
    FORMATS_READ,
    MAX_SHOWN_MALFORMED,
    MODELLED_EVENTS,
    DmaMap,
    DmaUnmap,
    Event,
    IovaRange,
    MalformedLine,
    NotTrace,
    RegionAdd,
    RegionDel,
    TraceInput,
    TraceInputError,
    TraceParser,
    TraceStats,
    Unknown,
    open_trace,
    parse_line,
)

__all__ = [
    "DEFAULT_TRACE",
    "DEFAULT_TRACE_DESCRIPTION",
    "FIELDS",
    "FORMATS",
    "FORMATS_READ",
    "MAGIC",
    "MAX_SHOWN_MALFORMED",
    "MAX_LOOKUPS",
    "MODELLED_EVENTS",
    "VERSION",
    "CompiledTrace",
    "Compiler",
    "DmaMap",
    "DmaUnmap",
    "Event",
    "IovaRange",
    "KindStats",
    "MalformedLine",
    "NotTrace",
    "OpKind",
    "OpStream",
    "RegionAdd",
    "RegionDel",
    "ReplayResult",
    "TraceInput",
    "TraceInputError",
    "TraceParser",
    "TraceStats",
    "Unknown",
    "compile_trace",
    "fnv1a_words",
    "open_trace",
    "parse_line",
    "percentile",
    "replay",
    "state_digest",
]

#: What the embedded default trace is (scripts/gen_default_trace.py generates it).
DEFAULT_TRACE_DESCRIPTION = (
    "q35 VM, vhost-vDPA net with SVQ: 8 GiB RAM below and above 4 GiB, BIOS aliased at "
    "two GPAs, 8 queue pairs + CVQ, 3000 CVQ commands, 2 restarts, DIMM hot-plug"
)

MAGIC = b"IOVAOPS\x00"
VERSION = 1
FIELDS = 6
_HEADER_WORDS = 4
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
#: Seed of the data-path look-up choices (SplitMix64).
LOOKUP_SEED = 0x10FA_5EED
#: The most look-up rounds per map and unmap: each round is two ops kept in memory.
MAX_LOOKUPS = 100
#: Smallest IOVA that QEMU's VhostIOVATree hands out (devices dislike address 0).
IOVA_FIRST_MIN = 0x1000


class OpKind(enum.IntEnum):
    """The operations of an op stream (see the module docstring for their arguments)."""

    RANGE = 0
    INSERT = 1
    ALLOC = 2
    REMOVE = 3
    FIND_IOVA = 4
    TRANSLATE = 5
    GPA_INSERT = 6
    GPA_REMOVE = 7
    FIND_GPA = 8


#: Lower-case names, as the report and the C driver print them.
OP_NAMES = {kind: kind.name.lower() for kind in OpKind}
_TIMED = [kind for kind in OpKind if kind != OpKind.RANGE]
_MAP_KINDS = (OpKind.INSERT, OpKind.ALLOC, OpKind.GPA_INSERT)
_RANGE_KINDS = (OpKind.REMOVE, OpKind.FIND_IOVA, OpKind.GPA_REMOVE, OpKind.FIND_GPA)


def fnv1a_words(words: Iterable[int], h: int = FNV_OFFSET) -> int:
    """FNV-1a 64 over 64-bit words (each word XORed in whole, then one multiply)."""
    for word in words:
        h = ((h ^ word) * FNV_PRIME) & MAX_U64
    return h


# =========================================================================== op stream


class OpStream:
    """A sequence of operations: ``FIELDS`` unsigned 64-bit words each, in one ``array('Q')``."""

    def __init__(self, words: array | None = None) -> None:
        self.words = words if words is not None else array("Q")
        if len(self.words) % FIELDS:
            raise ValueError(f"an op stream has {FIELDS} words per operation")

    def append(self, kind: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0,
               a4: int = 0) -> None:
        """Add one operation."""
        self.words.extend((kind, a0, a1, a2, a3, a4))

    def __len__(self) -> int:
        return len(self.words) // FIELDS

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        words = self.words
        for i in range(0, len(words), FIELDS):
            yield tuple(words[i:i + FIELDS])

    def counts(self) -> Counter[OpKind]:
        """How many operations of each kind."""
        return Counter(OpKind(k) for k in self.words[::FIELDS])

    def to_bytes(self) -> bytes:
        """The op stream file: header and records, little-endian."""
        header = array("Q", [int.from_bytes(MAGIC, "little"), VERSION, FIELDS, len(self)])
        body = array("Q", self.words)
        if sys.byteorder != "little":
            header.byteswap()
            body.byteswap()
        return header.tobytes() + body.tobytes()

    def write(self, path: str | Path) -> None:
        """Write the op stream file."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "op stream") -> OpStream:
        """Read an op stream file; ``ValueError`` names what is wrong with it."""
        if len(data) < 8 * _HEADER_WORDS or data[:8] != MAGIC:
            raise ValueError(f"{name}: not an op stream (no {MAGIC!r} header)")
        header = array("Q", data[: 8 * _HEADER_WORDS])
        if sys.byteorder != "little":
            header.byteswap()
        _magic, version, fields, count = header
        if version != VERSION or fields != FIELDS:
            raise ValueError(f"{name}: version {version} with {fields} fields per record; "
                             f"this reader knows version {VERSION} with {FIELDS}")
        body = data[8 * _HEADER_WORDS:]
        if len(body) != 8 * FIELDS * count:
            whole, extra = divmod(len(body), 8 * FIELDS)
            cut = f" and {extra} bytes of one more" if extra else ""
            raise ValueError(f"{name}: header says {count} records, file holds {whole}{cut}")
        words = array("Q", body)
        if sys.byteorder != "little":
            words.byteswap()
        stream = cls(words)
        stream.validate(name)
        return stream

    @classmethod
    def read(cls, path: str | Path) -> OpStream:
        """Read an op stream file."""
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    def validate(self, name: str = "op stream") -> None:
        """Reject what the C driver rejects, naming the record: unknown kinds, bad
        permissions, ``has_id`` other than 0 or 1, and look-up or removal ranges that wrap (the
        C core answers those "nothing", Python's argument checks raise)."""
        words = self.words
        for index in range(len(self)):
            kind, a0, a1, _a2, a3, _a4 = words[index * FIELDS:(index + 1) * FIELDS]
            why = ""
            if kind > max(OpKind):
                why = f"unknown kind {kind}"
            elif kind in _MAP_KINDS and a3 not in (1, 2, 3):
                why = f"perm {a3} is not 1, 2 or 3"
            elif kind in (OpKind.FIND_IOVA, OpKind.TRANSLATE) and a3 > 1:
                why = "has_id is not 0 or 1"
            elif kind in _RANGE_KINDS and a0 + a1 > MAX_U64:
                why = "range wraps past 2**64-1"
            elif kind == OpKind.TRANSLATE and a1 and a0 + a1 - 1 > MAX_U64:
                why = "buffer wraps past 2**64-1"
            if why:
                raise ValueError(f"{name}: record {index}: {why}")


# =========================================================================== compiler


class _SplitMix64:
    """SplitMix64: a fixed, portable PRNG (the C driver never needs it; the ops carry values)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MAX_U64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MAX_U64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MAX_U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MAX_U64
        return z ^ (z >> 31)


class _Region(NamedTuple):
    gpa: int
    hva: int
    size: int  # inclusive
    perm: int


#: Packet-sized data-path buffers: 64 to 1514 bytes.
_PACKET_MIN, _PACKET_SPAN = 64, 1514 - 64 + 1


class Compiler:
    """Turns trace events into an :class:`OpStream` (the model is in the module docstring)."""

    def __init__(self, stats: TraceStats | None = None, *, lookups: int = 2) -> None:
        if not 0 <= lookups <= MAX_LOOKUPS:
            raise ValueError(f"lookups must be 0 to {MAX_LOOKUPS}, not {lookups}")
        self.stats = stats if stats is not None else TraceStats()
        self.lookups = lookups
        self.ops = OpStream()
        self.rng = _SplitMix64(LOOKUP_SEED)
        self.svq: bool | None = None
        self.pending: dict[tuple[int, int], deque[RegionAdd]] = {}  # (hva, nbytes) -> adds
        self.mapped: dict[int, _Region] = {}  # gpa -> region mapped by a dma_map
        self.targets: list[_Region] = []  # read-write guest regions: data-path buffers
        self.ops.append(OpKind.RANGE, IOVA_FIRST_MIN, MAX_U64)

    def feed(self, event: Event) -> None:
        """Add the operations of one event."""
        if isinstance(event, DmaMap):
            self._dma_map(event)
            self._data_path()
        elif isinstance(event, DmaUnmap):
            self.ops.append(OpKind.REMOVE, event.iova, event.size - 1)
            self._data_path()
        elif isinstance(event, RegionAdd):
            key = (event.vaddr, event.llend - event.gpa)
            self.pending.setdefault(key, deque()).append(event)
        elif isinstance(event, RegionDel):
            self._region_del(event)
        else:
            self.ops.append(OpKind.RANGE, max(event.first, IOVA_FIRST_MIN), event.last)

    def feed_all(self, events: Iterable[Event]) -> OpStream:
        """Feed every event; return the op stream."""
        for event in events:
            self.feed(event)
        return self.ops

    def _dma_map(self, event: DmaMap) -> None:
        size = event.size - 1
        waiting = self.pending.get((event.uaddr, event.size))
        region = waiting.popleft() if waiting else None
        gpa = region.gpa if region else 0
        if self.svq is None:
            self.svq = region is None or event.iova != gpa
            self.stats.mode = "svq" if self.svq else "passthrough"
        kind = OpKind.ALLOC if self.svq else OpKind.INSERT
        self.ops.append(kind, event.iova, event.uaddr, size, event.perm, gpa)
        if region is not None:
            self.stats.guest_maps += 1
            self.ops.append(OpKind.GPA_INSERT, event.iova, gpa, size, event.perm, gpa)
            mapped = _Region(gpa, event.uaddr, size, event.perm)
            self._forget(gpa)
            self.mapped[gpa] = mapped
            if event.perm == Perm.RW:
                self.targets.append(mapped)
        else:
            self.stats.host_maps += 1
        self.ops.append(OpKind.FIND_IOVA, event.uaddr, size, gpa, 1)

    def _forget(self, gpa: int) -> None:
        old = self.mapped.pop(gpa, None)
        if old is not None and old in self.targets:
            self.targets.remove(old)

    def _region_del(self, event: RegionDel) -> None:
        if event.llend <= event.gpa:
            self.stats.region_del_empty += 1
            return
        size = event.llend - event.gpa - 1
        region = self.mapped.get(event.gpa)
        if region is not None and region.size == size:
            self.ops.append(OpKind.FIND_IOVA, region.hva, size, event.gpa, 1)
            self._forget(event.gpa)
        else:
            self.stats.region_del_unmapped += 1
        self.ops.append(OpKind.GPA_REMOVE, event.gpa, size)

    def _data_path(self) -> None:
        targets = self.targets
        if not targets:
            return
        rng, append = self.rng, self.ops.append
        for _ in range(self.lookups):
            region = targets[rng.next() % len(targets)]
            length = min(_PACKET_MIN + rng.next() % _PACKET_SPAN, region.size + 1)
            offset = rng.next() % (region.size + 2 - length)
            append(OpKind.TRANSLATE, region.hva + offset, length, region.gpa, 1)
            append(OpKind.FIND_GPA, region.gpa + offset, length - 1)


@dataclass
class CompiledTrace:
    """A parsed and compiled trace: its op stream, what was seen, and where it came from."""

    ops: OpStream
    stats: TraceStats
    name: str
    parse_seconds: float


def compile_trace(
    source: str | Path | None = None,
    *,
    lookups: int = 2,
    strict: bool = False,
    on_malformed: Callable[[MalformedLine], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CompiledTrace:
    """Parse and compile a trace file of any format (None: the embedded default).

    ``progress(bytes_read, total_bytes)`` is called every few thousand lines.  Raises
    :class:`TraceInputError` (one line) when the input is not a trace or holds no modelled
    event, :class:`MalformedLine` at the first malformed modelled event with ``strict``.
    """
    start = time.perf_counter()
    source_input = open_trace(source)
    stats = TraceStats()
    parser = TraceParser(stats, strict=strict, on_malformed=on_malformed)
    compiler = Compiler(stats, lookups=lookups)
    tick = None if progress is None else \
        (lambda: progress(source_input.bytes_read(), source_input.total))
    try:
        if source_input.kind == "simple":
            events = parser.parse_simple(source_input.stream, source_input.name)
        else:
            lines = source_input.lines()
            events = parser.parse(lines if tick is None else _reporting(lines, tick))
        compiler.feed_all(events if tick is None or source_input.kind != "simple"
                          else _reporting(events, tick, every=1024))
    finally:
        source_input.close()
    if not stats.modelled:
        raise TraceInputError(stats.nothing_modelled(source_input.name))
    return CompiledTrace(compiler.ops, stats, source_input.name, time.perf_counter() - start)


def _reporting(items: Iterable[Any], tick: Callable[[], None], every: int = 4096) -> Iterator[Any]:
    for count, item in enumerate(items, 1):
        if count % every == 0:
            tick()
        yield item
    tick()


# =========================================================================== replay


@dataclass
class KindStats:
    """Timings of one operation kind: every sample, in nanoseconds."""

    samples: array = field(default_factory=lambda: array("Q"))
    errors: int = 0

    @property
    def count(self) -> int:
        """How many calls."""
        return len(self.samples)

    def summary(self) -> tuple[int, float, int, int]:
        """``(count, mean, p50, p99)`` in nanoseconds."""
        if not self.samples:
            return 0, 0.0, 0, 0
        ordered = sorted(self.samples)
        return (len(ordered), sum(ordered) / len(ordered), percentile(ordered, 50),
                percentile(ordered, 99))

    def histogram(self) -> Counter[int]:
        """Log2 buckets: bucket ``b`` holds samples with ``2**(b-1) <= ns < 2**b``."""
        return Counter(ns.bit_length() for ns in self.samples)


def percentile(ordered: list[int] | array, p: int) -> int:
    """Nearest-rank percentile of sorted samples (the C driver uses the same rule)."""
    if not ordered:
        return 0
    index = max(0, (p * len(ordered) + 99) // 100 - 1)
    return int(ordered[index])


@dataclass
class ReplayResult:
    """Everything one replay measured."""

    backend: str
    ops: int = 0
    seconds: float = 0.0  # wall time of the whole loop (bookkeeping and timers included)
    kinds: dict[OpKind, KindStats] = field(
        default_factory=lambda: {kind: KindStats() for kind in _TIMED}
    )
    live: int = 0
    peak: int = 0
    gpa_live: int = 0
    unmatched_unmaps: int = 0
    failed: int = 0  # INSERT/ALLOC/GPA_INSERT that raised (after the ALLOC fix-up)
    allocs: int = 0
    alloc_moved: int = 0  # ALLOC placed elsewhere than the trace (or failed): moved there
    alias_events: int = 0
    alias_ranges: set[tuple[int, int]] = field(default_factory=set)
    state_digest: int = 0
    outcome_digest: int = FNV_OFFSET

    @property
    def timed_ns(self) -> int:
        """The sum of every timed call."""
        return sum(sum(k.samples) for k in self.kinds.values())

    @property
    def ops_per_second(self) -> float:
        """Operations per second of wall time."""
        return self.ops / self.seconds if self.seconds else 0.0


class _LiveMaps:
    """A mirror of the IOVATree's maps, to spot aliased HVA ranges without asking the tree.

    Maps are grouped by id: a new map is compared with the live maps of every *other* id (a few
    guest regions and the host-only group), so the usual case costs a few comparisons.
    """

    def __init__(self) -> None:
        self.lasts: list[int] = []  # last IOVA byte of each map, sorted (maps are disjoint)
        self.by_last: dict[int, tuple[int, int, int, int]] = {}  # last -> (iova, hva, hl, id)
        self.by_id: dict[int, dict[int, tuple[int, int]]] = {}  # id -> iova -> (hva, hlast)

    def add(self, iova: int, hva: int, size: int, id: int) -> list[tuple[int, int]]:
        """Record a map; return the HVA ranges it shares with live maps under other ids."""
        hlast = hva + size
        shared = []
        for other, maps in self.by_id.items():
            if other == id:
                continue
            for mhva, mlast in maps.values():
                if mhva <= hlast and hva <= mlast:
                    shared.append((max(hva, mhva), min(hlast, mlast)))
        insort(self.lasts, iova + size)
        self.by_last[iova + size] = (iova, hva, hlast, id)
        self.by_id.setdefault(id, {})[iova] = (hva, hlast)
        return shared

    def remove(self, first: int, last: int) -> None:
        """Forget every map whose IOVA range overlaps ``[first, last]``."""
        index = bisect_left(self.lasts, first)
        while index < len(self.lasts):
            end = self.lasts[index]
            iova, _hva, _hlast, id = self.by_last[end]
            if iova > last:
                break
            del self.lasts[index]
            del self.by_last[end]
            group = self.by_id[id]
            del group[iova]
            if not group:
                del self.by_id[id]


def state_digest(iova_tree: Any, gpa_tree: Any) -> int:
    """The state digest of the two trees (see the module docstring)."""
    h = FNV_OFFSET
    for tree in (iova_tree, gpa_tree):
        maps = tree.maps()
        h = fnv1a_words([len(maps)], h)
        for m in maps:
            h = fnv1a_words((m.iova, m.translated_addr, m.size, int(m.perm), m.id), h)
    return h


_PERMS = (Perm.NONE, Perm.RO, Perm.WO, Perm.RW)


def replay(
    ops: OpStream,
    iova_tree: Any,
    gpa_tree: Any,
    *,
    backend: str = "",
    progress: Callable[[int], None] | None = None,
    every: int = 4096,
) -> ReplayResult:
    """Run ``ops`` against ``iova_tree`` (an ``IOVATree``) and ``gpa_tree`` (a ``GPATree``).

    ``progress(n)`` is called with the number of operations done since the last call, every
    ``every`` operations.  A ``DivergenceError`` from a differential backend propagates.
    """
    result = ReplayResult(backend)
    live_maps = _LiveMaps()
    clock = time.perf_counter_ns
    insert, alloc, remove = iova_tree.insert, iova_tree.alloc, iova_tree.remove
    find_iova, translate = iova_tree.find_iova, iova_tree.translate
    gpa_insert, gpa_remove, find_gpa = gpa_tree.insert, gpa_tree.remove, gpa_tree.find
    samples = {kind: stats.samples.append for kind, stats in result.kinds.items()}
    k_insert, k_alloc, k_remove = (samples[OpKind.INSERT], samples[OpKind.ALLOC],
                                   samples[OpKind.REMOVE])
    k_find_iova, k_translate = samples[OpKind.FIND_IOVA], samples[OpKind.TRANSLATE]
    k_gpa_insert, k_gpa_remove, k_find_gpa = (samples[OpKind.GPA_INSERT],
                                              samples[OpKind.GPA_REMOVE], samples[OpKind.FIND_GPA])
    errors: Counter[int] = Counter()
    h = FNV_OFFSET
    live = peak = unmatched = failed = allocs = moved = 0
    first, last = IOVA_FIRST_MIN, MAX_U64
    words = ops.words
    nwords = len(words)
    started = time.perf_counter()

    def note_map(iova: int, hva: int, size: int, id: int) -> None:
        shared = live_maps.add(iova, hva, size, id)
        if shared:
            result.alias_events += 1
            result.alias_ranges.update(shared)

    for base in range(0, nwords, FIELDS):
        kind, a0, a1, a2, a3, a4 = words[base:base + FIELDS]
        if kind == 5:  # TRANSLATE
            t0 = clock()
            try:
                segments = translate(a0, a1, a2 if a3 else None)
            except TranslationError as exc:
                k_translate(clock() - t0)
                errors[kind] += 1
                h = ((h ^ MAX_U64) * FNV_PRIME) & MAX_U64
                h = ((h ^ exc.address) * FNV_PRIME) & MAX_U64
                continue
            except IOVAError as exc:
                k_translate(clock() - t0)
                errors[kind] += 1
                h = ((h ^ (exc.code & MAX_U64)) * FNV_PRIME) & MAX_U64
                continue
            k_translate(clock() - t0)
            h = ((h ^ len(segments)) * FNV_PRIME) & MAX_U64
            for seg_iova, seg_len in segments:
                h = ((h ^ seg_iova) * FNV_PRIME) & MAX_U64
                h = ((h ^ seg_len) * FNV_PRIME) & MAX_U64
        elif kind == 8:  # FIND_GPA
            t0 = clock()
            found = find_gpa(a0, a1)
            k_find_gpa(clock() - t0)
            h = ((h ^ (MAX_U64 if found is None else found.iova)) * FNV_PRIME) & MAX_U64
        elif kind == 4:  # FIND_IOVA
            t0 = clock()
            found = find_iova(a0, a1, a2 if a3 else None)
            k_find_iova(clock() - t0)
            h = ((h ^ (MAX_U64 if found is None else found.iova)) * FNV_PRIME) & MAX_U64
        elif kind == 2:  # ALLOC
            allocs += 1
            perm = _PERMS[a3]
            t0 = clock()
            try:
                placed = alloc(a2, a1, perm, a4, first, last)
            except IOVAError as exc:
                k_alloc(clock() - t0)
                errors[kind] += 1
                h = ((h ^ (exc.code & MAX_U64)) * FNV_PRIME) & MAX_U64
                placed = None
            else:
                k_alloc(clock() - t0)
                h = ((h ^ placed.iova) * FNV_PRIME) & MAX_U64
            if placed is not None and placed.iova == a0:
                live += 1
                note_map(a0, a1, a2, a4)
            else:
                moved += 1
                if placed is not None:
                    remove(placed.iova, placed.size)
                try:
                    insert(DMAMap(a0, a1, a2, perm, a4))
                except IOVAError:
                    failed += 1
                else:
                    live += 1
                    note_map(a0, a1, a2, a4)
            if live > peak:
                peak = live
        elif kind == 3:  # REMOVE
            t0 = clock()
            try:
                count = remove(a0, a1)
            except IOVAError as exc:
                k_remove(clock() - t0)
                errors[kind] += 1
                h = ((h ^ (exc.code & MAX_U64)) * FNV_PRIME) & MAX_U64
                continue
            k_remove(clock() - t0)
            h = ((h ^ count) * FNV_PRIME) & MAX_U64
            if count:
                live -= count
                live_maps.remove(a0, a0 + a1)
            else:
                unmatched += 1
        elif kind == 1 or kind == 6:  # INSERT, GPA_INSERT
            t0 = clock()
            try:
                # A map that wraps is refused by DMAMap itself, the C core's insert says -1.
                new = DMAMap(a0, a1, a2, _PERMS[a3], a4)
                t0 = clock()
                (insert if kind == 1 else gpa_insert)(new)
            except IOVAError as exc:
                (k_insert if kind == 1 else k_gpa_insert)(clock() - t0)
                errors[kind] += 1
                failed += 1
                h = ((h ^ (exc.code & MAX_U64)) * FNV_PRIME) & MAX_U64
                continue
            (k_insert if kind == 1 else k_gpa_insert)(clock() - t0)
            h = (h * FNV_PRIME) & MAX_U64  # XOR with 0 changes nothing
            if kind == 1:
                live += 1
                peak = max(peak, live)
                note_map(a0, a1, a2, a4)
        elif kind == 7:  # GPA_REMOVE
            t0 = clock()
            try:
                count = gpa_remove(a0, a1)
            except IOVAError as exc:
                k_gpa_remove(clock() - t0)
                errors[kind] += 1
                h = ((h ^ (exc.code & MAX_U64)) * FNV_PRIME) & MAX_U64
                continue
            k_gpa_remove(clock() - t0)
            h = ((h ^ count) * FNV_PRIME) & MAX_U64
        elif kind == 0:  # RANGE
            first, last = a0, a1
        else:
            raise ValueError(f"op {base // FIELDS}: unknown kind {kind}")
        if progress is not None and (base // FIELDS + 1) % every == 0:
            progress(every)

    result.seconds = time.perf_counter() - started
    if progress is not None:
        progress(len(ops) % every)
    for kind, n in errors.items():
        result.kinds[OpKind(kind)].errors = n
    result.ops = len(ops)
    result.live, result.peak = live, peak
    result.unmatched_unmaps, result.failed = unmatched, failed
    result.allocs, result.alloc_moved = allocs, moved
    result.outcome_digest = h
    iova_tree.check()
    gpa_tree.check()
    result.gpa_live = len(gpa_tree)
    if len(iova_tree) != live:
        raise AssertionError(f"the IOVATree holds {len(iova_tree)} maps, the replay counted {live}")
    result.state_digest = state_digest(iova_tree, gpa_tree)
    return result
