# SPDX-License-Identifier: GPL-2.0-or-later
"""The ninth review's findings on DMAMap's constructor in C (csrc/dmamap-binding.c) and the
default alloc's fast path: each test failed before its fix."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from iova_native import DMAMap, Perm, _dmamap


@pytest.fixture(params=[False, True], ids=["fast-alloc", "generic-alloc"])
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
        args: tuple[Any, ...], kwargs: dict[Any, Any], alloc_path: Any) -> None:
    """The C side matched a keyword by its text, so a str subclass whose __eq__ refuses its
    own name (or raises) built a map where Python raises TypeError (or the __eq__'s error)."""
    got = outcome(DMAMap, args, kwargs)
    assert got == outcome(python_new, args, kwargs)
    assert got[0] == "raised"


REGISTER_MISUSE = """
import sys, time
from iova_native import DMAMap, Perm, _dmamap
_dmamap._set_generic_alloc(sys.argv[1] == "generic")
perms = (Perm.NONE, Perm.RO, Perm.WO, Perm.RW)
for bad in (int, dict, type, time.struct_time, _dmamap.DMAMapType("X", (), {})):
    try:
        _dmamap.register(bad, perms)
    except TypeError:
        pass
    else:
        print("registered", bad)
    m = _dmamap.from_fields((10**30, 2, 3, Perm.RO, 4))
    assert type(m) is DMAMap and tuple(m) == (10**30, 2, 3, Perm.RO, 4), type(m)
    assert type(DMAMap(1, 2, 3)) is DMAMap
print("ok")
"""


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_register_takes_only_a_tuple_class_of_its_metaclass(path: str) -> None:
    """register() took any class: from_fields() and DMAMap(...) then built an int, a dict or a
    struct sequence as if it were a tuple of five items (through tuple's tp_new, the default
    from CPython 3.14: a heap overflow, the process killed by SIGSEGV)."""
    done = subprocess.run([sys.executable, "-c", REGISTER_MISUSE, path],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr[-2000:]


@pytest.mark.skipif((3, 9) <= sys.version_info[:2] <= (3, 13),
                    reason="a bare allocation is a whole tuple on CPython 3.9 to 3.13")
def test_the_test_switch_keeps_tuple_new_where_the_version_needs_it() -> None:
    """_set_generic_alloc(False) (test_dmamap_c.py's fast-alloc runs) turned the bare
    allocation on where a tuple holds more than its items: on 3.14 every map then hashed as 0."""
    before = _dmamap._set_generic_alloc(False)
    try:
        assert hash(DMAMap(1, 2, 3)) == hash((1, 2, 3, Perm.RW, 0)) != 0
        assert _dmamap._set_generic_alloc(False) is True
    finally:
        _dmamap._set_generic_alloc(before)
