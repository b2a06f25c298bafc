/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How a guest is told, per architecture. The engine decides that a vCPU
 * must be told about a failure and hands it to prepare(), which fills
 * opaque notices (a primary for the target and, where the architecture
 * broadcasts, copies for the bystanders). Each vCPU thread later hands its
 * notices to deliver(). The engine knows nothing of banks, MSRs or ESRs.
 */
#ifndef VMRAS_LIB_ARCH_H
#define VMRAS_LIB_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmras;
struct vr_notice;
struct vmras_failure;

/* deliver() results; anything else > 0 is a reason the guest cannot take it. */
enum {
	VR_DELIVERED = 0,
	VR_BUSY = 1,		/* the guest is still handling the last one */
	VR_NOT_READY = 2,	/* the vCPU takes none at all yet (its OS never enabled them) */
	VR_ARCH_NO_WAY = 99,	/* why(): prepare() said -EOPNOTSUPP; the arch says why */
};

struct vr_arch_ops {
	const char *name;
	/*
	 * Engine thread: the notices for f, whose vCPU is target (primary
	 * first in out[], then copies for other vCPUs; online[i] says whether
	 * vCPU i runs). arch_state: what sample() saw on the reporting vCPU.
	 * Returns how many, or -errno.
	 */
	int (*prepare)(void *data, const struct vmras_failure *f, unsigned int target,
		       uint32_t arch_state, unsigned int nvcpus, const bool *online,
		       struct vr_notice *out, unsigned int *vcpu_of, unsigned int max);
	/*
	 * vCPU thread (vcpu is its index), outside KVM_RUN: deliver;
	 * VR_DELIVERED, VR_BUSY, a reason, or -errno.
	 */
	int (*deliver)(void *data, unsigned int vcpu, int vcpu_fd, const struct vr_notice *n);
	const char *(*why)(int reason);
	/* vCPU thread: is the guest handling a notice right now? */
	int (*busy)(void *data, unsigned int vcpu, int vcpu_fd, bool *busy);
	/* vCPU thread, when it reports an access: guest state prepare() needs. */
	int (*sample)(void *data, int vcpu_fd, uint32_t *arch_state);
	/* Engine thread, at a guest reset (vCPUs paused): as at power-on. May be NULL. */
	void (*reset)(void *data);
	void (*free)(void *data);
};

/* x86 (lib/arch/x86/ops.c) */
extern const struct vr_arch_ops vr_arch_x86;
/* arm64 (lib/arch/arm64/ops.c) */
extern const struct vr_arch_ops vr_arch_arm64;

#endif
