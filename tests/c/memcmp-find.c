/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A vIOMMU-style caller: it keeps the map it last told the device about and, on the next
 * page-table walk, looks the IOVA up and memcmp()s what the tree holds against the new entry,
 * as QEMU's intel_iommu and amd_iommu do to tell "unchanged" from "remap".  Equal maps must
 * compare equal: the library may keep nothing of its own inside a DMAMap.
 *
 * Prints one line per check and exits non-zero on the first mismatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iova-tree.h"

#ifndef N_MAPS
#define N_MAPS 4096
#endif

static DMAMap target_of(uint64_t i)
{
    DMAMap m;

    /* Garbage first, as in a stack entry filled field by field: a packed struct has no
     * padding, so memcmp() compares the five fields and nothing else. */
    memset(&m, 0xa5, sizeof(m));
    m.iova = 0x100000 + i * 0x2000;
    m.translated_addr = 0x7f0000000000ull + ((i * 2654435761u) % N_MAPS) * 0x1000;
    m.size = (i % 3 == 0) ? 0x1fff : 0xfff;
    m.id = i % 7;
    m.perm = (IOMMUAccessFlags)(1 + i % 3);
    return m;
}

int main(void)
{
    IOVATree *tree = iova_tree_new();
    unsigned long same = 0, changed = 0;

    if (sizeof(DMAMap) != 36) {
        printf("sizeof(DMAMap) = %zu, QEMU's is 36\n", sizeof(DMAMap));
        return 1;
    }
    for (uint64_t i = 0; i < N_MAPS; i++) {
        DMAMap m = target_of(i);
        if (iova_tree_insert(tree, &m) != IOVA_OK) {
            printf("insert %llu failed\n", (unsigned long long)i);
            return 1;
        }
    }
    /* A walk that finds every entry unchanged must see every stored map equal to its target. */
    for (uint64_t i = 0; i < N_MAPS; i++) {
        DMAMap target = target_of(i);
        const DMAMap *mapped = iova_tree_find(tree, &target);
        if (!mapped || memcmp(mapped, &target, sizeof(DMAMap)) != 0) {
            printf("map %llu: stored copy differs from an equal target\n",
                   (unsigned long long)i);
            return 1;
        }
        same++;
        /* ... and one that changed the permission must not. */
        target.perm = target.perm == IOMMU_RW ? IOMMU_RO : IOMMU_RW;
        if (memcmp(mapped, &target, sizeof(DMAMap)) == 0) {
            printf("map %llu: a changed target compares equal\n", (unsigned long long)i);
            return 1;
        }
        changed++;
    }
    /* The reverse look-up hands out the same stored maps. */
    for (uint64_t i = 0; i < N_MAPS; i++) {
        DMAMap target = target_of(i);
        const DMAMap *hit = iova_tree_find_iova(tree, &target);
        if (!hit || hit->id != target.id ||
            memcmp(iova_tree_find(tree, hit), hit, sizeof(DMAMap)) != 0) {
            printf("find_iova %llu: no stored map, or an unequal one\n", (unsigned long long)i);
            return 1;
        }
    }
    iova_tree_destroy(tree);
    printf("equal %lu, changed %lu\n", same, changed);
    return 0;
}
