/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a mapping carries besides its pages: NUMA policy and madvise/mlock
 * flags. Replacing a mapping (MAP_FIXED) drops them; these put them back.
 */
#ifndef VMRAS_LIB_VMA_H
#define VMRAS_LIB_VMA_H

#include <stdbool.h>
#include <stdint.h>

#define VR_VMA_MAX_NODES 1024

struct vr_vma_attrs {
	bool have_policy;
	int policy;		/* MPOL_* of the range */
	unsigned long nodes[VR_VMA_MAX_NODES / (8 * sizeof(unsigned long))];
	bool dontfork, dontdump, wipeonfork, locked, mergeable, hugepage, nohugepage;
};

struct vmras;
struct vmras_region;

/*
 * The madvise/mlock flags of the mapping at hva, from /proc/self/smaps:
 * read once when a region is added (smaps walks page tables: too slow for
 * the error path).
 */
int vr_vma_flags_read(uint64_t hva, struct vr_vma_attrs *a);
/* The attributes guest RAM at hva has now: its region's flags, its NUMA policy. */
int vr_vma_attrs_get(struct vmras *v, const struct vmras_region *r, uint64_t hva,
		     struct vr_vma_attrs *a);
/* Apply them to [hva, hva + len); mlock only on fault (no zero fill). */
int vr_vma_attrs_apply(uint64_t hva, uint64_t len, const struct vr_vma_attrs *a);

#endif
