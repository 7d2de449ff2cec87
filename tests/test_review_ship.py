# SPDX-License-Identifier: GPL-2.0-or-later
"""A review playing a newcomer and a packager (the set-up scripts, the command, the installed
wheel, the pages' examples): each test failed before its fix."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iova_native import cli, trace

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "tests" / "data" / "traces" / "log.txt"
SCRIPTS = [ROOT / "run.sh", ROOT / "test.sh", *sorted((ROOT / "scripts").rglob("*.sh"))]


def build_inputs(root: Path) -> subprocess.CompletedProcess[bytes]:
    """``scripts/build-inputs.sh`` of the checkout at ``root``."""
    return subprocess.run(["bash", str(root / "scripts" / "build-inputs.sh")], cwd="/",
                          capture_output=True, timeout=60, check=False)


def test_the_build_stamp_is_read_in_a_clone_under_a_path_with_spaces(tmp_path: Path) -> None:
    """run.sh and test.sh stopped at once in a clone under a path with spaces ("cat: /tmp/a: No
    such file or directory"): the build stamp read the public headers through an unquoted
    $(find ...), which split their paths at the space."""
    clone = tmp_path / "a clone with spaces" / "iova native"
    for name in ("pyproject.toml", "setup.py", "src/iova_native/_cdef.h",
                 "scripts/build-inputs.sh"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    shutil.copytree(ROOT / "csrc", clone / "csrc", ignore=shutil.ignore_patterns("tools"))
    there, here = build_inputs(clone), build_inputs(ROOT)
    assert there.returncode == 0, there.stderr.decode()
    assert there.stdout == here.stdout and here.stdout.count(b"IOVA_TREE_H") >= 1


def test_no_script_splits_a_find_into_words() -> None:
    """A $(find ...) given as arguments splits every path that holds a space; the scripts use
    find -print0 (or quote the substitution where it yields one word)."""
    unquoted = re.compile(r'(?<!")\$\(find\b')
    hits = [f"{path.relative_to(ROOT)}:{number}"
            for path in SCRIPTS
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if unquoted.search(line)]
    assert hits == []


def iova_native(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m iova_native ARGS`` as a user runs it, from outside the checkout."""
    return subprocess.run([sys.executable, "-m", "iova_native", *args], cwd="/", input=stdin,
                          capture_output=True, timeout=300, check=False)


def test_convert_to_dash_writes_the_op_stream_to_stdout(tmp_path: Path) -> None:
    """``convert -o -`` wrote a file named ``-`` in the current folder, where TRACE ``-`` reads
    stdin: now the op stream goes to stdout and its summary to stderr, and ``replay`` reads it
    back the same as the file."""
    result = iova_native("convert", "--no-progress", "-o", "-", str(TRACE))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(trace.MAGIC)
    assert result.stderr.decode().startswith("wrote ") and b"to stdout" in result.stderr
    via_file = tmp_path / "ops.bin"
    assert iova_native("convert", "--no-progress", "-o", str(via_file), str(TRACE)).returncode == 0
    assert result.stdout == via_file.read_bytes()


def test_compare_with_a_backend_is_refused_not_ignored() -> None:
    """``replay --compare --backend both`` ran the plain comparison and dropped the backend
    without a word; now it is a usage error (exit status 2, one line)."""
    for backend in ("both", "reference", "native"):
        result = iova_native("replay", "--compare", "--backend", backend, "--no-progress",
                             str(TRACE))
        assert result.returncode == 2 and result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and "--compare" in lines[0] and "--backend" in lines[0], lines
    assert iova_native("replay", "--compare", "--no-progress", str(TRACE)).returncode == 0


def test_every_exit_status_of_config_is_in_the_help(tmp_path: Path) -> None:
    """``config`` exits with 1 when pkg-config or GLib is missing; the help's list of exit
    statuses said 1 meant only that the backends disagreed."""
    result = subprocess.run([sys.executable, "-m", "iova_native", "config", "--cflags"],
                            env={"PATH": str(tmp_path)}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1 and "pkg-config" in result.stderr
    status_1 = re.search(r"^  1  (.*(?:\n     .*)*)", cli.EPILOG, re.MULTILINE)
    assert status_1 is not None and "config" in status_1.group(1), cli.EPILOG


def test_an_empty_file_name_is_named_as_given() -> None:
    """``replay ''`` said "cannot read <embedded default-trace.log.gz>: Is a directory" (the
    empty name was taken for no name, then opened as the current folder); ``convert -o ''``
    said "cannot write : Is a directory"."""
    for args, said in ((["replay", ""], "empty file name"), (["convert", "-o", ""], "empty")):
        result = iova_native(*args, "--no-progress")
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 2 and len(lines) == 1, lines
        assert said in lines[0] and "embedded" not in lines[0] and "directory" not in lines[0]


def test_stdin_is_named_alike_in_every_message() -> None:
    """A malformed event read from stdin was reported as ``-:1:``, the refusal of the same input
    as ``<stdin>``."""
    bad = b"vhost_vdpa_dma_map vdpa:0x1 asid: 0 iova: 0x1000 size: 0x1000 perm: 3 type: 2\n"
    result = iova_native("replay", "--no-progress", "-", stdin=bad)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 2, lines
    assert lines[0].startswith("iova-native: <stdin>:1: ") and "<stdin>" in lines[1], lines


def test_setup_without_sudo_names_what_is_missing(tmp_path: Path) -> None:
    """Not root, without sudo (a container, a CI image): bootstrap.sh stopped with "sudo:
    command not found"; now it names the packages to install and stops with status 1, before
    anything else is done."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A user's id; a python3 new enough, without venv or headers.
    python3 = 'case "$*" in *version_info*) exit 0;; esac; exit 1'
    for name, body in (("id", "echo 1000"), ("python3", python3)):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    venv = tmp_path / "venv"
    result = subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-c",
         f'set -euo pipefail; source "{ROOT}/scripts/bootstrap.sh"; echo went on'],
        env={"PATH": str(bin_dir), "ROOT": str(ROOT), "IOVA_NATIVE_VENV": str(venv)},
        capture_output=True,
        text=True, timeout=60, check=False)
    assert result.returncode == 1 and "went on" not in result.stdout, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    for package in ("pkg-config", "libglib2.0-dev", "python3-venv", "python3-dev", "sudo"):
        assert package in line, line
    assert not venv.exists()


BATCH_SCRIPT = """\
from iova_native import differential, native, reference

a: str = native.IOVATree().to_iova_many([1], missing=0)[0]
b: str = reference.IOVATree().to_iova_many([1], missing=0)[0]
c: str = differential.IOVATree().to_iova_many([1], missing=0)[0]
d: str = native.IOVATree().to_translated_many([1], missing=0)[0]
e: str = reference.GPATree().to_iova_many([1], missing=0)[0]
f: str = native.VhostIOVATree(0, 1 << 40).gpa_to_iova_many([1], missing=0)[0]
g: str = reference.VhostIOVATree(0, 1 << 40).to_iova_many([1], missing=0)[0]
h: str = differential.VhostIOVATree(0, 1 << 40).to_iova_many([1], missing=0)[0]
"""


def test_the_batch_forms_return_arrays_of_ints_to_mypy(tmp_path: Path) -> None:
    """The batch forms were annotated ``-> array``, which mypy reads as ``array[Any]``: an item
    taken for a str passed ``mypy --strict``.  Now each is ``array[int]`` on every backend."""
    from test_container import run_mypy

    result = run_mypy(tmp_path, BATCH_SCRIPT)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 8 and all('"int"' in line for line in errors), result.stdout


def test_lookups_with_an_op_stream_is_refused_not_ignored(tmp_path: Path) -> None:
    """``replay OPS.bin --lookups 5`` replayed the stream's own look-ups and said nothing (they
    were compiled in by ``convert``); now it is a usage error that points to ``convert``."""
    ops = tmp_path / "ops.bin"
    assert iova_native("convert", "--no-progress", "-o", str(ops), str(TRACE)).returncode == 0
    result = iova_native("replay", "--no-progress", "--lookups", "5", str(ops))
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "convert" in lines[0], lines
    assert iova_native("replay", "--no-progress", str(ops)).returncode == 0
    fewer = iova_native("replay", "--no-progress", "--lookups", "0", str(TRACE))
    assert fewer.returncode == 0 and b"--lookups" not in fewer.stderr


def c_tool(name: str) -> Path:
    """``tools-build/NAME``, built by scripts/build-tools.sh (skip if it cannot be)."""
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build-tools.sh"), name],
                           capture_output=True, text=True, timeout=600, check=False)
    tool = ROOT / "tools-build" / name
    if build.returncode != 0 or not tool.exists():
        pytest.skip(f"cannot build tools-build/{name}: {build.stderr.strip()[-300:]}")
    return tool


def test_iova_bench_refuses_a_section_it_does_not_have() -> None:
    """``iova-bench --only layout`` (for ``layouts``) or any misspelt section ran nothing and
    exited 0, and ``--only a`` ran every section whose name holds an "a"; now each item must
    name a section, or the usage is printed with exit status 2 before anything runs."""
    tool = c_tool("iova-bench")
    for only in ("layout", "bogus", "a", "mem,", "alloc,frag,,vhost"):
        result = subprocess.run([str(tool), "--quick", "--only", only], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2 and result.stdout == "", (only, result.stdout[:300])
        assert result.stderr.startswith("usage: iova-bench") and "--only: no section" in \
            result.stderr, result.stderr
    # --budget-ms and --frag-ops that do not parse fell back to the defaults without a word.
    for option, value in (("--budget-ms", "x"), ("--budget-ms", "-1"), ("--frag-ops", "lots")):
        result = subprocess.run([str(tool), "--quick", option, value, "--only", "bogus"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2 and f"bad {option}" in result.stderr, result.stderr


def test_iova_replay_refuses_a_repeat_it_cannot_do(tmp_path: Path) -> None:
    """``iova-replay --repeat -1`` aborted in GLib ("overflow allocating 18446744073709551614*8
    bytes"): strtoul() read -1 as 2**64-1 and the timings' g_new() gave up.  Now a count is
    digits only, and timings that cannot be held are one line and exit status 1, never an
    abort."""
    tool = c_tool("iova-replay")
    ops = tmp_path / "ops.bin"
    assert iova_native("convert", "--no-progress", "-o", str(ops), str(TRACE)).returncode == 0
    for repeat, status, said in (("-1", 2, "positive number"), ("+2", 2, "positive number"),
                                 ("18446744073709551615", 1, "no memory for the timings")):
        result = subprocess.run([str(tool), "--repeat", repeat, str(ops)], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == status, (repeat, result.returncode, result.stderr)
        assert said in result.stderr and "GLib" not in result.stderr, result.stderr
    again = subprocess.run([str(tool), "--repeat", "2", str(ops)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert again.returncode == 0 and "x 2," in again.stdout, again.stderr


def test_setup_with_a_python_too_old_says_so_first(tmp_path: Path) -> None:
    """A python3 older than 3.9 went on to apt-get, the venv and pip, which then failed with a
    page of resolver errors; now the setup stops first with one line naming the version."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old = bin_dir / "python3"  # answers like Python 3.8: too old for the version check
    old.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.8.18" && exit 0\nexit 1\n')
    old.chmod(0o755)
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["/bin/bash", "-c", f'set -euo pipefail; source "{ROOT}/scripts/bootstrap.sh"; echo on'],
        env={"PATH": str(bin_dir), "ROOT": str(ROOT), "IOVA_NATIVE_VENV": str(venv)},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "on" not in result.stdout.split(), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "3.9 or later" in lines[0] and "Python 3.8.18" in lines[0], lines
    assert not venv.exists()


def numbered_items(text: str) -> dict[int, str]:
    """The items ``N. ...`` of a Markdown list, by number."""
    parts = re.split(r"^(\d+)\. ", text, flags=re.MULTILINE)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_the_contract_lists_every_deviation_of_the_spec_under_its_number() -> None:
    """Every deviation of the developers' SPEC (section 8) is the same-numbered item of
    docs/contract.md's list, naming what it names (each identifier in backquotes), so users
    read them all in the repository."""
    spec_path = ROOT.parent / "shared" / "SPEC.md"
    if not spec_path.is_file():
        pytest.skip(f"no {spec_path} (a clone without ../shared)")
    spec = spec_path.read_text().split("## 8. Deviations from QEMU", 1)[1].split("\n## ", 1)[0]
    page = (ROOT / "docs" / "contract.md").read_text()
    ours = numbered_items(page.split("## Deviations from QEMU", 1)[1].split("\n## ", 1)[0])
    theirs = numbered_items(spec)
    assert len(theirs) >= 9 and set(theirs) <= set(ours), (sorted(theirs), sorted(ours))
    for number, text in theirs.items():
        names = set(re.findall(r"`([^`]+)`", text))
        assert all(name in ours[number] for name in names), (number, names, ours[number])


def test_a_gzipped_op_stream_is_read_as_a_gzipped_trace_is(tmp_path: Path) -> None:
    """``replay ops.bin.gz`` said "an op stream (...; give it as a file, not on stdin)" of a
    file: traces are read gzipped, op streams were not.  Now it replays as ``ops.bin`` does."""
    ops = tmp_path / "ops.bin"
    assert iova_native("convert", "--no-progress", "-o", str(ops), str(TRACE)).returncode == 0
    zipped = tmp_path / "ops.bin.gz"
    zipped.write_bytes(gzip.compress(ops.read_bytes()))
    plain, unzipped = (iova_native("replay", "--no-progress", str(path)) for path in (ops, zipped))
    assert unzipped.returncode == 0, unzipped.stderr.decode()
    digest = re.compile(rb"^digest .*$", re.MULTILINE)
    assert digest.findall(unzipped.stdout) == digest.findall(plain.stdout) != []
    cut = tmp_path / "cut.bin.gz"  # a gzipped stream cut short is one line, exit status 2
    cut.write_bytes(gzip.compress(ops.read_bytes()[:1000]))
    result = iova_native("replay", "--no-progress", str(cut))
    assert result.returncode == 2 and b"records" in result.stderr, result.stderr


def test_a_closed_stdout_is_one_line_and_status_2() -> None:
    """Started with stdout closed (``>&-``), ``convert -o -`` raised AttributeError out of
    ``None.isatty()`` with a traceback, and ``replay``, ``demo`` and ``config`` printed their
    output nowhere and exited 0; every command now says so and exits 2, as ``> /dev/full``."""
    for args in (["convert", "-o", "-", str(TRACE)], ["replay", str(TRACE)], ["demo"],
                 ["config", "--includedir"]):
        result = subprocess.run([sys.executable, "-m", "iova_native", *args],
                                stderr=subprocess.PIPE, cwd="/", timeout=120, check=False,
                                preexec_fn=lambda: os.close(1))
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 2 and lines == [
            "iova-native: cannot write the output: stdout is closed"], (args, lines)


def test_a_closed_stdin_is_one_line_and_status_2() -> None:
    """``replay -`` started with stdin closed (``<&-``) raised AttributeError out of
    ``None.buffer`` with a traceback; ``replay`` and ``convert`` now say so in one line."""
    for args in (["replay", "-"], ["convert", "-o", "/dev/null", "-"]):
        result = subprocess.run([sys.executable, "-m", "iova_native", *args, "--no-progress"],
                                capture_output=True, cwd="/", timeout=120, check=False,
                                preexec_fn=lambda: os.close(0))
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "stdin is closed" in lines[0], \
            (args, lines)
