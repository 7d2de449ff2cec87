# SPDX-License-Identifier: GPL-2.0-or-later
"""The C library as a drop-in for QEMU's util/iova-tree.c (docs/c-library.md): C programs
built against the project's headers and library, the way QEMU's own callers use the tree, and
held to the same programs built on QEMU's own files from ../shared/qemu.

The QEMU side needs ../shared/qemu (QEMU's util/iova-tree.c, hw/virtio/vhost-iova-tree.c and
.h, include/qemu/iova-tree.h, the seed patch and an osdep shim); those tests skip, naming the
path, where it is absent."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iova_native import config

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
INCLUDE = CSRC / "include"
C_TESTS = ROOT / "tests" / "c"
QEMU = ROOT.parent / "shared" / "qemu"
# The library's sources: the core without the Python binding layer, as setup.py builds it.
CORE = sorted(p.name for p in CSRC.glob("*.c") if not p.name.endswith("-binding.c"))
# QEMU builds as gnu11, and the shim's osdep.h needs getpagesize() from it.
STRICT = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on PATH")
    return path


def glib_flags(kind: str = "--cflags") -> list[str]:
    """GLib's compile or link flags, or a skip naming what is missing."""
    result = subprocess.run([tool("pkg-config"), kind, "glib-2.0"], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        pytest.skip("GLib's development files are missing (pkg-config glib-2.0)")
    return shlex.split(result.stdout)


def cc(args: list[str]) -> None:
    cmd = [tool("cc"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{shlex.join(cmd)}\n{result.stderr}"


def run(binary: Path, *args: str) -> str:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{binary.name} {' '.join(args)}:\n{result.stdout[-3000:]}" \
                                   f"\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def qemu() -> Path:
    """QEMU's own files, for the baseline builds."""
    if not (QEMU / "util" / "iova-tree.c").is_file():
        pytest.skip(f"QEMU's files are not at {QEMU} (a clone without ../shared/qemu)")
    return QEMU


@pytest.fixture(scope="module")
def project_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of libiova-native.so: the one the package ships, or, in a tree whose
    package was built without it, one built from csrc/ the same way."""
    try:
        return Path(config.get_lib_dir())
    except config.ConfigError:
        pass
    return build_library(tmp_path_factory.mktemp("project-lib"))


def build_library(out: Path, *flags: str) -> Path:
    """libiova-native.so from csrc/ into the folder ``out``, compiled with ``flags`` too."""
    cc(["-std=c11", "-O1", "-g", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", *flags,
        "-o", str(out / "libiova-native.so"), *(str(CSRC / s) for s in CORE),
        *glib_flags(), *glib_flags("--libs")])
    return out


def link_project(lib: Path) -> list[str]:
    return [f"-L{lib}", "-liova-native", f"-Wl,-rpath,{lib}", *glib_flags("--libs")]


@pytest.fixture(scope="module")
def seeded_qemu(qemu: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """QEMU's include/ and util/ with the seed patch applied (patch -p1 --fuzz=0), and QEMU's
    util/iova-tree.c compiled beside it as qemu-iova-tree.o."""
    out = tmp_path_factory.mktemp("qemu-seeded")
    for part in ("include", "util"):
        shutil.copytree(qemu / part, out / part)
    with open(qemu / "seed-id.patch", "rb") as patch_file:
        result = subprocess.run([tool("patch"), "-p1", "--fuzz=0"], cwd=out, stdin=patch_file,
                                capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # QEMU's file is compiled as QEMU would (its unused comparator arguments warn under -Wextra).
    cc(["-std=gnu11", "-O1", "-g", "-c", f"-I{out / 'include'}", f"-I{qemu / 'shim'}",
        "-o", str(out / "qemu-iova-tree.o"), str(out / "util" / "iova-tree.c"), *glib_flags()])
    return out


def build_on_project(tmp: Path, name: str, sources: list[Path], lib: Path,
                     extra_includes: list[Path]) -> Path:
    binary = tmp / name
    cc([*STRICT, f"-I{INCLUDE}", *(f"-I{d}" for d in extra_includes), "-o", str(binary),
        *map(str, sources), *glib_flags(), *link_project(lib)])
    return binary


def build_on_qemu(tmp: Path, name: str, sources: list[Path], seeded: Path, qemu: Path) -> Path:
    binary = tmp / name
    cc([*STRICT, f"-I{seeded / 'include'}", f"-I{qemu}", f"-I{qemu / 'shim'}", "-o", str(binary),
        *map(str, sources), str(seeded / "qemu-iova-tree.o"), *glib_flags(),
        *glib_flags("--libs")])
    return binary


# ------------------------------------------------------------------ QEMU's VhostIOVATree


def test_qemu_vhost_iova_tree_on_the_project_tree_answers_as_on_qemus(
        tmp_path: Path, qemu: Path, seeded_qemu: Path, project_library: Path) -> None:
    """QEMU's hw/virtio/vhost-iova-tree.c and .h, byte for byte, compiled with -Werror against
    the project's headers and linked with its library, give the same transcript over a long
    random workload (tests/c/vhost-workload.c) as on QEMU's own util/iova-tree.c with the
    seed patch.  The workload keeps away from docs/contract.md's deviations (its header says
    how)."""
    vhost_c = qemu / "hw" / "virtio" / "vhost-iova-tree.c"
    sources = [C_TESTS / "vhost-workload.c", vhost_c]
    ours = build_on_project(tmp_path, "workload-ours", sources, project_library,
                            [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "workload-qemu", sources, seeded_qemu, qemu)
    for seed in ("1", "101"):
        expected = run(theirs, "--seed", seed, "--ops", "40000")
        got = run(ours, "--seed", seed, "--ops", "40000")
        assert got == expected, first_difference(got, expected)
    # The workload reaches every outcome: success and QEMU's three error codes.
    for outcome in ("-> 0 iova=", "-> -1", "-> -2", "-> -3", "find_iova", "find_gpa",
                    "remove_gpa", "probe host", "probe guest"):
        assert outcome in expected, outcome
    assert expected.count("\n") > 50_000


def test_qemus_tree_api_answers_as_qemus_own_tree(tmp_path: Path, qemu: Path,
                                                 seeded_qemu: Path,
                                                 project_library: Path) -> None:
    """QEMU's iova_tree_* and gpa_tree_* calls, made directly by tests/c/tree-workload.c
    (overlapping and invalid inserts, sized look-ups, id-matched reverse look-ups, removals over
    several maps, allocations in windows that fill, iova_begin > iova_last), print the same
    transcript on the project's library as on QEMU's util/iova-tree.c with the seed patch,
    apart from the deviations the program keeps away from (its header says how).  Only
    map->iova of a caller's DMAMap is ever written, and found maps memcmp() equal."""
    sources = [C_TESTS / "tree-workload.c"]
    ours = build_on_project(tmp_path, "tree-ours", sources, project_library, [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "tree-qemu", sources, seeded_qemu, qemu)
    for seed, universe in (("1", "0x1000"), ("2", "0x10000"), ("3", "0x10000000000")):
        expected = run(theirs, "20000", seed, universe)
        got = run(ours, "20000", seed, universe)
        assert got == expected, first_difference(got, expected)
        for outcome in ("-> 0", "-> -1", "-> -2", "one-of-them=1", "find_iova", "gone=1"):
            assert outcome in expected, outcome
        if universe == "0x1000":
            assert "-> -3" in expected
        for wrong in ("lost", "untouched=0", "found-equal=0", "one-of-them=0", "gone=0"):
            assert wrong not in got, wrong


def test_the_project_vhost_iova_tree_answers_as_qemus_for_careful_callers(
        tmp_path: Path, qemu: Path, seeded_qemu: Path, project_library: Path) -> None:
    """The project's own VhostIOVATree through QEMU's prototypes, against QEMU's, for a caller
    that never maps a GPA range twice and removes only the maps it was handed (the two places
    where the project's intentionally differs: the rollback and exact removals)."""
    ours = build_on_project(tmp_path, "workload-project-vhost", [C_TESTS / "vhost-workload.c"],
                            project_library, [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "workload-qemu",
                           [C_TESTS / "vhost-workload.c", qemu / "hw/virtio/vhost-iova-tree.c"],
                           seeded_qemu, qemu)
    expected = run(theirs, "--careful", "--ops", "40000")
    got = run(ours, "--careful", "--ops", "40000")
    assert got == expected, first_difference(got, expected)


def first_difference(got: str, expected: str) -> str:
    for n, (a, b) in enumerate(zip(got.splitlines(), expected.splitlines(), strict=False), 1):
        if a != b:
            return f"line {n}: project {a!r}, QEMU {b!r}"
    return f"lengths differ: {len(got.splitlines())} lines, QEMU {len(expected.splitlines())}"


# ------------------------------------------------------------------ vIOMMU callers, layout


def test_a_viommu_replaying_its_page_table_sees_equal_maps_equal(
        tmp_path: Path, project_library: Path) -> None:
    """intel_iommu's page walk and amd_iommu's notifier look the IOVA up and memcmp() the
    record against the new entry: with nothing of the library's inside the packed 36-byte
    DMAMap, an unchanged walk tells the device nothing, and a changed one exactly the changes
    (tests/c/viommu-replay.c checks the counts itself)."""
    binary = build_on_project(tmp_path, "viommu", [C_TESTS / "viommu-replay.c"],
                              project_library, [INCLUDE])
    out = run(binary)
    assert "unchanged walk         maps     0 unmaps     0 skipped  1534" in out


def test_the_viommu_caller_counts_the_same_on_qemus_tree(
        tmp_path: Path, qemu: Path, seeded_qemu: Path, project_library: Path) -> None:
    ours = build_on_project(tmp_path, "viommu-ours", [C_TESTS / "viommu-replay.c"],
                            project_library, [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "viommu-qemu", [C_TESTS / "viommu-replay.c"],
                           seeded_qemu, qemu)
    assert run(ours) == run(theirs)


def test_dmamap_has_qemus_layout_under_either_header(tmp_path: Path, qemu: Path,
                                                     seeded_qemu: Path) -> None:
    """tests/c/dmamap-layout.c asserts sizeof and offsetof of every field (_Static_assert) and
    prints them; built against QEMU's header and against the project's, it compiles and prints
    the same."""
    program = C_TESTS / "dmamap-layout.c"
    ours, theirs = tmp_path / "layout-ours", tmp_path / "layout-qemu"
    cc([*STRICT, f"-I{INCLUDE}", f"-I{qemu / 'shim'}", "-o", str(ours), str(program),
        *glib_flags(), *glib_flags("--libs")])
    cc([*STRICT, f"-I{seeded_qemu / 'include'}", f"-I{qemu / 'shim'}", "-o", str(theirs),
        str(program), *glib_flags(), *glib_flags("--libs")])
    assert run(ours) == run(theirs)
    assert "sizeof 36 align 1 array stride 36" in run(ours)


@pytest.mark.parametrize("order", ["project-first", "qemu-first"])
@pytest.mark.parametrize("memory_h", ["system/memory.h", "exec/memory.h"])
def test_qemus_own_definitions_are_not_repeated(tmp_path: Path, qemu: Path,
                                                project_library: Path, order: str,
                                                memory_h: str) -> None:
    """hwaddr, HWADDR_MAX, IOMMUAccessFlags and IOMMU_* come from QEMU's exec/hwaddr.h and
    memory header when a translation unit has them, in either order of inclusion."""
    flags = ["-DQEMU_HEADERS_FIRST"] if order == "qemu-first" else []
    flags += ["-DOLD_MEMORY_H"] if memory_h == "exec/memory.h" else []
    binary = tmp_path / "include-order"
    cc([*STRICT, *flags, f"-I{INCLUDE}", f"-I{qemu / 'shim'}", "-o", str(binary),
        str(C_TESTS / "include-order.c"), *glib_flags(), *link_project(project_library)])
    assert run(binary).strip() == "alloc 0 at 1000 perm 3"


@pytest.mark.parametrize("holes", [False, True], ids=["holes at the first alloc", "holes kept"])
def test_every_invariant_holds_after_every_call_of_a_random_churn(
        tmp_path: Path, project_library: Path, holes: bool) -> None:
    """The AVL trees' summaries are kept incrementally (an insert folds the new map into each
    ancestor's; a removal recomputes only where the removed map was part of it): check()
    after each of 15,000 random calls on a crowded tree holds them to a full recomputation."""
    binary = build_on_project(tmp_path, "check-churn", [C_TESTS / "check-churn.c"],
                              project_library, [])
    for seed in range(1, 4):
        out = run(binary, "15000", str(seed), *(["holes"] if holes else []))
        assert out.startswith("ok "), out


@pytest.mark.parametrize("holes", [False, True], ids=["holes at the first alloc", "holes kept"])
def test_every_invariant_holds_when_each_call_changes_what_gives_the_summaries(
        tmp_path: Path, project_library: Path, holes: bool) -> None:
    """tests/c/check-extremes.c: on a tree of 3,000 maps, allocations from the hole at 0 (the
    only one of alignment 64) and from the top of the longest hole, maps reaching furthest in
    the translated space and a map at IOVA 0, each taken out again newest first: every call
    changes the element that gives a summary to each subtree on its way to the root, so the
    walks up run long, and one that stops a level too soon (or recomputes the wrong summary)
    leaves a stale one that check(), after every call, finds."""
    binary = build_on_project(tmp_path, "check-extremes", [C_TESTS / "check-extremes.c"],
                              project_library, [])
    for seed in range(1, 3):
        out = run(binary, "3000", str(seed), *(["holes"] if holes else []))
        assert out.startswith("ok ") and int(out.split()[1]) > 2500, out


@pytest.mark.parametrize("holes", [False, True], ids=["holes at the first alloc", "holes kept"])
def test_every_answer_matches_a_brute_force_model_at_the_edges_of_the_space(
        tmp_path: Path, project_library: Path, holes: bool) -> None:
    """tests/c/check-model.c: maps at 0 and ending at 2**64-1, sizes up to 2**64-1, ids that
    differ only in high bits, many maps aliasing one translated range, removals reaching the
    top, allocations with every alignment and both policies, a tree emptied and refilled, runs
    that store maps of one id only (no id tree kept, then the reverse tree copied into it): each
    return code, overlapped map, removal count, allocated IOVA and look-up held to an array of
    the maps, and check() after every call, on a small tree and on one of a few thousand."""
    small = build_on_project(tmp_path, "check-model", [C_TESTS / "check-model.c"],
                             project_library, [])
    for seed in range(1, 4):
        out = run(small, "40000", str(seed), *(["holes"] if holes else []))
        assert out.startswith("ok "), out
    big = tmp_path / "check-model-big"
    cc([*STRICT, "-DMAX_MAPS=4096", f"-I{INCLUDE}", "-o", str(big),
        str(C_TESTS / "check-model.c"), *glib_flags(), *link_project(project_library)])
    out = run(big, "30000", "7", *(["holes"] if holes else []))
    assert out.startswith("ok ") and int(out.split()[-2]) > 1000, out




@pytest.mark.parametrize("reserve", ["4096", "0"],
                         ids=["flat blocks, then blocks past them", "only the first block flat"])
def test_an_arena_past_its_reservation_answers_as_the_model(tmp_path: Path, reserve: str) -> None:
    """An arena lays its blocks side by side from its first one as far as it may grow in
    place, and finds the rest through its block table (csrc/iova-arena.h): with 4 KiB to grow
    in and 4-element blocks, a tree of a few thousand maps has elements of both kinds, and
    with nothing to grow in (no mapping at all: the first block from aligned_alloc()) all but
    the first block's are of the second; either answers tests/c/check-model.c as the shipped
    core does, removals (an element's reference from its address) included."""
    lib = tmp_path / "lib"
    lib.mkdir()
    build_library(lib, "-DIOVA_ARENA_SHIFT=2", f"-DIOVA_ARENA_RESERVE={reserve}")
    binary = tmp_path / "check-model-big"
    cc([*STRICT, "-DMAX_MAPS=4096", f"-I{INCLUDE}", "-o", str(binary),
        str(C_TESTS / "check-model.c"), *glib_flags(), *link_project(lib)])
    for holes in ([], ["holes"]):
        out = run(binary, "20000", "3", *holes)
        assert out.startswith("ok ") and int(out.split()[-2]) > 1000, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_an_arena_costs_a_mapping_until_it_grows_and_stays_flat_when_it_does(
        tmp_path: Path) -> None:
    """tests/c/check-arena.c: 2,000 one-element arenas cost one mapping and one block of
    address space each (no range reserved up front); an arena grown to six blocks has all
    six flat (base + reference * size) in at most two mappings and at most twice their
    address space (it held 256 MiB); where a mapping of someone
    else's sits one or four blocks above the first block, the blocks below it are flat and
    the rest come from aligned_alloc(), every reference finding its element and back."""
    binary = tmp_path / "check-arena"
    cc([*STRICT, f"-I{CSRC}", "-o", str(binary), str(C_TESTS / "check-arena.c"),
        str(CSRC / "iova-arena.c")])
    out = run(binary)
    assert out.rstrip().endswith("ok") and "6 blocks: 6 flat" in out, out


def test_a_fresh_arena_block_reads_as_unwritten_under_memcheck(tmp_path: Path) -> None:
    """A fresh mapping reads as zeros, which memcheck takes for written: every block the
    arena maps itself is marked unwritten, the first one included (it was not, so the
    memcheck run over check-model, whose 1,500 maps fit in first blocks, could catch no read
    of a field never written), and the first block of an arena reset and grown again.
    tests/c/check-arena.c "unwritten" counts memcheck's errors itself."""
    binary = tmp_path / "check-arena-unwritten"
    cc([*STRICT, f"-I{CSRC}", "-o", str(binary), str(C_TESTS / "check-arena.c"),
        str(CSRC / "iova-arena.c")])
    out = run(Path(tool("valgrind")), "-q", str(binary), "unwritten")
    if out.startswith("skip"):
        pytest.skip(out.strip())
    assert out.rstrip().endswith("ok"), out


@pytest.mark.parametrize("flags", [[], ["-U__SIZEOF_INT128__"]],
                         ids=["128-bit integer", "none, as on a 32-bit host"])
def test_the_pair_order_is_the_lexicographic_one(tmp_path: Path, flags: list[str]) -> None:
    """tests/c/avl-pair.c: avl_pair_before(), one 128-bit comparison or two, orders every
    pairing of 64-bit edge values as a lexicographic comparison does."""
    binary = tmp_path / "avl-pair"
    cc([*STRICT, *flags, f"-I{CSRC}", "-o", str(binary), str(C_TESTS / "avl-pair.c"),
        *glib_flags()])
    assert run(binary).startswith("ok 6561"), "every pairing compared"

def test_the_core_without_a_128_bit_integer_answers_as_the_model(tmp_path: Path) -> None:
    """The trees' pair orders compare as one 128-bit number where the compiler has one
    (csrc/iova-avl.h, avl_pair_before()), and as two comparisons on 32-bit hosts, which have
    none: the core built as there (__SIZEOF_INT128__ undefined) answers tests/c/check-model.c
    as the shipped one does."""
    lib = tmp_path / "lib"
    lib.mkdir()
    build_library(lib, "-U__SIZEOF_INT128__")
    binary = build_on_project(tmp_path, "check-model-no-int128", [C_TESTS / "check-model.c"],
                              lib, [])
    for holes in ([], ["holes"]):
        out = run(binary, "20000", "5", *holes)
        assert out.startswith("ok "), out


def test_no_element_of_the_arena_is_read_before_it_is_written(tmp_path: Path) -> None:
    """The arena hands its elements out unzeroed (csrc/iova-arena.h): every field must be
    written before it is read.  The holes built in one pass (iova_holes_build(), at
    keep_holes() and at a tree's first alloc) had avl_update() compare a fresh element's
    height and summaries, never written, with the new ones.  Valgrind's memcheck over
    tests/c/check-model.c, built at -O0 so that no such read is optimised away."""
    binary = tmp_path / "check-model-O0"
    cc(["-std=gnu11", "-O0", "-g", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", f"-I{CSRC}",
        "-o", str(binary), str(C_TESTS / "check-model.c"), *(str(CSRC / s) for s in CORE),
        *glib_flags(), *glib_flags("--libs")])
    for holes in ([], ["holes"]):
        out = run(Path(tool("valgrind")), "-q", "--error-exitcode=9", str(binary), "1500", "3",
                  *holes)
        assert out.startswith("ok "), out


@pytest.mark.parametrize("holes", ["none", "holes"], ids=["holes at the first alloc", "holes kept"])
def test_a_call_that_runs_out_of_memory_changes_nothing(tmp_path: Path, holes: str) -> None:
    """tests/c/check-oom.c: insert, alloc (both policies, every alignment), remove and clear
    with the 1st, 2nd, ... allocation of the call failing (alone, then with every one after
    it), on a core with 4-element arena blocks: each IOVA_ERR_OOM leaves the maps as they
    were and check() passing, and a call that goes through answers as on a tree that never
    ran out, arenas' free lists and reserve()'s early return included."""
    binary = tmp_path / "check-oom"
    cc([*STRICT, "-DIOVA_ARENA_SHIFT=2", f"-I{INCLUDE}", f"-I{CSRC}", "-o", str(binary),
        str(C_TESTS / "check-oom.c"), *(str(CSRC / s) for s in CORE), "-Wl,--wrap=malloc",
        "-Wl,--wrap=realloc", "-Wl,--wrap=aligned_alloc", "-Wl,--wrap=mmap",
        "-Wl,--wrap=mprotect", *glib_flags(), *glib_flags("--libs")])
    for sticky in ([], ["sticky"]):
        out = run(binary, "4000", "1", holes, *sticky)
        assert out.startswith("ok ") and int(out.split()[2]) > 100, out


def test_a_removal_of_several_maps_out_of_memory_loses_no_range(tmp_path: Path) -> None:
    """tests/c/remove-span-oom.c: a removal of two maps with the freed-range log full, or a
    logged range between the two, and the allocations of the call failing from the 1st, 2nd,
    ... on: the second map's range had no hole below it and needed a hole element that none
    had set aside; its give failed unseen, the range was lost to the holes and the log
    (check() failed, no alloc could place a map there again)."""
    binary = tmp_path / "remove-span-oom"
    cc([*STRICT, "-DIOVA_ARENA_SHIFT=2", f"-I{INCLUDE}", f"-I{CSRC}", "-o", str(binary),
        str(C_TESTS / "remove-span-oom.c"), *(str(CSRC / s) for s in CORE), "-Wl,--wrap=malloc",
        "-Wl,--wrap=realloc", "-Wl,--wrap=aligned_alloc", "-Wl,--wrap=mmap",
        "-Wl,--wrap=mprotect", *glib_flags(), *glib_flags("--libs")])
    out = run(binary)
    assert out.startswith("ok ") and int(out.split()[2]) > 0, out


def test_a_program_without_qemu_builds_on_the_headers_alone(tmp_path: Path,
                                                            project_library: Path) -> None:
    """Outside QEMU the headers define what QEMU's would (pedantic C11), and QEMU's autoptr
    cleanup for VhostIOVATree works."""
    source = tmp_path / "standalone.c"
    source.write_text(
        '#include <stdio.h>\n#include "qemu/iova-tree.h"\n'
        '#include "hw/virtio/vhost-iova-tree.h"\n'
        "int main(void)\n{\n"
        "    g_autoptr(VhostIOVATree) tree = vhost_iova_tree_new(0, 0xffffff);\n"
        "    DMAMap map = { .translated_addr = 0x7f00, .size = 0xfff, .perm = IOMMU_RW };\n"
        "    int rc = vhost_iova_tree_map_alloc(tree, &map, 0x7f00);\n"
        "    const DMAMap *hit = vhost_iova_tree_find_iova(tree, &map);\n"
        '    printf("%d %d %llx\\n", rc, hit && hit->iova == map.iova,\n'
        "           (unsigned long long)vhost_iova_tree_first(tree));\n"
        "    vhost_iova_tree_remove(tree, map);\n"
        "    return vhost_iova_tree_find_iova(tree, &map) != NULL;\n}\n")
    binary = tmp_path / "standalone"
    cc(["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-o",
        str(binary), str(source), *glib_flags(), *link_project(project_library)])
    page = subprocess.run(["getconf", "PAGESIZE"], capture_output=True, text=True,
                          check=False).stdout.strip()
    assert run(binary).split() == ["0", "1", f"{int(page):x}"]


def test_the_headers_compile_and_link_as_cplusplus(tmp_path: Path,
                                                   project_library: Path) -> None:
    """A C++ translation unit (a test harness, a fuzzer) includes both headers and links the
    library: the declarations have C linkage and the layout check is one C++ accepts."""
    source = tmp_path / "from-cxx.cc"
    source.write_text(
        '#include <cstdio>\n#include "qemu/iova-tree.h"\n'
        '#include "hw/virtio/vhost-iova-tree.h"\n'
        "int main()\n{\n"
        "    IOVATree *tree = iova_tree_new();\n"
        "    DMAMap map = { 0, 0x7f00, 0xfff, 5, IOMMU_RW };\n"
        "    int rc = iova_tree_alloc_map(tree, &map, 0x1000, HWADDR_MAX - 1);\n"
        "    const DMAMap *hit = iova_tree_find_iova(tree, &map);\n"
        "    VhostIOVATree *vhost = vhost_iova_tree_new(0, 0xffffff);\n"
        '    std::printf("%d %d %zu\\n", rc, hit && hit->iova == 0x1000, sizeof(DMAMap));\n'
        "    vhost_iova_tree_delete(vhost);\n"
        "    iova_tree_destroy(tree);\n"
        "    return 0;\n}\n")
    binary = tmp_path / "from-cxx"
    cmd = [tool("c++"), "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-o",
           str(binary), str(source), *glib_flags(), *link_project(project_library)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{shlex.join(cmd)}\n{result.stderr}"
    assert run(binary).split() == ["0", "1", "36"]


UNPERMITTED_ALLOC = r"""
#include "qemu/osdep.h"
#include "qemu/iova-tree.h"

/* An IOMMU_NONE map allocated with and without room, in a 36-byte box between canaries. */
int main(void)
{
    IOVATree *tree = iova_tree_new();
    DMAMap low = { .iova = 0, .translated_addr = 0, .size = 0xffff, .perm = IOMMU_RW };
    hwaddr lasts[2] = { 0xffff, HWADDR_MAX - 1 };

    iova_tree_insert(tree, &low);
    for (int i = 0; i < 2; i++) {
        struct { uint64_t before; DMAMap map; uint64_t after; } QEMU_PACKED box;
        memset(&box, 0xa5, sizeof(box));
        box.map = (DMAMap){ .iova = 0x77, .translated_addr = 0x5000, .size = 0xfff, .id = 2,
                            .perm = IOMMU_NONE };
        int rc = iova_tree_alloc_map(tree, &box.map, 0, lasts[i]);
        printf("rc %d iova %" PRIx64 " canaries %d\n", rc, box.map.iova,
               box.before == 0xa5a5a5a5a5a5a5a5ULL && box.after == 0xa5a5a5a5a5a5a5a5ULL);
    }
    iova_tree_destroy(tree);
    return 0;
}
"""


def test_alloc_of_an_unpermitted_map_is_refused_first_and_writes_nothing(
        tmp_path: Path, qemu: Path, seeded_qemu: Path, project_library: Path) -> None:
    """Deviation 10 in C: the project refuses an IOMMU_NONE map with IOVA_ERR_INVALID before
    any search and leaves the map as it was; QEMU's tree answers IOVA_ERR_NOMEM without room
    and, with room, writes the hole into map->iova before refusing."""
    source = tmp_path / "unpermitted-alloc.c"
    source.write_text(UNPERMITTED_ALLOC)
    ours = build_on_project(tmp_path, "unpermitted-ours", [source], project_library,
                            [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "unpermitted-qemu", [source], seeded_qemu, qemu)
    assert run(ours).splitlines() == ["rc -1 iova 77 canaries 1"] * 2
    assert run(theirs).splitlines() == ["rc -3 iova 77 canaries 1", "rc -1 iova 10000 canaries 1"]


PERM_ABOVE_RW = r"""
#include "qemu/osdep.h"
#include "qemu/iova-tree.h"

/* Maps whose perm is 1 to 7 (4 to 7 are no IOMMUAccessFlags value) inserted, GPA-inserted
 * and allocated; one line per perm with the three answers. */
int main(void)
{
    IOVATree *tree = iova_tree_new(), *gpa = gpa_tree_new();

    for (int p = 1; p < 8; p++) {
        DMAMap m = { .iova = 0x1000 * p, .translated_addr = 0x1000 * p, .size = 0xfff,
                     .perm = (IOMMUAccessFlags)p };
        DMAMap a = { .translated_addr = 0x9000, .size = 0xff, .perm = (IOMMUAccessFlags)p };
        int inserted = iova_tree_insert(tree, &m), gpa_inserted = gpa_tree_insert(gpa, &m);
        int allocated = iova_tree_alloc_map(tree, &a, 0x100000, 0x1fffff);
        printf("perm %d insert %d gpa %d alloc %d\n", p, inserted, gpa_inserted, allocated);
    }
    iova_tree_destroy(tree);
    iova_tree_destroy(gpa);
    return 0;
}
"""


def test_a_perm_above_iommu_rw_is_refused_where_qemu_stores_it(
        tmp_path: Path, qemu: Path, seeded_qemu: Path, project_library: Path) -> None:
    """Deviation 11 in C: the project answers IOVA_ERR_INVALID for a perm that is no
    IOMMUAccessFlags value, in insert, gpa_tree_insert and alloc; QEMU's tree stores it."""
    source = tmp_path / "perm-above-rw.c"
    source.write_text(PERM_ABOVE_RW)
    ours = build_on_project(tmp_path, "perm-ours", [source], project_library, [qemu / "shim"])
    theirs = build_on_qemu(tmp_path, "perm-qemu", [source], seeded_qemu, qemu)
    ok = [f"perm {p} insert 0 gpa 0 alloc 0" for p in range(1, 4)]
    assert run(ours).splitlines() == ok + [f"perm {p} insert -1 gpa -1 alloc -1"
                                          for p in range(4, 8)]
    assert run(theirs).splitlines() == ok + [f"perm {p} insert 0 gpa 0 alloc 0"
                                            for p in range(4, 8)]


# ------------------------------------------------------------------ the installed package


def iova_native_config(*options: str) -> list[str]:
    """What ``iova-native config OPTIONS`` prints: flags split as a shell splits them, folders
    (``--includedir`` and the like) one a line as printed, spaces and all."""
    result = subprocess.run([sys.executable, "-m", "iova_native", "config", *options],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    if set(options) <= {"--cflags", "--libs"}:
        return shlex.split(result.stdout)
    return result.stdout.splitlines()


def test_a_program_builds_against_the_installed_package(tmp_path: Path) -> None:
    """`iova-native config --cflags --libs` is all a C program needs: QEMU's include paths
    resolve to the shipped headers, the rpath finds the shipped library when it runs (no
    LD_LIBRARY_PATH, from another folder)."""
    tool("pkg-config")
    glib_flags()
    source = C_TESTS / "viommu-replay.c"
    binary = tmp_path / "viommu"
    cc(["-std=c11", "-Wall", "-Wextra", "-Werror", *iova_native_config("--cflags"),
        "-o", str(binary), str(source), *iova_native_config("--libs")])
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    result = subprocess.run([str(binary)], cwd="/", env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unchanged walk         maps     0 unmaps     0" in result.stdout
    include = Path(iova_native_config("--includedir")[0])
    assert (include / "qemu" / "iova-tree.h").read_bytes() == \
        (INCLUDE / "qemu" / "iova-tree.h").read_bytes() or not INCLUDE.is_dir()


def test_the_pkg_config_file_gives_the_same_build(tmp_path: Path) -> None:
    """The shipped iova-native.pc is relocatable (${pcfiledir}): with PKG_CONFIG_PATH set to
    `iova-native config --pkgconfigdir`, pkg-config gives flags that build and run a program."""
    pc_dir = iova_native_config("--pkgconfigdir")[0]
    env = dict(os.environ, PKG_CONFIG_PATH=pc_dir)
    flags = subprocess.run([tool("pkg-config"), "--cflags", "--libs", "iova-native"],
                           capture_output=True, text=True, env=env, check=False)
    assert flags.returncode == 0, flags.stderr
    version = subprocess.run(["pkg-config", "--modversion", "iova-native"], capture_output=True,
                             text=True, env=env, check=False).stdout.strip()
    import iova_native

    assert version == iova_native.__version__
    binary = tmp_path / "viommu"
    cc(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(binary),
        str(C_TESTS / "viommu-replay.c"), *shlex.split(flags.stdout)])
    assert "unchanged walk again   maps     0 unmaps     0" in run(binary)


def test_the_library_exports_only_the_public_api() -> None:
    """Only iova_tree_*, gpa_tree_* and vhost_iova_tree_* leave the shared library: the
    AVL, arena and hole helpers stay inside, so they cannot clash with a program's names."""
    lib = Path(config.get_lib_dir()) / "libiova-native.so"
    result = subprocess.run([tool("nm"), "-D", "--defined-only", str(lib)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    names = [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]
    assert "iova_tree_find_iova" in names and "vhost_iova_tree_map_alloc_gpa" in names
    assert [n for n in names if not n.startswith(("iova_tree_", "gpa_tree_",
                                                  "vhost_iova_tree_"))] == []


def test_config_without_options_lists_every_item() -> None:
    result = subprocess.run([sys.executable, "-m", "iova_native", "config"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == \
        ["cflags", "libs", "includedir", "libdir", "pkgconfigdir"]
