// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Backing ops (see backing.h). Containment order matters: the range is
 * registered with the userfaultfd (a route that only wakes) before it is
 * emptied, so a racing access waits for the missing page until the marker
 * is in place instead of faulting in a fresh one. On any failure the
 * range is put back as it was: a file's mapping is never left replaced by
 * anonymous memory, nor a range left registered with nobody serving it.
 * guest_memfd is the exception to emptying: its bad folio stays while the
 * guest runs (contain_gmem).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "memory/backing.h"
#include "memory/vma.h"
#include "kabi/userfaultfd.h"
#include "uffd/router.h"

#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)

static uint64_t hva_of(const struct vmras_region *r, uint64_t gpa)
{
	return (uintptr_t)r->hva + (gpa - r->gpa);
}

static off_t file_off(const struct vmras_region *r, uint64_t gpa)
{
	return (off_t)(r->fd_offset + (gpa - r->gpa));
}

/* A contained range: an access waits for the marker, which wakes it. */
static void contained_fault(void *opaque, uint64_t addr, uint64_t flags)
{
	struct vmras *v = opaque;

	(void)flags;
	vr_uffd_wake(v->router, addr, SMALL_PAGE);
}

static const struct vr_route_ops contained_ops = { .fault = contained_fault };

static int route_range(struct vmras *v, uint64_t hva, uint64_t size)
{
	return vr_router_add(v->router, hva, size, UFFDIO_REGISTER_MODE_MISSING, true,
			     &contained_ops, v);
}

/*
 * Contained already (the injector's stand-in did it first, as the kernel
 * unmaps a bad page before it reports it): the marker needs no new
 * mapping, only to be there.
 */
static bool contained_already(struct vmras *v, uint64_t hva, uint64_t size, int *err)
{
	if (!vr_router_covers(v->router, hva, size, &contained_ops))
		return false;
	*err = vr_uffd_poison(v->router, hva, size);
	if (*err == -EEXIST)
		*err = 0;
	return true;
}

/* Drop the range's contents so that the marker can go in. */
static int empty_range(const struct vmras_region *r, uint64_t gpa, uint64_t size,
		       bool punch_file)
{
	if (punch_file &&
	    fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, file_off(r, gpa),
		      (off_t)size))
		return -errno;
	return madvise((void *)(uintptr_t)hva_of(r, gpa), size, MADV_DONTNEED) ? -errno : 0;
}

static int contain_common(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t size, bool punch_file)
{
	uint64_t hva = hva_of(r, gpa);
	int err;

	if (!v->router)
		return -EOPNOTSUPP;
	if (contained_already(v, hva, size, &err)) {
		/* Out of the file too, if the stand-in had kept it there. */
		if (!err && punch_file &&
		    fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, file_off(r, gpa),
			      (off_t)size))
			err = -errno;
		return err;
	}
	err = route_range(v, hva, size);
	if (err)
		return err;
	err = empty_range(r, gpa, size, punch_file);
	if (err) {
		vr_router_remove(v->router, hva, size, true);
		return err;
	}
	err = vr_uffd_poison(v->router, hva, size);
	/* EEXIST: a marker is already there (contained before, or by the kernel). */
	if (!err || err == -EEXIST)
		return 0;
	/*
	 * Emptied but no marker: never let it read as zeros. No access at all
	 * is the next best thing (the error is still reported as not contained).
	 */
	mprotect((void *)(uintptr_t)hva, size, PROT_NONE);
	return err;
}

static int contain_anon(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			uint64_t size, bool keep_file)
{
	(void)keep_file;
	return contain_common(v, r, gpa, size, false);
}

static int contain_shared(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t size, bool keep_file)
{
	/* Out of the file too, unless the kernel keeps it: no one may read it. */
	return contain_common(v, r, gpa, size, !keep_file);
}

/*
 * userfaultfd cannot take a regular file's mapping: put private anonymous
 * memory in its place, inaccessible until registered (an access meanwhile
 * is an error on a bad page anyway, never zeros), then treat it as
 * anonymous memory. The file keeps its data; only this mapping stops
 * using it.
 */
static int contain_file(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			uint64_t size, bool keep_file)
{
	void *p = (void *)(uintptr_t)hva_of(r, gpa);
	struct vr_vma_attrs attrs;
	int err;

	(void)keep_file;
	if (!v->router)
		return -EOPNOTSUPP;
	if (contained_already(v, (uintptr_t)p, size, &err))
		return err;
	err = vr_vma_attrs_get(v, r, (uintptr_t)p, &attrs);
	if (err)
		return err;
	if (mmap(p, size, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
	    MAP_FAILED)
		return -errno;
	err = route_range(v, (uintptr_t)p, size);
	if (!err && mprotect(p, size, PROT_READ | PROT_WRITE))
		err = -errno;
	if (!err)
		err = vr_vma_attrs_apply((uintptr_t)p, size, &attrs);
	if (!err)
		err = vr_uffd_poison(v->router, (uintptr_t)p, size);
	if (!err || err == -EEXIST)
		return 0;
	vr_router_remove(v->router, (uintptr_t)p, size, true);
	/* Back to the file as it was. */
	if (mmap(p, size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_SHARED, r->fd,
		 file_off(r, gpa)) == MAP_FAILED)
		return -errno;
	vr_vma_attrs_apply((uintptr_t)p, size, &attrs);
	return err;
}

/* A fresh mapping of the same backing drops the marker (QEMU does the same). */
static int restore_common(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t size, bool punch_file)
{
	void *p = (void *)(uintptr_t)hva_of(r, gpa);
	struct vr_vma_attrs attrs;
	int err = vr_vma_attrs_get(v, r, (uintptr_t)p, &attrs);

	if (err)
		return err;
	if (v->router)
		vr_router_remove(v->router, (uintptr_t)p, size, false);
	/* The bad hardware page goes; the file gets a fresh one on first touch. */
	if (punch_file && fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    file_off(r, gpa), (off_t)size))
		return -errno;
	if (r->fd < 0)
		p = mmap(p, size, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	else
		p = mmap(p, size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_SHARED, r->fd,
			 file_off(r, gpa));
	if (p == MAP_FAILED)
		return -errno;
	err = vr_vma_attrs_apply((uintptr_t)p, size, &attrs);
	if (v->router)
		vr_uffd_wake(v->router, (uintptr_t)p, size); /* anyone still waiting on it */
	return err;
}

static int restore_anon(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			uint64_t size)
{
	return restore_common(v, r, gpa, size, false);
}

static int restore_shared(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t size)
{
	return restore_common(v, r, gpa, size, true);
}

static int restore_file(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			uint64_t size)
{
	/* The file kept its data: map it again. */
	return restore_common(v, r, gpa, size, false);
}

static int read_back_fd(struct vmras *v, const struct vmras_region *r, uint64_t gpa)
{
	char buf[SMALL_PAGE] __attribute__((aligned(64)));
	ssize_t n;

	if (vr_hw_is_bad(v, gpa & ~(SMALL_PAGE - 1), SMALL_PAGE))
		return -EIO; /* injected: the kernel would say EIO */
	n = pread(r->fd, buf, SMALL_PAGE, file_off(r, gpa & ~(SMALL_PAGE - 1)));
	if (n < 0)
		return -errno;
	return n == (ssize_t)SMALL_PAGE ? 0 : -EIO;
}

static int read_back_anon(struct vmras *v, const struct vmras_region *r, uint64_t gpa)
{
	(void)r;
	return vr_hw_is_bad(v, gpa & ~(SMALL_PAGE - 1), SMALL_PAGE) ? -EIO : -EOPNOTSUPP;
}

/* Can this process read the byte at hva? (No signal: process_vm_readv.) */
static bool readable(uint64_t hva)
{
	char b;
	struct iovec local = { &b, 1 }, remote = { (void *)(uintptr_t)hva, 1 };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1;
}

/* A marker (uffd poison, or the kernel's hwpoison entry) shows as a swap entry. */
static bool marker_at(uint64_t hva)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;
	bool swap;

	if (fd < 0)
		return false;
	swap = pread(fd, &e, sizeof(e), (off_t)(hva / SMALL_PAGE * sizeof(e))) ==
		       (ssize_t)sizeof(e) &&
	       (e & PM_SWAP) && !(e & PM_PRESENT);
	close(fd);
	return swap && !readable(hva);
}

static bool poisoned_small(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			   uint64_t granule)
{
	return vr_hw_is_bad(v, gpa & ~(granule - 1), granule) || marker_at(hva_of(r, gpa));
}

/*
 * hugetlb: the kernel unmaps a bad huge page whole and its page tables
 * show no marker; the file read says EIO at the bad subpage.
 */
static bool poisoned_huge(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t granule)
{
	return vr_hw_is_bad(v, gpa & ~(granule - 1), granule) || read_back_fd(v, r, gpa) == -EIO;
}

/*
 * guest_memfd: the kernel keeps a poisoned folio in the file and fails
 * every access to it (kvm_gmem_error_folio); punching it out while the
 * guest runs would hand the guest a fresh zero page, silently. So the
 * folio stays and only this mapping changes, as for a regular file
 * (userfaultfd cannot take a guest_memfd mapping either): the VMM's own
 * access gets SIGBUS, and so does the guest's where KVM reaches guest
 * memory through this mapping (a KVM that emulates guest code). Where KVM
 * maps guest_memfd pages into the guest directly, only the kernel's own
 * poison stops the guest: a page the kernel did not poison (an injected
 * stand-in, one known bad from a migration) is -EOPNOTSUPP there.
 */
/*
 * Did the kernel poison the folio itself? Asked through a mapping of its
 * own: vmras's fence of the VMM's mapping must not count.
 */
static bool folio_poisoned(const struct vmras_region *r, uint64_t gpa)
{
	void *p = mmap(NULL, SMALL_PAGE, PROT_READ, MAP_SHARED, r->fd,
		       file_off(r, gpa & ~(SMALL_PAGE - 1)));
	bool bad;

	if (p == MAP_FAILED)
		return false;
	bad = !readable((uintptr_t)p);
	munmap(p, SMALL_PAGE);
	return bad;
}

static int contain_gmem(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			uint64_t size, bool keep_file)
{
	/* Decided before anything changes: a refusal leaves the mapping as it was. */
	if (!v->ram_mmio && !folio_poisoned(r, gpa))
		return -EOPNOTSUPP;
	return contain_file(v, r, gpa, size, keep_file);
}

/* A kernel-poisoned guest_memfd folio has no marker: it cannot be read at all. */
static bool poisoned_gmem(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
			  uint64_t granule)
{
	return poisoned_small(v, r, gpa, granule) || folio_poisoned(r, gpa);
}

static const struct vr_backing_ops ops[] = {
	[VMRAS_BACKING_ANON] = { .name = "anon", .contain = contain_anon,
				 .restore = restore_anon, .read_back = read_back_anon,
				 .poisoned = poisoned_small },
	[VMRAS_BACKING_SHMEM] = { .name = "shmem", .contain = contain_shared,
				  .restore = restore_shared, .read_back = read_back_fd,
				  .poisoned = poisoned_small },
	[VMRAS_BACKING_HUGETLB] = { .name = "hugetlb", .contain = contain_shared,
				    .restore = restore_shared, .read_back = read_back_fd,
				    .poisoned = poisoned_huge, .can_split = true },
	[VMRAS_BACKING_FILE] = { .name = "file", .contain = contain_file,
				 .restore = restore_file, .read_back = read_back_fd,
				 .poisoned = poisoned_small },
	/*
	 * guest_memfd has no read(): a page cannot be read back past the
	 * mapping. A reset punches the bad folio, as for shmem.
	 */
	[VMRAS_BACKING_GUEST_MEMFD] = { .name = "guest-memfd", .contain = contain_gmem,
					.restore = restore_shared, .read_back = read_back_anon,
					.poisoned = poisoned_gmem },
};

const struct vr_backing_ops *vr_backing(const struct vmras_region *r)
{
	return (unsigned int)r->backing < sizeof(ops) / sizeof(ops[0]) ? &ops[r->backing]
									: &ops[VMRAS_BACKING_ANON];
}
