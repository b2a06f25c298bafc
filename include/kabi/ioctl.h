/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ioctl(2) with the argument size checked against the ioctl number at
 * compile time, and the result as a value or -errno (never -1 + errno).
 */
#ifndef VMRAS_KABI_IOCTL_H
#define VMRAS_KABI_IOCTL_H

#include <errno.h>
#include <sys/ioctl.h>

static inline long kabi__ioctl(int fd, unsigned long cmd, unsigned long arg)
{
	long r = ioctl(fd, cmd, arg);

	return r < 0 ? -errno : r;
}

/* For ioctls that take a pointer: sizeof(*argp) must match the number. */
#define kabi_ioctl(fd, cmd, argp)                                              \
	({                                                                     \
		_Static_assert(_IOC_SIZE(cmd) == sizeof(*(argp)),              \
			       "ioctl " #cmd ": argument size mismatch");      \
		kabi__ioctl((fd), (cmd), (unsigned long)(argp));               \
	})

/* For _IO ioctls, which take a value (or nothing) rather than a pointer. */
#define kabi_ioctl_val(fd, cmd, val)                                           \
	({                                                                     \
		_Static_assert(_IOC_SIZE(cmd) == 0,                            \
			       "ioctl " #cmd ": takes a pointer, not a value"); \
		kabi__ioctl((fd), (cmd), (unsigned long)(val));                \
	})

#endif /* VMRAS_KABI_IOCTL_H */
