# SPDX-License-Identifier: GPL-2.0-or-later
"""Adversarial review of ``GPATree`` and ``VhostIOVATree`` (contract sections 5 and 6).

Written from the contract, not from the other tests: the edges of the 64-bit space, allocation
until ``NoSpaceError``, the rollback of ``map_alloc_gpa``, wrapping needles, every method of a
closed tree, and pickled states that no ``VhostIOVATree`` can hold.  The random runs drive the
native and the reference backends side by side through ``iova_native.differential`` with
``check()`` after every step; they are seeded, so a failure replays.
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from iova_native import (
    DMAMap,
    InvalidMapError,
    NoSpaceError,
    OverlapError,
    Perm,
    differential,
    native,
    reference,
)
from iova_native._container import restore

M = 2**64 - 1
BACKENDS = [native, reference]
IDS = ["native", "reference"]


def _alloc(iova: int, size: int, perm: Perm = Perm.RW) -> DMAMap:
    """An allocation as ``allocated()`` lists it."""
    return DMAMap(iova, 0, size, perm, 0)


# ---------------------------------------------------------------- pickled states (the defect)

#: States no VhostIOVATree can hold, each refused with ValueError by both backends.  Before the
#: fix the native backend accepted the perm and translated-address ones (and rebuilt the
#: allocation from its map, so the tree was not the state given) and raised NoSpaceError for an
#: allocation past iova_last; the reference raised OverlapError for overlapping allocations or
#: GPA ranges.
BAD_STATES: dict[str, tuple[Any, ...]] = {
    "allocation perm differs from its map": (
        0x1000, M, [_alloc(0x1000, 0xfff, Perm.RO)], [DMAMap(0x1000, 5, 0xfff)], []),
    "allocation with a translated address": (
        0x1000, M, [DMAMap(0x1000, 1, 0xfff)], [DMAMap(0x1000, 5, 0xfff)], []),
    "allocation with an id": (
        0x1000, M, [DMAMap(0x1000, 0, 0xfff, Perm.RW, 9)], [DMAMap(0x1000, 5, 0xfff)], []),
    "allocation past iova_last": (
        0x1000, 0x1fff, [_alloc(0x3000, 0xfff)], [DMAMap(0x3000, 5, 0xfff)], []),
    "allocation straddling iova_last": (
        0x1000, 0x1fff, [_alloc(0x1000, 0x1fff)], [DMAMap(0x1000, 5, 0x1fff)], []),
    "allocation below iova_first": (
        0x2000, M, [_alloc(0x1000, 0xfff)], [DMAMap(0x1000, 5, 0xfff)], []),
    "one allocation listed twice": (
        0x1000, M, [_alloc(0x1000, 0xfff)] * 2, [DMAMap(0x1000, 5, 0xfff)], []),
    "overlapping allocations": (
        0x1000, M, [_alloc(0x1000, 0xfff), _alloc(0x1800, 0xfff)],
        [DMAMap(0x1000, 5, 0xfff), DMAMap(0x1800, 5, 0xfff)], []),
    "guest maps overlapping on the GPA side": (
        0x1000, M, [_alloc(0x1000, 0xfff), _alloc(0x2000, 0xfff)], [],
        [DMAMap(0x1000, 0x9000, 0xfff, Perm.RW, 0x9000),
         DMAMap(0x2000, 0x9800, 0xfff, Perm.RW, 0x9800)]),
    "host map with an id": (
        0x1000, M, [_alloc(0x1000, 0xfff)], [DMAMap(0x1000, 5, 0xfff, Perm.RW, 7)], []),
    "guest map whose id is not its GPA": (
        0x1000, M, [_alloc(0x1000, 0xfff)], [], [DMAMap(0x1000, 5, 0xfff, Perm.RW, 7)]),
    "one allocation for a host and a guest map": (
        0x1000, M, [_alloc(0x1000, 0xfff)], [DMAMap(0x1000, 5, 0xfff)],
        [DMAMap(0x1000, 5, 0xfff, Perm.RW, 5)]),
    "a map without an allocation": (0x1000, M, [], [DMAMap(0x1000, 5, 0xfff)], []),
    "a forged wrapping map": (
        0x1000, M, [_alloc(0x1000, 0xfff)],
        [tuple.__new__(DMAMap, (0x1000, M - 1, 0xfff, Perm.RW, 0))], []),
    "four parts": (0x1000, M, [], []),
}


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("name", list(BAD_STATES))
def test_impossible_pickled_state_is_refused_with_value_error(backend: Any, name: str) -> None:
    """Contract section 6: a pickled state no VhostIOVATree could hold raises ValueError."""
    with pytest.raises(ValueError):
        restore(backend.VhostIOVATree, BAD_STATES[name])
    with pytest.raises(ValueError):
        pickle.loads(pickle.dumps(_Forged(backend.VhostIOVATree, BAD_STATES[name])))


class _Forged:
    """Pickles as a VhostIOVATree of ``state``: what a tampered pickle file holds."""

    def __init__(self, cls: Any, state: Any) -> None:
        self.cls, self.state = cls, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (restore, (self.cls, self.state))


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("part", [None, 5, "maps", DMAMap(0x1000, 0, 0xfff), [(0x1000, 0, 0)]])
def test_pickled_state_of_wrong_types_is_a_type_error(backend: Any, part: Any) -> None:
    """A part that is no list of DMAMaps raises TypeError in both backends alike (the native
    one raised AttributeError for a tuple in place of a map)."""
    with pytest.raises(TypeError):
        restore(backend.VhostIOVATree, (0x1000, M, part, [], []))


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_possible_pickled_state_round_trips_exactly(backend: Any) -> None:
    """Holes, the top byte of the space and unsorted lists: the state comes back as given."""
    state = (0x1000, M, [_alloc(0x5000, 0xfff), _alloc(0x1000, 0), _alloc(M - 1, 1, Perm.RO)],
             [DMAMap(M - 1, 9, 1, Perm.RO), DMAMap(0x1000, 5, 0)],
             [DMAMap(0x5000, 0x9000, 0xfff, Perm.RW, 0x9000)])
    tree = restore(backend.VhostIOVATree, state)
    tree.check()
    assert tree.allocated() == sorted(state[2])
    assert tree.host_maps() == sorted(state[3])
    assert tree.gpa_maps() == state[4]
    assert tree.map_alloc(0x2fff, 0).iova == 0x1001  # the hole the original had


# ---------------------------------------------------------------- edges, both backends alike


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return ("err", type(exc).__name__, getattr(exc, "code", None),
                getattr(exc, "existing", None), getattr(exc, "address", None))


VHOST_EDGES: list[Callable[[Any], Any]] = [
    lambda B: B.VhostIOVATree(0, M, 3),
    lambda B: B.VhostIOVATree(0, M, 0),
    lambda B: B.VhostIOVATree(0, M, 2**64),
    lambda B: B.VhostIOVATree(0, 2**63 - 1, 2**63),
    lambda B: B.VhostIOVATree(M, M - 1, 1),
    lambda B: B.VhostIOVATree(0, 0, 1),
    lambda B: B.VhostIOVATree(0, 0xfff),
    lambda B: B.VhostIOVATree(0, 0x1000).map_alloc(1, 5),
    lambda B: B.VhostIOVATree(0, 0x1000).map_alloc(0, 5),
    lambda B: B.VhostIOVATree(M, M, 1).map_alloc(0, 5),
    lambda B: B.VhostIOVATree(M, M, 1).map_alloc_gpa(0, M),
    lambda B: B.VhostIOVATree(0, M, 1).map_alloc(M, 0),
    lambda B: B.VhostIOVATree(0, M, 1).map_alloc_gpa(M - 1, 1),
    lambda B: B.VhostIOVATree(0, M, 1).map_alloc_gpa(M - 1, 2),
    lambda B: B.VhostIOVATree(0, M, 2**63).map_alloc(2**63 - 1, 0),
    lambda B: B.VhostIOVATree(0, M, 2**63).map_alloc(2**63, 0),
    lambda B: B.VhostIOVATree(0, 0x1000).map_alloc_gpa(0x1000, M),
    lambda B: B.VhostIOVATree(0, 0x1000).map_alloc(0, 0, Perm.NONE),
    lambda B: B.VhostIOVATree(0, M).translate(M, 2, 0),
    lambda B: B.VhostIOVATree(0, M).translate(0, 0, M),
    lambda B: B.VhostIOVATree(0, M).translate(0, 2**64, 0),
    lambda B: B.VhostIOVATree(0, M).remove_gpa(1, M),
    lambda B: B.VhostIOVATree(0, M).find_gpa(M, 1),
    lambda B: B.GPATree([DMAMap(2**63, M, 0)]).find(M),
    lambda B: B.GPATree([DMAMap(M, 2**63, 0)]).find(2**63, 2**63 - 1),
    lambda B: B.GPATree([DMAMap(M, 2**63, 0)]).find(2**63, 2**63),
    lambda B: B.GPATree().insert(tuple.__new__(DMAMap, (M, 0, 1, Perm.RW, 0))),
    lambda B: B.GPATree([DMAMap(0, 2**63 - 1, 0), DMAMap(1, 2**63, 0)]).remove(2**63 - 1, 1),
    lambda B: B.GPATree([DMAMap(0, M, 0)]).find_all(M - 1, 1),
]


@pytest.mark.parametrize("index", range(len(VHOST_EDGES)))
def test_edges_agree(index: int) -> None:
    """Each edge of the space answers the same in both backends (value or error and code)."""
    edge = VHOST_EDGES[index]
    left, right = _outcome(lambda: edge(native)), _outcome(lambda: edge(reference))
    if left[0] == "ok" and not isinstance(left[1], (DMAMap, list, int)) and left[1] is not None:
        left, right = ("tree",), ("tree",) if right[0] == "ok" else right
    assert left == right


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_map_alloc_gpa_taken_rolls_back(backend: Any) -> None:
    """Deviation 5: an OverlapError leaves allocated() as it was, and the hole is reused."""
    tree = backend.VhostIOVATree(0, 0x3fff, 0x1000)
    first = tree.map_alloc_gpa(0xfff, 0x10000)
    before = tree.allocated()
    with pytest.raises(OverlapError) as info:
        tree.map_alloc_gpa(0x1fff, 0x10800)
    assert info.value.existing == first
    assert tree.allocated() == before
    tree.check()
    assert tree.map_alloc(0x1fff, 0).iova == 0x2000
    with pytest.raises(NoSpaceError):
        tree.map_alloc_gpa(0, 0x20000)  # full: NoSpaceError comes before the GPA test
    with pytest.raises(NoSpaceError):
        tree.map_alloc_gpa(0, 0x10000)
    assert tree.remove_gpa(0, M) == 1 and tree.remove(0, M) == 1 and tree.allocated() == []


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_copies_are_independent_of_a_closed_original(backend: Any) -> None:
    """copy, copy.copy, deepcopy and pickle outlive the original and land where it would."""
    tree = backend.VhostIOVATree(0, M)
    tree.map_alloc(0xfff, 5)
    hole = tree.map_alloc_gpa(0xfff, 0x9000)
    tree.map_alloc(0xfff, 6)
    tree.remove_gpa(0x9000)
    twins = [tree.copy(), copy.copy(tree), copy.deepcopy(tree), pickle.loads(pickle.dumps(tree))]
    tree.close()
    for twin in twins:
        assert twin.map_alloc_gpa(0xfff, 0x9000) == hole
        twin.check()
        twin.close()


# ---------------------------------------------------------------- closed trees

_GPA_CALLS: dict[str, Callable[[Any], Any]] = {
    "insert": lambda t: t.insert(DMAMap(0, 0, 0)), "find": lambda t: t.find(0),
    "find_all": lambda t: t.find_all(0), "remove": lambda t: t.remove(0), "len": len,
    "iter": list, "reversed": lambda t: list(reversed(t)), "clear": lambda t: t.clear(),
    "check": lambda t: t.check(), "in": lambda t: DMAMap(0, 0, 0) in t,
    "eq": lambda t: t == type(t)(), "copy": lambda t: t.copy(), "deepcopy": copy.deepcopy,
    "pickle": pickle.dumps, "update": lambda t: t.update([]), "maps": lambda t: t.maps(),
    "enter": lambda t: t.__enter__(), "to_iova_many": lambda t: t.to_iova_many([0]),
}
_VHOST_CALLS: dict[str, Callable[[Any], Any]] = {
    "map_alloc": lambda t: t.map_alloc(0, 0), "map_alloc_gpa": lambda t: t.map_alloc_gpa(0, 0),
    "find_iova": lambda t: t.find_iova(0), "find_gpa": lambda t: t.find_gpa(0),
    "remove": lambda t: t.remove(0), "remove_gpa": lambda t: t.remove_gpa(0),
    "translate": lambda t: t.translate(0, 1), "translate_gpa": lambda t: t.translate(0, 1, 0),
    "len": len, "host_maps": lambda t: t.host_maps(), "gpa_maps": lambda t: t.gpa_maps(),
    "allocated": lambda t: t.allocated(), "check": lambda t: t.check(),
    "in": lambda t: DMAMap(0, 0, 0) in t, "eq": lambda t: t == type(t)(0, M),
    "copy": lambda t: t.copy(), "deepcopy": copy.deepcopy, "pickle": pickle.dumps,
    "clear": lambda t: t.clear(), "enter": lambda t: t.__enter__(),
    "to_iova_many": lambda t: t.to_iova_many([0]),
    "gpa_to_iova_many": lambda t: t.gpa_to_iova_many([0]),
}


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
def test_every_call_on_a_closed_tree_is_a_value_error(backend: Any) -> None:
    """close() then every method: ValueError, never a crash; close() again is a no-op."""
    for make, calls in ((lambda: backend.GPATree([DMAMap(0x1000, 0x2000, 0xfff)]), _GPA_CALLS),
                        (lambda: backend.VhostIOVATree(0, M), _VHOST_CALLS)):
        for name, call in calls.items():
            tree = make()
            tree.close()
            with pytest.raises(ValueError):
                call(tree)
            tree.close()
            assert tree.closed, name


# ---------------------------------------------------------------- random runs side by side


def _addr(rng: random.Random) -> int:
    """An address, mostly near 0, 2**63 and the top of the space."""
    if rng.random() < 0.15:
        return rng.choice([0, 1, 0xfff, 0x1000, M, M - 1, M - 0xfff, 2**63, 2**63 - 1])
    base = rng.choice([0, 2**63 - 0x8000, M - 0x10000])
    return base + rng.randrange(0, 0x10000)


def _size(rng: random.Random) -> int:
    if rng.random() < 0.1:
        return rng.choice([M, M - 1, 2**63, 2**63 - 1])
    return rng.choice([0, 0xfff, rng.randrange(0, 0x3000)])


def _quiet(method: Callable[..., Any], *args: Any) -> None:
    """Run a differential call; an error both sides share is an answer, a divergence is not."""
    try:
        method(*args)
    except (InvalidMapError, OverlapError, NoSpaceError, LookupError, TypeError):
        pass


@pytest.mark.parametrize("seed", range(6))
def test_random_gpa_tree_side_by_side(seed: int) -> None:
    """Inserts, look-ups, removals and copies at the edges; check() after every step."""
    rng = random.Random(seed)
    tree = differential.GPATree()
    for _ in range(150):
        op = rng.randrange(6)
        a, s = _addr(rng), _size(rng)
        if op <= 1:
            _quiet(tree.insert, DMAMap(rng.randrange(0, 2**63), a, min(s, M - a, 2**63)))
        elif op == 2:
            _quiet(tree.find, a, s)
            _quiet(tree.find_all, a, s)
        elif op == 3:
            _quiet(tree.remove, a, s)
        elif op == 4:
            maps = tree.maps()
            if maps:
                assert rng.choice(maps) in tree
        else:
            twin = pickle.loads(pickle.dumps(tree))
            assert twin == tree
            twin.close()
        tree.check()
    tree.close()


@pytest.mark.parametrize("seed", range(12))
def test_random_vhost_tree_side_by_side(seed: int) -> None:
    """Small spaces at 0, across 2**63 and at the top, filled until NoSpaceError, GPA ranges
    taken again (rollback), wrapping removals, translations with and without gpa."""
    rng = random.Random(seed)
    span = rng.choice([0xfff, 0x3fff, 0xffff])
    first = rng.choice([0, 1, 0xfff, 2**63 - 0x2000, M - span])
    page = rng.choice([1, 0x1000, 0x10000])
    try:
        tree = differential.VhostIOVATree(first, min(first + span, M), page)
    except InvalidMapError:
        return
    gpas = [0, 0x10000, 2**63 - 0x800, M - 0x2000]
    for _ in range(150):
        op = rng.randrange(7)
        gpa = rng.choice(gpas) + rng.randrange(0, 0x1800)
        s = rng.choice([0, 0xff, 0xfff, rng.randrange(0, span + 2)])
        if op == 0:
            _quiet(tree.map_alloc, s, _addr(rng))
        elif op <= 2:
            _quiet(tree.map_alloc_gpa, s, gpa)
        elif op == 3:
            _quiet(tree.remove, rng.choice([0, first, first + rng.randrange(span)]),
                   rng.choice([0, 0x1000, M - first]))
        elif op == 4:
            _quiet(tree.remove_gpa, gpa, rng.choice([0, 0x800, M - gpa, M]))
        elif op == 5:
            _quiet(tree.translate, 0, rng.choice([0, 1, 0x1000, M - gpa + 1]), gpa)
            _quiet(tree.find_gpa, gpa, s)
        else:
            hosts = tree.host_maps()
            if hosts:
                m = rng.choice(hosts)
                _quiet(tree.translate, m.translated_addr, m.size + 1)
                _quiet(tree.find_iova, m.translated_addr, m.size)
        tree.check()
    twin = tree.copy()
    assert twin == tree
    twin.close()
    tree.close()
