# SPDX-License-Identifier: GPL-2.0-or-later
"""Every trace format QEMU writes, each replayed to the same trees as its ``log`` twin.

One small SVQ scenario (the device's IOVA range, guest RAM and a BIOS alias, vrings, a
control-queue buffer in the older event format, unmaps, other events) is rendered here the way
each of QEMU's trace backends and tools prints it, from the events' printf formats (the ones
``hw/virtio/trace-events`` declares, in their three versions: ``vdpa:`` without ``asid:``,
``vdpa:`` with it, ``vdpa_shared:``) and from the record layout of ``trace/simple.c``.  The
renderings are also kept under ``tests/data/traces/`` as sample files; ``python
tests/test_trace_formats.py`` writes them again.

Then: bad inputs (``/bin/ls``, empty, random bytes, garbage text, other events only, an old
or damaged ``simple`` file) exit 2 with one line; ``--strict`` stops at a malformed event, not
at a QEMU warning; and the command's conventions (``--version``, help, ``python -m``).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iova_native import cli, reference, trace

DATA = Path(__file__).resolve().parent / "data" / "traces"
ROOT = Path(__file__).resolve().parent.parent
TID, PID = 48213, 48190
START_NS = 1764497742_100000_000  # 2025-11-30T10:15:42.1Z


# --------------------------------------------------------------------------- what QEMU prints

class Definition(NamedTuple):
    """A trace event as trace-events declares it: argument names, which are strings, format."""

    args: tuple[str, ...]
    fmt: str
    strings: frozenset[str] = frozenset()


def _d(args: str, fmt: str, strings: str = "") -> Definition:
    return Definition(tuple(args.split()), fmt, frozenset(strings.split()))


_MAP_ARGS = "vdpa fd msg_type asid iova size uaddr perm type"
_MAP_FMT = ("fd: %d msg_type: %u asid: %u iova: 0x%lx size: 0x%lx uaddr: 0x%lx perm: 0x%x "
            "type: %u")
_UNMAP_ARGS = "vdpa fd msg_type asid iova size type"
_UNMAP_FMT = "fd: %d msg_type: %u asid: %u iova: 0x%lx size: 0x%lx type: %u"
_OLD = lambda fmt: fmt.replace(" asid: %u", "")  # noqa: E731

#: (event, version) -> definition.  Versions: "shared" (vdpa_shared:, asid:), "asid" (vdpa:,
#: asid:), "old" (vdpa:, no asid:); the listener and device events never changed.
DEFINITIONS: dict[tuple[str, str], Definition] = {
    ("vhost_vdpa_dma_map", "shared"): _d(_MAP_ARGS, "vdpa_shared:%p " + _MAP_FMT),
    ("vhost_vdpa_dma_map", "asid"): _d(_MAP_ARGS, "vdpa:%p " + _MAP_FMT),
    ("vhost_vdpa_dma_map", "old"): _d(_MAP_ARGS.replace(" asid", ""), "vdpa:%p " + _OLD(_MAP_FMT)),
    ("vhost_vdpa_dma_unmap", "shared"): _d(_UNMAP_ARGS, "vdpa_shared:%p " + _UNMAP_FMT),
    ("vhost_vdpa_dma_unmap", "asid"): _d(_UNMAP_ARGS, "vdpa:%p " + _UNMAP_FMT),
    ("vhost_vdpa_dma_unmap", "old"): _d(_UNMAP_ARGS.replace(" asid", ""),
                                        "vdpa:%p " + _OLD(_UNMAP_FMT)),
    ("vhost_vdpa_listener_region_add", ""): _d(
        "vdpa iova llend vaddr readonly",
        "vdpa: %p iova 0x%lx llend 0x%lx vaddr: %p read-only: %d"),
    ("vhost_vdpa_listener_region_del", ""): _d("vdpa iova llend",
                                               "vdpa: %p iova 0x%lx llend 0x%lx"),
    ("vhost_vdpa_get_iova_range", ""): _d("dev first last", "dev: %p first: 0x%lx last: 0x%lx"),
    ("vhost_vdpa_set_vring_num", ""): _d("dev index num", "dev: %p index: %u num: %u"),
    ("vhost_vdpa_listener_begin_batch", ""): _d("v fd msg_type type",
                                                "vdpa_shared:%p fd: %d msg_type: %u type: %u"),
    ("vhost_vdpa_dump_config", ""): _d("dev line", "dev: %p %s", "line"),
}

SHARED, VDPA, DEV = 0x55D4C2A1B3E0, 0x55D4C2A1C7A0, 0x55D4C2A0F010
RAM, BIOS, RING = 0x7F1C00000000, 0x7F1A3C220000, 0x7F0000010000


class Ev(NamedTuple):
    name: str
    version: str
    values: dict[str, Any]
    thread: str = "main"


def _map(version: str, iova: int, size: int, uaddr: int, perm: int, asid: int = 0) -> Ev:
    owner = SHARED if version == "shared" else VDPA
    values = dict(vdpa=owner, fd=23, msg_type=2, asid=asid, iova=iova, size=size, uaddr=uaddr,
                  perm=perm, type=2)
    return Ev("vhost_vdpa_dma_map", version, values, "CPU 0/KVM")


def _unmap(version: str, iova: int, size: int, asid: int = 0) -> Ev:
    owner = SHARED if version == "shared" else VDPA
    values = dict(vdpa=owner, fd=23, msg_type=2, asid=asid, iova=iova, size=size, type=3)
    return Ev("vhost_vdpa_dma_unmap", version, values)


#: The scenario: (event, or a QEMU warning as a str).  IOVAs are those a first-fit allocator
#: from 0x1000 hands out, as QEMU's does, so the replay lands where the trace says.
SCENARIO: list[Ev | str] = [
    Ev("vhost_vdpa_get_iova_range", "", dict(dev=DEV, first=0, last=0xFFFFFFFFFFFF)),
    Ev("vhost_vdpa_set_vring_num", "", dict(dev=DEV, index=0, num=256)),
    Ev("vhost_vdpa_dump_config", "", dict(dev=DEV, line="0x0000: 52 54 00 12 34 56")),
    "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pcid",
    Ev("vhost_vdpa_listener_begin_batch", "", dict(v=SHARED, fd=23, msg_type=2, type=5)),
    Ev("vhost_vdpa_listener_region_add", "", dict(vdpa=VDPA, iova=0, llend=0x80000000,
                                                  vaddr=RAM, readonly=0)),
    _map("shared", 0x1000, 0x80000000, RAM, 3),
    Ev("vhost_vdpa_listener_region_add", "", dict(vdpa=VDPA, iova=0xE0000, llend=0x100000,
                                                  vaddr=BIOS, readonly=1)),
    _map("shared", 0x80001000, 0x20000, BIOS, 1),
    _map("asid", 0x80021000, 0x2000, RING, 1),
    _map("asid", 0x80023000, 0x1000, RING + 0x4000, 3),
    _map("old", 0x80024000, 0x1000, RING + 0x8000, 1),
    "qemu-system-x86_64: vhost_vdpa_net_cvq_add: 1 descriptor in flight",
    _unmap("old", 0x80024000, 0x1000),
    Ev("vhost_vdpa_listener_region_del", "", dict(vdpa=VDPA, iova=0xE0000, llend=0x100000)),
    _unmap("shared", 0x80001000, 0x20000),
    _unmap("asid", 0x80021000, 0x2000, asid=1),
    Ev("vhost_vdpa_set_vring_num", "", dict(dev=DEV, index=1, num=256)),
]

_CONVERSION = re.compile(r"%(l*)([pdusx])")


def printf(fmt: str, definition: Definition, values: dict[str, Any], *, stap: bool = False) -> str:
    """The event's format applied as glibc's printf does (or SystemTap's, whose %p is 0x and
    16 zero-padded hex digits); the arguments in declaration order."""
    args = iter(definition.args)

    def one(match: re.Match[str]) -> str:
        value = values[next(args)]
        conv = match.group(2)
        if conv == "p":
            if stap:
                return f"0x{value:016x}"
            return f"{value:#x}" if value else "(nil)"
        if conv == "x":
            return f"{value:x}"
        return str(value)

    return _CONVERSION.sub(one, fmt)


def _line(ev: Ev, *, stap: bool = False) -> str:
    definition = DEFINITIONS[ev.name, ev.version]
    return f"{ev.name} {printf(definition.fmt, definition, ev.values, stap=stap)}"


def _clock(index: int) -> int:
    """A timestamp in ns: 1.5 ms per event, and a pause so that the fifth is on a whole
    second (which GLib prints without a fraction)."""
    return START_NS + index * 1_500_000 + (894_000_000 if index >= 4 else 0)


def _iso(ns: int) -> str:
    """As GLib's g_date_time_format_iso8601 prints UTC: fractions only when not zero."""
    when = datetime.datetime.fromtimestamp(ns // 1000 / 1e6, datetime.timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{when.microsecond:06d}" if when.microsecond else "") + "Z"


def _syslog_stamp(ns: int) -> str:
    """As journalctl prints a stamp: RFC 3164's month, day and time, in UTC."""
    return datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc).strftime(
        "%b %d %H:%M:%S")


def render_text(fmt: str) -> str:
    """The scenario in one text format (FORMATS key)."""
    out = []
    if fmt == "ftrace":
        out += ["# tracer: nop", "#",
                "#                                _-----=> irqs-off/BH-disabled",
                "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
                "#              | |         |   |||||     |         |"]
    last = None
    for index, ev in enumerate(SCENARIO):
        ns = _clock(index)
        if isinstance(ev, str):  # QEMU's own messages share stderr with the log backend
            if fmt in ("log", "log-pid"):
                out.append(ev)
            elif fmt == "log-iso":
                out.append(f"{_iso(ns)} {ev}")
            elif fmt == "log-context":
                out.append(ev.replace("qemu-system-x86_64:", f"qemu-system-x86_64: ({TID}:main):"))
            elif fmt == "ftrace":
                out.append(f"            bash-1021    [001] d..1.  {ns // 10**9 - 1764400000}."
                           f"{ns // 1000 % 10**6:06d}: sched_switch: prev_comm=bash prev_pid=1021")
            elif fmt == "syslog":  # QEMU's warnings go to stderr; the journal has others' lines
                out.append(f"{_syslog_stamp(ns)} myhost systemd[1]: Started libvirtd.service.")
            continue
        if fmt == "log":
            out.append(_line(ev))
        elif fmt == "log-pid":
            out.append(f"{TID}@{ns // 10**9}.{ns // 1000 % 10**6:06d}:{_line(ev)}")
        elif fmt == "log-iso":
            out.append(f"{_iso(ns)} {_line(ev)}")
        elif fmt == "log-context":
            # util/message.c prints "%s: " (the program), then "(%d:%s): " (the thread)
            out.append(f"qemu-system-x86_64: ({TID}:{ev.thread}): {_line(ev)}")
        elif fmt == "stap":
            out.append(f"{PID}@{ns} {_line(ev, stap=True)}")
        elif fmt == "syslog":  # syslog(LOG_INFO, ...) as journalctl shows it
            out.append(f"{_syslog_stamp(ns)} myhost qemu-system-x86_64[{PID}]: {_line(ev)}")
        elif fmt == "ftrace":
            uptime = ns // 10**9 - 1764400000
            out.append(f" qemu-system-x86-{TID:<7} [003] ..... {uptime}.{ns // 1000 % 10**6:06d}: "
                       f"tracing_mark_write: {_line(ev)}")
        elif fmt == "simpletrace":
            definition = DEFINITIONS[ev.name, ev.version]
            delta = 0 if last is None else ns - last
            last = ns
            fields = [ev.name, f"{delta / 1000.0:0.3f}", f"pid={PID}"]
            for arg in definition.args:
                value = ev.values[arg]
                if arg in definition.strings:
                    fields.append(f"{arg}={value.encode()!r}")
                else:
                    fields.append(f"{arg}=0x{value & (2**64 - 1):x}")
            out.append(" ".join(fields))
        else:
            raise ValueError(fmt)
    return "\n".join(out) + "\n"


def render_simple(*, version: int = 4, dropped: int = 0, order: str = "<") -> bytes:
    """The scenario as the simple backend writes it (trace/simple.c) on a host of byte
    ``order``."""
    pack = lambda fmt, *values: struct.pack(order + fmt, *values)  # noqa: E731
    out = bytearray(pack("QQQ", 2**64 - 1, 0xF2B177CB0AA429B4, version))
    ids: dict[str, int] = {}
    for name, _version in DEFINITIONS:
        if name not in ids:
            ids[name] = 100 + len(ids)
            out += pack("QQI", 0, ids[name], len(name)) + name.encode()
    for index, ev in enumerate(SCENARIO):
        if isinstance(ev, str):
            continue
        definition = DEFINITIONS[ev.name, ev.version]
        body = bytearray()
        for arg in definition.args:
            value = ev.values[arg]
            if arg in definition.strings:
                body += pack("I", len(value)) + value.encode()
            else:
                body += pack("Q", value & (2**64 - 1))
        out += pack("QQQII", 1, ids[ev.name], _clock(index), 24 + len(body), PID) + body
        if index == 8 and dropped:
            out += pack("QQQIIQ", 1, 2**64 - 2, _clock(index), 32, PID, dropped)
    return bytes(out)


TEXT_FORMATS = ["log", "log-pid", "log-iso", "log-context", "syslog", "stap", "ftrace",
                "simpletrace"]
FILES = {**{fmt: f"{fmt}.txt" for fmt in TEXT_FORMATS}, "simple": "simple.bin"}


def render(fmt: str) -> bytes:
    return render_simple() if fmt == "simple" else render_text(fmt).encode()


def write_samples() -> None:
    """Write tests/data/traces/ from the renderers."""
    DATA.mkdir(parents=True, exist_ok=True)
    for fmt, name in FILES.items():
        (DATA / name).write_bytes(render(fmt))


# --------------------------------------------------------------------------- every format replays

MODELLED = sum(1 for ev in SCENARIO if isinstance(ev, Ev) and ev.name in trace.MODELLED_EVENTS)


@pytest.fixture(scope="module")
def twin() -> trace.CompiledTrace:
    path = DATA / FILES["log"]
    return trace.compile_trace(path, strict=True)


def digests(compiled: trace.CompiledTrace) -> tuple[int, int]:
    result = trace.replay(compiled.ops, reference.IOVATree(), reference.GPATree())
    return result.state_digest, result.outcome_digest


@pytest.mark.parametrize("fmt", list(FILES))
def test_sample_files_are_what_the_renderers_write(fmt: str) -> None:
    assert (DATA / FILES[fmt]).read_bytes() == render(fmt), \
        "rerun python tests/test_trace_formats.py"


@pytest.mark.parametrize("fmt", list(FILES))
def test_each_format_replays_like_its_log_twin(fmt: str, twin: trace.CompiledTrace,
                                               tmp_path: Path) -> None:
    compiled = trace.compile_trace(DATA / FILES[fmt], strict=True)
    st = compiled.stats
    assert st.formats == {fmt: MODELLED + 4}  # the scenario's trace events, other ones too
    assert st.modelled == MODELLED and st.malformed == 0
    assert st.with_asid == 6 and st.without_asid == 2
    assert st.unknown == {"vhost_vdpa_set_vring_num": 2, "vhost_vdpa_dump_config": 1,
                          "vhost_vdpa_listener_begin_batch": 1}
    assert st.mode == "svq" and st.guest_maps == 2 and st.host_maps == 3
    assert compiled.ops.words == twin.ops.words
    assert digests(compiled) == digests(twin)
    packed = tmp_path / "t.gz"
    packed.write_bytes(gzip.compress(render(fmt)))
    assert trace.compile_trace(packed, strict=True).ops.words == twin.ops.words


@pytest.mark.parametrize("fmt", list(FILES))
def test_each_format_is_named_in_the_report(fmt: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--no-progress", "--backend", "reference",
                     str(DATA / FILES[fmt])]) == 0
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if line.startswith("format "))
    assert line.split()[1] == f"{fmt}:" and trace.FORMATS[fmt][:30] in line
    assert err == ""


def test_a_file_of_two_formats_names_both(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.txt"
    path.write_bytes(render("log") + render("simpletrace"))
    assert cli.main(["replay", "--no-progress", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format   log: QEMU's log trace backend; also 16 lines of simpletrace\n" in out


def test_warnings_are_counted_not_malformed(twin: trace.CompiledTrace) -> None:
    assert twin.stats.not_trace == 2 and twin.stats.malformed == 0
    ftrace = trace.compile_trace(DATA / FILES["ftrace"], strict=True).stats
    assert ftrace.not_trace == 5 + 2  # its header, and the kernel's own events


def test_the_simple_backend_records_dropped_events(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace-48190"
    path.write_bytes(render_simple(dropped=7))
    compiled = trace.compile_trace(path, strict=True)
    assert compiled.stats.dropped == 7 and compiled.stats.unit == "record"
    assert cli.main(["replay", "--no-progress", str(path)]) == 0
    assert "QEMU dropped 7 events" in capsys.readouterr().out


def test_a_simple_file_cut_short_is_one_malformed_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = render_simple()
    path = tmp_path / "trace-48190"
    # The last record is a set_vring_num (8 + 24 + 3 * 8 bytes); cut inside the unmap before it.
    path.write_bytes(data[:-(56 + 20)])
    compiled = trace.compile_trace(path)
    assert compiled.stats.malformed == 1
    assert "truncated" in compiled.stats.malformed_shown[0].reason
    assert cli.main(["replay", "--strict", "--no-progress", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"iova-native replay: error: {re.escape(str(path))}: record \d+: "
                        r"vhost_vdpa_dma_unmap: truncated, .*\(--strict\)\n", err), err


def test_big_endian_simple_files_are_read_too(twin: trace.CompiledTrace, tmp_path: Path) -> None:
    path = tmp_path / "trace-s390x"
    path.write_bytes(render_simple(order=">"))
    assert trace.compile_trace(path, strict=True).ops.words == twin.ops.words


# --------------------------------------------------------------------------- bad input


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    rng = random.Random(20)
    files = {
        "empty": b"",
        "random bytes": bytes(rng.randrange(256) for _ in range(4096)),
        "garbage text": b"this is not a trace\nneither is this\n" * 20,
        "gzip of garbage": gzip.compress(b"nothing here\n" * 100),
        "other events only": (render_text("log").replace("vhost_vdpa_d", "vhost_vdpa_x")
                              .replace("vhost_vdpa_l", "vhost_vdpa_y")
                              .replace("vhost_vdpa_get", "vhost_vdpa_got").encode()),
        "a binary holding a trace line": b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
        + render_text("log").encode() + b"\x00\x00",
        "text then NUL bytes": b"\x00" * 10 + render_text("log").encode(),
        "simple file of version 3": struct.pack("<QQQ", 2**64 - 1, 0xF2B177CB0AA429B4, 3)
        + b"\x00" * 64,
        "damaged simple file": render_simple()[:24] + struct.pack("<Q", 9) + b"\x00" * 64,
        "simple header cut short": render_simple()[:16],
    }
    paths = {}
    for index, (what, data) in enumerate(files.items()):
        paths[what] = tmp_path / f"bad{index}"
        paths[what].write_bytes(data)
    paths["/bin/ls"] = Path("/bin/ls") if Path("/bin/ls").exists() else Path(sys.executable)
    return paths


@pytest.mark.parametrize("command", ["replay", "convert"])
def test_every_bad_input_exits_2_with_one_line(tmp_path: Path, command: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out_file = ["-o", str(tmp_path / "ops")] if command == "convert" else []
    for what, path in bad_inputs(tmp_path).items():
        assert cli.main([command, "--no-progress", str(path), *out_file]) == 2, what
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (what, err)
        assert err.startswith(f"iova-native {command}: error: {path}: "), (what, err)
        if what.startswith(("simple", "damaged")):
            continue
        assert "formats read:" in err, (what, err)
    assert not (tmp_path / "ops").exists()


def test_bad_input_messages_say_what_was_seen(tmp_path: Path) -> None:
    paths = bad_inputs(tmp_path)

    def message(what: str) -> str:
        with pytest.raises(trace.TraceInputError) as info:
            trace.compile_trace(paths[what])
        return str(info.value)

    assert ": empty, not a QEMU trace" in message("empty")
    assert ": binary data, not a QEMU trace" in message("random bytes")
    assert ": an ELF executable, not a QEMU trace" in message("/bin/ls")
    assert ": an ELF executable, not" in message("a binary holding a trace line")
    assert "among 40 lines: 40 non-trace lines (first: line 1, 'this is not a trace')" in \
        message("garbage text")
    assert "among 100 lines" in message("gzip of garbage")
    assert "other trace events (vhost_vdpa_xma_map 5, vhost_vdpa_xma_unmap 3, ...)" in \
        message("other events only")
    assert "version 3" in message("simple file of version 3") and \
        "scripts/simpletrace.py" in message("simple file of version 3")
    assert "type 9 is neither 0 (event name) nor 1 (event)" in message("damaged simple file")
    assert "cut short inside its 24-byte header" in message("simple header cut short")


def test_bin_ls_through_the_installed_command(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "iova_native", "replay", "--no-progress",
                          str(bad_inputs(tmp_path)["/bin/ls"])],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


_PIECES = [_line(ev) for ev in SCENARIO if isinstance(ev, Ev)] + [
    "qemu-system-x86_64: warning: x", "# tracer: nop", "48213@1.2:", "2025-11-30T10:15:42Z ",
    "vhost_vdpa_dma_map ", "size: 0x", "pid=1 iova=0x", " tracing_mark_write: ", "\t", "\r",
]


@settings(max_examples=int(os.environ.get("IOVA_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=30).map(
        lambda parts: "\n".join(p[: len(p) // 2] if i % 3 else p for i, p in enumerate(parts))
        .encode()),
    st.binary(max_size=300).map(lambda tail: render_simple()[:24] + tail),
    st.integers(0, 1600).map(lambda cut: render_simple()[:cut]),
))
def test_any_input_reads_or_is_refused_in_one_line(data: bytes) -> None:
    """Whatever the bytes, the reader returns a trace or raises one of its two errors."""
    fd, name = tempfile.mkstemp()
    try:
        os.write(fd, data)
        os.close(fd)
        for strict in (False, True):
            try:
                trace.compile_trace(name, strict=strict)
            except (trace.TraceInputError, trace.MalformedLine) as exc:
                assert "\n" not in str(exc)
    finally:
        os.unlink(name)


# --------------------------------------------------------------------------- --strict


CAPTURE = "\n".join([
    _line(SCENARIO[0]),
    _line(SCENARIO[5]),  # region_add of RAM
    "qemu-system-x86_64: -netdev type=vhost-vdpa,x-svq=on: warning: SVQ is experimental",
    _line(SCENARIO[6]),
    "qemu-system-x86_64: terminating on signal 15 from pid 4242 (bash)",
    _line(SCENARIO[8]),
    _line(SCENARIO[9]).split(" size:")[0],  # QEMU killed in the middle of a line
    _line(SCENARIO[10]),
]) + "\n"


def test_strict_stops_at_the_malformed_event_not_at_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "capture.log"
    path.write_text(CAPTURE)
    assert cli.main(["replay", "--strict", "--no-progress", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"iova-native replay: error: {path}:7: vhost_vdpa_dma_map: truncated, "
                   "'size: 0x<hex>' is missing (--strict)\n")
    assert cli.main(["replay", "--no-progress", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == (f"iova-native: {path}:7: vhost_vdpa_dma_map: truncated, 'size: 0x<hex>' "
                   "is missing (skipped)\n")
    assert re.search(r"^skipped +0 lines of 0 other trace events; 2 non-trace lines; "
                     r"1 malformed$", out, re.M), out


# --------------------------------------------------------------------------- the command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"iova-native {cli.__version__}\n"


def test_a_bare_call_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: iova-native ")
    for command in ("replay", "convert", "demo"):
        assert re.search(rf"^ +{command} +\S", out, re.M), command
    assert "exit status:" in out


def test_python_dash_m() -> None:
    for argv in (["--version"], []):
        run = subprocess.run([sys.executable, "-m", "iova_native", *argv], capture_output=True,
                             text=True, check=False)
        assert run.returncode == 0 and run.stderr == ""
        assert run.stdout.startswith("iova-native " if argv else "usage: iova-native")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = cli._parser()
    found = {"iova-native": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


@pytest.mark.parametrize("name", list(_parsers()))
def test_help_is_plain_text_and_explains_every_option(name: str) -> None:
    parser = _parsers()[name]
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert parser.description, f"{name} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    assert max(map(len, text.splitlines())) <= 100


def test_plurals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.log"
    path.write_text(
        "vhost_vdpa_listener_region_add vdpa: 0x1 iova 0x100000 llend 0x200000 "
        "vaddr: 0x7f0000100000 read-only: 0\n"
        "vhost_vdpa_dma_map vdpa:0x1 fd: 3 msg_type: 2 iova: 0x100000 size: 0x100000 "
        "uaddr: 0x7f0000100000 perm: 0x3 type: 2\n"
        "vhost_vdpa_set_vring_num dev: 0x1 index: 0 num: 256\n"
        "qemu-system-x86_64: warning: one\n")
    assert cli.main(["replay", "--no-progress", "--lookups", "0", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 map inserted at the traced IOVA" in out
    assert "1 line of 1 other trace event (set_vring_num 1); 1 non-trace line;" in out
    assert "0 map operations failed" in out
    assert re.search(r"\b1 (maps|lines|ops|events)\b", out) is None, out


def test_negative_lookups_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["replay", "--lookups", "-1"])
    assert info.value.code == 2
    assert "argument --lookups: must be 0 or more, not -1" in capsys.readouterr().err



# ----------------------------------------------------------------- prefixes as QEMU prints them

#: The message context of later QEMU (util/message.c, qmessage_context_print): "[time ]"
#: "[[workload] ]" "program: " "(tid:thread name): ", each optional (-msg program-name=off,
#: thread-info=off); the code prints "program: (tid:thread): ", which its commit message shows as
#: "program(tid:thread): ".  And the ISO timestamp with "(tid) " that QEMU's master printed for a
#: while in 2025.
CONTEXT_PREFIXES = [
    "qemu-system-x86_64: ",
    "qemu-system-x86_64(48213:main): ",
    "qemu-system-x86_64: (48213:main): ",
    "qemu-system-x86_64: (48215:CPU 0/KVM): ",
    "qemu-kvm: (48213:main): ",
    "(48213:main): ",
    "[fish food] qemu-system-x86_64: (48213:main): ",
    "2026-01-08T12:05:21.123456Z qemu-system-x86_64: (48213:main): ",
    "2026-01-08T12:05:21Z [fish food] qemu-system-x86_64: (48213:main): ",
    "2025-06-26T19:55:14.366177Z (48213) ",
]


def _with_prefix(prefix: str) -> str:
    """The log twin with every line (QEMU's warnings too) after ``prefix``."""
    out = []
    for line in render_text("log").splitlines():
        out.append(prefix + line.removeprefix("qemu-system-x86_64: "))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("prefix", CONTEXT_PREFIXES)
def test_the_message_context_qemu_prints_is_read(prefix: str, twin: trace.CompiledTrace,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "context.log"
    path.write_text(_with_prefix(prefix))
    compiled = trace.compile_trace(path, strict=True)
    st = compiled.stats
    assert st.modelled == MODELLED and st.malformed == 0 and st.not_trace == 2
    assert set(st.formats) == {"log-iso" if prefix[:1].isdigit() else "log-context"}
    assert digests(compiled) == digests(twin)


def test_qemu_errors_naming_a_modelled_event_are_not_trace_lines(
        twin: trace.CompiledTrace, tmp_path: Path) -> None:
    # vhost-vdpa.c's error_report()s after a failed ioctl, as -msg and the context print them.
    errors = [
        "qemu-system-x86_64: vhost_vdpa_dma_map(0x55d4c2a1b3e0, 0x1000, 0x1000, "
        "0x7f1c00000000) = -14 (Bad address)",
        "qemu-system-x86_64: (48213:main): vhost_vdpa_dma_unmap(0x55d4c2a1b3e0, 0x1000, "
        "0x1000) = -22 (Invalid argument)",
        "2025-11-30T10:15:42.100000Z qemu-system-x86_64: vhost_vdpa_dma_unmap(0x55d4c2a1b3e0, "
        "0x1000, 0x1000) = -22 (Invalid argument)",
        "qemu-system-x86_64: vhost vdpa map fail!",
    ]
    lines = render_text("log").splitlines()
    path = tmp_path / "errors.log"
    path.write_text("\n".join(lines[:5] + errors + lines[5:]) + "\n")
    compiled = trace.compile_trace(path, strict=True)
    assert compiled.stats.not_trace == 2 + len(errors) and compiled.stats.malformed == 0
    assert digests(compiled) == digests(twin)


@pytest.mark.parametrize("stamp", ["123456789012", "1234"])
def test_ftrace_with_an_integer_clock_is_read(stamp: str, twin: trace.CompiledTrace,
                                              tmp_path: Path) -> None:
    # trace_clock counter, x86-tsc, perf... print the stamp without a fraction.
    text = re.sub(r"\d+\.\d{6}: ", stamp + ": ", render_text("ftrace"))
    path = tmp_path / "ftrace.txt"
    path.write_text(text)
    compiled = trace.compile_trace(path, strict=True)
    assert set(compiled.stats.formats) == {"ftrace"}
    assert digests(compiled) == digests(twin)


def test_a_file_without_modelled_events_says_so_in_correct_english(tmp_path: Path) -> None:
    def message(text: str) -> str:
        path = tmp_path / "x.log"
        path.write_text(text)
        with pytest.raises(trace.TraceInputError) as info:
            trace.compile_trace(path)
        return str(info.value)

    one = message("foo_bar x\nhello\n")
    assert "among 2 lines: 1 other trace event (foo_bar 1), 1 non-trace line (first: line 2" \
        in one, one
    two = message("foo_bar x\nfoo_baz y\nhello\nworld\n")
    assert "2 other trace events (foo_bar 1, foo_baz 1), 2 non-trace lines" in two, two
    assert "log-context" in one or "program" in one  # every format is named


def test_convert_help_names_the_formats_it_points_to() -> None:
    text = _parsers()["convert"].format_help()
    assert "format above" not in text or "Formats read" in text


def test_a_cut_op_stream_is_refused_in_whole_records(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ops = tmp_path / "ops.bin"
    assert cli.main(["convert", "--no-progress", "-o", str(ops), str(DATA / FILES["log"])]) == 0
    data = ops.read_bytes()
    ops.write_bytes(data[: len(data) - 20])
    assert cli.main(["replay", "--no-progress", str(ops)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"\d\.\d", err) is None, err


# --------------------------------------------------------------------------- the progress bar

class _Terminal(io.StringIO):
    """stderr as a terminal."""

    def isatty(self) -> bool:
        return True


def test_tqdm_is_a_dependency_of_a_plain_install() -> None:
    from importlib.metadata import requires

    plain = [r for r in requires("iova-native") or [] if "extra ==" not in r]
    assert any(r.startswith("tqdm") for r in plain), plain


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_a_terminal_shows_progress_with_or_without_tqdm(
        tqdm_installed: bool, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # ``import tqdm`` raises ImportError
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["replay", "--lookups", "0", str(DATA / FILES["log"])]) == 0
    shown = terminal.getvalue()
    assert "parse" in shown and "replay native" in shown, shown
    assert "digest" in capsys.readouterr().out
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["replay", "--no-progress", str(DATA / FILES["log"])]) == 0
    assert terminal.getvalue() == ""


@pytest.mark.parametrize("fmt", ["log", "simple"])
def test_a_pipe_given_by_name_is_read_once(fmt: str, twin: trace.CompiledTrace,
                                          tmp_path: Path) -> None:
    # As ``iova-native replay <(ssh host cat trace)`` or a FIFO passes it: the file can be
    # read only once, and opening it again waits for a writer that is gone.
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "iova_native", "replay", "--no-progress",
               "--backend", "reference", str(fifo)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        with open(fifo, "wb") as writer:
            writer.write(render(fmt))
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the replay waited for a second writer") from None
    assert proc.returncode == 0, err
    state, outcomes = digests(twin)
    assert f"state {state:#018x}  outcomes {outcomes:#018x}" in out, out


def test_simpletrace_text_says_when_qemu_dropped_events(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # scripts/simpletrace.py prints the simple file's dropped record as the event it builds
    # for it, Dropped_Event(uint64_t num_events_dropped), like any other.
    lines = render_text("simpletrace").splitlines()
    lines.insert(9, f"Dropped_Event 0.000 pid={PID} num_events_dropped=0x7")
    path = tmp_path / "simpletrace.txt"
    path.write_text("\n".join(lines) + "\n")
    assert trace.compile_trace(path, strict=True).stats.dropped == 7
    assert cli.main(["replay", "--no-progress", "--lookups", "0", str(path)]) == 0
    assert "QEMU dropped 7 events" in capsys.readouterr().out


def test_ftrace_says_when_the_kernel_lost_events(
        twin: trace.CompiledTrace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # What /sys/kernel/tracing/trace_pipe prints where its ring buffer overflowed.
    lines = render_text("ftrace").splitlines()
    lines.insert(9, "CPU:3 [LOST 45 EVENTS]")
    lines.insert(12, "CPU:1 [LOST 1 EVENT]")
    path = tmp_path / "ftrace.txt"
    path.write_text("\n".join(lines) + "\n")
    compiled = trace.compile_trace(path, strict=True)
    assert compiled.stats.lost == 46 and compiled.stats.modelled == MODELLED
    assert cli.main(["replay", "--no-progress", "--lookups", "0", str(path)]) == 0
    assert "ftrace's ring buffer lost 46 events" in capsys.readouterr().out


@pytest.mark.parametrize("magic, tool", [(b"\xfd7zXZ\x00\x00\x04", "xz"),
                                         (b"BZh91AY&SY\x1a", "bzip2"),
                                         (b"\x28\xb5\x2f\xfd\x24\x00", "zstd")])
def test_other_compressors_are_named(magic: bytes, tool: str, tmp_path: Path) -> None:
    path = tmp_path / f"trace.{tool}"
    path.write_bytes(magic + bytes(range(256)) * 4)
    with pytest.raises(trace.TraceInputError) as info:
        trace.compile_trace(path)
    assert f"{tool}-compressed data" in str(info.value) and f"{tool} -dc" in str(info.value)


# --------------------------------------------------------------------------- the syslog backend

#: scripts/tracetool/backend/syslog.py calls syslog(LOG_INFO, "name " fmt, ...) without
#: openlog(), so the ident is the program's name; rsyslog prints it bare, journald (and
#: rsyslog reading the journal) with [pid]; the stamp as each is set up to print it.
SYSLOG_PREFIXES = [
    "Dec  1 10:15:42 myhost qemu-system-x86_64: ",
    "Dec 01 10:15:42 myhost qemu-system-x86_64[48213]: ",  # journalctl
    "Nov 30 10:15:42.100000 myhost qemu-system-x86_64[48213]: ",  # journalctl -o short-precise
    "2025-11-30T10:15:42+0000 myhost qemu-system-x86_64[48213]: ",  # journalctl -o short-iso
    "2025-11-30T10:15:42.100000+00:00 myhost qemu-kvm[48213]: ",  # rsyslog, RFC 3339
]


@pytest.mark.parametrize("prefix", SYSLOG_PREFIXES)
def test_the_syslog_backend_is_read(prefix: str, twin: trace.CompiledTrace,
                                    tmp_path: Path) -> None:
    lines = [prefix + line for line in render_text("log").splitlines()
             if not line.startswith("qemu-system-x86_64: ")]  # warnings go to stderr
    lines[3:3] = [prefix.split(" myhost ")[0] + " myhost kernel: vfio-pci 0000:3b:00.1: "
                  "enabling device (0000 -> 0002)",
                  prefix.split(" myhost ")[0] + " myhost systemd[1]: Started libvirtd.service."]
    path = tmp_path / "syslog"
    path.write_text("\n".join(lines) + "\n")
    compiled = trace.compile_trace(path, strict=True)
    st = compiled.stats
    assert set(st.formats) == {"syslog"} and st.modelled == MODELLED and st.not_trace == 2
    assert digests(compiled) == digests(twin)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_the_demo_lists_every_map_its_translate_goes_through(
        backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--backend", backend]) == 0
    out = capsys.readouterr().out
    listed = [(int(i, 16), int(n, 16)) for i, n in
              re.findall(r"^  DMAMap\(iova=(0x[0-9a-f]+), translated_addr=0x[0-9a-f]+, "
                         r"size=(0x[0-9a-f]+)", out, re.M)]
    segments = [int(i, 16) for i in re.findall(r"^  IOVA (0x[0-9a-f]+) \+", out, re.M)]
    assert len(segments) == 2 and f"IOVATree with {len(listed)} maps:" in out
    for iova in segments:
        assert any(start <= iova <= start + size for start, size in listed), (hex(iova), out)


class _FullDisk(io.StringIO):
    """stdout on a full disk (> /dev/full)."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("command", [["replay", "--no-progress", "--lookups", "0"], ["demo"]])
def test_a_report_that_cannot_be_written_is_one_line(
        command: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    args = command + ([str(DATA / FILES["log"])] if command[0] == "replay" else [])
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["iova-native: cannot write the output: No space left on device"]


def test_lookups_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    # Every look-up round is two ops kept in memory for each map and unmap: a typo such as
    # --lookups 1000000000000 ran until memory ran out.
    with pytest.raises(SystemExit) as info:
        cli.main(["replay", "--lookups", "1000000000000", str(DATA / FILES["log"])])
    assert info.value.code == 2
    assert "argument --lookups: must be at most 100, not 1000000000000" in \
        capsys.readouterr().err
    with pytest.raises(ValueError):
        trace.compile_trace(DATA / FILES["log"], lookups=trace.MAX_LOOKUPS + 1)
    words = " ".join(_parsers()["replay"].format_help().split())
    assert f"0 to {trace.MAX_LOOKUPS}, default 2" in words
    assert cli.main(["replay", "--no-progress", "--lookups", "100",
                     str(DATA / FILES["log"])]) == 0


def test_a_long_line_naming_tracing_mark_write_is_read_in_linear_time(tmp_path: Path) -> None:
    # ftrace's columns in front of tracing_mark_write: are short; a long line that only looks
    # like them (garbage text, a log of logs) took time quadratic in its length.
    path = tmp_path / "long.txt"
    path.write_text(" a" + " [1] 11111 1" * 200_000 + " tracing_mark_write: x\n"
                    + "Dec  1 10:15:42 h " + "qemu" * 200_000 + "\n"  # and a syslog ident
                    + render_text("log"))
    code = ("import sys; from iova_native import trace; "
            "c = trace.compile_trace(sys.argv[1]); print(c.stats.not_trace, c.stats.modelled)")
    try:
        run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("a 2.4 MB line took minutes") from None
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["4", str(MODELLED)]

if __name__ == "__main__":
    write_samples()
    print(f"wrote {len(FILES)} sample traces to {DATA}")
