/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * walk-and-change: what QEMU's callers of iova_tree_foreach() (before 8.1) may do from the
 * iterator, on a tree of 64 maps: remove a later map and go on (0), remove an earlier one and
 * go on (1), insert beyond and go on (2), allocate and go on (3), remove the map it is handed
 * and stop, the walk started again until the tree is empty (4).  GLib's g_tree_foreach()
 * steps to the next node after the iterator returns, so each of these is safe with QEMU's
 * tree, whose GTree holds the maps; here the GTree holds them too, and the reverse trees and
 * holes must follow.  Prints how many maps the walk visited and how many are left, and
 * iova_tree_check()'s verdict.
 *
 * Usage: walk-and-change MODE [holes]
 */
#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"

static IOVATree *tree;
static int mode, visited;

static gboolean step(DMAMap *map)
{
    visited++;
    if (mode == 0 && map->iova % 0x3000 == 0) {
        DMAMap later = { .iova = map->iova + 0x1000 };
        iova_tree_remove(tree, later);
    } else if (mode == 1 && map->iova >= 0x2000) {
        DMAMap earlier = { .iova = map->iova - 0x2000 };
        iova_tree_remove(tree, earlier);
    } else if (mode == 2 && map->iova < 0x40000) {
        DMAMap beyond = {
            .iova = map->iova + 0x100000, .translated_addr = map->iova, .size = 0xfff,
            .perm = IOMMU_RW,
        };
        iova_tree_insert(tree, &beyond);
    } else if (mode == 3) {
        DMAMap more = { .translated_addr = 7, .size = 0x7ff, .perm = IOMMU_RW };
        iova_tree_alloc_map(tree, &more, 0, HWADDR_MAX);
        return visited > 50;
    } else if (mode == 4) {
        iova_tree_remove(tree, *map); /* by value: the map goes, the copy stays */
        return TRUE;
    }
    return FALSE;
}

int main(int argc, char **argv)
{
    char err[256];

    if (argc < 2) {
        fprintf(stderr, "usage: walk-and-change MODE [holes]\n");
        return 2;
    }
    mode = atoi(argv[1]);
    tree = iova_tree_new();
    if (argc > 2) {
        iova_tree_keep_holes(tree);
    }
    for (int i = 0; i < 64; i++) {
        DMAMap map = {
            .iova = 0x1000 * (hwaddr)i, .translated_addr = 0x5000 * (hwaddr)(63 - i),
            .size = 0xfff, .id = (uint64_t)i % 3, .perm = IOMMU_RW,
        };
        iova_tree_insert(tree, &map);
    }
    do {
        iova_tree_foreach(tree, step);
    } while (mode == 4 && iova_tree_nnodes(tree));
    int rc = iova_tree_check(tree, err, sizeof(err));
    printf("%d %zu %s\n", visited, iova_tree_nnodes(tree), rc ? err : "ok");
    iova_tree_destroy(tree);
    return 0;
}
