"""The ``iova-native`` command.

Subcommands:
  demo     a small SVQ tree: two GPAs aliasing one HVA, find_iova with and without id, and the
           segments of a buffer spanning two maps.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._types import DMAMap, Perm

GIB = 1 << 30
MIB = 1 << 20


def _backend(name: str) -> Any:
    if name == "reference":
        from . import reference

        return reference
    from . import native

    return native


def run_demo(backend: str = "native", out: Any = sys.stdout) -> int:
    """Build a realistic SVQ tree and show what the reverse look-up answers."""
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
    say(f"{mod.__name__}.IOVATree with {len(tree)} maps:")
    for m in tree:
        say(f"  {m!r}")
    needle = hva_ram + 0x1234
    say(f"\nfind_iova({needle:#x})            -> {tree.find_iova(needle)!r}")
    say(f"find_iova({needle:#x}, id=4 GiB)  -> {tree.find_iova(needle, id=4 * GIB)!r}")
    say("  without id the lowest IOVA wins; with id the alias the guest named wins")
    # A descriptor whose buffer crosses from the vring into the next host page? Use two
    # adjacent host maps instead: the end of RAM and a control buffer right after it.
    ctrl = tree.alloc(0xFFF, hva_ram + 2 * GIB, Perm.RO, id=0xFFFF_1000, iova_begin=0x1000)
    start = hva_ram + 2 * GIB - 0x800
    segs = tree.translate(start, 0x1000)
    say(f"\ntranslate({start:#x}, 0x1000) spans the end of RAM and a control buffer:")
    for iova, nbytes in segs:
        say(f"  IOVA {iova:#x} + {nbytes:#x} bytes")
    tree.check()
    assert low.iova != alias.iova and vring and ctrl
    tree.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iova-native", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="show find_iova and translate on a small SVQ tree")
    demo.add_argument("--backend", choices=["native", "reference"], default="native")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iova-native`` command."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.backend)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "run_demo", "DMAMap"]
