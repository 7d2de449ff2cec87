/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The holes of an IOVA space: the free-space bookkeeping behind O(log n) allocation.
 *
 * Why a tree of holes: QEMU's iova_tree_alloc_map() walks the maps from the lowest until a gap
 * fits, which is linear.  The free space is kept here as its own set of disjoint, maximal holes
 * (ranges no map covers), ordered by first address in an augmented AVL tree whose every subtree
 * remembers its longest hole.  "The lowest (or highest) hole in [begin, last] that fits" then
 * descends only into subtrees that can hold the size.  A dense layout has few holes, so this
 * costs memory only where the space is fragmented.  The owner keeps it, with the freed ranges
 * still pending (IOVAHolesPending), the exact complement of its maps (iova_holes_take_found()
 * on insert, iova_holes_defer() and iova_holes_give_found() on remove) and checks it in
 * check().
 */
#ifndef IOVA_HOLES_H
#define IOVA_HOLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "iova-arena.h"
#include "iova-avl.h"
#include "iova-map.h"

typedef struct IOVAHole {
    hwaddr first;
    hwaddr last;       /* inclusive */
    IOVARef link[3];   /* AVL left, right, longest hole of the subtree */
    uint8_t height;
    uint8_t align_max; /* the largest k such that some hole of the subtree holds a multiple of
                        * 2^k (64: one starts at 0): alloc skips subtrees misaligned for it */
} IOVAHole;

/* How many freed ranges may wait to be given back to the holes (IOVAHolesPending). */
#define IOVA_HOLES_PENDING 16

/*
 * Ranges freed by removals and not yet given back to the hole tree.  Why wait: a range that
 * is removed and then inserted again as it was (a guest unmapping and mapping the same IOVAs
 * again, which Linux's IOVA caches make the common case) would merge two holes into one and
 * split it again, one AVL removal and one AVL insert in the hole tree; taken from here
 * instead, neither happens.  The tree's free space is the holes and these ranges together:
 * they lie in no hole and overlap no map nor each other.  Whatever needs the holes exact (an
 * alloc whose answer one of them could change, an insert that overlaps one without being it)
 * gives them back first.  Only while the tree is filled by insert, not by alloc: an alloc
 * after a removal usually takes the freed range again, so it would give the range back and
 * search the holes a second time, where the removal's give costs less.
 */
typedef struct IOVAHolesPending {
    uint32_t tag[IOVA_HOLES_PENDING]; /* iova_holes_tag() of each first: one vector compare */
    hwaddr first[IOVA_HOLES_PENDING];
    hwaddr last[IOVA_HOLES_PENDING]; /* inclusive */
    hwaddr low;                      /* at or below every first: a bound, kept cheaply */
    hwaddr high;                     /* at or above every last */
    uint32_t count;
    uint32_t evict;                  /* the slot the next full iova_holes_defer() takes */
    bool by_insert;                  /* the last range taken was an insert's, not an alloc's:
                                      * removals may defer (iova_holes_defer()) */
} IOVAHolesPending;

typedef struct IOVAHoles {
    IOVAArena arena;
    IOVARef root;
    IOVAHolesPending pending;
} IOVAHoles;

typedef struct IOVAFitRequest {
    hwaddr size;       /* inclusive, as DMAMap's */
    hwaddr begin;      /* lowest usable address */
    hwaddr last;       /* highest usable address */
    hwaddr align;      /* a power of two */
    bool top_down;     /* highest fit instead of lowest */
} IOVAFitRequest;

/*
 * Where iova_holes_fit() found room: the IOVA, and the way down from the root to the hole
 * that holds it.  Why keep the way: the search has just descended to that hole, and
 * iova_holes_take_fit() takes the range along the same way instead of descending again.
 */
typedef struct IOVAHoleFit {
    hwaddr iova;
    AvlPath path;      /* ends at the hole; valid until the holes next change */
} IOVAHoleFit;

/*
 * One descent of the hole tree towards an address, a step at a time.  Why in steps: a
 * removal descends the reverse trees and the hole tree for the same map, and on a large tree
 * every step is a cache miss; taken in one loop (avl_descend2()'s side walk), the three
 * walks wait for their misses at once.  The walk goes right at every hole that starts below
 * @key (or at it, with @inclusive), left at every other one; the holes found are read off
 * the path afterwards, so that a step stores nothing but the path.
 */
typedef struct IOVAHoleSearch {
    const IOVAArena *arena;
    IOVARef next;       /* the node the next step visits; IOVA_REF_NONE: done */
    bool inclusive;
    hwaddr key;
    AvlPath path;       /* every step taken */
} IOVAHoleSearch;

/*
 * What a step of an IOVAHoleSearch reads and changes, copied out of it for the length of the
 * walk (iova_hole_cursor_begin()) into a local of the caller that only the inlined steps see.
 * Why: kept in the search, every field would be loaded and stored again at each step, since a
 * store into a path (the reverse trees' and the holes' own) may alias them; a local whose
 * address goes nowhere else stays in registers.  The path itself stays in the search.
 */
typedef struct IOVAHoleCursor {
    IOVAArenaView arena; /* the hole arena's addressing */
    IOVARef next;
    int depth;
    bool inclusive;
    hwaddr key;
    AvlPath *path;
} IOVAHoleCursor;

static inline IOVAHoleCursor iova_hole_cursor_begin(IOVAHoleSearch *s)
{
    IOVAHoleCursor c = {
        .arena = iova_arena_view(s->arena),
        .next = s->next,
        .depth = s->path.depth,
        .inclusive = s->inclusive,
        .key = s->key,
        .path = &s->path,
    };
    return c;
}

/* Hand the walk's progress back to its search. */
static inline void iova_hole_cursor_end(IOVAHoleSearch *s, const IOVAHoleCursor *c)
{
    s->next = c->next;
    s->path.depth = c->depth;
}

/**
 * iova_hole_cursor_step: take one step of @opaque, an IOVAHoleCursor (a void pointer, to be
 * avl_descend2()'s side walk), if one is left.
 *
 * Returns: whether there is another step to take.
 */
static inline bool iova_hole_cursor_step(void *opaque)
{
    IOVAHoleCursor *c = opaque;
    IOVARef n = c->next;
    if (n == IOVA_REF_NONE) {
        return false;
    }
    const IOVAHole *h = iova_view_elem(&c->arena, n, sizeof(IOVAHole));
    /*
     * Right when first < key, or first == key with inclusive: (first, 0) < (key, inclusive),
     * branch-free as AvlOps.before (either way is as likely).
     */
    int dir = avl_pair_before(h->first, 0, c->key, c->inclusive);
    c->path->node[c->depth] = n;
    c->path->dir[c->depth++] = (AvlDir)dir;
    c->next = h->link[dir];
    return c->next != IOVA_REF_NONE;
}

/**
 * iova_holes_take_search: prepare @s, the search iova_holes_take_found() needs for a range
 * taken from @first on (as iova_holes_give_search()).
 */
void iova_holes_take_search(const IOVAHoles *holes, hwaddr first, IOVAHoleSearch *s);

/**
 * iova_holes_give_search: prepare @s, the search iova_holes_give_found() needs for a range
 * freed from @first on.  Nothing is read yet: the steps are iova_hole_cursor_step()'s.
 */
void iova_holes_give_search(const IOVAHoles *holes, hwaddr first, IOVAHoleSearch *s);

/**
 * iova_holes_init: one hole covering the whole 64-bit space.  Returns IOVA_OK or IOVA_ERR_OOM.
 */
int iova_holes_init(IOVAHoles *holes);

/* Hands out the maps in address order, one [*first, *last] a call; false after the last. */
typedef bool (*IOVAHolesNext)(void *opaque, hwaddr *first, hwaddr *last);

/**
 * iova_holes_build: the holes between the @nmaps maps that @next gives, in O(n): the holes
 * come out of one pass in address order and are linked into a balanced tree directly.
 *
 * Returns: IOVA_OK, or IOVA_ERR_OOM with @holes empty (as after iova_holes_destroy()).
 */
int iova_holes_build(IOVAHoles *holes, IOVAHolesNext next, void *opaque, size_t nmaps);

/**
 * iova_holes_destroy: free everything.
 */
void iova_holes_destroy(IOVAHoles *holes);

/**
 * iova_holes_take_found: [first, last] is now covered by a map; it must lie inside one hole.
 * @s is the search iova_holes_take_search() prepared for @first, walked to its end, with no
 * change to the holes since.
 *
 * Returns: IOVA_OK, IOVA_ERR_OVERLAP if no single hole holds the range, or IOVA_ERR_OOM;
 * on error nothing changed.
 */
int iova_holes_take_found(IOVAHoles *holes, IOVAHoleSearch *s, hwaddr first, hwaddr last);

/**
 * iova_holes_take_fit: as iova_holes_take_found() for [@fit->iova, @fit->iova + @size],
 * where @fit is what iova_holes_fit() answered for that @size, with no change to the holes
 * since.  The way in @fit is used up (the take extends it).
 *
 * Returns: IOVA_OK, or IOVA_ERR_OOM with nothing changed.
 */
int iova_holes_take_fit(IOVAHoles *holes, IOVAHoleFit *fit, hwaddr size);

/**
 * iova_holes_give_found: [first, last] is free again; it is merged with the holes beside it.
 * @s is the search iova_holes_give_search() prepared for @first, walked to its end, with no
 * change to the holes since.
 *
 * Returns: IOVA_OK or IOVA_ERR_OOM; on error nothing changed.
 */
int iova_holes_give_found(IOVAHoles *holes, IOVAHoleSearch *s, hwaddr first, hwaddr last);

/**
 * iova_holes_taken_by: say what took the last range from the holes: an insert (@by_insert)
 * or an alloc.  Only after an insert do removals keep their ranges pending.
 */
static inline void iova_holes_taken_by(IOVAHoles *holes, bool by_insert)
{
    holes->pending.by_insert = by_insert;
}

/**
 * iova_holes_defer: the range [*@first, *@last] was freed; keep it pending instead of giving it
 * to the holes now, if the last range taken was an insert's.  With no room left, it takes the
 * place of an older pending range when @spare says that one may be given back (which may need
 * one hole element; the caller's reservation covers only its own range's give otherwise).
 * Why take a place rather than give the new range: the older range's give then runs where the
 * new one's would have, its descent beside the reverse trees'.
 *
 * Returns: whether the caller must give a range back itself (iova_holes_give_found()): then
 * *@first and *@last are that range, the freed one or the older one.
 */
bool iova_holes_defer(IOVAHoles *holes, hwaddr *first, hwaddr *last, bool spare);

/* A 32-bit digest of a pending range's first address, for iova_holes_pending_find(). */
static inline uint32_t iova_holes_tag(hwaddr first)
{
    return (uint32_t)first ^ (uint32_t)(first >> 32);
}

/*
 * The slots whose tag is @tag, one bit each.  Why tags and a vector compare: every insert on
 * a tree whose ranges are pending asks, and mostly none matches; sixteen 32-bit compares at
 * once cost a few instructions where a loop over the slots costs five a slot.
 */
static inline uint32_t iova_holes_tag_hits(const IOVAHolesPending *p, uint32_t tag)
{
    uint32_t hits = 0;
#if defined(__SSE2__) && IOVA_HOLES_PENDING == 16
    __m128i t = _mm_set1_epi32((int)tag);
    const __m128i *v = (const __m128i *)p->tag;
    __m128i lo = _mm_packs_epi32(_mm_cmpeq_epi32(_mm_loadu_si128(v), t),
                                 _mm_cmpeq_epi32(_mm_loadu_si128(v + 1), t));
    __m128i hi = _mm_packs_epi32(_mm_cmpeq_epi32(_mm_loadu_si128(v + 2), t),
                                 _mm_cmpeq_epi32(_mm_loadu_si128(v + 3), t));
    hits = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(lo, hi));
#else
    for (uint32_t i = 0; i < IOVA_HOLES_PENDING; i++) {
        hits |= (uint32_t)(p->tag[i] == tag) << i;
    }
#endif
    return hits & ((UINT32_C(1) << p->count) - 1);
}

/**
 * iova_holes_pending_find: the slot of the pending range that is exactly [@first, @last].
 *
 * Returns: the slot, or -1 when none is.
 */
static inline int iova_holes_pending_find(const IOVAHoles *holes, hwaddr first, hwaddr last)
{
    const IOVAHolesPending *p = &holes->pending;
    for (uint32_t hits = iova_holes_tag_hits(p, iova_holes_tag(first)); hits;
         hits &= hits - 1) {
        int i = __builtin_ctz(hits);
        if (p->first[i] == first) {
            return p->last[i] == last ? i : -1; /* disjoint: no other starts there */
        }
    }
    return -1;
}

/**
 * iova_holes_pending_drop: forget pending slot @slot, whose range is taken again.
 */
void iova_holes_pending_drop(IOVAHoles *holes, int slot);

/**
 * iova_holes_pending_touch: whether some pending range overlaps [@first, @last].
 */
bool iova_holes_pending_touch(const IOVAHoles *holes, hwaddr first, hwaddr last);

/**
 * iova_holes_pending_may_fit: whether a pending range could change what iova_holes_fit()
 * answered for @req (@found, and the IOVA @iova when found): one lies in the request's range
 * and, for the lowest fit, starts below @iova (for the highest, ends above the fit's end), or
 * nothing fit.  Why that is enough: a pending range can only make a hole reach further, and a
 * hole that reaches further gives a lower (higher) fit only where the range lies there.
 */
bool iova_holes_pending_may_fit(const IOVAHoles *holes, const IOVAFitRequest *req, bool found,
                                hwaddr iova);

/**
 * iova_holes_flush: give every pending range back to the holes.
 *
 * Returns: IOVA_OK, or IOVA_ERR_OOM with the ranges not given still pending.
 */
int iova_holes_flush(IOVAHoles *holes);

/**
 * iova_holes_take: as iova_holes_take_found() for [@first, @last], its search made here.
 */
int iova_holes_take(IOVAHoles *holes, hwaddr first, hwaddr last);

/**
 * iova_holes_pending_sorted: copy the pending ranges into @first and @last (room for
 * IOVA_HOLES_PENDING each) in address order, for check().
 *
 * Returns: how many there are.
 */
size_t iova_holes_pending_sorted(const IOVAHoles *holes, hwaddr *first, hwaddr *last);

/**
 * iova_holes_fit: where a map of @req->size fits, per @req.
 *
 * Returns: true with the IOVA and the way to its hole in @fit, or false if no hole fits.
 */
bool iova_holes_fit(const IOVAHoles *holes, const IOVAFitRequest *req, IOVAHoleFit *fit);

/**
 * iova_holes_foreach: call @fn on every hole in address order until it returns false.
 */
void iova_holes_foreach(const IOVAHoles *holes,
                        bool (*fn)(const IOVAHole *hole, void *opaque), void *opaque);

/**
 * iova_holes_check: verify the tree itself (order, balance, longest-hole links, holes disjoint
 * and not touching) and the pending ranges' bookkeeping (the caller checks where they lie).
 * Returns 0, or -1 with a message in @err.
 */
int iova_holes_check(const IOVAHoles *holes, char *err, size_t errlen);

#endif /* IOVA_HOLES_H */
