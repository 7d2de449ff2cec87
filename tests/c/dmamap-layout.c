/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DMAMap's layout, as a client sees it: the test compiles this file against QEMU's
 * include/qemu/iova-tree.h (with the seed patch) and against the project's, and both builds
 * must agree with each other and with the figures asserted here.  A client built against one
 * header and linked with the other library reads every field where it was written.
 */
#include "qemu/osdep.h"
#include "qemu/iova-tree.h"

#define CHECK_FIELD(field, offset, width)                                                   \
    _Static_assert(offsetof(DMAMap, field) == (offset), "offset of " #field);             \
    _Static_assert(sizeof(((DMAMap *)0)->field) == (width), "size of " #field)

CHECK_FIELD(iova, 0, 8);
CHECK_FIELD(translated_addr, 8, 8);
CHECK_FIELD(size, 16, 8);
CHECK_FIELD(id, 24, 8);
CHECK_FIELD(perm, 32, 4);
_Static_assert(sizeof(DMAMap) == 36, "QEMU_PACKED: no padding");
_Static_assert(_Alignof(DMAMap) == 1, "QEMU_PACKED: byte alignment");
_Static_assert(sizeof(IOMMUAccessFlags) == 4, "IOMMUAccessFlags is an int-sized enum");
_Static_assert(IOMMU_NONE == 0 && IOMMU_RO == 1 && IOMMU_WO == 2 && IOMMU_RW == 3,
               "QEMU's permission values");
_Static_assert(IOVA_OK == 0 && IOVA_ERR_INVALID == -1 && IOVA_ERR_OVERLAP == -2 &&
               IOVA_ERR_NOMEM == -3, "QEMU's return codes");
_Static_assert(sizeof(hwaddr) == 8 && HWADDR_MAX == UINT64_MAX, "hwaddr is 64-bit");

int main(void)
{
    DMAMap maps[2];

    printf("sizeof %zu align %zu array stride %td\n", sizeof(DMAMap), _Alignof(DMAMap),
           (char *)&maps[1] - (char *)&maps[0]);
    printf("iova %zu translated_addr %zu size %zu id %zu perm %zu\n", offsetof(DMAMap, iova),
           offsetof(DMAMap, translated_addr), offsetof(DMAMap, size), offsetof(DMAMap, id),
           offsetof(DMAMap, perm));
    return 0;
}
