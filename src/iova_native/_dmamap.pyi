# SPDX-License-Identifier: GPL-2.0-or-later
"""Types of the C module csrc/dmamap-binding.c (DMAMap's constructor)."""

from typing import Any

class DMAMapType(type):
    """DMAMap's metaclass: builds a plain, valid map without Python code."""

def register(map_type: type, perms: tuple[Any, Any, Any, Any]) -> None: ...
def from_fields(fields: tuple[Any, ...]) -> Any: ...
def _set_generic_alloc(flag: bool) -> bool: ...
