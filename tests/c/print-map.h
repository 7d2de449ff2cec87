/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How the differential programs (qemu-differential.c, vhost-differential.c) show a map when
 * they report a difference.
 */
#ifndef PRINT_MAP_H
#define PRINT_MAP_H

#include <inttypes.h>
#include <stdio.h>

#include "qemu/iova-tree.h"

static inline void print_map(const char *label, const DMAMap *m)
{
    if (!m) {
        fprintf(stderr, "  %s: none\n", label);
        return;
    }
    fprintf(stderr, "  %s: iova %#" PRIx64 " ta %#" PRIx64 " size %#" PRIx64 " id %#" PRIx64
            " perm %d\n", label, m->iova, m->translated_addr, m->size, m->id, (int)m->perm);
}

#endif /* PRINT_MAP_H */
