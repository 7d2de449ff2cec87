/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The reverse tree (see iova-reverse.h for why).
 */
#include "iova-reverse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "iova-avl.h"
#include "iova-holes.h"

AVL_INLINE const IOVAEntry *entry_at(const IOVAArena *arena, IOVARef ref)
{
    return iova_arena_elem(arena, ref, sizeof(IOVAEntry));
}

AVL_INLINE hwaddr t_last(const IOVAEntry *e)
{
    return e->map.translated_addr + e->map.size;
}

/*
 * The trees' orders, without branches (see AvlOps.before): the pairs (translated_addr, iova)
 * compare as one (avl_pair_before()); the id tree adds the id above them with & and | rather
 * than && and ||.
 */
AVL_INLINE bool addr_iova_before(const DMAMap *ma, const DMAMap *mb)
{
    return avl_pair_before(ma->translated_addr, ma->iova, mb->translated_addr, mb->iova);
}

AVL_INLINE bool by_addr_before(const void *a, const void *b)
{
    return addr_iova_before(&((const IOVAEntry *)a)->map, &((const IOVAEntry *)b)->map);
}

AVL_INLINE bool by_id_before(const void *a, const void *b)
{
    const DMAMap *ma = &((const IOVAEntry *)a)->map, *mb = &((const IOVAEntry *)b)->map;
    uint64_t ia = ma->id, ib = mb->id;
    return (ia < ib) | ((ia == ib) & addr_iova_before(ma, mb));
}

/* Reaching further wins; then the lower IOVA (IOVAs are unique, so the order is total). */
AVL_INLINE bool reach_better(const IOVAEntry *ea, const IOVAEntry *eb)
{
    hwaddr la = t_last(ea), lb = t_last(eb);
    return la != lb ? la > lb : ea->map.iova < eb->map.iova;
}

AVL_INLINE bool by_addr_better(const void *a, const void *b)
{
    return reach_better(a, b);
}

/*
 * Within one id this is reach_better.  Across ids any total order will do: look-ups only
 * read the best of subtrees that lie wholly inside one id's group.
 */
AVL_INLINE bool by_id_better(const void *a, const void *b)
{
    const IOVAEntry *ea = a, *eb = b;
    return ea->map.id != eb->map.id ? ea->map.id > eb->map.id : reach_better(ea, eb);
}

/*
 * A 16-bit code for @x that never exceeds it when decoded: the top ten significant bits and
 * their shift.  Codes sort as the values do, so the minimum code decodes to a lower bound of
 * the minimum value.
 */
AVL_INLINE uint16_t floor_code(uint64_t x)
{
    int bits = x ? 64 - __builtin_clzll(x) : 0;
    int shift = bits > 10 ? bits - 10 : 0;
    return (uint16_t)((shift << 10) | (x >> shift));
}

static uint64_t floor_decode(uint16_t code)
{
    return (uint64_t)(code & 0x3ff) << (code >> 10);
}

AVL_INLINE uint16_t iova_code(const void *e)
{
    return floor_code(((const IOVAEntry *)e)->map.iova);
}

static const AvlOps by_addr_ops = {
    .elem_size = sizeof(IOVAEntry),
    .link_off = offsetof(IOVAEntry, by_addr),
    .height_off = offsetof(IOVAEntry, h_addr),
    .before = by_addr_before,
    .better = by_addr_better,
    .key16 = iova_code,
    .min16_off = offsetof(IOVAEntry, min_iova),
    .name = "reverse tree",
};

static const AvlOps by_id_ops = {
    .elem_size = sizeof(IOVAEntry),
    .link_off = offsetof(IOVAEntry, by_id),
    .height_off = offsetof(IOVAEntry, h_id),
    .before = by_id_before,
    .better = by_id_better,
    .name = "id tree",
};

/*
 * Every entry of the reverse tree, in no particular order (preorder): the copy into the id
 * tree and check() need each one, not their order.  Each step leaves at most one pending
 * right child a level on the stack, so its depth stays within the tree's height + 1 (the
 * tree is a sound AVL tree: check() walks it only after avl_check() has said so).
 */
typedef struct RevEvery {
    IOVARef stack[IOVA_REVERSE_MAX_DEPTH];
    int depth;
} RevEvery;

static void every_begin(RevEvery *w, IOVARef root)
{
    w->depth = 0;
    if (root != IOVA_REF_NONE) {
        w->stack[w->depth++] = root;
    }
}

static IOVAEntry *every_next(RevEvery *w, const IOVAArena *arena)
{
    if (!w->depth) {
        return NULL;
    }
    IOVAEntry *e = iova_arena_elem(arena, w->stack[--w->depth], sizeof(IOVAEntry));
    for (int dir = AVL_RIGHT; dir >= AVL_LEFT; dir--) {
        if (e->by_addr[dir] != IOVA_REF_NONE) {
            w->stack[w->depth++] = e->by_addr[dir];
        }
    }
    return e;
}

/*
 * Start keeping the id tree (it waits: iova-reverse.h), for entry @ref of a new id, not yet
 * linked: give the id tree the reverse tree's shape, right while every map has one id (the
 * id tree's order and best links are then the reverse tree's), and find @ref's way down it,
 * which iova_reverse_place() did not.  Once in a tree's life, or once each time it empties:
 * kept out of line, away from the link's own path.
 */
static void __attribute__((noinline, cold)) id_tree_start(IOVAReverse *rev,
                                                          const IOVAArena *arena, IOVARef ref,
                                                          AvlPath *path)
{
    RevEvery w;
    every_begin(&w, rev->by_addr_root);
    for (IOVAEntry *e; (e = every_next(&w, arena));) {
        memcpy(e->by_id, e->by_addr, sizeof(e->by_id));
        e->h_id = e->h_addr;
    }
    rev->by_id_root = rev->by_addr_root;
    rev->ids_differ = true;

    int depth = 0;
    const void *ne = entry_at(arena, ref);
    for (IOVARef n = rev->by_id_root; n != IOVA_REF_NONE;) {
        n = avl_step(arena, &by_id_ops, ne, n, path, &depth);
    }
    path->depth = depth;
}

/* Whether the id tree is kept once entry @ref is linked: from now on, if @ref is of a new id. */
static bool id_tree_kept(IOVAReverse *rev, const IOVAArena *arena, IOVARef ref, AvlPath *path)
{
    if (rev->ids_differ) {
        return true;
    }
    uint64_t id = entry_at(arena, ref)->map.id;
    if (rev->by_addr_root == IOVA_REF_NONE) {
        rev->one_id = id;
        return false;
    }
    if (id == rev->one_id) {
        return false;
    }
    id_tree_start(rev, arena, ref, path);
    return true;
}

/*
 * The reverse tree's insert is written out twice, with and without the id tree's after it:
 * with one copy and a test between the two, the compiler kept less of the first insert in
 * registers, and the link cost 53 more instructions (2%) with both trees kept.
 */
void iova_reverse_link(IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                       IOVAReversePlace *place)
{
    if (!id_tree_kept(rev, arena, ref, &place->id)) {
        rev->by_addr_root = avl_insert_at(arena, &by_addr_ops, rev->by_addr_root, ref,
                                          &place->addr);
        return;
    }
    rev->by_addr_root = avl_insert_at(arena, &by_addr_ops, rev->by_addr_root, ref, &place->addr);
    rev->by_id_root = avl_insert_at(arena, &by_id_ops, rev->by_id_root, ref, &place->id);
}

/*
 * Here and in iova_reverse_del(), avl_descend2() is called twice over, with and without the
 * hole search, rather than once with the step chosen at run time: it is inlined, and with a
 * constant NULL step the side walk leaves the loop altogether.  While the id tree is not kept
 * its root is IOVA_REF_NONE, and avl_descend2() walks the reverse tree alone.
 */
void iova_reverse_place(const IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                        IOVAReversePlace *place, IOVAHoleSearch *holes)
{
    if (holes) {
        IOVAHoleCursor cursor = iova_hole_cursor_begin(holes);
        avl_descend2(arena, ref, IOVA_REF_NONE, &by_addr_ops, rev->by_addr_root, &place->addr,
                     &by_id_ops, rev->by_id_root, &place->id, iova_hole_cursor_step, &cursor);
        iova_hole_cursor_end(holes, &cursor);
    } else {
        avl_descend2(arena, ref, IOVA_REF_NONE, &by_addr_ops, rev->by_addr_root, &place->addr,
                     &by_id_ops, rev->by_id_root, &place->id, NULL, NULL);
    }
}

void iova_reverse_del(IOVAReverse *rev, const IOVAArena *arena, IOVARef ref,
                      IOVAHoleSearch *holes)
{
    AvlPath addr_path, id_path;

    if (holes) {
        IOVAHoleCursor cursor = iova_hole_cursor_begin(holes);
        avl_descend2(arena, ref, ref, &by_addr_ops, rev->by_addr_root, &addr_path, &by_id_ops,
                     rev->by_id_root, &id_path, iova_hole_cursor_step, &cursor);
        iova_hole_cursor_end(holes, &cursor);
    } else {
        avl_descend2(arena, ref, ref, &by_addr_ops, rev->by_addr_root, &addr_path, &by_id_ops,
                     rev->by_id_root, &id_path, NULL, NULL);
    }
    rev->by_addr_root = avl_remove_at(arena, &by_addr_ops, rev->by_addr_root, ref, &addr_path);
    if (rev->ids_differ) {
        rev->by_id_root = avl_remove_at(arena, &by_id_ops, rev->by_id_root, ref, &id_path);
        rev->ids_differ = rev->by_addr_root != IOVA_REF_NONE; /* empty: the id tree waits */
    }
}

void iova_reverse_init(IOVAReverse *rev)
{
    *rev = (IOVAReverse){ .by_addr_root = IOVA_REF_NONE, .by_id_root = IOVA_REF_NONE };
}

/*
 * The id a look-up in @id's group walks the trees with: none (the reverse tree) while the id
 * tree is not kept and every map has that id.  Any other id, then, walks the id tree's
 * IOVA_REF_NONE root and finds nothing.
 */
static const uint64_t *group_id(const IOVAReverse *rev, const uint64_t *id)
{
    return id && !rev->ids_differ && *id == rev->one_id ? NULL : id;
}

/*
 * A look-up: the maps of one group (one id, or all maps) whose translated_addr <= @bound.
 * The walk hands each whole subtree inside that key range to @subtree and each single node
 * on the boundary paths to @node.
 */
typedef struct RevQuery {
    const IOVAArena *arena;
    const AvlOps *ops;
    bool by_id;
    uint64_t id;
    hwaddr bound;    /* highest translated_addr in range */
    hwaddr reach;    /* lowest translated last byte that still counts */
    IOVARef found;
    void (*visit)(struct RevQuery *q, IOVARef n, bool whole_subtree);
} RevQuery;

/* -1: @n sorts below the range; 0: inside; 1: above. */
static int rev_position(const RevQuery *q, const IOVAEntry *e)
{
    if (q->by_id && e->map.id != q->id) {
        return e->map.id < q->id ? -1 : 1;
    }
    return e->map.translated_addr > q->bound ? 1 : 0;
}

static void rev_walk(RevQuery *q, IOVARef n, bool lo_known, bool hi_known)
{
    while (n != IOVA_REF_NONE) {
        if (lo_known && hi_known) {
            q->visit(q, n, true);
            return;
        }
        const IOVAEntry *e = entry_at(q->arena, n);
        const IOVARef *l = (const IOVARef *)((const char *)e + q->ops->link_off);
        int pos = rev_position(q, e);
        if (pos < 0) {
            n = l[AVL_RIGHT];
        } else if (pos > 0) {
            n = l[AVL_LEFT];
        } else {
            rev_walk(q, l[AVL_LEFT], lo_known, true);
            q->visit(q, n, false);
            n = l[AVL_RIGHT];
            lo_known = true;
        }
    }
}

static const IOVARef *rev_links(const RevQuery *q, IOVARef n)
{
    return avl_links(q->arena, q->ops, n);
}

/* find: collect the lowest IOVA among maps reaching q->reach. */
static void find_lowest_in(RevQuery *q, IOVARef n)
{
    while (n != IOVA_REF_NONE) {
        const IOVAEntry *e = entry_at(q->arena, n);
        const IOVARef *l = rev_links(q, n);
        if (t_last(entry_at(q->arena, l[AVL_BEST])) < q->reach) {
            return; /* nothing in this subtree reaches the needle */
        }
        if (q->found != IOVA_REF_NONE && q->ops->key16 &&
            floor_decode(e->min_iova) >= entry_at(q->arena, q->found)->map.iova) {
            return; /* nothing in this subtree has a lower IOVA than the one found */
        }
        find_lowest_in(q, l[AVL_LEFT]);
        if (t_last(e) >= q->reach &&
            (q->found == IOVA_REF_NONE || e->map.iova < entry_at(q->arena, q->found)->map.iova)) {
            q->found = n;
        }
        n = l[AVL_RIGHT];
    }
}

static void find_visit(RevQuery *q, IOVARef n, bool whole_subtree)
{
    if (whole_subtree) {
        find_lowest_in(q, n);
        return;
    }
    const IOVAEntry *e = entry_at(q->arena, n);
    if (t_last(e) >= q->reach &&
        (q->found == IOVA_REF_NONE || e->map.iova < entry_at(q->arena, q->found)->map.iova)) {
        q->found = n;
    }
}

/* cover: keep the furthest-reaching candidate; a whole subtree offers its best link. */
static void cover_visit(RevQuery *q, IOVARef n, bool whole_subtree)
{
    IOVARef cand = whole_subtree ? rev_links(q, n)[AVL_BEST] : n;
    if (q->found == IOVA_REF_NONE ||
        reach_better(entry_at(q->arena, cand), entry_at(q->arena, q->found))) {
        q->found = cand;
    }
}

static RevQuery rev_setup(const IOVAArena *arena, const uint64_t *id, hwaddr bound,
                          hwaddr reach, void (*visit)(RevQuery *q, IOVARef n, bool whole_subtree))
{
    RevQuery q = {
        .arena = arena,
        .ops = id ? &by_id_ops : &by_addr_ops,
        .by_id = id != NULL,
        .id = id ? *id : 0,
        .bound = bound,
        .reach = reach,
        .found = IOVA_REF_NONE,
        .visit = visit,
    };
    return q;
}

static void rev_run(RevQuery *q, const IOVAReverse *rev)
{
    /* Without an id every map is in the group, so the range is bounded above only. */
    rev_walk(q, q->by_id ? rev->by_id_root : rev->by_addr_root, !q->by_id, false);
}

static RevQuery rev_query(const IOVAReverse *rev, const IOVAArena *arena, const uint64_t *id,
                          hwaddr bound, hwaddr reach,
                          void (*visit)(RevQuery *q, IOVARef n, bool whole_subtree))
{
    RevQuery q = rev_setup(arena, group_id(rev, id), bound, reach, visit);
    rev_run(&q, rev);
    return q;
}

IOVARef iova_reverse_find(const IOVAReverse *rev, const IOVAArena *arena, hwaddr first,
                          hwaddr last, const uint64_t *id)
{
    return rev_query(rev, arena, id, last, first, find_visit).found;
}

IOVARef iova_reverse_cover(const IOVAReverse *rev, const IOVAArena *arena, hwaddr addr,
                           const uint64_t *id)
{
    IOVARef best = rev_query(rev, arena, id, addr, addr, cover_visit).found;
    if (best != IOVA_REF_NONE && t_last(entry_at(arena, best)) < addr) {
        return IOVA_REF_NONE; /* the furthest reach among starts <= addr stops short */
    }
    return best;
}

/* ---------------------------------------------------------------- sweeps */

static const AvlOps *sweep_ops(const IOVAReverseSweep *s)
{
    return s->by_id ? &by_id_ops : &by_addr_ops;
}

/* Whether entry @e belongs to the group the sweep answers for. */
static bool sweep_member(const IOVAReverseSweep *s, const IOVAEntry *e)
{
    return !s->by_id || e->map.id == s->id;
}

/* Count map @n among the maps before the current one. */
static void sweep_fold(IOVAReverseSweep *s, IOVARef n)
{
    s->passed++;
    hwaddr reach = t_last(entry_at(s->arena, n));
    if (!s->any_before || reach > s->before_reach) {
        s->before_reach = reach;
    }
    s->any_before = true;
}

/* Make @n the map that started last, the previous one joining those before it. */
static void sweep_take(IOVAReverseSweep *s, IOVARef n)
{
    s->passed++;
    if (s->last != IOVA_REF_NONE) {
        sweep_fold(s, s->last);
    }
    s->last = n;
}

/* Whether map @n belongs to the group and starts at or below @addr. */
static bool sweep_reached(const IOVAReverseSweep *s, IOVARef n, hwaddr addr)
{
    const IOVAEntry *e = entry_at(s->arena, n);
    return sweep_member(s, e) && e->map.translated_addr <= addr;
}

/*
 * Descend from @n, taking the maps of its subtree that start at or below @addr: the nodes where
 * the descent turns right, each after its left subtree, whose reach the subtree's best link
 * gives; the nodes where it turns left are stacked, to come next.  In the id tree a subtree's
 * best is of its highest id, so it counts only when that is the group's.
 */
static void sweep_descend(IOVAReverseSweep *s, IOVARef n, hwaddr addr)
{
    const AvlOps *ops = sweep_ops(s);
    while (n != IOVA_REF_NONE) {
        const IOVAEntry *e = entry_at(s->arena, n);
        const IOVARef *l = avl_links(s->arena, ops, n);
        bool above = sweep_member(s, e) ? e->map.translated_addr > addr : e->map.id > s->id;
        if (above) {
            s->stack[s->depth++] = n;
            n = l[AVL_LEFT];
            continue;
        }
        if (l[AVL_LEFT] != IOVA_REF_NONE) {
            IOVARef best = avl_best(s->arena, ops, l[AVL_LEFT]);
            if (sweep_member(s, entry_at(s->arena, best))) {
                sweep_fold(s, best);
            }
        }
        if (sweep_member(s, e)) {
            sweep_take(s, n);
        }
        n = l[AVL_RIGHT];
    }
}

/*
 * Move on to @addr from the previous address in O(log d) for d maps in between (a finger
 * search): while the next stacked ancestor also starts at or below @addr, the top map and its
 * right subtree (which lie between the two) are taken whole; then the last one reached is
 * taken and its right subtree descended into.
 */
static void sweep_advance(IOVAReverseSweep *s, hwaddr addr)
{
    const AvlOps *ops = sweep_ops(s);
    while (s->depth >= 2 && sweep_reached(s, s->stack[s->depth - 2], addr)) {
        IOVARef top = s->stack[--s->depth];
        sweep_take(s, top);
        IOVARef right = avl_right(s->arena, ops, top);
        if (right != IOVA_REF_NONE) {
            sweep_fold(s, avl_best(s->arena, ops, right));
        }
    }
    if (s->depth >= 1 && sweep_reached(s, s->stack[s->depth - 1], addr)) {
        IOVARef top = s->stack[--s->depth];
        sweep_take(s, top);
        sweep_descend(s, avl_right(s->arena, ops, top), addr);
    }
}

void iova_reverse_sweep_init(IOVAReverseSweep *sweep, const IOVAReverse *rev,
                             const IOVAArena *arena, const uint64_t *id)
{
    id = group_id(rev, id);
    sweep->rev = rev;
    sweep->arena = arena;
    sweep->by_id = id != NULL;
    sweep->id = id ? *id : 0;
    sweep->started = false;
    sweep->depth = 0;
    sweep->last = IOVA_REF_NONE;
    sweep->any_before = false;
    sweep->before_reach = 0;
    sweep->passed = 0;
    sweep->answered_at = 0;
    sweep->has_answer = false;
    sweep->answer = IOVA_REF_NONE;
}

/* The answer for @addr once the sweep has reached it. */
static IOVARef sweep_answer(const IOVAReverseSweep *s, hwaddr addr)
{
    if (s->last == IOVA_REF_NONE) {
        return IOVA_REF_NONE; /* no map of the group starts at or below @addr */
    }
    if (s->any_before && s->before_reach >= addr) {
        /* an earlier map covers @addr too: which has the lowest IOVA is the tree's question */
        return iova_reverse_find(s->rev, s->arena, addr, addr, s->by_id ? &s->id : NULL);
    }
    return t_last(entry_at(s->arena, s->last)) >= addr ? s->last : IOVA_REF_NONE;
}

IOVARef iova_reverse_sweep_find(IOVAReverseSweep *sweep, hwaddr addr)
{
    if (sweep->started) {
        sweep_advance(sweep, addr);
    } else {
        sweep_descend(sweep, sweep->by_id ? sweep->rev->by_id_root : sweep->rev->by_addr_root,
                      addr);
        sweep->started = true;
    }
    /*
     * No map started since the last answer: the maps covering @addr all covered the previous
     * address, so the lowest IOVA among them is the previous answer when that still covers
     * @addr; a previous miss stays a miss.
     */
    if (sweep->has_answer && sweep->passed == sweep->answered_at &&
        (sweep->answer == IOVA_REF_NONE || t_last(entry_at(sweep->arena, sweep->answer)) >= addr)) {
        return sweep->answer;
    }
    sweep->answer = sweep_answer(sweep, addr);
    sweep->answered_at = sweep->passed;
    sweep->has_answer = true;
    return sweep->answer;
}

static bool tree_contains(const IOVAArena *arena, const AvlOps *ops, IOVARef root, IOVARef ref)
{
    IOVARef n = root;
    while (n != IOVA_REF_NONE) {
        if (n == ref) {
            return true;
        }
        bool left = ops->before(avl_elem(arena, ops, ref), avl_elem(arena, ops, n));
        n = avl_links(arena, ops, n)[left ? AVL_LEFT : AVL_RIGHT];
    }
    return false;
}

bool iova_reverse_contains(const IOVAReverse *rev, const IOVAArena *arena, IOVARef ref)
{
    return tree_contains(arena, &by_addr_ops, rev->by_addr_root, ref) &&
           (!rev->ids_differ || tree_contains(arena, &by_id_ops, rev->by_id_root, ref));
}

/* The id tree is not kept: it has no root, and every map has the one id. */
static int check_one_id(const IOVAReverse *rev, const IOVAArena *arena, char *err,
                        size_t errlen)
{
    if (rev->by_id_root != IOVA_REF_NONE) {
        snprintf(err, errlen, "id tree: has a root while it is not kept");
        return -1;
    }
    RevEvery w;
    every_begin(&w, rev->by_addr_root);
    for (const IOVAEntry *e; (e = every_next(&w, arena));) {
        if (e->map.id != rev->one_id) {
            snprintf(err, errlen, "id tree: not kept, but the map at IOVA %#" PRIx64 " has id "
                     "%#" PRIx64 ", not the %#" PRIx64 " of the others", e->map.iova, e->map.id,
                     rev->one_id);
            return -1;
        }
    }
    return 0;
}

int iova_reverse_check(const IOVAReverse *rev, const IOVAArena *arena, size_t expected,
                       char *err, size_t errlen)
{
    size_t count;
    if (avl_check(arena, &by_addr_ops, rev->by_addr_root, &count, err, errlen) < 0) {
        return -1;
    }
    if (count != expected) {
        snprintf(err, errlen, "reverse tree: links %zu maps, forward tree holds %zu", count,
                 expected);
        return -1;
    }
    if (!rev->ids_differ) {
        return check_one_id(rev, arena, err, errlen);
    }
    if (expected == 0) {
        snprintf(err, errlen, "id tree: kept for an empty tree");
        return -1;
    }
    if (avl_check(arena, &by_id_ops, rev->by_id_root, &count, err, errlen) < 0) {
        return -1;
    }
    if (count != expected) {
        snprintf(err, errlen, "id tree: links %zu maps, forward tree holds %zu", count,
                 expected);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- every overlap */

/* A look-up that hands every overlapping map to a callback (RevQuery first: visit gets it). */
typedef struct RevEach {
    RevQuery q;
    IOVAReverseFn fn;
    void *opaque;
    bool stopped;
} RevEach;

static void each_offer(RevEach *w, const IOVAEntry *e)
{
    if (!w->stopped && t_last(e) >= w->q.reach) {
        w->stopped = w->fn(&e->map, w->opaque);
    }
}

/* A whole subtree inside the key range: skip any part whose best link stops short. */
static void each_in(RevEach *w, IOVARef n)
{
    while (n != IOVA_REF_NONE && !w->stopped) {
        const IOVARef *l = rev_links(&w->q, n);
        if (t_last(entry_at(w->q.arena, l[AVL_BEST])) < w->q.reach) {
            return;
        }
        each_in(w, l[AVL_LEFT]);
        each_offer(w, entry_at(w->q.arena, n));
        n = l[AVL_RIGHT];
    }
}

static void each_visit(RevQuery *q, IOVARef n, bool whole_subtree)
{
    RevEach *w = (RevEach *)q;
    if (whole_subtree) {
        each_in(w, n);
    } else {
        each_offer(w, entry_at(q->arena, n));
    }
}

void iova_reverse_foreach(const IOVAReverse *rev, const IOVAArena *arena, hwaddr first,
                          hwaddr last, const uint64_t *id, IOVAReverseFn fn, void *opaque)
{
    RevEach w = {
        .q = rev_setup(arena, group_id(rev, id), last, first, each_visit),
        .fn = fn,
        .opaque = opaque,
    };
    rev_run(&w.q, rev);
}
