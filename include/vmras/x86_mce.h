/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * x86 machine checks for a guest: the architecture libvmras tells x86
 * guests in. A pure encoder and planner (what goes into which vCPU's bank
 * and MCG_STATUS, as data), and the delivery through KVM_X86_SET_MCE,
 * which first checks that KVM would not drop the machine check or
 * triple-fault the guest.
 */
#ifndef VMRAS_X86_MCE_H
#define VMRAS_X86_MCE_H

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(default)

struct vmras;

enum vmras_mce_type {
	VMRAS_MCE_SRAO,		/* action optional: memory scrub found it */
	VMRAS_MCE_SRAR,		/* action required: a data load consumed it */
	VMRAS_MCE_BROADCAST,	/* what the other CPUs see of a broadcast */
};

struct vmras_mce_params {
	enum vmras_mce_type type;
	uint64_t gpa;		/* any address inside the lost range */
	unsigned int lsb;	/* log2 of the lost range: 12 for 4 KiB */
	bool eipv;		/* SRAR: RIP points at the consuming instruction */
	bool lmce;		/* local machine check (no broadcast) */
	bool amd;		/* AMD's encoding (see vmras_x86_mce_encode) */
	unsigned int bank;
};

struct vmras_x86_mce {
	uint64_t status, addr, misc, mcg_status;
	uint8_t bank;
};

/*
 * Intel: SRAO is UC|S memory scrub (0xc0), SRAR UC|S|AR data load (0x134).
 * AMD (as Linux grades it and QEMU sends it): SRAO is a deferred error
 * with POISON (no #MC: the guest finds it by polling its banks), SRAR UC
 * with POISON (recoverable only where CPUID offers SUCCOR).
 * -EINVAL for an unknown type, a bank over 31, or (but for a broadcast)
 * an lsb outside 12..51.
 */
int vmras_x86_mce_encode(const struct vmras_mce_params *p, struct vmras_x86_mce *out);

enum vmras_x86_vendor {
	VMRAS_X86_INTEL,
	VMRAS_X86_AMD,
};

/* What the VMM gave its x86 vCPUs. */
struct vmras_x86_config {
	uint64_t mcg_cap;	/* what KVM_X86_SETUP_MCE was given */
	enum vmras_x86_vendor vendor;	/* the guest's CPUID vendor, not the host's */
	bool no_broadcast;	/* Intel: do not broadcast (a guest that cannot take it) */
};

/* Tell x86 guests (before vmras_start). -EINVAL: no banks in mcg_cap. */
int vmras_x86_setup(struct vmras *v, const struct vmras_x86_config *c);

/* One memory error, as the planner needs it. */
struct vmras_x86_error {
	enum vmras_mce_type type;	/* SRAO or SRAR */
	uint64_t gpa;
	unsigned int lsb;
	unsigned int target;	/* the consuming vCPU (SRAR) or the one told (SRAO) */
	bool guest_lmce;	/* the target's guest enabled LMCE (MCG_EXT_CTL.LMCE_EN) */
};

/* One machine check for one vCPU, in delivery order. */
struct vmras_x86_plan_step {
	unsigned int vcpu;
	bool bystander;		/* another CPU's view of a broadcast */
	struct vmras_x86_mce mce;
};

/*
 * The machine checks libvmras delivers for e on a guest with vCPUs
 * 0..nvcpus-1 (online[i] false: vCPU i does not run and gets none), the
 * bystanders' copies first, then the target's. Returns the number of
 * steps (at most max), or -EINVAL.
 */
int vmras_x86_plan(const struct vmras_x86_config *c, const struct vmras_x86_error *e,
		   unsigned int nvcpus, const bool *online, struct vmras_x86_plan_step *out,
		   unsigned int max);

enum vmras_mce_delivery {
	VMRAS_MCE_DELIVERED,
	VMRAS_MCE_BUSY,		/* MCG_STATUS.MCIP set: the guest is still handling one */
	VMRAS_MCE_NO_CR4_MCE,	/* guest has CR4.MCE clear: KVM would triple-fault */
	VMRAS_MCE_BANK_DISABLED,	/* MCG_CTL or MCi_CTL not all ones: KVM would drop it */
};

/*
 * Deliver to one vCPU (call on the vCPU's own thread, outside KVM_RUN).
 * Returns a vmras_mce_delivery, or -errno when an ioctl failed. Nothing is
 * injected unless the result is VMRAS_MCE_DELIVERED. An error without UC
 * (AMD's deferred AO) raises no #MC and waits in a bank for the guest's
 * poller: it goes to m->bank or, if that one still holds an error, the
 * next free bank below (VMRAS_MCE_BUSY when none is free).
 */
int vmras_x86_mce_deliver(int vcpu_fd, uint64_t mcg_cap, const struct vmras_x86_mce *m);

/* Is the guest still handling a machine check (MCG_STATUS.MCIP)? */
int vmras_x86_mce_in_progress(int vcpu_fd, bool *mcip);

/* Does this vCPU's guest want local machine checks (MCG_EXT_CTL.LMCE_EN)? */
int vmras_x86_guest_lmce(int vcpu_fd, uint64_t mcg_cap, bool *lmce);

const char *vmras_mce_delivery_name(int d);

#pragma GCC visibility pop

#endif
