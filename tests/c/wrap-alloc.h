/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The allocator of a program linked with -Wl,--wrap=malloc,--wrap=realloc,--wrap=aligned_alloc,
 * --wrap=mmap,--wrap=mprotect: it defines the __wrap_ functions, which our objects' calls
 * reach, and gets memory from the __real_ ones.  How fuzz/oom_remove.c and tests/c/check-oom.c
 * make the core's allocations fail while GLib keeps its own allocator (the arenas map their
 * flat blocks' address space with mmap and make each block memory with mprotect:
 * iova-arena.h).
 */
#ifndef WRAP_ALLOC_H
#define WRAP_ALLOC_H

#include <stddef.h>
#include <sys/types.h>

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_mprotect(void *addr, size_t len, int prot);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_mprotect(void *addr, size_t len, int prot);

#endif /* WRAP_ALLOC_H */
