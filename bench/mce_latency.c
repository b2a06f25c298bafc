// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * How long from a SIGBUS arriving to the guest's machine check being
 * queued on its vCPU: handler -> ring -> engine -> translate, record,
 * contain (UFFDIO_POISON) -> queue + kick. Compared with a bare
 * KVM_X86_SET_MCE ioctl measured in the same run on the same machine,
 * and with the durable record against without it (the same errors, the
 * same run): the notice does not wait for the disk, the report does.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define N 2000
#define PAGES (N + 16)

static atomic_ulong kicked_ns, reported_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	(void)vcpu;
	atomic_store(&kicked_ns, now_ns());
}

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	(void)f;
	atomic_store(&reported_ns, now_ns());
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "mce_latency: %s: %s\n", what, strerror(err));
	exit(1);
}

/*
 * N errors through a fresh context (recording into record, or not): the
 * time to the kick (the notice queued) and to the report (ops.failure,
 * which follows the record's commit when recording), sorted.
 */
static void measure(int vcpu, const char *record, uint64_t *lat, uint64_t *rep)
{
	struct vmras_config cfg = { .ops = { .kick_vcpu = on_kick, .failure = on_failure },
				    .record = record, .vm_name = "bench" };
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r = { .gpa = 0x100000000ULL, .backing = VMRAS_BACKING_ANON,
				  .fd = -1, .page_size = 4096 };
	struct vmras *ras;
	char *ram, why[200];
	int err;

	ram = mmap(NULL, PAGES * 4096UL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap guest RAM", errno);
	memset(ram, 1, PAGES * 4096UL);
	r.hva = ram;
	r.size = PAGES * 4096UL;
	vmras_policy_default(&cfg.policy);
	cfg.policy.undeliverable = VMRAS_ACTION_IGNORE;
	if ((err = vmras_new(&cfg, &ras)) || (err = vmras_add_region(ras, &r)) ||
	    (err = vmras_x86_setup(ras, &x86)) ||
	    (err = vmras_add_vcpu(ras, 0, vcpu)) || (err = vmras_start(ras)))
		die("set up libvmras", -err);
	if (record && (err = vmras_record_status(ras, why, sizeof(why)))) {
		fprintf(stderr, "mce_latency: record %s: %s\n", record, why);
		exit(1);
	}
	for (int i = 0; i < N; i++) {
		siginfo_t si = { .si_signo = SIGBUS, .si_code = BUS_MCEERR_AO };
		uint64_t t0;

		si.si_addr = ram + (uint64_t)i * 4096;
		si.si_addr_lsb = 12;
		atomic_store(&kicked_ns, 0);
		atomic_store(&reported_ns, 0);
		t0 = now_ns();
		syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, &si);
		while (!atomic_load(&kicked_ns))
			;
		lat[i] = atomic_load(&kicked_ns) - t0;
		vmras_vcpu_pre_run(ras, 0); /* drain (the guest never ran: ignored) */
		while (!atomic_load(&reported_ns))
			;
		rep[i] = atomic_load(&reported_ns) - t0;
	}
	vmras_free(ras);
	munmap(ram, PAGES * 4096UL);
	qsort(lat, N, sizeof(lat[0]), cmp);
	qsort(rep, N, sizeof(rep[0]), cmp);
}

static double p(const uint64_t *v, int pct)
{
	return (double)v[N * pct / 100] / 1e3;
}

int main(void)
{
	static uint64_t lat[N], rep[N], rlat[N], rrep[N], base[N];
	struct kvm_x86_mce mce = { .status = MCI_STATUS_VAL | MCI_STATUS_UC | MCI_STATUS_EN |
					     MCI_STATUS_MISCV | MCI_STATUS_ADDRV | MCI_STATUS_S | 0xc0,
				   .mcg_status = MCG_STATUS_RIPV | MCG_STATUS_MCIP, .bank = 9,
				   .misc = 0x8c };
	__u64 cap = MCG_SER_P | MCG_CTL_P | 10;
	char dir[] = "/tmp/mce_latency.XXXXXX", db[64];
	int kvm, vm, vcpu;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("open /dev/kvm", errno);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	vcpu = vm < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0 || ioctl(vcpu, KVM_X86_SETUP_MCE, &cap))
		die("create a vCPU with machine checks", errno);
	if (!mkdtemp(dir))
		die("make a directory for the record", errno);
	snprintf(db, sizeof(db), "%s/bench.db", dir);

	measure(vcpu, NULL, lat, rep);
	measure(vcpu, db, rlat, rrep);
	for (int i = 0; i < N; i++) {
		uint64_t t0 = now_ns();

		mce.addr = 0x100000000ULL + (uint64_t)i * 4096;
		if (ioctl(vcpu, KVM_X86_SET_MCE, &mce))
			die("KVM_X86_SET_MCE", errno);
		base[i] = now_ns() - t0;
	}
	qsort(base, N, sizeof(base[0]), cmp);
	printf("sigbus -> mce queued: p50 %.1f us, p99 %.1f us (%d errors)\n", p(lat, 50),
	       p(lat, 99), N);
	printf("bare KVM_X86_SET_MCE: p50 %.1f us, p99 %.1f us\n", p(base, 50), p(base, 99));
	printf("ratio (pipeline / bare ioctl): p50 %.1f, p99 %.1f\n", p(lat, 50) / p(base, 50),
	       p(lat, 99) / p(base, 99));
	printf("with the record: mce queued p50 %.1f us, p99 %.1f us; ratio to without: "
	       "p50 %.2f, p99 %.2f\n", p(rlat, 50), p(rlat, 99), p(rlat, 50) / p(lat, 50),
	       p(rlat, 99) / p(lat, 99));
	printf("sigbus -> reported (ops.failure): without the record p50 %.1f us, p99 %.1f us; "
	       "with it (after the commit) p50 %.1f us, p99 %.1f us\n", p(rep, 50), p(rep, 99),
	       p(rrep, 50), p(rrep, 99));
	unlink(db);
	{
		char side[80];

		snprintf(side, sizeof(side), "%s-wal", db);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", db);
		unlink(side);
	}
	rmdir(dir);
	return 0;
}
