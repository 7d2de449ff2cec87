/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Range queries over an IOVATree: every stored map that overlaps a range, not only the lowest
 * one that iova_tree_find() and iova_tree_find_iova() give.  QEMU's vIOMMUs (intel_iommu.c,
 * amd_iommu.c) walk the whole tree with iova_tree_foreach() for this when a range is
 * invalidated; these walks visit only the maps that answer, plus one descent.
 *
 * Like the rest of the tree, not thread-safe: the tree must not change during a walk.
 */
#ifndef IOVA_RANGE_H
#define IOVA_RANGE_H

#include <glib.h>
#include <stdbool.h>

#include "iova-reverse.h"
#include "iova-tree.h"

/* Called with each map in turn; returning true stops the walk. */
typedef bool (*IOVARangeFn)(const DMAMap *map, void *opaque);

/**
 * iova_tree_foreach_range: call @fn on every stored map whose key range overlaps
 * [@first, @last], in key order, until it returns true.  The key is the IOVA, or the
 * translated address in a tree made by gpa_tree_new().  O(log n + k) for k maps: one
 * descent to the lowest overlap, then one step to each next map.
 *
 * Returns: IOVA_OK, or IOVA_ERR_INVALID when @last < @first (nothing is called).
 */
int iova_tree_foreach_range(const IOVATree *tree, hwaddr first, hwaddr last, IOVARangeFn fn,
                            void *opaque);

/**
 * iova_tree_foreach_translated: call @fn on every stored map whose translated range overlaps
 * [@first, @last] and, unless @id is NULL, whose id is *@id, until it returns true.  The maps
 * come in translated-address order (ties by IOVA), not in IOVA order: a caller that wants
 * them by IOVA sorts the k maps, O(k log k).  Through the reverse tree (the id tree when @id
 * is given): O(log n + k) when the hits lie together in translated order, as they do without
 * aliasing; see iova_reverse_foreach() for the worst case.  A GPA tree walks its own key.
 *
 * Returns: IOVA_OK, or IOVA_ERR_INVALID when @last < @first.
 */
int iova_tree_foreach_translated(const IOVATree *tree, hwaddr first, hwaddr last,
                                 const uint64_t *id, IOVARangeFn fn, void *opaque);

/* What iova-range.c reads of a tree; iova_tree_view() lives in iova-tree.c, beside the tree. */
typedef struct IOVATreeView {
    GTree *gtree;
    gboolean by_translated;
    const IOVAReverse *reverse; /* NULL in a GPA tree */
    const IOVAArena *arena;     /* NULL in a GPA tree */
} IOVATreeView;

/**
 * iova_tree_view: the parts of @tree that the range walks read.
 */
IOVATreeView iova_tree_view(const IOVATree *tree);

#endif /* IOVA_RANGE_H */
