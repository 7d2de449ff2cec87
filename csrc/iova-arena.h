/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fixed-size element arena addressed by 32-bit references.
 *
 * Why: every map carries the links of two intrusive search trees.  With 64-bit pointers those
 * links alone would cost 48 bytes a map; as 32-bit references into an arena they cost 24.  The
 * arena grows by whole blocks that never move, so a pointer to an element (the GTree key) stays
 * valid for the element's life.  Reference 0 is never handed out: it means "none".
 *
 * Why the blocks lie side by side: every step of every descent turns a reference into an
 * address.  With blocks anywhere that is a load from the block table on the way from one
 * element to the next; with the blocks at base + block * block size it is a shift and an add
 * (the block table is still kept, for the blocks that could not be laid there).
 *
 * Why they are laid by growing one mapping in place rather than in a range reserved up front:
 * a reservation costs address space and mappings whether the arena grows or not, and a tree
 * with one map would hold hundreds of MiB of the process's RLIMIT_AS and two of its
 * vm.max_map_count mappings per arena.  The first block is mapped alone (the one mapping a
 * block from aligned_alloc() cost too), at the start of a free range found by probing for
 * as much as the arena may ever span; the range is given back at once, and the blocks after
 * the first are mapped into it (address space with no access, each block made memory when
 * it is added) only as the arena needs them, right after the ones before, as much again as
 * is mapped at each growth (all it may grow to at once would hold the 256 MiB of RLIMIT_AS
 * again for every arena past its first block).  Where that fails
 * (the range was taken meanwhile, a tight RLIMIT_AS, a 32-bit host, a refused commit) the
 * arena goes on with blocks from aligned_alloc() found through the block table: nothing
 * fails that did not fail before.
 */
#ifndef IOVA_ARENA_H
#define IOVA_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint32_t IOVARef;

#define IOVA_REF_NONE 0u
#ifndef IOVA_ARENA_SHIFT
/* (tests/c/check-oom.c builds the core with tiny blocks: a new block every few elements) */
#define IOVA_ARENA_SHIFT 12
#endif
#define IOVA_ARENA_BLOCK (1u << IOVA_ARENA_SHIFT)
#define IOVA_ARENA_MASK (IOVA_ARENA_BLOCK - 1)

#ifndef IOVA_ARENA_RESERVE
/* The most address space an arena's flat blocks may span (none on a 32-bit host): 4M entries. */
#define IOVA_ARENA_RESERVE (sizeof(void *) >= 8 ? (size_t)1 << 28 : 0)
#endif

typedef struct IOVAArena {
    char *base;           /* the first block (NULL: none yet), the other flat blocks after it */
    IOVARef flat;         /* references below it are at base + ref * elem_size */
    size_t mapped;        /* bytes mapped at the base (0: the first block is aligned_alloc()'s) */
    size_t committed;     /* bytes of them made accessible: iova_arena_mapped() */
    char **blocks;        /* each holds IOVA_ARENA_BLOCK elements */
    uint32_t *by_address; /* block numbers in the order of their addresses: ref_of() */
    uint32_t nblocks;
    uint32_t cap_blocks;
    uint32_t elem_size;   /* bytes; at least sizeof(IOVARef) */
    IOVARef next_fresh;   /* lowest reference never handed out */
    IOVARef free_head;    /* released elements, threaded through their first 4 bytes */
    uint32_t live;        /* elements handed out and not released */
    uint32_t free_count;  /* elements on the free list */
} IOVAArena;

/**
 * iova_arena_init: prepare an empty arena of @elem_size-byte elements.
 */
void iova_arena_init(IOVAArena *arena, uint32_t elem_size);

/**
 * iova_arena_alloc: hand out one element, its contents left as they are.  Why not zeroed:
 * every owner writes each field of a new element before it reads it (a map is copied in,
 * an AVL link, height and summary are set when it is linked), and clearing a cache line on
 * each insert costs a call to memset.
 *
 * Returns: its reference, or IOVA_REF_NONE when memory or the 32-bit reference space ran out.
 */
IOVARef iova_arena_alloc(IOVAArena *arena);

/**
 * iova_arena_reserve: make sure the next @count allocations cannot fail (they need no memory
 * from the system), so that a change that needs them can be made all or nothing.
 *
 * Returns: 0, or -1 when memory ran out (nothing is lost: the arena is as before, or larger).
 */
int iova_arena_reserve(IOVAArena *arena, uint32_t count);

/**
 * iova_arena_spare: whether the next iova_arena_alloc() needs no memory from the system (an
 * element is waiting on the free list, or its block is there already).
 */
static inline bool iova_arena_spare(const IOVAArena *arena)
{
    return arena->free_count > 0 ||
           (uint64_t)arena->nblocks * IOVA_ARENA_BLOCK > arena->next_fresh;
}

/**
 * iova_arena_release: give element @ref back; its contents are lost.
 */
void iova_arena_release(IOVAArena *arena, IOVARef ref);

/**
 * iova_arena_last_released: the reference iova_arena_release() was given last, which is also
 * the next one iova_arena_alloc() hands out (released elements are reused last in, first
 * out), or IOVA_REF_NONE when none is waiting.  How a caller that released one element
 * through a structure it cannot see into learns which one it was.
 */
static inline IOVARef iova_arena_last_released(const IOVAArena *arena)
{
    return arena->free_head;
}

/**
 * iova_arena_reset: release every element and every block.
 */
void iova_arena_reset(IOVAArena *arena);

/**
 * iova_arena_ref_of: the reference of the element at @elem, found from its address in
 * O(log blocks) without touching the element.
 *
 * Returns: the reference, or IOVA_REF_NONE when @elem is not the start of an element that
 * was ever handed out.
 */
IOVARef iova_arena_ref_of(const IOVAArena *arena, const void *elem);

/**
 * iova_arena_mapped: the bytes of @arena's blocks that are in no malloc() count (the flat
 * blocks the arena mapped itself, whole pages).  A heap count such as mallinfo2() sees the other
 * blocks and the tables; this adds the rest, so that memory per map stays measurable.
 */
static inline size_t iova_arena_mapped(const IOVAArena *arena)
{
    return arena->committed;
}

/**
 * IOVAArenaView: what turns a reference into an address (iova_view_elem()), copied out of the
 * arena for a walk that keeps it in a local: a store during the walk may alias the arena,
 * whose fields would be read again after it.
 */
typedef struct IOVAArenaView {
    char *base;
    IOVARef flat;
    char *const *blocks;
} IOVAArenaView;

static inline IOVAArenaView iova_arena_view(const IOVAArena *arena)
{
    IOVAArenaView v = { arena->base, arena->flat, arena->blocks };
    return v;
}

/**
 * iova_view_elem: the element behind @ref, from view @v of an arena of @elem_size-byte
 * elements.  Why @elem_size at the call: as a constant, the multiply is a shift and the
 * arena's own size is never loaded.  A flat reference (all of them, but in an arena past 4M
 * elements or one that could not grow in place) is a shift and an add; the test on it is
 * always predicted.
 */
static inline void *iova_view_elem(const IOVAArenaView *v, IOVARef ref, uint32_t elem_size)
{
    if (__builtin_expect(ref < v->flat, 1)) {
        return v->base + (size_t)ref * elem_size;
    }
    return v->blocks[ref >> IOVA_ARENA_SHIFT] + (size_t)(ref & IOVA_ARENA_MASK) * elem_size;
}

/**
 * iova_arena_elem: as iova_arena_ptr(), for an arena of @elem_size-byte elements (a module
 * whose arena holds one type reads its elements through this).
 */
static inline void *iova_arena_elem(const IOVAArena *arena, IOVARef ref, uint32_t elem_size)
{
    if (__builtin_expect(ref < arena->flat, 1)) {
        return arena->base + (size_t)ref * elem_size;
    }
    return arena->blocks[ref >> IOVA_ARENA_SHIFT] + (size_t)(ref & IOVA_ARENA_MASK) * elem_size;
}

/**
 * iova_arena_ptr: the element behind @ref (which must have been handed out).
 */
static inline void *iova_arena_ptr(const IOVAArena *arena, IOVARef ref)
{
    return iova_arena_elem(arena, ref, arena->elem_size);
}

#endif /* IOVA_ARENA_H */
