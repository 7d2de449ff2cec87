/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tree-workload: a random workload straight on QEMU's IOVATree API (iova_tree_* and
 * gpa_tree_*), printed as a transcript.  The test builds it on the project's library and on
 * QEMU's util/iova-tree.c with the seed patch; the transcripts must be equal.
 *
 * Both kinds of tree get inserts (overlapping, wrapping, IOMMU_NONE), look-ups with sizes,
 * reverse look-ups with ids, and removals of ranges covering several maps; the IOVA tree also
 * gets allocations in small windows that fill up, windows with iova_begin > iova_last and
 * sizes no hole fits.  Every caller's DMAMap given to iova_tree_alloc_map() sits between
 * canaries: only its iova may change.  Every stored map found again compares equal, with
 * memcmp(), to the one inserted.
 *
 * The program keeps a plain list of the maps it expects stored, so that it can stay away from
 * docs/contract.md's deviations: a look-up that several maps overlap prints only that its
 * answer is one of them (deviation 4); an allocation whose iova_begin falls inside a stored
 * map is not made (7); translated ranges never wrap (1), nor GPA maps' IOVA side (9), nor
 * needles (8); nothing ends near 2^64-1 (2, 3); an IOMMU_NONE map is never allocated (10).
 */
#include "qemu/osdep.h"
#include "qemu/iova-tree.h"
#include "xorshift.h"

#define MAX_EXPECTED 8192

typedef struct Expected {
    DMAMap maps[MAX_EXPECTED];
    int count;
    bool by_gpa;
} Expected;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static hwaddr universe = 1 << 16;

static uint64_t below(uint64_t n)
{
    return next_random(&rng_state) % n;
}

static hwaddr key_of(const Expected *e, const DMAMap *m)
{
    return e->by_gpa ? m->translated_addr : m->iova;
}

static bool overlaps(hwaddr a, hwaddr a_size, hwaddr b, hwaddr b_size)
{
    return !(a + a_size < b || b + b_size < a);
}

static int count_overlapping(const Expected *e, hwaddr key, hwaddr size)
{
    int n = 0;

    for (int i = 0; i < e->count; i++) {
        n += overlaps(key_of(e, &e->maps[i]), e->maps[i].size, key, size);
    }
    return n;
}

static bool is_expected(const Expected *e, const DMAMap *m)
{
    for (int i = 0; i < e->count; i++) {
        if (!memcmp(&e->maps[i], m, sizeof(DMAMap))) {
            return true;
        }
    }
    return false;
}

static void expect_stored(Expected *e, const DMAMap *m)
{
    if (e->count == MAX_EXPECTED) {
        fprintf(stderr, "tree-workload: too many maps\n");
        exit(2);
    }
    e->maps[e->count++] = *m;
}

static void expect_removed(Expected *e, hwaddr key, hwaddr size)
{
    int kept = 0;

    for (int i = 0; i < e->count; i++) {
        if (!overlaps(key_of(e, &e->maps[i]), e->maps[i].size, key, size)) {
            e->maps[kept++] = e->maps[i];
        }
    }
    e->count = kept;
}

static void print_map(const char *label, const DMAMap *m)
{
    if (!m) {
        printf(" %s=none", label);
        return;
    }
    printf(" %s=%" PRIx64 ",%" PRIx64 ",%" PRIx64 ",%" PRIx64 ",%d", label, m->iova,
           m->translated_addr, m->size, m->id, (int)m->perm);
}

static DMAMap random_map(void)
{
    DMAMap m = {
        .iova = below(universe),
        .translated_addr = below(universe),
        .size = below(8) ? below(0x400) : below(universe),
        .id = below(4),
        .perm = below(20) ? (IOMMUAccessFlags)(1 + below(3)) : IOMMU_NONE,
    };

    if (below(50) == 0) {
        m.iova = HWADDR_MAX - below(0x100); /* its IOVA side wraps: IOVA_ERR_INVALID */
    }
    return m;
}

static void do_insert(IOVATree *tree, Expected *e)
{
    DMAMap m = random_map();
    int rc;

    if (m.translated_addr + m.size < m.translated_addr ||
        (e->by_gpa && m.iova + m.size < m.iova)) {
        printf(" insert skipped");
        return;
    }
    rc = e->by_gpa ? gpa_tree_insert(tree, &m) : iova_tree_insert(tree, &m);
    print_map("insert", &m);
    printf(" -> %d", rc);
    if (rc == IOVA_OK) {
        const DMAMap *back = iova_tree_find(tree, &m);

        expect_stored(e, &m);
        printf(" found-equal=%d", back && !memcmp(back, &m, sizeof(m)));
    }
}

static void do_alloc(IOVATree *tree, Expected *e)
{
    struct {
        uint64_t before[3];
        DMAMap map;
        uint64_t after[3];
    } QEMU_PACKED box;
    DMAMap asked, rest;
    hwaddr begin = below(universe);
    hwaddr last = below(6) ? begin + below(universe) : below(universe);
    bool canaries = true;
    int rc;

    for (int i = 0; i < e->count; i++) {
        if (e->maps[i].iova < begin && e->maps[i].iova + e->maps[i].size >= begin) {
            printf(" alloc skipped");
            return;
        }
    }
    memset(&box, 0xa5, sizeof(box));
    box.map = random_map();
    if (box.map.perm == IOMMU_NONE) {
        box.map.perm = IOMMU_RO;
    }
    if (below(10) == 0) {
        box.map.size = below(universe * 2);
    }
    asked = box.map;
    rc = iova_tree_alloc_map(tree, &box.map, begin, last);
    printf(" alloc [%" PRIx64 ",%" PRIx64 "]", begin, last);
    print_map("asked", &asked);
    printf(" -> %d", rc);
    for (int i = 0; i < 3; i++) {
        canaries = canaries && box.before[i] == 0xa5a5a5a5a5a5a5a5ULL &&
                   box.after[i] == 0xa5a5a5a5a5a5a5a5ULL;
    }
    rest = box.map;
    rest.iova = asked.iova;
    printf(" untouched=%d", canaries && !memcmp(&rest, &asked, sizeof(rest)));
    if (rc == IOVA_OK) {
        const DMAMap *back = iova_tree_find(tree, &box.map);

        print_map("got", &box.map);
        expect_stored(e, &box.map);
        printf(" found-equal=%d", back && !memcmp(back, &box.map, sizeof(box.map)));
    }
}

static DMAMap random_needle(hwaddr wide)
{
    DMAMap needle = {
        .iova = below(universe),
        .translated_addr = below(universe),
        .size = below(4) ? below(0x100) : below(wide),
        .id = below(4),
    };
    return needle;
}

static void do_find(IOVATree *tree, Expected *e)
{
    DMAMap needle = random_needle(universe);
    hwaddr key = key_of(e, &needle);
    int hits = count_overlapping(e, key, needle.size);
    const DMAMap *found = iova_tree_find(tree, &needle);

    printf(" find %" PRIx64 "+%" PRIx64 " overlapping=%d", key, needle.size, hits);
    if (hits <= 1) {
        print_map("found", found);
    } else {
        printf(" one-of-them=%d", found && is_expected(e, found) &&
                                  overlaps(key_of(e, found), found->size, key, needle.size));
    }
}

static void do_find_iova(IOVATree *tree)
{
    DMAMap needle = random_needle(universe);

    printf(" find_iova %" PRIx64 "+%" PRIx64 " id=%" PRIx64, needle.translated_addr,
           needle.size, needle.id);
    print_map("found", iova_tree_find_iova(tree, &needle));
}

static void do_remove(IOVATree *tree, Expected *e)
{
    DMAMap needle = random_needle(universe / 4);
    hwaddr key = key_of(e, &needle);
    int hits = count_overlapping(e, key, needle.size);

    iova_tree_remove(tree, needle);
    expect_removed(e, key, needle.size);
    printf(" remove %" PRIx64 "+%" PRIx64 " overlapping=%d gone=%d", key, needle.size, hits,
           iova_tree_find(tree, &needle) == NULL);
}

static void check_all(IOVATree *const trees[2], const Expected expected[2])
{
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < expected[t].count; i++) {
            const DMAMap *m = iova_tree_find(trees[t], &expected[t].maps[i]);

            if (!m || memcmp(m, &expected[t].maps[i], sizeof(DMAMap))) {
                printf("tree %d lost map %d\n", t, i);
            }
        }
    }
}

int main(int argc, char **argv)
{
    static Expected expected[2];
    IOVATree *trees[2] = { iova_tree_new(), gpa_tree_new() };
    int ops = argc > 1 ? atoi(argv[1]) : 20000;

    if (argc > 2) {
        rng_state = strtoull(argv[2], NULL, 0);
    }
    if (argc > 3) {
        universe = strtoull(argv[3], NULL, 0);
    }
    expected[1].by_gpa = true;
    for (int i = 0; i < ops; i++) {
        int which = below(5) == 0;
        IOVATree *tree = trees[which];
        Expected *e = &expected[which];
        int op = below(100);

        if (e->count > 600 && op < 45) {
            op = 80; /* keep the trees small enough to fill their windows */
        }
        printf("%d %s", i, which ? "gpa" : "iova");
        if (op < 30) {
            do_insert(tree, e);
        } else if (op < 45 && !which) {
            do_alloc(tree, e);
        } else if (op < 65) {
            do_find(tree, e);
        } else if (op < 80) {
            do_find_iova(tree);
        } else {
            do_remove(tree, e);
        }
        printf(" stored=%d\n", e->count);
        if (i % 1000 == 999) {
            check_all(trees, expected);
        }
    }
    iova_tree_destroy(trees[0]);
    iova_tree_destroy(trees[1]);
    return 0;
}
