/* SPDX-License-Identifier: GPL-2.0-or-later */
/* x86-64 machine setup: long-mode page tables, GDT, vCPU state, CPUID, MCA. */
#ifndef VMRAS_VMM_X86_H
#define VMRAS_VMM_X86_H

#include <stdint.h>

#include "error.h"
#include "ram.h"

struct kvm_cpuid2;

/* QEMU's defaults: MCG_CTL_P | MCG_SER_P and 10 banks. */
#define X86_MCE_BANKS_DEFAULT 10

struct x86_machine {
	struct kvm_cpuid2 *cpuid;	/* supported CPUID, MCE/MCA forced on */
	uint64_t mcg_cap;		/* what each vCPU gets from SETUP_MCE */
};

/* Read what KVM supports and decide CPUID and MCG_CAP for the guest. */
int x86_machine_init(struct x86_machine *m, int kvm_fd, struct vmm_error *e);
void x86_machine_destroy(struct x86_machine *m);

/* Write the GDT and identity page tables into guest RAM. */
int x86_setup_memory(const struct guest_ram *ram, struct vmm_error *e);

/* CPUID and MCA banks for a new vCPU (once). */
int x86_vcpu_init(const struct x86_machine *m, int vcpu_fd, unsigned int index,
		  struct vmm_error *e);

/*
 * Put a vCPU at the guest's entry in 64-bit mode: RDI = index,
 * RSI = boot info, RSP = its own stack; machine-check state cleared. Used at
 * power on and at every reset.
 */
int x86_vcpu_reset(const struct x86_machine *m, int vcpu_fd, unsigned int index,
		   uint64_t entry, struct vmm_error *e);

#endif
