# SPDX-License-Identifier: GPL-2.0-or-later
"""Trace replay (iova_native.trace, ``iova-native replay/convert``) and the C driver.

* native and reference replaying the same trace end with identical trees and digests;
* ``--backend both`` goes through the differential backend and stops at a planted divergence;
* tools-build/iova-replay prints the digests Python prints, with and without ``--linear``
  (skipped when the tool cannot be built);
* ``iova-native replay`` with no argument prints a report that fits a screen.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iova_native import DivergenceError, DMAMap, Perm, cli, differential, reference, trace
from iova_native.trace import OpKind, OpStream

ROOT = Path(__file__).resolve().parent.parent
DIGESTS = re.compile(r"^digest\s+state (0x[0-9a-f]{16})\s+outcomes (0x[0-9a-f]{16})$", re.M)
MAX_U64 = (1 << 64) - 1

try:
    native: Any = importlib.import_module("iova_native.native")
except (ImportError, OSError) as exc:  # not built
    native, NATIVE_MISSING = None, f"iova_native.native: {exc}"
else:
    NATIVE_MISSING = ""
needs_native = pytest.mark.skipif(native is None, reason=NATIVE_MISSING or "built")


def generator() -> Any:
    """scripts/gen_default_trace.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_default_trace",
                                                  ROOT / "scripts" / "gen_default_trace.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_default_trace"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def default() -> trace.CompiledTrace:
    return trace.compile_trace()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> trace.CompiledTrace:
    """The default VM with 200 control-queue commands: quick enough for the differential."""
    path = tmp_path_factory.mktemp("small") / "small.log.gz"
    path.write_bytes(generator().render(queue_pairs=2, commands=200))
    return trace.compile_trace(path)


def run(compiled: trace.CompiledTrace | OpStream, mod: Any) -> tuple[trace.ReplayResult, Any, Any]:
    ops = compiled.ops if isinstance(compiled, trace.CompiledTrace) else compiled
    iova_tree, gpa_tree = mod.IOVATree(), mod.GPATree()
    return trace.replay(ops, iova_tree, gpa_tree), iova_tree, gpa_tree


# --------------------------------------------------------------------------- the default trace


def test_embedded_trace_is_what_the_generator_writes() -> None:
    data = (ROOT / "src" / "iova_native" / "data" / trace.DEFAULT_TRACE).read_bytes()
    assert generator().render() == data, "rerun scripts/gen_default_trace.py"


def test_default_trace_model(default: trace.CompiledTrace) -> None:
    result, _, _ = run(default, reference)
    assert result.allocs == default.ops.counts()[OpKind.ALLOC] > 6000
    assert result.alloc_moved == 0, "the allocator should land where QEMU's did"
    assert result.unmatched_unmaps == 2  # the capture starts during a teardown
    assert len(result.alias_ranges) == 1  # isa-bios and pc.bios share an HVA range
    assert result.alias_events == 3  # boot and two restarts
    assert result.failed == 0 and result.peak >= result.live == 40
    assert result.gpa_live == 6


@needs_native
def test_native_and_reference_end_identical(default: trace.CompiledTrace) -> None:
    a, a_iova, a_gpa = run(default, native)
    b, b_iova, b_gpa = run(default, reference)
    assert a_iova.maps() == b_iova.maps() and a_gpa.maps() == b_gpa.maps()
    assert a.state_digest == b.state_digest
    assert a.outcome_digest == b.outcome_digest
    assert (a.live, a.peak, a.unmatched_unmaps, a.alias_events, a.alias_ranges) == \
        (b.live, b.peak, b.unmatched_unmaps, b.alias_events, b.alias_ranges)
    assert a.state_digest == trace.state_digest(b_iova, b_gpa)


def test_state_digest_is_fnv1a_over_words() -> None:
    iova_tree, gpa_tree = reference.IOVATree(), reference.GPATree()
    iova_tree.insert(DMAMap(0x1000, 0x7F00, 0xFFF, Perm.RO, 7))
    words = [1, 0x1000, 0x7F00, 0xFFF, 1, 7, 0]
    h = 0xCBF29CE484222325
    for w in words:
        h = ((h ^ w) * 0x100000001B3) % (1 << 64)
    assert trace.state_digest(iova_tree, gpa_tree) == h


# --------------------------------------------------------------------------- differential


@needs_native
def test_backend_both_agrees(small: trace.CompiledTrace) -> None:
    result, iova_tree, gpa_tree = run(small, differential)
    plain, _, _ = run(small, reference)
    assert result.state_digest == plain.state_digest
    assert isinstance(iova_tree, differential.IOVATree)


class MisplacedFindIOVA(reference.IOVATree):
    """Answers find_iova wrongly for host-only maps (id 0) of a given size."""

    def find_iova(self, translated_addr: int, size: int = 0, id: int | None = None) -> Any:
        found = super().find_iova(translated_addr, size, id)
        return None if id == 0 and size == 0x1FFF else found


def test_backend_both_stops_at_a_divergence(small: trace.CompiledTrace) -> None:
    iova_tree = differential.IOVATree(left=MisplacedFindIOVA, right=reference.IOVATree,
                                      shrink_timeout=2.0)
    gpa_tree = differential.GPATree(left=reference.GPATree, right=reference.GPATree)
    with pytest.raises(DivergenceError) as info:
        trace.replay(small.ops, iova_tree, gpa_tree)
    assert "find_iova" in info.value.operation


def test_cli_reports_a_divergence(small: trace.CompiledTrace, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = tmp_path / "small.ops"
    small.ops.write(ops)
    monkeypatch.setattr(cli, "_trees", lambda backend: (
        differential.IOVATree(left=MisplacedFindIOVA, right=reference.IOVATree,
                              shrink_timeout=2.0),
        differential.GPATree(left=reference.GPATree, right=reference.GPATree)))
    assert cli.main(["replay", "--backend", "both", "--no-progress", str(ops)]) == 1
    err = capsys.readouterr().err
    assert "the backends diverged" in err and "def reproduce(tree)" in err


# --------------------------------------------------------------------------- the op stream


def test_convert_round_trip(default: trace.CompiledTrace, tmp_path: Path) -> None:
    out = tmp_path / "ops.bin"
    assert cli.main(["convert", "--no-progress", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == trace.MAGIC and len(data) == 32 + 48 * len(default.ops)
    assert OpStream.read(out).words == default.ops.words


@pytest.mark.parametrize("record, why", [
    ((9, 0, 0, 0, 0, 0), "unknown kind"),
    ((OpKind.INSERT, 0x1000, 0, 0xFFF, 0, 0), "perm 0"),
    ((OpKind.FIND_IOVA, 0, 0, 0, 2, 0), "has_id"),
    ((OpKind.REMOVE, MAX_U64, 1, 0, 0, 0), "wraps"),
    ((OpKind.TRANSLATE, MAX_U64, 2, 0, 0, 0), "wraps"),
])
def test_bad_op_streams(record: tuple[int, ...], why: str) -> None:
    stream = OpStream()
    stream.append(*record)
    with pytest.raises(ValueError, match=why):
        OpStream.from_bytes(stream.to_bytes(), "x.ops")


def test_passthrough_trace_inserts_at_the_traced_iova(tmp_path: Path) -> None:
    path = tmp_path / "pt.log"
    path.write_text(
        "vhost_vdpa_listener_region_add vdpa: 0x1 iova 0x100000 llend 0x200000 "
        "vaddr: 0x7f0000100000 read-only: 0\n"
        "vhost_vdpa_dma_map vdpa:0x1 fd: 3 msg_type: 2 iova: 0x100000 size: 0x100000 "
        "uaddr: 0x7f0000100000 perm: 0x3 type: 2\n"
        "vhost_vdpa_dma_unmap vdpa:0x1 fd: 3 msg_type: 2 iova: 0x900000 size: 0x1000 type: 3\n")
    compiled = trace.compile_trace(path, lookups=1)
    assert compiled.stats.mode == "passthrough"
    counts = compiled.ops.counts()
    assert counts[OpKind.INSERT] == 1 and counts[OpKind.ALLOC] == 0
    result, iova_tree, gpa_tree = run(compiled, reference)
    assert iova_tree.maps() == [DMAMap(0x100000, 0x7F0000100000, 0xFFFFF, Perm.RW, 0x100000)]
    assert gpa_tree.find(0x180000).iova == 0x100000
    assert result.unmatched_unmaps == 1


def error_paths() -> OpStream:
    """Every outcome kind: overlap, wrap, no space, misses, holes, a moved allocation."""
    s = OpStream()
    s.append(OpKind.INSERT, 0x1000, 0x10000, 0xFFF, 3, 0)
    s.append(OpKind.INSERT, 0x1800, 0x20000, 0xFFF, 3, 0)  # overlap
    s.append(OpKind.INSERT, MAX_U64, 0x20000, 1, 3, 0)  # wraps
    s.append(OpKind.ALLOC, 0x9000, 0x30000, 0xFFF, 1, 5)  # lands at 0x2000: moved
    s.append(OpKind.RANGE, 0x1000, 0x1FFF)
    s.append(OpKind.ALLOC, 0x4000, 0x40000, 0xFFF, 3, 0)  # no space: moved to 0x4000
    s.append(OpKind.RANGE, 0x5000, 0x4000)  # last < first
    s.append(OpKind.ALLOC, 0x6000, 0x50000, 0xFFF, 3, 0)  # invalid, moved
    s.append(OpKind.FIND_IOVA, 0x10800, 0, 0, 1)
    s.append(OpKind.FIND_IOVA, 0x10800, 0, 9, 1)  # wrong id: miss
    s.append(OpKind.FIND_IOVA, 0x30000, 0x10, 0, 0)  # any id
    s.append(OpKind.TRANSLATE, 0x10F00, 0x200, 0, 1)  # runs off the map: hole
    s.append(OpKind.TRANSLATE, 0x10F00, 0x100, 0, 1)
    s.append(OpKind.TRANSLATE, 0x10F00, 0, 0, 0)  # empty
    s.append(OpKind.GPA_INSERT, 0x1000, 0x80000, 0xFFF, 3, 0x80000)
    s.append(OpKind.GPA_INSERT, 0x2000, 0x80800, 0xFFF, 3, 0x80800)  # GPA overlap
    s.append(OpKind.FIND_GPA, 0x80FFF, 0)
    s.append(OpKind.FIND_GPA, 0x90000, 0)
    s.append(OpKind.GPA_REMOVE, 0x80000, 0)
    s.append(OpKind.REMOVE, 0xF000000, 0)  # nothing
    s.append(OpKind.REMOVE, 0, 0x4FFF)
    return s


def test_error_paths_outcomes() -> None:
    result, iova_tree, _ = run(error_paths(), reference)
    assert result.kinds[OpKind.INSERT].errors == 2
    assert result.kinds[OpKind.ALLOC].errors == 2 and result.alloc_moved == 3
    assert result.unmatched_unmaps == 1 and result.live == len(iova_tree) == 2
    assert [m.iova for m in iova_tree.maps()] == [0x6000, 0x9000]


# --------------------------------------------------------------------------- the C driver


@pytest.fixture(scope="session")
def driver() -> Path:
    """tools-build/iova-replay, built by scripts/build-tools.sh (skip if it cannot be)."""
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build-tools.sh"), "iova-replay"],
                           capture_output=True, text=True, check=False)
    tool = ROOT / "tools-build" / "iova-replay"
    if build.returncode != 0 or not tool.exists():
        pytest.skip(f"cannot build tools-build/iova-replay: {build.stderr.strip()[-300:]}")
    return tool


def c_digests(driver: Path, ops: Path, *flags: str) -> tuple[str, str]:
    out = subprocess.run([str(driver), *flags, str(ops)], capture_output=True, text=True,
                         check=True).stdout
    match = DIGESTS.search(out)
    assert match, out
    return match.group(1), match.group(2)


def py_digests(ops: OpStream, mod: Any = reference) -> tuple[str, str]:
    result, _, _ = run(ops, mod)
    return f"{result.state_digest:#018x}", f"{result.outcome_digest:#018x}"


@pytest.mark.parametrize("flags", [(), ("--linear",), ("--no-timing", "--repeat", "2")])
def test_c_driver_digests_match_python(driver: Path, default: trace.CompiledTrace,
                                       tmp_path: Path, flags: tuple[str, ...]) -> None:
    ops = tmp_path / "default.ops"
    default.ops.write(ops)
    assert c_digests(driver, ops, *flags) == py_digests(default.ops)


@pytest.mark.parametrize("flags", [(), ("--linear",)])
def test_c_driver_error_paths_match_python(driver: Path, tmp_path: Path,
                                           flags: tuple[str, ...]) -> None:
    stream = error_paths()
    ops = tmp_path / "errors.ops"
    stream.write(ops)
    assert c_digests(driver, ops, *flags) == py_digests(stream)


def test_c_driver_report_and_refusals(driver: Path, default: trace.CompiledTrace,
                                      tmp_path: Path) -> None:
    ops = tmp_path / "default.ops"
    default.ops.write(ops)
    out = subprocess.run([str(driver), str(ops)], capture_output=True, text=True,
                         check=True).stdout
    for name in ("alloc", "remove", "find_iova", "translate", "find_gpa"):
        assert re.search(rf"^{name}\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+0$", out, re.M), name
    assert re.search(r"^run\s+\d+ ops in [\d.]+ s: \d+ ops/s", out, re.M)
    bad = tmp_path / "bad.ops"
    bad.write_bytes(ops.read_bytes()[:100])
    refused = subprocess.run([str(driver), str(bad)], capture_output=True, text=True)
    assert refused.returncode == 2 and "truncated" in refused.stderr


# --------------------------------------------------------------------------- the command


@needs_native
def test_cli_replay_without_arguments_prints_the_report(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= cli.WIDTH
    assert "backend native" in lines[0] and "embedded" in lines[0]
    for label in ("trace", "events", "skipped", "model", "run", "maps", "aliases", "unmaps",
                  "digest"):
        assert any(line.startswith(f"{label} ") for line in lines), label
    assert re.search(r"^run\s+\d+ ops in [\d.]+ s: [\d,]+ ops/s", out, re.M)
    assert "1 aliased HVA range seen" in out and "2 matched nothing" in out
    assert re.search(r"^translate\s+\S+\s+\d+", out, re.M)
    default_result, _, _ = run(trace.compile_trace(), reference)
    assert f"state {default_result.state_digest:#018x}" in out
    assert err == ""


@needs_native
def test_cli_compare(small: trace.CompiledTrace, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    ops = tmp_path / "small.ops"
    small.ops.write(ops)
    assert cli.main(["replay", "--compare", "--no-progress", str(ops)]) == 0
    out = capsys.readouterr().out
    assert "identical final trees and outcomes: yes" in out
    assert len(set(re.findall(r"0x[0-9a-f]{16}  0x[0-9a-f]{16}", out))) == 1
