/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMAMap and the return codes, as in QEMU's include/qemu/iova-tree.h, plus the id of the
 * seed patch ("iova_tree: add an id member to DMAMap", qemu-devel, May 2024).
 */
#ifndef IOVA_MAP_H
#define IOVA_MAP_H

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t hwaddr;

#define IOVA_OK 0
#define IOVA_ERR_INVALID (-1) /* invalid map: wraps, IOMMU_NONE, bad parameters */
#define IOVA_ERR_OVERLAP (-2) /* the map overlaps a stored one */
#define IOVA_ERR_NOMEM (-3)   /* alloc: no hole fits (QEMU's name, QEMU's meaning) */
#define IOVA_ERR_TRANSLATION (-4) /* ours: a reverse translation hit a hole */
#define IOVA_ERR_OOM (-5)     /* ours: the allocator itself failed */

#define HWADDR_MAX UINT64_MAX

typedef enum {
    IOMMU_NONE = 0,
    IOMMU_RO = 1,
    IOMMU_WO = 2,
    IOMMU_RW = 3,
} IOMMUAccessFlags;

#ifndef QEMU_PACKED
#define QEMU_PACKED __attribute__((packed))
#endif

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

_Static_assert(sizeof(DMAMap) == 36, "DMAMap is QEMU's packed 36-byte struct");

/**
 * dma_map_valid: whether @map is storable: neither side wraps past HWADDR_MAX, and @perm is
 * one of IOMMU_RO, IOMMU_WO, IOMMU_RW.  (QEMU checks only the IOVA side.)
 */
static inline bool dma_map_valid(const DMAMap *map)
{
    return map->iova + map->size >= map->iova &&
           map->translated_addr + map->size >= map->translated_addr &&
           map->perm >= IOMMU_RO && map->perm <= IOMMU_RW;
}

#endif /* IOVA_MAP_H */
