/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the random-call programs (check-churn.c, check-model.c) share: their command line,
 * OPS SEED [holes], and (through xorshift.h) their random numbers.
 */
#ifndef RANDOM_CALLS_H
#define RANDOM_CALLS_H

#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"
#include "xorshift.h"

/*
 * The tree of a run from @argv (OPS SEED [holes]: the holes kept from the start when a third
 * argument is given), with *@ops and the seeded *@rng; NULL after a message on stderr, the
 * exit status in *@status.
 */
static inline IOVATree *random_calls_setup(int argc, char **argv, const char *name, long *ops,
                                           uint64_t *rng, int *status)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s OPS SEED [holes]\n", name);
        *status = 2;
        return NULL;
    }
    *ops = atol(argv[1]);
    *rng = 0x9e3779b97f4a7c15ull ^ strtoull(argv[2], NULL, 0);
    IOVATree *tree = iova_tree_new();
    if (argc > 3 && iova_tree_keep_holes(tree) != 0) {
        fprintf(stderr, "%s: iova_tree_keep_holes failed\n", name);
        iova_tree_destroy(tree);
        *status = 1;
        return NULL;
    }
    return tree;
}

#endif /* RANDOM_CALLS_H */
