/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VhostIOVATree, as QEMU's hw/virtio/vhost-iova-tree.c: the IOVA space of a vhost-vDPA
 * device driven through the shadow virtqueue, in three trees:
 *   - iova_map: IOVA-only, the allocations (every IOVA range handed out);
 *   - iova_taddr_map: IOVA -> HVA, host-only buffers (SVQ vrings, control-queue buffers);
 *   - gpa_iova_map: GPA -> IOVA, guest memory, keyed by GPA (a gpa_tree_new() tree).
 *
 * Unlike QEMU's, every call is atomic: when the GPA insert fails after the IOVA allocation
 * succeeded, the allocation is rolled back (docs/contract.md, deviation 5), and removals take the
 * allocation with the map.
 */
#ifndef VHOST_IOVA_TREE_H
#define VHOST_IOVA_TREE_H

#include "iova-tree.h"

typedef struct VhostIOVATree VhostIOVATree;

/**
 * vhost_iova_tree_new: a tree allocating in [max(@iova_first, 4096), @iova_last].
 * Address 0 is never handed out: devices dislike it.
 */
VhostIOVATree *vhost_iova_tree_new(hwaddr iova_first, hwaddr iova_last);

/**
 * vhost_iova_tree_delete: free everything.
 */
void vhost_iova_tree_delete(VhostIOVATree *tree);

/**
 * vhost_iova_tree_map_alloc: allocate an IOVA range of @map->size for the host-only buffer at
 * @taddr, record IOVA -> HVA, and write the IOVA to @map->iova.
 *
 * Returns: IOVA_OK, IOVA_ERR_INVALID, IOVA_ERR_NOMEM or IOVA_ERR_OOM; on error nothing changed.
 */
int vhost_iova_tree_map_alloc(VhostIOVATree *tree, DMAMap *map, hwaddr taddr);

/**
 * vhost_iova_tree_map_alloc_gpa: allocate an IOVA range for the guest memory at GPA @taddr and
 * record GPA -> IOVA (the stored map has translated_addr = id = @taddr).
 *
 * Returns: as vhost_iova_tree_map_alloc(), or IOVA_ERR_OVERLAP when the GPA range is taken;
 * then the allocation is rolled back and *@existing (if not NULL) is the guest map hit.
 */
int vhost_iova_tree_map_alloc_gpa(VhostIOVATree *tree, DMAMap *map, hwaddr taddr,
                                  DMAMap *existing);

/**
 * vhost_iova_tree_find_iova: the host-only map (lowest IOVA) overlapping the HVA range
 * [@map->translated_addr, + @map->size].  O(log n) through the reverse tree.
 */
const DMAMap *vhost_iova_tree_find_iova(const VhostIOVATree *tree, const DMAMap *map);

/**
 * vhost_iova_tree_find_gpa: the guest map (lowest GPA) overlapping the GPA range
 * [@map->translated_addr, + @map->size].  O(log n).
 */
const DMAMap *vhost_iova_tree_find_gpa(const VhostIOVATree *tree, const DMAMap *map);

/**
 * vhost_iova_tree_remove: remove the host-only maps overlapping the IOVA range
 * [@map.iova, + @map.size], and their allocations.  Returns how many.
 */
size_t vhost_iova_tree_remove(VhostIOVATree *tree, DMAMap map);

/**
 * vhost_iova_tree_remove_gpa: remove the guest maps overlapping the GPA range
 * [@map.translated_addr, + @map.size], and their allocations.  Returns how many.
 */
size_t vhost_iova_tree_remove_gpa(VhostIOVATree *tree, DMAMap map);

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
 * vhost_iova_tree_check: every tree's own invariants, plus: every host-only and guest map has
 * exactly one allocation with its IOVA and size and vice versa, all within the bounds.
 * Returns 0, or -1 with a message in @err.
 */
int vhost_iova_tree_check(const VhostIOVATree *tree, char *err, size_t errlen);

#endif /* VHOST_IOVA_TREE_H */
