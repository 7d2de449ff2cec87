/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Every allocation point of insert, alloc, remove and clear under failure, on two trees fed
 * the same random calls: tree A with malloc(), realloc(), aligned_alloc(), mmap() and
 * mprotect() failing, tree B
 * without.  Each call on A is made again with the 1st, 2nd, ... allocation of the call failing
 * (or, with "sticky", that one and every one after it) until it makes none that fails.  After
 * a call that answered IOVA_ERR_OOM, A must hold exactly B's maps (nothing changed) and pass
 * check(), and an insert of a map that overlaps a stored one must answer IOVA_ERR_OVERLAP,
 * memory or not; once A's call went through, B makes it too and both must answer alike, hold the
 * same maps and agree on reverse look-ups.  Linked with -Wl,--wrap for the five (our objects
 * only: GLib keeps its own allocator); built with a small IOVA_ARENA_SHIFT, a new arena block
 * is needed every few elements.
 *
 * Usage: check-oom OPS SEED [holes|none] [sticky]   prints "ok <calls>, <n> OOM answers".
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/iova-tree.h"
#include "fail-alloc.h"
#include "xorshift.h"

#define MAX_SNAP 4096

typedef struct Snapshot {
    DMAMap maps[MAX_SNAP];
    int n;
} Snapshot;

static gboolean snapshot_one(const DMAMap *map, gpointer opaque)
{
    Snapshot *s = opaque;
    if (s->n < MAX_SNAP) {
        s->maps[s->n++] = *map;
    }
    return FALSE;
}

/* Whether @a and @b hold the same maps (no allocation: A may be failing). */
static bool same_maps(IOVATree *a, IOVATree *b)
{
    static Snapshot sa, sb;
    sa.n = sb.n = 0;
    iova_tree_foreach_opaque(a, snapshot_one, &sa);
    iova_tree_foreach_opaque(b, snapshot_one, &sb);
    return sa.n == sb.n && memcmp(sa.maps, sb.maps, sizeof(DMAMap) * (size_t)sa.n) == 0;
}

/* Mostly a crowded low range, sometimes anywhere or just below the top. */
static hwaddr pick_addr(uint64_t *rng)
{
    uint64_t r = next_random(rng) % 10;
    if (r == 0) {
        return next_random(rng);
    }
    return r == 1 ? HWADDR_MAX - next_random(rng) % 0x800 : next_random(rng) % 0x8000;
}

enum { CALL_INSERT, CALL_ALLOC, CALL_REMOVE, CALL_CLEAR };

typedef struct Call {
    int kind;
    DMAMap map;
    hwaddr begin, last, align;
    int policy;
} Call;

static void pick_call(uint64_t *rng, Call *c)
{
    uint64_t r = next_random(rng) % 200;

    memset(c, 0, sizeof(*c));
    c->map.perm = IOMMU_RW;
    c->map.id = next_random(rng) % 3;
    c->map.translated_addr = (next_random(rng) % 4) * 0x100;
    if (r < 70) {
        c->kind = CALL_INSERT;
        c->map.iova = pick_addr(rng);
        c->map.size = next_random(rng) % 8 == 0 ? next_random(rng) >> (next_random(rng) % 64)
                                                : next_random(rng) % 0x200;
    } else if (r < 140) {
        c->kind = CALL_ALLOC;
        c->map.size = next_random(rng) % 0x180;
        c->begin = next_random(rng) % 3 ? 0 : pick_addr(rng);
        c->last = next_random(rng) % 3 ? HWADDR_MAX : pick_addr(rng);
        c->align = 1ull << (next_random(rng) % 4 ? next_random(rng) % 10
                                                 : next_random(rng) % 64);
        c->policy = next_random(rng) % 2 ? IOVA_ALLOC_LAST : IOVA_ALLOC_FIRST;
    } else if (r < 199) {
        c->kind = CALL_REMOVE;
        c->map.iova = pick_addr(rng);
        c->map.size = next_random(rng) % 4 == 0 ? next_random(rng) % 0x2000
                                                : next_random(rng) % 0x100;
        if (r >= 180) {
            c->map.size = 0; /* one byte: the removal's own path (tree_remove_byte()) */
        }
    } else {
        c->kind = CALL_CLEAR;
    }
    if (c->map.iova + c->map.size < c->map.iova) {
        c->map.size = HWADDR_MAX - c->map.iova;
    }
    if (c->map.translated_addr + c->map.size < c->map.translated_addr) {
        c->map.translated_addr = 0;
    }
}

/* Make @c on @tree; the allocated IOVA in *@iova, the removal count in *@removed. */
static int make_call(IOVATree *tree, const Call *c, hwaddr *iova, size_t *removed)
{
    DMAMap map = c->map;

    *iova = 0;
    *removed = 0;
    switch (c->kind) {
    case CALL_INSERT:
        return iova_tree_insert(tree, &map);
    case CALL_ALLOC: {
        int rc = iova_tree_alloc_map_full(tree, &map, c->begin, c->last, c->align, c->policy);
        *iova = map.iova;
        return rc;
    }
    case CALL_REMOVE:
        return iova_tree_remove_checked(tree, map, removed);
    default:
        iova_tree_clear(tree);
        return IOVA_OK;
    }
}

static bool same_reverse_answers(IOVATree *a, IOVATree *b, uint64_t *rng)
{
    for (int q = 0; q < 3; q++) {
        DMAMap needle = {
            .translated_addr = (next_random(rng) % 5) * 0x100 + next_random(rng) % 0x80,
            .size = next_random(rng) % 0x100,
            .id = next_random(rng) % 3,
        };
        const DMAMap *x = iova_tree_find_iova(a, &needle), *y = iova_tree_find_iova(b, &needle);
        if ((x == NULL) != (y == NULL) || (x && x->iova != y->iova)) {
            return false;
        }
        x = iova_tree_find_iova_any(a, &needle);
        y = iova_tree_find_iova_any(b, &needle);
        if ((x == NULL) != (y == NULL) || (x && x->iova != y->iova)) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: check-oom OPS SEED [holes|none] [sticky]\n");
        return 2;
    }
    long ops = atol(argv[1]);
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ strtoull(argv[2], NULL, 0);
    bool holes = argc > 3 && strcmp(argv[3], "holes") == 0;
    sticky = argc > 4;
    IOVATree *a = iova_tree_new(), *b = iova_tree_new();
    if (holes && (iova_tree_keep_holes(a) != 0 || iova_tree_keep_holes(b) != 0)) {
        fprintf(stderr, "check-oom: iova_tree_keep_holes failed\n");
        return 1;
    }
    char err[256];
    long ooms = 0;

    for (long k = 0; k < ops; k++) {
        Call c;
        hwaddr iova_a, iova_b;
        size_t removed_a, removed_b;
        int rc_a;
        pick_call(&rng, &c);
        for (long f = 0;; f++) {
            allocs = failed = 0;
            fail_at = f;
            rc_a = make_call(a, &c, &iova_a, &removed_a);
            fail_at = -1;
            if (iova_tree_check(a, err, sizeof(err)) != 0) {
                printf("call %ld (kind %d, allocation %ld failing): check: %s\n", k, c.kind, f,
                       err);
                return 1;
            }
            if (failed == 0 || rc_a != IOVA_ERR_OOM) {
                break; /* no allocation failed, or the call got by without it */
            }
            ooms++;
            if (c.kind == CALL_INSERT && iova_tree_find(b, &c.map)) {
                printf("call %ld (insert, allocation %ld failing): IOVA_ERR_OOM for a map that "
                       "overlaps a stored one\n", k, f);
                return 1;
            }
            if (!same_maps(a, b) || removed_a != 0) {
                printf("call %ld (kind %d, allocation %ld failing): IOVA_ERR_OOM, but the maps "
                       "changed (%zu removed)\n", k, c.kind, f, removed_a);
                return 1;
            }
        }
        int rc_b = make_call(b, &c, &iova_b, &removed_b);
        if (rc_a != rc_b || iova_a != iova_b || removed_a != removed_b) {
            printf("call %ld (kind %d): rc %d, iova %#llx, %zu removed; without failures rc %d, "
                   "iova %#llx, %zu removed\n", k, c.kind, rc_a, (unsigned long long)iova_a,
                   removed_a, rc_b, (unsigned long long)iova_b, removed_b);
            return 1;
        }
        if (!same_maps(a, b) || !same_reverse_answers(a, b, &rng)) {
            printf("call %ld (kind %d): the trees differ after it\n", k, c.kind);
            return 1;
        }
    }
    printf("ok %ld, %ld OOM answers\n", ops, ooms);
    iova_tree_destroy(a);
    iova_tree_destroy(b);
    return 0;
}
