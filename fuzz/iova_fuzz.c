/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iova_fuzz: libFuzzer harness for the C core alone (csrc/), no Python, no binding lock.
 *
 * The input bytes are decoded into a sequence of operations on three objects at once: an
 * IOVATree, a GPATree (gpa_tree_new) and a VhostIOVATree.  Beside each object runs a
 * brute-force model, a plain array of maps written here from docs/contract.md and independent of the
 * core's reverse tree, hole tree and AVL code.  After every operation:
 *   - every answer (return code, map found, segments, fault address, IOVA allocated,
 *     number removed) must equal the model's;
 *   - iova_tree_check() / vhost_iova_tree_check() must pass;
 *   - the tree's full contents (iova_tree_foreach, iova_tree_next, iova_tree_nnodes) must
 *     equal the model's.
 * The O(n) reference paths of the core itself are cross-checked too:
 * iova_tree_find_iova_linear() against find_iova/find_iova_any, and
 * the range walks of iova-range.h against the model's every overlap (after each find and
 * find_iova), and iova_tree_alloc_map_linear() is one of the three allocators the fuzzer may pick (all three
 * must give the model's answer).  The batch loop and the listing helper of the binding layer
 * (ib_batch, ib_copy_maps in iova-guard.h) are checked against the same model.
 *
 * Any difference prints both sides and aborts, so libFuzzer saves the input as a crash.
 *
 * Build (scripts/fuzz.sh does this):
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -Icsrc $(pkg-config --cflags glib-2.0) fuzz/iova_fuzz.c csrc/iova-*.c csrc/vhost-*.c \
 *         $(pkg-config --libs glib-2.0) -o build/fuzz/iova_fuzz
 * With -DIOVA_FUZZ_STANDALONE (any C compiler, no libFuzzer) it builds a replayer instead:
 * `iova_fuzz FILE...` runs each file once (for valgrind, gdb, or a gcc build).
 */
#include <glib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iova-binding.h"
#include "iova-guard.h"
#include "iova-range.h"
#include "iova-tree.h"
#include "vhost-iova-tree.h"

#define MAX_MAPS 96  /* the models stay small so that O(n^2) brute force stays fast */
#define MAX_SEGS 8   /* segment buffer handed to translate(): smaller than some answers */
#define MAX_DRAWN 8    /* addresses a batch draws from the input */
#define MAX_BATCH 320  /* long batches repeat them, past the 128 from which ib_batch sorts */

/* ------------------------------------------------------------------ failure reporting */

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "iova_fuzz: MISMATCH: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define X "%#" G_GINT64_MODIFIER "x"

/* IOVA_FUZZ_TRACE=1 (standalone replayer) prints every operation before it runs. */
static gboolean g_trace;
static const char *g_where = "setup"; /* which object the current operation is on */
#define TRACE(...)                                                                           \
    do {                                                                                     \
        if (g_trace) {                                                                       \
            fprintf(stderr, "%s.", g_where);                                                 \
            fprintf(stderr, __VA_ARGS__);                                                    \
        }                                                                                    \
    } while (0)

static void print_map(const char *what, const DMAMap *m)
{
    if (m) {
        fprintf(stderr, "  %s: iova=" X " taddr=" X " size=" X " id=" X " perm=%d\n", what,
                m->iova, m->translated_addr, m->size, m->id, (int)m->perm);
    } else {
        fprintf(stderr, "  %s: (none)\n", what);
    }
}

static void expect_same_map(const char *op, const DMAMap *got, const DMAMap *want)
{
    if (!got && !want) {
        return;
    }
    if (got && want && got->iova == want->iova && got->translated_addr == want->translated_addr &&
        got->size == want->size && got->id == want->id && got->perm == want->perm) {
        return;
    }
    print_map("core ", got);
    print_map("model", want);
    fail("%s answered a different map", op);
}

static void expect_rc(const char *op, long got, long want)
{
    if (got != want) {
        fail("%s answered %ld, the model %ld", op, got, want);
    }
}

/* ------------------------------------------------------------------ input decoding */

typedef struct Input {
    const uint8_t *p;
    size_t n;
} Input;

static uint8_t u8(Input *in)
{
    if (in->n == 0) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

static uint64_t u64(Input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | u8(in);
    }
    return v;
}

/* An address: mostly from a small window so that maps collide, sometimes an edge case. */
static uint64_t addr(Input *in)
{
    uint8_t sel = u8(in);
    switch (sel & 7) {
    case 0:
    case 1:
    case 2:
        return (uint64_t)u8(in) * 0x40;                     /* 0 .. 0x3fc0 */
    case 3:
        return (uint64_t)(sel >> 3) * 0x1000 + u8(in);      /* page-ish, unaligned */
    case 4:
        return UINT64_MAX - (uint64_t)u8(in) * 0x40;        /* near the top */
    case 5:
        return (uint64_t)1 << (u8(in) & 63);                /* powers of two */
    case 6:
        return ((uint64_t)1 << (u8(in) & 63)) - 1;
    default:
        return u64(in);
    }
}

/* An inclusive size: mostly small, sometimes huge. */
static uint64_t size_of(Input *in)
{
    uint8_t sel = u8(in);
    switch (sel & 7) {
    case 0:
    case 1:
    case 2:
        return (uint64_t)u8(in) * 0x40 + 0x3f;
    case 3:
        return u8(in);
    case 4:
        return UINT64_MAX - u8(in);
    case 5:
        return ((uint64_t)1 << (u8(in) & 63)) - 1;
    default:
        return u64(in);
    }
}

static uint64_t id_of(Input *in)
{
    uint8_t sel = u8(in);
    return sel < 240 ? sel % 4 : u64(in);
}

static IOMMUAccessFlags perm_of(Input *in)
{
    uint8_t sel = u8(in);
    return (IOMMUAccessFlags)(sel < 250 ? 1 + sel % 3 : sel % 5); /* sometimes NONE or 4 */
}

/* ------------------------------------------------------------------ brute-force model */

typedef struct Model {
    DMAMap m[MAX_MAPS];
    size_t n;
    gboolean by_translated;
} Model;

static hwaddr key_first(const Model *mo, const DMAMap *m)
{
    return mo->by_translated ? m->translated_addr : m->iova;
}

static gboolean ranges_overlap(hwaddr a, hwaddr a_last, hwaddr b, hwaddr b_last)
{
    return a <= b_last && b <= a_last;
}

static gboolean map_valid(const DMAMap *m)
{
    return m->iova + m->size >= m->iova && m->translated_addr + m->size >= m->translated_addr &&
           m->perm >= IOMMU_RO && m->perm <= IOMMU_RW;
}

/* The map with the lowest key overlapping [first, first + size] in the key space. */
static const DMAMap *model_find(const Model *mo, hwaddr first, hwaddr size)
{
    const DMAMap *best = NULL;
    if (first + size < first) {
        return NULL;
    }
    for (size_t i = 0; i < mo->n; i++) {
        const DMAMap *m = &mo->m[i];
        hwaddr k = key_first(mo, m);
        if (ranges_overlap(k, k + m->size, first, first + size) &&
            (!best || k < key_first(mo, best))) {
            best = m;
        }
    }
    return best;
}

/*
 * Among maps whose translated range overlaps [first, first + size] (with id *id): the lowest
 * IOVA.  In a GPA tree, the lowest key (GPA) instead: there IOVAs may tie, and the core walks
 * the tree in GPA order, as QEMU's iova_tree_find_iova() does (see the report of issue 9).
 */
static const DMAMap *model_find_iova(const Model *mo, hwaddr first, hwaddr size,
                                     const uint64_t *id)
{
    const DMAMap *best = NULL;
    if (first + size < first) {
        return NULL;
    }
    for (size_t i = 0; i < mo->n; i++) {
        const DMAMap *m = &mo->m[i];
        if (ranges_overlap(m->translated_addr, m->translated_addr + m->size, first,
                           first + size) &&
            (!id || m->id == *id) && (!best || key_first(mo, m) < key_first(mo, best))) {
            best = m;
        }
    }
    return best;
}

static int model_insert_rc(const Model *mo, const DMAMap *map)
{
    if (!map_valid(map)) {
        return IOVA_ERR_INVALID;
    }
    if (model_find(mo, key_first(mo, map), map->size)) {
        return IOVA_ERR_OVERLAP;
    }
    return IOVA_OK;
}

static void model_add(Model *mo, const DMAMap *map)
{
    g_assert(mo->n < MAX_MAPS);
    mo->m[mo->n++] = *map;
}

/* Remove the maps overlapping [first, first + size] in @mo's key space; how many. */
static size_t model_remove(Model *mo, hwaddr first, hwaddr size)
{
    size_t removed = 0;
    if (first + size < first) {
        return 0;
    }
    for (size_t i = 0; i < mo->n;) {
        hwaddr k = key_first(mo, &mo->m[i]);
        if (ranges_overlap(k, k + mo->m[i].size, first, first + size)) {
            mo->m[i] = mo->m[--mo->n];
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

static gboolean model_is_free(const Model *mo, hwaddr iova, hwaddr size)
{
    for (size_t i = 0; i < mo->n; i++) {
        if (ranges_overlap(mo->m[i].iova, mo->m[i].iova + mo->m[i].size, iova, iova + size)) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Where alloc places @size in [begin, last] with @align.  The lowest (highest) fit is either
 * the first (last) aligned position of the window or right after (before) some map, so those
 * few candidates are tried one by one against every map: no hole arithmetic to share a bug
 * with the core.  Returns TRUE with the IOVA in *@iova.
 */
static gboolean model_fit_one(const Model *mo, hwaddr cand, hwaddr size, hwaddr begin,
                              hwaddr last, gboolean top_down, gboolean *found, hwaddr *iova)
{
    if (cand < begin || cand + size < cand || cand + size > last ||
        !model_is_free(mo, cand, size)) {
        return FALSE;
    }
    if (!*found || (top_down ? cand > *iova : cand < *iova)) {
        *iova = cand;
        *found = TRUE;
    }
    return TRUE;
}

static gboolean model_fit(const Model *mo, hwaddr size, hwaddr begin, hwaddr last, hwaddr align,
                          gboolean top_down, hwaddr *iova)
{
    hwaddr mask = align - 1;
    gboolean found = FALSE;

    if (top_down) {
        if (last - begin >= size) {
            model_fit_one(mo, (last - size) & ~mask, size, begin, last, TRUE, &found, iova);
        }
        for (size_t i = 0; i < mo->n; i++) {
            hwaddr below = mo->m[i].iova; /* the map ends a hole at below - 1 */
            if (below > size) {
                model_fit_one(mo, (below - 1 - size) & ~mask, size, begin, last, TRUE, &found,
                              iova);
            }
        }
        return found;
    }
    if (begin <= UINT64_MAX - mask) {
        model_fit_one(mo, (begin + mask) & ~mask, size, begin, last, FALSE, &found, iova);
    }
    for (size_t i = 0; i < mo->n; i++) {
        hwaddr above = mo->m[i].iova + mo->m[i].size; /* the map's last byte */
        if (above < UINT64_MAX - mask) {
            model_fit_one(mo, (above + 1 + mask) & ~mask, size, begin, last, FALSE, &found,
                          iova);
        }
    }
    return found;
}

/*
 * translate(): at each position the qualifying map covering it that reaches furthest, ties to
 * the lowest IOVA.  Writes up to @cap segments, the total in *@nsegs.
 */
static int model_translate(const Model *mo, hwaddr addr, hwaddr length, const uint64_t *id,
                           IOVASegment *segs, size_t cap, size_t *nsegs, hwaddr *fault)
{
    *nsegs = 0;
    if (length == 0) {
        return IOVA_OK;
    }
    hwaddr end = addr + (length - 1);
    if (end < addr) {
        return IOVA_ERR_INVALID;
    }
    for (hwaddr pos = addr;;) {
        const DMAMap *best = NULL;
        for (size_t i = 0; i < mo->n; i++) {
            const DMAMap *m = &mo->m[i];
            hwaddr m_last = m->translated_addr + m->size;
            if (m->translated_addr > pos || m_last < pos || (id && m->id != *id)) {
                continue;
            }
            hwaddr b_last = best ? best->translated_addr + best->size : 0;
            if (!best || m_last > b_last || (m_last == b_last && m->iova < best->iova)) {
                best = m;
            }
        }
        if (!best) {
            *fault = pos;
            return IOVA_ERR_TRANSLATION;
        }
        hwaddr b_last = best->translated_addr + best->size;
        hwaddr stop = b_last < end ? b_last : end;
        if (*nsegs < cap) {
            segs[*nsegs].iova = best->iova + (pos - best->translated_addr);
            segs[*nsegs].len = stop - pos + 1;
        }
        (*nsegs)++;
        if (stop == end) {
            return IOVA_OK;
        }
        pos = stop + 1;
    }
}

/* The model's maps in key order (insertion sort: n is small). */
static void model_sorted(const Model *mo, const DMAMap **out)
{
    for (size_t i = 0; i < mo->n; i++) {
        size_t j = i;
        while (j > 0 && key_first(mo, out[j - 1]) > key_first(mo, &mo->m[i])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = &mo->m[i];
    }
}

/* ------------------------------------------------------------------ whole-tree comparison */

typedef struct Walk {
    const DMAMap **want;
    size_t n;
    size_t i;
    const char *name;
} Walk;

static gboolean walk_step(const DMAMap *map, gpointer opaque)
{
    Walk *w = opaque;
    if (w->i >= w->n) {
        print_map("core extra", map);
        fail("%s: foreach yields more maps than the model holds (%zu)", w->name, w->n);
    }
    expect_same_map(w->name, map, w->want[w->i]);
    w->i++;
    return FALSE;
}

static void check_tree(const char *name, IOVATree *tree, const Model *mo)
{
    char err[256];
    if (iova_tree_check(tree, err, sizeof(err)) != 0) {
        fail("%s: iova_tree_check: %s", name, err);
    }
    expect_rc("nnodes", (long)iova_tree_nnodes(tree), (long)mo->n);

    const DMAMap *want[MAX_MAPS];
    model_sorted(mo, want);
    Walk w = { want, mo->n, 0, name };
    iova_tree_foreach_opaque(tree, walk_step, &w);
    expect_rc("foreach count", (long)w.i, (long)mo->n);

    /* iova_tree_next() steps through the same sequence. */
    const DMAMap *m = iova_tree_next(tree, 0, TRUE);
    for (size_t i = 0; i < mo->n; i++) {
        expect_same_map("iova_tree_next", m, want[i]);
        m = iova_tree_next(tree, key_first(mo, m), FALSE);
    }
    expect_same_map("iova_tree_next past the end", m, NULL);

    /* The binding layer's listing helper, in chunks of 3. */
    uint64_t words[3 * IB_MAP_WORDS];
    size_t seen = 0;
    uint64_t key = 0;
    gboolean inclusive = TRUE;
    for (;;) {
        size_t got = ib_copy_maps(tree, mo->by_translated, key, inclusive, words, 3);
        for (size_t i = 0; i < got; i++, seen++) {
            const uint64_t *o = words + i * IB_MAP_WORDS;
            DMAMap copy = { o[0], o[1], o[2], o[4], (IOMMUAccessFlags)o[3] };
            if (seen >= mo->n) {
                fail("%s: ib_copy_maps yields more maps than the model holds", name);
            }
            expect_same_map("ib_copy_maps", &copy, want[seen]);
            key = mo->by_translated ? copy.translated_addr : copy.iova;
            inclusive = FALSE;
        }
        if (got < 3) {
            break;
        }
    }
    expect_rc("ib_copy_maps count", (long)seen, (long)mo->n);
}

/* ------------------------------------------------------------------ operations */

typedef struct State {
    IOVATree *tree;
    Model tm;       /* IOVATree model */
    IOVATree *gpa;
    Model gm;       /* GPATree model */
    VhostIOVATree *vhost;
    hwaddr v_first, v_last;
    Model v_alloc;  /* allocations (IOVA-keyed) */
    Model v_host;   /* host-only maps (IOVA-keyed) */
    Model v_guest;  /* guest maps (GPA-keyed) */
} State;

static DMAMap read_map(Input *in)
{
    DMAMap m;
    m.iova = addr(in);
    m.translated_addr = addr(in);
    m.size = size_of(in);
    m.id = id_of(in);
    m.perm = perm_of(in);
    return m;
}

static void op_insert(IOVATree *tree, Model *mo, Input *in)
{
    DMAMap m = read_map(in);
    if (mo->n == MAX_MAPS) {
        return;
    }
    TRACE("insert(iova=" X ", taddr=" X ", size=" X ", id=" X ", perm=%d)\n", m.iova,
          m.translated_addr, m.size, m.id, (int)m.perm);
    int want = model_insert_rc(mo, &m);
    int got = mo->by_translated ? gpa_tree_insert(tree, &m) : iova_tree_insert(tree, &m);
    if (got != want) {
        print_map("inserted", &m);
        expect_rc("insert", got, want);
    }
    if (want == IOVA_OK) {
        model_add(mo, &m);
    }
}

/* ------------------------------------------------------------------ range walks */

typedef struct Hits {
    const DMAMap *m[MAX_MAPS];
    size_t n;
} Hits;

static bool collect_hit(const DMAMap *map, void *opaque)
{
    Hits *h = opaque;
    if (h->n >= MAX_MAPS) {
        fail("%s: a range walk yields more maps than the model holds", g_where);
    }
    h->m[h->n++] = map;
    return false;
}

static void sort_by_key(const Model *mo, Hits *h)
{
    for (size_t i = 1; i < h->n; i++) {
        for (size_t j = i; j > 0 && key_first(mo, h->m[j - 1]) > key_first(mo, h->m[j]); j--) {
            const DMAMap *t = h->m[j];
            h->m[j] = h->m[j - 1];
            h->m[j - 1] = t;
        }
    }
}

/*
 * The model's maps overlapping [first, last] on the key side (@translated FALSE) or the
 * translated side, with id *@id unless NULL, against @got; in key order when @ordered,
 * otherwise as a set (the reverse walk comes in translated order).
 */
static void expect_hits(const char *op, const Model *mo, Hits *got, hwaddr first, hwaddr last,
                        gboolean translated, const uint64_t *id, gboolean ordered)
{
    Hits want = { .n = 0 };
    for (size_t i = 0; i < mo->n; i++) {
        const DMAMap *m = &mo->m[i];
        hwaddr k = translated ? m->translated_addr : key_first(mo, m);
        if (ranges_overlap(k, k + m->size, first, last) && (!id || m->id == *id)) {
            want.m[want.n++] = m;
        }
    }
    sort_by_key(mo, &want);
    if (!ordered) {
        sort_by_key(mo, got);
    }
    if (got->n != want.n) {
        fail("%s: %zu maps, the model has %zu", op, got->n, want.n);
    }
    for (size_t i = 0; i < want.n; i++) {
        expect_same_map(op, got->m[i], want.m[i]);
    }
}

static void check_range_walks(IOVATree *tree, const Model *mo, const DMAMap *needle,
                              gboolean translated)
{
    hwaddr first = translated ? needle->translated_addr : key_first(mo, needle);
    if (first + needle->size < first) {
        Hits none = { .n = 0 };
        expect_rc("iova_tree_foreach_range(wrap)",
                  iova_tree_foreach_range(tree, first, first + needle->size, collect_hit, &none),
                  IOVA_ERR_INVALID);
        return;
    }
    hwaddr last = first + needle->size;
    uint64_t id = needle->id;
    Hits got = { .n = 0 };
    if (!translated) {
        iova_tree_foreach_range(tree, first, last, collect_hit, &got);
        expect_hits("iova_tree_foreach_range", mo, &got, first, last, FALSE, NULL, TRUE);
        return;
    }
    iova_tree_foreach_translated(tree, first, last, &id, collect_hit, &got);
    expect_hits("iova_tree_foreach_translated(id)", mo, &got, first, last, TRUE, &id, FALSE);
    got.n = 0;
    iova_tree_foreach_translated(tree, first, last, NULL, collect_hit, &got);
    expect_hits("iova_tree_foreach_translated(any)", mo, &got, first, last, TRUE, NULL, FALSE);
}

static void op_find(IOVATree *tree, const Model *mo, Input *in)
{
    DMAMap needle = { 0 };
    needle.iova = needle.translated_addr = addr(in);
    needle.size = size_of(in);
    TRACE("find(" X ", " X ")\n", needle.iova, needle.size);
    expect_same_map("iova_tree_find", iova_tree_find(tree, &needle),
                    model_find(mo, needle.iova, needle.size));
    check_range_walks(tree, mo, &needle, FALSE);
    if (needle.size == 0) {
        expect_same_map("iova_tree_find_address", iova_tree_find_address(tree, needle.iova),
                        model_find(mo, needle.iova, 0));
    }
}

static void op_find_iova(IOVATree *tree, const Model *mo, Input *in)
{
    DMAMap needle = { 0 };
    needle.translated_addr = addr(in);
    needle.size = size_of(in);
    needle.id = id_of(in);
    TRACE("find_iova(" X ", " X ", id=" X ")\n", needle.translated_addr, needle.size, needle.id);
    uint64_t id = needle.id; /* a packed member has no aligned address */
    const DMAMap *want_id = model_find_iova(mo, needle.translated_addr, needle.size, &id);
    const DMAMap *want_any = model_find_iova(mo, needle.translated_addr, needle.size, NULL);

    expect_same_map("iova_tree_find_iova", iova_tree_find_iova(tree, &needle), want_id);
    expect_same_map("iova_tree_find_iova_any", iova_tree_find_iova_any(tree, &needle), want_any);
    check_range_walks(tree, mo, &needle, TRUE);
    if (needle.translated_addr + needle.size >= needle.translated_addr) {
        /* the linear walk has no wrap check of its own; the others answer NULL for a wrap */
        expect_same_map("iova_tree_find_iova_linear(id)",
                        iova_tree_find_iova_linear(tree, &needle, TRUE), want_id);
        expect_same_map("iova_tree_find_iova_linear(any)",
                        iova_tree_find_iova_linear(tree, &needle, FALSE), want_any);
    }
}

static void compare_translation(const char *op, int got, int want, size_t cap, size_t got_n,
                                size_t want_n, const IOVASegment *got_s,
                                const IOVASegment *want_s, hwaddr got_fault, hwaddr want_fault,
                                hwaddr addr, hwaddr len)
{
    if (got != want) {
        fail("%s(" X ", " X "): rc %d, model %d", op, addr, len, got, want);
    }
    if (got == IOVA_ERR_TRANSLATION && got_fault != want_fault) {
        fail("%s(" X ", " X "): fault at " X ", model " X, op, addr, len, got_fault, want_fault);
    }
    if (got != IOVA_OK) {
        return;
    }
    if (got_n != want_n) {
        fail("%s(" X ", " X "): %zu segments, model %zu", op, addr, len, got_n, want_n);
    }
    for (size_t i = 0; i < got_n && i < cap; i++) { /* only @cap are written */
        if (got_s[i].iova != want_s[i].iova || got_s[i].len != want_s[i].len) {
            fail("%s(" X ", " X "): segment %zu is (" X ", " X "), model (" X ", " X ")", op, addr,
                 len, i, got_s[i].iova, got_s[i].len, want_s[i].iova, want_s[i].len);
        }
    }
}

static void op_translate(IOVATree *tree, const Model *mo, Input *in)
{
    hwaddr a = addr(in);
    uint8_t sel = u8(in);
    hwaddr len = sel < 200 ? (hwaddr)u8(in) * 0x40 + u8(in) : size_of(in);
    uint64_t id = id_of(in);
    const uint64_t *idp = sel & 1 ? &id : NULL;
    size_t cap = u8(in) % (MAX_SEGS + 1);
    IOVASegment got_s[MAX_SEGS], want_s[MAX_SEGS];
    size_t got_n = 99, want_n = 99;
    hwaddr got_f = 0, want_f = 0;

    TRACE("translate(" X ", " X ", id=%s" X ", cap=%zu)\n", a, len, idp ? "" : "None/", id, cap);
    int got = iova_tree_translate(tree, a, len, idp, got_s, cap, &got_n, &got_f);
    int want = model_translate(mo, a, len, idp, want_s, cap, &want_n, &want_f);
    compare_translation("iova_tree_translate", got, want, cap, got_n, want_n, got_s, want_s, got_f,
                        want_f, a, len);
}

static void op_alloc(IOVATree *tree, Model *mo, Input *in)
{
    DMAMap m = { 0 };
    m.translated_addr = addr(in);
    m.size = size_of(in);
    m.id = id_of(in);
    m.perm = perm_of(in);
    hwaddr begin = addr(in), last = addr(in);
    uint8_t sel = u8(in);
    hwaddr align = sel & 0x80 ? (hwaddr)1 << (u8(in) % 64) : 1;
    if ((sel & 0x70) == 0x70) {
        align = u64(in); /* sometimes not a power of two, or 0 */
    }
    int which = sel % 4; /* 0: alloc_map, 1: linear, 2: full first, 3: full last */
    if (which < 2) {
        align = 1;
    }
    gboolean top_down = which == 3;
    if (mo->n == MAX_MAPS) {
        return;
    }

    DMAMap placed = m;
    placed.iova = 0;
    int want;
    hwaddr want_iova = 0;
    if (mo->by_translated || !map_valid(&placed) || begin > last || align == 0 ||
        (align & (align - 1)) != 0) {
        want = IOVA_ERR_INVALID;
    } else {
        want = model_fit(mo, m.size, begin, last, align, top_down, &want_iova) ? IOVA_OK
                                                                              : IOVA_ERR_NOMEM;
    }

    TRACE("alloc(size=" X ", taddr=" X ", id=" X ", perm=%d, begin=" X ", last=" X
          ", align=" X ", %s)\n", m.size, m.translated_addr, m.id, (int)m.perm, begin, last, align,
          which == 0 ? "alloc_map" : which == 1 ? "linear" : top_down ? "last" : "first");
    DMAMap arg = m;
    arg.iova = 0x5a5a5a5a; /* must be ignored */
    int got;
    switch (which) {
    case 0:
        got = iova_tree_alloc_map(tree, &arg, begin, last);
        break;
    case 1:
        got = iova_tree_alloc_map_linear(tree, &arg, begin, last);
        break;
    default:
        got = iova_tree_alloc_map_full(tree, &arg, begin, last, align,
                                       top_down ? IOVA_ALLOC_LAST : IOVA_ALLOC_FIRST);
        break;
    }
    if (got != want || (got == IOVA_OK && arg.iova != want_iova)) {
        fprintf(stderr, "  alloc(size=" X ", begin=" X ", last=" X ", align=" X ", %s)\n",
                m.size, begin, last, align,
                which == 0 ? "alloc_map" : which == 1 ? "linear" : top_down ? "last" : "first");
        fail("alloc: rc %d iova " X ", model rc %d iova " X, got, arg.iova, want, want_iova);
    }
    if (got == IOVA_OK) {
        m.iova = want_iova;
        model_add(mo, &m);
    }
}

static void op_remove(IOVATree *tree, Model *mo, Input *in)
{
    DMAMap range = { 0 };
    range.iova = range.translated_addr = addr(in);
    range.size = size_of(in);
    TRACE("remove(" X ", " X ")\n", range.iova, range.size);
    size_t want = model_remove(mo, range.iova, range.size);
    expect_rc("iova_tree_remove", (long)iova_tree_remove_count(tree, range), (long)want);
}

static void op_remove_existing(IOVATree *tree, Model *mo, Input *in)
{
    /* Remove exactly one stored map by its own range (the common case in QEMU). */
    if (mo->n == 0) {
        return;
    }
    DMAMap victim = mo->m[u8(in) % mo->n];
    TRACE("remove(" X ", " X ") (a stored map)\n", key_first(mo, &victim), victim.size);
    size_t want = model_remove(mo, key_first(mo, &victim), victim.size);
    expect_rc("iova_tree_remove(existing)", (long)iova_tree_remove_count(tree, victim), (long)want);
}

static void op_batch(IOVATree *tree, const Model *mo, Input *in)
{
    uint64_t src[MAX_BATCH], out[MAX_BATCH], want_out[MAX_BATCH];
    size_t n = u8(in) % (MAX_DRAWN + 1);
    for (size_t i = 0; i < n; i++) {
        src[i] = addr(in);
        if (u8(in) & 1 && mo->n) { /* often an address inside a stored map */
            const DMAMap *m = &mo->m[u8(in) % mo->n];
            src[i] = (mo->by_translated || (i & 1) ? m->translated_addr : m->iova) +
                     (m->size ? u64(in) % m->size : 0);
        }
    }
    uint8_t sel = u8(in);
    if (n && (sel & 8)) { /* a long batch: sorted and swept (sparse ones looked up) in C */
        size_t drawn = n;
        n = MAX_BATCH - u8(in) % 64;
        for (size_t i = drawn; i < n; i++) {
            src[i] = src[(i * 2654435761u >> 5) % drawn];
        }
    }
    IBLookup lookup = mo->by_translated ? IB_LOOKUP_KEY : (IBLookup)(sel % 3);
    uint64_t id = id_of(in);
    int has_missing = (sel >> 2) & 1;
    uint64_t missing = 0xdeadbeef;
    size_t got_miss = 77, want_miss = 77;
    int want = IOVA_OK;
    gboolean in_is_iova = lookup == IB_LOOKUP_KEY && !mo->by_translated;

    TRACE("batch(lookup=%d, id=" X ", has_missing=%d, n=%zu)\n", (int)lookup, id, has_missing,
          n);

    for (size_t i = 0; i < n && want == IOVA_OK; i++) {
        const DMAMap *m = lookup == IB_LOOKUP_KEY       ? model_find(mo, src[i], 0)
                          : lookup == IB_LOOKUP_REVERSE ? model_find_iova(mo, src[i], 0, NULL)
                                                        : model_find_iova(mo, src[i], 0, &id);
        if (m) {
            want_out[i] = in_is_iova ? m->translated_addr + (src[i] - m->iova)
                                     : m->iova + (src[i] - m->translated_addr);
        } else if (has_missing) {
            want_out[i] = missing;
        } else {
            want = IOVA_ERR_TRANSLATION;
            want_miss = i;
        }
    }
    int got = ib_batch(tree, lookup, mo->by_translated, id, src, n, out, has_missing, missing,
                       &got_miss);
    expect_rc("ib_batch", got, want);
    if (got != IOVA_OK) {
        expect_rc("ib_batch miss index", (long)got_miss, (long)want_miss);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i] != want_out[i]) {
            fail("ib_batch(lookup %d) element %zu: " X " -> " X ", model " X, (int)lookup, i,
                 src[i], out[i], want_out[i]);
        }
    }
}

static void op_clear(IOVATree *tree, Model *mo)
{
    TRACE("clear()\n");
    iova_tree_clear(tree);
    mo->n = 0;
}

/* One operation on an IOVATree or GPATree and its model. */
static void tree_op(IOVATree *tree, Model *mo, uint8_t op, Input *in)
{
    switch (op % 16) {
    case 0:
    case 1:
    case 2:
        op_insert(tree, mo, in);
        break;
    case 3:
    case 4:
        op_find(tree, mo, in);
        break;
    case 5:
    case 6:
        op_find_iova(tree, mo, in);
        break;
    case 7:
    case 8:
        op_translate(tree, mo, in);
        break;
    case 9:
    case 10:
        op_alloc(tree, mo, in);
        break;
    case 11:
        op_remove(tree, mo, in);
        break;
    case 12:
        op_remove_existing(tree, mo, in);
        break;
    case 13:
    case 14:
        op_batch(tree, mo, in);
        break;
    default:
        if (u8(in) < 16) {
            op_clear(tree, mo);
        }
        break;
    }
}

/* ------------------------------------------------------------------ VhostIOVATree */

static void vhost_check(State *s)
{
    char err[256];
    if (vhost_iova_tree_check(s->vhost, err, sizeof(err)) != 0) {
        fail("vhost_iova_tree_check: %s", err);
    }
    check_tree("vhost allocations", vhost_iova_tree_allocations(s->vhost), &s->v_alloc);
    check_tree("vhost host", vhost_iova_tree_host(s->vhost), &s->v_host);
    check_tree("vhost guest", vhost_iova_tree_guest(s->vhost), &s->v_guest);
}

static void vhost_alloc(State *s, Input *in, gboolean gpa)
{
    hwaddr size = size_of(in);
    hwaddr taddr = addr(in);
    IOMMUAccessFlags perm = perm_of(in);
    if (s->v_alloc.n == MAX_MAPS) {
        return;
    }
    TRACE("map_alloc%s(size=" X ", taddr=" X ", perm=%d)\n", gpa ? "_gpa" : "", size, taddr,
          (int)perm);
    DMAMap probe = { .translated_addr = taddr, .size = size, .perm = perm };
    hwaddr iova = 0;
    int want;
    const DMAMap *want_existing = NULL;
    if (!map_valid(&probe) || s->v_first > s->v_last) {
        want = IOVA_ERR_INVALID;
    } else if (!model_fit(&s->v_alloc, size, s->v_first, s->v_last, 1, FALSE, &iova)) {
        want = IOVA_ERR_NOMEM;
    } else if (gpa && (want_existing = model_find(&s->v_guest, taddr, size)) != NULL) {
        want = IOVA_ERR_OVERLAP;
    } else {
        want = IOVA_OK;
    }

    DMAMap map = { .iova = 0x5a5a, .size = size, .id = gpa ? taddr : 0, .perm = perm };
    DMAMap existing = { 0 };
    int got = gpa ? vhost_iova_tree_map_alloc_gpa_existing(s->vhost, &map, taddr, &existing)
                  : vhost_iova_tree_map_alloc(s->vhost, &map, taddr);
    if (got != want) {
        fprintf(stderr, "  map_alloc%s(size=" X ", taddr=" X ", perm=%d)\n", gpa ? "_gpa" : "",
                size, taddr, (int)perm);
        expect_rc("vhost map_alloc", got, want);
    }
    if (got == IOVA_ERR_OVERLAP) {
        expect_same_map("vhost map_alloc_gpa existing", &existing, want_existing);
    }
    if (got != IOVA_OK) {
        return;
    }
    DMAMap stored = { iova, taddr, size, gpa ? taddr : 0, perm };
    expect_same_map("vhost map_alloc", &map, &stored);
    DMAMap alloc = { iova, 0, size, 0, perm };
    model_add(&s->v_alloc, &alloc);
    model_add(gpa ? &s->v_guest : &s->v_host, &stored);
}

/* Remove the maps of @mo overlapping the range, and their allocations, from the models. */
static size_t vhost_model_remove(State *s, Model *mo, hwaddr first, hwaddr size)
{
    size_t removed = 0;
    if (first + size < first) {
        return 0;
    }
    for (size_t i = 0; i < mo->n;) {
        const DMAMap *m = &mo->m[i];
        hwaddr k = key_first(mo, m);
        if (ranges_overlap(k, k + m->size, first, first + size)) {
            size_t gone = model_remove(&s->v_alloc, m->iova, m->size);
            if (gone != 1) {
                fail("vhost model: %zu allocations under one map", gone);
            }
            mo->m[i] = mo->m[--mo->n];
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

static void vhost_op(State *s, uint8_t op, Input *in)
{
    switch (op % 12) {
    case 0:
    case 1:
        vhost_alloc(s, in, FALSE);
        break;
    case 2:
    case 3:
        vhost_alloc(s, in, TRUE);
        break;
    case 4: {
        DMAMap needle = { .translated_addr = addr(in), .size = size_of(in) };
        TRACE("find_iova(" X ", " X ")\n", needle.translated_addr, needle.size);
        expect_same_map("vhost find_iova", vhost_iova_tree_find_iova_any(s->vhost, &needle),
                        model_find_iova(&s->v_host, needle.translated_addr, needle.size, NULL));
        break;
    }
    case 5: {
        DMAMap needle = { .translated_addr = addr(in), .size = size_of(in) };
        TRACE("find_gpa(" X ", " X ")\n", needle.translated_addr, needle.size);
        expect_same_map("vhost find_gpa", vhost_iova_tree_find_gpa_any(s->vhost, &needle),
                        model_find(&s->v_guest, needle.translated_addr, needle.size));
        break;
    }
    case 6:
    case 7: {
        gboolean gpa = op % 12 == 7;
        Model *mo = gpa ? &s->v_guest : &s->v_host;
        DMAMap range = { 0 };
        if (mo->n && u8(in) & 1) {
            const DMAMap *m = &mo->m[u8(in) % mo->n];
            range.iova = range.translated_addr = key_first(mo, m);
            range.size = m->size;
        } else {
            range.iova = range.translated_addr = addr(in);
            range.size = size_of(in);
        }
        TRACE("remove%s(" X ", " X ")\n", gpa ? "_gpa" : "", range.iova, range.size);
        size_t want = vhost_model_remove(s, mo, range.iova, range.size);
        size_t got = vhost_iova_tree_remove_count(s->vhost, range, gpa);
        expect_rc(gpa ? "vhost remove_gpa" : "vhost remove", (long)got, (long)want);
        break;
    }
    case 8:
    case 9: {
        gboolean gpa = op % 12 == 9;
        hwaddr a = addr(in);
        hwaddr len = (hwaddr)u8(in) * 0x40 + u8(in);
        size_t cap = u8(in) % (MAX_SEGS + 1);
        IOVASegment got_s[MAX_SEGS], want_s[MAX_SEGS];
        size_t got_n = 99, want_n = 99;
        hwaddr got_f = 0, want_f = 0;
        TRACE("translate(" X ", " X ", gpa=%d, cap=%zu)\n", a, len, gpa, cap);
        int got = vhost_iova_tree_translate(s->vhost, a, len, gpa, got_s, cap, &got_n, &got_f);
        int want = model_translate(gpa ? &s->v_guest : &s->v_host, a, len, NULL, want_s, cap,
                                   &want_n, &want_f);
        compare_translation(gpa ? "vhost translate(gpa)" : "vhost translate", got, want, cap,
                            got_n, want_n, got_s, want_s, got_f, want_f, a, len);
        break;
    }
    case 10:
        if (u8(in) < 16) {
            TRACE("clear()\n");
            vhost_iova_tree_clear(s->vhost);
            s->v_alloc.n = s->v_host.n = s->v_guest.n = 0;
        }
        break;
    default: {
        /* A batch through the host-only tree's reverse look-up, as ib_vhost_to_iova_many. */
        op_batch(vhost_iova_tree_host(s->vhost), &s->v_host, in);
        break;
    }
    }
}

/* ------------------------------------------------------------------ entry point */

static void run(const uint8_t *data, size_t size)
{
    Input in = { data, size };
    State *s = g_new0(State, 1);

    s->tree = iova_tree_new();
    s->gpa = gpa_tree_new();
    s->gm.by_translated = TRUE;
    s->v_guest.by_translated = TRUE;
    /* The VhostIOVATree's window comes from the first bytes: often tight, to reach NOMEM. */
    hwaddr first = u8(&in) & 1 ? addr(&in) : 0;
    hwaddr last = u8(&in) & 1 ? addr(&in) : UINT64_MAX;
    /* The page size comes from the input too: 4 KiB or 64 KiB, as x86-64 and some arm64. */
    hwaddr page = u8(&in) & 1 ? 0x10000 : 0x1000;
    s->vhost = vhost_iova_tree_new_page_size(first, last, page);
    s->v_first = first > page ? first : page;
    s->v_last = last;
    g_where = "setup";
    TRACE("new trees; vhost window [" X ", " X "]\n", s->v_first, s->v_last);
    if (!s->tree || !s->gpa || !s->vhost) {
        fail("a constructor answered NULL");
    }

    while (in.n > 0) {
        uint8_t op = u8(&in);
        g_where = op >> 6 < 2 ? "iova_tree" : op >> 6 == 2 ? "gpa_tree" : "vhost";
        switch (op >> 6) {
        case 0:
        case 1:
            tree_op(s->tree, &s->tm, op, &in);
            check_tree("IOVATree", s->tree, &s->tm);
            break;
        case 2:
            tree_op(s->gpa, &s->gm, op, &in);
            check_tree("GPATree", s->gpa, &s->gm);
            break;
        default:
            vhost_op(s, op, &in);
            vhost_check(s);
            break;
        }
    }

    iova_tree_destroy(s->tree);
    iova_tree_destroy(s->gpa);
    vhost_iova_tree_delete(s->vhost);
    g_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    return 0;
}

#ifdef IOVA_FUZZ_STANDALONE
int main(int argc, char **argv)
{
    g_trace = g_getenv("IOVA_FUZZ_TRACE") != NULL;
    for (int i = 1; i < argc; i++) {
        gchar *data;
        gsize len;
        GError *error = NULL;
        if (!g_file_get_contents(argv[i], &data, &len, &error)) {
            fprintf(stderr, "iova_fuzz: %s\n", error->message);
            g_error_free(error);
            return 2;
        }
        run((const uint8_t *)data, len);
        g_free(data);
        printf("iova_fuzz: %s: ok (%zu bytes)\n", argv[i], (size_t)len);
    }
    return 0;
}
#endif
