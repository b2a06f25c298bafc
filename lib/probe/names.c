// SPDX-License-Identifier: GPL-2.0-or-later
/* Name tables for probe facts; each checked against its count. */
#include <stddef.h>

#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "kabi/userfaultfd.h"
#include "vmras/probe.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BITNO(mask) (__builtin_ctzll((unsigned long long)(mask)))

static const char *const strategy_names[] = {
	[VMRAS_STRATEGY_HOST_REPORTS] = "host_reports_errors",
	[VMRAS_STRATEGY_UFFD_POISON] = "uffd_poison",
	[VMRAS_STRATEGY_MADV_HWPOISON] = "madv_hwpoison",
	[VMRAS_STRATEGY_SPLIT_HUGEPAGES] = "split_hugepages",
	[VMRAS_STRATEGY_LAZY_MEMORY] = "lazy_memory",
	[VMRAS_STRATEGY_X86_MCE] = "x86_mce_injection",
	[VMRAS_STRATEGY_ARM64_SEA] = "arm64_sea_injection",
	[VMRAS_STRATEGY_GUEST_MEMFD] = "guest_memfd_ram",
};
_Static_assert(ARRAY_SIZE(strategy_names) == VMRAS_STRATEGY_COUNT,
	       "one name per strategy");

static const char *const strategy_titles[] = {
	[VMRAS_STRATEGY_HOST_REPORTS] = "host reports memory errors to the VMM",
	[VMRAS_STRATEGY_UFFD_POISON] =
		"contain poisoned page without privileges (UFFDIO_POISON)",
	[VMRAS_STRATEGY_MADV_HWPOISON] = "contain with MADV_HWPOISON",
	[VMRAS_STRATEGY_SPLIT_HUGEPAGES] = "split huge pages to 4K",
	[VMRAS_STRATEGY_LAZY_MEMORY] = "lazy memory through userfaultfd",
	[VMRAS_STRATEGY_X86_MCE] = "inject machine checks into x86 guests",
	[VMRAS_STRATEGY_ARM64_SEA] = "inject SEA + CPER into arm64 guests",
	[VMRAS_STRATEGY_GUEST_MEMFD] = "guest RAM from guest_memfd (--backend guest-memfd)",
};
_Static_assert(ARRAY_SIZE(strategy_titles) == VMRAS_STRATEGY_COUNT,
	       "one title per strategy");

static const char *const verdict_names[] = {
	[VMRAS_UNAVAILABLE] = "unavailable",
	[VMRAS_AVAILABLE] = "available",
	[VMRAS_NOT_APPLICABLE] = "not_applicable",
};

static const char *const uffd_feature_names[] = {
	[BITNO(UFFD_FEATURE_PAGEFAULT_FLAG_WP)] = "PAGEFAULT_FLAG_WP",
	[BITNO(UFFD_FEATURE_EVENT_FORK)] = "EVENT_FORK",
	[BITNO(UFFD_FEATURE_EVENT_REMAP)] = "EVENT_REMAP",
	[BITNO(UFFD_FEATURE_EVENT_REMOVE)] = "EVENT_REMOVE",
	[BITNO(UFFD_FEATURE_MISSING_HUGETLBFS)] = "MISSING_HUGETLBFS",
	[BITNO(UFFD_FEATURE_MISSING_SHMEM)] = "MISSING_SHMEM",
	[BITNO(UFFD_FEATURE_EVENT_UNMAP)] = "EVENT_UNMAP",
	[BITNO(UFFD_FEATURE_SIGBUS)] = "SIGBUS",
	[BITNO(UFFD_FEATURE_THREAD_ID)] = "THREAD_ID",
	[BITNO(UFFD_FEATURE_MINOR_HUGETLBFS)] = "MINOR_HUGETLBFS",
	[BITNO(UFFD_FEATURE_MINOR_SHMEM)] = "MINOR_SHMEM",
	[BITNO(UFFD_FEATURE_EXACT_ADDRESS)] = "EXACT_ADDRESS",
	[BITNO(UFFD_FEATURE_WP_HUGETLBFS_SHMEM)] = "WP_HUGETLBFS_SHMEM",
	[BITNO(UFFD_FEATURE_WP_UNPOPULATED)] = "WP_UNPOPULATED",
	[BITNO(UFFD_FEATURE_POISON)] = "POISON",
	[BITNO(UFFD_FEATURE_WP_ASYNC)] = "WP_ASYNC",
	[BITNO(UFFD_FEATURE_MOVE)] = "MOVE",
};
_Static_assert(ARRAY_SIZE(uffd_feature_names) == 17, "UFFD features up to MOVE");

static const char *const uffd_ioctl_names[] = {
	[_UFFDIO_REGISTER] = "REGISTER",
	[_UFFDIO_UNREGISTER] = "UNREGISTER",
	[_UFFDIO_WAKE] = "WAKE",
	[_UFFDIO_COPY] = "COPY",
	[_UFFDIO_ZEROPAGE] = "ZEROPAGE",
	[_UFFDIO_MOVE] = "MOVE",
	[_UFFDIO_WRITEPROTECT] = "WRITEPROTECT",
	[_UFFDIO_CONTINUE] = "CONTINUE",
	[_UFFDIO_POISON] = "POISON",
	[_UFFDIO_API] = "API",
};

static const char *const mcg_cap_names[] = {
	[BITNO(MCG_CTL_P)] = "CTL_P",
	[BITNO(MCG_EXT_P)] = "EXT_P",
	[BITNO(MCG_CMCI_P)] = "CMCI_P",
	[BITNO(MCG_TES_P)] = "TES_P",
	[BITNO(MCG_SER_P)] = "SER_P",
	[BITNO(MCG_ELOG_P)] = "ELOG_P",
	[BITNO(MCG_LMCE_P)] = "LMCE_P",
};

static const char *const vm_type_names[] = {
	[KVM_X86_DEFAULT_VM] = "DEFAULT_VM",
	[KVM_X86_SW_PROTECTED_VM] = "SW_PROTECTED_VM",
	[KVM_X86_SEV_VM] = "SEV_VM",
	[KVM_X86_SEV_ES_VM] = "SEV_ES_VM",
	[KVM_X86_SNP_VM] = "SNP_VM",
	[KVM_X86_TDX_VM] = "TDX_VM",
};

static const char *lookup(const char *const *table, size_t n, size_t i)
{
	return i < n ? table[i] : NULL;
}

#define LOOKUP(table, i) lookup(table, ARRAY_SIZE(table), (size_t)(i))

const char *vmras_strategy_name(enum vmras_strategy s)
{
	const char *n = LOOKUP(strategy_names, s);

	return n ? n : "unknown";
}

const char *vmras_strategy_title(enum vmras_strategy s)
{
	const char *n = LOOKUP(strategy_titles, s);

	return n ? n : "unknown";
}

const char *vmras_verdict_state_name(enum vmras_verdict_state v)
{
	const char *n = LOOKUP(verdict_names, v);

	return n ? n : "unknown";
}

const char *vmras_uffd_feature_name(unsigned int bit)
{
	return LOOKUP(uffd_feature_names, bit);
}

const char *vmras_uffd_ioctl_name(unsigned int nr)
{
	return LOOKUP(uffd_ioctl_names, nr);
}

const char *vmras_mcg_cap_bit_name(unsigned int bit)
{
	return LOOKUP(mcg_cap_names, bit);
}

const char *vmras_kvm_vm_type_name(unsigned int type)
{
	return LOOKUP(vm_type_names, type);
}
