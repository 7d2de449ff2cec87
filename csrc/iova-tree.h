/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVA trees, as QEMU's util/iova-tree.c: maps kept in a GLib GTree keyed by IOVA range with
 * an overlap comparator, the map itself as both key and value.  Beside it, each IOVATree keeps
 * a reverse tree (iova-reverse.h) so that translated-address look-ups are O(log n), and, from
 * its first alloc on, a tree of holes (iova-holes.h) so that allocation is O(log n).
 *
 * A tree made by gpa_tree_new() is keyed by translated address instead, as QEMU's: its
 * iova_tree_find(), iova_tree_remove() and iova_tree_foreach() work on the translated side,
 * and it keeps neither a reverse tree nor holes.
 *
 * Deviations from QEMU are listed in docs/contract.md.  Not thread-safe, as QEMU's: callers
 * that share a tree between threads lock around it (iova-binding.h does).
 */
#ifndef IOVA_TREE_H
#define IOVA_TREE_H

#include <glib.h>
#include <stddef.h>

#include "iova-map.h"

typedef struct IOVATree IOVATree;

/* Ours: QEMU's iterator takes no opaque pointer. */
typedef gboolean (*iova_tree_iterator)(const DMAMap *map, gpointer opaque);

typedef enum {
    IOVA_ALLOC_FIRST = 0, /* lowest fitting IOVA (QEMU's policy) */
    IOVA_ALLOC_LAST = 1,  /* highest fitting IOVA (Linux's top-down allocator) */
} IOVAAllocPolicy;

/* One piece of a translated buffer: @len bytes at @iova. */
typedef struct IOVASegment {
    hwaddr iova;
    hwaddr len;
} IOVASegment;

/**
 * iova_tree_new: create an empty tree keyed by IOVA.
 *
 * Returns: the tree, or NULL when memory ran out.
 */
IOVATree *iova_tree_new(void);

/**
 * gpa_tree_new: create an empty tree keyed by translated address (GPA).
 */
IOVATree *gpa_tree_new(void);

/**
 * iova_tree_insert: store a copy of @map.
 *
 * Returns: IOVA_OK; IOVA_ERR_INVALID if @map wraps on either side or has IOMMU_NONE;
 * IOVA_ERR_OVERLAP if its key range overlaps a stored map; IOVA_ERR_OOM.
 */
int iova_tree_insert(IOVATree *tree, const DMAMap *map);

/**
 * gpa_tree_insert: iova_tree_insert() for a tree made by gpa_tree_new().
 */
int gpa_tree_insert(IOVATree *tree, const DMAMap *map);

/**
 * iova_tree_find: the stored map with the lowest key overlapping [key, key + @map->size],
 * where key is @map->iova (or @map->translated_addr in a GPA tree).
 *
 * Returns: a pointer into the tree, valid until the next change, or NULL.
 */
const DMAMap *iova_tree_find(const IOVATree *tree, const DMAMap *map);

/**
 * iova_tree_find_address: iova_tree_find() of the single byte @iova.
 */
const DMAMap *iova_tree_find_address(const IOVATree *tree, hwaddr iova);

/**
 * iova_tree_find_iova: among stored maps whose translated range overlaps
 * [@map->translated_addr, + @map->size] and whose id equals @map->id (the seed patch), the one
 * with the lowest IOVA.  O(log n) through the id tree, however many other ids alias the range.
 *
 * Returns: a pointer into the tree, valid until the next change, or NULL.
 */
const DMAMap *iova_tree_find_iova(const IOVATree *tree, const DMAMap *map);

/**
 * iova_tree_find_iova_any: iova_tree_find_iova() without the id match (the "skip_id_match"
 * of the seed thread), O(log n + k) for k maps overlapping the needle.
 *
 * On a GPA tree (keyed by translated address, with no reverse tree) both forms walk the maps
 * in GPA order and return the first hit: the lowest GPA, not the lowest IOVA.
 */
const DMAMap *iova_tree_find_iova_any(const IOVATree *tree, const DMAMap *map);

/**
 * iova_tree_find_iova_linear: the same answer by QEMU's method, a walk over every map in IOVA
 * order; the id is matched when @match_id.  Kept for benchmarks and as a cross-check.
 */
const DMAMap *iova_tree_find_iova_linear(const IOVATree *tree, const DMAMap *map,
                                         gboolean match_id);

/**
 * iova_tree_translate: cover the @length bytes from @addr with segments, in order.  At each
 * position the map (with id *@id unless @id is NULL) that covers it and reaches furthest is
 * used, ties to the lowest IOVA; the list is as short as possible.
 *
 * Up to @cap segments are written to @segs; *@nsegs receives how many there are in all.
 *
 * Returns: IOVA_OK; IOVA_ERR_INVALID if the buffer wraps; IOVA_ERR_TRANSLATION with the first
 * byte that no map covers in *@fault.
 */
int iova_tree_translate(const IOVATree *tree, hwaddr addr, hwaddr length, const uint64_t *id,
                        IOVASegment *segs, size_t cap, size_t *nsegs, hwaddr *fault);

/**
 * iova_tree_alloc_map: QEMU's allocator.  Find the lowest IOVA in [@iova_begin, @iova_last]
 * where @map->size fits, store @map there and write the IOVA to @map->iova.
 *
 * Returns: IOVA_OK; IOVA_ERR_INVALID for a bad map or @iova_last < @iova_begin;
 * IOVA_ERR_NOMEM when no hole fits; IOVA_ERR_OOM.
 */
int iova_tree_alloc_map(IOVATree *tree, DMAMap *map, hwaddr iova_begin, hwaddr iova_last);

/**
 * iova_tree_alloc_map_full: iova_tree_alloc_map() with an alignment (a power of two) and a
 * policy.  O(log n) through the tree of holes.  The holes are built by a tree's first alloc,
 * in one O(n) pass over the maps inserted until then (none, for a tree that allocates from
 * the start), and kept up to date by every insert and remove after it.
 */
int iova_tree_alloc_map_full(IOVATree *tree, DMAMap *map, hwaddr iova_begin, hwaddr iova_last,
                             hwaddr align, IOVAAllocPolicy policy);

/**
 * iova_tree_alloc_map_linear: iova_tree_alloc_map() by QEMU's method, a walk from the lowest
 * map until a hole fits (with the contract's fixes at iova_begin and at HWADDR_MAX).  For benchmarks.
 */
int iova_tree_alloc_map_linear(IOVATree *tree, DMAMap *map, hwaddr iova_begin,
                               hwaddr iova_last);

/**
 * iova_tree_remove: remove every map whose key range overlaps [key, key + @map.size].
 *
 * Returns: how many were removed (QEMU's returns nothing); 0 also when memory for the
 * bookkeeping ran out, and then nothing was removed (iova_tree_remove_checked() tells).
 */
size_t iova_tree_remove(IOVATree *tree, DMAMap map);

/**
 * iova_tree_remove_checked: iova_tree_remove(), all or nothing, with the count in *@removed.
 *
 * Returns: IOVA_OK; IOVA_ERR_INVALID if the range wraps; IOVA_ERR_OOM, with nothing removed.
 */
int iova_tree_remove_checked(IOVATree *tree, DMAMap map, size_t *removed);

/**
 * iova_tree_reserve: make sure that removing @count maps cannot fail for want of memory (each
 * removal may need one element to record the freed range).  Returns 0 or -1.
 */
int iova_tree_reserve(IOVATree *tree, size_t count);

/**
 * iova_tree_count: how many stored maps overlap [key, key + @map->size], in O(log n + k).
 */
size_t iova_tree_count(const IOVATree *tree, const DMAMap *map);

/**
 * iova_tree_foreach: call @iterator on every map in key order until it returns TRUE.
 * The tree must not change meanwhile.
 */
void iova_tree_foreach(IOVATree *tree, iova_tree_iterator iterator, gpointer opaque);

/**
 * iova_tree_next: the first map whose key is above @key (or at or above it when @inclusive),
 * or NULL.  Lets a caller walk the tree in steps while it may change between them.
 */
const DMAMap *iova_tree_next(const IOVATree *tree, hwaddr key, gboolean inclusive);

/*
 * IOVATreeSweep: single-address look-ups for a batch whose addresses never decrease.  Each
 * answer picks up where the previous one left off: the next maps in order are a step or two
 * away, often in the cache, where a look-up would descend from the root.  The tree must not
 * change while a sweep is in use.
 */
typedef struct IOVATreeSweep IOVATreeSweep;

/**
 * iova_tree_sweep_new: a sweep answering iova_tree_find_address() (@reverse FALSE), or, on
 * an IOVA-keyed tree, iova_tree_find_iova() with size 0 and id *@id (iova_tree_find_iova_any()
 * when @id is NULL).
 *
 * Returns: the sweep, or NULL when memory ran out or a GPA tree is asked for @reverse.
 */
IOVATreeSweep *iova_tree_sweep_new(const IOVATree *tree, gboolean reverse, const uint64_t *id);

/**
 * iova_tree_sweep_find: the map the sweep's look-up gives for @addr, which must be at or above
 * the address of the previous call; NULL when none.
 */
const DMAMap *iova_tree_sweep_find(IOVATreeSweep *sweep, hwaddr addr);

/**
 * iova_tree_sweep_free: free @sweep (NULL is fine).
 */
void iova_tree_sweep_free(IOVATreeSweep *sweep);

/**
 * iova_tree_nnodes: number of stored maps.
 */
size_t iova_tree_nnodes(const IOVATree *tree);

/**
 * iova_tree_clear: remove every map.
 */
void iova_tree_clear(IOVATree *tree);

/**
 * iova_tree_check: verify every invariant: the GTree's order and disjointness, each map's
 * validity, the reverse and id trees against the forward tree, and, once the tree has
 * allocated, the holes as the exact complement of the maps.
 *
 * Returns: 0, or -1 with the first broken invariant named in @err.
 */
int iova_tree_check(const IOVATree *tree, char *err, size_t errlen);

/**
 * iova_tree_destroy: free the tree and every map in it.
 */
void iova_tree_destroy(IOVATree *tree);

#endif /* IOVA_TREE_H */
