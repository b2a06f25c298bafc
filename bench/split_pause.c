// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The vCPU pause of a huge-page split, against an eager copy of the same
 * page measured in the same run (what a split that copies everything
 * while the vCPUs wait costs), and the time until the last subpage is
 * filled in the background. 2 MiB always; 1 GiB when one can be reserved.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kabi/memfd.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define REPS 5

static uint64_t paused_at, pause_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_pause(void *o)
{
	(void)o;
	paused_at = now_ns();
}

static void on_resume(void *o)
{
	(void)o;
	pause_ns = now_ns() - paused_at;
}

static void on_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	(void)vcpu;
	(void)blocked; /* no vCPUs here */
}

static int bench_size(uint64_t size, unsigned int mfd_flag, const char *name)
{
	struct vmras_config cfg = { .ops = { .pause_vcpus = on_pause, .resume_vcpus = on_resume,
					     .vcpu_blocked = on_blocked } };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmras_region r = { .gpa = 0x100000000ULL, .size = size,
				  .backing = VMRAS_BACKING_HUGETLB, .page_size = size };
	uint64_t pause_best = UINT64_MAX, copy_best = UINT64_MAX, fill_best = UINT64_MAX;
	struct vmras_stats st;

	for (int rep = 0; rep < REPS; rep++) {
		int fd = memfd_create("bench", MFD_CLOEXEC | MFD_HUGETLB | mfd_flag);
		struct vmras *ras;
		char *ram, *copy;
		uint64_t t0, t;

		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			printf("%s: skipped: cannot get a %s huge page (%s)\n", name, name, strerror(errno));
			return 0;
		}
		ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (ram == MAP_FAILED) {
			printf("%s: skipped: cannot map a %s huge page: reserve one in "
			       "/sys/kernel/mm/hugepages (%s)\n", name, name, strerror(errno));
			close(fd);
			return 0;
		}
		memset(ram, 0x5a, size);
		/* Baseline: copy the whole page, as an eager split would while paused. */
		copy = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(copy, 0, size);
		t0 = now_ns();
		memcpy(copy, ram, size);
		t = now_ns() - t0;
		if (t < copy_best)
			copy_best = t;
		munmap(copy, size);

		r.hva = ram;
		r.fd = fd;
		vmras_policy_default(&cfg.policy);
		if (vmras_new(&cfg, &ras) || vmras_add_region(ras, &r) ||
		    vmras_x86_setup(ras, &x86) || vmras_start(ras)) {
			fprintf(stderr, "split_pause: libvmras setup failed\n");
			return 1;
		}
		pause_ns = 0;
		t0 = now_ns();
		/* An AO in the middle of the huge page: the engine splits it. */
		vmras_inject(ras, r.gpa + size / 2 + 4096, VMRAS_AO, -1, true);
		do {
			/* A light poll: a busy one would take a core from the fill. */
			usleep(50);
			vmras_get_stats(ras, &st);
		} while (st.subpages_salvaged < size / 4096 - 1 && now_ns() - t0 < 60000000000ULL);
		t = now_ns() - t0;
		if (t < fill_best)
			fill_best = t;
		if (pause_ns && pause_ns < pause_best)
			pause_best = pause_ns;
		vmras_free(ras);
		munmap(ram, size);
		close(fd);
	}
	printf("%s: split pause %.1f us, eager copy %.1f us, ratio %.4f; "
	       "last subpage filled after %.1f ms, fill / eager copy %.2f\n",
	       name, pause_best / 1e3, copy_best / 1e3, (double)pause_best / (double)copy_best,
	       fill_best / 1e6, (double)fill_best / (double)copy_best);
	return 0;
}

int main(void)
{
	return bench_size(2ULL << 20, MFD_HUGE_2MB, "2 MiB") ||
	       bench_size(1ULL << 30, MFD_HUGE_1GB, "1 GiB");
}
