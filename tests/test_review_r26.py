# SPDX-License-Identifier: GPL-2.0-or-later
"""The ninth review's findings on DMAMap's constructor in C (csrc/dmamap-binding.c) and the
default alloc's fast path: each test failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from iova_native import DMAMap, Perm, _dmamap


@pytest.fixture(params=[False, True], ids=["fast-alloc", "generic-alloc"], autouse=True)
def alloc_path(request: Any) -> Any:
    before = _dmamap._set_generic_alloc(request.param)
    yield request.param
    _dmamap._set_generic_alloc(before)


class NeverEqual(str):
    """A keyword whose text is a field's name but which says it equals nothing."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class RaisingEqual(str):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("compared")

    __hash__ = str.__hash__


def outcome(build: Any, args: tuple[Any, ...], kwargs: dict[Any, Any]) -> Any:
    try:
        m = build(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the answer compared
        return ("raised", type(exc), str(exc))
    return ("built", type(m), tuple(m))


def python_new(*args: Any, **kwargs: Any) -> DMAMap:
    return DMAMap.__new__(DMAMap, *args, **kwargs)


@pytest.mark.parametrize("args, kwargs", [
    ((1, 2, 3), {NeverEqual("perm"): Perm.RO}),
    ((), {NeverEqual("iova"): 1, "translated_addr": 2, "size": 3}),
    ((1, 2, 3), {RaisingEqual("id"): 5}),
])
def test_a_str_subclass_keyword_is_matched_as_python_matches_it(
        args: tuple[Any, ...], kwargs: dict[Any, Any]) -> None:
    """The C side matched a keyword by its text, so a str subclass whose __eq__ refuses its
    own name (or raises) built a map where Python raises TypeError (or the __eq__'s error)."""
    got = outcome(DMAMap, args, kwargs)
    assert got == outcome(python_new, args, kwargs)
    assert got[0] == "raised"
