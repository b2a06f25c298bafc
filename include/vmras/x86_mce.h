/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * x86 machine checks for a guest: a pure encoder (what to put in the bank
 * and MCG_STATUS) and the delivery through KVM_X86_SET_MCE, which first
 * checks that KVM would not drop the machine check or triple-fault.
 */
#ifndef VMRAS_X86_MCE_H
#define VMRAS_X86_MCE_H

#include <stdbool.h>
#include <stdint.h>

enum vmras_mce_type {
	VMRAS_MCE_SRAO,		/* action optional: memory scrub found it */
	VMRAS_MCE_SRAR,		/* action required: a data load consumed it */
	VMRAS_MCE_BROADCAST,	/* what the other CPUs see of an SRAR broadcast */
};

struct vmras_mce_params {
	enum vmras_mce_type type;
	uint64_t gpa;		/* any address inside the lost range */
	unsigned int lsb;	/* log2 of the lost range: 12 for 4 KiB */
	bool eipv;		/* SRAR: RIP points at the consuming instruction */
	bool lmce;		/* SRAR: local machine check (no broadcast) */
	unsigned int bank;
};

struct vmras_x86_mce {
	uint64_t status, addr, misc, mcg_status;
	uint8_t bank;
};

/* -EINVAL for an unknown type, a bank over 31, or (but for a broadcast) an lsb outside 12..51. */
int vmras_x86_mce_encode(const struct vmras_mce_params *p, struct vmras_x86_mce *out);

enum vmras_mce_delivery {
	VMRAS_MCE_DELIVERED,
	VMRAS_MCE_BUSY,		/* MCG_STATUS.MCIP set: the guest is still handling one */
	VMRAS_MCE_NO_CR4_MCE,	/* guest has CR4.MCE clear: KVM would triple-fault */
	VMRAS_MCE_BANK_DISABLED,	/* MCG_CTL or MCi_CTL not all ones: KVM would drop it */
};

/*
 * Deliver to one vCPU (call on the vCPU's own thread, outside KVM_RUN).
 * Returns a vmras_mce_delivery, or -errno when an ioctl failed. Nothing is
 * injected unless the result is VMRAS_MCE_DELIVERED.
 */
int vmras_x86_mce_deliver(int vcpu_fd, uint64_t mcg_cap, const struct vmras_x86_mce *m);

/* Is the guest still handling a machine check (MCG_STATUS.MCIP)? */
int vmras_x86_mce_in_progress(int vcpu_fd, bool *mcip);

/* Does this vCPU's guest want local machine checks (MCG_EXT_CTL.LMCE_EN)? */
int vmras_x86_guest_lmce(int vcpu_fd, uint64_t mcg_cap, bool *lmce);

const char *vmras_mce_delivery_name(int d);

#endif
