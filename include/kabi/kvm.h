/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * KVM ABI newer than the distribution's uapi headers (Debian 12 ships 6.1).
 *
 * Written from the kernel's documented ABI (Documentation/virt/kvm/api.rst,
 * include/uapi/linux/kvm.h). Every definition is guarded so that newer
 * system headers win; the static asserts at the end catch a mismatch
 * between the two.
 */
#ifndef VMRAS_KABI_KVM_H
#define VMRAS_KABI_KVM_H

#include <stddef.h>
#include <linux/kvm.h>

/* Capabilities (KVM_CHECK_EXTENSION). */
#ifndef KVM_CAP_MCE
#define KVM_CAP_MCE 31
#endif
#ifndef KVM_CAP_ARM_INJECT_SERROR_ESR
#define KVM_CAP_ARM_INJECT_SERROR_ESR 158
#endif
#ifndef KVM_CAP_ARM_INJECT_EXT_DABT
#define KVM_CAP_ARM_INJECT_EXT_DABT 178
#endif
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif
#ifndef KVM_CAP_ARM_SEA_TO_USER
#define KVM_CAP_ARM_SEA_TO_USER 245
#endif

/* x86 VM types reported as a bit mask by KVM_CAP_VM_TYPES. */
#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#define KVM_X86_SW_PROTECTED_VM 1
#endif
#ifndef KVM_X86_SEV_VM
#define KVM_X86_SEV_VM 2
#define KVM_X86_SEV_ES_VM 3
#endif
#ifndef KVM_X86_SNP_VM
#define KVM_X86_SNP_VM 4
#endif
#ifndef KVM_X86_TDX_VM
#define KVM_X86_TDX_VM 5
#endif

/*
 * KVM_EXIT_MEMORY_FAULT: KVM_RUN fails (-EFAULT or -EHWPOISON) and
 * kvm_run.exit_reason says which guest range could not be faulted in.
 */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
#endif

/* The kvm_run exit union member for KVM_EXIT_MEMORY_FAULT. */
struct kabi_kvm_memory_fault {
	__u64 flags;
	__u64 gpa;
	__u64 size;
};

/* Where the exit union starts in struct kvm_run (stable since KVM's start). */
#define KABI_KVM_RUN_EXIT_UNION_OFFSET 32

static inline struct kabi_kvm_memory_fault *
kabi_kvm_run_memory_fault(struct kvm_run *run)
{
	return (struct kabi_kvm_memory_fault *)((char *)run +
						KABI_KVM_RUN_EXIT_UNION_OFFSET);
}

/* guest_memfd and the memslot ioctl that can name one. */
#ifndef KVM_SET_USER_MEMORY_REGION2
struct kvm_userspace_memory_region2 {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 \
	_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif

/* Layout checks: a wrong size here would corrupt the ioctl silently. */
_Static_assert(offsetof(struct kvm_run, hw) == KABI_KVM_RUN_EXIT_UNION_OFFSET,
	       "kvm_run exit union offset");
_Static_assert(sizeof(struct kabi_kvm_memory_fault) == 24, "memory_fault size");
_Static_assert(sizeof(struct kvm_userspace_memory_region2) == 160,
	       "kvm_userspace_memory_region2 size");
_Static_assert(offsetof(struct kvm_userspace_memory_region2, guest_memfd) == 40,
	       "kvm_userspace_memory_region2.guest_memfd offset");
_Static_assert(sizeof(struct kvm_create_guest_memfd) == 64,
	       "kvm_create_guest_memfd size");
_Static_assert(_IOC_SIZE(KVM_SET_USER_MEMORY_REGION2) ==
		       sizeof(struct kvm_userspace_memory_region2),
	       "KVM_SET_USER_MEMORY_REGION2 argument size");
_Static_assert(_IOC_SIZE(KVM_CREATE_GUEST_MEMFD) ==
		       sizeof(struct kvm_create_guest_memfd),
	       "KVM_CREATE_GUEST_MEMFD argument size");

#if defined(__x86_64__) || defined(__i386__)
_Static_assert(sizeof(struct kvm_x86_mce) == 64, "kvm_x86_mce size");
_Static_assert(_IOC_SIZE(KVM_X86_SET_MCE) == sizeof(struct kvm_x86_mce),
	       "KVM_X86_SET_MCE argument size");
_Static_assert(_IOC_SIZE(KVM_X86_GET_MCE_CAP_SUPPORTED) == sizeof(__u64),
	       "KVM_X86_GET_MCE_CAP_SUPPORTED argument size");
_Static_assert(_IOC_SIZE(KVM_X86_SETUP_MCE) == sizeof(__u64),
	       "KVM_X86_SETUP_MCE argument size");
#endif

#endif /* VMRAS_KABI_KVM_H */
