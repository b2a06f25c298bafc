// SPDX-License-Identifier: GPL-2.0-or-later
/* From probe facts to a verdict, with a reason, per recovery strategy. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "kabi/userfaultfd.h"
#include "vmras/probe.h"

#define CAP_SYS_ADMIN_BIT 21

static void __attribute__((format(printf, 4, 5)))
set(struct vmras_probe *p, enum vmras_strategy s, enum vmras_verdict_state state,
    const char *fmt, ...)
{
	struct vmras_verdict *v = &p->verdicts[s];
	va_list ap;

	v->state = state;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

static bool uffd_usable(const struct vmras_probe *p)
{
	return p->uffd.probed && p->uffd.api_err == 0 &&
	       (p->uffd.syscall_err == 0 || p->uffd.dev_err == 0);
}

static bool has_cap_sys_admin(const struct vmras_probe *p)
{
	return p->privileges.known &&
	       (p->privileges.cap_effective >> CAP_SYS_ADMIN_BIT & 1);
}

static void decide_host_reports(struct vmras_probe *p)
{
	const struct vmras_probe_kernel *k = &p->kernel;

	if (!k->memory_failure)
		set(p, VMRAS_STRATEGY_HOST_REPORTS, VMRAS_UNAVAILABLE,
		    "kernel without CONFIG_MEMORY_FAILURE (no /proc/sys/vm/memory_failure_*): it never sends SIGBUS BUS_MCEERR_AO/AR");
	else if (k->recovery == 0)
		set(p, VMRAS_STRATEGY_HOST_REPORTS, VMRAS_UNAVAILABLE,
		    "vm.memory_failure_recovery=0: the kernel panics on a memory error instead of reporting it");
	else
		set(p, VMRAS_STRATEGY_HOST_REPORTS, VMRAS_AVAILABLE,
		    "memory_failure present; AO (early kill) %s",
		    k->early_kill == 1 ? "for every process (vm.memory_failure_early_kill=1)"
				       : "for threads that set PR_MCE_KILL_EARLY (vmras does)");
}

static void decide_uffd_poison(struct vmras_probe *p)
{
	if (!p->uffd.probed)
		set(p, VMRAS_STRATEGY_UFFD_POISON, VMRAS_UNAVAILABLE,
		    "userfaultfd not probed");
	else if (!uffd_usable(p))
		set(p, VMRAS_STRATEGY_UFFD_POISON, VMRAS_UNAVAILABLE,
		    "userfaultfd cannot be opened (syscall: %s, /dev/userfaultfd: %s)",
		    strerror(-p->uffd.syscall_err), strerror(-p->uffd.dev_err));
	else if (!(p->uffd.features & UFFD_FEATURE_POISON))
		set(p, VMRAS_STRATEGY_UFFD_POISON, VMRAS_UNAVAILABLE,
		    "UFFD_FEATURE_POISON not offered (needs Linux 6.6)");
	else
		set(p, VMRAS_STRATEGY_UFFD_POISON, VMRAS_AVAILABLE,
		    "UFFDIO_POISON offered; works on anon, shmem and hugetlb (whole huge pages)");
}

static void decide_madv_hwpoison(struct vmras_probe *p)
{
	if (!p->kernel.memory_failure)
		set(p, VMRAS_STRATEGY_MADV_HWPOISON, VMRAS_UNAVAILABLE,
		    "kernel without CONFIG_MEMORY_FAILURE: MADV_HWPOISON fails with EINVAL");
	else if (!has_cap_sys_admin(p))
		set(p, VMRAS_STRATEGY_MADV_HWPOISON, VMRAS_UNAVAILABLE,
		    "needs CAP_SYS_ADMIN, which this process lacks");
	else
		set(p, VMRAS_STRATEGY_MADV_HWPOISON, VMRAS_AVAILABLE,
		    "CONFIG_MEMORY_FAILURE and CAP_SYS_ADMIN present");
}

/* A userfaultfd that serves KVM's faults: the full syscall, or /dev/userfaultfd. */
static bool uffd_kernel_faults(const struct vmras_probe *p)
{
	return uffd_usable(p) && (!p->uffd.user_mode_only || p->uffd.dev_err == 0);
}

static void decide_split(struct vmras_probe *p)
{
	const uint64_t need = UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_SHMEM |
			      UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_SHMEM |
			      UFFD_FEATURE_MINOR_HUGETLBFS;

	if (p->hugepages.nsizes == 0)
		set(p, VMRAS_STRATEGY_SPLIT_HUGEPAGES, VMRAS_UNAVAILABLE,
		    "no hugetlb page sizes (no /sys/kernel/mm/hugepages)");
	else if (!uffd_usable(p) || (p->uffd.features & need) != need)
		set(p, VMRAS_STRATEGY_SPLIT_HUGEPAGES, VMRAS_UNAVAILABLE,
		    "needs userfaultfd with POISON, MISSING_SHMEM/HUGETLBFS and MINOR_SHMEM/HUGETLBFS "
		    "to poison 4 KiB and fill the rest lazily");
	else if (!uffd_kernel_faults(p))
		set(p, VMRAS_STRATEGY_SPLIT_HUGEPAGES, VMRAS_UNAVAILABLE,
		    "userfaultfd only in user-mode-only mode (no access to /dev/userfaultfd, "
		    "vm.unprivileged_userfaultfd=0, no CAP_SYS_PTRACE): KVM's faults on the 4 KiB "
		    "pages could not be served; a huge page with an error is lost whole");
	else
		set(p, VMRAS_STRATEGY_SPLIT_HUGEPAGES, VMRAS_AVAILABLE,
		    "hugetlb pages can be replaced by 4 KiB shared pages, bad one poisoned, rest filled on demand");
}

static void decide_lazy(struct vmras_probe *p)
{
	const uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS;

	if (!uffd_usable(p))
		set(p, VMRAS_STRATEGY_LAZY_MEMORY, VMRAS_UNAVAILABLE, "%s",
		    p->uffd.probed ? "userfaultfd cannot be opened" : "userfaultfd not probed");
	else if (!uffd_kernel_faults(p))
		set(p, VMRAS_STRATEGY_LAZY_MEMORY, VMRAS_UNAVAILABLE,
		    "userfaultfd only in user-mode-only mode (no access to /dev/userfaultfd, vm.unprivileged_userfaultfd=0, no CAP_SYS_PTRACE): KVM's faults would not be caught");
	else if ((p->uffd.features & want) != want)
		set(p, VMRAS_STRATEGY_LAZY_MEMORY, VMRAS_AVAILABLE,
		    "anonymous memory only (MISSING_SHMEM/MISSING_HUGETLBFS not offered)");
	else
		set(p, VMRAS_STRATEGY_LAZY_MEMORY, VMRAS_AVAILABLE,
		    "missing-page faults on anon, shmem and hugetlb memory");
}

static void decide_x86_mce(struct vmras_probe *p)
{
	const struct vmras_probe_kvm *k = &p->kvm;

	if (k->arm64)
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_NOT_APPLICABLE,
		    "not an x86 host");
	else if (!k->probed)
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_UNAVAILABLE, "KVM not probed");
	else if (k->open_err)
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_UNAVAILABLE,
		    "/dev/kvm: %s", strerror(-k->open_err));
	else if (k->mce_banks <= 0)
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_UNAVAILABLE,
		    "KVM_CAP_MCE not supported");
	else if (k->mce_cap_err || !(k->mce_cap_supported & MCG_SER_P))
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_UNAVAILABLE,
		    "KVM cannot emulate MCG_SER_P: guests could not tell recoverable errors apart");
	else
		set(p, VMRAS_STRATEGY_X86_MCE, VMRAS_AVAILABLE,
		    "KVM_X86_SET_MCE with %d banks, SER_P%s", k->mce_banks,
		    k->mce_cap_supported & MCG_LMCE_P ? ", LMCE_P" : "");
}

static void decide_arm64_sea(struct vmras_probe *p)
{
	const struct vmras_probe_kvm *k = &p->kvm;

	if (!k->arm64)
		set(p, VMRAS_STRATEGY_ARM64_SEA, VMRAS_NOT_APPLICABLE,
		    "not an arm64 host");
	else if (!k->probed || k->open_err)
		set(p, VMRAS_STRATEGY_ARM64_SEA, VMRAS_UNAVAILABLE, "KVM unavailable");
	else if (k->arm_inject_ext_dabt <= 0)
		set(p, VMRAS_STRATEGY_ARM64_SEA, VMRAS_UNAVAILABLE,
		    "KVM_CAP_ARM_INJECT_EXT_DABT not supported");
	else
		set(p, VMRAS_STRATEGY_ARM64_SEA, VMRAS_AVAILABLE,
		    "external data abort injection through KVM_SET_VCPU_EVENTS");
}

/*
 * guest_memfd RAM the VMM maps (MMAP | INIT_SHARED, Linux 6.18), and what
 * happens to its bad pages (docs/memory-errors.md, "guest_memfd").
 */
static void decide_guest_memfd(struct vmras_probe *p)
{
	const uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	const struct vmras_probe_kvm *k = &p->kvm;
	enum vmras_strategy s = VMRAS_STRATEGY_GUEST_MEMFD;

	if (!k->probed || k->open_err)
		set(p, s, VMRAS_UNAVAILABLE, "no usable /dev/kvm");
	else if (k->guest_memfd <= 0)
		set(p, s, VMRAS_UNAVAILABLE, "KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD, Linux 6.8)");
	else if ((k->guest_memfd_flags & want) != want)
		set(p, s, VMRAS_UNAVAILABLE,
		    "guest_memfd cannot be mapped shared by the VMM (MMAP|INIT_SHARED: Linux 6.18)");
	else if (p->verdicts[VMRAS_STRATEGY_UFFD_POISON].state != VMRAS_AVAILABLE)
		set(p, s, VMRAS_UNAVAILABLE,
		    "a bad page's mapping cannot be fenced: UFFDIO_POISON is unavailable");
	else if (k->ram_access_as_mmio == 1)
		set(p, s, VMRAS_AVAILABLE,
		    "KVM reads guest memory through the VMM's mapping here: a fenced page fails the guest's access too; no migration or lazy memory (no dirty log, no userfaultfd)");
	else if (p->kernel.memory_failure)
		set(p, s, VMRAS_AVAILABLE,
		    "the kernel poisons guest_memfd folios (KVM_RUN -EHWPOISON); pages vmras fences itself (injected, migrated) are fenced from the VMM only");
	else
		set(p, s, VMRAS_UNAVAILABLE,
		    "KVM maps guest_memfd into the guest directly and the kernel cannot poison (no CONFIG_MEMORY_FAILURE): a bad page could not be fenced from the guest");
}

void vmras_probe_decide(struct vmras_probe *p)
{
	decide_host_reports(p);
	decide_uffd_poison(p);
	decide_madv_hwpoison(p);
	decide_split(p);
	decide_lazy(p);
	decide_x86_mce(p);
	decide_arm64_sea(p);
	decide_guest_memfd(p);
}
