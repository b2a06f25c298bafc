/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One event type for every source of a memory error, and the record of
 * what vmras did about it (a MEMORY_FAILURE, in QEMU's words).
 */
#ifndef VMRAS_EVENT_H
#define VMRAS_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(default)

enum vmras_error_kind {
	VMRAS_AO,	/* action optional: found, not consumed */
	VMRAS_AR,	/* action required: consumed by an access */
};

enum vmras_source {
	VMRAS_SRC_SIGBUS,	/* the kernel's (or the injector's) SIGBUS */
	VMRAS_SRC_MEMORY_FAULT,	/* KVM_RUN -EFAULT/-EHWPOISON, KVM_EXIT_MEMORY_FAULT */
	VMRAS_SRC_RAM_MMIO,	/* emulating host: MMIO exit inside RAM */
	VMRAS_SRC_INJECT,	/* reserved: an injection reported without a signal */
	VMRAS_SRC_MIGRATION,	/* reserved: a poisoned page arrived by migration */
	VMRAS_SRC_MC_COPY,	/* machine-check-safe copy hit poison */
	VMRAS_SRC_SALVAGE,	/* reading a split huge page's data back failed (EIO) */
	VMRAS_SRC_ARM_SEA,	/* arm64 KVM_EXIT_ARM_SEA: an abort KVM could not place */
	VMRAS_SRC_COUNT
};

#define VMRAS_EV_HVA (1u << 0)
#define VMRAS_EV_GPA (1u << 1)
#define VMRAS_EV_VCPU (1u << 2)
#define VMRAS_EV_FAULT_FLAGS (1u << 3)
#define VMRAS_EV_ESR (1u << 4)
#define VMRAS_EV_GVA (1u << 5)

struct vmras_event {
	uint32_t valid;		/* VMRAS_EV_*: which fields below are set */
	enum vmras_error_kind kind;
	enum vmras_source source;
	int si_code;		/* for SIGBUS */
	unsigned int addr_lsb;	/* what the reporter said was lost: 1 << lsb */
	int vcpu;
	int32_t tid;		/* thread that received it */
	uint64_t hva, gpa;
	uint64_t time_ns;	/* CLOCK_REALTIME */
	uint64_t seq;		/* arrival order, one counter for every source */
	/* KVM_EXIT_MEMORY_FAULT's flags: KVM_MEMORY_EXIT_FLAG_PRIVATE (bit 3) */
	uint64_t fault_flags;
	/* arm64 KVM_EXIT_ARM_SEA: the abort's syndrome (ESR_EL2) and virtual address */
	uint64_t esr, gva;
};

/* The access was to private (guest_memfd, encrypted) memory. */
#define VMRAS_FAULT_PRIVATE (1ULL << 3)

enum vmras_recipient {
	VMRAS_RECIPIENT_HYPERVISOR,
	VMRAS_RECIPIENT_GUEST,
};

enum vmras_action {
	VMRAS_ACTION_IGNORE,
	VMRAS_ACTION_INJECT,
	VMRAS_ACTION_FATAL,
	VMRAS_ACTION_RESET,
	VMRAS_ACTION_COUNT
};

/* What vmras did about one event. */
struct vmras_failure {
	struct vmras_event ev;
	enum vmras_recipient recipient;
	enum vmras_action action;
	bool action_required;
	bool recursive;		/* AR while the guest still handled a #MC */
	bool contained;		/* the bad page can no longer be read */
	uint64_t size;		/* bytes of guest memory lost */
	char detail[128];	/* why, when the action is not the default one */
};

const char *vmras_source_name(enum vmras_source s);
const char *vmras_action_name(enum vmras_action a);
const char *vmras_recipient_name(enum vmras_recipient r);
/* "ignore" ... "reset" -> action; -EINVAL for others. */
int vmras_action_parse(const char *s, enum vmras_action *a);

/*
 * The failure as the data of a QMP MEMORY_FAILURE event: QEMU's fields
 * (recipient, action, flags {action-required, recursive}) plus gpa, hva,
 * size, vcpu, source, kind, time. Writes a NUL-terminated JSON object;
 * returns its length, or -ENOSPC if it did not fit.
 */
int vmras_failure_json(const struct vmras_failure *f, char *buf, size_t size);

#pragma GCC visibility pop

#endif
