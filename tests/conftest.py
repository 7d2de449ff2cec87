# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: every API test runs once per backend module.

``backend`` is the module (``iova_native.reference`` or ``iova_native.native``); the native one is
skipped, with the import error as the reason, while the C extension is not built.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

BACKENDS = ("iova_native.reference", "iova_native.native")


def _backend_param(name: str) -> Any:
    short = name.rsplit(".", 1)[1]
    try:
        importlib.import_module(name)
    except (ImportError, OSError) as exc:  # not built yet, or its shared library is missing
        return pytest.param(name, id=short, marks=pytest.mark.skip(reason=f"{name}: {exc}"))
    return pytest.param(name, id=short)


BACKEND_PARAMS = [_backend_param(name) for name in BACKENDS]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> ModuleType:
    """A backend module exporting ``IOVATree``, ``GPATree`` and ``VhostIOVATree``."""
    return importlib.import_module(request.param)


@pytest.fixture
def IOVATree(backend: ModuleType) -> Any:
    """The backend's ``IOVATree`` class."""
    return backend.IOVATree


@pytest.fixture
def GPATree(backend: ModuleType) -> Any:
    """The backend's ``GPATree`` class."""
    return backend.GPATree


@pytest.fixture
def VhostIOVATree(backend: ModuleType) -> Any:
    """The backend's ``VhostIOVATree`` class."""
    return backend.VhostIOVATree
