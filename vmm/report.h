/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the test guest has reported, per vCPU and in total: decoded from
 * struct gl_msg (guest/layout.h). Pure: no I/O, no locking (the VMM holds
 * its lock around these calls).
 */
#ifndef VMRAS_VMM_REPORT_H
#define VMRAS_VMM_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/layout.h"

#define REPORT_MAX_ITEMS 256	/* per list; beyond that only counted */

struct report_corruption {
	uint32_t vcpu, pass;
	uint64_t gpa, offset, want, got;
};

struct report_mce {
	uint32_t vcpu, bank;
	uint64_t status, addr, misc, mcg_status, rip;
	bool polled;		/* found by polling the banks (GL_MSG_POLLED), no #MC */
};

/* The guest's CPUID as it read it (GL_MSG_CPUID). */
struct report_cpuid {
	bool valid;
	char vendor[13];
	uint32_t max_leaf, signature, max_ext_leaf, ext_80000007_ebx;
};

struct report_range {
	uint32_t vcpu;
	uint64_t gpa, size;
};

struct report_vcpu {
	bool started, done;
	bool unrecoverable;	/* #MC without RIPV */
	bool exception;		/* an unexpected exception stopped it */
	uint64_t exc_vector, exc_rip;
	uint64_t slice_start, slice_end, pages;
	uint32_t passes;	/* completed */
	uint64_t verified, corrupted, skipped;
	uint64_t machine_checks, retired;
	uint64_t polled;	/* errors found by polling the banks */
	struct report_cpuid cpuid;
};

struct guest_report {
	unsigned int nr_vcpus;
	struct report_vcpu vcpu[GL_MAX_VCPUS];
	unsigned int ncorrupt, nmce, nretired;
	uint64_t corrupt_total, mce_total, retired_total, retired_bytes;
	uint64_t polled_total;	/* GL_MSG_POLLED (not in mce_total) */
	struct report_corruption corrupt[REPORT_MAX_ITEMS];
	struct report_mce mce[REPORT_MAX_ITEMS];	/* #MC and polled, in order */
	struct report_range retired[REPORT_MAX_ITEMS];
	uint64_t bad_messages;	/* malformed messages from the guest */
};

void report_init(struct guest_report *r, unsigned int nr_vcpus);

/*
 * Apply one message that arrived from vCPU `from`. Returns 0, or -EINVAL
 * for a message that is malformed (unknown type, wrong vCPU): counted in
 * bad_messages and otherwise ignored.
 */
int report_apply(struct guest_report *r, unsigned int from, const struct gl_msg *m);

/* A GL_MSG_CPUID message's contents. */
void report_cpuid_decode(const struct gl_msg *m, struct report_cpuid *c);
/* CPUID leaf 1 EAX: display family and model (extended fields folded in), stepping. */
void report_cpu_model(uint32_t signature, uint32_t *family, uint32_t *model, uint32_t *stepping);

/* "started", "pass-done", ...; "unknown" for others. */
const char *report_msg_name(uint32_t type);

/* Every vCPU finished its passes with nothing corrupted and no failure. */
bool report_passed(const struct guest_report *r);
/* Something failed already (corruption, exception, unrecoverable #MC). */
bool report_failed(const struct guest_report *r);
bool report_all_done(const struct guest_report *r);

/*
 * The report as bytes, for migration (little-endian, fixed layout):
 * report_save returns the size written (buf NULL: the size needed);
 * report_load checks everything (counts, vCPU count, bools, the CPU
 * vendors' characters) before it writes *r: -EPROTO for bytes that are not
 * a report of nr_vcpus vCPUs.
 */
size_t report_save(const struct guest_report *r, void *buf);
int report_load(struct guest_report *r, unsigned int nr_vcpus, const void *buf, size_t len);

#endif
