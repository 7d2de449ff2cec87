/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * remove-span-oom: a removal of several maps at once, under failing allocations, on a tree
 * whose freed ranges wait (IOVAHolesPending, iova-holes.h).  A removal of several maps sets
 * one hole element aside; each map after the first must then find a hole just below it.  Two
 * layouts where it would not: the log full, so that the first map's range waits in place of
 * an older one given back with the element set aside, and the second map's range, given
 * itself, has the first's (waiting) below it; and a range waiting between the two maps (the
 * removals after an alloc give their ranges straight back).  Each removal runs with the 1st,
 * 2nd, ... allocation failing (and every one after it), after layouts of 0 to PADS extra
 * holes, so that the arena's next block, or its block table's growth, falls at every point.
 * A removal that answers IOVA_ERR_OOM must have removed nothing; every one must leave
 * iova_tree_check() passing (a range lost to the holes and the log fails it), and an alloc
 * must then find the freed space.  Linked with -Wl,--wrap as check-oom.c, built with a small
 * IOVA_ARENA_SHIFT.
 *
 * Usage: remove-span-oom   prints "ok <removals>, <n> OOM answers" or the first failure.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"
#include "fail-alloc.h"

#define PAGE 0x1000
#define PADS 300
#define FAILS 4

static void insert_page(IOVATree *tree, hwaddr iova, hwaddr size)
{
    DMAMap map = { .iova = iova, .size = size, .perm = IOMMU_RW };
    if (iova_tree_insert(tree, &map) != IOVA_OK) {
        fprintf(stderr, "remove-span-oom: insert at %#llx failed\n", (unsigned long long)iova);
        exit(1);
    }
}

static void remove_page(IOVATree *tree, hwaddr iova)
{
    DMAMap needle = { .iova = iova };
    iova_tree_remove(tree, needle);
}

/*
 * A tree of @pad far maps (a hole each) and pages 1..40 side by side, filled by insert; with
 * @full, 16 of the pages (2, 4, ..., 32) removed, their ranges waiting; else page 20
 * removed and then an alloc far above (the removals after it give their ranges back).
 * Returns the first and last IOVA of the span to remove.
 */
static IOVATree *layout(int pad, bool full, hwaddr *first, hwaddr *last)
{
    IOVATree *tree = iova_tree_new();
    if (iova_tree_keep_holes(tree) != IOVA_OK) {
        fprintf(stderr, "remove-span-oom: iova_tree_keep_holes failed\n");
        exit(1);
    }
    for (int i = 0; i < pad; i++) {
        insert_page(tree, 0x100000 + (hwaddr)i * 2 * PAGE, PAGE - 1);
    }
    for (hwaddr k = 1; k <= 40; k++) {
        insert_page(tree, k * PAGE, PAGE - 1);
    }
    if (full) {
        for (hwaddr k = 2; k <= 32; k += 2) {
            remove_page(tree, k * PAGE);
        }
        *first = 35 * PAGE; /* pages 35 and 36 */
        *last = 37 * PAGE - 1;
    } else {
        remove_page(tree, 20 * PAGE);
        DMAMap far = { .size = PAGE - 1, .perm = IOMMU_RW };
        if (iova_tree_alloc_map(tree, &far, 0x10000000, HWADDR_MAX) != IOVA_OK) {
            fprintf(stderr, "remove-span-oom: alloc failed\n");
            exit(1);
        }
        *first = 19 * PAGE; /* pages 19 and 21, page 20 between them waiting */
        *last = 22 * PAGE - 1;
    }
    return tree;
}

int main(void)
{
    char err[256];
    long removals = 0, ooms = 0;

    for (int full = 0; full < 2; full++) {
        for (int pad = 0; pad <= PADS; pad++) {
            for (long f = 0; f < FAILS; f++) {
                hwaddr first, last;
                IOVATree *tree = layout(pad, full, &first, &last);
                size_t before = iova_tree_nnodes(tree), removed;
                DMAMap span = { .iova = first, .size = last - first };
                allocs = failed = 0;
                sticky = 1;
                fail_at = f;
                int rc = iova_tree_remove_checked(tree, span, &removed);
                fail_at = -1;
                removals++;
                const char *why = NULL;
                if (rc == IOVA_ERR_OOM) {
                    ooms++;
                    if (removed != 0 || iova_tree_nnodes(tree) != before) {
                        why = "IOVA_ERR_OOM, but maps went";
                    }
                } else if (rc != IOVA_OK || removed != 2) {
                    why = "not the two maps removed";
                }
                if (!why && iova_tree_check(tree, err, sizeof(err)) != 0) {
                    why = err;
                }
                /* the span's lowest page is free again (or still mapped): an alloc there */
                DMAMap probe = { .size = PAGE - 1, .perm = IOMMU_RW };
                if (!why && rc == IOVA_OK &&
                    (iova_tree_alloc_map(tree, &probe, first, first + PAGE - 1) != IOVA_OK ||
                     probe.iova != first)) {
                    why = "the freed range cannot be allocated";
                }
                if (why) {
                    printf("%s, %d extra holes, allocation %ld failing on: rc %d, %zu removed: "
                           "%s\n", full ? "log full" : "a range waiting between", pad, f, rc,
                           removed, why);
                    return 1;
                }
                iova_tree_destroy(tree);
            }
        }
    }
    printf("ok %ld, %ld OOM answers\n", removals, ooms);
    return 0;
}
