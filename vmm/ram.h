/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guest RAM and its backing: anonymous, shmem (memfd), hugetlb, file. */
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

/* "anon", "shmem", "hugetlb-2m", "hugetlb-1g", "file". */
const char *ram_backend_name(enum ram_backend b);
/* Parse "anon" ... "file:PATH"; *path points into spec for file. */
int ram_backend_parse(const char *spec, enum ram_backend *b, const char **path);

int ram_create(struct guest_ram *ram, enum ram_backend b, const char *path,
	       uint64_t size, struct vmm_error *e);
void ram_destroy(struct guest_ram *ram);

static inline bool ram_contains(const struct guest_ram *ram, uint64_t gpa,
				uint64_t len)
{
	return gpa < ram->size && len <= ram->size - gpa;
}

#endif
