/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * avl_pair_before() (csrc/iova-avl.h) against the plain lexicographic order, on every pairing
 * of values at the edges of 64 bits.  Built twice by tests/test_c_library.py: as is (one
 * 128-bit comparison) and with __SIZEOF_INT128__ undefined (two comparisons, as on a 32-bit
 * host).  Prints "ok N" after N comparisons, or the first that differs.
 */
#include <inttypes.h>
#include <stdio.h>

#include "iova-avl.h"

static int lexicographic_before(uint64_t hi_a, uint64_t lo_a, uint64_t hi_b, uint64_t lo_b)
{
    return hi_a < hi_b || (hi_a == hi_b && lo_a < lo_b);
}

int main(void)
{
    static const uint64_t edges[] = {
        0, 1, 2, 0xffffffffu, 0x100000000u, INT64_MAX, (uint64_t)INT64_MAX + 1,
        UINT64_MAX - 1, UINT64_MAX,
    };
    const size_t n = sizeof(edges) / sizeof(edges[0]);
    unsigned long count = 0;
    for (size_t a = 0; a < n * n; a++) {
        for (size_t b = 0; b < n * n; b++) {
            uint64_t hi_a = edges[a / n], lo_a = edges[a % n];
            uint64_t hi_b = edges[b / n], lo_b = edges[b % n];
            if (avl_pair_before(hi_a, lo_a, hi_b, lo_b) !=
                lexicographic_before(hi_a, lo_a, hi_b, lo_b)) {
                printf("differs: (%#" PRIx64 ", %#" PRIx64 ") before (%#" PRIx64 ", %#" PRIx64 ")\n",
                       hi_a, lo_a, hi_b, lo_b);
                return 1;
            }
            count++;
        }
    }
    printf("ok %lu\n", count);
    return 0;
}
