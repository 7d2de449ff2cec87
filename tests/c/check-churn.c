/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Random inserts, removals and allocations on one small, crowded tree, with iova_tree_check()
 * after every call: the AVL trees' incremental summaries (best links, minimum IOVA codes,
 * longest holes, alignment maxima) must always equal what a full recomputation gives.  Small
 * address and translated ranges and four ids make overlaps, aliases, rotations and removals
 * of two-child nodes frequent.
 *
 * Usage: check-churn OPS SEED [holes]   prints "ok <maps left>" or the first broken invariant.
 */
#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"
#include "random-calls.h"

/* Maps removed lately, to insert again (the core may keep their ranges pending). */
#define RECENT 24
static DMAMap recent[RECENT];
static unsigned nrecent;

static void random_step(IOVATree *tree, uint64_t *rng)
{
    uint64_t kind = next_random(rng) % 10;
    uint64_t slots = next_random(rng) % 3 == 0 ? 65 : 4097; /* crowded, or roomier */
    DMAMap map = { .perm = IOMMU_RW };

    map.iova = next_random(rng) % slots * 16;
    if (kind < 2 && nrecent > 0) {
        map = recent[next_random(rng) % (nrecent < RECENT ? nrecent : RECENT)];
        map.size += next_random(rng) % 4 == 0; /* sometimes a byte past it */
        iova_tree_insert(tree, &map);
    } else if (kind < 5) {
        map.translated_addr = next_random(rng) % (slots / 8 + 1) * 16;
        map.size = next_random(rng) % 40;
        map.id = next_random(rng) % 4;
        iova_tree_insert(tree, &map);
    } else if (kind < 8) {
        map.size = next_random(rng) % 64;
        const DMAMap *hit = iova_tree_find(tree, &map);
        if (hit) {
            recent[nrecent++ % RECENT] = *hit; /* (a removal may take more than this one) */
        }
        iova_tree_remove(tree, map);
    } else {
        map.iova = 0;
        map.size = next_random(rng) % 40;
        map.translated_addr = next_random(rng) % 1000;
        iova_tree_alloc_map(tree, &map, next_random(rng) % 2000, 1 << 20);
    }
}

int main(int argc, char **argv)
{
    long ops = 0;
    uint64_t rng = 0;
    int status = 0;
    IOVATree *tree = random_calls_setup(argc, argv, "check-churn", &ops, &rng, &status);
    char err[256];

    if (!tree) {
        return status;
    }
    for (long k = 0; k < ops; k++) {
        random_step(tree, &rng);
        if (iova_tree_check(tree, err, sizeof(err)) != 0) {
            printf("broken after call %ld: %s\n", k, err);
            return 1;
        }
    }
    printf("ok %zu\n", iova_tree_nnodes(tree));
    iova_tree_destroy(tree);
    return 0;
}
