/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the core's modules share about a DMAMap (the struct itself is the public header's).
 */
#ifndef IOVA_MAP_H
#define IOVA_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "include/qemu/iova-tree.h"

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
