/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * viommu-replay: a caller that uses the IOVA tree the way QEMU's emulated IOMMUs do.
 *
 * An emulated vIOMMU (intel_iommu's page walk, amd_iommu's notifier) keeps, per address
 * space, an IOVA tree of what it last told the device (VFIO) about.  When it walks the guest's
 * page tables again it builds a DMAMap "target" for each entry with a designated initializer
 * (so id is 0), looks the IOVA up with iova_tree_find(), and compares the record with the
 * target by memcmp() over sizeof(DMAMap):
 *   - MAP, recorded and equal:   nothing to tell the device;
 *   - MAP, recorded and unequal: the translation changed: unmap the old one, map the new one;
 *   - MAP, not recorded:         map it;
 *   - UNMAP, recorded:           unmap the whole recorded range (a large page may be cleared
 *                                with a smaller mask), and forget it;
 *   - UNMAP, not recorded:       nothing.
 * If the library kept anything of its own inside the stored DMAMap, memcmp() would never
 * see equal maps as equal, and every replay would send spurious unmap+map pairs.
 *
 * The program simulates a guest page table, replays it several times with changes in between,
 * and prints how many notifications each replay sent; it exits non-zero when an unchanged
 * replay sends any.  The test runs it on the project's tree and on QEMU's: same output.
 */
#if __has_include("qemu/osdep.h") /* QEMU's (or the shim's): first, as QEMU's rule says */
#include "qemu/osdep.h"
#else
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#endif
#include "qemu/iova-tree.h"
#include "xorshift.h"

#define ENTRIES 2048
#define PAGE UINT64_C(0x1000)

typedef struct Pte {
    bool present;
    hwaddr translated_addr;
    hwaddr mask;            /* inclusive size: PAGE - 1, or a 2 MiB large page */
    IOMMUAccessFlags perm;
} Pte;

typedef struct Stats {
    unsigned long maps, unmaps, skipped, changed;
} Stats;

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static hwaddr iova_of(int i)
{
    return UINT64_C(0x40000000) + (hwaddr)i * 0x200000; /* a 2 MiB slot per entry */
}

/* One entry of the walk: the record-keeping the vIOMMU does before it notifies VFIO. */
static void notify_entry(IOVATree *record, int i, const Pte *pte, Stats *st)
{
    DMAMap target = {
        .iova = iova_of(i),
        .translated_addr = pte->translated_addr,
        .size = pte->mask,
        .perm = pte->present ? pte->perm : IOMMU_NONE,
    };
    const DMAMap *mapped = iova_tree_find(record, &target);

    if (!pte->present) {
        if (!mapped) {
            return;
        }
        target.size = mapped->size; /* unmap what was mapped, whatever mask the walk saw */
        iova_tree_remove(record, target);
        st->unmaps++;
        return;
    }
    if (mapped) {
        if (memcmp(mapped, &target, sizeof(target)) == 0) {
            st->skipped++;
            return;
        }
        /* The translation changed under the same IOVA: emulate an UNMAP first. */
        DMAMap old = *mapped;
        iova_tree_remove(record, old);
        st->unmaps++;
        st->changed++;
    }
    if (iova_tree_insert(record, &target) != IOVA_OK) {
        printf("entry %d: insert failed\n", i);
        exit(1);
    }
    st->maps++;
}

static Stats replay(IOVATree *record, const Pte *table)
{
    Stats st = { 0, 0, 0, 0 };
    for (int i = 0; i < ENTRIES; i++) {
        notify_entry(record, i, &table[i], &st);
    }
    return st;
}

static void report(const char *what, Stats st)
{
    printf("%-22s maps %5lu unmaps %5lu skipped %5lu changed %5lu\n", what, st.maps, st.unmaps,
           st.skipped, st.changed);
}

int main(void)
{
    static Pte table[ENTRIES];
    IOVATree *record = iova_tree_new();
    Stats st;

    for (int i = 0; i < ENTRIES; i++) {
        table[i].present = next_random(&rng_state) % 4 != 0;
        table[i].translated_addr = (next_random(&rng_state) % 0x100000) * PAGE;
        table[i].mask = next_random(&rng_state) % 8 == 0 ? 0x1fffff : PAGE - 1;
        table[i].perm = (IOMMUAccessFlags)(1 + next_random(&rng_state) % 3);
    }
    report("first walk", replay(record, table));
    st = replay(record, table);
    report("unchanged walk", st);
    if (st.maps || st.unmaps || st.skipped == 0) {
        printf("an unchanged walk must tell the device nothing\n");
        return 1;
    }
    /* The guest changes some entries: new permissions, new frames, pages unmapped and mapped. */
    static Pte before[ENTRIES];
    memcpy(before, table, sizeof(table));
    for (int i = 0; i < ENTRIES; i += 7) {
        table[i].perm = table[i].perm == IOMMU_RW ? IOMMU_RO : IOMMU_RW;
    }
    for (int i = 3; i < ENTRIES; i += 11) {
        table[i].translated_addr += PAGE;
    }
    for (int i = 5; i < ENTRIES; i += 13) {
        table[i].present = !table[i].present;
    }
    unsigned long expected_changes = 0;
    for (int i = 0; i < ENTRIES; i++) {
        expected_changes += before[i].present && table[i].present &&
                            (before[i].perm != table[i].perm ||
                             before[i].translated_addr != table[i].translated_addr);
    }
    st = replay(record, table);
    report("changed walk", st);
    if (st.changed != expected_changes) {
        printf("%lu changed translations seen, %lu expected\n", st.changed, expected_changes);
        return 1;
    }
    st = replay(record, table);
    report("unchanged walk again", st);
    if (st.maps || st.unmaps) {
        printf("an unchanged walk must tell the device nothing\n");
        return 1;
    }
    /* Large pages cleared with a small mask are unmapped whole. */
    for (int i = 0; i < ENTRIES; i++) {
        table[i].mask = PAGE - 1;
        table[i].present = false;
    }
    report("everything unmapped", replay(record, table));
    DMAMap everything = { .iova = 0, .size = HWADDR_MAX };
    if (iova_tree_find(record, &everything) != NULL) {
        printf("the record is not empty\n");
        return 1;
    }
    iova_tree_destroy(record);
    return 0;
}
