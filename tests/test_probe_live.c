// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras_probe_host() on this host, checked against what the kernel does:
 * the facts are compared with independent evidence (sysctl files, the
 * effect of KVM_X86_SETUP_MCE, a real UFFDIO_POISON), not with themselves.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "tap.h"
#include "uffd_util.h"
#include "vmras/probe.h"

static void test_kernel(const struct vmras_probe *p)
{
	bool mf = access("/proc/sys/vm/memory_failure_recovery", F_OK) == 0;

	ok(p->kernel.release[0] != '\0', "kernel release read (%s)", p->kernel.release);
	is_int(p->kernel.memory_failure, mf,
	       "memory-failure support matches /proc/sys/vm (%s here)",
	       mf ? "present" : "absent");
	ok(p->kernel.mce_kill_policy >= 0, "PR_MCE_KILL_GET answered");
	is_int(p->nproblems, 0, "no problems reading this host's /proc and /sys");
}

static void test_kvm(const struct vmras_probe *p)
{
	int kvm, vm, vcpu;
	__u64 mcg_cap;

	if (p->kvm.open_err) {
		tap_skip("KVM facts", "/dev/kvm cannot be opened: %s",
			 strerror(-p->kvm.open_err));
		return;
	}
	is_int(p->kvm.api_version, KVM_API_VERSION, "KVM API version 12");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	is_int(p->kvm.mce_banks, ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MCE),
	       "MCE bank count matches KVM_CHECK_EXTENSION (%d)", p->kvm.mce_banks);
	if (!(p->kvm.mce_cap_supported & MCG_SER_P)) {
		tap_skip("KVM_X86_SETUP_MCE with SER_P", "KVM does not offer SER_P");
		close(kvm);
		return;
	}
	/* The proof that SER_P is real: a vCPU accepts it. */
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
	if (!ok(vcpu >= 0, "created a VM and a vCPU")) {
		close(kvm);
		return;
	}
	mcg_cap = MCG_CTL_P | MCG_SER_P | 10;
	is_int(ioctl(vcpu, KVM_X86_SETUP_MCE, &mcg_cap), 0,
	       "KVM_X86_SETUP_MCE(CTL_P|SER_P, 10 banks) accepted");
	mcg_cap = (__u64)p->kvm.mce_banks + 1;
	ok(ioctl(vcpu, KVM_X86_SETUP_MCE, &mcg_cap) < 0 && errno == EINVAL,
	   "KVM_X86_SETUP_MCE with more banks than reported refused");
	close(vcpu);
	close(vm);
	close(kvm);
}

static void test_uffd_poison(const struct vmras_probe *p)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	struct uffdio_register reg;
	struct uffdio_poison poison;
	siginfo_t si;
	char *page;
	int fd;

	if (p->uffd.syscall_err && (!p->uffd.dev_present || p->uffd.dev_err)) {
		tap_skip("UFFDIO_POISON", "userfaultfd unavailable: %s",
			 strerror(-p->uffd.syscall_err));
		return;
	}
	if (!(p->uffd.features & UFFD_FEATURE_POISON)) {
		tap_skip("UFFDIO_POISON", "the kernel does not offer UFFD_FEATURE_POISON");
		return;
	}
	ok(p->uffd.ioctls & (1ULL << _UFFDIO_API), "UFFDIO_API reported in ioctls");
	fd = test_uffd_open(UFFD_FEATURE_POISON);
	if (!ok(fd >= 0, "userfaultfd with FEATURE_POISON opened"))
		return;
	page = mmap(NULL, (size_t)pagesz, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg = (struct uffdio_register){
		.range = { .start = (uintptr_t)page, .len = (uint64_t)pagesz },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	is_int(kabi_ioctl(fd, UFFDIO_REGISTER, &reg), 0, "registered an anon page");
	ok(reg.ioctls & (1ULL << _UFFDIO_POISON), "range offers UFFDIO_POISON");
	poison = (struct uffdio_poison){
		.range = { .start = (uintptr_t)page, .len = (uint64_t)pagesz },
	};
	is_int(kabi_ioctl(fd, UFFDIO_POISON, &poison), 0, "UFFDIO_POISON succeeded");
	is_int(poison.updated, pagesz, "UFFDIO_POISON reports one page done");
	if (ok(test_read_sigbus(page, &si), "reading the poisoned page raises SIGBUS")) {
		ok(si.si_addr == page, "SIGBUS si_addr is the page");
		ok(si.si_code == BUS_ADRERR || si.si_code == BUS_MCEERR_AR,
		   "SIGBUS si_code %d is BUS_ADRERR or BUS_MCEERR_AR", si.si_code);
	}
	munmap(page, (size_t)pagesz);
	close(fd);
}

static void test_hugepages(const struct vmras_probe *p)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	unsigned int n = 0;
	struct dirent *de;

	if (!d) {
		tap_skip("huge page sizes", "/sys/kernel/mm/hugepages: %s", strerror(errno));
		return;
	}
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, "hugepages-", 10);
	closedir(d);
	is_int(p->hugepages.nsizes, n, "every huge page size listed (%u)", n);
	for (unsigned int i = 0; i < p->hugepages.nsizes; i++)
		tap_diag("huge page size %llu bytes, total %llu",
			 (unsigned long long)p->hugepages.sizes[i].size,
			 (unsigned long long)p->hugepages.sizes[i].total);
}

int main(void)
{
	struct vmras_probe p;

	if (!is_int(vmras_probe_host(&p, NULL), 0, "probe of this host ran"))
		return tap_done();
	test_kernel(&p);
	test_kvm(&p);
	test_uffd_poison(&p);
	test_hugepages(&p);
	return tap_done();
}
