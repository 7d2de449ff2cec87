# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the installed package keeps its C library, and the flags to build against it.

The package ships the C core for C programs (docs/c-library.md): the public headers in
``iova_native/include`` (``qemu/iova-tree.h``, ``hw/virtio/vhost-iova-tree.h``), the shared
library ``iova_native/lib/libiova-native.so`` and a pkg-config file in
``iova_native/lib/pkgconfig``.  ``iova-native config --cflags --libs`` prints the flags, as
``pkg-config`` would; :func:`get_include` and :func:`get_lib_dir` give the folders to Python
build scripts, as ``numpy.get_include()`` does::

    cc $(iova-native config --cflags) prog.c $(iova-native config --libs) -o prog
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "get_include", "get_lib_dir", "get_pkgconfig_dir", "cflags", "libs",
           "add_config_command"]

LIBRARY = "iova-native"
_PACKAGE = Path(__file__).resolve().parent


class ConfigError(RuntimeError):
    """The C library is not in this installation, or GLib's flags cannot be had."""


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{what} is missing ({path}): this installation was built without "
                          "the C library step (reinstall the package)")
    return path


def get_include() -> str:
    """The folder to pass with ``-I``: it holds ``qemu/iova-tree.h`` and
    ``hw/virtio/vhost-iova-tree.h``."""
    return str(_existing(_PACKAGE / "include" / "qemu" / "iova-tree.h", "the C headers")
               .parents[1])


def get_lib_dir() -> str:
    """The folder that holds ``libiova-native.so``."""
    return str(_existing(_PACKAGE / "lib" / f"lib{LIBRARY}.so", "the C library").parent)


def get_pkgconfig_dir() -> str:
    """The folder that holds ``iova-native.pc``, for ``PKG_CONFIG_PATH``."""
    return str(_existing(_PACKAGE / "lib" / "pkgconfig" / f"{LIBRARY}.pc", "the .pc file")
               .parent)


def _glib(kind: str) -> list[str]:
    """GLib's flags from pkg-config: the headers include <glib.h>, the library links it."""
    if shutil.which("pkg-config") is None:
        raise ConfigError("pkg-config is not installed; GLib's flags are needed too "
                          "(apt-get install pkg-config libglib2.0-dev)")
    result = subprocess.run(["pkg-config", kind, "glib-2.0"], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise ConfigError("GLib's development files were not found (pkg-config glib-2.0); "
                          "install libglib2.0-dev")
    return shlex.split(result.stdout)


def cflags() -> list[str]:
    """Compiler flags: the package's headers, then GLib's."""
    return [f"-I{get_include()}", *_glib("--cflags")]


def libs() -> list[str]:
    """Linker flags: the library, with an rpath so that the program finds it when run, then
    GLib's."""
    lib = get_lib_dir()
    return [f"-L{lib}", f"-Wl,-rpath,{lib}", f"-l{LIBRARY}", *_glib("--libs")]


CONFIG_DESCRIPTION = """\
Print what a C program needs to use the C library that this package ships (docs/c-library.md).
With no option, every item, one per line.

  cc $(iova-native config --cflags) prog.c $(iova-native config --libs) -o prog
  PKG_CONFIG_PATH=$(iova-native config --pkgconfigdir) pkg-config --cflags --libs iova-native
"""

_ITEMS = {
    "cflags": lambda: shlex.join(cflags()),
    "libs": lambda: shlex.join(libs()),
    "includedir": get_include,
    "libdir": get_lib_dir,
    "pkgconfigdir": get_pkgconfig_dir,
}


def run_config(args: argparse.Namespace, out: Any = None) -> int:
    """Print the items asked for (all when none is), flags on one line as pkg-config does."""
    out = out or sys.stdout
    wanted = [name for name in _ITEMS if getattr(args, name)]
    try:
        if not wanted:
            for name, item in _ITEMS.items():
                print(f"{name}: {item()}", file=out)
        elif set(wanted) <= {"cflags", "libs"}:
            print(" ".join(_ITEMS[name]() for name in wanted), file=out)
        else:
            for name in wanted:
                print(_ITEMS[name](), file=out)
    except ConfigError as exc:
        print(f"iova-native config: {exc}", file=sys.stderr)
        return 1
    return 0


def add_config_command(commands: Any) -> None:
    """Add ``config`` to the ``iova-native`` command's subparsers."""
    config = commands.add_parser(
        "config", help="print the flags to build C programs against the shipped C library",
        description=CONFIG_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_argument("--cflags", action="store_true",
                        help="compiler flags (-I for the headers, and GLib's)")
    config.add_argument("--libs", action="store_true",
                        help="linker flags (-L, -Wl,-rpath, -liova-native, and GLib's)")
    config.add_argument("--includedir", action="store_true", help="the headers' folder")
    config.add_argument("--libdir", action="store_true", help="libiova-native.so's folder")
    config.add_argument("--pkgconfigdir", action="store_true",
                        help="the folder of iova-native.pc, for PKG_CONFIG_PATH")
    config.set_defaults(run=run_config)
