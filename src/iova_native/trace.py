# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU trace replay: parse a vhost-vDPA trace, compile it to an op stream, replay the stream.

Three stages, each usable on its own:

1. **Parser** (:class:`TraceParser`, :func:`parse_line`): QEMU's ``log`` trace backend text,
   with or without the ``PID@SEC.USEC:`` prefix.  Modelled events:

   * ``vhost_vdpa_dma_map`` / ``vhost_vdpa_dma_unmap``, both the older format
     (``vdpa:%p fd: %d msg_type: %u iova: 0x.. size: 0x.. [uaddr: 0x.. perm: 0x..] type: %u``)
     and the newer one with ``asid: %u`` before ``iova:`` (``vdpa_shared:%p ...``).  Fields
     after ``type:`` that a later QEMU may add are ignored;
   * ``vhost_vdpa_listener_region_add`` (``vdpa: %p iova 0x.. llend 0x.. vaddr: %p
     read-only: %d``) and ``vhost_vdpa_listener_region_del`` (``vdpa: %p iova 0x.. llend
     0x..``): the guest-physical side;
   * ``vhost_vdpa_get_iova_range`` (``dev: %p first: 0x.. last: 0x..``): the device's IOVA
     range, the bounds of the allocator.

   Every other event name is counted and skipped.  A line that is not a trace line, or a
   modelled event whose fields are missing (a truncated line), malformed or out of range, raises
   :class:`MalformedLine` naming the line number and what was expected.

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
import gzip
import io
import re
import sys
import time
from array import array
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, NamedTuple, Union

from ._types import MAX_U64, DMAMap, IOVAError, Perm, TranslationError

__all__ = [
    "DEFAULT_TRACE",
    "DEFAULT_TRACE_DESCRIPTION",
    "FIELDS",
    "MAGIC",
    "VERSION",
    "CompiledTrace",
    "Compiler",
    "DmaMap",
    "DmaUnmap",
    "IovaRange",
    "KindStats",
    "MalformedLine",
    "OpKind",
    "OpStream",
    "RegionAdd",
    "RegionDel",
    "ReplayResult",
    "TraceParser",
    "TraceStats",
    "compile_trace",
    "fnv1a_words",
    "open_trace",
    "parse_line",
    "percentile",
    "replay",
    "state_digest",
]

#: The embedded default trace, inside the package (``iova_native/data``).
DEFAULT_TRACE = "default-trace.log.gz"
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


# =========================================================================== parser


class MalformedLine(ValueError):
    """A trace line that cannot be used: ``lineno`` (1-based) and ``reason``."""

    def __init__(self, lineno: int, reason: str, text: str = "") -> None:
        self.lineno = lineno
        self.reason = reason
        self.text = text
        super().__init__(f"line {lineno}: {reason}")


class DmaMap(NamedTuple):
    """``vhost_vdpa_dma_map``; ``size`` is the traced byte count, ``asid`` None when absent."""

    lineno: int
    fd: int
    asid: int | None
    iova: int
    size: int
    uaddr: int
    perm: int


class DmaUnmap(NamedTuple):
    """``vhost_vdpa_dma_unmap``; ``size`` is the traced byte count."""

    lineno: int
    fd: int
    asid: int | None
    iova: int
    size: int


class RegionAdd(NamedTuple):
    """``vhost_vdpa_listener_region_add``: GPA ``[gpa, llend - 1]`` at HVA ``vaddr``."""

    lineno: int
    gpa: int
    llend: int
    vaddr: int
    readonly: bool


class RegionDel(NamedTuple):
    """``vhost_vdpa_listener_region_del``: GPA ``[gpa, llend - 1]``."""

    lineno: int
    gpa: int
    llend: int


class IovaRange(NamedTuple):
    """``vhost_vdpa_get_iova_range``: the device accepts IOVAs in ``[first, last]``."""

    lineno: int
    first: int
    last: int


Event = Union[DmaMap, DmaUnmap, RegionAdd, RegionDel, IovaRange]

_PREFIX = re.compile(r"(\d+)@(\d+)\.(\d+):")
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:[ \t]+|$)")
_VALUE = {
    "ptr": r"(0x[0-9a-fA-F]+|\(nil\))",
    "hex": r"(0x[0-9a-fA-F]+)",
    "dec": r"(-?[0-9]+)",
}
_SHOWN = {"ptr": "0x<hex>", "hex": "0x<hex>", "dec": "<decimal>"}
#: What is left of a value when a line is cut right at its start.
_VALUE_STARTS = ("", "0", "0x", "(", "(nil", "-")


class _Field(NamedTuple):
    name: str
    label: str  # a regex; its plain form is shown in messages
    shown: str
    kind: str
    optional: bool = False


def _f(name: str, label: str, kind: str, optional: bool = False) -> _Field:
    """A field ``label value``: ``label`` literal text, any whitespace after a colon."""
    pattern = re.escape(label).replace(r"\ ", r"[ \t]+").replace(":", r":[ \t]*")
    return _Field(name, pattern, label.strip(), kind, optional)


_OWNER = _Field("vdpa", r"[A-Za-z_]+:[ \t]*", "vdpa:", "ptr")
_FORMATS: dict[str, list[_Field]] = {
    "vhost_vdpa_dma_map": [
        _OWNER, _f("fd", "fd: ", "dec"), _f("msg_type", "msg_type: ", "dec"),
        _f("asid", "asid: ", "dec", optional=True), _f("iova", "iova: ", "hex"),
        _f("size", "size: ", "hex"), _f("uaddr", "uaddr: ", "hex"),
        _f("perm", "perm: ", "hex"), _f("type", "type: ", "dec"),
    ],
    "vhost_vdpa_dma_unmap": [
        _OWNER, _f("fd", "fd: ", "dec"), _f("msg_type", "msg_type: ", "dec"),
        _f("asid", "asid: ", "dec", optional=True), _f("iova", "iova: ", "hex"),
        _f("size", "size: ", "hex"), _f("type", "type: ", "dec"),
    ],
    "vhost_vdpa_listener_region_add": [
        _OWNER, _f("iova", "iova ", "hex"), _f("llend", "llend ", "hex"),
        _f("vaddr", "vaddr: ", "ptr"), _f("readonly", "read-only: ", "dec"),
    ],
    "vhost_vdpa_listener_region_del": [
        _OWNER, _f("iova", "iova ", "hex"), _f("llend", "llend ", "hex"),
    ],
    "vhost_vdpa_get_iova_range": [
        _Field("dev", r"dev:[ \t]*", "dev:", "ptr"), _f("first", "first: ", "hex"),
        _f("last", "last: ", "hex"),
    ],
}


def _field_regex(spec: _Field) -> str:
    return rf"{spec.label}{_VALUE[spec.kind]}"


def _whole_line(fields: list[_Field]) -> re.Pattern[str]:
    """One regex for the fast path; trailing fields a later QEMU adds are allowed."""
    parts = []
    for index, spec in enumerate(fields):
        sep = "" if index == 0 else r"[ \t]+"
        part = f"{sep}{_field_regex(spec)}"
        parts.append(f"(?:{part})?" if spec.optional else part)
    return re.compile("".join(parts) + r"(?=[ \t]|$)")


_WHOLE = {name: _whole_line(fields) for name, fields in _FORMATS.items()}
_ONE = {
    name: [re.compile(r"[ \t]*" + _field_regex(spec) + r"(?=[ \t]|$)") for spec in fields]
    for name, fields in _FORMATS.items()
}


def _excerpt(text: str, limit: int = 24) -> str:
    """A short, terminal-safe quote of ``text``."""
    text = text.strip()
    return ascii(text if len(text) <= limit else text[:limit] + "...")


def _diagnose(name: str, args: str, lineno: int) -> MalformedLine:
    """Walk the fields one by one to say which one is missing or malformed."""
    pos = 0
    for spec, regex in zip(_FORMATS[name], _ONE[name]):
        match = regex.match(args, pos)
        if match:
            pos = match.end()
            continue
        if spec.optional:
            continue
        rest = args[pos:]
        want = f"'{spec.shown} {_SHOWN[spec.kind]}'"
        label = re.match(r"[ \t]*" + spec.label, rest)
        cut_after_label = label is not None and rest[label.end():].strip() in _VALUE_STARTS
        if not rest.strip() or cut_after_label:
            return MalformedLine(lineno, f"{name}: truncated, {want} is missing")
        return MalformedLine(lineno, f"{name}: expected {want} at {_excerpt(rest)}")
    return MalformedLine(lineno, f"{name}: malformed arguments {_excerpt(args)}")


def _u64(text: str, base: int, what: str, lineno: int, name: str) -> int:
    if text == "(nil)":
        return 0
    value = int(text, base)
    if not 0 <= value <= MAX_U64:
        raise MalformedLine(lineno, f"{name}: {what} {text} does not fit in 64 bits")
    return value


def _check_span(lineno: int, name: str, what: str, start: int, nbytes: int) -> None:
    if start + nbytes - 1 > MAX_U64:
        raise MalformedLine(
            lineno, f"{name}: {what} {start:#x} + size {nbytes:#x} wraps past 2**64-1"
        )


def _build(name: str, values: tuple[str, ...], lineno: int) -> Event:
    """Convert and check the matched fields of a modelled event."""
    fields = _FORMATS[name]
    raw = dict(zip((f.name for f in fields), values))

    def num(key: str) -> int:
        spec = next(f for f in fields if f.name == key)
        base = 10 if spec.kind == "dec" else 16
        return _u64(raw[key], base, key, lineno, name)

    if name in ("vhost_vdpa_dma_map", "vhost_vdpa_dma_unmap"):
        asid = None if raw["asid"] is None else num("asid")
        fd = int(raw["fd"])
        iova, size = num("iova"), num("size")
        if size == 0:
            raise MalformedLine(lineno, f"{name}: size 0x0 (a DMA range covers at least 1 byte)")
        _check_span(lineno, name, "iova", iova, size)
        if name == "vhost_vdpa_dma_unmap":
            return DmaUnmap(lineno, fd, asid, iova, size)
        uaddr, perm = num("uaddr"), num("perm")
        _check_span(lineno, name, "uaddr", uaddr, size)
        if perm not in (Perm.RO, Perm.WO, Perm.RW):
            raise MalformedLine(lineno, f"{name}: perm {perm:#x} is not 0x1, 0x2 or 0x3")
        return DmaMap(lineno, fd, asid, iova, size, uaddr, perm)
    if name == "vhost_vdpa_get_iova_range":
        first, last = num("first"), num("last")
        if last < first:
            raise MalformedLine(lineno, f"{name}: last {last:#x} is below first {first:#x}")
        return IovaRange(lineno, first, last)
    gpa, llend = num("iova"), num("llend")
    if name == "vhost_vdpa_listener_region_del":
        return RegionDel(lineno, gpa, llend)
    if llend <= gpa:
        raise MalformedLine(lineno, f"{name}: llend {llend:#x} is not above iova {gpa:#x}")
    return RegionAdd(lineno, gpa, llend, num("vaddr"), raw["readonly"] != "0")


class Unknown(NamedTuple):
    """A well-formed line of an event the replay does not model."""

    lineno: int
    name: str


def parse_line(text: str, lineno: int = 0) -> Event | Unknown | None:
    """Parse one line: a modelled event, an :class:`Unknown` event, or None for a blank line.

    Raises :class:`MalformedLine` for anything else.
    """
    text = text.rstrip("\r\n")
    if not text.strip():
        return None
    pos = 0
    prefix = _PREFIX.match(text)
    if prefix:
        pos = prefix.end()
    name_match = _NAME.match(text, pos)
    if not name_match:
        where = "after the PID@SEC.USEC: prefix" if prefix else "at the start"
        raise MalformedLine(lineno, f"not a trace event line (no event name {where}): "
                            f"{_excerpt(text[pos:])}", text)
    name = name_match.group(1)
    args = text[name_match.end():]
    if name not in _FORMATS:
        if not args.strip() and any(known.startswith(name) for known in _FORMATS):
            raise MalformedLine(lineno, f"truncated event name {name!r}", text)
        if "_" not in name:  # QEMU's event names are all subsystem_event
            raise MalformedLine(lineno, "not a trace event line (an event name has a '_'): "
                                f"{_excerpt(text[pos:])}", text)
        return Unknown(lineno, name)
    match = _WHOLE[name].match(args)
    if not match:
        raise _diagnose(name, args, lineno)
    return _build(name, match.groups(), lineno)


@dataclass
class TraceStats:
    """What the parser and the compiler saw."""

    lines: int = 0
    blank: int = 0
    events: Counter[str] = field(default_factory=Counter)  # modelled, by name
    unknown: Counter[str] = field(default_factory=Counter)  # skipped, by name
    malformed: int = 0
    malformed_shown: list[MalformedLine] = field(default_factory=list)
    prefixed: int = 0  # lines with the PID@SEC.USEC: prefix
    with_asid: int = 0  # dma_map/unmap lines in the newer format
    without_asid: int = 0  # ... in the older one
    fds: set[int] = field(default_factory=set)
    mode: str = "unknown"  # "svq" or "passthrough", decided at the first dma_map
    guest_maps: int = 0  # dma_map attributed to a region_add (id = GPA)
    host_maps: int = 0  # dma_map of host-only buffers (id 0)
    region_del_unmapped: int = 0  # region_del of a section that no dma_map mapped
    region_del_empty: int = 0  # region_del with llend <= iova (QEMU traces it, then returns)


#: At most this many malformed lines are kept for the report (all are counted).
MAX_SHOWN_MALFORMED = 10


class TraceParser:
    """Parse a whole trace: yield modelled events, count the rest.

    With ``strict``, the first malformed line raises :class:`MalformedLine`; otherwise it is
    counted, kept for the report (the first :data:`MAX_SHOWN_MALFORMED`), passed to
    ``on_malformed`` if given, and skipped.
    """

    def __init__(
        self,
        stats: TraceStats | None = None,
        *,
        strict: bool = False,
        on_malformed: Callable[[MalformedLine], None] | None = None,
    ) -> None:
        self.stats = stats if stats is not None else TraceStats()
        self.strict = strict
        self.on_malformed = on_malformed

    def parse(self, lines: Iterable[str]) -> Iterator[Event]:
        """The modelled events of ``lines``, in order."""
        stats = self.stats
        for lineno, text in enumerate(lines, start=stats.lines + 1):
            stats.lines = lineno
            try:
                event = parse_line(text, lineno)
            except MalformedLine as exc:
                exc.text = text.rstrip("\r\n")
                if self.strict:
                    raise
                stats.malformed += 1
                if len(stats.malformed_shown) < MAX_SHOWN_MALFORMED:
                    stats.malformed_shown.append(exc)
                if self.on_malformed is not None:
                    self.on_malformed(exc)
                continue
            if event is None:
                stats.blank += 1
                continue
            if text[:1].isdigit():
                stats.prefixed += 1
            if isinstance(event, Unknown):
                stats.unknown[event.name] += 1
                continue
            stats.events[_EVENT_NAMES[type(event)]] += 1
            if isinstance(event, (DmaMap, DmaUnmap)):
                stats.fds.add(event.fd)
                if event.asid is None:
                    stats.without_asid += 1
                else:
                    stats.with_asid += 1
            yield event


_EVENT_NAMES: dict[type, str] = {
    DmaMap: "vhost_vdpa_dma_map",
    DmaUnmap: "vhost_vdpa_dma_unmap",
    RegionAdd: "vhost_vdpa_listener_region_add",
    RegionDel: "vhost_vdpa_listener_region_del",
    IovaRange: "vhost_vdpa_get_iova_range",
}


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying file, for the progress bar."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def open_trace(source: str | Path | None) -> tuple[Iterator[str], int, Callable[[], int], str]:
    """Open a trace (plain or gzip, told by its magic bytes; ``"-"`` is stdin; None is the
    embedded default).  Returns ``(lines, total_bytes, bytes_read, name)``.
    """
    if source is None:
        data = resources.files("iova_native").joinpath("data", DEFAULT_TRACE).read_bytes()
        raw: IO[bytes] = io.BytesIO(data)
        total, name = len(data), f"<embedded {DEFAULT_TRACE}>"
    elif str(source) == "-":
        raw, total, name = sys.stdin.buffer, 0, "<stdin>"
    else:
        path = Path(source)
        raw, total, name = open(path, "rb"), path.stat().st_size, str(path)  # noqa: SIM115
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 16)
    stream: Any = buffered
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=buffered)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    return iter(text), total, lambda: counter.count, name


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
            raise ValueError(f"{name}: header says {count} records, file holds "
                             f"{len(body) / (8 * FIELDS):g}")
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
        if lookups < 0:
            raise ValueError("lookups must be >= 0")
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
    """Parse and compile a trace file (None: the embedded default).

    ``progress(bytes_read, total_bytes)`` is called every few thousand lines.
    """
    start = time.perf_counter()
    lines, total, bytes_read, name = open_trace(source)
    stats = TraceStats()
    parser = TraceParser(stats, strict=strict, on_malformed=on_malformed)
    compiler = Compiler(stats, lookups=lookups)
    if progress is not None:
        lines = _reporting(lines, lambda: progress(bytes_read(), total))
    try:
        compiler.feed_all(parser.parse(lines))
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
    return CompiledTrace(compiler.ops, stats, name, time.perf_counter() - start)


def _reporting(lines: Iterator[str], tick: Callable[[], None], every: int = 4096) -> Iterator[str]:
    for count, line in enumerate(lines, 1):
        if count % every == 0:
            tick()
        yield line
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
