// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * x86 arch ops: a failure becomes the machine checks vmras_x86_plan()
 * says, one notice per vCPU; each vCPU thread delivers its own through
 * KVM_X86_SET_MCE. LMCE is sampled on the consuming vCPU's thread when it
 * reports the access (KVM holds a vCPU's mutex while it runs, so no other
 * thread can read its MSRs then).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"
#include "internal.h"
#include "kabi/mce.h"
#include "vmras/x86_mce.h"

#define X86_STATE_LMCE (1u << 0)

_Static_assert(sizeof(struct vmras_x86_mce) <= VR_NOTICE_ARCH_BYTES, "MCE fits a notice");
_Static_assert((int)VMRAS_MCE_DELIVERED == (int)VR_DELIVERED &&
		       (int)VMRAS_MCE_BUSY == (int)VR_BUSY &&
		       (int)VMRAS_MCE_NO_CR4_MCE == (int)VR_NOT_READY,
	       "x86 delivery results are the arch results");

static int x86_prepare(void *data, const struct vmras_failure *f, unsigned int target,
		       uint32_t arch_state, unsigned int nvcpus, const bool *online,
		       struct vr_notice *out, unsigned int *vcpu_of, unsigned int max)
{
	const struct vmras_x86_config *c = data;
	/*
	 * Consumed by a vCPU: action required on it. Consumed by a VMM thread
	 * (the safe copy, say): the guest learns of it as found, not consumed.
	 */
	bool srar = f->ev.kind == VMRAS_AR && f->ev.source != VMRAS_SRC_MC_COPY &&
		    (f->ev.valid & VMRAS_EV_VCPU);
	struct vmras_x86_error e = {
		.type = srar ? VMRAS_MCE_SRAR : VMRAS_MCE_SRAO,
		/*
		 * Always the 4 KiB page reported, even when a whole huge page was
		 * lost: Linux rounds MCi_ADDR down by MISC's LSB and acts on that
		 * one pfn, so LSB 21 would make it retire the wrong page. Each
		 * other page of it tells the guest itself when touched.
		 */
		.gpa = f->ev.gpa,
		.lsb = 12,
		.target = target,
		.guest_lmce = arch_state & X86_STATE_LMCE,
	};
	struct vmras_x86_plan_step steps[VR_MAX_VCPUS];
	int n = vmras_x86_plan(c, &e, nvcpus, online, steps,
			       max < VR_MAX_VCPUS ? max : VR_MAX_VCPUS);

	if (n < 0)
		return n;
	/* The primary first for the engine; bystanders keep the plan's order. */
	for (int i = 0; i < n; i++) {
		unsigned int k = steps[i].bystander ? (unsigned int)i + 1 : 0;

		memset(&out[k], 0, sizeof(out[k]));
		out[k].f = *f;
		out[k].bystander = steps[i].bystander;
		memcpy(out[k].arch, &steps[i].mce, sizeof(steps[i].mce));
		vcpu_of[k] = steps[i].vcpu;
	}
	return n;
}

static int x86_deliver(void *data, unsigned int vcpu, int vcpu_fd, const struct vr_notice *n)
{
	const struct vmras_x86_config *c = data;
	struct vmras_x86_mce m;

	(void)vcpu;
	memcpy(&m, n->arch, sizeof(m));
	return vmras_x86_mce_deliver(vcpu_fd, c->mcg_cap, &m);
}

static int x86_busy(void *data, unsigned int vcpu, int vcpu_fd, bool *busy)
{
	(void)data;
	(void)vcpu;
	return vmras_x86_mce_in_progress(vcpu_fd, busy);
}

static int x86_sample(void *data, int vcpu_fd, uint32_t *arch_state)
{
	const struct vmras_x86_config *c = data;
	bool lmce = false;
	int r = vmras_x86_guest_lmce(vcpu_fd, c->mcg_cap, &lmce);

	*arch_state = lmce ? X86_STATE_LMCE : 0;
	return r;
}

const struct vr_arch_ops vr_arch_x86 = {
	.name = "x86",
	.prepare = x86_prepare,
	.deliver = x86_deliver,
	.why = vmras_mce_delivery_name,
	.busy = x86_busy,
	.sample = x86_sample,
	.free = free,
};

int vmras_x86_setup(struct vmras *v, const struct vmras_x86_config *c)
{
	struct vmras_x86_config *copy;

	if (!(c->mcg_cap & MCG_BANKCNT_MASK) || (unsigned int)c->vendor > VMRAS_X86_AMD)
		return -EINVAL;
	if (v->engine_started)
		return -EBUSY;
	copy = malloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	*copy = *c;
	if (v->arch && v->arch->free)
		v->arch->free(v->arch_data);
	v->arch = &vr_arch_x86;
	v->arch_data = copy;
	return 0;
}
