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

/*
 * The side taken at each step of a path.  Not a character type: a store through one may
 * alias anything, and the compiler would reload the element being placed and the arena's
 * block table after every step of a descent.
 */
typedef uint16_t AvlDir;

/* An AVL tree of 2^32 elements (all a 32-bit reference can name) is at most 46 high. */
#define AVL_MAX_DEPTH 64

#define AVL_INLINE static inline __attribute__((always_inline))

/*
 * Whether the pair (@hi_a, @lo_a) comes before (@hi_b, @lo_b), without a branch.  Where the
 * compiler has a 128-bit integer (GCC's and Clang's on 64-bit hosts; __extension__: no warning
 * under -pedantic) the pairs compare as one number, a compare and a subtract-with-borrow;
 * elsewhere (32-bit hosts) as two comparisons joined with & and |.
 */
AVL_INLINE bool avl_pair_before(uint64_t hi_a, uint64_t lo_a, uint64_t hi_b, uint64_t lo_b)
{
#ifdef __SIZEOF_INT128__
    __extension__ typedef unsigned __int128 AvlKey128;
    return ((AvlKey128)hi_a << 64 | lo_a) < ((AvlKey128)hi_b << 64 | lo_b);
#else
    return (hi_a < hi_b) | ((hi_a == hi_b) & (lo_a < lo_b));
#endif
}

typedef struct AvlOps {
    uint32_t elem_size;  /* the arena's element size (a constant: see avl_view()) */
    uint32_t link_off;   /* offset of the element's IOVARef[3] links */
    uint32_t height_off; /* offset of the element's uint8_t height */
    /*
     * The callbacks take elements, not references: an update holds the addresses of the
     * elements it works on, and a reference would have each callback compute one again
     * (after an 8-bit store, which may alias the arena's block table, with a fresh load).
     *
     * Order of the tree: whether @a comes before @b.  Must be total: of two elements one
     * comes first.  Best written without branches: a descent's comparisons are as likely to
     * go one way as the other, so a branch on them is mispredicted half the time.
     */
    bool (*before)(const void *a, const void *b);
    /* Whether @a should be remembered as the best of a subtree rather than @b. */
    bool (*better)(const void *a, const void *b);
    /*
     * Optional second summary: each subtree keeps the minimum (or, with @max8, the maximum)
     * of a small key its elements give through @key16, at @min16_off inside the element: a
     * uint16_t minimum, or a uint8_t maximum with @max8.  NULL for none.
     */
    uint16_t (*key16)(const void *e);
    uint32_t min16_off;
    bool max8;
    const char *name;    /* for check() messages */
} AvlOps;

/*
 * A copy of what addresses the arena's elements, and its element size, for the length of one
 * operation.  Why: the heights are written through a uint8_t pointer, which may alias
 * anything, so the compiler would reload the arena's fields after every such write; the copy
 * lives on the stack, its address never escapes the inlined code, and the element size
 * becomes a constant.
 */
#define avl_view(arena, ops)                                                        \
    IOVAArena avl_view_ = { .base = (arena)->base, .flat = (arena)->flat,             \
                            .blocks = (arena)->blocks, .elem_size = (ops)->elem_size };  \
    (arena) = &avl_view_

/* The element behind @n. */
AVL_INLINE char *avl_elem(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return iova_arena_elem(arena, n, ops->elem_size);
}

/* Element @e's links, height and second summary. */
AVL_INLINE IOVARef *avl_links_of(const AvlOps *ops, const void *e)
{
    return (IOVARef *)((const char *)e + ops->link_off);
}

AVL_INLINE uint8_t *avl_height_of(const AvlOps *ops, const void *e)
{
    return (uint8_t *)((const char *)e + ops->height_off);
}

AVL_INLINE uint16_t avl_sum16_of(const AvlOps *ops, const void *e)
{
    if (!ops->key16) {
        return 0;
    }
    const char *at = (const char *)e + ops->min16_off;
    return ops->max8 ? *(const uint8_t *)at : *(const uint16_t *)at;
}

AVL_INLINE void avl_set_sum16_of(const AvlOps *ops, void *e, uint16_t v)
{
    char *at = (char *)e + ops->min16_off;
    if (ops->max8) {
        *(uint8_t *)at = (uint8_t)v;
    } else {
        *(uint16_t *)at = v;
    }
}

/* The same by reference, for walks that hold references. */
AVL_INLINE IOVARef *avl_links(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links_of(ops, avl_elem(arena, ops, n));
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

AVL_INLINE int avl_height(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return n == IOVA_REF_NONE ? 0 : *avl_height_of(ops, avl_elem(arena, ops, n));
}

/* The second summary of @n's subtree (0 when the tree keeps none). */
AVL_INLINE uint16_t avl_sum16(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return ops->key16 ? avl_sum16_of(ops, avl_elem(arena, ops, n)) : 0;
}

/* What a subtree's summary is made of: its own element and those of its two children. */
AVL_INLINE uint16_t avl_fold16(const AvlOps *ops, uint16_t a, uint16_t b)
{
    return ops->max8 ? (a > b ? a : b) : (a < b ? a : b);
}

/*
 * Fold into *@best (element *@best_e) the best of child @c's subtree, @c's element being
 * @ce (NULL: no child).
 */
AVL_INLINE void avl_fold_best(const IOVAArena *arena, const AvlOps *ops, const char *ce,
                              IOVARef *best, const char **best_e)
{
    if (!ce) {
        return;
    }
    IOVARef b = avl_links_of(ops, ce)[AVL_BEST];
    const char *be = avl_elem(arena, ops, b);
    if (ops->better(be, *best_e)) {
        *best = b;
        *best_e = be;
    }
}

/* The element of child @c, or NULL when there is none. */
AVL_INLINE char *avl_child(const IOVAArena *arena, const AvlOps *ops, IOVARef c)
{
    return c == IOVA_REF_NONE ? NULL : avl_elem(arena, ops, c);
}

/* What avl_update_parts() found changed: bits of its answer. */
enum { AVL_CHANGED_HEIGHT = 1, AVL_CHANGED_BEST = 2, AVL_CHANGED_SUM = 4 };

/*
 * Recompute the height of @n (element @e) from its children, and of its two summaries the
 * best link when @best and the second summary when @sum; a summary not asked for keeps its
 * stored value.  Why parts: after an update, a summary the changed element did not give
 * still holds (it was the best of a subtree that still has it), and its recompute is the
 * costly part: the best link's takes a look at each child's best element, one cache line
 * each.  Returns what changed (AVL_CHANGED_*): the ancestors of an unchanged subtree need
 * nothing, and those of a subtree whose second summary held need nothing for that summary.
 */
AVL_INLINE unsigned avl_update_parts(const IOVAArena *arena, const AvlOps *ops, IOVARef n,
                                     char *e, bool best, bool sum)
{
    IOVARef *l = avl_links_of(ops, e);
    const char *le = avl_child(arena, ops, l[AVL_LEFT]);
    const char *re = avl_child(arena, ops, l[AVL_RIGHT]);
    int hl = le ? *avl_height_of(ops, le) : 0, hr = re ? *avl_height_of(ops, re) : 0;
    uint8_t height = (uint8_t)(1 + (hl > hr ? hl : hr));
    IOVARef best_ref = l[AVL_BEST];
    if (best) {
        const char *best_e = e;
        best_ref = n;
        avl_fold_best(arena, ops, le, &best_ref, &best_e);
        avl_fold_best(arena, ops, re, &best_ref, &best_e);
    }
    bool with_sum = ops->key16 && sum;
    uint16_t total = 0;
    if (with_sum) {
        total = ops->key16(e);
        if (le) {
            total = avl_fold16(ops, total, avl_sum16_of(ops, le));
        }
        if (re) {
            total = avl_fold16(ops, total, avl_sum16_of(ops, re));
        }
    }
    /*
     * Every load comes before the first store: a store of an 8-bit height or maximum may
     * alias anything, and any load after it would be made again.
     */
    uint8_t *hp = avl_height_of(ops, e);
    unsigned changed = (*hp != height ? AVL_CHANGED_HEIGHT : 0u) |
                       (l[AVL_BEST] != best_ref ? AVL_CHANGED_BEST : 0u) |
                       (with_sum && avl_sum16_of(ops, e) != total ? AVL_CHANGED_SUM : 0u);
    l[AVL_BEST] = best_ref;
    if (with_sum) {
        avl_set_sum16_of(ops, e, total);
    }
    *hp = height;
    return changed;
}

/*
 * Recompute the height and summaries of @n (element @e) from its children.  Returns whether
 * any of them changed.
 */
AVL_INLINE bool avl_update_at(const IOVAArena *arena, const AvlOps *ops, IOVARef n, char *e)
{
    return avl_update_parts(arena, ops, n, e, true, true) != 0;
}

AVL_INLINE bool avl_update(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_update_at(arena, ops, n, avl_elem(arena, ops, n));
}

/* Set @n's height (element @e) from its children's, @hl and @hr; returns whether it changed. */
AVL_INLINE bool avl_set_height(const AvlOps *ops, char *e, int hl, int hr)
{
    uint8_t *hp = avl_height_of(ops, e);
    uint8_t height = (uint8_t)(1 + (hl > hr ? hl : hr));
    bool changed = *hp != height;
    *hp = height;
    return changed;
}

/* Turn @n's child on side @dir into the subtree's root; returns the new root. */
AVL_INLINE IOVARef avl_rotate(const IOVAArena *arena, const AvlOps *ops, IOVARef n, int dir)
{
    char *ne = avl_elem(arena, ops, n);
    IOVARef *ln = avl_links_of(ops, ne);
    IOVARef c = ln[dir];
    char *ce = avl_elem(arena, ops, c);
    IOVARef *lc = avl_links_of(ops, ce);

    ln[dir] = lc[!dir];
    lc[!dir] = n;
    avl_update_at(arena, ops, n, ne);
    avl_update_at(arena, ops, c, ce);
    return c;
}

/*
 * Restore @n's balance after one of its subtrees changed and recompute its summary.  Returns
 * the subtree's root; *@changed says whether the subtree's root or summary differ from before.
 */
AVL_INLINE IOVARef avl_rebalance(const IOVAArena *arena, const AvlOps *ops, IOVARef n,
                                 bool *changed)
{
    char *ne = avl_elem(arena, ops, n);
    IOVARef *l = avl_links_of(ops, ne);
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
    *changed = avl_update_at(arena, ops, n, ne);
    return n;
}

/*
 * Put @sub, the new root of the subtree that hung from @path[@i] (or was the whole tree), in
 * its parent's link, or make it the root; returns the root.
 */
AVL_INLINE IOVARef avl_relink(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              const IOVARef *path, const AvlDir *dirs, int i, IOVARef sub)
{
    if (i == 0) {
        return sub;
    }
    avl_links(arena, ops, path[i - 1])[dirs[i - 1]] = sub;
    return root;
}

/* The way from a root down to one place in the tree: each node and the side taken from it. */
typedef struct AvlPath {
    IOVARef node[AVL_MAX_DEPTH];
    AvlDir dir[AVL_MAX_DEPTH];
    int depth;
} AvlPath;

/*
 * One step of a descent from @p towards the place of element @n (at @ne); returns the next
 * node.  Inserting
 * (@n not in the tree), the descent ends at a missing child; removing, it ends at @n, and no
 * step starts there.  So @p is never @n, and @n lies right of @p exactly when @p comes before
 * it: that test is the side itself, with no negation to compute.  The
 * depth is the caller's local, not @path's: a path entry's 32-bit store may alias an int, so
 * a depth kept in @path would be loaded and stored again at every step.
 */
AVL_INLINE IOVARef avl_step(const IOVAArena *arena, const AvlOps *ops, const void *ne,
                            IOVARef p, AvlPath *path, int *depth)
{
    const char *pe = avl_elem(arena, ops, p);
    int dir = ops->before(pe, ne) ? AVL_RIGHT : AVL_LEFT;
    path->node[*depth] = p;
    path->dir[(*depth)++] = (AvlDir)dir;
    return avl_links_of(ops, pe)[dir];
}

/*
 * The ways down to element @n's place in two trees over the same arena, walked side by side.
 * Why together: on a large tree every step is a cache miss, and the two walks do not depend
 * on each other, so the processor waits for both trees' misses at once instead of one after
 * the other.  @stop is IOVA_REF_NONE for an insert and @n for a removal.  A third, unrelated
 * walk may come along for the same reason: @side_step takes one step of @side if one is
 * left and says whether another is (NULL @side: none); it is called whatever its last
 * answer, so that the loop needs no flag of its own for it, and runs the walk to its end.
 * @side is best a local of the caller that the inlined step alone sees (its fields then stay
 * in registers), with the walk's path reached through a pointer.
 */
AVL_INLINE void avl_descend2(const IOVAArena *arena, IOVARef n, IOVARef stop,
                             const AvlOps *ops_a, IOVARef root_a, AvlPath *path_a,
                             const AvlOps *ops_b, IOVARef root_b, AvlPath *path_b,
                             bool (*side_step)(void *side), void *side)
{
    IOVARef a = root_a, b = root_b;
    int depth_a = 0, depth_b = 0;

    avl_view(arena, ops_a); /* both trees' elements are the arena's */
    const char *ne = avl_elem(arena, ops_a, n);
    while (a != stop && b != stop) {
        if (a == IOVA_REF_NONE || b == IOVA_REF_NONE) {
            break; /* a removal of an element that one tree does not hold */
        }
        a = avl_step(arena, ops_a, ne, a, path_a, &depth_a);
        b = avl_step(arena, ops_b, ne, b, path_b, &depth_b);
        if (side) {
            side_step(side);
        }
    }
    while (a != stop && a != IOVA_REF_NONE) {
        a = avl_step(arena, ops_a, ne, a, path_a, &depth_a);
        if (side) {
            side_step(side);
        }
    }
    while (b != stop && b != IOVA_REF_NONE) {
        b = avl_step(arena, ops_b, ne, b, path_b, &depth_b);
        if (side) {
            side_step(side);
        }
    }
    while (side && side_step(side)) {
    }
    path_a->depth = depth_a;
    path_b->depth = depth_b;
}

/*
 * Rebalance @p (element @pe), whose subtree grew by element @n (at @ne, key16 @key) and
 * leans two levels to one side, with one rotation or two; returns the subtree's new root.
 * Why not avl_rebalance(): the new root's subtree holds the same elements as @p's did with
 * @n, so its summary is @p's old summary folded with @n, and only the nodes that moved below
 * it are recomputed from their children (two updates instead of four for a double rotation).
 */
AVL_INLINE IOVARef avl_insert_rebalance(const IOVAArena *arena, const AvlOps *ops, IOVARef p,
                                        char *pe, IOVARef n, const char *ne, uint16_t key)
{
    IOVARef *l = avl_links_of(ops, pe);
    int heavy = avl_height(arena, ops, l[AVL_LEFT]) > avl_height(arena, ops, l[AVL_RIGHT])
                    ? AVL_LEFT : AVL_RIGHT;
    IOVARef best = ops->better(ne, avl_elem(arena, ops, l[AVL_BEST])) ? n : l[AVL_BEST];
    uint16_t sum = ops->key16 ? avl_fold16(ops, avl_sum16_of(ops, pe), key) : 0;
    IOVARef c = l[heavy], top;
    char *ce = avl_elem(arena, ops, c), *te;
    IOVARef *lc = avl_links_of(ops, ce);

    if (avl_height(arena, ops, lc[!heavy]) > avl_height(arena, ops, lc[heavy])) {
        /* The child leans the other way: its inner child g goes to the top. */
        IOVARef g = lc[!heavy];
        char *ge = avl_elem(arena, ops, g);
        IOVARef *lg = avl_links_of(ops, ge);
        lc[!heavy] = lg[heavy];
        l[heavy] = lg[!heavy];
        lg[heavy] = c;
        lg[!heavy] = p;
        avl_update_at(arena, ops, c, ce);
        top = g;
        te = ge;
    } else {
        l[heavy] = lc[!heavy];
        lc[!heavy] = p;
        top = c;
        te = ce;
    }
    avl_update_at(arena, ops, p, pe);
    IOVARef *lt = avl_links_of(ops, te);
    int hl = avl_height(arena, ops, lt[AVL_LEFT]), hr = avl_height(arena, ops, lt[AVL_RIGHT]);
    lt[AVL_BEST] = best;
    if (ops->key16) {
        avl_set_sum16_of(ops, te, sum);
    }
    *avl_height_of(ops, te) = (uint8_t)(1 + (hl > hr ? hl : hr));
    return top;
}

/*
 * Make element @n (at @ne) a leaf: no children, its own summary, height 1.  Returns its
 * key16 (0 when the tree keeps none).
 */
AVL_INLINE uint16_t avl_make_leaf(const AvlOps *ops, IOVARef n, char *ne)
{
    IOVARef *l = avl_links_of(ops, ne);
    uint16_t key = ops->key16 ? ops->key16(ne) : 0;
    l[AVL_LEFT] = l[AVL_RIGHT] = IOVA_REF_NONE;
    l[AVL_BEST] = n;
    if (ops->key16) {
        avl_set_sum16_of(ops, ne, key);
    }
    *avl_height_of(ops, ne) = 1;
    return key;
}

/* As avl_make_leaf(), and hang it at the end of @path (which is not empty). */
AVL_INLINE uint16_t avl_link_leaf(const IOVAArena *arena, const AvlOps *ops, IOVARef n,
                                  char *ne, const AvlPath *path)
{
    uint16_t key = avl_make_leaf(ops, n, ne);
    avl_links(arena, ops, path->node[path->depth - 1])[path->dir[path->depth - 1]] = n;
    return key;
}

/*
 * Which of its two summaries an element that joined a subtree (or grew in place) may still
 * change, on the walk up from it.  A summary it left as it was at one level stays so at
 * every level above: each subtree there holds the element that beat it, or gave a second
 * summary at least as good.  So the walk stops comparing for that summary, and stops at
 * the first level where neither is open and no height grows.
 */
typedef struct AvlOpen {
    bool best;
    bool sum;
} AvlOpen;

/*
 * Fold element @n (at @ne, key16 @key), new in the subtree of @pe, into the summaries of
 * that subtree that @open says it may still change, closing those it leaves unchanged;
 * returns whether any changed.
 */
AVL_INLINE bool avl_fold_in(const IOVAArena *arena, const AvlOps *ops, char *pe, IOVARef n,
                            const char *ne, uint16_t key, AvlOpen *open)
{
    IOVARef *l = avl_links_of(ops, pe);
    bool changed = false;
    if (open->best) {
        if (ops->better(ne, avl_elem(arena, ops, l[AVL_BEST]))) {
            l[AVL_BEST] = n;
            changed = true;
        } else {
            open->best = false;
        }
    }
    if (ops->key16 && open->sum) {
        uint16_t sum = avl_sum16_of(ops, pe), folded = avl_fold16(ops, sum, key);
        if (folded != sum) {
            avl_set_sum16_of(ops, pe, folded);
            changed = true;
        } else {
            open->sum = false;
        }
    }
    return changed;
}

/*
 * One level of an insert's way up while the heights grow: @p (at @pe), whose child on side
 * @dir grew to height *@grown, the subtree having gained @n (at @ne, key16 @key).  When @p
 * leans two levels it is rotated (avl_insert_rebalance(), which restores its old height:
 * *@growing becomes false) and the subtree's new root is returned; otherwise *@growing says
 * whether it grew (then by one, to *@grown, its height set) and IOVA_REF_NONE is returned.
 */
AVL_INLINE IOVARef avl_grow_level(const IOVAArena *arena, const AvlOps *ops, IOVARef p,
                                  char *pe, int dir, IOVARef n, const char *ne, uint16_t key,
                                  int *grown, bool *growing)
{
    /*
     * The child was at most one lower than @p before it grew, so it is now at most as high
     * as @p: lower, and @p stays as it was, with no sibling to read; as high, and the
     * sibling says whether @p grows by one or leans two levels.
     */
    uint8_t *hp = avl_height_of(ops, pe);
    if (*grown < *hp) {
        *growing = false;
        return IOVA_REF_NONE;
    }
    int sibling = avl_height(arena, ops, avl_links_of(ops, pe)[!dir]);
    if (*grown - sibling > 1) {
        *growing = false;
        return avl_insert_rebalance(arena, ops, p, pe, n, ne, key);
    }
    *hp = (uint8_t)(*grown + 1);
    *grown += 1;
    return IOVA_REF_NONE;
}

/*
 * One level of the walk up after an insert, at @path's level @i: grow or rebalance it while
 * the subtree below grew, fold the new element @n into the summaries @open names.  Returns
 * whether the walk goes on (a rotation, or something changed at this level); @root follows
 * a rotation at the root.
 */
AVL_INLINE bool avl_insert_step(const IOVAArena *arena, const AvlOps *ops, IOVARef *root,
                                const AvlPath *path, int i, IOVARef n, const char *ne,
                                uint16_t key, int *grown, bool *growing, AvlOpen *open)
{
    IOVARef p = path->node[i];
    char *pe = avl_elem(arena, ops, p);
    bool changed = false;
    if (*growing) {
        IOVARef sub = avl_grow_level(arena, ops, p, pe, path->dir[i], n, ne, key, grown,
                                     growing);
        if (sub != IOVA_REF_NONE) {
            *root = avl_relink(arena, ops, *root, path->node, path->dir, i, sub);
            return true;
        }
        changed = *growing;
    }
    return avl_fold_in(arena, ops, pe, n, ne, key, open) || changed;
}

/*
 * The way back up after leaf @n (at @ne) was linked at the end of @path.  Every ancestor's
 * subtree gained exactly @n, so its summary is the old one folded with @n's: one comparison
 * against the stored best instead of recomputing from both children, and for each summary
 * none once a level kept it (AvlOpen).  Heights are recomputed only while they grow, and
 * from the sibling's alone: the child on the path is the subtree that just grew, whose
 * height the level below computed.  A rotation restores the subtree's old height (an AVL insert needs
 * at most one), and above it only the summaries can change.  The walk stops at the first
 * ancestor where nothing changed: nothing above it can.
 */
AVL_INLINE IOVARef avl_insert_retrace(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                      IOVARef n, const char *ne, const AvlPath *path)
{
    uint16_t key = ops->key16 ? ops->key16(ne) : 0;
    bool growing = true;
    int grown = 1; /* the height of the child on the path: at first, the new leaf */
    AvlOpen open = { .best = true, .sum = true };

    for (int i = path->depth - 1; i >= 0; i--) {
        if (!avl_insert_step(arena, ops, &root, path, i, n, ne, key, &grown, &growing,
                             &open)) {
            break;
        }
    }
    return root;
}

/**
 * avl_insert_at: add element @n (not yet in the tree) at the end of @path, the way down from
 * @root to @n's place (avl_descend2() or a descent by avl_step()).
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_insert_at(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                 IOVARef n, AvlPath *path)
{
    avl_view(arena, ops);
    /* a leaf: its summary is its own, with no children to read */
    char *ne = avl_elem(arena, ops, n);
    if (path->depth == 0) {
        avl_make_leaf(ops, n, ne);
        return n;
    }
    avl_link_leaf(arena, ops, n, ne, path);
    return avl_insert_retrace(arena, ops, root, n, ne, path);
}

/**
 * avl_insert: add element @n (not yet in the tree) to the tree rooted at @root.
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_insert(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                              IOVARef n)
{
    AvlPath path;
    int depth = 0;
    const char *ne = avl_elem(arena, ops, n);

    for (IOVARef p = root; p != IOVA_REF_NONE;) {
        p = avl_step(arena, ops, ne, p, &path, &depth);
    }
    path.depth = depth;
    return avl_insert_at(arena, ops, root, n, &path);
}

/*
 * Whether @p's best link names @gone, an element that left its subtree or changed in place
 * for the worse: only then may the best have changed.  Otherwise it still holds, whatever
 * else moved below.
 */
AVL_INLINE bool avl_lost_best(const AvlOps *ops, const char *pe, IOVARef gone)
{
    return avl_links_of(ops, pe)[AVL_BEST] == gone;
}

/* The same for the second summary, @gone_key being what @gone gave (before its change). */
AVL_INLINE bool avl_lost_sum(const AvlOps *ops, const char *pe, uint16_t gone_key)
{
    return ops->key16 && avl_sum16_of(ops, pe) == gone_key;
}

/*
 * The way back up after a removal (see avl_remove_path()): @path[0..@depth) ends at the
 * parent of the node that took the removed element's place; @at is @n's place on it.  Below
 * @at the subtrees lost @moved (the successor that moved up into @at), above it they lost
 * @n, and @at itself is a new node there, recomputed in full.  Elsewhere the heights are
 * recomputed from the children, and of the summaries only those the lost element (@moved
 * below @at, @n above) was part of (avl_lost_best(), avl_lost_sum()), each tested at each
 * level.  Above @at the walk stops at the first subtree that comes out unchanged.
 */
AVL_INLINE IOVARef avl_remove_retrace(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                      IOVARef *path, const AvlDir *dirs, int depth, int at,
                                      IOVARef n, IOVARef moved)
{
    uint16_t n_key = ops->key16 ? ops->key16(avl_elem(arena, ops, n)) : 0;
    uint16_t moved_key = ops->key16 && moved != IOVA_REF_NONE
                             ? ops->key16(avl_elem(arena, ops, moved)) : 0;

    for (int i = depth - 1; i >= 0; i--) {
        IOVARef p = path[i];
        char *pe = avl_elem(arena, ops, p);
        IOVARef *l = avl_links_of(ops, pe);
        int hl = avl_height(arena, ops, l[AVL_LEFT]), hr = avl_height(arena, ops, l[AVL_RIGHT]);
        bool changed;
        IOVARef sub = p;
        if (hl - hr > 1 || hr - hl > 1) {
            sub = avl_rebalance(arena, ops, p, &changed);
        } else if (i == at) {
            changed = avl_update_at(arena, ops, p, pe);
        } else {
            bool lost_best = avl_lost_best(ops, pe, i > at ? moved : n);
            bool lost_sum = avl_lost_sum(ops, pe, i > at ? moved_key : n_key);
            /* lost neither: only the height can have changed */
            changed = lost_best || lost_sum
                          ? avl_update_parts(arena, ops, p, pe, lost_best, lost_sum) != 0
                          : avl_set_height(ops, pe, hl, hr);
        }
        if (sub != p) {
            root = avl_relink(arena, ops, root, path, dirs, i, sub);
        } else if (!changed && i < at) {
            break;
        }
    }
    return root;
}

/**
 * avl_remove_path: take element @n out of the tree rooted at @root, where @path[0..@depth)
 * with @dirs is the way down to @n's parent (@depth 0: @n is the root).  The arrays must have
 * room for AVL_MAX_DEPTH entries: the way on to @n's successor is added to them.
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_remove_path(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                   IOVARef n, IOVARef *path, AvlDir *dirs, int depth)
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
    return avl_remove_retrace(arena, ops, root, path, dirs, depth, at, n,
                              replacement != IOVA_REF_NONE && at < depth ? replacement
                                                                         : IOVA_REF_NONE);
}

/**
 * avl_remove_at: take element @n out of the tree rooted at @root, @path being the way down to
 * it from avl_descend2() (it ends at @n's parent).  An @n the descent did not reach is not in
 * the tree, which is left as it is (check() says so).
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_remove_at(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                 IOVARef n, AvlPath *path)
{
    int depth = path->depth;
    IOVARef reached = depth == 0 ? root
                                 : avl_links(arena, ops, path->node[depth - 1])[path->dir[depth - 1]];
    if (reached != n) {
        return root;
    }
    return avl_remove_path(arena, ops, root, n, path->node, path->dir, depth);
}

/**
 * avl_refresh_worse: the element at the end of @path[0..@depth) changed in place, keeping
 * its position in the order, and only for the worse (a hole shrank): it is no better than
 * before, and its key16 is no better for the summary than @old_key (no lower for a minimum,
 * no higher for a maximum).  Recompute the summaries from it up, with no rotation.
 *
 * An ancestor's best can change only if it names the element, its second summary only if
 * that is @old_key, and each is recomputed only then.  Each test fails for good once it has
 * failed at one level: a subtree whose best beats the element has that best in every subtree
 * above, and one whose second summary beats @old_key (or still equals it after the change)
 * has the element giving it in every subtree above.  The walk ends where both have failed.
 */
AVL_INLINE void avl_refresh_worse(const IOVAArena *arena, const AvlOps *ops,
                                  const IOVARef *path, int depth, uint16_t old_key)
{
    avl_view(arena, ops);
    if (depth == 0) {
        return;
    }
    IOVARef x = path[depth - 1];
    unsigned parts = avl_update_parts(arena, ops, x, avl_elem(arena, ops, x), true, true);
    AvlOpen open = { .best = true, .sum = (parts & AVL_CHANGED_SUM) != 0 };
    for (int i = depth - 2; i >= 0; i--) {
        char *pe = avl_elem(arena, ops, path[i]);
        open.best &= avl_lost_best(ops, pe, x);
        open.sum &= avl_lost_sum(ops, pe, old_key);
        if (!(open.best | open.sum)) {
            break;
        }
        parts = avl_update_parts(arena, ops, path[i], pe, open.best, open.sum);
        open.sum &= (parts & AVL_CHANGED_SUM) != 0;
    }
}

/**
 * avl_refresh_better: as avl_refresh_worse(), for an element that changed only for the
 * better (a hole grew).  Each ancestor folds the element into the summaries it may still
 * change, as after an insert (AvlOpen); the best stays open where it names the element (the
 * link stays the same, but the subtrees above may now prefer it).  The walk ends where
 * neither is open.
 */
AVL_INLINE void avl_refresh_better(const IOVAArena *arena, const AvlOps *ops,
                                   const IOVARef *path, int depth)
{
    avl_view(arena, ops);
    if (depth == 0) {
        return;
    }
    IOVARef x = path[depth - 1];
    char *xe = avl_elem(arena, ops, x);
    avl_update_at(arena, ops, x, xe);
    uint16_t key = ops->key16 ? ops->key16(xe) : 0;
    AvlOpen open = { .best = true, .sum = true };
    for (int i = depth - 2; i >= 0; i--) {
        char *pe = avl_elem(arena, ops, path[i]);
        bool named = avl_links_of(ops, pe)[AVL_BEST] == x;
        avl_fold_in(arena, ops, pe, x, xe, key, &open);
        open.best |= named;
        if (!(open.best | open.sum)) {
            return;
        }
    }
}

/**
 * avl_insert_worse: add element @n (not yet in the tree) at the end of @path, which runs
 * through @path->node[@at], an element x that changed in place for the worse as for
 * avl_refresh_worse() (@old_key: its key16 before), and on into x's subtree.  @n must be no
 * better than x was, and its key16 no better than @old_key (a part split off a hole: shorter
 * than the hole was and inside it).  One walk up does what avl_refresh_worse() and
 * avl_insert_at() would do in two.
 *
 * Why it can: below x the subtrees gained @n and nothing else, as after any insert.  At x
 * and above, a subtree gained @n but x's change reaches its summary only where x was its
 * best or gave @old_key (avl_lost_best(), avl_lost_sum()); elsewhere the best stays, since
 * it beat x and x beat @n, and so does the second summary.  Where x's change does reach a
 * summary, that one is recomputed from the children, which the walk has brought up to date
 * below.  The second summary is not reached at all when x's new key16 or @n's is still
 * @old_key (a split off a hole mostly leaves the hole's most aligned address to one of its
 * two parts): every subtree above x holds both, so one of its elements still gives @old_key
 * and none gives better.  Then only the ancestors x was the best of are recomputed.
 *
 * Returns: the new root.
 */
AVL_INLINE IOVARef avl_insert_worse(const IOVAArena *arena, const AvlOps *ops, IOVARef root,
                                    IOVARef n, AvlPath *path, int at, uint16_t old_key)
{
    avl_view(arena, ops);
    char *ne = avl_elem(arena, ops, n);
    uint16_t key = avl_link_leaf(arena, ops, n, ne, path);
    IOVARef x = path->node[at];
    /*
     * Whether a subtree above x may lose @old_key: not when x or @n still gives it, nor above
     * a level whose second summary beats it or comes out as it was (see avl_refresh_worse()).
     */
    bool sum_open = ops->key16 &&
                    avl_fold16(ops, ops->key16(avl_elem(arena, ops, x)), key) != old_key;

    bool growing = true;
    int grown = 1; /* the height of the child on the path: at first, the new leaf */
    int i = path->depth - 1;
    AvlOpen open = { .best = true, .sum = true };
    /* Below x, as after any insert (avl_insert_retrace()), up to the first level unchanged. */
    for (; i > at; i--) {
        if (!avl_insert_step(arena, ops, &root, path, i, n, ne, key, &grown, &growing,
                             &open)) {
            i = at; /* the subtrees up to x are as they were: on to x */
            break;
        }
    }
    /*
     * x and above: @n changes no summary here (see above), x's change only those it reaches,
     * and only the parts it reaches are recomputed; the heights, while they grow.  The tests
     * are joined with & and |: each level is one branch on whether anything is left to do.
     */
    bool best_open = true;
    for (; i >= 0; i--) {
        IOVARef p = path->node[i];
        char *pe = avl_elem(arena, ops, p);
        best_open &= avl_lost_best(ops, pe, x);
        sum_open &= avl_lost_sum(ops, pe, old_key);
        bool reached = best_open | sum_open;
        if (!(growing | reached)) {
            break; /* nothing above can change either */
        }
        if (growing) {
            IOVARef sub = avl_grow_level(arena, ops, p, pe, path->dir[i], n, ne, key, &grown,
                                         &growing);
            if (sub != IOVA_REF_NONE) {
                if (reached) {
                    avl_update(arena, ops, sub);
                }
                root = avl_relink(arena, ops, root, path->node, path->dir, i, sub);
                continue;
            }
        }
        if (reached) {
            unsigned parts = avl_update_parts(arena, ops, p, pe, best_open, sum_open);
            sum_open &= (parts & AVL_CHANGED_SUM) != 0;
        }
    }
    return root;
}

/**
 * avl_check: verify order, heights, balance and the summaries of the tree at @root.
 *
 * @count receives the number of elements.  Returns: 0, or -1 with a message in @err.
 */
int avl_check(const IOVAArena *arena, const AvlOps *ops, IOVARef root, size_t *count,
              char *err, size_t errlen);

#endif /* IOVA_AVL_H */
