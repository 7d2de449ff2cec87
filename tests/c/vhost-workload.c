/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vhost-workload: a long random workload on QEMU's VhostIOVATree API, printed as a transcript.
 *
 * The test builds this program twice around QEMU's own hw/virtio/vhost-iova-tree.c: once on
 * this project's IOVA tree (its headers and its library), once on QEMU's util/iova-tree.c with
 * the seed patch.  The two transcripts must be equal.  It is also built on the project's own
 * VhostIOVATree with --careful (see below).
 *
 * The workload is what vhost-vdpa asks of the tree: host-only buffers (map_alloc, find_iova,
 * remove) and guest memory (map_alloc_gpa, find_gpa, remove_gpa), with aliased HVAs and ids so
 * that the id match of the seed patch decides look-ups, and with the failure paths: IOMMU_NONE,
 * a translated range that wraps, sizes that no hole fits, a window small enough to fill, GPA
 * ranges already taken.  Every answer is printed; a map as "iova translated size id perm".
 *
 * What it stays away from, because docs/contract.md lists it as an intended deviation:
 *   - needles whose range wraps past 2^64-1 (deviation 8): every look-up and removal range
 *     here ends at or below 2^64-1;
 *   - an allocation window reaching 2^64-1 (deviations 2 and 3): iova_last is below it;
 *   - a DMAMap whose caller-set translated_addr wraps (deviation 1): like vhost-vdpa, the
 *     caller sets translated_addr to the taddr it passes.
 * Deviations 4, 7 and 9 cannot show through this API: QEMU's VhostIOVATree reaches the tree
 * only through find_iova (both answer the lowest IOVA, or the lowest GPA in the GPA tree),
 * allocates only at or above its own iova_first, and inserts GPA maps only after the
 * allocation has bounded their IOVA side.
 *
 * Two differences show only on the project's own VhostIOVATree, which is why that build runs
 * with --careful, a caller that never maps a GPA range twice and removes only maps it was
 * handed: deviation 5 (when the GPA insert fails, the project's VhostIOVATree rolls the
 * allocation back; QEMU's keeps it), and removal (the project's removes exactly the
 * allocations of the maps it removes; QEMU's frees every allocation overlapping the IOVA range
 * it is given, whichever map owns it).
 *
 * Usage: vhost-workload [--seed N] [--ops N] [--careful]
 */
#include "qemu/osdep.h"
#include "qemu/iova-tree.h"
#include "hw/virtio/vhost-iova-tree.h"

#define MAX_LIVE 512
#define PAGE UINT64_C(0x1000)
#define HVA_BASE UINT64_C(0x7f0000000000)
#define GPA_BASE UINT64_C(0x100000000)

typedef struct Rng {
    uint64_t state;
} Rng;

/* splitmix64: small, fast, the same numbers on every host. */
static uint64_t next(Rng *r)
{
    uint64_t z = (r->state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t below(Rng *r, uint64_t n)
{
    return next(r) % n;
}

/* What the driver remembers of its successful allocations, to aim look-ups and removals. */
typedef struct Live {
    DMAMap maps[MAX_LIVE];
    int n;
    uint64_t fresh; /* GPAs handed out far apart (--careful) */
} Live;

static void remember(Live *live, const DMAMap *map)
{
    if (live->n < MAX_LIVE) {
        live->maps[live->n++] = *map;
    } else {
        live->maps[live->n - 1] = *map;
    }
}

/* One allocation's line: what was asked, the answer, and the map when it succeeded. */
static void report_alloc(const char *op, const char *side, const DMAMap *map, hwaddr taddr,
                         hwaddr size, int rc, Live *live)
{
    printf("%s size=%" PRIx64 " %s=%" PRIx64 " id=%" PRIx64 " perm=%d -> %d", op, size, side,
           taddr, map->id, (int)map->perm, rc);
    if (rc == IOVA_OK) {
        printf(" iova=%" PRIx64 " %s=%" PRIx64, map->iova, side, map->translated_addr);
        remember(live, map);
    }
    printf("\n");
}

static void print_map(const char *what, const DMAMap *map)
{
    if (!map) {
        printf("%s -> none\n", what);
        return;
    }
    printf("%s -> %" PRIx64 " %" PRIx64 " %" PRIx64 " %" PRIx64 " %d\n", what, map->iova,
           map->translated_addr, map->size, map->id, (int)map->perm);
}

/* Sizes: mostly pages, some odd, a few huge (NOMEM) or wrapping with the taddr (INVALID). */
static hwaddr pick_size(Rng *r)
{
    switch (below(r, 16)) {
    case 0:
        return below(r, 0x100);
    case 1:
        return UINT64_C(1) << (20 + below(r, 24));
    case 2:
        return HWADDR_MAX - below(r, 4);
    default:
        return (1 + below(r, 8)) * PAGE - 1;
    }
}

static IOMMUAccessFlags pick_perm(Rng *r)
{
    return below(r, 20) == 0 ? IOMMU_NONE : (IOMMUAccessFlags)(1 + below(r, 3));
}

/* A needle near a remembered map (often exactly it, sometimes around it), or anywhere. */
static DMAMap pick_needle(Rng *r, const Live *live, gboolean by_translated)
{
    DMAMap needle = { 0 };
    if (live->n && below(r, 4) != 0) {
        const DMAMap *m = &live->maps[below(r, live->n)];
        hwaddr base = by_translated ? m->translated_addr : m->iova;
        hwaddr offset = below(r, 3) == 0 ? 0 : below(r, m->size + 1);
        hwaddr start = base + offset;
        hwaddr size = below(r, 3) == 0 ? 0 : below(r, 3 * PAGE);
        if (start + size < start) { /* keep the needle from wrapping (deviation 8) */
            size = HWADDR_MAX - start;
        }
        needle = *m;
        needle.iova = by_translated ? m->iova : start;
        needle.translated_addr = by_translated ? start : m->translated_addr;
        needle.size = size;
        if (below(r, 5) == 0) {
            needle.id = below(r, 4); /* often another id: the seed patch's match decides */
        }
    } else {
        hwaddr base = by_translated ? (below(r, 2) ? HVA_BASE : GPA_BASE) : 0;
        needle.iova = needle.translated_addr = base + below(r, 1u << 26);
        needle.size = below(r, 4 * PAGE);
        needle.id = below(r, 4);
    }
    return needle;
}

static void do_map_alloc(VhostIOVATree *tree, Rng *r, Live *host)
{
    hwaddr size = pick_size(r);
    /* Few distinct HVA pages, so that host maps alias and ids tell them apart. */
    hwaddr taddr = below(r, 12) == 0 ? HWADDR_MAX - below(r, 2 * PAGE)
                                     : HVA_BASE + below(r, 64) * PAGE;
    DMAMap map = {
        .translated_addr = taddr,
        .size = size,
        .id = below(r, 4),
        .perm = pick_perm(r),
    };
    int rc = vhost_iova_tree_map_alloc(tree, &map, taddr);
    report_alloc("map_alloc", "taddr", &map, taddr, size, rc, host);
}

static void do_map_alloc_gpa(VhostIOVATree *tree, Rng *r, Live *guest, gboolean overlaps)
{
    hwaddr size = pick_size(r);
    hwaddr gpa;
    if (overlaps && guest->n && below(r, 3) == 0) {
        const DMAMap *m = &guest->maps[below(r, guest->n)];
        gpa = m->translated_addr + below(r, m->size + 1); /* a GPA range already taken */
    } else {
        /* Fresh GPAs only, far apart, when overlaps must be avoided. */
        gpa = overlaps ? GPA_BASE + below(r, 256) * PAGE
                       : GPA_BASE + (++guest->fresh) * (UINT64_C(1) << 44);
        if (!overlaps && size >= (UINT64_C(1) << 44)) {
            size = PAGE - 1;
        }
    }
    DMAMap map = {
        .translated_addr = gpa,
        .size = size,
        .id = below(r, 2) ? gpa : below(r, 4),
        .perm = pick_perm(r),
    };
    int rc = vhost_iova_tree_map_alloc_gpa(tree, &map, gpa);
    report_alloc("map_alloc_gpa", "gpa", &map, gpa, size, rc, guest);
}

static void do_find(VhostIOVATree *tree, Rng *r, const Live *live, gboolean gpa)
{
    DMAMap needle = pick_needle(r, live, TRUE);
    char what[160];
    snprintf(what, sizeof(what), "%s %" PRIx64 "+%" PRIx64 " id=%" PRIx64,
             gpa ? "find_gpa" : "find_iova", needle.translated_addr, needle.size, needle.id);
    print_map(what, gpa ? vhost_iova_tree_find_gpa(tree, &needle)
                        : vhost_iova_tree_find_iova(tree, &needle));
}

static void forget_removed(Live *live, const DMAMap *range, gboolean by_translated)
{
    hwaddr first = by_translated ? range->translated_addr : range->iova;
    hwaddr last = first + range->size;
    for (int i = 0; i < live->n;) {
        const DMAMap *m = &live->maps[i];
        hwaddr mf = by_translated ? m->translated_addr : m->iova;
        if (mf <= last && first <= mf + m->size) {
            live->maps[i] = live->maps[--live->n];
        } else {
            i++;
        }
    }
}

static void do_remove(VhostIOVATree *tree, Rng *r, Live *live, gboolean gpa, gboolean careful)
{
    DMAMap range;
    if (careful && !live->n) {
        return;
    }
    if (careful || (live->n && below(r, 3) != 0)) {
        range = live->maps[below(r, live->n)]; /* the map as the caller got it, as vhost-vdpa */
    } else {
        range = pick_needle(r, live, gpa);
    }
    if (range.iova + range.size < range.iova) { /* QEMU's remove_gpa also frees by IOVA */
        range.size = HWADDR_MAX - range.iova;
    }
    if (range.translated_addr + range.size < range.translated_addr) {
        range.size = HWADDR_MAX - range.translated_addr;
    }
    printf("%s iova=%" PRIx64 " taddr=%" PRIx64 " size=%" PRIx64 "\n",
           gpa ? "remove_gpa" : "remove", range.iova, range.translated_addr, range.size);
    if (gpa) {
        vhost_iova_tree_remove_gpa(tree, range);
    } else {
        vhost_iova_tree_remove(tree, range);
    }
    forget_removed(live, &range, gpa);
}

/* Every remembered map is looked up again: the state, as the API shows it. */
static void probe_all(VhostIOVATree *tree, const Live *host, const Live *guest)
{
    for (int i = 0; i < host->n; i++) {
        print_map("probe host", vhost_iova_tree_find_iova(tree, &host->maps[i]));
    }
    for (int i = 0; i < guest->n; i++) {
        print_map("probe guest", vhost_iova_tree_find_gpa(tree, &guest->maps[i]));
    }
}

static void run(uint64_t seed, long ops, gboolean careful)
{
    Rng r = { seed };
    /* Windows: tight ones fill up (NOMEM), wide ones never do. */
    uint64_t first = below(&r, 2) ? 0 : below(&r, 1u << 20);
    uint64_t last = below(&r, 2) ? first + (UINT64_C(1) << (16 + below(&r, 8)))
                                 : (UINT64_C(1) << 48) - 1;
    g_autoptr(VhostIOVATree) tree = vhost_iova_tree_new(first, last);
    Live host = { .n = 0 }, guest = { .n = 0 };

    printf("seed %" PRIu64 " window %" PRIx64 "..%" PRIx64 "\n", seed, first, last);
    for (long i = 0; i < ops; i++) {
        switch (below(&r, 10)) {
        case 0:
        case 1:
            do_map_alloc(tree, &r, &host);
            break;
        case 2:
        case 3:
            do_map_alloc_gpa(tree, &r, &guest, !careful);
            break;
        case 4:
        case 5:
            do_find(tree, &r, &host, FALSE);
            break;
        case 6:
            do_find(tree, &r, &guest, TRUE);
            break;
        case 7:
            do_remove(tree, &r, &host, FALSE, careful);
            break;
        case 8:
            do_remove(tree, &r, &guest, TRUE, careful);
            break;
        default:
            if (below(&r, 8) == 0) {
                probe_all(tree, &host, &guest);
            } else {
                do_find(tree, &r, below(&r, 2) ? &host : &guest, below(&r, 2));
            }
            break;
        }
    }
    probe_all(tree, &host, &guest);
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    long ops = 20000;
    gboolean careful = FALSE;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
            ops = strtol(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--careful") == 0) {
            careful = TRUE;
        } else {
            fprintf(stderr, "usage: vhost-workload [--seed N] [--ops N] [--careful]\n");
            return 2;
        }
    }
    /* Several trees, each from its own seed, so that both kinds of window are covered. */
    for (uint64_t s = seed; s < seed + 8; s++) {
        run(s, ops / 8, careful);
    }
    return 0;
}
