// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * 4 KiB entries live in an open-addressing hash keyed by page frame (the
 * common case, thousands of them); larger ranges (huge pages) in a short
 * list searched linearly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmras/registry.h"

#define SMALL 4096ULL
#define EMPTY UINT64_MAX

struct vmras_registry {
	pthread_mutex_t lock;
	struct vmras_poison *slots;	/* gpa == EMPTY: free */
	size_t nslots, nsmall;		/* nslots is a power of two */
	struct vmras_poison *large;
	size_t nlarge, large_cap;
};

static size_t hash(uint64_t frame, size_t mask)
{
	frame *= 0x9e3779b97f4a7c15ULL;
	return (size_t)(frame >> 17) & mask;
}

/*
 * Rebuild the hash with room for `want` entries, leaving out the entries
 * inside [skip_gpa, skip_gpa + skip_size). Nothing changes on -ENOMEM.
 */
static int rehash(struct vmras_registry *r, size_t want, uint64_t skip_gpa, uint64_t skip_size)
{
	size_t n = 1024, kept = 0;
	struct vmras_poison *s;

	while (n * 3 < want * 4 + 4)
		n *= 2;
	s = malloc(n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		s[i].gpa = EMPTY;
	for (size_t i = 0; i < r->nslots; i++) {
		size_t h;

		if (r->slots[i].gpa == EMPTY || r->slots[i].gpa - skip_gpa < skip_size)
			continue;
		for (h = hash(r->slots[i].gpa / SMALL, n - 1); s[h].gpa != EMPTY; h = (h + 1) & (n - 1))
			;
		s[h] = r->slots[i];
		kept++;
	}
	free(r->slots);
	r->slots = s;
	r->nslots = n;
	r->nsmall = kept;
	return 0;
}

static int grow(struct vmras_registry *r)
{
	return rehash(r, r->nslots ? r->nslots : 1, 0, 0);
}

int vmras_registry_new(struct vmras_registry **out)
{
	struct vmras_registry *r = calloc(1, sizeof(*r));

	if (!r || rehash(r, 0, 0, 0)) {
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return 0;
}

void vmras_registry_free(struct vmras_registry *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->slots);
	free(r->large);
	free(r);
}

/* With the lock held: the entry covering gpa, or NULL. */
static struct vmras_poison *find(struct vmras_registry *r, uint64_t gpa)
{
	uint64_t page = gpa & ~(SMALL - 1);
	size_t mask = r->nslots - 1;

	for (size_t h = hash(page / SMALL, mask); r->slots[h].gpa != EMPTY; h = (h + 1) & mask)
		if (r->slots[h].gpa == page)
			return &r->slots[h];
	for (size_t i = 0; i < r->nlarge; i++)
		if (gpa - r->large[i].gpa < r->large[i].size)
			return &r->large[i];
	return NULL;
}

static void merge(struct vmras_poison *e, const struct vmras_poison *p)
{
	e->reports += p->reports ? p->reports : 1;
	e->state |= p->state;
	e->fault_flags |= p->fault_flags;
	if (p->kind == VMRAS_AR && e->kind != VMRAS_AR) {
		e->kind = VMRAS_AR;
		e->vcpu = p->vcpu;
	}
	if (p->last_ns > e->last_ns)
		e->last_ns = p->last_ns;
}

int vmras_registry_add(struct vmras_registry *r, const struct vmras_poison *p,
		       bool *merged)
{
	struct vmras_poison *e, n = *p;
	int err = 0;

	if (!p->size || (p->size & (p->size - 1)) || (p->gpa & (p->size - 1)) ||
	    p->gpa == EMPTY)
		return -EINVAL;
	if (!n.reports)
		n.reports = 1;
	if (!n.last_ns)
		n.last_ns = n.first_ns;
	*merged = false;
	pthread_mutex_lock(&r->lock);
	e = find(r, p->gpa);
	if (e && e->size >= p->size) {
		merge(e, &n);
		*merged = true;
		goto out;
	}
	if (p->size == SMALL) {
		size_t mask, h;

		if ((r->nsmall + 1) * 4 > r->nslots * 3 && (err = grow(r)))
			goto out;
		mask = r->nslots - 1;
		for (h = hash(p->gpa / SMALL, mask); r->slots[h].gpa != EMPTY; h = (h + 1) & mask)
			;
		r->slots[h] = n;
		r->nsmall++;
		goto out;
	}
	/* A larger range: it absorbs every smaller entry it covers. */
	for (size_t i = 0; i < r->nslots; i++)
		if (r->slots[i].gpa != EMPTY && r->slots[i].gpa - p->gpa < p->size)
			merge(&n, &r->slots[i]);
	for (size_t i = 0; i < r->nlarge; i++)
		if (r->large[i].gpa - p->gpa < p->size)
			merge(&n, &r->large[i]);
	if (r->nlarge == r->large_cap) {
		size_t cap = r->large_cap ? r->large_cap * 2 : 16;
		struct vmras_poison *l = realloc(r->large, cap * sizeof(*l));

		if (!l) {
			err = -ENOMEM;
			goto out;
		}
		r->large = l;
		r->large_cap = cap;
	}
	err = rehash(r, r->nsmall, p->gpa, p->size);
	if (err)
		goto out;
	{
		size_t k = 0;

		for (size_t i = 0; i < r->nlarge; i++)
			if (r->large[i].gpa - p->gpa >= p->size)
				r->large[k++] = r->large[i];
		r->nlarge = k;
	}
	r->large[r->nlarge++] = n;
out:
	pthread_mutex_unlock(&r->lock);
	return err;
}

int vmras_registry_lookup(struct vmras_registry *r, uint64_t gpa, struct vmras_poison *out)
{
	struct vmras_poison *e;

	pthread_mutex_lock(&r->lock);
	e = find(r, gpa);
	if (e && out)
		*out = *e;
	pthread_mutex_unlock(&r->lock);
	return e ? 0 : -ENOENT;
}

bool vmras_registry_contains(struct vmras_registry *r, uint64_t gpa)
{
	return vmras_registry_lookup(r, gpa, NULL) == 0;
}

bool vmras_registry_overlaps(struct vmras_registry *r, uint64_t gpa, uint64_t len,
			     uint64_t *first)
{
	uint64_t end = gpa + len < gpa ? UINT64_MAX : gpa + len, low = UINT64_MAX;

	if (!len)
		return false;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->nlarge; i++) {
		const struct vmras_poison *e = &r->large[i];

		if (e->gpa < end && gpa < e->gpa + e->size && (e->gpa > gpa ? e->gpa : gpa) < low)
			low = e->gpa > gpa ? e->gpa : gpa;
	}
	/* A range of more pages than the hash has slots: look at every slot. */
	if (r->nsmall && (end - gpa) / SMALL > r->nslots) {
		for (size_t i = 0; i < r->nslots; i++) {
			uint64_t a = r->slots[i].gpa;

			if (a != EMPTY && a + SMALL > gpa && a < end && (a > gpa ? a : gpa) < low)
				low = a > gpa ? a : gpa;
		}
		goto out;
	}
	/* Page by page through the hash (unless it is empty, the usual case). */
	for (uint64_t a = gpa & ~(SMALL - 1); a < end && a < low && r->nsmall; a += SMALL) {
		size_t mask = r->nslots - 1;
		bool hit = false;

		for (size_t h = hash(a / SMALL, mask); r->slots[h].gpa != EMPTY && !hit;
		     h = (h + 1) & mask)
			hit = r->slots[h].gpa == a;
		if (hit)
			low = a > gpa ? a : gpa;
		if (a + SMALL < a)
			break;
	}
out:
	pthread_mutex_unlock(&r->lock);
	if (low != UINT64_MAX && first)
		*first = low;
	return low != UINT64_MAX;
}

int vmras_registry_set_state(struct vmras_registry *r, uint64_t gpa, uint32_t bits)
{
	struct vmras_poison *e;

	pthread_mutex_lock(&r->lock);
	e = find(r, gpa);
	if (e)
		e->state |= bits;
	pthread_mutex_unlock(&r->lock);
	return e ? 0 : -ENOENT;
}

void vmras_registry_clear(struct vmras_registry *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->nslots; i++)
		r->slots[i].gpa = EMPTY;
	r->nsmall = 0;
	r->nlarge = 0;
	pthread_mutex_unlock(&r->lock);
}

size_t vmras_registry_count(struct vmras_registry *r)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = r->nsmall + r->nlarge;
	pthread_mutex_unlock(&r->lock);
	return n;
}

static int by_gpa(const void *a, const void *b)
{
	const struct vmras_poison *x = a, *y = b;

	return (x->gpa > y->gpa) - (x->gpa < y->gpa);
}

size_t vmras_registry_snapshot(struct vmras_registry *r, struct vmras_poison *out,
			       size_t max)
{
	size_t n = 0, total;

	pthread_mutex_lock(&r->lock);
	total = r->nsmall + r->nlarge;
	for (size_t i = 0; i < r->nslots && n < max; i++)
		if (r->slots[i].gpa != EMPTY)
			out[n++] = r->slots[i];
	for (size_t i = 0; i < r->nlarge && n < max; i++)
		out[n++] = r->large[i];
	pthread_mutex_unlock(&r->lock);
	if (n)	/* out may be NULL when max is 0: only counting */
		qsort(out, n, sizeof(*out), by_gpa);
	return total;
}
