/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iova-bench: the C core against QEMU's linear walks, measured side by side in one run.
 *
 * Prints Markdown tables of ns/op, ratios and growth for N maps (default 1k, 10k, 100k, 1M):
 *   - issue 4: find / find_iova / find_iova_any / the linear walk / translate, three layouts;
 *   - issue 6: alloc on densely packed maps against the linear allocator, and a fragmentation
 *     workload of random allocs and removes;
 *   - issue 5: VhostIOVATree's find_iova and find_gpa against the walks;
 *   - issue 17: QEMU's own util/iova-tree.c as a column (insert, remove, first-fit alloc, find,
 *     find_iova, memory) on a random and a dense layout, the Linux allocator anchor, and
 *     allocation past misaligned holes;
 *   - memory per map (glibc's mallinfo2, the allocator's own count of bytes in use).
 *
 * Why it measures the way it does: every look-up reads its needle from an array generated
 * beforehand with a fixed-seed PRNG, so the timed loop holds nothing but the call; every result
 * is folded into a volatile sink so the compiler cannot drop a call; each figure is the fastest
 * of a few repeats of a loop sized to a time budget, so slow operations (the O(n) walks at 1M
 * maps) automatically run fewer iterations.  Only core sources and GLib are linked: no Python.
 *
 * Usage: iova-bench [--quick] [--sizes 1k,10k,...] [--budget-ms MS] [--frag-ops N]
 *                   [--tsv FILE] [--only mem,layouts,alloc,frag,vhost,qemu,anchor,misaligned]
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "../iova-tree.h"
#include "../vhost-iova-tree.h"

#define MAX_SIZES 8
#define MAX_ROWS 24
#define LOOP_NS UINT64_C(2000000)     /* one timed loop: shorter than a scheduler time slice */
#define MIN_LOOPS 3                   /* the fastest of at least this many loops is reported */
#define MIN_CALLS 8                   /* ... of at least this many calls in all */
#define MIN_ITERS_FOR_MIN 256         /* fewer calls a loop: report the mean, not the fastest */
#define HARD_LIMIT 10                 /* never more than this many budgets on one figure */
#define MAX_ITERS (UINT64_C(1) << 32) /* a guard for calibration on a broken clock */
#define PAGE UINT64_C(4096)
#define MAP_SIZE (PAGE - 1)           /* DMAMap sizes are inclusive */
#define TR_PAGES 4                    /* translate() buffers span this many pages */
#define SEG_CAP 64

/* Address-space bases, far apart so that the layouts never touch by accident. */
#define HVA_BASE UINT64_C(0x7f0000000000)
#define HVA_SMALL UINT64_C(0x7e0000000000)
#define HVA_ALIAS UINT64_C(0x7d0000000000)
#define GPA_BASE UINT64_C(0x100000000)
#define GIB (UINT64_C(1) << 30)

/* ------------------------------------------------------------------ options, clock, PRNG */

typedef struct Options {
    uint64_t sizes[MAX_SIZES];
    int nsizes;
    bool quick;
    uint64_t budget_ns;   /* per figure: as many LOOP_NS loops as fit */
    uint64_t frag_ops;    /* fragmentation workload: timed operations */
    uint64_t frag_pop;    /* ... live maps it hovers around */
    uint64_t frag_linear_ops;
    const char *only;     /* sections to run, e.g. "layouts,alloc", or NULL for all */
    FILE *tsv;            /* machine-readable copy of every figure, for bench/run.py */
} Options;

static volatile uint64_t sink; /* every result lands here so no call is optimised away */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* splitmix64: tiny, fast, and the same stream on every machine for a given seed. */
static uint64_t rng_state = UINT64_C(0x1badc0ffee);

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, bound); the modulo bias is irrelevant at these bounds. */
static uint64_t rng_below(uint64_t bound)
{
    return rng_next() % bound;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "iova-bench: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "iova-bench: %s failed (%d)\n", what, rc);
    exit(3);
}

/* A random permutation of 0..n-1 (Fisher-Yates): shuffled HVAs and GPAs. */
static uint32_t *permutation(uint64_t n)
{
    uint32_t *p = xmalloc(n * sizeof(*p));
    for (uint64_t i = 0; i < n; i++) {
        p[i] = (uint32_t)i;
    }
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rng_below(i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/*
 * Bytes glibc has handed out and not taken back, mmapped blocks included.  A tree's arena
 * blocks mapped from its own reservation are not in it: iova_tree_mapped_bytes() is added.
 */
static size_t heap_in_use(void)
{
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

/* The sections --only picks from, in the order they run. */
static const char *const SECTIONS[] = {
    "mem", "layouts", "alloc", "frag", "vhost", "qemu", "anchor", "misaligned",
};

/* Whether the comma-separated @list holds @name as a whole item ("alloc" is not "all"). */
static bool list_has(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *item = list; item; item = strchr(item, ',')) {
        item += *item == ',';
        if (strncmp(item, name, len) == 0 && (item[len] == ',' || item[len] == '\0')) {
            return true;
        }
    }
    return false;
}

static bool section_on(const Options *o, const char *name)
{
    return !o->only || list_has(o->only, name);
}

/* The first item of --only's @list that names no section, or NULL: a typo must not run an
 * empty benchmark that exits 0. */
static const char *unknown_section(const char *list, char *item, size_t size)
{
    for (const char *start = list; start; ) {
        const char *comma = strchr(start, ',');
        size_t len = comma ? (size_t)(comma - start) : strlen(start);
        bool known = false;
        for (size_t k = 0; k < sizeof(SECTIONS) / sizeof(SECTIONS[0]); k++) {
            known |= strlen(SECTIONS[k]) == len && strncmp(SECTIONS[k], start, len) == 0;
        }
        if (!known) {
            snprintf(item, size, "%.*s", (int)len, start);
            return item;
        }
        start = comma ? comma + 1 : NULL;
    }
    return NULL;
}

/* ------------------------------------------------------------------ measurement */

/* Runs @iters operations and returns the nanoseconds spent on the part that is timed. */
typedef uint64_t (*RunFn)(void *ctx, uint64_t iters);

/*
 * ns per operation.  The iteration count grows until one loop lasts LOOP_NS; then loops run
 * until the budget is spent (at least MIN_LOOPS loops and MIN_CALLS calls, at most
 * HARD_LIMIT budgets).  Why many short loops: on a shared 2-core machine a loop longer than a
 * scheduler time slice is almost always preempted, and the time it waits counts as if the
 * calls had spent it; the fastest of many short loops is the undisturbed cost.  But a loop of
 * a few slow calls (an O(n) walk, whose cost depends on where its answer sits) is not a fair
 * sample of the needles: the fastest such loop is merely the luckiest, so for loops shorter
 * than MIN_ITERS_FOR_MIN calls the mean over every call is reported instead.
 */
static double measure(const Options *o, RunFn fn, void *ctx)
{
    uint64_t iters = 1, dt, spent = 0, calls = 0;

    for (;;) {
        dt = fn(ctx, iters);
        spent += dt;
        calls += iters;
        if (dt >= LOOP_NS / 2 || iters >= MAX_ITERS) {
            break;
        }
        uint64_t grow = dt ? LOOP_NS / dt + 1 : 16;
        iters *= grow < 16 ? grow : 16;
    }
    double best = (double)dt / (double)iters;
    for (int loops = 1;
         (loops < MIN_LOOPS || spent < o->budget_ns || calls < MIN_CALLS) &&
         spent < HARD_LIMIT * o->budget_ns;
         loops++) {
        dt = fn(ctx, iters);
        spent += dt;
        calls += iters;
        double per = (double)dt / (double)iters;
        best = per < best ? per : best;
    }
    return iters >= MIN_ITERS_FOR_MIN ? best : (double)spent / (double)calls;
}

/* ------------------------------------------------------------------ result tables */

typedef struct Table {
    const char *key;                /* tsv section name */
    const char *title;
    const char *unit;
    int nrows;
    const char *row[MAX_ROWS];
    double v[MAX_ROWS][MAX_SIZES];  /* NAN: not measured */
} Table;

static const Options *opts; /* for the column headers and the tsv copy */

static int table_row(Table *t, const char *name)
{
    for (int r = 0; r < t->nrows; r++) {
        if (strcmp(t->row[r], name) == 0) {
            return r;
        }
    }
    if (t->nrows == MAX_ROWS) {
        fprintf(stderr, "iova-bench: too many rows in %s\n", t->key);
        exit(2);
    }
    int r = t->nrows++;
    t->row[r] = name;
    for (int s = 0; s < MAX_SIZES; s++) {
        t->v[r][s] = NAN;
    }
    return r;
}

static void table_set(Table *t, const char *row, int si, double value)
{
    t->v[table_row(t, row)][si] = value;
    if (opts->tsv) {
        fprintf(opts->tsv, "%s\t%s\t%" PRIu64 "\t%.4f\n", t->key, row, opts->sizes[si], value);
        fflush(opts->tsv);
    }
}

static double table_get(const Table *t, const char *row, int si)
{
    for (int r = 0; r < t->nrows; r++) {
        if (strcmp(t->row[r], row) == 0) {
            return t->v[r][si];
        }
    }
    return NAN;
}

static void size_label(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000 && n % 1000000 == 0) {
        snprintf(buf, len, "%" PRIu64 "M", n / 1000000);
    } else if (n >= 1000 && n % 1000 == 0) {
        snprintf(buf, len, "%" PRIu64 "k", n / 1000);
    } else {
        snprintf(buf, len, "%" PRIu64, n);
    }
}

static void print_value(double v)
{
    if (isnan(v)) {
        printf(" – |");
    } else if (v < 10) {
        printf(" %.2f |", v);
    } else if (v < 1000) {
        printf(" %.1f |", v);
    } else {
        printf(" %.0f |", v);
    }
}

static void print_ratio(double v)
{
    if (isnan(v) || isinf(v)) {
        printf(" – |");
    } else if (v >= 100) {
        printf(" %.0f× |", v);
    } else if (v >= 10) {
        printf(" %.1f× |", v);
    } else {
        printf(" %.2f× |", v);
    }
}

static void print_header(const char *first)
{
    printf("| %s |", first);
    for (int s = 0; s < opts->nsizes; s++) {
        char label[24];
        size_label(opts->sizes[s], label, sizeof(label));
        printf(" N=%s |", label);
    }
    printf("\n|---|");
    for (int s = 0; s < opts->nsizes; s++) {
        printf("---:|");
    }
    printf("\n");
}

static void print_table(const Table *t)
{
    printf("\n### %s\n\n", t->title);
    char first[64];
    snprintf(first, sizeof(first), "op (%s)", t->unit);
    print_header(first);
    for (int r = 0; r < t->nrows; r++) {
        printf("| %s |", t->row[r]);
        for (int s = 0; s < opts->nsizes; s++) {
            print_value(t->v[r][s]);
        }
        printf("\n");
    }
}

/* A ratio row appended under a table: @num / @den per size. */
typedef struct RatioSpec {
    const char *label;
    const char *num;
    const char *den;
} RatioSpec;

static void print_ratios(const Table *t, const RatioSpec *specs, int n)
{
    for (int i = 0; i < n; i++) {
        printf("| **ratio** %s |", specs[i].label);
        for (int s = 0; s < opts->nsizes; s++) {
            print_ratio(table_get(t, specs[i].num, s) / table_get(t, specs[i].den, s));
        }
        printf("\n");
    }
}

static int size_index(uint64_t n)
{
    for (int s = 0; s < opts->nsizes; s++) {
        if (opts->sizes[s] == n) {
            return s;
        }
    }
    return -1;
}

/*
 * Growth: cost at 100k over cost at 10k, and at 1M over 100k, for each row; a logarithmic
 * operation grows by little, a linear one by about 10×.  Compared with @base (find).
 */
static void print_growth(const Table *t, const char *base, const char *const *rows, int n)
{
    static const uint64_t from[] = { 10000, 100000 }, to[] = { 100000, 1000000 };
    int cols[2][2];
    int ncols = 0;
    for (int i = 0; i < 2; i++) {
        int a = size_index(from[i]), b = size_index(to[i]);
        if (a >= 0 && b >= 0) {
            cols[ncols][0] = a;
            cols[ncols][1] = b;
            ncols++;
        }
    }
    if (!ncols) {
        return;
    }
    printf("\nGrowth of the cost per op (%s), against `%s`'s:\n\n| op |", t->title, base);
    for (int c = 0; c < ncols; c++) {
        char a[24], b[24];
        size_label(opts->sizes[cols[c][0]], a, sizeof(a));
        size_label(opts->sizes[cols[c][1]], b, sizeof(b));
        printf(" %s→%s |", a, b);
    }
    printf(" steeper than %s? |\n|---|", base);
    for (int c = 0; c <= ncols; c++) {
        printf("---:|");
    }
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("| %s |", rows[i]);
        bool steeper = false;
        for (int c = 0; c < ncols; c++) {
            double g = table_get(t, rows[i], cols[c][1]) / table_get(t, rows[i], cols[c][0]);
            double gb = table_get(t, base, cols[c][1]) / table_get(t, base, cols[c][0]);
            /* 1.25×: a 2-core VM's noise; O(n) against O(log n) is a factor of ~5 per step */
            steeper |= g > gb * 1.25;
            print_ratio(g);
        }
        printf(" %s |\n", strcmp(rows[i], base) == 0 ? "(base)" : steeper ? "**yes**" : "no");
    }
}

/* ------------------------------------------------------------------ issue 4: three layouts */

/* Pre-generated needles: the forward, reverse (with its id) and translate look-ups. */
typedef struct Queries {
    uint64_t count; /* a power of two: the loops index with i & mask */
    uint64_t mask;
    uint64_t next;  /* where the next timed loop starts (see queries_take) */
    hwaddr *fwd;    /* an IOVA that some map covers */
    hwaddr *rev;    /* a translated address that some map covers */
    uint64_t *id;   /* ... and the id of a map that covers it */
    hwaddr *tr;     /* the start of a buffer of tr_len bytes, fully covered */
    hwaddr tr_len;
    uint64_t *tr_id;
    bool tr_with_id;
} Queries;

#define CHURN_MAX 1024          /* maps a batch takes out and puts back, at most */

typedef struct Layout {
    const char *key;
    const char *title;
    IOVATree *tree;
    Queries q;
    DMAMap *maps;             /* layout (a): the stored maps, which insert/remove churn */
    uint64_t n;
    uint64_t churn_batch;     /* maps removed (then put back) per batch, at most 1% of n */
    uint32_t *churn;          /* a permutation of the maps: batches take it in turn */
    uint64_t churn_next;
    double bytes_per_map;
    double segments_per_translate;
} Layout;

static uint64_t query_count(uint64_t n)
{
    uint64_t want = n < (1u << 14) ? (1u << 14) : n > (1u << 20) ? (1u << 20) : n;
    uint64_t c = 1;
    while (c < want) {
        c <<= 1;
    }
    return c;
}

static void queries_alloc(Queries *q, uint64_t n)
{
    q->count = query_count(n);
    q->mask = q->count - 1;
    q->fwd = xmalloc(q->count * sizeof(hwaddr));
    q->rev = xmalloc(q->count * sizeof(hwaddr));
    q->id = xmalloc(q->count * sizeof(uint64_t));
    q->tr = xmalloc(q->count * sizeof(hwaddr));
    q->tr_id = xmalloc(q->count * sizeof(uint64_t));
}

static void queries_free(Queries *q)
{
    free(q->fwd);
    free(q->rev);
    free(q->id);
    free(q->tr);
    free(q->tr_id);
}

/*
 * The first query index of a loop of @iters, advancing the cursor.  Why: measure() runs many
 * short loops; if each started at query 0 it would re-ask the same few thousand needles, whose
 * tree paths are then in cache, and a 1M-map tree would look as fast as a 10k one.
 */
static uint64_t queries_take(Queries *q, uint64_t iters)
{
    uint64_t start = q->next;
    q->next += iters;
    return start;
}

/* A hit somewhere inside @m, on both sides. */
static void query_hit(Queries *q, uint64_t i, const DMAMap *m)
{
    hwaddr off = rng_below(m->size + 1);
    q->fwd[i] = m->iova + off;
    q->rev[i] = m->translated_addr + off;
    q->id[i] = m->id;
}

/* Insert @maps into a new tree, counting the heap bytes the tree took. */
static IOVATree *build_tree(const DMAMap *maps, uint64_t n, double *bytes_per_map)
{
    size_t before = heap_in_use();
    IOVATree *tree = iova_tree_new();
    for (uint64_t i = 0; i < n; i++) {
        int rc = iova_tree_insert(tree, &maps[i]);
        if (rc != IOVA_OK) {
            die("iova_tree_insert", rc);
        }
    }
    *bytes_per_map = (double)(heap_in_use() - before + iova_tree_mapped_bytes(tree)) / (double)n;
    return tree;
}

/*
 * (a) n disjoint 4 KiB maps at consecutive IOVAs; their HVAs are the same n pages shuffled,
 * so the HVA side is contiguous (a buffer spans several maps) but in no relation to IOVA order.
 * Ids are distinct, GPA-like.
 */
static void layout_a(Layout *l, uint64_t n)
{
    DMAMap *maps = xmalloc(n * sizeof(*maps));
    uint32_t *perm = permutation(n);
    for (uint64_t i = 0; i < n; i++) {
        maps[i] = (DMAMap){ .iova = PAGE + i * PAGE, .translated_addr = HVA_BASE + perm[i] * PAGE,
                            .size = MAP_SIZE, .id = GPA_BASE + i * PAGE, .perm = IOMMU_RW };
    }
    l->key = "a";
    l->title = "Layout (a): disjoint 4 KiB maps, shuffled HVAs";
    l->tree = build_tree(maps, n, &l->bytes_per_map);
    queries_alloc(&l->q, n);
    uint64_t span = n > TR_PAGES ? n - TR_PAGES : 1;
    for (uint64_t i = 0; i < l->q.count; i++) {
        query_hit(&l->q, i, &maps[rng_below(n)]);
        l->q.tr[i] = HVA_BASE + rng_below(span) * PAGE + rng_below(PAGE);
        l->q.tr_id[i] = 0;
    }
    l->q.tr_with_id = false;
    l->q.tr_len = TR_PAGES * PAGE;
    l->maps = maps;
    l->n = n;
    l->churn_batch = n / 100 < 16 ? 16 : n / 100 > CHURN_MAX ? CHURN_MAX : n / 100;
    l->churn = permutation(n);
    free(perm);
}

/*
 * (b) a guest: four GiB-sized RAM regions (ids = their GPAs), the last two aliasing one HVA
 * range under different ids, at the lowest IOVAs as a memory listener would add them; then
 * n - 4 small host-only maps (vrings, control buffers; id 0) at shuffled HVAs of their own.
 * A quarter of the look-ups hit RAM.
 */
static void layout_b(Layout *l, uint64_t n)
{
    static const struct { hwaddr gpa, hva, size; } ram[4] = {
        { UINT64_C(0x000100000), UINT64_C(0x7a0000000000), 2 * GIB },
        { UINT64_C(0x100000000), UINT64_C(0x7a0080000000), 2 * GIB },
        { UINT64_C(0x200000000), HVA_ALIAS, GIB },
        { UINT64_C(0x300000000), HVA_ALIAS, GIB },
    };
    uint64_t small = n - 4;
    DMAMap *maps = xmalloc(n * sizeof(*maps));
    hwaddr iova = PAGE;
    for (int r = 0; r < 4; r++) {
        maps[r] = (DMAMap){ .iova = iova, .translated_addr = ram[r].hva,
                            .size = ram[r].size - 1, .id = ram[r].gpa, .perm = IOMMU_RW };
        iova += ram[r].size;
    }
    uint32_t *perm = permutation(small);
    for (uint64_t i = 0; i < small; i++) {
        maps[4 + i] = (DMAMap){ .iova = iova + i * PAGE,
                                .translated_addr = HVA_SMALL + perm[i] * PAGE,
                                .size = MAP_SIZE, .id = 0, .perm = IOMMU_RW };
    }
    l->key = "b";
    l->title = "Layout (b): guest, 4 GiB-sized RAM regions (2 aliasing), n-4 small host maps";
    l->tree = build_tree(maps, n, &l->bytes_per_map);
    queries_alloc(&l->q, n);
    uint64_t span = small > TR_PAGES ? small - TR_PAGES : 1;
    for (uint64_t i = 0; i < l->q.count; i++) {
        bool to_ram = rng_below(4) == 0;
        query_hit(&l->q, i, &maps[to_ram ? rng_below(4) : 4 + rng_below(small)]);
        l->q.tr[i] = HVA_SMALL + rng_below(span) * PAGE + rng_below(PAGE);
        l->q.tr_id[i] = 0;
    }
    l->q.tr_with_id = true; /* id 0: the host-only group, as the SVQ would ask */
    l->q.tr_len = TR_PAGES * PAGE;
    free(perm);
    free(maps);
}

/*
 * (c) n maps all aliasing one 16 KiB HVA range: n/4 aliases, each with its own id (a GPA),
 * each made of four 4 KiB maps at scattered IOVAs.  With an id the group is tiny; without
 * one, n/4 maps overlap every byte.
 */
static void layout_c(Layout *l, uint64_t n)
{
    uint64_t aliases = n / TR_PAGES;
    n = aliases * TR_PAGES;
    DMAMap *maps = xmalloc(n * sizeof(*maps));
    uint32_t *slot = permutation(n);
    for (uint64_t g = 0; g < aliases; g++) {
        for (uint64_t p = 0; p < TR_PAGES; p++) {
            uint64_t i = g * TR_PAGES + p;
            maps[i] = (DMAMap){ .iova = PAGE + slot[i] * PAGE,
                                .translated_addr = HVA_ALIAS + p * PAGE, .size = MAP_SIZE,
                                .id = GPA_BASE + g * TR_PAGES * PAGE, .perm = IOMMU_RW };
        }
    }
    l->key = "c";
    l->title = "Layout (c): n maps aliasing one 16 KiB HVA range, n/4 distinct ids";
    l->tree = build_tree(maps, n, &l->bytes_per_map);
    queries_alloc(&l->q, n);
    for (uint64_t i = 0; i < l->q.count; i++) {
        query_hit(&l->q, i, &maps[rng_below(n)]);
        l->q.tr[i] = HVA_ALIAS + rng_below(PAGE);
        l->q.tr_id[i] = maps[rng_below(aliases) * TR_PAGES].id;
    }
    l->q.tr_with_id = true;
    l->q.tr_len = (TR_PAGES - 1) * PAGE; /* from inside page 0 into page 3: 4 segments */
    free(slot);
    free(maps);
}

/* ------------------------------------------------------------------ the two sides: ours, QEMU's */

/*
 * QEMU's own util/iova-tree.c (the seed patch applied), built by scripts/build-tools.sh from
 * ../shared/qemu when that folder is present, its global symbols renamed with a qemu_ prefix
 * (objcopy --redefine-sym) so that both trees link into this one binary.  Its DMAMap is QEMU's
 * packed 36-byte layout, declared in qemu-iova-tree.h so that this file never needs QEMU's header.
 */
#ifdef IOVA_BENCH_QEMU
#include "qemu-iova-tree.h"
#define HAVE_QEMU true
#else
#define HAVE_QEMU false
#endif

/*
 * One side of the comparison: the project's tree or QEMU's, behind the same calls.  The
 * indirect call costs both sides the same few nanoseconds.
 */
typedef struct Side {
    const char *suffix;   /* "" for the project, " (QEMU)" */
    void *(*make)(void);
    int (*insert)(void *tree, const DMAMap *map);
    void (*remove)(void *tree, hwaddr iova);
    hwaddr (*find)(const void *tree, hwaddr iova);          /* translated_addr, or 1 */
    hwaddr (*find_iova)(const void *tree, hwaddr hva, uint64_t id); /* iova, or 1 */
    int (*alloc)(void *tree, hwaddr size, hwaddr *iova);    /* first fit in [0, 2^64-1] */
    void (*destroy)(void *tree);
} Side;

/* The wrappers of one side, around the functions named PREFIX##iova_tree_*. */
#define SIDE_WRAPPERS(side, PREFIX, suffix)                                             \
    static void *side##_make(void)                                                      \
    {                                                                                   \
        return PREFIX##iova_tree_new();                                                 \
    }                                                                                   \
    static int side##_insert(void *tree, const DMAMap *map)                             \
    {                                                                                   \
        return PREFIX##iova_tree_insert(tree, map);                                     \
    }                                                                                   \
    static void side##_remove(void *tree, hwaddr iova)                                  \
    {                                                                                   \
        DMAMap gone = { .iova = iova };                                                 \
        PREFIX##iova_tree_remove(tree, gone);                                           \
    }                                                                                   \
    static hwaddr side##_find(const void *tree, hwaddr iova)                            \
    {                                                                                   \
        DMAMap needle = { .iova = iova };                                               \
        const DMAMap *m = PREFIX##iova_tree_find(tree, &needle);                        \
        return m ? m->translated_addr : 1;                                              \
    }                                                                                   \
    static hwaddr side##_find_iova(const void *tree, hwaddr hva, uint64_t id)           \
    {                                                                                   \
        DMAMap needle = { .translated_addr = hva, .id = id };                           \
        const DMAMap *m = PREFIX##iova_tree_find_iova(tree, &needle);                   \
        return m ? m->iova : 1;                                                         \
    }                                                                                   \
    static int side##_alloc(void *tree, hwaddr size, hwaddr *iova)                      \
    {                                                                                   \
        DMAMap m = { .translated_addr = HVA_BASE, .size = size, .perm = IOMMU_RW };     \
        int rc = PREFIX##iova_tree_alloc_map(tree, &m, 0, HWADDR_MAX);                  \
        *iova = m.iova;                                                                 \
        return rc;                                                                      \
    }                                                                                   \
    static void side##_destroy(void *tree)                                              \
    {                                                                                   \
        PREFIX##iova_tree_destroy(tree);                                                \
    }                                                                                   \
    static const Side side_##side = { suffix, side##_make, side##_insert, side##_remove, \
                                      side##_find, side##_find_iova, side##_alloc,       \
                                      side##_destroy }

SIDE_WRAPPERS(ours, , "");
#ifdef IOVA_BENCH_QEMU
SIDE_WRAPPERS(qemu, qemu_, " (QEMU)");
#endif


/*
 * Batches of at most @batch maps from @order (a permutation of @maps, taken in turn from
 * *@next) come out of @tree, then go back in; only the half @time_insert says is timed.
 */
static uint64_t churn(const Side *side, void *tree, const DMAMap *maps, uint64_t n,
                      const uint32_t *order, uint64_t batch, uint64_t *next, uint64_t iters,
                      bool time_insert)
{
    uint64_t spent = 0;
    for (uint64_t done = 0; done < iters;) {
        uint64_t k = iters - done < batch ? iters - done : batch;
        if (*next + k > n) {
            *next = 0;
        }
        const uint32_t *victims = &order[*next];
        *next += k;
        uint64_t t0 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            side->remove(tree, maps[victims[j]].iova);
        }
        uint64_t t1 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            int rc = side->insert(tree, &maps[victims[j]]);
            if (rc != IOVA_OK) {
                die("insert", rc);
            }
        }
        spent += time_insert ? now_ns() - t1 : t1 - t0;
        done += k;
    }
    return spent;
}

static uint64_t run_find(void *ctx, uint64_t iters)
{
    Layout *l = ctx;
    DMAMap needle = { 0 };
    uint64_t base = queries_take(&l->q, iters);
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        needle.iova = l->q.fwd[(base + i) & l->q.mask];
        const DMAMap *m = iova_tree_find(l->tree, &needle);
        acc += m ? m->translated_addr : 1;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t run_find_iova(void *ctx, uint64_t iters)
{
    Layout *l = ctx;
    DMAMap needle = { 0 };
    uint64_t base = queries_take(&l->q, iters);
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        needle.translated_addr = l->q.rev[(base + i) & l->q.mask];
        needle.id = l->q.id[(base + i) & l->q.mask];
        const DMAMap *m = iova_tree_find_iova(l->tree, &needle);
        acc += m ? m->iova : 1;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t run_find_iova_any(void *ctx, uint64_t iters)
{
    Layout *l = ctx;
    DMAMap needle = { 0 };
    uint64_t base = queries_take(&l->q, iters);
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        needle.translated_addr = l->q.rev[(base + i) & l->q.mask];
        const DMAMap *m = iova_tree_find_iova_any(l->tree, &needle);
        acc += m ? m->iova : 1;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t run_linear(Layout *l, uint64_t iters, gboolean match_id)
{
    DMAMap needle = { 0 };
    uint64_t base = queries_take(&l->q, iters);
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        needle.translated_addr = l->q.rev[(base + i) & l->q.mask];
        needle.id = l->q.id[(base + i) & l->q.mask];
        const DMAMap *m = iova_tree_find_iova_linear(l->tree, &needle, match_id);
        acc += m ? m->iova : 1;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t run_linear_id(void *ctx, uint64_t iters)
{
    return run_linear(ctx, iters, TRUE);
}

static uint64_t run_linear_any(void *ctx, uint64_t iters)
{
    return run_linear(ctx, iters, FALSE);
}

static uint64_t run_translate(void *ctx, uint64_t iters)
{
    Layout *l = ctx;
    IOVASegment segs[SEG_CAP];
    size_t nsegs;
    hwaddr fault;
    uint64_t base = queries_take(&l->q, iters);
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        const uint64_t *id = l->q.tr_with_id ? &l->q.tr_id[(base + i) & l->q.mask] : NULL;
        int rc = iova_tree_translate(l->tree, l->q.tr[(base + i) & l->q.mask], l->q.tr_len, id, segs,
                                     SEG_CAP, &nsegs, &fault);
        acc += rc == IOVA_OK ? nsegs + segs[0].iova : fault;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

/*
 * insert() or remove() alone, in batches, as bench/run.py times them from Python: a batch of
 * random stored maps comes out, then goes back in (random places in every tree, the state
 * kept); only one half is timed.
 */
static uint64_t run_churn(Layout *l, uint64_t iters, bool time_insert)
{
    return churn(&side_ours, l->tree, l->maps, l->n, l->churn, l->churn_batch, &l->churn_next,
                 iters, time_insert);
}

static uint64_t run_insert(void *ctx, uint64_t iters)
{
    return run_churn(ctx, iters, true);
}

static uint64_t run_remove(void *ctx, uint64_t iters)
{
    return run_churn(ctx, iters, false);
}

/* Average segments per translate() over the query array: a sanity figure for the table. */
static double mean_segments(const Layout *l)
{
    IOVASegment segs[SEG_CAP];
    size_t nsegs, total = 0;
    hwaddr fault;
    uint64_t count = l->q.count < 4096 ? l->q.count : 4096;
    for (uint64_t i = 0; i < count; i++) {
        const uint64_t *id = l->q.tr_with_id ? &l->q.tr_id[i] : NULL;
        int rc = iova_tree_translate(l->tree, l->q.tr[i], l->q.tr_len, id, segs, SEG_CAP,
                                     &nsegs, &fault);
        if (rc != IOVA_OK) {
            fprintf(stderr, "iova-bench: layout %s: translate of %#" PRIx64 " failed at %#"
                    PRIx64 "\n", l->key, l->q.tr[i], fault);
            exit(3);
        }
        total += nsegs;
    }
    return (double)total / (double)count;
}

/* The look-ups must agree with the linear walk: a benchmark of wrong answers is worthless. */
static void cross_check(const Layout *l)
{
    uint64_t count = l->q.count < 256 ? l->q.count : 256;
    for (uint64_t i = 0; i < count; i++) {
        DMAMap needle = { .translated_addr = l->q.rev[i], .id = l->q.id[i] };
        if (iova_tree_find_iova(l->tree, &needle) !=
                iova_tree_find_iova_linear(l->tree, &needle, TRUE) ||
            iova_tree_find_iova_any(l->tree, &needle) !=
                iova_tree_find_iova_linear(l->tree, &needle, FALSE)) {
            fprintf(stderr, "iova-bench: layout %s: find_iova disagrees with the linear walk "
                    "at %#" PRIx64 " id %#" PRIx64 "\n", l->key, needle.translated_addr,
                    needle.id);
            exit(3);
        }
    }
}

/* The C-only loop bench/run.py compares to_iova_many with: 1M addresses, whole passes. */
typedef struct IovaLoop {
    const IOVATree *tree;
    hwaddr *in;
    hwaddr *out;
    uint64_t n;
} IovaLoop;

static uint64_t run_iova_loop(void *ctx, uint64_t iters)
{
    IovaLoop *b = ctx;
    DMAMap needle = { 0 };
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t k = i % b->n;
        needle.translated_addr = b->in[k];
        const DMAMap *m = iova_tree_find_iova_any(b->tree, &needle);
        b->out[k] = m ? m->iova + (b->in[k] - m->translated_addr) : UINT64_MAX;
    }
    uint64_t dt = now_ns() - t0;
    sink += b->out[0];
    return dt;
}

static double iova_loop(const Options *o, const Layout *l, uint64_t n_maps)
{
    IovaLoop b = { .tree = l->tree, .n = o->quick ? 100000 : 1000000 };
    b.in = xmalloc(b.n * sizeof(hwaddr));
    b.out = xmalloc(b.n * sizeof(hwaddr));
    for (uint64_t i = 0; i < b.n; i++) {
        b.in[i] = HVA_BASE + rng_below(n_maps) * PAGE + rng_below(PAGE);
    }
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < MIN_LOOPS; r++) { /* as bench/run.py times to_iova_many */
        uint64_t dt = run_iova_loop(&b, b.n);
        best = dt < best ? dt : best;
    }
    double ns = (double)best / (double)b.n;
    free(b.in);
    free(b.out);
    return ns;
}

static void (*const layout_makers[3])(Layout *, uint64_t) = { layout_a, layout_b, layout_c };

static void bench_layouts(const Options *o)
{
    static Table tables[3];

    for (int k = 0; k < 3; k++) {
        tables[k].unit = "ns/op";
        for (int s = 0; s < o->nsizes; s++) {
            Layout l = { 0 };
            layout_makers[k](&l, o->sizes[s]);
            tables[k].key = l.key;
            tables[k].title = l.title;
            cross_check(&l);
            Table *t = &tables[k];
            table_set(t, "find", s, measure(o, run_find, &l));
            table_set(t, "find_iova (with id)", s, measure(o, run_find_iova, &l));
            table_set(t, "find_iova_any (no id)", s, measure(o, run_find_iova_any, &l));
            table_set(t, "linear walk, id (QEMU)", s, measure(o, run_linear_id, &l));
            table_set(t, "linear walk, no id (QEMU)", s, measure(o, run_linear_any, &l));
            table_set(t, "translate (multi-page)", s, measure(o, run_translate, &l));
            table_set(t, "segments per translate", s, mean_segments(&l));
            if (k == 0) {
                table_set(t, "to_iova loop, 1M addrs (per addr)", s, iova_loop(o, &l,
                                                                              o->sizes[s]));
                table_set(t, "insert", s, measure(o, run_insert, &l));
                table_set(t, "remove", s, measure(o, run_remove, &l));
            }
            iova_tree_destroy(l.tree);
            queries_free(&l.q);
            free(l.churn);
            free(l.maps);
        }
    }
    printf("\n## Reverse look-ups (ns/op, lower is better)\n");
    printf("\nRandom hits; `find` is the forward O(log n) look-up, the linear walks are QEMU's "
           "`g_tree_foreach` method (`iova_tree_find_iova_linear`).  translate() covers a "
           "16 KiB buffer at a random offset in (a) and (b), 12 KiB from inside the first "
           "page in (c) (segments per call in its own row); it matches the id in (b) (id 0, "
           "the host-only maps) and (c).\n");
    static const RatioSpec ratios[] = {
        { "linear (id) / find_iova", "linear walk, id (QEMU)", "find_iova (with id)" },
        { "linear (no id) / find_iova_any", "linear walk, no id (QEMU)",
          "find_iova_any (no id)" },
        { "find_iova / find", "find_iova (with id)", "find" },
        { "find_iova_any / find", "find_iova_any (no id)", "find" },
    };
    static const char *const growth_rows[] = { "find", "find_iova (with id)",
                                               "find_iova_any (no id)", "translate (multi-page)",
                                               "linear walk, id (QEMU)" };
    for (int k = 0; k < 3; k++) {
        print_table(&tables[k]);
        print_ratios(&tables[k], ratios, 4);
        print_growth(&tables[k], "find", growth_rows, 5);
    }
}

/* ------------------------------------------------------------------ issue 6: allocation */

typedef struct AllocBench {
    IOVATree *tree;
    Queries q;      /* forward look-ups only, for find's growth */
    hwaddr *placed; /* IOVAs of a batch, removed untimed */
    uint64_t batch;
    int mode;       /* 0 alloc_map, 1 alloc_map_linear, 2 alloc_map_full(64K, LAST) */
} AllocBench;

static void alloc_one(AllocBench *b, uint64_t i, hwaddr *iova)
{
    DMAMap m = { .translated_addr = HVA_BASE + i * PAGE, .size = MAP_SIZE, .perm = IOMMU_RW };
    int rc;
    switch (b->mode) {
    case 0:
        rc = iova_tree_alloc_map(b->tree, &m, 0, HWADDR_MAX);
        break;
    case 1:
        rc = iova_tree_alloc_map_linear(b->tree, &m, 0, HWADDR_MAX);
        break;
    default:
        rc = iova_tree_alloc_map_full(b->tree, &m, 0, HWADDR_MAX, 0x10000, IOVA_ALLOC_LAST);
        break;
    }
    if (rc != IOVA_OK) {
        die("alloc", rc);
    }
    *iova = m.iova;
}

/*
 * One alloc, removed again, outside the clock: a tree filled by insert builds its holes at its
 * first alloc (O(n), once), which would otherwise land in the first timed loop.
 */
static void holes_warm(IOVATree *tree)
{
    DMAMap m = { .translated_addr = HVA_BASE, .size = MAP_SIZE, .perm = IOMMU_RW };
    int rc = iova_tree_alloc_map(tree, &m, 0, HWADDR_MAX);
    if (rc != IOVA_OK) {
        die("alloc (warm-up)", rc);
    }
    DMAMap gone = { .iova = m.iova, .size = MAP_SIZE };
    sink += iova_tree_remove_count(tree, gone);
}

/* Allocations alone: batches of b->batch, each removed afterwards outside the clock. */
static uint64_t run_alloc_batched(void *ctx, uint64_t iters)
{
    AllocBench *b = ctx;
    uint64_t spent = 0;
    for (uint64_t done = 0; done < iters;) {
        uint64_t k = iters - done < b->batch ? iters - done : b->batch;
        uint64_t t0 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            alloc_one(b, j, &b->placed[j]);
        }
        spent += now_ns() - t0;
        for (uint64_t j = 0; j < k; j++) {
            DMAMap gone = { .iova = b->placed[j], .size = MAP_SIZE };
            sink += iova_tree_remove_count(b->tree, gone);
        }
        done += k;
    }
    return spent;
}

/* alloc then remove the same map: the state never drifts. */
static uint64_t run_alloc_remove(void *ctx, uint64_t iters)
{
    AllocBench *b = ctx;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        hwaddr iova;
        alloc_one(b, i, &iova);
        DMAMap gone = { .iova = iova, .size = MAP_SIZE };
        sink += iova_tree_remove_count(b->tree, gone);
    }
    return now_ns() - t0;
}

static uint64_t run_alloc_find(void *ctx, uint64_t iters)
{
    AllocBench *b = ctx;
    Layout l = { .tree = b->tree, .q = b->q };
    uint64_t dt = run_find(&l, iters);
    b->q.next = l.q.next;
    return dt;
}

static double alloc_measure(const Options *o, AllocBench *b, int mode, RunFn fn)
{
    b->mode = mode;
    return measure(o, fn, b);
}

static void bench_alloc_dense(const Options *o, Table *t)
{
    for (int s = 0; s < o->nsizes; s++) {
        uint64_t n = o->sizes[s];
        AllocBench b = { .tree = iova_tree_new() };
        /* dense: maps at 0, 4K, 8K, ...: the only hole is [n * 4K, 2^64 - 1] */
        for (uint64_t i = 0; i < n; i++) {
            DMAMap m = { .iova = i * PAGE, .translated_addr = HVA_BASE + i * PAGE,
                         .size = MAP_SIZE, .perm = IOMMU_RW };
            int rc = iova_tree_insert(b.tree, &m);
            if (rc != IOVA_OK) {
                die("iova_tree_insert", rc);
            }
        }
        queries_alloc(&b.q, n);
        for (uint64_t i = 0; i < b.q.count; i++) {
            b.q.fwd[i] = rng_below(n) * PAGE + rng_below(PAGE);
        }
        /* a batch moves the tree's size by at most 1% */
        b.batch = n / 100 < 16 ? 16 : n / 100 > 1024 ? 1024 : n / 100;
        b.placed = xmalloc(b.batch * sizeof(hwaddr));

        table_set(t, "find", s, alloc_measure(o, &b, 0, run_alloc_find));
        holes_warm(b.tree);
        table_set(t, "alloc_map (hole tree)", s, alloc_measure(o, &b, 0, run_alloc_batched));
        table_set(t, "alloc_map_linear (QEMU walk)", s,
                  alloc_measure(o, &b, 1, run_alloc_batched));
        table_set(t, "alloc_map_full align 64K, last", s,
                  alloc_measure(o, &b, 2, run_alloc_batched));
        table_set(t, "alloc_map + remove", s, alloc_measure(o, &b, 0, run_alloc_remove));
        table_set(t, "alloc_map_linear + remove", s, alloc_measure(o, &b, 1, run_alloc_remove));

        char err[256];
        if (iova_tree_nnodes(b.tree) != n || iova_tree_check(b.tree, err, sizeof(err)) != 0) {
            fprintf(stderr, "iova-bench: dense tree broken after the alloc runs: %s\n", err);
            exit(3);
        }
        free(b.placed);
        queries_free(&b.q);
        iova_tree_destroy(b.tree);
    }
    printf("\n## Allocation on densely packed 4 KiB maps, the only hole at the top "
           "(ns/op)\n");
    printf("\n`alloc` rows time the allocations alone (batches of at most 1%% of N, removed "
           "outside the clock); `+ remove` rows alloc then remove the same map.\n");
    print_table(t);
    static const RatioSpec ratios[] = {
        { "linear / alloc_map", "alloc_map_linear (QEMU walk)", "alloc_map (hole tree)" },
        { "(linear + remove) / (alloc_map + remove)", "alloc_map_linear + remove",
          "alloc_map + remove" },
        { "alloc_map / find", "alloc_map (hole tree)", "find" },
    };
    print_ratios(t, ratios, 3);
    static const char *const growth_rows[] = { "find", "alloc_map (hole tree)",
                                               "alloc_map_full align 64K, last",
                                               "alloc_map_linear (QEMU walk)" };
    print_growth(t, "find", growth_rows, 4);
}

/* ------------------------------------------------------------------ issue 6: fragmentation */

typedef struct FragStep {
    uint64_t r;     /* alloc or remove (by the live count), and which map to remove */
    hwaddr size;    /* inclusive */
    hwaddr align;
    bool top_down;
} FragStep;

typedef struct FragRun {
    uint64_t ops, allocs, removes, nomem, maps, holes;
    uint64_t placement_sum; /* sum of the final IOVAs: equal sums say equal placements */
    double ns_per_op;
} FragRun;

#define FRAG_FIRST UINT64_C(0x1000)
#define FRAG_LAST ((UINT64_C(1) << 40) - 1)

/*
 * Sizes from 4 KiB to 2 MiB, small ones likelier (the page count is 2^k for k uniform in
 * 0..9), 30% of them not page multiples; alignment 1, 4 KiB or the size's own power of two;
 * either policy.  @simple forces QEMU's case (first fit, no alignment) for the linear walk.
 */
static FragStep *frag_steps(uint64_t count, bool simple)
{
    FragStep *steps = xmalloc(count * sizeof(*steps));
    for (uint64_t i = 0; i < count; i++) {
        FragStep *st = &steps[i];
        st->r = rng_next();
        uint64_t bytes = rng_below(10) < 3 ? 1 + rng_below(2u << 20)
                                            : (UINT64_C(1) << rng_below(10)) * PAGE;
        st->size = bytes - 1;
        uint64_t a = rng_below(4);
        uint64_t natural = 1;
        while (natural < bytes && natural < (2u << 20)) {
            natural <<= 1;
        }
        st->align = simple || a < 2 ? 1 : a == 2 ? PAGE : natural;
        st->top_down = !simple && (rng_next() & 1);
    }
    return steps;
}

typedef struct Live {
    hwaddr *iova;
    uint64_t count;
} Live;

static bool frag_alloc(IOVATree *tree, const FragStep *st, bool linear, Live *live)
{
    DMAMap m = { .translated_addr = HVA_BASE, .size = st->size, .perm = IOMMU_RW };
    int rc = linear ? iova_tree_alloc_map_linear(tree, &m, FRAG_FIRST, FRAG_LAST)
                    : iova_tree_alloc_map_full(tree, &m, FRAG_FIRST, FRAG_LAST, st->align,
                                               st->top_down ? IOVA_ALLOC_LAST
                                                            : IOVA_ALLOC_FIRST);
    if (rc == IOVA_ERR_NOMEM) {
        return false;
    }
    if (rc != IOVA_OK) {
        die("fragmentation alloc", rc);
    }
    live->iova[live->count++] = m.iova;
    return true;
}

static void frag_remove(IOVATree *tree, uint64_t r, Live *live)
{
    uint64_t k = r % live->count;
    DMAMap gone = { .iova = live->iova[k] };
    if (iova_tree_remove_count(tree, gone) != 1) {
        die("fragmentation remove", -1);
    }
    live->iova[k] = live->iova[--live->count];
}

typedef struct HoleCount {
    hwaddr next;  /* first byte after the maps seen so far (0 once the last one wrapped) */
    uint64_t holes;
    uint64_t sum;
} HoleCount;

static gboolean count_hole(const DMAMap *map, gpointer opaque)
{
    HoleCount *c = opaque;
    if (map->iova > c->next) {
        c->holes++;
    }
    c->next = map->iova + map->size + 1;
    c->sum += map->iova;
    return FALSE;
}

/* Holes in the whole 64-bit space, counted from the maps (the hole tree is private). */
static void frag_census(IOVATree *tree, FragRun *run)
{
    HoleCount c = { 0, 0, 0 };
    iova_tree_foreach_opaque(tree, count_hole, &c);
    bool top_hole = iova_tree_nnodes(tree) == 0 || c.next != 0;
    run->maps = iova_tree_nnodes(tree);
    run->holes = c.holes + (top_hole ? 1 : 0);
    run->placement_sum = c.sum;
}

/*
 * Prefill @pop maps (not timed, always through the hole tree: placements are the same and the
 * walk would take O(pop^2)), then @ops timed steps: alloc while below the population (with
 * probability 0.6) or remove (0.6 above it), so the tree hovers around @pop maps.
 */
static FragRun frag_run(uint64_t pop, uint64_t ops, bool simple, bool linear)
{
    uint64_t seed = rng_state;
    rng_state = UINT64_C(0xf4a9);
    FragStep *pre = frag_steps(pop, simple);
    FragStep *steps = frag_steps(ops, simple);
    rng_state = seed;

    IOVATree *tree = iova_tree_new();
    Live live = { .iova = xmalloc((pop + ops) * sizeof(hwaddr)) };
    FragRun run = { .ops = ops };
    for (uint64_t i = 0; i < pop; i++) {
        frag_alloc(tree, &pre[i], false, &live);
    }
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        const FragStep *st = &steps[i];
        bool want_alloc = (st->r >> 40) % 10 < (live.count < pop ? 6u : 4u);
        if (want_alloc || live.count == 0) {
            run.allocs++;
            run.nomem += !frag_alloc(tree, st, linear, &live);
        } else {
            run.removes++;
            frag_remove(tree, st->r, &live);
        }
    }
    run.ns_per_op = (double)(now_ns() - t0) / (double)ops;
    frag_census(tree, &run);
    char err[256];
    if (iova_tree_check(tree, err, sizeof(err)) != 0) {
        fprintf(stderr, "iova-bench: fragmented tree broken: %s\n", err);
        exit(3);
    }
    iova_tree_destroy(tree);
    free(live.iova);
    free(pre);
    free(steps);
    return run;
}

static void print_frag(const char *what, const FragRun *r)
{
    printf("| %s | %" PRIu64 " | %.0f | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
           " | %" PRIu64 " |\n", what, r->ops, r->ns_per_op, r->allocs, r->removes, r->nomem,
           r->maps, r->holes);
    if (opts->tsv) {
        fprintf(opts->tsv, "frag\t%s\t%" PRIu64 "\t%.4f\n", what, r->ops, r->ns_per_op);
    }
}

static void bench_fragmentation(const Options *o)
{
    FragRun mixed = frag_run(o->frag_pop, o->frag_ops, false, false);
    FragRun tree_simple = frag_run(o->frag_pop, o->frag_linear_ops, true, false);
    FragRun linear_simple = frag_run(o->frag_pop, o->frag_linear_ops, true, true);

    printf("\n### Fragmentation workload\n\n");
    printf("Random alloc/remove in [0x1000, 2^40 - 1] around %" PRIu64 " live maps (prefilled, "
           "not timed): sizes 4 KiB..2 MiB, 30%% not page multiples, alignment 1 / 4 KiB / "
           "natural, policy first or last.  The last two rows replay QEMU's case (first fit, "
           "no alignment) through the hole tree and through the linear walk.\n\n",
           o->frag_pop);
    printf("| workload | ops | ns/op | allocs | removes | no space | final maps | final holes |"
           "\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    print_frag("mixed sizes, aligns, policies (hole tree)", &mixed);
    print_frag("first fit, align 1 (hole tree)", &tree_simple);
    print_frag("first fit, align 1 (linear walk)", &linear_simple);
    printf("\nLinear walk / hole tree, first fit: **%.1f×** per op; placements %s.\n",
           linear_simple.ns_per_op / tree_simple.ns_per_op,
           linear_simple.placement_sum == tree_simple.placement_sum &&
                   linear_simple.maps == tree_simple.maps
               ? "identical (same final maps)"
               : "**DIFFER** (a core bug)");
}

/* ------------------------------------------------------------------ issue 5: VhostIOVATree */

typedef struct VhostBench {
    VhostIOVATree *tree;
    Queries q; /* rev: an HVA of a host map; tr: a GPA of a guest map */
} VhostBench;

static uint64_t run_vhost(VhostBench *b, uint64_t iters, bool gpa, bool linear)
{
    uint64_t base = queries_take(&b->q, iters);
    const hwaddr *addrs = gpa ? b->q.tr : b->q.rev;
    IOVATree *side = gpa ? vhost_iova_tree_guest(b->tree) : vhost_iova_tree_host(b->tree);
    DMAMap needle = { 0 };
    uint64_t acc = 0, t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        needle.translated_addr = addrs[(base + i) & b->q.mask];
        const DMAMap *m = linear ? iova_tree_find_iova_linear(side, &needle, FALSE)
                          : gpa  ? vhost_iova_tree_find_gpa_any(b->tree, &needle)
                                 : vhost_iova_tree_find_iova_any(b->tree, &needle);
        acc += m ? m->iova : 1;
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t run_vhost_find_iova(void *ctx, uint64_t iters)
{
    return run_vhost(ctx, iters, false, false);
}

static uint64_t run_vhost_find_gpa(void *ctx, uint64_t iters)
{
    return run_vhost(ctx, iters, true, false);
}

static uint64_t run_vhost_linear_hva(void *ctx, uint64_t iters)
{
    return run_vhost(ctx, iters, false, true);
}

static uint64_t run_vhost_linear_gpa(void *ctx, uint64_t iters)
{
    return run_vhost(ctx, iters, true, true);
}

/* n maps: n/2 host-only 4 KiB buffers at shuffled HVAs, n/2 guest pages at shuffled GPAs. */
static void vhost_build(VhostBench *b, uint64_t n, double *bytes_per_map)
{
    uint64_t half = n / 2;
    uint32_t *hperm = permutation(half), *gperm = permutation(half);
    size_t before = heap_in_use();
    b->tree = vhost_iova_tree_new(0, (UINT64_C(1) << 48) - 1);
    for (uint64_t i = 0; i < half; i++) {
        DMAMap host = { .size = MAP_SIZE, .perm = IOMMU_RW };
        int rc = vhost_iova_tree_map_alloc(b->tree, &host, HVA_BASE + hperm[i] * PAGE);
        if (rc != IOVA_OK) {
            die("vhost_iova_tree_map_alloc", rc);
        }
        DMAMap guest = { .size = MAP_SIZE, .perm = IOMMU_RW };
        rc = vhost_iova_tree_map_alloc_gpa(b->tree, &guest, GPA_BASE + gperm[i] * PAGE);
        if (rc != IOVA_OK) {
            die("vhost_iova_tree_map_alloc_gpa", rc);
        }
    }
    *bytes_per_map = (double)(heap_in_use() - before + vhost_iova_tree_mapped_bytes(b->tree)) /
                     (double)(2 * half);
    queries_alloc(&b->q, n);
    for (uint64_t i = 0; i < b->q.count; i++) {
        b->q.rev[i] = HVA_BASE + rng_below(half) * PAGE + rng_below(PAGE);
        b->q.tr[i] = GPA_BASE + rng_below(half) * PAGE + rng_below(PAGE);
    }
    free(hperm);
    free(gperm);
}

static void bench_vhost(const Options *o, Table *t)
{
    for (int s = 0; s < o->nsizes; s++) {
        VhostBench b = { 0 };
        double bytes;
        vhost_build(&b, o->sizes[s], &bytes);
        (void)bytes;
        table_set(t, "find_iova (HVA, host-only tree)", s, measure(o, run_vhost_find_iova, &b));
        table_set(t, "linear walk, HVA (QEMU)", s, measure(o, run_vhost_linear_hva, &b));
        table_set(t, "find_gpa (GPA tree)", s, measure(o, run_vhost_find_gpa, &b));
        table_set(t, "linear walk, GPA (QEMU)", s, measure(o, run_vhost_linear_gpa, &b));
        char err[256];
        if (vhost_iova_tree_check(b.tree, err, sizeof(err)) != 0) {
            fprintf(stderr, "iova-bench: vhost tree broken: %s\n", err);
            exit(3);
        }
        vhost_iova_tree_delete(b.tree);
        queries_free(&b.q);
    }
    printf("\n## VhostIOVATree look-ups (ns/op)\n");
    printf("\nN maps: N/2 host-only 4 KiB buffers (shuffled HVAs) and N/2 guest pages (shuffled "
           "GPAs), all allocated through the tree.  QEMU finds both by walking its tree.\n");
    print_table(t);
    static const RatioSpec ratios[] = {
        { "linear / find_iova", "linear walk, HVA (QEMU)", "find_iova (HVA, host-only tree)" },
        { "linear / find_gpa", "linear walk, GPA (QEMU)", "find_gpa (GPA tree)" },
    };
    print_ratios(t, ratios, 2);
}

/* ------------------------------------------------------------------ issue 17: against QEMU */

/* The random and the dense layout, as both sides hold them. */
typedef struct VsLayout {
    DMAMap *maps;
    uint64_t n;
    hwaddr *fwd, *rev;   /* needles: an IOVA and a translated address that a map covers */
    uint64_t *id;        /* ... the id of the map the translated address is in */
    uint64_t mask, next;
    uint32_t *churn;     /* a permutation of the maps: the churn batches take it in turn */
    uint64_t churn_next, batch;
    hwaddr *placed;
    DMAMap *spares;      /* maps overlapping no map of @maps nor each other, not stored */
    uint64_t nspares;
} VsLayout;

/*
 * The fresh-range churn's state, one per side: which map each of the layout's n places holds
 * now (an index into maps, then spares), and a FIFO ring of the maps not stored.  Why a ring
 * as long as several batches: a map inserted has been out for many removals since, so no
 * cache of recently freed ranges (the project's freed-range log holds 16) can hand it back.
 */
typedef struct VsFresh {
    uint32_t *held;      /* n entries */
    uint32_t *out;       /* the ring: nspares entries */
    uint64_t out_head;
    uint64_t next;       /* the next place of the churn permutation */
} VsFresh;

typedef struct VsRun {
    const Side *side;
    void *tree;
    VsLayout *l;
    VsFresh fresh;
} VsRun;

#define RANDOM_PAGES (UINT64_C(1) << 36) /* IOVAs and HVAs below 2^48 */

typedef struct PageSlot {
    uint64_t page;
    uint64_t index;
} PageSlot;

static int cmp_page_slot(const void *a, const void *b)
{
    const PageSlot *x = a, *y = b;
    return x->page < y->page ? -1 : x->page > y->page;
}

/*
 * n distinct random page numbers below RANDOM_PAGES, in draw order.  Collisions are redrawn
 * after a sort; no tree is built for it, because a memory probe must not warm GLib's slice
 * cache before the tree it measures.
 */
static uint64_t *distinct_random_pages(uint64_t n)
{
    uint64_t *pages = xmalloc(n * sizeof(*pages));
    PageSlot *slots = xmalloc(n * sizeof(*slots));
    for (uint64_t i = 0; i < n; i++) {
        pages[i] = rng_below(RANDOM_PAGES);
    }
    for (bool again = true; again;) {
        for (uint64_t i = 0; i < n; i++) {
            slots[i] = (PageSlot){ pages[i], i };
        }
        qsort(slots, n, sizeof(*slots), cmp_page_slot);
        again = false;
        for (uint64_t i = 1; i < n; i++) {
            if (slots[i].page == slots[i - 1].page) {
                pages[slots[i].index] = rng_below(RANDOM_PAGES);
                again = true;
            }
        }
    }
    free(slots);
    return pages;
}

/*
 * random: n 4 KiB maps at random page-aligned IOVAs and random HVAs below 2^48, each map with
 * a hole beside it; dense: n 4 KiB maps at IOVAs 0, 4K, 8K, ... (the only hole at the top),
 * HVAs shuffled.  Distinct GPA-like ids, unless @one_id: every map's id 0 (QEMU's callers
 * without the seed patch, the vIOMMUs), where the project's tree keeps no id tree.  The
 * layout comes from a fixed seed, so that a memory probe in a child builds the same maps.
 */
static void vs_layout(VsLayout *l, uint64_t n, bool random_layout, bool one_id)
{
    uint64_t seed = rng_state;
    rng_state = random_layout ? UINT64_C(0x5eed17) : UINT64_C(0xde05e17);
    l->maps = xmalloc(n * sizeof(*l->maps));
    l->n = n;
    uint64_t batch = n / 100 < 16 ? 16 : n / 100 > CHURN_MAX ? CHURN_MAX : n / 100;
    l->nspares = 4 * batch;
    l->spares = xmalloc(l->nspares * sizeof(*l->spares));
    if (random_layout) {
        uint64_t *pages = distinct_random_pages(n + l->nspares);
        for (uint64_t i = 0; i < l->nspares; i++) {
            l->spares[i] = (DMAMap){ .iova = pages[n + i] * PAGE,
                                     .translated_addr = rng_below(RANDOM_PAGES) * PAGE,
                                     .size = MAP_SIZE, .id = GPA_BASE + (n + i) * PAGE,
                                     .perm = IOMMU_RW };
        }
        for (uint64_t i = 0; i < n; i++) {
            l->maps[i] = (DMAMap){ .iova = pages[i] * PAGE,
                                   .translated_addr = rng_below(RANDOM_PAGES) * PAGE,
                                   .size = MAP_SIZE, .id = GPA_BASE + i * PAGE,
                                   .perm = IOMMU_RW };
        }
        free(pages);
    } else {
        uint32_t *perm = permutation(n);
        for (uint64_t i = 0; i < n; i++) {
            l->maps[i] = (DMAMap){ .iova = i * PAGE, .translated_addr = HVA_BASE + perm[i] * PAGE,
                                   .size = MAP_SIZE, .id = GPA_BASE + i * PAGE,
                                   .perm = IOMMU_RW };
        }
        free(perm);
        for (uint64_t i = 0; i < l->nspares; i++) {
            l->spares[i] = (DMAMap){ .iova = (n + i) * PAGE,
                                     .translated_addr = HVA_BASE + (n + i) * PAGE,
                                     .size = MAP_SIZE, .id = GPA_BASE + (n + i) * PAGE,
                                     .perm = IOMMU_RW };
        }
    }
    for (uint64_t i = 0; one_id && i < n + l->nspares; i++) {
        (i < n ? &l->maps[i] : &l->spares[i - n])->id = 0;
    }
    uint64_t count = query_count(n);
    l->mask = count - 1;
    l->fwd = xmalloc(count * sizeof(hwaddr));
    l->rev = xmalloc(count * sizeof(hwaddr));
    l->id = xmalloc(count * sizeof(uint64_t));
    for (uint64_t i = 0; i < count; i++) {
        const DMAMap *m = &l->maps[rng_below(n)];
        hwaddr off = rng_below(PAGE);
        l->fwd[i] = m->iova + off;
        l->rev[i] = m->translated_addr + off;
        l->id[i] = m->id;
    }
    l->churn = permutation(n);
    l->batch = batch;
    l->placed = xmalloc(l->batch * sizeof(hwaddr));
    rng_state = seed;
}

static void vs_layout_free(VsLayout *l)
{
    free(l->maps);
    free(l->fwd);
    free(l->rev);
    free(l->id);
    free(l->churn);
    free(l->placed);
    free(l->spares);
}

static void *vs_build(const Side *side, const VsLayout *l)
{
    void *tree = side->make();
    for (uint64_t i = 0; i < l->n; i++) {
        int rc = side->insert(tree, &l->maps[i]);
        if (rc != IOVA_OK) {
            die("insert (against QEMU)", rc);
        }
    }
    return tree;
}

static uint64_t vs_churn(VsRun *r, uint64_t iters, bool time_insert)
{
    VsLayout *l = r->l;
    return churn(r->side, r->tree, l->maps, l->n, l->churn, l->batch, &l->churn_next, iters,
                 time_insert);
}

static uint64_t vs_run_insert(void *ctx, uint64_t iters)
{
    return vs_churn(ctx, iters, true);
}

static uint64_t vs_run_remove(void *ctx, uint64_t iters)
{
    return vs_churn(ctx, iters, false);
}

static const DMAMap *vs_map_of(const VsLayout *l, uint32_t index)
{
    return index < l->n ? &l->maps[index] : &l->spares[index - l->n];
}

/*
 * Batches of stored maps taken out, and as many maps put in that were out for at least three
 * batches (the ring's oldest): every insert takes a range that was free long before, as a
 * guest mapping new IOVAs would.  Only the half @time_insert says is timed.
 */
static uint64_t vs_churn_fresh(VsRun *r, uint64_t iters, bool time_insert)
{
    VsLayout *l = r->l;
    VsFresh *f = &r->fresh;
    uint64_t spent = 0;
    for (uint64_t done = 0; done < iters;) {
        uint64_t k = iters - done < l->batch ? iters - done : l->batch;
        if (f->next + k > l->n) {
            f->next = 0;
        }
        const uint32_t *places = &l->churn[f->next];
        f->next += k;
        uint64_t t0 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            r->side->remove(r->tree, vs_map_of(l, f->held[places[j]])->iova);
        }
        uint64_t t1 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            uint32_t in = f->out[(f->out_head + j) % l->nspares];
            int rc = r->side->insert(r->tree, vs_map_of(l, in));
            if (rc != IOVA_OK) {
                die("insert of a fresh range", rc);
            }
        }
        spent += time_insert ? now_ns() - t1 : t1 - t0;
        /* the maps taken out join the ring's end, where the ones put in were */
        for (uint64_t j = 0; j < k; j++) {
            uint64_t slot = (f->out_head + j) % l->nspares;
            uint32_t in = f->out[slot];
            f->out[slot] = f->held[places[j]];
            f->held[places[j]] = in;
        }
        f->out_head = (f->out_head + k) % l->nspares;
        done += k;
    }
    return spent;
}

static uint64_t vs_run_insert_fresh(void *ctx, uint64_t iters)
{
    return vs_churn_fresh(ctx, iters, true);
}

static uint64_t vs_run_remove_fresh(void *ctx, uint64_t iters)
{
    return vs_churn_fresh(ctx, iters, false);
}

static void vs_fresh_begin(VsFresh *f, const VsLayout *l)
{
    f->held = xmalloc(l->n * sizeof(*f->held));
    f->out = xmalloc(l->nspares * sizeof(*f->out));
    for (uint64_t i = 0; i < l->n; i++) {
        f->held[i] = (uint32_t)i;
    }
    for (uint64_t i = 0; i < l->nspares; i++) {
        f->out[i] = (uint32_t)(l->n + i);
    }
    f->out_head = 0;
    f->next = 0;
}

/* The layout's own maps back in their places, so that both sides hold the same tree again. */
static void vs_fresh_end(VsRun *r)
{
    VsLayout *l = r->l;
    VsFresh *f = &r->fresh;
    for (uint64_t i = 0; i < l->n; i++) {
        if (f->held[i] != i) {
            r->side->remove(r->tree, vs_map_of(l, f->held[i])->iova);
        }
    }
    for (uint64_t i = 0; i < l->n; i++) {
        int rc = f->held[i] != i ? r->side->insert(r->tree, &l->maps[i]) : IOVA_OK;
        if (rc != IOVA_OK) {
            die("insert of a layout map again", rc);
        }
    }
    free(f->held);
    free(f->out);
}

/* First-fit allocations of one page, in batches removed outside the clock. */
static uint64_t vs_run_alloc(void *ctx, uint64_t iters)
{
    VsRun *r = ctx;
    VsLayout *l = r->l;
    uint64_t spent = 0;
    for (uint64_t done = 0; done < iters;) {
        uint64_t k = iters - done < l->batch ? iters - done : l->batch;
        uint64_t t0 = now_ns();
        for (uint64_t j = 0; j < k; j++) {
            int rc = r->side->alloc(r->tree, MAP_SIZE, &l->placed[j]);
            if (rc != IOVA_OK) {
                die("alloc (against QEMU)", rc);
            }
        }
        spent += now_ns() - t0;
        for (uint64_t j = 0; j < k; j++) {
            r->side->remove(r->tree, l->placed[j]);
        }
        done += k;
    }
    return spent;
}

/*
 * First-fit allocations of one page, each timed alone and removed outside the clock before
 * the next: every call meets the layout itself.  Why beside the batches: a batch's first fits
 * fill the lowest holes one after the other, so QEMU's walk passes the batch's own earlier
 * maps (half a batch on average, 500 maps at 100k) before it meets a hole, a cost of the batch
 * and not of the layout.  The clock read around each call costs both sides the same.
 */
static uint64_t vs_run_alloc_single(void *ctx, uint64_t iters)
{
    VsRun *r = ctx;
    uint64_t spent = 0;
    for (uint64_t i = 0; i < iters; i++) {
        hwaddr iova;
        uint64_t t0 = now_ns();
        int rc = r->side->alloc(r->tree, MAP_SIZE, &iova);
        spent += now_ns() - t0;
        if (rc != IOVA_OK) {
            die("alloc (against QEMU)", rc);
        }
        r->side->remove(r->tree, iova);
    }
    return spent;
}

static uint64_t vs_run_find(void *ctx, uint64_t iters)
{
    VsRun *r = ctx;
    VsLayout *l = r->l;
    uint64_t base = l->next, acc = 0;
    l->next += iters;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        acc += r->side->find(r->tree, l->fwd[(base + i) & l->mask]);
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

static uint64_t vs_run_find_iova(void *ctx, uint64_t iters)
{
    VsRun *r = ctx;
    VsLayout *l = r->l;
    uint64_t base = l->next, acc = 0;
    l->next += iters;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t q = (base + i) & l->mask;
        acc += r->side->find_iova(r->tree, l->rev[q], l->id[q]);
    }
    uint64_t dt = now_ns() - t0;
    sink += acc;
    return dt;
}

/* Both sides answer the same: a comparison of wrong answers is worthless. */
static void vs_cross_check(const VsLayout *l, void *ours, void *qemu)
{
#ifdef IOVA_BENCH_QEMU
    for (uint64_t i = 0; i < 256 && i <= l->mask; i++) {
        if (ours_find(ours, l->fwd[i]) != qemu_find(qemu, l->fwd[i]) ||
            ours_find_iova(ours, l->rev[i], l->id[i]) !=
                qemu_find_iova(qemu, l->rev[i], l->id[i])) {
            fprintf(stderr, "iova-bench: the project and QEMU disagree at needle %" PRIu64
                    "\n", i);
            exit(3);
        }
    }
    hwaddr a, b;
    if (ours_alloc(ours, MAP_SIZE, &a) != IOVA_OK || qemu_alloc(qemu, MAP_SIZE, &b) != IOVA_OK ||
        a != b) {
        fprintf(stderr, "iova-bench: the project and QEMU allocate differently\n");
        exit(3);
    }
    ours_remove(ours, a);
    qemu_remove(qemu, b);
#else
    (void)l;
    (void)ours;
    (void)qemu;
#endif
}

static void vs_measure(const Options *o, Table *t, int s, const Side *side, void *tree,
                       VsLayout *l)
{
    /* NULL: the first alloc, timed alone (the project's builds its holes there) */
    static const struct { const char *row; RunFn fn; } ops[] = {
        { "insert", vs_run_insert },
        { "remove", vs_run_remove },
        { "first alloc (builds the holes)", NULL },
        { "alloc, first fit", vs_run_alloc },
        { "alloc, first fit, one at a time", vs_run_alloc_single },
        { "insert, after an alloc", vs_run_insert },
        { "remove, after an alloc", vs_run_remove },
        { "find", vs_run_find },
        { "find_iova (with id)", vs_run_find_iova },
        { "insert of a fresh range, after an alloc", vs_run_insert_fresh },
        { "remove, fresh ranges, after an alloc", vs_run_remove_fresh },
    };
    VsRun r = { side, tree, l, { 0 } };
    vs_fresh_begin(&r.fresh, l);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        double ns;
        if (ops[i].fn) {
            ns = measure(o, ops[i].fn, &r);
        } else {
            hwaddr iova;
            uint64_t t0 = now_ns();
            int rc = side->alloc(tree, MAP_SIZE, &iova);
            ns = (double)(now_ns() - t0);
            if (rc != IOVA_OK) {
                die("first alloc", rc);
            }
            side->remove(tree, iova);
        }
        /* the row names live as long as the table: the process */
        table_set(t, g_strconcat(ops[i].row, side->suffix, NULL), s, ns);
    }
    vs_fresh_end(&r);
}

static void bench_vs_qemu(const Options *o)
{
    static Table tables[3] = {
        { .key = "vs-random", .unit = "ns/op",
          .title = "Random layout: 4 KiB maps at random IOVAs and HVAs below 2^48" },
        { .key = "vs-dense", .unit = "ns/op",
          .title = "Dense layout: 4 KiB maps at IOVAs 0, 4K, 8K, ..., shuffled HVAs" },
        { .key = "vs-random-one-id", .unit = "ns/op",
          .title = "Random layout, every map's id 0 (QEMU's callers without the seed patch, "
                   "the vIOMMUs): the project keeps no id tree" },
    };
    enum { NTABLES = sizeof(tables) / sizeof(tables[0]) };
    for (int k = 0; k < NTABLES; k++) {
        for (int s = 0; s < o->nsizes; s++) {
            VsLayout l = { 0 };
            vs_layout(&l, o->sizes[s], k != 1, k == 2);
            void *ours = vs_build(&side_ours, &l);
#ifdef IOVA_BENCH_QEMU
            void *qemu = vs_build(&side_qemu, &l);
#else
            void *qemu = NULL;
#endif
            vs_measure(o, &tables[k], s, &side_ours, ours, &l);
#ifdef IOVA_BENCH_QEMU
            vs_measure(o, &tables[k], s, &side_qemu, qemu, &l);
#endif
            vs_cross_check(&l, ours, qemu);
#ifdef IOVA_BENCH_QEMU
            side_qemu.destroy(qemu);
#endif
            char err[256];
            if (iova_tree_check(ours, err, sizeof(err)) != 0) {
                fprintf(stderr, "iova-bench: tree broken after the QEMU comparison: %s\n", err);
                exit(3);
            }
            side_ours.destroy(ours);
            vs_layout_free(&l);
        }
    }
    printf("\n## The C core against QEMU's own util/iova-tree.c (ns/op)\n");
    if (!HAVE_QEMU) {
        printf("\nQEMU's util/iova-tree.c is not in this build (scripts/build-tools.sh "
               "looks in ../shared/qemu, or $IOVA_QEMU_DIR, and says why it left it out): its "
               "rows are missing.\n");
    } else {
        printf("\nQEMU's util/iova-tree.c with the seed patch (`id` in DMAMap), compiled from "
               "../shared/qemu into this binary under qemu_-prefixed names, measured in the "
               "same run on the same maps and needles.  insert/remove: batches of random stored "
               "maps taken out and put back, one half timed, before the tree's first alloc (the "
               "project's tree keeps no holes until then) and after it; the first alloc timed "
               "alone (the project's builds its holes from the maps there, once); alloc: first "
               "fit of one page in [0, 2^64-1], batches removed outside the clock, and one at a "
               "time: each alloc timed alone (the clock read, about 30 ns, in both sides' "
               "figures) and removed before the next, because a batch's first fits fill the "
               "lowest holes in turn and QEMU's walk then passes the batch's own earlier maps "
               "(half a batch on average: 500 maps at 100k), a cost of the batch, not of the "
               "layout; find_iova: QEMU walks the tree.  The rows \"after an alloc\" put back the maps the batch "
               "took out, which the project's freed-range log (16 ranges) cancels where a batch "
               "is 16 maps (N = 1k); the \"fresh range\" rows put in, for each map taken out, a "
               "map out of the tree for three batches or more, a range no such log holds.\n");
    }
    static const RatioSpec ratios[] = {
        { "insert, project / QEMU", "insert", "insert (QEMU)" },
        { "remove, project / QEMU", "remove", "remove (QEMU)" },
        { "insert after an alloc, project / QEMU", "insert, after an alloc",
          "insert, after an alloc (QEMU)" },
        { "remove after an alloc, project / QEMU", "remove, after an alloc",
          "remove, after an alloc (QEMU)" },
        { "insert of a fresh range after an alloc, project / QEMU",
          "insert of a fresh range, after an alloc",
          "insert of a fresh range, after an alloc (QEMU)" },
        { "remove, fresh ranges, after an alloc, project / QEMU",
          "remove, fresh ranges, after an alloc", "remove, fresh ranges, after an alloc (QEMU)" },
        { "alloc first fit, project / QEMU", "alloc, first fit", "alloc, first fit (QEMU)" },
        { "alloc first fit one at a time, project / QEMU", "alloc, first fit, one at a time",
          "alloc, first fit, one at a time (QEMU)" },
        { "find, project / QEMU", "find", "find (QEMU)" },
        { "find_iova, project / QEMU", "find_iova (with id)", "find_iova (with id) (QEMU)" },
    };
    for (int k = 0; k < NTABLES; k++) {
        print_table(&tables[k]);
        if (HAVE_QEMU) {
            print_ratios(&tables[k], ratios, (int)(sizeof(ratios) / sizeof(ratios[0])));
        }
    }
}

/* ------------------------------------------------------------------ issue 17: Linux anchor */

#define ANCHOR_MAPS 300000
#define ANCHOR_OPS 1000
#define ANCHOR_RUNS 5
#define ANCHOR_LAST ((UINT64_C(1) << 32) - 1) /* a 32-bit DMA mask, as Linux's DMA32 */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static hwaddr anchor_alloc(IOVATree *tree)
{
    DMAMap m = { .translated_addr = HVA_BASE, .size = MAP_SIZE, .perm = IOMMU_RW };
    int rc = iova_tree_alloc_map_full(tree, &m, PAGE, ANCHOR_LAST, PAGE, IOVA_ALLOC_LAST);
    if (rc != IOVA_OK) {
        die("anchor alloc", rc);
    }
    return m.iova;
}

/*
 * The workload the 2022 augmented-rbtree patch for Linux's alloc_iova() was measured on: 300k
 * one-page IOVAs allocated top-down, then 1000 times: free a random one, allocate one page
 * (policy "last").  Each allocation is timed on its own; the run of 1000 with the lowest mean
 * of ANCHOR_RUNS (on the same tree, one after the other) is reported.
 */
static void bench_anchor(const Options *o)
{
    (void)o;
    IOVATree *tree = iova_tree_new();
    hwaddr *live = xmalloc(ANCHOR_MAPS * sizeof(hwaddr));
    for (uint64_t i = 0; i < ANCHOR_MAPS; i++) {
        live[i] = anchor_alloc(tree);
    }
    uint64_t alloc_ns[ANCHOR_OPS], pair_ns[ANCHOR_OPS];
    double best_mean = INFINITY, best_p99 = 0, best_pair_mean = 0, best_pair_p99 = 0;
    for (int run = 0; run < ANCHOR_RUNS; run++) {
        double sum = 0, pair_sum = 0;
        for (int i = 0; i < ANCHOR_OPS; i++) {
            uint64_t k = rng_below(ANCHOR_MAPS);
            DMAMap gone = { .iova = live[k], .size = MAP_SIZE };
            uint64_t t0 = now_ns();
            if (iova_tree_remove_count(tree, gone) != 1) {
                die("anchor remove", -1);
            }
            uint64_t t1 = now_ns();
            live[k] = anchor_alloc(tree);
            uint64_t t2 = now_ns();
            alloc_ns[i] = t2 - t1;
            pair_ns[i] = t2 - t0;
            sum += (double)alloc_ns[i];
            pair_sum += (double)pair_ns[i];
        }
        if (sum / ANCHOR_OPS < best_mean) {
            qsort(alloc_ns, ANCHOR_OPS, sizeof(uint64_t), cmp_u64);
            qsort(pair_ns, ANCHOR_OPS, sizeof(uint64_t), cmp_u64);
            best_mean = sum / ANCHOR_OPS;
            best_p99 = (double)alloc_ns[ANCHOR_OPS * 99 / 100];
            best_pair_mean = pair_sum / ANCHOR_OPS;
            best_pair_p99 = (double)pair_ns[ANCHOR_OPS * 99 / 100];
        }
    }
    char err[256];
    if (iova_tree_nnodes(tree) != ANCHOR_MAPS || iova_tree_check(tree, err, sizeof(err)) != 0) {
        fprintf(stderr, "iova-bench: anchor tree broken: %s\n", err);
        exit(3);
    }
    iova_tree_destroy(tree);
    free(live);
    printf("\n## The Linux allocator anchor\n\n%d one-page IOVAs allocated "
           "top-down in [4K, 2^32-1], then %d times: free a random one, allocate one page, "
           "policy last, alignment 4K.  Each call timed alone (clock_gettime around it); the "
           "best of %d runs of %d.  Linux's alloc_iova() with the 2022 augmented rbtree: "
           "661 ns mean on this workload (3164 ns before).\n\n", ANCHOR_MAPS, ANCHOR_OPS,
           ANCHOR_RUNS, ANCHOR_OPS);
    printf("| op | mean ns | p99 ns |\n|---|---:|---:|\n");
    printf("| alloc (policy last) | %.0f | %.0f |\n", best_mean, best_p99);
    printf("| free + alloc | %.0f | %.0f |\n", best_pair_mean, best_pair_p99);
    if (opts->tsv) {
        fprintf(opts->tsv, "anchor\talloc mean\t%d\t%.4f\n", ANCHOR_MAPS, best_mean);
        fprintf(opts->tsv, "anchor\talloc p99\t%d\t%.4f\n", ANCHOR_MAPS, best_p99);
        fprintf(opts->tsv, "anchor\tfree + alloc mean\t%d\t%.4f\n", ANCHOR_MAPS,
                best_pair_mean);
        fprintf(opts->tsv, "anchor\tfree + alloc p99\t%d\t%.4f\n", ANCHOR_MAPS,
                best_pair_p99);
    }
}

/* ------------------------------------------------------------------ issue 17: misaligned holes */

#define MIS_BASE (UINT64_C(1) << 30) /* an aligned hole [0, MIS_BASE) below the maps */
#define MIS_ALIGN UINT64_C(0x2000)

typedef struct MisBench {
    IOVATree *tree;
    uint64_t n;
    IOVAAllocPolicy policy;
    hwaddr expect;
} MisBench;

static hwaddr mis_alloc(MisBench *b)
{
    DMAMap m = { .translated_addr = HVA_BASE, .size = MAP_SIZE, .perm = IOMMU_RW };
    hwaddr end = MIS_BASE + 2 * b->n * PAGE; /* first byte above the maps */
    int rc = b->policy == IOVA_ALLOC_FIRST
                 ? iova_tree_alloc_map_full(b->tree, &m, MIS_BASE, HWADDR_MAX, MIS_ALIGN,
                                            IOVA_ALLOC_FIRST)
                 : iova_tree_alloc_map_full(b->tree, &m, 0, end - 1, MIS_ALIGN,
                                            IOVA_ALLOC_LAST);
    if (rc != IOVA_OK || m.iova != b->expect) {
        fprintf(stderr, "iova-bench: misaligned-holes alloc gave %d at %#" PRIx64 "\n", rc,
                m.iova);
        exit(3);
    }
    return m.iova;
}

static uint64_t run_mis(void *ctx, uint64_t iters)
{
    MisBench *b = ctx;
    uint64_t spent = 0;
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t t0 = now_ns();
        hwaddr iova = mis_alloc(b);
        spent += now_ns() - t0;
        DMAMap gone = { .iova = iova, .size = MAP_SIZE };
        sink += iova_tree_remove_count(b->tree, gone);
    }
    return spent;
}

/*
 * n one-page maps at every even page from MIS_BASE, a 4 KiB hole at every odd page: every hole
 * is long enough for alloc(0xfff) but none is 8 KiB aligned.  First fit from MIS_BASE lands
 * above the maps, last fit up to the maps' end lands below them: both must pass every misaligned
 * hole to get there.
 */
static void bench_misaligned(const Options *o)
{
    static const uint64_t sizes[2] = { 10000, 160000 };
    double ns[2][2];
    for (int s = 0; s < 2; s++) {
        MisBench b = { .tree = iova_tree_new(), .n = sizes[s] };
        for (uint64_t i = 0; i < b.n; i++) {
            DMAMap m = { .iova = MIS_BASE + 2 * i * PAGE, .translated_addr = HVA_BASE + i * PAGE,
                         .size = MAP_SIZE, .perm = IOMMU_RW };
            int rc = iova_tree_insert(b.tree, &m);
            if (rc != IOVA_OK) {
                die("iova_tree_insert", rc);
            }
        }
        for (int p = 0; p < 2; p++) {
            b.policy = p ? IOVA_ALLOC_LAST : IOVA_ALLOC_FIRST;
            b.expect = p ? MIS_BASE - MIS_ALIGN : MIS_BASE + 2 * b.n * PAGE;
            holes_warm(b.tree);
            ns[s][p] = measure(o, run_mis, &b);
        }
        iova_tree_destroy(b.tree);
    }
    printf("\n## Misaligned holes\n\nN one-page maps at every even page from 1 GiB, "
           "a 4 KiB hole at every odd page; `alloc(0xfff, align=0x2000)`: first fit from "
           "1 GiB (lands above the maps), last fit below the maps' end (lands below them).  "
           "Each hole is long enough, none is aligned.  ns per alloc (the map removed outside "
           "the clock).\n\n| policy | N=10k | N=160k | 160k / 10k |\n|---|---:|---:|---:|\n");
    for (int p = 0; p < 2; p++) {
        const char *name = p ? "last" : "first";
        printf("| %s | %.0f | %.0f | %.2f× |\n", name, ns[0][p], ns[1][p], ns[1][p] / ns[0][p]);
        if (opts->tsv) {
            for (int s = 0; s < 2; s++) {
                fprintf(opts->tsv, "misaligned\t%s\t%" PRIu64 "\t%.4f\n", name, sizes[s],
                        ns[s][p]);
            }
        }
    }
}

/* ------------------------------------------------------------------ memory per map */

/* Bytes per map of structure @kind (see mem_rows) of @n maps, built in this process. */
static double mem_build(int kind, uint64_t n)
{
    double bytes = NAN;
    if (kind < 3) {
        Layout l = { 0 };
        layout_makers[kind](&l, n);
        bytes = l.bytes_per_map;
    } else if (kind == 3) {
        VhostBench b = { 0 };
        vhost_build(&b, n, &bytes);
    } else {
        VsLayout l = { 0 };
        vs_layout(&l, n, kind == 4 || kind == 6 || kind == 8, false);
#ifdef IOVA_BENCH_QEMU
        const Side *side = kind == 6 || kind == 7 ? &side_qemu : &side_ours;
#else
        const Side *side = &side_ours;
        if (kind == 6 || kind == 7) {
            return NAN;
        }
#endif
        size_t before = heap_in_use();
        void *tree = vs_build(side, &l);
        if (kind == 8) {
            hwaddr iova; /* the first alloc builds the holes: a hole beside every map */
            if (side->alloc(tree, MAP_SIZE, &iova) != IOVA_OK) {
                die("alloc (memory probe)", -1);
            }
        }
        size_t mapped = side == &side_ours ? iova_tree_mapped_bytes(tree) : 0;
        bytes = (double)(heap_in_use() - before + mapped) / (double)n;
    }
    return bytes;
}

static const char *const mem_rows[9] = {
    "IOVATree, layout (a)", "IOVATree, layout (b)", "IOVATree, layout (c)",
    "VhostIOVATree (map + its allocation)", "IOVATree, random layout", "IOVATree, dense layout",
    "QEMU's tree, random layout", "QEMU's tree, dense layout",
    "IOVATree, random layout, after one alloc (holes built)",
};

/*
 * mem_build() in a child, forked before anything else ran.  Why a child: GLib's slice
 * allocator keeps the nodes of a destroyed tree cached for reuse, so a second build in one
 * process would be undercounted; each child starts from the parent's untouched heap.  With
 * @always_malloc the child re-executes this program with G_SLICE=always-malloc (read once,
 * when GLib starts), so that each GTree node is one malloc() as in GLib 2.76 and later.
 */
static double mem_probe(int kind, uint64_t n, bool always_malloc)
{
    int fds[2];
    if (pipe(fds) != 0) {
        die("pipe", errno);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        die("fork", errno);
    }
    if (pid == 0) {
        close(fds[0]);
        if (always_malloc) {
            char kind_s[8], n_s[24], fd_s[8];
            snprintf(kind_s, sizeof(kind_s), "%d", kind);
            snprintf(n_s, sizeof(n_s), "%" PRIu64, n);
            snprintf(fd_s, sizeof(fd_s), "%d", fds[1]);
            setenv("G_SLICE", "always-malloc", 1);
            execl("/proc/self/exe", "iova-bench", "--mem-child", kind_s, n_s, fd_s,
                  (char *)NULL);
            _exit(127);
        }
        double bytes = mem_build(kind, n);
        ssize_t w = write(fds[1], &bytes, sizeof(bytes));
        _exit(w == (ssize_t)sizeof(bytes) ? 0 : 1);
    }
    close(fds[1]);
    double bytes = NAN;
    if (read(fds[0], &bytes, sizeof(bytes)) != (ssize_t)sizeof(bytes)) {
        bytes = NAN;
    }
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        die("memory probe child", status);
    }
    return bytes;
}

/* The re-executed child of mem_probe(): iova-bench --mem-child KIND N FD. */
static int mem_child(char **argv)
{
    int kind = atoi(argv[0]);
    uint64_t n = strtoull(argv[1], NULL, 10);
    int fd = atoi(argv[2]);
    opts = &(Options){ 0 };
    double bytes = mem_build(kind, n);
    return write(fd, &bytes, sizeof(bytes)) == (ssize_t)sizeof(bytes) ? 0 : 1;
}

static void bench_memory(const Options *o, Table *mem)
{
    for (int kind = 0; kind < 9; kind++) {
        if ((kind == 6 || kind == 7) && !HAVE_QEMU) {
            continue;
        }
        for (int s = 0; s < o->nsizes; s++) {
            table_set(mem, mem_rows[kind], s, mem_probe(kind, o->sizes[s], false));
        }
    }
    static const char *const malloc_rows[4] = {
        "IOVATree, random layout, G_SLICE=always-malloc",
        "IOVATree, dense layout, G_SLICE=always-malloc",
        "QEMU's tree, random layout, G_SLICE=always-malloc",
        "QEMU's tree, dense layout, G_SLICE=always-malloc",
    };
    for (int kind = 4; kind < 8; kind++) {
        if (kind >= 6 && !HAVE_QEMU) {
            continue;
        }
        for (int s = 0; s < o->nsizes; s++) {
            table_set(mem, malloc_rows[kind - 4], s, mem_probe(kind, o->sizes[s], true));
        }
    }
}

static void print_memory(const Table *mem)
{
    printf("\n## Memory\n\nglibc `mallinfo2()` bytes in use after building the structure minus "
           "before, over N, each in a fresh child process: GTree node, the entry with the "
           "reverse and id trees' links, holes, arena blocks (4096 entries at a time, hence the "
           "overhead at small N).  A VhostIOVATree map also has its allocation, a second "
           "IOVATree entry.  QEMU's tree: its GTree node and a g_new0() DMAMap a map.  GLib "
           "%u.%u's default slice allocator (GSlice magazines) holds each 40-byte GTree node; "
           "the G_SLICE=always-malloc rows (a child re-executed with it) give each node one "
           "malloc(), as every GLib from 2.76 on does.\n", glib_major_version,
           glib_minor_version);
    print_table(mem);
}

/* ------------------------------------------------------------------ main */

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) {
        return false;
    }
    if (*end == 'k' || *end == 'K') {
        v *= 1e3;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        v *= 1e6;
        end++;
    }
    if (*end != '\0' || v < 8 || v > 4e9) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static bool parse_sizes(Options *o, const char *arg)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    o->nsizes = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (o->nsizes == MAX_SIZES || !parse_size(tok, &o->sizes[o->nsizes])) {
            return false;
        }
        o->nsizes++;
    }
    return o->nsizes > 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: iova-bench [--quick] [--sizes 1k,10k,100k,1M] [--budget-ms MS]\n"
               "                  [--frag-ops N] [--tsv FILE]\n"
               "                  [--only mem,layouts,alloc,frag,vhost,qemu,anchor,misaligned]\n");
}

static const char *arg_value(int argc, char **argv, int *i)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq) {
        return eq + 1;
    }
    if (*i + 1 >= argc) {
        usage(stderr);
        exit(2);
    }
    return argv[++*i];
}

static bool flag_is(const char *arg, const char *name)
{
    size_t len = strlen(name);
    return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

static void parse_args(Options *o, int argc, char **argv)
{
    bool sizes_given = false, frag_given = false;
    double budget_ms = -1;
    const char *tsv = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
        } else if (flag_is(argv[i], "--sizes")) {
            sizes_given = parse_sizes(o, arg_value(argc, argv, &i));
            if (!sizes_given) {
                fprintf(stderr, "iova-bench: bad --sizes (e.g. 1k,10k,100k,1M; at most %d)\n",
                        MAX_SIZES);
                exit(2);
            }
        } else if (flag_is(argv[i], "--budget-ms")) {
            const char *text = arg_value(argc, argv, &i);
            char *end;
            budget_ms = strtod(text, &end);
            if (end == text || *end || !(budget_ms > 0 && budget_ms <= 1e6)) {
                fprintf(stderr, "iova-bench: bad --budget-ms '%s' (above 0, at most 1e6)\n",
                        text);
                exit(2);
            }
        } else if (flag_is(argv[i], "--frag-ops")) {
            frag_given = parse_size(arg_value(argc, argv, &i), &o->frag_ops);
            if (!frag_given) {
                fprintf(stderr, "iova-bench: bad --frag-ops (e.g. 100k; 8 to 4e9)\n");
                exit(2);
            }
        } else if (flag_is(argv[i], "--tsv")) {
            tsv = arg_value(argc, argv, &i);
        } else if (flag_is(argv[i], "--only")) {
            char bad[64];
            o->only = arg_value(argc, argv, &i);
            if (unknown_section(o->only, bad, sizeof(bad))) {
                usage(stderr);
                fprintf(stderr, "iova-bench: --only: no section '%s'\n", bad);
                exit(2);
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            exit(2);
        }
    }
    if (!sizes_given) {
        parse_sizes(o, o->quick ? "1k,10k" : "1k,10k,100k,1M");
    }
    o->budget_ns = (uint64_t)((budget_ms > 0 ? budget_ms : o->quick ? 8 : 100) * 1e6);
    if (!frag_given) {
        o->frag_ops = o->quick ? 100000 : 1000000;
    }
    o->frag_pop = o->quick ? 8192 : 65536;
    o->frag_linear_ops = o->quick ? 2000 : 10000; /* each walk passes ~pop/2 maps */
    if (tsv) {
        o->tsv = fopen(tsv, "w");
        if (!o->tsv) {
            perror(tsv);
            exit(2);
        }
    }
}

static void print_preamble(const Options *o)
{
    char cpu[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    printf("# iova-bench: the C core against QEMU's linear walks\n\n");
    char load[64] = "unknown";
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fgets(load, sizeof(load), f)) {
            load[strcspn(load, " ")] = '\0'; /* the 1-minute figure */
        }
        fclose(f);
    }
    printf("CPU: %s; GLib %u.%u.%u; %s; load average %s at the start.  Each figure is the "
           "fastest of the %.0f ms loops that fit in %.0f ms, or, for calls too slow for %d "
           "of them to fill a loop (the O(n) walks), the mean of at least %d calls%s.\n",
           cpu, glib_major_version, glib_minor_version, glib_micro_version,
           o->quick ? "**quick mode**" : "full run", load, (double)LOOP_NS / 1e6,
           (double)o->budget_ns / 1e6, MIN_ITERS_FOR_MIN, MIN_CALLS,
           o->quick ? "; figures are indicative only" : "");
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--mem-child") == 0) {
        return mem_child(&argv[2]);
    }
    Options o = { 0 };
    parse_args(&o, argc, argv);
    opts = &o;
    setvbuf(stdout, NULL, _IOLBF, 0);
    print_preamble(&o);

    static Table mem = { .key = "mem", .title = "Memory per map (heap bytes in use / N)",
                         .unit = "bytes/map" };
    static Table alloc = { .key = "alloc", .title = "Dense 4 KiB maps, hole at the top",
                           .unit = "ns/op" };
    static Table vhost = { .key = "vhost", .title = "VhostIOVATree", .unit = "ns/op" };

    if (section_on(&o, "mem")) {
        bench_memory(&o, &mem); /* first: the probes fork from a heap nothing has used yet */
    }
    if (section_on(&o, "layouts")) {
        bench_layouts(&o);
    }
    if (section_on(&o, "alloc")) {
        bench_alloc_dense(&o, &alloc);
    }
    if (section_on(&o, "frag")) {
        bench_fragmentation(&o);
    }
    if (section_on(&o, "vhost")) {
        bench_vhost(&o, &vhost);
    }
    if (section_on(&o, "qemu")) {
        bench_vs_qemu(&o);
    }
    if (section_on(&o, "anchor")) {
        bench_anchor(&o);
    }
    if (section_on(&o, "misaligned")) {
        bench_misaligned(&o);
    }
    if (mem.nrows) {
        print_memory(&mem);
    }
    if (o.tsv) {
        fclose(o.tsv);
    }
    return 0;
}
