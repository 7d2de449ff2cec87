/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Random calls on one tree, each answer held to a brute-force model (an array of the maps),
 * and iova_tree_check() after every call.  Where check-churn.c crowds a small range, this one
 * goes to the edges the incremental summaries and the hole tree must get right: maps at 0
 * and ending at 2**64-1, sizes up to 2**64-1, translated ranges ending at 2**64-1, ids that
 * differ only in their high bits, many maps aliasing one translated range, removals spanning
 * many maps, allocations with every alignment and both policies, a tree emptied, cleared and
 * refilled.
 *
 * Usage: check-model OPS SEED [holes]   prints "ok <calls>, at most <n> maps" or the first disagreement.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "qemu/iova-tree.h"
#include "random-calls.h"

#ifndef MAX_MAPS
#define MAX_MAPS 48
#endif

/* How many removed maps the model remembers, to insert again: more than the core keeps
 * pending (IOVA_HOLES_PENDING), so that some of them have gone back to the holes. */
#define RECENT 24

typedef struct Model {
    DMAMap maps[MAX_MAPS];
    int n;
    int most; /* the most maps the tree held at once */
    DMAMap recent[RECENT]; /* maps removed lately */
    int nrecent;
    unsigned recent_at;
} Model;

static bool overlaps(hwaddr a, hwaddr a_last, hwaddr b, hwaddr b_last)
{
    return a <= b_last && b <= a_last;
}

/* An address near one of a few bases: 0, 4 GiB, the top, or anywhere. */
static hwaddr pick_addr(uint64_t *rng)
{
    static const hwaddr bases[] = { 0, 1ull << 32, 1ull << 63, 0 - (1ull << 12) };
    uint64_t r = next_random(rng);
    if (r % 8 == 0) {
        return next_random(rng);
    }
    hwaddr base = bases[r / 8 % 4];
    hwaddr off = next_random(rng) % 0x3000;
    return base == (0 - (1ull << 12)) ? HWADDR_MAX - off % 0x1000 : base + off;
}

static hwaddr pick_size(uint64_t *rng, hwaddr start)
{
    uint64_t r = next_random(rng) % 16;
    hwaddr room = HWADDR_MAX - start;
    if (r == 0) {
        return room; /* up to the very top */
    }
    if (r == 1) {
        return next_random(rng) >> (next_random(rng) % 64); /* huge, may wrap */
    }
    hwaddr size = next_random(rng) % 0x400;
    return r == 2 && size > 0 ? size : size & 0xff;
}

static const uint64_t ids[] = { 0, 1, 1ull << 63, (1ull << 63) | 1, UINT64_MAX, 1ull << 32 };

static uint64_t pick_id(uint64_t *rng)
{
    return ids[next_random(rng) % 6];
}

/*
 * The id of a map stored at call @k.  In every other run of 1,500 calls every map stored
 * has the run's one id, and the run starts on an empty tree (main()): the core keeps no id
 * tree while the maps have one id, and the next run's first other id makes it copy the
 * reverse tree, which a run of growing calls has made large.
 */
static bool one_id_run(long k)
{
    return k / 1500 % 2;
}

static uint64_t pick_stored_id(uint64_t *rng, long k)
{
    return one_id_run(k) ? ids[k / 3000 % 6] : pick_id(rng);
}

static int fail(long k, const char *what, unsigned long long a, unsigned long long b)
{
    printf("call %ld: %s: got %#llx, model %#llx\n", k, what, a, b);
    return 1;
}

static const DMAMap *model_lowest(const Model *m, hwaddr first, hwaddr last, bool by_t,
                                  const uint64_t *id)
{
    const DMAMap *best = NULL;
    for (int i = 0; i < m->n; i++) {
        const DMAMap *x = &m->maps[i];
        hwaddr f = by_t ? x->translated_addr : x->iova;
        if (overlaps(f, f + x->size, first, last) && (!id || x->id == *id) &&
            (!best || x->iova < best->iova)) {
            best = x;
        }
    }
    return best;
}

/* First (or last) fit by trying each gap between the maps, sorted by IOVA. */
static bool model_fit(const Model *m, hwaddr size, hwaddr begin, hwaddr last, hwaddr align,
                      bool top, hwaddr *out)
{
    DMAMap sorted[MAX_MAPS];
    int n = m->n;
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && sorted[j - 1].iova > m->maps[i].iova; j--) {
            sorted[j] = sorted[j - 1];
        }
        sorted[j] = m->maps[i];
    }
    bool found = false;
    hwaddr cursor = 0;
    bool open = true;
    for (int i = 0; i <= n && open; i++) {
        hwaddr gap_last;
        if (i < n) {
            if (sorted[i].iova == cursor) {
                open = sorted[i].iova + sorted[i].size < HWADDR_MAX;
                cursor = sorted[i].iova + sorted[i].size + 1;
                continue;
            }
            gap_last = sorted[i].iova - 1;
        } else {
            gap_last = HWADDR_MAX;
        }
        hwaddr lo = cursor > begin ? cursor : begin, hi = gap_last < last ? gap_last : last;
        if (lo <= hi && hi - lo >= size) {
            hwaddr mask = align - 1, cand;
            bool ok;
            if (top) {
                cand = (hi - size) & ~mask;
                ok = cand >= lo;
            } else {
                ok = lo <= HWADDR_MAX - mask;
                cand = (lo + mask) & ~mask;
                ok = ok && cand <= hi && hi - cand >= size;
            }
            if (ok) {
                *out = cand;
                found = true;
                if (!top) {
                    return true;
                }
            }
        }
        if (i < n) {
            open = sorted[i].iova + sorted[i].size < HWADDR_MAX;
            cursor = sorted[i].iova + sorted[i].size + 1;
        }
    }
    return found;
}

static void model_remove(Model *m, hwaddr first, hwaddr last, size_t *count)
{
    *count = 0;
    for (int i = 0; i < m->n;) {
        if (overlaps(m->maps[i].iova, m->maps[i].iova + m->maps[i].size, first, last)) {
            m->recent[m->recent_at++ % RECENT] = m->maps[i];
            m->nrecent += m->nrecent < RECENT;
            m->maps[i] = m->maps[--m->n];
            (*count)++;
        } else {
            i++;
        }
    }
}

/*
 * A map removed lately, to insert again (the core may keep its range pending: iova-holes.h):
 * as it was, or half of it, or reaching a byte past it on either side.
 */
static void pick_recent(const Model *m, uint64_t *rng, DMAMap *map)
{
    *map = m->recent[next_random(rng) % (uint64_t)m->nrecent];
    switch (next_random(rng) % 5) {
    case 0:
        map->size /= 2;
        break;
    case 1:
        map->size += map->iova + map->size < HWADDR_MAX;
        break;
    case 2:
        if (map->iova > 0 && map->size < HWADDR_MAX) {
            map->iova--;
            map->size++;
        }
        break;
    default:
        break;
    }
}

/*
 * While @growing, removals are narrow and the tree is never emptied, so that it grows deep
 * enough for rotations on every level; otherwise one removal in four reaches the top.
 */
static int step(IOVATree *tree, Model *m, uint64_t *rng, long k, bool growing)
{
    uint64_t kind = next_random(rng) % (growing ? 97 : 100);
    DMAMap map = { .perm = IOMMU_RW };

    if (kind < 40) {
        map.iova = growing && kind % 2 ? next_random(rng) : pick_addr(rng);
        map.size = pick_size(rng, map.iova);
        /* Few translated ranges, so that maps alias each other. */
        map.translated_addr = next_random(rng) % 3 == 0 ? pick_addr(rng)
                                                         : (next_random(rng) % 4) * 0x100;
        map.id = pick_stored_id(rng, k);
        if (m->nrecent > 0 && next_random(rng) % 3 == 0) {
            pick_recent(m, rng, &map);
            map.id = one_id_run(k) ? pick_stored_id(rng, k) : map.id;
        }
        int expect = IOVA_OK;
        if (map.iova + map.size < map.iova || map.translated_addr + map.size < map.translated_addr) {
            expect = IOVA_ERR_INVALID;
        } else if (model_lowest(m, map.iova, map.iova + map.size, false, NULL)) {
            expect = IOVA_ERR_OVERLAP;
        } else if (m->n == MAX_MAPS) {
            return 0;
        }
        int rc = iova_tree_insert(tree, &map);
        if (rc != expect) {
            return fail(k, "insert", (unsigned long long)rc, (unsigned long long)expect);
        }
        if (rc == IOVA_OK) {
            m->maps[m->n++] = map;
        } else if (rc == IOVA_ERR_OVERLAP) {
            const DMAMap *hit = iova_tree_find(tree, &map);
            const DMAMap *want = model_lowest(m, map.iova, map.iova + map.size, false, NULL);
            if (!hit || hit->iova != want->iova) {
                return fail(k, "the overlapped map", hit ? hit->iova : 1, want->iova);
            }
        }
    } else if (kind < 60 && (!growing || kind % 2 == 0)) {
        map.iova = pick_addr(rng);
        map.size = growing                   ? next_random(rng) % 0x100
                   : next_random(rng) % 4 == 0 ? HWADDR_MAX - map.iova
                                               : pick_size(rng, map.iova);
        if (map.iova + map.size < map.iova) {
            map.size = HWADDR_MAX - map.iova;
        }
        if (kind % 6 == 0) {
            map.size = 0; /* one byte: the removal's own path (tree_remove_byte()) */
        }
        size_t want, got = iova_tree_remove_count(tree, map);
        model_remove(m, map.iova, map.iova + map.size, &want);
        if (got != want) {
            return fail(k, "remove count", got, want);
        }
    } else if (kind < 80) {
        if (m->n == MAX_MAPS) {
            return 0;
        }
        hwaddr align = 1ull << (next_random(rng) % 64);
        hwaddr begin = next_random(rng) % 2 ? 0 : pick_addr(rng);
        hwaddr last = next_random(rng) % 2 ? HWADDR_MAX : pick_addr(rng);
        bool top = next_random(rng) % 2;
        map.size = next_random(rng) % 8 == 0 ? next_random(rng) >> (next_random(rng) % 64)
                                             : next_random(rng) % 0x1000;
        map.translated_addr = (next_random(rng) % 4) * 0x100;
        if (map.translated_addr + map.size < map.translated_addr) {
            map.translated_addr = 0;
        }
        map.id = pick_stored_id(rng, k);
        hwaddr want = 0;
        bool fits = begin <= last && model_fit(m, map.size, begin, last, align, top, &want);
        int expect = begin > last ? IOVA_ERR_INVALID : fits ? IOVA_OK : IOVA_ERR_NOMEM;
        int rc = iova_tree_alloc_map_full(tree, &map, begin, last, align,
                                          top ? IOVA_ALLOC_LAST : IOVA_ALLOC_FIRST);
        if (rc != expect) {
            return fail(k, "alloc rc", (unsigned long long)rc, (unsigned long long)expect);
        }
        if (rc == IOVA_OK) {
            if (map.iova != want) {
                return fail(k, top ? "alloc last-fit" : "alloc first-fit", map.iova, want);
            }
            m->maps[m->n++] = map;
        }
    } else if (kind < 97) {
        hwaddr first = next_random(rng) % 2 ? pick_addr(rng) : (next_random(rng) % 5) * 0x100;
        map.translated_addr = first;
        map.iova = pick_addr(rng);
        map.size = next_random(rng) % 0x200;
        map.id = pick_id(rng);
        if (first + map.size < first) {
            map.size = HWADDR_MAX - first;
        }
        uint64_t id = map.id;
        const DMAMap *got = iova_tree_find_iova(tree, &map);
        const DMAMap *want = model_lowest(m, first, first + map.size, true, &id);
        if ((got == NULL) != (want == NULL) || (got && got->iova != want->iova)) {
            return fail(k, "find_iova", got ? got->iova : 1, want ? want->iova : 1);
        }
        got = iova_tree_find_iova_any(tree, &map);
        want = model_lowest(m, first, first + map.size, true, NULL);
        if ((got == NULL) != (want == NULL) || (got && got->iova != want->iova)) {
            return fail(k, "find_iova_any", got ? got->iova : 1, want ? want->iova : 1);
        }
        if (map.iova + map.size < map.iova) {
            map.size = HWADDR_MAX - map.iova;
        }
        got = iova_tree_find(tree, &map);
        want = model_lowest(m, map.iova, map.iova + map.size, false, NULL);
        if ((got == NULL) != (want == NULL) || (got && got->iova != want->iova)) {
            return fail(k, "find", got ? got->iova : 1, want ? want->iova : 1);
        }
    } else if (kind < 99) {
        DMAMap all = { .iova = 0, .size = HWADDR_MAX };
        size_t want;
        model_remove(m, 0, HWADDR_MAX, &want);
        if (iova_tree_remove_count(tree, all) != want) {
            return fail(k, "remove all", iova_tree_nnodes(tree), want);
        }
    } else {
        iova_tree_clear(tree);
        m->n = 0;
    }
    if (m->n > m->most) {
        m->most = m->n;
    }
    if (iova_tree_nnodes(tree) != (size_t)m->n) {
        return fail(k, "count", iova_tree_nnodes(tree), (unsigned long long)m->n);
    }
    char err[256];
    if (iova_tree_check(tree, err, sizeof(err)) != 0) {
        printf("call %ld: check: %s\n", k, err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long ops = 0;
    uint64_t rng = 0;
    int status = 0;
    IOVATree *tree = random_calls_setup(argc, argv, "check-model", &ops, &rng, &status);
    static Model model;

    if (!tree) {
        return status;
    }
    for (long k = 0; k < ops; k++) {
        if (one_id_run(k) && !one_id_run(k - 1)) {
            iova_tree_clear(tree);
            model.n = 0;
        }
        if (step(tree, &model, &rng, k, k / 4000 % 2 == 0) != 0) {
            return 1;
        }
    }
    printf("ok %ld, at most %d maps\n", ops, model.most);
    iova_tree_destroy(tree);
    return 0;
}
