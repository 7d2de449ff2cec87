/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The layer Python calls through cffi (see iova-binding.h for why it exists).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime() under -std=c11 */

#include "iova-binding.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "iova-arena.h"
#include "iova-guard.h"
#include "iova-range.h"

/* ---------------------------------------------------------------- shared with vhost-binding.c */

void ib_guard_init(IBGuard *g, void *object)
{
    g_mutex_init(&g->lock);
    g->object = object;
    g->generation = 0;
    g->fork_owner = NULL;
}

/* Whether this thread holds @g's lock for fork() (see ib_guard_fork_lock()). */
static gboolean held_for_fork(IBGuard *g)
{
    gpointer owner = g_atomic_pointer_get(&g->fork_owner);
    return owner && owner == (gpointer)g_thread_self();
}

/* Take @g's lock, or go in under this thread's fork() hold; FALSE (busy) only if !@wait. */
static gboolean guard_lock(IBGuard *g, gboolean wait)
{
    if (g_mutex_trylock(&g->lock) || held_for_fork(g)) {
        return TRUE;
    }
    if (wait) {
        g_mutex_lock(&g->lock);
    }
    return wait;
}

static void guard_unlock(IBGuard *g)
{
    if (!held_for_fork(g)) {
        g_mutex_unlock(&g->lock);
    }
}

void *ib_guard_enter(IBGuard *g)
{
    guard_lock(g, TRUE);
    void *object = g->object;
    if (!object) {
        guard_unlock(g);
    }
    return object;
}

gboolean ib_guard_try_enter(IBGuard *g, void **object)
{
    if (!guard_lock(g, FALSE)) {
        return FALSE;
    }
    *object = g->object;
    if (!*object) {
        guard_unlock(g);
    }
    return TRUE;
}

void ib_guard_leave(IBGuard *g, gboolean changed)
{
    if (changed) {
        g->generation++;
    }
    guard_unlock(g);
}

void *ib_guard_close(IBGuard *g)
{
    guard_lock(g, TRUE);
    void *object = g->object;
    g->object = NULL;
    g->generation++;
    guard_unlock(g);
    return object;
}

gboolean ib_memory_room(size_t bytes)
{
    void *probe = g_try_malloc(MAX(bytes, IB_MEMORY_PROBE));
    g_free(probe);
    return probe != NULL;
}

void ib_guard_fork_lock(IBGuard *g)
{
    if (held_for_fork(g)) {
        return; /* taken already: a fork hook cut short by an exception and run again */
    }
    g_mutex_lock(&g->lock);
    g_atomic_pointer_set(&g->fork_owner, g_thread_self());
}

void ib_guard_fork_unlock(IBGuard *g)
{
    if (!held_for_fork(g)) {
        return; /* never taken (the hook was cut short before it), or given back already */
    }
    g_atomic_pointer_set(&g->fork_owner, NULL);
    g_mutex_unlock(&g->lock);
}

gboolean ib_guard_fork_child(IBGuard *g)
{
    gboolean mine = held_for_fork(g);

    g_atomic_pointer_set(&g->fork_owner, NULL);
    if (mine || g_mutex_trylock(&g->lock)) {
        g_mutex_unlock(&g->lock);
        return FALSE;
    }
    g_mutex_init(&g->lock); /* the holder does not exist here: this lock would never open */
    g->object = NULL;
    g->generation++;
    return TRUE;
}

struct IBForkSet {
    IBGuard **guards;      /* the guards ib_fork_set_lock() was given since the last release */
    size_t count, cap;
    sigset_t saved;        /* the forking thread's signal mask before ib_fork_set_block() */
    gboolean saved_valid;
};

IBForkSet *ib_fork_set_new(void)
{
    return g_try_new0(IBForkSet, 1);
}

void ib_fork_set_free(IBForkSet *s)
{
    if (s) {
        g_free(s->guards);
        g_free(s);
    }
}

int ib_fork_set_reserve(IBForkSet *s, size_t more)
{
    size_t n = s->count + more;

    if (n <= s->cap) {
        return IOVA_OK;
    }
    IBGuard **guards = g_try_renew(IBGuard *, s->guards, n);
    if (!guards) {
        return IOVA_ERR_OOM;
    }
    s->guards = guards;
    s->cap = n;
    return IOVA_OK;
}

void ib_fork_set_lock(IBForkSet *s, void *handle)
{
    IBGuard *g = handle;

    if (s->count < s->cap) {
        s->guards[s->count++] = g; /* first: an unlock of a guard never taken does nothing */
    }
    ib_guard_fork_lock(g);
}

void ib_fork_unlock(void *handle)
{
    ib_guard_fork_unlock(handle);
}

void ib_fork_set_release(IBForkSet *s, int child)
{
    for (size_t i = 0; i < s->count; i++) {
        if (child) {
            ib_guard_fork_child(s->guards[i]);
        } else {
            ib_guard_fork_unlock(s->guards[i]);
        }
    }
    s->count = 0;
}

void ib_fork_set_block(IBForkSet *s)
{
    sigset_t all;

    sigfillset(&all);
    if (s->saved_valid) {
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    } else if (pthread_sigmask(SIG_BLOCK, &all, &s->saved) == 0) {
        s->saved_valid = TRUE;
    }
}

void ib_fork_set_unblock(IBForkSet *s)
{
    if (s->saved_valid) {
        s->saved_valid = FALSE;
        pthread_sigmask(SIG_SETMASK, &s->saved, NULL);
    }
}

void ib_map_out(const DMAMap *m, uint64_t *out)
{
    out[0] = m->iova;
    out[1] = m->translated_addr;
    out[2] = m->size;
    out[3] = (uint64_t)m->perm;
    out[4] = m->id;
}

size_t ib_copy_maps(const IOVATree *tree, gboolean by_translated, uint64_t key,
                    gboolean inclusive, uint64_t *out, size_t cap)
{
    size_t n = 0;
    const DMAMap *m = iova_tree_next(tree, key, inclusive);

    for (; m && n < cap; n++) {
        ib_map_out(m, out + n * IB_MAP_WORDS);
        m = iova_tree_next(tree, by_translated ? m->translated_addr : m->iova, FALSE);
    }
    return n;
}

int64_t ib_dump_maps(const IOVATree *tree, gboolean by_translated, uint64_t *out, size_t cap)
{
    ib_copy_maps(tree, by_translated, 0, TRUE, out, cap);
    return (int64_t)iova_tree_nnodes(tree);
}

/*
 * Batches of random addresses over a large tree miss the cache at every level of every look-up.
 * Sorted, they are answered by a sweep (iova_tree_sweep_find()) that moves from each answer to
 * the next through the maps in between, often already in the cache.  Measured: sorting pays
 * for itself from batches of IB_BATCH_SORT_MIN addresses, at every tree size.
 */
#define IB_BATCH_SORT_MIN 128

typedef struct BatchItem {
    uint64_t addr;
    uint64_t index; /* position in the caller's input */
} BatchItem;

/* LSD radix sort by address, 8 bits a pass; a pass where all share the digit is skipped. */
static BatchItem *batch_sort(BatchItem *items, BatchItem *spare, size_t n)
{
    for (int shift = 0; shift < 64; shift += 8) {
        size_t start[256] = { 0 };
        for (size_t i = 0; i < n; i++) {
            start[(items[i].addr >> shift) & 0xff]++;
        }
        if (start[(items[0].addr >> shift) & 0xff] == n) {
            continue;
        }
        for (size_t d = 0, pos = 0; d < 256; d++) {
            size_t count = start[d];
            start[d] = pos;
            pos += count;
        }
        for (size_t i = 0; i < n; i++) {
            spare[start[(items[i].addr >> shift) & 0xff]++] = items[i];
        }
        BatchItem *t = items;
        items = spare;
        spare = t;
    }
    return items;
}

/* How a batch finds its maps: a sweep over sorted addresses, or a look-up each. */
typedef struct BatchFinder {
    const IOVATree *tree;
    IBLookup lookup;
    DMAMap needle;
    IOVATreeSweep *sweep;
    gboolean answered;  /* prev and prev_addr hold the last answer (a map, or NULL) */
    const DMAMap *prev;
    uint64_t prev_addr;
} BatchFinder;

static const DMAMap *batch_lookup(BatchFinder *f, uint64_t addr)
{
    switch (f->lookup) {
    case IB_LOOKUP_KEY:
        return iova_tree_find_address(f->tree, addr);
    case IB_LOOKUP_REVERSE:
        f->needle.translated_addr = addr;
        return iova_tree_find_iova_any(f->tree, &f->needle);
    default:
        f->needle.translated_addr = addr;
        return iova_tree_find_iova(f->tree, &f->needle);
    }
}

/*
 * A repeated address reuses the answer, hit or miss, in input order and in sorted order alike
 * (where equal addresses are neighbours): a sorted batch never costs more per address than the
 * same batch unsorted, however dear one look-up is (k aliases covering the address and no id
 * make it O(log n + k)).
 */
static const DMAMap *batch_find(BatchFinder *f, uint64_t addr)
{
    if (!f->answered || addr != f->prev_addr) {
        f->prev = f->sweep ? iova_tree_sweep_find(f->sweep, addr) : batch_lookup(f, addr);
        f->prev_addr = addr;
        f->answered = TRUE;
    }
    return f->prev;
}

int ib_batch(const IOVATree *tree, IBLookup lookup, gboolean key_is_translated, uint64_t id,
             const uint64_t *in, size_t n, uint64_t *out, int has_missing, uint64_t missing,
             size_t *miss)
{
    BatchFinder finder = { .tree = tree, .lookup = lookup };
    finder.needle.id = id;
    /* IOVA in, translated out; or translated in, IOVA out. */
    gboolean in_is_iova = lookup == IB_LOOKUP_KEY && !key_is_translated;
    BatchItem *items = n >= IB_BATCH_SORT_MIN ? g_try_new(BatchItem, 2 * n) : NULL;
    const BatchItem *order = NULL;

    if (items) {
        for (size_t i = 0; i < n; i++) {
            items[i].addr = in[i];
            items[i].index = i;
        }
        order = batch_sort(items, items + n, n);
        /* without the memory for a sweep, each address is looked up */
        finder.sweep = iova_tree_sweep_new(tree, lookup != IB_LOOKUP_KEY,
                                           lookup == IB_LOOKUP_REVERSE_ID ? &id : NULL);
    }
    size_t first_miss = SIZE_MAX;
    for (size_t k = 0; k < n; k++) {
        /* without the memory to sort: input order */
        size_t i = order ? order[k].index : k;
        uint64_t addr = order ? order[k].addr : in[i];
        const DMAMap *m = batch_find(&finder, addr);
        if (m) {
            out[i] = in_is_iova ? m->translated_addr + (addr - m->iova)
                                : m->iova + (addr - m->translated_addr);
        } else if (has_missing) {
            out[i] = missing;
        } else if (i < first_miss) {
            first_miss = i; /* the caller is told the first miss in input order */
            if (!order) {
                break;
            }
        }
    }
    iova_tree_sweep_free(finder.sweep);
    g_free(items);
    if (first_miss != SIZE_MAX) {
        *miss = first_miss;
        return IOVA_ERR_TRANSLATION;
    }
    return IOVA_OK;
}

/* ---------------------------------------------------------------- IOVATree and GPATree */

struct IBTree {
    IBGuard guard;
    int kind;                /* 0 IOVATree, 1 GPATree */
    const IOVAArena *arena;  /* an IOVATree's entries (their references are the slots) */
    uint64_t removals;       /* calls that removed maps so far: ib_tree_removals_try() */
};
/* ib_fork_set_lock() takes a tree for its guard. */
_Static_assert(offsetof(IBTree, guard) == 0, "an IBTree begins with its guard");

size_t ib_tree_size(void)
{
    return sizeof(IBTree);
}

int ib_tree_init(IBTree *t, int kind)
{
    if (!ib_memory_room(0)) {
        return IOVA_ERR_OOM;
    }
    IOVATree *tree = kind == 1 ? gpa_tree_new() : iova_tree_new();
    /* Python's IOVATree promises that no alloc walks every map, the first one included. */
    if (tree && kind != 1 && iova_tree_keep_holes(tree) != IOVA_OK) {
        iova_tree_destroy(tree);
        tree = NULL;
    }
    if (!tree) {
        return IOVA_ERR_OOM;
    }
    ib_guard_init(&t->guard, tree);
    t->kind = kind;
    t->arena = iova_range_view(tree).arena;
    t->removals = 0;
    return IOVA_OK;
}

IBTree *ib_tree_new(int kind)
{
    IBTree *t = ib_memory_room(0) ? g_try_new0(IBTree, 1) : NULL;
    if (t && ib_tree_init(t, kind) != IOVA_OK) {
        g_free(t);
        t = NULL;
    }
    return t;
}

void ib_tree_free(IBTree *t)
{
    if (!t) {
        return;
    }
    iova_tree_destroy(t->guard.object);
    g_mutex_clear(&t->guard.lock);
    g_free(t);
}

void ib_tree_fork_lock(IBTree *t)
{
    ib_guard_fork_lock(&t->guard);
}

void ib_tree_fork_unlock(IBTree *t)
{
    ib_guard_fork_unlock(&t->guard);
}

int ib_tree_fork_child(IBTree *t)
{
    return ib_guard_fork_child(&t->guard);
}

int ib_tree_close(IBTree *t)
{
    iova_tree_destroy(ib_guard_close(&t->guard));
    return IOVA_OK;
}

int ib_tree_closed(IBTree *t)
{
    if (!ib_guard_enter(&t->guard)) {
        return 1;
    }
    ib_guard_leave(&t->guard, FALSE);
    return 0;
}

int ib_tree_clear(IBTree *t)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    iova_tree_clear(tree);
    t->removals++;
    ib_guard_leave(&t->guard, TRUE);
    return IOVA_OK;
}

int64_t ib_tree_len(IBTree *t)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t n = (int64_t)iova_tree_nnodes(tree);
    ib_guard_leave(&t->guard, FALSE);
    return n;
}

int ib_tree_has_holes(IBTree *t)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int kept = t->kind != 1 && iova_tree_has_holes(tree);
    ib_guard_leave(&t->guard, FALSE);
    return kept;
}

int64_t ib_tree_generation(IBTree *t)
{
    if (!ib_guard_enter(&t->guard)) {
        return IB_CLOSED;
    }
    int64_t g = t->guard.generation;
    ib_guard_leave(&t->guard, FALSE);
    return g;
}

/* A needle for the tree's own key (IOVA, or GPA in a GPA tree). */
static DMAMap key_needle(uint64_t key, uint64_t size)
{
    DMAMap needle = { 0 };
    needle.iova = needle.translated_addr = key;
    needle.size = size;
    return needle;
}

/*
 * Enter @t's guard, waiting for the lock (@wait) or not: IOVA_OK with the tree in *@tree,
 * IB_CLOSED, or IB_BUSY (without @wait, when another call holds the lock).
 */
static int enter(IBTree *t, gboolean wait, IOVATree **tree)
{
    void *object;
    if (wait) {
        object = ib_guard_enter(&t->guard);
    } else if (!ib_guard_try_enter(&t->guard, &object)) {
        return IB_BUSY;
    }
    *tree = object;
    return object ? IOVA_OK : IB_CLOSED;
}

/*
 * enter() for a call that stores a map of permission @perm: IOVA_OK with the tree in *@tree;
 * or, the guard left again, IOVA_ERR_INVALID for a @perm above IOMMU_RW, or IOVA_ERR_OOM
 * when memory runs short (checked before GLib may allocate, which would abort); or enter()'s.
 */
static int enter_to_store(IBTree *t, gboolean wait, uint64_t perm, IOVATree **tree)
{
    int rc = enter(t, wait, tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    rc = perm > IOMMU_RW ? IOVA_ERR_INVALID : !ib_memory_room(0) ? IOVA_ERR_OOM : IOVA_OK;
    if (rc != IOVA_OK) {
        ib_guard_leave(&t->guard, FALSE);
    }
    return rc;
}

/* ib_tree_insert(), waiting for the lock (@wait) or not (IB_BUSY). */
static int insert_map(IBTree *t, gboolean wait, uint64_t iova, uint64_t translated_addr,
                      uint64_t size, uint64_t perm, uint64_t id, uint64_t *existing)
{
    DMAMap map = { iova, translated_addr, size, id, (IOMMUAccessFlags)perm };
    IOVATree *tree;
    int rc = enter_to_store(t, wait, perm, &tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    rc = iova_tree_insert(tree, &map);
    if (rc == IOVA_ERR_OVERLAP && existing) {
        ib_map_out(iova_tree_find(tree, &map), existing);
    }
    ib_guard_leave(&t->guard, rc == IOVA_OK);
    return rc;
}

int ib_tree_insert(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                   uint64_t perm, uint64_t id, uint64_t *existing)
{
    return insert_map(t, TRUE, iova, translated_addr, size, perm, id, existing);
}

int ib_tree_translate(IBTree *t, uint64_t addr, uint64_t length, int has_id, uint64_t id,
                      uint64_t *segs, size_t cap, size_t *nsegs, uint64_t *fault)
{
    G_STATIC_ASSERT(sizeof(IOVASegment) == 2 * sizeof(uint64_t));
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = iova_tree_translate(tree, addr, length, has_id ? &id : NULL, (IOVASegment *)segs,
                                 cap, nsegs, fault);
    ib_guard_leave(&t->guard, FALSE);
    return rc;
}

int64_t ib_tree_remove(IBTree *t, uint64_t key, uint64_t size)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    size_t n;
    int rc = iova_tree_remove_checked(tree, key_needle(key, size), &n);
    t->removals += n > 0;
    ib_guard_leave(&t->guard, n > 0);
    return rc == IOVA_OK ? (int64_t)n : rc;
}

int64_t ib_tree_copy(IBTree *t, int64_t generation, uint64_t key, int inclusive, uint64_t *out,
                     size_t cap)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t n = generation != t->guard.generation
                    ? IB_CHANGED
                    : (int64_t)ib_copy_maps(tree, t->kind == 1, key, inclusive, out, cap);
    ib_guard_leave(&t->guard, FALSE);
    return n;
}

int64_t ib_tree_dump(IBTree *t, uint64_t *out, size_t cap)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t total = ib_dump_maps(tree, t->kind == 1, out, cap);
    ib_guard_leave(&t->guard, FALSE);
    return total;
}

int ib_tree_check(IBTree *t, char *err, size_t errlen)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = iova_tree_check(tree, err, errlen);
    ib_guard_leave(&t->guard, FALSE);
    return rc;
}

int ib_tree_to_translated_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out,
                               int has_missing, uint64_t missing, size_t *miss)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = ib_batch(tree, IB_LOOKUP_KEY, t->kind == 1, 0, in, n, out, has_missing, missing,
                      miss);
    ib_guard_leave(&t->guard, FALSE);
    return rc;
}

int ib_tree_to_iova_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out, int has_id,
                         uint64_t id, int has_missing, uint64_t missing, size_t *miss)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    /* A GPA tree's key is the translated address: its own look-up is the answer. */
    IBLookup lookup = t->kind == 1 ? IB_LOOKUP_KEY
                      : has_id     ? IB_LOOKUP_REVERSE_ID
                                   : IB_LOOKUP_REVERSE;
    int rc = ib_batch(tree, lookup, t->kind == 1, id, in, n, out, has_missing, missing, miss);
    ib_guard_leave(&t->guard, FALSE);
    return rc;
}

size_t ib_heap_in_use(void)
{
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

size_t ib_tree_mapped_bytes(IBTree *t)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return 0;
    }
    size_t bytes = t->kind != 1 ? iova_tree_mapped_bytes(tree) : 0;
    ib_guard_leave(&t->guard, FALSE);
    return bytes;
}

/* ---------------------------------------------------------------- range queries */

/* Maps written as five words while there is room, and all of them counted. */
typedef struct RangeOut {
    uint64_t *out;
    size_t cap;
    size_t count;
} RangeOut;

static bool range_collect(const DMAMap *map, void *opaque)
{
    RangeOut *r = opaque;
    if (r->count < r->cap) {
        ib_map_out(map, r->out + r->count * IB_MAP_WORDS);
    }
    r->count++;
    return false;
}

static int first_word_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The reverse tree gives maps in translated order; without aliasing that is IOVA order too. */
static void sort_by_iova(uint64_t *out, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (out[i * IB_MAP_WORDS] < out[(i - 1) * IB_MAP_WORDS]) {
            qsort(out, n, IB_MAP_WORDS * sizeof(uint64_t), first_word_cmp);
            return;
        }
    }
}

int64_t ib_tree_find_all(IBTree *t, uint64_t key, uint64_t size, uint64_t *out, size_t cap)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    RangeOut r = { out, cap, 0 };
    int rc = key + size < key ? IOVA_ERR_INVALID
                              : iova_tree_foreach_range(tree, key, key + size, range_collect, &r);
    ib_guard_leave(&t->guard, FALSE);
    return rc == IOVA_OK ? (int64_t)r.count : rc;
}

int64_t ib_tree_find_iova_all(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                              uint64_t *out, size_t cap)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    RangeOut r = { out, cap, 0 };
    int rc = addr + size < addr
                 ? IOVA_ERR_INVALID
                 : iova_tree_foreach_translated(tree, addr, addr + size, has_id ? &id : NULL,
                                                range_collect, &r);
    if (rc == IOVA_OK && r.count <= cap) {
        sort_by_iova(out, r.count);
    }
    ib_guard_leave(&t->guard, FALSE);
    return rc == IOVA_OK ? (int64_t)r.count : rc;
}

/* ---------------------------------------------------------------- key answers */

/* @key as a key answer; set errno last, after the lock is let go (see IB_TOP). */
static int64_t key_answer(uint64_t key)
{
    if (key >= (uint64_t)(int64_t)IB_CODE_MIN) {
        errno = (int)(UINT64_MAX - key);
        return IB_TOP;
    }
    return (int64_t)key;
}

/* The key of @m in @t's tree: its IOVA, or its translated address in a GPA tree. */
static uint64_t tree_key(const IBTree *t, const DMAMap *m)
{
    return t->kind == 1 ? m->translated_addr : m->iova;
}

/*
 * The entry of the stored map @m (see IB_CODE_MIN), read under the lock: in an IOVATree the
 * arena reference of its entry, in a GPA tree (whose maps live in no arena) its key.
 */
static uint64_t tree_entry(const IBTree *t, const DMAMap *m)
{
    return t->arena ? iova_arena_ref_of(t->arena, m) : m->translated_addr;
}

/* The stored map a look-up finds: by the tree's key (!@reverse), or by translated address
 * with the id *@id (any id when @id is NULL).  Under the lock. */
static const DMAMap *lookup(const IOVATree *tree, gboolean reverse, uint64_t addr,
                            uint64_t size, const uint64_t *id)
{
    DMAMap needle = key_needle(addr, size);
    needle.id = id ? *id : 0;
    return !reverse ? iova_tree_find(tree, &needle)
           : id     ? iova_tree_find_iova(tree, &needle)
                    : iova_tree_find_iova_any(tree, &needle);
}

/*
 * The entry answer of a look-up (lookup()), with the map copied into @out unless NULL.
 * With !@wait it never waits for the lock: IB_BUSY when another call holds it.
 */
static int64_t lookup_entry(IBTree *t, gboolean wait, gboolean reverse, uint64_t addr,
                            uint64_t size, const uint64_t *id, uint64_t *out)
{
    IOVATree *tree;
    int rc = enter(t, wait, &tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    if (addr + size < addr) {
        ib_guard_leave(&t->guard, FALSE);
        return IOVA_ERR_INVALID;
    }
    const DMAMap *m = lookup(tree, reverse, addr, size, id);
    uint64_t found = m ? tree_entry(t, m) : 0;
    if (m && out) {
        ib_map_out(m, out);
        out[IB_MAP_WORDS] = t->removals & INT64_MAX;
    }
    ib_guard_leave(&t->guard, FALSE);
    return m ? key_answer(found) : IB_NONE;
}

int64_t ib_tree_find_entry_try(IBTree *t, uint64_t key, uint64_t size)
{
    return lookup_entry(t, FALSE, FALSE, key, size, NULL, NULL);
}

int64_t ib_tree_find_entry_at_try(IBTree *t, uint64_t key)
{
    return lookup_entry(t, FALSE, FALSE, key, 0, NULL, NULL);
}

int64_t ib_tree_find_iova_entry_try(IBTree *t, uint64_t addr, uint64_t size)
{
    return lookup_entry(t, FALSE, TRUE, addr, size, NULL, NULL);
}

int64_t ib_tree_find_iova_entry_at_try(IBTree *t, uint64_t addr)
{
    return lookup_entry(t, FALSE, TRUE, addr, 0, NULL, NULL);
}

int64_t ib_tree_find_iova_id_entry_try(IBTree *t, uint64_t addr, uint64_t size, uint64_t id)
{
    return lookup_entry(t, FALSE, TRUE, addr, size, &id, NULL);
}

int64_t ib_tree_find_map(IBTree *t, int reverse, uint64_t addr, uint64_t size, int has_id,
                         uint64_t id, uint64_t *out)
{
    return lookup_entry(t, TRUE, reverse != 0, addr, size, has_id ? &id : NULL, out);
}

int64_t ib_tree_find_map_try(IBTree *t, int reverse, uint64_t addr, uint64_t size,
                             int has_id, uint64_t id, uint64_t *out)
{
    return lookup_entry(t, FALSE, reverse != 0, addr, size, has_id ? &id : NULL, out);
}

int64_t ib_tree_removals_try(IBTree *t)
{
    IOVATree *tree;
    int rc = enter(t, FALSE, &tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    uint64_t removals = t->removals;
    ib_guard_leave(&t->guard, FALSE);
    return (int64_t)(removals & INT64_MAX);
}

int ib_tree_insert_map(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                       uint64_t perm, uint64_t id)
{
    return insert_map(t, TRUE, iova, translated_addr, size, perm, id, NULL);
}

int ib_tree_insert_map_try(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                           uint64_t perm, uint64_t id)
{
    return insert_map(t, FALSE, iova, translated_addr, size, perm, id, NULL);
}

/* 1 when the entry answer @answer names a map, 0 for none, or the error it is. */
static int found_or_error(int64_t answer)
{
    if (answer == IB_NONE) {
        return 0;
    }
    return answer >= 0 || answer < IB_CODE_MIN || answer == IB_TOP ? 1 : (int)answer;
}

int ib_tree_find(IBTree *t, uint64_t key, uint64_t size, uint64_t *out)
{
    return found_or_error(lookup_entry(t, TRUE, FALSE, key, size, NULL, out));
}

int ib_tree_find_iova(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                      uint64_t *out)
{
    return found_or_error(lookup_entry(t, TRUE, TRUE, addr, size, has_id ? &id : NULL, out));
}

/* The entries of the maps overlapping @needle, lowest first, into @entries (room for all). */
static void overlap_entries(const IBTree *t, const IOVATree *tree, const DMAMap *needle,
                            uint64_t *entries)
{
    uint64_t last = needle->iova + needle->size;
    size_t n = 0;
    for (const DMAMap *m = iova_tree_find(tree, needle); m && tree_key(t, m) <= last;
         m = iova_tree_next(tree, tree_key(t, m), FALSE)) {
        entries[n++] = tree_entry(t, m);
    }
}

/* ib_tree_remove_entries(), waiting for the lock (@wait) or not (IB_BUSY). */
static int64_t remove_entries(IBTree *t, gboolean wait, uint64_t key, uint64_t size,
                              uint64_t *entries, size_t cap)
{
    DMAMap needle = key_needle(key, size);
    IOVATree *tree;
    int entered = enter(t, wait, &tree);
    if (entered != IOVA_OK) {
        return entered;
    }
    if (key + size < key) {
        ib_guard_leave(&t->guard, FALSE);
        return IOVA_ERR_INVALID;
    }
    if (entries && size == 0 && cap >= 1) {
        /* one byte: at most one map overlaps, and one look-up finds it */
        const DMAMap *m = iova_tree_find(tree, &needle);
        if (m) {
            entries[0] = tree_entry(t, m);
        }
    } else if (entries) {
        size_t count = iova_tree_count(tree, &needle);
        if (count > cap) {
            ib_guard_leave(&t->guard, FALSE);
            return (int64_t)count;
        }
        overlap_entries(t, tree, &needle, entries);
    }
    size_t n;
    int rc = iova_tree_remove_checked(tree, needle, &n);
    t->removals += n > 0;
    ib_guard_leave(&t->guard, n > 0);
    return rc == IOVA_OK ? (int64_t)n : rc;
}

int64_t ib_tree_remove_entries(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                               size_t cap)
{
    return remove_entries(t, TRUE, key, size, entries, cap);
}

int64_t ib_tree_remove_entries_try(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                                   size_t cap)
{
    return remove_entries(t, FALSE, key, size, entries, cap);
}

/* ib_tree_remove_at(), waiting for the lock (@wait) or not (IB_BUSY). */
static int64_t remove_at(IBTree *t, gboolean wait, uint64_t key)
{
    DMAMap needle = key_needle(key, 0);
    IOVATree *tree;
    int rc = enter(t, wait, &tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    size_t n = 0;
    uint64_t found = 0;
    if (t->arena) {
        /* One byte: at most one map goes, and its slot is the one its arena released last
         * (no second descent to find it first). */
        rc = iova_tree_remove_checked(tree, needle, &n);
        found = n ? iova_arena_last_released(t->arena) : 0;
    } else {
        const DMAMap *m = iova_tree_find(tree, &needle);
        found = m ? tree_entry(t, m) : 0;
        rc = m ? iova_tree_remove_checked(tree, needle, &n) : IOVA_OK;
    }
    t->removals += n > 0;
    ib_guard_leave(&t->guard, n > 0);
    return rc != IOVA_OK ? rc : n ? key_answer(found) : IB_NONE;
}

int64_t ib_tree_remove_at(IBTree *t, uint64_t key)
{
    return remove_at(t, TRUE, key);
}

int64_t ib_tree_remove_at_try(IBTree *t, uint64_t key)
{
    return remove_at(t, FALSE, key);
}

/*
 * ib_tree_alloc_key(), waiting for the lock (@wait) or not (IB_BUSY).  A key in the top
 * -IB_CODE_MIN of the space goes to *@top, not to errno: any cffi call made before Python
 * reads errno (a signal handler's, a finalizer's) would change it.
 */
static int64_t alloc_key(IBTree *t, gboolean wait, uint64_t size, uint64_t translated_addr,
                         uint64_t perm, uint64_t id, uint64_t iova_begin, uint64_t iova_last,
                         uint64_t align, int top_down, uint64_t *top)
{
    DMAMap map = { 0, translated_addr, size, id, (IOMMUAccessFlags)perm };
    IOVATree *tree;
    int rc = enter_to_store(t, wait, perm, &tree);
    if (rc != IOVA_OK) {
        return rc;
    }
    rc = iova_tree_alloc_map_full(tree, &map, iova_begin, iova_last, align,
                                  top_down ? IOVA_ALLOC_LAST : IOVA_ALLOC_FIRST);
    ib_guard_leave(&t->guard, rc == IOVA_OK);
    if (rc != IOVA_OK) {
        return rc;
    }
    if (map.iova >= (uint64_t)(int64_t)IB_CODE_MIN) {
        *top = map.iova;
        return IB_TOP;
    }
    return (int64_t)map.iova;
}

int64_t ib_tree_alloc_key(IBTree *t, uint64_t size, uint64_t translated_addr, uint64_t perm,
                          uint64_t id, uint64_t iova_begin, uint64_t iova_last, uint64_t align,
                          int top_down, uint64_t *top)
{
    return alloc_key(t, TRUE, size, translated_addr, perm, id, iova_begin, iova_last, align,
                     top_down, top);
}

int64_t ib_tree_alloc_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                              uint64_t perm, uint64_t id, uint64_t iova_begin,
                              uint64_t iova_last, uint64_t align, int top_down, uint64_t *top)
{
    return alloc_key(t, FALSE, size, translated_addr, perm, id, iova_begin, iova_last, align,
                     top_down, top);
}

/* The first fit over the whole space; without @top, only where the answer is a plain key. */
static int64_t alloc_first_key(IBTree *t, gboolean wait, uint64_t size,
                               uint64_t translated_addr, uint64_t perm, uint64_t id,
                               uint64_t *top)
{
    const uint64_t below_top = (uint64_t)(int64_t)IB_CODE_MIN - 1;
    int64_t answer = alloc_key(t, wait, size, translated_addr, perm, id, 0,
                               top ? UINT64_MAX : below_top, 1, 0, top);

    if (!top && (answer == IOVA_ERR_NOMEM || answer == IOVA_ERR_INVALID)) {
        return IB_TOP;
    }
    return answer;
}

int64_t ib_tree_alloc_first_key(IBTree *t, uint64_t size, uint64_t translated_addr,
                                uint64_t perm, uint64_t id, uint64_t *top)
{
    return alloc_first_key(t, TRUE, size, translated_addr, perm, id, top);
}

int64_t ib_tree_alloc_first_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                                    uint64_t perm, uint64_t id, uint64_t *top)
{
    return alloc_first_key(t, FALSE, size, translated_addr, perm, id, top);
}

/* ---------------------------------------------------------------- timing from C */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ib_spin(uint64_t ns)
{
    uint64_t start = now_ns();
    while (now_ns() - start < ns) {
        continue;
    }
}

void ib_spin_try(uint64_t ns)
{
    ib_spin(ns);
}

int64_t ib_time_lookups(IBTree *t, int op, const uint64_t *addrs, const uint64_t *ids,
                        size_t n)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    DMAMap needle = { 0 };
    uintptr_t sink = 0;
    uint64_t start = now_ns();
    for (size_t i = 0; i < n; i++) {
        const DMAMap *m;
        needle.iova = needle.translated_addr = addrs[i];
        switch (op) {
        case IB_TIME_FIND:
            m = iova_tree_find(tree, &needle);
            break;
        case IB_TIME_FIND_IOVA:
            m = iova_tree_find_iova_any(tree, &needle);
            break;
        default:
            needle.id = ids[i];
            m = iova_tree_find_iova(tree, &needle);
            break;
        }
        sink += (uintptr_t)m;
    }
    uint64_t spent = now_ns() - start;
    ib_guard_leave(&t->guard, FALSE);
    __asm__ volatile("" : : "r"(sink)); /* the answers are used */
    return (int64_t)spent;
}

int64_t ib_time_churn(IBTree *t, const uint64_t *maps, size_t n, int64_t *insert_ns)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int failed = 0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        const uint64_t *w = maps + i * IB_MAP_WORDS;
        failed |= iova_tree_remove_count(tree, key_needle(t->kind == 1 ? w[1] : w[0], 0)) != 1;
    }
    uint64_t t1 = now_ns();
    for (size_t i = n; i-- > 0;) {
        const uint64_t *w = maps + i * IB_MAP_WORDS;
        DMAMap map = { w[0], w[1], w[2], w[4], (IOMMUAccessFlags)w[3] };
        failed |= iova_tree_insert(tree, &map) != IOVA_OK;
    }
    uint64_t t2 = now_ns();
    t->removals++;
    ib_guard_leave(&t->guard, TRUE);
    *insert_ns = (int64_t)(t2 - t1);
    return failed ? IOVA_ERR_INVALID : (int64_t)(t1 - t0);
}

int64_t ib_time_alloc(IBTree *t, size_t n, uint64_t size, uint64_t translated_addr)
{
    IOVATree *tree = ib_guard_enter(&t->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    uint64_t *placed = g_try_new(uint64_t, n);
    int failed = placed == NULL;
    uint64_t spent = 0;
    if (placed) {
        uint64_t t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            DMAMap map = { 0, translated_addr, size, 0, IOMMU_RW };
            failed |= iova_tree_alloc_map(tree, &map, 0, HWADDR_MAX) != IOVA_OK;
            placed[i] = map.iova;
        }
        spent = now_ns() - t0;
        for (size_t i = 0; i < n; i++) {
            iova_tree_remove(tree, key_needle(placed[i], 0));
        }
    }
    g_free(placed);
    t->removals++;
    ib_guard_leave(&t->guard, TRUE);
    return failed ? IOVA_ERR_INVALID : (int64_t)spent;
}

/* ---------------------------------------------------------------- copies */

typedef struct CopyInto {
    IOVATree *dst;
    gboolean by_translated;
    int rc;
} CopyInto;

static bool copy_one(const DMAMap *map, void *opaque)
{
    CopyInto *c = opaque;
    c->rc = c->by_translated ? gpa_tree_insert(c->dst, map) : iova_tree_insert(c->dst, map);
    return c->rc != IOVA_OK;
}

/* What a copy may need per map, generously: GLib's node, the entry, its share of the holes. */
#define IB_COPY_BYTES_PER_MAP 256

int ib_copy_tree(IOVATree *dst, const IOVATree *src, gboolean by_translated)
{
    if (!ib_memory_room(iova_tree_nnodes(src) * IB_COPY_BYTES_PER_MAP)) {
        return IOVA_ERR_OOM; /* every insert below makes GLib allocate a node */
    }
    CopyInto c = { dst, by_translated, IOVA_OK };
    iova_tree_foreach_range(src, 0, HWADDR_MAX, copy_one, &c);
    return c.rc;
}

int ib_tree_copy_into(IBTree *dst, IBTree *src)
{
    if (dst->kind != src->kind) {
        return IOVA_ERR_INVALID;
    }
    const IOVATree *from = ib_guard_enter(&src->guard);
    if (!from) {
        return IB_CLOSED;
    }
    /* @dst is a new tree no other thread has seen: taking its lock second cannot deadlock. */
    IOVATree *to = ib_guard_enter(&dst->guard);
    int rc = to ? ib_copy_tree(to, from, src->kind == 1) : IB_CLOSED;
    if (to) {
        ib_guard_leave(&dst->guard, TRUE);
    }
    ib_guard_leave(&src->guard, FALSE);
    return rc;
}
