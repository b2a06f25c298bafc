// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Gather host facts. /proc and /sys are read relative to a root directory
 * fd so that tests can point the probe at a recorded tree; devices
 * (/dev/kvm, userfaultfd) and the process's own prctl state are live.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/userfaultfd.h"
#include "parse.h"
#include "util/fileio.h"
#include "vmras/probe.h"

#define TEXT_MAX 65536 /* /proc/mounts and /proc/meminfo fit easily */

struct probe_ctx {
	struct vmras_probe *p;
	int rootfd;
	char *text; /* TEXT_MAX scratch buffer */
};

static void add_problem(struct probe_ctx *c, const char *path, int err,
			const char *detail)
{
	struct vmras_probe *p = c->p;
	struct vmras_probe_problem *pb;

	if (p->nproblems == VMRAS_PROBE_MAX_PROBLEMS) {
		p->problems_dropped++;
		return;
	}
	pb = &p->problems[p->nproblems++];
	snprintf(pb->path, sizeof(pb->path), "/%s", path);
	pb->err = err;
	snprintf(pb->detail, sizeof(pb->detail), "%s", detail);
}

/*
 * Read a file into c->text. Absent (-ENOENT) is returned quietly: absence is
 * a fact. Any other failure is recorded as a problem.
 */
static int read_text(struct probe_ctx *c, const char *path)
{
	ssize_t n = read_file_at(c->rootfd, path, c->text, TEXT_MAX);

	if (n < 0 && n != -ENOENT)
		add_problem(c, path, (int)n, "cannot read");
	return n < 0 ? (int)n : 0;
}

/* A one-number file: 0, -ENOENT (absent), or -EINVAL etc. (recorded). */
static int read_int(struct probe_ctx *c, const char *path, long long *v)
{
	int r = read_text(c, path);

	if (r)
		return r;
	r = probe_parse_int(c->text, v);
	if (r)
		add_problem(c, path, r, "not a decimal integer");
	return r;
}

static int read_u64(struct probe_ctx *c, const char *path, uint64_t *v)
{
	int r = read_text(c, path);

	if (r)
		return r;
	r = probe_parse_u64(c->text, v);
	if (r)
		add_problem(c, path, r, "not an unsigned decimal integer");
	return r;
}

static void probe_kernel(struct probe_ctx *c)
{
	struct vmras_probe_kernel *k = &c->p->kernel;
	struct utsname u;
	long long v;

	if (!read_text(c, "proc/sys/kernel/osrelease")) {
		c->text[strcspn(c->text, "\n")] = '\0';
		snprintf(k->release, sizeof(k->release), "%s", c->text);
	}
	if (uname(&u) == 0)
		snprintf(k->machine, sizeof(k->machine), "%s", u.machine);

	k->early_kill = -1;
	k->recovery = -1;
	/* CONFIG_MEMORY_FAILURE is visible only through these sysctls. */
	if (!read_int(c, "proc/sys/vm/memory_failure_early_kill", &v)) {
		k->memory_failure = true;
		k->early_kill = (int)v;
	}
	if (!read_int(c, "proc/sys/vm/memory_failure_recovery", &v)) {
		k->memory_failure = true;
		k->recovery = (int)v;
	}

	k->mce_kill_policy = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
	if (k->mce_kill_policy < 0)
		k->mce_kill_policy = -errno;

	if (!read_text(c, "proc/meminfo")) {
		int r = probe_parse_meminfo_kib(c->text, "HardwareCorrupted",
						&k->hw_corrupted_kib);

		if (r == 0)
			k->hw_corrupted_known = true;
		else if (r != -ENOENT)
			add_problem(c, "proc/meminfo", r,
				    "malformed HardwareCorrupted line");
	}
}

static int kvm_check(int fd, long cap)
{
	return (int)kabi_ioctl_val(fd, KVM_CHECK_EXTENSION, cap);
}

static void probe_kvm(struct probe_ctx *c)
{
	struct vmras_probe_kvm *k = &c->p->kvm;
	int fd, vm;

	k->probed = true;
#if defined(__aarch64__)
	k->arm64 = true;
#endif
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		k->open_err = -errno;
		return;
	}
	k->api_version = (int)kabi_ioctl_val(fd, KVM_GET_API_VERSION, 0);
	k->mce_banks = kvm_check(fd, KVM_CAP_MCE);
	k->mce_cap_err = -ENOTTY;
#if defined(__x86_64__) || defined(__i386__)
	{
		__u64 mcg_cap = 0;

		k->mce_cap_err = (int)kabi_ioctl(fd, KVM_X86_GET_MCE_CAP_SUPPORTED,
						 &mcg_cap);
		if (k->mce_cap_err == 0)
			k->mce_cap_supported = mcg_cap;
	}
#endif
	k->memory_fault_info = kvm_check(fd, KVM_CAP_MEMORY_FAULT_INFO);
	k->user_memory2 = kvm_check(fd, KVM_CAP_USER_MEMORY2);
	k->guest_memfd = kvm_check(fd, KVM_CAP_GUEST_MEMFD);
	k->vm_types_err = kvm_check(fd, KVM_CAP_VM_TYPES);
	if (k->vm_types_err > 0) {
		k->vm_types = (uint64_t)k->vm_types_err;
		k->vm_types_err = 0;
	}
	/* The arm64 caps exist only there; elsewhere they are not asked. */
	if (k->arm64) {
		k->arm_inject_serror_esr = kvm_check(fd, KVM_CAP_ARM_INJECT_SERROR_ESR);
		k->arm_inject_ext_dabt = kvm_check(fd, KVM_CAP_ARM_INJECT_EXT_DABT);
		k->arm_sea_to_user = kvm_check(fd, KVM_CAP_ARM_SEA_TO_USER);
	}

	{
		bool emulates;
		int r = vr_detect_ram_mmio(&emulates);

		k->ram_access_as_mmio = r ? r : emulates;
	}
	/* guest_memfd flags depend on the VM type: ask a default VM. */
	if (k->guest_memfd > 0) {
		vm = (int)kabi_ioctl_val(fd, KVM_CREATE_VM, 0);
		if (vm >= 0) {
			int f = kvm_check(vm, KVM_CAP_GUEST_MEMFD_FLAGS);

			if (f > 0)
				k->guest_memfd_flags = (uint64_t)f;
			close(vm);
		}
	}
	close(fd);
}

/* userfaultfd(2), falling back to user-mode-only faults when refused. */
static int open_uffd_syscall(bool *user_mode_only)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	*user_mode_only = false;
	if (fd >= 0)
		return fd;
	if (errno != EPERM)
		return -errno;
	fd = (int)syscall(SYS_userfaultfd,
			  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	*user_mode_only = true;
	return fd;
}

static void probe_uffd(struct probe_ctx *c)
{
	struct vmras_probe_uffd *u = &c->p->uffd;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	struct stat st;
	long long v;
	int fd = -1, devfd;

	u->probed = true;
	u->unprivileged = -1;
	if (!read_int(c, "proc/sys/vm/unprivileged_userfaultfd", &v))
		u->unprivileged = (int)v;

	u->dev_present = stat("/dev/userfaultfd", &st) == 0;
	u->dev_err = -ENOENT;
	devfd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (devfd >= 0) {
		fd = (int)kabi_ioctl_val(devfd, USERFAULTFD_IOC_NEW,
					 O_CLOEXEC | O_NONBLOCK);
		u->dev_err = fd < 0 ? fd : 0;
		if (fd >= 0)
			close(fd);
		close(devfd);
	} else {
		u->dev_err = -errno;
	}

	fd = open_uffd_syscall(&u->user_mode_only);
	u->syscall_err = fd < 0 ? fd : 0;
	if (fd < 0)
		return;
	/* features = 0 asks for nothing and returns all that is offered. */
	u->api_err = (int)kabi_ioctl(fd, UFFDIO_API, &api);
	if (u->api_err == 0) {
		u->features = api.features;
		u->ioctls = api.ioctls;
	}
	close(fd);
}

static int size_cmp(const void *a, const void *b)
{
	const struct vmras_probe_hugepage_size *x = a, *y = b;

	return (x->size > y->size) - (x->size < y->size);
}

static void probe_hugepage_size(struct probe_ctx *c, const char *dir,
				struct vmras_probe_hugepage_size *h)
{
	static const struct {
		const char *file;
		size_t off;
	} counters[] = {
		{ "nr_hugepages", offsetof(struct vmras_probe_hugepage_size, total) },
		{ "free_hugepages", offsetof(struct vmras_probe_hugepage_size, free) },
		{ "resv_hugepages", offsetof(struct vmras_probe_hugepage_size, reserved) },
		{ "surplus_hugepages", offsetof(struct vmras_probe_hugepage_size, surplus) },
	};
	char path[384];

	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, counters[i].file);
		/* A missing or bad counter stays 0; read_u64 recorded why. */
		read_u64(c, path, (uint64_t *)((char *)h + counters[i].off));
	}
}

static void probe_hugepages(struct probe_ctx *c)
{
	static const char base[] = "sys/kernel/mm/hugepages";
	struct vmras_probe_hugepages *hp = &c->p->hugepages;
	struct dirent *de;
	DIR *d;
	int dfd, r;

	if (!read_text(c, "proc/meminfo")) {
		uint64_t kib;

		r = probe_parse_meminfo_kib(c->text, "Hugepagesize", &kib);
		if (r == 0)
			hp->default_size = kib * 1024;
		else if (r != -ENOENT)
			add_problem(c, "proc/meminfo", r, "malformed Hugepagesize line");
	}

	dfd = openat(c->rootfd, base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		if (errno != ENOENT)
			add_problem(c, base, -errno, "cannot open");
	} else if (!(d = fdopendir(dfd))) {
		add_problem(c, base, -errno, "cannot list");
		close(dfd);
	} else {
		while ((de = readdir(d))) {
			struct vmras_probe_hugepage_size *h;
			char dir[320];
			uint64_t size;

			if (de->d_name[0] == '.')
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", base, de->d_name);
			if (probe_parse_hugepages_dirname(de->d_name, &size)) {
				add_problem(c, dir, -EINVAL,
					    "not a hugepages-<size>kB directory");
				continue;
			}
			if (hp->nsizes == VMRAS_PROBE_MAX_HUGEPAGE_SIZES) {
				add_problem(c, dir, -E2BIG, "too many huge page sizes");
				continue;
			}
			h = &hp->sizes[hp->nsizes++];
			h->size = size;
			probe_hugepage_size(c, dir, h);
		}
		closedir(d);
		qsort(hp->sizes, hp->nsizes, sizeof(hp->sizes[0]), size_cmp);
	}

	if (!read_text(c, "proc/mounts")) {
		unsigned int bad = 0;

		r = probe_parse_hugetlbfs_mounts(c->text, hp->default_size,
						 hp->mounts, VMRAS_PROBE_MAX_MOUNTS,
						 &hp->nmounts, &bad);
		if (r) {
			char detail[64];

			snprintf(detail, sizeof(detail), "malformed line %u", bad);
			add_problem(c, "proc/mounts", r, detail);
		}
	}

	static const struct {
		const char *path;
		size_t off;
	} thp[] = {
		{ "sys/kernel/mm/transparent_hugepage/enabled",
		  offsetof(struct vmras_probe_hugepages, thp_enabled) },
		{ "sys/kernel/mm/transparent_hugepage/shmem_enabled",
		  offsetof(struct vmras_probe_hugepages, thp_shmem_enabled) },
	};
	for (size_t i = 0; i < sizeof(thp) / sizeof(thp[0]); i++) {
		if (read_text(c, thp[i].path))
			continue;
		r = probe_parse_bracketed(c->text, (char *)hp + thp[i].off,
					  sizeof(hp->thp_enabled));
		if (r)
			add_problem(c, thp[i].path, r, "no single [selected] mode");
	}
}

static void probe_privileges(struct probe_ctx *c)
{
	struct vmras_probe_privileges *pv = &c->p->privileges;
	int r;

	if (read_text(c, "proc/self/status"))
		return;
	r = probe_parse_cap_effective(c->text, &pv->cap_effective);
	if (r == 0)
		pv->known = true;
	else
		add_problem(c, "proc/self/status", r, "no valid CapEff line");
}

int vmras_probe_host(struct vmras_probe *p, const struct vmras_probe_opts *opts)
{
	const char *root = opts && opts->root ? opts->root : "/";
	unsigned int flags = opts ? opts->flags : 0;
	struct probe_ctx c = { .p = p };

	memset(p, 0, sizeof(*p));
	c.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0)
		return -errno;
	c.text = malloc(TEXT_MAX);
	if (!c.text) {
		close(c.rootfd);
		return -ENOMEM;
	}

	probe_kernel(&c);
	if (!(flags & VMRAS_PROBE_NO_DEVICES)) {
		probe_kvm(&c);
		probe_uffd(&c);
	} else {
		/* Still read the sysctl: it lives in the (recorded) tree. */
		long long v;

		p->uffd.unprivileged = -1;
		if (!read_int(&c, "proc/sys/vm/unprivileged_userfaultfd", &v))
			p->uffd.unprivileged = (int)v;
	}
	probe_hugepages(&c);
	probe_privileges(&c);
	vmras_probe_decide(p);

	free(c.text);
	close(c.rootfd);
	return 0;
}
