/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVA trees on GLib's GTree, the way QEMU's util/iova-tree.c keeps them (see iova-tree.h).
 */
#include "iova-tree.h"

#include <stdio.h>

#include "iova-arena.h"
#include "iova-map.h"
#include "iova-holes.h"
#include "iova-range.h"
#include "iova-reverse.h"

/*
 * An IOVA-keyed tree keeps its maps as IOVAEntry in an arena, linked into the reverse trees and,
 * once it has allocated, accounted for by the holes.  A GPA-keyed tree needs neither: its maps
 * are plain g_new() DMAMaps that the GTree frees, as QEMU's are.
 *
 * Why the holes wait for the first alloc: only alloc reads them, and most trees either
 * allocate from the start (vhost's IOVA trees, empty when the first alloc comes) or never do
 * (the vIOMMUs' trees, filled by insert).  A tree that never allocates pays neither the hole
 * tree's update on every insert and remove nor its memory (a hole beside each map on a
 * sparse layout).  The first alloc builds the holes in one O(n) pass; from then on they are
 * kept up to date and every alloc is O(log n).
 */
struct IOVATree {
    GTree *tree;            /* keys and values: the maps, compared as ranges */
    gboolean by_translated; /* made by gpa_tree_new() */
    gboolean holes_on;      /* the holes exist and are the complement of the maps */
    gboolean holes_kept;    /* iova_tree_keep_holes(): the holes never wait for an alloc */
    IOVAArena entries;      /* IOVAEntry storage (IOVA-keyed trees) */
    IOVAReverse reverse;    /* IOVA-keyed trees only */
    IOVAHoles holes;        /* IOVA-keyed trees, from their first alloc */
    /*
     * A one-byte removal's needle, and the stored map the comparator found equal to it
     * (tree_remove_byte()).  The comparator writes the note only for this needle, which
     * only a removal passes: look-ups write nothing.
     */
    DMAMap byte_needle;
    const DMAMap *byte_hit;
};

/*
 * QEMU's comparator: overlapping ranges compare equal, so a look-up finds any overlap.  Its
 * data is the tree, for the note tree_remove_byte() reads.
 */
static gint iova_range_cmp(gconstpointer a, gconstpointer b, gpointer data)
{
    const DMAMap *m1 = a, *m2 = b;
    IOVATree *tree = data;

    if (m1->iova > m2->iova + m2->size) {
        return 1;
    }
    if (m1->iova + m1->size < m2->iova) {
        return -1;
    }
    if (m1 == &tree->byte_needle) {
        tree->byte_hit = m2;
    }
    return 0;
}

static gint translated_range_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    const DMAMap *m1 = a, *m2 = b;

    (void)unused;
    if (m1->translated_addr > m2->translated_addr + m2->size) {
        return 1;
    }
    if (m1->translated_addr + m1->size < m2->translated_addr) {
        return -1;
    }
    return 0;
}

static hwaddr key_first(const IOVATree *tree, const DMAMap *map)
{
    return tree->by_translated ? map->translated_addr : map->iova;
}

static GTree *new_gtree(IOVATree *tree)
{
    if (tree->by_translated) {
        return g_tree_new_full(translated_range_cmp, NULL, g_free, NULL);
    }
    return g_tree_new_full(iova_range_cmp, tree, NULL, NULL); /* the arena owns the maps */
}

static IOVATree *tree_new(gboolean by_translated)
{
    IOVATree *tree = g_new0(IOVATree, 1);

    tree->by_translated = by_translated;
    tree->tree = new_gtree(tree);
    iova_arena_init(&tree->entries, sizeof(IOVAEntry));
    iova_reverse_init(&tree->reverse);
    return tree;
}

IOVATree *iova_tree_new(void)
{
    return tree_new(FALSE);
}

IOVATree *gpa_tree_new(void)
{
    return tree_new(TRUE);
}

/* The arena reference of a stored map: the map is its entry's first member. */
static IOVARef ref_of_map(const IOVATree *tree, const DMAMap *map)
{
    return iova_arena_ref_of(&tree->entries, map);
}

/* The first map whose last byte is at or above @addr (see lowest_overlap()). */
static GTreeNode *first_reaching(const IOVATree *tree, hwaddr addr)
{
    DMAMap needle = { 0 };
    needle.iova = needle.translated_addr = addr;
    return g_tree_lower_bound(tree->tree, &needle);
}

/*
 * The stored map with the lowest key overlapping [first, last].  g_tree_lower_bound() with the
 * overlap comparator lands on the first map whose last byte is >= first; it overlaps when it
 * starts at or below last.  (QEMU's g_tree_lookup() returns whichever overlapping map the
 * search meets first, which depends on the tree's shape: docs/contract.md, deviation 4.)
 */
static const DMAMap *lowest_overlap(const IOVATree *tree, hwaddr first, hwaddr last)
{
    GTreeNode *node = first_reaching(tree, first);
    if (!node) {
        return NULL;
    }
    const DMAMap *map = g_tree_node_key(node);
    return key_first(tree, map) <= last ? map : NULL;
}

/*
 * Put @map (an arena entry's) in the GTree, unless it overlaps a stored map; returns whether
 * it went in.  The insert is the overlap test: g_tree_insert_node() with the overlap
 * comparator stops at a stored map that overlaps, if any does (the maps overlapping a range
 * are consecutive in the order, and a descent cannot pass them all), and sets that node's
 * value to the new map, changing nothing else; setting it back leaves the tree as it was.
 * So an insert descends the GTree once, as QEMU's g_tree_insert() does after its look-up,
 * and not twice.  (With the holes on, they have refused any overlap before this.)
 */
static bool forward_insert(IOVATree *tree, DMAMap *map)
{
    GTreeNode *node = g_tree_insert_node(tree->tree, map, map);
    gpointer stored = g_tree_node_key(node);
    if (stored != map) {
        g_tree_insert(tree->tree, stored, stored);
        return false;
    }
    return true;
}

/*
 * The answer of an insert of [first, last] that ran out of memory: IOVA_ERR_OVERLAP where a
 * stored map overlaps the range, as with memory to spare (a caller told to retry an insert
 * that can never go in would retry forever), else IOVA_ERR_OOM.
 */
static int oom_or_overlap(const IOVATree *tree, hwaddr first, hwaddr last)
{
    return lowest_overlap(tree, first, last) ? IOVA_ERR_OVERLAP : IOVA_ERR_OOM;
}

/*
 * Take [first, last] from the holes for entry @ref, finding the entry's place in the reverse
 * trees (@place) meanwhile: the hole tree's descent runs beside the reverse trees', and
 * nothing is linked before the holes have taken the range.  A range the holes refuse may
 * still be free, when it overlaps a pending range (iova-holes.h): those go back to the holes
 * first, and the holes are asked again.
 */
static int holes_take_placing(IOVATree *tree, IOVARef ref, hwaddr first, hwaddr last,
                              IOVAReversePlace *place)
{
    IOVAHoleSearch search;
    iova_holes_take_search(&tree->holes, first, &search);
    iova_reverse_place(&tree->reverse, &tree->entries, ref, place, &search);
    int rc = iova_holes_take_found(&tree->holes, &search, first, last);
    if (rc == IOVA_ERR_OVERLAP && iova_holes_pending_touch(&tree->holes, first, last)) {
        rc = iova_holes_flush(&tree->holes);
        if (rc == IOVA_OK) {
            rc = iova_holes_take(&tree->holes, first, last);
        }
    }
    return rc;
}

/*
 * Store @map.  @fit, when not NULL, is where iova_holes_fit() placed it (an alloc): the holes
 * then take its range along the fit's own way down, with no second descent.
 */
static int tree_store(IOVATree *tree, const DMAMap *map, IOVAHoleFit *fit)
{
    if (!dma_map_valid(map)) {
        return IOVA_ERR_INVALID;
    }
    hwaddr first = key_first(tree, map);
    if (tree->by_translated) {
        /* (GLib would free a copy it found overlapping: the test comes first here) */
        if (lowest_overlap(tree, first, first + map->size)) {
            return IOVA_ERR_OVERLAP;
        }
        DMAMap *copy = g_try_new(DMAMap, 1);
        if (!copy) {
            return IOVA_ERR_OOM;
        }
        *copy = *map;
        g_tree_insert(tree->tree, copy, copy);
        return IOVA_OK;
    }
    IOVARef ref = iova_arena_alloc(&tree->entries);
    if (ref == IOVA_REF_NONE) {
        return oom_or_overlap(tree, first, first + map->size);
    }
    IOVAEntry *e = iova_arena_ptr(&tree->entries, ref);
    e->map = *map; /* the reverse trees' descents compare it */
    IOVAReversePlace place;
    int rc = IOVA_OK, pending = -1;
    if (fit) {
        iova_holes_taken_by(&tree->holes, false);
        rc = iova_holes_take_fit(&tree->holes, fit, map->size);
        iova_reverse_place(&tree->reverse, &tree->entries, ref, &place, NULL);
    } else if (tree->holes_on) {
        iova_holes_taken_by(&tree->holes, true);
        pending = iova_holes_pending_find(&tree->holes, first, first + map->size);
        if (pending >= 0) {
            /* a range freed and not yet given back, taken again as it was: nothing for the
             * holes to do, and it is free, so no map overlaps */
            iova_reverse_place(&tree->reverse, &tree->entries, ref, &place, NULL);
        } else {
            rc = holes_take_placing(tree, ref, first, first + map->size, &place);
        }
    } else {
        iova_reverse_place(&tree->reverse, &tree->entries, ref, &place, NULL);
    }
    if (rc != IOVA_OK) {
        iova_arena_release(&tree->entries, ref);
        return rc == IOVA_ERR_OOM ? oom_or_overlap(tree, first, first + map->size) : rc;
    }
    if (!forward_insert(tree, &e->map)) {
        iova_arena_release(&tree->entries, ref);
        return IOVA_ERR_OVERLAP;
    }
    if (pending >= 0) {
        iova_holes_pending_drop(&tree->holes, pending);
    }
    iova_reverse_link(&tree->reverse, &tree->entries, ref, &place);
    return IOVA_OK;
}

int iova_tree_insert(IOVATree *tree, const DMAMap *map)
{
    return tree_store(tree, map, NULL);
}

int gpa_tree_insert(IOVATree *tree, const DMAMap *map)
{
    return tree->by_translated ? tree_store(tree, map, NULL) : IOVA_ERR_INVALID;
}

int iova_tree_reserve(IOVATree *tree, size_t count)
{
    if (tree->by_translated || !tree->holes_on || tree->holes.arena.free_count >= count) {
        return 0; /* no holes to record, or elements enough waiting to be reused */
    }
    return count > UINT32_MAX || iova_arena_reserve(&tree->holes.arena, (uint32_t)count) < 0
               ? -1
               : 0;
}

/*
 * Take @map, an arena entry's that the GTree no longer holds, out of the other structures.
 * Returning its range to the holes may need one hole element, which the caller has reserved
 * (iova_tree_reserve()), so this cannot fail.
 */
static void entry_unstore(IOVATree *tree, const DMAMap *map)
{
    IOVARef ref = ref_of_map(tree, map);
    g_assert(ref != IOVA_REF_NONE); /* the GTree only ever holds the arena's entries */
    hwaddr first = map->iova, last = map->iova + map->size;
    /*
     * The range may wait (iova_holes_defer()); else it, or an older pending range in its
     * place, goes back to the holes, with at most the element reserved (an older one only
     * while an element is to spare: the caller's reservation may have gone on something
     * else since, as vhost's rollback of an alloc spends it, and the reasoning that covers
     * this range's give does not cover another's).  The hole tree's descent runs beside the
     * reverse trees'.
     */
    if (tree->holes_on &&
        iova_holes_defer(&tree->holes, &first, &last, iova_arena_spare(&tree->holes.arena))) {
        IOVAHoleSearch search;
        iova_holes_give_search(&tree->holes, first, &search);
        iova_reverse_del(&tree->reverse, &tree->entries, ref, &search);
        iova_holes_give_found(&tree->holes, &search, first, last);
    } else {
        iova_reverse_del(&tree->reverse, &tree->entries, ref, NULL);
    }
    iova_arena_release(&tree->entries, ref);
}

/* Take one stored map out of every structure (see entry_unstore()). */
static void tree_unstore(IOVATree *tree, const DMAMap *map)
{
    g_tree_remove(tree->tree, map); /* a GPA tree's copy: freed */
    if (!tree->by_translated) {
        entry_unstore(tree, map);
    }
}

/*
 * Remove the map of an IOVA-keyed tree that holds byte @iova, if one does; returns how many
 * went (0 or 1).  One byte lies in at most one map, so g_tree_remove() of a one-byte needle
 * removes the map a look-up would have found, and the comparator's note says which one it
 * was: the GTree is descended once, where a look-up and then the removal descend it twice.
 * The caller has reserved the hole element (iova_tree_reserve()).
 */
static size_t tree_remove_byte(IOVATree *tree, hwaddr iova)
{
    tree->byte_needle = (DMAMap){ .iova = iova };
    if (!g_tree_remove(tree->tree, &tree->byte_needle)) {
        return 0;
    }
    entry_unstore(tree, tree->byte_hit);
    return 1;
}

const DMAMap *iova_tree_find(const IOVATree *tree, const DMAMap *map)
{
    hwaddr first = key_first(tree, map);
    if (first + map->size < first) {
        return NULL;
    }
    return lowest_overlap(tree, first, first + map->size);
}

const DMAMap *iova_tree_find_address(const IOVATree *tree, hwaddr iova)
{
    return lowest_overlap(tree, iova, iova);
}

/*
 * A GPA tree's reverse look-up: its key is the translated address, so the maps overlapping
 * [first, last] are consecutive in its order from the first one reaching @first, and the
 * first of them with the id is the one QEMU's walk in GPA order meets first: O(log n + k)
 * for k overlapping maps, where that walk (vhost_iova_tree_find_gpa()'s) visits every map.
 */
static const DMAMap *gpa_reverse_find(const IOVATree *tree, hwaddr first, hwaddr last,
                                      const uint64_t *id)
{
    for (GTreeNode *node = first_reaching(tree, first); node; node = g_tree_node_next(node)) {
        const DMAMap *m = g_tree_node_key(node);
        if (m->translated_addr > last) {
            return NULL;
        }
        if (!id || m->id == *id) {
            return m;
        }
    }
    return NULL;
}

static const DMAMap *reverse_find(const IOVATree *tree, const DMAMap *map, const uint64_t *id)
{
    hwaddr first = map->translated_addr;
    if (first + map->size < first) {
        return NULL;
    }
    if (tree->by_translated) {
        return gpa_reverse_find(tree, first, first + map->size, id);
    }
    IOVARef ref = iova_reverse_find(&tree->reverse, &tree->entries, first, first + map->size, id);
    return ref == IOVA_REF_NONE ? NULL : iova_arena_ptr(&tree->entries, ref);
}

const DMAMap *iova_tree_find_iova(const IOVATree *tree, const DMAMap *map)
{
    uint64_t id = map->id; /* a copy: a packed member has no aligned address */
    return reverse_find(tree, map, &id);
}

const DMAMap *iova_tree_find_iova_any(const IOVATree *tree, const DMAMap *map)
{
    return reverse_find(tree, map, NULL);
}

typedef struct LinearFind {
    const DMAMap *needle;
    gboolean match_id;
    const DMAMap *found;
} LinearFind;

static gboolean linear_find_step(gpointer key, gpointer value, gpointer data)
{
    const DMAMap *map = key, *needle = ((LinearFind *)data)->needle;
    LinearFind *args = data;

    (void)value;
    if (map->translated_addr + map->size < needle->translated_addr ||
        needle->translated_addr + needle->size < map->translated_addr ||
        (args->match_id && needle->id != map->id)) {
        return FALSE;
    }
    args->found = map;
    return TRUE; /* the walk is in IOVA order: the first hit has the lowest IOVA */
}

const DMAMap *iova_tree_find_iova_linear(const IOVATree *tree, const DMAMap *map,
                                         gboolean match_id)
{
    LinearFind args = { map, match_id, NULL };
    g_tree_foreach(tree->tree, linear_find_step, &args);
    return args.found;
}

/* The map used for byte @addr: furthest reaching, ties to the lowest IOVA. */
static const DMAMap *cover(const IOVATree *tree, hwaddr addr, const uint64_t *id)
{
    if (tree->by_translated) {
        const DMAMap *map = lowest_overlap(tree, addr, addr);
        return map && (!id || map->id == *id) ? map : NULL;
    }
    IOVARef ref = iova_reverse_cover(&tree->reverse, &tree->entries, addr, id);
    return ref == IOVA_REF_NONE ? NULL : iova_arena_ptr(&tree->entries, ref);
}

int iova_tree_translate(const IOVATree *tree, hwaddr addr, hwaddr length, const uint64_t *id,
                        IOVASegment *segs, size_t cap, size_t *nsegs, hwaddr *fault)
{
    *nsegs = 0;
    if (length == 0) {
        return IOVA_OK;
    }
    hwaddr end = addr + (length - 1);
    if (end < addr) {
        return IOVA_ERR_INVALID;
    }
    for (hwaddr pos = addr;;) {
        const DMAMap *map = cover(tree, pos, id);
        if (!map) {
            *fault = pos;
            return IOVA_ERR_TRANSLATION;
        }
        hwaddr map_end = map->translated_addr + map->size;
        hwaddr stop = map_end < end ? map_end : end;
        if (*nsegs < cap) {
            segs[*nsegs].iova = map->iova + (pos - map->translated_addr);
            segs[*nsegs].len = stop - pos + 1;
        }
        (*nsegs)++;
        if (stop == end) {
            return IOVA_OK;
        }
        pos = stop + 1;
    }
}

static bool next_map_range(void *opaque, hwaddr *first, hwaddr *last)
{
    GTreeNode **node = opaque;
    if (!*node) {
        return false;
    }
    const DMAMap *m = g_tree_node_key(*node);
    *first = m->iova;
    *last = m->iova + m->size;
    *node = g_tree_node_next(*node);
    return true;
}

/* The first alloc: the holes between the maps, from one walk in IOVA order. */
static int holes_build(IOVATree *tree)
{
    GTreeNode *node = g_tree_node_first(tree->tree);
    int rc = iova_holes_build(&tree->holes, next_map_range, &node, iova_tree_nnodes(tree));
    tree->holes_on = rc == IOVA_OK;
    return rc;
}

int iova_tree_keep_holes(IOVATree *tree)
{
    if (tree->by_translated) {
        return IOVA_ERR_INVALID;
    }
    int rc = tree->holes_on ? IOVA_OK : holes_build(tree);
    if (rc == IOVA_OK) {
        tree->holes_kept = TRUE;
    }
    return rc;
}

gboolean iova_tree_has_holes(const IOVATree *tree)
{
    return tree->holes_on;
}

static int alloc_args_valid(const IOVATree *tree, const DMAMap *map, hwaddr iova_begin,
                            hwaddr iova_last, hwaddr align)
{
    DMAMap placed = *map;
    placed.iova = 0;
    return !tree->by_translated && dma_map_valid(&placed) && iova_begin <= iova_last &&
           align != 0 && (align & (align - 1)) == 0;
}

int iova_tree_alloc_map_full(IOVATree *tree, DMAMap *map, hwaddr iova_begin, hwaddr iova_last,
                             hwaddr align, IOVAAllocPolicy policy)
{
    if (!alloc_args_valid(tree, map, iova_begin, iova_last, align) ||
        (policy != IOVA_ALLOC_FIRST && policy != IOVA_ALLOC_LAST)) {
        return IOVA_ERR_INVALID;
    }
    IOVAFitRequest req = {
        .size = map->size,
        .begin = iova_begin,
        .last = iova_last,
        .align = align,
        .top_down = policy == IOVA_ALLOC_LAST,
    };
    IOVAHoleFit fit;
    if (!tree->holes_on) {
        int rc = holes_build(tree);
        if (rc != IOVA_OK) {
            return rc;
        }
    }
    bool found = iova_holes_fit(&tree->holes, &req, &fit);
    if (iova_holes_pending_may_fit(&tree->holes, &req, found, found ? fit.iova : 0)) {
        /* a range not yet given back may hold a better fit: give them all, and look again */
        int rc = iova_holes_flush(&tree->holes);
        if (rc != IOVA_OK) {
            return rc;
        }
        found = iova_holes_fit(&tree->holes, &req, &fit);
    }
    if (!found) {
        return IOVA_ERR_NOMEM;
    }
    DMAMap placed = *map;
    placed.iova = fit.iova;
    int rc = tree_store(tree, &placed, &fit);
    if (rc == IOVA_OK) {
        map->iova = fit.iova;
    }
    return rc;
}

int iova_tree_alloc_map(IOVATree *tree, DMAMap *map, hwaddr iova_begin, hwaddr iova_last)
{
    return iova_tree_alloc_map_full(tree, map, iova_begin, iova_last, 1, IOVA_ALLOC_FIRST);
}

int iova_tree_alloc_map_linear(IOVATree *tree, DMAMap *map, hwaddr iova_begin,
                               hwaddr iova_last)
{
    if (!alloc_args_valid(tree, map, iova_begin, iova_last, 1)) {
        return IOVA_ERR_INVALID;
    }
    hwaddr cursor = iova_begin; /* lowest IOVA still possible */
    for (GTreeNode *node = g_tree_node_first(tree->tree); node; node = g_tree_node_next(node)) {
        const DMAMap *m = g_tree_node_key(node);
        hwaddr m_last = m->iova + m->size;
        if (m_last < cursor) {
            continue;
        }
        if (m->iova > cursor && m->iova - cursor > map->size) {
            break; /* the hole [cursor, m->iova - 1] holds it */
        }
        if (m_last >= iova_last) {
            return IOVA_ERR_NOMEM;
        }
        cursor = m_last + 1;
    }
    if (map->size > iova_last - cursor || cursor > iova_last) {
        return IOVA_ERR_NOMEM;
    }
    DMAMap placed = *map;
    placed.iova = cursor;
    int rc = tree_store(tree, &placed, NULL);
    if (rc == IOVA_OK) {
        map->iova = cursor;
    }
    return rc;
}

/* How many maps from @node on (in key order) start at or below @last. */
static size_t overlaps_from(const IOVATree *tree, GTreeNode *node, hwaddr last)
{
    size_t count = 0;
    for (; node; node = g_tree_node_next(node)) {
        const DMAMap *map = g_tree_node_key(node);
        hwaddr first = key_first(tree, map);
        if (first > last) {
            break;
        }
        count++;
        /* The maps are disjoint: none after one that reaches @last starts at or below it. */
        if (first + map->size >= last) {
            break;
        }
    }
    return count;
}

size_t iova_tree_count(const IOVATree *tree, const DMAMap *map)
{
    hwaddr first = key_first(tree, map);
    if (first + map->size < first) {
        return 0;
    }
    return overlaps_from(tree, first_reaching(tree, first), first + map->size);
}

int iova_tree_remove_checked(IOVATree *tree, DMAMap map, size_t *removed)
{
    hwaddr first = key_first(tree, &map);

    *removed = 0;
    if (first + map.size < first) {
        return IOVA_ERR_INVALID;
    }
    if (map.size == 0 && !tree->by_translated && iova_tree_reserve(tree, 1) == 0) {
        *removed = tree_remove_byte(tree, first);
        return IOVA_OK;
    }
    hwaddr last = first + map.size;
    GTreeNode *node = first_reaching(tree, first);
    size_t count = overlaps_from(tree, node, last);
    if (count == 0) {
        return IOVA_OK;
    }
    /*
     * Every hole element the removals may need is set aside first: all or nothing.  They go
     * in IOVA order, so each one after the first has a hole just below it (the range the one
     * before freed, or the gap between the two) and grows it: one element is all they need.
     * (Reserving one a map mapped 32 bytes a map more to remove them, 32 MB for 1M maps.)
     * That holds only while the space between them is holes and their ranges go to the
     * holes: a pending range there (iova-holes.h), or one of them kept pending, leaves the
     * next with no hole below it, and its give would need an element of its own.  So with
     * several maps to remove, the pending ranges go back first if one lies in the range
     * (before anything changes: should memory run out, nothing is removed), and none of
     * theirs waits.
     */
    bool holes_several = tree->holes_on && count > 1;
    bool by_insert = tree->holes.pending.by_insert;
    if (holes_several && iova_holes_pending_touch(&tree->holes, first, last) &&
        iova_holes_flush(&tree->holes) != IOVA_OK) {
        return IOVA_ERR_OOM;
    }
    if (iova_tree_reserve(tree, 1) < 0) {
        return IOVA_ERR_OOM;
    }
    if (holes_several) {
        iova_holes_taken_by(&tree->holes, false); /* their ranges go to the holes */
    }
    /*
     * The node found first is the lowest overlap; after a removal the tree may have moved
     * its nodes, so each further one is looked up again (none when a single map overlaps).
     */
    const DMAMap *hit = g_tree_node_key(node);
    while (hit) {
        tree_unstore(tree, hit);
        hit = ++*removed < count ? lowest_overlap(tree, first, last) : NULL;
    }
    if (holes_several) {
        iova_holes_taken_by(&tree->holes, by_insert);
    }
    return IOVA_OK;
}

size_t iova_tree_remove_count(IOVATree *tree, DMAMap map)
{
    size_t removed;
    iova_tree_remove_checked(tree, map, &removed);
    return removed;
}

void iova_tree_remove(IOVATree *tree, DMAMap map)
{
    iova_tree_remove_count(tree, map);
}

typedef struct ForeachArgs {
    iova_tree_opaque_iterator iterator;
    gpointer opaque;
} ForeachArgs;

static gboolean foreach_step(gpointer key, gpointer value, gpointer data)
{
    ForeachArgs *args = data;
    (void)value;
    return args->iterator(key, args->opaque);
}

void iova_tree_foreach_opaque(IOVATree *tree, iova_tree_opaque_iterator iterator,
                              gpointer opaque)
{
    ForeachArgs args = { iterator, opaque };
    g_tree_foreach(tree->tree, foreach_step, &args);
}

/* QEMU's iterator has no opaque pointer: the walk hands it on as GLib's user data. */
static gboolean qemu_foreach_step(gpointer key, gpointer value, gpointer data)
{
    iova_tree_iterator *iterator = data;
    (void)value;
    return (*iterator)(key);
}

void iova_tree_foreach(IOVATree *tree, iova_tree_iterator iterator)
{
    g_tree_foreach(tree->tree, qemu_foreach_step, &iterator);
}

const DMAMap *iova_tree_next(const IOVATree *tree, hwaddr key, gboolean inclusive)
{
    GTreeNode *node;
    if (inclusive && key == 0) {
        node = g_tree_node_first(tree->tree);
    } else {
        /* upper bound of the single byte below (inclusive) or at (exclusive) @key */
        DMAMap needle = { 0 };
        needle.iova = needle.translated_addr = inclusive ? key - 1 : key;
        node = g_tree_upper_bound(tree->tree, &needle);
    }
    return node ? g_tree_node_key(node) : NULL;
}

/* ---------------------------------------------------------------- sweeps */

/*
 * How many forward steps a sweep takes before it looks the address up instead: GTree keeps no
 * parent links, so a far address cannot be reached by a finger search, and each step may miss
 * the cache.  Measured at 100k maps: 2 costs 1.2x more than 8 on dense batches (10 addresses a
 * map) and 1.8x less on sparse ones (one per 300 maps).
 */
#define SWEEP_MAX_STEPS 2

struct IOVATreeSweep {
    const IOVATree *tree;
    gboolean reverse;
    gboolean started;
    GTreeNode *node;          /* forward: the first map whose last byte is >= the last address */
    IOVAReverseSweep rev;     /* reverse: over the reverse tree, or the id tree */
};

IOVATreeSweep *iova_tree_sweep_new(const IOVATree *tree, gboolean reverse, const uint64_t *id)
{
    if (reverse && tree->by_translated) {
        return NULL;
    }
    IOVATreeSweep *sweep = g_try_new0(IOVATreeSweep, 1);
    if (!sweep) {
        return NULL;
    }
    sweep->tree = tree;
    sweep->reverse = reverse;
    if (reverse) {
        iova_reverse_sweep_init(&sweep->rev, &tree->reverse, &tree->entries, id);
    }
    return sweep;
}

static const DMAMap *sweep_forward(IOVATreeSweep *sweep, hwaddr addr)
{
    const IOVATree *tree = sweep->tree;
    if (!sweep->started) {
        sweep->node = first_reaching(tree, addr);
        sweep->started = TRUE;
    }
    for (int steps = 0; sweep->node; steps++) {
        const DMAMap *m = g_tree_node_key(sweep->node);
        if (key_first(tree, m) + m->size >= addr) {
            return key_first(tree, m) <= addr ? m : NULL;
        }
        sweep->node = steps < SWEEP_MAX_STEPS ? g_tree_node_next(sweep->node)
                                              : first_reaching(tree, addr);
    }
    return NULL; /* every map ends below @addr */
}

const DMAMap *iova_tree_sweep_find(IOVATreeSweep *sweep, hwaddr addr)
{
    if (!sweep->reverse) {
        return sweep_forward(sweep, addr);
    }
    IOVARef ref = iova_reverse_sweep_find(&sweep->rev, addr);
    return ref == IOVA_REF_NONE ? NULL : iova_arena_ptr(&sweep->tree->entries, ref);
}

void iova_tree_sweep_free(IOVATreeSweep *sweep)
{
    g_free(sweep);
}

size_t iova_tree_nnodes(const IOVATree *tree)
{
    return (size_t)g_tree_nnodes(tree->tree);
}

size_t iova_tree_mapped_bytes(const IOVATree *tree)
{
    return iova_arena_mapped(&tree->entries) + iova_arena_mapped(&tree->holes.arena);
}

void iova_tree_clear(IOVATree *tree)
{
    g_tree_destroy(tree->tree);
    tree->tree = new_gtree(tree);
    iova_arena_reset(&tree->entries);
    iova_reverse_init(&tree->reverse);
    if (tree->holes_on) {
        iova_holes_destroy(&tree->holes);
        tree->holes_on = FALSE; /* the next alloc starts them again, from an empty tree */
    }
    if (tree->holes_kept) {
        /* Nothing to walk now; should memory run out, the next alloc builds them instead. */
        holes_build(tree);
    }
}

void iova_tree_destroy(IOVATree *tree)
{
    if (!tree) {
        return;
    }
    g_tree_destroy(tree->tree);
    iova_arena_reset(&tree->entries);
    if (tree->holes_on) {
        iova_holes_destroy(&tree->holes);
    }
    g_free(tree);
}

/* ---------------------------------------------------------------- check() */

/* Walks maps and holes together: between them they must tile 0..HWADDR_MAX exactly. */
typedef struct TileWalk {
    GTreeNode *node;
    hwaddr cursor;   /* first byte not yet accounted for */
    gboolean done;   /* every byte up to HWADDR_MAX accounted for */
    gboolean bad;
    /* the pending ranges (iova-holes.h), free space too, in address order */
    hwaddr pending_first[IOVA_HOLES_PENDING], pending_last[IOVA_HOLES_PENDING];
    size_t npending, next_pending;
} TileWalk;

static void tile_advance(TileWalk *w, hwaddr last)
{
    if (last == HWADDR_MAX) {
        w->done = TRUE;
    } else {
        w->cursor = last + 1;
    }
}

/* Account for the maps and pending ranges that start at the cursor, one after another. */
static void tile_maps(TileWalk *w)
{
    while (!w->done) {
        const DMAMap *m = w->node ? g_tree_node_key(w->node) : NULL;
        if (m && m->iova == w->cursor) {
            tile_advance(w, m->iova + m->size);
            w->node = g_tree_node_next(w->node);
        } else if (w->next_pending < w->npending &&
                   w->pending_first[w->next_pending] == w->cursor) {
            tile_advance(w, w->pending_last[w->next_pending++]);
        } else {
            return;
        }
    }
}

static bool tile_hole(const IOVAHole *hole, void *opaque)
{
    TileWalk *w = opaque;
    tile_maps(w);
    if (w->done || hole->first != w->cursor) {
        w->bad = TRUE;
        return false;
    }
    tile_advance(w, hole->last);
    return true;
}

static int check_forward(const IOVATree *tree, char *err, size_t errlen)
{
    const DMAMap *prev = NULL;
    size_t count = 0;

    for (GTreeNode *node = g_tree_node_first(tree->tree); node; node = g_tree_node_next(node)) {
        const DMAMap *m = g_tree_node_key(node);
        if (g_tree_node_value(node) != (gpointer)m) {
            snprintf(err, errlen, "forward tree: a node's value is not its key");
            return -1;
        }
        if (!dma_map_valid(m)) {
            snprintf(err, errlen, "forward tree: invalid map at key %#" G_GINT64_MODIFIER "x",
                     key_first(tree, m));
            return -1;
        }
        if (prev && key_first(tree, prev) + prev->size >= key_first(tree, m)) {
            snprintf(err, errlen, "forward tree: maps at %#" G_GINT64_MODIFIER "x and %#"
                     G_GINT64_MODIFIER "x overlap or are out of order",
                     key_first(tree, prev), key_first(tree, m));
            return -1;
        }
        if (!tree->by_translated) {
            IOVARef ref = ref_of_map(tree, m);
            if (ref == IOVA_REF_NONE) {
                snprintf(err, errlen, "forward tree: map at IOVA %#" G_GINT64_MODIFIER "x is "
                         "not an entry of the arena", m->iova);
                return -1;
            }
            if (!iova_reverse_contains(&tree->reverse, &tree->entries, ref)) {
                snprintf(err, errlen, "reverse tree: map at IOVA %#" G_GINT64_MODIFIER "x is "
                         "missing", m->iova);
                return -1;
            }
        }
        prev = m;
        count++;
    }
    size_t stored = tree->by_translated ? count : tree->entries.live;
    if (count != stored || count != (size_t)g_tree_nnodes(tree->tree)) {
        snprintf(err, errlen, "forward tree: %zu maps walked, %d in the GTree, %zu allocated",
                 count, g_tree_nnodes(tree->tree), stored);
        return -1;
    }
    return 0;
}

int iova_tree_check(const IOVATree *tree, char *err, size_t errlen)
{
    if (check_forward(tree, err, errlen) < 0) {
        return -1;
    }
    if (tree->by_translated) {
        return 0;
    }
    if (iova_reverse_check(&tree->reverse, &tree->entries, tree->entries.live, err,
                           errlen) < 0) {
        return -1;
    }
    if (!tree->holes_on) {
        return 0; /* no alloc yet: no holes to check */
    }
    if (iova_holes_check(&tree->holes, err, errlen) < 0) {
        return -1;
    }
    TileWalk w = { .node = g_tree_node_first(tree->tree) };
    w.npending = iova_holes_pending_sorted(&tree->holes, w.pending_first, w.pending_last);
    iova_holes_foreach(&tree->holes, tile_hole, &w);
    tile_maps(&w);
    if (w.bad || !w.done || w.node || w.next_pending != w.npending) {
        snprintf(err, errlen, "hole tree: holes are not the exact complement of the maps "
                 "(near %#" G_GINT64_MODIFIER "x)", w.cursor);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- for iova-range.c */

IOVATreeView iova_range_view(const IOVATree *tree)
{
    IOVATreeView view = {
        .gtree = tree->tree,
        .by_translated = tree->by_translated,
        .reverse = tree->by_translated ? NULL : &tree->reverse,
        .arena = tree->by_translated ? NULL : &tree->entries,
    };
    return view;
}
