/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Range queries over an IOVATree (see iova-range.h).
 */
#include "iova-range.h"

static hwaddr view_key(const IOVATreeView *view, const DMAMap *map)
{
    return view->by_translated ? map->translated_addr : map->iova;
}

/* The GTree walk of both forms: from the lowest overlap, node by node, while maps start in
 * range (and, for a filtered walk, only those with the id). */
static void walk_keys(const IOVATreeView *view, hwaddr first, hwaddr last, const uint64_t *id,
                      IOVARangeFn fn, void *opaque)
{
    DMAMap needle = { 0 };
    needle.iova = needle.translated_addr = first;
    /* With the overlap comparator the lower bound is the first map whose last byte is at or
     * above @first. */
    for (GTreeNode *node = g_tree_lower_bound(view->gtree, &needle); node;
         node = g_tree_node_next(node)) {
        const DMAMap *map = g_tree_node_key(node);
        if (view_key(view, map) > last) {
            return;
        }
        if ((!id || map->id == *id) && fn(map, opaque)) {
            return;
        }
    }
}

int iova_tree_foreach_range(const IOVATree *tree, hwaddr first, hwaddr last, IOVARangeFn fn,
                            void *opaque)
{
    if (last < first) {
        return IOVA_ERR_INVALID;
    }
    IOVATreeView view = iova_range_view(tree);
    walk_keys(&view, first, last, NULL, fn, opaque);
    return IOVA_OK;
}

int iova_tree_foreach_translated(const IOVATree *tree, hwaddr first, hwaddr last,
                                 const uint64_t *id, IOVARangeFn fn, void *opaque)
{
    if (last < first) {
        return IOVA_ERR_INVALID;
    }
    IOVATreeView view = iova_range_view(tree);
    if (view.by_translated) {
        walk_keys(&view, first, last, id, fn, opaque);
    } else {
        iova_reverse_foreach(view.reverse, view.arena, first, last, id, fn, opaque);
    }
    return IOVA_OK;
}
