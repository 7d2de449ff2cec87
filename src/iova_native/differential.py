# SPDX-License-Identifier: GPL-2.0-or-later
"""Two backends side by side: every call runs on both, the first disagreement is pinned down.

``differential.IOVATree``, ``GPATree`` and ``VhostIOVATree`` have exactly the API of
docs/contract.md (``iova_native.api``).  Each object drives two backends, ``left`` and ``right``
(keyword-only constructor arguments taking *classes* with that API; by default the native class
and the reference class)::

    from iova_native import differential, reference
    tree = differential.IOVATree(left=MyTree)           # MyTree against the reference
    tree = differential.VhostIOVATree(0x1000, 0xfffff)  # native against reference

Every call runs on ``left`` and then on ``right``.  Return values (maps, segment lists, counts,
batch arrays, compared element by element and by element type: an ``array('Q')`` and a NumPy
``uint64`` array agree, an ``array('d')`` does not), errors (same type, and the same ``.code``,
``.address`` and ``.existing``), ``len``, iteration and the listings must agree.  When they do,
the call returns the left side's value, or raises the left side's error, exactly as a plain tree
would.  When they do not, it raises :class:`iova_native.DivergenceError` with

* ``.operation``: the call as text, e.g. ``tree.find(0x1000)``;
* ``.left`` / ``.right``: the two outcomes, each a value or the exception instance raised;
* ``.reproducer``: Python source defining ``reproduce(tree)``.  It applies to a fresh ``tree``
  the fewest operations (found by delta debugging over the recorded call log, then every
  smaller set of the log's calls while a size has at most :data:`FEWEST_BUDGET` sets; each
  candidate replayed on a fresh pair of backends) that still make the two sides disagree on the same
  method, and **returns** the outcome of the last one: its value, or the exception it raised
  (caught and returned, not raised, so that the outcomes of two classes can be compared).  Earlier
  operations that raise (on both sides alike) are wrapped in ``try``/``except``.  Arguments are
  written as what was passed: a buffer with its format, byte order, step (``a[::2]``) and
  read-only flag, a one-shot iterator that raised as one that raises the same exception, a
  ``DMAMap`` forged with ``tuple.__new__`` as that forgery, an object of another module
  (``Decimal``, ``strategies.OnlyInt``) with its import, and one whose repr is not Python
  pickled (or as a list of its items), with a comment saying so.

When the divergent call is a batch form with more than :data:`BATCH_SHRINK_TO` addresses, its
batch is cut too: to the addresses where the answers part (or that an error names) with two
neighbours each, else to the batch up to the last of them, else to its first
:data:`BATCH_SHRINK_TO`, else to whichever half still diverges, each candidate verified by a
replay; the container keeps its kind (a one-shot iterator stays one).  A long batch argument of
an earlier call (``update``'s maps) is cut the same way: to its first :data:`BATCH_SHRINK_TO`
elements, else to whichever half still diverges.  The message shows at most
:data:`MESSAGE_CAP` characters of the call and of the reproducer (``.reproducer`` is whole).

Shrinking is bounded by ``shrink_timeout`` seconds (constructor keyword, a number >= 0 checked
when the tree is made; default :data:`SHRINK_TIMEOUT`); the message says when it stopped early,
and the reproducer is then the smallest one found so far (still verified to diverge).

Semantics a plain tree does not have:

* ``check()`` runs ``check()`` on both sides and then compares their whole contents (``maps()``,
  or ``host_maps()``, ``gpa_maps()`` and ``allocated()`` for ``VhostIOVATree``): a wrong map
  stored silently is caught at the next ``check()`` even if no look-up hits it.  These listing
  calls are recorded in the log like any other.
* Iteration is eager: ``iter(tree)`` lists both sides, compares, and iterates over the left list.
  It therefore never raises ``RuntimeError`` when the tree changes during the loop.
* The call log grows with every call (it is what the reproducer is cut from); ``log`` shows it.

``same_outcome(a, b)`` is the comparison used throughout; a test can use it to compare the two
results of a reproducer.
"""

from __future__ import annotations

import builtins
import importlib
import itertools
import math
import pickle
import struct
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from ._container import same_kind
from ._types import _INT_FORMATS, MAX_U64, DivergenceError, DMAMap, Perm
from .api import Segment, U64Array, U64Input

__all__ = [
    "BATCH_SHRINK_TO",
    "FEWEST_BUDGET",
    "MESSAGE_CAP",
    "SHRINK_TIMEOUT",
    "GPATree",
    "IOVATree",
    "Operation",
    "VhostIOVATree",
    "same_outcome",
]

_D = TypeVar("_D", bound="_Differential")

#: Seconds that shrinking a divergence may take, unless the constructor says otherwise.
SHRINK_TIMEOUT: float = 10.0
#: A batch argument of the divergent call longer than this is cut down in the reproducer.
BATCH_SHRINK_TO = 150
#: Characters of the call and of the reproducer that a DivergenceError's message shows.
MESSAGE_CAP = 4000

# --------------------------------------------------------------------------- operations

# How an operation is applied to an object.
_CALL = 0  # obj.method(*args, **kwargs)
_LEN = 1  # len(obj)
_LIST = 2  # list(obj): iteration, compared eagerly
_ATTR = 3  # obj.method, a property (``closed``)
_REVERSED = 4  # list(reversed(obj)), compared eagerly


class _Raised(NamedTuple):
    """The outcome of a call that raised; keeps a raised exception apart from a returned one."""

    exc: BaseException


class _Self:
    """Stands for "returned the object it was called on" (``__enter__``)."""

    def __repr__(self) -> str:
        return "<the tree itself>"


_SELF = _Self()


class _OneShot:
    """A one-shot iterator given to a batch form, read once: each side, and each replay, gets
    a fresh iterator over the same values (ending with the same exception if the caller's
    iterator raised one), so a backend that mishandles one-shot iterators still shows it."""

    __slots__ = ("values", "error")

    def __init__(self, iterator: Any) -> None:
        self.values: list[Any] = []
        self.error: Exception | None = None
        try:
            for value in iterator:
                self.values.append(value)
        except Exception as exc:  # the sides must meet it too, at the same place
            self.error = exc

    def fresh(self) -> Iterator[Any]:
        """A new one-shot iterator over the values."""
        return _replay_values(self.values, self.error)

    def __repr__(self) -> str:
        return f"iter({self.values!r})"


def _replay_values(values: list[Any], error: Exception | None) -> Iterator[Any]:
    yield from values
    if error is not None:
        raise error


def _fresh_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with a recorded one-shot iterator (always the first argument) made new."""
    if args and type(args[0]) is _OneShot:
        return (args[0].fresh(), *args[1:])
    return args


class Operation(NamedTuple):
    """One recorded call: the method, and the arguments exactly as passed to both sides."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    kind: int = _CALL

    def apply(self, obj: Any) -> Any:
        """Run this operation on ``obj``; return its value (exceptions propagate)."""
        if self.kind == _CALL:
            result = getattr(obj, self.method)(*_fresh_args(self.args), **dict(self.kwargs))
            return _SELF if result is obj and self.method == "__enter__" else result
        if self.kind == _LEN:
            return len(obj)
        if self.kind == _LIST:
            return list(obj)
        if self.kind == _REVERSED:
            return list(reversed(obj))
        return getattr(obj, self.method)

    def render(self, name: str = "tree", imports: set[str] | None = None) -> str:
        """The call as Python source, with hex literals, applied to the variable ``name``."""
        imports = set() if imports is None else imports
        if self.kind == _LEN:
            return f"len({name})"
        if self.kind == _LIST:
            return f"list({name})"
        if self.kind == _REVERSED:
            return f"list(reversed({name}))"
        if self.kind == _ATTR:
            return f"{name}.{self.method}"
        parts = [_render(a, imports) for a in self.args]
        parts += [f"{k}={_render(v, imports)}" for k, v in self.kwargs]
        return f"{name}.{self.method}({', '.join(parts)})"

    def __str__(self) -> str:
        return self.render()


def _outcome(op: Operation, obj: Any) -> Any:
    """``op`` applied to ``obj``: the value, or ``_Raised`` holding the exception."""
    try:
        return op.apply(obj)
    except Exception as exc:  # every error is an outcome to compare, not a failure here
        return _Raised(exc)


class _Replay(NamedTuple):
    """A replay that diverged: the calls up to the divergence, the left outcomes of each (None
    when the log could not be replayed at all), and the right outcome of the last."""

    ops: list[Operation]
    outcomes: list[Any] | None
    right: Any


class _Param(NamedTuple):
    """One parameter of an API method, for laying out the recorded call."""

    name: str
    default: Any = None
    required: bool = False
    positional: bool = True
    batch: bool = False  # a U64Input: snapshotted, iterators replayed


_NO_DEFAULT = object()


def _p(name: str, default: Any = _NO_DEFAULT, *, kw: bool = False, batch: bool = False) -> _Param:
    required = default is _NO_DEFAULT
    return _Param(name, None if required else default, required, not kw, batch)


# The container calls of IOVATree and GPATree (``update``'s iterable is read once, as a batch).
_CONTAINER_METHODS: dict[str, tuple[_Param, ...]] = {
    "__contains__": (_p("item"),),
    "update": (_p("maps", batch=True),),
}

# Parameters per method, in signature order.  Required parameters and the leading optional ones
# that read naturally by position (``size``) are passed positionally; the rest by keyword, and
# only when they differ from the default, so that a reproducer reads like hand-written code.
# Leaving a default out is the same call by the API contract.
_IOVA_METHODS: dict[str, tuple[_Param, ...]] = {
    "insert": (_p("map"),),
    "find": (_p("iova"), _p("size", 0)),
    "find_iova": (_p("translated_addr"), _p("size", 0), _p("id", None, kw=True)),
    "find_all": (_p("iova"), _p("size", 0)),
    "find_iova_all": (_p("translated_addr"), _p("size", 0), _p("id", None, kw=True)),
    "translate": (_p("translated_addr"), _p("length"), _p("id", None, kw=True)),
    "alloc": (
        _p("size"),
        _p("translated_addr", 0, kw=True),
        _p("perm", Perm.RW, kw=True),
        _p("id", 0, kw=True),
        _p("iova_begin", 0, kw=True),
        _p("iova_last", MAX_U64, kw=True),
        _p("align", 1, kw=True),
        _p("policy", "first", kw=True),
    ),
    "remove": (_p("iova"), _p("size", 0)),
    "to_translated_many": (_p("iovas", batch=True), _p("missing", None, kw=True)),
    "to_iova_many": (
        _p("translated_addrs", batch=True),
        _p("id", None, kw=True),
        _p("missing", None, kw=True),
    ),
    **_CONTAINER_METHODS,
}
_GPA_METHODS: dict[str, tuple[_Param, ...]] = {
    "insert": (_p("map"),),
    "find": (_p("translated_addr"), _p("size", 0)),
    "find_all": (_p("translated_addr"), _p("size", 0)),
    **_CONTAINER_METHODS,
    "remove": (_p("translated_addr"), _p("size", 0)),
    "to_iova_many": (_p("translated_addrs", batch=True), _p("missing", None, kw=True)),
}
_VHOST_METHODS: dict[str, tuple[_Param, ...]] = {
    "map_alloc": (_p("size"), _p("hva"), _p("perm", Perm.RW, kw=True)),
    "map_alloc_gpa": (_p("size"), _p("gpa"), _p("perm", Perm.RW, kw=True)),
    "find_iova": (_p("hva"), _p("size", 0)),
    "find_gpa": (_p("gpa"), _p("size", 0)),
    "remove": (_p("iova"), _p("size", 0)),
    "remove_gpa": (_p("gpa"), _p("size", 0)),
    "translate": (_p("hva"), _p("length"), _p("gpa", None, kw=True)),
    "to_iova_many": (_p("hvas", batch=True), _p("missing", None, kw=True)),
    "gpa_to_iova_many": (_p("gpas", batch=True), _p("missing", None, kw=True)),
    "__contains__": (_p("item"),),
}

# Calls that only look: a first shrinking guess drops them all (but the last).
_QUERIES = frozenset(
    {
        "find",
        "find_iova",
        "find_gpa",
        "find_all",
        "find_iova_all",
        "__contains__",
        "__reversed__",
        "_equality_state",
        "copy",
        "translate",
        "to_translated_many",
        "to_iova_many",
        "gpa_to_iova_many",
        "__len__",
        "__iter__",
        "maps",
        "host_maps",
        "gpa_maps",
        "allocated",
        "check",
        "closed",
    }
)


def _is_default(value: Any, default: Any) -> bool:
    # Same type as well as equal: ``3`` for ``Perm.RW`` or ``0.0`` for ``0`` are different calls.
    return value is default or (type(value) is type(default) and value == default)


def _batch_input(value: Any) -> tuple[Any, Any]:
    """``(what both sides get, what the log keeps)`` for a batch argument.

    A one-shot iterator is read once into a ``_OneShot``, from which each side gets a fresh
    iterator (``_invoke``): both see the same values, and both get an iterator, as the caller
    passed.  Anything else goes to both sides as it is, and the log keeps a copy so a replay sees
    the values of the time of the call even if the caller reuses the buffer.
    """
    try:
        is_iterator = iter(value) is value
    except (TypeError, NotImplementedError):  # NotImplementedError: a 2-D memoryview
        return value, value  # not iterable: a bad-input call, both sides should refuse it
    if is_iterator:
        value = _OneShot(value)
        return value, value
    if type(value) is list:
        return value, list(value)
    if isinstance(value, array):
        return value, array(value.typecode, value)
    if isinstance(value, memoryview):
        return value, _copy_view(value)
    if type(value).__module__ == "numpy" and hasattr(value, "copy"):
        step = _step(value)
        if step == 1:
            return value, value.copy()
        import numpy  # the caller's array came from it

        # _spread() in NumPy: each item |step| times in address order, the last once.
        order = value if step > 0 else value[::-1]
        span = numpy.repeat(order, abs(step))[: (len(value) - 1) * abs(step) + 1]
        return value, span[::step]
    return value, value


# --------------------------------------------------------------------------- buffer layouts
#
# A buffer is copied for the log, cut by the shrinker and written into a reproducer with its
# layout: the same format (byte order included), the same step between items (a view such as
# ``a[::2]`` or ``a[::-1]``) and the same read-only flag, so that a backend that mishandles one
# of them still diverges on the copy, the cut and the reproducer.  The gaps of a strided copy
# hold the item before them (the caller's gap bytes are not reachable through a memoryview).


def _step(value: Any) -> int:
    """Items between consecutive elements of a 1-D buffer (negative when it runs backwards);
    1 when contiguous, or laid out in a way no copy rebuilds (a zero stride, a stride that is
    not a whole number of items)."""
    try:
        if value.ndim != 1 or len(value) < 2:
            return 1
        (stride,) = value.strides
        itemsize = value.itemsize
    except (AttributeError, TypeError, ValueError):
        return 1
    if stride == 0 or not itemsize or stride % itemsize:
        return 1
    return int(stride // itemsize)


def _spread(items: list[Any], step: int) -> list[Any]:
    """The items of a span, lowest address first, where ``span[::step] == items``; each gap
    holds the item before it."""
    if step == 1 or not items:
        return list(items)
    order = items if step > 0 else items[::-1]
    return [x for x in order[:-1] for _ in range(abs(step))] + order[-1:]


def _native_code(fmt: str) -> str | None:
    """The one-letter format ``array`` and ``cast()`` take for ``fmt``, or None."""
    code = fmt[1:] if fmt[:1] == "@" else fmt
    return code if len(code) == 1 and code in "bBhHiIlLqQfd" else None


def _numpy_dtype(fmt: str, itemsize: int) -> str | None:
    """NumPy's name of a buffer format in a byte order of its own (``'>Q'``: ``'>u8'``)."""
    if fmt not in _INT_FORMATS or fmt[1] == "?":
        return None
    order = ">" if fmt[0] == "!" else fmt[0]
    return f"{order}{'u' if fmt[1].isupper() else 'i'}{itemsize}"


def _view_items(view: memoryview) -> list[Any] | None:
    """The elements of a 1-D memoryview, whatever its byte order; None when unreadable."""
    try:
        if _native_code(view.format) is not None:
            return list(view.tolist())
        if view.format in _INT_FORMATS and view.format[1] != "?":
            return [x for (x,) in struct.iter_unpack(view.format, view.tobytes())]
    except (TypeError, ValueError, NotImplementedError, struct.error):
        pass
    return None


def _view_of(data: bytes, fmt: str, itemsize: int, step: int, readonly: bool) -> memoryview:
    """A 1-D view in ``fmt`` of ``data`` (the span's bytes), every ``step`` items."""
    buf: Any = bytes(data) if readonly else bytearray(data)
    code = _native_code(fmt)
    view: memoryview
    if code is not None:
        view = memoryview(buf).cast("B").cast(code)  # type: ignore[call-overload]
    else:
        dtype = _numpy_dtype(fmt, itemsize)
        if dtype is None:
            raise ValueError(f"no copy of a memoryview of format {fmt!r}")
        import numpy  # such a view comes from NumPy, which makes it again

        array_: Any = numpy.frombuffer(buf, dtype=dtype)
        view = memoryview(array_)
    return view[::step] if step != 1 else view


def _copy_view(value: memoryview) -> memoryview:
    """A copy of a memoryview with its layout; the view itself when no copy rebuilds it."""
    if value.ndim != 1:  # not iterable: a bad-input call both sides refuse, kept as it is
        return value
    try:
        step, size = _step(value), value.itemsize
        span = bytes(value)  # the items in order, contiguous: the span of a step of 1
        if step != 1:
            chunks = [span[i : i + size] for i in range(0, len(span), size)]
            span = b"".join(_spread(chunks, step))
        return _view_of(span, value.format, size, step, value.readonly)
    except (TypeError, ValueError, ImportError):  # a format no copy rebuilds: keep the original
        return value


def _view_like(value: memoryview, items: list[Any]) -> memoryview:
    """``items`` in a view with the layout of ``value`` (the shrinker's cut)."""
    step, fmt = _step(value), value.format
    order = fmt[0] if fmt[:1] in ("@", "=", "<", ">", "!") else ""
    code = fmt[len(order) :]
    span = _spread(items, step)
    data = struct.pack(f"{order}{len(span)}{code}", *span)
    return _view_of(data, fmt, value.itemsize, step, value.readonly)


def _layout_suffix(step: int, readonly: bool = False) -> str:
    return (f"[::{step}]" if step != 1 else "") + (".toreadonly()" if readonly else "")


class _Spec(NamedTuple):
    """A method's parameters compiled for ``_layout`` (the hot path of every call)."""

    n_required: int  # leading positional parameters without a default
    pos_defaults: tuple[Any, ...]  # defaults of the optional positional ones after them
    keywords: tuple[tuple[str, Any], ...]  # (name, default) of the keyword ones, in order
    batch: bool  # the first parameter is a U64Input


def _compile(params: tuple[_Param, ...]) -> _Spec:
    positional = [p for p in params if p.positional]
    n_required = sum(1 for p in positional if p.required)
    # The layout the tables above follow; checked so that a new entry cannot break it quietly.
    assert all(p.required for p in positional[:n_required])
    assert params[: len(positional)] == tuple(positional)
    assert not any(p.batch for p in params[1:])
    return _Spec(
        n_required,
        tuple(p.default for p in positional[n_required:]),
        tuple((p.name, p.default) for p in params[len(positional) :]),
        params[0].batch,
    )


def _layout(
    method: str, spec: _Spec, values: tuple[Any, ...]
) -> tuple[Operation, tuple[Any, ...], dict[str, Any]]:
    """The operation to record, and the positional/keyword arguments to pass to both sides."""
    n_required = spec.n_required
    n_positional = end = n_required + len(spec.pos_defaults)
    # Trailing optional positional arguments still at their default are left out.
    while n_positional > n_required and _is_default(
        values[n_positional - 1], spec.pos_defaults[n_positional - 1 - n_required]
    ):
        n_positional -= 1
    args = values[:n_positional]
    kwargs: dict[str, Any] = {}
    for (name, default), value in zip(spec.keywords, values[end:]):
        if not (value is default or (type(value) is type(default) and value == default)):
            kwargs[name] = value
    logged = args
    if spec.batch:
        passed, kept = _batch_input(values[0])
        args = (passed, *args[1:])
        logged = (kept, *args[1:])
    return Operation(method, logged, tuple(kwargs.items())), args, kwargs


# --------------------------------------------------------------------------- comparing outcomes


def _norm(value: Any) -> Any:
    """A comparable form of a returned value: strict about types where the API is."""
    if value is None or type(value) is bool or value is _SELF:
        return value
    if isinstance(value, DMAMap):
        return ("DMAMap", tuple(int(x) for x in tuple.__iter__(value)))
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, list):
        return ("list", [_norm(x) for x in value])
    if isinstance(value, tuple):
        return ("tuple", tuple(_norm(x) for x in value))
    if hasattr(type(value), "_equality_state") and hasattr(value, "closed"):
        # A tree (what copy() returns): compared by contents, across backends (a user's
        # subclass on one side copies to its own class).
        return ("tree", None if value.closed else _norm(value._equality_state()))
    if isinstance(value, (array, memoryview)) or type(value).__module__ == "numpy":
        # Batch results: compared as lists of values of an element type (an ``array('Q')``
        # against a NumPy ``uint64`` array with the same numbers agrees; ``array('d')`` or
        # ``array('q')`` does not: the contract's answer is unsigned 64-bit).
        try:
            return ("array", _element_type(value), [int(x) for x in value.tolist()])
        except (TypeError, ValueError, AttributeError):
            pass
    return ("other", type(value), value)


def _element_type(value: Any) -> str:
    """``"u64"`` for a buffer of unsigned 64-bit integers, else its own type code."""
    code: str
    if isinstance(value, array):
        code = value.typecode
    elif isinstance(value, memoryview):
        code = value.format.lstrip("@=<" if struct.pack("=H", 1) == b"\x01\x00" else "@=>")
    else:
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            return type(value).__name__
        if dtype.kind == "u" and dtype.itemsize == 8:
            return "u64"
        return str(dtype.str)
    return "u64" if code in ("Q", "L") and value.itemsize == 8 else code


def _same_error(a: BaseException, b: BaseException) -> bool:
    if type(a) is not type(b):
        return False
    for attr in ("code", "address", "existing"):
        if _norm(getattr(a, attr, None)) != _norm(getattr(b, attr, None)):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Whether two internal outcomes (values or ``_Raised``) agree."""
    if type(a) is _Raised or type(b) is _Raised:
        return type(a) is _Raised and type(b) is _Raised and _same_error(a.exc, b.exc)
    if type(a) is type(b) and (a is None or type(a) is int or type(a) is DMAMap):
        return bool(a == b)  # the common cases, without building normal forms
    try:
        return bool(_norm(a) == _norm(b))
    except Exception:  # an exotic value whose == raises: treat as different, and say so
        return False


def same_outcome(a: Any, b: Any) -> bool:
    """Whether two outcomes agree the way the differential backend compares them.

    An outcome is a returned value or an exception instance (as ``DivergenceError.left`` /
    ``.right`` and ``reproduce()`` give them).  Exceptions agree when they have the same type,
    ``.code``, ``.address`` and ``.existing``; values when they are equal with the same types,
    batch arrays compared element by element, of unsigned 64-bit integers both (``array('Q')``
    or a NumPy ``uint64`` array) or of the same type code.
    """
    a = _Raised(a) if isinstance(a, BaseException) else a
    b = _Raised(b) if isinstance(b, BaseException) else b
    return _same(a, b)


def _public(outcome: Any) -> Any:
    return outcome.exc if type(outcome) is _Raised else outcome


# --------------------------------------------------------------------------- rendering


def _render(value: Any, imports: set[str]) -> str:
    """``value`` as Python source with hex integers; records the imports it needs (a name, or
    a whole ``from ... import ...`` line)."""
    if value is None or type(value) is bool:
        return repr(value)
    if isinstance(value, Perm):
        imports.add("Perm")
        return f"Perm.{value.name}" if value.name else f"Perm({int(value)})"
    if isinstance(value, DMAMap):
        return _render_map(value, imports)
    if type(value) is int:
        return f"{value:#x}" if value >= 0 else f"-{-value:#x}"
    if type(value) is float:
        return f"float({str(value)!r})" if not math.isfinite(value) else repr(value)
    if isinstance(value, (str, bytes)):
        return repr(value)
    if type(value) is list:
        return "[" + ", ".join(_render(x, imports) for x in value) + "]"
    if type(value) is tuple:
        inner = ", ".join(_render(x, imports) for x in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if type(value) is _OneShot:
        values = _render(value.values, imports)
        if value.error is None:
            return f"iter({values})"
        imports.add(_THEN_RAISE)  # the caller's iterator raised after its values: so does this
        return f"_then_raise({values}, {_render_exception(value.error, imports)})"
    if type(value) is range:
        bounds = [value.start, value.stop] + ([value.step] if value.step != 1 else [])
        return f"range({', '.join(_render(x, imports) for x in bounds)})"
    if isinstance(value, array):
        imports.add("array")
        items = ", ".join(_render(x, imports) for x in value.tolist())
        return f"array({value.typecode!r}, [{items}])"
    if isinstance(value, memoryview):
        return _render_view(value, imports)
    if type(value).__module__ == "numpy":
        imports.add("numpy")
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a NumPy scalar
            return f"numpy.{type(value).__name__}({_render(value.item(), imports)})"
        if hasattr(value, "tolist") and hasattr(value, "dtype"):
            step = _step(value)
            items = _render(_spread(value.tolist(), step), imports)
            return f"numpy.array({items}, dtype={_render_dtype(value.dtype)}){_layout_suffix(step)}"
    if isinstance(value, int):  # another int subclass
        return f"{int(value):#x}"
    return _render_other(value, imports)


def _render_other(value: Any, imports: set[str]) -> str:
    """An object of a type the renderer does not know, as Python that runs: its repr when that
    is Python (with the import its class needs), else the object pickled, else a list of its
    items, else an ``_Opaque`` stand-in; the reproducer says, in a comment, which."""
    cls = type(value)
    try:
        text = repr(value)
    except Exception:  # a repr that raises: a divergence must still be reported
        text = f"<{cls.__qualname__} object whose repr raised>"
    where = _importable(cls)
    if where is not None and text.startswith(f"{where[1]}(") and _parses(text):
        imports.add(f"from {where[0]} import {where[1]}")  # Decimal('1.5'), OnlyInt(0x10)
        return text
    if cls.__module__ == "builtins" and getattr(builtins, cls.__qualname__, None) is cls:
        if _parses(text):  # a set, a dict, a complex
            return text
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:  # the object itself, when its class can be imported where the reproducer runs
        data = pickle.dumps(value) if where is not None else None
    except Exception:  # not picklable
        data = None
    if data is not None:
        imports.update(("import pickle", f"# {shown} is written pickled: its repr is not Python"))
        return f"pickle.loads({data!r})"
    try:
        items = None if iter(value) is value else list(value)
    except Exception:  # no items to list
        items = None
    if items is not None:
        imports.add(f"# {shown} is written as a list of its items: its repr is not Python")
        return _render(items, imports)
    imports.add(_OPAQUE)
    imports.add(f"# {shown} is written as _Opaque(...): its repr is not Python")
    return f"_Opaque({text!r})"


def _parses(text: str) -> bool:
    try:
        compile(text, "<repr>", "eval")
    except (SyntaxError, ValueError):
        return False
    return True


#: The stand-in a reproducer defines for an object whose repr is not Python.
_OPAQUE = (
    "class _Opaque:\n"
    '    """Stands for an object whose repr is not Python: no number, no items."""\n'
    "\n"
    "    def __init__(self, text):\n"
    "        self.text = text\n"
    "\n"
    "    def __repr__(self):\n"
    "        return self.text\n"
)


#: The helper a reproducer defines when a call's one-shot iterator raised after its values.
_THEN_RAISE = (
    "def _then_raise(values, error):\n"
    '    """A one-shot iterator over ``values`` that then raises ``error``, as the call\'s did.\n'
    '    """\n'
    "    yield from values\n"
    "    raise error\n"
)


def _importable(cls: type) -> tuple[str, str] | None:
    """``(module, name)`` to import ``cls`` by, or None for a builtin or a local class."""
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if not module or module == "builtins" or not name.isidentifier():
        return None
    return module, name


def _render_map(value: DMAMap, imports: set[str]) -> str:
    """A map as its constructor call; a forged one (``tuple.__new__``, fields the constructor
    refuses or normalises) as the same forgery, so that the reproducer passes what the call
    passed."""
    imports.update(("DMAMap", "Perm"))
    fields = tuple(tuple.__iter__(value))
    try:
        made: tuple[Any, ...] | None = tuple(tuple.__iter__(DMAMap(*fields)))
    except Exception:  # the constructor refuses the fields: a forgery
        made = None
    if made is not None and len(made) == len(fields) and all(
        type(a) is type(b) and a == b for a, b in zip(made, fields)
    ):
        return repr(value)
    return f"tuple.__new__(DMAMap, {_render(fields, imports)})"


def _render_exception(exc: BaseException, imports: set[str]) -> str:
    """An exception as the call that makes it again (its class imported when not builtin)."""
    cls = type(exc)
    try:
        reduced = exc.__reduce__()
        args = reduced[1] if reduced[0] is cls else exc.args
    except Exception:  # an exception that cannot say how it was made
        args = exc.args
    if cls.__module__ != "builtins":
        where = _importable(cls)
        if where is None:  # a class no import reaches: an exception with the same text
            return f"RuntimeError({str(exc)!r})"
        imports.add(f"from {where[0]} import {where[1]}")
    return f"{cls.__qualname__}({', '.join(_render(a, imports) for a in args)})"


def _render_dtype(dtype: Any) -> str:
    """A NumPy dtype as source: ``numpy.uint64``, or its string when that name does not say it
    all (another byte order: ``'>u8'``)."""
    import numpy

    name = dtype.name
    if dtype.fields is not None:  # a structured record
        return f"numpy.dtype({dtype.descr!r})"
    if name.isidentifier() and hasattr(numpy, name) and numpy.dtype(name) == dtype:
        return f"numpy.{name}"
    return repr(dtype.str)


def _render_view(value: memoryview, imports: set[str]) -> str:
    """A memoryview as source with its format, step and read-only flag."""
    code, items = _native_code(value.format), None
    if value.ndim == 1:
        items = _view_items(value)
    if items is not None:
        step = _step(value)
        suffix = _layout_suffix(step, value.readonly)
        span = _render(_spread(items, step), imports)
        if code is not None:
            imports.add("array")
            return f"memoryview(array({code!r}, {span})){suffix}"
        # cast() makes only native formats: a view in a byte order of its own comes from
        # NumPy (or the like), and NumPy makes it again.
        imports.add("numpy")
        dtype = _numpy_dtype(value.format, value.itemsize)
        return f"memoryview(numpy.array({span}, dtype={dtype!r})){suffix}"
    shape = "" if value.ndim == 1 else f", {list(value.shape or ())!r}"
    return f"memoryview({bytes(value)!r}).cast({value.format!r}{shape})"


def _describe(outcome: Any) -> str:
    """An outcome for the message: the value in hex, or the exception and its fields."""
    imports: set[str] = set()
    if type(outcome) is _Raised:
        exc = outcome.exc
        text = f"raised {type(exc).__module__}.{type(exc).__qualname__}({str(exc)!r})"
        fields = [f"code={exc.code!r}"] if hasattr(exc, "code") else []  # QEMU's, in decimal
        fields += [
            f"{attr}={_render(getattr(exc, attr), imports)}"
            for attr in ("address", "existing")
            if hasattr(exc, attr)
        ]
        return text + (f" [{', '.join(fields)}]" if fields else "")
    if type(outcome) is list and len(outcome) > 20:
        shown = ", ".join(_render(x, imports) for x in outcome[:20])
        return f"[{shown}, ...] ({len(outcome)} items)"
    text = _render(outcome, imports)
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _qualname(cls: Any) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or repr(cls)
    return f"{module}.{name}" if module else name


# --------------------------------------------------------------------------- the base class


def _check_timeout(value: Any) -> float | None:
    """``shrink_timeout`` checked when the tree is made, not when a divergence needs it (where
    a bad one would raise in place of the ``DivergenceError``): None, or seconds >= 0
    (``math.inf``: no bound)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"shrink_timeout must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"shrink_timeout must be >= 0 seconds, not {value!r}")
    return float(value)


def _default_class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ImportError(
            f"differential.{name}: the default side {module}.{name} cannot be imported ({exc}); "
            "pass left= and right= explicitly"
        ) from exc


class _Differential:
    """What the three differential classes share: the two sides, the log, comparing, shrinking."""

    _kind = ""  # "IOVATree", "GPATree", "VhostIOVATree"
    _methods: dict[str, _Spec] = {}
    _listings: tuple[str, ...] = ()  # compared by check()

    left: Any
    """The left backend object (``left=`` class, by default the native one)."""
    right: Any
    """The right backend object (``right=`` class, by default the reference one)."""

    def __init__(
        self,
        ctor_args: tuple[Any, ...],
        left: Any,
        right: Any,
        shrink_timeout: float | None,
    ) -> None:
        for name, side in (("left", left), ("right", right)):
            if side is not None and not callable(side):
                raise TypeError(
                    f"differential.{self._kind}: {name}= takes a class with the {self._kind} "
                    f"API (native.{self._kind}, say), not {type(side).__name__}"
                )
        self._left_cls = (
            left if left is not None else _default_class("iova_native.native", self._kind)
        )
        self._right_cls = (
            right if right is not None else _default_class("iova_native.reference", self._kind)
        )
        self._ctor_args = ctor_args
        self.shrink_timeout = _check_timeout(shrink_timeout)
        self._log: list[Operation] = []
        # Constructing is compared too (VhostIOVATree checks its arguments).
        lo = _construct(self._left_cls, ctor_args)
        ro = _construct(self._right_cls, ctor_args)
        agree = (type(lo) is _Raised) == (type(ro) is _Raised) and (
            type(lo) is not _Raised or _same_error(lo.exc, ro.exc)
        )
        if not agree:
            for outcome in (lo, ro):
                if type(outcome) is not _Raised:
                    _close_quietly(outcome)
            self._constructor_diverged(lo, ro)
        if type(lo) is _Raised:
            raise lo.exc
        self.left = lo
        self.right = ro

    # ----------------------------------------------------------------- the one call path

    def _call(self, method: str, values: tuple[Any, ...]) -> Any:
        op, args, kwargs = _layout(method, self._methods[method], values)
        return self._run(op, args, kwargs)

    def _run(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._run_both(op, args, kwargs)[0]

    def _run_both(
        self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Run ``op`` on both sides; both values when they agree, else as ``_run``."""
        self._log.append(op)
        if op.kind == _CALL:
            # Not op.apply(): the sides get the caller's own objects, the log keeps copies.
            lo = _invoke(self.left, op.method, args, kwargs)
            ro = _invoke(self.right, op.method, args, kwargs)
        else:
            lo = _outcome(op, self.left)
            ro = _outcome(op, self.right)
        if not _same(lo, ro):
            self._diverged(op, lo, ro)
        if type(lo) is _Raised:
            exc = lo.exc
            del lo, ro  # the frame in exc's traceback must not hold exc: no reference cycle
            try:
                raise exc
            finally:
                del exc
        return lo, ro

    def _plain(self, method: str, kind: int = _CALL) -> Any:
        return self._run(Operation(method, kind=kind), (), {})

    # ----------------------------------------------------------------- shared API

    def __len__(self) -> int:
        return int(self._plain("__len__", _LEN))

    def clear(self) -> None:
        """Remove everything, on both sides."""
        self._plain("clear")

    def close(self) -> None:
        """Close both sides; every later call raises ``ValueError`` (from both)."""
        self._plain("close")

    @property
    def closed(self) -> bool:
        """Whether the tree is closed (both sides must say the same)."""
        return bool(self._plain("closed", _ATTR))

    def check(self) -> None:
        """``check()`` on both sides, then compare their whole contents."""
        self._plain("check")
        for listing in self._listings:
            self._plain(listing)

    def __enter__(self: _D) -> _D:
        self._plain("__enter__")
        return self

    def __exit__(self, *exc: object) -> None:
        # Both sides close; the exception info is not theirs to see, and not renderable.
        self._run(Operation("__exit__", (None, None, None)), (None, None, None), {})

    # ----------------------------------------------------------------- container API

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by contents

    def _equality_state(self) -> Any:
        return self._plain("_equality_state")

    def __eq__(self, other: object) -> bool:
        """Same class name and equal contents (both sides must agree on this tree's)."""
        if not same_kind(self, other):
            return NotImplemented
        return bool(self._equality_state() == other._equality_state())  # type: ignore[attr-defined]

    def __contains__(self, item: object) -> bool:
        """Whether a stored map equals ``item`` in all five fields."""
        return bool(self._call("__contains__", (item,)))

    def copy(self: _D) -> _D:
        """An independent differential tree: each side copied by its own backend, the call log
        carried over (the copy's reproducers start from the same fresh tree)."""
        left, right = self._run_both(Operation("copy"), (), {})
        return self._twin(left, right, list(self._log))

    def __copy__(self: _D) -> _D:
        return self.copy()

    def __deepcopy__(self: _D, memo: dict[int, Any]) -> _D:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        self._equality_state()  # the sides must agree before they are saved
        state = (self._left_cls, self._right_cls, self._ctor_args, self.shrink_timeout,
                 self._saved_log(), self.left, self.right)
        return (_rebuild, (type(self), state))

    def _saved_log(self) -> list[Operation]:
        """What a pickle keeps of the log: the calls a replay needs.  Queries change nothing;
        a tree's contents are one ``update`` (calls with bad input, a forged map say, may not
        even pickle)."""
        if "update" not in self._methods:
            return [op for op in self._log if op.method not in _QUERIES and _pickles(op)]
        maps = self._plain("maps")
        return [Operation("update", (maps,))] if maps else []

    def _twin(self, left: Any, right: Any, log: list[Operation]) -> Any:
        twin = object.__new__(type(self))
        twin._left_cls, twin._right_cls = self._left_cls, self._right_cls
        twin._ctor_args, twin.shrink_timeout = self._ctor_args, self.shrink_timeout
        twin._log, twin.left, twin.right = log, left, right
        return twin

    def _fill(self, maps: Any) -> None:
        """The ``maps=`` constructor argument: ``update(maps)``, or close both sides and raise."""
        if type(maps) is tuple and not maps:
            return  # the default: nothing to log
        try:
            self._call("update", (maps,))
        except BaseException:
            _close_quietly(self.left)
            _close_quietly(self.right)
            raise

    @property
    def log(self) -> list[Operation]:
        """Every call made so far, in order (a copy); ``str(op)`` renders one."""
        return list(self._log)

    def constructor(self) -> str:
        """How this object was built, as text with qualified class names."""
        args = "".join(f"{_render(a, set())}, " for a in self._ctor_args)
        return (
            f"differential.{self._kind}({args}left={_qualname(self._left_cls)}, "
            f"right={_qualname(self._right_cls)})"
        )

    def __repr__(self) -> str:
        return f"<{self.constructor()}: {len(self._log)} calls>"

    # ----------------------------------------------------------------- divergence

    def _replay(self, ops: Sequence[Operation], method: str) -> _Replay | None:
        """Run ``ops`` on a fresh pair.  If they first disagree on a ``method`` call, return the
        ops up to it and the outcomes; otherwise None (they agree, or diverge elsewhere)."""
        try:
            left = self._left_cls(*self._ctor_args)
        except Exception:
            return None
        try:
            right = self._right_cls(*self._ctor_args)
        except Exception:
            _close_quietly(left)
            return None
        try:
            outcomes: list[Any] = []
            for i, op in enumerate(ops):
                lo = _outcome(op, left)
                ro = _outcome(op, right)
                outcomes.append(lo)
                if not _same(lo, ro):
                    return (
                        _Replay(list(ops[: i + 1]), outcomes, ro) if op.method == method else None
                    )
            return None
        finally:
            _close_quietly(left)
            _close_quietly(right)

    def _shrink(self, ops: list[Operation], lo: Any, ro: Any) -> tuple[_Replay, str]:
        """Delta debugging (ddmin) over ``ops``, which end with the divergent call."""
        timeout = SHRINK_TIMEOUT if self.shrink_timeout is None else self.shrink_timeout
        start = time.monotonic()
        deadline = start + timeout
        method = ops[-1].method
        replays = 0
        timed_out = False

        def attempt(candidate: list[Operation]) -> _Replay | None:
            nonlocal replays, timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return None
            replays += 1
            return self._replay(candidate, method)

        found = attempt(ops)
        if found is None:
            if timed_out:
                note = f"shrinking stopped early after {timeout:g} s, before the first replay"
            else:
                note = (
                    f"could not reproduce on a fresh pair of {self._kind}s: the divergence "
                    "depends on something the call log does not hold (time, threads, state "
                    "shared between objects); the reproducer is the whole log, not shrunk"
                )
            return _Replay(ops, None, ro), note
        best = found

        # Cheap first guesses: the divergent call alone; only the calls that change the tree.
        for guess in (
            best.ops[-1:],
            [op for op in best.ops[:-1] if op.method not in _QUERIES] + best.ops[-1:],
        ):
            if len(guess) < len(best.ops):
                found = attempt(guess)
                if found is not None:
                    best = found
                    break

        # ddmin over every call but the last one (the divergence itself): try each of n pieces
        # alone, then each complement; on success restart coarse, else split finer.
        n = 2
        while len(best.ops) > 1 and not timed_out:
            prefix, last = best.ops[:-1], best.ops[-1:]
            if len(prefix) == 1:  # the one question left: is the last call enough alone?
                found = attempt(last)
                if found is not None:
                    best = found
                break
            n = min(n, len(prefix))
            chunk = -(-len(prefix) // n)
            pieces = [prefix[i : i + chunk] for i in range(0, len(prefix), chunk)]
            reduced = False
            for piece in pieces:
                found = attempt(piece + last)
                if found is not None:
                    best, n, reduced = found, 2, True
                    break
            if not reduced and len(pieces) > 2:  # with two pieces the complements were tried
                for i in range(len(pieces)):
                    rest = [op for j, p in enumerate(pieces) if j != i for op in p]
                    found = attempt(rest + last)
                    if found is not None:
                        best, n, reduced = found, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= len(prefix):
                    break  # 1-minimal: removing any single call loses the divergence
                n = min(len(prefix), 2 * n)
        if not timed_out:  # ddmin's answer is 1-minimal; a smaller set may lie elsewhere in the log
            best = _fewest(ops, best, attempt, lambda: timed_out) or best
        batch_note = ""
        if not timed_out:
            shrunk = _shrink_batch(best, attempt)
            if shrunk is not None:
                sizes = [len(_batch_values(r.ops[-1].args[0]) or ()) for r in (best, shrunk)]
                batch_note = f"; its batch cut from {sizes[0]:,} to {sizes[1]:,} addresses"
                best = shrunk
            before = _batch_lengths(best.ops[:-1])
            best = _shrink_earlier_batches(best, attempt)
            after = _batch_lengths(best.ops[:-1])
            if after != before:
                batch_note += (
                    f"; the batches of earlier calls cut from {sum(before):,} "
                    f"to {sum(after):,} elements"
                )
        elapsed = time.monotonic() - start
        if timed_out:
            note = (
                f"shrinking stopped early after {timeout:g} s ({replays} replays): "
                f"{len(ops)} calls shrunk to {len(best.ops)}, which may not be the fewest"
            )
        else:
            note = (
                f"{len(ops)} calls shrunk to {len(best.ops)}{batch_note} in {elapsed:.2f} s "
                f"({replays} replays)"
            )
        return best, note

    def _reproducer(self, found: _Replay, lo: Any) -> str:
        imports: set[str] = set()
        body: list[str] = []
        for i, op in enumerate(found.ops[:-1]):
            call = op.render("tree", imports)
            # Calls that raised (on both sides alike) must not stop the reproducer; when the
            # log could not be replayed, any call might.
            if found.outcomes is None or type(found.outcomes[i]) is _Raised:
                why = (
                    "may raise"
                    if found.outcomes is None
                    else f"raises {type(found.outcomes[i].exc).__name__} on both sides"
                )
                body += ["    try:", f"        {call}", f"    except Exception:  # {why}"]
                body.append("        pass")
            else:
                body.append(f"    {call}")
        last_lo = lo if found.outcomes is None else found.outcomes[-1]
        body += [
            f"    # left  ({_qualname(self._left_cls)}): {_describe(last_lo)}",
            f"    # right ({_qualname(self._right_cls)}): {_describe(found.right)}",
            "    try:",
            f"        return {found.ops[-1].render('tree', imports)}",
            "    except Exception as exc:  # the outcome is the exception: return it",
            "        return exc",
        ]
        fresh = f"{self._kind}({', '.join(_render(a, imports) for a in self._ctor_args)})"
        header = _header(imports)
        doc = [
            "def reproduce(tree):",
            f'    """Apply to a fresh ``{fresh}`` the fewest calls that make',
            f"    {_qualname(self._left_cls)} and {_qualname(self._right_cls)} disagree;",
            "    return the outcome of the last call (a value, or the exception it raised).",
            '    """',
        ]
        return "\n".join([*header, *doc, *body]) + "\n"

    def _diverged(self, op: Operation, lo: Any, ro: Any) -> None:
        found, note = self._shrink(list(self._log), lo, ro)
        reproducer = self._reproducer(found, lo)
        operation = _capped(op.render(), "the call")
        message = "\n".join(
            [
                f"left and right disagree on {operation}",
                f"  left  ({_qualname(self._left_cls)}): {_describe(lo)}",
                f"  right ({_qualname(self._right_cls)}): {_describe(ro)}",
                f"constructor: {self.constructor()}",
                f"after {len(self._log)} calls; {note}",
                "reproducer:",
                _capped(reproducer, "the reproducer (whole in .reproducer)"),
            ]
        )
        raise DivergenceError(message, operation, _public(lo), _public(ro), reproducer)

    def _constructor_diverged(self, lo: Any, ro: Any) -> None:
        imports: set[str] = set()
        args = ", ".join(_render(a, imports) for a in self._ctor_args)
        operation = f"{self._kind}({args})"
        reproducer = "\n".join(
            [
                *_header(imports),
                "def reproduce(tree):",
                f'    """The constructor itself disagrees: build ``{operation}`` with the',
                "    class of ``tree``; return the new object or the exception it raised.",
                '    """',
                "    try:",
                f"        return type(tree)({args})",
                "    except Exception as exc:  # the outcome is the exception: return it",
                "        return exc",
                "",
            ]
        )
        message = "\n".join(
            [
                f"left and right disagree on {operation}",
                f"  left  ({_qualname(self._left_cls)}): {_describe(lo)}",
                f"  right ({_qualname(self._right_cls)}): {_describe(ro)}",
                f"constructor: {self.constructor()}",
                "reproducer:",
                reproducer,
            ]
        )
        raise DivergenceError(message, operation, _public(lo), _public(ro), reproducer)


#: Replays the search for a smaller set than delta debugging's may take, at most.
FEWEST_BUDGET = 2000


def _fewest(
    ops: list[Operation], best: _Replay, attempt: Any, expired: Any
) -> _Replay | None:
    """A set of fewer calls than ``best``'s, taken from the whole log ``ops``, that diverges.

    Delta debugging keeps cutting the set it holds, so it ends where removing any one call
    loses the divergence: the fewest calls within that set, not always within the log (with
    a bug that needs two maps of one kind or three of any, a log of three plain inserts and
    then two of that kind shrinks to the three).  Every smaller set of the log's calls before
    the divergent one is tried, smallest first, while a size has at most FEWEST_BUDGET sets
    left to try (calls that read the same are one)."""
    prefix, last = ops[:-1], ops[-1:]
    budget = FEWEST_BUDGET
    keys: list[Any] | None = None
    for size in range(1, len(best.ops) - 1):
        if math.comb(len(prefix), size) > budget:
            return None
        keys = keys or [_same_call_key(i, op) for i, op in enumerate(prefix)]
        seen: set[tuple[Any, ...]] = set()
        for combo in itertools.combinations(range(len(prefix)), size):
            key = tuple(keys[i] for i in combo)
            if key in seen:
                continue
            seen.add(key)
            budget -= 1
            found: _Replay | None = attempt([prefix[i] for i in combo] + last)
            if found is not None:
                return found
            if expired():
                return None
    return None


def _same_call_key(index: int, op: Operation) -> Any:
    """Equal for two calls that read the same (its source); a long batch is never rendered."""
    if op.args and len(_batch_values(op.args[0]) or ()) > BATCH_SHRINK_TO:
        return ("#", index)
    return op.render()


def _header(imports: set[str]) -> list[str]:
    """The lines before ``reproduce()``: its imports and helpers, then two blank lines."""
    lines = sorted(line for line in imports if line.startswith("import "))
    if "numpy" in imports:
        lines.append("import numpy")
    if "array" in imports:
        lines.append("from array import array")
    names = sorted(imports & {"DMAMap", "Perm"})
    if names:
        lines.append(f"from iova_native import {', '.join(names)}")
    lines += sorted(line for line in imports if line.startswith("from "))
    notes = sorted(line for line in imports if line.startswith("# "))
    if notes:
        lines += [""] * bool(lines) + notes
    for helper in (_THEN_RAISE, _OPAQUE):
        if helper in imports:
            lines += ["", "", *helper.splitlines()]
    return [*lines, "", ""] if lines else []


def _pickles(op: Operation) -> bool:
    try:
        pickle.dumps(op)
    except Exception:  # a bad-input call's argument: it changed nothing, the replay skips it
        return False
    return True


def _rebuild(cls: Any, state: tuple[Any, ...]) -> Any:
    """Unpickle a differential tree."""
    left_cls, right_cls, ctor_args, shrink_timeout, log, left, right = state
    tree = object.__new__(cls)
    tree._left_cls, tree._right_cls, tree._ctor_args = left_cls, right_cls, ctor_args
    tree.shrink_timeout, tree._log, tree.left, tree.right = shrink_timeout, log, left, right
    tree._equality_state()  # the two sides saved must still agree
    return tree


def _capped(text: str, what: str) -> str:
    if len(text) <= MESSAGE_CAP:
        return text
    return f"{text[:MESSAGE_CAP]} ... [{what}: {len(text):,} characters, cut]"


# --------------------------------------------------------------------------- batch shrinking


def _batch_values(value: Any) -> list[Any] | None:
    """The elements of a recorded batch argument, or None when it is no batch to cut."""
    if type(value) is _OneShot:
        return list(value.values)
    if type(value) in (list, tuple):
        return list(value)
    if isinstance(value, memoryview):
        return _view_items(value) if value.ndim == 1 else None
    if isinstance(value, array) or type(value).__module__ == "numpy":
        if getattr(value, "ndim", 1) == 1 and hasattr(value, "tolist"):
            try:
                return list(value.tolist())
            except (TypeError, ValueError, NotImplementedError):
                return None
    return None


def _rebuilt(value: Any, items: list[Any]) -> Any:
    """``items`` in the same kind of container as the batch argument ``value``, laid out as it
    is (a one-shot iterator that raised raises after them too)."""
    if type(value) is _OneShot:
        shot = _OneShot(iter(items))
        shot.error = value.error
        return shot
    if type(value) is tuple:
        return tuple(items)
    if isinstance(value, array):
        return array(value.typecode, items)
    if isinstance(value, memoryview):
        return _view_like(value, items)
    if type(value).__module__ == "numpy":
        import numpy

        step = _step(value)
        rebuilt = numpy.asarray(_spread(items, step), dtype=value.dtype)
        return rebuilt[::step] if step != 1 else rebuilt
    return items


def _as_ints(outcome: Any) -> list[int] | None:
    if type(outcome) is _Raised or not hasattr(outcome, "tolist"):
        return None
    try:
        return [int(x) for x in outcome.tolist()]
    except (TypeError, ValueError):
        return None


def _focus(values: list[Any], lo: Any, ro: Any) -> list[int]:
    """Indices of the batch where the sides part: answers that differ, and the addresses that
    an error names."""
    a, b = _as_ints(lo), _as_ints(ro)
    found: list[int] = []
    if a is not None and b is not None and len(a) == len(b):
        found = [i for i, (x, y) in enumerate(zip(a, b)) if x != y][:20]
    for outcome in (lo, ro):
        address = getattr(outcome.exc, "address", None) if type(outcome) is _Raised else None
        if type(address) is int:
            found += [i for i, v in enumerate(values) if v == address][:5]
    return sorted(set(found))


def _batch_candidates(values: list[Any], lo: Any, ro: Any) -> Iterator[list[Any]]:
    """Shorter batches to try, smallest first: the elements where the sides part with two
    neighbours each; the batch up to the last of them (a fault tied to a position); the first
    BATCH_SHRINK_TO addresses."""
    focus = _focus(values, lo, ro)
    if focus:
        near = sorted({j for i in focus for j in range(i - 2, i + 3) if 0 <= j < len(values)})
        yield [values[j] for j in near][:BATCH_SHRINK_TO]
        if focus[-1] < BATCH_SHRINK_TO:
            yield values[: focus[-1] + 1]
    yield values[:BATCH_SHRINK_TO]


def _shrink_batch(found: _Replay, attempt: Any) -> _Replay | None:
    """``found`` with the batch argument of its last call cut to at most BATCH_SHRINK_TO
    addresses where a replay still diverges; None when it is short already or nothing
    shorter diverges.  Candidates are tried as they come, then halves, while one diverges."""
    op = found.ops[-1]
    values = _batch_values(op.args[0]) if op.args else None
    if values is None or len(values) <= BATCH_SHRINK_TO:
        return None
    lo = found.outcomes[-1] if found.outcomes else None

    def replay(items: list[Any]) -> _Replay | None:
        shorter = op._replace(args=(_rebuilt(op.args[0], items), *op.args[1:]))
        result: _Replay | None = attempt([*found.ops[:-1], shorter])
        return result

    for items in _batch_candidates(values, lo, found.right):
        result = replay(items)
        if result is not None:
            return result
    best: _Replay | None = None
    while len(values) > BATCH_SHRINK_TO:  # no luck: keep whichever half still diverges
        half = len(values) // 2
        for items in (values[:half], values[half:]):
            result = replay(items)
            if result is not None:
                best, values = result, items
                break
        else:
            break
    return best


def _batch_lengths(ops: list[Operation]) -> list[int]:
    return [len(_batch_values(op.args[0]) or ()) if op.args else 0 for op in ops]


def _shrink_earlier_batches(found: _Replay, attempt: Any) -> _Replay:
    """``found`` with the batch argument of each call before the last (``update``'s maps, most
    often) cut while a replay still diverges: to its first BATCH_SHRINK_TO elements, else to
    whichever half diverges, until it is that short or neither half diverges."""
    best = found
    for index in range(len(found.ops) - 1):
        while True:
            op = best.ops[index]
            values = _batch_values(op.args[0]) if op.args else None
            if values is None or len(values) <= BATCH_SHRINK_TO:
                break
            half = len(values) // 2
            for items in (values[:BATCH_SHRINK_TO], values[:half], values[half:]):
                shorter = op._replace(args=(_rebuilt(op.args[0], items), *op.args[1:]))
                result: _Replay | None = attempt(
                    [*best.ops[:index], shorter, *best.ops[index + 1 :]]
                )
                if result is not None:
                    best = result
                    break
            else:
                break
    return best


def _construct(cls: Any, args: tuple[Any, ...]) -> Any:
    try:
        return cls(*args)
    except Exception as exc:
        return _Raised(exc)


def _invoke(obj: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        result = getattr(obj, method)(*_fresh_args(args), **kwargs)
    except Exception as exc:  # an outcome to compare
        return _Raised(exc)
    # ``__enter__`` returns each side itself: the same answer, though not the same object.
    return _SELF if result is obj and method == "__enter__" else result


def _close_quietly(obj: Any) -> None:
    try:
        obj.close()
    except Exception:  # a replay's leftovers; its own errors were already compared
        pass


# --------------------------------------------------------------------------- the three classes


class IOVATree(_Differential):
    """``IOVATree`` (docs/contract.md) run on two backends side by side."""

    _kind = "IOVATree"
    _methods = {name: _compile(params) for name, params in _IOVA_METHODS.items()}
    _listings = ("maps",)

    def __init__(
        self,
        maps: Iterable[DMAMap] = (),
        *,
        left: Any = None,
        right: Any = None,
        shrink_timeout: float | None = None,
    ) -> None:
        """``left``/``right``: classes with the IOVATree API (default: native, reference).
        ``shrink_timeout``: seconds for shrinking a divergence (default ``SHRINK_TIMEOUT``).
        ``maps``: inserted with ``update()``, all or nothing."""
        super().__init__((), left, right, shrink_timeout)
        self._fill(maps)

    def find_all(self, iova: int, size: int = 0) -> list[DMAMap]:
        """Every stored map overlapping ``[iova, iova + size]``, in IOVA order."""
        return self._call("find_all", (iova, size))  # type: ignore[no-any-return]

    def find_iova_all(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> list[DMAMap]:
        """Every map whose translated range overlaps (and ``id`` matches), in IOVA order."""
        return self._call("find_iova_all", (translated_addr, size, id))  # type: ignore[no-any-return]

    def insert(self, map: DMAMap) -> None:
        """Store ``map`` (``OverlapError`` if its IOVA range is taken)."""
        self._call("insert", (map,))

    def find(self, iova: int, size: int = 0) -> DMAMap | None:
        """The stored map with the lowest IOVA overlapping ``[iova, iova + size]``."""
        return self._call("find", (iova, size))  # type: ignore[no-any-return]

    def find_iova(
        self, translated_addr: int, size: int = 0, id: int | None = None
    ) -> DMAMap | None:
        """The lowest-IOVA map whose translated range overlaps (and ``id`` matches)."""
        return self._call("find_iova", (translated_addr, size, id))  # type: ignore[no-any-return]

    def translate(self, translated_addr: int, length: int, id: int | None = None) -> list[Segment]:
        """Minimal ``(iova, nbytes)`` segments covering the buffer."""
        return self._call("translate", (translated_addr, length, id))  # type: ignore[no-any-return]

    def alloc(
        self,
        size: int,
        translated_addr: int = 0,
        perm: Perm = Perm.RW,
        id: int = 0,
        iova_begin: int = 0,
        iova_last: int = MAX_U64,
        align: int = 1,
        policy: str = "first",
    ) -> DMAMap:
        """Place, insert and return a map of ``size`` in ``[iova_begin, iova_last]``."""
        values = (size, translated_addr, perm, id, iova_begin, iova_last, align, policy)
        return self._call("alloc", values)  # type: ignore[no-any-return]

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove every map overlapping ``[iova, iova + size]``; return how many."""
        return self._call("remove", (iova, size))  # type: ignore[no-any-return]

    def to_translated_many(self, iovas: U64Input, missing: int | None = None) -> U64Array:
        """Batch IOVA -> translated address."""
        return self._call("to_translated_many", (iovas, missing))  # type: ignore[no-any-return]

    def to_iova_many(
        self, translated_addrs: U64Input, id: int | None = None, missing: int | None = None
    ) -> U64Array:
        """Batch translated address -> IOVA."""
        values = (translated_addrs, id, missing)
        return self._call("to_iova_many", values)  # type: ignore[no-any-return]

    def maps(self) -> list[DMAMap]:
        """Every map in IOVA order."""
        return self._plain("maps")  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[DMAMap]:
        # Eager: both sides listed and compared now (see the module docstring).
        return iter(self._plain("__iter__", _LIST))

    def __reversed__(self) -> Iterator[DMAMap]:
        return iter(self._plain("__reversed__", _REVERSED))

    def update(self, maps: Iterable[DMAMap]) -> None:
        """Insert every map, all or nothing."""
        self._call("update", (maps,))


class GPATree(_Differential):
    """``GPATree`` (docs/contract.md) run on two backends side by side."""

    _kind = "GPATree"
    _methods = {name: _compile(params) for name, params in _GPA_METHODS.items()}
    _listings = ("maps",)

    def __init__(
        self,
        maps: Iterable[DMAMap] = (),
        *,
        left: Any = None,
        right: Any = None,
        shrink_timeout: float | None = None,
    ) -> None:
        """``left``/``right``: classes with the GPATree API (default: native, reference).
        ``maps``: inserted with ``update()``, all or nothing."""
        super().__init__((), left, right, shrink_timeout)
        self._fill(maps)

    def find_all(self, translated_addr: int, size: int = 0) -> list[DMAMap]:
        """Every map whose translated range overlaps the range, in translated order."""
        return self._call("find_all", (translated_addr, size))  # type: ignore[no-any-return]

    def insert(self, map: DMAMap) -> None:
        """Store ``map`` (``OverlapError`` if its translated range is taken)."""
        self._call("insert", (map,))

    def find(self, translated_addr: int, size: int = 0) -> DMAMap | None:
        """The map with the lowest translated address overlapping the range."""
        return self._call("find", (translated_addr, size))  # type: ignore[no-any-return]

    def remove(self, translated_addr: int, size: int = 0) -> int:
        """Remove every map whose translated range overlaps; return how many."""
        return self._call("remove", (translated_addr, size))  # type: ignore[no-any-return]

    def to_iova_many(self, translated_addrs: U64Input, missing: int | None = None) -> U64Array:
        """Batch GPA -> IOVA."""
        return self._call("to_iova_many", (translated_addrs, missing))  # type: ignore[no-any-return]

    def maps(self) -> list[DMAMap]:
        """Every map in translated-address order."""
        return self._plain("maps")  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[DMAMap]:
        return iter(self._plain("__iter__", _LIST))

    def __reversed__(self) -> Iterator[DMAMap]:
        return iter(self._plain("__reversed__", _REVERSED))

    def update(self, maps: Iterable[DMAMap]) -> None:
        """Insert every map, all or nothing."""
        self._call("update", (maps,))


class VhostIOVATree(_Differential):
    """``VhostIOVATree`` (docs/contract.md) run on two backends side by side."""

    _kind = "VhostIOVATree"
    _methods = {name: _compile(params) for name, params in _VHOST_METHODS.items()}
    _listings = ("host_maps", "gpa_maps", "allocated")

    def __init__(
        self,
        iova_first: int,
        iova_last: int,
        page_size: int | None = None,
        *,
        left: Any = None,
        right: Any = None,
        shrink_timeout: float | None = None,
    ) -> None:
        """Both sides are built as ``cls(iova_first, iova_last, page_size)``; a constructor
        error they agree on is raised, one they disagree on is a ``DivergenceError``."""
        args = (iova_first, iova_last) if page_size is None else (iova_first, iova_last, page_size)
        super().__init__(args, left, right, shrink_timeout)

    def map_alloc(self, size: int, hva: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate an IOVA range and record IOVA->HVA."""
        return self._call("map_alloc", (size, hva, perm))  # type: ignore[no-any-return]

    def map_alloc_gpa(self, size: int, gpa: int, perm: Perm = Perm.RW) -> DMAMap:
        """Allocate an IOVA range and record GPA->IOVA."""
        return self._call("map_alloc_gpa", (size, gpa, perm))  # type: ignore[no-any-return]

    def find_iova(self, hva: int, size: int = 0) -> DMAMap | None:
        """The host-only map covering the HVA range."""
        return self._call("find_iova", (hva, size))  # type: ignore[no-any-return]

    def find_gpa(self, gpa: int, size: int = 0) -> DMAMap | None:
        """The guest map covering the GPA range."""
        return self._call("find_gpa", (gpa, size))  # type: ignore[no-any-return]

    def remove(self, iova: int, size: int = 0) -> int:
        """Remove host-only maps overlapping the IOVA range, and their allocations."""
        return self._call("remove", (iova, size))  # type: ignore[no-any-return]

    def remove_gpa(self, gpa: int, size: int = 0) -> int:
        """Remove guest maps overlapping the GPA range, and their allocations."""
        return self._call("remove_gpa", (gpa, size))  # type: ignore[no-any-return]

    def translate(self, hva: int, length: int, gpa: int | None = None) -> list[Segment]:
        """Segments through the host-only tree, or through the GPA tree with ``gpa``."""
        return self._call("translate", (hva, length, gpa))  # type: ignore[no-any-return]

    def to_iova_many(self, hvas: U64Input, missing: int | None = None) -> U64Array:
        """Batch HVA -> IOVA through the host-only maps."""
        return self._call("to_iova_many", (hvas, missing))  # type: ignore[no-any-return]

    def gpa_to_iova_many(self, gpas: U64Input, missing: int | None = None) -> U64Array:
        """Batch GPA -> IOVA through the guest maps."""
        return self._call("gpa_to_iova_many", (gpas, missing))  # type: ignore[no-any-return]

    def host_maps(self) -> list[DMAMap]:
        """The host-only maps, in IOVA order."""
        return self._plain("host_maps")  # type: ignore[no-any-return]

    def gpa_maps(self) -> list[DMAMap]:
        """The guest maps, in GPA order."""
        return self._plain("gpa_maps")  # type: ignore[no-any-return]

    def allocated(self) -> list[DMAMap]:
        """The allocations, in IOVA order."""
        return self._plain("allocated")  # type: ignore[no-any-return]
