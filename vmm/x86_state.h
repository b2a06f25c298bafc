/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A vCPU's whole architectural state as one self-describing byte blob, for
 * migration and snapshots: general and special registers, FPU/XSAVE and
 * XCRs, MSRs (syscall, TSC, PAT, the machine-check MSRs: MCG_STATUS, MCG_CTL
 * and every bank's CTL/STATUS/ADDR/MISC), the LAPIC when the VM has an
 * in-kernel one, pending events (exceptions, NMI, SMI, including a #MC
 * KVM has queued) and the MP state, debug registers.
 *
 * Layout, little-endian: a header {char magic[4] "X86S", u32 version 1,
 * u32 nparts}, then nparts parts {u32 tag, u32 len, len bytes}, each tag
 * at most once, in any order. Tags: 1 REGS (struct kvm_regs), 2 SREGS,
 * 3 XSAVE (KVM_GET_XSAVE2's size, at least struct kvm_xsave) or 4 FPU,
 * 5 XCRS (optional), 6 MSRS {u32 count <= 256, then count entries
 * {u32 index, u32 pad 0, u64 value}}, 7 LAPIC (only with an in-kernel
 * irqchip), 8 VCPU_EVENTS, 9 MP_STATE, 10 DEBUGREGS; the KVM structs as the
 * ioctls give them, their sizes fixed. Save leaves out an MSR this KVM
 * does not have.
 *
 * The vCPU must be outside KVM_RUN (paused) on both sides. Loading checks
 * the whole blob (version, part sizes and counts: -EPROTO) and then that it
 * fits the destination (bank count against the destination's MCG_CAP, the
 * MSRs, XSAVE size and LAPIC it has: -EINVAL) before it sets anything: a
 * bad blob changes nothing. Should KVM still refuse a value (a
 * non-canonical LSTAR), the vCPU's previous state is put back.
 */
#ifndef VMRAS_VMM_X86_STATE_H
#define VMRAS_VMM_X86_STATE_H

#include <stddef.h>

#include "error.h"
#include "x86.h"

/* Save vcpu_fd's state into a malloc'd blob (*buf, *len). */
int x86_state_save(const struct x86_machine *m, int vcpu_fd, void **buf, size_t *len,
		   struct vmm_error *e);
/* Check buf whole, then set vcpu_fd's state from it. */
int x86_state_load(const struct x86_machine *m, int vcpu_fd, const void *buf, size_t len,
		   struct vmm_error *e);
/*
 * The checks x86_state_load makes before it sets anything, without a vCPU
 * (the fuzz target): buf whole (-EPROTO) and, when dest is not NULL, that
 * it fits a vCPU of m whose own state x86_state_save gave as dest (-EINVAL;
 * -EPROTO if dest is malformed).
 */
int x86_state_check(const struct x86_machine *m, const void *buf, size_t len, const void *dest,
		    size_t dest_len, struct vmm_error *e);

#endif
