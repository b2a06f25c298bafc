/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM and its backing: anonymous, shmem (memfd), hugetlb, file, guest_memfd. */
#ifndef VMRAS_VMM_RAM_H
#define VMRAS_VMM_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

enum ram_backend {
	RAM_ANON,
	RAM_SHMEM,
	RAM_HUGETLB_2M,
	RAM_HUGETLB_1G,
	RAM_FILE,
	RAM_GUEST_MEMFD,	/* KVM_CREATE_GUEST_MEMFD, MMAP | INIT_SHARED */
	RAM_BACKEND_COUNT
};

struct guest_ram {
	enum ram_backend backend;
	char *hva;
	uint64_t size;
	uint64_t page_size;	/* backing page size (4 KiB, 2 MiB, 1 GiB) */
	int fd;			/* -1 for anonymous memory */
	bool shared;		/* MAP_SHARED */
};

/* "anon", "shmem", "hugetlb-2m", "hugetlb-1g", "file", "guest-memfd". */
const char *ram_backend_name(enum ram_backend b);
/* Parse "anon" ... "file:PATH"; *path points into spec for file. */
int ram_backend_parse(const char *spec, enum ram_backend *b, const char **path);

/* vm_fd: the VM a guest_memfd belongs to (unused by the other backends). */
int ram_create(struct guest_ram *ram, enum ram_backend b, const char *path,
	       uint64_t size, int vm_fd, struct vmm_error *e);
/* The memslot for the RAM at GPA 0 (KVM_SET_USER_MEMORY_REGION2 for guest_memfd). */
int ram_set_memslot(const struct guest_ram *ram, int vm_fd, uint32_t flags,
		    struct vmm_error *e);
void ram_destroy(struct guest_ram *ram);

static inline bool ram_contains(const struct guest_ram *ram, uint64_t gpa,
				uint64_t len)
{
	return gpa < ram->size && len <= ram->size - gpa;
}

#endif
