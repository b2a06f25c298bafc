/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What this host can do about guest memory errors.
 *
 * vmras_probe_host() gathers facts (kernel, KVM, userfaultfd, huge pages,
 * privileges) and a verdict per recovery strategy, so a VMM can pick one
 * that works here. A fact that is absent is a fact (memory_failure sysctls
 * missing means no CONFIG_MEMORY_FAILURE); a file that exists but cannot be
 * read or parsed is a problem, listed in problems[].
 */
#ifndef VMRAS_PROBE_H
#define VMRAS_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(default)

#define VMRAS_PROBE_MAX_HUGEPAGE_SIZES 8
#define VMRAS_PROBE_MAX_MOUNTS 16
#define VMRAS_PROBE_MAX_PROBLEMS 16

struct vmras_probe_kernel {
	char release[128];	/* "" if unknown */
	char machine[65];	/* architecture this library was built for */
	bool memory_failure;	/* /proc/sys/vm/memory_failure_* exist */
	int early_kill;		/* memory_failure_early_kill, -1 if absent */
	int recovery;		/* memory_failure_recovery, -1 if absent */
	int mce_kill_policy;	/* prctl(PR_MCE_KILL_GET), or -errno */
	bool hw_corrupted_known;
	uint64_t hw_corrupted_kib; /* HardwareCorrupted in /proc/meminfo */
};

/* Each int capability is the KVM_CHECK_EXTENSION result, or -errno. */
struct vmras_probe_kvm {
	bool probed;
	int open_err;		/* 0 if /dev/kvm opened, else -errno */
	int api_version;
	int mce_banks;		/* KVM_CAP_MCE: bank count, 0 if none */
	int mce_cap_err;	/* KVM_X86_GET_MCE_CAP_SUPPORTED: 0 or -errno */
	uint64_t mce_cap_supported; /* MCG_CAP bits KVM can emulate */
	int memory_fault_info;
	int user_memory2;
	int guest_memfd;
	uint64_t guest_memfd_flags; /* GUEST_MEMFD_FLAG_* on a default VM */
	int vm_types_err;
	uint64_t vm_types;	/* bit n: VM type n can be created */
	/*
	 * 1: a guest access to RAM the host cannot use comes back as
	 * KVM_EXIT_MMIO (KVM emulates guest instructions), 0: as -EFAULT or
	 * SIGBUS (hardware virtualization), -errno: could not tell.
	 */
	int ram_access_as_mmio;
	bool arm64;		/* the caps below apply to this build */
	int arm_inject_serror_esr;
	int arm_inject_ext_dabt;
	int arm_sea_to_user;
};

struct vmras_probe_uffd {
	bool probed;
	int syscall_err;	/* userfaultfd(2): 0 works, else -errno */
	bool user_mode_only;	/* it worked only with UFFD_USER_MODE_ONLY */
	bool dev_present;	/* /dev/userfaultfd exists */
	int dev_err;		/* USERFAULTFD_IOC_NEW: 0 works, else -errno */
	int unprivileged;	/* vm.unprivileged_userfaultfd, -1 if absent */
	int api_err;		/* UFFDIO_API handshake: 0 or -errno */
	uint64_t features;	/* UFFD_FEATURE_* the kernel offers */
	uint64_t ioctls;	/* 1 << _UFFDIO_* available after UFFDIO_API */
};

struct vmras_probe_hugepage_size {
	uint64_t size;		/* bytes */
	uint64_t total, free, reserved, surplus;
};

struct vmras_probe_mount {
	char path[256];
	uint64_t page_size;	/* bytes */
};

struct vmras_probe_hugepages {
	uint64_t default_size;	/* Hugepagesize in /proc/meminfo, 0 unknown */
	unsigned int nsizes;
	struct vmras_probe_hugepage_size sizes[VMRAS_PROBE_MAX_HUGEPAGE_SIZES];
	unsigned int nmounts;
	struct vmras_probe_mount mounts[VMRAS_PROBE_MAX_MOUNTS];
	char thp_enabled[16];	/* "always", "madvise", "never"; "" unknown */
	char thp_shmem_enabled[16];
};

struct vmras_probe_privileges {
	bool known;
	uint64_t cap_effective;	/* bit n: capability n (CAP_SYS_ADMIN 21) */
};

enum vmras_strategy {
	VMRAS_STRATEGY_HOST_REPORTS,	/* kernel sends SIGBUS AO/AR */
	VMRAS_STRATEGY_UFFD_POISON,	/* contain without privileges */
	VMRAS_STRATEGY_MADV_HWPOISON,	/* contain with MADV_HWPOISON */
	VMRAS_STRATEGY_SPLIT_HUGEPAGES,	/* lose 4 KiB, not a huge page */
	VMRAS_STRATEGY_LAZY_MEMORY,	/* serve memory on demand */
	VMRAS_STRATEGY_X86_MCE,		/* machine checks into x86 guests */
	VMRAS_STRATEGY_ARM64_SEA,	/* SEA + CPER into arm64 guests */
	VMRAS_STRATEGY_GUEST_MEMFD,	/* guest RAM from guest_memfd, errors handled */
	VMRAS_STRATEGY_COUNT
};

enum vmras_verdict_state {
	VMRAS_UNAVAILABLE,
	VMRAS_AVAILABLE,
	VMRAS_NOT_APPLICABLE,	/* another architecture's strategy */
};

struct vmras_verdict {
	enum vmras_verdict_state state;
	char reason[192];
};

struct vmras_probe_problem {
	char path[256];		/* relative to the probe root */
	int err;		/* -errno; -EINVAL: malformed content */
	char detail[96];
};

struct vmras_probe {
	struct vmras_probe_kernel kernel;
	struct vmras_probe_kvm kvm;
	struct vmras_probe_uffd uffd;
	struct vmras_probe_hugepages hugepages;
	struct vmras_probe_privileges privileges;
	struct vmras_verdict verdicts[VMRAS_STRATEGY_COUNT];
	unsigned int nproblems;
	unsigned int problems_dropped;	/* beyond VMRAS_PROBE_MAX_PROBLEMS */
	struct vmras_probe_problem problems[VMRAS_PROBE_MAX_PROBLEMS];
};

/* Skip /dev/kvm and userfaultfd (for tests on recorded trees). */
#define VMRAS_PROBE_NO_DEVICES (1u << 0)

struct vmras_probe_opts {
	const char *root;	/* read /proc and /sys under this; NULL: "/" */
	unsigned int flags;	/* VMRAS_PROBE_* */
};

/*
 * Fill *p. Returns 0 when probing ran (whatever it found; see
 * p->nproblems), -errno when it could not run at all (root unreadable).
 */
int vmras_probe_host(struct vmras_probe *p, const struct vmras_probe_opts *opts);

/* Recompute p->verdicts from the facts in *p (vmras_probe_host does it). */
void vmras_probe_decide(struct vmras_probe *p);

/* Names, for display and JSON. Unknown values give "unknown". */
const char *vmras_strategy_name(enum vmras_strategy s);	/* "uffd_poison" */
const char *vmras_strategy_title(enum vmras_strategy s); /* a sentence */
const char *vmras_verdict_state_name(enum vmras_verdict_state v);
/* Name of UFFD_FEATURE bit n ("POISON"), NULL if the bit has no name. */
const char *vmras_uffd_feature_name(unsigned int bit);
/* Name of _UFFDIO_* ioctl number n ("POISON"), NULL if unknown. */
const char *vmras_uffd_ioctl_name(unsigned int nr);
/* Name of MCG_CAP bit n ("SER_P"), NULL if it has none. */
const char *vmras_mcg_cap_bit_name(unsigned int bit);
/* Name of x86 KVM VM type n ("SW_PROTECTED_VM"), NULL if unknown. */
const char *vmras_kvm_vm_type_name(unsigned int type);

#pragma GCC visibility pop

#endif /* VMRAS_PROBE_H */
