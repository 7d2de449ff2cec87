/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lockbench: what the per-tree GMutex of the binding layer (csrc/iova-guard.h) costs.
 *
 * Python cannot time a find() without the lock, so this does it in C, on the same sources:
 *   1. an uncontended g_mutex_lock()/g_mutex_unlock() pair;
 *   2. iova_tree_find() on a tree of N maps, bare (no lock, no copy-out);
 *   3. ib_tree_find(), what Python calls: lock, closed check, find, copy the map out, unlock;
 *   4. ib_tree_find() from 2 threads on one tree (the lock contended), and on two trees.
 *
 * Build and run (scripts/fuzz.sh --lockbench does both):
 *   cc -std=c11 -O2 -Icsrc $(pkg-config --cflags glib-2.0) fuzz/lockbench.c csrc/iova-*.c \
 *      csrc/vhost-*.c $(pkg-config --libs glib-2.0) -o build/lockbench && build/lockbench
 */
#define _POSIX_C_SOURCE 200809L

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "iova-binding.h"
#include "iova-tree.h"

#define NMAPS 1000
#define NKEYS 4096 /* a power of two */

static uint64_t keys[NKEYS];

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Keys hit a map 7 times in 8, the rest fall in the holes between maps. */
static void make_keys(void)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < NKEYS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        keys[i] = (x % NMAPS) * 0x2000 + ((x >> 32) % 0x2000);
    }
}

static void fill(IOVATree *tree, IBTree *t)
{
    for (uint64_t i = 0; i < NMAPS; i++) {
        DMAMap m = { i * 0x2000, 0x100000000u + i * 0x2000, 0x1bff, 0, IOMMU_RW };
        if (tree && iova_tree_insert(tree, &m) != IOVA_OK) {
            abort();
        }
        uint64_t existing[IB_MAP_WORDS];
        if (t && ib_tree_insert(t, m.iova, m.translated_addr, m.size, m.perm, m.id,
                                existing) != IOVA_OK) {
            abort();
        }
    }
}

static volatile uint64_t sink;

static double bench_bare(IOVATree *tree, long n)
{
    uint64_t acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        DMAMap needle = { .iova = keys[i & (NKEYS - 1)] };
        const DMAMap *m = iova_tree_find(tree, &needle);
        acc += m ? m->translated_addr : 0;
    }
    double dt = now_ns() - t0;
    sink = acc;
    return dt / (double)n;
}

static double bench_bound(IBTree *t, long n)
{
    uint64_t out[IB_MAP_WORDS], acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        acc += (uint64_t)ib_tree_find(t, keys[i & (NKEYS - 1)], 0, out);
    }
    double dt = now_ns() - t0;
    sink = acc;
    return dt / (double)n;
}

typedef struct Worker {
    IBTree *tree;
    long n;
    double ns_per_op;
} Worker;

static gpointer worker(gpointer opaque)
{
    Worker *w = opaque;
    w->ns_per_op = bench_bound(w->tree, w->n);
    return NULL;
}

/* Two threads, each @n finds; returns the mean ns per find each thread saw. */
static double bench_two(IBTree *a, IBTree *b, long n)
{
    Worker w[2] = { { a, n, 0 }, { b, n, 0 } };
    GThread *th[2];
    for (int i = 0; i < 2; i++) {
        th[i] = g_thread_new("bench", worker, &w[i]);
    }
    for (int i = 0; i < 2; i++) {
        g_thread_join(th[i]);
    }
    return (w[0].ns_per_op + w[1].ns_per_op) / 2;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    GMutex lock;
    g_mutex_init(&lock);
    make_keys();

    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        g_mutex_lock(&lock);
        g_mutex_unlock(&lock);
    }
    double pair = (now_ns() - t0) / (double)n;

    IOVATree *bare = iova_tree_new();
    IBTree *bound = ib_tree_new(0), *other = ib_tree_new(0);
    fill(bare, NULL);
    fill(NULL, bound);
    fill(NULL, other);
    bench_bare(bare, n / 10); /* warm up */
    double ns_bare = bench_bare(bare, n);
    double ns_bound = bench_bound(bound, n);
    double ns_contended = bench_two(bound, bound, n);
    double ns_parallel = bench_two(bound, other, n);

    printf("lockbench: %ld iterations each, tree of %d maps\n", n, NMAPS);
    printf("  g_mutex lock+unlock pair, uncontended   %7.1f ns\n", pair);
    printf("  iova_tree_find, bare (no lock)          %7.1f ns\n", ns_bare);
    printf("  ib_tree_find (lock, find, copy out)     %7.1f ns  (+%.1f ns, +%.0f%%)\n", ns_bound,
           ns_bound - ns_bare, 100.0 * (ns_bound - ns_bare) / ns_bare);
    printf("  ib_tree_find, 2 threads, one tree       %7.1f ns per find per thread\n",
           ns_contended);
    printf("  ib_tree_find, 2 threads, two trees      %7.1f ns per find per thread\n",
           ns_parallel);
    ib_tree_free(bound);
    ib_tree_free(other);
    iova_tree_destroy(bare);
    g_mutex_clear(&lock);
    return 0;
}
