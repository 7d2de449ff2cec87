/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cffi layer of VhostIOVATree (see vhost-binding.h).
 */
#include "vhost-binding.h"

#include <stddef.h>

#include "iova-binding.h"
#include "iova-guard.h"
#include "vhost-iova-tree.h"

struct IBVhost {
    IBGuard guard;
};
/* ib_fork_set_lock() takes a tree for its guard. */
_Static_assert(offsetof(IBVhost, guard) == 0, "an IBVhost begins with its guard");

size_t ib_vhost_size(void)
{
    return sizeof(IBVhost);
}

int ib_vhost_init(IBVhost *v, uint64_t iova_first, uint64_t iova_last, uint64_t page_size)
{
    if (!ib_memory_room(0)) {
        return IOVA_ERR_OOM;
    }
    VhostIOVATree *tree = vhost_iova_tree_new_page_size(iova_first, iova_last, page_size);
    if (!tree) {
        return IOVA_ERR_OOM;
    }
    ib_guard_init(&v->guard, tree);
    return IOVA_OK;
}

IBVhost *ib_vhost_new(uint64_t iova_first, uint64_t iova_last, uint64_t page_size)
{
    IBVhost *v = ib_memory_room(0) ? g_try_new0(IBVhost, 1) : NULL;
    if (v && ib_vhost_init(v, iova_first, iova_last, page_size) != IOVA_OK) {
        g_free(v);
        v = NULL;
    }
    return v;
}

void ib_vhost_free(IBVhost *v)
{
    if (!v) {
        return;
    }
    vhost_iova_tree_delete(v->guard.object);
    g_mutex_clear(&v->guard.lock);
    g_free(v);
}

void ib_vhost_fork_lock(IBVhost *v)
{
    ib_guard_fork_lock(&v->guard);
}

void ib_vhost_fork_unlock(IBVhost *v)
{
    ib_guard_fork_unlock(&v->guard);
}

int ib_vhost_fork_child(IBVhost *v)
{
    return ib_guard_fork_child(&v->guard);
}

int ib_vhost_close(IBVhost *v)
{
    vhost_iova_tree_delete(ib_guard_close(&v->guard));
    return IOVA_OK;
}

int ib_vhost_closed(IBVhost *v)
{
    if (!ib_guard_enter(&v->guard)) {
        return 1;
    }
    ib_guard_leave(&v->guard, FALSE);
    return 0;
}

int ib_vhost_clear(IBVhost *v)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    vhost_iova_tree_clear(tree);
    ib_guard_leave(&v->guard, TRUE);
    return IOVA_OK;
}

int64_t ib_vhost_len(IBVhost *v)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t n = (int64_t)(iova_tree_nnodes(vhost_iova_tree_host(tree)) +
                          iova_tree_nnodes(vhost_iova_tree_guest(tree)));
    ib_guard_leave(&v->guard, FALSE);
    return n;
}

int64_t ib_vhost_generation(IBVhost *v)
{
    if (!ib_guard_enter(&v->guard)) {
        return IB_CLOSED;
    }
    int64_t g = v->guard.generation;
    ib_guard_leave(&v->guard, FALSE);
    return g;
}

static int vhost_alloc(IBVhost *v, uint64_t size, uint64_t taddr, uint64_t perm, int gpa,
                       uint64_t *out, uint64_t *existing)
{
    /* Python's guest maps carry their GPA as id, host-only maps id 0. */
    DMAMap map = { .size = size, .id = gpa ? taddr : 0, .perm = (IOMMUAccessFlags)perm };
    DMAMap hit = { 0 };
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = perm > IOMMU_RW     ? IOVA_ERR_INVALID
             : !ib_memory_room(0) ? IOVA_ERR_OOM /* two GTree inserts follow */
             : gpa               ? vhost_iova_tree_map_alloc_gpa_existing(tree, &map, taddr, &hit)
                                 : vhost_iova_tree_map_alloc(tree, &map, taddr);
    if (rc == IOVA_OK) {
        ib_map_out(&map, out);
    } else if (rc == IOVA_ERR_OVERLAP && existing) {
        ib_map_out(&hit, existing);
    }
    ib_guard_leave(&v->guard, rc == IOVA_OK);
    return rc;
}

int ib_vhost_map_alloc(IBVhost *v, uint64_t size, uint64_t hva, uint64_t perm, uint64_t *out)
{
    return vhost_alloc(v, size, hva, perm, 0, out, NULL);
}

int ib_vhost_map_alloc_gpa(IBVhost *v, uint64_t size, uint64_t gpa, uint64_t perm,
                           uint64_t *out, uint64_t *existing)
{
    return vhost_alloc(v, size, gpa, perm, 1, out, existing);
}

static int vhost_find(IBVhost *v, uint64_t addr, uint64_t size, int gpa, uint64_t *out)
{
    DMAMap needle = { .translated_addr = addr, .size = size };
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    if (addr + size < addr) {
        ib_guard_leave(&v->guard, FALSE);
        return IOVA_ERR_INVALID;
    }
    const DMAMap *m = gpa ? vhost_iova_tree_find_gpa_any(tree, &needle)
                          : vhost_iova_tree_find_iova_any(tree, &needle);
    if (m) {
        ib_map_out(m, out);
    }
    ib_guard_leave(&v->guard, FALSE);
    return m != NULL;
}

int ib_vhost_find_iova(IBVhost *v, uint64_t hva, uint64_t size, uint64_t *out)
{
    return vhost_find(v, hva, size, 0, out);
}

int ib_vhost_find_gpa(IBVhost *v, uint64_t gpa, uint64_t size, uint64_t *out)
{
    return vhost_find(v, gpa, size, 1, out);
}

static int64_t vhost_remove(IBVhost *v, uint64_t key, uint64_t size, int gpa)
{
    DMAMap range = { .iova = key, .translated_addr = key, .size = size };
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    if (key + size < key) {
        ib_guard_leave(&v->guard, FALSE);
        return IOVA_ERR_INVALID;
    }
    size_t n;
    int rc = vhost_iova_tree_remove_checked(tree, range, gpa, &n);
    ib_guard_leave(&v->guard, n > 0);
    return rc == IOVA_OK ? (int64_t)n : rc;
}

int64_t ib_vhost_remove(IBVhost *v, uint64_t iova, uint64_t size)
{
    return vhost_remove(v, iova, size, 0);
}

int64_t ib_vhost_remove_gpa(IBVhost *v, uint64_t gpa, uint64_t size)
{
    return vhost_remove(v, gpa, size, 1);
}

int ib_vhost_translate(IBVhost *v, uint64_t addr, uint64_t length, int gpa, uint64_t *segs,
                       size_t cap, size_t *nsegs, uint64_t *fault)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = vhost_iova_tree_translate(tree, addr, length, gpa, (IOVASegment *)segs, cap, nsegs,
                                       fault);
    ib_guard_leave(&v->guard, FALSE);
    return rc;
}

static IOVATree *vhost_part(const VhostIOVATree *tree, int which)
{
    return which == IB_VHOST_GUEST         ? vhost_iova_tree_guest(tree)
           : which == IB_VHOST_ALLOCATIONS ? vhost_iova_tree_allocations(tree)
                                           : vhost_iova_tree_host(tree);
}

int64_t ib_vhost_copy(IBVhost *v, int which, int64_t generation, uint64_t key, int inclusive,
                      uint64_t *out, size_t cap)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t n = generation != v->guard.generation
                    ? IB_CHANGED
                    : (int64_t)ib_copy_maps(vhost_part(tree, which), which == IB_VHOST_GUEST,
                                            key, inclusive, out, cap);
    ib_guard_leave(&v->guard, FALSE);
    return n;
}

int64_t ib_vhost_dump(IBVhost *v, int which, uint64_t *out, size_t cap)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int64_t total = ib_dump_maps(vhost_part(tree, which), which == IB_VHOST_GUEST, out, cap);
    ib_guard_leave(&v->guard, FALSE);
    return total;
}

int ib_vhost_check(IBVhost *v, char *err, size_t errlen)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    /* The check indexes the guest maps in a GHashTable: room for it, with a margin. */
    size_t guests = iova_tree_nnodes(vhost_iova_tree_guest(tree));
    int rc = ib_memory_room(guests * 8 * sizeof(void *)) ? vhost_iova_tree_check(tree, err, errlen)
                                                        : IOVA_ERR_OOM;
    ib_guard_leave(&v->guard, FALSE);
    return rc;
}

int ib_vhost_to_iova_many(IBVhost *v, int gpa, const uint64_t *in, size_t n, uint64_t *out,
                          int has_missing, uint64_t missing, size_t *miss)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    int rc = gpa ? ib_batch(vhost_iova_tree_guest(tree), IB_LOOKUP_KEY, TRUE, 0, in, n, out,
                            has_missing, missing, miss)
                 : ib_batch(vhost_iova_tree_host(tree), IB_LOOKUP_REVERSE, FALSE, 0, in, n, out,
                            has_missing, missing, miss);
    ib_guard_leave(&v->guard, FALSE);
    return rc;
}

int ib_vhost_find_key(IBVhost *v, int which, uint64_t key, uint64_t size, uint64_t *out)
{
    VhostIOVATree *tree = ib_guard_enter(&v->guard);
    if (!tree) {
        return IB_CLOSED;
    }
    DMAMap needle = { 0 };
    needle.iova = needle.translated_addr = key;
    needle.size = size;
    const DMAMap *m = key + size < key ? NULL : iova_tree_find(vhost_part(tree, which), &needle);
    if (m) {
        ib_map_out(m, out);
    }
    ib_guard_leave(&v->guard, FALSE);
    return m != NULL;
}

int ib_vhost_copy_into(IBVhost *dst, IBVhost *src)
{
    const VhostIOVATree *from = ib_guard_enter(&src->guard);
    if (!from) {
        return IB_CLOSED;
    }
    /* @dst is a new tree no other thread has seen: taking its lock second cannot deadlock. */
    VhostIOVATree *to = ib_guard_enter(&dst->guard);
    int rc = to ? IOVA_OK : IB_CLOSED;
    for (int which = IB_VHOST_HOST; rc == IOVA_OK && which <= IB_VHOST_ALLOCATIONS; which++) {
        rc = ib_copy_tree(vhost_part(to, which), vhost_part(from, which), which == IB_VHOST_GUEST);
    }
    if (to) {
        ib_guard_leave(&dst->guard, TRUE);
    }
    ib_guard_leave(&src->guard, FALSE);
    return rc;
}
