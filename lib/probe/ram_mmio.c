// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Does this host's KVM emulate guest instructions, so that a guest access
 * to a RAM page the host cannot use comes back as KVM_EXIT_MMIO (as on
 * this project's build hosts) rather than as -EFAULT / SIGBUS (hardware
 * virtualization)? Asked, not assumed: a one-page real-mode guest reads a
 * PROT_NONE page of its RAM and we look at how KVM_RUN ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"

#define PAGE 4096

/* The probe guest is x86 code: elsewhere nothing is asked (-EOPNOTSUPP). */
#if defined(__x86_64__) || defined(__i386__)

static int add_slot(int vm, unsigned int slot, uint64_t gpa, void *hva)
{
	struct kvm_userspace_memory_region m = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = PAGE,
		.userspace_addr = (uintptr_t)hva,
	};

	return (int)kabi_ioctl(vm, KVM_SET_USER_MEMORY_REGION, &m);
}

static int run_probe(int kvm, bool *emulates)
{
	/* mov al, [0x1000]; hlt */
	static const unsigned char code[] = { 0xa0, 0x00, 0x10, 0xf4 };
	int vm = -1, vcpu = -1, err;
	unsigned char *mem = MAP_FAILED, *hole = MAP_FAILED;
	struct kvm_run *run = MAP_FAILED;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };
	long size, r;

	vm = (int)kabi_ioctl_val(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return vm;
	mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hole = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || hole == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	memcpy(mem, code, sizeof(code));
	err = add_slot(vm, 0, 0, mem) ?: add_slot(vm, 1, PAGE, hole);
	if (err)
		goto out;
	vcpu = (int)kabi_ioctl_val(vm, KVM_CREATE_VCPU, 0);
	size = kabi_ioctl_val(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || size < (long)sizeof(*run)) {
		err = vcpu < 0 ? vcpu : -EINVAL;
		goto out;
	}
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	err = (int)kabi_ioctl(vcpu, KVM_GET_SREGS, &sregs);
	if (err)
		goto out;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	err = (int)kabi_ioctl(vcpu, KVM_SET_SREGS, &sregs) ?: (int)kabi_ioctl(vcpu, KVM_SET_REGS, &regs);
	if (err)
		goto out;
	r = kabi_ioctl_val(vcpu, KVM_RUN, 0);
	*emulates = r == 0 && run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == PAGE;
out:
	if (run != MAP_FAILED)
		munmap(run, (size_t)size);
	if (vcpu >= 0)
		close(vcpu);
	if (mem != MAP_FAILED)
		munmap(mem, PAGE);
	if (hole != MAP_FAILED)
		munmap(hole, PAGE);
	close(vm);
	return err;
}

int vr_detect_ram_mmio(bool *emulates)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), err;

	*emulates = false;
	if (kvm < 0)
		return -errno;
	err = run_probe(kvm, emulates);
	close(kvm);
	return err;
}
#else
int vr_detect_ram_mmio(bool *emulates)
{
	*emulates = false;
	return -EOPNOTSUPP;
}
#endif
