/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iova-range-bench: the range walks of iova-range.h against the single look-ups, from 10k to
 * 1M maps, with the number of hits K fixed, in C (no Python between the calls).
 *
 * For each layout and size it runs QUERIES look-ups of each kind, each kind in a function of
 * its own (loop_*), and prints ns per look-up, the fastest of ROUNDS.  Run under callgrind, the
 * inclusive instruction count of each loop_* function over QUERIES is the load-independent
 * figure (scripts/range-bench-callgrind.sh does that):
 *
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='loop_*' iova-range-bench
 *
 * Layouts, as in bench/range_queries.py: forward (N one-page maps in a row, a window of K
 * pages); reverse, shuffled (translated pages a random permutation: the K hits lie apart in
 * IOVA order and are sorted); reverse, by id; reverse, adversarial (K long maps reach one common
 * last page from translated addresses spread over the whole range).
 *
 * Usage: iova-range-bench [--sizes 10k,100k,1M]
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "../iova-range.h"
#include "../iova-tree.h"

#define PAGE UINT64_C(4096)
#define K 8
#define QUERIES 4096
#define ROUNDS 5
#define MAX_SIZES 8
#define HVA_BASE UINT64_C(0x7f0000000000)

typedef struct Needle {
    hwaddr addr;
    uint64_t id;
} Needle;

/* What a range query hands back: copies of the maps, as the Python binding takes them. */
typedef struct Hits {
    DMAMap maps[4 * K];
    size_t count;
} Hits;

static volatile uint64_t sink;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static bool collect(const DMAMap *map, void *opaque)
{
    Hits *h = opaque;
    if (h->count < G_N_ELEMENTS(h->maps)) {
        h->maps[h->count] = *map;
    }
    h->count++;
    return false;
}

static int iova_cmp(const void *a, const void *b)
{
    hwaddr x = ((const DMAMap *)a)->iova, y = ((const DMAMap *)b)->iova;
    return x < y ? -1 : x > y;
}

/* The binding's order for find_iova_all: by IOVA, sorted only when the walk's order is not. */
static void sort_hits(Hits *h)
{
    size_t n = MIN(h->count, G_N_ELEMENTS(h->maps));
    for (size_t i = 1; i < n; i++) {
        if (h->maps[i].iova < h->maps[i - 1].iova) {
            qsort(h->maps, n, sizeof(DMAMap), iova_cmp);
            return;
        }
    }
}

static DMAMap needle_map(hwaddr addr, hwaddr size, uint64_t id)
{
    DMAMap m = { .iova = addr, .translated_addr = addr, .size = size, .id = id };
    return m;
}

/* The loops callgrind counts; noinline keeps each one a function of its own. */
__attribute__((noinline)) static void loop_find(const IOVATree *t, const Needle *q)
{
    for (size_t i = 0; i < QUERIES; i++) {
        DMAMap m = needle_map(q[i].addr, 0, 0);
        sink += iova_tree_find(t, &m) != NULL;
    }
}

__attribute__((noinline)) static void loop_find_all(const IOVATree *t, const Needle *q)
{
    for (size_t i = 0; i < QUERIES; i++) {
        Hits h = { .count = 0 };
        iova_tree_foreach_range(t, q[i].addr, q[i].addr + K * PAGE - 1, collect, &h);
        sink += h.count;
    }
}

static inline void find_iova_body(const IOVATree *t, const Needle *q)
{
    for (size_t i = 0; i < QUERIES; i++) {
        DMAMap m = needle_map(q[i].addr, 0, 0);
        sink += iova_tree_find_iova_any(t, &m) != NULL;
    }
}

static inline void find_iova_all_body(const IOVATree *t, const Needle *q, hwaddr window)
{
    for (size_t i = 0; i < QUERIES; i++) {
        Hits h = { .count = 0 };
        iova_tree_foreach_translated(t, q[i].addr, q[i].addr + window, NULL, collect, &h);
        sort_hits(&h);
        sink += h.count;
    }
}

__attribute__((noinline)) static void loop_find_iova(const IOVATree *t, const Needle *q)
{
    find_iova_body(t, q);
}

__attribute__((noinline)) static void loop_find_iova_all(const IOVATree *t, const Needle *q)
{
    find_iova_all_body(t, q, K * PAGE - 1);
}

/* The adversarial layout's own loops, so that callgrind counts them apart. */
__attribute__((noinline)) static void loop_adversarial_find_iova(const IOVATree *t,
                                                                 const Needle *q)
{
    find_iova_body(t, q);
}

__attribute__((noinline)) static void loop_adversarial_find_iova_all(const IOVATree *t,
                                                                     const Needle *q)
{
    find_iova_all_body(t, q, 0);
}

__attribute__((noinline)) static void loop_find_iova_id(const IOVATree *t, const Needle *q)
{
    for (size_t i = 0; i < QUERIES; i++) {
        DMAMap m = needle_map(q[i].addr, 0, q[i].id);
        sink += iova_tree_find_iova(t, &m) != NULL;
    }
}

__attribute__((noinline)) static void loop_find_iova_all_id(const IOVATree *t, const Needle *q)
{
    for (size_t i = 0; i < QUERIES; i++) {
        Hits h = { .count = 0 };
        iova_tree_foreach_translated(t, q[i].addr, q[i].addr + K * PAGE - 1, &q[i].id, collect,
                                     &h);
        sort_hits(&h);
        sink += h.count;
    }
}

typedef void (*Loop)(const IOVATree *t, const Needle *q);

static double fastest(Loop loop, const IOVATree *t, const Needle *q)
{
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = now_ns();
        loop(t, q);
        best = MIN(best, now_ns() - t0);
    }
    return (double)best / QUERIES;
}

static void insert_or_die(IOVATree *t, DMAMap m)
{
    if (iova_tree_insert(t, &m) != IOVA_OK) {
        fprintf(stderr, "iova-range-bench: insert failed\n");
        exit(1);
    }
}

typedef struct Row {
    const char *layout, *call;
    double ns[MAX_SIZES];
} Row;

static void record(Row *row, size_t si, Loop loop, const IOVATree *t, const Needle *q)
{
    row->ns[si] = fastest(loop, t, q);
}

static void bench_size(Row *rows, size_t si, size_t n, uint64_t seed)
{
    Needle *q = g_new(Needle, QUERIES);
    uint64_t *perm = g_new(uint64_t, n);

    /* forward */
    IOVATree *t = iova_tree_new();
    for (size_t i = 0; i < n; i++) {
        insert_or_die(t, (DMAMap){ .iova = PAGE + i * PAGE, .translated_addr = HVA_BASE + i * PAGE,
                                   .size = PAGE - 1, .id = i, .perm = IOMMU_RW });
    }
    for (size_t i = 0; i < QUERIES; i++) {
        q[i].addr = PAGE + rng_next(&seed) % (n - K) * PAGE + rng_next(&seed) % PAGE;
    }
    record(&rows[0], si, loop_find, t, q);
    record(&rows[1], si, loop_find_all, t, q);
    iova_tree_destroy(t);

    /* reverse, shuffled; by id */
    for (size_t i = 0; i < n; i++) {
        perm[i] = i;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(&seed) % (i + 1);
        uint64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    t = iova_tree_new();
    for (size_t i = 0; i < n; i++) {
        insert_or_die(t, (DMAMap){ .iova = PAGE + i * PAGE,
                                   .translated_addr = HVA_BASE + perm[i] * PAGE,
                                   .size = PAGE - 1, .id = perm[i], .perm = IOMMU_RW });
    }
    for (size_t i = 0; i < QUERIES; i++) {
        uint64_t page = rng_next(&seed) % (n - K);
        q[i].addr = HVA_BASE + page * PAGE;
        q[i].id = page + rng_next(&seed) % K;
    }
    record(&rows[2], si, loop_find_iova, t, q);
    record(&rows[3], si, loop_find_iova_all, t, q);
    record(&rows[4], si, loop_find_iova_id, t, q);
    record(&rows[5], si, loop_find_iova_all_id, t, q);
    iova_tree_destroy(t);

    /* reverse, adversarial */
    size_t small = n - K;
    hwaddr top = HVA_BASE + small * PAGE, iova = PAGE + small * PAGE;
    t = iova_tree_new();
    for (size_t i = 0; i < small; i++) {
        insert_or_die(t, (DMAMap){ .iova = PAGE + i * PAGE, .translated_addr = HVA_BASE + i * PAGE,
                                   .size = PAGE - 1, .perm = IOMMU_RW });
    }
    for (size_t j = 0; j < K; j++) {
        hwaddr start = HVA_BASE + (j * small / K) * PAGE, size = top + PAGE - 1 - start;
        insert_or_die(t, (DMAMap){ .iova = iova, .translated_addr = start, .size = size,
                                   .perm = IOMMU_RW });
        iova += size + 1;
    }
    for (size_t i = 0; i < QUERIES; i++) {
        q[i].addr = top + rng_next(&seed) % PAGE;
    }
    record(&rows[6], si, loop_adversarial_find_iova, t, q);
    record(&rows[7], si, loop_adversarial_find_iova_all, t, q);
    iova_tree_destroy(t);

    g_free(perm);
    g_free(q);
}

static size_t parse_sizes(const char *text, size_t *sizes)
{
    size_t count = 0;
    char *copy = g_strdup(text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && count < MAX_SIZES;
         tok = strtok_r(NULL, ",", &save)) {
        char *end;
        double v = strtod(tok, &end);
        v *= *end == 'M' || *end == 'm' ? 1e6 : *end == 'k' || *end == 'K' ? 1e3 : 1;
        if (v >= 4 * K) {
            sizes[count++] = (size_t)v;
        }
    }
    g_free(copy);
    return count;
}

int main(int argc, char **argv)
{
    size_t sizes[MAX_SIZES] = { 10000, 100000, 1000000 };
    size_t nsizes = 3;
    if (argc == 3 && strcmp(argv[1], "--sizes") == 0) {
        nsizes = parse_sizes(argv[2], sizes);
    } else if (argc != 1) {
        fprintf(stderr, "usage: iova-range-bench [--sizes 10k,100k,1M]\n");
        return 2;
    }
    if (nsizes == 0) {
        fprintf(stderr, "iova-range-bench: sizes must be at least %d\n", 4 * K);
        return 2;
    }
    Row rows[] = {
        { "forward", "find(iova)", { 0 } },
        { "forward", "find_all(iova, K pages)", { 0 } },
        { "reverse, shuffled", "find_iova(hva)", { 0 } },
        { "reverse, shuffled", "find_iova_all(hva, K pages)", { 0 } },
        { "reverse, by id", "find_iova(hva, id)", { 0 } },
        { "reverse, by id", "find_iova_all(hva, K pages, id)", { 0 } },
        { "reverse, adversarial", "find_iova(hva)", { 0 } },
        { "reverse, adversarial", "find_iova_all(hva)", { 0 } },
    };
    for (size_t si = 0; si < nsizes; si++) {
        bench_size(rows, si, sizes[si], UINT64_C(0x9E3779B97F4A7C15) + sizes[si]);
    }
    printf("C range walks, K = %d hits; ns per look-up, fastest of %d rounds of %d\n\n", K,
           ROUNDS, QUERIES);
    printf("| layout | call |");
    for (size_t si = 0; si < nsizes; si++) {
        printf(" N=%zu |", sizes[si]);
    }
    printf(" growth |\n|---|---|");
    for (size_t si = 0; si <= nsizes; si++) {
        printf("---:|");
    }
    printf("\n");
    for (size_t r = 0; r < G_N_ELEMENTS(rows); r++) {
        printf("| %s | `%s` |", rows[r].layout, rows[r].call);
        for (size_t si = 0; si < nsizes; si++) {
            printf(" %.0f |", rows[r].ns[si]);
        }
        printf(" %.2fx |\n", rows[r].ns[nsizes - 1] / rows[r].ns[0]);
    }
    return sink == UINT64_MAX; /* never: keeps the sink read */
}
