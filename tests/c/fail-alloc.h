/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The failing allocator of the out-of-memory programs (check-oom.c, vhost-oom.c), linked with
 * -Wl,--wrap=malloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=mmap,--wrap=mprotect (and
 * --wrap=g_try_malloc where FAIL_ALLOC_GLIB is defined): the @fail_at-th allocation since
 * @allocs was last zeroed fails (with @sticky, every one after it too), and @failed counts
 * the failures.
 */
#ifndef FAIL_ALLOC_H
#define FAIL_ALLOC_H

#include <sys/mman.h>

#include "wrap-alloc.h"

static long allocs;        /* allocations made since the call began */
static long fail_at = -1;  /* the one that fails (-1: none) */
static int sticky;         /* and every one after it */
static long failed;        /* how many failed in this call */

static int should_fail(void)
{
    long k = allocs++;
    if (fail_at >= 0 && (k == fail_at || (sticky && k > fail_at))) {
        failed++;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t size)
{
    return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return should_fail() ? NULL : __real_realloc(p, size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
    return should_fail() ? NULL : __real_aligned_alloc(align, size);
}

/* An arena's probe for its first block, or its growth (refused: aligned_alloc() blocks) */
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return should_fail() ? MAP_FAILED : __real_mmap(addr, len, prot, flags, fd, off);
}

/* ... and the commit of each flat block's pages */
int __wrap_mprotect(void *addr, size_t len, int prot)
{
    return should_fail() ? -1 : __real_mprotect(addr, len, prot);
}

#ifdef FAIL_ALLOC_GLIB
/* GLib's own allocation, which a GPA tree's copy of a map comes from */
gpointer __real_g_try_malloc(gsize size);
gpointer __wrap_g_try_malloc(gsize size);

gpointer __wrap_g_try_malloc(gsize size)
{
    return should_fail() ? NULL : __real_g_try_malloc(size);
}
#endif

#endif /* FAIL_ALLOC_H */
