/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive augmented AVL tree (see iova-avl.h).
 *
 * Recursive insert and remove: the depth is at most 1.44 log2(n) (about 45 at 2**32
 * elements), and the way back up is where heights and best links are recomputed, until a
 * subtree comes out unchanged.
 */
#include "iova-avl.h"

#include <stdio.h>

static uint8_t *avl_height_ptr(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return (uint8_t *)iova_arena_ptr(arena, n) + ops->height_off;
}

static int height_of(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return n == IOVA_REF_NONE ? 0 : *avl_height_ptr(arena, ops, n);
}

/* Recompute @n's height and best link from its children. */
static void avl_update(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    IOVARef *l = avl_links(arena, ops, n);
    int hl = height_of(arena, ops, l[AVL_LEFT]);
    int hr = height_of(arena, ops, l[AVL_RIGHT]);
    IOVARef best = n;

    *avl_height_ptr(arena, ops, n) = (uint8_t)(1 + (hl > hr ? hl : hr));
    if (l[AVL_LEFT] != IOVA_REF_NONE) {
        IOVARef cand = avl_best(arena, ops, l[AVL_LEFT]);
        if (ops->better(arena, cand, best)) {
            best = cand;
        }
    }
    if (l[AVL_RIGHT] != IOVA_REF_NONE) {
        IOVARef cand = avl_best(arena, ops, l[AVL_RIGHT]);
        if (ops->better(arena, cand, best)) {
            best = cand;
        }
    }
    l[AVL_BEST] = best;
    if (ops->key16) {
        uint16_t min = ops->key16(arena, n);
        for (int side = AVL_LEFT; side <= AVL_RIGHT; side++) {
            if (l[side] != IOVA_REF_NONE && *avl_min16(arena, ops, l[side]) < min) {
                min = *avl_min16(arena, ops, l[side]);
            }
        }
        *avl_min16(arena, ops, n) = min;
    }
}

/* Turn @n's child on side @dir into the subtree's root; returns the new root. */
static IOVARef avl_rotate(const IOVAArena *arena, const AvlOps *ops, IOVARef n, int dir)
{
    IOVARef *ln = avl_links(arena, ops, n);
    IOVARef c = ln[dir];
    IOVARef *lc = avl_links(arena, ops, c);

    ln[dir] = lc[!dir];
    lc[!dir] = n;
    avl_update(arena, ops, n);
    avl_update(arena, ops, c);
    return c;
}

static IOVARef avl_rebalance(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    IOVARef *l = avl_links(arena, ops, n);
    int balance = height_of(arena, ops, l[AVL_LEFT]) - height_of(arena, ops, l[AVL_RIGHT]);

    if (balance > 1 || balance < -1) {
        int heavy = balance > 1 ? AVL_LEFT : AVL_RIGHT;
        IOVARef c = l[heavy];
        IOVARef *lc = avl_links(arena, ops, c);
        /* A child leaning the other way is first rotated into line (double rotation). */
        if (height_of(arena, ops, lc[!heavy]) > height_of(arena, ops, lc[heavy])) {
            l[heavy] = avl_rotate(arena, ops, c, !heavy);
        }
        return avl_rotate(arena, ops, n, heavy);
    }
    avl_update(arena, ops, n);
    return n;
}

/*
 * Rebalance @n after one of its subtrees changed.  *@changed is left true only when @n's own
 * summary (which element roots the subtree, its height, its best link) differs from before:
 * ancestors depend on nothing else, so once it is false the rest of the way up costs nothing.
 */
static IOVARef avl_refresh(const IOVAArena *arena, const AvlOps *ops, IOVARef n, bool *changed)
{
    uint8_t height = *avl_height_ptr(arena, ops, n);
    IOVARef best = avl_best(arena, ops, n);
    uint16_t min16 = ops->key16 ? *avl_min16(arena, ops, n) : 0;
    IOVARef root = avl_rebalance(arena, ops, n);

    *changed = root != n || *avl_height_ptr(arena, ops, n) != height ||
               avl_best(arena, ops, n) != best ||
               (ops->key16 && *avl_min16(arena, ops, n) != min16);
    return root;
}

static IOVARef avl_insert_rec(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              IOVARef n, bool *changed)
{
    if (root == IOVA_REF_NONE) {
        IOVARef *l = avl_links(arena, ops, n);
        l[AVL_LEFT] = l[AVL_RIGHT] = IOVA_REF_NONE;
        avl_update(arena, ops, n);
        *changed = true;
        return n;
    }
    IOVARef *l = avl_links(arena, ops, root);
    int side = ops->cmp(arena, n, root) < 0 ? AVL_LEFT : AVL_RIGHT;
    l[side] = avl_insert_rec(arena, ops, l[side], n, changed);
    return *changed ? avl_refresh(arena, ops, root, changed) : root;
}

IOVARef avl_insert(const IOVAArena *arena, const AvlOps *ops, IOVARef root, IOVARef n)
{
    bool changed;
    return avl_insert_rec(arena, ops, root, n, &changed);
}

/* Detach the leftmost element of @root's subtree into @min; returns the new subtree root. */
static IOVARef avl_take_min(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                            IOVARef *min)
{
    IOVARef *l = avl_links(arena, ops, root);

    if (l[AVL_LEFT] == IOVA_REF_NONE) {
        *min = root;
        return l[AVL_RIGHT];
    }
    l[AVL_LEFT] = avl_take_min(arena, ops, l[AVL_LEFT], min);
    return avl_rebalance(arena, ops, root);
}

static IOVARef avl_remove_rec(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              IOVARef n, bool *changed)
{
    if (root == IOVA_REF_NONE) {
        *changed = false; /* not found: the caller's bookkeeping is wrong; check() says so */
        return IOVA_REF_NONE;
    }
    IOVARef *l = avl_links(arena, ops, root);
    if (root != n) {
        int side = ops->cmp(arena, n, root) < 0 ? AVL_LEFT : AVL_RIGHT;
        l[side] = avl_remove_rec(arena, ops, l[side], n, changed);
        return *changed ? avl_refresh(arena, ops, root, changed) : root;
    }
    *changed = true;
    if (l[AVL_LEFT] == IOVA_REF_NONE) {
        return l[AVL_RIGHT];
    }
    if (l[AVL_RIGHT] == IOVA_REF_NONE) {
        return l[AVL_LEFT];
    }
    IOVARef successor;
    IOVARef right = avl_take_min(arena, ops, l[AVL_RIGHT], &successor);
    IOVARef *ls = avl_links(arena, ops, successor);
    ls[AVL_LEFT] = l[AVL_LEFT];
    ls[AVL_RIGHT] = right;
    return avl_rebalance(arena, ops, successor);
}

IOVARef avl_remove(const IOVAArena *arena, const AvlOps *ops, IOVARef root, IOVARef n)
{
    bool changed;
    return avl_remove_rec(arena, ops, root, n, &changed);
}

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
    if (depth > 96) {
        snprintf(c->err, c->errlen, "%s: deeper than an AVL tree can be (a cycle?)",
                 c->ops->name);
        return -1;
    }
    IOVARef *l = avl_links(c->arena, c->ops, n);
    int hl = avl_check_rec(c, l[AVL_LEFT], depth + 1);
    if (hl < 0) {
        return -1;
    }
    if (c->prev != IOVA_REF_NONE && c->ops->cmp(c->arena, c->prev, n) >= 0) {
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
    if (height_of(c->arena, c->ops, n) != h) {
        snprintf(c->err, c->errlen, "%s: stored height is wrong", c->ops->name);
        return -1;
    }
    IOVARef best = n;
    for (int side = AVL_LEFT; side <= AVL_RIGHT; side++) {
        if (l[side] != IOVA_REF_NONE &&
            c->ops->better(c->arena, avl_best(c->arena, c->ops, l[side]), best)) {
            best = avl_best(c->arena, c->ops, l[side]);
        }
    }
    if (l[AVL_BEST] != best) {
        snprintf(c->err, c->errlen, "%s: augmented best link is stale", c->ops->name);
        return -1;
    }
    if (c->ops->key16) {
        uint16_t min = c->ops->key16(c->arena, n);
        for (int side = AVL_LEFT; side <= AVL_RIGHT; side++) {
            if (l[side] != IOVA_REF_NONE && *avl_min16(c->arena, c->ops, l[side]) < min) {
                min = *avl_min16(c->arena, c->ops, l[side]);
            }
        }
        if (*avl_min16(c->arena, c->ops, n) != min) {
            snprintf(c->err, c->errlen, "%s: subtree minimum is stale", c->ops->name);
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
