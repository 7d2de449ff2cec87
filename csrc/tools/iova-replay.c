/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iova-replay: replay an op stream against the C core, with no Python in the way.
 *
 * The op stream comes from `iova-native convert TRACE -o ops.bin` (a QEMU vhost-vDPA trace
 * compiled by iova_native/trace.py, which documents the model).  The file is little-endian
 * unsigned 64-bit words: a header (magic "IOVAOPS\0", version 1, 6 words per record, record
 * count), then records `kind, a0, a1, a2, a3, a4`:
 *
 *   0 RANGE       first, last            bounds of ALLOC from here on (not timed)
 *   1 INSERT      iova, hva, size, perm, id        iova_tree_insert
 *   2 ALLOC       traced iova, hva, size, perm, id iova_tree_alloc_map (--linear: _linear)
 *   3 REMOVE      iova, size                       iova_tree_remove
 *   4 FIND_IOVA   hva, size, id, has_id            iova_tree_find_iova[_any] (--linear: _linear)
 *   5 TRANSLATE   hva, length, id, has_id          iova_tree_translate (--linear: a full walk
 *                                                  per segment, as QEMU's look-up would)
 *   6 GPA_INSERT  iova, gpa, size, perm, id        gpa_tree_insert
 *   7 GPA_REMOVE  gpa, size                        iova_tree_remove on the GPA tree
 *   8 FIND_GPA    gpa, size                        iova_tree_find on the GPA tree
 *
 * Sizes are inclusive (DMAMap's), TRANSLATE's length is a byte count.  An ALLOC that lands
 * elsewhere than the trace says is moved there (not timed), so later unmaps still hit.
 *
 * It prints, per operation kind, the count and the mean, p50 and p99 latency in ns, the
 * throughput, and the two digests Python's replay prints (FNV-1a 64 over 64-bit words):
 * "state" over the final trees, "outcomes" over every operation's result.  Both must equal
 * `iova-native replay ops.bin`'s, with and without --linear.
 *
 * Usage: iova-replay [--linear] [--repeat N] [--no-timing] OPS.bin
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iova-tree.h"

#define OPS_MAGIC "IOVAOPS"      /* and a NUL: 8 bytes */
#define OPS_VERSION 1
#define OPS_FIELDS 6
#define OPS_HEADER_WORDS 4
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)
#define IOVA_FIRST_MIN 0x1000

typedef enum {
    OP_RANGE,
    OP_INSERT,
    OP_ALLOC,
    OP_REMOVE,
    OP_FIND_IOVA,
    OP_TRANSLATE,
    OP_GPA_INSERT,
    OP_GPA_REMOVE,
    OP_FIND_GPA,
    OP_KINDS,
} OpKind;

static const char *const op_names[OP_KINDS] = {
    "range", "insert", "alloc", "remove", "find_iova",
    "translate", "gpa_insert", "gpa_remove", "find_gpa",
};

typedef struct ReplayOp {
    uint64_t kind;
    uint64_t a[OPS_FIELDS - 1];
} ReplayOp;

typedef struct OpStream {
    ReplayOp *ops;
    size_t count;
} OpStream;

/* The latencies of one kind of operation, in ns, over every repetition. */
typedef struct KindTimes {
    uint64_t *ns;
    size_t count;
    size_t errors;
} KindTimes;

typedef struct Options {
    const char *path;
    gboolean linear;
    gboolean timing;
    unsigned long repeat;
} Options;

/* One pass over the op stream: the trees and what the pass counted. */
typedef struct Replay {
    IOVATree *iova;
    IOVATree *gpa;
    hwaddr first;
    hwaddr last;
    gboolean linear;
    gboolean timing;
    uint64_t live;
    uint64_t peak;
    uint64_t unmatched;
    uint64_t failed;
    uint64_t allocs;
    uint64_t moved;
    uint64_t outcome;
    IOVASegment *segs;
    size_t segcap;
    KindTimes *times;       /* OP_KINDS entries, shared by every pass */
} Replay;

/* ---------------------------------------------------------------- reading the stream */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/*
 * op_valid: what Python's OpStream.validate() checks, plus the ranges that the C look-ups
 * would answer differently from Python's argument checks (a look-up range that wraps).
 */
static const char *op_invalid(const ReplayOp *op)
{
    const uint64_t *a = op->a;

    switch (op->kind) {
    case OP_INSERT:
    case OP_ALLOC:
    case OP_GPA_INSERT:
        return a[3] >= IOMMU_RO && a[3] <= IOMMU_RW ? NULL : "perm is not 1, 2 or 3";
    case OP_FIND_IOVA:
        if (a[3] > 1) {
            return "has_id is not 0 or 1";
        }
        /* fall through */
    case OP_REMOVE:
    case OP_GPA_REMOVE:
    case OP_FIND_GPA:
        return a[0] + a[1] < a[0] ? "range wraps past 2**64-1" : NULL;
    case OP_TRANSLATE:
        if (a[3] > 1) {
            return "has_id is not 0 or 1";
        }
        return a[1] && a[0] + (a[1] - 1) < a[0] ? "buffer wraps past 2**64-1" : NULL;
    case OP_RANGE:
        return NULL;
    default:
        return "unknown kind";
    }
}

static int read_stream(const char *path, OpStream *stream)
{
    unsigned char header[8 * OPS_HEADER_WORDS];
    FILE *f = fopen(path, "rb");

    if (!f) {
        fprintf(stderr, "iova-replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fread(header, 1, sizeof(header), f) != sizeof(header) ||
        memcmp(header, OPS_MAGIC, 8) != 0) {
        fprintf(stderr, "iova-replay: %s: not an op stream (iova-native convert writes them)\n",
                path);
        fclose(f);
        return -1;
    }
    uint64_t version = le64(header + 8), fields = le64(header + 16), count = le64(header + 24);
    if (version != OPS_VERSION || fields != OPS_FIELDS) {
        fprintf(stderr, "iova-replay: %s: version %" PRIu64 " with %" PRIu64 " fields; this "
                "driver reads version %d with %d\n", path, version, fields, OPS_VERSION,
                OPS_FIELDS);
        fclose(f);
        return -1;
    }
    if (count > SIZE_MAX / sizeof(ReplayOp)) {
        fprintf(stderr, "iova-replay: %s: %" PRIu64 " records is too many\n", path, count);
        fclose(f);
        return -1;
    }
    stream->ops = g_new(ReplayOp, count ? count : 1);
    stream->count = count;
    unsigned char rec[8 * OPS_FIELDS];
    for (size_t i = 0; i < count; i++) {
        if (fread(rec, 1, sizeof(rec), f) != sizeof(rec)) {
            fprintf(stderr, "iova-replay: %s: truncated at record %zu of %" PRIu64 "\n", path,
                    i, count);
            fclose(f);
            return -1;
        }
        stream->ops[i].kind = le64(rec);
        for (int w = 1; w < OPS_FIELDS; w++) {
            stream->ops[i].a[w - 1] = le64(rec + 8 * w);
        }
        const char *why = op_invalid(&stream->ops[i]);
        if (why) {
            fprintf(stderr, "iova-replay: %s: record %zu: %s\n", path, i, why);
            fclose(f);
            return -1;
        }
    }
    int trailing = fgetc(f);
    fclose(f);
    if (trailing != EOF) {
        fprintf(stderr, "iova-replay: %s: data after the %" PRIu64 " records\n", path, count);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- timing and digests */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t tick(const Replay *r)
{
    return r->timing ? now_ns() : 0;
}

/* Record the latency of one call of @kind that started at @t0; count it as failed when @err. */
static void record(Replay *r, OpKind kind, uint64_t t0, gboolean err)
{
    KindTimes *t = &r->times[kind];
    if (r->timing) {
        t->ns[t->count] = now_ns() - t0;
    }
    t->count++;
    t->errors += err;
}

static uint64_t fnv(uint64_t h, uint64_t word)
{
    return (h ^ word) * FNV_PRIME;
}

static void outcome(Replay *r, uint64_t word)
{
    r->outcome = fnv(r->outcome, word);
}

static gboolean digest_step(const DMAMap *m, gpointer opaque)
{
    uint64_t *h = opaque;
    *h = fnv(*h, m->iova);
    *h = fnv(*h, m->translated_addr);
    *h = fnv(*h, m->size);
    *h = fnv(*h, (uint64_t)m->perm);
    *h = fnv(*h, m->id);
    return FALSE;
}

/**
 * state_digest: FNV-1a 64 over the map count and the (iova, translated_addr, size, perm, id)
 * of every map of the IOVA tree in IOVA order, then the same for the GPA tree in GPA order.
 */
static uint64_t state_digest(IOVATree *iova, IOVATree *gpa)
{
    uint64_t h = FNV_OFFSET;
    IOVATree *trees[2] = { iova, gpa };

    for (int i = 0; i < 2; i++) {
        h = fnv(h, iova_tree_nnodes(trees[i]));
        iova_tree_foreach_opaque(trees[i], digest_step, &h);
    }
    return h;
}

/* ---------------------------------------------------------------- the linear translate */

typedef struct LinearCover {
    hwaddr addr;
    const uint64_t *id;
    const DMAMap *best;
} LinearCover;

static gboolean linear_cover_step(const DMAMap *map, gpointer opaque)
{
    LinearCover *c = opaque;

    if (map->translated_addr > c->addr || map->translated_addr + map->size < c->addr ||
        (c->id && map->id != *c->id)) {
        return FALSE;
    }
    /* IOVA order: a later map replaces the best only when it reaches strictly further. */
    if (!c->best ||
        map->translated_addr + map->size > c->best->translated_addr + c->best->size) {
        c->best = map;
    }
    return FALSE;
}

/*
 * linear_translate: iova_tree_translate() with every segment found by a walk over all maps,
 * the cost QEMU's g_tree_foreach() look-up has.  Same answers, same output convention.
 */
static int linear_translate(IOVATree *tree, hwaddr addr, hwaddr length, const uint64_t *id,
                            IOVASegment *segs, size_t cap, size_t *nsegs, hwaddr *fault)
{
    *nsegs = 0;
    if (length == 0) {
        return IOVA_OK;
    }
    hwaddr end = addr + (length - 1);
    for (hwaddr pos = addr;;) {
        LinearCover c = { pos, id, NULL };
        iova_tree_foreach_opaque(tree, linear_cover_step, &c);
        if (!c.best) {
            *fault = pos;
            return IOVA_ERR_TRANSLATION;
        }
        hwaddr map_end = c.best->translated_addr + c.best->size;
        hwaddr stop = map_end < end ? map_end : end;
        if (*nsegs < cap) {
            segs[*nsegs].iova = c.best->iova + (pos - c.best->translated_addr);
            segs[*nsegs].len = stop - pos + 1;
        }
        (*nsegs)++;
        if (stop == end) {
            return IOVA_OK;
        }
        pos = stop + 1;
    }
}

/*
 * ---------------------------------------------------------------- the operations
 *
 * One function per kind, never inlined: callgrind's inclusive cost of op_find_iova, say, is
 * then the cost of the find_iova calls alone (scripts/profile.sh divides it by their count).
 */

static void note_map(Replay *r)
{
    r->live++;
    if (r->live > r->peak) {
        r->peak = r->live;
    }
}

static inline void insert_map(Replay *r, const uint64_t *a, gboolean gpa)
{
    DMAMap map = { .iova = a[0], .translated_addr = a[1], .size = a[2], .perm = a[3],
                   .id = a[4] };
    uint64_t t0 = tick(r);
    int rc = gpa ? gpa_tree_insert(r->gpa, &map) : iova_tree_insert(r->iova, &map);
    record(r, gpa ? OP_GPA_INSERT : OP_INSERT, t0, rc != IOVA_OK);
    outcome(r, (uint64_t)(int64_t)rc);
    if (rc != IOVA_OK) {
        r->failed++;
    } else if (!gpa) {
        note_map(r);
    }
}

static G_GNUC_NO_INLINE void op_insert(Replay *r, const uint64_t *a)
{
    insert_map(r, a, FALSE);
}

static G_GNUC_NO_INLINE void op_gpa_insert(Replay *r, const uint64_t *a)
{
    insert_map(r, a, TRUE);
}

static G_GNUC_NO_INLINE void op_alloc(Replay *r, const uint64_t *a)
{
    DMAMap map = { .translated_addr = a[1], .size = a[2], .perm = a[3], .id = a[4] };
    uint64_t t0 = tick(r);
    int rc = r->linear ? iova_tree_alloc_map_linear(r->iova, &map, r->first, r->last)
                       : iova_tree_alloc_map(r->iova, &map, r->first, r->last);
    record(r, OP_ALLOC, t0, rc != IOVA_OK);
    outcome(r, rc == IOVA_OK ? map.iova : (uint64_t)(int64_t)rc);
    r->allocs++;
    if (rc == IOVA_OK && map.iova == a[0]) {
        note_map(r);
        return;
    }
    /* Not where QEMU put it: move it there, so that the trace's unmaps still hit. */
    r->moved++;
    if (rc == IOVA_OK) {
        iova_tree_remove(r->iova, map);
    }
    map.iova = a[0];
    if (iova_tree_insert(r->iova, &map) == IOVA_OK) {
        note_map(r);
    } else {
        r->failed++;
    }
}

static inline void remove_range(Replay *r, const uint64_t *a, gboolean gpa)
{
    DMAMap map = { .iova = a[0], .translated_addr = a[0], .size = a[1] };
    uint64_t t0 = tick(r);
    size_t n = iova_tree_remove_count(gpa ? r->gpa : r->iova, map);
    record(r, gpa ? OP_GPA_REMOVE : OP_REMOVE, t0, FALSE);
    outcome(r, n);
    if (gpa) {
        return;
    }
    if (n == 0) {
        r->unmatched++;
    }
    r->live -= n;
}

static G_GNUC_NO_INLINE void op_remove(Replay *r, const uint64_t *a)
{
    remove_range(r, a, FALSE);
}

static G_GNUC_NO_INLINE void op_gpa_remove(Replay *r, const uint64_t *a)
{
    remove_range(r, a, TRUE);
}

static G_GNUC_NO_INLINE void op_find_iova(Replay *r, const uint64_t *a)
{
    DMAMap needle = { .translated_addr = a[0], .size = a[1], .id = a[2] };
    const DMAMap *found;
    uint64_t t0 = tick(r);

    if (r->linear) {
        found = iova_tree_find_iova_linear(r->iova, &needle, a[3] != 0);
    } else if (a[3]) {
        found = iova_tree_find_iova(r->iova, &needle);
    } else {
        found = iova_tree_find_iova_any(r->iova, &needle);
    }
    record(r, OP_FIND_IOVA, t0, FALSE);
    outcome(r, found ? found->iova : UINT64_MAX);
}

static G_GNUC_NO_INLINE void op_find_gpa(Replay *r, const uint64_t *a)
{
    DMAMap needle = { .translated_addr = a[0], .size = a[1] };
    uint64_t t0 = tick(r);
    const DMAMap *found = iova_tree_find(r->gpa, &needle);
    record(r, OP_FIND_GPA, t0, FALSE);
    outcome(r, found ? found->iova : UINT64_MAX);
}

static int translate_once(Replay *r, const uint64_t *a, size_t *nsegs, hwaddr *fault)
{
    const uint64_t *id = a[3] ? &a[2] : NULL;

    if (r->linear) {
        return linear_translate(r->iova, a[0], a[1], id, r->segs, r->segcap, nsegs, fault);
    }
    return iova_tree_translate(r->iova, a[0], a[1], id, r->segs, r->segcap, nsegs, fault);
}

static G_GNUC_NO_INLINE void op_translate(Replay *r, const uint64_t *a)
{
    size_t nsegs;
    hwaddr fault = 0;
    uint64_t t0 = tick(r);
    int rc = translate_once(r, a, &nsegs, &fault);
    record(r, OP_TRANSLATE, t0, rc != IOVA_OK);

    if (rc == IOVA_OK && nsegs > r->segcap) {
        /* More segments than the buffer holds: grow it and ask again (not timed). */
        r->segcap = nsegs;
        r->segs = g_renew(IOVASegment, r->segs, r->segcap);
        rc = translate_once(r, a, &nsegs, &fault);
    }
    if (rc == IOVA_ERR_TRANSLATION) {
        outcome(r, UINT64_MAX);
        outcome(r, fault);
        return;
    }
    if (rc != IOVA_OK) {
        outcome(r, (uint64_t)(int64_t)rc);
        return;
    }
    outcome(r, nsegs);
    for (size_t i = 0; i < nsegs; i++) {
        outcome(r, r->segs[i].iova);
        outcome(r, r->segs[i].len);
    }
}

static void run_op(Replay *r, const ReplayOp *op)
{
    switch ((OpKind)op->kind) {
    case OP_RANGE:
        r->first = op->a[0];
        r->last = op->a[1];
        break;
    case OP_INSERT:
        op_insert(r, op->a);
        break;
    case OP_ALLOC:
        op_alloc(r, op->a);
        break;
    case OP_REMOVE:
        op_remove(r, op->a);
        break;
    case OP_FIND_IOVA:
        op_find_iova(r, op->a);
        break;
    case OP_TRANSLATE:
        op_translate(r, op->a);
        break;
    case OP_GPA_INSERT:
        op_gpa_insert(r, op->a);
        break;
    case OP_GPA_REMOVE:
        op_gpa_remove(r, op->a);
        break;
    case OP_FIND_GPA:
        op_find_gpa(r, op->a);
        break;
    case OP_KINDS:
        break;
    }
}

/* ---------------------------------------------------------------- passes and the report */

static void replay_init(Replay *r, const Options *opts, KindTimes *times)
{
    memset(r, 0, sizeof(*r));
    r->iova = iova_tree_new();
    r->gpa = gpa_tree_new();
    r->first = IOVA_FIRST_MIN;
    r->last = HWADDR_MAX;
    r->linear = opts->linear;
    r->timing = opts->timing;
    r->outcome = FNV_OFFSET;
    r->segcap = 16;
    r->segs = g_new(IOVASegment, r->segcap);
    r->times = times;
}

static void replay_fini(Replay *r)
{
    iova_tree_destroy(r->iova);
    iova_tree_destroy(r->gpa);
    g_free(r->segs);
}

/* Verify both trees; a broken invariant is a bug in the core. */
static int replay_check(const Replay *r)
{
    char err[256];

    if (iova_tree_check(r->iova, err, sizeof(err)) < 0 ||
        iova_tree_check(r->gpa, err, sizeof(err)) < 0) {
        fprintf(stderr, "iova-replay: tree check failed: %s\n", err);
        return -1;
    }
    if (iova_tree_nnodes(r->iova) != r->live) {
        fprintf(stderr, "iova-replay: the IOVA tree holds %zu maps, the replay counted %"
                PRIu64 "\n", iova_tree_nnodes(r->iova), r->live);
        return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, the rule Python's replay uses. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned p)
{
    if (n == 0) {
        return 0;
    }
    size_t rank = (p * n + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static uint64_t print_times(KindTimes *times, gboolean timing)
{
    uint64_t total = 0;

    printf("%-10s %9s %9s %9s %9s %7s\n", "op", "count", "mean ns", "p50 ns", "p99 ns",
           "raised");
    for (int k = OP_INSERT; k < OP_KINDS; k++) {
        KindTimes *t = &times[k];
        if (!t->count) {
            continue;
        }
        if (!timing) {
            printf("%-10s %9zu %9s %9s %9s %7zu\n", op_names[k], t->count, "-", "-", "-",
                   t->errors);
            continue;
        }
        uint64_t sum = 0;
        for (size_t i = 0; i < t->count; i++) {
            sum += t->ns[i];
        }
        total += sum;
        qsort(t->ns, t->count, sizeof(uint64_t), cmp_u64);
        printf("%-10s %9zu %9.1f %9" PRIu64 " %9" PRIu64 " %7zu\n", op_names[k], t->count,
               (double)sum / (double)t->count, percentile(t->ns, t->count, 50),
               percentile(t->ns, t->count, 99), t->errors);
    }
    return total;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: iova-replay [--linear] [--repeat N] [--no-timing] OPS.bin\n"
            "  Replay an op stream (iova-native convert TRACE -o OPS.bin) on the C core.\n"
            "  --linear     find_iova and translate walk every map, alloc walks from the\n"
            "               lowest map (QEMU's methods) instead of the reverse and hole trees\n"
            "  --repeat N   replay N times on fresh trees (for profilers); timings over all\n"
            "  --no-timing  no clock around each call (for profilers: less noise)\n");
}

static int parse_options(int argc, char **argv, Options *opts)
{
    *opts = (Options){ .timing = TRUE, .repeat = 1 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--linear")) {
            opts->linear = TRUE;
        } else if (!strcmp(argv[i], "--no-timing")) {
            opts->timing = FALSE;
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            char *end;
            const char *text = argv[++i];
            errno = 0;
            opts->repeat = strtoul(text, &end, 10);
            /* strtoul() reads "-1" as ULONG_MAX: only digits are a count here. */
            if (!g_ascii_isdigit(text[0]) || errno || *end || opts->repeat == 0) {
                fprintf(stderr, "iova-replay: --repeat wants a positive number\n");
                return -1;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        } else if (argv[i][0] == '-' || opts->path) {
            usage(stderr);
            return -1;
        } else {
            opts->path = argv[i];
        }
    }
    if (!opts->path) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static void times_free(KindTimes *times)
{
    for (int k = 0; k < OP_KINDS; k++) {
        g_free(times[k].ns);
    }
    g_free(times);
}

/*
 * One timing slot per call of every pass, or NULL when they cannot be held (a --repeat so
 * large that the count overflows or malloc() says no): g_new() would abort the program.
 */
static KindTimes *times_new(const OpStream *stream, const Options *opts)
{
    KindTimes *times = g_new0(KindTimes, OP_KINDS);
    size_t per_kind[OP_KINDS] = { 0 };

    for (size_t i = 0; i < stream->count; i++) {
        per_kind[stream->ops[i].kind]++;
    }
    for (int k = 0; k < OP_KINDS && opts->timing; k++) {
        if (!per_kind[k]) {
            continue;
        }
        if (per_kind[k] > SIZE_MAX / sizeof(uint64_t) / opts->repeat ||
            !(times[k].ns = g_try_new(uint64_t, per_kind[k] * opts->repeat))) {
            times_free(times);
            return NULL;
        }
    }
    return times;
}

/**
 * replay_pass: run every operation of @stream once.  Never inlined, so that profilers can
 * isolate it: `valgrind --tool=callgrind --toggle-collect=replay_pass` counts the replay alone.
 */
static G_GNUC_NO_INLINE void replay_pass(Replay *r, const OpStream *stream)
{
    for (size_t i = 0; i < stream->count; i++) {
        run_op(r, &stream->ops[i]);
    }
}

/*
 * Replay @stream opts->repeat times; every pass must end with the same digests.  The last
 * pass's counters are printed.
 */
static int run(const OpStream *stream, const Options *opts)
{
    KindTimes *times = times_new(stream, opts);
    Replay r;
    uint64_t state = 0, outcomes = 0, wall = 0;
    int rc = 0;

    if (!times) {
        fprintf(stderr, "iova-replay: no memory for the timings of %zu ops x %lu passes "
                "(--no-timing, or a smaller --repeat)\n", stream->count, opts->repeat);
        return -1;
    }

    for (unsigned long pass = 0; pass < opts->repeat && rc == 0; pass++) {
        replay_init(&r, opts, times);
        uint64_t start = now_ns();
        replay_pass(&r, stream);
        wall += now_ns() - start;
        rc = replay_check(&r);
        uint64_t digest = state_digest(r.iova, r.gpa);
        if (pass > 0 && (digest != state || r.outcome != outcomes)) {
            fprintf(stderr, "iova-replay: pass %lu ended in another state\n", pass + 1);
            rc = -1;
        }
        state = digest;
        outcomes = r.outcome;
        if (pass + 1 < opts->repeat || rc != 0) {
            replay_fini(&r);
        }
    }
    if (rc != 0) {
        times_free(times);
        return rc;
    }
    size_t total_ops = stream->count * opts->repeat;
    printf("iova-replay: %s: %zu ops x %lu, %s\n", opts->path, stream->count, opts->repeat,
           opts->linear ? "--linear: find_iova/translate walk every map, alloc walks the maps"
                        : "find_iova/translate through the reverse tree, alloc the hole tree");
    uint64_t timed = print_times(times, opts->timing);
    printf("run      %zu ops in %.3f s: %.0f ops/s", total_ops, (double)wall / 1e9,
           (double)total_ops / ((double)wall / 1e9));
    if (opts->timing) {
        printf(" (%.0f ns/op inside the timed calls)", (double)timed / (double)total_ops);
    }
    printf("\nmaps     %" PRIu64 " live at the end, peak %" PRIu64 "; GPA tree: %zu live\n",
           r.live, r.peak, iova_tree_nnodes(r.gpa));
    printf("unmaps   %" PRIu64 " matched nothing; %" PRIu64 " map operations failed; "
           "alloc %" PRIu64 "/%" PRIu64 " where the trace put them\n", r.unmatched, r.failed,
           r.allocs - r.moved, r.allocs);
    printf("digest   state 0x%016" PRIx64 "  outcomes 0x%016" PRIx64 "\n", state, outcomes);
    replay_fini(&r);
    times_free(times);
    return 0;
}

int main(int argc, char **argv)
{
    Options opts;
    OpStream stream = { NULL, 0 };

    if (parse_options(argc, argv, &opts) < 0) {
        return 2;
    }
    if (read_stream(opts.path, &stream) < 0) {
        g_free(stream.ops);
        return 2;
    }
    int rc = run(&stream, &opts);
    g_free(stream.ops);
    return rc == 0 ? 0 : 1;
}
