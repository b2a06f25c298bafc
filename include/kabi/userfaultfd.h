/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * userfaultfd ABI newer than the distribution's uapi headers (6.1):
 * UFFDIO_POISON (6.6), UFFDIO_MOVE (6.8) and the feature bits up to MOVE.
 * Written from include/uapi/linux/userfaultfd.h and
 * Documentation/admin-guide/mm/userfaultfd.rst; guarded so newer system
 * headers win.
 */
#ifndef VMRAS_KABI_USERFAULTFD_H
#define VMRAS_KABI_USERFAULTFD_H

#include <linux/ioctl.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

/* Feature bits (uffdio_api.features), in kernel order. */
#ifndef UFFD_FEATURE_PAGEFAULT_FLAG_WP
#define UFFD_FEATURE_PAGEFAULT_FLAG_WP (1 << 0)
#endif
#ifndef UFFD_FEATURE_EVENT_FORK
#define UFFD_FEATURE_EVENT_FORK (1 << 1)
#endif
#ifndef UFFD_FEATURE_EVENT_REMAP
#define UFFD_FEATURE_EVENT_REMAP (1 << 2)
#endif
#ifndef UFFD_FEATURE_EVENT_REMOVE
#define UFFD_FEATURE_EVENT_REMOVE (1 << 3)
#endif
#ifndef UFFD_FEATURE_MISSING_HUGETLBFS
#define UFFD_FEATURE_MISSING_HUGETLBFS (1 << 4)
#endif
#ifndef UFFD_FEATURE_MISSING_SHMEM
#define UFFD_FEATURE_MISSING_SHMEM (1 << 5)
#endif
#ifndef UFFD_FEATURE_EVENT_UNMAP
#define UFFD_FEATURE_EVENT_UNMAP (1 << 6)
#endif
#ifndef UFFD_FEATURE_SIGBUS
#define UFFD_FEATURE_SIGBUS (1 << 7)
#endif
#ifndef UFFD_FEATURE_THREAD_ID
#define UFFD_FEATURE_THREAD_ID (1 << 8)
#endif
#ifndef UFFD_FEATURE_MINOR_HUGETLBFS
#define UFFD_FEATURE_MINOR_HUGETLBFS (1 << 9)
#endif
#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

/* ioctl numbers; the bits uffdio_api.ioctls / uffdio_register.ioctls use. */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	/* Bytes poisoned, or negative errno; written by the kernel. */
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	/* Bytes moved, or negative errno; written by the kernel. */
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

_Static_assert(sizeof(struct uffdio_api) == 24, "uffdio_api size");
_Static_assert(sizeof(struct uffdio_poison) == 32, "uffdio_poison size");
_Static_assert(sizeof(struct uffdio_move) == 40, "uffdio_move size");
_Static_assert(_IOC_SIZE(UFFDIO_POISON) == sizeof(struct uffdio_poison),
	       "UFFDIO_POISON argument size");
_Static_assert(_IOC_SIZE(UFFDIO_MOVE) == sizeof(struct uffdio_move),
	       "UFFDIO_MOVE argument size");
_Static_assert(_IOC_SIZE(UFFDIO_API) == sizeof(struct uffdio_api),
	       "UFFDIO_API argument size");

#endif /* VMRAS_KABI_USERFAULTFD_H */
