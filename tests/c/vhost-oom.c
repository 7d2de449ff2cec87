/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vhost-oom: every allocation point of the VhostIOVATree calls under failure (check-oom.c
 * does the same for a lone IOVATree).  Two trees get the same random calls: A with malloc(),
 * realloc(), aligned_alloc(), mmap(), mprotect() and GLib's g_try_malloc() failing (the last
 * is how a GPA tree copies a map), B without.  Each call on A is made again with its 1st,
 * 2nd, ... allocation failing (with "sticky", that one and every one after it) until one
 * goes through.  After IOVA_ERR_OOM, A's three trees must hold what they held before and
 * vhost_iova_tree_check() must pass; once A's call went through, B makes it and both must
 * answer alike and hold the same maps.
 *
 * Usage: vhost-oom OPS SEED [sticky]   prints "ok <calls>, <n> OOM answers".
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/iova-tree.h"
#include "hw/virtio/vhost-iova-tree.h"
#define FAIL_ALLOC_GLIB
#include "fail-alloc.h"
#include "xorshift.h"

#define MAX_SNAP 2048

typedef struct Snapshot {
    DMAMap maps[3][MAX_SNAP];
    int n[3];
} Snapshot;

typedef struct Filling {
    DMAMap *maps;
    int *n;
} Filling;

static gboolean snapshot_one(const DMAMap *map, gpointer opaque)
{
    Filling *f = opaque;
    if (*f->n < MAX_SNAP) {
        f->maps[(*f->n)++] = *map;
    }
    return FALSE;
}

static void snapshot(VhostIOVATree *tree, Snapshot *s)
{
    IOVATree *trees[3] = { vhost_iova_tree_host(tree), vhost_iova_tree_guest(tree),
                           vhost_iova_tree_allocations(tree) };
    for (int t = 0; t < 3; t++) {
        Filling f = { s->maps[t], &s->n[t] };
        s->n[t] = 0;
        iova_tree_foreach_opaque(trees[t], snapshot_one, &f);
    }
}

static bool same_snapshots(const Snapshot *a, const Snapshot *b)
{
    for (int t = 0; t < 3; t++) {
        if (a->n[t] != b->n[t] ||
            memcmp(a->maps[t], b->maps[t], sizeof(DMAMap) * (size_t)a->n[t])) {
            return false;
        }
    }
    return true;
}

enum { CALL_HOST, CALL_GUEST, CALL_REMOVE, CALL_REMOVE_GPA, CALL_CLEAR };

typedef struct Call {
    int kind;
    DMAMap map;
    hwaddr taddr;
} Call;

static void pick_call(uint64_t *rng, Call *c)
{
    uint64_t r = next_random(rng) % 100;

    memset(c, 0, sizeof(*c));
    c->map.perm = IOMMU_RW;
    c->map.size = next_random(rng) % 4 ? next_random(rng) % 0x3000 : 0xfff;
    c->taddr = (next_random(rng) % 0x200) * 0x100;
    if (r < 35) {
        c->kind = CALL_HOST;
    } else if (r < 70) {
        c->kind = CALL_GUEST;
        c->map.id = c->taddr;
    } else if (r < 84) {
        c->kind = CALL_REMOVE;
        c->map.iova = (next_random(rng) % 0x100) * 0x400;
        c->map.size = next_random(rng) % 3 ? 0 : next_random(rng) % 0x10000;
    } else if (r < 99) {
        c->kind = CALL_REMOVE_GPA;
        c->map.translated_addr = (next_random(rng) % 0x200) * 0x100;
        c->map.size = next_random(rng) % 3 ? 0 : next_random(rng) % 0x10000;
    } else {
        c->kind = CALL_CLEAR;
    }
}

static int make_call(VhostIOVATree *tree, const Call *c, DMAMap *out, size_t *removed)
{
    *out = c->map;
    *removed = 0;
    switch (c->kind) {
    case CALL_HOST:
        return vhost_iova_tree_map_alloc(tree, out, c->taddr);
    case CALL_GUEST:
        return vhost_iova_tree_map_alloc_gpa(tree, out, c->taddr);
    case CALL_REMOVE:
        return vhost_iova_tree_remove_checked(tree, c->map, FALSE, removed);
    case CALL_REMOVE_GPA:
        return vhost_iova_tree_remove_checked(tree, c->map, TRUE, removed);
    default:
        vhost_iova_tree_clear(tree);
        return IOVA_OK;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vhost-oom OPS SEED [sticky]\n");
        return 2;
    }
    long ops = atol(argv[1]);
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ strtoull(argv[2], NULL, 0);
    sticky = argc > 3;
    VhostIOVATree *a = vhost_iova_tree_new_page_size(0x1000, 0x3fffff, 0x1000);
    VhostIOVATree *b = vhost_iova_tree_new_page_size(0x1000, 0x3fffff, 0x1000);
    static Snapshot before, after, other;
    char err[256];
    long ooms = 0;

    for (long k = 0; k < ops; k++) {
        Call c;
        DMAMap out_a, out_b;
        size_t removed_a, removed_b;
        int rc_a;
        pick_call(&rng, &c);
        snapshot(a, &before);
        for (long f = 0;; f++) {
            allocs = failed = 0;
            fail_at = f;
            rc_a = make_call(a, &c, &out_a, &removed_a);
            fail_at = -1;
            if (vhost_iova_tree_check(a, err, sizeof(err)) != 0) {
                printf("call %ld (kind %d, allocation %ld failing): check: %s\n", k, c.kind, f,
                       err);
                return 1;
            }
            if (failed == 0 || rc_a != IOVA_ERR_OOM) {
                break;
            }
            ooms++;
            snapshot(a, &after);
            if (!same_snapshots(&before, &after) || removed_a != 0) {
                printf("call %ld (kind %d, allocation %ld failing): IOVA_ERR_OOM, but the maps "
                       "changed (%zu removed)\n", k, c.kind, f, removed_a);
                return 1;
            }
        }
        int rc_b = make_call(b, &c, &out_b, &removed_b);
        if (rc_a != rc_b || removed_a != removed_b ||
            (rc_a == IOVA_OK && memcmp(&out_a, &out_b, sizeof(DMAMap)))) {
            printf("call %ld (kind %d): rc %d, %zu removed; without failures rc %d, %zu "
                   "removed\n", k, c.kind, rc_a, removed_a, rc_b, removed_b);
            return 1;
        }
        snapshot(a, &after);
        snapshot(b, &other);
        if (!same_snapshots(&after, &other)) {
            printf("call %ld (kind %d): the trees differ after it\n", k, c.kind);
            return 1;
        }
    }
    printf("ok %ld, %ld OOM answers\n", ops, ooms);
    vhost_iova_tree_delete(a);
    vhost_iova_tree_delete(b);
    return 0;
}
