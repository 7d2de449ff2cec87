# SPDX-License-Identifier: GPL-2.0-or-later
"""Build of the C core through cffi; everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["src/iova_native/_build.py:ffibuilder"])
