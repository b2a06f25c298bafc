// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * ESR_EL1 for the aborts vmras sends (Arm ARM DDI 0487, the ESR_EL1
 * register description: EC, IL, "ISS encoding for an exception from a
 * Data Abort" and "ISS encoding for an SError exception"). Linux's
 * arch/arm64/include/asm/esr.h names the same bits.
 */
#include <errno.h>

#include "vmras/arm64.h"

#define ESR_EC_SHIFT 26
#define ESR_IL (1ULL << 25)	/* 32-bit instruction; RES1 for aborts with ISV 0 */
#define ESR_SET_SHIFT 11	/* ISS[12:11] */
#define ESR_FNV (1ULL << 10)
#define ESR_EA (1ULL << 9)
#define ESR_WNR (1ULL << 6)
#define SERROR_AET_SHIFT 10	/* ISS[12:10] */
#define SERROR_DFSC_ASYNC 0x11

int vmras_arm64_esr_dabt(bool same_el, const struct vmras_arm64_abort *a, uint64_t *esr)
{
	uint64_t v;

	if (a->dfsc != VMRAS_DFSC_SEA && a->dfsc != VMRAS_DFSC_ECC)
		return -EINVAL;
	/* SET is defined for DFSC 0b010000 only (RES0 otherwise); 0b01 is reserved. */
	if (a->set > VMRAS_SET_UEO || a->set == 1 || (a->set && a->dfsc != VMRAS_DFSC_SEA))
		return -EINVAL;
	/* ISV 0: no instruction syndrome (SAS, SRT, ...), so IL is 1. */
	/* Instruction aborts: EC 0x20/0x21, the same ISS but for WnR (RES0). */
	if (a->iabt && a->wnr)
		return -EINVAL;
	v = (uint64_t)(same_el ? VMRAS_ESR_EC_DABT_CUR : VMRAS_ESR_EC_DABT_LOW) << ESR_EC_SHIFT;
	if (a->iabt)
		v -= (uint64_t)4 << ESR_EC_SHIFT;
	v |= ESR_IL | (uint64_t)a->set << ESR_SET_SHIFT | a->dfsc;
	if (!a->far_valid)
		v |= ESR_FNV;
	if (a->ea)
		v |= ESR_EA;
	if (a->wnr)
		v |= ESR_WNR;
	*esr = v;
	return 0;
}

int vmras_arm64_serror_iss(unsigned int aet, bool ea, uint64_t *iss)
{
	/* AET 0b100, 0b101 and 0b111 are reserved. */
	if (aet > VMRAS_AET_CE || aet == 4 || aet == 5)
		return -EINVAL;
	/* IDS 0: the architected syndrome; KVM takes only ISS (bits 24:0). */
	*iss = (uint64_t)aet << SERROR_AET_SHIFT | (ea ? ESR_EA : 0) | SERROR_DFSC_ASYNC;
	return 0;
}
