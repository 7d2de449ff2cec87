/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVA trees: the public header, a drop-in for QEMU's include/qemu/iova-tree.h.
 *
 * It declares QEMU's types and prototypes exactly, with the id of the seed patch
 * ("iova_tree: add an id member to DMAMap", qemu-devel, May 2024): QEMU's callers compile
 * against it unchanged, and `#include "qemu/iova-tree.h"` finds it with -I on this folder.
 * Everything beyond QEMU's API has names of its own (iova_tree_remove_count(),
 * iova_tree_foreach_opaque(), iova_tree_translate(), iova_tree_alloc_map_full(), ...).
 *
 * The maps are kept in a GLib GTree keyed by IOVA range with an overlap comparator, the map
 * itself as both key and value, as QEMU's util/iova-tree.c keeps them.  Beside it each
 * IOVATree keeps a reverse tree so that translated-address look-ups are O(log n), and, from
 * its first alloc on, a tree of holes so that allocation is O(log n).  A tree made by gpa_tree_new() is keyed by
 * translated address instead, as QEMU's: its iova_tree_find(), iova_tree_remove() and
 * iova_tree_foreach() work on the translated side, and it keeps neither.
 *
 * Deviations from QEMU are listed in docs/contract.md.  Not thread-safe, as QEMU's: callers
 * that share a tree between threads lock around it.
 */
#ifndef IOVA_TREE_H /* QEMU's guard: whichever of the two headers comes first is the one */
#define IOVA_TREE_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * hwaddr, HWADDR_MAX, IOMMUAccessFlags and IOMMU_* belong to QEMU's exec/hwaddr.h and
 * system/memory.h (exec/memory.h before QEMU 10.1).  Where those headers can be found, they
 * are included, as QEMU's iova-tree.h does, and nothing is defined here; otherwise (and
 * unless their guards say they were read already) this header defines the same names.
 * A program with definitions of its own sets IOVA_NATIVE_HAVE_HWADDR or
 * IOVA_NATIVE_HAVE_IOMMU_FLAGS.
 */
#if defined(__has_include)
#if __has_include("system/memory.h")
#include "system/memory.h"
#elif __has_include("exec/memory.h")
#include "exec/memory.h"
#endif
#if __has_include("exec/hwaddr.h")
#include "exec/hwaddr.h"
#endif
#endif

#if !defined(IOVA_NATIVE_HAVE_HWADDR) && !defined(HWADDR_H)
typedef uint64_t hwaddr; /* C11 allows the same typedef twice */
#endif
#ifndef HWADDR_MAX
#define HWADDR_MAX UINT64_MAX
#endif

#if !defined(IOVA_NATIVE_HAVE_IOMMU_FLAGS) && !defined(SYSTEM_MEMORY_H) && \
    !defined(MEMORY_H) && !defined(IOMMU_ACCESS_FLAG)
typedef enum {
    IOMMU_NONE = 0,
    IOMMU_RO = 1,
    IOMMU_WO = 2,
    IOMMU_RW = 3,
} IOMMUAccessFlags;

#define IOMMU_ACCESS_FLAG(r, w) (((r) ? IOMMU_RO : 0) | ((w) ? IOMMU_WO : 0))
#endif

#ifndef QEMU_PACKED
#define QEMU_PACKED __attribute__((packed))
#endif

/* C linkage for a C++ includer (a test harness, a fuzzer); QEMU itself is C. */
#ifdef __cplusplus
extern "C" {
#endif

#define IOVA_OK (0)
#define IOVA_ERR_INVALID (-1) /* invalid map: wraps, IOMMU_NONE, bad parameters */
#define IOVA_ERR_OVERLAP (-2) /* the map overlaps a stored one */
#define IOVA_ERR_NOMEM (-3)   /* alloc: no hole fits (QEMU's name, QEMU's meaning) */
#define IOVA_ERR_TRANSLATION (-4) /* ours: a reverse translation hit a hole */
#define IOVA_ERR_OOM (-5)     /* ours: the allocator itself failed */

typedef struct IOVATree IOVATree;

/*
 * One mapping [iova, iova + size] -> [translated_addr, translated_addr + size].
 * @size is inclusive: size 0xfff covers 4096 bytes.  @id tells aliases apart (the GPA, in
 * vhost-vdpa's shadow virtqueue).  Exactly QEMU's struct with the seed patch: packed, 36
 * bytes, and the library never keeps anything else in it, so a caller may memcmp() two maps.
 */
typedef struct DMAMap {
    hwaddr iova;
    hwaddr translated_addr;
    hwaddr size; /* inclusive */
    uint64_t id;
    IOMMUAccessFlags perm;
} QEMU_PACKED DMAMap;

#ifdef __cplusplus
static_assert(sizeof(DMAMap) == 36, "DMAMap is QEMU's packed 36-byte struct");
#else
_Static_assert(sizeof(DMAMap) == 36, "DMAMap is QEMU's packed 36-byte struct");
#endif

/* QEMU's: return TRUE to stop the walk. */
typedef gboolean (*iova_tree_iterator)(DMAMap *map);

/* Ours: the iterator of iova_tree_foreach_opaque(). */
typedef gboolean (*iova_tree_opaque_iterator)(const DMAMap *map, gpointer opaque);

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
 * Returns: the tree.  It comes from GLib's allocator, which aborts when memory runs out, as
 * QEMU's iova_tree_new() does (it never returns NULL).
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
 * iova_tree_find_address: iova_tree_find() of the single byte @iova (QEMU's, before 8.1).
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
 * On a GPA tree (keyed by translated address, with no reverse tree) both forms return the
 * first hit in GPA order, as QEMU's walk does: the lowest GPA, not the lowest IOVA, found in
 * O(log n + k) from the first overlapping map.
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
 * iova_tree_keep_holes: build @tree's index of free IOVA ranges now, in one O(n) pass over its
 * maps (nothing to walk while it is empty), and keep it from then on, across iova_tree_clear()
 * too, so that no alloc ever walks the maps.  Without this call the index waits for the first
 * alloc, which suits trees that never allocate (the vIOMMUs').  The Python binding calls it
 * for every IOVATree it makes.
 *
 * Returns: IOVA_OK; IOVA_ERR_INVALID for a tree made by gpa_tree_new(); IOVA_ERR_OOM, with
 * the tree as before.
 */
int iova_tree_keep_holes(IOVATree *tree);

/**
 * iova_tree_has_holes: whether @tree's index of free IOVA ranges exists now.
 */
gboolean iova_tree_has_holes(const IOVATree *tree);

/**
 * iova_tree_alloc_map_linear: iova_tree_alloc_map() by QEMU's method, a walk from the lowest
 * map until a hole fits (with the contract's fixes at iova_begin and at HWADDR_MAX).  For benchmarks.
 */
int iova_tree_alloc_map_linear(IOVATree *tree, DMAMap *map, hwaddr iova_begin,
                               hwaddr iova_last);

/**
 * iova_tree_remove: remove every map whose key range overlaps [key, key + @map.size]
 * (QEMU's; @map.translated_addr is not looked at in an IOVA-keyed tree).
 */
void iova_tree_remove(IOVATree *tree, DMAMap map);

/**
 * iova_tree_remove_count: iova_tree_remove() that tells how many maps it removed; 0 also when
 * memory for the bookkeeping ran out, and then nothing was removed
 * (iova_tree_remove_checked() tells the two apart).
 */
size_t iova_tree_remove_count(IOVATree *tree, DMAMap map);

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
 * iova_tree_foreach: call @iterator on every map in key order until it returns TRUE (QEMU's,
 * as QEMU declared it before 8.1).  The tree must not change meanwhile, and @iterator must
 * not change the map it is handed.
 */
void iova_tree_foreach(IOVATree *tree, iova_tree_iterator iterator);

/**
 * iova_tree_foreach_opaque: iova_tree_foreach() with an @opaque pointer handed to each call.
 */
void iova_tree_foreach_opaque(IOVATree *tree, iova_tree_opaque_iterator iterator,
                              gpointer opaque);

/**
 * iova_tree_next: the first map whose key is above @key (or at or above it when @inclusive),
 * or NULL.  Lets a caller walk the tree in steps while it may change between them.
 */
const DMAMap *iova_tree_next(const IOVATree *tree, hwaddr key, gboolean inclusive);

/* Ours: the callback of iova_tree_foreach_range() and _translated(); true stops the walk. */
typedef bool (*IOVARangeFn)(const DMAMap *map, void *opaque);

/**
 * iova_tree_foreach_range: call @fn on every stored map whose key range overlaps
 * [@first, @last], in key order, until it returns true.  The key is the IOVA, or the
 * translated address in a tree made by gpa_tree_new().  O(log n + k) for k maps: one
 * descent to the lowest overlap, then one step to each next map (QEMU's vIOMMUs walk the
 * whole tree with iova_tree_foreach() for this).  The tree must not change meanwhile.
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
 * aliasing.  A GPA tree walks its own key.  The tree must not change meanwhile.
 *
 * Returns: IOVA_OK, or IOVA_ERR_INVALID when @last < @first.
 */
int iova_tree_foreach_translated(const IOVATree *tree, hwaddr first, hwaddr last,
                                 const uint64_t *id, IOVARangeFn fn, void *opaque);

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
 * iova_tree_mapped_bytes: the memory the tree holds outside malloc(): its arenas' blocks
 * that they mapped themselves (docs/design.md).  Add it to a heap count (mallinfo2()) for the
 * tree's whole memory.  Address space mapped for blocks to come is not memory, and is not
 * counted.
 */
size_t iova_tree_mapped_bytes(const IOVATree *tree);

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

#ifdef __cplusplus
}
#endif

#endif /* IOVA_TREE_H */
