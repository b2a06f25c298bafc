// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <string.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "vmras/x86_mce.h"

#define ADDR_MODE_PHYS (MCI_MISC_ADDR_PHYS << MCI_MISC_ADDR_MODE_SHIFT)
#define MEMORY_ERROR (MCI_STATUS_VAL | MCI_STATUS_EN | MCI_STATUS_MISCV | MCI_STATUS_ADDRV)
#define UC_MEMORY (MEMORY_ERROR | MCI_STATUS_UC | MCI_STATUS_S)

int vmras_x86_mce_encode(const struct vmras_mce_params *p, struct vmras_x86_mce *out)
{
	struct vmras_x86_mce m = { .bank = (uint8_t)p->bank };

	if (p->bank > 31 || (p->type != VMRAS_MCE_BROADCAST && (p->lsb < 12 || p->lsb > 51)))
		return -EINVAL;
	switch (p->type) {
	case VMRAS_MCE_SRAO:
		m.status = p->amd ? MEMORY_ERROR | MCI_STATUS_DEFERRED | MCI_STATUS_POISON
				  : UC_MEMORY | MCE_MCACOD_SRAO_SCRUB;
		m.mcg_status = MCG_STATUS_RIPV | MCG_STATUS_MCIP |
			       (p->lmce ? MCG_STATUS_LMCES : 0);
		break;
	case VMRAS_MCE_SRAR:
		m.status = p->amd ? MEMORY_ERROR | MCI_STATUS_UC | MCI_STATUS_POISON
				  : UC_MEMORY | MCI_STATUS_AR | MCE_MCACOD_SRAR_DATA;
		m.mcg_status = MCG_STATUS_RIPV | MCG_STATUS_MCIP |
			       (p->eipv ? MCG_STATUS_EIPV : 0) |
			       (p->lmce ? MCG_STATUS_LMCES : 0);
		break;
	case VMRAS_MCE_BROADCAST:
		/* Other CPUs learn only that a machine check is in progress. */
		m.status = MCI_STATUS_VAL | MCI_STATUS_UC;
		m.mcg_status = MCG_STATUS_RIPV | MCG_STATUS_MCIP;
		*out = m;
		return 0;
	default:
		return -EINVAL;
	}
	m.addr = p->gpa & ~((1ULL << p->lsb) - 1);
	m.misc = ADDR_MODE_PHYS | p->lsb;
	*out = m;
	return 0;
}

/*
 * Intel broadcasts an uncorrected error to every CPU (each runs the #MC
 * handler, one is the monarch) unless the guest enabled LMCE, which makes
 * an SRAR local. QEMU broadcasts only on Intel vCPUs, and so do we.
 */
int vmras_x86_plan(const struct vmras_x86_config *c, const struct vmras_x86_error *e,
		   unsigned int nvcpus, const bool *online, struct vmras_x86_plan_step *out,
		   unsigned int max)
{
	unsigned int banks = (unsigned int)(c->mcg_cap & MCG_BANKCNT_MASK), n = 0;
	bool lmce = e->type == VMRAS_MCE_SRAR && e->guest_lmce && (c->mcg_cap & MCG_LMCE_P);
	bool broadcast = c->vendor == VMRAS_X86_INTEL && !c->no_broadcast && !lmce;
	struct vmras_mce_params p = {
		.type = e->type,
		.gpa = e->gpa,
		.lsb = e->lsb,
		/* The consuming instruction is known: RIP (or, emulated, just past it). */
		.eipv = e->type == VMRAS_MCE_SRAR,
		.lmce = lmce,
		.amd = c->vendor == VMRAS_X86_AMD,
		.bank = banks ? banks - 1 : 0,
	};
	struct vmras_x86_mce primary, copy;
	int r;

	if (!banks || e->target >= nvcpus || !max ||
	    (e->type != VMRAS_MCE_SRAO && e->type != VMRAS_MCE_SRAR))
		return -EINVAL;
	r = vmras_x86_mce_encode(&p, &primary);
	if (r)
		return r;
	if (broadcast) {
		struct vmras_mce_params bp = { .type = VMRAS_MCE_BROADCAST,
					       .bank = banks > 1 ? 1 : 0 };

		vmras_x86_mce_encode(&bp, &copy);
		for (unsigned int i = 0; i < nvcpus && n + 1 < max; i++)
			if (i != e->target && (!online || online[i]))
				out[n++] = (struct vmras_x86_plan_step){ .vcpu = i, .bystander = true,
									 .mce = copy };
	}
	out[n++] = (struct vmras_x86_plan_step){ .vcpu = e->target, .mce = primary };
	return (int)n;
}

/*
 * Delivery: x86 KVM ioctls, which only an x86 build has (and only an x86
 * host runs). Elsewhere the encoder and the planner above still build, for
 * decoding and planning, and delivery reports -EOPNOTSUPP.
 */
#if defined(__x86_64__) || defined(__i386__)
static int get_msrs(int fd, const uint32_t *idx, uint64_t *val, unsigned int n)
{
	union {
		struct kvm_msrs hdr;
		char bytes[sizeof(struct kvm_msrs) + 4 * sizeof(struct kvm_msr_entry)];
	} msrs;
	long r;

	if (n > 4)
		return -EINVAL;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = n;
	for (unsigned int i = 0; i < n; i++)
		msrs.hdr.entries[i].index = idx[i];
	r = kabi__ioctl(fd, KVM_GET_MSRS, (unsigned long)&msrs);
	if (r < 0)
		return (int)r;
	if (r != n)
		return -EIO;
	for (unsigned int i = 0; i < n; i++)
		val[i] = msrs.hdr.entries[i].data;
	return 0;
}

int vmras_x86_mce_deliver(int vcpu_fd, uint64_t mcg_cap, const struct vmras_x86_mce *m)
{
	uint32_t idx[3] = { MSR_IA32_MCG_STATUS, MSR_IA32_MCx_CTL(m->bank), MSR_IA32_MCG_CTL };
	uint8_t bank = m->bank;
	uint64_t val[3];
	struct kvm_x86_mce k;
	struct kvm_sregs sregs;
	long r;

	if (!(m->status & MCI_STATUS_UC)) {
		/*
		 * KVM only fills the bank (no #MC): the guest finds it when it
		 * polls, in any bank. One still there, not yet polled, would be
		 * overwritten: use the planned bank, or the next free one below.
		 */
		for (int b = m->bank; b >= 0; b--) {
			/* Linux's poller skips a bank whose MCi_CTL is 0: not that one. */
			uint32_t bidx[2] = { MSR_IA32_MCx_STATUS((unsigned int)b),
					     MSR_IA32_MCx_CTL((unsigned int)b) };

			r = get_msrs(vcpu_fd, bidx, val, 2);
			if (r < 0)
				return (int)r;
			if (!(val[0] & MCI_STATUS_VAL) && val[1]) {
				bank = (uint8_t)b;
				goto inject;
			}
		}
		return VMRAS_MCE_BUSY;
	}
	r = kabi_ioctl(vcpu_fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return (int)r;
	if (!(sregs.cr4 & (1ULL << 6)))
		return VMRAS_MCE_NO_CR4_MCE;
	r = get_msrs(vcpu_fd, idx, val, (mcg_cap & MCG_CTL_P) ? 3 : 2);
	if (r < 0)
		return (int)r;
	if (val[0] & MCG_STATUS_MCIP)
		return VMRAS_MCE_BUSY;
	if (val[1] != ~0ULL || ((mcg_cap & MCG_CTL_P) && val[2] != ~0ULL))
		return VMRAS_MCE_BANK_DISABLED;
inject:
	memset(&k, 0, sizeof(k));
	k.status = m->status;
	k.addr = m->addr;
	k.misc = m->misc;
	k.mcg_status = m->mcg_status;
	k.bank = bank;
	r = kabi_ioctl(vcpu_fd, KVM_X86_SET_MCE, &k);
	return r < 0 ? (int)r : VMRAS_MCE_DELIVERED;
}

int vmras_x86_mce_in_progress(int vcpu_fd, bool *mcip)
{
	uint32_t idx = MSR_IA32_MCG_STATUS;
	uint64_t v;
	int r = get_msrs(vcpu_fd, &idx, &v, 1);

	if (r)
		return r;
	*mcip = v & MCG_STATUS_MCIP;
	return 0;
}

int vmras_x86_guest_lmce(int vcpu_fd, uint64_t mcg_cap, bool *lmce)
{
	uint32_t idx = MSR_IA32_MCG_EXT_CTL;
	uint64_t v;
	int r;

	*lmce = false;
	if (!(mcg_cap & MCG_LMCE_P))
		return 0;
	r = get_msrs(vcpu_fd, &idx, &v, 1);
	if (r)
		return r;
	*lmce = v & MCG_EXT_CTL_LMCE_EN;
	return 0;
}
#else
int vmras_x86_mce_deliver(int vcpu_fd, uint64_t mcg_cap, const struct vmras_x86_mce *m)
{
	(void)vcpu_fd;
	(void)mcg_cap;
	(void)m;
	return -EOPNOTSUPP;
}

int vmras_x86_mce_in_progress(int vcpu_fd, bool *mcip)
{
	(void)vcpu_fd;
	*mcip = false;
	return -EOPNOTSUPP;
}

int vmras_x86_guest_lmce(int vcpu_fd, uint64_t mcg_cap, bool *lmce)
{
	(void)vcpu_fd;
	(void)mcg_cap;
	*lmce = false;
	return -EOPNOTSUPP;
}
#endif

const char *vmras_mce_delivery_name(int d)
{
	switch (d) {
	case VMRAS_MCE_DELIVERED: return "delivered";
	case VMRAS_MCE_BUSY: return "guest still handling a machine check (MCG_STATUS.MCIP set)";
	case VMRAS_MCE_NO_CR4_MCE: return "guest has machine checks disabled (CR4.MCE clear)";
	case VMRAS_MCE_BANK_DISABLED: return "guest disabled the bank (MCG_CTL or MCi_CTL not all ones)";
	default: return "KVM error";
	}
}
