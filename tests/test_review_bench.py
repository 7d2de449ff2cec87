# SPDX-License-Identifier: GPL-2.0-or-later
"""The review of the benchmarks against issues 17 and 18: each measures what the issue
defines, the same way on both sides of a comparison, and the docs say what the figures say.
No timing is asserted: these hold the benches' structure and the docs' wording."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iova_native import native

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import overhead  # noqa: E402


def test_the_sortedcontainers_peer_is_two_sorteddicts_by_iova_and_by_hva() -> None:
    """Issue 18's peer: a SortedDict by IOVA and one by HVA, both updated on insert and
    remove.  The one by HVA was keyed by (HVA, IOVA) tuples, which made the peer's find_iova
    up to 2x slower than the index the issue describes, and so flattered native."""
    pytest.importorskip("sortedcontainers")
    maps = overhead.sparse_maps(64)
    index = overhead.SortedIndex(maps)
    assert list(index.by_iova.keys()) == sorted(m.iova for m in maps)
    assert list(index.by_hva.keys()) == sorted(m.translated_addr for m in maps)
    tree = native.IOVATree(maps)
    for m in maps:
        assert index.find(m.iova + 7) == tree.find(m.iova + 7) == m
        assert index.find_iova(m.translated_addr + 7) == tree.find_iova(m.translated_addr + 7)
    gone = maps[10]
    assert index.remove(gone.iova + 1) == 1
    assert gone.iova not in index.by_iova and gone.translated_addr not in index.by_hva
    index.insert(gone)
    assert index.by_iova[gone.iova] is gone and index.by_hva[gone.translated_addr] is gone
    tree.close()


def test_the_peers_get_as_many_figures_as_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding table keeps the fastest of two figures for native and for the C core; the
    sortedcontainers and ncls figures were one measurement each, so the noise alone made them
    look slower than native."""
    calls: list[int] = []

    def fake_measure(op: Any, budget: float) -> float:
        op(1)
        calls.append(1)
        return 1.0

    puts: list[tuple[str, str]] = []
    monkeypatch.setattr(overhead, "measure_short", fake_measure)
    overhead.bench_overhead(64, 0.0, lambda op, backend, v: puts.append((op, backend)))
    peers = [p for p in puts if p[1] in ("sortedcontainers", "ncls")]
    singles = [p for p in puts if p[1] == "native" and p[0] not in overhead.OPS]
    paired = 2 * overhead.TRIES * len(overhead.OPS)  # C core and native, alternating
    assert len(calls) == paired + len(singles) + overhead.TRIES * len(peers), (puts, calls)


def build_bench(tmp_path: Path, qemu_dir: str | None) -> tuple[Path, str]:
    """iova-bench built by a copy of scripts/build-tools.sh in a copy of the tree (so that the
    checkout's tools-build/ is left alone), with IOVA_QEMU_DIR set to ``qemu_dir``."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    for part in ("csrc", "scripts"):
        shutil.copytree(ROOT / part, tmp_path / part)
    env = dict(os.environ)
    if qemu_dir is not None:
        env["IOVA_QEMU_DIR"] = qemu_dir
    build = subprocess.run(["bash", str(tmp_path / "scripts" / "build-tools.sh"), "iova-bench"],
                           capture_output=True, text=True, timeout=600, check=False, env=env)
    tool = tmp_path / "tools-build" / "iova-bench"
    if build.returncode != 0 or not tool.exists():
        pytest.skip(f"cannot build iova-bench: {build.stderr.strip()[-300:]}")
    return tool, build.stderr


def run_qemu_section(tool: Path) -> str:
    result = subprocess.run([str(tool), "--quick", "--only", "qemu", "--sizes", "1k",
                             "--budget-ms", "1"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_iova_bench_without_qemu_runs_and_says_so(tmp_path: Path) -> None:
    """Issue 17: the bench still runs without QEMU's files.  The build said nothing when it
    left QEMU's column out, and the bench named ../shared/qemu whichever folder was looked in."""
    tool, said = build_bench(tmp_path, str(tmp_path / "no-qemu-here"))
    assert "without QEMU's column" in said and "no-qemu-here/util/iova-tree.c" in said, said
    out = run_qemu_section(tool)
    assert "is not in this build" in out and "IOVA_QEMU_DIR" in out
    assert "(QEMU)" not in out
    assert re.search(r"^\| alloc, first fit, one at a time \|", out, re.M), out


def test_iova_bench_times_first_fit_one_at_a_time_against_qemu(tmp_path: Path) -> None:
    """First fit on the random layout was timed only in batches removed afterwards: a batch's
    allocations fill the lowest holes in turn, so QEMU's walk passed the batch's own earlier
    maps (500 on average at 100k), and the ratio read 0.09x where, one alloc at a time, the
    core is about 3x QEMU's.  Both rows are there, with their ratios."""
    qemu = ROOT.parent / "shared" / "qemu"
    if not (qemu / "util" / "iova-tree.c").is_file():
        qemu = Path(os.environ.get("IOVA_QEMU_DIR", "/nonexistent"))
    if not (qemu / "util" / "iova-tree.c").is_file():
        pytest.skip("QEMU's files are not at ../shared/qemu nor $IOVA_QEMU_DIR")
    tool, _ = build_bench(tmp_path, str(qemu))
    out = run_qemu_section(tool)
    for row in ("alloc, first fit", "alloc, first fit, one at a time"):
        assert re.search(rf"^\| {re.escape(row)} \(QEMU\) \|", out, re.M), out
    assert "**ratio** alloc first fit one at a time, project / QEMU" in out


def test_the_docs_do_not_claim_first_fit_within_2x_from_the_batches_alone() -> None:
    """The C core's targets and the README must give the one-at-a-time first fit beside the
    batched one: the batches alone made "within 2x of QEMU on the random layout" read met."""
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    row = next(line for line in bench.splitlines()
               if line.startswith("| first-fit alloc within 2× of QEMU on the random layout"))
    assert "one at a time" in row and "**NO**" in row, row
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^\| first-fit alloc, one at a time\b", readme, re.M)


def results_row(text: str, label: str) -> list[str]:
    """The cells after ``label`` of the first table row of RESULTS.md that holds it."""
    line = next(line for line in text.splitlines() if line.startswith("|") and label in line)
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells[cells.index(label) + 1:]


def number(cell: str) -> float:
    return float(cell.replace("×", "").replace(",", "").replace("*", "").split()[0])


def test_the_batch_ranges_in_the_prose_are_the_committed_runs() -> None:
    """benchmarks.md said "13-30x" and "0.14-0.34x" for the batch target where the run it
    gives read 13.0-32.2x and 0.12-0.40x: figures of an older run."""
    results = (ROOT / "bench" / "results" / "RESULTS.md").read_text()
    prose = " ".join((ROOT / "docs" / "benchmarks.md").read_text().split())
    loop = [number(c) for c in results_row(results, "Python loop / to_iova_many") if c != "–"]
    floor = [number(c) for c in results_row(results, "to_iova_many / C-only loop") if c != "–"]
    assert (f"`find_iova` costs {min(loop):.0f}–{max(loop):.0f}× more per address than "
            "`to_iova_many`") in prose
    assert f"`to_iova_many` costs {min(floor):.2f}–{max(floor):.2f}× the C-only loop" in prose


def test_what_the_docs_call_met_is_not_marked_no() -> None:
    """benchmarks.md listed `find` at 1k under "What is met" while the run's own binding
    table marked it NO (+254.1 ns against at most 250)."""
    results = (ROOT / "bench" / "results" / "RESULTS.md").read_text()
    prose = " ".join((ROOT / "docs" / "benchmarks.md").read_text().split())
    met = prose.split("What is met:", 1)[1].split("What is not", 1)[0]
    for op in ("find", "find_iova", "insert", "remove", "alloc"):
        cells = results_row(results, f"binding adds to {op} (ns)")
        for size, cell in zip(("1k", "100k"), cells):
            if "NO" in cell:
                assert f"`{op}` at {size}" not in met, (op, size, met)
