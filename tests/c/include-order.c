/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The project's headers beside QEMU's own exec/hwaddr.h and system/memory.h (exec/memory.h
 * before QEMU 10.1), in either order: hwaddr, HWADDR_MAX, IOMMUAccessFlags and IOMMU_* must be
 * defined once, by QEMU's headers.  Built by the test with -DQEMU_HEADERS_FIRST or without,
 * and with -DOLD_MEMORY_H for exec/memory.h; -Werror turns any redefinition into a failure.
 */
#include "qemu/osdep.h"

#ifdef OLD_MEMORY_H
#define QEMU_MEMORY_HEADER "exec/memory.h"
#else
#define QEMU_MEMORY_HEADER "system/memory.h"
#endif

#ifdef QEMU_HEADERS_FIRST
#include QEMU_MEMORY_HEADER
#include "exec/hwaddr.h"
#include "qemu/iova-tree.h"
#include "hw/virtio/vhost-iova-tree.h"
#else
#include "hw/virtio/vhost-iova-tree.h"
#include "qemu/iova-tree.h"
#include "exec/hwaddr.h"
#include QEMU_MEMORY_HEADER
#endif

/* QEMU's macro, from QEMU's header, usable with the project's types. */
static const IOMMUAccessFlags read_write = IOMMU_ACCESS_FLAG(true, true);

int main(void)
{
    DMAMap map = { .size = 0xfff, .perm = read_write };
    hwaddr last = HWADDR_MAX;
    IOVATree *tree = iova_tree_new();
    int rc = iova_tree_alloc_map(tree, &map, 0x1000, last - 1);

    printf("alloc %d at %" PRIx64 " perm %d\n", rc, map.iova, (int)map.perm);
    iova_tree_destroy(tree);
    return rc == IOVA_OK && map.iova == 0x1000 && map.perm == IOMMU_RW ? 0 : 1;
}
