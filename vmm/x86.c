// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <stdbool.h>
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
/* CPUID 0x80000007 EBX (AMD RAS capabilities) */
#define CPUID_80000007_EBX_OVERFLOW_RECOV (1U << 0)
#define CPUID_80000007_EBX_SUCCOR (1U << 1)
#define CPUID_EXT_BASE 0x80000000U
#define CPUID_EXT_RAS 0x80000007U
#define MAX_CPUID_ENTRIES 256

/*
 * CPUID leaf 1 EAX: stepping [3:0], model [7:4], family [11:8], extended
 * model [19:16], extended family [27:20].
 * Intel family 6 model 0x55 stepping 4 (Skylake-SP): family 6 with
 * model >= 14 is where Linux expects Intel's MCA broadcast.
 * AMD family 0x17 (0xf + 8) model 0x31 stepping 0 (EPYC Rome).
 */
#define SIGNATURE_INTEL_SKX 0x00050654U
#define SIGNATURE_AMD_ROME 0x00830f10U

static struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, __u32 function)
{
	for (__u32 i = 0; i < c->nent; i++)
		if (c->entries[i].function == function && c->entries[i].index == 0)
			return (struct kvm_cpuid_entry2 *)&c->entries[i];
	return NULL;
}

/* The leaf, appended (all zero) if KVM did not list it. NULL: no room. */
static struct kvm_cpuid_entry2 *cpuid_get(struct kvm_cpuid2 *c, __u32 function)
{
	struct kvm_cpuid_entry2 *x = cpuid_find(c, function);

	if (x || c->nent >= MAX_CPUID_ENTRIES)
		return x;
	x = &c->entries[c->nent++];
	memset(x, 0, sizeof(*x));
	x->function = function;
	return x;
}

/* A 12-character vendor string as leaves 0 and 0x80000000 hold it: EBX, EDX, ECX. */
static void vendor_set(struct kvm_cpuid_entry2 *x, const char *id)
{
	memcpy(&x->ebx, id, 4);
	memcpy(&x->edx, id + 4, 4);
	memcpy(&x->ecx, id + 8, 4);
}

static void vendor_get(const struct kvm_cpuid_entry2 *x, char id[13])
{
	memcpy(id, &x->ebx, 4);
	memcpy(id + 4, &x->edx, 4);
	memcpy(id + 8, &x->ecx, 4);
	id[12] = 0;
}

enum vmras_x86_vendor x86_cpuid_vendor(const struct kvm_cpuid2 *c)
{
	const struct kvm_cpuid_entry2 *x = cpuid_find(c, 0);
	char id[13];

	if (!x)
		return VMRAS_X86_INTEL;
	vendor_get(x, id);
	return !strcmp(id, "AuthenticAMD") || !strcmp(id, "HygonGenuine") ? VMRAS_X86_AMD
									  : VMRAS_X86_INTEL;
}

const char *x86_vendor_name(enum vmras_x86_vendor v)
{
	return v == VMRAS_X86_AMD ? "amd" : "intel";
}

int x86_cpu_vendor_parse(const char *s, enum x86_cpu_vendor *out)
{
	static const char *const names[] = {
		[X86_CPU_HOST] = "host", [X86_CPU_INTEL] = "intel", [X86_CPU_AMD] = "amd",
	};

	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*out = (enum x86_cpu_vendor)i;
			return 0;
		}
	return -EINVAL;
}

/*
 * Show the guest the chosen vendor. The rest of KVM's supported CPUID
 * stays the host's: the test guest and the machine-check path need only
 * the vendor, the family/model Linux grades machine checks by, and (AMD)
 * the RAS bits of leaf 0x80000007.
 */
static int set_vendor(struct kvm_cpuid2 *c, enum x86_cpu_vendor want, struct vmm_error *e)
{
	struct kvm_cpuid_entry2 *l0 = cpuid_find(c, 0), *l1 = cpuid_find(c, 1), *ext, *ras;
	char host_id[13], guest_id[13];
	bool amd;

	if (!l0 || !l1)
		return vmm_failf(e, -ENOTSUP, "KVM's supported CPUID has no leaf %s", l0 ? "1" : "0");
	vendor_get(l0, host_id);
	switch (want) {
	case X86_CPU_HOST:
		break;
	case X86_CPU_INTEL:
		vendor_set(l0, "GenuineIntel");
		l1->eax = SIGNATURE_INTEL_SKX;
		break;
	case X86_CPU_AMD:
		vendor_set(l0, "AuthenticAMD");
		/* An AMD host's own family and model; elsewhere a plausible one. */
		if (strcmp(host_id, "AuthenticAMD"))
			l1->eax = SIGNATURE_AMD_ROME;
		break;
	}
	amd = x86_cpuid_vendor(c) == VMRAS_X86_AMD;
	vendor_get(l0, guest_id);
	ext = cpuid_find(c, CPUID_EXT_BASE);
	if (want != X86_CPU_HOST && ext) {
		/* AMD repeats the vendor here; Intel leaves it zero. */
		if (amd)
			vendor_set(ext, guest_id);
		else
			ext->ebx = ext->ecx = ext->edx = 0;
	}
	if (!amd) {
		ras = cpuid_find(c, CPUID_EXT_RAS);
		if (ras && want != X86_CPU_HOST)
			ras->ebx = 0; /* reserved on Intel */
		return 0;
	}
	/*
	 * AMD: offer SUCCOR (software uncorrectable error containment and
	 * recovery) and OverflowRecov, as QEMU's succor and overflow-recov
	 * CPU properties do. KVM leaves this leaf zero, and without SUCCOR a
	 * Linux AMD guest panics on any uncorrected error ("Uncorrected
	 * error without MCA Recovery").
	 */
	ext = cpuid_get(c, CPUID_EXT_BASE);
	if (!ext)
		return vmm_failf(e, -ENOSPC, "CPUID table full: cannot add leaf 0x%x", CPUID_EXT_BASE);
	if (ext->eax < CPUID_EXT_RAS) {
		ext->eax = CPUID_EXT_RAS;
		vendor_set(ext, guest_id);
	}
	ras = cpuid_get(c, CPUID_EXT_RAS);
	if (!ras)
		return vmm_failf(e, -ENOSPC, "CPUID table full: cannot add leaf 0x%x", CPUID_EXT_RAS);
	ras->ebx |= CPUID_80000007_EBX_SUCCOR | CPUID_80000007_EBX_OVERFLOW_RECOV;
	return 0;
}

int x86_machine_init(struct x86_machine *m, int kvm_fd, enum x86_cpu_vendor want,
		     struct vmm_error *e)
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
	m->cpuid = c;
	/* The guest must be told that machine checks and MCA exist. */
	for (__u32 i = 0; i < c->nent; i++)
		if (c->entries[i].function == 1)
			c->entries[i].edx |= CPUID_1_EDX_MCE | CPUID_1_EDX_MCA;
	r = set_vendor(c, want, e);
	if (r)
		return (int)r;
	m->vendor = x86_cpuid_vendor(c);
	vendor_get(cpuid_find(c, 0), m->vendor_id);

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
