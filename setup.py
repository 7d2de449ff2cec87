# SPDX-License-Identifier: GPL-2.0-or-later
"""Build of the C core through cffi; everything else is in pyproject.toml.

cffi builds the extension against the limited API (``_core.abi3.so``), so one wheel, tagged
``cp39-abi3``, serves CPython 3.9 and every later version.  ``build_ext`` also builds the C
library for C programs (headers, libiova-native.so, a .pc file: src/iova_native/_build_clib.py).
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "src" / "iova_native"))
from _build import compile_args, link_args  # noqa: E402
from _build_clib import BuildExtWithLibrary  # noqa: E402

# DMAMap's constructor in C (csrc/dmamap-binding.c): plain CPython API, limited to 3.9's, so the
# wheel stays abi3.  It needs no GLib.
dmamap = Extension(
    "iova_native._dmamap",
    sources=["csrc/dmamap-binding.c"],
    py_limited_api=True,
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

setup(
    ext_modules=[dmamap],
    cffi_modules=["src/iova_native/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLibrary},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
