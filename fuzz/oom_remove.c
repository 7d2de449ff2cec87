/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * oom_remove: what remove does when the allocator fails (a reproducer for issue 9's report).
 *
 * Removing a map gives its range back to the tree of holes, which may need one new hole
 * element; when the hole arena is full, that is a malloc() of a new block.  iova-tree.c
 * reserves the element first (tree_unstore) so that a failure changes nothing, but its callers
 * do not pass the failure on:
 *   A. iova_tree_remove() stops at the first failure and returns how many it removed so far,
 *      as if that were all; ib_tree_remove() hands that count to Python as a success.
 *   B. vhost_iova_tree_remove(): vhost_release() ignores the failure, so the map goes but its
 *      allocation stays (check(): "allocation ... is owned by no map"; the IOVA range is lost).
 *   C. vhost_iova_tree_remove() when the host map itself cannot be removed: the loop
 *      `while ((hit = iova_tree_find(...)))` finds the same map again and again: it never ends.
 *
 * Build with malloc wrapped for our objects only (GLib keeps its own malloc):
 *   cc -std=c11 -O1 -g -Icsrc $(pkg-config --cflags glib-2.0) fuzz/oom_remove.c csrc/iova-*.c \
 *      csrc/vhost-*.c -Wl,--wrap=malloc -Wl,--wrap=realloc -Wl,--wrap=aligned_alloc \
 *      -Wl,--wrap=mmap -Wl,--wrap=mprotect \
 *      $(pkg-config --libs glib-2.0) \
 *      -o build/oom_remove && build/oom_remove
 */
#define _POSIX_C_SOURCE 200809L
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "iova-tree.h"
#include "vhost-iova-tree.h"
#include "../tests/c/wrap-alloc.h"

static int fail_mallocs; /* our code's next fail_mallocs allocations return NULL */

void *__wrap_malloc(size_t size)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return NULL;
    }
    return __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return NULL;
    }
    return __real_realloc(p, size);
}

/* The arenas' blocks (iova-arena.c): without this one, no new block would ever fail. */
void *__wrap_aligned_alloc(size_t align, size_t size)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return NULL;
    }
    return __real_aligned_alloc(align, size);
}

/* ... and the commit of an arena's flat block (its mappings themselves never fail here) */
int __wrap_mprotect(void *addr, size_t len, int prot)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return -1;
    }
    return __real_mprotect(addr, len, prot);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return __real_mmap(addr, len, prot, flags, fd, off);
}

#define N 8200 /* enough removals to fill a 4096-element block of holes */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "C. vhost_iova_tree_remove() under OOM: still looping after 5 s "
                              "(an endless loop)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        _exit(3);
    }
    _exit(3);
}

/* Remove every other host map of a VhostIOVATree, failing @fails mallocs in each call. */
static int vhost_remove_under_oom(int fails, const char *label)
{
    char err[256];
    static hwaddr iovas[N];
    int bugs = 0;
    VhostIOVATree *v = vhost_iova_tree_new(0x1000, HWADDR_MAX);

    for (int i = 0; i < N; i++) {
        DMAMap m = { .size = 0xfff, .perm = IOMMU_RW };
        vhost_iova_tree_map_alloc(v, &m, 0x7f0000000000 + (hwaddr)i * 0x1000);
        iovas[i] = m.iova;
    }
    for (int i = 0; i < N; i += 2) {
        DMAMap range = { .iova = iovas[i], .size = 0 };
        size_t before = iova_tree_nnodes(vhost_iova_tree_allocations(v));
        size_t hosts = iova_tree_nnodes(vhost_iova_tree_host(v));
        fail_mallocs = fails;
        alarm(5);
        size_t removed = vhost_iova_tree_remove_count(v, range, FALSE);
        alarm(0);
        fail_mallocs = 0;
        /* A broken state persists: checking now and then (O(n) each) finds it as surely. */
        if ((i % 256 == 0 || i + 2 >= N) && vhost_iova_tree_check(v, err, sizeof(err)) != 0) {
            printf("%s. vhost_iova_tree_remove() under OOM returned %zu; host maps %zu -> %zu, "
                   "allocations %zu -> %zu; check: %s\n", label, removed, hosts,
                   iova_tree_nnodes(vhost_iova_tree_host(v)), before,
                   iova_tree_nnodes(vhost_iova_tree_allocations(v)), err);
            bugs++;
            break;
        }
    }
    vhost_iova_tree_delete(v);
    return bugs;
}

int main(void)
{
    char err[256];
    int bugs = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGALRM, on_alarm);
    /* A: IOVATree.remove of a range that covers 3 maps, when the hole arena is full. */
    IOVATree *tree = iova_tree_new();
    for (hwaddr i = 0; i < 4 * N; i++) {
        DMAMap m = { .iova = i * 0x1000, .size = 0xfff, .perm = IOMMU_RW };
        iova_tree_insert(tree, &m);
    }
    for (hwaddr i = 0; i < 4 * N; i += 4) {
        DMAMap range = { .iova = i * 0x1000, .size = 0x2fff }; /* maps i, i+1, i+2 */
        size_t before = iova_tree_nnodes(tree);
        fail_mallocs = 1 << 30;
        size_t removed = iova_tree_remove_count(tree, range);
        fail_mallocs = 0;
        if (removed != 3 && removed != 0) {
            printf("A. iova_tree_remove() under OOM removed %zu of the 3 maps in its range and "
                   "reported no error (%zu -> %zu maps); check: %s\n", removed, before,
                   iova_tree_nnodes(tree),
                   iova_tree_check(tree, err, sizeof(err)) ? err : "passes");
            bugs++;
            break;
        }
        if (removed == 0) {
            printf("A. (removed nothing under OOM: consistent)\n");
            break;
        }
    }
    iova_tree_destroy(tree);

    /* B: one failed malloc (the allocation tree's); C: every malloc fails. */
    bugs += vhost_remove_under_oom(1, "B");
    bugs += vhost_remove_under_oom(1 << 30, "C");
    printf("%d problem(s) found\n", bugs);
    return bugs ? 1 : 0;
}
