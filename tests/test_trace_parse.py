# SPDX-License-Identifier: GPL-2.0-or-later
"""The QEMU trace parser (iova_native.trace): both formats, prefixes, and every kind of bad line.

Runs without the C extension: nothing here touches a tree.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from iova_native import cli, trace
from iova_native.trace import (
    DmaMap,
    DmaUnmap,
    IovaRange,
    MalformedLine,
    NotTrace,
    RegionAdd,
    RegionDel,
    TraceParser,
    TraceStats,
    Unknown,
    parse_line,
)

PREFIX = "48213@1715180412.102145:"
NEW_MAP = ("vhost_vdpa_dma_map vdpa_shared:0x55d4c2a1b3e0 fd: 23 msg_type: 2 asid: 1 "
           "iova: 0x1000 size: 0xa0000 uaddr: 0x7f1c00000000 perm: 0x3 type: 2")
OLD_MAP = ("vhost_vdpa_dma_map vdpa:0x5581 fd: 17 msg_type: 2 iova: 0x1000 size: 0x2000 "
           "uaddr: 0x7f0000000000 perm: 0x1 type: 2")
NEW_UNMAP = ("vhost_vdpa_dma_unmap vdpa_shared:0x55d4c2a1b3e0 fd: 23 msg_type: 2 asid: 0 "
             "iova: 0x1000 size: 0xa0000 type: 3")
OLD_UNMAP = "vhost_vdpa_dma_unmap vdpa:0x5581 fd: 17 msg_type: 2 iova: 0x1000 size: 0x2000 type: 3"
REGION_ADD = ("vhost_vdpa_listener_region_add vdpa: 0x55d4c2a1c7a0 iova 0xe0000 llend 0x100000 "
              "vaddr: 0x7f1a3c220000 read-only: 1")
REGION_DEL = "vhost_vdpa_listener_region_del vdpa: 0x55d4c2a1c7a0 iova 0xe0000 llend 0x100000"
IOVA_RANGE = "vhost_vdpa_get_iova_range dev: 0x55d4c2a0f010 first: 0x0 last: 0xffffffffffff"


# --------------------------------------------------------------------------- good lines


@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["bare", "prefixed"])
def test_dma_map_newer_format(prefix: str) -> None:
    event = parse_line(prefix + NEW_MAP, 7)
    assert event == DmaMap(7, 23, 1, 0x1000, 0xA0000, 0x7F1C00000000, 0x3)


@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["bare", "prefixed"])
def test_dma_map_older_format_has_no_asid(prefix: str) -> None:
    event = parse_line(prefix + OLD_MAP, 1)
    assert event == DmaMap(1, 17, None, 0x1000, 0x2000, 0x7F0000000000, 0x1)


@pytest.mark.parametrize("line, asid", [(NEW_UNMAP, 0), (OLD_UNMAP, None)])
@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["bare", "prefixed"])
def test_dma_unmap_both_formats(prefix: str, line: str, asid: int | None) -> None:
    event = parse_line(prefix + line, 3)
    assert isinstance(event, DmaUnmap)
    assert event.asid == asid and event.iova == 0x1000


@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["bare", "prefixed"])
def test_listener_and_iova_range(prefix: str) -> None:
    assert parse_line(prefix + REGION_ADD, 2) == RegionAdd(2, 0xE0000, 0x100000,
                                                           0x7F1A3C220000, True)
    assert parse_line(prefix + REGION_DEL, 3) == RegionDel(3, 0xE0000, 0x100000)
    assert parse_line(prefix + IOVA_RANGE, 4) == IovaRange(4, 0, 0xFFFFFFFFFFFF)


def test_owner_spelling_pointer_forms_and_whitespace() -> None:
    # "vdpa: %p" with a space, "(nil)" for a NULL %p, CRLF, doubled spaces, later extra fields.
    line = ("vhost_vdpa_listener_region_add vdpa:(nil)  iova 0x0 llend 0x1000 vaddr: (nil) "
            "read-only: 0\r\n")
    assert parse_line(line) == RegionAdd(0, 0, 0x1000, 0, False)
    extended = NEW_MAP + " shadow: 1 override: none"
    assert isinstance(parse_line(extended), DmaMap)


def test_blank_and_unknown_lines() -> None:
    assert parse_line("") is None
    assert parse_line("   \n") is None
    assert parse_line(PREFIX + "vhost_vdpa_set_vring_num dev: 0x55 index: 0 num: 256") == \
        Unknown(0, "vhost_vdpa_set_vring_num")
    assert parse_line("virtio_queue_notify vdev 0x55 n 0 vq 0x66", 9) == \
        Unknown(9, "virtio_queue_notify")
    assert parse_line("vhost_vdpa_suspend") == Unknown(0, "vhost_vdpa_suspend")


# --------------------------------------------------------------------------- bad lines


def reason(text: str) -> str:
    with pytest.raises(MalformedLine) as info:
        parse_line(text, 42)
    assert info.value.lineno == 42
    assert str(info.value).startswith("line 42: ")
    return info.value.reason


@pytest.mark.parametrize("garbage", [
    "%%%% !!!", "this is garbage", "\x00\x01\xff binary", "48213@17151804",
    "qemu-system-x86_64: -netdev vhost-vdpa: warning: something", PREFIX,
    "2025-11-30T10:15:42.100000Z qemu-system-x86_64: warning: host doesn't support x",
    "qemu-system-x86_64(772366:main): Unable to access credentials", "vhost",
    "# tracer: nop", "vhost_vdpa_dma_map: something odd",
])
def test_lines_that_are_not_trace_events(garbage: str) -> None:
    assert isinstance(parse_line(garbage, 5), NotTrace)


@pytest.mark.parametrize("cut", [20, 45, 70, 90, 110, len(NEW_MAP) - 8])
def test_truncated_dma_map_names_the_missing_field(cut: int) -> None:
    message = reason(PREFIX + NEW_MAP[:cut])
    assert message.startswith("vhost_vdpa_dma_map: ")
    assert "truncated" in message or "expected" in message


def test_truncated_messages_are_precise() -> None:
    assert reason(NEW_MAP.split(" uaddr:")[0]) == \
        "vhost_vdpa_dma_map: truncated, 'uaddr: 0x<hex>' is missing"
    assert reason(REGION_DEL.rsplit(" ", 2)[0]) == \
        "vhost_vdpa_listener_region_del: truncated, 'llend 0x<hex>' is missing"
    assert reason(PREFIX + "vhost_vdpa_dma_m") == "truncated event name 'vhost_vdpa_dma_m'"
    assert reason("vhost_vd") == "truncated event name 'vhost_vd'"
    assert reason(NEW_MAP.split(" uaddr:")[0] + " uad") == \
        "vhost_vdpa_dma_map: truncated, 'uaddr: 0x<hex>' is missing"
    # cut in the middle of a number: 0x10 would parse, the next field is then missing
    assert "'uaddr: 0x<hex>' is missing" in reason(NEW_MAP.split(" uaddr:")[0][:-2])


@pytest.mark.parametrize("bad, words", [
    (NEW_MAP.replace("iova: 0x1000", "iova: 0xZZ"), "expected 'iova: 0x<hex>'"),
    (NEW_MAP.replace("fd: 23", "fd: x"), "expected 'fd: <decimal>'"),
    (NEW_MAP.replace("size: 0xa0000", "size: 0x0"), "size 0x0"),
    (NEW_MAP.replace("perm: 0x3", "perm: 0x0"), "perm 0x0 is not"),
    (NEW_MAP.replace("iova: 0x1000", "iova: 0xffffffffffffffff"), "wraps past 2**64-1"),
    (NEW_MAP.replace("uaddr: 0x7f1c00000000", "uaddr: 0xfffffffffffff000"), "uaddr"),
    (NEW_MAP.replace("iova: 0x1000", "iova: 0x1" + "0" * 16), "does not fit in 64 bits"),
    (REGION_ADD.replace("llend 0x100000", "llend 0xe0000"), "llend 0xe0000 is not above"),
    (IOVA_RANGE.replace("first: 0x0", "first: 0xfffffffffffff"), "last 0xffffffffffff is below"),
])
def test_bad_values(bad: str, words: str) -> None:
    assert words in reason(bad)


def test_region_del_with_empty_range_is_not_malformed() -> None:
    # QEMU traces region_del before checking that the range is empty, then returns.
    assert parse_line(REGION_DEL.replace("llend 0x100000", "llend 0xe0000")) == \
        RegionDel(0, 0xE0000, 0xE0000)


# --------------------------------------------------------------------------- whole traces


MIXED = [
    PREFIX + REGION_ADD,
    "qemu-system-x86_64: warning: garbage line",
    PREFIX + NEW_MAP,
    "",
    PREFIX + "vhost_vdpa_set_vring_num dev: 0x55 index: 0 num: 256",
    OLD_UNMAP[:50],
    OLD_MAP,
    PREFIX + "vhost_vdpa_listener_commit vdpa_shared:0x55 fd: 23 msg_type: 2 type: 6",
    PREFIX + "vhost_vdpa_set_vring_num dev: 0x55 index: 1 num: 256",
]


def test_parser_counts_and_skips() -> None:
    seen: list[MalformedLine] = []
    stats = TraceStats()
    events = list(TraceParser(stats, on_malformed=seen.append).parse(MIXED))
    assert [type(e) for e in events] == [RegionAdd, DmaMap, DmaMap]
    assert [e.lineno for e in events] == [1, 3, 7]
    assert stats.lines == 9 and stats.blank == 1 and stats.malformed == 1
    assert stats.not_trace == 1 and stats.not_trace_shown[0].lineno == 2
    assert [m.lineno for m in seen] == [6]
    assert stats.unknown == {"vhost_vdpa_set_vring_num": 2, "vhost_vdpa_listener_commit": 1}
    assert stats.with_asid == 1 and stats.without_asid == 1
    assert stats.formats == {"log-pid": 5, "log": 2} and stats.fds == {17, 23}


def test_strict_parser_raises_at_the_first_malformed_event_not_at_a_warning() -> None:
    with pytest.raises(MalformedLine) as info:
        list(TraceParser(strict=True).parse(MIXED))
    assert info.value.lineno == 6


@pytest.fixture
def mixed_trace(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.log"
    path.write_text("\n".join(MIXED) + "\n")
    return path


def test_cli_strict_exits_2_with_one_line(mixed_trace: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--strict", "--no-progress", str(mixed_trace)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == (f"iova-native replay: error: {mixed_trace}:6: vhost_vdpa_dma_unmap: "
                   "truncated, 'msg_type: <decimal>' is missing (--strict)\n")


def test_cli_lenient_reports_line_numbers(mixed_trace: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["convert", "--no-progress", str(mixed_trace), "-o",
                     str(mixed_trace.with_suffix(".ops"))]) == 0
    out, err = capsys.readouterr()
    assert f"{mixed_trace}:2:" not in err
    assert err == f"iova-native: {mixed_trace}:6: vhost_vdpa_dma_unmap: truncated, " \
        "'msg_type: <decimal>' is missing (skipped)\n"
    assert "Traceback" not in err and "wrote" in out


def test_cli_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.log"
    assert cli.main(["replay", "--no-progress", str(missing)]) == 2
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(("\n".join(MIXED) * 50).encode())[:200])
    assert cli.main(["replay", "--no-progress", str(cut)]) == 2
    fake = tmp_path / "fake.ops"
    fake.write_bytes(trace.MAGIC + b"\x02" + b"\x00" * 23)
    assert cli.main(["replay", "--no-progress", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("iova-native replay: error: ") == 3


def test_gzip_and_plain_read_alike(tmp_path: Path) -> None:
    plain, packed = tmp_path / "t.log", tmp_path / "t.log.gz"
    text = "\n".join(MIXED) + "\n"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = trace.compile_trace(plain), trace.compile_trace(packed)
    assert a.ops.words == b.ops.words and a.stats.lines == b.stats.lines == len(MIXED)


def test_embedded_default_trace_parses_cleanly() -> None:
    compiled = trace.compile_trace(strict=True)
    st = compiled.stats
    assert st.malformed == 0 and st.mode == "svq"
    assert st.formats == {"log-pid": st.lines} and st.lines > 10_000
    assert st.with_asid > 10_000 and 0 < st.without_asid < 50
    assert st.events["vhost_vdpa_listener_region_add"] >= 6
    assert st.events["vhost_vdpa_dma_map"] > 6000 and st.guest_maps >= 6
    assert sum(st.unknown.values()) > 0
