#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Generate the embedded default trace: src/iova_native/data/default-trace.log.gz.

A deterministic (fixed seed, no clock, gzip mtime 0) QEMU ``log`` trace-backend capture of a
vhost-vDPA net device driven through the shadow virtqueue (``x-svq=on``), as QEMU would write it
with ``-trace 'vhost_vdpa_*' -D qemu.log``:

* a q35 guest with 8 GiB of RAM: 2 GiB below 4 GiB (split by the 640 KiB hole and the PAM
  area) and 6 GiB above; the 256 KiB BIOS at 0xfffc0000 whose last 128 KiB is also mapped at
  0xe0000 (``isa-bios``): one HVA range under two GPAs, the aliasing the seed thread is about;
* 8 queue pairs and a control virtqueue: 17 shadow vrings, each a driver area (read-only for
  the device) and a device area (read-write), host-only buffers;
* thousands of control-queue commands (the guest programming VLAN filters and MAC tables),
  each mapping the command buffer and the status buffer and unmapping both afterwards,
  as QEMU 7.1's SVQ CVQ did;
* two device restarts (listener unregistered and registered again: every region and vring
  unmapped and mapped again), a 2 GiB DIMM hot-plugged and later unplugged;
* the trace starts while a previous device instance is torn down: two unmaps that match
  nothing.

Lines are in the newer format (``vdpa_shared:`` and ``asid:``, CVQ in ASID 1) with the
``PID@SEC.USEC:`` prefix; a handful of CVQ commands are in the older format without ``asid:``,
and lines of events the replay does not model (batches, vring set-up, status) are interleaved.
IOVAs are handed out first-fit from 0x1000 as QEMU's ``iova_tree_alloc_map`` does, so a replay
that re-allocates lands on the same IOVAs.

Usage: python3 scripts/gen_default_trace.py [-o PATH] [--queue-pairs N] [--commands N]
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "iova_native" / "data" / "default-trace.log.gz"

SEED = 0x5EED_2024_0508
PID = 48213
START_SEC = 1715180412  # 2024-05-08, the day of the seed thread's last message
PAGE = 0x1000
GIB = 1 << 30
MIB = 1 << 20

VDPA_SHARED = 0x55D4C2A1B3E0
VDPA = 0x55D4C2A1C7A0
DEV = 0x55D4C2A0F010
FD = 23
MSG_V2 = 2
IOTLB_UPDATE, IOTLB_INVALIDATE, BATCH_BEGIN, BATCH_END = 2, 3, 5, 6
RO, RW = 0x1, 0x3

RAM_HVA = 0x7F1C00000000  # 8 GiB of pc.ram
BIOS_HVA = 0x7F1A3C200000  # 256 KiB pc.bios
DIMM_HVA = 0x7F1400000000  # 2 GiB pc-dimm, hot-plugged
DIMM_GPA = 0x280000000  # the start of the hot-plug area, right above RAM
VRING_TOP = 0x7F1E4A800000  # SVQ vrings are mmap()ed downwards from here
CVQ_OUT_HVA = 0x7F1E4B000000  # the CVQ command buffer (one page)
CVQ_IN_HVA = 0x7F1E4AFFF000  # the CVQ status buffer (one page)


class SplitMix64:
    """A tiny PRNG with a fixed algorithm, so the output never depends on Python's version."""

    def __init__(self, seed: int) -> None:
        self.state = seed & (1 << 64) - 1

    def next(self) -> int:
        """The next 64-bit value."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & (1 << 64) - 1
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (1 << 64) - 1
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (1 << 64) - 1
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A value in 0..n-1 (n small: the modulo bias is irrelevant here)."""
        return self.next() % n


class FirstFit:
    """QEMU's IOVA allocator: the lowest hole at or above ``first`` that holds the map."""

    def __init__(self, first: int = PAGE, last: int = (1 << 64) - 1) -> None:
        self.first, self.last = first, last
        self.used: list[tuple[int, int]] = []  # (iova, last byte), sorted

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes``; return the IOVA."""
        cursor = self.first
        for index, (start, end) in enumerate(self.used):
            if start - cursor >= nbytes:
                self.used.insert(index, (cursor, cursor + nbytes - 1))
                return cursor
            cursor = max(cursor, end + 1)
        if self.last - cursor + 1 < nbytes:
            raise RuntimeError("IOVA space exhausted")
        self.used.append((cursor, cursor + nbytes - 1))
        return cursor

    def free(self, iova: int) -> None:
        """Release the allocation starting at ``iova``."""
        self.used = [(s, e) for s, e in self.used if s != iova]


class Vm:
    """The guest, the device and QEMU's side of it; ``lines`` collects the trace."""

    def __init__(self, queue_pairs: int) -> None:
        self.rng = SplitMix64(SEED)
        self.usec = 0
        self.lines: list[str] = []
        self.iova = FirstFit()
        self.queue_pairs = queue_pairs
        self.regions: dict[int, tuple[int, int, int]] = {}  # gpa -> (llend, hva, iova)
        self.vrings: list[tuple[int, int, int, int]] = []  # (iova, nbytes, hva, asid)
        self.vring_top = VRING_TOP
        self.old_format = 0  # CVQ commands left to print in the older format
        self.dimm = False  # the pc-dimm is plugged

    # ---------------------------------------------------------------- output

    def emit(self, event: str, args: str, gap: int = 0) -> None:
        """Append one line with the PID@SEC.USEC: prefix; time moves on a little."""
        self.usec += 1 + self.rng.below(40) + gap
        sec, usec = divmod(self.usec, 1_000_000)
        self.lines.append(f"{PID}@{START_SEC + sec}.{usec:06d}:{event} {args}")

    def dma_map(self, asid: int, iova: int, nbytes: int, hva: int, perm: int) -> None:
        """``vhost_vdpa_dma_map``: the size printed is the byte count QEMU sends the kernel."""
        if self.old_format:
            self.emit("vhost_vdpa_dma_map", f"vdpa:{VDPA:#x} fd: {FD} msg_type: {MSG_V2} "
                      f"iova: {iova:#x} size: {nbytes:#x} uaddr: {hva:#x} perm: {perm:#x} "
                      f"type: {IOTLB_UPDATE}")
            return
        self.emit("vhost_vdpa_dma_map", f"vdpa_shared:{VDPA_SHARED:#x} fd: {FD} "
                  f"msg_type: {MSG_V2} asid: {asid} iova: {iova:#x} size: {nbytes:#x} "
                  f"uaddr: {hva:#x} perm: {perm:#x} type: {IOTLB_UPDATE}")

    def dma_unmap(self, asid: int, iova: int, nbytes: int) -> None:
        """``vhost_vdpa_dma_unmap``."""
        if self.old_format:
            self.emit("vhost_vdpa_dma_unmap", f"vdpa:{VDPA:#x} fd: {FD} msg_type: {MSG_V2} "
                      f"iova: {iova:#x} size: {nbytes:#x} type: {IOTLB_INVALIDATE}")
            return
        self.emit("vhost_vdpa_dma_unmap", f"vdpa_shared:{VDPA_SHARED:#x} fd: {FD} "
                  f"msg_type: {MSG_V2} asid: {asid} iova: {iova:#x} size: {nbytes:#x} "
                  f"type: {IOTLB_INVALIDATE}")

    def batch(self, begin: bool) -> None:
        """The IOTLB batch markers around listener changes (not modelled by the replay)."""
        name = "vhost_vdpa_listener_begin_batch" if begin else "vhost_vdpa_listener_commit"
        kind = BATCH_BEGIN if begin else BATCH_END
        self.emit(name, f"vdpa_shared:{VDPA_SHARED:#x} fd: {FD} msg_type: {MSG_V2} "
                  f"type: {kind}")

    # ---------------------------------------------------------------- guest memory

    def region_add(self, gpa: int, llend: int, hva: int, readonly: bool) -> None:
        """The listener's region_add (llend exclusive), then SVQ's allocation and the map."""
        self.emit("vhost_vdpa_listener_region_add",
                  f"vdpa: {VDPA:#x} iova {gpa:#x} llend {llend:#x} vaddr: {hva:#x} "
                  f"read-only: {int(readonly)}")
        iova = self.iova.alloc(llend - gpa)
        self.dma_map(0, iova, llend - gpa, hva, RO if readonly else RW)
        self.regions[gpa] = (llend, hva, iova)

    def region_del(self, gpa: int) -> None:
        """The listener's region_del, SVQ's reverse look-up and removal, then the unmap."""
        llend, _hva, iova = self.regions.pop(gpa)
        self.emit("vhost_vdpa_listener_region_del", f"vdpa: {VDPA:#x} iova {gpa:#x} "
                  f"llend {llend:#x}")
        self.iova.free(iova)
        self.dma_unmap(0, iova, llend - gpa)

    def memory_map(self) -> list[tuple[int, int, int, bool]]:
        """The RAM sections of a q35 guest with SeaBIOS, as the vhost-vDPA listener sees them."""
        dimm = [(DIMM_GPA, DIMM_GPA + 2 * GIB, DIMM_HVA, False)] if self.dimm else []
        return [
            (0x0, 0xA0000, RAM_HVA, False),  # below the VGA hole
            (0xC0000, 0xE0000, RAM_HVA + 0xC0000, True),  # PAM: expansion ROMs, read-only
            (0xE0000, 0x100000, BIOS_HVA + 0x20000, True),  # isa-bios: alias of pc.bios
            (0x100000, 0x80000000, RAM_HVA + 0x100000, False),  # the rest of low RAM
            (0xFFFC0000, 0x100000000, BIOS_HVA, True),  # pc.bios, last 128 KiB aliased
            (0x100000000, 0x280000000, RAM_HVA + 0x80000000, False),  # above 4 GiB
        ] + dimm

    def listener_register(self) -> None:
        """memory_listener_register() replays every section as region_add."""
        self.batch(True)
        for gpa, llend, hva, readonly in self.memory_map():
            self.region_add(gpa, llend, hva, readonly)
        self.batch(False)

    def listener_unregister(self) -> None:
        """memory_listener_unregister() removes every section."""
        self.batch(True)
        for gpa in sorted(self.regions):
            self.region_del(gpa)
        self.batch(False)

    # ---------------------------------------------------------------- the device

    def vring_sizes(self, vq_size: int) -> tuple[int, int]:
        """SVQ's driver area (descriptors + avail ring) and device area (used ring), in pages."""
        driver = 16 * vq_size + 2 * (3 + vq_size)
        device = 2 * 3 + 8 * vq_size
        return -(-driver // PAGE) * PAGE, -(-device // PAGE) * PAGE

    def mmap(self, nbytes: int) -> int:
        """An anonymous mmap(): the kernel hands out addresses downwards."""
        self.vring_top -= nbytes + PAGE * self.rng.below(3)
        return self.vring_top

    def device_start(self) -> None:
        """vhost_vdpa_dev_start(true): listener, then each shadow vring's two areas."""
        nvqs = 2 * self.queue_pairs + 1
        self.emit("vhost_vdpa_add_status", f"dev: {DEV:#x} status: 0x8", gap=2000)
        self.listener_register()
        for index in range(nvqs):
            cvq = index == nvqs - 1
            asid = 1 if cvq else 0
            driver, device = self.vring_sizes(64 if cvq else 256)
            self.emit("vhost_vdpa_set_vring_num", f"dev: {DEV:#x} index: {index} "
                      f"num: {64 if cvq else 256}")
            for nbytes, perm in ((driver, RO), (device, RW)):
                hva = self.mmap(nbytes)
                iova = self.iova.alloc(nbytes)
                self.dma_map(asid, iova, nbytes, hva, perm)
                self.vrings.append((iova, nbytes, hva, asid))
            self.emit("vhost_vdpa_set_vring_kick", f"dev: {DEV:#x} index: {index} "
                      f"fd: {40 + index}")
        self.emit("vhost_vdpa_add_status", f"dev: {DEV:#x} status: 0x4")

    def device_stop(self) -> None:
        """vhost_vdpa_dev_start(false): vrings unmapped, then the listener goes."""
        self.emit("vhost_vdpa_suspend", f"dev: {DEV:#x}", gap=5000)
        for index in range(2 * self.queue_pairs + 1):
            self.emit("vhost_vdpa_get_vring_base", f"dev: {DEV:#x} index: {index} "
                      f"num: {self.rng.below(65536)}")
        for iova, nbytes, _hva, asid in self.vrings:
            self.iova.free(iova)
            self.dma_unmap(asid, iova, nbytes)
        self.vrings.clear()
        self.listener_unregister()
        self.emit("vhost_vdpa_reset_device", f"dev: {DEV:#x} status: 0x0")

    def cvq_command(self) -> None:
        """One control-queue command: map the command and status buffers, then unmap both."""
        out_len = PAGE
        out_iova = self.iova.alloc(out_len)
        self.dma_map(1, out_iova, out_len, CVQ_OUT_HVA, RO)
        in_iova = self.iova.alloc(PAGE)
        self.dma_map(1, in_iova, PAGE, CVQ_IN_HVA, RW)
        self.usec += 20 + self.rng.below(200)  # the device answers
        self.iova.free(out_iova)
        self.dma_unmap(1, out_iova, out_len)
        self.iova.free(in_iova)
        self.dma_unmap(1, in_iova, PAGE)
        if self.old_format:
            self.old_format -= 1

    def dimm_plug(self) -> None:
        """A 2 GiB pc-dimm appears in the hot-plug area above RAM."""
        self.dimm = True
        self.batch(True)
        self.region_add(DIMM_GPA, DIMM_GPA + 2 * GIB, DIMM_HVA, False)
        self.batch(False)

    def dimm_unplug(self) -> None:
        """The DIMM goes away."""
        self.dimm = False
        self.batch(True)
        self.region_del(DIMM_GPA)
        self.batch(False)


def scenario(queue_pairs: int, commands: int) -> Iterator[str]:
    """The whole capture, line by line."""
    vm = Vm(queue_pairs)
    # A previous device instance is being torn down when the capture starts.
    vm.dma_unmap(0, 0x2000, 0x2000)
    vm.dma_unmap(1, 0x6000, 0x1000)
    vm.emit("vhost_vdpa_get_iova_range", f"dev: {DEV:#x} first: 0x0 last: 0xffffffffffffffff",
            gap=100000)
    vm.device_start()
    for n in range(commands):
        if n == commands // 3:
            vm.device_stop()  # the guest takes the link down and up again
            vm.device_start()
        if n == commands // 2:
            vm.dimm_plug()
        if n == 2 * commands // 3:
            vm.device_stop()  # reboot
            vm.device_start()
        if n == 5 * commands // 6:
            vm.dimm_unplug()
        if n == commands // 4:
            vm.old_format = 3  # a few commands in the older format, without asid:
        vm.cvq_command()
    return iter(vm.lines)


def render(queue_pairs: int = 8, commands: int = 3000) -> bytes:
    """The gzip-compressed trace, byte for byte reproducible."""
    text = "".join(line + "\n" for line in scenario(queue_pairs, commands))
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("ascii"))
    return raw.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write the trace."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--queue-pairs", type=int, default=8)
    parser.add_argument("--commands", type=int, default=3000)
    args = parser.parse_args(argv)
    data = render(args.queue_pairs, args.commands)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
