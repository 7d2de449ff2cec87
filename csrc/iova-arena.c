/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fixed-size element arena addressed by 32-bit references (see iova-arena.h).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS and MAP_NORESERVE under -std=c11 */
#include "iova-arena.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
/*
 * A fresh mapping reads as zeros, which valgrind's memcheck takes for written: a flat block is
 * marked unwritten, as a block from aligned_alloc() is, so that memcheck still catches a read
 * of a field its owner never wrote (iova_arena_alloc() hands elements out unzeroed).
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define ARENA_UNWRITTEN(p, n) VALGRIND_MAKE_MEM_UNDEFINED(p, n)
#endif
#endif
#ifndef ARENA_UNWRITTEN
#define ARENA_UNWRITTEN(p, n) ((void)(p), (void)(n))
#endif

void iova_arena_init(IOVAArena *arena, uint32_t elem_size)
{
    memset(arena, 0, sizeof(*arena));
    arena->elem_size = elem_size < sizeof(IOVARef) ? sizeof(IOVARef) : elem_size;
    arena->next_fresh = 1; /* reference 0 means "none" */
}

static int arena_grow_index(IOVAArena *arena)
{
    uint32_t cap = arena->cap_blocks ? arena->cap_blocks * 2 : 8;
    char **blocks = realloc(arena->blocks, cap * sizeof(*blocks));
    if (!blocks) {
        return -1;
    }
    arena->blocks = blocks;
    uint32_t *by_address = realloc(arena->by_address, cap * sizeof(*by_address));
    if (!by_address) {
        return -1; /* the larger blocks array is kept; the capacity says what both hold */
    }
    arena->by_address = by_address;
    arena->cap_blocks = cap;
    return 0;
}

/* Where block @base goes in by_address: after every block below it. */
static uint32_t arena_rank(const IOVAArena *arena, uintptr_t base)
{
    uint32_t lo = 0, hi = arena->nblocks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)arena->blocks[arena->by_address[mid]] < base) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static size_t arena_page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/*
 * The most bytes the mapping at the first block may grow to: IOVA_ARENA_RESERVE in whole
 * blocks, no more than every reference below 2^32 needs.
 */
static size_t arena_span_max(const IOVAArena *arena)
{
    size_t block_bytes = (size_t)IOVA_ARENA_BLOCK * arena->elem_size;
    size_t blocks = IOVA_ARENA_RESERVE / block_bytes;
    if (blocks > (0xffffffffu >> IOVA_ARENA_SHIFT)) {
        blocks = 0xffffffffu >> IOVA_ARENA_SHIFT;
    }
    return blocks * block_bytes;
}

#ifdef MAP_ANONYMOUS
static void *arena_map(void *hint, size_t len, int prot)
{
    void *p = mmap(hint, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/*
 * The first block, mapped by the arena itself at the start of a free range as large as the
 * arena may ever grow in place, which is probed (address space only, PROT_NONE) and given
 * back at once but for the block: the range above the block stays free for the blocks to
 * come (the kernel places new mappings at the top of the highest free range, so the ones
 * made after it fill that range from its far end), while a tree with few maps holds only its
 * block.  NULL when the probe or the commit is refused (a tight RLIMIT_AS, vm.max_map_count)
 * or the arena may not map at all: the block comes from aligned_alloc() then, as before.
 */
static char *arena_first_block(IOVAArena *arena)
{
    size_t span = arena_span_max(arena);
    size_t first = round_up((size_t)IOVA_ARENA_BLOCK * arena->elem_size, arena_page());
    if (span == 0) {
        return NULL;
    }
    span = span > first ? round_up(span, arena_page()) : first;
    char *p = arena_map(NULL, span, PROT_NONE);
    if (!p) {
        return NULL;
    }
    /* (the commit while the whole probe is held: a failure gives back only what is ours) */
    if (mprotect(p, first, PROT_READ | PROT_WRITE) != 0 ||
        (span > first && munmap(p + first, span - first) != 0)) {
        munmap(p, span);
        return NULL;
    }
    arena->base = p;
    arena->mapped = first;
    arena->committed = first;
    return p;
}

/*
 * Map address space (PROT_NONE) right after the mapping at the base, so that it reaches at
 * least @need bytes: as much again as is mapped already (no more than the arena may still
 * grow in place), or less, halving, where something took part of the free range.  Why not
 * all the arena may grow to at once: that would hold 256 MiB of the process's RLIMIT_AS for
 * every arena past its first block, where doubling holds at most as much again as the arena
 * has.  Never MAP_FIXED (that would replace whatever lies there): a mapping the kernel put
 * elsewhere is given back.  Refused, the block comes from aligned_alloc(), and so do all
 * later ones (the flat blocks must be the first ones).
 */
static int arena_extend(IOVAArena *arena, size_t need)
{
    size_t page = arena_page();
    size_t at = arena->mapped;
    size_t min = round_up(need, page) - at;
    size_t most = round_up(arena_span_max(arena), page) - at;
    for (size_t len = at > min ? (at < most ? at : most) : min;;
         len = len / 2 > min ? round_up(len / 2, page) : min) {
        char *p = arena_map(arena->base + at, len, PROT_NONE);
        if (p == arena->base + at) {
            arena->mapped = at + len;
            return 0;
        }
        if (p) {
            munmap(p, len);
        }
        if (len == min) {
            break;
        }
    }
    return -1;
}
#else
static char *arena_first_block(IOVAArena *arena)
{
    (void)arena;
    return NULL;
}

static int arena_extend(IOVAArena *arena, size_t need)
{
    (void)arena;
    (void)need;
    return -1;
}
#endif

/*
 * The flat block after the first, made accessible (whole pages: with tiny test blocks a page
 * may hold several), or NULL when there is none: the first block came from aligned_alloc(),
 * a block from aligned_alloc() lies past the flat ones, the range above the blocks is taken
 * or full, or the system refused the memory.
 */
static char *arena_next_flat_block(IOVAArena *arena)
{
    if ((arena->nblocks << IOVA_ARENA_SHIFT) != arena->flat || !arena->mapped) {
        return NULL; /* a block from aligned_alloc() came first: nothing of ours to grow */
    }
    size_t block_bytes = (size_t)IOVA_ARENA_BLOCK * arena->elem_size;
    size_t end = (size_t)arena->flat * arena->elem_size + block_bytes;
    if (end > arena_span_max(arena)) {
        return NULL;
    }
    if (end > arena->mapped && arena_extend(arena, end) < 0) {
        return NULL;
    }
    if (end > arena->committed) {
        size_t upto = round_up(end, arena_page());
        if (mprotect(arena->base + arena->committed, upto - arena->committed,
                     PROT_READ | PROT_WRITE) != 0) {
            return NULL;
        }
        arena->committed = upto;
    }
    return arena->base + (size_t)arena->flat * arena->elem_size;
}

/*
 * The next block of the arena's own mapping, the first included, marked unwritten (a fresh
 * mapping reads as zeros, which memcheck takes for written), or NULL: it comes from
 * aligned_alloc().
 */
static char *arena_flat_block(IOVAArena *arena)
{
    char *block = arena->nblocks == 0 ? arena_first_block(arena) : arena_next_flat_block(arena);
    if (block) {
        ARENA_UNWRITTEN(block, (size_t)IOVA_ARENA_BLOCK * arena->elem_size);
    }
    return block;
}

static int arena_add_block(IOVAArena *arena)
{
    if (arena->nblocks == arena->cap_blocks && arena_grow_index(arena) < 0) {
        return -1;
    }
    char *block = arena_flat_block(arena);
    /* the first block is flat wherever it comes from: base + ref * size needs no mapping */
    bool flat = block != NULL || arena->nblocks == 0;
    if (!block) {
        /* Cache-line aligned, so that 64-byte elements each sit in one line. */
        block = aligned_alloc(64, (size_t)IOVA_ARENA_BLOCK * arena->elem_size);
        if (!block) {
            return -1;
        }
        if (arena->nblocks == 0) {
            arena->base = block;
        }
    }
    uint32_t rank = arena_rank(arena, (uintptr_t)block);
    memmove(&arena->by_address[rank + 1], &arena->by_address[rank],
            (arena->nblocks - rank) * sizeof(*arena->by_address));
    arena->by_address[rank] = arena->nblocks;
    arena->blocks[arena->nblocks++] = block;
    if (flat) {
        arena->flat += IOVA_ARENA_BLOCK;
    }
    return 0;
}

IOVARef iova_arena_ref_of(const IOVAArena *arena, const void *elem)
{
    uintptr_t at = (uintptr_t)elem;
    uint32_t size = arena->elem_size;
    uint32_t block = 0;
    uintptr_t offset = at - (uintptr_t)arena->base;
    /* a flat element's offset from the base is its reference times the size: no search */
    if (!arena->base || at < (uintptr_t)arena->base ||
        offset >= (uintptr_t)arena->flat * size) {
        uint32_t rank = arena_rank(arena, at + 1); /* blocks starting at or below @elem */
        if (rank == 0) {
            return IOVA_REF_NONE;
        }
        block = arena->by_address[rank - 1];
        offset = at - (uintptr_t)arena->blocks[block];
        if (offset >= (uintptr_t)IOVA_ARENA_BLOCK * size) {
            return IOVA_REF_NONE;
        }
    }
    /*
     * The removal of a map starts here, before its descents can: a power-of-two size (every
     * arena of the library) divides by a shift instead of a division's tens of cycles.
     */
    uintptr_t index;
    if ((size & (size - 1)) == 0) {
        index = offset >> __builtin_ctz(size);
        if (offset & (size - 1)) {
            return IOVA_REF_NONE;
        }
    } else {
        index = offset / size;
        if (offset % size != 0) {
            return IOVA_REF_NONE;
        }
    }
    IOVARef ref = (block << IOVA_ARENA_SHIFT) + (IOVARef)index;
    return ref == IOVA_REF_NONE || ref >= arena->next_fresh ? IOVA_REF_NONE : ref;
}

IOVARef iova_arena_alloc(IOVAArena *arena)
{
    IOVARef ref = arena->free_head;

    if (ref != IOVA_REF_NONE) {
        memcpy(&arena->free_head, iova_arena_ptr(arena, ref), sizeof(IOVARef));
        arena->free_count--;
    } else {
        ref = arena->next_fresh;
        if (ref == 0xffffffffu) {
            return IOVA_REF_NONE;
        }
        if ((ref >> IOVA_ARENA_SHIFT) >= arena->nblocks && arena_add_block(arena) < 0) {
            return IOVA_REF_NONE;
        }
        arena->next_fresh++;
    }
    arena->live++;
    return ref;
}

void iova_arena_release(IOVAArena *arena, IOVARef ref)
{
    memcpy(iova_arena_ptr(arena, ref), &arena->free_head, sizeof(IOVARef));
    arena->free_head = ref;
    arena->free_count++;
    arena->live--;
}

int iova_arena_reserve(IOVAArena *arena, uint32_t count)
{
    for (;;) {
        /* An empty arena has no block while next_fresh is already 1 (reference 0 is never
         * handed out): its fresh count is 0, not a wrapped 2^64 - 1. */
        uint64_t capacity = (uint64_t)arena->nblocks * IOVA_ARENA_BLOCK;
        uint64_t fresh = capacity > arena->next_fresh ? capacity - arena->next_fresh : 0;
        if ((uint64_t)arena->free_count + fresh >= count) {
            return 0;
        }
        if ((uint64_t)arena->nblocks * IOVA_ARENA_BLOCK >= 0xffffffffu ||
            arena_add_block(arena) < 0) {
            return -1;
        }
    }
}

void iova_arena_reset(IOVAArena *arena)
{
    for (uint32_t i = arena->flat >> IOVA_ARENA_SHIFT; i < arena->nblocks; i++) {
        free(arena->blocks[i]);
    }
    if (arena->mapped) {
        munmap(arena->base, arena->mapped);
    } else {
        free(arena->base); /* the first block, from aligned_alloc() (or NULL: none) */
    }
    free(arena->blocks);
    free(arena->by_address);
    iova_arena_init(arena, arena->elem_size);
}
