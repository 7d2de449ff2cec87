/*
 * Fixed-size element arena addressed by 32-bit references (see iova-arena.h).
 */
#include "iova-arena.h"

#include <stdlib.h>
#include <string.h>

void iova_arena_init(IOVAArena *arena, uint32_t elem_size)
{
    memset(arena, 0, sizeof(*arena));
    arena->elem_size = elem_size < sizeof(IOVARef) ? sizeof(IOVARef) : elem_size;
    arena->next_fresh = 1; /* reference 0 means "none" */
}

static int arena_add_block(IOVAArena *arena)
{
    if (arena->nblocks == arena->cap_blocks) {
        uint32_t cap = arena->cap_blocks ? arena->cap_blocks * 2 : 8;
        char **blocks = realloc(arena->blocks, cap * sizeof(*blocks));
        if (!blocks) {
            return -1;
        }
        arena->blocks = blocks;
        arena->cap_blocks = cap;
    }
    /* Cache-line aligned, so that 64-byte elements each sit in one line. */
    char *block = aligned_alloc(64, (size_t)IOVA_ARENA_BLOCK * arena->elem_size);
    if (!block) {
        return -1;
    }
    arena->blocks[arena->nblocks++] = block;
    return 0;
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
    memset(iova_arena_ptr(arena, ref), 0, arena->elem_size);
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
        uint64_t fresh = (uint64_t)arena->nblocks * IOVA_ARENA_BLOCK - arena->next_fresh;
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
    for (uint32_t i = 0; i < arena->nblocks; i++) {
        free(arena->blocks[i]);
    }
    free(arena->blocks);
    iova_arena_init(arena, arena->elem_size);
}
