// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras_probe_host() on recorded /proc and /sys trees (tests/data/probe):
 * a host with CONFIG_MEMORY_FAILURE, one without, and one where every file
 * is malformed in its own way (clear problem, no crash, good facts kept).
 */
#include <errno.h>
#include <limits.h>

#include "tap.h"
#include "vmras/probe.h"

static const char *datadir;

static int probe_tree(const char *name, struct vmras_probe *p)
{
	char root[PATH_MAX];
	struct vmras_probe_opts opts = { .root = root, .flags = VMRAS_PROBE_NO_DEVICES };

	snprintf(root, sizeof(root), "%s/%s", datadir, name);
	return vmras_probe_host(p, &opts);
}

static const struct vmras_probe_problem *find_problem(const struct vmras_probe *p,
						      const char *path)
{
	for (unsigned int i = 0; i < p->nproblems; i++)
		if (!strcmp(p->problems[i].path, path))
			return &p->problems[i];
	return NULL;
}

static void test_mf_host(void)
{
	struct vmras_probe p;

	if (!is_int(probe_tree("mf-host", &p), 0, "mf-host: probe runs"))
		return;
	is_int(p.nproblems, 0, "mf-host: no problems");
	is_str(p.kernel.release, "6.1.0-26-amd64", "mf-host: kernel release");
	ok(p.kernel.memory_failure, "mf-host: memory failure present");
	is_int(p.kernel.early_kill, 0, "mf-host: early_kill 0");
	is_int(p.kernel.recovery, 1, "mf-host: recovery 1");
	ok(p.kernel.hw_corrupted_known, "mf-host: HardwareCorrupted known");
	is_u64(p.kernel.hw_corrupted_kib, 12, "mf-host: 12 kB corrupted");
	is_int(p.uffd.unprivileged, 1, "mf-host: unprivileged_userfaultfd 1");
	is_u64(p.hugepages.default_size, 2 << 20, "mf-host: default 2 MiB");
	if (is_int(p.hugepages.nsizes, 2, "mf-host: two huge page sizes")) {
		is_u64(p.hugepages.sizes[0].size, 2 << 20, "mf-host: sorted, 2 MiB first");
		is_u64(p.hugepages.sizes[0].total, 64, "mf-host: 64 x 2 MiB");
		is_u64(p.hugepages.sizes[0].free, 60, "mf-host: 60 free");
		is_u64(p.hugepages.sizes[0].reserved, 2, "mf-host: 2 reserved");
		is_u64(p.hugepages.sizes[1].size, 1ULL << 30, "mf-host: 1 GiB second");
		is_u64(p.hugepages.sizes[1].total, 4, "mf-host: 4 x 1 GiB");
	}
	if (is_int(p.hugepages.nmounts, 2, "mf-host: two hugetlbfs mounts")) {
		is_str(p.hugepages.mounts[0].path, "/dev/hugepages", "mf-host: mount path");
		is_u64(p.hugepages.mounts[1].page_size, 1ULL << 30, "mf-host: 1 GiB mount");
	}
	is_str(p.hugepages.thp_enabled, "always", "mf-host: THP always");
	is_str(p.hugepages.thp_shmem_enabled, "never", "mf-host: shmem THP never");
	ok(p.privileges.known, "mf-host: capabilities known");
	is_u64(p.privileges.cap_effective, 0, "mf-host: no capabilities");

	is_int(p.verdicts[VMRAS_STRATEGY_HOST_REPORTS].state, VMRAS_AVAILABLE,
	       "mf-host: host reports errors");
	is_int(p.verdicts[VMRAS_STRATEGY_MADV_HWPOISON].state, VMRAS_UNAVAILABLE,
	       "mf-host: MADV_HWPOISON unavailable without CAP_SYS_ADMIN");
	ok(strstr(p.verdicts[VMRAS_STRATEGY_MADV_HWPOISON].reason, "CAP_SYS_ADMIN") != NULL,
	   "mf-host: reason names CAP_SYS_ADMIN");
	is_int(p.verdicts[VMRAS_STRATEGY_UFFD_POISON].state, VMRAS_UNAVAILABLE,
	       "mf-host: uffd verdict unavailable when not probed");
}

static void test_nomf_host(void)
{
	struct vmras_probe p;

	if (!is_int(probe_tree("nomf-host", &p), 0, "nomf-host: probe runs"))
		return;
	is_int(p.nproblems, 0, "nomf-host: no problems");
	ok(!p.kernel.memory_failure, "nomf-host: memory failure absent");
	is_int(p.kernel.early_kill, -1, "nomf-host: early_kill absent");
	is_int(p.kernel.recovery, -1, "nomf-host: recovery absent");
	ok(!p.kernel.hw_corrupted_known, "nomf-host: HardwareCorrupted absent");
	is_int(p.hugepages.nsizes, 1, "nomf-host: one huge page size");
	is_int(p.hugepages.nmounts, 0, "nomf-host: no hugetlbfs mounts");
	is_str(p.hugepages.thp_enabled, "madvise", "nomf-host: THP madvise");
	ok(p.privileges.cap_effective >> 21 & 1, "nomf-host: CAP_SYS_ADMIN held");
	is_int(p.verdicts[VMRAS_STRATEGY_HOST_REPORTS].state, VMRAS_UNAVAILABLE,
	       "nomf-host: host does not report errors");
	ok(strstr(p.verdicts[VMRAS_STRATEGY_HOST_REPORTS].reason,
		  "CONFIG_MEMORY_FAILURE") != NULL, "nomf-host: reason names the config");
	is_int(p.verdicts[VMRAS_STRATEGY_MADV_HWPOISON].state, VMRAS_UNAVAILABLE,
	       "nomf-host: MADV_HWPOISON unavailable even as root");
}

static void test_malformed(void)
{
	static const struct {
		const char *path;
		int err;
	} want[] = {
		{ "/proc/sys/vm/memory_failure_early_kill", -EINVAL },
		{ "/proc/meminfo", -EINVAL },
		{ "/proc/sys/vm/unprivileged_userfaultfd", -EINVAL },
		{ "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", -EINVAL },
		{ "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", -EINVAL },
		{ "/sys/kernel/mm/hugepages/hugepages-bogus", -EINVAL },
		{ "/proc/mounts", -EINVAL },
		{ "/sys/kernel/mm/transparent_hugepage/enabled", -EINVAL },
		{ "/sys/kernel/mm/transparent_hugepage/shmem_enabled", -EISDIR },
		{ "/proc/self/status", -EINVAL },
	};
	struct vmras_probe p;

	if (!is_int(probe_tree("malformed", &p), 0, "malformed: probe still runs"))
		return;
	is_int(p.nproblems, sizeof(want) / sizeof(want[0]),
	       "malformed: one problem per bad file");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct vmras_probe_problem *pb = find_problem(&p, want[i].path);

		if (ok(pb != NULL, "malformed: problem names %s", want[i].path))
			is_int(pb->err, want[i].err, "malformed: %s error", want[i].path);
	}
	/* What could be read is still reported. */
	ok(p.kernel.memory_failure, "malformed: recovery sysctl still seen");
	is_int(p.kernel.recovery, 1, "malformed: recovery 1");
	is_int(p.kernel.early_kill, -1, "malformed: bad early_kill not used");
	ok(!p.kernel.hw_corrupted_known, "malformed: bad HardwareCorrupted not used");
	is_int(p.hugepages.nsizes, 1, "malformed: the valid size directory kept");
	is_u64(p.hugepages.sizes[0].total, 0, "malformed: bad counter left 0");
	is_int(p.hugepages.nmounts, 0, "malformed: no mounts from a bad table");
	is_str(p.hugepages.thp_enabled, "", "malformed: THP mode unknown");
	ok(!p.privileges.known, "malformed: capabilities unknown");
}

static void test_missing_root(void)
{
	struct vmras_probe p;

	is_int(probe_tree("does-not-exist", &p), -ENOENT,
	       "missing root: -ENOENT, probing did not run");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DATADIR\n", argv[0]);
		return 2;
	}
	datadir = argv[1];
	test_mf_host();
	test_nomf_host();
	test_malformed();
	test_missing_root();
	return tap_done();
}
