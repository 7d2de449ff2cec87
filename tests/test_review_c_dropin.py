# SPDX-License-Identifier: GPL-2.0-or-later
"""A QEMU developer's review of the C library as a drop-in for util/iova-tree.c
(docs/c-library.md): each C program here is built from csrc/ as the library is, and each test
failed before its fix; the differential run holds every answer to QEMU's own tree in one
process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# test_c_library's helpers, and its fixtures qemu and seeded_qemu (QEMU's tree, seed patch)
from test_c_library import (  # noqa: F401
    C_TESTS,
    CORE,
    CSRC,
    INCLUDE,
    STRICT,
    cc,
    glib_flags,
    qemu,
    run,
    seeded_qemu,
    tool,
)


def build_on_core(tmp: Path, name: str, source: str, *flags: str) -> Path:
    """``source`` (C text) built with the core's sources from csrc/."""
    program = tmp / f"{name}.c"
    program.write_text(source)
    binary = tmp / name
    cc([*STRICT, *flags, f"-I{INCLUDE}", "-o", str(binary), str(program),
        *(str(CSRC / s) for s in CORE), *glib_flags("--cflags"), *glib_flags("--libs")])
    return binary


REMOVE_ALL = r"""
#include <stdio.h>
#include "qemu/iova-tree.h"

int main(void)
{
    IOVATree *tree = iova_tree_new();
    iova_tree_keep_holes(tree);
    for (int i = 0; i < 20000; i++) {
        DMAMap map = { .translated_addr = 0x1000 * (hwaddr)i, .size = 0xfff, .perm = IOMMU_RW };
        if (iova_tree_alloc_map(tree, &map, 0x1000, HWADDR_MAX) != IOVA_OK) {
            return 1;
        }
    }
    size_t before = iova_tree_mapped_bytes(tree);
    DMAMap all = { .iova = 0, .size = HWADDR_MAX };
    iova_tree_remove(tree, all);
    printf("%zu %zu\n", iova_tree_nnodes(tree), iova_tree_mapped_bytes(tree) - before);
    iova_tree_destroy(tree);
    return 0;
}
"""


def test_removing_many_maps_maps_no_memory_for_holes_it_never_makes(tmp_path: Path) -> None:
    """A range removal reserved one hole element a map removed (32 bytes each: removing 1M
    maps mapped 32 MB more, held until the tree is cleared, and under memory pressure the
    removal did nothing where QEMU's removes). They go in IOVA order, so every one after the
    first grows the hole just below it: one element is all the removal needs."""
    binary = build_on_core(tmp_path, "remove-all", REMOVE_ALL)
    left, grown = (int(x) for x in run(binary).split())
    assert left == 0
    assert grown == 0, f"removing 20,000 maps mapped {grown} bytes more"


@pytest.fixture(scope="module")
def qemu_object(seeded_qemu: Path,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """QEMU's util/iova-tree.c with the seed patch, its global symbols renamed qemu_*."""
    return rename_globals([seeded_qemu / "qemu-iova-tree.o"],
                          tmp_path_factory.mktemp("qemu-renamed") / "qemu-iova-tree.o")


def test_every_answer_near_both_ends_of_the_space_is_qemus_or_a_written_deviation(
        tmp_path: Path, qemu_object: Path) -> None:
    """tests/c/qemu-differential.c: the project's tree and QEMU's in one process, 30,000
    random calls a seed crowding 0 and 2**64-1 (inserts with wrapping or unpermitted maps,
    range removals, sized and one-byte look-ups, id-matched reverse look-ups, allocations with
    iova_begin and iova_last at the edges), on IOVA trees and on GPA trees, every answer
    compared with QEMU's and the two trees compared with memcmp() after each call. Where they
    differ it must be one of the deviations of docs/contract.md, each seen at least once."""
    binary = tmp_path / "qemu-differential"
    cc([*STRICT, f"-I{INCLUDE}", "-o", str(binary), str(C_TESTS / "qemu-differential.c"),
        *(str(CSRC / s) for s in CORE), str(qemu_object),
        *glib_flags("--cflags"), *glib_flags("--libs")])
    # the deviations each kind of tree must show (3 needs a full top of the space: rare)
    for kind, shown in (("iova", {"1", "2", "4", "7", "8", "11"}), ("gpa", {"4", "8", "9", "11"})):
        for seed in ("1", "2", "3"):
            out = run(binary, "30000", seed, kind)
            seen = dict(item.split(":") for item in out.split("seen:")[1].split())
            assert all(int(seen[dev]) > 0 for dev in shown), out


def test_a_vhost_call_that_runs_out_of_memory_changes_nothing(tmp_path: Path) -> None:
    """tests/c/vhost-oom.c: check-oom.c's method on the VhostIOVATree calls, which it does
    not make (map_alloc, map_alloc_gpa with its rollback, both removals, clear), with GLib's
    g_try_malloc() failing too (a GPA tree's copy of a map, which no wrapped malloc() reaches):
    each IOVA_ERR_OOM leaves the three trees as they were and check() passing."""
    binary = tmp_path / "vhost-oom"
    cc([*STRICT, "-DIOVA_ARENA_SHIFT=2", f"-I{INCLUDE}", f"-I{CSRC}", "-o", str(binary),
        str(C_TESTS / "vhost-oom.c"), *(str(CSRC / s) for s in CORE),
        "-Wl,--wrap=malloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=mmap,--wrap=mprotect,"
        "--wrap=g_try_malloc", *glib_flags("--cflags"), *glib_flags("--libs")])
    for sticky in ([], ["sticky"]):
        out = run(binary, "3000", "1", *sticky)
        assert out.startswith("ok ") and int(out.split()[2]) > 100, out


def declared_functions(include: Path) -> set[str]:
    """The functions the shipped headers declare (every prototype starts a line)."""
    names = set()
    for header in include.rglob("*.h"):
        for line in header.read_text().splitlines():
            match = re.match(r"^[A-Za-z_][\w \t*]*?\b((?:iova|gpa|vhost_iova)_tree_\w+)\(", line)
            if match:
                names.add(match.group(1))
    return names


def test_every_function_the_shipped_library_exports_is_declared_by_a_shipped_header() -> None:
    """The library exported iova_tree_foreach_range() and iova_tree_foreach_translated(),
    which c-library.md offers, with their prototypes only in csrc/iova-range.h, which no wheel
    carries; and iova_tree_view(), an internal helper returning an internal struct, under the
    public prefix."""
    from iova_native import config

    try:
        lib = Path(config.get_lib_dir()) / "libiova-native.so"
        include = Path(config.get_include())
    except config.ConfigError as exc:
        pytest.skip(f"the package was built without its C library: {exc}")
    listing = subprocess.run([tool("nm"), "-D", "--defined-only", str(lib)],
                             capture_output=True, text=True, check=True).stdout
    exported = {fields[2] for fields in (line.split() for line in listing.splitlines())
                if len(fields) == 3 and fields[1] == "T"}
    assert exported, listing
    assert exported - declared_functions(include) == set()


def test_the_shipped_library_carries_no_run_path_of_the_build_machine() -> None:
    """libiova-native.so was linked with Python's LDSHARED, whose LDFLAGS (a pyenv Python's)
    gave it RUNPATH /root/.pyenv/versions/.../lib: a folder of the build machine, searched
    first for libglib-2.0 wherever the wheel is installed. The library needs no run path."""
    from iova_native import config

    try:
        lib = Path(config.get_lib_dir()) / "libiova-native.so"
    except config.ConfigError as exc:
        pytest.skip(f"the package was built without its C library: {exc}")
    dynamic = subprocess.run([tool("readelf"), "-d", str(lib)], capture_output=True, text=True,
                             check=True).stdout
    assert "RUNPATH" not in dynamic and "RPATH" not in dynamic, dynamic


def rename_globals(objects: list[Path], out: Path) -> Path:
    """``objects`` linked into one (ld -r), every global it defines renamed qemu_*."""
    joined = out.with_suffix(".joined.o")
    subprocess.run([tool("ld"), "-r", "-o", str(joined), *map(str, objects)], check=True)
    names = subprocess.run([tool("nm"), "-g", "--defined-only", str(joined)],
                           capture_output=True, text=True, check=True).stdout.split()[2::3]
    subprocess.run([tool("objcopy"), *(f"--redefine-sym={n}=qemu_{n}" for n in names),
                    str(joined), str(out)], check=True)
    return out


def test_qemus_vhost_file_at_the_top_of_the_space_answers_as_on_qemus_tree(
        tmp_path: Path, qemu: Path, seeded_qemu: Path) -> None:  # noqa: F811
    """tests/c/vhost-differential.c: QEMU's hw/virtio/vhost-iova-tree.c on this library and
    on QEMU's util/iova-tree.c in one process, in windows at both ends of the space
    (iova_last = 2**64-1 included, where tests/c/vhost-workload.c never goes), each answer and
    each caller's map compared with memcmp(); only deviations 1 and 2 may tell them apart."""
    vhost_c = qemu / "hw" / "virtio" / "vhost-iova-tree.c"
    theirs_vhost = tmp_path / "qemu-vhost.o"
    cc(["-std=gnu11", "-O1", "-g", "-c", f"-I{seeded_qemu / 'include'}", f"-I{qemu / 'shim'}",
        f"-I{qemu}", "-o", str(theirs_vhost), str(vhost_c), *glib_flags("--cflags")])
    theirs = rename_globals([seeded_qemu / "qemu-iova-tree.o", theirs_vhost],
                            tmp_path / "qemu-renamed.o")
    ours_vhost = tmp_path / "vhost-on-ours.o"
    cc([*STRICT, "-c", f"-I{INCLUDE}", f"-I{qemu / 'shim'}", "-o", str(ours_vhost), str(vhost_c),
        *glib_flags("--cflags")])
    binary = tmp_path / "vhost-differential"
    # the core without its own VhostIOVATree: QEMU's file provides those names here
    core = [str(CSRC / s) for s in CORE if s != "vhost-iova-tree.c"]
    cc([*STRICT, f"-I{INCLUDE}", "-o", str(binary), str(C_TESTS / "vhost-differential.c"),
        str(ours_vhost), *core, str(theirs), *glib_flags("--cflags"), *glib_flags("--libs")])
    tops = 0
    for seed in ("1", "2", "3"):
        out = run(binary, "40000", seed)
        assert "calls agree" in out, out
        tops += int(out.split("windows, ")[1].split()[0])
    assert tops > 0  # the top of the space was reached


@pytest.mark.parametrize("holes", [[], ["holes"]], ids=["holes at the first alloc", "holes kept"])
def test_an_iterator_that_changes_the_tree_as_qemus_callers_may_leaves_it_whole(
        tmp_path: Path, holes: list[str]) -> None:
    """tests/c/walk-and-change.c: an iova_tree_foreach() iterator that removes a later or an
    earlier map, inserts, allocates, or removes its own map and stops (GLib's walk steps on
    after it returns, so QEMU's tree takes all of these): the walk visits what GLib's would,
    check() passes, and memcheck sees no read of freed memory."""
    binary = tmp_path / "walk-and-change"
    cc(["-std=gnu11", "-O0", "-g", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-o",
        str(binary), str(C_TESTS / "walk-and-change.c"), *(str(CSRC / s) for s in CORE),
        *glib_flags("--cflags"), *glib_flags("--libs")])
    valgrind = shutil.which("valgrind")
    prefix = [valgrind, "-q", "--error-exitcode=9"] if valgrind else []
    # (visited, left): 0 removes every third map's successor, 1 every map two below, 2 adds
    # 64 maps it then visits, 3 allocates 51 times and stops, 4 empties the tree a map a walk
    expected = {"0": "43 43", "1": "64 2", "2": "128 128", "3": "51 115", "4": "64 0"}
    for mode, want in expected.items():
        result = subprocess.run([*prefix, str(binary), mode, *holes], capture_output=True,
                                text=True, timeout=300, check=False,
                                env={**os.environ, "G_SLICE": "always-malloc"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split() == [*want.split(), "ok"], (mode, result.stdout)


def test_the_differential_run_is_clean_under_address_and_undefined_behaviour_sanitizers(
        tmp_path: Path, qemu_object: Path) -> None:
    """The same calls as the differential test, the core built with ASan and UBSan (and
    LeakSanitizer: every tree destroyed, populated or not, gives back all it took)."""
    binary = tmp_path / "qemu-differential-asan"
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
             "-fno-omit-frame-pointer"]
    probe = subprocess.run([tool("cc"), *flags, "-x", "c", "-o", str(tmp_path / "probe"), "-"],
                           input="int main(void) { return 0; }\n", capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the compiler cannot build with the sanitizers: {probe.stderr[-300:]}")
    cc([*STRICT, *flags, f"-I{INCLUDE}", "-o", str(binary),
        str(C_TESTS / "qemu-differential.c"), *(str(CSRC / s) for s in CORE), str(qemu_object),
        *glib_flags("--cflags"), *glib_flags("--libs")])
    env = {**os.environ, "G_SLICE": "always-malloc", "ASAN_OPTIONS": "detect_leaks=1"}
    for kind in ("iova", "gpa"):
        result = subprocess.run([str(binary), "20000", "11", kind], capture_output=True,
                                text=True, timeout=600, check=False, env=env)
        assert result.returncode == 0 and "calls agree" in result.stdout, \
            result.stdout + result.stderr[-3000:]
