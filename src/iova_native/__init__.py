# SPDX-License-Identifier: GPL-2.0-or-later
"""iova_native: QEMU's IOVA trees on GLib's GTree, with an O(log n) reverse tree, from Python.

``iova_native.IOVATree``, ``GPATree`` and ``VhostIOVATree`` are the native (C) classes; the same
classes in plain Python are in ``iova_native.reference``, and ``iova_native.differential`` runs
two backends side by side.  docs/contract.md is the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._types import (
    IOVA_ERR_INVALID,
    IOVA_ERR_NOMEM,
    IOVA_ERR_OVERLAP,
    IOVA_ERR_TRANSLATION,
    IOVA_OK,
    MAX_U64,
    DivergenceError,
    DMAMap,
    InvalidMapError,
    IOVAError,
    NoSpaceError,
    OverlapError,
    Perm,
    TranslationError,
)

__version__ = "0.1.0"

__all__ = [
    "IOVA_ERR_INVALID",
    "IOVA_ERR_NOMEM",
    "IOVA_ERR_OVERLAP",
    "IOVA_ERR_TRANSLATION",
    "IOVA_OK",
    "MAX_U64",
    "DMAMap",
    "DivergenceError",
    "GPATree",
    "IOVAError",
    "IOVATree",
    "InvalidMapError",
    "NoSpaceError",
    "OverlapError",
    "Perm",
    "TranslationError",
    "VhostIOVATree",
]

_NATIVE_NAMES = ("IOVATree", "GPATree", "VhostIOVATree")

if TYPE_CHECKING:
    # What type checkers see: the native classes themselves (at run time they are imported on
    # first use, below), so ``iova_native.IOVATree`` is checked exactly, not as ``Any``.
    from .native import GPATree, IOVATree, VhostIOVATree
else:
    # Hidden from type checkers: a module-level ``__getattr__`` would make every name of the
    # package ``Any`` to them, a misspelt ``iova_native.IOVATre`` and ``from iova_native
    # import Nope`` included.

    def __getattr__(name: str) -> Any:
        # Imported on first use so that ``iova_native.reference`` works even where the C
        # extension could not be built (it is the only module that needs it).
        if name in _NATIVE_NAMES:
            from . import native

            value = getattr(native, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'iova_native' has no attribute {name!r}")
