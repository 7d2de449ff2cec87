/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The layer Python calls through cffi: one lock per tree, a closed flag, a change counter,
 * and results written into caller buffers so that one C call returns one whole answer.
 *
 * Why a lock: cffi releases the GIL during every call, so two Python threads can be inside one
 * tree at once; QEMU's IOVATree (and ours) is not thread-safe by itself.  Why a closed flag
 * rather than freeing on close(): a thread may still hold the handle when another closes it;
 * the handle itself is memory Python owns (ib_tree_size() bytes, set up by ib_tree_init()),
 * given back only when no Python object can reach it any more, so no call can ever see freed
 * memory, and a call on a closed tree returns IB_CLOSED.  Python's finalizer only closes: it
 * may run while other finalizers of the same garbage can still call the tree.
 *
 * A map crosses as five uint64_t in DMAMap order of the Python type:
 * iova, translated_addr, size, perm, id.
 */
#ifndef IOVA_BINDING_H
#define IOVA_BINDING_H

#include <stddef.h>
#include <stdint.h>

#define IB_CLOSED (-100)  /* the tree was closed */
#define IB_CHANGED (-101) /* the tree changed since the caller's snapshot (iteration) */
#define IB_MAP_WORDS 5

/*
 * The look-ups and removals that Python's cache reads (ib_tree_*_entry, ib_tree_remove_at,
 * ib_tree_remove_entries) answer with one int64_t, which Python reads without a buffer: the
 * *entry* of a map, or a code.  In an IOVATree the entry is the arena reference of the map's
 * entry (1 .. 2**32-1; no two stored maps share one, and a removed map's goes to the next map
 * stored), which Python's cache of found maps is a list indexed by; in a GPATree, whose maps
 * live in no arena, it is the map's key (its translated address).  The allocations answer the
 * IOVA placed the same way.  Codes lie in [IB_CODE_MIN, -1]; values up to INT64_MAX cross as
 * themselves and higher ones as their two's complement (below IB_CODE_MIN), except the top
 * -IB_CODE_MIN, which would read as codes: for those the answer is IB_TOP and the value goes
 * to a word the caller passes (see ib_tree_alloc_key()).
 */
#define IB_NONE (-102)     /* no map */
#define IB_TOP (-103)      /* a value in the top -IB_CODE_MIN of the space: see *top */
#define IB_BUSY (-104)     /* a _try form found the lock held: ask a waiting form instead */
#define IB_CODE_MIN (-128)

typedef struct IBTree IBTree;

/* Constructors: kind 0 = IOVATree, 1 = GPATree.  NULL when memory ran out. */
IBTree *ib_tree_new(int kind);
/* Frees everything, closed or not (what ib_tree_new() made). */
void ib_tree_free(IBTree *t);
/*
 * The handle in memory of the caller's (ib_tree_size() bytes, zeroed, aligned for a pointer):
 * IOVA_OK, or IOVA_ERR_OOM with nothing allocated.  ib_tree_close() frees what it made; the
 * memory itself the caller gives back, when nothing can call the handle any more.
 */
size_t ib_tree_size(void);
int ib_tree_init(IBTree *t, int kind);
int ib_tree_close(IBTree *t);
/*
 * fork() support (native.py registers the hooks): before fork() the forking thread takes the
 * lock of every live tree, waiting for calls in flight to finish; after it, the parent gives
 * them back, and so does the child for those this thread took.  A tree whose lock the child
 * finds held by a thread that does not exist there (its contents may be half-changed) is lost:
 * ib_tree_fork_child() closes it without freeing it and answers 1.  Each may be called again
 * (iova-guard.h): a hook that an exception cut short is run again.
 */
void ib_tree_fork_lock(IBTree *t);
void ib_tree_fork_unlock(IBTree *t);
int ib_tree_fork_child(IBTree *t);

/*
 * The fork hooks' record, for the part of their work that no Python code may be left to do:
 * Python code (the hooks themselves) can be cut short at any call by an exception that a
 * signal handler raises, and CPython then goes on with the fork.  ib_fork_set_lock() notes
 * the tree (IBTree or IBVhost: both begin with their guard) before it takes the lock, and
 * ib_fork_set_release() gives back every lock noted, in the parent or (@child) in the child:
 * native.py calls it from its Python hooks and again from hooks that are C functions, which
 * nothing interrupts.  ib_fork_set_block() blocks every signal of the forking thread, saving
 * its mask once; ib_fork_set_unblock() restores it (from a C hook too, so that a signal that
 * came meanwhile runs its Python handler only once os.fork() has returned, in the caller).
 * One set serves one forking thread at a time (native.py's _fork_serial).
 */
typedef struct IBForkSet IBForkSet;
IBForkSet *ib_fork_set_new(void);
void ib_fork_set_free(IBForkSet *s);
/* Room to note @more trees more: IOVA_OK or IOVA_ERR_OOM (a tree not noted is still locked). */
int ib_fork_set_reserve(IBForkSet *s, size_t more);
void ib_fork_set_lock(IBForkSet *s, void *handle);
void ib_fork_set_release(IBForkSet *s, int child);
/* ib_guard_fork_unlock() of one tree, noted or not (an IBTree or IBVhost). */
void ib_fork_unlock(void *handle);
void ib_fork_set_block(IBForkSet *s);
void ib_fork_set_unblock(IBForkSet *s);
int ib_tree_closed(IBTree *t);
int ib_tree_clear(IBTree *t);
/* Number of maps, or IB_CLOSED. */
int64_t ib_tree_len(IBTree *t);

/**
 * ib_tree_has_holes: whether the tree's index of free IOVA ranges exists now (always, for an
 * IOVATree the binding made: no alloc waits on it); 0 for a GPATree, IB_CLOSED when closed.
 */
int ib_tree_has_holes(IBTree *t);
/* Change counter, or IB_CLOSED. */
int64_t ib_tree_generation(IBTree *t);

/* IOVA_OK, or an IOVA_ERR_* code; on IOVA_ERR_OVERLAP the lowest map hit is in @existing
 * (unless it is NULL). */
int ib_tree_insert(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                   uint64_t perm, uint64_t id, uint64_t *existing);
/* 1 with the map in @out, 0 when none, IOVA_ERR_INVALID when the range wraps; keyed by the
 * tree's own key.  Every call answers IB_CLOSED on a closed tree, before anything else. */
int ib_tree_find(IBTree *t, uint64_t key, uint64_t size, uint64_t *out);
/* 1 with the map in @out, 0 when none. */
int ib_tree_find_iova(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                      uint64_t *out);
/*
 * IOVA_OK with *@nsegs segments as (iova, len) pairs in @segs (only the first @cap are written:
 * call again with a larger buffer when *@nsegs > @cap), IOVA_ERR_TRANSLATION with *@fault.
 */
int ib_tree_translate(IBTree *t, uint64_t addr, uint64_t length, int has_id, uint64_t id,
                      uint64_t *segs, size_t cap, size_t *nsegs, uint64_t *fault);
/* Number removed; IOVA_ERR_INVALID when the range wraps, IOVA_ERR_OOM (nothing removed), or
 * IB_CLOSED. */
int64_t ib_tree_remove(IBTree *t, uint64_t key, uint64_t size);
/*
 * Copy up to @cap maps whose key is above @key (at or above it when @inclusive) into @out.
 * Returns the count, IB_CHANGED when @generation is no longer current, or IB_CLOSED.
 */
int64_t ib_tree_copy(IBTree *t, int64_t generation, uint64_t key, int inclusive, uint64_t *out,
                     size_t cap);
/*
 * Copy up to @cap maps, from the lowest key, into @out, in one look under the lock; returns
 * how many the tree holds (call again with a larger buffer when that is more than @cap), or
 * IB_CLOSED.  Unlike a walk in steps, a writer that never pauses cannot starve it.
 */
int64_t ib_tree_dump(IBTree *t, uint64_t *out, size_t cap);
/* 0, -1 with a message in @err, or IB_CLOSED. */
int ib_tree_check(IBTree *t, char *err, size_t errlen);

/*
 * Batch forms: @n addresses in, @n out.  IOVA_OK, or IOVA_ERR_TRANSLATION with the index of
 * the first miss in *@miss (only when !@has_missing; otherwise @missing is written).
 * to_translated: IOVA -> translated (an IOVATree).  to_iova: translated -> IOVA (through the
 * reverse tree, with the id when @has_id; a GPATree looks up its own key).
 */
int ib_tree_to_translated_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out,
                               int has_missing, uint64_t missing, size_t *miss);
int ib_tree_to_iova_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out, int has_id,
                         uint64_t id, int has_missing, uint64_t missing, size_t *miss);

/*
 * The _try forms never wait for the tree's lock: they answer IB_BUSY when another call holds
 * it, and the caller asks a form that waits (ib_tree_find_map()).  Why: cffi's wrapper of a
 * function whose name ends in "_try" keeps the GIL (iova-cffi.h), which saves the GIL's
 * release and retaking on the hottest calls, and a call that keeps the GIL must never wait
 * for a lock whose holder may be waiting for the GIL.  So a _try function never blocks.
 *
 * Entry answers (see IB_CODE_MIN) of the map ib_tree_find() would write; _at: of one byte.
 */
int64_t ib_tree_find_entry_try(IBTree *t, uint64_t key, uint64_t size);
int64_t ib_tree_find_entry_at_try(IBTree *t, uint64_t key);
/* Of the map ib_tree_find_iova() would write, any id / with id @id. */
int64_t ib_tree_find_iova_entry_try(IBTree *t, uint64_t addr, uint64_t size);
int64_t ib_tree_find_iova_entry_at_try(IBTree *t, uint64_t addr);
int64_t ib_tree_find_iova_id_entry_try(IBTree *t, uint64_t addr, uint64_t size, uint64_t id);
/*
 * The entry answer of ib_tree_find() (@reverse 0) or ib_tree_find_iova() (1), with the map
 * in @out[0..IB_MAP_WORDS-1] and ib_tree_removals_try()'s count in @out[IB_MAP_WORDS]: what
 * Python's cache is filled from.
 */
int64_t ib_tree_find_map(IBTree *t, int reverse, uint64_t addr, uint64_t size, int has_id,
                         uint64_t id, uint64_t *out);
int64_t ib_tree_find_map_try(IBTree *t, int reverse, uint64_t addr, uint64_t size,
                             int has_id, uint64_t id, uint64_t *out);
/*
 * How many calls have removed maps from @t (cleared it, timed churn on it), up to 2**63 - 1
 * and then from 0 again, or IB_BUSY or IB_CLOSED.  Python's cache fill keeps the map it
 * cached only when the count is the one ib_tree_find_map() copied with it: no removal ran in
 * between to take that map away, which then no removal can have missed dropping.
 */
int64_t ib_tree_removals_try(IBTree *t);
/* ib_tree_insert() without the overlapping map: IOVA_OK or an IOVA_ERR_* code (_try: or
 * IB_BUSY, see ib_tree_find_entry_try()). */
int ib_tree_insert_map(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                       uint64_t perm, uint64_t id);
int ib_tree_insert_map_try(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                           uint64_t perm, uint64_t id);
/*
 * ib_tree_remove(), which also writes the entries (see IB_CODE_MIN) of the maps it removes
 * into @entries (unless @entries is NULL).  When more than @cap maps overlap, nothing is
 * removed and their number is returned: call again with a buffer that large.
 */
int64_t ib_tree_remove_entries(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                               size_t cap);
int64_t ib_tree_remove_entries_try(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                                   size_t cap);
/*
 * ib_tree_remove() of the one byte @key: the entry answer (see IB_CODE_MIN) of the map removed,
 * IB_NONE when no map covers @key, or an error code (_try: or IB_BUSY, see
 * ib_tree_find_entry_try()).  Declared here, not only in the cdef:
 * cffi's wrapper is compiled against this header, and a call to an undeclared function would
 * be taken to answer an int, cutting a GPA tree's keys to their low 32 bits.
 */
int64_t ib_tree_remove_at(IBTree *t, uint64_t key);
int64_t ib_tree_remove_at_try(IBTree *t, uint64_t key);
/*
 * Allocate as iova_tree_alloc_map_full() (@top_down: the last fit); the IOVA placed, crossing
 * as entries do (see IB_CODE_MIN) but for the top -IB_CODE_MIN of the space: there the answer
 * is IB_TOP and the IOVA is in *@top (not errno, which a signal handler's or a finalizer's cffi
 * call may change before Python reads it).  Or an IOVA_ERR_* code, or IB_CLOSED (_try: or
 * IB_BUSY, see ib_tree_find_entry_try()).
 */
int64_t ib_tree_alloc_key(IBTree *t, uint64_t size, uint64_t translated_addr, uint64_t perm,
                          uint64_t id, uint64_t iova_begin, uint64_t iova_last, uint64_t align,
                          int top_down, uint64_t *top);
int64_t ib_tree_alloc_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                              uint64_t perm, uint64_t id, uint64_t iova_begin,
                              uint64_t iova_last, uint64_t align, int top_down, uint64_t *top);
/*
 * ib_tree_alloc_key() over the whole space, first fit, no alignment.  @top may be NULL (the
 * common call, which then needs no buffer): the map is then placed only where its IOVA and
 * its last byte lie below the top -IB_CODE_MIN of the space, and where the first fit lies
 * higher, or nothing fits, or the map is invalid, the answer is IB_TOP and nothing is stored:
 * ask again with a word for the answer.  A first fit that lies lower is the same answer with
 * or without the bound, so no answer changes.
 */
int64_t ib_tree_alloc_first_key(IBTree *t, uint64_t size, uint64_t translated_addr,
                                uint64_t perm, uint64_t id, uint64_t *top);
int64_t ib_tree_alloc_first_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                                    uint64_t perm, uint64_t id, uint64_t *top);

/*
 * Timing of the core's own calls on @t's tree, from C: what the same operation costs without
 * Python and without the binding (the tree's lock is taken once around the loop).  For the
 * benchmark's binding-overhead table.  Each answers the nanoseconds spent, or IB_CLOSED, or
 * IOVA_ERR_INVALID when an operation did not do what was asked.
 *
 * ib_time_lookups: @n look-ups of @addrs: IB_TIME_FIND (the tree's key), IB_TIME_FIND_IOVA
 * (translated, any id), IB_TIME_FIND_IOVA_ID (translated, id @ids[i]).
 * ib_time_churn: remove the @n stored maps @maps (five words each, by their key), then insert
 * them again, the last removed first; answers the removals' time, the inserts' in
 * *@insert_ns.  Why that order: the arena hands out the slot released last first, so each map
 * gets back the slot it had, and the binding's cache of found maps (indexed by slot) stays
 * true without the binding knowing the tree changed.
 * ib_time_alloc: @n first-fit allocations over the whole space (then removed, untimed).
 */
#define IB_TIME_FIND 0
#define IB_TIME_FIND_IOVA 1
#define IB_TIME_FIND_IOVA_ID 2
int64_t ib_time_lookups(IBTree *t, int op, const uint64_t *addrs, const uint64_t *ids,
                        size_t n);
int64_t ib_time_churn(IBTree *t, const uint64_t *maps, size_t n, int64_t *insert_ns);
int64_t ib_time_alloc(IBTree *t, size_t n, uint64_t size, uint64_t translated_addr);
/*
 * For the tests of iova-cffi.h: spin for @ns nanoseconds, touching nothing.  The _try form's
 * wrapper keeps the GIL, so no other Python thread runs meanwhile; the other's lets go of it.
 */
void ib_spin_try(uint64_t ns);
void ib_spin(uint64_t ns);

/* Bytes the C allocator has handed out and not taken back (mallinfo2), for memory figures. */
size_t ib_heap_in_use(void);
/*
 * The bytes of @t's arena blocks mapped outside malloc (iova_tree_mapped_bytes(); 0 for a
 * GPATree or a closed tree): with ib_heap_in_use(), a tree's whole C memory.
 */
size_t ib_tree_mapped_bytes(IBTree *t);

/*
 * Range queries: every map overlapping [key, key + @size] (find_all, in key order) or whose
 * translated range overlaps [addr, addr + @size] and whose id is @id when @has_id
 * (find_iova_all, in IOVA order).  Returns how many there are; @out holds them when that is
 * at most @cap (call again with a larger buffer otherwise).  IOVA_ERR_INVALID when the range
 * wraps, or IB_CLOSED.
 */
int64_t ib_tree_find_all(IBTree *t, uint64_t key, uint64_t size, uint64_t *out, size_t cap);
int64_t ib_tree_find_iova_all(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                              uint64_t *out, size_t cap);

/*
 * Copy every map of @src into @dst, a new empty tree of the same kind, under both locks.
 * IOVA_OK, IB_CLOSED when @src is closed, IOVA_ERR_INVALID when the kinds differ, or the error
 * of the insert that failed (IOVA_ERR_OOM): the caller then drops @dst.
 */
int ib_tree_copy_into(IBTree *dst, IBTree *src);

#endif /* IOVA_BINDING_H */
