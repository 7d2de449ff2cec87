/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QEMU's own util/iova-tree.c (the seed patch applied) as a program links it beside the
 * project's core: compiled against QEMU's header and the osdep shim of ../shared/qemu, its
 * global symbols renamed with a qemu_ prefix (objcopy --redefine-sym; scripts/build-tools.sh
 * and tests/test_review_c_dropin.py do it).  With the seed patch QEMU's DMAMap is the
 * project's (packed, 36 bytes, the same fields), so the project's header declares it here;
 * QEMU's IOVATree is a type of its own.
 */
#ifndef QEMU_IOVA_TREE_RENAMED_H
#define QEMU_IOVA_TREE_RENAMED_H

#include "../include/qemu/iova-tree.h"

_Static_assert(sizeof(DMAMap) == 36, "DMAMap is QEMU's packed layout");

typedef struct QemuIOVATree QemuIOVATree;
QemuIOVATree *qemu_iova_tree_new(void);
QemuIOVATree *qemu_gpa_tree_new(void);
int qemu_iova_tree_insert(QemuIOVATree *tree, const DMAMap *map);
int qemu_gpa_tree_insert(QemuIOVATree *tree, const DMAMap *map);
void qemu_iova_tree_remove(QemuIOVATree *tree, DMAMap map);
const DMAMap *qemu_iova_tree_find(const QemuIOVATree *tree, const DMAMap *map);
const DMAMap *qemu_iova_tree_find_iova(const QemuIOVATree *tree, const DMAMap *map);
int qemu_iova_tree_alloc_map(QemuIOVATree *tree, DMAMap *map, hwaddr iova_begin,
                             hwaddr iova_last);
void qemu_iova_tree_destroy(QemuIOVATree *tree);

#endif /* QEMU_IOVA_TREE_RENAMED_H */
