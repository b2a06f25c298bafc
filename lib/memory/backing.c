// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Containment: after an error no one reads the bad page again. The page's
 * old contents are dropped and a poison marker is installed with
 * UFFDIO_POISON (no CAP_SYS_ADMIN needed), so any later access by the
 * guest (through KVM) or the VMM gets SIGBUS / -EHWPOISON, never data.
 *
 * Order matters: the range is registered with our userfaultfd before it
 * is emptied, so a racing access blocks on the (missing) page until the
 * marker is in place instead of faulting in a fresh page.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"

/*
 * Without CAP_SYS_PTRACE and vm.unprivileged_userfaultfd=1 only user-mode
 * faults can be caught; poisoning works all the same, and only the short
 * window before the marker is in place is unguarded against KVM's faults.
 */
static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd < 0 ? -errno : fd;
}

int contain_open_uffd(struct vmras *v)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = open_uffd();
	long r;

	if (fd < 0)
		return fd;
	r = kabi_ioctl(fd, UFFDIO_API, &api); /* features 0: learn what is offered */
	if (r < 0)
		goto err;
	close(fd);
	fd = open_uffd();
	if (fd < 0)
		return fd;
	if (!(api.features & UFFD_FEATURE_POISON)) {
		r = -EOPNOTSUPP;
		goto err;
	}
	api = (struct uffdio_api){
		.api = UFFD_API,
		.features = api.features & (UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_SHMEM |
					    UFFD_FEATURE_MISSING_HUGETLBFS),
	};
	r = kabi_ioctl(fd, UFFDIO_API, &api);
	if (r < 0)
		goto err;
	v->uffd = fd;
	return 0;
err:
	close(fd);
	return (int)r;
}

static int uffd_register(int uffd, uint64_t hva, uint64_t size)
{
	struct uffdio_register reg = {
		.range = { .start = hva, .len = size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	return (int)kabi_ioctl(uffd, UFFDIO_REGISTER, &reg);
}

static int uffd_poison(int uffd, uint64_t hva, uint64_t size)
{
	struct uffdio_poison p = { .range = { .start = hva, .len = size } };

	return (int)kabi_ioctl(uffd, UFFDIO_POISON, &p);
}

/* Drop the range's contents so that the marker can go in. */
static int empty_range(const struct vmras_region *r, uint64_t hva, uint64_t gpa,
		       uint64_t size, bool keep_file)
{
	switch (r->backing) {
	case VMRAS_BACKING_ANON:
	case VMRAS_BACKING_FILE: /* replaced by anonymous memory above */
		return madvise((void *)(uintptr_t)hva, size, MADV_DONTNEED) ? -errno : 0;
	case VMRAS_BACKING_SHMEM:
	case VMRAS_BACKING_HUGETLB:
		if (keep_file)
			return madvise((void *)(uintptr_t)hva, size, MADV_DONTNEED) ? -errno : 0;
		/* Out of the file too: the bad page must not be read by anyone. */
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(r->fd_offset + (gpa - r->gpa)), (off_t)size))
			return -errno;
		return madvise((void *)(uintptr_t)hva, size, MADV_DONTNEED) ? -errno : 0;
	default:
		return -EOPNOTSUPP;
	}
}

static void uffd_unregister(int uffd, uint64_t hva, uint64_t size)
{
	struct uffdio_range range = { .start = hva, .len = size };

	kabi_ioctl(uffd, UFFDIO_UNREGISTER, &range);
}

int contain_range(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		  uint64_t size, bool keep_file)
{
	uint64_t hva = (uintptr_t)r->hva + (gpa - r->gpa);
	void *p = (void *)(uintptr_t)hva;
	int err;

	if (v->uffd < 0)
		return v->uffd_err ? v->uffd_err : -EOPNOTSUPP;
	/*
	 * userfaultfd cannot take a regular file's mapping: put private
	 * anonymous memory in its place, inaccessible until registered (an
	 * access meanwhile faults: it is an error on a bad page anyway, never
	 * zeros), then treat it as anonymous memory. The file keeps its data;
	 * only this mapping stops using it.
	 */
	if (r->backing == VMRAS_BACKING_FILE &&
	    mmap(p, size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
		return -errno;
	err = uffd_register(v->uffd, hva, size);
	if (err)
		return err;
	if (r->backing == VMRAS_BACKING_FILE && mprotect(p, size, PROT_READ | PROT_WRITE)) {
		err = -errno;
		goto undo;
	}
	err = empty_range(r, hva, gpa, size, keep_file);
	if (err)
		goto undo;
	err = uffd_poison(v->uffd, hva, size);
	/* EEXIST: a marker is already there (contained before, or by the kernel). */
	if (!err || err == -EEXIST)
		return 0;
undo:
	/* Nobody serves missing faults on it: left registered, an access would hang. */
	uffd_unregister(v->uffd, hva, size);
	return err;
}

int contain_restore(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		    uint64_t size)
{
	uint64_t hva = (uintptr_t)r->hva + (gpa - r->gpa);
	void *p;

	(void)v;
	/* A fresh mapping of the same backing drops the marker (QEMU does the same). */
	if (r->backing == VMRAS_BACKING_ANON || r->fd < 0)
		p = mmap((void *)(uintptr_t)hva, size, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	else
		p = mmap((void *)(uintptr_t)hva, size, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_SHARED, r->fd, (off_t)(r->fd_offset + (gpa - r->gpa)));
	return p == MAP_FAILED ? -errno : 0;
}
