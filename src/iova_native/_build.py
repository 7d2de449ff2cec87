# SPDX-License-Identifier: GPL-2.0-or-later
"""cffi build script (API mode) for the C core: ``iova_native._core``.

Run by setuptools through ``cffi_modules`` in setup.py.  GLib is found with ``pkg-config``;
when its headers are missing, or older than the core needs, the build stops with one line that
says so (naming the version found, the one needed and the Debian package), not deep in the
compiler's output.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

CSRC = "csrc"
# The core, without the standalone tools; relative to the project root (setup.py's directory).
SOURCES = [
    f"{CSRC}/iova-arena.c",
    f"{CSRC}/iova-avl.c",
    f"{CSRC}/iova-holes.c",
    f"{CSRC}/iova-reverse.c",
    f"{CSRC}/iova-tree.c",
    f"{CSRC}/iova-range.c",
    f"{CSRC}/vhost-iova-tree.c",
    f"{CSRC}/iova-binding.c",
    f"{CSRC}/vhost-binding.c",
]
GLIB_MISSING = (
    "iova_native: GLib's development files were not found (pkg-config glib-2.0); "
    "install the Debian package libglib2.0-dev (apt-get install libglib2.0-dev pkg-config)"
)
# g_tree_lower_bound() and g_tree_node_next(), which the forward look-ups and the batch sweeps
# use, appeared in GLib 2.68.
GLIB_NEEDED = "2.68"


def pkg_config(*args: str) -> list[str]:
    """``pkg-config ARGS glib-2.0`` split into words; exits with GLIB_MISSING when absent."""
    if shutil.which("pkg-config") is None:
        sys.exit(GLIB_MISSING)
    result = subprocess.run(
        ["pkg-config", *args, "glib-2.0"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(GLIB_MISSING)
    return shlex.split(result.stdout)


def check_glib_version() -> None:
    """Exits with one line naming the GLib found and the one needed when it is too old."""
    if subprocess.run(["pkg-config", f"--atleast-version={GLIB_NEEDED}", "glib-2.0"],
                      capture_output=True, check=False).returncode == 0:
        return
    found = " ".join(pkg_config("--modversion")) or "unknown"
    sys.exit(f"iova_native: GLib {found} was found (pkg-config glib-2.0), but GLib "
             f"{GLIB_NEEDED} or later is needed (g_tree_lower_bound, g_tree_node_next); "
             "install a newer libglib2.0-dev (Debian 12, Ubuntu 22.04 or later)")


def compile_args() -> list[str]:
    """Optimised, with debug symbols and frame pointers so perf and callgrind see our code.

    A call to an undeclared function is an error, not a warning: cffi's wrapper of a function
    the cdef names but no header declares is compiled as a call answering an int, which
    silently cut ``ib_tree_remove_at()``'s 64-bit answers to 32 bits.  A function defined
    without a prototype in a header is warned about for the same reason.
    ``IOVA_NATIVE_CFLAGS`` adds flags (the sanitizer build uses it)."""
    extra = shlex.split(os.environ.get("IOVA_NATIVE_CFLAGS", ""))
    return ["-std=c11", "-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
            "-Wmissing-prototypes", "-Werror=implicit-function-declaration", *extra]


def extension_compile_args() -> list[str]:
    """The cffi extension's flags: ``compile_args()``, and nothing of ours exported.

    Python needs only ``PyInit__core`` from the module, which ``PyMODINIT_FUNC`` exports
    whatever the default.  With every other function hidden, the core's calls to its own
    functions are direct, not through the PLT (a lock taken and let go on every call, the
    arena's and the tree's entry points), and nothing in the process's global scope can take
    them over by defining the same names (an embedding program's own ``iova_tree_*``, or
    ``libiova-native.so`` loaded with ``RTLD_GLOBAL``), since the dynamic linker looks there
    first.  The C library for C programs is built with ``compile_args()`` and exports its
    API."""
    return [*compile_args(), "-fvisibility=hidden"]


def link_args() -> list[str]:
    """``IOVA_NATIVE_LDFLAGS``: what the sanitizer build links with (its runtime)."""
    return shlex.split(os.environ.get("IOVA_NATIVE_LDFLAGS", ""))


def _cdef_text() -> str:
    here = Path(__file__).resolve().parent
    return (here / "_cdef.h").read_text()


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())

_cflags = pkg_config("--cflags")
check_glib_version()
ffibuilder.set_source(
    "iova_native._core",
    '#include "iova-map.h"\n#include "iova-binding.h"\n#include "vhost-binding.h"\n'
    '#include "iova-cffi.h"\n#include "iova-pymap.h"\n',
    sources=SOURCES,
    include_dirs=[CSRC] + [flag[2:] for flag in _cflags if flag.startswith("-I")],
    extra_compile_args=extension_compile_args() + [f for f in _cflags if not f.startswith("-I")],
    libraries=[flag[2:] for flag in pkg_config("--libs") if flag.startswith("-l")],
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
