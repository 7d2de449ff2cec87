# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading QEMU's traces: every format QEMU's trace backends and tools write, told apart per file.

The first stage of the replay (:mod:`iova_native.trace` re-exports everything here).

Formats, by the key the report names them with (:data:`FORMATS`):

``log``
    The ``log`` trace backend (``-trace 'vhost_vdpa_*'``, ``-d trace:vhost_vdpa_*``): one line
    per event, ``NAME ARGS`` where ``ARGS`` is the event's printf format from ``trace-events``.
``log-pid``
    The same with the ``PID@SEC.USEC:`` prefix that the backend itself printed before QEMU 10.1
    when ``-msg timestamp=on`` was given (the id of the thread that traced, which is the PID
    for the main thread, then the wall clock).
``log-iso``
    QEMU 10.1 and later: with ``-msg timestamp=on`` every ``qemu_log`` line, trace lines included,
    starts with an ISO-8601 UTC timestamp and a space (``2025-11-30T10:15:42.100000Z NAME ARGS``).
``log-context``
    The message context that later QEMU prints before every ``qemu_log`` line
    (``util/message.c``): optional timestamp, ``[guest name]``, the program name and
    ``(TID:thread name)``, each of them optional (``qemu-system-x86_64: (772366:main): NAME
    ARGS``; the commit's message shows ``qemu-system-x86_64(772366:main):``, read too).
``syslog``
    The ``syslog`` backend: ``syslog(LOG_INFO, "NAME ARGS")`` as the journal or a syslog daemon
    prints it, after a stamp, the host and ``qemu-system-x86_64[PID]:`` (or without ``[PID]``).
``stap``
    ``qemu-trace-stap run`` (the ``dtrace`` backend under SystemTap, as Fedora and RHEL build
    QEMU): ``PID@NANOSECONDS NAME ARGS``, the same printf format with SystemTap's ``%p``
    (zero-padded hex).
``ftrace``
    The ``ftrace`` backend writes ``NAME ARGS`` to the kernel's ``trace_marker``; the kernel's
    trace buffer (``/sys/kernel/tracing/trace``, ``trace-cmd report``) shows it after
    ``TASK-PID [CPU] FLAGS SECONDS: tracing_mark_write:`` (``FLAGS`` and the fraction of
    ``SECONDS`` depend on the options and the trace clock); ``CPU:N [LOST M EVENTS]`` lines
    say the ring buffer lost events.
``simpletrace``
    The text that ``scripts/simpletrace.py trace-events-all FILE`` prints for a ``simple``
    backend file: ``NAME DELTA_US pid=PID arg=0xVALUE ...``, every argument named as in
    ``trace-events`` and printed in hex.
``simple``
    The ``simple`` backend's binary file itself (``trace-PID``), read directly: a header
    (``0xffffffffffffffff``, magic ``0xf2b177cb0aa429b4``, version 4), then records, each
    starting with a 64-bit type: 0 names an event id (``id``, 32-bit length, name), 1 is an
    event (``id``, timestamp in ns, 32-bit record length including this 24-byte header, 32-bit
    pid, then one 64-bit word per argument; a string argument is a 32-bit length and its
    bytes). Older versions (before the names were in the file) are refused with a line that
    says how to turn them into text.

A gzip-compressed file is read the same way (told by its magic bytes, not its name).

Three kinds of line:

* a **modelled event** (``vhost_vdpa_dma_map``, ``vhost_vdpa_dma_unmap``,
  ``vhost_vdpa_listener_region_add``, ``vhost_vdpa_listener_region_del``,
  ``vhost_vdpa_get_iova_range``), in the older format (``vdpa:%p``, no ``asid:``) or the newer
  ones (``asid:``, ``vdpa_shared:%p``); fields after the known ones are ignored;
* **another trace event** (its name is an identifier with a ``_``): counted by name, skipped;
* a line that is **not a trace event** (QEMU's warnings on the same stderr, ftrace's header
  and the kernel's own events, blank lines): counted, never fatal.

A modelled event that does not parse (a truncated line, a field missing, malformed or out of
range) is *malformed*: :class:`MalformedLine` names its line (or record) and what was expected.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, Union

from ._types import MAX_U64, Perm

__all__ = [
    "DEFAULT_TRACE",
    "FORMATS",
    "FORMATS_READ",
    "MAX_SHOWN_MALFORMED",
    "MODELLED_EVENTS",
    "DmaMap",
    "DmaUnmap",
    "Event",
    "IovaRange",
    "MalformedLine",
    "NotTrace",
    "RegionAdd",
    "RegionDel",
    "TraceInput",
    "TraceInputError",
    "TraceParser",
    "TraceStats",
    "Unknown",
    "open_trace",
    "parse_line",
]

#: The embedded default trace, inside the package (``iova_native/data``).
DEFAULT_TRACE = "default-trace.log.gz"

#: Every format read, by the key the report uses, and what it is.
FORMATS: dict[str, str] = {
    "log": "QEMU's log trace backend",
    "log-pid": "QEMU's log trace backend, PID@SEC.USEC: prefix (-msg timestamp=on, QEMU < 10.1)",
    "log-iso": "QEMU's log trace backend, ISO-8601 prefix (-msg timestamp=on, QEMU >= 10.1)",
    "log-context": "QEMU's log trace backend, program: (tid:thread): message context",
    "syslog": "QEMU's syslog trace backend, as syslog or journalctl print it",
    "stap": "qemu-trace-stap (SystemTap) output",
    "ftrace": "the ftrace backend's tracing_mark_write: lines",
    "simpletrace": "scripts/simpletrace.py output",
    "simple": "the simple trace backend's binary file",
}

#: One line naming what is read, for messages.
FORMATS_READ = (
    "formats read: QEMU's log trace backend (bare, after PID@SEC.USEC:, an ISO-8601 timestamp "
    "or the program: (tid:thread): context), its syslog backend, "
    "ftrace, simple (binary), qemu-trace-stap and simpletrace.py output, plain or gzip"
)

#: At most this many malformed lines are kept for the report (all are counted).
MAX_SHOWN_MALFORMED = 10


class TraceInputError(ValueError):
    """The input is not a trace this reader can use (binary data, an empty file, no modelled
    event, a damaged or too old ``simple`` file); the message is one line."""


class MalformedLine(ValueError):
    """A modelled event that cannot be used: ``lineno`` (1-based) and ``reason``.

    ``unit`` is ``"line"``, or ``"record"`` in a ``simple`` binary file.
    """

    def __init__(self, lineno: int, reason: str, text: str = "", unit: str = "line") -> None:
        self.lineno = lineno
        self.reason = reason
        self.text = text
        self.unit = unit
        self.fmt = ""  # the FORMATS key of the line, once known
        super().__init__(f"{unit} {lineno}: {reason}")


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


class Unknown(NamedTuple):
    """A line of a trace event the replay does not model."""

    lineno: int
    name: str
    dropped: int = 0  # the events QEMU says it dropped (simpletrace.py's Dropped_Event)


class NotTrace(NamedTuple):
    """A line that is not a trace event (a QEMU warning, an ftrace header, ...)."""

    lineno: int
    text: str
    lost: int = 0  # the events ftrace's ring buffer says it lost ("CPU:3 [LOST 45 EVENTS]")


Event = Union[DmaMap, DmaUnmap, RegionAdd, RegionDel, IovaRange]
Item = Union[DmaMap, DmaUnmap, RegionAdd, RegionDel, IovaRange, Unknown, NotTrace]

# --------------------------------------------------------------------------- event formats

_VALUE = {
    "ptr": r"(0x[0-9a-fA-F]+|\(nil\))",
    "hex": r"(0x[0-9a-fA-F]+)",
    "dec": r"(-?[0-9]+)",
}
_SHOWN = {"ptr": "0x<hex>", "hex": "0x<hex>", "dec": "<decimal>"}
#: What is left of a value when a line is cut right at its start.
_VALUE_STARTS = ("", "0", "0x", "(", "(nil", "-")


class _Field(NamedTuple):
    name: str  # the argument's name in trace-events (simpletrace.py prints it)
    label: str  # a regex; its plain form is shown in messages
    shown: str
    kind: str
    optional: bool = False


def _f(name: str, label: str, kind: str, optional: bool = False) -> _Field:
    """A field ``label value``: ``label`` literal text, any whitespace after a colon."""
    pattern = re.escape(label).replace(r"\ ", r"[ \t]+").replace(":", r":[ \t]*")
    return _Field(name, pattern, label.strip(), kind, optional)


# The printf formats of hw/virtio/trace-events, field by field, in every version since 7.0:
# "vdpa:%p" became "vdpa_shared:%p" and "asid: %u" came in before "iova:"; the owner may also
# be printed "vdpa: %p".
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

#: The events the replay models.
MODELLED_EVENTS = tuple(_FORMATS)
#: Arguments that are C ``int`` (the simple backend stores them sign-extended).
_SIGNED = {"fd"}


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
        cut_in_label = (spec.shown + " ").startswith(rest.strip())
        if cut_after_label or cut_in_label:
            return MalformedLine(lineno, f"{name}: truncated, {want} is missing")
        return MalformedLine(lineno, f"{name}: expected {want} at {_excerpt(rest)}")
    return MalformedLine(lineno, f"{name}: malformed arguments {_excerpt(args)}")


def _printf_values(name: str, groups: tuple[str | None, ...], lineno: int) -> dict[str, int | None]:
    """The matched printf fields of a modelled event as integers (``(nil)`` is 0)."""
    values: dict[str, int | None] = {}
    for spec, text in zip(_FORMATS[name], groups):
        if text is None:
            values[spec.name] = None
            continue
        value = 0 if text == "(nil)" else int(text, 10 if spec.kind == "dec" else 16)
        if spec.name not in _SIGNED and not 0 <= value <= MAX_U64:
            raise MalformedLine(lineno, f"{name}: {spec.name} {text} does not fit in 64 bits")
        values[spec.name] = value
    return values


def _check_span(lineno: int, name: str, what: str, start: int, nbytes: int) -> None:
    if start + nbytes - 1 > MAX_U64:
        raise MalformedLine(
            lineno, f"{name}: {what} {start:#x} + size {nbytes:#x} wraps past 2**64-1"
        )


def _build(name: str, values: dict[str, int | None], lineno: int) -> Event:
    """Check the values of a modelled event and make the event (every format ends here)."""

    def num(key: str) -> int:
        value = values[key]
        assert value is not None
        return value

    if name in ("vhost_vdpa_dma_map", "vhost_vdpa_dma_unmap"):
        asid = values.get("asid")
        fd, iova, size = num("fd"), num("iova"), num("size")
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
    return RegionAdd(lineno, gpa, llend, num("vaddr"), num("readonly") != 0)


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


_KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_HEX = re.compile(r"0x[0-9a-fA-F]+")


def _simpletrace_event(name: str, args: str, lineno: int) -> Event:
    """A modelled event as scripts/simpletrace.py prints it: ``arg=0xVALUE`` per argument."""
    given = dict(_KV.findall(args))
    values: dict[str, int | None] = {}
    fields = _FORMATS[name]
    for index, spec in enumerate(fields):
        text = given.get(spec.name)
        if text is None:
            if spec.optional:
                values[spec.name] = None
                continue
            later = any(f.name in given for f in fields[index + 1:])
            what = "is missing" if later else "is missing (truncated line)"
            raise MalformedLine(lineno, f"{name}: '{spec.name}=0x<hex>' {what}")
        if not _HEX.fullmatch(text):
            raise MalformedLine(lineno, f"{name}: expected '{spec.name}=0x<hex>' at "
                                f"{_excerpt(spec.name + '=' + text)}")
        value = int(text, 16)
        if value > MAX_U64:
            raise MalformedLine(lineno, f"{name}: {spec.name} {text} does not fit in 64 bits")
        values[spec.name] = _signed64(value) if spec.name in _SIGNED else value
    return _build(name, values, lineno)


# --------------------------------------------------------------------------- line prefixes

_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:[ \t]+|$)")
_LOG_PID = re.compile(r"\d+@\d+\.\d+:[ \t]*")
_STAP = re.compile(r"\d+@\d+[ \t]+")
_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d(?::?\d\d)?)?"
# QEMU's message context (util/message.c): [timestamp ][[workload] ][program: ][(tid:thread): ],
# each part optional (-msg timestamp=, guest-name=, program-name=, thread-info=).  The commit
# that added the thread shows it as "program(tid:thread): ", so that is read too.  Without the
# thread part only a name that says "qemu" counts as a program, so "foo_bar: x" stays a line.
# QEMU's master of mid-2025 printed "timestamp (tid) " instead.
_PROGRAM = r"[^\s:()\[\]]+"
_THREAD = r"\(\d+:[^)\n]*\):[ \t]+"
_CONTEXT = re.compile(
    rf"(?P<iso>{_ISO}[ \t]+(?:\(\d+\)[ \t]+)?)?(?P<guest>\[[^\]\n]*\][ \t]+)?"
    rf"(?P<prog>{_PROGRAM}{_THREAD}|{_PROGRAM}:[ \t]+{_THREAD}|{_THREAD}"
    r"|[^\s:()\[\]]*qemu[^\s:()\[\]]*:[ \t]+)?"
)
# The syslog backend's lines as syslog daemons and journalctl print them: a stamp (RFC 3164's
# "Dec  1 10:15:42", with microseconds from journalctl -o short-precise, or ISO-8601), the host,
# then the ident: the program's name (QEMU calls no openlog()), with [pid] from journald.
# Another program's lines there ("systemd[1]: Started ...") are lines, not trace events; an ident
# without [pid] must say "qemu", so that "vdpa: 0x1" in a log-iso line is no ident.
_SYSLOG = re.compile(
    rf"(?:[A-Z][a-z][a-z][ \t]+\d\d?[ \t]+\d\d:\d\d:\d\d(?:\.\d+)?|{_ISO})[ \t]+\S+[ \t]+"
    r"(?P<ident>[^\s:\[\]]+)(?P<pid>\[\d+\])?:[ \t]+"
)
_FTRACE = re.compile(
    # The stamp has no fraction with the counter, x86-tsc or perf trace clocks.
    r"[ \t]*\S.*?\[\d+\][ \t].*?\d+(?:\.\d+)?:[ \t]+(?:\w+:[ \t]+)?tracing_mark_write:"
)
_FTRACE_MARK = "tracing_mark_write:"
# How far into a line the mark may be: ftrace's columns before it (task-pid, tgid, CPU, flags,
# time, trace-cmd's "print:") take about 100 characters.
_FTRACE_COLUMNS = 256
# Where ftrace's ring buffer overflowed, trace_pipe says how many events it lost.
_FTRACE_LOST = re.compile(r"CPU:\d+ \[LOST (\d+) EVENTS?\]")
# simpletrace.py prints the simple file's dropped record as Dropped_Event(num_events_dropped).
_DROPPED_COUNT = re.compile(r"(?:^|[ \t])num_events_dropped=0x([0-9a-fA-F]+)")
# What scripts/simpletrace.py prints after the name: the delta in microseconds with three
# decimals, then (since the pid went into the file) "pid=N".
_SIMPLETRACE = re.compile(r"(-?\d+\.\d{3})(?:[ \t]+pid=\d+)?(?=[ \t]|$)")


def _prefix(text: str) -> tuple[str, int]:
    """The format a line's prefix tells, and where the event name starts."""
    mark = text.find(_FTRACE_MARK, 0, _FTRACE_COLUMNS + len(_FTRACE_MARK))
    if mark >= 0:
        # Matched up to the mark only: on a long line the lazy columns would backtrack.
        match = _FTRACE.match(text, 0, mark + len(_FTRACE_MARK))
        if match:
            end = match.end()
            while text[end:end + 1] in (" ", "\t"):
                end += 1
            return "ftrace", end
    if text[:1].isdigit() or text[:1].isupper():
        match = _SYSLOG.match(text)
        if match and (match.group("pid") or "qemu" in match.group("ident")):
            return "syslog", match.end()
    if text[:1].isdigit():
        match = _LOG_PID.match(text)
        if match:
            return "log-pid", match.end()
        match = _STAP.match(text)
        if match:
            return "stap", match.end()
    match = _CONTEXT.match(text)
    if match is not None and match.end():
        return ("log-iso" if match.group("iso") else "log-context"), match.end()
    return "log", 0


def _classify(text: str, lineno: int) -> tuple[str, Item | None]:
    """One line: its format and what it is (None for a blank line).

    Raises :class:`MalformedLine` for a modelled event that does not parse.
    """
    text = text.rstrip("\r\n")
    if not text.strip():
        return "", None
    if text.startswith("CPU:"):
        lost = _FTRACE_LOST.match(text)
        if lost:
            return "ftrace", NotTrace(lineno, text, int(lost.group(1)))
    fmt, pos = _prefix(text)
    name_match = _NAME.match(text, pos)
    if not name_match:
        return fmt, NotTrace(lineno, text)
    name = name_match.group(1)
    args = text[name_match.end():]
    simple = fmt == "log" and _SIMPLETRACE.match(args)
    if simple:
        fmt = "simpletrace"
    if name in _FORMATS:
        try:
            if simple:
                return fmt, _simpletrace_event(name, args[simple.end():], lineno)
            match = _WHOLE[name].match(args)
            if not match:
                raise _diagnose(name, args, lineno)
            return fmt, _build(name, _printf_values(name, match.groups(), lineno), lineno)
        except MalformedLine as exc:
            exc.fmt = fmt
            raise
    if ("_" in name and not args.strip()
            and any(known.startswith(name) for known in _FORMATS)):
        raise MalformedLine(lineno, f"truncated event name {name!r}", text)
    if simple and name == "Dropped_Event":
        count = _DROPPED_COUNT.search(args)
        return fmt, Unknown(lineno, name, int(count.group(1), 16) if count else 0)
    if "_" in name or (simple and name == "dropped"):  # QEMU's names are subsystem_event
        return fmt, Unknown(lineno, name)
    return fmt, NotTrace(lineno, text)


def parse_line(text: str, lineno: int = 0) -> Event | Unknown | NotTrace | None:
    """Parse one text line of any text format: a modelled event, an :class:`Unknown` event, a
    :class:`NotTrace` line, or None for a blank line.

    Raises :class:`MalformedLine` for a modelled event that does not parse.
    """
    return _classify(text, lineno)[1]


# --------------------------------------------------------------------------- the simple backend

_SIMPLE_HEADER_ID = MAX_U64
_SIMPLE_MAGIC = 0xF2B177CB0AA429B4
_SIMPLE_DROPPED_ID = MAX_U64 - 1
_SIMPLE_VERSION = 4
_SIMPLE_RECORD_HEADER = 24  # event id, timestamp, length, pid
#: How many 64-bit arguments each modelled event has in a simple record (asid is optional).
_ARITY = {
    name: {len(fields), len([f for f in fields if not f.optional])}
    for name, fields in _FORMATS.items()
}


def _simple_order(head: bytes) -> str | None:
    """``'<'`` or ``'>'`` when ``head`` starts a simple backend file, else None."""
    for order in "<>":
        if len(head) >= 16 and struct.unpack(order + "QQ", head[:16]) == (
                _SIMPLE_HEADER_ID, _SIMPLE_MAGIC):
            return order
    return None


def _simple_items(stream: IO[bytes], name: str,
                  stats: TraceStats) -> Iterator[Item | MalformedLine]:
    """The records of a simple backend file: events, other events, or malformed records."""
    header = stream.read(24)
    order = _simple_order(header) or "<"
    if len(header) < 24:
        raise TraceInputError(f"{name}: a simple trace backend file cut short inside its "
                              "24-byte header")
    _id, _magic, version = struct.unpack(order + "QQQ", header)
    if version != _SIMPLE_VERSION:
        raise TraceInputError(
            f"{name}: a simple trace backend file of version {version}, which names no events; "
            "turn it into text with QEMU's scripts/simpletrace.py trace-events-all "
            f"{name} > trace.txt, and replay that")
    q, qi, qqii = struct.Struct(order + "Q"), struct.Struct(order + "QI"), \
        struct.Struct(order + "QQII")
    names: dict[int, str] = {_SIMPLE_DROPPED_ID: "dropped"}
    read = stream.read
    offset = len(header)
    number = 0
    while True:
        word = read(8)
        if not word:
            return
        number += 1
        at = offset
        if len(word) < 8:
            yield NotTrace(number, f"{len(word)} bytes at the end")
            return
        (kind,) = q.unpack(word)
        if kind == 0:
            head = read(12)
            if len(head) < 12:
                yield NotTrace(number, "an event name cut short at the end")
                return
            event_id, length = qi.unpack(head)
            raw = read(length)
            names[event_id] = raw.decode("utf-8", "replace")
            offset += 8 + 12 + length
            continue
        if kind != 1:
            raise TraceInputError(
                f"{name}: record {number} at byte {at}: type {kind} is neither 0 (event name) "
                "nor 1 (event); the file is damaged")
        head = read(_SIMPLE_RECORD_HEADER)
        if len(head) < _SIMPLE_RECORD_HEADER:
            yield NotTrace(number, "a record header cut short at the end")
            return
        event_id, _ns, length, _pid = qqii.unpack(head)
        if length < _SIMPLE_RECORD_HEADER:
            raise TraceInputError(f"{name}: record {number} at byte {at}: length {length} is "
                                  "shorter than its header; the file is damaged")
        body = read(length - _SIMPLE_RECORD_HEADER)
        offset += 8 + length
        event = names.get(event_id, f"event id {event_id}")
        cut = len(body) < length - _SIMPLE_RECORD_HEADER
        if event == "dropped" and len(body) >= 8:
            stats.dropped += q.unpack(body[:8])[0]
        if event not in _FORMATS:
            yield Unknown(number, event) if not cut else NotTrace(number, "cut short")
            if cut:
                return
            continue
        if cut or len(body) % 8:
            yield MalformedLine(number, f"{event}: truncated, the file ends inside the record "
                                f"at byte {at}", unit="record")
            return
        args = struct.unpack(f"{order}{len(body) // 8}Q", body)
        fields = _FORMATS[event]
        if len(args) not in _ARITY[event]:
            want = " or ".join(str(n) for n in sorted(_ARITY[event]))
            yield MalformedLine(number, f"{event}: {len(args)} arguments, expected {want} "
                                f"(record at byte {at})", unit="record")
            continue
        present = fields if len(args) == len(fields) else [f for f in fields if not f.optional]
        values: dict[str, int | None] = {f.name: None for f in fields}
        for spec, value in zip(present, args):
            values[spec.name] = _signed64(value) if spec.name in _SIGNED else value
        try:
            yield _build(event, values, number)
        except MalformedLine as exc:
            exc.unit = "record"
            exc.args = (f"record {number}: {exc.reason}",)
            yield exc


# --------------------------------------------------------------------------- parsing a trace


def _count(n: int, word: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class TraceStats:
    """What the parser and the compiler saw."""

    lines: int = 0  # lines, or records of a simple binary file
    unit: str = "line"
    blank: int = 0
    events: Counter[str] = field(default_factory=Counter)  # modelled, by name
    unknown: Counter[str] = field(default_factory=Counter)  # other trace events, by name
    not_trace: int = 0  # lines that are not trace events
    not_trace_shown: list[NotTrace] = field(default_factory=list)  # the first few
    malformed: int = 0
    malformed_shown: list[MalformedLine] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)  # trace lines by FORMATS key
    dropped: int = 0  # events the simple backend says it lost (its buffer was full)
    lost: int = 0  # events ftrace's ring buffer says it lost
    with_asid: int = 0  # dma_map/unmap lines in the newer format
    without_asid: int = 0  # ... in the older one
    fds: set[int] = field(default_factory=set)
    mode: str = "unknown"  # "svq" or "passthrough", decided at the first dma_map
    guest_maps: int = 0  # dma_map attributed to a region_add (id = GPA)
    host_maps: int = 0  # dma_map of host-only buffers (id 0)
    region_del_unmapped: int = 0  # region_del of a section that no dma_map mapped
    region_del_empty: int = 0  # region_del with llend <= iova (QEMU traces it, then returns)

    @property
    def modelled(self) -> int:
        """How many modelled events were read."""
        return sum(self.events.values())

    @property
    def format(self) -> str:
        """The FORMATS key of most trace lines ("" when there were none)."""
        return self.formats.most_common(1)[0][0] if self.formats else ""

    def nothing_modelled(self, name: str) -> str:
        """The one-line message for a trace without any modelled event."""
        seen = []
        if self.unknown:
            top = ", ".join(f"{k} {n}" for k, n in self.unknown.most_common(2))
            more = ", ..." if len(self.unknown) > 2 else ""
            seen.append(f"{_count(sum(self.unknown.values()), 'other trace event')} "
                        f"({top}{more})")
        if self.not_trace:
            first = self.not_trace_shown[0]
            seen.append(f"{_count(self.not_trace, 'non-trace ' + self.unit)} (first: "
                        f"{self.unit} {first.lineno}, {_excerpt(first.text, 32)})")
        if self.malformed:
            seen.append(f"{self.malformed} malformed")
        return (f"{name}: no vhost-vDPA event (vhost_vdpa_dma_map/_unmap, "
                f"_listener_region_add/_del, _get_iova_range) among {_count(self.lines, self.unit)}"
                f"{': ' if seen else ''}{', '.join(seen)}; {FORMATS_READ}")


class TraceParser:
    """Parse a whole trace: yield modelled events, count the rest.

    With ``strict``, the first malformed modelled event raises :class:`MalformedLine`;
    otherwise it is counted, kept for the report (the first :data:`MAX_SHOWN_MALFORMED`),
    passed to ``on_malformed`` if given, and skipped.  Lines that are not trace events are
    counted and never fatal.
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

    def _malformed(self, exc: MalformedLine) -> None:
        if self.strict:
            raise exc
        stats = self.stats
        stats.malformed += 1
        if len(stats.malformed_shown) < MAX_SHOWN_MALFORMED:
            stats.malformed_shown.append(exc)
        if self.on_malformed is not None:
            self.on_malformed(exc)

    def _count(self, fmt: str, item: Item | None) -> Event | None:
        stats = self.stats
        if item is None:
            stats.blank += 1
            return None
        if isinstance(item, NotTrace):
            stats.not_trace += 1
            stats.lost += item.lost
            if len(stats.not_trace_shown) < 3:
                stats.not_trace_shown.append(item)
            return None
        stats.formats[fmt] += 1
        if isinstance(item, Unknown):
            stats.unknown[item.name] += 1
            stats.dropped += item.dropped
            return None
        stats.events[_EVENT_NAMES[type(item)]] += 1
        if isinstance(item, (DmaMap, DmaUnmap)):
            stats.fds.add(item.fd)
            if item.asid is None:
                stats.without_asid += 1
            else:
                stats.with_asid += 1
        return item

    def parse(self, lines: Iterable[str]) -> Iterator[Event]:
        """The modelled events of text ``lines``, in order."""
        stats = self.stats
        for lineno, text in enumerate(lines, start=stats.lines + 1):
            stats.lines = lineno
            try:
                fmt, item = _classify(text, lineno)
            except MalformedLine as exc:
                exc.text = text.rstrip("\r\n")
                stats.formats[exc.fmt or _prefix(exc.text)[0]] += 1
                self._malformed(exc)
                continue
            event = self._count(fmt, item)
            if event is not None:
                yield event

    def parse_simple(self, stream: IO[bytes], name: str = "trace") -> Iterator[Event]:
        """The modelled events of a simple backend binary file, in order."""
        stats = self.stats
        stats.unit = "record"
        for item in _simple_items(stream, name, stats):
            stats.lines = item.lineno
            if isinstance(item, MalformedLine):
                stats.formats["simple"] += 1
                self._malformed(item)
                continue
            event = self._count("simple", item)
            if event is not None:
                yield event


_EVENT_NAMES: dict[type, str] = {
    DmaMap: "vhost_vdpa_dma_map",
    DmaUnmap: "vhost_vdpa_dma_unmap",
    RegionAdd: "vhost_vdpa_listener_region_add",
    RegionDel: "vhost_vdpa_listener_region_del",
    IovaRange: "vhost_vdpa_get_iova_range",
}

# --------------------------------------------------------------------------- opening a trace

#: How much of a file is looked at to tell its format.
_SNIFF = 1 << 16


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying file, for the progress bar."""

    def __init__(self, raw: _Reader) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


class _Replayed(io.RawIOBase):
    """``head`` (already read to look at it), then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: _Reader) -> None:
        self.head = memoryview(head)
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_head(raw: _Reader) -> bytes:
    """Up to _SNIFF bytes (a pipe may hand them out in pieces)."""
    parts, size = [], 0
    while size < _SNIFF:
        data = raw.read(_SNIFF - size)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


_CONTROL = bytes(b for b in range(0x20) if b not in b"\t\n\r\x0b\x0c\x1b")


#: Compressors other than gzip, by their magic.
_COMPRESSED = [(b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd")]


def _binary_kind(head: bytes) -> str:
    """What binary data ``head`` is ("" for text)."""
    if head[:4] == b"\x7fELF":
        return "an ELF executable"
    if head[:8] == b"IOVAOPS\x00":
        return "an op stream (iova-native convert wrote it; give it as a file, not on stdin)"
    for magic, tool in _COMPRESSED:
        if head.startswith(magic):
            return (f"{tool}-compressed data (only gzip is undone here: "
                    f"{tool} -dc FILE | iova-native replay -)")
    if b"\x00" in head:
        return "binary data"
    odd = len(head) - len(head.translate(None, _CONTROL))
    odd += head.decode("utf-8", "replace").count("\ufffd")
    return "binary data" if odd * 100 > len(head) else ""


@dataclass
class TraceInput:
    """An opened trace: ``kind`` ``"text"`` or ``"simple"``, its (decompressed) ``stream``."""

    name: str
    kind: str
    stream: IO[bytes]
    total: int  # bytes of the file (0: unknown, stdin)
    bytes_read: Callable[[], int]  # of the file, for a progress bar
    compressed: bool = False
    _files: list[Any] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        """The text lines (``kind == "text"``)."""
        text = io.TextIOWrapper(self.stream, encoding="utf-8", errors="replace", newline="")
        self._files.append(text)
        return iter(text)

    def close(self) -> None:
        """Close the file (not stdin)."""
        for f in reversed(self._files):
            f.close()


def open_trace(source: str | Path | None) -> TraceInput:
    """Open a trace and tell its format: ``"-"`` is stdin, None the embedded default trace.

    Raises :class:`TraceInputError` (one line) for an empty file or binary data that is not a
    ``simple`` backend file, ``OSError`` when the file cannot be read.
    """
    files: list[Any] = []
    if source is None:
        data = resources.files("iova_native").joinpath("data", DEFAULT_TRACE).read_bytes()
        raw: IO[bytes] = io.BytesIO(data)
        total, name = len(data), f"<embedded {DEFAULT_TRACE}>"
    elif str(source) == "-":
        raw, total, name = sys.stdin.buffer, 0, "<stdin>"
    else:
        path = Path(source)
        raw = open(path, "rb")  # noqa: SIM115
        files.append(raw)
        total, name = path.stat().st_size, str(path)
    counter = _CountingReader(raw)
    try:
        head = _read_head(counter)
        stream: IO[bytes] = io.BufferedReader(_Replayed(head, counter), buffer_size=1 << 16)
        compressed = head[:2] == b"\x1f\x8b"
        if compressed:
            unpacked = gzip.GzipFile(fileobj=stream)
            head = _read_head(unpacked)
            stream = io.BufferedReader(_Replayed(head, unpacked), buffer_size=1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        for f in files:
            f.close()
        raise TraceInputError(f"{name}: cannot read it as gzip ({exc})") from None
    files.append(stream)
    unit = "after gunzip" if compressed else ""
    if not head:
        for f in files:
            f.close()
        raise TraceInputError(f"{name}: empty{' ' + unit if unit else ''}, not a QEMU trace; "
                              f"{FORMATS_READ}")
    kind = "simple" if _simple_order(head) else "text"
    binary = "" if kind == "simple" else _binary_kind(head)
    if binary:
        for f in files:
            f.close()
        raise TraceInputError(f"{name}: {binary}{' ' + unit if unit else ''}, not a QEMU trace; "
                              f"{FORMATS_READ}")
    return TraceInput(name, kind, stream, total, lambda: counter.count, compressed, files)
