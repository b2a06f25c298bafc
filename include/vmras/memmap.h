/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest memory map: the VMM registers its RAM regions; vmras
 * translates host virtual addresses (HVA) and guest physical addresses
 * (GPA) and knows the real page size behind every address.
 *
 * Regions are only ever added, so lookups take no lock and are safe in a
 * signal handler.
 */
#ifndef VMRAS_MEMMAP_H
#define VMRAS_MEMMAP_H

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(default)

#define VMRAS_MEMMAP_MAX_REGIONS 64

enum vmras_backing {
	VMRAS_BACKING_ANON,	/* private anonymous memory */
	VMRAS_BACKING_SHMEM,	/* memfd / tmpfs, shared */
	VMRAS_BACKING_HUGETLB,	/* hugetlbfs or MFD_HUGETLB, shared */
	VMRAS_BACKING_FILE,	/* another file system, shared */
	/*
	 * KVM_CREATE_GUEST_MEMFD (MMAP | INIT_SHARED), bound to the slot with
	 * KVM_MEM_GUEST_MEMFD, mapped MAP_SHARED at hva: fd is the guest_memfd.
	 */
	VMRAS_BACKING_GUEST_MEMFD,
};

struct vmras_region {
	uint64_t gpa;
	uint64_t size;
	void *hva;
	enum vmras_backing backing;
	int fd;			/* backing file, -1 for anonymous memory */
	uint64_t fd_offset;	/* where gpa lies in the file */
	uint64_t page_size;	/* 4 KiB, or the huge page size */
	uint32_t slot;		/* KVM memslot */
	uint32_t flags;		/* VMRAS_REGION_* */
};

/* KVM_MEM_READONLY: guest writes exit as MMIO and are the VMM's (ROM, flash). */
#define VMRAS_REGION_READONLY (1u << 0)

struct vmras_memmap;

int vmras_memmap_new(struct vmras_memmap **out);
void vmras_memmap_free(struct vmras_memmap *m);

/*
 * Add a region. -EINVAL: empty, misaligned to its page size, or wrapping;
 * -EEXIST: overlaps a region in GPA or HVA; -ENOSPC: map full.
 */
int vmras_memmap_add(struct vmras_memmap *m, const struct vmras_region *r);

/* The region holding hva / gpa, or NULL. Async-signal-safe. */
const struct vmras_region *vmras_memmap_find_hva(const struct vmras_memmap *m,
						 uintptr_t hva);
const struct vmras_region *vmras_memmap_find_gpa(const struct vmras_memmap *m,
						 uint64_t gpa);

/* Translations: 0, or -ENOENT when the address is not guest RAM. */
int vmras_memmap_hva_to_gpa(const struct vmras_memmap *m, uintptr_t hva, uint64_t *gpa);
int vmras_memmap_gpa_to_hva(const struct vmras_memmap *m, uint64_t gpa, uintptr_t *hva);

unsigned int vmras_memmap_count(const struct vmras_memmap *m);
const struct vmras_region *vmras_memmap_region(const struct vmras_memmap *m,
					       unsigned int i);

#pragma GCC visibility pop

#endif
