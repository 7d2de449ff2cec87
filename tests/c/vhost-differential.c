/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vhost-differential: QEMU's hw/virtio/vhost-iova-tree.c twice in one process, once on the
 * project's IOVATree and once on QEMU's util/iova-tree.c (that copy linked with its globals
 * renamed qemu_*), driven by the same random calls in windows at both ends of the space
 * (iova_last = 2^64-1 included, which vhost-workload.c stays away from), each answer and
 * each caller's DMAMap afterwards compared with memcmp().
 *
 * QEMU's file on either tree differs only where the tree does: an alloc at the very top of
 * the space (deviations 2 and 3 of docs/contract.md), and one of a caller's map whose
 * translated side wraps (1).  Where that happens, the program counts it and starts both from
 * fresh trees.
 *
 * Usage: vhost-differential OPS SEED.  Prints a summary; on a difference that is no
 * deviation, prints it and exits 1.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/iova-tree.h"
#include "hw/virtio/vhost-iova-tree.h"
#include "print-map.h"
#include "xorshift.h"

typedef struct QemuVhostIOVATree QemuVhostIOVATree;
QemuVhostIOVATree *qemu_vhost_iova_tree_new(uint64_t iova_first, uint64_t iova_last);
void qemu_vhost_iova_tree_delete(QemuVhostIOVATree *tree);
const DMAMap *qemu_vhost_iova_tree_find_iova(const QemuVhostIOVATree *tree, const DMAMap *map);
int qemu_vhost_iova_tree_map_alloc(QemuVhostIOVATree *tree, DMAMap *map, hwaddr taddr);
void qemu_vhost_iova_tree_remove(QemuVhostIOVATree *tree, DMAMap map);
const DMAMap *qemu_vhost_iova_tree_find_gpa(const QemuVhostIOVATree *tree, const DMAMap *map);
int qemu_vhost_iova_tree_map_alloc_gpa(QemuVhostIOVATree *tree, DMAMap *map, hwaddr taddr);
void qemu_vhost_iova_tree_remove_gpa(QemuVhostIOVATree *tree, DMAMap map);

#define WINDOW 0x40000

static uint64_t rng;
static long op_index;
static VhostIOVATree *ours;
static QemuVhostIOVATree *theirs;
static hwaddr win_first, win_last;
static long resets, top_deviations, wrapped;

static uint64_t below(uint64_t n)
{
    return next_random(&rng) % n;
}

static void fresh(void)
{
    if (ours) {
        vhost_iova_tree_delete(ours);
        qemu_vhost_iova_tree_delete(theirs);
    }
    switch (below(3)) {
    case 0:
        win_first = 0;
        win_last = WINDOW;
        break;
    case 1:
        win_first = HWADDR_MAX - WINDOW + 1; /* pages that tile up to the last byte */
        win_last = HWADDR_MAX;
        break;
    default:
        win_first = below(WINDOW);
        win_last = HWADDR_MAX - below(4) * 0x1000;
        break;
    }
    ours = vhost_iova_tree_new(win_first, win_last);
    theirs = qemu_vhost_iova_tree_new(win_first, win_last);
    resets++;
}

static G_NORETURN void differ(const char *what)
{
    fprintf(stderr, "vhost-differential: call %ld (window %#" PRIx64 "..%#" PRIx64 "): %s\n",
            op_index, win_first, win_last, what);
    exit(1);
}

static bool same(const DMAMap *a, const DMAMap *b)
{
    return (!a && !b) || (a && b && !memcmp(a, b, sizeof(*a)));
}

static hwaddr random_size(void)
{
    switch (below(10)) {
    case 0:
        return below(WINDOW * 2);
    case 1:
        return HWADDR_MAX - below(WINDOW);
    default:
        return 0xfff + 0x1000 * below(4);
    }
}

static hwaddr random_hva(void)
{
    return below(64) ? 0x7f0000000000ull + 0x1000 * below(64) : HWADDR_MAX - below(0x2000);
}

static void do_alloc(bool gpa)
{
    DMAMap m = {
        .size = random_size(),
        .perm = (IOMMUAccessFlags)(below(20) ? 1 + below(3) : 0),
    };
    hwaddr taddr = gpa ? 0x1000 * below(256) : random_hva();
    m.translated_addr = gpa ? random_hva() : taddr; /* as vhost-vdpa sets it */
    m.id = gpa ? taddr : 0;
    DMAMap a_map = m, b_map = m;
    int a = gpa ? vhost_iova_tree_map_alloc_gpa(ours, &a_map, taddr)
                : vhost_iova_tree_map_alloc(ours, &a_map, taddr);
    int b = gpa ? qemu_vhost_iova_tree_map_alloc_gpa(theirs, &b_map, taddr)
                : qemu_vhost_iova_tree_map_alloc(theirs, &b_map, taddr);
    if (a == b && !memcmp(&a_map, &b_map, sizeof(m))) {
        return;
    }
    /*
     * Deviation 1: QEMU's file hands the caller's map to iova_tree_alloc_map() with its
     * translated_addr as the caller left it (vhost-vdpa: the HVA, also for a guest map), and
     * this library's alloc refuses one whose translated side wraps.
     */
    if (a == IOVA_ERR_INVALID && m.translated_addr + m.size < m.translated_addr &&
        m.perm != IOMMU_NONE) {
        wrapped++;
        fresh();
        return;
    }
    /*
     * Deviations 2 and 3: only at the top of the space.  With 2, this tree's alloc placed the
     * map at the last byte, and QEMU's file then inserts it into the host or GPA tree, which
     * may refuse it (a GPA range taken twice; a host map whose allocation a _remove_gpa()
     * freed, as QEMU's file does).
     */
    bool top = (a != IOVA_ERR_NOMEM && b == IOVA_ERR_NOMEM && a_map.iova + m.size == HWADDR_MAX) ||
               (a == IOVA_ERR_NOMEM && b == IOVA_ERR_OVERLAP && win_last == HWADDR_MAX) ||
               (a == IOVA_ERR_NOMEM && b == IOVA_ERR_INVALID && win_last == HWADDR_MAX);
    if (!top) {
        print_map("map", &m);
        print_map("ours after", &a_map);
        print_map("QEMU's after", &b_map);
        fprintf(stderr, "  taddr %#" PRIx64 ": ours %d, QEMU's %d\n", taddr, a, b);
        differ(gpa ? "map_alloc_gpa answers differ" : "map_alloc answers differ");
    }
    top_deviations++;
    fresh();
}

static void do_find(bool gpa)
{
    DMAMap needle = {
        .translated_addr = gpa ? 0x1000 * below(260) + below(0x1000) : random_hva() + below(0x1000),
        .size = below(4) ? 0 : below(0x3000),
    };
    if (needle.translated_addr + needle.size < needle.translated_addr) {
        return; /* deviation 8: tested by qemu-differential.c */
    }
    needle.id = gpa ? (below(4) ? needle.translated_addr & ~0xfffull : below(3)) : below(4) == 0;
    const DMAMap *a = gpa ? vhost_iova_tree_find_gpa(ours, &needle)
                          : vhost_iova_tree_find_iova(ours, &needle);
    const DMAMap *b = gpa ? qemu_vhost_iova_tree_find_gpa(theirs, &needle)
                          : qemu_vhost_iova_tree_find_iova(theirs, &needle);
    if (!same(a, b)) {
        print_map("needle", &needle);
        print_map("ours", a);
        print_map("QEMU's", b);
        differ(gpa ? "find_gpa answers differ" : "find_iova answers differ");
    }
}

static void do_remove(bool gpa)
{
    /* as vhost-vdpa removes: the map a look-up handed back, or a range */
    DMAMap needle = { .translated_addr = gpa ? 0x1000 * below(256) : random_hva() };
    const DMAMap *hit = gpa ? vhost_iova_tree_find_gpa(ours, &needle)
                            : vhost_iova_tree_find_iova(ours, &needle);
    DMAMap victim = hit ? *hit : needle;
    if (!hit || below(4) == 0) {
        victim.iova = win_first + below(WINDOW);
        victim.size = below(0x4000);
        if (victim.iova + victim.size < victim.iova) {
            victim.size = HWADDR_MAX - victim.iova;
        }
    }
    if (gpa) {
        vhost_iova_tree_remove_gpa(ours, victim);
        qemu_vhost_iova_tree_remove_gpa(theirs, victim);
    } else {
        vhost_iova_tree_remove(ours, victim);
        qemu_vhost_iova_tree_remove(theirs, victim);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vhost-differential OPS SEED\n");
        return 2;
    }
    long ops = atol(argv[1]);
    rng = 0x9e3779b97f4a7c15ull ^ strtoull(argv[2], NULL, 0);
    fresh();
    for (op_index = 0; op_index < ops; op_index++) {
        bool gpa = below(2);
        switch (below(10)) {
        case 0 ... 3:
            do_alloc(gpa);
            break;
        case 4 ... 6:
            do_find(gpa);
            break;
        case 7 ... 8:
            do_remove(gpa);
            break;
        default:
            if (below(100) == 0) {
                fresh();
            }
            break;
        }
    }
    printf("vhost-differential: %ld calls agree; %ld windows, %ld allocs at the top "
           "(deviations 2 and 3), %ld of a map whose translated side wraps (1)\n", ops, resets,
           top_deviations, wrapped);
    vhost_iova_tree_delete(ours);
    qemu_vhost_iova_tree_delete(theirs);
    return 0;
}
