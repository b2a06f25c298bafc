/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What each kind of guest RAM backing does about a bad page: make it
 * unreadable for everyone (a poison marker, UFFDIO_POISON: no
 * CAP_SYS_ADMIN), give fresh memory back at a guest reset, read a page
 * back from the backing without touching the mapping (EIO: bad), and tell
 * whether a page is poisoned now. The engine and the split code ask these
 * ops; nothing else switches on the backing type.
 *
 * Called on the engine thread only.
 */
#ifndef VMRAS_LIB_BACKING_H
#define VMRAS_LIB_BACKING_H

#include <stdbool.h>
#include <stdint.h>

struct vmras;
struct vmras_region;

struct vr_backing_ops {
	const char *name;
	/*
	 * Make [gpa, gpa + size) unreadable for everyone. keep_file: only in
	 * this mapping; the file keeps the page (what the kernel does to a
	 * hugetlb page: the injector's stand-in).
	 */
	int (*contain)(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		       uint64_t size, bool keep_file);
	/* Fresh memory for a contained range (guest reset). */
	int (*restore)(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		       uint64_t size);
	/* Read the 4 KiB page at gpa back from the backing: 0, -EIO (bad) or -errno. */
	int (*read_back)(struct vmras *v, const struct vmras_region *r, uint64_t gpa);
	/* Is the page at gpa poisoned now (marker, or the kernel knows)? */
	bool (*poisoned)(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			 uint64_t granule);
	bool can_split;		/* a huge page can become 4 KiB pages */
};

const struct vr_backing_ops *vr_backing(const struct vmras_region *r);

#endif
