/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Calls that change the very element a summary comes from, in every subtree on its way to
 * the root, on a tree deep enough for those ways to be long, with iova_tree_check() after
 * every call.  Why: the walks up after an update recompute a summary only while the changed
 * element can still be part of it, and stop at the first level where neither summary can
 * change (csrc/iova-avl.h, AvlOpen); check-churn.c's crowded small tree and check-model.c's
 * edges seldom make those walks long, so a walk that stopped one level too soon could pass
 * them.  Here:
 *   - first fit from the hole at 0, the only one holding IOVA 0 and so the only one whose
 *     alignment is 64: the maximum of every subtree above it drops, then comes back when the
 *     map goes (LIFO);
 *   - the last fit, from the top of the highest hole, which runs to 2^64 - 1 and is the
 *     longest: the best of every subtree above it shrinks, then grows back;
 *   - maps reaching further in the translated space than any before: the best of every
 *     reverse subtree above them, then removed again, newest first;
 *   - a map at IOVA 0: the lowest IOVA of every reverse subtree above it;
 *   - and random inserts and removals between them, for rotations on those ways.
 *
 * Usage: check-extremes OPS SEED [holes]   prints "ok <maps left>" or the first broken invariant.
 */
#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"
#include "random-calls.h"

#define FILL 3000
#define PAGE 0x1000ull
#define STACK 64

/* Maps this program placed and will take out again, newest last. */
typedef struct MapStack {
    DMAMap maps[STACK];
    unsigned n;
} MapStack;

/* Remember @map to remove it later; past STACK maps, it stays in the tree for good. */
static void push(MapStack *s, const DMAMap *map)
{
    if (s->n < STACK) {
        s->maps[s->n++] = *map;
    }
}

/* Remove the newest map of @s (any other one once in four calls). */
static void pop_remove(IOVATree *tree, MapStack *s, uint64_t *rng)
{
    if (s->n == 0) {
        return;
    }
    unsigned at = next_random(rng) % 4 == 0 ? next_random(rng) % s->n : s->n - 1;
    iova_tree_remove(tree, s->maps[at]);
    s->maps[at] = s->maps[--s->n];
}

static DMAMap random_map(uint64_t *rng)
{
    DMAMap map = {
        .iova = (1 + next_random(rng) % (1ull << 24)) * PAGE,
        .translated_addr = next_random(rng) % (1ull << 36) * PAGE,
        .size = (next_random(rng) % 4 + 1) * PAGE - 1,
        .id = next_random(rng) % 3,
        .perm = IOMMU_RW,
    };
    return map;
}

typedef struct Run {
    IOVATree *tree;
    uint64_t rng;
    MapStack allocated, far, random;
    hwaddr far_next; /* where the next map reaching furthest begins */
} Run;

static void alloc_one(Run *r, IOVAAllocPolicy policy)
{
    DMAMap map = random_map(&r->rng);
    hwaddr align = 1ull << (next_random(&r->rng) % 24);
    if (iova_tree_alloc_map_full(r->tree, &map, 0, HWADDR_MAX, align, policy) == IOVA_OK) {
        push(&r->allocated, &map);
    }
}

static void step(Run *r)
{
    uint64_t kind = next_random(&r->rng) % 12;
    DMAMap map = random_map(&r->rng);

    switch (kind) {
    case 0:
    case 1:
        alloc_one(r, IOVA_ALLOC_FIRST);
        break;
    case 2:
        alloc_one(r, IOVA_ALLOC_LAST);
        break;
    case 3:
    case 4:
        pop_remove(r->tree, &r->allocated, &r->rng);
        break;
    case 5:
        map.translated_addr = r->far_next;
        r->far_next += 2 * PAGE;
        if (iova_tree_insert(r->tree, &map) == IOVA_OK) {
            push(&r->far, &map);
        }
        break;
    case 6:
        pop_remove(r->tree, &r->far, &r->rng);
        if (r->far.n == 0) {
            r->far_next = 1ull << 47;
        }
        break;
    case 7:
        map.iova = 0;
        if (iova_tree_insert(r->tree, &map) == IOVA_OK) {
            push(&r->random, &map);
        }
        break;
    case 8:
    case 9:
        if (iova_tree_insert(r->tree, &map) == IOVA_OK) {
            push(&r->random, &map);
        }
        break;
    default:
        pop_remove(r->tree, &r->random, &r->rng);
        break;
    }
}

int main(int argc, char **argv)
{
    long ops = 0;
    int status = 0;
    Run r = { .far_next = 1ull << 47 };
    char err[256];

    r.tree = random_calls_setup(argc, argv, "check-extremes", &ops, &r.rng, &status);
    if (!r.tree) {
        return status;
    }
    for (unsigned placed = 0; placed < FILL;) {
        DMAMap map = random_map(&r.rng);
        placed += iova_tree_insert(r.tree, &map) == IOVA_OK;
    }
    for (long k = 0; k < ops; k++) {
        step(&r);
        if (iova_tree_check(r.tree, err, sizeof(err)) != 0) {
            printf("broken after call %ld: %s\n", k, err);
            return 1;
        }
    }
    printf("ok %zu\n", iova_tree_nnodes(r.tree));
    iova_tree_destroy(r.tree);
    return 0;
}
