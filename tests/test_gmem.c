// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * guest_memfd RAM (docs/memory-errors.md, "guest_memfd"):
 *   1. every KVM_RUN -EHWPOISON/-EFAULT + KVM_EXIT_MEMORY_FAULT a vCPU can
 *      report, from recorded kvm_run contents: flags 0 or PRIVATE, inside
 *      or outside RAM, on a page known bad or not;
 *   2. a guest that keeps touching a page although told (or that cannot
 *      be told) is cut off after a bounded number of exits, never looped;
 *   3. containment keeps the bad folio in the guest_memfd (a punched page
 *      would come back as zeros) and a guest reset punches it;
 *   4. on a host with CONFIG_MEMORY_FAILURE and CAP_SYS_ADMIN, the
 *      kernel's own poison (MADV_HWPOISON on the guest_memfd mapping).
 * The vCPU is not a real one (delivery fails, the undeliverable policy is
 * ignore): what is asserted is the classification, the record and the
 * memory, not the guest (tests/test_guest_memfd.py runs guests).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kvm_util.h"
#include "tap.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define GPA_BASE 0x100000000ULL
#define RAM_SIZE (4ULL << 20)
#define PAGE 4096ULL

static struct vmras *ras;
static char *ram;
static int gmem = -1;
static atomic_int stops, nfail;
static struct vmras_failure last;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	pthread_mutex_lock(&last_lock);
	last = *f;
	pthread_mutex_unlock(&last_lock);
	atomic_fetch_add(&nfail, 1);
}

static void on_stop(void *o, const char *why)
{
	(void)o;
	(void)why;
	atomic_fetch_add(&stops, 1);
}

static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	(void)vcpu;
}

static struct vmras_failure last_failure(void)
{
	struct vmras_failure f;

	vmras_record_flush(ras);
	pthread_mutex_lock(&last_lock);
	f = last;
	pthread_mutex_unlock(&last_lock);
	return f;
}

static int memory_fault(int run_ret, uint64_t flags, uint64_t gpa)
{
	struct kvm_run *run = calloc(1, sizeof(*run));
	int r;

	if (!run)
		return -ENOMEM;
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	kabi_kvm_run_memory_fault(run)->flags = flags;
	kabi_kvm_run_memory_fault(run)->gpa = gpa;
	kabi_kvm_run_memory_fault(run)->size = PAGE;
	r = vmras_vcpu_exit(ras, 0, run, run_ret);
	free(run);
	return r;
}

/* 1. Sixteen exits: the recorded kvm_run of each, and what vmras makes of it. */
static void test_classify(void)
{
	static const int rets[] = { -EHWPOISON, -EFAULT };
	static const uint64_t flag_set[] = { 0, KVM_MEMORY_EXIT_FLAG_PRIVATE };
	uint64_t page = GPA_BASE + 64 * PAGE;

	for (unsigned int a = 0; a < 2; a++)
		for (unsigned int b = 0; b < 2; b++)
			for (int inside = 1; inside >= 0; inside--)
				for (int known = 1; known >= 0; known--) {
					int ret = rets[a];
					uint64_t flags = flag_set[b];
					uint64_t gpa = inside ? page : GPA_BASE + RAM_SIZE + page;
					const char *name = ret == -EHWPOISON ? "-EHWPOISON" : "-EFAULT";
					bool mine = ret == -EHWPOISON || (inside && known);
					struct vmras_poison p = { 0 };
					struct vmras_failure f;
					int before, r;

					page += PAGE;
					if (known && inside)
						vmras_inject(ras, gpa, VMRAS_AO, -1, false);
					else if (known)
						continue; /* nothing outside RAM can be known bad */
					before = atomic_load(&nfail);
					r = memory_fault(ret, flags, gpa + 0x10);
					is_int(r, mine ? VMRAS_EXIT_HANDLED : VMRAS_EXIT_NOT_MINE,
					       "%s, flags %s, %s RAM, %s page: %s", name,
					       flags ? "PRIVATE" : "0", inside ? "inside" : "outside",
					       known ? "a known bad" : "an unknown",
					       mine ? "a memory error" : "the VMM's (a conversion, MMIO)");
					if (!mine) {
						vmras_record_flush(ras);
						is_int(atomic_load(&nfail), before,
						       "  ... and vmras reported nothing");
						continue;
					}
					vmras_vcpu_pre_run(ras, 0);
					f = last_failure();
					ok(f.ev.kind == VMRAS_AR && f.ev.source == VMRAS_SRC_MEMORY_FAULT &&
					   (f.ev.valid & VMRAS_EV_FAULT_FLAGS) && f.ev.fault_flags == flags &&
					   f.ev.gpa == gpa + 0x10 && f.ev.vcpu == 0,
					   "  ... one AR of vCPU 0 from kvm-memory-fault, with the exit's "
					   "flags 0x%llx and GPA (kind %d source %d flags 0x%llx gpa 0x%llx)",
					   (unsigned long long)flags, f.ev.kind, f.ev.source,
					   (unsigned long long)f.ev.fault_flags,
					   (unsigned long long)f.ev.gpa);
					if (!inside) {
						ok(f.recipient == VMRAS_RECIPIENT_HYPERVISOR &&
						   f.action == VMRAS_ACTION_FATAL,
						   "  ... outside guest RAM: the ar_not_guest policy (fatal)");
						continue;
					}
					ok(vmras_registry_lookup(vmras_get_registry(ras), gpa, &p) == 0 &&
					   p.kind == VMRAS_AR && (p.fault_flags & flags) == flags &&
					   (p.state & VMRAS_PS_CONTAINED),
					   "  ... in the registry: AR, contained, private %s (flags 0x%llx)",
					   flags ? "yes" : "no", (unsigned long long)p.fault_flags);
				}
}

/* 2. A guest that cannot be told, or does not act, cannot loop an exit forever. */
static void test_repeats(void)
{
	uint64_t gpa = GPA_BASE + 200 * PAGE;
	int i, s0 = atomic_load(&stops);

	for (i = 1; i <= 9; i++) {
		memory_fault(-EHWPOISON, 0, gpa);
		vmras_vcpu_pre_run(ras, 0);
	}
	vmras_record_flush(ras);
	is_int(atomic_load(&stops), s0, "repeats: 9 exits for one page, each ignored (policy "
	       "undeliverable=ignore, the vCPU cannot take a machine check)");
	memory_fault(-EHWPOISON, 0, gpa);
	vmras_vcpu_pre_run(ras, 0);
	{
		struct vmras_failure f = last_failure();

		ok(atomic_load(&stops) == s0 + 1 && f.action == VMRAS_ACTION_FATAL &&
		   strstr(f.detail, "does not act on them"),
		   "repeats: the 10th stops the VM (ignore escalated to fatal: %s)", f.detail);
	}
}

static bool readable(const void *p)
{
	char b;
	struct iovec l = { &b, 1 }, r = { (void *)p, 1 };

	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == 1;
}

/* 3. The folio stays while the guest runs; a reset punches it. */
static void test_keep_then_punch(void)
{
	uint64_t gpa = GPA_BASE + 300 * PAGE;
	size_t off = gpa - GPA_BASE;
	char *view = mmap(NULL, RAM_SIZE, PROT_READ, MAP_SHARED, gmem, 0);
	char buf[8];

	if (!ok(view != MAP_FAILED, "a second mapping of the guest_memfd"))
		return;
	memset(ram + off, 0xa5, PAGE);
	memset(ram + off + PAGE, 0x3c, PAGE);
	is_int(vmras_inject(ras, gpa, VMRAS_AO, -1, false), 0, "contain a guest_memfd page");
	ok(!readable(ram + off), "the VMM's mapping of it cannot be read");
	is_int(vmras_copy_from_guest(ras, buf, gpa, sizeof(buf)), -EHWPOISON,
	       "a safe copy says -EHWPOISON");
	ok((unsigned char)view[off] == 0xa5 && (unsigned char)view[off + PAGE - 1] == 0xa5,
	   "the guest_memfd keeps the folio (not punched: it would read as zeros)");
	ok((unsigned char)ram[off + PAGE] == 0x3c, "the next page is untouched");
	is_int(vmras_guest_reset(ras), 0, "guest reset");
	ok(readable(ram + off) && ram[off] == 0 && ram[off + PAGE - 1] == 0,
	   "after the reset the page is fresh memory (punched, zero)");
	ok(view[off] == 0, "punched in the guest_memfd itself");
	ok((unsigned char)ram[off + PAGE] == 0x3c, "the next page still holds its data");
	munmap(view, RAM_SIZE);
}

/* 4. The kernel's poison: CONFIG_MEMORY_FAILURE and CAP_SYS_ADMIN. */
static void test_madv_hwpoison(void)
{
	uint64_t gpa = GPA_BASE + 400 * PAGE;
	char buf[8];
	struct vmras_poison p;

	if (access("/proc/sys/vm/memory_failure_recovery", F_OK)) {
		tap_skip("MADV_HWPOISON on a guest_memfd page (kvm_gmem_error_folio)",
			 "kernel without CONFIG_MEMORY_FAILURE (no /proc/sys/vm/memory_failure_*): "
			 "MADV_HWPOISON fails and no guest_memfd folio can be poisoned");
		return;
	}
	if (!getenv("VMRAS_TEST_HWPOISON")) {
		tap_skip("MADV_HWPOISON on a guest_memfd page (kvm_gmem_error_folio)",
			 "it takes a physical page out of service for good: set "
			 "VMRAS_TEST_HWPOISON=1 to run it");
		return;
	}
	ram[gpa - GPA_BASE] = 1;
	if (madvise(ram + (gpa - GPA_BASE), PAGE, MADV_HWPOISON)) {
		tap_skip("MADV_HWPOISON on a guest_memfd page (kvm_gmem_error_folio)",
			 "madvise: %s (needs CAP_SYS_ADMIN)", strerror(errno));
		return;
	}
	is_int(vmras_copy_from_guest(ras, buf, gpa, sizeof(buf)), -EHWPOISON,
	       "the kernel poisoned the folio: the VMM's copy gets -EHWPOISON, not a crash");
	vmras_record_flush(ras);
	ok(vmras_registry_lookup(vmras_get_registry(ras), gpa, &p) == 0,
	   "and the page is in the registry");
	is_int(memory_fault(-EHWPOISON, 0, gpa), VMRAS_EXIT_HANDLED,
	       "KVM_RUN -EHWPOISON on it: an AR");
	vmras_vcpu_pre_run(ras, 0);
}

int main(void)
{
	struct vmras_config cfg = {
		.ops = { .kick_vcpu = on_kick, .request_stop = on_stop, .failure = on_failure },
		.ram_mmio = VMRAS_RAM_MMIO_YES,
	};
	struct vmras_x86_config x86 = { .mcg_cap = 0x100010a };
	struct kvm_create_guest_memfd g = {
		.size = RAM_SIZE, .flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	struct vmras_region r = {
		.gpa = GPA_BASE, .size = RAM_SIZE, .backing = VMRAS_BACKING_GUEST_MEMFD,
		.page_size = PAGE,
	};
	struct kvmt_vm *vm = NULL;
	int dummy_vcpu = open("/dev/null", O_RDWR | O_CLOEXEC);
	long fd;

	if (kvmt_vm_create(&vm)) {
		tap_skip("guest_memfd", "no usable /dev/kvm");
		return tap_done();
	}
	fd = kabi_ioctl(vm->fd, KVM_CREATE_GUEST_MEMFD, &g);
	if (fd < 0) {
		tap_skip("guest_memfd", "KVM_CREATE_GUEST_MEMFD with MMAP|INIT_SHARED: %s (Linux "
			 "6.18 offers it; `vmras probe` says what this host has)", strerror((int)-fd));
		kvmt_vm_free(vm);
		return tap_done();
	}
	gmem = (int)fd;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
	if (!ok(ram != MAP_FAILED, "map 4 MiB of guest_memfd shared"))
		return tap_done();
	r.hva = ram;
	r.fd = gmem;
	vmras_policy_default(&cfg.policy);
	cfg.policy.undeliverable = VMRAS_ACTION_IGNORE;
	if (!is_int(vmras_new(&cfg, &ras), 0, "vmras_new") ||
	    !is_int(vmras_add_region(ras, &r), 0, "a guest_memfd region") ||
	    !is_int(vmras_add_vcpu(ras, 0, dummy_vcpu), 0, "vCPU 0 (not a real one)") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "x86") ||
	    !is_int(vmras_start(ras), 0, "vmras_start"))
		return tap_done();
	vmras_vcpu_thread_start(ras, 0);
	test_classify();
	test_repeats();
	test_keep_then_punch();
	test_madv_hwpoison();
	vmras_free(ras);
	munmap(ram, RAM_SIZE);
	close(gmem);
	close(dummy_vcpu);
	kvmt_vm_free(vm);
	return tap_done();
}
