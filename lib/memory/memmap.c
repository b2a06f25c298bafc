// SPDX-License-Identifier: GPL-2.0-or-later
/* Append-only region table: readers need no lock (signal handlers read it). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "vmras/memmap.h"

struct vmras_memmap {
	pthread_mutex_t add_lock;	/* serialises writers only */
	unsigned int count;		/* published with release */
	struct vmras_region regions[VMRAS_MEMMAP_MAX_REGIONS];
};

int vmras_memmap_new(struct vmras_memmap **out)
{
	struct vmras_memmap *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->add_lock, NULL);
	*out = m;
	return 0;
}

void vmras_memmap_free(struct vmras_memmap *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->add_lock);
	free(m);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int vmras_memmap_add(struct vmras_memmap *m, const struct vmras_region *r)
{
	uintptr_t hva = (uintptr_t)r->hva;
	int err = 0;

	if (!r->size || !r->page_size || (r->page_size & (r->page_size - 1)) ||
	    (r->gpa | r->size | hva) & (r->page_size - 1) ||
	    r->gpa + r->size < r->gpa || hva + r->size < hva)
		return -EINVAL;
	pthread_mutex_lock(&m->add_lock);
	for (unsigned int i = 0; i < m->count; i++) {
		const struct vmras_region *o = &m->regions[i];

		if (overlaps(r->gpa, r->size, o->gpa, o->size) ||
		    overlaps(hva, r->size, (uintptr_t)o->hva, o->size)) {
			err = -EEXIST;
			goto out;
		}
	}
	if (m->count == VMRAS_MEMMAP_MAX_REGIONS) {
		err = -ENOSPC;
		goto out;
	}
	m->regions[m->count] = *r;
	__atomic_store_n(&m->count, m->count + 1, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&m->add_lock);
	return err;
}

const struct vmras_region *vmras_memmap_find_hva(const struct vmras_memmap *m,
						 uintptr_t hva)
{
	unsigned int n = m ? __atomic_load_n(&m->count, __ATOMIC_ACQUIRE) : 0;

	for (unsigned int i = 0; i < n; i++) {
		const struct vmras_region *r = &m->regions[i];

		if (hva - (uintptr_t)r->hva < r->size)
			return r;
	}
	return NULL;
}

const struct vmras_region *vmras_memmap_find_gpa(const struct vmras_memmap *m,
						 uint64_t gpa)
{
	unsigned int n = m ? __atomic_load_n(&m->count, __ATOMIC_ACQUIRE) : 0;

	for (unsigned int i = 0; i < n; i++) {
		const struct vmras_region *r = &m->regions[i];

		if (gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

int vmras_memmap_hva_to_gpa(const struct vmras_memmap *m, uintptr_t hva, uint64_t *gpa)
{
	const struct vmras_region *r = vmras_memmap_find_hva(m, hva);

	if (!r)
		return -ENOENT;
	*gpa = r->gpa + (hva - (uintptr_t)r->hva);
	return 0;
}

int vmras_memmap_gpa_to_hva(const struct vmras_memmap *m, uint64_t gpa, uintptr_t *hva)
{
	const struct vmras_region *r = vmras_memmap_find_gpa(m, gpa);

	if (!r)
		return -ENOENT;
	*hva = (uintptr_t)r->hva + (gpa - r->gpa);
	return 0;
}

unsigned int vmras_memmap_count(const struct vmras_memmap *m)
{
	return __atomic_load_n(&m->count, __ATOMIC_ACQUIRE);
}

const struct vmras_region *vmras_memmap_region(const struct vmras_memmap *m,
					       unsigned int i)
{
	return i < vmras_memmap_count(m) ? &m->regions[i] : NULL;
}
