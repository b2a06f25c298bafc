/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * arm64 KVM ABI, built on every host (an x86 build host has no
 * asm/kvm.h for arm64): register ids for KVM_{GET,SET}_ONE_REG, arm64's
 * struct kvm_vcpu_events and the KVM_EXIT_ARM_SEA exit.
 *
 * Written from Documentation/virt/kvm/api.rst ("KVM_SET_ONE_REG" arm64
 * register ids, "KVM_SET_VCPU_EVENTS" arm64, "KVM_EXIT_ARM_SEA") and
 * arch/arm64/include/uapi/asm/kvm.h; the static asserts pin the layouts.
 */
#ifndef VMRAS_KABI_ARM64_H
#define VMRAS_KABI_ARM64_H

#include <stddef.h>
#include <stdint.h>
#include <linux/ioctl.h>

#include "kabi/kvm.h"

/* Register ids: arch | size | coprocessor group | index. */
#define KABI_ARM64_REG_BASE 0x6030000000000000ULL	/* KVM_REG_ARM64 | KVM_REG_SIZE_U64 */
#define KABI_ARM64_REG_CORE 0x00100000ULL		/* KVM_REG_ARM_CORE (0x10 << 16) */
#define KABI_ARM64_REG_SYSREG 0x00130000ULL		/* KVM_REG_ARM64_SYSREG (0x13 << 16) */

/*
 * Core registers are named by their offset in struct kvm_regs, in 32-bit
 * words: user_pt_regs {regs[31], sp, pc, pstate} (8 bytes each), then
 * sp_el1, elr_el1, spsr[5].
 */
#define KABI_ARM64_CORE(byte_off) (KABI_ARM64_REG_BASE | KABI_ARM64_REG_CORE | ((byte_off) / 4))
#define KABI_ARM64_REG_SP_EL0 KABI_ARM64_CORE(31 * 8)	/* regs.sp */
#define KABI_ARM64_REG_PC KABI_ARM64_CORE(32 * 8)	/* regs.pc */
#define KABI_ARM64_REG_PSTATE KABI_ARM64_CORE(33 * 8)	/* regs.pstate (SPSR format) */
#define KABI_ARM64_REG_SP_EL1 KABI_ARM64_CORE(34 * 8)
#define KABI_ARM64_REG_ELR_EL1 KABI_ARM64_CORE(35 * 8)
#define KABI_ARM64_REG_SPSR_EL1 KABI_ARM64_CORE(36 * 8)	/* spsr[KVM_SPSR_EL1 = 0] */

/* System registers: op0:op1:CRn:CRm:op2 as in MRS (Arm ARM C5.3). */
#define KABI_ARM64_SYSREG(op0, op1, crn, crm, op2)                                    \
	(KABI_ARM64_REG_BASE | KABI_ARM64_REG_SYSREG | ((uint64_t)(op0) << 14) |      \
	 ((uint64_t)(op1) << 11) | ((uint64_t)(crn) << 7) | ((uint64_t)(crm) << 3) | \
	 (uint64_t)(op2))
#define KABI_ARM64_REG_SCTLR_EL1 KABI_ARM64_SYSREG(3, 0, 1, 0, 0)
#define KABI_ARM64_REG_ESR_EL1 KABI_ARM64_SYSREG(3, 0, 5, 2, 0)
#define KABI_ARM64_REG_FAR_EL1 KABI_ARM64_SYSREG(3, 0, 6, 0, 0)
#define KABI_ARM64_REG_VBAR_EL1 KABI_ARM64_SYSREG(3, 0, 12, 0, 0)

/* struct kvm_one_reg is generic (linux/kvm.h): {u64 id; u64 addr}. */
#define KABI_KVM_GET_ONE_REG _IOW(KVMIO, 0xab, struct kvm_one_reg)
#define KABI_KVM_SET_ONE_REG _IOW(KVMIO, 0xac, struct kvm_one_reg)

/* arm64's struct kvm_vcpu_events (x86 has its own of the same size). */
struct kabi_arm64_vcpu_events {
	struct {
		uint8_t serror_pending;
		uint8_t serror_has_esr;
		uint8_t ext_dabt_pending;
		uint8_t pad[5];
		uint64_t serror_esr;	/* ISS only: bits 24 and up must be 0 */
	} exception;
	uint32_t reserved[12];
};
#define KABI_ARM64_SET_VCPU_EVENTS _IOW(KVMIO, 0xa0, struct kabi_arm64_vcpu_events)

/* KVM_EXIT_ARM_SEA (Linux 6.19): the kvm_run exit union member. */
#ifndef KVM_EXIT_ARM_SEA
#define KVM_EXIT_ARM_SEA 41
#endif
#ifndef KVM_EXIT_ARM_SEA_FLAG_GPA_VALID
#define KVM_EXIT_ARM_SEA_FLAG_GPA_VALID (1ULL << 0)
#endif
struct kabi_kvm_arm_sea {
	uint64_t flags;
	uint64_t esr;		/* ESR_EL2, sanitized: EC, IL, FnV, EA, CM, WnR, DFSC, SET */
	uint64_t gva;		/* FAR_EL2: valid when esr's FnV (bit 10) is 0 */
	uint64_t gpa;		/* valid with KVM_EXIT_ARM_SEA_FLAG_GPA_VALID */
};

static inline struct kabi_kvm_arm_sea *kabi_kvm_run_arm_sea(struct kvm_run *run)
{
	return (struct kabi_kvm_arm_sea *)((char *)run + KABI_KVM_RUN_EXIT_UNION_OFFSET);
}

_Static_assert(sizeof(struct kabi_arm64_vcpu_events) == 64, "arm64 kvm_vcpu_events size");
_Static_assert(offsetof(struct kabi_arm64_vcpu_events, exception.serror_esr) == 8,
	       "arm64 kvm_vcpu_events.exception.serror_esr offset");
_Static_assert(sizeof(struct kabi_kvm_arm_sea) == 32, "arm_sea size");
_Static_assert(KABI_ARM64_REG_PC == 0x6030000000100040ULL, "core register id of pc");
_Static_assert(KABI_ARM64_REG_SCTLR_EL1 == 0x603000000013c080ULL, "sysreg id of SCTLR_EL1");

#endif /* VMRAS_KABI_ARM64_H */
