/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Range queries over an IOVATree (iova_tree_foreach_range(), iova_tree_foreach_translated()):
 * every stored map that overlaps a range, not only the lowest one that iova_tree_find() and
 * iova_tree_find_iova() give.  QEMU's vIOMMUs (intel_iommu.c,
 * amd_iommu.c) walk the whole tree with iova_tree_foreach() for this when a range is
 * invalidated; these walks visit only the maps that answer, plus one descent.
 *
 * Like the rest of the tree, not thread-safe: the tree must not change during a walk.
 */
#ifndef IOVA_RANGE_H
#define IOVA_RANGE_H

#include <glib.h>

#include "iova-reverse.h"
#include "iova-tree.h"

/*
 * iova_tree_foreach_range() and iova_tree_foreach_translated() are declared in the public
 * header (qemu/iova-tree.h), which a wheel carries.
 *
 * What iova-range.c reads of a tree; iova_range_view() lives in iova-tree.c, beside the tree.
 * (Its name is outside the library's exported iova_tree_* prefix: it is no public API.)
 */
typedef struct IOVATreeView {
    GTree *gtree;
    gboolean by_translated;
    const IOVAReverse *reverse; /* NULL in a GPA tree */
    const IOVAArena *arena;     /* NULL in a GPA tree */
} IOVATreeView;

/**
 * iova_range_view: the parts of @tree that the range walks read.
 */
IOVATreeView iova_range_view(const IOVATree *tree);

#endif /* IOVA_RANGE_H */
