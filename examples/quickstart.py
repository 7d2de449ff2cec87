# SPDX-License-Identifier: GPL-2.0-or-later
from array import array

from iova_native import DMAMap, IOVATree, Perm  # the native (C) classes
from iova_native import reference  # the same API in plain Python

tree = IOVATree()
tree.insert(DMAMap(iova=0x1000, translated_addr=0x7F0000000000, size=0xFFF, perm=Perm.RW, id=0))
tree.insert(DMAMap(0x2000, 0x7F0000000000, 0xFFF, Perm.RW, id=0x100000000))  # an alias
assert tree.find(0x1800).iova == 0x1000  # IOVA -> map
assert tree.find_iova(0x7F0000000800).iova == 0x1000  # HVA -> the lowest-IOVA alias
assert tree.find_iova(0x7F0000000800, id=0x100000000).iova == 0x2000  # HVA + GPA -> that alias
assert tree.translate(0x7F0000000800, 0x100) == [(0x1800, 0x100)]  # (iova, nbytes) segments
top = tree.alloc(0xFFF, 0x7E0000000000, align=0x1000, policy="last")  # top-down, as Linux
assert top.iova == 0xFFFF_FFFF_FFFF_F000
hvas = array("Q", [0x7F0000000010, 0x7E0000000020, 0x1234])
assert list(tree.to_iova_many(hvas, missing=0)) == [0x1010, top.iova + 0x20, 0]  # one C call

same = reference.IOVATree()  # swap the import, keep the results
for m in tree:
    same.insert(m)
needle = (0x7F0000000800, 0, 0x100000000)
assert same.find_iova(*needle) == tree.find_iova(*needle)
# Every map a range touches, either side, in IOVA order (a vIOMMU invalidation, an unplug).
assert [m.iova for m in tree.find_all(0, 0xFFFFF)] == [0x1000, 0x2000]
assert [m.id for m in tree.find_iova_all(0x7F0000000000, 0xFFF)] == [0, 0x100000000]
assert same == tree and tree.maps()[0] in tree and tree.copy() == IOVATree(tree)
