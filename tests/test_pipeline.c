// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libvmras without a guest: the SIGBUS capture under a 10,000-error burst
 * from several threads, chaining of foreign SIGBUS, containment, the
 * machine-check-safe copy, and vCPU exit classification from synthetic
 * kvm_run contents.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kabi/kvm.h"
#include "tap.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define GPA_BASE 0x100000000ULL
#define RAM_SIZE (48ULL << 20)
#define BURST 10000
#define THREADS 4

static struct vmras *ras;
static char *ram;
static atomic_int failures, kicks, resets, foreign_sigbus;
static struct vmras_failure last;
static uint64_t watch_gpa;
static atomic_int watch_told;	/* delivered notices (not bystanders') about watch_gpa */
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	pthread_mutex_lock(&last_lock);
	last = *f;
	pthread_mutex_unlock(&last_lock);
	if (watch_gpa && (f->ev.gpa & ~4095ULL) == watch_gpa && f->action == VMRAS_ACTION_INJECT)
		atomic_fetch_add(&watch_told, 1);
	atomic_fetch_add(&failures, 1);
}

static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	(void)vcpu;
	atomic_fetch_add(&kicks, 1);
}

static void on_reset(void *o, const char *why)
{
	(void)o;
	(void)why;
	atomic_fetch_add(&resets, 1);
}

static void foreign_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&foreign_sigbus, 1);
}

static int send_self_sigbus(int code, void *addr, int lsb)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = code;
	si.si_addr = addr;
	si.si_addr_lsb = (short)lsb;
	return (int)syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, &si);
}

static bool wait_for(size_t (*count)(void), size_t want, int seconds)
{
	for (int i = 0; i < seconds * 100; i++) {
		if (count() >= want)
			return true;
		usleep(10000);
	}
	return count() >= want;
}

static size_t registry_count(void)
{
	return vmras_registry_count(vmras_get_registry(ras));
}

static void *burst_thread(void *arg)
{
	long t = (long)arg;

	for (long i = t; i < BURST; i += THREADS)
		send_self_sigbus(BUS_MCEERR_AO, ram + i * 4096 + 8, 12);
	return NULL;
}

static void test_chaining(void)
{
	static char outside[4096];

	send_self_sigbus(BUS_MCEERR_AO, outside, 12);
	is_int(atomic_load(&foreign_sigbus), 1,
	       "AO outside guest RAM goes to the previous handler");
	send_self_sigbus(BUS_ADRALN, ram + 64, 0);
	is_int(atomic_load(&foreign_sigbus), 2,
	       "a SIGBUS that is not a memory error goes to the previous handler");
}

static void test_burst(void)
{
	pthread_t th[THREADS];
	struct vmras_stats st;

	for (long t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, burst_thread, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	ok(wait_for(registry_count, BURST, 60), "burst: registry reaches %d entries", BURST);
	is_int(registry_count(), BURST, "burst: exactly %d registry entries", BURST);
	vmras_get_stats(ras, &st);
	is_int(st.dropped, 0, "burst: 0 dropped");
	is_int(st.received[VMRAS_SRC_SIGBUS], BURST, "burst: %d SIGBUS received", BURST);
	is_int(st.contained, BURST, "burst: every page contained");
	is_int(st.actions[VMRAS_ACTION_IGNORE], BURST,
	       "burst: every one reported (no vCPU to tell: ignore)");
}

static void *copy_once(void *gpa)
{
	char buf[8];

	return (void *)(intptr_t)vmras_copy_from_guest(ras, buf, (uint64_t)(uintptr_t)gpa, 8);
}

static void test_safe_copy(void)
{
	uint64_t clean = GPA_BASE + (RAM_SIZE - 4 * 4096), bad = clean + 4096;
	char buf[64];
	size_t before = registry_count();
	pthread_t th;
	sigset_t mask;
	int errs = 0;

	memset(ram + (clean - GPA_BASE), 0x5a, 4096);
	is_int(vmras_copy_from_guest(ras, buf, clean, sizeof(buf)), 0, "safe copy of a clean page");
	ok(buf[0] == 0x5a && buf[63] == 0x5a, "safe copy returns the bytes");
	/* Poisoned behind the registry's back: the copy itself hits it. */
	is_int(vmras_inject(ras, bad, VMRAS_AO, -1, false), 0, "poison a page without a report");
	is_int(vmras_copy_from_guest(ras, buf, bad + 100, 8), -EHWPOISON,
	       "safe copy of the poisoned page: -EHWPOISON, and we are still here");
	pthread_sigmask(SIG_SETMASK, NULL, &mask);
	ok(!sigismember(&mask, SIGBUS), "after the jump back, SIGBUS is not left blocked");
	ok(wait_for(registry_count, before + 1, 10), "the copy's SIGBUS became a registry entry");
	is_int(vmras_copy_from_guest(ras, buf, bad, 8), -EHWPOISON,
	       "a known poisoned page is refused without touching it");
	/* Many pages at once: the copy names the bad page it met or knew. */
	{
		uint64_t run = clean - 8 * 4096, hit = 0;
		static char big[4 * 4096];

		is_int(vmras_inject(ras, run + 2 * 4096, VMRAS_AO, -1, false), 0,
		       "poison the third page of a four-page run without a report");
		is_int(vmras_copy_from_guest_at(ras, big, run, sizeof(big), &hit), -EHWPOISON,
		       "a four-page copy meets it: -EHWPOISON");
		is_u64(hit, run + 2 * 4096, "and names the page it met");
		ok(wait_for(registry_count, before + 2, 10), "which became a registry entry");
		hit = 0;
		is_int(vmras_copy_to_guest_at(ras, run, big, sizeof(big), &hit), -EHWPOISON,
		       "a four-page write over the known page is refused");
		is_u64(hit, run + 2 * 4096, "and names the known page");
		is_int(vmras_copy_from_guest_at(ras, big, run, 2 * 4096, &hit), 0,
		       "the pages before it copy cleanly");
	}
	/* A copying thread holds a slot until it exits: more threads than slots. */
	for (int i = 0; i < 1500; i++) {
		void *rc;

		if (pthread_create(&th, NULL, copy_once, (void *)(uintptr_t)clean) ||
		    pthread_join(th, &rc) || rc) {
			errs++;
			break;
		}
	}
	is_int(errs, 0, "1500 threads one after another each copy once (slots go back at exit)");
	is_int(vmras_copy_from_guest(ras, buf, GPA_BASE - 4096, 8), -EFAULT,
	       "a range outside guest RAM: -EFAULT");
	is_int(vmras_copy_from_guest(ras, buf, GPA_BASE + RAM_SIZE - 4, 8), -EFAULT,
	       "a range running off the end of RAM: -EFAULT");
}

static struct kvm_run *run_with(uint32_t reason)
{
	struct kvm_run *run = calloc(1, 4096);

	run->exit_reason = reason;
	return run;
}

static void *vcpu_ar_thread(void *arg)
{
	int *res = arg;
	struct kvm_run *run = run_with(KVM_EXIT_INTR);

	vmras_vcpu_thread_start(ras, 0);
	send_self_sigbus(BUS_MCEERR_AR, ram + (RAM_SIZE - 8 * 4096), 12);
	*res = vmras_vcpu_exit(ras, 0, run, -EINTR);
	free(run);
	return NULL;
}

static void test_classify(void)
{
	uint64_t poisoned = GPA_BASE + RAM_SIZE - 16 * 4096, clean = poisoned + 4096;
	struct vmras_poison p;
	struct kvm_run *run;
	pthread_t th;
	int res = -1;

	vmras_inject(ras, poisoned, VMRAS_AO, -1, false);

	run = run_with(KVM_EXIT_MEMORY_FAULT);
	kabi_kvm_run_memory_fault(run)->gpa = poisoned;
	kabi_kvm_run_memory_fault(run)->size = 4096;
	is_int(vmras_vcpu_exit(ras, 0, run, -EHWPOISON), VMRAS_EXIT_HANDLED,
	       "KVM_RUN -EHWPOISON + KVM_EXIT_MEMORY_FAULT: handled");
	ok(vmras_registry_lookup(vmras_get_registry(ras), poisoned, &p) == 0 &&
	   p.kind == VMRAS_AR && p.vcpu == 0 && p.source == VMRAS_SRC_MEMORY_FAULT,
	   "it is an AR of vCPU 0 from a memory fault");
	ok(atomic_load(&kicks) > 0, "vCPU 0 was kicked to take its machine check");

	kabi_kvm_run_memory_fault(run)->gpa = clean;
	is_int(vmras_vcpu_exit(ras, 0, run, -EFAULT), VMRAS_EXIT_NOT_MINE,
	       "-EFAULT memory fault on a good page is not a memory error");
	free(run);

	run = run_with(KVM_EXIT_MMIO);
	run->mmio.phys_addr = poisoned + 8;
	run->mmio.len = 8;
	is_int(vmras_vcpu_exit(ras, 0, run, 0), VMRAS_EXIT_HANDLED,
	       "MMIO read inside RAM on a poisoned page: handled");
	is_u64(*(uint64_t *)run->mmio.data, UINT64_MAX, "the read gets all ones");
	run->mmio.phys_addr = GPA_BASE - 4096;
	memset(run->mmio.data, 0x11, 8);
	is_int(vmras_vcpu_exit(ras, 0, run, 0), VMRAS_EXIT_NOT_MINE, "MMIO outside RAM is MMIO");
	ok(run->mmio.data[0] == 0x11, "and its data is left alone");
	run->mmio.phys_addr = clean;
	memset(run->mmio.data, 0, 8);
	memset(ram + (clean - GPA_BASE), 0x3c, 8);
	is_int(vmras_vcpu_exit(ras, 0, run, 0), VMRAS_EXIT_HANDLED,
	       "MMIO on a readable RAM page: completed from RAM, not an error");
	ok(run->mmio.data[0] == 0x3c && run->mmio.data[7] == 0x3c, "with the RAM's bytes");
	run->exit_reason = KVM_EXIT_IO;
	is_int(vmras_vcpu_exit(ras, 0, run, 0), VMRAS_EXIT_NOT_MINE, "an I/O exit is not ours");
	free(run);

	pthread_create(&th, NULL, vcpu_ar_thread, &res);
	pthread_join(th, NULL);
	is_int(res, VMRAS_EXIT_HANDLED, "AR SIGBUS on a vCPU thread: handled by vmras_vcpu_exit");
	ok(vmras_registry_lookup(vmras_get_registry(ras), GPA_BASE + RAM_SIZE - 8 * 4096, &p) == 0 &&
	   p.kind == VMRAS_AR && p.vcpu == 0 && p.source == VMRAS_SRC_SIGBUS,
	   "recorded as vCPU 0's AR from SIGBUS");

	/* vCPU 0's fd is not a vCPU: delivery fails, and that is not silent. */
	atomic_store(&failures, 0);
	is_int(vmras_vcpu_pre_run(ras, 0), 0, "pre-run with undeliverable machine checks");
	ok(atomic_load(&failures) >= 1 && last.action == VMRAS_ACTION_RESET &&
	   last.detail[0], "each is reported with action reset and why (%s)", last.detail);
	ok(atomic_load(&resets) >= 1, "and the VMM was asked to reset");
	is_int(vmras_vcpu_exit(ras, 99999, NULL, 0), -EINVAL, "a bad vCPU index: -EINVAL");
}

/* The kernel's own SIGBUS: needs CONFIG_MEMORY_FAILURE and CAP_SYS_ADMIN. */
static void *hwpoison_thread(void *arg)
{
	int *res = arg;
	char *page = ram + (RAM_SIZE - 32 * 4096);

	vmras_vcpu_thread_start(ras, 0);
	page[0] = 1;
	if (madvise(page, 4096, MADV_HWPOISON)) {
		res[0] = -errno;
		return NULL;
	}
	res[1] = vmras_vcpu_exit(ras, 0, NULL, 0);
	return NULL;
}

static void test_madv_hwpoison(void)
{
	struct vmras_poison p;
	int res[2] = { 0, -1 };
	pthread_t th;

	if (access("/proc/sys/vm/memory_failure_recovery", F_OK)) {
		tap_skip("MADV_HWPOISON: the kernel's own BUS_MCEERR_AR",
			 "kernel without CONFIG_MEMORY_FAILURE (no /proc/sys/vm/memory_failure_*): "
			 "MADV_HWPOISON fails and the kernel never sends BUS_MCEERR_AO/AR");
		return;
	}
	pthread_create(&th, NULL, hwpoison_thread, res);
	pthread_join(th, NULL);
	if (res[0] == -EPERM) {
		tap_skip("MADV_HWPOISON: the kernel's own BUS_MCEERR_AR", "needs CAP_SYS_ADMIN");
		return;
	}
	is_int(res[0], 0, "MADV_HWPOISON on a guest page");
	is_int(res[1], VMRAS_EXIT_HANDLED, "the kernel's BUS_MCEERR_AR became vCPU 0's AR");
	ok(vmras_registry_lookup(vmras_get_registry(ras), GPA_BASE + RAM_SIZE - 32 * 4096, &p) == 0 &&
	   p.source == VMRAS_SRC_SIGBUS, "and is in the registry");
}

static void test_copy_to_guest(void)
{
	uint64_t clean = GPA_BASE + RAM_SIZE - 64 * 4096, bad = clean + 4096;
	char buf[16] = "vmras";

	is_int(vmras_copy_to_guest(ras, clean + 8, buf, 6), 0, "safe write to a clean page");
	ok(!memcmp(ram + (clean - GPA_BASE) + 8, "vmras", 6), "the bytes arrived");
	vmras_inject(ras, bad, VMRAS_AO, -1, false);
	is_int(vmras_copy_to_guest(ras, bad, buf, 6), -EHWPOISON,
	       "safe write to a poisoned page: -EHWPOISON, still here");
	is_int(vmras_copy_to_guest(ras, GPA_BASE + RAM_SIZE - 2, buf, 6), -EFAULT,
	       "safe write running off RAM: -EFAULT");
}

static void test_bad_config(void)
{
	struct vmras_config cfg = { 0 };
	struct vmras *v2 = NULL;

	vmras_policy_default(&cfg.policy);
	cfg.policy.ar = (enum vmras_action)42;
	is_int(vmras_new(&cfg, &v2), -EINVAL, "an action out of range is refused");
	vmras_policy_default(&cfg.policy);
	cfg.policy.undeliverable = VMRAS_ACTION_INJECT;
	is_int(vmras_new(&cfg, &v2), -EINVAL, "undeliverable=inject is refused");
}

/* Defect 6: an AR whose vCPU stops is not moved to another vCPU. */
static void test_offline_ar(void)
{
	uint64_t page = GPA_BASE + RAM_SIZE - 96 * 4096;
	struct kvm_run *run = run_with(KVM_EXIT_MEMORY_FAULT);
	bool reported;

	vmras_add_vcpu(ras, 1, open("/dev/null", O_RDWR | O_CLOEXEC));
	vmras_inject(ras, page, VMRAS_AO, -1, false);
	kabi_kvm_run_memory_fault(run)->gpa = page;
	kabi_kvm_run_memory_fault(run)->size = 4096;
	/* vCPU 0's AR is queued for vCPU 0 (it never runs pre_run here). */
	is_int(vmras_vcpu_exit(ras, 0, run, -EHWPOISON), VMRAS_EXIT_HANDLED, "AR of vCPU 0 queued");
	free(run);
	atomic_store(&failures, 0);
	is_int(vmras_vcpu_online(ras, 0, false), 0, "vCPU 0 stops with its AR undelivered");
	pthread_mutex_lock(&last_lock);
	reported = atomic_load(&failures) >= 1 && last.action == VMRAS_ACTION_IGNORE &&
		   last.action_required && strstr(last.detail, "of its own access");
	pthread_mutex_unlock(&last_lock);
	ok(reported, "the AR is reported as not told (not moved to vCPU 1): %s", last.detail);
	/* vCPU 1 holds only bystander copies (a fake vCPU: their delivery fails). */
	watch_gpa = page;
	is_int(vmras_vcpu_pre_run(ras, 1), 0, "vCPU 1 runs pre_run");
	is_int(atomic_load(&watch_told), 0, "and is not told of vCPU 0's access as its own");
	watch_gpa = 0;
	vmras_vcpu_online(ras, 0, true);
	vmras_vcpu_online(ras, 1, false); /* as before: vCPU 0 alone runs */
}

static void test_offline(void)
{
	bool seen = false;

	is_int(vmras_vcpu_online(ras, 0, false), 0, "vCPU 0 stops running");
	vmras_inject(ras, GPA_BASE + RAM_SIZE - 80 * 4096, VMRAS_AO, -1, true);
	for (int i = 0; i < 500 && !seen; i++) {
		usleep(10000);
		pthread_mutex_lock(&last_lock);
		seen = strstr(last.detail, "no running vCPU") != NULL;
		pthread_mutex_unlock(&last_lock);
	}
	pthread_mutex_lock(&last_lock);
	ok(last.action == VMRAS_ACTION_IGNORE && strstr(last.detail, "no running vCPU"),
	   "an AO with no running vCPU is reported, not queued forever (%s)", last.detail);
	pthread_mutex_unlock(&last_lock);
	vmras_vcpu_online(ras, 0, true);
}

static void test_inject_errors(void)
{
	is_int(vmras_inject(ras, GPA_BASE - 4096, VMRAS_AO, -1, true), -EFAULT,
	       "inject outside guest RAM: -EFAULT");
	is_int(vmras_inject(ras, GPA_BASE, VMRAS_AR, 7, true), -EINVAL,
	       "AR injection for an unknown vCPU: -EINVAL");
}

int main(void)
{
	struct sigaction sa = { .sa_sigaction = foreign_handler, .sa_flags = SA_SIGINFO };
	struct vmras_config cfg = {
		.ops = { .kick_vcpu = on_kick, .request_reset = on_reset, .failure = on_failure },
		/* The MMIO cases below stand for an emulating host, whatever this one is. */
		.ram_mmio = VMRAS_RAM_MMIO_YES,
	};
	struct vmras_x86_config x86 = { .mcg_cap = 0x100010a };
	struct vmras_region r = {
		.gpa = GPA_BASE, .size = RAM_SIZE, .backing = VMRAS_BACKING_ANON,
		.fd = -1, .page_size = 4096,
	};
	int dummy_vcpu = open("/dev/null", O_RDWR | O_CLOEXEC);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	vmras_policy_default(&cfg.policy);
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(ram, 1, RAM_SIZE);
	r.hva = ram;
	if (!is_int(vmras_new(&cfg, &ras), 0, "vmras_new") ||
	    !is_int(vmras_add_region(ras, &r), 0, "add 48 MiB of RAM"))
		return tap_done();
	is_int(vmras_add_region(ras, &r), -EEXIST, "an overlapping region is refused");
	is_int(vmras_start(ras), -EINVAL, "vmras_start without an architecture is refused");
	if (!is_int(vmras_x86_setup(ras, &x86), 0, "x86 machine checks, 10 banks") ||
	    !is_int(vmras_start(ras), 0, "vmras_start"))
		return tap_done();
	is_int(vmras_add_region(ras, &r), -EBUSY, "regions are added before the start");

	test_chaining();
	test_burst();
	test_safe_copy();
	test_inject_errors();
	/* From here on vCPU 0 exists (a fake one). */
	vmras_add_vcpu(ras, 0, dummy_vcpu);
	test_classify();
	test_madv_hwpoison();
	test_copy_to_guest();
	test_offline_ar();
	test_offline();
	test_bad_config();

	vmras_free(ras);
	return tap_done();
}
