/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive AVL tree over arena elements, augmented with the "best" element of each subtree.
 *
 * Why not GTree: GTree keeps nothing per subtree, so it cannot answer "which stored range
 * reaches furthest among those starting at or below X" or "where is the largest hole" without
 * walking.  Each element here carries three 32-bit links (left, right, best of its subtree) and
 * a height; an AvlOps says where the links live inside the element, how elements are ordered,
 * which of two elements is the better one to remember for a subtree, and what else a subtree
 * summarises.
 *
 * Why everything is an inline function of a constant AvlOps: every tree of the library passes
 * its own `static const` AvlOps, so the compiler makes one specialised copy of insert and
 * remove per tree, with the comparison and the summary inlined, instead of calling through
 * the ops for every node on the path.  Insert and remove are iterative: the path from the root
 * is kept on a stack of at most AVL_MAX_DEPTH nodes, and the way back up (heights, best links,
 * rotations) stops at the first subtree whose summary comes out unchanged.
 */
#ifndef IOVA_AVL_H
#define IOVA_AVL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iova-arena.h"

enum { AVL_LEFT = 0, AVL_RIGHT = 1, AVL_BEST = 2 };

/* An AVL tree of 2^32 elements (all a 32-bit reference can name) is at most 46 high. */
#define AVL_MAX_DEPTH 64

#define AVL_INLINE static inline __attribute__((always_inline))

typedef struct AvlOps {
    uint32_t elem_size;  /* the arena's element size (a constant: see avl_view()) */
    uint32_t link_off;   /* offset of the element's IOVARef[3] links */
    uint32_t height_off; /* offset of the element's uint8_t height */
    /* Order of the tree; must be total: no two elements compare equal. */
    int (*cmp)(const IOVAArena *arena, IOVARef a, IOVARef b);
    /* Whether @a should be remembered as the best of a subtree rather than @b. */
    bool (*better)(const IOVAArena *arena, IOVARef a, IOVARef b);
    /*
     * Optional second summary: each subtree keeps the minimum (or, with @max8, the maximum)
     * of a small key its elements give through @key16, at @min16_off inside the element: a
     * uint16_t minimum, or a uint8_t maximum with @max8.  NULL for none.
     */
    uint16_t (*key16)(const IOVAArena *arena, IOVARef n);
    uint32_t min16_off;
    bool max8;
    const char *name;    /* for check() messages */
} AvlOps;

/*
 * A copy of the arena's block table pointer and element size, for the length of one
 * operation.  Why: the heights are written through a uint8_t pointer, which may alias
 * anything, so the compiler would reload the arena's fields after every such write; the copy
 * lives on the stack, its address never escapes the inlined code, and the element size
 * becomes a constant.
 */
#define avl_view(arena, ops)                                                        \
    IOVAArena avl_view_ = { .blocks = (arena)->blocks, .elem_size = (ops)->elem_size }; \
    (arena) = &avl_view_

AVL_INLINE IOVARef *avl_links(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return (IOVARef *)((char *)iova_arena_ptr(arena, n) + ops->link_off);
}

AVL_INLINE IOVARef avl_left(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_LEFT];
}

AVL_INLINE IOVARef avl_right(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_RIGHT];
}

AVL_INLINE IOVARef avl_best(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_BEST];
}

AVL_INLINE uint8_t *avl_height_ptr(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return (uint8_t *)iova_arena_ptr(arena, n) + ops->height_off;
}

AVL_INLINE int avl_height(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return n == IOVA_REF_NONE ? 0 : *avl_height_ptr(arena, ops, n);
}

/* The second summary of @n's subtree (0 when the tree keeps none). */
AVL_INLINE uint16_t avl_sum16(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    if (!ops->key16) {
        return 0;
    }
    char *at = (char *)iova_arena_ptr(arena, n) + ops->min16_off;
    return ops->max8 ? *(uint8_t *)at : *(uint16_t *)at;
}

AVL_INLINE void avl_set_sum16(const IOVAArena *arena, const AvlOps *ops, IOVARef n, uint16_t v)
{
    char *at = (char *)iova_arena_ptr(arena, n) + ops->min16_off;
    if (ops->max8) {
        *(uint8_t *)at = (uint8_t)v;
    } else {
        *(uint16_t *)at = v;
    }
}

/* What a subtree's summary is made of: its own element and those of its two children. */
AVL_INLINE uint16_t avl_fold16(const AvlOps *ops, uint16_t a, uint16_t b)
{
    return ops->max8 ? (a > b ? a : b) : (a < b ? a : b);
}

/*
 * Recompute @n's height and summaries from its children.  Returns whether any of them
 * changed: the ancestors of an unchanged subtree need nothing.
 */
AVL_INLINE bool avl_update(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    IOVARef *l = avl_links(arena, ops, n);
    IOVARef left = l[AVL_LEFT], right = l[AVL_RIGHT];
    int hl = avl_height(arena, ops, left), hr = avl_height(arena, ops, right);
    uint8_t height = (uint8_t)(1 + (hl > hr ? hl : hr));
    IOVARef best = n;
    if (left != IOVA_REF_NONE && ops->better(arena, avl_best(arena, ops, left), best)) {
        best = avl_best(arena, ops, left);
    }
    if (right != IOVA_REF_NONE && ops->better(arena, avl_best(arena, ops, right), best)) {
        best = avl_best(arena, ops, right);
    }
    uint8_t *hp = avl_height_ptr(arena, ops, n);
    bool changed = *hp != height || l[AVL_BEST] != best;
    *hp = height;
    l[AVL_BEST] = best;
    if (ops->key16) {
        uint16_t sum = ops->key16(arena, n);
        if (left != IOVA_REF_NONE) {
            sum = avl_fold16(ops, sum, avl_sum16(arena, ops, left));
        }
        if (right != IOVA_REF_NONE) {
            sum = avl_fold16(ops, sum, avl_sum16(arena, ops, right));
        }
        changed |= avl_sum16(arena, ops, n) != sum;
        avl_set_sum16(arena, ops, n, sum);
    }
    return changed;
}

/* Turn @n's child on side @dir into the subtree's root; returns the new root. */
AVL_INLINE IOVARef avl_rotate(const IOVAArena *arena, const AvlOps *ops, IOVARef n, int dir)
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

/*
 * Restore @n's balance after one of its subtrees changed and recompute its summary.  Returns
 * the subtree's root; *@changed says whether the subtree's root or summary differ from before.
 */
AVL_INLINE IOVARef avl_rebalance(const IOVAArena *arena, const AvlOps *ops, IOVARef n,
                                 bool *changed)
{
    IOVARef *l = avl_links(arena, ops, n);
    int balance = avl_height(arena, ops, l[AVL_LEFT]) - avl_height(arena, ops, l[AVL_RIGHT]);

    if (balance > 1 || balance < -1) {
        int heavy = balance > 1 ? AVL_LEFT : AVL_RIGHT;
        IOVARef c = l[heavy];
        IOVARef *lc = avl_links(arena, ops, c);
        /* A child leaning the other way is first rotated into line (double rotation). */
        if (avl_height(arena, ops, lc[!heavy]) > avl_height(arena, ops, lc[heavy])) {
            l[heavy] = avl_rotate(arena, ops, c, !heavy);
        }
        *changed = true;
        return avl_rotate(arena, ops, n, heavy);
    }
    *changed = avl_update(arena, ops, n);
    return n;
}

/*
 * Walk back up @path[0..@depth) (each node's child on side @dirs[i] changed) rebalancing and
 * re-summarising, and return the root.  The nodes at index @must and deeper are all
 * recomputed; above @must the walk stops at the first subtree that comes out unchanged.
 */
AVL_INLINE IOVARef avl_retrace(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                               IOVARef *path, const uint8_t *dirs, int depth, int must)
{
    for (int i = depth - 1; i >= 0; i--) {
        bool changed;
        IOVARef sub = avl_rebalance(arena, ops, path[i], &changed);
        if (sub != path[i]) {
            if (i == 0) {
                root = sub;
            } else {
                avl_links(arena, ops, path[i - 1])[dirs[i - 1]] = sub;
            }
        } else if (!changed && i < must) {
            break;
        }
    }
    return root;
}

/**
 * avl_insert: add element @n (not yet in the tree) to the tree rooted at @root.
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_insert(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              IOVARef n)
{
    IOVARef path[AVL_MAX_DEPTH];
    uint8_t dirs[AVL_MAX_DEPTH];
    int depth = 0;

    avl_view(arena, ops);
    IOVARef *l = avl_links(arena, ops, n);
    l[AVL_LEFT] = l[AVL_RIGHT] = IOVA_REF_NONE;
    avl_update(arena, ops, n);
    for (IOVARef p = root; p != IOVA_REF_NONE;) {
        int dir = ops->cmp(arena, n, p) < 0 ? AVL_LEFT : AVL_RIGHT;
        path[depth] = p;
        dirs[depth++] = (uint8_t)dir;
        p = avl_links(arena, ops, p)[dir];
    }
    if (depth == 0) {
        return n;
    }
    avl_links(arena, ops, path[depth - 1])[dirs[depth - 1]] = n;
    return avl_retrace(arena, ops, root, path, dirs, depth, depth);
}

/**
 * avl_remove_path: take element @n out of the tree rooted at @root, where @path[0..@depth)
 * with @dirs is the way down to @n's parent (@depth 0: @n is the root).  The arrays must have
 * room for AVL_MAX_DEPTH entries: the way on to @n's successor is added to them.
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_remove_path(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                   IOVARef n, IOVARef *path, uint8_t *dirs, int depth)
{
    avl_view(arena, ops);
    IOVARef *ln = avl_links(arena, ops, n);
    IOVARef replacement;
    int at = depth; /* where @n sat on the path */
    if (ln[AVL_LEFT] == IOVA_REF_NONE || ln[AVL_RIGHT] == IOVA_REF_NONE) {
        replacement = ln[AVL_LEFT] != IOVA_REF_NONE ? ln[AVL_LEFT] : ln[AVL_RIGHT];
    } else {
        /* The successor (leftmost of the right subtree) takes @n's place. */
        path[depth] = n; /* replaced below */
        dirs[depth++] = AVL_RIGHT;
        IOVARef s = ln[AVL_RIGHT];
        while (avl_links(arena, ops, s)[AVL_LEFT] != IOVA_REF_NONE) {
            path[depth] = s;
            dirs[depth++] = AVL_LEFT;
            s = avl_links(arena, ops, s)[AVL_LEFT];
        }
        IOVARef *ls = avl_links(arena, ops, s);
        /* unhook s (its parent may be @n itself), then give it @n's children */
        avl_links(arena, ops, path[depth - 1])[dirs[depth - 1]] = ls[AVL_RIGHT];
        ls[AVL_LEFT] = ln[AVL_LEFT];
        ls[AVL_RIGHT] = ln[AVL_RIGHT];
        path[at] = s;
        replacement = s;
    }
    if (at == 0) {
        root = replacement;
    } else {
        avl_links(arena, ops, path[at - 1])[dirs[at - 1]] = replacement;
    }
    /*
     * Every node from the successor's old parent up to @n's place (now the successor's) is
     * recomputed: a stored summary there was not what @n's parent saw.
     */
    return avl_retrace(arena, ops, root, path, dirs, depth, at);
}

/**
 * avl_remove: take element @n, which is in the tree rooted at @root, out of it.
 *
 * Returns: the new root.  (An @n not in the tree leaves it as it is: check() says so.)
 */
AVL_INLINE IOVARef avl_remove(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              IOVARef n)
{
    IOVARef path[AVL_MAX_DEPTH];
    uint8_t dirs[AVL_MAX_DEPTH];
    int depth = 0;

    for (IOVARef p = root; p != n; depth++) {
        if (p == IOVA_REF_NONE) {
            return root;
        }
        int dir = ops->cmp(arena, n, p) < 0 ? AVL_LEFT : AVL_RIGHT;
        path[depth] = p;
        dirs[depth] = (uint8_t)dir;
        p = avl_links(arena, ops, p)[dir];
    }
    return avl_remove_path(arena, ops, root, n, path, dirs, depth);
}

/**
 * avl_refresh_path: the element at the end of @path[0..@depth) changed in place without
 * changing its position in the order (a hole grew or shrank): recompute the summaries from it
 * up, with no rotation.  Why the stop test differs from avl_retrace()'s: a best link names an
 * element, and an unchanged name means an unchanged summary only while the element named is
 * not the one whose value changed; above a subtree whose summary is unchanged and whose best
 * is another element, nothing can change.
 */
AVL_INLINE void avl_refresh_path(const IOVAArena *arena, const AvlOps *ops,
                                 const IOVARef *path, int depth)
{
    avl_view(arena, ops);
    IOVARef changed = depth > 0 ? path[depth - 1] : IOVA_REF_NONE;
    for (int i = depth - 1; i >= 0; i--) {
        if (!avl_update(arena, ops, path[i]) && i < depth - 1 &&
            avl_best(arena, ops, path[i]) != changed) {
            return;
        }
    }
}

/**
 * avl_check: verify order, heights, balance and the summaries of the tree at @root.
 *
 * @count receives the number of elements.  Returns: 0, or -1 with a message in @err.
 */
int avl_check(const IOVAArena *arena, const AvlOps *ops, IOVARef root, size_t *count,
              char *err, size_t errlen);

#endif /* IOVA_AVL_H */
