// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guest/layout.h"
#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "x86.h"

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)
#define CPUID_1_EDX_MCE (1U << 7)
#define CPUID_1_EDX_MCA (1U << 14)
#define MAX_CPUID_ENTRIES 256

int x86_machine_init(struct x86_machine *m, int kvm_fd, struct vmm_error *e)
{
	struct kvm_cpuid2 *c;
	__u64 supported = 0;
	long banks, r;

	memset(m, 0, sizeof(*m));
	c = calloc(1, sizeof(*c) + MAX_CPUID_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return vmm_fail(e, -ENOMEM, "allocate CPUID table");
	c->nent = MAX_CPUID_ENTRIES;
	r = kabi__ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, (unsigned long)c);
	if (r < 0) {
		free(c);
		return vmm_fail(e, (int)r, "KVM_GET_SUPPORTED_CPUID");
	}
	/* The guest must be told that machine checks and MCA exist. */
	for (__u32 i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			c->entries[i].edx |= CPUID_1_EDX_MCE | CPUID_1_EDX_MCA;
	m->cpuid = c;

	banks = kabi_ioctl_val(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE);
	if (banks <= 0)
		return vmm_failf(e, -ENOTSUP, "KVM has no machine-check support (KVM_CAP_MCE)");
	r = kabi_ioctl(kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_X86_GET_MCE_CAP_SUPPORTED");
	if (banks > X86_MCE_BANKS_DEFAULT)
		banks = X86_MCE_BANKS_DEFAULT;
	m->mcg_cap = (supported & (MCG_CTL_P | MCG_SER_P)) | (uint64_t)banks;
	return 0;
}

void x86_machine_destroy(struct x86_machine *m)
{
	free(m->cpuid);
	m->cpuid = NULL;
}

int x86_setup_memory(const struct guest_ram *ram, struct vmm_error *e)
{
	uint64_t *gdt = (uint64_t *)(ram->hva + GL_GDT);
	uint64_t *pml4 = (uint64_t *)(ram->hva + GL_PML4);
	uint64_t *pdpt = (uint64_t *)(ram->hva + GL_PDPT);
	uint64_t gib = (ram->size + (1ULL << 30) - 1) >> 30;

	if (ram->size < GL_DATA_START + (1ULL << 20) || ram->size > GL_MAX_RAM)
		return vmm_failf(e, -EINVAL, "guest RAM must be between %llu MiB and %llu GiB",
				 (GL_DATA_START >> 20) + 1, GL_MAX_RAM >> 30);
	gdt[0] = 0;
	gdt[GL_SEL_CODE / 8] = 0x00af9a000000ffffULL; /* 64-bit code, DPL 0 */
	gdt[GL_SEL_DATA / 8] = 0x00cf92000000ffffULL; /* data, DPL 0 */

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = GL_PDPT | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t *pd = (uint64_t *)(ram->hva + GL_PD + g * 4096);

		pdpt[g] = (GL_PD + g * 4096) | PTE_P | PTE_RW;
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = ((g << 30) + (i << 21)) | PTE_P | PTE_RW | PTE_PS;
	}
	return 0;
}

int x86_vcpu_init(const struct x86_machine *m, int vcpu_fd, unsigned int index,
		  struct vmm_error *e)
{
	__u64 mcg_cap = m->mcg_cap;
	long r;

	/* Leaf 1 EBX[31:24] is the initial APIC ID: the vCPU's index. */
	for (__u32 i = 0; i < m->cpuid->nent; i++)
		if (m->cpuid->entries[i].function == 1)
			m->cpuid->entries[i].ebx = (m->cpuid->entries[i].ebx & 0x00ffffff) |
						   (index << 24);
	r = kabi__ioctl(vcpu_fd, KVM_SET_CPUID2, (unsigned long)m->cpuid);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_CPUID2 on vCPU %u", index);
	r = kabi_ioctl(vcpu_fd, KVM_X86_SETUP_MCE, &mcg_cap);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_X86_SETUP_MCE (MCG_CAP 0x%llx) on vCPU %u",
				(unsigned long long)mcg_cap, index);
	return 0;
}

/* MCG_STATUS and every bank's STATUS back to zero, as after power on. */
static int clear_mce_state(const struct x86_machine *m, int vcpu_fd)
{
	unsigned int banks = (unsigned int)(m->mcg_cap & MCG_BANKCNT_MASK);
	union {
		struct kvm_msrs hdr;
		char bytes[sizeof(struct kvm_msrs) + 33 * sizeof(struct kvm_msr_entry)];
	} msrs;
	long r;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.entries[0].index = MSR_IA32_MCG_STATUS;
	for (unsigned int i = 0; i < banks && i < 32; i++)
		msrs.hdr.entries[1 + i].index = MSR_IA32_MCx_STATUS(i);
	msrs.hdr.nmsrs = 1 + (banks < 32 ? banks : 32);
	r = kabi__ioctl(vcpu_fd, KVM_SET_MSRS, (unsigned long)&msrs);
	if (r < 0)
		return (int)r;
	return r == (long)msrs.hdr.nmsrs ? 0 : -EIO;
}

int x86_vcpu_reset(const struct x86_machine *m, int vcpu_fd, unsigned int index,
		   uint64_t entry, struct vmm_error *e)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = GL_SEL_CODE,
		.type = 0xb, .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = GL_SEL_DATA,
		.type = 0x3, .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_vcpu_events events = { 0 };
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = entry,
		.rdi = index,
		.rsi = GL_BOOT_INFO,
		.rsp = GL_PERCPU + (index + 1) * GL_PERCPU_SIZE,
		.rflags = 0x2,
	};
	long r;

	r = kabi_ioctl(vcpu_fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_GET_SREGS on vCPU %u", index);
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.gdt.base = GL_GDT;
	sregs.gdt.limit = 3 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = GL_PML4;
	sregs.cr4 = CR4_PAE; /* the guest sets CR4.MCE itself */
	sregs.efer = EFER_LME | EFER_LMA;
	memset(sregs.interrupt_bitmap, 0, sizeof(sregs.interrupt_bitmap));
	r = kabi_ioctl(vcpu_fd, KVM_SET_SREGS, &sregs);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_SREGS on vCPU %u", index);
	r = kabi_ioctl(vcpu_fd, KVM_SET_REGS, &regs);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_REGS on vCPU %u", index);
	/* Nothing queued from before the reset (an undelivered #MC, say). */
	r = kabi_ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &events);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_VCPU_EVENTS on vCPU %u", index);
	r = clear_mce_state(m, vcpu_fd);
	if (r < 0)
		return vmm_fail(e, (int)r, "clear machine-check MSRs on vCPU %u", index);
	return 0;
}
