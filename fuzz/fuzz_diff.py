# SPDX-License-Identifier: GPL-2.0-or-later
"""Differential fuzzer: arbitrary bytes -> operations on native and reference, side by side.

Each input drives one ``IOVATree``, one ``GPATree`` and one ``VhostIOVATree`` of each backend
through the same sequence of calls: every public method, good and bad arguments (wrong types,
out-of-range values, forged maps, bad perms, alignments and policies), iterators advanced across
changes, ``close()`` followed by more calls.  After every call:

* the two results must be equal (same values, same types), or both calls must raise the same
  exception class (with the same ``.existing`` / ``.address`` where the error carries one);
* the whole visible state must be equal: ``len``, ``maps()`` / ``host_maps()`` / ``gpa_maps()``
  / ``allocated()``, ``closed``;
* ``check()`` must pass on both.

A difference raises ``AssertionError`` with the calls so far as Python source, which atheris
reports as a crash (and saves the input).  Run::

    .venv/bin/python fuzz/fuzz_diff.py -max_total_time=20 build/fuzz/corpus-py   # atheris
    .venv/bin/python fuzz/fuzz_diff.py build/fuzz/crash-...                      # replay one
    IOVA_FUZZ_TRACE=1 .venv/bin/python fuzz/fuzz_diff.py crash-file             # ... printing calls
    .venv/bin/python fuzz/fuzz_diff.py --random SECONDS   # without atheris: random bytes only

``scripts/fuzz.sh`` wraps these.  Without atheris installed only ``--random`` and replaying
files work (no coverage guidance).
"""

from __future__ import annotations

import os
import random
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Any

try:
    import atheris
except ImportError:  # the fallback modes need no atheris
    atheris = None
try:
    import numpy
except ImportError:  # batch inputs are then lists and arrays only
    numpy = None

if atheris is not None:
    with atheris.instrument_imports(include=["iova_native"]):
        from iova_native import _types, native, reference
else:
    from iova_native import _types, native, reference

DMAMap = _types.DMAMap
Perm = _types.Perm
MAX_U64 = _types.MAX_U64
TRACE = bool(os.environ.get("IOVA_FUZZ_TRACE"))
MAX_OPS = 80  # per input: keeps every input fast and every reproducer short


class Bytes:
    """Reads the fuzzer's bytes front to back; past the end every read is 0."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        """Whether bytes remain."""
        return self.pos < len(self.data)

    def u8(self) -> int:
        """One byte."""
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u64(self) -> int:
        """Eight bytes, big-endian."""
        value = 0
        for _ in range(8):
            value = value << 8 | self.u8()
        return value

    def pick(self, options: list[Any] | tuple[Any, ...]) -> Any:
        """One of ``options``."""
        return options[self.u8() % len(options)]

    # -- values, mostly valid, clustered so that maps collide --------------------------------

    def addr(self) -> Any:
        """An address: a small window, an edge of the 64-bit space, or (rarely) a bad value."""
        sel = self.u8()
        kind = sel & 7
        if kind <= 2:
            return self.u8() * 0x40
        if kind == 3:
            return (sel >> 3) * 0x1000 + self.u8()
        if kind == 4:
            return MAX_U64 - self.u8() * 0x40
        if kind == 5:
            return 1 << (self.u8() & 63)
        if kind == 6:
            return self.u64()
        return self.bad_u64(sel >> 3)

    def size(self) -> Any:
        """An inclusive size: mostly small, sometimes huge, rarely bad."""
        sel = self.u8()
        kind = sel & 7
        if kind <= 3:
            return self.u8() * 0x40 + 0x3F
        if kind == 4:
            return self.u8()
        if kind == 5:
            return MAX_U64 - self.u8()
        if kind == 6:
            return (1 << (self.u8() & 63)) - 1
        return self.bad_u64(sel >> 3)

    def bad_u64(self, sel: int) -> Any:
        """A value an address or size may not be (or, one time in four, a plain int)."""
        options: list[Any] = [-1, 1 << 64, 1.0, "1", None, True, -(1 << 70), 0x1000]
        if sel % 4 == 0:
            return self.u8() * 0x40
        return options[sel % len(options)]

    def ident(self) -> Any:
        """An id: 0..3 mostly."""
        sel = self.u8()
        if sel < 240:
            return sel % 4
        return self.bad_u64(sel) if sel >= 252 else self.u64()

    def opt_ident(self) -> Any:
        """An id or None."""
        return None if self.u8() & 1 else self.ident()

    def perm(self) -> Any:
        """A permission: a Perm mostly, a plain int sometimes, rarely invalid."""
        sel = self.u8()
        if sel < 200:
            return (Perm.RO, Perm.WO, Perm.RW)[sel % 3]
        if sel < 240:
            return 1 + sel % 3
        return (Perm.NONE, 0, 4, -1, 1.5, "RW", None, Perm.RW)[sel % 8]

    def dmamap(self) -> Any:
        """A DMAMap (valid), a forged invalid one, or not a map at all."""
        sel = self.u8()
        fields = (self.addr(), self.addr(), self.size(), self.perm(), self.ident())
        if sel < 235:
            try:
                return DMAMap(*fields)
            except (TypeError, ValueError):
                return DMAMap(0x1000, 0x2000, 0xFFF)  # the constructor refused: any good map
        if sel < 248:
            # Forged fields stay inside 0..2**64-1: out of that range native raises
            # OverflowError where reference raises InvalidMapError (reported in issue 9;
            # only the private DMAMap._trusted can build such a map).
            raw = [f if type(f) is int and 0 <= f <= MAX_U64 else 0 for f in fields]
            return DMAMap._trusted((raw[0], raw[1], raw[2], _types._PERMS[raw[3] & 3], raw[4]))
        return (None, (0x1000, 0, 0xFFF, 3, 0), 0x1000, "map")[sel % 4]

    def addresses(self) -> Any:
        """A batch input: a list, an ``array('Q')``, a NumPy array (contiguous or strided,
        uint64, int64 or big-endian), a memoryview, or something wrong."""
        n = self.u8() % 9
        values = [self.addr() for _ in range(n)]
        sel = self.u8()
        good = all(type(v) is int and 0 <= v <= MAX_U64 for v in values)
        if sel == 0xFF:
            return None
        if sel == 0xFE:
            return 5
        if good and values and sel % 16 == 9:  # long: sorted and swept in C (from 128)
            return array("Q", (values[(i * 7919) % n] for i in range(300)))
        if good and sel % 8 == 1:
            return array("Q", values)
        if good and sel % 8 == 3:
            return memoryview(array("Q", values))
        if good and numpy is not None and sel % 8 in (5, 7):
            dtype = ("<u8", ">u8", "<i8", "<u8")[(sel >> 3) % 4]
            arr = numpy.array(values, dtype=numpy.uint64).astype(dtype)
            return arr[::2] if sel % 8 == 7 else arr
        return values

    def missing(self) -> Any:
        """The ``missing`` argument of a batch form."""
        sel = self.u8()
        if sel < 128:
            return None
        if sel < 250:
            return self.u8() * 0x11
        return (-1, 1 << 64, 1.0, "0", MAX_U64, 0)[sel % 6]


# ----------------------------------------------------------------------------- comparison


class Divergence(AssertionError):
    """The two backends disagreed."""


def _err(exc: BaseException) -> tuple[Any, ...]:
    detail: Any = None
    if isinstance(exc, _types.OverlapError):
        detail = exc.existing
    elif isinstance(exc, _types.TranslationError):
        detail = exc.address
    return ("raise", type(exc).__name__, detail)


def run_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` as ``("ok", value)`` or ``("raise", class name, detail)``."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # every error is compared, none is swallowed
        return _err(exc)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, recursively (a DMAMap's perm must be a Perm on both)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, array):
        return a.typecode == b.typecode and a == b
    return bool(a == b)


class Pair:
    """One object per backend, driven together; ``log`` is the calls so far, as source."""

    def __init__(self, name: str, left: Any, right: Any, log: list[str]) -> None:
        self.name = name
        self.left = left
        self.right = right
        self.log = log
        self.iters: tuple[Iterator[Any], Iterator[Any]] | None = None

    def diverged(self, what: str, left: Any, right: Any) -> Divergence:
        """The error to raise, with the calls that lead here."""
        source = "\n".join("    " + line for line in self.log)
        return Divergence(
            f"native and reference disagree on {what}:\n  native:    {left!r}\n"
            f"  reference: {right!r}\ncalls so far:\n{source}"
        )

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on both; compare; return the native outcome."""
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        line = f"{self.name}.{method}({shown})"
        self.log.append(line)
        if TRACE:
            print(line, file=sys.stderr)
        left = run_call(getattr(self.left, method), args, kwargs)
        right = run_call(getattr(self.right, method), args, kwargs)
        if not same(left, right):
            raise self.diverged(line, left, right)
        return left

    def start_iter(self) -> None:
        """``iter()`` on both (compared like any call)."""
        self.log.append(f"it = iter({self.name})")
        left = run_call(iter, (self.left,), {})
        right = run_call(iter, (self.right,), {})
        if left[0] != right[0] or (left[0] == "raise" and left[1:] != right[1:]):
            raise self.diverged(f"iter({self.name})", left, right)
        self.iters = (left[1], right[1]) if left[0] == "ok" else None

    def step_iter(self) -> None:
        """``next()`` on both iterators, if any: same map, same StopIteration / error."""
        if self.iters is None:
            return
        self.log.append("next(it)")
        left = run_call(next, (self.iters[0],), {})
        right = run_call(next, (self.iters[1],), {})
        if not same(left, right):
            raise self.diverged("next(it)", left, right)
        if left[0] == "raise":
            self.iters = None

    def compare_state(self, listings: tuple[str, ...]) -> None:
        """Everything observable without side effects must match; ``check()`` must pass."""
        for attr in ("closed",):
            a, b = getattr(self.left, attr), getattr(self.right, attr)
            if a != b:
                raise self.diverged(f"{self.name}.{attr}", a, b)
        for method in ("__len__", *listings, "check"):
            left = run_call(getattr(self.left, method), (), {})
            right = run_call(getattr(self.right, method), (), {})
            if not same(left, right):
                raise self.diverged(f"{self.name}.{method}() after the last call", left, right)
            if method == "check" and left[0] == "raise" and left[1] != "ValueError":
                raise self.diverged(f"{self.name}.check() failed", left, right)


# ----------------------------------------------------------------------------- operations


def tree_op(p: Pair, b: Bytes, gpa: bool) -> None:
    """One call on an IOVATree or GPATree pair."""
    op = b.u8() % (13 if gpa else 19)
    if op <= 2:
        p.call("insert", b.dmamap())
    elif op <= 4:
        p.call("find", b.addr(), b.size())
    elif op == 5:
        p.call("remove", b.addr(), b.size())
    elif op == 6:
        maps = p.right.maps() if not p.right.closed else []
        if maps:  # remove one stored map by its own range
            m = maps[b.u8() % len(maps)]
            p.call("remove", m.translated_addr if gpa else m.iova, m.size)
    elif op == 7:
        p.call("to_iova_many", b.addresses(), **_missing_kw(b))
    elif op == 8:
        p.start_iter()
    elif op == 9:
        p.step_iter()
    elif op == 10:
        if b.u8() < 24:
            p.call("clear")
    elif op == 11:
        if b.u8() < 6:
            p.call("close")
    elif op == 12:
        if b.u8() & 1:
            p.call("maps")
        else:  # the range query of the tree's own key (issue 19)
            p.call("find_all", b.addr(), b.size())
    elif op <= 14:
        args: list[Any] = [b.addr(), b.size()]
        if b.u8() & 1:
            args.append(b.opt_ident())
        p.call("find_iova_all" if b.u8() < 64 else "find_iova", *args)
    elif op == 15:
        length = b.u8() * 0x40 + b.u8() if b.u8() < 220 else b.size()
        args = [b.addr(), length]
        if b.u8() & 1:
            args.append(b.opt_ident())
        p.call("translate", *args)
    elif op == 16:
        p.call("to_translated_many", b.addresses(), **_missing_kw(b))
    elif op == 17:
        kw = {"id": b.opt_ident()} if b.u8() & 1 else {}
        p.call("to_iova_many", b.addresses(), **kw, **_missing_kw(b))
    else:
        alloc_op(p, b)


def _missing_kw(b: Bytes) -> dict[str, Any]:
    return {"missing": b.missing()} if b.u8() & 1 else {}


def alloc_op(p: Pair, b: Bytes) -> None:
    """``IOVATree.alloc`` with a random subset of its keyword arguments."""
    args: list[Any] = [b.size()]
    kw: dict[str, Any] = {}
    sel = b.u8()
    if sel & 1:
        kw["translated_addr"] = b.addr()
    if sel & 2:
        kw["perm"] = b.perm()
    if sel & 4:
        kw["id"] = b.ident()
    if sel & 8:
        kw["iova_begin"] = b.addr()
    if sel & 16:
        kw["iova_last"] = b.addr()
    if sel & 32:
        a = b.u8()
        kw["align"] = 1 << (a % 64) if a < 240 else (0, 3, 6, -4, 2.0, None, 1 << 64)[a % 7]
    if sel & 64:
        kw["policy"] = b.pick(("first", "last", "last", "first", "best", None, 1))
    p.call("alloc", *args, **kw)


def vhost_op(p: Pair, b: Bytes) -> None:
    """One call on a VhostIOVATree pair."""
    op = b.u8() % 14
    if op <= 1:
        p.call("map_alloc", b.size(), b.addr(), *([b.perm()] if b.u8() & 1 else []))
    elif op <= 3:
        p.call("map_alloc_gpa", b.size(), b.addr(), *([b.perm()] if b.u8() & 1 else []))
    elif op == 4:
        p.call("find_iova", b.addr(), b.size())
    elif op == 5:
        p.call("find_gpa", b.addr(), b.size())
    elif op == 6:
        maps = p.right.host_maps() if not p.right.closed else []
        if maps and b.u8() & 1:
            m = maps[b.u8() % len(maps)]
            p.call("remove", m.iova, m.size)
        else:
            p.call("remove", b.addr(), b.size())
    elif op == 7:
        maps = p.right.gpa_maps() if not p.right.closed else []
        if maps and b.u8() & 1:
            m = maps[b.u8() % len(maps)]
            p.call("remove_gpa", m.translated_addr, m.size)
        else:
            p.call("remove_gpa", b.addr(), b.size())
    elif op <= 9:
        args: list[Any] = [b.addr(), b.u8() * 0x40 + b.u8()]
        if op == 9:
            args.append(b.addr() if b.u8() < 240 else None)
        p.call("translate", *args)
    elif op == 10:
        p.call("to_iova_many", b.addresses(), **_missing_kw(b))
    elif op == 11:
        p.call("gpa_to_iova_many", b.addresses(), **_missing_kw(b))
    elif op == 12:
        if b.u8() < 20:
            p.call("clear")
    elif b.u8() < 6:
        p.call("close")


VHOST_LISTINGS = ("host_maps", "gpa_maps", "allocated")


def one_input(data: bytes) -> None:
    """The fuzz target: decode ``data`` and run it; raises on any divergence."""
    b = Bytes(data)
    log: list[str] = []
    trees = Pair("t", native.IOVATree(), reference.IOVATree(), log)
    gpas = Pair("g", native.GPATree(), reference.GPATree(), log)
    # The VhostIOVATree's window: sometimes bad, often tight (to reach NoSpaceError).
    first = b.addr() if b.u8() & 1 else 0
    last = b.addr() if b.u8() & 1 else MAX_U64
    log.append(f"v = VhostIOVATree({first!r}, {last!r})")
    made = (
        run_call(native.VhostIOVATree, (first, last), {}),
        run_call(reference.VhostIOVATree, (first, last), {}),
    )
    if made[0][0] != made[1][0] or (made[0][0] == "raise" and made[0][1:] != made[1][1:]):
        raise Divergence(f"VhostIOVATree({first!r}, {last!r}): {made[0]!r} vs {made[1]!r}")
    vhost = Pair("v", made[0][1], made[1][1], log) if made[0][0] == "ok" else None

    for _ in range(MAX_OPS):
        if not b.more():
            break
        target = b.u8() % 8
        if target <= 3:
            tree_op(trees, b, gpa=False)
            trees.compare_state(("maps",))
        elif target <= 5:
            tree_op(gpas, b, gpa=True)
            gpas.compare_state(("maps",))
        elif vhost is not None:
            vhost_op(vhost, b)
            vhost.compare_state(VHOST_LISTINGS)
    for pair in (trees, gpas, vhost):
        if pair is not None:
            pair.left.close()
            pair.right.close()


def random_mode(seconds: float) -> int:
    """No atheris: random inputs for ``seconds`` (not coverage-guided)."""
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = rng.randbytes(rng.randrange(8, 600))
        try:
            one_input(data)
        except Exception:
            path = f"crash-random-{runs}"
            with open(path, "wb") as out:
                out.write(data)
            print(f"fuzz_diff: divergence; input written to {path}", file=sys.stderr)
            raise
        runs += 1
    print(f"fuzz_diff (random bytes, no atheris): {runs} inputs in {seconds:.0f} s, no divergence")
    return 0


def main(argv: list[str]) -> int:
    """Entry point: atheris, ``--random SECONDS``, or replay of files without atheris."""
    if len(argv) > 2 and argv[1] == "--random":
        return random_mode(float(argv[2]))
    if atheris is None:
        files = [arg for arg in argv[1:] if not arg.startswith("-")]
        if not files:
            print(
                "fuzz_diff: atheris is not installed (pip install atheris); "
                "use --random SECONDS or pass files to replay",
                file=sys.stderr,
            )
            return 2
        for path in files:
            with open(path, "rb") as f:
                one_input(f.read())
            print(f"fuzz_diff: {path}: no divergence")
        return 0
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
