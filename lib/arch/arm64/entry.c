// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A synchronous external abort taken to EL1 as the architecture takes it
 * (Arm ARM DDI 0487, chapter D1 "The AArch64 Exception Model": exception
 * entry, the vector offsets from VBAR_ELx, and the pseudocode
 * AArch64.TakeException), so that the VMM can choose the ESR: the entry is
 * computed here and the registers written by the arch ops. KVM's own
 * enter_exception64 (arch/arm64/kvm/hyp/exception.c) does the same for
 * the aborts it injects; every bit below agrees with it.
 */
#include <errno.h>

#include "vmras/arm64.h"

/*
 * PSTATE in SPSR_EL1's layout. The bits an entry keeps sit at the same
 * place in the AArch32 layout (NZCV, DIT 24, PAN 22), as KVM relies on.
 */
#define PSR_M_MASK 0x1fULL
#define PSR_M_AARCH32 (1ULL << 4)
#define PSR_M_EL0T 0x0ULL
#define PSR_M_EL1T 0x4ULL
#define PSR_M_EL1H 0x5ULL
#define PSR_M_EL_MASK 0xcULL	/* M[3:2]: the exception level */
#define PSR_M_USR32 0x10ULL	/* AArch32 User mode: EL0 */
#define PSR_DAIF (0xfULL << 6)
#define PSR_SSBS (1ULL << 12)
#define PSR_PAN (1ULL << 22)
#define PSR_DIT (1ULL << 24)
#define PSR_TCO (1ULL << 25)
#define PSR_NZCV (0xfULL << 28)

#define SCTLR_SPAN (1ULL << 23)
#define SCTLR_DSSBS (1ULL << 44)

/* Vector offsets from VBAR_EL1 for a synchronous exception. */
#define VEC_CUR_SP0 0x000
#define VEC_CUR_SPX 0x200
#define VEC_LOWER_A64 0x400
#define VEC_LOWER_A32 0x600

int vmras_arm64_sea_entry(const struct vmras_arm64_cpu *c, const struct vmras_arm64_abort *a,
			  struct vmras_arm64_entry *out)
{
	uint64_t old = c->pstate, m = old & PSR_M_MASK, new;
	bool from_a32 = old & PSR_M_AARCH32, same_el;
	struct vmras_arm64_abort abort = *a;
	int r;

	if (from_a32) {
		/* An AArch32 EL1 would make EL1 AArch32: not the entry computed here. */
		if (m != PSR_M_USR32)
			return -EOPNOTSUPP;
		out->vector = VEC_LOWER_A32;
		same_el = false;
	} else if (m == PSR_M_EL0T) {
		out->vector = VEC_LOWER_A64;
		same_el = false;
	} else if (m == PSR_M_EL1T || m == PSR_M_EL1H) {
		out->vector = m == PSR_M_EL1T ? VEC_CUR_SP0 : VEC_CUR_SPX;
		same_el = true;
	} else {
		return -EINVAL; /* EL2 or EL3 (nested virtualization), or an illegal M */
	}
	if (!(c->features & VMRAS_ARM64_FEAT_RAS))
		abort.set = 0; /* RES0 without FEAT_RAS */
	r = vmras_arm64_esr_dabt(same_el, &abort, &out->esr_el1);
	if (r)
		return r;

	/* SPSR_EL1 is PSTATE as it was (KVM keeps pstate in SPSR form). */
	out->spsr_el1 = old;
	/* The preferred return address of a data abort is the faulting instruction. */
	out->elr_el1 = c->pc;
	out->far_el1 = abort.far_valid ? abort.far : 0; /* UNKNOWN with FnV: 0, not stale */
	out->pc = c->vbar_el1 + out->vector;

	/* NZCV and DIT carry over; D, A, I, F masked; EL1 on SP_EL1; SS, IL, BTYPE 0. */
	new = (old & PSR_NZCV) | PSR_DAIF | PSR_M_EL1H;
	new |= old & PSR_DIT;
	/* PAN keeps its value, and is set unless SCTLR_EL1.SPAN (RES1 without FEAT_PAN). */
	new |= old & PSR_PAN;
	if (!(c->sctlr_el1 & SCTLR_SPAN))
		new |= PSR_PAN;
	/* SSBS from SCTLR_EL1.DSSBS (RES0 without FEAT_SSBS); UAO is cleared. */
	if (c->sctlr_el1 & SCTLR_DSSBS)
		new |= PSR_SSBS;
	/* TCO is set on entry with MTE. */
	if (c->features & VMRAS_ARM64_FEAT_MTE)
		new |= PSR_TCO;
	out->pstate = new;
	return 0;
}
