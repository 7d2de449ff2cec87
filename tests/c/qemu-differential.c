/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qemu-differential: the project's IOVATree and QEMU's own util/iova-tree.c (seed patch
 * applied, its global symbols renamed qemu_* with objcopy) in one process, driven by the same
 * random calls and compared answer by answer.
 *
 * The addresses crowd both ends of the space (near 0 and near 2^64-1), so that the calls meet
 * the places where docs/contract.md's deviations live.  Where QEMU's answer may differ, the
 * program checks that the difference is the deviation written down, and that the project's
 * answer is the contract's (a brute-force model over the maps both trees hold); then it brings
 * QEMU's tree back to the project's, so that the two keep holding the same maps.  After every
 * call both trees are listed with iova_tree_foreach() and compared with memcmp(), and
 * iova_tree_check() runs on the project's.
 *
 * QEMU's object is built against its own header and the osdep shim; this program sees only
 * the project's header, whose DMAMap has the same 36-byte layout.
 *
 * With "gpa", both are GPA trees (gpa_tree_new(), keyed by translated address): inserts,
 * look-ups and removals by GPA, reverse look-ups walking in GPA order, allocs refused.
 *
 * Usage: qemu-differential OPS SEED [gpa].  Prints a summary (how often each deviation showed); on
 * the first difference that no deviation explains, prints it and exits 1.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/iova-tree.h"
#include "print-map.h"
#include "xorshift.h"
#include "../../csrc/tools/qemu-iova-tree.h"

#define MAX_MAPS 4096
#define SPAN 0x4000 /* each end of the space the addresses crowd */

typedef struct Listing {
    DMAMap maps[MAX_MAPS];
    int n;
} Listing;

static uint64_t rng;
static long op_index;
static IOVATree *ours;
static QemuIOVATree *theirs;
static Listing now; /* the maps both trees hold, in key order */
static bool gpa;    /* GPA trees (gpa_tree_new()), keyed by translated address */

/* A map's key: its IOVA, or in a GPA tree its translated address. */
#define KEY(m) (gpa ? (m)->translated_addr : (m)->iova)
static long deviations[16];

static uint64_t below(uint64_t n)
{
    return next_random(&rng) % n;
}

static hwaddr near_an_end(void)
{
    return below(2) ? below(SPAN) : HWADDR_MAX - below(SPAN);
}

static hwaddr random_size(void)
{
    switch (below(8)) {
    case 0:
        return 0;
    case 1:
        return below(SPAN * 2);
    case 2:
        return HWADDR_MAX - below(SPAN * 2);
    default:
        return below(0x100);
    }
}

static G_NORETURN void differ(const char *what)
{
    fprintf(stderr, "qemu-differential: call %ld: %s\n", op_index, what);
    for (int i = 0; i < now.n; i++) {
        print_map("stored", &now.maps[i]);
    }
    exit(1);
}

static gboolean collect(DMAMap *map)
{
    Listing *l = &now;
    if (l->n == MAX_MAPS) {
        differ("too many maps");
    }
    l->maps[l->n++] = *map;
    return FALSE;
}

/* QEMU's tree listed the same way (QEMU 10's header has no foreach: walk by look-ups). */
static int list_theirs(DMAMap *out)
{
    int n = 0;
    hwaddr pos = 0;
    for (;;) {
        DMAMap needle = { .iova = pos, .translated_addr = pos, .size = HWADDR_MAX - pos };
        /* QEMU's find meets any overlapping map: narrow down to the lowest one */
        const DMAMap *m = qemu_iova_tree_find(theirs, &needle);
        if (!m) {
            return n;
        }
        while (KEY(m) > pos) {
            DMAMap below_it = { .iova = pos, .translated_addr = pos, .size = KEY(m) - 1 - pos };
            const DMAMap *lower = qemu_iova_tree_find(theirs, &below_it);
            if (!lower) {
                break;
            }
            m = lower;
        }
        if (n == MAX_MAPS) {
            differ("QEMU's tree: too many maps");
        }
        out[n++] = *m;
        if (KEY(m) + m->size == HWADDR_MAX) {
            return n;
        }
        pos = KEY(m) + m->size + 1;
    }
}

static void compare_trees(void)
{
    static DMAMap theirs_list[MAX_MAPS];
    char err[256];

    now.n = 0;
    iova_tree_foreach(ours, collect);
    int n = list_theirs(theirs_list);
    if (n != now.n || memcmp(theirs_list, now.maps, sizeof(DMAMap) * (size_t)n)) {
        for (int i = 0; i < n; i++) {
            print_map("QEMU holds", &theirs_list[i]);
        }
        differ("the trees hold different maps");
    }
    if (iova_tree_nnodes(ours) != (size_t)now.n) {
        differ("iova_tree_nnodes() is not the count foreach walks");
    }
    if (iova_tree_check(ours, err, sizeof(err)) < 0) {
        differ(err);
    }
}

static bool overlaps(hwaddr a, hwaddr a_last, const DMAMap *m)
{
    return !(a_last < KEY(m) || KEY(m) + m->size < a);
}

static bool translated_overlaps(hwaddr a, hwaddr a_last, const DMAMap *m)
{
    return !(a_last < m->translated_addr || m->translated_addr + m->size < a);
}

static bool valid_for_us(const DMAMap *m)
{
    return m->iova + m->size >= m->iova && m->translated_addr + m->size >= m->translated_addr &&
           m->perm >= IOMMU_RO && m->perm <= IOMMU_RW;
}

static DMAMap random_map(void)
{
    DMAMap m = {
        .iova = near_an_end(),
        .translated_addr = near_an_end(),
        .size = random_size(),
        .id = below(3),
        .perm = (IOMMUAccessFlags)(below(30) ? 1 + below(3) : below(2) ? 0 : 4),
    };
    return m;
}

/* QEMU's tree took a map ours refused (deviations 1 and 11): take it out again. */
static void unstore_theirs(const DMAMap *m)
{
    qemu_iova_tree_remove(theirs, *m);
}

static void do_insert(void)
{
    DMAMap m = random_map();
    int a = gpa ? gpa_tree_insert(ours, &m) : iova_tree_insert(ours, &m);
    int b = gpa ? qemu_gpa_tree_insert(theirs, &m) : qemu_iova_tree_insert(theirs, &m);
    if (a == b) {
        return;
    }
    /* QEMU's checks the key's side and IOMMU_NONE: the other side wrapping is deviation 1
     * (9 in a GPA tree), a perm above IOMMU_RW deviation 11 */
    if (a == IOVA_ERR_INVALID && !valid_for_us(&m) && KEY(&m) + m.size >= KEY(&m) &&
        m.perm != IOMMU_NONE) {
        deviations[m.perm > IOMMU_RW ? 11 : gpa ? 9 : 1]++;
        if (b == IOVA_OK) {
            unstore_theirs(&m);
        }
        return;
    }
    print_map("insert", &m);
    fprintf(stderr, "  ours %d, QEMU's %d\n", a, b);
    differ("insert answers differ");
}

static void do_remove(void)
{
    DMAMap m = random_map();
    if (gpa) {
        m.iova = next_random(&rng); /* a tree's remove looks only at its key */
    } else {
        m.translated_addr = next_random(&rng);
    }
    if (KEY(&m) + m.size < KEY(&m)) {
        size_t before = iova_tree_nnodes(ours);
        iova_tree_remove(ours, m);
        if (iova_tree_nnodes(ours) != before) {
            differ("a wrapping removal removed a map (deviation 8)");
        }
        deviations[8]++;
        return; /* QEMU's compares wrapped values: not made on its tree */
    }
    iova_tree_remove(ours, m);
    qemu_iova_tree_remove(theirs, m);
}

static const DMAMap *lowest_overlapping(hwaddr first, hwaddr last, int *count)
{
    const DMAMap *hit = NULL;
    *count = 0;
    for (int i = 0; i < now.n; i++) {
        if (overlaps(first, last, &now.maps[i])) {
            hit = hit ? hit : &now.maps[i];
            ++*count;
        }
    }
    return hit;
}

static bool same(const DMAMap *a, const DMAMap *b)
{
    return a == b || (a && b && !memcmp(a, b, sizeof(*a)));
}

static void do_find(void)
{
    DMAMap needle = random_map();
    bool address = below(4) == 0;
    if (address) {
        needle.size = 0;
    }
    const DMAMap *a = address ? iova_tree_find_address(ours, KEY(&needle))
                              : iova_tree_find(ours, &needle);
    if (KEY(&needle) + needle.size < KEY(&needle)) {
        if (a) {
            differ("a wrapping find found a map (deviation 8)");
        }
        deviations[8]++;
        return;
    }
    const DMAMap *b = qemu_iova_tree_find(theirs, &needle);
    int count;
    const DMAMap *want = lowest_overlapping(KEY(&needle), KEY(&needle) + needle.size, &count);
    if (!same(a, want)) {
        print_map("needle", &needle);
        print_map("ours", a);
        print_map("want", want);
        differ("find is not the lowest overlapping map");
    }
    if (count > 1 && b && overlaps(KEY(&needle), KEY(&needle) + needle.size, b)) {
        deviations[4] += !same(a, b);
        return;
    }
    if (!same(a, b)) {
        print_map("needle", &needle);
        print_map("ours", a);
        print_map("QEMU's", b);
        differ("find answers differ");
    }
}

static void do_find_iova(void)
{
    DMAMap needle = random_map();
    const DMAMap *a = iova_tree_find_iova(ours, &needle);
    hwaddr first = needle.translated_addr, last = first + needle.size;
    if (last < first) {
        if (a) {
            differ("a wrapping find_iova found a map (deviation 8)");
        }
        deviations[8]++;
        return;
    }
    /* QEMU's walks in key order and takes the first hit: the lowest IOVA, as ours (in a GPA
     * tree both walk, in GPA order) */
    const DMAMap *b = qemu_iova_tree_find_iova(theirs, &needle);
    const DMAMap *any = iova_tree_find_iova_any(ours, &needle);
    const DMAMap *want = NULL, *want_any = NULL;
    for (int i = 0; i < now.n; i++) {
        if (translated_overlaps(first, last, &now.maps[i])) {
            want_any = want_any ? want_any : &now.maps[i];
            if (now.maps[i].id == needle.id) {
                want = want ? want : &now.maps[i];
            }
        }
    }
    if (!same(a, b) || !same(a, want) || !same(any, want_any)) {
        print_map("needle", &needle);
        print_map("ours", a);
        print_map("QEMU's", b);
        print_map("want", want);
        print_map("ours, any id", any);
        print_map("want, any id", want_any);
        differ("find_iova answers differ");
    }
}

/* The contract's alloc: the lowest fitting IOVA >= begin whose last byte is <= last. */
static bool model_alloc(hwaddr size, hwaddr begin, hwaddr last, hwaddr *iova)
{
    hwaddr cursor = begin;
    for (int i = 0; i < now.n; i++) {
        const DMAMap *m = &now.maps[i];
        hwaddr m_last = m->iova + m->size;
        if (m_last < cursor) {
            continue;
        }
        if (m->iova > cursor && m->iova - cursor > size) {
            break;
        }
        if (m_last >= last) {
            return false;
        }
        cursor = m_last + 1;
    }
    if (cursor > last || size > last - cursor) {
        return false;
    }
    *iova = cursor;
    return true;
}

static hwaddr random_bound(void)
{
    switch (below(5)) {
    case 0:
        return 0;
    case 1:
        return HWADDR_MAX;
    default:
        return near_an_end();
    }
}

static void do_alloc(void)
{
    DMAMap m = random_map(), a_map, b_map;
    m.iova = next_random(&rng); /* garbage in: alloc must not read it */
    if (m.perm == IOMMU_NONE || m.perm > IOMMU_RW) {
        m.perm = IOMMU_RW; /* deviations 10 and 11 have tests of their own */
    }
    hwaddr begin = random_bound(), last = random_bound();
    if (gpa) {
        /* QEMU's would search a GPA-ordered tree for IOVA holes: ours refuses */
        a_map = m;
        if (iova_tree_alloc_map(ours, &a_map, begin, last) != IOVA_ERR_INVALID ||
            memcmp(&a_map, &m, sizeof(m))) {
            differ("alloc on a GPA tree was not refused");
        }
        return;
    }
    if (below(3) == 0 && begin <= HWADDR_MAX - SPAN) {
        last = begin + below(SPAN);
    }
    a_map = b_map = m;
    int a = iova_tree_alloc_map(ours, &a_map, begin, last);
    hwaddr want_iova = 0;
    DMAMap at_zero = m;
    at_zero.iova = 0; /* what the map would be, placed low: its translated side checked */
    bool valid = valid_for_us(&at_zero);
    bool fits = begin <= last && valid && model_alloc(m.size, begin, last, &want_iova);
    if ((a == IOVA_OK) != fits || (a == IOVA_OK && a_map.iova != want_iova)) {
        print_map("map", &m);
        fprintf(stderr, "  begin %#" PRIx64 " last %#" PRIx64 ": ours %d at %#" PRIx64
                ", want %s at %#" PRIx64 "\n", begin, last, a, a_map.iova,
                fits ? "OK" : "failure", want_iova);
        differ("alloc is not the contract's");
    }
    DMAMap expect = m;
    if (a == IOVA_OK) {
        expect.iova = want_iova;
    }
    if (memcmp(&expect, &a_map, sizeof(expect))) {
        differ("alloc wrote the caller's map beyond its iova");
    }
    if (a != IOVA_OK && a != IOVA_ERR_INVALID && a != IOVA_ERR_NOMEM) {
        differ("alloc failed with a code QEMU's never gives");
    }
    int b = qemu_iova_tree_alloc_map(theirs, &b_map, begin, last);
    if (a == b && (a != IOVA_OK || a_map.iova == b_map.iova)) {
        return;
    }
    /* Which deviation?  Only those written down may explain it. */
    bool straddles = false, at_top = false;
    for (int i = 0; i < now.n; i++) {
        hwaddr m_last = now.maps[i].iova + now.maps[i].size;
        straddles |= now.maps[i].iova < begin && m_last >= begin;
        at_top |= m_last == HWADDR_MAX;
    }
    int dev = 0;
    if (!valid && a == IOVA_ERR_INVALID) {
        dev = 1;
    } else if (b == IOVA_OK) {
        dev = 0; /* QEMU placed a map where the contract places another or none */
    } else if (straddles && (b == IOVA_ERR_OVERLAP || b == IOVA_ERR_INVALID)) {
        dev = 7;
    } else if (at_top && a == IOVA_ERR_NOMEM && b == IOVA_ERR_OVERLAP) {
        dev = 3;
    } else if (a == IOVA_OK && b == IOVA_ERR_NOMEM && a_map.iova + m.size == HWADDR_MAX) {
        dev = 2;
    } else if (a == IOVA_OK && b == IOVA_ERR_NOMEM && at_top) {
        dev = 3; /* the hole below a map at the top: QEMU's wrapped arithmetic missed it */
    }
    if (!dev) {
        print_map("map", &m);
        fprintf(stderr, "  begin %#" PRIx64 " last %#" PRIx64 ": ours %d at %#" PRIx64
                ", QEMU's %d at %#" PRIx64 "\n", begin, last, a, a_map.iova, b, b_map.iova);
        differ("alloc answers differ, and no deviation explains it");
    }
    deviations[dev]++;
    if (b == IOVA_OK) {
        qemu_iova_tree_remove(theirs, b_map);
    }
    if (a == IOVA_OK && qemu_iova_tree_insert(theirs, &a_map) != IOVA_OK) {
        differ("QEMU's tree refused the map ours placed");
    }
}

static void do_reset(void)
{
    iova_tree_destroy(ours);
    qemu_iova_tree_destroy(theirs);
    ours = gpa ? gpa_tree_new() : iova_tree_new();
    theirs = gpa ? qemu_gpa_tree_new() : qemu_iova_tree_new();
    if (!gpa && below(2)) {
        iova_tree_keep_holes(ours);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: qemu-differential OPS SEED [gpa]\n");
        return 2;
    }
    gpa = argc > 3 && strcmp(argv[3], "gpa") == 0;
    long ops = atol(argv[1]);
    rng = 0x9e3779b97f4a7c15ull ^ strtoull(argv[2], NULL, 0);
    ours = gpa ? gpa_tree_new() : iova_tree_new();
    theirs = gpa ? qemu_gpa_tree_new() : qemu_iova_tree_new();
    for (op_index = 0; op_index < ops; op_index++) {
        switch (below(20)) {
        case 0 ... 5:
            do_insert();
            break;
        case 6 ... 8:
            do_remove();
            break;
        case 9 ... 11:
            do_find();
            break;
        case 12 ... 14:
            do_find_iova();
            break;
        case 15 ... 18:
            do_alloc();
            break;
        default:
            if (below(50) == 0) {
                do_reset();
            } else if (below(2)) {
                iova_tree_clear(ours);
                qemu_iova_tree_destroy(theirs);
                theirs = gpa ? qemu_gpa_tree_new() : qemu_iova_tree_new();
            }
            break;
        }
        compare_trees();
    }
    printf("qemu-differential: %ld calls agree; deviations seen: 1:%ld 2:%ld 3:%ld 4:%ld "
           "7:%ld 8:%ld 9:%ld 11:%ld\n", ops, deviations[1], deviations[2], deviations[3],
           deviations[4], deviations[7], deviations[8], deviations[9], deviations[11]);
    iova_tree_destroy(ours);
    qemu_iova_tree_destroy(theirs);
    return 0;
}
