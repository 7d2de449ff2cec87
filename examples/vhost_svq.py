# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM behind vhost-vDPA with the shadow virtqueue, as QEMU's memory listener and SVQ drive it."""

from iova_native import DMAMap, Perm, VhostIOVATree

GIB, MIB = 1 << 30, 1 << 20
HVA_RAM = 0x7F00_0000_0000  # where QEMU mmap()ed guest RAM

tree = VhostIOVATree(iova_first=0, iova_last=(1 << 48) - 1)  # first usable IOVA becomes 4096

# The memory listener maps guest RAM: 3 GiB below the 4 GiB hole, 1 GiB above it, and
# one 2 MiB region aliased at a second GPA (same HVA, another GPA: the seed thread's case).
low = tree.map_alloc_gpa(3 * GIB - 1, gpa=0x0)
high = tree.map_alloc_gpa(1 * GIB - 1, gpa=4 * GIB)
alias = tree.map_alloc_gpa(2 * MIB - 1, gpa=0xFEC0_0000)
hva_of = {low.id: HVA_RAM, high.id: HVA_RAM + 3 * GIB, alias.id: HVA_RAM + 0x10_0000}

# SVQ maps its vrings and the control-queue buffers: host-only memory, IOVA -> HVA.
vrings = [tree.map_alloc(0x3FFF, hva=0x7E00_0000_0000 + i * 0x4000) for i in range(4)]
for _ in range(1000):  # control commands come and go
    cvq = tree.map_alloc(0xFFF, hva=0x7E10_0000_0000, perm=Perm.RO)
    assert tree.find_iova(0x7E10_0000_0800) == cvq
    tree.remove(cvq.iova, cvq.size)

# A descriptor the guest wrote: GPA 0xFEC0_1000, 0x2000 bytes.  SVQ knows the GPA, so it
# translates through the GPA tree and gets the alias, never the low-RAM map of the same HVA.
assert tree.translate(hva_of[alias.id] + 0x1000, 0x2000, gpa=0xFEC0_1000) == [
    (alias.iova + 0x1000, 0x2000)
]
# Without the GPA (a host-only buffer) it goes through the IOVA->HVA tree.
assert tree.translate(vrings[1].translated_addr + 0x10, 0x100) == [(vrings[1].iova + 0x10, 0x100)]
# The device hands back an IOVA: which guest range was that?
hit = tree.find_gpa(0xFEC0_1000)
assert hit == DMAMap(alias.iova, 0xFEC0_0000, 2 * MIB - 1, Perm.RW, id=0xFEC0_0000)

# Unplugging the aliased region removes its map and its IOVA allocation in one call.
assert tree.remove_gpa(0xFEC0_0000, 2 * MIB - 1) == 1
assert len(tree.allocated()) == len(tree) == 2 + 4
tree.check()  # every map owns exactly one allocation, and vice versa
