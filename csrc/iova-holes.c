/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The holes of an IOVA space (see iova-holes.h for why).
 */
#include "iova-holes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iova-avl.h"

AVL_INLINE IOVAHole *hole_at(const IOVAArena *arena, IOVARef ref)
{
    return iova_arena_elem(arena, ref, sizeof(IOVAHole));
}

AVL_INLINE bool hole_before(const void *a, const void *b)
{
    return ((const IOVAHole *)a)->first < ((const IOVAHole *)b)->first;
}

/* The longer hole is better; between equals, the lower one (a total order). */
AVL_INLINE bool hole_better(const void *a, const void *b)
{
    const IOVAHole *ha = a, *hb = b;
    hwaddr la = ha->last - ha->first, lb = hb->last - hb->first;
    return la != lb ? la > lb : ha->first < hb->first;
}

/*
 * The largest k such that the hole holds a multiple of 2^k: 64 for a hole that starts at 0,
 * else the highest bit in which first - 1 and last differ (a multiple of 2^k lies in
 * [first, last] exactly when the two differ at bit k or above).
 */
AVL_INLINE uint16_t hole_align_cap(const void *e)
{
    const IOVAHole *h = e;
    return h->first == 0 ? 64 : (uint16_t)(63 - __builtin_clzll(h->last ^ (h->first - 1)));
}

static const AvlOps hole_ops = {
    .elem_size = sizeof(IOVAHole),
    .link_off = offsetof(IOVAHole, link),
    .height_off = offsetof(IOVAHole, height),
    .before = hole_before,
    .better = hole_better,
    .key16 = hole_align_cap,
    .min16_off = offsetof(IOVAHole, align_max),
    .max8 = true,
    .name = "hole tree",
};

static void hole_add(IOVAHoles *holes, IOVARef ref, hwaddr first, hwaddr last)
{
    IOVAHole *h = hole_at(&holes->arena, ref);
    h->first = first;
    h->last = last;
    holes->root = avl_insert(&holes->arena, &hole_ops, holes->root, ref);
}

/* Prepare @s for a walk towards @key (see IOVAHoleSearch). */
static void hole_search_init(const IOVAHoles *holes, hwaddr key, bool inclusive,
                             IOVAHoleSearch *s)
{
    s->arena = &holes->arena;
    s->next = holes->root;
    s->key = key;
    s->inclusive = inclusive;
    s->path.depth = 0;
}

/*
 * The last node of a finished search's path where it went @dir, and in *@at its place on
 * the path (-1 and IOVA_REF_NONE when it never did).  Going right it is the hole that
 * starts highest below the key; going left, the hole after that one.
 */
static IOVARef hole_search_last(const IOVAHoleSearch *s, int dir, int *at)
{
    for (int i = s->path.depth - 1; i >= 0; i--) {
        if (s->path.dir[i] == dir) {
            *at = i;
            return s->path.node[i];
        }
    }
    *at = -1;
    return IOVA_REF_NONE;
}

/*
 * Link @spare, the part split off the hole at @path->node[@at] on side @side (AVL_RIGHT: the
 * part above it), in that hole's neighbour slot on that side: one step to @side, then to the
 * other side to the end.  With @tail, @path goes on past the hole to its neighbour slot on
 * the right already (a take's floor search: see hole_take_at()), and that side needs no walk.
 * The hole has shrunk already, its key16 having been @old_cap: one walk back up refreshes
 * what its shrinking and the new part change (avl_insert_worse()).
 */
static void hole_link_beside(IOVAHoles *holes, IOVARef spare, AvlPath *path, int at, int side,
                             bool tail, uint16_t old_cap)
{
    const IOVAArena *arena = &holes->arena;
    if (!tail || side != AVL_RIGHT) {
        path->depth = at + 1;
        path->dir[at] = (AvlDir)side;
        for (IOVARef n = hole_at(arena, path->node[at])->link[side];
             n != IOVA_REF_NONE; n = hole_at(arena, n)->link[!side]) {
            path->node[path->depth] = n;
            path->dir[path->depth++] = (AvlDir)!side;
        }
    }
    holes->root = avl_insert_worse(arena, &hole_ops, holes->root, spare, path, at, old_cap);
}

/* No range pending. */
static void pending_empty(IOVAHolesPending *p)
{
    p->count = 0;
    p->evict = 0;
    p->low = HWADDR_MAX;
    p->high = 0;
}

/* No range pending, and none taken yet. */
static void pending_clear(IOVAHolesPending *p)
{
    pending_empty(p);
    /* the free slots' tags are compared too (and masked out): defined, for memcheck */
    memset(p->tag, 0, sizeof(p->tag));
    p->by_insert = false;
}

int iova_holes_init(IOVAHoles *holes)
{
    iova_arena_init(&holes->arena, sizeof(IOVAHole));
    holes->root = IOVA_REF_NONE;
    pending_clear(&holes->pending);
    IOVARef all = iova_arena_alloc(&holes->arena);
    if (all == IOVA_REF_NONE) {
        return IOVA_ERR_OOM;
    }
    hole_add(holes, all, 0, HWADDR_MAX);
    return IOVA_OK;
}

/* Link refs[lo, hi) (holes in address order) into a balanced subtree; returns its root. */
static IOVARef build_balanced(const IOVAArena *arena, const IOVARef *refs, size_t lo, size_t hi)
{
    if (lo == hi) {
        return IOVA_REF_NONE;
    }
    size_t mid = lo + (hi - lo) / 2;
    IOVAHole *h = hole_at(arena, refs[mid]);
    IOVARef *l = h->link;
    l[AVL_LEFT] = build_balanced(arena, refs, lo, mid);
    l[AVL_RIGHT] = build_balanced(arena, refs, mid + 1, hi);
    /*
     * The arena hands its elements out unzeroed, and avl_update() compares the height and
     * summaries it computes with the stored ones: a fresh element's must be defined first
     * (any value will do: the answer goes unused here).
     */
    h->height = 0;
    h->align_max = 0;
    l[AVL_BEST] = refs[mid];
    avl_update(arena, &hole_ops, refs[mid]);
    return refs[mid];
}

int iova_holes_build(IOVAHoles *holes, IOVAHolesNext next, void *opaque, size_t nmaps)
{
    iova_arena_init(&holes->arena, sizeof(IOVAHole));
    holes->root = IOVA_REF_NONE;
    pending_clear(&holes->pending);
    IOVARef *refs = nmaps < UINT32_MAX ? malloc((nmaps + 1) * sizeof(*refs)) : NULL;
    if (!refs || iova_arena_reserve(&holes->arena, (uint32_t)nmaps + 1) < 0) {
        free(refs);
        iova_holes_destroy(holes);
        return IOVA_ERR_OOM;
    }
    size_t count = 0;
    hwaddr cursor = 0, first, last;
    bool open = true; /* cursor is a real address: the last map did not end at HWADDR_MAX */
    while (next(opaque, &first, &last)) {
        if (first > cursor) {
            refs[count] = iova_arena_alloc(&holes->arena); /* reserved: cannot fail */
            hole_at(&holes->arena, refs[count])->first = cursor;
            hole_at(&holes->arena, refs[count++])->last = first - 1;
        }
        open = last < HWADDR_MAX;
        cursor = last + 1;
    }
    if (open) {
        refs[count] = iova_arena_alloc(&holes->arena);
        hole_at(&holes->arena, refs[count])->first = cursor;
        hole_at(&holes->arena, refs[count++])->last = HWADDR_MAX;
    }
    holes->root = build_balanced(&holes->arena, refs, 0, count);
    free(refs);
    return IOVA_OK;
}

void iova_holes_destroy(IOVAHoles *holes)
{
    iova_arena_reset(&holes->arena);
    holes->root = IOVA_REF_NONE;
    pending_clear(&holes->pending);
}

/*
 * A hole that only shrinks or grows keeps its place in the order (holes are disjoint), so it
 * is changed where it stands and only the summaries on its path are recomputed: a map
 * inserted inside a hole costs one descent and at most one AVL insert (when it splits the
 * hole in two), instead of an unlink and two inserts.  @path->node[@at] is the hole, which
 * holds [first, last].  With @tail, the path goes on past it as far as the floor search of
 * @first went: one step right, then left to the end, which is the way to the hole's
 * neighbour slot above it (every hole of its right subtree starts above @first); without,
 * it ends at the hole.
 */
static int hole_take_at(IOVAHoles *holes, AvlPath *path, int at, bool tail, hwaddr first,
                        hwaddr last)
{
    IOVARef ref = path->node[at];
    IOVAHole *h = hole_at(&holes->arena, ref);
    bool keep_below = first > h->first;
    bool keep_above = last < h->last;

    uint16_t old_cap = hole_align_cap(h);
    if (keep_below && keep_above) {
        /* Splitting one hole in two needs a second element: get it before changing anything. */
        IOVARef spare = iova_arena_alloc(&holes->arena);
        if (spare == IOVA_REF_NONE) {
            return IOVA_ERR_OOM;
        }
        h = hole_at(&holes->arena, ref); /* (the arena's blocks never move; for clarity) */
        IOVAHole *part = hole_at(&holes->arena, spare);
        /*
         * The new part goes next to the hole in the order, below the child on its side: a
         * side without a child takes it with no walk down at all.
         */
        int side = h->link[AVL_RIGHT] != IOVA_REF_NONE && h->link[AVL_LEFT] == IOVA_REF_NONE
                       ? AVL_LEFT : AVL_RIGHT;
        if (side == AVL_RIGHT) {
            part->first = last + 1;
            part->last = h->last;
            h->last = first - 1;
        } else {
            part->first = h->first;
            part->last = first - 1;
            h->first = last + 1;
        }
        hole_link_beside(holes, spare, path, at, side, tail, old_cap);
        return IOVA_OK;
    }
    path->depth = at + 1;
    if (keep_below) {
        h->last = first - 1;
        avl_refresh_worse(&holes->arena, &hole_ops, path->node, path->depth, old_cap);
    } else if (keep_above) {
        h->first = last + 1;
        avl_refresh_worse(&holes->arena, &hole_ops, path->node, path->depth, old_cap);
    } else {
        holes->root = avl_remove_path(&holes->arena, &hole_ops, holes->root, ref, path->node,
                                      path->dir, path->depth - 1);
        iova_arena_release(&holes->arena, ref);
    }
    return IOVA_OK;
}

/* The floor of first (the highest hole starting at or below it) is the only hole that can
 * hold a range from first on. */
void iova_holes_take_search(const IOVAHoles *holes, hwaddr first, IOVAHoleSearch *s)
{
    hole_search_init(holes, first, true, s);
}

int iova_holes_take_found(IOVAHoles *holes, IOVAHoleSearch *s, hwaddr first, hwaddr last)
{
    int at;
    IOVARef floor = hole_search_last(s, AVL_RIGHT, &at);
    if (floor == IOVA_REF_NONE || hole_at(&holes->arena, floor)->last < last) {
        return IOVA_ERR_OVERLAP;
    }
    return hole_take_at(holes, &s->path, at, true, first, last);
}

int iova_holes_take_fit(IOVAHoles *holes, IOVAHoleFit *fit, hwaddr size)
{
    return hole_take_at(holes, &fit->path, fit->path.depth - 1, false, fit->iova,
                        fit->iova + size);
}

/*
 * The holes either side of a freed range [first, last] are neighbours in the order, and one
 * descent finds both: the floor of first - 1 (the hole below, if it ends at first - 1), and
 * the last node where that descent turned left, which is the next hole after it (the hole
 * above, if it starts at last + 1).  The way to each is a prefix of the descent's path.
 * (The floor of first - 1 is the last hole that starts below first, which also holds for 0.)
 */
void iova_holes_give_search(const IOVAHoles *holes, hwaddr first, IOVAHoleSearch *s)
{
    hole_search_init(holes, first, false, s);
}

int iova_holes_give_found(IOVAHoles *holes, IOVAHoleSearch *s, hwaddr first, hwaddr last)
{
    const IOVAArena *arena = &holes->arena;
    IOVARef *path = s->path.node;
    AvlDir *dirs = s->path.dir;
    int below_at, above_at;
    IOVARef below = hole_search_last(s, AVL_RIGHT, &below_at);
    IOVARef above = hole_search_last(s, AVL_LEFT, &above_at);

    if (below != IOVA_REF_NONE && hole_at(arena, below)->last != first - 1) {
        below = IOVA_REF_NONE;
    }
    if (above != IOVA_REF_NONE && (last == HWADDR_MAX || hole_at(arena, above)->first != last + 1)) {
        above = IOVA_REF_NONE;
    }
    if (below != IOVA_REF_NONE && above != IOVA_REF_NONE) {
        /*
         * One of the two grows over the range and the other, which goes.  Neighbours in the
         * order, one lies below the other on the path, with no child on the side that faces
         * it; the one that goes is that lower one, taken out with no successor to find.
         */
        IOVARef gone = above;
        int keep_at = below_at, gone_at = above_at;
        if (below_at > above_at) {
            gone = below;
            keep_at = above_at;
            gone_at = below_at;
            hole_at(arena, above)->first = hole_at(arena, below)->first;
        } else {
            hole_at(arena, below)->last = hole_at(arena, above)->last;
        }
        avl_refresh_better(arena, &hole_ops, path, keep_at + 1);
        holes->root = avl_remove_path(arena, &hole_ops, holes->root, gone, path, dirs, gone_at);
        iova_arena_release(&holes->arena, gone);
    } else if (below != IOVA_REF_NONE) {
        hole_at(arena, below)->last = last;
        avl_refresh_better(arena, &hole_ops, path, below_at + 1);
    } else if (above != IOVA_REF_NONE) {
        hole_at(arena, above)->first = first;
        avl_refresh_better(arena, &hole_ops, path, above_at + 1);
    } else {
        /* The descent compared each hole with first as the new hole's order would: it ends
         * at the new hole's slot. */
        IOVARef fresh = iova_arena_alloc(&holes->arena);
        if (fresh == IOVA_REF_NONE) {
            return IOVA_ERR_OOM;
        }
        hole_at(arena, fresh)->first = first;
        hole_at(arena, fresh)->last = last;
        holes->root = avl_insert_at(arena, &hole_ops, holes->root, fresh, &s->path);
    }
    return IOVA_OK;
}

/* Put [first, last] in slot @slot and widen the bounds over it. */
static void pending_set(IOVAHolesPending *p, uint32_t slot, hwaddr first, hwaddr last)
{
    p->tag[slot] = iova_holes_tag(first);
    p->first[slot] = first;
    p->last[slot] = last;
    p->low = first < p->low ? first : p->low;
    p->high = last > p->high ? last : p->high;
}

bool iova_holes_defer(IOVAHoles *holes, hwaddr *first, hwaddr *last, bool spare)
{
    IOVAHolesPending *p = &holes->pending;
    if (!p->by_insert) {
        return true;
    }
    if (p->count < IOVA_HOLES_PENDING) {
        pending_set(p, p->count++, *first, *last);
        return false;
    }
    if (!spare) {
        return true;
    }
    /* round the slots in turn: the range that goes back is about the oldest */
    uint32_t slot = p->evict;
    hwaddr old_first = p->first[slot], old_last = p->last[slot];
    p->evict = (slot + 1) % IOVA_HOLES_PENDING;
    pending_set(p, slot, *first, *last);
    *first = old_first;
    *last = old_last;
    return true;
}

void iova_holes_pending_drop(IOVAHoles *holes, int slot)
{
    IOVAHolesPending *p = &holes->pending;
    uint32_t end = --p->count;
    p->tag[slot] = p->tag[end];
    p->first[slot] = p->first[end];
    p->last[slot] = p->last[end];
    if (p->count == 0) {
        pending_empty(p); /* the bounds tighten again */
    }
}

bool iova_holes_pending_touch(const IOVAHoles *holes, hwaddr first, hwaddr last)
{
    const IOVAHolesPending *p = &holes->pending;
    for (uint32_t i = 0; i < p->count; i++) {
        if (p->first[i] <= last && first <= p->last[i]) {
            return true;
        }
    }
    return false;
}

bool iova_holes_pending_may_fit(const IOVAHoles *holes, const IOVAFitRequest *req, bool found,
                                hwaddr iova)
{
    const IOVAHolesPending *p = &holes->pending;
    if (p->count == 0) {
        return false;
    }
    /* the bounds first: a fit below (above) every pending range stands */
    if (found && (req->top_down ? p->high <= iova + req->size : p->low >= iova)) {
        return false;
    }
    for (uint32_t i = 0; i < p->count; i++) {
        if (p->last[i] < req->begin || p->first[i] > req->last) {
            continue;
        }
        if (!found || (req->top_down ? p->last[i] > iova + req->size : p->first[i] < iova)) {
            return true;
        }
    }
    return false;
}

/* Walk @s to its end, alone. */
static void hole_search_run(IOVAHoleSearch *s)
{
    IOVAHoleCursor c = iova_hole_cursor_begin(s);
    while (iova_hole_cursor_step(&c)) {
    }
    iova_hole_cursor_end(s, &c);
}

int iova_holes_flush(IOVAHoles *holes)
{
    IOVAHolesPending *p = &holes->pending;
    while (p->count > 0) {
        uint32_t slot = p->count - 1;
        IOVAHoleSearch search;
        iova_holes_give_search(holes, p->first[slot], &search);
        hole_search_run(&search);
        int rc = iova_holes_give_found(holes, &search, p->first[slot], p->last[slot]);
        if (rc != IOVA_OK) {
            return rc;
        }
        iova_holes_pending_drop(holes, (int)slot);
    }
    return IOVA_OK;
}

int iova_holes_take(IOVAHoles *holes, hwaddr first, hwaddr last)
{
    IOVAHoleSearch search;
    iova_holes_take_search(holes, first, &search);
    hole_search_run(&search);
    return iova_holes_take_found(holes, &search, first, last);
}

size_t iova_holes_pending_sorted(const IOVAHoles *holes, hwaddr *first, hwaddr *last)
{
    const IOVAHolesPending *p = &holes->pending;
    size_t n = p->count;
    for (size_t i = 0; i < n; i++) {
        /* insertion sort: at most IOVA_HOLES_PENDING ranges */
        size_t j = i;
        for (; j > 0 && first[j - 1] > p->first[i]; j--) {
            first[j] = first[j - 1];
            last[j] = last[j - 1];
        }
        first[j] = p->first[i];
        last[j] = p->last[i];
    }
    return n;
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
 * Whether @h's subtree may hold a fit at all: its longest hole is long enough and some hole
 * of it holds a multiple of the alignment (2^@align_log2).
 */
AVL_INLINE bool subtree_may_fit(const IOVAArena *arena, const IOVAHole *h,
                                const IOVAFitRequest *req, unsigned align_log2)
{
    const IOVAHole *best = hole_at(arena, h->link[AVL_BEST]);
    return best->last - best->first >= req->size && h->align_max >= align_log2;
}

/*
 * Depth-first in the preferred direction ("near": left for the lowest fit, right for the
 * highest), skipping every subtree whose longest hole is too short, every subtree none of
 * whose holes holds a multiple of the alignment (the subtree's align_max), and every subtree
 * that lies wholly outside [begin, last].  With align 1 only the two holes cut by begin and
 * last can pass the length test and still not fit, so the search costs O(log n).  With a
 * larger alignment A, a hole of at least size + A - 1 always fits, and a hole that holds no
 * multiple of A never does; what remains are holes long enough, holding a multiple of A, yet
 * too short after it (shorter than size + A - 1): each of those met before the answer adds a
 * descent, O(log n) apiece.  Holes misaligned for A as a whole (the common pathological
 * layout: page-sized holes between page-sized maps, asked for a larger alignment) cost
 * nothing.
 *
 * Iterative, on @path: a node is pushed with the side the walk went on to.  Pushed "near",
 * it still owes its own hole and its far subtree once the near one fails; pushed "far", it
 * is done.  So on success @path is the way down to the hole that fits, for the take.
 */
static bool hole_fit_walk(const IOVAArena *arena, IOVARef root, const IOVAFitRequest *req,
                          hwaddr *iova, AvlPath *path)
{
    unsigned align_log2 = (unsigned)__builtin_ctzll(req->align);
    int near = req->top_down ? AVL_RIGHT : AVL_LEFT;
    int depth = 0;

    for (IOVARef n = root;;) {
        while (n != IOVA_REF_NONE && subtree_may_fit(arena, hole_at(arena, n), req, align_log2)) {
            const IOVAHole *h = hole_at(arena, n);
            /* left holes end below h->first, right holes start above h->last */
            bool near_useful = req->top_down ? h->last < req->last : h->first > req->begin;
            path->node[depth] = n;
            path->dir[depth++] = (AvlDir)near;
            n = near_useful ? h->link[near] : IOVA_REF_NONE;
        }
        for (;;) {
            if (depth == 0) {
                return false;
            }
            if (path->dir[--depth] != near) {
                continue; /* its far subtree failed: it is done */
            }
            const IOVAHole *h = hole_at(arena, path->node[depth]);
            if (h->last >= req->begin && h->first <= req->last && hole_fits(h, req, iova)) {
                path->depth = depth + 1;
                return true;
            }
            bool far_useful = req->top_down ? h->first > req->begin : h->last < req->last;
            if (far_useful) {
                path->dir[depth++] = (AvlDir)!near;
                n = h->link[!near];
                break;
            }
        }
    }
}

bool iova_holes_fit(const IOVAHoles *holes, const IOVAFitRequest *req, IOVAHoleFit *fit)
{
    return hole_fit_walk(&holes->arena, holes->root, req, &fit->iova, &fit->path);
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

/* The pending ranges' own bookkeeping: a count in range, ranges the right way round, bounds
 * that bound them. */
static int pending_check(const IOVAHolesPending *p, char *err, size_t errlen)
{
    bool bad = p->count > IOVA_HOLES_PENDING || p->evict >= IOVA_HOLES_PENDING;
    for (uint32_t i = 0; !bad && i < p->count; i++) {
        bad = p->first[i] > p->last[i] || p->first[i] < p->low || p->last[i] > p->high ||
              p->tag[i] != iova_holes_tag(p->first[i]);
    }
    if (bad) {
        snprintf(err, errlen, "hole tree: the pending ranges' count, order or bounds are wrong");
        return -1;
    }
    return 0;
}

int iova_holes_check(const IOVAHoles *holes, char *err, size_t errlen)
{
    size_t count;
    if (pending_check(&holes->pending, err, errlen) < 0) {
        return -1;
    }
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
