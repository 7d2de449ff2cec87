/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cffi layer of VhostIOVATree: as iova-binding.h, one lock, a closed flag and a change
 * counter around the C object, answers written into caller buffers.
 */
#ifndef VHOST_BINDING_H
#define VHOST_BINDING_H

#include <stddef.h>
#include <stdint.h>

typedef struct IBVhost IBVhost;

/* Which of the three trees a listing reads. */
#define IB_VHOST_HOST 0
#define IB_VHOST_GUEST 1
#define IB_VHOST_ALLOCATIONS 2

/* NULL when @page_size is not a power of two or memory ran out. */
IBVhost *ib_vhost_new(uint64_t iova_first, uint64_t iova_last, uint64_t page_size);
void ib_vhost_free(IBVhost *v);
/* In memory of the caller's, as ib_tree_init() (iova-binding.h); IOVA_ERR_OOM as NULL above. */
size_t ib_vhost_size(void);
int ib_vhost_init(IBVhost *v, uint64_t iova_first, uint64_t iova_last, uint64_t page_size);
int ib_vhost_close(IBVhost *v);
/* fork() support, as ib_tree_fork_lock() and the rest in iova-binding.h. */
void ib_vhost_fork_lock(IBVhost *v);
void ib_vhost_fork_unlock(IBVhost *v);
int ib_vhost_fork_child(IBVhost *v);
int ib_vhost_closed(IBVhost *v);
int ib_vhost_clear(IBVhost *v);
/* Host-only plus guest maps, or IB_CLOSED. */
int64_t ib_vhost_len(IBVhost *v);
int64_t ib_vhost_generation(IBVhost *v);
/* IOVA_OK with the stored map in @out, or an IOVA_ERR_* code (@existing on a GPA overlap). */
int ib_vhost_map_alloc(IBVhost *v, uint64_t size, uint64_t hva, uint64_t perm, uint64_t *out);
int ib_vhost_map_alloc_gpa(IBVhost *v, uint64_t size, uint64_t gpa, uint64_t perm,
                           uint64_t *out, uint64_t *existing);
/* 1 with the map in @out, 0 when none. */
int ib_vhost_find_iova(IBVhost *v, uint64_t hva, uint64_t size, uint64_t *out);
int ib_vhost_find_gpa(IBVhost *v, uint64_t gpa, uint64_t size, uint64_t *out);
/* How many maps were removed (with their allocations), or IB_CLOSED. */
int64_t ib_vhost_remove(IBVhost *v, uint64_t iova, uint64_t size);
int64_t ib_vhost_remove_gpa(IBVhost *v, uint64_t gpa, uint64_t size);
/* As ib_tree_translate(); through the GPA tree when @gpa. */
int ib_vhost_translate(IBVhost *v, uint64_t addr, uint64_t length, int gpa, uint64_t *segs,
                       size_t cap, size_t *nsegs, uint64_t *fault);
/* As ib_tree_copy(), on the tree @which (IB_VHOST_*). */
int64_t ib_vhost_copy(IBVhost *v, int which, int64_t generation, uint64_t key, int inclusive,
                      uint64_t *out, size_t cap);
/* As ib_tree_dump(), on the tree @which (IB_VHOST_*). */
int64_t ib_vhost_dump(IBVhost *v, int which, uint64_t *out, size_t cap);
/* 0, -1 with a message in @err, IOVA_ERR_OOM, or IB_CLOSED. */
int ib_vhost_check(IBVhost *v, char *err, size_t errlen);
/* Batch HVA -> IOVA (host-only tree) or, when @gpa, GPA -> IOVA. */
int ib_vhost_to_iova_many(IBVhost *v, int gpa, const uint64_t *in, size_t n, uint64_t *out,
                          int has_missing, uint64_t missing, size_t *miss);

/* As ib_tree_find() on the tree @which (IB_VHOST_*), by that tree's own key. */
int ib_vhost_find_key(IBVhost *v, int which, uint64_t key, uint64_t size, uint64_t *out);

/* As ib_tree_copy_into(): every allocation, host-only and guest map of @src into @dst, a new
 * empty VhostIOVATree with the same IOVA range. */
int ib_vhost_copy_into(IBVhost *dst, IBVhost *src);

#endif /* VHOST_BINDING_H */
