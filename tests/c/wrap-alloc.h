/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The allocator of a program linked with -Wl,--wrap=malloc,--wrap=realloc,--wrap=aligned_alloc:
 * it defines the __wrap_ functions, which our objects' calls reach, and gets memory from the
 * __real_ ones.  How fuzz/oom_remove.c and tests/c/check-oom.c make the core's allocations
 * fail while GLib keeps its own allocator.
 */
#ifndef WRAP_ALLOC_H
#define WRAP_ALLOC_H

#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);

#endif /* WRAP_ALLOC_H */
