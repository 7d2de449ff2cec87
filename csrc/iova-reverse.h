/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The reverse tree: O(log n) translated-address -> map look-ups beside QEMU's forward GTree.
 *
 * Why this shape: translated ranges may overlap (two GPAs aliasing one HVA), so a tree keyed
 * by translated range with an overlap comparator, as QEMU's GPA tree is, cannot hold them.
 * The question "which maps overlap [a, b]" is answered by an interval tree: maps ordered by
 * translated_addr, each subtree remembering its map that reaches furthest (highest
 * translated_addr + size, ties to the lowest IOVA).  Every map sits in two such trees, both
 * intrusive in its IOVAEntry:
 *   - by_addr, ordered by (translated_addr, iova): look-ups without an id;
 *   - by_id, ordered by (id, translated_addr, iova): look-ups with an id, which only ever look
 *     inside one id's group, so however many aliases other ids add, they cost nothing.
 * A look-up splits the key range "start <= b" into O(log n) whole subtrees plus the nodes on
 * two paths.  For translate(), the furthest-reaching map covering an address is the best of
 * those subtrees: O(log n) a segment.  For find_iova(), the lowest IOVA among the k maps that
 * overlap needs them all, except that a subtree is skipped when it ends below the needle or
 * when none of its IOVAs can beat the lowest found so far.  For that, each subtree of the
 * reverse tree keeps a lower bound of its lowest IOVA, rounded down to 16 bits (a 6-bit
 * exponent and a 10-bit mantissa) so that the entry stays one cache line: many aliases of one
 * range (k = n) cost O(log n) instead of O(n).  O(log n + k) at worst.
 */
#ifndef IOVA_REVERSE_H
#define IOVA_REVERSE_H

#include <stddef.h>
#include <stdbool.h>

#include "iova-arena.h"
#include "iova-holes.h"
#include "iova-map.h"

/*
 * One stored map: 64 bytes, a cache line, in the tree's arena.  The map comes first and whole
 * (the forward GTree's key and value point at it, and callers may memcmp() it), then the four
 * bytes its packed 36 fill up to an aligned 40: the AVL heights of both trees and the IOVA
 * floor code, then the links.  The entry's own arena reference is not stored:
 * iova_arena_ref_of() finds it from the entry's address when a map is removed.
 */
typedef struct IOVAEntry {
    DMAMap map;
    uint8_t h_addr;     /* AVL height in the reverse tree */
    uint8_t h_id;       /* AVL height in the id tree */
    uint16_t min_iova;  /* reverse tree: floor code of the subtree's lowest IOVA */
    IOVARef by_addr[3]; /* AVL left, right, best: the reverse tree */
    IOVARef by_id[3];   /* AVL left, right, best: the id tree */
} IOVAEntry;

_Static_assert(sizeof(IOVAEntry) == 64, "an entry is one cache line");
_Static_assert(offsetof(IOVAEntry, map) == 0 && offsetof(IOVAEntry, h_addr) == sizeof(DMAMap),
               "the map is first, and the bookkeeping lies outside it");

/*
 * The id tree waits for a second id.  While every stored map has the same id (a tree whose
 * maps all keep id 0, as every map of QEMU's callers without the seed patch and of the
 * vIOMMUs does), the id tree would hold the maps in the reverse tree's order, with the same
 * heights and best links: it is not kept then (its root stays IOVA_REF_NONE), and a look-up
 * in that id's group walks the reverse tree, one in another id's group finds nothing.  The
 * first map stored with another id gives the id tree the reverse tree's shape, a copy of
 * each entry's links (O(n) once, nothing allocated); from then on both trees are kept, until
 * the tree is empty again.
 */
typedef struct IOVAReverse {
    IOVARef by_addr_root;
    IOVARef by_id_root; /* IOVA_REF_NONE while !ids_differ */
    bool ids_differ;    /* the id tree is kept: two maps stored had different ids */
    uint64_t one_id;    /* while !ids_differ and a map is stored: the id every map has */
} IOVAReverse;

/* The ways down both trees to a new entry's place (iova_reverse_place()). */
typedef struct IOVAReversePlace {
    AvlPath addr;
    AvlPath id;
} IOVAReversePlace;

/**
 * iova_reverse_init: make @rev two empty trees (the id tree not kept).
 */
void iova_reverse_init(IOVAReverse *rev);

/**
 * iova_reverse_place: the first half of linking entry @ref into both trees: find where it
 * goes (its map written, not yet linked), into @place, changing nothing.
 * @holes, unless NULL, is a hole-tree search walked to its end in the same loop, as in
 * iova_reverse_del(): an insert takes its range from the holes before it links anything.
 */
void iova_reverse_place(const IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                        IOVAReversePlace *place, IOVAHoleSearch *holes);

/**
 * iova_reverse_link: link entry @ref where iova_reverse_place() found its place, with no
 * change to the trees since.
 */
void iova_reverse_link(IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                       IOVAReversePlace *place);

/**
 * iova_reverse_del: unlink entry @ref from both trees.  @holes, unless NULL, is a hole-tree
 * search (iova_holes_give_search()) walked to its end in the same loop as the two trees'
 * descents: the map's range goes back to the holes next, and on a large tree the three
 * walks' cache misses then overlap.
 */
void iova_reverse_del(IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                      IOVAHoleSearch *holes);

/**
 * iova_reverse_find: among maps whose translated range overlaps [first, last] (and whose id
 * is *@id unless @id is NULL), the one with the lowest IOVA.
 *
 * Returns: its reference, or IOVA_REF_NONE.
 */
IOVARef iova_reverse_find(const IOVAReverse *rev, const IOVAArena *arena, hwaddr first,
                          hwaddr last, const uint64_t *id);

/**
 * iova_reverse_cover: among maps whose translated range contains @addr (and whose id is *@id
 * unless @id is NULL), the one that reaches furthest, ties to the lowest IOVA.
 *
 * Returns: its reference, or IOVA_REF_NONE.
 */
IOVARef iova_reverse_cover(const IOVAReverse *rev, const IOVAArena *arena, hwaddr addr,
                           const uint64_t *id);

/* An AVL tree of 2^32 entries (all a 32-bit reference can name) is at most 46 high. */
#define IOVA_REVERSE_MAX_DEPTH 64

/*
 * IOVAReverseSweep: iova_reverse_find(addr, addr) for addresses that never decrease, moving
 * from each answer to the next through the maps in between instead of descending from the root:
 * a finger search, O(log d) for d maps between two addresses, O(1) for neighbours, whose
 * entries are often still in the cache.  The maps it passes are remembered only by how far the
 * furthest of them reaches (the best links give that for whole subtrees).  The map that started
 * last at or below the address is the answer without a look-up when it covers the address and
 * no map before it reaches that far; otherwise (an alias reaches over it) the sweep asks
 * iova_reverse_find().  When no map of the group starts between the previous address and this
 * one, the maps covering this one are among those that covered the previous one: the previous
 * answer stands if it still covers the address (or was a miss), with no look-up, so a run of
 * nearby addresses under many aliases costs one look-up, not one each.
 */
typedef struct IOVAReverseSweep {
    const IOVAReverse *rev;
    const IOVAArena *arena;
    bool by_id;
    uint64_t id;
    IOVARef stack[IOVA_REVERSE_MAX_DEPTH]; /* the next map on top, then ancestors to come */
    int depth;
    bool started;        /* positioned by the first address */
    IOVARef last;        /* the last map to start at or below the previous address */
    bool any_before;     /* whether some map came before @last */
    hwaddr before_reach; /* the furthest translated last byte of those maps */
    uint64_t passed;     /* counts the steps that took maps: none since the last answer means
                          * no map starts between its address and the next */
    uint64_t answered_at; /* @passed when @answer was found */
    bool has_answer;
    IOVARef answer;      /* the previous answer */
} IOVAReverseSweep;

/**
 * iova_reverse_sweep_init: start a sweep over the maps whose id is *@id (every map when @id
 * is NULL).  The trees must not change while the sweep is in use.
 */
void iova_reverse_sweep_init(IOVAReverseSweep *sweep, const IOVAReverse *rev,
                             const IOVAArena *arena, const uint64_t *id);

/**
 * iova_reverse_sweep_find: what iova_reverse_find(@addr, @addr) answers, for an @addr at or
 * above the one of the previous call.
 */
IOVARef iova_reverse_sweep_find(IOVAReverseSweep *sweep, hwaddr addr);

/**
 * iova_reverse_check: verify both trees and that each links exactly @expected entries; while
 * the id tree is not kept, that it has no root and that every map has the one id instead.
 * Returns 0, or -1 with a message in @err.
 */
int iova_reverse_check(const IOVAReverse *rev, const IOVAArena *arena, size_t expected,
                       char *err, size_t errlen);

/**
 * iova_reverse_contains: whether entry @ref is linked in both trees (found by its keys); in
 * the reverse tree alone while the id tree is not kept.
 */
bool iova_reverse_contains(const IOVAReverse *rev, const IOVAArena *arena, IOVARef ref);

/* Called with each map in turn; returning true stops the walk. */
typedef bool (*IOVAReverseFn)(const DMAMap *map, void *opaque);

/**
 * iova_reverse_foreach: call @fn on every map whose translated range overlaps [@first, @last]
 * (and whose id is *@id unless @id is NULL), in reverse-tree order (translated_addr, then
 * IOVA), until it returns true.  Subtrees whose furthest reach stops below @first are
 * skipped: O(log n + k) when the k hits lie together in that order (no aliasing), at worst
 * O(log n + k log(n / k)) when aliases scatter them.
 */
void iova_reverse_foreach(const IOVAReverse *rev, const IOVAArena *arena, hwaddr first,
                          hwaddr last, const uint64_t *id, IOVAReverseFn fn, void *opaque);

#endif /* IOVA_REVERSE_H */
