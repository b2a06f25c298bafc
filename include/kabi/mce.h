/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * x86 machine-check architecture: MSRs and register bits (Intel SDM vol. 3B
 * ch. 15/16; the kernel's arch/x86/include/asm/mce.h and msr-index.h, which
 * are not uapi). Shared by the library's encoder and the test guest, so it
 * must stay freestanding: no libc, no kernel headers.
 */
#ifndef VMRAS_KABI_MCE_H
#define VMRAS_KABI_MCE_H

#define MCE_BIT(n) (1ULL << (n))

/* MSRs */
#define MSR_IA32_MCG_CAP 0x179
#define MSR_IA32_MCG_STATUS 0x17a
#define MSR_IA32_MCG_CTL 0x17b
#define MSR_IA32_MCG_EXT_CTL 0x4d0
#define MSR_IA32_MC0_CTL 0x400
#define MSR_IA32_MCx_CTL(i) (MSR_IA32_MC0_CTL + 4 * (i))
#define MSR_IA32_MCx_STATUS(i) (MSR_IA32_MC0_CTL + 4 * (i) + 1)
#define MSR_IA32_MCx_ADDR(i) (MSR_IA32_MC0_CTL + 4 * (i) + 2)
#define MSR_IA32_MCx_MISC(i) (MSR_IA32_MC0_CTL + 4 * (i) + 3)

/* IA32_MCG_CAP */
#define MCG_BANKCNT_MASK 0xffULL
#define MCG_CTL_P MCE_BIT(8)
#define MCG_EXT_P MCE_BIT(9)
#define MCG_CMCI_P MCE_BIT(10)
#define MCG_TES_P MCE_BIT(11)
#define MCG_SER_P MCE_BIT(24)
#define MCG_ELOG_P MCE_BIT(26)
#define MCG_LMCE_P MCE_BIT(27)

/* IA32_MCG_STATUS */
#define MCG_STATUS_RIPV MCE_BIT(0)
#define MCG_STATUS_EIPV MCE_BIT(1)
#define MCG_STATUS_MCIP MCE_BIT(2)
#define MCG_STATUS_LMCES MCE_BIT(3)

/* IA32_MCG_EXT_CTL */
#define MCG_EXT_CTL_LMCE_EN MCE_BIT(0)

/* IA32_MCi_STATUS */
#define MCI_STATUS_VAL MCE_BIT(63)
#define MCI_STATUS_OVER MCE_BIT(62)
#define MCI_STATUS_UC MCE_BIT(61)
#define MCI_STATUS_EN MCE_BIT(60)
#define MCI_STATUS_MISCV MCE_BIT(59)
#define MCI_STATUS_ADDRV MCE_BIT(58)
#define MCI_STATUS_PCC MCE_BIT(57)
#define MCI_STATUS_S MCE_BIT(56)
#define MCI_STATUS_AR MCE_BIT(55)
/* AMD: a deferred error (no #MC; found by polling) and poisoned data. */
#define MCI_STATUS_DEFERRED MCE_BIT(44)
#define MCI_STATUS_POISON MCE_BIT(43)
#define MCI_STATUS_MCA_CODE_MASK 0xffffULL

/* MCA error codes the kernel's memory-failure path and QEMU use. */
#define MCE_MCACOD_SRAO_SCRUB 0x00c0 /* memory scrubbing, action optional */
#define MCE_MCACOD_SRAR_DATA 0x0134  /* data load, action required */

/* IA32_MCi_MISC: recoverable address LSB and address mode. */
#define MCI_MISC_LSB_MASK 0x3fULL
#define MCI_MISC_ADDR_MODE_SHIFT 6
#define MCI_MISC_ADDR_MODE_MASK (7ULL << MCI_MISC_ADDR_MODE_SHIFT)
#define MCI_MISC_ADDR_PHYS 2ULL

/* x86 exception vector of a machine check. */
#define X86_VECTOR_MC 18

#endif /* VMRAS_KABI_MCE_H */
