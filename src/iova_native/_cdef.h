/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What Python sees of csrc/iova-binding.h and csrc/vhost-binding.h (cffi cdef syntax). */
#define IB_CLOSED ...
#define IB_CHANGED ...
#define IB_MAP_WORDS ...
#define IB_NONE ...
#define IB_TOP ...
#define IB_BUSY ...
#define IB_CODE_MIN ...
#define IB_VHOST_HOST ...
#define IB_VHOST_GUEST ...
#define IB_VHOST_ALLOCATIONS ...
#define IOVA_OK ...
#define IOVA_ERR_INVALID ...
#define IOVA_ERR_OVERLAP ...
#define IOVA_ERR_NOMEM ...
#define IOVA_ERR_TRANSLATION ...
#define IOVA_ERR_OOM ...

typedef struct IBTree IBTree;
IBTree *ib_tree_new(int kind);
void ib_tree_free(IBTree *t);
size_t ib_tree_size(void);
int ib_tree_init(IBTree *t, int kind);
int ib_tree_close(IBTree *t);
void ib_tree_fork_lock(IBTree *t);
void ib_tree_fork_unlock(IBTree *t);
int ib_tree_fork_child(IBTree *t);
typedef struct IBForkSet IBForkSet;
IBForkSet *ib_fork_set_new(void);
void ib_fork_set_free(IBForkSet *s);
int ib_fork_set_reserve(IBForkSet *s, size_t more);
void ib_fork_set_lock(IBForkSet *s, void *handle);
void ib_fork_set_release(IBForkSet *s, int child);
void ib_fork_unlock(void *handle);
void ib_fork_set_block(IBForkSet *s);
void ib_fork_set_unblock(IBForkSet *s);
int ib_tree_closed(IBTree *t);
int ib_tree_clear(IBTree *t);
int64_t ib_tree_len(IBTree *t);
int ib_tree_has_holes(IBTree *t);
int64_t ib_tree_generation(IBTree *t);
int ib_tree_insert(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                   uint64_t perm, uint64_t id, uint64_t *existing);
int ib_tree_find(IBTree *t, uint64_t key, uint64_t size, uint64_t *out);
int ib_tree_find_iova(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                      uint64_t *out);
int ib_tree_translate(IBTree *t, uint64_t addr, uint64_t length, int has_id, uint64_t id,
                      uint64_t *segs, size_t cap, size_t *nsegs, uint64_t *fault);
int64_t ib_tree_remove(IBTree *t, uint64_t key, uint64_t size);
int64_t ib_tree_copy(IBTree *t, int64_t generation, uint64_t key, int inclusive, uint64_t *out,
                     size_t cap);
int64_t ib_tree_dump(IBTree *t, uint64_t *out, size_t cap);
int ib_tree_check(IBTree *t, char *err, size_t errlen);
int ib_tree_to_translated_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out,
                               int has_missing, uint64_t missing, size_t *miss);
int ib_tree_to_iova_many(IBTree *t, const uint64_t *in, size_t n, uint64_t *out, int has_id,
                         uint64_t id, int has_missing, uint64_t missing, size_t *miss);
int64_t ib_tree_find_entry_try(IBTree *t, uint64_t key, uint64_t size);
int64_t ib_tree_find_entry_at_try(IBTree *t, uint64_t key);
int64_t ib_tree_find_iova_entry_try(IBTree *t, uint64_t addr, uint64_t size);
int64_t ib_tree_find_iova_entry_at_try(IBTree *t, uint64_t addr);
int64_t ib_tree_find_iova_id_entry_try(IBTree *t, uint64_t addr, uint64_t size, uint64_t id);
int64_t ib_tree_find_map(IBTree *t, int reverse, uint64_t addr, uint64_t size, int has_id,
                         uint64_t id, uint64_t *out);
int64_t ib_tree_find_map_try(IBTree *t, int reverse, uint64_t addr, uint64_t size,
                             int has_id, uint64_t id, uint64_t *out);
int64_t ib_tree_removals_try(IBTree *t);
int ib_tree_insert_map(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                       uint64_t perm, uint64_t id);
int64_t ib_tree_remove_at(IBTree *t, uint64_t key);
int ib_tree_insert_map_try(IBTree *t, uint64_t iova, uint64_t translated_addr, uint64_t size,
                           uint64_t perm, uint64_t id);
int ib_tree_insert_obj_try(IBTree *t, uintptr_t map);
int64_t ib_tree_remove_at_try(IBTree *t, uint64_t key);
int64_t ib_tree_remove_entries(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                               size_t cap);
int64_t ib_tree_remove_entries_try(IBTree *t, uint64_t key, uint64_t size, uint64_t *entries,
                                   size_t cap);
int64_t ib_tree_alloc_key(IBTree *t, uint64_t size, uint64_t translated_addr, uint64_t perm,
                          uint64_t id, uint64_t iova_begin, uint64_t iova_last, uint64_t align,
                          int top_down, uint64_t *top);
int64_t ib_tree_alloc_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                              uint64_t perm, uint64_t id, uint64_t iova_begin,
                              uint64_t iova_last, uint64_t align, int top_down, uint64_t *top);
int64_t ib_tree_alloc_first_key(IBTree *t, uint64_t size, uint64_t translated_addr,
                                uint64_t perm, uint64_t id, uint64_t *top);
int64_t ib_tree_alloc_first_key_try(IBTree *t, uint64_t size, uint64_t translated_addr,
                                    uint64_t perm, uint64_t id, uint64_t *top);
#define IB_TIME_FIND ...
#define IB_TIME_FIND_IOVA ...
#define IB_TIME_FIND_IOVA_ID ...
int64_t ib_time_lookups(IBTree *t, int op, const uint64_t *addrs, const uint64_t *ids,
                        size_t n);
int64_t ib_time_churn(IBTree *t, const uint64_t *maps, size_t n, int64_t *insert_ns);
int64_t ib_time_alloc(IBTree *t, size_t n, uint64_t size, uint64_t translated_addr);
void ib_spin_try(uint64_t ns);
void ib_spin(uint64_t ns);
size_t ib_heap_in_use(void);
size_t ib_tree_mapped_bytes(IBTree *t);
int64_t ib_tree_find_all(IBTree *t, uint64_t key, uint64_t size, uint64_t *out, size_t cap);
int64_t ib_tree_find_iova_all(IBTree *t, uint64_t addr, uint64_t size, int has_id, uint64_t id,
                              uint64_t *out, size_t cap);
int ib_tree_copy_into(IBTree *dst, IBTree *src);

typedef struct IBVhost IBVhost;
/* NULL when @page_size is not a power of two or memory ran out. */
IBVhost *ib_vhost_new(uint64_t iova_first, uint64_t iova_last, uint64_t page_size);
void ib_vhost_free(IBVhost *v);
size_t ib_vhost_size(void);
int ib_vhost_init(IBVhost *v, uint64_t iova_first, uint64_t iova_last, uint64_t page_size);
int ib_vhost_close(IBVhost *v);
void ib_vhost_fork_lock(IBVhost *v);
void ib_vhost_fork_unlock(IBVhost *v);
int ib_vhost_fork_child(IBVhost *v);
int ib_vhost_closed(IBVhost *v);
int ib_vhost_clear(IBVhost *v);
int64_t ib_vhost_len(IBVhost *v);
int64_t ib_vhost_generation(IBVhost *v);
int ib_vhost_map_alloc(IBVhost *v, uint64_t size, uint64_t hva, uint64_t perm, uint64_t *out);
int ib_vhost_map_alloc_gpa(IBVhost *v, uint64_t size, uint64_t gpa, uint64_t perm,
                           uint64_t *out, uint64_t *existing);
int ib_vhost_find_iova(IBVhost *v, uint64_t hva, uint64_t size, uint64_t *out);
int ib_vhost_find_gpa(IBVhost *v, uint64_t gpa, uint64_t size, uint64_t *out);
int64_t ib_vhost_remove(IBVhost *v, uint64_t iova, uint64_t size);
int64_t ib_vhost_remove_gpa(IBVhost *v, uint64_t gpa, uint64_t size);
int ib_vhost_translate(IBVhost *v, uint64_t addr, uint64_t length, int gpa, uint64_t *segs,
                       size_t cap, size_t *nsegs, uint64_t *fault);
int64_t ib_vhost_copy(IBVhost *v, int which, int64_t generation, uint64_t key, int inclusive,
                      uint64_t *out, size_t cap);
int64_t ib_vhost_dump(IBVhost *v, int which, uint64_t *out, size_t cap);
int ib_vhost_check(IBVhost *v, char *err, size_t errlen);
int ib_vhost_to_iova_many(IBVhost *v, int gpa, const uint64_t *in, size_t n, uint64_t *out,
                          int has_missing, uint64_t missing, size_t *miss);
int ib_vhost_find_key(IBVhost *v, int which, uint64_t key, uint64_t size, uint64_t *out);
int ib_vhost_copy_into(IBVhost *dst, IBVhost *src);
