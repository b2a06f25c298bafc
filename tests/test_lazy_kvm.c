// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Lazy memory under a real vCPU (issue 11): guest RAM made lazy with
 * vmras_lazy_begin, its pages (the guest's code among them) supplied by a
 * source when the vCPU first touches them:
 *   - with the library's userfaultfd, KVM waits on it and the router
 *     serves each fault;
 *   - where KVM cannot wait on the userfaultfd (played here by giving the
 *     library a user-mode-only one through vmras_set_userfaultfd, which
 *     vmras_lazy_begin would refuse if it had opened it itself: KVM's other
 *     accesses would fail), KVM_RUN fails with -EFAULT and
 *     KVM_EXIT_MEMORY_FAULT (or, where KVM emulates, exits as MMIO inside
 *     RAM), and vmras_vcpu_exit fetches the page and says "enter again";
 *   - VMM threads (a safe copy) fault lazy pages in too, a zero page
 *     arrives as zeros, a poisoned one never as data, a huge page whole,
 *     and a source that fails leaves the page missing until it is asked
 *     again (vmras_lazy_retry), never filled with made-up data.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kabi/userfaultfd.h"
#include "kvm_util.h"
#include "tap.h"
#include "vmras/lazy.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define PAGE 4096ULL
#define RAM (2ULL << 20)
#define PORT_BYTE 0x10
#define PORT_DONE 0x20
#define POISONED_PAGE 0x30ULL	/* never read by the guest */
#define ZERO_PAGE 0x31ULL

/*
 * Real mode at 0x1000: read the first byte of pages 0x2000..0xf000 and OUT
 * each to PORT_BYTE, then OUT to PORT_DONE and halt.
 *   mov si, 0x2000; L: mov al, [si]; out 0x10, al; add si, 0x1000; jnz L;
 *   out 0x20, al; hlt
 */
static const uint8_t code[] = { 0xbe, 0x00, 0x20, 0x8a, 0x04, 0xe6, PORT_BYTE, 0x81, 0xc6,
				0x00, 0x10, 0x75, 0xf6, 0xe6, PORT_DONE, 0xf4 };

static unsigned char *image;	/* what the source has: RAM bytes */
static atomic_int fetches, fail_fetches;
static struct vmras *ras;

static uint8_t page_byte(uint64_t page)
{
	return (uint8_t)(page * 7 + 3);
}

static int fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	uint8_t kinds[512];

	(void)opaque;
	(void)urgent;
	atomic_fetch_add(&fetches, 1);
	if (atomic_load(&fail_fetches) > 0) {
		atomic_fetch_sub(&fail_fetches, 1);
		return -EIO;
	}
	for (uint64_t i = 0; i < len / PAGE && i < 512; i++) {
		uint64_t p = gpa / PAGE + i;

		kinds[i] = p == POISONED_PAGE ? VMRAS_PAGE_POISONED
			 : p == ZERO_PAGE ? VMRAS_PAGE_ZERO : VMRAS_PAGE_DATA;
	}
	return vmras_lazy_supply(ras, gpa, len, image + gpa, len / PAGE <= 512 ? kinds : NULL);
}

static void noop(void *o)
{
	(void)o;
}

static void noop_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	(void)vcpu;
	(void)blocked;
}

static void kick(void *o, unsigned int vcpu)
{
	(void)o;
	(void)vcpu;
}

static int user_mode_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM |
					      UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_POISON };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd >= 0 && ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void make_image(void)
{
	image = calloc(1, RAM);
	memcpy(image + 0x1000, code, sizeof(code));
	for (uint64_t p = 2; p < RAM / PAGE; p++)
		memset(image + p * PAGE, page_byte(p), PAGE);
	memset(image + ZERO_PAGE * PAGE, 0, PAGE);
}

/* One guest run over lazy RAM; user_mode: the userfaultfd takes no kernel faults. */
static void run_guest(bool user_mode)
{
	const char *mode = user_mode ? "user-mode-only userfaultfd" : "userfaultfd";
	struct vmras_config cfg = { .ops = { .pause_vcpus = noop, .resume_vcpus = noop,
					     .vcpu_blocked = noop_blocked, .kick_vcpu = kick } };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmras_lazy_source src = { .fetch = fetch, .prefetch = false };
	struct vmras_lazy_stats st;
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	unsigned int got = 0, wrong = 0, exits = 0;
	uint64_t mcg = 0;
	void *hva;
	int r;

	if (kvmt_vm_create(&vm)) {
		ok(true, "# SKIP %s: no /dev/kvm", mode);
		return;
	}
	hva = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vmras_region reg = { .gpa = 0, .size = RAM, .hva = hva, .fd = -1,
				    .backing = VMRAS_BACKING_ANON, .page_size = PAGE };
	r = kvmt_vm_set_memslot(vm, 0, 0, RAM, hva, 0) ?: kvmt_vcpu_create(vm, 0, 0x1000, &vcpu);
	if (!r && !kvmt_mce_cap_supported(vm, &mcg))
		x86.mcg_cap = mcg;
	vmras_policy_default(&cfg.policy);
	r = r ?: vmras_new(&cfg, &ras);
	r = r ?: vmras_add_region(ras, &reg);
	r = r ?: vmras_x86_setup(ras, &x86);
	r = r ?: vmras_add_vcpu(ras, 0, vcpu->fd);
	if (!r && user_mode) {
		int fd = user_mode_uffd();

		r = fd < 0 ? -errno : vmras_set_userfaultfd(ras, fd);
	}
	r = r ?: vmras_start(ras);
	r = r ?: vmras_lazy_begin(ras, &src, NULL);
	if (!ok(!r, "%s: lazy RAM set up (%s)", mode, strerror(-r)))
		goto out;
	vmras_vcpu_thread_start(ras, 0);
	/*
	 * KVM here emulates guest code: it cannot fetch an instruction from a
	 * page it cannot map, so with a user-mode-only userfaultfd the code
	 * page is there first; data reads then exit.
	 */
	if (user_mode)
		ok(!vmras_lazy_supply(ras, 0x1000, PAGE, image + 0x1000, NULL),
		   "%s: the code page supplied before the vCPU runs", mode);
	atomic_store(&fetches, 0);
	for (;;) {
		vmras_vcpu_pre_run(ras, 0);
		r = kvmt_vcpu_run(vcpu);
		if (vmras_vcpu_exit(ras, 0, vcpu->run, r) == VMRAS_EXIT_HANDLED) {
			exits++;
			continue;
		}
		if (r || vcpu->run->exit_reason != KVM_EXIT_IO)
			break;
		if (kvmt_exit_is_out(vcpu->run, PORT_DONE))
			break;
		if (kvmt_exit_is_out(vcpu->run, PORT_BYTE)) {
			got++;
			wrong += kvmt_io_value(vcpu->run) != page_byte(got + 1);
		}
	}
	/*
	 * UFFDIO_COPY wakes the vCPU before the supplier counts the page: the
	 * last page's count may lag the guest's end by a moment (a loaded host).
	 */
	for (int i = 0; i < 200; i++) {
		vmras_lazy_get_stats(ras, &st);
		if (st.pages_present >= 15) /* the code page and 14 data pages */
			break;
		usleep(10000);
	}
	ok(r == 0 && kvmt_exit_is_out(vcpu->run, PORT_DONE),
	   "%s: the guest ran to its end (KVM_RUN %d, exit %u)", mode, r, vcpu->run->exit_reason);
	is_int(got, 14, "%s: it read 14 lazy pages", mode);
	is_int(wrong, 0, "%s: each with the source's data", mode);
	ok(st.faulted >= (user_mode ? 14 : 15), "%s: the pages came on demand (%" PRIu64 " pages)",
	   mode, st.faulted);
	if (user_mode) {
		ok(st.memfault_exits >= 1 && exits >= 1,
		   "%s: KVM could not wait: it exited (MMIO inside RAM where it emulates, "
		   "else KVM_EXIT_MEMORY_FAULT) and vmras_vcpu_exit served it (%" PRIu64 " exits)",
		   mode, st.memfault_exits);
	} else {
		is_u64(st.memfault_exits, 0, "%s: KVM waited on the userfaultfd (no exits)", mode);
		uint64_t ns = 0;

		vmras_lazy_vcpu_blocktime(ras, &ns, 1);
		ok(ns > 0 && st.blocktime_ns > 0 && st.latency_count > 0,
		   "%s: the vCPU's blocked time and the latency were measured (%" PRIu64 " ns)",
		   mode, ns);
	}
out:
	vmras_free(ras);
	ras = NULL;
	kvmt_vm_free(vm);
	munmap(hva, RAM);
}

static atomic_int reader_done;
static int reader_r;
static unsigned char reader_byte;

static void *read_page7(void *arg)
{
	(void)arg;
	reader_r = vmras_copy_from_guest(ras, &reader_byte, 0x7000, 1);
	atomic_store(&reader_done, 1);
	return NULL;
}

/* VMM threads, zeros, poison, a failing source, completion. */
static void library_paths(void)
{
	struct vmras_config cfg = { .ops = { .pause_vcpus = noop, .resume_vcpus = noop,
					     .vcpu_blocked = noop_blocked } };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmras_lazy_source src = { .fetch = fetch, .prefetch = false };
	struct vmras_lazy_stats st;
	unsigned char buf[16];
	char *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vmras_region reg = { .gpa = 0, .size = RAM, .hva = ram, .fd = -1,
				    .backing = VMRAS_BACKING_ANON, .page_size = PAGE };
	uint64_t bad = 0;
	uint8_t kinds[RAM / PAGE];
	pthread_t t;
	int r;

	int dummy_vcpu = open("/dev/null", O_RDWR | O_CLOEXEC);

	memset(ram, 0xee, RAM); /* there before: begin must empty it */
	vmras_policy_default(&cfg.policy);
	r = vmras_new(&cfg, &ras);
	r = r ?: vmras_add_region(ras, &reg);
	r = r ?: vmras_x86_setup(ras, &x86);
	r = r ?: vmras_add_vcpu(ras, 0, dummy_vcpu);
	r = r ?: vmras_start(ras);
	r = r ?: vmras_lazy_begin(ras, &src, NULL);
	if (!ok(!r, "library: lazy RAM set up (%s)", strerror(-r)))
		goto out;
	is_int(vmras_lazy_begin(ras, &src, NULL), -EEXIST, "library: begin twice is refused");
	is_int(vmras_copy_from_guest(ras, buf, 0x5000, sizeof(buf)), 0,
	       "library: a safe copy of a lazy page waits for it");
	ok(buf[0] == page_byte(5) && buf[15] == page_byte(5), "library: and reads its data");
	is_int(vmras_copy_from_guest(ras, buf, ZERO_PAGE * PAGE, 8), 0, "library: a zero page");
	ok(!memcmp(buf, "\0\0\0\0\0\0\0\0", 8), "library: reads zeros");
	r = vmras_copy_from_guest_at(ras, buf, POISONED_PAGE * PAGE, 8, &bad);
	is_int(r, -EHWPOISON, "library: a page the source lost reads as poisoned, never data");
	is_u64(bad, POISONED_PAGE * PAGE, "library: naming that page");
	is_int(vmras_lazy_supply(ras, 0x7000, 100, image, NULL), -EINVAL,
	       "library: a supply of part of a page is refused");
	is_int(vmras_lazy_supply(ras, RAM, PAGE, image, NULL), -EINVAL,
	       "library: a supply outside lazy RAM is refused");
	/* KVM_RUN -EFAULT with KVM_EXIT_MEMORY_FAULT on a lazy page (KVM did not wait). */
	struct kvm_run *run = calloc(1, 4096);

	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	kabi_kvm_run_memory_fault(run)->gpa = 0xa000;
	kabi_kvm_run_memory_fault(run)->size = PAGE;
	is_int(vmras_vcpu_exit(ras, 0, run, -EFAULT), VMRAS_EXIT_HANDLED,
	       "library: -EFAULT + KVM_EXIT_MEMORY_FAULT on a lazy page: fetched, enter again");
	vmras_lazy_get_stats(ras, &st);
	ok(st.memfault_exits == 1 && ram[0xa000] == (char)page_byte(10),
	   "library: counted as a memory-fault exit, the page is there");
	kabi_kvm_run_memory_fault(run)->gpa = 0xa000; /* here now */
	is_int(vmras_vcpu_exit(ras, 0, run, -EFAULT), VMRAS_EXIT_NOT_MINE, "library: "
	       "(an -EFAULT memory fault on a page that is here is the VMM's, as before)");
	free(run);
	/*
	 * A source that fails: the page stays missing and the reader waits,
	 * asked for again every 100 ms; once the source works it gets the data.
	 */
	atomic_store(&fail_fetches, 1000000);
	pthread_create(&t, NULL, read_page7, NULL);
	usleep(400000);
	vmras_lazy_get_stats(ras, &st);
	ok(st.fetch_errors >= 2 && atomic_load(&reader_done) == 0,
	   "library: the source fails: the reader still waits, nothing made up, asked again "
	   "(%" PRIu64 " failed fetches)", st.fetch_errors);
	atomic_store(&fail_fetches, 0);
	pthread_join(t, NULL);
	ok(reader_r == 0 && reader_byte == page_byte(7),
	   "library: once the source works the reader gets the data");
	is_int(vmras_lazy_retry(ras), 0, "library: vmras_lazy_retry (nothing left to ask for)");
	/* The rest arrives in one supply: only what is missing is placed. */
	for (uint64_t p = 0; p < RAM / PAGE; p++)
		kinds[p] = p == POISONED_PAGE ? VMRAS_PAGE_POISONED
			 : p == ZERO_PAGE ? VMRAS_PAGE_ZERO : VMRAS_PAGE_DATA;
	is_int(vmras_lazy_supply(ras, 0, RAM, image, kinds), 0, "library: the rest supplied");
	is_int(vmras_lazy_wait(ras, 10000), 0, "library: every page is here");
	vmras_lazy_get_stats(ras, &st);
	ok(st.complete && st.pages_present == RAM / PAGE && st.poisoned_pages == 1 &&
	   st.zero_pages == 1, "library: counted (present %" PRIu64 ", poisoned %" PRIu64
	   ", zero %" PRIu64 ")", st.pages_present, st.poisoned_pages, st.zero_pages);
	ok(ram[0] == 0 && ram[0x9000] == (char)page_byte(9) && ram[RAM - 1] == (char)page_byte(RAM / PAGE - 1),
	   "library: RAM holds the source's bytes, nothing of what was there before begin");
out:
	vmras_free(ras);
	ras = NULL;
	munmap(ram, RAM);
	close(dummy_vcpu);
}

/* Post-copy's case: RAM that partly arrived keeps those pages; the rest is fetched. */
static void partial_paths(void)
{
	struct vmras_config cfg = { .ops = { .pause_vcpus = noop, .resume_vcpus = noop,
					     .vcpu_blocked = noop_blocked } };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmras_lazy_source src = { .fetch = fetch, .prefetch = false };
	struct vmras_lazy_stats st;
	char *ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vmras_region reg = { .gpa = 0, .size = RAM, .hva = ram, .fd = -1,
				    .backing = VMRAS_BACKING_ANON, .page_size = PAGE };
	uint64_t here[RAM / PAGE / 64] = { 0 };
	unsigned char b = 0;
	int r;

	/* Even pages arrived by pre-copy; odd ones hold stale data (written since). */
	for (uint64_t p = 0; p < RAM / PAGE; p++) {
		if (p % 2 == 0 && p != POISONED_PAGE) {
			memcpy(ram + p * PAGE, image + p * PAGE, PAGE);
			here[p / 64] |= 1ULL << (p % 64);
		} else {
			memset(ram + p * PAGE, 0xee, PAGE);
		}
	}
	vmras_policy_default(&cfg.policy);
	r = vmras_new(&cfg, &ras);
	r = r ?: vmras_add_region(ras, &reg);
	r = r ?: vmras_x86_setup(ras, &x86);
	r = r ?: vmras_start(ras);
	atomic_store(&fetches, 0);
	r = r ?: vmras_lazy_begin_partial(ras, &src, NULL, here, RAM / PAGE);
	if (!ok(!r, "partial: lazy RAM over what pre-copy sent (%s)", strerror(-r)))
		goto out;
	vmras_lazy_get_stats(ras, &st);
	is_u64(st.pages_present, RAM / PAGE / 2 - 1, "partial: the pages that arrived count as here");
	ok(vmras_copy_from_guest(ras, &b, 0x8000, 1) == 0 && b == page_byte(8) &&
	   atomic_load(&fetches) == 0, "partial: a page that arrived is read as it was, not fetched");
	ok(vmras_copy_from_guest(ras, &b, 0x9000, 1) == 0 && b == page_byte(9) &&
	   atomic_load(&fetches) == 1, "partial: a stale page is fetched, never read as it was");
	ok(vmras_copy_from_guest(ras, &b, POISONED_PAGE * PAGE, 1) == -EHWPOISON,
	   "partial: a page the source lost is poisoned");
	vmras_lazy_get_stats(ras, &st);
	ok(st.faulted == 2 && st.prefetched == 0, "partial: only those were fetched (%" PRIu64 ")",
	   st.faulted);
out:
	vmras_free(ras);
	ras = NULL;
	munmap(ram, RAM);
}

int main(void)
{
	make_image();
	run_guest(false);
	run_guest(true);
	library_paths();
	partial_paths();
	return tap_done();
}
