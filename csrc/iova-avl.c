/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive augmented AVL tree: the check (see iova-avl.h; insert and remove are inline there).
 */
#include "iova-avl.h"

#include <stdio.h>

typedef struct AvlCheck {
    const IOVAArena *arena;
    const AvlOps *ops;
    IOVARef prev;
    size_t count;
    char *err;
    size_t errlen;
} AvlCheck;

/* Returns the height of @n's subtree, or -1 after writing a message. */
static int avl_check_rec(AvlCheck *c, IOVARef n, int depth)
{
    if (n == IOVA_REF_NONE) {
        return 0;
    }
    if (depth > AVL_MAX_DEPTH) {
        snprintf(c->err, c->errlen, "%s: deeper than an AVL tree can be (a cycle?)",
                 c->ops->name);
        return -1;
    }
    const IOVARef *l = avl_links(c->arena, c->ops, n);
    int hl = avl_check_rec(c, l[AVL_LEFT], depth + 1);
    if (hl < 0) {
        return -1;
    }
    if (c->prev != IOVA_REF_NONE && !c->ops->before(avl_elem(c->arena, c->ops, c->prev),
                                                      avl_elem(c->arena, c->ops, n))) {
        snprintf(c->err, c->errlen, "%s: elements out of order", c->ops->name);
        return -1;
    }
    c->prev = n;
    c->count++;
    int hr = avl_check_rec(c, l[AVL_RIGHT], depth + 1);
    if (hr < 0) {
        return -1;
    }
    int h = 1 + (hl > hr ? hl : hr);
    if (hl - hr > 1 || hr - hl > 1) {
        snprintf(c->err, c->errlen, "%s: subtree out of balance (%d vs %d)", c->ops->name, hl,
                 hr);
        return -1;
    }
    if (avl_height(c->arena, c->ops, n) != h) {
        snprintf(c->err, c->errlen, "%s: stored height is wrong", c->ops->name);
        return -1;
    }
    IOVARef best = n;
    for (int side = AVL_LEFT; side <= AVL_RIGHT; side++) {
        if (l[side] != IOVA_REF_NONE &&
            c->ops->better(avl_elem(c->arena, c->ops, avl_best(c->arena, c->ops, l[side])),
                           avl_elem(c->arena, c->ops, best))) {
            best = avl_best(c->arena, c->ops, l[side]);
        }
    }
    if (l[AVL_BEST] != best) {
        snprintf(c->err, c->errlen, "%s: augmented best link is stale", c->ops->name);
        return -1;
    }
    if (c->ops->key16) {
        uint16_t sum = c->ops->key16(avl_elem(c->arena, c->ops, n));
        for (int side = AVL_LEFT; side <= AVL_RIGHT; side++) {
            if (l[side] != IOVA_REF_NONE) {
                sum = avl_fold16(c->ops, sum, avl_sum16(c->arena, c->ops, l[side]));
            }
        }
        if (avl_sum16(c->arena, c->ops, n) != sum) {
            snprintf(c->err, c->errlen, "%s: subtree %s is stale", c->ops->name,
                     c->ops->max8 ? "maximum" : "minimum");
            return -1;
        }
    }
    return h;
}

int avl_check(const IOVAArena *arena, const AvlOps *ops, IOVARef root, size_t *count,
              char *err, size_t errlen)
{
    AvlCheck c = { arena, ops, IOVA_REF_NONE, 0, err, errlen };
    int rc = avl_check_rec(&c, root, 0) < 0 ? -1 : 0;
    *count = c.count;
    return rc;
}
