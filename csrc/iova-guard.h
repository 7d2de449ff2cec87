/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What both binding layers share: the lock, closed flag and change counter around one C
 * object, the five-word form of a map, and the batch translation loops.
 */
#ifndef IOVA_GUARD_H
#define IOVA_GUARD_H

#include <glib.h>

#include "iova-tree.h"

typedef struct IBGuard {
    GMutex lock;
    void *object;        /* NULL once closed */
    int64_t generation;  /* bumped by every successful change */
    gpointer fork_owner; /* the thread holding @lock for fork() (atomic), or NULL */
} IBGuard;

/**
 * ib_guard_init: guard @object.
 */
void ib_guard_init(IBGuard *g, void *object);

/**
 * ib_guard_enter: lock and return the object, or return NULL (unlocked) when closed.
 */
void *ib_guard_enter(IBGuard *g);

/**
 * ib_guard_try_enter: ib_guard_enter() without waiting.  Why: a caller that keeps Python's
 * GIL must never wait for this lock, since its holder may be waiting for the GIL (the fork
 * hooks hold every tree's lock while Python code runs).
 *
 * Returns: FALSE, holding nothing, when another call holds the lock; otherwise TRUE, with
 * the object in *@object (locked), or NULL there (unlocked) when closed.
 */
gboolean ib_guard_try_enter(IBGuard *g, void **object);

/**
 * ib_guard_leave: unlock; count a change when @changed.
 */
void ib_guard_leave(IBGuard *g, gboolean changed);

/**
 * ib_guard_close: take the object away (returned, for the caller to free) and count a change.
 * Later entries find the guard closed.
 */
void *ib_guard_close(IBGuard *g);

/**
 * ib_memory_room: whether a little memory can still be had, for GLib.
 *
 * GLib aborts the process when one of its own allocations fails (g_malloc(), and GSlice, where
 * g_tree_insert() and g_tree_new() take their nodes from), while the core's own allocations
 * fail softly with IOVA_ERR_OOM.  So every binding call that may make GLib allocate asks this
 * first, and answers IOVA_ERR_OOM, the tree untouched, when it says no.  It allocates
 * @bytes (at least IB_MEMORY_PROBE) and frees them at once: malloc keeps the freed block, and
 * GLib's next small allocations on this thread are carved from it.  (Another thread can take
 * that memory in between; that race is the one way left to GLib's abort.)
 */
#define IB_MEMORY_PROBE (16 * 1024)
gboolean ib_memory_room(size_t bytes);

/**
 * ib_guard_fork_lock: take the lock before fork(), waiting for a call in flight to finish.
 * ib_guard_fork_unlock gives it back (in the parent, or in the child that took it).  Both
 * may be called again: taking a lock this thread holds for fork(), or giving back one it
 * does not, does nothing (a fork hook cut short by an exception is run again, and the hooks
 * after it give back whatever was taken).
 * Meanwhile the thread that took it goes in without locking (ib_guard_enter() and the
 * others): Python code runs in it while it holds the locks (a finalizer the garbage
 * collector calls, a signal handler, another fork hook), and a call of that code on the
 * object would otherwise wait for its own thread for ever.  No other thread is inside then.
 */
void ib_guard_fork_lock(IBGuard *g);
void ib_guard_fork_unlock(IBGuard *g);

/**
 * ib_guard_fork_child: in a child after fork(): give the lock back when this thread took it
 * before forking.  Otherwise the lock may be held by a thread that does not exist in
 * the child, inside a change it will never finish: the guard is then closed without freeing
 * the object (it may be half-changed; the child leaks its copy) and a fresh lock is made.
 *
 * Returns: TRUE when the object was lost that way.
 */
gboolean ib_guard_fork_child(IBGuard *g);

/**
 * ib_map_out: @m as five words: iova, translated_addr, size, perm, id.
 */
void ib_map_out(const DMAMap *m, uint64_t *out);

/**
 * ib_copy_maps: up to @cap maps of @tree whose key is above @key (or at or above it when
 * @inclusive), as five words each.  Returns the count.
 */
size_t ib_copy_maps(const IOVATree *tree, gboolean by_translated, uint64_t key,
                    gboolean inclusive, uint64_t *out, size_t cap);

/**
 * ib_dump_maps: up to @cap maps of @tree from the lowest key, as five words each.
 *
 * Returns: how many maps @tree holds (more than @cap: call again with a larger buffer).
 */
int64_t ib_dump_maps(const IOVATree *tree, gboolean by_translated, uint64_t *out, size_t cap);

/**
 * ib_copy_tree: insert every map of @src into the empty @dst (both keyed alike: by translated
 * address when @by_translated).  Returns IOVA_OK, or the first insert's error.
 */
int ib_copy_tree(IOVATree *dst, const IOVATree *src, gboolean by_translated);

/* How the batch loops look an address up. */
typedef enum {
    IB_LOOKUP_KEY,        /* the tree's own key (IOVA, or GPA in a GPA tree) */
    IB_LOOKUP_REVERSE,    /* the translated side, any id */
    IB_LOOKUP_REVERSE_ID, /* the translated side, one id */
} IBLookup;

/**
 * ib_batch: translate @n addresses of @in into @out through @tree.  A hit gives the address's
 * offset in the map added to the other side's start.  A miss writes @missing when
 * @has_missing; otherwise it stops with IOVA_ERR_TRANSLATION and its index in *@miss.
 */
int ib_batch(const IOVATree *tree, IBLookup lookup, gboolean key_is_translated, uint64_t id,
             const uint64_t *in, size_t n, uint64_t *out, int has_missing, uint64_t missing,
             size_t *miss);

#endif /* IOVA_GUARD_H */
