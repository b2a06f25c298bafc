/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The poison registry: every bad range of guest memory, its state and
 * where the report came from. "Is this address poisoned?" is a hash lookup
 * for 4 KiB entries plus a scan of the (few) huge-page entries; duplicates
 * merge, and a larger range absorbs the entries it covers. Thread-safe.
 */
#ifndef VMRAS_REGISTRY_H
#define VMRAS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmras/event.h"

#pragma GCC visibility push(default)

/* State bits: what has happened to a bad range so far. */
#define VMRAS_PS_REPORTED (1u << 0)
#define VMRAS_PS_CONTAINED (1u << 1)	/* no one can read it any more */
#define VMRAS_PS_NOTIFIED (1u << 2)	/* the guest was told */
#define VMRAS_PS_IGNORED (1u << 3)	/* policy ignore */
#define VMRAS_PS_CONTAIN_FAILED (1u << 4)

struct vmras_poison {
	uint64_t gpa, hva, size;
	uint32_t state;		/* VMRAS_PS_* */
	enum vmras_source source;	/* of the first report */
	enum vmras_error_kind kind;	/* AR if any report was AR */
	int vcpu;		/* vCPU of the first AR, else -1 */
	uint32_t reports;	/* how many reports merged into it */
	uint64_t first_ns, last_ns;
	uint64_t fault_flags;	/* KVM_EXIT_MEMORY_FAULT flags of its reports, OR-ed */
};

struct vmras_registry;

int vmras_registry_new(struct vmras_registry **out);
void vmras_registry_free(struct vmras_registry *r);

/*
 * Record a bad range (size a power of two, gpa aligned to it). A report of
 * a range already covered merges into it (*merged = true): reports++,
 * state bits OR-ed, kind upgraded to AR. 0 or -errno.
 */
int vmras_registry_add(struct vmras_registry *r, const struct vmras_poison *p,
		       bool *merged);
/* The entry covering gpa (copied to *out if out), else -ENOENT. */
int vmras_registry_lookup(struct vmras_registry *r, uint64_t gpa, struct vmras_poison *out);
bool vmras_registry_contains(struct vmras_registry *r, uint64_t gpa);
/*
 * Whether any bad range meets [gpa, gpa + len), under one lock; if so and
 * first is not NULL, *first is the lowest bad address in the range.
 */
bool vmras_registry_overlaps(struct vmras_registry *r, uint64_t gpa, uint64_t len,
			     uint64_t *first);
/* OR state bits into the entry covering gpa. */
int vmras_registry_set_state(struct vmras_registry *r, uint64_t gpa, uint32_t bits);
/* Drop every entry (a guest reset gives fresh memory). */
void vmras_registry_clear(struct vmras_registry *r);
size_t vmras_registry_count(struct vmras_registry *r);
/* Copy up to max entries (the copied ones sorted by GPA); returns how many exist. */
size_t vmras_registry_snapshot(struct vmras_registry *r, struct vmras_poison *out,
			       size_t max);

#pragma GCC visibility pop

#endif
