// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The real-KVM test harness (kvm_util.h). Returns -errno, never prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "kvm_util.h"

#define CR4_MCE (1ULL << 6)
#define CPUID_1_EDX_MCE (1U << 7)
#define CPUID_1_EDX_MCA (1U << 14)
#define MAX_CPUID_ENTRIES 256
#define MAX_MCE_BANKS 32

_Static_assert(offsetof(struct kvmt_mc_area, stop) == 0x08, "area layout: stop");
_Static_assert(offsetof(struct kvmt_mc_area, mc_count) == 0x0c, "area layout: mc_count");
_Static_assert(offsetof(struct kvmt_mc_area, mcg_status) == 0x10, "area layout: mcg_status");
_Static_assert(offsetof(struct kvmt_mc_area, misc) == 0x28, "area layout: misc");
_Static_assert(offsetof(struct kvmt_mc_area, loops) == 0x30, "area layout: loops");

/*
 * The machine-check guest, 16-bit real mode, loaded at KVMT_MC_CODE_GPA
 * (0x1000) with DS = SS = 0 and its area at 0x2000 (struct kvmt_mc_area).
 * Assembled with `as --32` (.code16, Intel syntax), linked at 0x1000; the
 * 0x66 prefixes make the 32-bit registers that rdmsr/wrmsr use (edx:eax,
 * ecx) and the dword memory operands.
 */
const uint8_t kvmt_mc_guest_code[] = {
	/* 1000 start: */
	0xfa,				/* cli */
	0x31, 0xc0,			/* xor ax, ax */
	0x8e, 0xd8,			/* mov ds, ax */
	0x8e, 0xd0,			/* mov ss, ax */
	0xbc, 0x00, 0x80,		/* mov sp, 0x8000 */
	0xc7, 0x06, 0x48, 0x00, 0x2f, 0x10, /* mov word [0x48], 0x102f  ; IVT[18].ip = handler */
	0xc7, 0x06, 0x4a, 0x00, 0x00, 0x00, /* mov word [0x4a], 0       ; IVT[18].cs = 0 */
	/* 1016 loop: */
	0x66, 0x83, 0x3e, 0x08, 0x20, 0x00, /* cmp dword [0x2008], 0    ; area.stop */
	0x75, 0x0c,			/* jne done */
	0x66, 0xff, 0x06, 0x30, 0x20,	/* inc dword [0x2030]         ; area.loops */
	0xa1, 0x30, 0x20,		/* mov ax, [0x2030] */
	0xe7, 0x10,			/* out 0x10, ax               ; KVMT_MC_PORT_LOOP */
	0xeb, 0xec,			/* jmp loop */
	/* 102a done: */
	0xe6, 0x12,			/* out 0x12, al               ; KVMT_MC_PORT_DONE */
	0xf4,				/* hlt */
	0xeb, 0xfb,			/* jmp done */
	/* 102f handler: */
	0x66, 0x60,			/* pushad */
	0x66, 0xb9, 0x7a, 0x01, 0x00, 0x00, /* mov ecx, 0x17a           ; MCG_STATUS */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x10, 0x20,		/* mov [0x2010], eax          ; area.mcg_status */
	0x66, 0x89, 0x16, 0x14, 0x20,	/* mov [0x2014], edx */
	0x66, 0x8b, 0x0e, 0x00, 0x20,	/* mov ecx, [0x2000]          ; area.bank */
	0x66, 0xc1, 0xe1, 0x02,		/* shl ecx, 2 */
	0x66, 0x81, 0xc1, 0x01, 0x04, 0x00, 0x00, /* add ecx, 0x401    ; MCi_STATUS */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x18, 0x20,		/* mov [0x2018], eax          ; area.status */
	0x66, 0x89, 0x16, 0x1c, 0x20,	/* mov [0x201c], edx */
	0x66, 0x41,			/* inc ecx                    ; MCi_ADDR */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x20, 0x20,		/* mov [0x2020], eax          ; area.addr */
	0x66, 0x89, 0x16, 0x24, 0x20,	/* mov [0x2024], edx */
	0x66, 0x41,			/* inc ecx                    ; MCi_MISC */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x28, 0x20,		/* mov [0x2028], eax          ; area.misc */
	0x66, 0x89, 0x16, 0x2c, 0x20,	/* mov [0x202c], edx */
	0x66, 0x83, 0x3e, 0x04, 0x20, 0x00, /* cmp dword [0x2004], 0    ; area.clear_mcip */
	0x74, 0x14,			/* je 1f */
	0x66, 0x83, 0xe9, 0x02,		/* sub ecx, 2                 ; MCi_STATUS */
	0x66, 0x31, 0xc0,		/* xor eax, eax */
	0x66, 0x31, 0xd2,		/* xor edx, edx */
	0x0f, 0x30,			/* wrmsr                      ; MCi_STATUS = 0 */
	0x66, 0xb9, 0x7a, 0x01, 0x00, 0x00, /* mov ecx, 0x17a */
	0x0f, 0x30,			/* wrmsr                      ; MCG_STATUS = 0 */
	/* 1093 1: */
	0x66, 0xff, 0x06, 0x0c, 0x20,	/* inc dword [0x200c]         ; area.mc_count */
	0xa1, 0x0c, 0x20,		/* mov ax, [0x200c] */
	0xe7, 0x11,			/* out 0x11, ax               ; KVMT_MC_PORT_MC */
	0x66, 0x61,			/* popad */
	0xcf,				/* iret */
};
const size_t kvmt_mc_guest_code_size = sizeof(kvmt_mc_guest_code);

int kvmt_vm_create(struct kvmt_vm **out)
{
	struct kvmt_vm *vm;
	long r;
	int err;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		err = -errno;
		goto fail;
	}
	r = kabi_ioctl_val(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (r < 0) {
		err = (int)r;
		goto fail;
	}
	vm->fd = (int)r;

	vm->cpuid = calloc(1, sizeof(*vm->cpuid) +
				      MAX_CPUID_ENTRIES * sizeof(vm->cpuid->entries[0]));
	if (!vm->cpuid) {
		err = -ENOMEM;
		goto fail;
	}
	vm->cpuid->nent = MAX_CPUID_ENTRIES;
	r = kabi_ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid);
	if (r < 0) {
		err = (int)r;
		goto fail;
	}
	/* Without these KVM refuses CR4.MCE (reserved bit) in KVM_SET_SREGS. */
	for (__u32 i = 0; i < vm->cpuid->nent; i++)
		if (vm->cpuid->entries[i].function == 1)
			vm->cpuid->entries[i].edx |= CPUID_1_EDX_MCE | CPUID_1_EDX_MCA;
	*out = vm;
	return 0;
fail:
	kvmt_vm_free(vm);
	return err;
}

static void vcpu_free(struct kvmt_vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	free(vcpu);
}

void kvmt_vm_free(struct kvmt_vm *vm)
{
	if (!vm)
		return;
	for (unsigned int i = 0; i < KVMT_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			vcpu_free(vm->vcpus[i]);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	/* After the VM is gone: KVM no longer maps these. */
	for (unsigned int i = 0; i < KVMT_MAX_RAM; i++)
		if (vm->ram[i].hva)
			munmap(vm->ram[i].hva, vm->ram[i].size);
	free(vm->cpuid);
	free(vm);
}

int kvmt_vm_set_memslot(struct kvmt_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
			void *hva, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};
	long ret = kabi_ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r);

	return ret < 0 ? (int)ret : 0;
}

int kvmt_vm_add_ram(struct kvmt_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		    uint32_t flags, void **hva)
{
	unsigned int i;
	void *mem;
	int err;

	for (i = 0; i < KVMT_MAX_RAM && vm->ram[i].hva; i++)
		;
	if (i == KVMT_MAX_RAM)
		return -ENOSPC;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	err = kvmt_vm_set_memslot(vm, slot, gpa, size, mem, flags);
	if (err) {
		munmap(mem, size);
		return err;
	}
	vm->ram[i].hva = mem;
	vm->ram[i].size = size;
	*hva = mem;
	return 0;
}

/* Real mode, every segment at base 0: IP is the GPA. */
static int vcpu_real_mode(struct kvmt_vcpu *vcpu, uint64_t entry)
{
	struct kvm_regs regs = { .rip = entry, .rflags = 0x2 };
	struct kvm_segment *segs[6];
	struct kvm_sregs sregs;
	long r;

	r = kabi_ioctl(vcpu->fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return (int)r;
	segs[0] = &sregs.cs;
	segs[1] = &sregs.ds;
	segs[2] = &sregs.es;
	segs[3] = &sregs.fs;
	segs[4] = &sregs.gs;
	segs[5] = &sregs.ss;
	/* Keep the reset state's attributes (16-bit, present); move to 0. */
	for (int i = 0; i < 6; i++) {
		segs[i]->base = 0;
		segs[i]->selector = 0;
		segs[i]->limit = 0xffff;
	}
	r = kabi_ioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
	if (r < 0)
		return (int)r;
	r = kabi_ioctl(vcpu->fd, KVM_SET_REGS, &regs);
	return r < 0 ? (int)r : 0;
}

int kvmt_vcpu_create(struct kvmt_vm *vm, unsigned int id, uint64_t entry,
		     struct kvmt_vcpu **out)
{
	struct kvmt_vcpu *vcpu;
	unsigned int slot;
	long r;
	int err;

	if (entry >= 0x10000)
		return -EINVAL;
	for (slot = 0; slot < KVMT_MAX_VCPUS && vm->vcpus[slot]; slot++)
		;
	if (slot == KVMT_MAX_VCPUS)
		return -ENOSPC;
	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = -1;

	r = kabi_ioctl_val(vm->fd, KVM_CREATE_VCPU, id);
	if (r < 0) {
		err = (int)r;
		goto fail;
	}
	vcpu->fd = (int)r;
	r = kabi_ioctl_val(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0) {
		err = (int)r;
		goto fail;
	}
	vcpu->run_size = (size_t)r;
	vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		err = -errno;
		vcpu->run = NULL;
		goto fail;
	}
	/* Leaf 1 EBX[31:24]: initial APIC ID. */
	for (__u32 i = 0; i < vm->cpuid->nent; i++)
		if (vm->cpuid->entries[i].function == 1)
			vm->cpuid->entries[i].ebx =
				(vm->cpuid->entries[i].ebx & 0x00ffffff) | (id << 24);
	r = kabi_ioctl(vcpu->fd, KVM_SET_CPUID2, vm->cpuid);
	if (r < 0) {
		err = (int)r;
		goto fail;
	}
	err = vcpu_real_mode(vcpu, entry);
	if (err)
		goto fail;
	vm->vcpus[slot] = vcpu;
	*out = vcpu;
	return 0;
fail:
	vcpu_free(vcpu);
	return err;
}

int kvmt_vcpu_run(struct kvmt_vcpu *vcpu)
{
	long r = kabi_ioctl_val(vcpu->fd, KVM_RUN, 0);

	return r < 0 ? (int)r : 0;
}

bool kvmt_exit_is_out(const struct kvm_run *run, uint16_t port)
{
	return run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
	       run->io.port == port;
}

uint32_t kvmt_io_value(const struct kvm_run *run)
{
	const uint8_t *data = (const uint8_t *)run + run->io.data_offset;

	switch (run->io.size) {
	case 1:
		return data[0];
	case 2: {
		uint16_t v;

		memcpy(&v, data, sizeof(v));
		return v;
	}
	default: {
		uint32_t v;

		memcpy(&v, data, sizeof(v));
		return v;
	}
	}
}

int kvmt_vcpu_run_to_out(struct kvmt_vcpu *vcpu, uint16_t port, unsigned int max_exits)
{
	for (unsigned int i = 0; i < max_exits; i++) {
		int err = kvmt_vcpu_run(vcpu);

		if (err)
			return err;
		if (vcpu->run->exit_reason != KVM_EXIT_IO ||
		    vcpu->run->io.direction != KVM_EXIT_IO_OUT)
			return -ENOMSG;
		if (vcpu->run->io.port == port)
			return 0;
	}
	return -ETIMEDOUT;
}

/* KVM_{GET,SET}_MSRS of one MSR: the ioctl returns how many it did. */
static int one_msr(struct kvmt_vcpu *vcpu, unsigned long cmd, uint32_t index,
		   uint64_t *value)
{
	union {
		struct kvm_msrs hdr;
		char bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} msrs;
	long r;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = 1;
	msrs.hdr.entries[0].index = index;
	msrs.hdr.entries[0].data = *value;
	r = kabi__ioctl(vcpu->fd, cmd, (unsigned long)&msrs);
	if (r < 0)
		return (int)r;
	if (r != 1)
		return -EIO;	/* KVM refused this MSR or this value */
	*value = msrs.hdr.entries[0].data;
	return 0;
}

_Static_assert(_IOC_SIZE(KVM_GET_MSRS) == sizeof(struct kvm_msrs), "KVM_GET_MSRS size");
_Static_assert(_IOC_SIZE(KVM_SET_MSRS) == sizeof(struct kvm_msrs), "KVM_SET_MSRS size");

int kvmt_vcpu_get_msr(struct kvmt_vcpu *vcpu, uint32_t index, uint64_t *value)
{
	*value = 0;
	return one_msr(vcpu, KVM_GET_MSRS, index, value);
}

int kvmt_vcpu_set_msr(struct kvmt_vcpu *vcpu, uint32_t index, uint64_t value)
{
	return one_msr(vcpu, KVM_SET_MSRS, index, &value);
}

int kvmt_mce_cap_supported(struct kvmt_vm *vm, uint64_t *mcg_cap)
{
	__u64 supported = 0;
	long banks, r;

	banks = kabi_ioctl_val(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MCE);
	if (banks < 0)
		return (int)banks;
	if (banks == 0)
		return -ENOTSUP;
	r = kabi_ioctl(vm->kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported);
	if (r < 0)
		return (int)r;
	if (banks > MAX_MCE_BANKS)
		banks = MAX_MCE_BANKS;
	*mcg_cap = (supported & ~MCG_BANKCNT_MASK) | (uint64_t)banks;
	return 0;
}

int kvmt_vcpu_setup_mce(struct kvmt_vcpu *vcpu, uint64_t mcg_cap)
{
	unsigned int banks = (unsigned int)(mcg_cap & MCG_BANKCNT_MASK), n = 0;
	union {
		struct kvm_msrs hdr;
		char bytes[sizeof(struct kvm_msrs) +
			   (1 + MAX_MCE_BANKS) * sizeof(struct kvm_msr_entry)];
	} msrs;
	struct kvm_sregs sregs;
	__u64 cap = mcg_cap;
	long r;

	if (banks > MAX_MCE_BANKS)
		return -EINVAL;
	r = kabi_ioctl(vcpu->fd, KVM_X86_SETUP_MCE, &cap);
	if (r < 0)
		return (int)r;
	r = kabi_ioctl(vcpu->fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		return (int)r;
	sregs.cr4 |= CR4_MCE;
	r = kabi_ioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
	if (r < 0)
		return (int)r;

	memset(&msrs, 0, sizeof(msrs));
	/* KVM refuses a nonzero MCG_CTL unless MCG_CTL_P says it exists. */
	if (mcg_cap & MCG_CTL_P) {
		msrs.hdr.entries[n].index = MSR_IA32_MCG_CTL;
		msrs.hdr.entries[n++].data = ~0ULL;
	}
	for (unsigned int i = 0; i < banks; i++) {
		msrs.hdr.entries[n].index = MSR_IA32_MCx_CTL(i);
		msrs.hdr.entries[n++].data = ~0ULL;
	}
	msrs.hdr.nmsrs = n;
	r = kabi__ioctl(vcpu->fd, KVM_SET_MSRS, (unsigned long)&msrs);
	if (r < 0)
		return (int)r;
	if (r != (long)n)
		return -EIO;	/* entry r was refused */
	vcpu->mcg_cap = mcg_cap;
	return 0;
}

int kvmt_vcpu_set_mce(struct kvmt_vcpu *vcpu, const struct kvm_x86_mce *mce)
{
	long r = kabi_ioctl(vcpu->fd, KVM_X86_SET_MCE, mce);

	return r < 0 ? (int)r : 0;
}

struct kvmt_mc_area *kvmt_mc_guest_load(void *ram, uint32_t bank)
{
	struct kvmt_mc_area *area = (struct kvmt_mc_area *)((char *)ram + KVMT_MC_AREA_GPA);

	memcpy((char *)ram + KVMT_MC_CODE_GPA, kvmt_mc_guest_code, kvmt_mc_guest_code_size);
	memset((void *)area, 0, sizeof(*area));
	area->bank = bank;
	return area;
}

_Static_assert(KVMT_MC_CODE_GPA + sizeof(kvmt_mc_guest_code) <= KVMT_MC_AREA_GPA,
	       "the machine-check guest's code runs into its area");

int kvmt_mc_vm_create(struct kvmt_mc_vm *f)
{
	int err;

	memset(f, 0, sizeof(*f));
	err = kvmt_vm_create(&f->vm);
	if (err)
		return err;
	err = kvmt_mce_cap_supported(f->vm, &f->mcg_cap);
	if (err)
		goto fail;
	err = kvmt_vm_add_ram(f->vm, 0, 0, KVMT_MC_RAM_SIZE, 0, &f->ram);
	if (err)
		goto fail;
	f->area = kvmt_mc_guest_load(f->ram, (uint32_t)(f->mcg_cap & MCG_BANKCNT_MASK) - 1);
	err = kvmt_vcpu_create(f->vm, 0, KVMT_MC_CODE_GPA, &f->vcpu);
	if (err)
		goto fail;
	err = kvmt_vcpu_setup_mce(f->vcpu, f->mcg_cap);
	if (err)
		goto fail;
	return 0;
fail:
	kvmt_vm_free(f->vm);
	memset(f, 0, sizeof(*f));
	return err;
}

void kvmt_mc_vm_free(struct kvmt_mc_vm *f)
{
	kvmt_vm_free(f->vm);
	memset(f, 0, sizeof(*f));
}
