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

/* The attributes of the mapping at hva (from /proc/self/smaps and get_mempolicy). */
int vr_vma_attrs_get(uint64_t hva, struct vr_vma_attrs *a);
/* Apply them to [hva, hva + len); mlock only on fault (no zero fill). */
int vr_vma_attrs_apply(uint64_t hva, uint64_t len, const struct vr_vma_attrs *a);

#endif
