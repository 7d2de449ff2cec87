/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VhostIOVATree: QEMU's three-tree shadow-virtqueue layer, atomic (see vhost-iova-tree.h).
 */
#define _POSIX_C_SOURCE 200809L /* sysconf() */

#include "vhost-iova-tree.h"

#include "iova-map.h"

#include <stdio.h>
#include <unistd.h>

struct VhostIOVATree {
    hwaddr iova_first;
    hwaddr iova_last;
    IOVATree *iova_map;       /* allocations */
    IOVATree *iova_taddr_map; /* IOVA -> HVA, host-only */
    IOVATree *gpa_iova_map;   /* GPA -> IOVA, guest memory */
};

/* The host's page size, as QEMU's qemu_real_host_page_size(); 4096 if the system won't say. */
static uint64_t host_page_size(void)
{
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? (uint64_t)size : 4096;
}

VhostIOVATree *vhost_iova_tree_new(uint64_t iova_first, uint64_t iova_last)
{
    return vhost_iova_tree_new_page_size(iova_first, iova_last, host_page_size());
}

VhostIOVATree *vhost_iova_tree_new_page_size(uint64_t iova_first, uint64_t iova_last,
                                             uint64_t page_size)
{
    if (page_size == 0 || (page_size & (page_size - 1)) != 0) {
        return NULL;
    }
    VhostIOVATree *tree = g_new0(VhostIOVATree, 1);

    tree->iova_first = MAX(iova_first, page_size); /* devices dislike IOVA 0 */
    tree->iova_last = iova_last;
    tree->iova_map = iova_tree_new();
    tree->iova_taddr_map = iova_tree_new();
    tree->gpa_iova_map = gpa_tree_new();
    if (!tree->iova_map || !tree->iova_taddr_map || !tree->gpa_iova_map) {
        vhost_iova_tree_delete(tree);
        return NULL;
    }
    return tree;
}

hwaddr vhost_iova_tree_first(const VhostIOVATree *tree)
{
    return tree->iova_first;
}

void vhost_iova_tree_delete(VhostIOVATree *tree)
{
    if (!tree) {
        return;
    }
    iova_tree_destroy(tree->iova_map);
    iova_tree_destroy(tree->iova_taddr_map);
    iova_tree_destroy(tree->gpa_iova_map);
    g_free(tree);
}

/* Step one of both map_alloc forms: an allocation of @size with @perm, its IOVA in *@iova. */
static int vhost_allocate(VhostIOVATree *tree, hwaddr size, IOMMUAccessFlags perm,
                          hwaddr taddr, hwaddr *iova)
{
    DMAMap alloc = { .size = size, .perm = perm };
    DMAMap probe = { .translated_addr = taddr, .size = size, .perm = perm };

    if (!dma_map_valid(&probe)) {
        return IOVA_ERR_INVALID; /* wraps on the translated side, or IOMMU_NONE */
    }
    /* Rolling this allocation back (vhost_record) must not need memory that may be gone. */
    if (iova_tree_reserve(tree->iova_map, 1) < 0) {
        return IOVA_ERR_OOM;
    }
    int rc = iova_tree_alloc_map(tree->iova_map, &alloc, tree->iova_first, tree->iova_last);
    *iova = alloc.iova;
    return rc;
}

static void vhost_release(VhostIOVATree *tree, hwaddr iova, hwaddr size)
{
    DMAMap range = { .iova = iova, .size = size };
    iova_tree_remove(tree->iova_map, range);
}

/* Step two: record @map in @dest; undo step one when it fails. */
static int vhost_record(VhostIOVATree *tree, IOVATree *dest, DMAMap *map, hwaddr iova,
                        hwaddr taddr)
{
    DMAMap stored = *map;
    stored.iova = iova;
    stored.translated_addr = taddr;

    int rc = dest == tree->gpa_iova_map ? gpa_tree_insert(dest, &stored)
                                        : iova_tree_insert(dest, &stored);
    if (rc != IOVA_OK) {
        vhost_release(tree, iova, map->size);
        return rc;
    }
    *map = stored;
    return IOVA_OK;
}

int vhost_iova_tree_map_alloc(VhostIOVATree *tree, DMAMap *map, hwaddr taddr)
{
    hwaddr iova;
    int rc = vhost_allocate(tree, map->size, map->perm, taddr, &iova);
    return rc != IOVA_OK ? rc : vhost_record(tree, tree->iova_taddr_map, map, iova, taddr);
}

int vhost_iova_tree_map_alloc_gpa_existing(VhostIOVATree *tree, DMAMap *map, hwaddr taddr,
                                           DMAMap *existing)
{
    hwaddr iova;
    int rc = vhost_allocate(tree, map->size, map->perm, taddr, &iova);
    if (rc != IOVA_OK) {
        return rc;
    }
    rc = vhost_record(tree, tree->gpa_iova_map, map, iova, taddr);
    if (rc == IOVA_ERR_OVERLAP && existing) {
        DMAMap needle = { .translated_addr = taddr, .size = map->size };
        *existing = *iova_tree_find(tree->gpa_iova_map, &needle);
    }
    return rc;
}

int vhost_iova_tree_map_alloc_gpa(VhostIOVATree *tree, DMAMap *map, hwaddr taddr)
{
    return vhost_iova_tree_map_alloc_gpa_existing(tree, map, taddr, NULL);
}

const DMAMap *vhost_iova_tree_find_iova(const VhostIOVATree *tree, const DMAMap *map)
{
    return iova_tree_find_iova(tree->iova_taddr_map, map);
}

const DMAMap *vhost_iova_tree_find_iova_any(const VhostIOVATree *tree, const DMAMap *map)
{
    return iova_tree_find_iova_any(tree->iova_taddr_map, map);
}

const DMAMap *vhost_iova_tree_find_gpa(const VhostIOVATree *tree, const DMAMap *map)
{
    return iova_tree_find_iova(tree->gpa_iova_map, map); /* GPA order, id matched */
}

const DMAMap *vhost_iova_tree_find_gpa_any(const VhostIOVATree *tree, const DMAMap *map)
{
    return iova_tree_find(tree->gpa_iova_map, map);
}

/*
 * Remove the maps of @maps overlapping @range (in its own key) with their allocations, all or
 * nothing: the hole elements both trees may need are reserved before anything changes.
 */
static int vhost_remove_from(VhostIOVATree *tree, IOVATree *maps, DMAMap range,
                             size_t *removed)
{
    size_t victims = iova_tree_count(maps, &range);
    const DMAMap *hit;

    *removed = 0;
    if (iova_tree_reserve(maps, victims) < 0 || iova_tree_reserve(tree->iova_map, victims) < 0) {
        return IOVA_ERR_OOM;
    }
    while ((hit = iova_tree_find(maps, &range)) != NULL) {
        DMAMap victim = *hit;
        vhost_release(tree, victim.iova, victim.size);
        iova_tree_remove(maps, victim); /* keyed as @maps is: only the victim overlaps itself */
        (*removed)++;
    }
    return IOVA_OK;
}

int vhost_iova_tree_remove_checked(VhostIOVATree *tree, DMAMap map, gboolean gpa,
                                   size_t *removed)
{
    return vhost_remove_from(tree, gpa ? tree->gpa_iova_map : tree->iova_taddr_map, map,
                             removed);
}

size_t vhost_iova_tree_remove_count(VhostIOVATree *tree, DMAMap map, gboolean gpa)
{
    size_t removed;
    vhost_iova_tree_remove_checked(tree, map, gpa, &removed);
    return removed;
}

void vhost_iova_tree_remove(VhostIOVATree *tree, DMAMap map)
{
    vhost_iova_tree_remove_count(tree, map, FALSE);
}

void vhost_iova_tree_remove_gpa(VhostIOVATree *tree, DMAMap map)
{
    vhost_iova_tree_remove_count(tree, map, TRUE);
}

int vhost_iova_tree_translate(const VhostIOVATree *tree, hwaddr addr, hwaddr length,
                              gboolean gpa, IOVASegment *segs, size_t cap, size_t *nsegs,
                              hwaddr *fault)
{
    return iova_tree_translate(gpa ? tree->gpa_iova_map : tree->iova_taddr_map, addr, length,
                               NULL, segs, cap, nsegs, fault);
}

IOVATree *vhost_iova_tree_host(const VhostIOVATree *tree)
{
    return tree->iova_taddr_map;
}

IOVATree *vhost_iova_tree_guest(const VhostIOVATree *tree)
{
    return tree->gpa_iova_map;
}

IOVATree *vhost_iova_tree_allocations(const VhostIOVATree *tree)
{
    return tree->iova_map;
}

void vhost_iova_tree_clear(VhostIOVATree *tree)
{
    iova_tree_clear(tree->iova_map);
    iova_tree_clear(tree->iova_taddr_map);
    iova_tree_clear(tree->gpa_iova_map);
}

size_t vhost_iova_tree_mapped_bytes(const VhostIOVATree *tree)
{
    return iova_tree_mapped_bytes(tree->iova_map) + iova_tree_mapped_bytes(tree->iova_taddr_map) +
           iova_tree_mapped_bytes(tree->gpa_iova_map);
}

/* ---------------------------------------------------------------- check() */

typedef struct PairCheck {
    const VhostIOVATree *tree;
    GHashTable *guest_by_iova; /* IOVA -> guest map */
    char *err;
    size_t errlen;
    gboolean bad;
} PairCheck;

static gboolean index_guest(const DMAMap *map, gpointer opaque)
{
    PairCheck *c = opaque;
    if (g_hash_table_contains(c->guest_by_iova, &map->iova)) {
        snprintf(c->err, c->errlen, "two guest maps share IOVA %#" G_GINT64_MODIFIER "x",
                 map->iova);
        c->bad = TRUE;
        return TRUE;
    }
    g_hash_table_insert(c->guest_by_iova, (gpointer)&map->iova, (gpointer)map);
    return FALSE;
}

static gboolean same_range(const DMAMap *a, const DMAMap *b)
{
    return a && b && a->iova == b->iova && a->size == b->size && a->perm == b->perm;
}

/* Every allocation is owned by exactly one host or guest map of the same range. */
static gboolean check_allocation(const DMAMap *alloc, gpointer opaque)
{
    PairCheck *c = opaque;
    const DMAMap *host = iova_tree_find(c->tree->iova_taddr_map, alloc);
    const DMAMap *guest = g_hash_table_lookup(c->guest_by_iova, &alloc->iova);
    gboolean owned_by_host = same_range(alloc, host);
    gboolean owned_by_guest = same_range(alloc, guest);

    if (alloc->iova < c->tree->iova_first || alloc->iova + alloc->size > c->tree->iova_last) {
        snprintf(c->err, c->errlen, "allocation at %#" G_GINT64_MODIFIER "x is out of bounds",
                 alloc->iova);
        c->bad = TRUE;
    } else if (owned_by_host == owned_by_guest) {
        snprintf(c->err, c->errlen, "allocation at %#" G_GINT64_MODIFIER "x is owned by %s",
                 alloc->iova, owned_by_host ? "two maps" : "no map");
        c->bad = TRUE;
    }
    return c->bad;
}

int vhost_iova_tree_check(const VhostIOVATree *tree, char *err, size_t errlen)
{
    if (iova_tree_check(tree->iova_map, err, errlen) < 0 ||
        iova_tree_check(tree->iova_taddr_map, err, errlen) < 0 ||
        iova_tree_check(tree->gpa_iova_map, err, errlen) < 0) {
        return -1;
    }
    size_t nalloc = iova_tree_nnodes(tree->iova_map);
    size_t nmaps = iova_tree_nnodes(tree->iova_taddr_map) + iova_tree_nnodes(tree->gpa_iova_map);
    if (nalloc != nmaps) {
        snprintf(err, errlen, "%zu allocations for %zu maps", nalloc, nmaps);
        return -1;
    }
    PairCheck c = { tree, g_hash_table_new(g_int64_hash, g_int64_equal), err, errlen, FALSE };
    iova_tree_foreach_opaque(tree->gpa_iova_map, index_guest, &c);
    if (!c.bad) {
        iova_tree_foreach_opaque(tree->iova_map, check_allocation, &c);
    }
    g_hash_table_destroy(c.guest_by_iova);
    return c.bad ? -1 : 0;
}
