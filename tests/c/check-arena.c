/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The arena's address space and mappings (csrc/iova-arena.h), Linux only (/proc/self):
 * - arenas holding one element each cost one mapping and one block of address space apiece,
 *   and give both back when reset;
 * - an arena grown past its first block keeps every block flat (an element at base +
 *   reference * size) in at most two mappings;
 * - an arena grown past its first block holds at most twice its blocks' address space (not
 *   all it may ever grow to: that took 256 MiB of an RLIMIT_AS from every such arena);
 * - where something took the range above the blocks, wholly or in part, the arena goes on
 *   with blocks from aligned_alloc() and every reference still finds its element and back;
 * - with "unwritten", run under valgrind: a field never written reads as undefined in the
 *   first block, a later one, and the first block of an arena reset and grown again.
 * Prints "ok" and the figures, or the first check that failed.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iova-arena.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

#define FEW 2000 /* arenas holding one element each */

static int failures;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            printf("FAILED %s:%d: ", __FILE__, __LINE__);                           \
            printf(__VA_ARGS__);                                                    \
            printf("\n");                                                           \
            failures++;                                                             \
        }                                                                           \
    } while (0)

static long count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long lines = 0;
    int c;
    if (!f) {
        return -1;
    }
    while ((c = fgetc(f)) != EOF) {
        lines += c == '\n';
    }
    fclose(f);
    return lines;
}

/* VmSize, in bytes */
static long long vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kib = -1;
    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmSize: %lld kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib * 1024;
}

static size_t block_bytes(const IOVAArena *a)
{
    return (size_t)IOVA_ARENA_BLOCK * a->elem_size;
}

/* Every reference handed out finds its element, and the element its reference. */
static void check_refs(const IOVAArena *a, const char *what)
{
    for (IOVARef r = 1; r < a->next_fresh; r++) {
        char *e = iova_arena_ptr(a, r);
        CHECK(iova_arena_ref_of(a, e) == r, "%s: ref_of(ptr(%u)) = %u", what, r,
              iova_arena_ref_of(a, e));
        if (r < a->flat) {
            CHECK(e == a->base + (size_t)r * a->elem_size, "%s: flat %u not at base", what, r);
        }
    }
    CHECK(iova_arena_ref_of(a, (char *)iova_arena_ptr(a, 1) + 1) == IOVA_REF_NONE,
          "%s: ref_of inside an element", what);
}

static void grow(IOVAArena *a, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        IOVARef r = iova_arena_alloc(a);
        CHECK(r != IOVA_REF_NONE, "alloc %u", i);
        memset(iova_arena_ptr(a, r), 0x5a, a->elem_size); /* the element is memory */
    }
}

static void few_elements(void)
{
    static IOVAArena arenas[FEW];
    long maps0 = count_mappings();
    long long vm0 = vm_size();
    for (int i = 0; i < FEW; i++) {
        iova_arena_init(&arenas[i], 64);
        grow(&arenas[i], 1);
    }
    long maps = count_mappings() - maps0;
    long long vm = vm_size() - vm0;
    long long per_arena = (long long)block_bytes(&arenas[0]) + 2 * getpagesize();
    printf("%d one-element arenas: %ld mappings, %lld KiB of address space\n", FEW, maps,
           vm / 1024);
    CHECK(maps <= FEW + 16, "%ld mappings for %d arenas", maps, FEW);
    CHECK(vm <= per_arena * FEW, "%lld bytes of address space for %d arenas", vm, FEW);
    for (int i = 0; i < FEW; i++) {
        iova_arena_reset(&arenas[i]);
    }
    CHECK(count_mappings() <= maps0 + 16, "mappings left after reset: %ld",
          count_mappings() - maps0);
    CHECK(vm_size() <= vm0 + per_arena * 16, "address space left after reset: %lld",
          vm_size() - vm0);
}

static void grown(uint32_t elem_size)
{
    IOVAArena a;
    iova_arena_init(&a, elem_size);
    long maps0 = count_mappings();
    long long vm0 = vm_size();
    grow(&a, 5 * IOVA_ARENA_BLOCK + 7);
    long maps = count_mappings() - maps0;
    long long vm = vm_size() - vm0;
    printf("%u-byte elements, %u blocks: %u flat, %ld mappings\n", elem_size, a.nblocks,
           a.flat >> IOVA_ARENA_SHIFT, maps);
    CHECK(a.flat == a.nblocks << IOVA_ARENA_SHIFT, "%u of %u blocks flat",
          a.flat >> IOVA_ARENA_SHIFT, a.nblocks);
    CHECK(maps <= 2, "%ld mappings for one grown arena", maps);
    CHECK(vm <= 2 * (long long)a.nblocks * (long long)block_bytes(&a) + 4 * getpagesize(),
          "%lld KiB of address space for %u blocks of %zu KiB", vm / 1024, a.nblocks,
          block_bytes(&a) / 1024);
    CHECK(iova_arena_mapped(&a) >= (size_t)a.nblocks * block_bytes(&a),
          "mapped bytes %zu for %u blocks", iova_arena_mapped(&a), a.nblocks);
    check_refs(&a, "grown");
    iova_arena_reset(&a);
    CHECK(count_mappings() <= maps0, "mappings left after reset");
}

/*
 * Something maps a page @blocks_free blocks above the arena's first block before the arena
 * grows: the blocks below it are flat, the rest come from aligned_alloc().
 */
static void range_taken(uint32_t blocks_free)
{
    IOVAArena a;
    iova_arena_init(&a, 64);
    grow(&a, 1);
    char *at = a.base + (size_t)blocks_free * block_bytes(&a);
    void *p = mmap(at, (size_t)getpagesize(), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != at) {
        printf("range taken at %u blocks: not tried (the page went elsewhere)\n", blocks_free);
        if (p != MAP_FAILED) {
            munmap(p, (size_t)getpagesize());
        }
        iova_arena_reset(&a);
        return;
    }
    grow(&a, 8 * IOVA_ARENA_BLOCK);
    printf("range taken at %u blocks: %u of %u blocks flat\n", blocks_free,
           a.flat >> IOVA_ARENA_SHIFT, a.nblocks);
    CHECK(a.flat >= IOVA_ARENA_BLOCK && a.flat <= blocks_free << IOVA_ARENA_SHIFT,
          "%u flat blocks below a page %u blocks up", a.flat >> IOVA_ARENA_SHIFT, blocks_free);
    CHECK(a.nblocks == 9, "%u blocks", a.nblocks);
    check_refs(&a, "range taken");
    iova_arena_reset(&a);
    munmap(p, (size_t)getpagesize());
}

#ifdef HAVE_MEMCHECK
/* Reads a field of element @ref never written: memcheck must count one error more. */
static void read_unwritten(IOVAArena *a, IOVARef ref, const char *what)
{
    unsigned before = VALGRIND_COUNT_ERRORS;
    volatile uint32_t *e = iova_arena_ptr(a, ref);
    if (e[1] == 0x5a5a5a5au) {
        printf("%s: ", what); /* a branch on the value, which memcheck reports */
    }
    CHECK(VALGRIND_COUNT_ERRORS == before + 1, "%s: an unwritten field read as written", what);
}

static int unwritten(void)
{
    if (!RUNNING_ON_VALGRIND) {
        printf("skip: not under valgrind\n");
        return 0;
    }
    IOVAArena a;
    iova_arena_init(&a, 64);
    read_unwritten(&a, iova_arena_alloc(&a), "the first block");
    grow(&a, 2 * IOVA_ARENA_BLOCK);
    read_unwritten(&a, iova_arena_alloc(&a), "the third block");
    iova_arena_reset(&a);
    read_unwritten(&a, iova_arena_alloc(&a), "the first block after a reset");
    iova_arena_reset(&a);
    printf(failures ? "%d checks failed\n" : "ok\n", failures);
    return failures != 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "unwritten") == 0) {
#ifdef HAVE_MEMCHECK
        return unwritten();
#else
        printf("skip: no valgrind/memcheck.h\n");
        return 0;
#endif
    }
    if (count_mappings() < 0 || vm_size() < 0) {
        printf("skip: no /proc/self/maps or VmSize\n");
        return 0;
    }
    few_elements();
    grown(64);
    grown(32);
    range_taken(1);
    range_taken(4);
    if (failures) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
