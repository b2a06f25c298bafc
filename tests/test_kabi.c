// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The project's kernel ABI header against this kernel: the numbers and
 * struct layouts it defines must make the real ioctls do what they say.
 * (Sizes are also checked at compile time in the headers themselves.)
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "tap.h"
#include "uffd_util.h"

static void test_kvm_caps(int kvm)
{
	is_int(kabi_ioctl_val(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO) > 0, 1,
	       "KVM_CAP_MEMORY_FAULT_INFO (%d) answered", KVM_CAP_MEMORY_FAULT_INFO);
	is_int(kabi_ioctl_val(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2) > 0, 1,
	       "KVM_CAP_USER_MEMORY2 (%d) answered", KVM_CAP_USER_MEMORY2);
	ok(kabi_ioctl_val(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES) &
		   (1 << KVM_X86_DEFAULT_VM),
	   "KVM_CAP_VM_TYPES (%d) includes the default VM", KVM_CAP_VM_TYPES);
}

/* KVM reads our region2 layout: an overlapping second slot is refused. */
static void test_memory_region2(int vm)
{
	size_t sz = 2 << 20;
	void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct kvm_userspace_memory_region2 r = {
		.slot = 0,
		.guest_phys_addr = 0x100000,
		.memory_size = sz,
		.userspace_addr = (uintptr_t)mem,
	};

	is_int(kabi_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), 0,
	       "KVM_SET_USER_MEMORY_REGION2 slot 0 at 1 MiB");
	r.slot = 1;
	r.guest_phys_addr = 0x100000 + sz / 2;
	is_int(kabi_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), -EEXIST,
	       "overlapping slot 1 refused with EEXIST (gpa and size read right)");
	r.guest_phys_addr = 0x100000 + sz;
	is_int(kabi_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), 0,
	       "adjacent slot 1 accepted");
	munmap(mem, sz);
}

static void test_guest_memfd(int kvm, int vm)
{
	struct kvm_create_guest_memfd g = { .size = 2 << 20 };
	int fd;

	if (kabi_ioctl_val(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) <= 0) {
		tap_skip("KVM_CREATE_GUEST_MEMFD", "KVM_CAP_GUEST_MEMFD not supported");
		return;
	}
	g.flags = (uint64_t)kabi_ioctl_val(vm, KVM_CHECK_EXTENSION,
					   KVM_CAP_GUEST_MEMFD_FLAGS) &
		  GUEST_MEMFD_FLAG_MMAP;
	fd = (int)kabi_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);
	if (ok(fd >= 0, "KVM_CREATE_GUEST_MEMFD of 2 MiB (flags 0x%llx)",
	       (unsigned long long)g.flags)) {
		struct stat st;

		ok(fstat(fd, &st) == 0 && st.st_size == 2 << 20,
		   "guest_memfd has the size asked for");
		close(fd);
	}
	/* An unknown flag is refused: KVM read .flags where we wrote it. */
	g.flags |= 1ULL << 63;
	is_int(kabi_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g), -EINVAL,
	       "unknown guest_memfd flag refused (flags field in place)");
}

static void test_uffd_move(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct uffdio_register reg;
	struct uffdio_move mv;
	char *src, *dst;
	int fd = test_uffd_open(UFFD_FEATURE_MOVE);

	if (fd < 0) {
		tap_skip("UFFDIO_MOVE", "userfaultfd with UFFD_FEATURE_MOVE: %s",
			 strerror(-fd));
		return;
	}
	src = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(src, 0x5a, (size_t)pg);
	reg = (struct uffdio_register){
		.range = { .start = (uintptr_t)dst, .len = (uint64_t)pg },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	is_int(kabi_ioctl(fd, UFFDIO_REGISTER, &reg), 0, "registered destination");
	ok(reg.ioctls & (1ULL << _UFFDIO_MOVE), "range offers UFFDIO_MOVE");
	mv = (struct uffdio_move){ .dst = (uintptr_t)dst, .src = (uintptr_t)src,
				   .len = (uint64_t)pg };
	is_int(kabi_ioctl(fd, UFFDIO_MOVE, &mv), 0, "UFFDIO_MOVE succeeded");
	is_int(mv.move, pg, "UFFDIO_MOVE moved one page");
	is_int(dst[0] == 0x5a && dst[pg - 1] == 0x5a, 1, "moved bytes arrived");
	munmap(src, (size_t)pg);
	munmap(dst, (size_t)pg);
	close(fd);
}

int main(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

	is_int(MSR_IA32_MCx_STATUS(9), 0x425, "MC9_STATUS MSR number");
	is_int(_IOC_SIZE(UFFDIO_POISON), 32, "UFFDIO_POISON argument size");
	test_uffd_move();
	if (kvm < 0) {
		tap_skip("KVM ABI", "/dev/kvm: %s", strerror(errno));
		return tap_done();
	}
	test_kvm_caps(kvm);
	vm = (int)kabi_ioctl_val(kvm, KVM_CREATE_VM, 0);
	if (ok(vm >= 0, "KVM_CREATE_VM")) {
		test_memory_region2(vm);
		test_guest_memfd(kvm, vm);
		close(vm);
	}
	close(kvm);
	return tap_done();
}
