/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The holes of an IOVA space (see iova-holes.h for why).
 */
#include "iova-holes.h"

#include <stdio.h>

#include "iova-avl.h"

static IOVAHole *hole_at(const IOVAArena *arena, IOVARef ref)
{
    return iova_arena_ptr(arena, ref);
}

static int hole_cmp(const IOVAArena *arena, IOVARef a, IOVARef b)
{
    hwaddr fa = hole_at(arena, a)->first, fb = hole_at(arena, b)->first;
    return fa < fb ? -1 : fa > fb;
}

/* The longer hole is better; between equals, the lower one (a total order). */
static bool hole_better(const IOVAArena *arena, IOVARef a, IOVARef b)
{
    const IOVAHole *ha = hole_at(arena, a), *hb = hole_at(arena, b);
    hwaddr la = ha->last - ha->first, lb = hb->last - hb->first;
    return la != lb ? la > lb : ha->first < hb->first;
}

static const AvlOps hole_ops = {
    .link_off = offsetof(IOVAHole, link),
    .height_off = offsetof(IOVAHole, height),
    .cmp = hole_cmp,
    .better = hole_better,
    .name = "hole tree",
};

static IOVARef hole_add(IOVAHoles *holes, IOVARef ref, hwaddr first, hwaddr last)
{
    IOVAHole *h = hole_at(&holes->arena, ref);
    h->first = first;
    h->last = last;
    holes->root = avl_insert(&holes->arena, &hole_ops, holes->root, ref);
    return ref;
}

static void hole_unlink(IOVAHoles *holes, IOVARef ref)
{
    holes->root = avl_remove(&holes->arena, &hole_ops, holes->root, ref);
}

/* The hole with the highest first address <= @addr, or none. */
static IOVARef hole_floor(const IOVAHoles *holes, hwaddr addr)
{
    IOVARef n = holes->root, found = IOVA_REF_NONE;

    while (n != IOVA_REF_NONE) {
        const IOVAHole *h = hole_at(&holes->arena, n);
        if (h->first <= addr) {
            found = n;
            n = h->link[AVL_RIGHT];
        } else {
            n = h->link[AVL_LEFT];
        }
    }
    return found;
}

int iova_holes_init(IOVAHoles *holes)
{
    iova_arena_init(&holes->arena, sizeof(IOVAHole));
    holes->root = IOVA_REF_NONE;
    IOVARef all = iova_arena_alloc(&holes->arena);
    if (all == IOVA_REF_NONE) {
        return IOVA_ERR_OOM;
    }
    hole_add(holes, all, 0, HWADDR_MAX);
    return IOVA_OK;
}

void iova_holes_destroy(IOVAHoles *holes)
{
    iova_arena_reset(&holes->arena);
    holes->root = IOVA_REF_NONE;
}

int iova_holes_take(IOVAHoles *holes, hwaddr first, hwaddr last)
{
    IOVARef ref = hole_floor(holes, first);
    if (ref == IOVA_REF_NONE || hole_at(&holes->arena, ref)->last < last) {
        return IOVA_ERR_OVERLAP;
    }
    IOVAHole old = *hole_at(&holes->arena, ref);
    bool keep_below = first > old.first;
    bool keep_above = last < old.last;
    IOVARef spare = IOVA_REF_NONE;

    /* Splitting one hole in two needs a second element: get it before changing anything. */
    if (keep_below && keep_above) {
        spare = iova_arena_alloc(&holes->arena);
        if (spare == IOVA_REF_NONE) {
            return IOVA_ERR_OOM;
        }
    }
    hole_unlink(holes, ref);
    if (keep_below) {
        hole_add(holes, ref, old.first, first - 1);
        ref = spare;
    }
    if (keep_above) {
        hole_add(holes, ref, last + 1, old.last);
    } else if (!keep_below) {
        iova_arena_release(&holes->arena, ref);
    }
    return IOVA_OK;
}

int iova_holes_give(IOVAHoles *holes, hwaddr first, hwaddr last)
{
    IOVARef below = IOVA_REF_NONE, above = IOVA_REF_NONE;

    if (first > 0) {
        below = hole_floor(holes, first - 1);
        if (below != IOVA_REF_NONE && hole_at(&holes->arena, below)->last != first - 1) {
            below = IOVA_REF_NONE;
        }
    }
    if (last < HWADDR_MAX) {
        above = hole_floor(holes, last + 1);
        if (above != IOVA_REF_NONE && hole_at(&holes->arena, above)->first != last + 1) {
            above = IOVA_REF_NONE;
        }
    }
    if (below == IOVA_REF_NONE && above == IOVA_REF_NONE) {
        IOVARef fresh = iova_arena_alloc(&holes->arena);
        if (fresh == IOVA_REF_NONE) {
            return IOVA_ERR_OOM;
        }
        hole_add(holes, fresh, first, last);
        return IOVA_OK;
    }
    if (below != IOVA_REF_NONE) {
        first = hole_at(&holes->arena, below)->first;
        hole_unlink(holes, below);
    }
    if (above != IOVA_REF_NONE) {
        last = hole_at(&holes->arena, above)->last;
        hole_unlink(holes, above);
    }
    /* Reuse one of the merged holes' elements for the union; release the other. */
    IOVARef keep = below != IOVA_REF_NONE ? below : above;
    if (below != IOVA_REF_NONE && above != IOVA_REF_NONE) {
        iova_arena_release(&holes->arena, above);
    }
    hole_add(holes, keep, first, last);
    return IOVA_OK;
}

/* Where in @h a map fits per @req, clipped to [begin, last] and aligned. */
static bool hole_fits(const IOVAHole *h, const IOVAFitRequest *req, hwaddr *iova)
{
    hwaddr lo = h->first > req->begin ? h->first : req->begin;
    hwaddr hi = h->last < req->last ? h->last : req->last;
    hwaddr mask = req->align - 1;

    if (lo > hi || hi - lo < req->size) {
        return false;
    }
    if (req->top_down) {
        hwaddr cand = (hi - req->size) & ~mask;
        if (cand < lo) {
            return false;
        }
        *iova = cand;
        return true;
    }
    if (lo > HWADDR_MAX - mask) {
        return false; /* rounding up would wrap */
    }
    hwaddr cand = (lo + mask) & ~mask;
    if (cand > hi || hi - cand < req->size) {
        return false;
    }
    *iova = cand;
    return true;
}

/*
 * Depth-first in the preferred direction, skipping every subtree whose longest hole is too
 * short and every subtree that lies wholly outside [begin, last].  With align 1 only the two
 * holes cut by begin and last can pass the length test and still not fit, so the search costs
 * O(log n); a larger alignment can add a descent for each hole that is long enough but
 * misplaced for it.
 */
static bool fit_rec(const IOVAArena *arena, IOVARef n, const IOVAFitRequest *req, hwaddr *iova)
{
    if (n == IOVA_REF_NONE) {
        return false;
    }
    const IOVAHole *h = hole_at(arena, n);
    const IOVAHole *best = hole_at(arena, h->link[AVL_BEST]);
    if (best->last - best->first < req->size) {
        return false;
    }
    bool left_useful = h->first > req->begin;  /* left holes end below h->first */
    bool right_useful = h->last < req->last;   /* right holes start above h->last */
    bool self_useful = h->last >= req->begin && h->first <= req->last;
    int near = req->top_down ? AVL_RIGHT : AVL_LEFT;
    bool near_useful = req->top_down ? right_useful : left_useful;
    bool far_useful = req->top_down ? left_useful : right_useful;

    if (near_useful && fit_rec(arena, h->link[near], req, iova)) {
        return true;
    }
    if (self_useful && hole_fits(h, req, iova)) {
        return true;
    }
    return far_useful && fit_rec(arena, h->link[!near], req, iova);
}

bool iova_holes_fit(const IOVAHoles *holes, const IOVAFitRequest *req, hwaddr *iova)
{
    return fit_rec(&holes->arena, holes->root, req, iova);
}

static bool foreach_rec(const IOVAArena *arena, IOVARef n,
                        bool (*fn)(const IOVAHole *hole, void *opaque), void *opaque)
{
    if (n == IOVA_REF_NONE) {
        return true;
    }
    const IOVAHole *h = hole_at(arena, n);
    return foreach_rec(arena, h->link[AVL_LEFT], fn, opaque) && fn(h, opaque) &&
           foreach_rec(arena, h->link[AVL_RIGHT], fn, opaque);
}

void iova_holes_foreach(const IOVAHoles *holes,
                        bool (*fn)(const IOVAHole *hole, void *opaque), void *opaque)
{
    foreach_rec(&holes->arena, holes->root, fn, opaque);
}

typedef struct HoleWalk {
    const IOVAHole *prev;
    bool bad;
} HoleWalk;

static bool hole_walk_step(const IOVAHole *h, void *opaque)
{
    HoleWalk *w = opaque;
    /* Maximal holes never touch: two adjacent holes should have been merged. */
    if (h->first > h->last || (w->prev && (w->prev->last == HWADDR_MAX ||
                                           w->prev->last + 1 >= h->first))) {
        w->bad = true;
        return false;
    }
    w->prev = h;
    return true;
}

int iova_holes_check(const IOVAHoles *holes, char *err, size_t errlen)
{
    size_t count;
    if (avl_check(&holes->arena, &hole_ops, holes->root, &count, err, errlen) < 0) {
        return -1;
    }
    if (count != holes->arena.live) {
        snprintf(err, errlen, "hole tree: %zu holes linked but %u allocated", count,
                 holes->arena.live);
        return -1;
    }
    HoleWalk w = { NULL, false };
    iova_holes_foreach(holes, hole_walk_step, &w);
    if (w.bad) {
        snprintf(err, errlen, "hole tree: holes overlap, touch or are reversed");
        return -1;
    }
    return 0;
}
