# SPDX-License-Identifier: GPL-2.0-or-later
"""Build step that ships the C library with the package (setup.py's ``build_ext``).

Beside the cffi extension, the package gets what a C program needs to use the core in place of
QEMU's util/iova-tree.c and hw/virtio/vhost-iova-tree.c (docs/c-library.md):

- ``iova_native/include/``: the public headers, ``qemu/iova-tree.h`` and
  ``hw/virtio/vhost-iova-tree.h``, with the layout QEMU's ``#include`` lines expect;
- ``iova_native/lib/libiova-native.so``: the core (not the Python binding) as a plain shared
  library, built from the same sources with the same flags, exporting only the public
  ``iova_tree_*``, ``gpa_tree_*`` and ``vhost_iova_tree_*`` functions;
- ``iova_native/lib/pkgconfig/iova-native.pc``: for pkg-config, relocatable (``${pcfiledir}``),
  so it is right wherever the wheel is installed.

``iova-native config`` (iova_native/config.py) prints the flags from an installed package.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _build  # noqa: E402  (the cffi build script: sources, flags, pkg-config)

LIBRARY = "iova-native"
# The core without the binding layer (iova-binding.c, vhost-binding.c) that only Python uses.
LIB_SOURCES = [s for s in _build.SOURCES if not s.endswith("-binding.c")]
PUBLIC_HEADERS = ["qemu/iova-tree.h", "hw/virtio/vhost-iova-tree.h"]
EXPORTED = ["iova_tree_*", "gpa_tree_*", "vhost_iova_tree_*"]


def pc_file(version: str) -> str:
    """The pkg-config file, relative to its own folder (iova_native/lib/pkgconfig)."""
    return (
        "prefix=${pcfiledir}/../..\n"
        "includedir=${prefix}/include\n"
        "libdir=${prefix}/lib\n\n"
        f"Name: {LIBRARY}\n"
        "Description: QEMU's IOVA trees on GLib's GTree, with an O(log n) reverse tree "
        "(drop-in for util/iova-tree.c)\n"
        f"Version: {version}\n"
        "Requires: glib-2.0\n"
        "Cflags: -I${includedir}\n"
        f"Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -l{LIBRARY}\n"
    )


def plain_linker(command: list[str]) -> list[str]:
    """The shared-object link ``command`` without its library folders and run paths."""
    return [arg for arg in command
            if not arg.startswith(("-L", "-Wl,-rpath", "-Wl,-R", "-Wl,--enable-new-dtags"))]


class BuildExtWithLibrary(build_ext):  # type: ignore[misc]
    """``build_ext`` that also builds the plain C library and installs its headers."""

    def run(self) -> None:
        super().run()
        package = Path(self.get_ext_fullpath("iova_native._core")).parent
        self.build_library(package)

    def build_library(self, package: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        include = package / "include"
        for header in PUBLIC_HEADERS:
            (include / header).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / _build.CSRC / "include" / header, include / header)
        lib = package / "lib"
        (lib / "pkgconfig").mkdir(parents=True, exist_ok=True)
        cflags = _build.pkg_config("--cflags")
        objects = self.compiler.compile(
            [str(root / s) for s in LIB_SOURCES],
            output_dir=str(Path(self.build_temp) / "clib"),
            include_dirs=[str(root / _build.CSRC)] + [f[2:] for f in cflags if f[:2] == "-I"],
            extra_postargs=[*_build.compile_args(), "-fPIC",
                            *(f for f in cflags if f[:2] != "-I")],
        )
        script = Path(self.build_temp) / "clib" / "exports.map"
        script.write_text("{\n  global:\n" + "".join(f"    {e};\n" for e in EXPORTED)
                          + "  local: *;\n};\n")
        libs = _build.pkg_config("--libs")
        # Python's own LDFLAGS (a pyenv or source-built Python's -L and -Wl,-rpath to its lib
        # folder) are in the linker command; a C library that never links libpython must not
        # carry the build machine's folder as its RUNPATH.
        linker = self.compiler.linker_so
        self.compiler.linker_so = plain_linker(linker)
        try:
            self.compiler.link_shared_object(
                objects, str(lib / f"lib{LIBRARY}.so"),
                libraries=[f[2:] for f in libs if f[:2] == "-l"],
                library_dirs=[f[2:] for f in libs if f[:2] == "-L"],
                extra_postargs=[f"-Wl,-soname,lib{LIBRARY}.so",
                                f"-Wl,--version-script={script}"],
            )
        finally:
            self.compiler.linker_so = linker
        version = self.distribution.get_version()
        (lib / "pkgconfig" / f"{LIBRARY}.pc").write_text(pc_file(version))

    def get_outputs(self) -> list[Any]:
        outputs = list(super().get_outputs())
        package = Path(self.get_ext_fullpath("iova_native._core")).parent
        outputs += [str(package / "include" / h) for h in PUBLIC_HEADERS]
        outputs += [str(package / "lib" / f"lib{LIBRARY}.so"),
                    str(package / "lib" / "pkgconfig" / f"{LIBRARY}.pc")]
        return outputs
