# SPDX-License-Identifier: GPL-2.0-or-later
"""Build of the C core through cffi; everything else is in pyproject.toml.

cffi builds the extension against the limited API (``_core.abi3.so``), so one wheel, tagged
``cp39-abi3``, serves CPython 3.9 and every later version.
"""

from setuptools import setup

setup(
    cffi_modules=["src/iova_native/_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
