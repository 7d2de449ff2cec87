/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VhostIOVATree: the public header, a drop-in for QEMU's hw/virtio/vhost-iova-tree.h.
 *
 * The IOVA space of a vhost-vDPA device driven through the shadow virtqueue, in three trees:
 *   - iova_map: IOVA-only, the allocations (every IOVA range handed out);
 *   - iova_taddr_map: IOVA -> HVA, host-only buffers (SVQ vrings, control-queue buffers);
 *   - gpa_iova_map: GPA -> IOVA, guest memory, keyed by GPA (a gpa_tree_new() tree).
 *
 * QEMU's prototypes are declared exactly, so that QEMU's callers compile against this header
 * unchanged; what goes beyond them has names of its own.  Unlike QEMU's, every call is atomic:
 * when the GPA insert fails after the IOVA allocation succeeded, the allocation is rolled back
 * (docs/contract.md, deviation 5), and removals take the allocation with the map.
 */
#ifndef HW_VIRTIO_VHOST_IOVA_TREE_H /* QEMU's guard */
#define HW_VIRTIO_VHOST_IOVA_TREE_H

#include "../../qemu/iova-tree.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct VhostIOVATree VhostIOVATree;

/**
 * vhost_iova_tree_new: a tree allocating in [max(@iova_first, page size), @iova_last], where
 * the page size is the host's (sysconf(_SC_PAGESIZE)), as QEMU's qemu_real_host_page_size():
 * address 0 is never handed out, devices dislike it.
 *
 * Returns: the tree.  GLib's allocator, which it comes from, aborts when memory runs out, as
 * in QEMU.
 */
VhostIOVATree *vhost_iova_tree_new(uint64_t iova_first, uint64_t iova_last);

/**
 * vhost_iova_tree_new_page_size: vhost_iova_tree_new() with the page size given: the first
 * usable IOVA is max(@iova_first, @page_size).
 *
 * Returns: the tree, or NULL when @page_size is not a power of two.
 */
VhostIOVATree *vhost_iova_tree_new_page_size(uint64_t iova_first, uint64_t iova_last,
                                             uint64_t page_size);

/**
 * vhost_iova_tree_first: the first IOVA the tree hands out.
 */
hwaddr vhost_iova_tree_first(const VhostIOVATree *tree);

/**
 * vhost_iova_tree_delete: free everything.
 */
void vhost_iova_tree_delete(VhostIOVATree *iova_tree);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VhostIOVATree, vhost_iova_tree_delete)

/**
 * vhost_iova_tree_find_iova: among the host-only maps whose HVA range overlaps
 * [@map->translated_addr, + @map->size] and whose id is @map->id (the seed patch), the one
 * with the lowest IOVA.  O(log n) through the reverse tree.
 */
const DMAMap *vhost_iova_tree_find_iova(const VhostIOVATree *iova_tree, const DMAMap *map);

/**
 * vhost_iova_tree_find_iova_any: vhost_iova_tree_find_iova() whatever the maps' ids.
 */
const DMAMap *vhost_iova_tree_find_iova_any(const VhostIOVATree *iova_tree,
                                            const DMAMap *map);

/**
 * vhost_iova_tree_map_alloc: allocate an IOVA range of @map->size for the host-only buffer at
 * @taddr, record IOVA -> HVA (with @map's id and perm), and write the IOVA to @map->iova.
 *
 * Returns: IOVA_OK, IOVA_ERR_INVALID, IOVA_ERR_NOMEM or IOVA_ERR_OOM; on error nothing changed.
 */
int vhost_iova_tree_map_alloc(VhostIOVATree *iova_tree, DMAMap *map, hwaddr taddr);

/**
 * vhost_iova_tree_remove: remove the host-only maps overlapping the IOVA range
 * [@map.iova, + @map.size], and their allocations.
 */
void vhost_iova_tree_remove(VhostIOVATree *iova_tree, DMAMap map);

/**
 * vhost_iova_tree_find_gpa: among the guest maps whose GPA range overlaps
 * [@map->translated_addr, + @map->size] and whose id is @map->id, the one with the lowest GPA.
 */
const DMAMap *vhost_iova_tree_find_gpa(const VhostIOVATree *iova_tree, const DMAMap *map);

/**
 * vhost_iova_tree_find_gpa_any: the guest map with the lowest GPA overlapping the GPA range
 * [@map->translated_addr, + @map->size], whatever its id.  O(log n).
 */
const DMAMap *vhost_iova_tree_find_gpa_any(const VhostIOVATree *iova_tree, const DMAMap *map);

/**
 * vhost_iova_tree_map_alloc_gpa: allocate an IOVA range for the guest memory at GPA @taddr and
 * record GPA -> IOVA (with @map's id and perm; the stored map's translated_addr is @taddr).
 *
 * Returns: as vhost_iova_tree_map_alloc(), or IOVA_ERR_OVERLAP when the GPA range is taken;
 * then the allocation is rolled back.
 */
int vhost_iova_tree_map_alloc_gpa(VhostIOVATree *iova_tree, DMAMap *map, hwaddr taddr);

/**
 * vhost_iova_tree_map_alloc_gpa_existing: vhost_iova_tree_map_alloc_gpa() that, on
 * IOVA_ERR_OVERLAP, copies the guest map hit (the lowest GPA) to *@existing.
 */
int vhost_iova_tree_map_alloc_gpa_existing(VhostIOVATree *iova_tree, DMAMap *map,
                                           hwaddr taddr, DMAMap *existing);

/**
 * vhost_iova_tree_remove_gpa: remove the guest maps overlapping the GPA range
 * [@map.translated_addr, + @map.size], and their allocations.
 */
void vhost_iova_tree_remove_gpa(VhostIOVATree *iova_tree, DMAMap map);

/**
 * vhost_iova_tree_remove_count: vhost_iova_tree_remove() (or, when @gpa,
 * vhost_iova_tree_remove_gpa()) that tells how many maps it removed.
 */
size_t vhost_iova_tree_remove_count(VhostIOVATree *tree, DMAMap map, gboolean gpa);

/**
 * vhost_iova_tree_remove_checked: vhost_iova_tree_remove() (or, when @gpa, _remove_gpa()),
 * all or nothing, with the count in *@removed.  Returns IOVA_OK or IOVA_ERR_OOM.
 */
int vhost_iova_tree_remove_checked(VhostIOVATree *tree, DMAMap map, gboolean gpa,
                                   size_t *removed);

/**
 * vhost_iova_tree_translate: segments of the @length bytes at @addr: through the host-only
 * tree (@addr an HVA) or, when @gpa, through the GPA tree (@addr a GPA).
 * As iova_tree_translate().
 */
int vhost_iova_tree_translate(const VhostIOVATree *tree, hwaddr addr, hwaddr length,
                              gboolean gpa, IOVASegment *segs, size_t cap, size_t *nsegs,
                              hwaddr *fault);

/**
 * vhost_iova_tree_host: the host-only tree (IOVA -> HVA), read-only.
 * vhost_iova_tree_guest: the GPA tree.  vhost_iova_tree_allocations: the IOVA-only tree.
 */
IOVATree *vhost_iova_tree_host(const VhostIOVATree *tree);
IOVATree *vhost_iova_tree_guest(const VhostIOVATree *tree);
IOVATree *vhost_iova_tree_allocations(const VhostIOVATree *tree);

/**
 * vhost_iova_tree_clear: remove every map and allocation.
 */
void vhost_iova_tree_clear(VhostIOVATree *tree);

/**
 * vhost_iova_tree_mapped_bytes: iova_tree_mapped_bytes() of its three trees together.
 */
size_t vhost_iova_tree_mapped_bytes(const VhostIOVATree *tree);

/**
 * vhost_iova_tree_check: every tree's own invariants, plus: every host-only and guest map has
 * exactly one allocation with its IOVA and size and vice versa, all within the bounds.
 * Returns 0, or -1 with a message in @err.
 */
int vhost_iova_tree_check(const VhostIOVATree *tree, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* HW_VIRTIO_VHOST_IOVA_TREE_H */
