/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test helpers: open a userfaultfd, catch a SIGBUS with sigsetjmp. */
#ifndef VMRAS_TEST_UFFD_UTIL_H
#define VMRAS_TEST_UFFD_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"

/*
 * A userfaultfd as libvmras opens one: the syscall (root, CAP_SYS_PTRACE or
 * vm.unprivileged_userfaultfd), else /dev/userfaultfd (whoever may open
 * it); -errno of the syscall when neither works.
 */
static inline int test_uffd_raw(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), err = errno, dev;

	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -err;
	fd = (int)kabi_ioctl_val(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd < 0 ? -err : fd;
}

/* A userfaultfd with the API handshake done, asking for features; -errno. */
static inline int test_uffd_open(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = test_uffd_raw();
	long r;

	if (fd < 0)
		return fd;
	r = kabi_ioctl(fd, UFFDIO_API, &api);
	if (r < 0) {
		close(fd);
		return (int)r;
	}
	return fd;
}

static sigjmp_buf test_sigbus_jmp;
static volatile siginfo_t test_sigbus_info;

static inline void test_sigbus_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	test_sigbus_info = *si;
	siglongjmp(test_sigbus_jmp, 1);
}

/* Read one byte at p; 1 and the siginfo if that raised SIGBUS, else 0. */
static inline int test_read_sigbus(const volatile char *p, siginfo_t *out)
{
	struct sigaction sa = { .sa_sigaction = test_sigbus_handler,
				.sa_flags = SA_SIGINFO }, old;
	int hit = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(test_sigbus_jmp, 1) == 0) {
		(void)*p;
	} else {
		hit = 1;
		*out = *(const siginfo_t *)&test_sigbus_info;
	}
	sigaction(SIGBUS, &old, NULL);
	return hit;
}

#endif
