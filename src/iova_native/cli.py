# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``iova-native`` command (also ``python -m iova_native``).

Its help text is :data:`DESCRIPTION` and the parsers' own texts, plain text for a terminal.
Each subcommand is added by one function of :data:`COMMANDS`: it takes argparse's subparsers
object, adds its parser and sets ``run``, a callable ``(args) -> exit status``.  Called
without arguments the command prints its help and exits with status 0.
"""

from __future__ import annotations

import argparse
import gzip
import stat
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from . import __version__
from ._types import DivergenceError, DMAMap, Perm
from .config import add_config_command

GIB = 1 << 30
MIB = 1 << 20


def _backend(name: str) -> Any:
    if name == "reference":
        from . import reference

        return reference
    from . import native

    return native


def run_demo(backend: str = "native", out: Any = None) -> int:
    """Build a realistic SVQ tree and show what the reverse look-up answers (on ``out``, by
    default the ``sys.stdout`` of the call)."""
    out = sys.stdout if out is None else out
    mod = _backend(backend)
    say = lambda *a: print(*a, file=out)  # noqa: E731
    tree = mod.IOVATree()
    hva_ram = 0x7F00_0000_0000
    # Guest RAM below 4 GiB at GPA 0, and the same host memory aliased at GPA 4 GiB
    # (as a ROM/RAM alias does): two maps, one HVA range, told apart by id = GPA.
    low = tree.alloc(2 * GIB - 1, hva_ram, Perm.RW, id=0x0, iova_begin=0x1000)
    alias = tree.alloc(2 * GIB - 1, hva_ram, Perm.RW, id=4 * GIB, iova_begin=0x1000)
    # SVQ vrings: host-only buffers, id 0 would collide with GPA 0, so they carry a tag.
    vring = tree.alloc(0x3FFF, 0x7E00_0000_0000, Perm.RW, id=0xFFFF_0000, iova_begin=0x1000)
    # A control buffer right after RAM in host memory, so that a buffer crosses two maps.
    ctrl = tree.alloc(0xFFF, hva_ram + 2 * GIB, Perm.RO, id=0xFFFF_1000, iova_begin=0x1000)
    say(f"{mod.__name__}.IOVATree with {len(tree)} maps:")
    for m in tree:
        say(f"  {m!r}")
    needle = hva_ram + 0x1234
    say(f"\nfind_iova({needle:#x})            -> {tree.find_iova(needle)!r}")
    say(f"find_iova({needle:#x}, id=4 GiB)  -> {tree.find_iova(needle, id=4 * GIB)!r}")
    say("  without id the lowest IOVA wins; with id the alias the guest named wins")
    start = hva_ram + 2 * GIB - 0x800
    segs = tree.translate(start, 0x1000)
    say(f"\ntranslate({start:#x}, 0x1000) spans the end of RAM and a control buffer:")
    for iova, nbytes in segs:
        say(f"  IOVA {iova:#x} + {nbytes:#x} bytes")
    tree.check()
    assert low.iova != alias.iova and vring and ctrl
    tree.close()
    return 0


# =========================================================================== replay


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


#: Look-ups after each map and unmap when --lookups is not given.
DEFAULT_LOOKUPS = 2
#: Histogram columns shown at most (the tails are folded into the first and last).
MAX_COLUMNS = 9
BACKENDS = ("native", "reference", "both")


def _trees(backend: str) -> tuple[Any, Any]:
    """A fresh (IOVATree, GPATree) pair of ``backend``; ``both`` is the differential pair."""
    if backend == "both":
        from . import differential

        return differential.IOVATree(), differential.GPATree()
    mod = _backend(backend)
    return mod.IOVATree(), mod.GPATree()


class _Bar:
    """A tqdm bar on stderr, or nothing: ``update(n)`` and ``total`` work either way."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int) -> None:
        """``n`` more units done."""
        if self.bar is not None:
            self.bar.update(n)

    def set_total(self, total: int) -> None:
        """The total, once known (0: unknown)."""
        if self.bar is not None and total and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()


class _TextBar:
    """The part of tqdm's API that :class:`_Bar` uses, as one line redrawn twice a second: the
    progress shown when tqdm is missing (an install without dependencies, a distribution
    package that left it out)."""

    WIDTH = 60

    def __init__(self, total: int, unit: str, desc: str, file: IO[str]) -> None:
        self.total, self.unit, self.desc, self.file = total, unit, desc, file
        self.n = 0
        self.drawn = 0.0
        self.refresh()

    def update(self, n: int) -> None:
        self.n += n
        if time.monotonic() - self.drawn >= 0.5:
            self.refresh()

    def refresh(self) -> None:
        self.drawn = time.monotonic()
        scale, unit = (1e6, "MB") if self.unit == "B" else (1, self.unit + "s")
        done = f"{self.n / scale:,.1f}" if scale > 1 else f"{self.n:,}"
        if self.total:
            whole = f"{self.total / scale:,.1f}" if scale > 1 else f"{self.total:,}"
            text = f"{self.desc}: {100 * self.n // self.total:3d}% ({done} of {whole} {unit})"
        else:
            text = f"{self.desc}: {done} {unit}"
        self.file.write("\r" + text[: self.WIDTH].ljust(self.WIDTH))
        self.file.flush()

    def close(self) -> None:
        self.file.write("\r" + " " * self.WIDTH + "\r")
        self.file.flush()


@contextmanager
def _progress(enabled: bool, total: int, unit: str, desc: str) -> Iterator[_Bar]:
    """A progress bar on stderr (tqdm, a dependency of the package, or a line of text if it is
    missing); none when disabled or when stderr is not a terminal."""
    bar: Any = None
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            bar = _TextBar(total, unit, desc, sys.stderr)
        else:
            bar = tqdm(total=total or None, unit=unit, unit_scale=True, desc=desc,
                       file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        yield _Bar(bar)
    finally:
        if bar is not None:
            bar.close()


def _load(source: str | None, args: argparse.Namespace, err: IO[str]) -> Any:
    """Compile a trace, or read an op stream file (told by its magic); UsageError when bad."""
    from . import trace

    if source == "":  # Path("") is the current folder: say what was given instead
        raise UsageError("an empty file name (give a trace file, or '-' for stdin)")
    if source == "-" and sys.stdin is None:  # started with stdin closed (`<&-`)
        raise UsageError("cannot read <stdin>: stdin is closed")
    if source not in (None, "-"):
        path = Path(str(source))
        magic, zipped = b"", False
        try:
            # Only a regular file can be read twice: a FIFO or a <(command) pipe is read once,
            # as a trace (opening it again would wait for a writer that is gone).
            if stat.S_ISREG(path.stat().st_mode):
                magic, zipped = _head(path, len(trace.MAGIC))
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
        if magic == trace.MAGIC:
            if args.lookups is not None:  # the stream holds the look-ups convert compiled in
                raise UsageError(f"{source} is an op stream, whose look-ups were fixed when it "
                                 "was written: --lookups goes to convert")
            try:
                data = gzip.decompress(path.read_bytes()) if zipped else path.read_bytes()
                return trace.OpStream.from_bytes(data, str(path))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            except (OSError, EOFError, zlib.error) as exc:
                raise UsageError(f"cannot read {source}: {exc}") from None
    name = f"<embedded {trace.DEFAULT_TRACE}>" if source is None else \
        "<stdin>" if source == "-" else source

    def warn(exc: trace.MalformedLine) -> None:
        if args.verbose or len(shown) < trace.MAX_SHOWN_MALFORMED:
            shown.append(exc.lineno)
            print(f"iova-native: {_where(name, exc)}: {exc.reason} (skipped)", file=err)

    shown: list[int] = []
    with _progress(not args.no_progress, 0, "B", "parse") as bar:
        last = [0]

        def progress(done: int, total: int) -> None:
            bar.set_total(total)
            bar.update(done - last[0])
            last[0] = done

        try:
            lookups = DEFAULT_LOOKUPS if args.lookups is None else args.lookups
            return trace.compile_trace(source, lookups=lookups, strict=args.strict,
                                       on_malformed=warn, progress=progress)
        except trace.MalformedLine as exc:
            raise UsageError(f"{_where(name, exc)}: {exc.reason} (--strict)") from None
        except trace.TraceInputError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        except (EOFError, zlib.error) as exc:  # a gzip file cut short or damaged
            raise UsageError(f"cannot read {name}: {exc}") from None


def _head(path: Path, size: int) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the file, gunzipped when it is gzip (and whether it was): an
    op stream is read gzipped too, as a trace is."""
    with open(path, "rb") as f:
        head = f.read(size)
    if head[:2] != b"\x1f\x8b":
        return head, False
    try:
        with gzip.open(path, "rb") as g:
            return g.read(size), True
    except (OSError, EOFError, zlib.error):  # damaged: the trace reader says how
        return b"", True


def _where(name: str, exc: Any) -> str:
    """``file:line`` as compilers print it, or ``file: record N`` in a binary file."""
    return f"{name}:{exc.lineno}" if exc.unit == "line" else f"{name}: {exc.unit} {exc.lineno}"


def _run(ops: Any, backend: str, no_progress: bool) -> tuple[Any, Any, Any]:
    """Replay ``ops`` on a fresh pair of ``backend`` trees; returns (result, iova, gpa)."""
    from . import trace

    iova_tree, gpa_tree = _trees(backend)
    with _progress(not no_progress, len(ops), "op", f"replay {backend}") as bar:
        result = trace.replay(ops, iova_tree, gpa_tree, backend=backend, progress=bar.update)
    return result, iova_tree, gpa_tree


def _compact(n: int) -> str:
    if n == 0:
        return "."
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1e6:.1f}M"


def _columns(hists: list[Any]) -> list[tuple[str, int, int]]:
    """Histogram columns as ``(label, lowest bucket, highest bucket)``, at most MAX_COLUMNS:
    one per bucket from the fastest call up; slow outliers are folded into the last column."""
    used = sorted({b for h in hists for b in h if h[b]})
    if not used:
        return []
    lo, hi = used[0], used[-1]
    if hi - lo + 1 <= MAX_COLUMNS:
        return [(f"<2^{b}", b, b) for b in range(lo, hi + 1)]
    last = lo + MAX_COLUMNS - 1
    columns = [(f"<2^{b}", b, b) for b in range(lo, last)]
    return columns + [(f">=2^{last - 1}", last, hi)]


def latency_table(result: Any) -> list[str]:
    """The per-kind latency table with its log2 histogram, as lines."""
    from . import trace

    rows = [(kind, stats) for kind, stats in result.kinds.items() if stats.count]
    hists = [stats.histogram() for _, stats in rows]
    columns = _columns(hists)
    head = f"{'op':<10} {'count':>6} {'mean':>6} {'p50':>6} {'p99':>6} |"
    widths = [max(6, len(label) + 1) for label, _, _ in columns]
    head += "".join(f"{label:>{w}}" for (label, _, _), w in zip(columns, widths))
    lines = [head]
    for (kind, stats), hist in zip(rows, hists):
        count, mean, p50, p99 = stats.summary()
        line = f"{trace.OP_NAMES[kind]:<10} {_compact(count):>6} {mean:>6.0f} {p50:>6} {p99:>6} |"
        for (_, lo, hi), w in zip(columns, widths):
            line += f"{_compact(sum(hist[b] for b in range(lo, hi + 1))):>{w}}"
        if stats.errors:
            line += f"  ({stats.errors} raised)"
        lines.append(line)
    return lines


def _plural(n: int, word: str, plural: str = "") -> str:
    """``1 map``, ``2 maps`` (``plural`` when the word does not take an s)."""
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


#: Width of the report; every line is wrapped to it.
WIDTH = 100


def _field(label: str, text: str) -> list[str]:
    """One report field: an 8-column label, the text wrapped under it."""
    return textwrap.wrap(text, WIDTH, initial_indent=f"{label:<9}", subsequent_indent=" " * 9,
                         break_on_hyphens=False) or [label]


_SHORT = {
    "vhost_vdpa_dma_map": "dma_map", "vhost_vdpa_dma_unmap": "dma_unmap",
    "vhost_vdpa_listener_region_add": "region_add",
    "vhost_vdpa_listener_region_del": "region_del",
    "vhost_vdpa_get_iova_range": "get_iova_range",
}


def _format_line(st: Any) -> str:
    """What the trace was, by the format of most of its trace lines."""
    from . import trace

    main, *others = [key for key, _ in st.formats.most_common()] or [""]
    text = f"{main}: {trace.FORMATS[main]}" if main else "none"
    if others:
        text += "; also " + ", ".join(
            f"{_plural(st.formats[key], st.unit)} of {key}" for key in others)
    return text


def _trace_lines(compiled: Any, result: Any) -> list[str]:
    """The report's lines about the trace and the model built from it."""
    st = compiled.stats
    ev = st.events
    maps = f"{ev['vhost_vdpa_dma_map']} dma_map, {ev['vhost_vdpa_dma_unmap']} dma_unmap"
    if st.with_asid or st.without_asid:
        maps += f" ({st.with_asid} with asid:, {st.without_asid} in the older format)"
    others = [f"{ev[name]} {label}" for name, label in list(_SHORT.items())[2:] if ev[name]]
    lines = _field("trace", f"{_plural(st.lines, st.unit)}, parsed and compiled in "
                   f"{compiled.parse_seconds:.2f} s")
    lines += _field("format", _format_line(st))
    lines += _field("events", ", ".join([maps, *others]))
    skipped = sum(st.unknown.values())
    top = ", ".join(f"{name.replace('vhost_vdpa_', '')} {n}"
                    for name, n in st.unknown.most_common(2))
    more = ", ..." if len(st.unknown) > 2 else ""
    lines += _field("skipped", f"{_plural(skipped, st.unit)} of "
                    f"{_plural(len(st.unknown), 'other trace event')}"
                    f"{f' ({top}{more})' if top else ''}; "
                    f"{_plural(st.not_trace, 'non-trace ' + st.unit)}; {st.malformed} malformed")
    if st.malformed_shown:
        first = st.malformed_shown[0]
        lines += _field("", f"first malformed: {first.unit} {first.lineno}: {first.reason}")
    if st.dropped:
        lines += _field("note", f"QEMU dropped {_plural(st.dropped, 'event')} (the simple "
                        "backend's buffer was full): the trace has gaps")
    if st.lost:
        lines += _field("note", f"ftrace's ring buffer lost {_plural(st.lost, 'event')} (its "
                        "reader fell behind): the trace has gaps")
    if len(st.fds) > 1:
        lines += _field("note", f"dma_map/unmap of {len(st.fds)} device fds {sorted(st.fds)} "
                        "replayed into one tree: split the trace per fd for per-device trees")
    if st.mode == "svq":
        lines += _field("model", f"SVQ: {_plural(st.guest_maps, 'guest map')} (id = GPA) and "
                        f"{st.host_maps} host-only (id 0) in one IOVATree, a GPATree beside; "
                        f"IOVAs re-allocated first-fit, {result.allocs - result.alloc_moved}/"
                        f"{result.allocs} where QEMU put them")
    elif st.mode == "passthrough":
        lines += _field("model", "no SVQ (IOVA = GPA): "
                        f"{_plural(st.guest_maps + st.host_maps, 'map')} inserted at the traced "
                        "IOVA")
    else:
        lines += _field("model", "no dma_map in the trace")
    return lines


def format_report(compiled: Any, result: Any, source: str | None) -> str:
    """The report of one replay: a screenful, at most WIDTH columns."""
    from . import trace

    label = "both (differential: native and reference at every call)" \
        if result.backend == "both" else result.backend
    name = compiled.name if compiled is not None else str(source)
    lines = _field("replay", f"{name}, backend {label}")
    if source is None and compiled is not None:
        lines += _field("", trace.DEFAULT_TRACE_DESCRIPTION)
    if compiled is not None:
        lines += _trace_lines(compiled, result)
    timed = result.timed_ns
    lines += _field("run", f"{_plural(result.ops, 'op')} in {result.seconds:.3f} s: "
                    f"{result.ops_per_second:,.0f} ops/s ({timed / max(1, result.ops):,.0f} "
                    "ns/op inside the timed calls)")
    lines += _field("maps", f"{result.live} live at the end, peak {result.peak}; GPA tree: "
                    f"{result.gpa_live} live")
    lines += _field("aliases", f"{_plural(len(result.alias_ranges), 'aliased HVA range')} seen "
                    f"({_plural(result.alias_events, 'map')} inserted over HVA that a live map "
                    "under another id covers)")
    lines += _field("unmaps", f"{result.unmatched_unmaps} matched nothing; "
                    f"{_plural(result.failed, 'map operation')} failed")
    lines += _field("digest", f"state {result.state_digest:#018x}  "
                    f"outcomes {result.outcome_digest:#018x}")
    if result.ops > 1:
        lines += ["", "latency per call, ns; log2 histogram: column <2^k counts calls in "
                  "[2^(k-1), 2^k) ns"]
        lines += latency_table(result)
    return "\n".join(lines)


def _compare(ops: Any, compiled: Any, args: argparse.Namespace, out: IO[str]) -> int:
    """Replay in native, then in reference; print the report and whether they agree."""
    runs = [_run(ops, backend, args.no_progress) for backend in ("native", "reference")]
    print(format_report(compiled, runs[0][0], args.trace), file=out)
    print("\ncompare  backend       ops/s   ns/op  state digest        outcomes digest", file=out)
    for result, _, _ in runs:
        per_op = result.timed_ns / max(1, result.ops)
        print(f"         {result.backend:<10}{result.ops_per_second:>10,.0f}{per_op:>8,.0f}  "
              f"{result.state_digest:#018x}  {result.outcome_digest:#018x}", file=out)
    (a, ai, ag), (b, bi, bg) = runs
    same = (ai.maps() == bi.maps() and ag.maps() == bg.maps()
            and a.outcome_digest == b.outcome_digest and a.state_digest == b.state_digest)
    verdict = "yes" if same else "NO: the backends disagree (rerun with --backend both)"
    print(f"         identical final trees and outcomes: {verdict}", file=out)
    for _, iova_tree, gpa_tree in runs:
        iova_tree.close()
        gpa_tree.close()
    return 0 if same else 1


def _open_ops(command: str, args: argparse.Namespace, err: IO[str]) -> tuple[Any, Any] | None:
    """Load ``args.trace`` for ``command``: ``(compiled trace or None, op stream)``, or None
    after printing the usage error (the caller exits with status 2)."""
    from . import trace

    try:
        loaded = _load(args.trace, args, err)
    except UsageError as exc:
        print(f"iova-native {command}: error: {exc}", file=err)
        return None
    compiled = loaded if isinstance(loaded, trace.CompiledTrace) else None
    return compiled, (compiled.ops if compiled is not None else loaded)


def run_replay(args: argparse.Namespace, out: IO[str] | None = None,
               err: IO[str] | None = None) -> int:
    """``iova-native replay``; output to ``out`` and ``err`` (default: stdout, stderr)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    opened = _open_ops("replay", args, err)
    if opened is None:
        return 2
    compiled, ops = opened
    if args.compare and args.backend is not None:
        print("iova-native replay: error: --compare replays in native, then in reference; it "
              "takes no --backend (--backend both runs them side by side instead)", file=err)
        return 2
    try:
        if args.compare:
            return _compare(ops, compiled, args, out)
        result, iova_tree, gpa_tree = _run(ops, args.backend or "native", args.no_progress)
    except DivergenceError as exc:
        print(f"iova-native replay: the backends diverged:\n{exc}", file=err)
        return 1
    print(format_report(compiled, result, args.trace), file=out)
    iova_tree.close()
    gpa_tree.close()
    _note_hidden(compiled, args, err)
    return 0


def _note_hidden(compiled: Any, args: argparse.Namespace, err: IO[str]) -> None:
    """Say how many malformed lines were not reported one by one."""
    from . import trace

    if compiled is None or args.verbose:
        return
    hidden = compiled.stats.malformed - trace.MAX_SHOWN_MALFORMED
    if hidden > 0:
        print(f"iova-native: {_plural(hidden, 'more malformed event')} not shown (--verbose "
              "shows all)", file=err)


def run_convert(args: argparse.Namespace, out: TextIO | None = None,
                err: IO[str] | None = None) -> int:
    """``iova-native convert``; output to ``out`` and ``err`` (default: stdout, stderr).  With
    ``-o -`` the op stream goes to ``out.buffer``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from . import trace

    to_stdout = args.output == "-"
    if args.output == "":
        print("iova-native convert: error: -o was given an empty file name", file=err)
        return 2
    if to_stdout and out.isatty():
        print("iova-native convert: error: an op stream is binary: not written to a terminal "
              "(redirect stdout, or give -o FILE)", file=err)
        return 2
    opened = _open_ops("convert", args, err)
    if opened is None:
        return 2
    compiled, ops = opened
    _note_hidden(compiled, args, err)
    if to_stdout:
        # The stream goes to stdout as `-` reads stdin elsewhere; the summary to stderr then.
        out.flush()
        out.buffer.write(ops.to_bytes())
        out.buffer.flush()
    else:
        try:
            ops.write(args.output)
        except OSError as exc:
            print(f"iova-native convert: error: cannot write {args.output}: {exc.strerror}",
                  file=err)
            return 2
    counts = ops.counts()
    kinds = ", ".join(f"{counts[k]} {trace.OP_NAMES[k]}" for k in trace.OpKind if counts[k])
    print(f"wrote {_plural(len(ops), 'op')} to {'stdout' if to_stdout else args.output} "
          f"({kinds})", file=err if to_stdout else out)
    return 0


# =========================================================================== arguments

#: The top-level help.
DESCRIPTION = """\
Replay QEMU vhost-vDPA traces against QEMU's IOVA trees, built on GLib's GTree the way
QEMU builds them (the native C core) or in plain Python (the reference), and report what
the trees did: speed, peak maps, aliased HVA ranges, unmaps that matched nothing, latency
histograms and digests of the final trees."""

EPILOG = """\
Run 'iova-native COMMAND --help' for the options of one command; without arguments
iova-native prints this help.

exit status:
  0  done, or help shown
  1  the backends disagreed (replay --backend both, replay --compare); config:
     the C library, pkg-config or GLib's development files are missing
  2  bad input: a file that is not a trace or holds no vhost-vDPA event, a malformed
     event with --strict, a bad op stream, or a wrong option; or output that cannot
     be written"""

REPLAY_DESCRIPTION = """\
Replay a QEMU trace against an IOVATree and a GPATree and print a report.

Events read: vhost_vdpa_dma_map and vhost_vdpa_dma_unmap (with or without asid:,
vdpa: or vdpa_shared:), vhost_vdpa_listener_region_add and _region_del (the GPA
side) and vhost_vdpa_get_iova_range (the allocator's bounds). Other trace events
are counted by name; lines that are not trace events (QEMU's warnings) are
counted and never fatal.

Formats read, told apart per file, plain or gzip:
  log          -trace 'vhost_vdpa_*' (or -d trace:vhost_vdpa_*) with the log
               backend, to stderr or -D FILE; bare, with the PID@SEC.USEC:
               prefix (-msg timestamp=on before QEMU 10.1; always before 7.1),
               with an ISO-8601 timestamp (-msg timestamp=on, QEMU 10.1 and
               later), or after the message context of later QEMU
               ([time ][[guest] ]qemu-system-x86_64: (tid:thread): )
  syslog       the syslog backend (--enable-trace-backends=syslog), as the
               journal (journalctl -t qemu-system-x86_64) or /var/log/syslog has it
  ftrace       the ftrace backend (--enable-trace-backends=ftrace): the
               tracing_mark_write: lines of /sys/kernel/tracing/trace
  stap         qemu-trace-stap run qemu-system-x86_64 'vhost_vdpa_*' (dtrace
               backend under SystemTap, as Fedora and RHEL build QEMU)
  simple       the simple backend's binary file (trace-PID), read directly
  simpletrace  the text of scripts/simpletrace.py trace-events-all trace-PID

Sizes are read as QEMU means them: a dma_map's size is a byte count (the map's
inclusive DMAMap.size is one less), region_add's llend is exclusive."""

CONVERT_DESCRIPTION = """\
Compile a trace (any format replay reads) into an op stream file: the operations
the replay makes, 6 little-endian 64-bit words each. tools-build/iova-replay
replays it with nothing but the C core and GLib; replay reads it back."""

DEMO_DESCRIPTION = """\
Build a small shadow-virtqueue tree (guest RAM at GPA 0 and the same host memory
aliased at GPA 4 GiB, an SVQ vring, a control buffer) and show what the reverse
look-up answers: find_iova with and without id, and the segments that translate
gives for a buffer spanning two maps."""


def _lookups(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    from . import trace

    if value > trace.MAX_LOOKUPS:
        raise argparse.ArgumentTypeError(f"must be at most {trace.MAX_LOOKUPS}, not {value}")
    return value


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=26)


def _trace_options(cmd: argparse.ArgumentParser, formats: str) -> None:
    cmd.add_argument("trace", nargs="?", default=None, metavar="TRACE",
                     help=f"the trace file, {formats}, plain or gzip; '-' reads "
                          "stdin; an op stream file (from 'convert', plain or gzip) is read "
                          "too; default: the trace embedded in the package")
    cmd.add_argument("--lookups", type=_lookups, default=None, metavar="N",
                     help="SVQ data-path look-ups (translate and find_gpa of a guest "
                          "buffer, which a trace does not show) made after each dma_map and "
                          f"dma_unmap; 0 to 100, default {DEFAULT_LOOKUPS} (a trace only: "
                          "an op stream has them already)")
    cmd.add_argument("--strict", action="store_true",
                     help="stop at the first malformed vhost_vdpa event (exit status 2) "
                          "instead of skipping it; lines that are not trace events never stop "
                          "the replay")
    cmd.add_argument("--no-progress", action="store_true",
                     help="no progress bar (there is none when stderr is not a terminal)")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="print every malformed event, not only the first "
                          "10")


def _add_replay(commands: Any) -> None:
    replay = commands.add_parser(
        "replay", help="replay a QEMU trace against the trees and report",
        description=REPLAY_DESCRIPTION, formatter_class=_formatter)
    _trace_options(replay, "any format above")
    replay.add_argument("--backend", choices=BACKENDS, default=None,
                        help="native (the C core, default), reference (pure Python) or both "
                             "(the differential backend: every call on both, stops at the "
                             "first disagreement with a reproducer, exit status 1)")
    replay.add_argument("--compare", action="store_true",
                        help="replay in native, then in reference, and compare their speed "
                             "and the digests of their final trees (exit status 1 if these "
                             "differ); not with --backend")
    replay.set_defaults(run=run_replay)


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser(
        "convert", help="write the op stream file that tools-build/iova-replay reads",
        description=CONVERT_DESCRIPTION, formatter_class=_formatter)
    _trace_options(convert, "any format that replay reads (see replay --help)")
    convert.add_argument("-o", "--output", required=True, metavar="FILE",
                         help="the op stream file to write; '-' writes it to stdout (the "
                              "summary line then goes to stderr)")
    convert.set_defaults(run=run_convert)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="show find_iova and translate on a small SVQ tree",
        description=DEMO_DESCRIPTION, formatter_class=_formatter)
    demo.add_argument("--backend", choices=["native", "reference"], default="native",
                      help="native (the C core, default) or reference (pure Python)")
    demo.set_defaults(run=lambda args: run_demo(args.backend))


#: The subcommands, in the order the help lists them.
COMMANDS = [_add_replay, _add_convert, _add_demo, add_config_command]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iova-native", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=_formatter)
    p.add_argument("--version", action="version", version=f"iova-native {__version__}",
                   help="print the version and exit")
    commands = p.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                required=True)
    for add in COMMANDS:
        add(commands)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iova-native`` command; returns the exit status."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (`>&-`): every command writes to it
        print("iova-native: cannot write the output: stdout is closed", file=sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("iova-native: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `iova-native replay | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # the report's own output: `> /dev/full`, a disk that filled up
        print(f"iova-native: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMMANDS", "main", "run_demo", "run_replay", "run_convert", "format_report",
           "DMAMap"]
