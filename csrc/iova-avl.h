/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive AVL tree over arena elements, augmented with the "best" element of each subtree.
 *
 * Why not GTree: GTree keeps nothing per subtree, so it cannot answer "which stored range
 * reaches furthest among those starting at or below X" or "where is the largest hole" without
 * walking.  Each element here carries three 32-bit links (left, right, best of its subtree) and
 * a height; one implementation serves every tree of the library, told apart by an AvlOps that
 * says where the links live inside the element, how elements are ordered, and which of two
 * elements is the better one to remember for a subtree.
 */
#ifndef IOVA_AVL_H
#define IOVA_AVL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iova-arena.h"

enum { AVL_LEFT = 0, AVL_RIGHT = 1, AVL_BEST = 2 };

typedef struct AvlOps {
    uint32_t link_off;   /* offset of the element's IOVARef[3] links */
    uint32_t height_off; /* offset of the element's uint8_t height */
    /* Order of the tree; must be total: no two elements compare equal. */
    int (*cmp)(const IOVAArena *arena, IOVARef a, IOVARef b);
    /* Whether @a should be remembered as the best of a subtree rather than @b. */
    bool (*better)(const IOVAArena *arena, IOVARef a, IOVARef b);
    /*
     * Optional second summary: each subtree keeps the minimum of a uint16_t that its elements
     * give through @key16, at @min16_off inside the element.  NULL for none.
     */
    uint16_t (*key16)(const IOVAArena *arena, IOVARef n);
    uint32_t min16_off;
    const char *name;    /* for check() messages */
} AvlOps;

static inline uint16_t *avl_min16(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return (uint16_t *)((char *)iova_arena_ptr(arena, n) + ops->min16_off);
}

static inline IOVARef *avl_links(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return (IOVARef *)((char *)iova_arena_ptr(arena, n) + ops->link_off);
}

static inline IOVARef avl_left(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_LEFT];
}

static inline IOVARef avl_right(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_RIGHT];
}

static inline IOVARef avl_best(const IOVAArena *arena, const AvlOps *ops, IOVARef n)
{
    return avl_links(arena, ops, n)[AVL_BEST];
}

/**
 * avl_insert: add element @n (not yet in the tree) to the tree rooted at @root.
 *
 * Returns: the new root.
 */
IOVARef avl_insert(const IOVAArena *arena, const AvlOps *ops, IOVARef root, IOVARef n);

/**
 * avl_remove: take element @n, which is in the tree rooted at @root, out of it.
 *
 * Returns: the new root.
 */
IOVARef avl_remove(const IOVAArena *arena, const AvlOps *ops, IOVARef root, IOVARef n);

/**
 * avl_check: verify order, heights, balance and the best links of the tree at @root.
 *
 * @count receives the number of elements.  Returns: 0, or -1 with a message in @err.
 */
int avl_check(const IOVAArena *arena, const AvlOps *ops, IOVARef root, size_t *count,
              char *err, size_t errlen);

#endif /* IOVA_AVL_H */
