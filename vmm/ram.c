// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/memfd.h"
#include "ram.h"

#define HUGETLBFS_MAGIC 0x958458f6

static const char *const backend_names[] = {
	[RAM_ANON] = "anon",
	[RAM_SHMEM] = "shmem",
	[RAM_HUGETLB_2M] = "hugetlb-2m",
	[RAM_HUGETLB_1G] = "hugetlb-1g",
	[RAM_FILE] = "file",
	[RAM_GUEST_MEMFD] = "guest-memfd",
};
_Static_assert(sizeof(backend_names) / sizeof(backend_names[0]) == RAM_BACKEND_COUNT,
	       "one name per backend");

const char *ram_backend_name(enum ram_backend b)
{
	return (unsigned int)b < RAM_BACKEND_COUNT ? backend_names[b] : "unknown";
}

int ram_backend_parse(const char *spec, enum ram_backend *b, const char **path)
{
	*path = NULL;
	if (!strncmp(spec, "file:", 5)) {
		if (!spec[5])
			return -EINVAL;
		*b = RAM_FILE;
		*path = spec + 5;
		return 0;
	}
	for (int i = 0; i < RAM_BACKEND_COUNT; i++)
		if (i != RAM_FILE && !strcmp(spec, backend_names[i])) {
			*b = (enum ram_backend)i;
			return 0;
		}
	return -EINVAL;
}

/*
 * guest_memfd that this process can map and that starts shared (Linux
 * 6.18): ordinary guest RAM the VMM reads and writes through the mapping.
 */
static int open_guest_memfd(int vm_fd, uint64_t size, struct vmm_error *e)
{
	const uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	struct kvm_create_guest_memfd g = { .size = size, .flags = want };
	long caps = kabi_ioctl_val(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	long r;

	if (kabi_ioctl_val(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) <= 0)
		return vmm_failf(e, -EOPNOTSUPP, "--backend guest-memfd: this KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD, Linux 6.8)");
	if (caps < 0 || ((uint64_t)caps & want) != want)
		return vmm_failf(e, -EOPNOTSUPP, "--backend guest-memfd: this KVM's guest_memfd cannot be mapped shared by the VMM (KVM_CAP_GUEST_MEMFD_FLAGS lacks MMAP|INIT_SHARED: Linux 6.18)");
	r = kabi_ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_CREATE_GUEST_MEMFD (%" PRIu64 " bytes, MMAP|INIT_SHARED)",
				size);
	/* KVM makes it without close-on-exec, unlike every other backing. */
	if (fcntl((int)r, F_SETFD, FD_CLOEXEC)) {
		int err = -errno;

		close((int)r);
		return vmm_fail(e, err, "set close-on-exec on the guest_memfd");
	}
	return (int)r;
}

static int open_backing(enum ram_backend b, const char *path, struct vmm_error *e)
{
	int fd;

	switch (b) {
	case RAM_SHMEM:
		fd = memfd_create("vmras-ram", MFD_CLOEXEC);
		break;
	case RAM_HUGETLB_2M:
		fd = memfd_create("vmras-ram", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
		break;
	case RAM_HUGETLB_1G:
		fd = memfd_create("vmras-ram", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_1GB);
		break;
	case RAM_FILE:
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return vmm_fail(e, -errno, "open RAM file %s", path);
		return fd;
	default:
		return -1;
	}
	if (fd < 0)
		return vmm_fail(e, -errno, "memfd_create for %s RAM", ram_backend_name(b));
	return fd;
}

int ram_create(struct guest_ram *ram, enum ram_backend b, const char *path,
	       uint64_t size, int vm_fd, struct vmm_error *e)
{
	struct statfs sfs;
	int r, flags;

	*ram = (struct guest_ram){ .backend = b, .size = size, .page_size = 4096, .fd = -1 };
	if (b == RAM_HUGETLB_2M)
		ram->page_size = 2ULL << 20;
	else if (b == RAM_HUGETLB_1G)
		ram->page_size = 1ULL << 30;
	if (size == 0 || size % ram->page_size)
		return vmm_failf(e, -EINVAL, "--mem %" PRIu64 " is not a multiple of the %s page size (%" PRIu64 " bytes)",
				 size, ram_backend_name(b), ram->page_size);

	if (b == RAM_GUEST_MEMFD) {
		/* Sized at creation: no ftruncate (guest_memfd refuses it). */
		ram->fd = open_guest_memfd(vm_fd, size, e);
		if (ram->fd < 0)
			return ram->fd;
		ram->shared = true;
	} else if (b != RAM_ANON) {
		ram->fd = open_backing(b, path, e);
		if (ram->fd < 0)
			return ram->fd;
		/* A file on hugetlbfs has that file system's page size. */
		if (b == RAM_FILE && fstatfs(ram->fd, &sfs) == 0 &&
		    sfs.f_type == HUGETLBFS_MAGIC) {
			ram->page_size = (uint64_t)sfs.f_bsize;
			if (size % ram->page_size) {
				r = vmm_failf(e, -EINVAL, "--mem is not a multiple of %s's huge page size",
					      path);
				goto err;
			}
		}
		if (ftruncate(ram->fd, (off_t)size)) {
			r = vmm_fail(e, -errno, "size %s RAM to %" PRIu64 " bytes",
				     ram_backend_name(b), size);
			goto err;
		}
		ram->shared = true;
	}

	flags = ram->shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	ram->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, ram->fd, 0);
	if (ram->hva == MAP_FAILED) {
		ram->hva = NULL;
		r = -errno;
		if (r == -ENOMEM && ram->page_size > 4096)
			r = vmm_failf(e, r, "map %s RAM: not enough free %" PRIu64 " MiB huge pages for %" PRIu64 " MiB (see /proc/sys/vm/nr_hugepages)",
				      ram_backend_name(b), ram->page_size >> 20, size >> 20);
		else
			r = vmm_fail(e, r, "map %" PRIu64 " bytes of %s RAM", size,
				     ram_backend_name(b));
		goto err;
	}
	return 0;
err:
	ram_destroy(ram);
	return r;
}

void ram_destroy(struct guest_ram *ram)
{
	if (ram->hva)
		munmap(ram->hva, ram->size);
	if (ram->fd >= 0)
		close(ram->fd);
	ram->hva = NULL;
	ram->fd = -1;
}

int ram_set_memslot(const struct guest_ram *ram, int vm_fd, uint32_t flags,
		    struct vmm_error *e)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = 0,
		.flags = flags,
		.guest_phys_addr = 0,
		.memory_size = ram->size,
		.userspace_addr = (uintptr_t)ram->hva,
	};
	long r;

	if (ram->backend == RAM_GUEST_MEMFD) {
		/* KVM reads guest memory through userspace_addr where it emulates. */
		region.flags |= KVM_MEM_GUEST_MEMFD;
		region.guest_memfd = (uint32_t)ram->fd;
		region.guest_memfd_offset = 0;
		r = kabi_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &region);
		if (r < 0)
			return vmm_fail(e, (int)r, "KVM_SET_USER_MEMORY_REGION2 (slot 0, guest_memfd, %" PRIu64 " bytes%s)",
					ram->size, flags ? ", dirty logging" : "");
		return 0;
	}
	struct kvm_userspace_memory_region region1 = {
		.slot = region.slot,
		.flags = region.flags,
		.guest_phys_addr = region.guest_phys_addr,
		.memory_size = region.memory_size,
		.userspace_addr = region.userspace_addr,
	};

	r = kabi_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region1);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_USER_MEMORY_REGION (slot 0, %" PRIu64 " bytes%s)",
				ram->size, flags ? ", dirty logging" : "");
	return 0;
}
