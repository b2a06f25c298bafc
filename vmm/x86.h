/* SPDX-License-Identifier: GPL-2.0-or-later */
/* x86-64 machine setup: long-mode page tables, GDT, vCPU state, CPUID, MCA. */
#ifndef VMRAS_VMM_X86_H
#define VMRAS_VMM_X86_H

#include <stdint.h>

#include "error.h"
#include "ram.h"
#include "vmras/x86_mce.h"

struct kvm_cpuid2;

/* QEMU's defaults: MCG_CTL_P | MCG_SER_P and 10 banks. */
#define X86_MCE_BANKS_DEFAULT 10

/* The CPU vendor the guest is shown (vmras run --cpu-vendor). */
enum x86_cpu_vendor {
	X86_CPU_HOST,	/* the host's, as KVM's supported CPUID gives it */
	X86_CPU_INTEL,	/* GenuineIntel, family 6 model 0x55 (Skylake-SP) */
	X86_CPU_AMD,	/* AuthenticAMD, the host's family/model or 0x17/0x31 (Rome) */
};

struct x86_machine {
	struct kvm_cpuid2 *cpuid;	/* supported CPUID, MCE/MCA forced on, vendor set */
	uint64_t mcg_cap;		/* what each vCPU gets from SETUP_MCE */
	enum vmras_x86_vendor vendor;	/* the guest's, from cpuid (x86_cpuid_vendor) */
	char vendor_id[13];		/* CPUID leaf 0: "GenuineIntel", "AuthenticAMD" */
};

/*
 * Read what KVM supports and decide CPUID and MCG_CAP for the guest: the
 * vendor string and family/model of `want`; for an AMD guest also CPUID
 * 0x80000007 EBX SUCCOR and OverflowRecov (which KVM leaves zero), without
 * which a Linux AMD guest cannot recover from an uncorrected error.
 */
int x86_machine_init(struct x86_machine *m, int kvm_fd, enum x86_cpu_vendor want,
		     struct vmm_error *e);
void x86_machine_destroy(struct x86_machine *m);

/*
 * Whose machine-check rules a guest with this CPUID follows: AMD for
 * "AuthenticAMD" (and Hygon's "HygonGenuine", which Linux treats as AMD),
 * Intel otherwise.
 */
enum vmras_x86_vendor x86_cpuid_vendor(const struct kvm_cpuid2 *c);
const char *x86_vendor_name(enum vmras_x86_vendor v);	/* "intel", "amd" */
/* "host", "intel", "amd" (--cpu-vendor): 0, or -EINVAL. */
int x86_cpu_vendor_parse(const char *s, enum x86_cpu_vendor *out);

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
