// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Regressions for the core rework (issue 8), against real KVM vCPUs,
 * hugetlb memory and userfaultfd, each asserting outcomes (bytes in guest
 * memory, what the guest's own #MC handler read, stats, registry entries,
 * exit classification), never timing:
 *   1. delivery and MCIP deferral against a real vCPU
 *   2. vmras_x86_plan, bit for bit
 *   3. capture-ring overflow: counted, reported, nothing silently lost
 *   4. more than 64 splits over a context's life
 *   5. a split racing a guest reset (20 times); 5b: with a VMM thread
 *      reading the huge page meanwhile
 *   6. a reader during a split never sees zeros
 *   7. two injections from a vCPU thread while splits pause the vCPUs
 *   8. a read-only memslot and a PROT_NONE page are not memory errors
 *   9. a userfaultfd without kernel faults refuses to split, and says why
 * Huge pages: as root the test reserves what it needs and gives it back.
 * Each case runs in its own process with a time limit: a hang or a crash
 * is reported (with the threads' stacks where gdb is installed) and the
 * other cases still run. VMRAS_CORE_CASES=1,5b selects cases.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "kabi/memfd.h"
#include "kvm_util.h"
#include "tap.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define SUB 4096ULL
#define HUGE (2ULL << 20)
#define NSUB ((unsigned int)(HUGE / SUB))

/* What the x86 encoder must produce (Intel SDM vol. 3B 15.9.3, QEMU's values). */
#define STATUS_SRAO 0xBD000000000000C0ULL	/* VAL|UC|EN|MISCV|ADDRV|S, MCACOD 0xC0 */
#define STATUS_SRAR 0xBD80000000000134ULL	/* ... |AR, MCACOD 0x134 */
#define STATUS_BYSTANDER 0xA000000000000000ULL	/* VAL|UC */
#define STATUS_AMD_SRAO 0x9C00180000000000ULL	/* VAL|EN|MISCV|ADDRV|DEFERRED|POISON */
#define STATUS_AMD_SRAR 0xBC00080000000000ULL	/* VAL|UC|EN|MISCV|ADDRV|POISON */
#define MISC_4K 0x8cULL				/* physical address mode, lsb 12 */

static struct vmras *ras;

/* ---- huge pages ------------------------------------------------------- */

#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB/"

static volatile long hp_added;	/* huge pages this test reserved */

static long read_long(const char *path)
{
	char b[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	long v = 0;

	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		v = v * 10 + (b[i] - '0');
	return v;
}

/* Async-signal-safe (on_alarm gives the pages back too). */
static int write_long(const char *path, long v)
{
	char b[32];
	int i = (int)sizeof(b), fd;
	ssize_t n;

	b[--i] = '\n';
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, b + i, sizeof(b) - (size_t)i);
	close(fd);
	return n == (ssize_t)(sizeof(b) - (size_t)i) ? 0 : -EIO;
}

static long hp_available(void)
{
	long f = read_long(HP_DIR "free_hugepages"), r = read_long(HP_DIR "resv_hugepages");

	return f < 0 ? -1 : f - (r > 0 ? r : 0);
}

/* At least need free 2 MiB pages: as root, reserve what is missing. */
static bool hp_reserve(long need, char *why, size_t len)
{
	long total = read_long(HP_DIR "nr_hugepages"), avail = hp_available(), after;

	if (total < 0) {
		snprintf(why, len, "this kernel has no 2 MiB huge pages (%snr_hugepages)", HP_DIR);
		return false;
	}
	if (avail >= need)
		return true;
	if (geteuid() != 0) {
		snprintf(why, len, "needs %ld free 2 MiB huge pages, %ld free, and only root "
			 "can reserve more", need, avail);
		return false;
	}
	if (write_long(HP_DIR "nr_hugepages", total + need - avail)) {
		snprintf(why, len, "needs %ld free 2 MiB huge pages, %ld free, and reserving "
			 "more failed", need, avail);
		return false;
	}
	after = read_long(HP_DIR "nr_hugepages");
	if (after > total)
		hp_added += after - total;
	avail = hp_available();
	if (avail < need) {
		snprintf(why, len, "needs %ld free 2 MiB huge pages; the kernel could reserve "
			 "only %ld more (%ld free)", need, after - total, avail);
		return false;
	}
	return true;
}

static void hp_release(void)
{
	long added = hp_added, now;

	if (!added)
		return;
	hp_added = 0;
	now = read_long(HP_DIR "nr_hugepages");
	if (now >= 0)
		write_long(HP_DIR "nr_hugepages", now > added ? now - added : 0);
}

/* The parent's last resort, should reading a child's results itself hang. */
static void on_alarm(int sig)
{
	static const char m[] = "Bail out! watchdog: the test itself hung\n";

	(void)sig;
	(void)!write(1, m, sizeof(m) - 1);
	hp_release();
	_exit(2);
}

/* A bound, never an assertion: poll cond for up to seconds. */
#define WAIT_FOR(cond, seconds)                                          \
	({                                                               \
		bool w_ = false;                                         \
		for (long n_ = 0; n_ < (long)(seconds) * 1000; n_++) {   \
			if ((cond)) {                                    \
				w_ = true;                               \
				break;                                   \
			}                                                \
			usleep(1000);                                    \
		}                                                        \
		w_ || (cond);                                            \
	})

/* ---- what the library reported --------------------------------------- */

static struct {
	pthread_mutex_t lock;
	struct vmras_failure *v;
	size_t n, cap;
} flog = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void flog_clear(void)
{
	pthread_mutex_lock(&flog.lock);
	flog.n = 0;
	pthread_mutex_unlock(&flog.lock);
}

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	pthread_mutex_lock(&flog.lock);
	if (flog.n == flog.cap) {
		size_t cap = flog.cap ? flog.cap * 2 : 256;
		struct vmras_failure *a = realloc(flog.v, cap * sizeof(*a));

		if (a) {
			flog.v = a;
			flog.cap = cap;
		}
	}
	if (flog.n < flog.cap)
		flog.v[flog.n++] = *f;
	pthread_mutex_unlock(&flog.lock);
}

/* The last report about the range [page, page + size) that satisfies want (or any). */
static bool flog_find(uint64_t page, uint64_t size, bool (*want)(const struct vmras_failure *),
		      struct vmras_failure *out)
{
	bool found = false;

	pthread_mutex_lock(&flog.lock);
	for (size_t i = flog.n; i-- > 0 && !found;) {
		const struct vmras_failure *f = &flog.v[i];

		if ((f->ev.valid & VMRAS_EV_GPA) && (f->ev.gpa & ~(size - 1)) == page &&
		    (!want || want(f))) {
			if (out)
				*out = *f;
			found = true;
		}
	}
	pthread_mutex_unlock(&flog.lock);
	return found;
}

/* Every report so far, as diagnostics (after a failed check). */
static void flog_dump_from(const char *name, size_t from, size_t max)
{
	pthread_mutex_lock(&flog.lock);
	for (size_t i = from; i < flog.n && i < from + max; i++) {
		const struct vmras_failure *f = &flog.v[i];

		tap_diag("%s: report %zu: gpa 0x%" PRIx64 " source %s kind %s size %" PRIu64
			 " action %s recipient %s contained %d ar %d: '%s'", name, i, f->ev.gpa,
			 vmras_source_name(f->ev.source), f->ev.kind == VMRAS_AR ? "AR" : "AO",
			 f->size, vmras_action_name(f->action), vmras_recipient_name(f->recipient),
			 f->contained, f->action_required, f->detail);
	}
	if (flog.n > from + max)
		tap_diag("%s: (%zu reports in all)", name, flog.n);
	pthread_mutex_unlock(&flog.lock);
}

/* The reports about one 4 KiB page. */
static void flog_dump_page(const char *name, uint64_t page, size_t max)
{
	size_t shown = 0;

	pthread_mutex_lock(&flog.lock);
	for (size_t i = 0; i < flog.n && shown < max; i++) {
		const struct vmras_failure *f = &flog.v[i];

		if (!(f->ev.valid & VMRAS_EV_GPA) || (f->ev.gpa & ~(SUB - 1)) != page)
			continue;
		shown++;
		tap_diag("%s: report %zu about 0x%" PRIx64 ": source %s kind %s size %" PRIu64
			 " action %s contained %d: '%s'", name, i, page,
			 vmras_source_name(f->ev.source), f->ev.kind == VMRAS_AR ? "AR" : "AO",
			 f->size, vmras_action_name(f->action), f->contained, f->detail);
	}
	pthread_mutex_unlock(&flog.lock);
}

static void flog_dump(const char *name, size_t max)
{
	flog_dump_from(name, 0, max);
}

static size_t flog_count(void)
{
	size_t n;

	pthread_mutex_lock(&flog.lock);
	n = flog.n;
	pthread_mutex_unlock(&flog.lock);
	return n;
}

static bool to_guest(const struct vmras_failure *f)
{
	return f->recipient == VMRAS_RECIPIENT_GUEST;
}

static atomic_int n_kicks, n_resets, n_stops, n_pauses, n_resumes;
static struct kvm_run *kick_run[KVMT_MAX_VCPUS];

/* A VMM's kick: the vCPU leaves (or does not enter) KVM_RUN. */
static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	atomic_fetch_add(&n_kicks, 1);
	if (vcpu < KVMT_MAX_VCPUS && kick_run[vcpu])
		__atomic_store_n(&kick_run[vcpu]->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

static void on_reset(void *o, const char *why)
{
	(void)o;
	(void)why;
	atomic_fetch_add(&n_resets, 1);
}

static void on_stop(void *o, const char *why)
{
	(void)o;
	(void)why;
	atomic_fetch_add(&n_stops, 1);
}

/* No vCPUs run: pausing them is nothing to wait for. */
static void on_pause(void *o)
{
	(void)o;
	atomic_fetch_add(&n_pauses, 1);
}

static void on_resume(void *o)
{
	(void)o;
	atomic_fetch_add(&n_resumes, 1);
}

/* No vCPUs: none waits inside the library. */
static void on_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	(void)vcpu;
	(void)blocked;
}

static struct vmras_config base_config(void)
{
	struct vmras_config cfg = {
		.ops = { .kick_vcpu = on_kick, .request_reset = on_reset,
			 .request_stop = on_stop, .failure = on_failure },
		.ram_mmio = VMRAS_RAM_MMIO_NO,
	};

	vmras_policy_default(&cfg.policy);
	flog_clear();
	atomic_store(&n_kicks, 0);
	atomic_store(&n_resets, 0);
	atomic_store(&n_stops, 0);
	atomic_store(&n_pauses, 0);
	atomic_store(&n_resumes, 0);
	return cfg;
}

static struct vmras_stats get_stats(void)
{
	struct vmras_stats s;

	vmras_get_stats(ras, &s);
	return s;
}

static size_t registry_count(void)
{
	return vmras_registry_count(vmras_get_registry(ras));
}

static void ras_free(void)
{
	vmras_free(ras);
	ras = NULL;
	memset(kick_run, 0, sizeof(kick_run));
}

/* ---- guest memory contents ------------------------------------------- */

/* Never a zero byte anywhere: a zero read is a page that lost its data. */
static inline uint64_t pat(uint64_t gpa)
{
	return ((gpa >> 3) * 0x9e3779b97f4a7c15ULL + 0x5bd1e995ULL) | 0x0101010101010101ULL;
}

static void pat_fill(void *hva, uint64_t gpa, uint64_t len)
{
	uint64_t *w = hva;

	for (uint64_t off = 0; off < len; off += 8)
		w[off / 8] = pat(gpa + off);
}

enum pk { PK_PATTERN, PK_ZERO, PK_OTHER, PK_POISON, PK_ERR };

static const char *pk_name(enum pk k)
{
	static const char *const n[] = { "pattern", "zeros", "other bytes", "-EHWPOISON", "error" };

	return n[k];
}

static enum pk classify(const uint64_t *w, uint64_t gpa, uint64_t len)
{
	bool pattern = true, zero = true;

	for (uint64_t off = 0; off < len && (pattern || zero); off += 8) {
		pattern &= w[off / 8] == pat(gpa + off);
		zero &= w[off / 8] == 0;
	}
	return pattern ? PK_PATTERN : zero ? PK_ZERO : PK_OTHER;
}

/* One 4 KiB page of guest RAM through the safe copy. */
static enum pk read_sub(uint64_t gpa)
{
	uint64_t buf[SUB / 8];
	int rc = vmras_copy_from_guest(ras, buf, gpa, SUB);

	if (rc == -EHWPOISON)
		return PK_POISON;
	if (rc)
		return PK_ERR;
	return classify(buf, gpa, SUB);
}

/* ---- hugetlb guest RAM ------------------------------------------------ */

struct hregion {
	int fd;
	char *hva;
	uint64_t gpa, size;
};

static int hregion_new(struct hregion *h, uint64_t gpa, unsigned int npages)
{
	h->gpa = gpa;
	h->size = npages * HUGE;
	h->hva = MAP_FAILED;
	h->fd = memfd_create("vmras-core", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
	if (h->fd < 0)
		return -errno;
	h->hva = ftruncate(h->fd, (off_t)h->size)
			 ? MAP_FAILED
			 : mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
	if (h->hva == MAP_FAILED) {
		int err = -errno;

		close(h->fd);
		h->fd = -1;
		return err;
	}
	pat_fill(h->hva, h->gpa, h->size);
	return 0;
}

static void hregion_free(struct hregion *h)
{
	if (h->hva != MAP_FAILED)
		munmap(h->hva, h->size);
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->hva = MAP_FAILED;
}

static struct vmras_region hregion_vmras(const struct hregion *h)
{
	return (struct vmras_region){
		.gpa = h->gpa, .size = h->size, .hva = h->hva, .backing = VMRAS_BACKING_HUGETLB,
		.fd = h->fd, .fd_offset = 0, .page_size = HUGE,
	};
}

static bool hp_ok;
static char hp_why[200];

/* A context on one hugetlb region, no vCPUs, pause hooks that return at once. */
static bool huge_context(const char *name, struct hregion *h, uint64_t gpa, unsigned int npages,
			 struct vmras_config *cfg)
{
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r;
	int err;

	h->fd = -1;
	h->hva = MAP_FAILED;
	if (!hp_ok) {
		tap_skip(name, "%s", hp_why);
		return false;
	}
	err = hregion_new(h, gpa, npages);
	if (!is_int(err, 0, "%s: %u MiB of hugetlb memory (memfd, 2 MiB pages), a pattern in it",
		    name, npages * 2))
		return false;
	r = hregion_vmras(h);
	if (!cfg->ops.pause_vcpus) {
		cfg->ops.pause_vcpus = on_pause;
		cfg->ops.resume_vcpus = on_resume;
		cfg->ops.vcpu_blocked = on_blocked;
	}
	if (!is_int(vmras_new(cfg, &ras), 0, "%s: vmras_new", name) ||
	    !is_int(vmras_add_region(ras, &r), 0, "%s: the hugetlb region", name) ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "%s: x86", name) ||
	    !is_int(vmras_start(ras), 0, "%s: vmras_start", name)) {
		if (ras)
			ras_free();
		hregion_free(h);
		return false;
	}
	return true;
}

/* ======================================================================
 * 1. Delivery against a real vCPU
 * ====================================================================== */

#define C1_RAM_GPA 0x100000ULL
#define C1_RAM_SIZE 0x100000ULL
#define C1_LOOP_GPA 0x1800ULL

/*
 * The machine-check guest's start and main loop (kvm_util.h), plus what an
 * OS does when it is done with a machine check: while area.clear_mcip is
 * set, the loop itself clears MCi_STATUS and MCG_STATUS (MCIP). The #MC
 * handler is the harness's at 0x102f. Loaded at 0x1800; position
 * independent.
 *   cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x8000
 *   mov word [0x48],0x102f; mov word [0x4a],0	; IVT[18] = handler
 * loop:
 *   cmp dword [0x2004],0; je 1f		; area.clear_mcip
 *   mov ecx,[0x2000]; shl ecx,2; add ecx,0x401	; MCi_STATUS of area.bank
 *   xor eax,eax; xor edx,edx; wrmsr
 *   mov ecx,0x17a; wrmsr			; MCG_STATUS = 0
 * 1: cmp dword [0x2008],0; jne done		; area.stop
 *   inc dword [0x2030]; mov ax,[0x2030]; out 0x10,ax; jmp loop
 * done: out 0x12,al; hlt; jmp done
 */
static const uint8_t c1_loop_code[] = {
	0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x80,
	0xc7, 0x06, 0x48, 0x00, 0x2f, 0x10,
	0xc7, 0x06, 0x4a, 0x00, 0x00, 0x00,
	/* 16 loop: */
	0x66, 0x83, 0x3e, 0x04, 0x20, 0x00,
	0x74, 0x20,
	0x66, 0x8b, 0x0e, 0x00, 0x20,
	0x66, 0xc1, 0xe1, 0x02,
	0x66, 0x81, 0xc1, 0x01, 0x04, 0x00, 0x00,
	0x66, 0x31, 0xc0,
	0x66, 0x31, 0xd2,
	0x0f, 0x30,
	0x66, 0xb9, 0x7a, 0x01, 0x00, 0x00,
	0x0f, 0x30,
	/* 3e 1: */
	0x66, 0x83, 0x3e, 0x08, 0x20, 0x00,
	0x75, 0x0c,
	0x66, 0xff, 0x06, 0x30, 0x20,
	0xa1, 0x30, 0x20,
	0xe7, 0x10,
	0xeb, 0xc4,
	/* 52 done: */
	0xe6, 0x12,
	0xf4,
	0xeb, 0xfb,
};

_Static_assert(C1_LOOP_GPA + sizeof(c1_loop_code) <= KVMT_MC_AREA_GPA, "loop fits below the area");
_Static_assert(KVMT_MC_CODE_GPA + 0xa0 <= C1_LOOP_GPA, "loop clear of the harness's code");

/* A VMM's vCPU thread: pre_run, KVM_RUN, exit, on the vCPU's own thread. */
struct runner {
	struct kvmt_vcpu *vcpu;
	unsigned int index;
	atomic_bool stop, done;
	atomic_uint loop_outs, mc_outs, intr_exits, handled;
	_Atomic uint64_t fake_fault;	/* nonzero: report a KVM memory fault at this GPA */
	int start_rc, pre_run_err, run_err;
	uint32_t bad_exit;
};

/*
 * What KVM_RUN reports when the guest's access meets poison on a host
 * with hardware virtualization: -EHWPOISON with KVM_EXIT_MEMORY_FAULT.
 * This host emulates guest code, so a test stages it between runs.
 */
static int fake_memory_fault(struct runner *r, uint64_t gpa)
{
	struct kvm_run *run = calloc(1, sizeof(*run));
	int x;

	if (!run)
		return -ENOMEM;
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	kabi_kvm_run_memory_fault(run)->gpa = gpa;
	kabi_kvm_run_memory_fault(run)->size = SUB;
	x = vmras_vcpu_exit(ras, r->index, run, -EHWPOISON);
	free(run);
	return x;
}

static void *runner_thread(void *arg)
{
	struct runner *r = arg;
	struct kvm_run *run = r->vcpu->run;

	r->start_rc = vmras_vcpu_thread_start(ras, r->index);
	while (!r->start_rc && !atomic_load(&r->stop)) {
		int ret, x;

		uint64_t fake = atomic_exchange(&r->fake_fault, 0);

		if (fake && fake_memory_fault(r, fake) != VMRAS_EXIT_HANDLED)
			r->bad_exit = KVM_EXIT_MEMORY_FAULT;
		/* Cleared before pre_run: a kick after it makes KVM_RUN return at once. */
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		x = vmras_vcpu_pre_run(ras, r->index);
		if (x) {
			r->pre_run_err = x;
			break;
		}
		ret = kvmt_vcpu_run(r->vcpu);
		x = vmras_vcpu_exit(ras, r->index, run, ret);
		if (x != VMRAS_EXIT_NOT_MINE)
			atomic_fetch_add(&r->handled, 1);
		if (ret == -EINTR) {
			atomic_fetch_add(&r->intr_exits, 1);
			continue;
		}
		if (ret) {
			r->run_err = ret;
			break;
		}
		if (kvmt_exit_is_out(run, KVMT_MC_PORT_LOOP)) {
			atomic_fetch_add(&r->loop_outs, 1);
		} else if (kvmt_exit_is_out(run, KVMT_MC_PORT_MC)) {
			atomic_fetch_add(&r->mc_outs, 1);
		} else if (kvmt_exit_is_out(run, KVMT_MC_PORT_DONE) ||
			   run->exit_reason == KVM_EXIT_HLT) {
			break;
		} else {
			r->bad_exit = run->exit_reason;
			break;
		}
	}
	atomic_store(&r->done, true);
	return NULL;
}

static void check_mc(const struct kvmt_mc_area *area, uint64_t addr, const char *name)
{
	is_u64(area->status, STATUS_SRAO, "%s: the guest's handler reads MCi_STATUS = SRAO", name);
	is_u64(area->addr, addr, "%s: MCi_ADDR = the page", name);
	is_u64(area->misc, MISC_4K, "%s: MCi_MISC = 0x8c (physical, lsb 12)", name);
	is_u64(area->mcg_status, MCG_STATUS_RIPV | MCG_STATUS_MCIP,
	       "%s: MCG_STATUS = RIPV|MCIP", name);
	tap_diag("%s: status 0x%" PRIx64 " addr 0x%" PRIx64 " misc 0x%" PRIx64
		 " mcg_status 0x%" PRIx64 " (#MC taken %u times)", name, (uint64_t)area->status,
		 (uint64_t)area->addr, (uint64_t)area->misc, (uint64_t)area->mcg_status,
		 area->mc_count);
}

static void check_delivered_report(uint64_t page, const char *name)
{
	struct vmras_failure f;
	bool found = WAIT_FOR(flog_find(page, SUB, to_guest, &f), 10);

	if (!ok(found, "%s: a failure report says it went to the guest", name))
		return;
	ok(f.action == VMRAS_ACTION_INJECT && !f.action_required && f.contained &&
	   f.size == SUB && f.ev.kind == VMRAS_AO && f.ev.source == VMRAS_SRC_SIGBUS,
	   "%s: report: inject, action optional, contained, 4 KiB, an AO from SIGBUS "
	   "(action %d, ar %d, contained %d, size %" PRIu64 ", source %d, detail '%s')", name,
	   f.action, f.action_required, f.contained, f.size, f.ev.source, f.detail);
}

static bool is_held_timeout(const struct vmras_failure *f)
{
	return f->action == VMRAS_ACTION_RESET && f->recursive;
}

static bool is_ignored_repeat(const struct vmras_failure *f)
{
	return f->action == VMRAS_ACTION_RESET && strstr(f->detail, "does not act on them");
}

/*
 * An AR whose access raced another notice finds the guest inside that
 * handler (MCIP set): it waits for the handler to end instead of counting
 * as recursive at once; one that waits too long does count. A guest that
 * keeps touching a page it was told about is cut off by the policy.
 */
static void held_ar_steps(struct runner *rn, struct kvmt_mc_area *area)
{
	const uint64_t g3 = C1_RAM_GPA + 20 * SUB, g4 = C1_RAM_GPA + 21 * SUB;
	const uint64_t g5 = C1_RAM_GPA + 22 * SUB, g6 = C1_RAM_GPA + 23 * SUB;
	struct vmras_stats st0 = get_stats(), st;
	struct vmras_failure f;
	uint32_t loops, mc;
	int k;

	area->clear_mcip = 0;
	is_int(vmras_inject(ras, g3, VMRAS_AO, -1, true), 0, "held AR: an AO the guest keeps MCIP for");
	if (!ok(WAIT_FOR(area->mc_count >= 3 || atomic_load(&rn->done), 20) && area->mc_count == 3,
		"held AR: the AO is taken (MCIP stays set)"))
		return;
	atomic_store(&rn->fake_fault, g4);
	ok(WAIT_FOR(get_stats().notice_deferred > st0.notice_deferred || atomic_load(&rn->done), 20),
	   "held AR: KVM reports vCPU 0's access to another page: its AR is held");
	loops = area->loops;
	ok(WAIT_FOR(area->loops >= loops + 50 || atomic_load(&rn->done), 20),
	   "held AR: the guest runs on in its handler meanwhile");
	is_int(area->mc_count, 3, "held AR: no #MC inside the #MC");
	is_int(atomic_load(&n_resets), 0, "held AR: no reset (not yet recursive)");
	area->clear_mcip = 1;
	if (ok(WAIT_FOR(area->mc_count >= 4 || atomic_load(&rn->done), 20) && area->mc_count == 4,
	       "held AR: delivered once the guest cleared MCIP"))
		ok(area->status == STATUS_SRAR && area->addr == g4,
		   "held AR: it is the SRAR for that page (status 0x%" PRIx64 ", addr 0x%" PRIx64 ")",
		   (uint64_t)area->status, (uint64_t)area->addr);

	/* The guest's handler returns and it touches the page again, and again. */
	for (k = 1, mc = 4; k <= 8; k++) {
		atomic_store(&rn->fake_fault, g4);
		if (!WAIT_FOR(area->mc_count > mc || atomic_load(&rn->done), 20))
			break;
		mc = area->mc_count;
	}
	is_int(k, 9, "repeats: 8 more touches of the page, each a machine check");
	is_int(atomic_load(&n_resets), 0, "repeats: no reset yet");
	atomic_store(&rn->fake_fault, g4);
	ok(WAIT_FOR(atomic_load(&n_resets) == 1, 20) && flog_find(g4, SUB, is_ignored_repeat, &f),
	   "repeats: the 10th is not sent; the policy resets a guest that does not act on "
	   "them (%s)", f.detail);
	is_int(area->mc_count, mc, "repeats: no #MC for it");

	/* A held AR whose guest never leaves its handler is recursive after all. */
	area->clear_mcip = 0;
	mc = area->mc_count;
	is_int(vmras_inject(ras, g5, VMRAS_AO, -1, true), 0, "held too long: an AO, MCIP kept set");
	ok(WAIT_FOR(area->mc_count > mc || atomic_load(&rn->done), 20), "held too long: taken");
	atomic_store(&rn->fake_fault, g6);
	ok(WAIT_FOR(atomic_load(&n_resets) == 2, 20) && flog_find(g6, SUB, is_held_timeout, &f),
	   "held too long: recursive, the policy resets (%s)", f.detail);
	st = get_stats();
	ok(st.notice_deferred >= st0.notice_deferred + 2,
	   "held AR: each hold counted in notice_deferred (%" PRIu64 " -> %" PRIu64 ")",
	   st0.notice_deferred, st.notice_deferred);
	area->clear_mcip = 1;
}

static void case_delivery(void)
{
	struct runner rn = { .index = 0 };
	struct kvmt_mc_area *area = NULL;
	struct kvmt_vm *vm = NULL;
	struct vmras_config cfg;
	struct vmras_stats st;
	struct vmras_poison p;
	struct kvmt_vcpu *vcpu;
	struct vmras_x86_config x86 = { .vendor = VMRAS_X86_INTEL };
	struct vmras_region r0 = { .gpa = 0, .size = KVMT_MC_RAM_SIZE, .backing = VMRAS_BACKING_ANON,
				   .fd = -1, .page_size = SUB, .slot = 0 };
	struct vmras_region r1 = { .gpa = C1_RAM_GPA, .size = C1_RAM_SIZE,
				   .backing = VMRAS_BACKING_ANON, .fd = -1, .page_size = SUB,
				   .slot = 1 };
	uint64_t g1 = C1_RAM_GPA + 5 * SUB + 0x123, g2 = C1_RAM_GPA + 9 * SUB, loops;
	pthread_t th;
	bool started = false;
	char buf[8];
	void *ram0, *ram1;

	if (!is_int(kvmt_vm_create(&vm), 0, "delivery: a KVM VM") ||
	    !is_int(kvmt_mce_cap_supported(vm, &x86.mcg_cap), 0, "delivery: KVM's MCG_CAP") ||
	    !is_int(kvmt_vm_add_ram(vm, 0, 0, KVMT_MC_RAM_SIZE, 0, &ram0), 0,
		    "delivery: 64 KiB of RAM at GPA 0 (the machine-check guest)") ||
	    !is_int(kvmt_vm_add_ram(vm, 1, C1_RAM_GPA, C1_RAM_SIZE, 0, &ram1), 0,
		    "delivery: 1 MiB of anonymous RAM at 0x%llx", C1_RAM_GPA))
		goto out;
	area = kvmt_mc_guest_load(ram0, (uint32_t)(x86.mcg_cap & MCG_BANKCNT_MASK) - 1);
	memcpy((char *)ram0 + C1_LOOP_GPA, c1_loop_code, sizeof(c1_loop_code));
	if (!is_int(kvmt_vcpu_create(vm, 0, C1_LOOP_GPA, &vcpu), 0, "delivery: vCPU 0") ||
	    !is_int(kvmt_vcpu_setup_mce(vcpu, x86.mcg_cap), 0,
		    "delivery: machine checks set up (MCG_CAP 0x%" PRIx64 ")", x86.mcg_cap))
		goto out;

	cfg = base_config();
	r0.hva = ram0;
	r1.hva = ram1;
	if (!is_int(vmras_new(&cfg, &ras), 0, "delivery: vmras_new") ||
	    !is_int(vmras_add_region(ras, &r0), 0, "delivery: region GPA 0") ||
	    !is_int(vmras_add_region(ras, &r1), 0, "delivery: region 0x%llx", C1_RAM_GPA) ||
	    !is_int(vmras_add_vcpu(ras, 0, vcpu->fd), 0, "delivery: the real vCPU") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "delivery: x86, Intel") ||
	    !is_int(vmras_start(ras), 0, "delivery: vmras_start"))
		goto out;
	kick_run[0] = vcpu->run;
	rn.vcpu = vcpu;
	if (!is_int(pthread_create(&th, NULL, runner_thread, &rn), 0, "delivery: vCPU thread"))
		goto out;
	started = true;
	if (!ok(WAIT_FOR(area->loops >= 1 || atomic_load(&rn.done), 20) && !atomic_load(&rn.done),
		"delivery: the guest runs its loop (handler installed)"))
		goto out;

	/* The first AO: MCIP clear, delivered at once. */
	is_int(vmras_inject(ras, g1, VMRAS_AO, -1, true), 0,
	       "delivery: inject an AO (signal) at 0x%" PRIx64, g1);
	if (!ok(WAIT_FOR(area->mc_count >= 1 || atomic_load(&rn.done), 20) && area->mc_count == 1,
		"delivery: the AO reaches the guest's #MC handler"))
		goto out;
	check_mc(area, g1 & ~(SUB - 1), "delivery AO 1");
	check_delivered_report(g1 & ~(SUB - 1), "delivery AO 1");
	st = get_stats();
	is_int(st.notice_delivered, 1, "delivery: stats.notice_delivered 1");
	is_int(st.contained, 1, "delivery: stats.contained 1");
	is_int(st.bytes_lost, SUB, "delivery: stats.bytes_lost 4096");
	ok(vmras_registry_lookup(vmras_get_registry(ras), g1, &p) == 0 &&
	   (p.state & VMRAS_PS_CONTAINED) && (p.state & VMRAS_PS_NOTIFIED) && p.size == SUB,
	   "delivery: registry: the page, contained and notified (state 0x%x)", p.state);
	is_int(vmras_copy_from_guest(ras, buf, g1, sizeof(buf)), -EHWPOISON,
	       "delivery: the page is unreadable now (safe copy: -EHWPOISON)");

	/* The second AO while the guest keeps MCIP set: deferred, not lost, not a shutdown. */
	is_int(vmras_inject(ras, g2, VMRAS_AO, -1, true), 0,
	       "delivery: inject a second AO at 0x%" PRIx64 " while MCIP is set", g2);
	ok(WAIT_FOR(get_stats().notice_deferred >= 1 || atomic_load(&rn.done), 20) &&
	   !atomic_load(&rn.done), "delivery: the second AO is deferred (MCIP set)");
	loops = area->loops;
	ok(WAIT_FOR(area->loops >= loops + 200 || atomic_load(&rn.done), 20),
	   "delivery: the guest runs on meanwhile (%u more loops)", area->loops - (uint32_t)loops);
	is_int(area->mc_count, 1, "delivery: no second #MC while the guest is inside the first");
	st = get_stats();
	is_int(st.notice_deferred, 1, "delivery: stats.notice_deferred 1 (counted once)");
	is_int(st.notice_delivered, 1, "delivery: stats.notice_delivered still 1");

	/* The guest finishes its machine check: the deferred AO follows. */
	area->clear_mcip = 1;
	if (ok(WAIT_FOR(area->mc_count >= 2 || atomic_load(&rn.done), 20) && area->mc_count == 2,
	       "delivery: once the guest clears MCIP, the deferred AO is delivered"))
		check_mc(area, g2, "delivery AO 2");
	check_delivered_report(g2, "delivery AO 2");
	st = get_stats();
	is_int(st.notice_delivered, 2, "delivery: stats.notice_delivered 2");
	is_int(st.notice_deferred, 1, "delivery: stats.notice_deferred still 1");
	{
		bool quiet = is_int(st.notice_undeliverable, 0, "delivery: nothing undeliverable (the "
				    "safe copy of the known-bad page above included)");

		quiet &= is_int(atomic_load(&n_resets) + atomic_load(&n_stops), 0,
				"delivery: no reset or stop asked");
		if (!quiet)
			flog_dump("delivery", 20);
	}
	tap_diag("delivery: %u loop exits, %u kicked exits, %d kicks", atomic_load(&rn.loop_outs),
		 atomic_load(&rn.intr_exits), atomic_load(&n_kicks));
	held_ar_steps(&rn, area);

	area->stop = 1;
	ok(WAIT_FOR(atomic_load(&rn.done), 20), "delivery: the guest stops on request");
out:
	if (started) {
		if (area)
			area->stop = 1;
		atomic_store(&rn.stop, true);
		pthread_join(th, NULL);
		is_int(rn.start_rc, 0, "delivery: vmras_vcpu_thread_start");
		ok(!rn.pre_run_err && !rn.run_err && !rn.bad_exit,
		   "delivery: the vCPU loop had no error (pre_run %d, KVM_RUN %d, exit %u)",
		   rn.pre_run_err, rn.run_err, rn.bad_exit);
		is_int(atomic_load(&rn.handled), 0,
		       "delivery: vmras_vcpu_exit took no I/O exit for a memory error");
	}
	if (ras)
		ras_free();
	kvmt_vm_free(vm);
}

/* ======================================================================
 * 2. The x86 plan, bit for bit
 * ====================================================================== */

static bool step_is(const struct vmras_x86_plan_step *s, unsigned int vcpu, bool bystander,
		    uint64_t status, uint64_t addr, uint64_t misc, uint64_t mcg, unsigned int bank)
{
	bool ok_ = s->vcpu == vcpu && s->bystander == bystander && s->mce.status == status &&
		   s->mce.addr == addr && s->mce.misc == misc && s->mce.mcg_status == mcg &&
		   s->mce.bank == bank;

	if (!ok_)
		tap_diag("step: vcpu %u bystander %d status 0x%" PRIx64 " addr 0x%" PRIx64
			 " misc 0x%" PRIx64 " mcg 0x%" PRIx64 " bank %u; want vcpu %u bystander %d "
			 "status 0x%" PRIx64 " addr 0x%" PRIx64 " misc 0x%" PRIx64 " mcg 0x%" PRIx64
			 " bank %u", s->vcpu, s->bystander, s->mce.status, s->mce.addr, s->mce.misc,
			 s->mce.mcg_status, s->mce.bank, vcpu, bystander, status, addr, misc, mcg,
			 bank);
	return ok_;
}

static void case_plan(void)
{
	const uint64_t cap = MCG_SER_P | MCG_CTL_P | 10, gpa = 0x12345678ULL;
	const uint64_t page = gpa & ~(SUB - 1), huge = gpa & ~(HUGE - 1);
	const uint64_t srar_mcg = MCG_STATUS_RIPV | MCG_STATUS_EIPV | MCG_STATUS_MCIP;
	const uint64_t srao_mcg = MCG_STATUS_RIPV | MCG_STATUS_MCIP;
	struct vmras_x86_config intel = { .mcg_cap = cap, .vendor = VMRAS_X86_INTEL };
	struct vmras_x86_config amd = { .mcg_cap = cap, .vendor = VMRAS_X86_AMD };
	struct vmras_x86_config lmce = { .mcg_cap = cap | MCG_LMCE_P, .vendor = VMRAS_X86_INTEL };
	struct vmras_x86_error srar = { .type = VMRAS_MCE_SRAR, .gpa = gpa, .lsb = 12 };
	struct vmras_x86_error srao = { .type = VMRAS_MCE_SRAO, .gpa = gpa, .lsb = 12 };
	struct vmras_x86_error e;
	struct vmras_x86_plan_step s[8];
	bool online3[3] = { true, false, true };
	int n;

	is_u64(srar_mcg, 0x7, "plan: SRAR's MCG_STATUS is RIPV|EIPV|MCIP = 0x7");
	is_u64(srao_mcg, 0x5, "plan: SRAO's MCG_STATUS is RIPV|MCIP = 0x5");

	n = vmras_x86_plan(&intel, &srar, 1, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 0, false, STATUS_SRAR, page, MISC_4K, srar_mcg, 9),
	   "plan: Intel SRAR, 1 vCPU: only the target, status 0xBD80000000000134, misc 0x8c, "
	   "mcg 0x7, the last bank (n %d)", n);

	e = srar;
	e.target = 1;
	n = vmras_x86_plan(&intel, &e, 2, NULL, s, 8);
	ok(n == 2 && step_is(&s[0], 0, true, STATUS_BYSTANDER, 0, 0, srao_mcg, 1) &&
	   step_is(&s[1], 1, false, STATUS_SRAR, page, MISC_4K, srar_mcg, 9),
	   "plan: Intel SRAR, 2 vCPUs: the bystander's copy first (VAL|UC, bank 1, RIPV|MCIP), "
	   "then the target (n %d)", n);

	n = vmras_x86_plan(&intel, &srao, 1, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 0, false, STATUS_SRAO, page, MISC_4K, srao_mcg, 9),
	   "plan: Intel SRAO, 1 vCPU: status 0xBD000000000000C0, mcg 0x5 (n %d)", n);
	n = vmras_x86_plan(&intel, &srao, 2, NULL, s, 8);
	ok(n == 2 && step_is(&s[0], 1, true, STATUS_BYSTANDER, 0, 0, srao_mcg, 1) &&
	   step_is(&s[1], 0, false, STATUS_SRAO, page, MISC_4K, srao_mcg, 9),
	   "plan: Intel SRAO, 2 vCPUs: broadcast too, bystander first (n %d)", n);

	e = srar;
	e.lsb = 21;
	n = vmras_x86_plan(&intel, &e, 1, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 0, false, STATUS_SRAR, huge, 0x80 | 21, srar_mcg, 9),
	   "plan: a 2 MiB loss: ADDR aligned to 2 MiB, MISC lsb 21 (n %d)", n);

	e = srar;
	e.target = 1;
	e.guest_lmce = true;
	n = vmras_x86_plan(&lmce, &e, 2, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 1, false, STATUS_SRAR, page, MISC_4K,
			     srar_mcg | MCG_STATUS_LMCES, 9),
	   "plan: LMCE (MCG_LMCE_P, guest enabled it): no bystanders, MCG_STATUS 0xf (LMCES) "
	   "(n %d)", n);
	n = vmras_x86_plan(&intel, &e, 2, NULL, s, 8);
	ok(n == 2 && s[0].bystander && step_is(&s[1], 1, false, STATUS_SRAR, page, MISC_4K,
					       srar_mcg, 9),
	   "plan: guest_lmce without MCG_LMCE_P in MCG_CAP: still a broadcast, no LMCES (n %d)", n);
	e.guest_lmce = false;
	n = vmras_x86_plan(&lmce, &e, 2, NULL, s, 8);
	ok(n == 2 && s[0].bystander && !(s[1].mce.mcg_status & MCG_STATUS_LMCES),
	   "plan: MCG_LMCE_P but the guest did not enable LMCE: a broadcast (n %d)", n);

	/* AMD (x86_mce.h): SRAO a deferred error with POISON, SRAR UC with POISON. */
	e = srar;
	e.target = 1;
	n = vmras_x86_plan(&amd, &e, 2, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 1, false, STATUS_AMD_SRAR, page, MISC_4K, srar_mcg, 9),
	   "plan: AMD SRAR, 2 vCPUs: no bystanders; UC|POISON (n %d)", n);
	n = vmras_x86_plan(&amd, &srao, 2, NULL, s, 8);
	ok(n == 1 && step_is(&s[0], 0, false, STATUS_AMD_SRAO, page, MISC_4K, srao_mcg, 9),
	   "plan: AMD SRAO, 2 vCPUs: no bystanders; DEFERRED|POISON (n %d)", n);

	n = vmras_x86_plan(&intel, &srar, 3, online3, s, 8);
	ok(n == 2 && step_is(&s[0], 2, true, STATUS_BYSTANDER, 0, 0, srao_mcg, 1) &&
	   step_is(&s[1], 0, false, STATUS_SRAR, page, MISC_4K, srar_mcg, 9),
	   "plan: 3 vCPUs, vCPU 1 offline: it gets no copy (n %d)", n);

	e = srar;
	e.target = 2;
	is_int(vmras_x86_plan(&intel, &e, 2, NULL, s, 8), -EINVAL, "plan: target >= nvcpus: -EINVAL");
	e = srar;
	e.type = VMRAS_MCE_BROADCAST;
	is_int(vmras_x86_plan(&intel, &e, 1, NULL, s, 8), -EINVAL,
	       "plan: a BROADCAST as the error: -EINVAL");
	e = srar;
	e.lsb = 11;
	is_int(vmras_x86_plan(&intel, &e, 1, NULL, s, 8), -EINVAL, "plan: lsb 11: -EINVAL");
	e.lsb = 52;
	is_int(vmras_x86_plan(&intel, &e, 1, NULL, s, 8), -EINVAL, "plan: lsb 52: -EINVAL");
	{
		struct vmras_x86_config nobank = { .mcg_cap = MCG_SER_P, .vendor = VMRAS_X86_INTEL };

		is_int(vmras_x86_plan(&nobank, &srar, 1, NULL, s, 8), -EINVAL,
		       "plan: no banks in MCG_CAP: -EINVAL");
	}
	is_int(vmras_x86_plan(&intel, &srar, 1, NULL, s, 0), -EINVAL, "plan: max 0: -EINVAL");
}

/* ======================================================================
 * 3. Capture-ring overflow
 * ====================================================================== */

#define C3_GPA 0x200000000ULL
#define C3_PAGES 20000	/* more than the ring holds (16384) */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, released;
	uint8_t *outcomes;	/* reports per page */
	unsigned int losses, others;
	char loss_detail[128];
} c3 = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* A slow VMM: the first report blocks the engine until the test lets go. */
static void c3_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	pthread_mutex_lock(&c3.lock);
	if (!c3.entered) {
		c3.entered = true;
		pthread_cond_broadcast(&c3.cond);
		while (!c3.released)
			pthread_cond_wait(&c3.cond, &c3.lock);
	}
	if ((f->ev.valid & VMRAS_EV_GPA) && f->ev.gpa - C3_GPA < (uint64_t)C3_PAGES * SUB) {
		uint8_t *o_ = &c3.outcomes[(f->ev.gpa - C3_GPA) / SUB];

		if (*o_ < 255)
			(*o_)++;
	} else if (strstr(f->detail, "lost")) {
		c3.losses++;
		snprintf(c3.loss_detail, sizeof(c3.loss_detail), "%s", f->detail);
	} else {
		c3.others++;
	}
	pthread_mutex_unlock(&c3.lock);
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

static unsigned int c3_outcome_pages(unsigned int *twice)
{
	unsigned int n = 0;

	pthread_mutex_lock(&c3.lock);
	*twice = 0;
	for (unsigned int i = 0; i < C3_PAGES; i++) {
		n += c3.outcomes[i] > 0;
		*twice += c3.outcomes[i] > 1;
	}
	pthread_mutex_unlock(&c3.lock);
	return n;
}

static bool c3_settled(void)
{
	unsigned int twice, n = c3_outcome_pages(&twice);
	bool lost;

	pthread_mutex_lock(&c3.lock);
	lost = c3.losses > 0;
	pthread_mutex_unlock(&c3.lock);
	return lost && n + get_stats().dropped >= C3_PAGES;
}

static void case_ring_overflow(void)
{
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r = { .gpa = C3_GPA, .size = (uint64_t)C3_PAGES * SUB,
				  .backing = VMRAS_BACKING_ANON, .fd = -1, .page_size = SUB };
	struct vmras_config cfg = base_config();
	struct timespec until;
	struct vmras_stats st;
	unsigned int pages, twice, sent = 0;
	uint64_t dropped_blocked;
	char num[32];
	bool entered;
	char *ram;

	c3.outcomes = calloc(C3_PAGES, 1);
	ram = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!ok(ram != MAP_FAILED && c3.outcomes, "ring: %d pages of anonymous RAM", C3_PAGES))
		return;
	r.hva = ram;
	cfg.ops.failure = c3_failure;
	if (!is_int(vmras_new(&cfg, &ras), 0, "ring: vmras_new") ||
	    !is_int(vmras_add_region(ras, &r), 0, "ring: region") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "ring: x86") ||
	    !is_int(vmras_start(ras), 0, "ring: vmras_start"))
		goto out;

	/* One report, and the engine is stuck in the VMM's failure hook. */
	sent += send_self_sigbus(BUS_MCEERR_AO, ram + 8, 12) == 0;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&c3.lock);
	while (!c3.entered && pthread_cond_timedwait(&c3.cond, &c3.lock, &until) != ETIMEDOUT)
		;
	entered = c3.entered;
	pthread_mutex_unlock(&c3.lock);
	if (!ok(entered, "ring: the engine is inside the (slow) failure hook"))
		goto release;
	for (unsigned int i = 1; i < C3_PAGES; i++)
		sent += send_self_sigbus(BUS_MCEERR_AO, ram + (uint64_t)i * SUB + 8, 12) == 0;
	is_int(sent, C3_PAGES, "ring: %d SIGBUS BUS_MCEERR_AO sent, one per page", C3_PAGES);
	dropped_blocked = get_stats().dropped;
	tap_diag("ring: %" PRIu64 " dropped while the engine was blocked", dropped_blocked);
release:
	pthread_mutex_lock(&c3.lock);
	c3.released = true;
	pthread_cond_broadcast(&c3.cond);
	pthread_mutex_unlock(&c3.lock);
	if (!entered)
		goto out;

	ok(WAIT_FOR(c3_settled(), 90), "ring: every page accounted for, and the loss reported");
	st = get_stats();
	pages = c3_outcome_pages(&twice);
	ok(st.dropped > 0, "ring: stats.dropped %" PRIu64 " > 0", st.dropped);
	is_int(st.dropped, dropped_blocked, "ring: nothing dropped once the engine ran again");
	is_int(pages + st.dropped, C3_PAGES,
	       "ring: pages with an outcome (%u) + dropped (%" PRIu64 ") = pages sent", pages,
	       st.dropped);
	is_int(twice, 0, "ring: no page reported twice");
	is_int(st.received[VMRAS_SRC_SIGBUS], C3_PAGES - st.dropped,
	       "ring: stats.received[sigbus] = sent - dropped");
	is_int(registry_count(), C3_PAGES - st.dropped, "ring: a registry entry per page received");
	is_int(st.contained, C3_PAGES - st.dropped, "ring: each received page contained");
	pthread_mutex_lock(&c3.lock);
	snprintf(num, sizeof(num), "%" PRIu64, st.dropped);
	ok(c3.losses >= 1 && strstr(c3.loss_detail, num),
	   "ring: a failure report says %s reports were lost ('%s')", num, c3.loss_detail);
	is_int(c3.others, 0, "ring: no other reports");
	pthread_mutex_unlock(&c3.lock);
out:
	if (ras)
		ras_free();
	munmap(ram, r.size);
	free(c3.outcomes);
	c3.outcomes = NULL;
}

/* ======================================================================
 * 4. More than 64 splits
 * ====================================================================== */

#define C4_GPA 0x40000000ULL
#define C4_HUGE 80
#define C4_SPLITS 70

static uint64_t c4_bad(unsigned int k)
{
	return C4_GPA + k * HUGE + ((k * 37 + 5) % NSUB) * SUB;
}

static bool c4_done(void)
{
	struct vmras_stats s = get_stats();

	return s.splits >= C4_SPLITS && s.subpages_salvaged >= C4_SPLITS * (NSUB - 1);
}

static void case_many_splits(void)
{
	struct vmras_config cfg = base_config();
	unsigned int inject_errs = 0, wrong = 0, bad_ok = 0, untouched_ok = 0, nreg;
	struct vmras_poison *reg = NULL;
	struct vmras_stats st;
	struct hregion h;
	bool reg_ok = true;

	if (!huge_context("splits", &h, C4_GPA, C4_HUGE, &cfg))
		return;
	for (unsigned int k = 0; k < C4_SPLITS; k++)
		inject_errs += vmras_inject(ras, c4_bad(k) + 0x40, VMRAS_AO, -1, true) != 0;
	is_int(inject_errs, 0, "splits: %d AOs injected, each into its own huge page", C4_SPLITS);
	ok(WAIT_FOR(c4_done(), 120), "splits: every split done and filled");
	st = get_stats();
	tap_diag("splits: splits %" PRIu64 ", salvaged %" PRIu64 ", bytes_lost %" PRIu64
		 ", longest pause %" PRIu64 " us, uffd faults %" PRIu64, st.splits,
		 st.subpages_salvaged, st.bytes_lost, st.split_pause_ns_max / 1000, st.uffd_faults);
	is_int(st.splits, C4_SPLITS, "splits: stats.splits %d (no limit at 64)", C4_SPLITS);
	is_int(st.bytes_lost, C4_SPLITS * SUB, "splits: bytes_lost %d x 4096", C4_SPLITS);
	is_int(st.subpages_salvaged, C4_SPLITS * (NSUB - 1), "splits: %d x 511 subpages salvaged",
	       C4_SPLITS);
	is_int(st.splits_refused, 0, "splits: none refused");
	is_int(atomic_load(&n_pauses), C4_SPLITS, "splits: the vCPUs were paused once per split");
	is_int(atomic_load(&n_resumes), atomic_load(&n_pauses), "splits: and resumed as often");

	nreg = (unsigned int)registry_count();
	reg = calloc(nreg + 1, sizeof(*reg));
	if (reg)
		vmras_registry_snapshot(vmras_get_registry(ras), reg, nreg);
	is_int(nreg, C4_SPLITS, "splits: %d registry entries", C4_SPLITS);
	for (unsigned int k = 0; reg && k < nreg && k < C4_SPLITS; k++)
		reg_ok &= reg[k].gpa == c4_bad(k) && reg[k].size == SUB &&
			  (reg[k].state & VMRAS_PS_CONTAINED);
	ok(reg && reg_ok, "splits: each entry is the bad 4 KiB page, contained");
	free(reg);

	for (unsigned int k = 0; k < C4_HUGE; k++)
		for (unsigned int i = 0; i < NSUB; i++) {
			uint64_t gpa = C4_GPA + k * HUGE + i * SUB;
			enum pk got = read_sub(gpa);

			if (k < C4_SPLITS && gpa == c4_bad(k)) {
				bad_ok += got == PK_POISON;
				continue;
			}
			if (got != PK_PATTERN && wrong++ < 5)
				tap_diag("splits: GPA 0x%" PRIx64 " reads %s", gpa, pk_name(got));
			if (k >= C4_SPLITS)
				untouched_ok += got == PK_PATTERN;
		}
	is_int(wrong, 0, "splits: every other byte of the %d huge pages reads back as written",
	       C4_HUGE);
	is_int(bad_ok, C4_SPLITS, "splits: each bad 4 KiB page: -EHWPOISON");
	is_int(untouched_ok, (C4_HUGE - C4_SPLITS) * NSUB, "splits: the untouched huge pages too");
	ras_free();
	hregion_free(&h);
}

/* ======================================================================
 * 5. A split racing a guest reset
 * ====================================================================== */

#define C5_GPA 0x80000000ULL
#define C5_HUGE 4
#define C5_ROUNDS 20
#define C5_TOUCH_ROUNDS 20
#define C5_BARRIER_GPA 0x1000000000ULL	/* anonymous RAM for ordering injections */
#define C5_BARRIER_SIZE (64 * SUB)

struct c5_reset {
	atomic_bool go;
	unsigned int delay_us;
	int rc;
};

static void *c5_reset_thread(void *arg)
{
	struct c5_reset *r = arg;

	while (!atomic_load(&r->go))
		sched_yield();
	if (r->delay_us)
		usleep(r->delay_us);	/* where in the split the reset lands, not a check */
	r->rc = vmras_guest_reset(ras);
	return NULL;
}

/* Reads the huge page under split while the reset goes on. */
struct c5_touch {
	uint64_t gpa;
	atomic_bool stop;
	unsigned int kinds[5];
};

static void *c5_touch_thread(void *arg)
{
	struct c5_touch *t = arg;

	while (!atomic_load(&t->stop))
		for (unsigned int s = 0; s < NSUB; s += 7)
			t->kinds[read_sub(t->gpa + s * SUB)]++;
	return NULL;
}

/* Registry entries inside the hugetlb region. */
static size_t c5_entries(void)
{
	struct vmras_poison e[64];
	size_t n = vmras_registry_snapshot(vmras_get_registry(ras), e, 64), in = 0;

	for (size_t k = 0; k < n && k < 64; k++)
		in += e[k].gpa - C5_GPA < C5_HUGE * HUGE;
	return in;
}

/*
 * After a round: nothing in the registry, every page readable, huge page
 * hp fresh (zeros), the others as written. Then hp gets the pattern again.
 */
static bool c5_check(const char *phase, unsigned int round, unsigned int hp, int rc_inj,
		     int rc_reset, size_t first_report)
{
	unsigned int kinds[5] = { 0 }, fresh = 0, kept = 0;
	size_t nreg = c5_entries();
	int refill = 0;

	for (unsigned int k = 0; k < C5_HUGE; k++)
		for (unsigned int s = 0; s < NSUB; s++) {
			enum pk got = read_sub(C5_GPA + k * HUGE + s * SUB);

			kinds[got]++;
			fresh += k == hp && got == PK_ZERO;
			kept += k != hp && got == PK_PATTERN;
		}
	for (unsigned int s = 0; s < NSUB && !refill; s++) {
		uint64_t g = C5_GPA + hp * HUGE + s * SUB, buf[SUB / 8];

		pat_fill(buf, g, SUB);
		refill = vmras_copy_to_guest(ras, g, buf, SUB);
	}
	if (!rc_inj && !rc_reset && !nreg && fresh == NSUB && kept == (C5_HUGE - 1) * NSUB &&
	    !refill)
		return true;
	tap_diag("%s round %u: inject %d, reset %d, registry %zu, huge page %u: %u/%u subpages "
		 "fresh zeros; others: %u/%u intact; reads: %u pattern, %u zeros, %u other, %u "
		 "-EHWPOISON, %u errors; refill %d", phase, round, rc_inj, rc_reset, nreg, hp,
		 fresh, NSUB, kept, (C5_HUGE - 1) * NSUB, kinds[PK_PATTERN], kinds[PK_ZERO],
		 kinds[PK_OTHER], kinds[PK_POISON], kinds[PK_ERR], refill);
	flog_dump_from(phase, first_report, 8);
	{
		struct vmras_poison e[4];
		size_t n = vmras_registry_snapshot(vmras_get_registry(ras), e, 4);

		for (size_t k = 0; k < n && k < 4; k++)
			tap_diag("%s round %u: registry: gpa 0x%" PRIx64 " size %" PRIu64
				 " state 0x%x source %s, %u reports", phase, round, e[k].gpa,
				 e[k].size, e[k].state, vmras_source_name(e[k].source),
				 e[k].reports);
	}
	/* Start the next round clean: a reset, the pattern everywhere. */
	vmras_guest_reset(ras);
	for (uint64_t off = 0; off < C5_HUGE * HUGE; off += SUB) {
		uint64_t buf[SUB / 8];

		pat_fill(buf, C5_GPA + off, SUB);
		vmras_copy_to_guest(ras, C5_GPA + off, buf, SUB);
	}
	return false;
}

/* A context on the hugetlb region and a small anonymous one (for ordering). */
static bool c5_setup(const char *name, struct hregion *h, void **bmem)
{
	struct vmras_config cfg = base_config();
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region barrier = { .gpa = C5_BARRIER_GPA, .size = C5_BARRIER_SIZE,
					.backing = VMRAS_BACKING_ANON, .fd = -1,
					.page_size = SUB };
	struct vmras_region r;

	h->fd = -1;
	h->hva = MAP_FAILED;
	*bmem = MAP_FAILED;
	if (!hp_ok) {
		tap_skip(name, "%s", hp_why);
		return false;
	}
	*bmem = mmap(NULL, C5_BARRIER_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	barrier.hva = *bmem;
	if (!ok(*bmem != MAP_FAILED, "%s: anonymous RAM", name) ||
	    !is_int(hregion_new(h, C5_GPA, C5_HUGE), 0, "%s: %d huge pages, a pattern in them",
		    name, C5_HUGE))
		return false;
	r = hregion_vmras(h);
	cfg.ops.pause_vcpus = on_pause;
	cfg.ops.resume_vcpus = on_resume;
	cfg.ops.vcpu_blocked = on_blocked;
	if (!is_int(vmras_new(&cfg, &ras), 0, "%s: vmras_new", name) ||
	    !is_int(vmras_add_region(ras, &r), 0, "%s: the hugetlb region", name) ||
	    !is_int(vmras_add_region(ras, &barrier), 0, "%s: an anonymous region", name) ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "%s: x86", name) ||
	    !is_int(vmras_start(ras), 0, "%s: vmras_start", name))
		return false;
	return true;
}

static void c5_teardown(struct hregion *h, void *bmem)
{
	if (ras)
		ras_free();
	hregion_free(h);
	if (bmem != MAP_FAILED)
		munmap(bmem, C5_BARRIER_SIZE);
}

/* The case: inject, then reset at once (same thread or another one). */
static void case_split_reset(void)
{
	static const unsigned int delays[] = { 0, 50, 500, 3000 };
	unsigned int bad_rounds = 0;
	struct vmras_stats st;
	struct hregion h;
	void *bmem;

	if (!c5_setup("reset", &h, &bmem))
		goto out;
	for (unsigned int i = 0; i < C5_ROUNDS; i++) {
		unsigned int hp = i % C5_HUGE;
		uint64_t gpa = C5_GPA + hp * HUGE + ((i * 37 + 11) % NSUB) * SUB;
		struct c5_reset rs = { .delay_us = delays[(i / 2) % 4] };
		size_t first_report = flog_count();
		int rc_inj;
		pthread_t th;

		if (i % 2) {
			pthread_create(&th, NULL, c5_reset_thread, &rs);
			rc_inj = vmras_inject(ras, gpa, VMRAS_AO, -1, true);
			atomic_store(&rs.go, true);
			pthread_join(th, NULL);
		} else {
			/* Right after, on the same thread, not waiting for the fill. */
			rc_inj = vmras_inject(ras, gpa, VMRAS_AO, -1, true);
			if (rs.delay_us)
				usleep(rs.delay_us);
			rs.rc = vmras_guest_reset(ras);
		}
		bad_rounds += !c5_check("reset", i, hp, rc_inj, rs.rc, first_report);
	}
	st = get_stats();
	tap_diag("reset: %d rounds, splits %" PRIu64 ", salvaged %" PRIu64 ", unrouted faults %"
		 PRIu64, C5_ROUNDS, st.splits, st.subpages_salvaged, st.uffd_unrouted);
	is_int(bad_rounds, 0, "reset: %d rounds of inject + reset (same thread, another thread): "
	       "each leaves an empty registry, the whole region readable, the split huge page "
	       "fresh (zeros), the others intact", C5_ROUNDS);
	is_int(st.splits, C5_ROUNDS, "reset: each injection split its huge page, no other split");
out:
	c5_teardown(&h, bmem);
}

/*
 * The same with a VMM thread reading the huge page meanwhile (a QMP read,
 * an I/O thread): its faults are served by the fill while the reset
 * restores, and a read that hits the bad page reports it. After each round
 * an injection elsewhere (handled in arrival order) makes sure every such
 * report was handled: none may poison, split or wipe the fresh memory.
 */
static void case_split_reset_reader(void)
{
	static const unsigned int delays[] = { 0, 50, 500, 3000 };
	unsigned int bad_rounds = 0, touched[5] = { 0 };
	struct vmras_stats st;
	struct hregion h;
	void *bmem;

	if (!c5_setup("reset+reader", &h, &bmem))
		goto out;
	for (unsigned int i = 0; i < C5_TOUCH_ROUNDS; i++) {
		unsigned int hp = i % C5_HUGE;
		uint64_t gpa = C5_GPA + hp * HUGE + ((i * 53 + 5) % NSUB) * SUB;
		struct c5_reset rs = { .delay_us = delays[i % 4] };
		struct c5_touch t = { .gpa = C5_GPA + hp * HUGE };
		size_t first_report = flog_count();
		pthread_t th, toucher;
		int rc_inj, rc_barrier;

		pthread_create(&toucher, NULL, c5_touch_thread, &t);
		pthread_create(&th, NULL, c5_reset_thread, &rs);
		rc_inj = vmras_inject(ras, gpa, VMRAS_AO, -1, true);
		atomic_store(&rs.go, true);
		pthread_join(th, NULL);
		atomic_store(&t.stop, true);
		pthread_join(toucher, NULL);
		for (int k = 0; k < 5; k++)
			touched[k] += t.kinds[k];
		rc_barrier = vmras_inject(ras, C5_BARRIER_GPA + (i % 64) * SUB, VMRAS_AO, -1, false);
		bad_rounds += !c5_check("reset+reader", i, hp, rc_inj ?: rc_barrier, rs.rc,
					first_report);
	}
	st = get_stats();
	tap_diag("reset+reader: reads during the races: %u pattern, %u zeros, %u other, %u "
		 "-EHWPOISON, %u errors; splits %" PRIu64 ", unrouted faults %" PRIu64,
		 touched[PK_PATTERN], touched[PK_ZERO], touched[PK_OTHER], touched[PK_POISON],
		 touched[PK_ERR], st.splits, st.uffd_unrouted);
	ok(touched[PK_OTHER] == 0 && touched[PK_ERR] == 0,
	   "reset+reader: reads racing split and reset saw the old bytes, fresh zeros or "
	   "-EHWPOISON, nothing else");
	is_int(bad_rounds, 0, "reset+reader: %d rounds: reports of reads that raced the reset "
	       "left the fresh memory alone (empty registry, zeros, others intact)",
	       C5_TOUCH_ROUNDS);
	is_int(st.splits, C5_TOUCH_ROUNDS,
	       "reset+reader: one split per injection, none of fresh memory");
out:
	c5_teardown(&h, bmem);
}

/* ======================================================================
 * 6. A reader during a split never sees silent zeros
 * ====================================================================== */

#define C6_GPA 0xc0000000ULL
#define C6_HUGE 2
#define C6_ROUNDS 10
#define C6_BAD 8

static struct {
	atomic_bool stop;
	atomic_uint passes;
	atomic_uchar bad[NSUB];
	atomic_ulong reads, pattern, zeros, other, poison_bad, poison_good, errs;
} c6;

static void *c6_reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&c6.stop)) {
		for (unsigned int s = 0; s < NSUB; s++) {
			enum pk got = read_sub(C6_GPA + s * SUB);

			atomic_fetch_add(&c6.reads, 1);
			switch (got) {
			case PK_PATTERN: atomic_fetch_add(&c6.pattern, 1); break;
			case PK_ZERO: atomic_fetch_add(&c6.zeros, 1); break;
			case PK_OTHER: atomic_fetch_add(&c6.other, 1); break;
			case PK_ERR: atomic_fetch_add(&c6.errs, 1); break;
			case PK_POISON:
				if (atomic_load(&c6.bad[s]))
					atomic_fetch_add(&c6.poison_bad, 1);
				else
					atomic_fetch_add(&c6.poison_good, 1);
				break;
			}
		}
		atomic_fetch_add(&c6.passes, 1);
	}
	return NULL;
}

static void case_reader(void)
{
	struct vmras_config cfg = base_config();
	unsigned int final_wrong = 0, inject_errs = 0, reset_errs = 0;
	struct hregion h;

	if (!huge_context("reader", &h, C6_GPA, C6_HUGE, &cfg))
		return;
	for (unsigned int round = 0; round < C6_ROUNDS; round++) {
		pthread_t th;
		unsigned int p;

		for (unsigned int s = 0; s < NSUB; s++)
			atomic_store(&c6.bad[s], 0);
		atomic_store(&c6.stop, false);
		atomic_store(&c6.passes, 0);
		pthread_create(&th, NULL, c6_reader, NULL);
		WAIT_FOR(atomic_load(&c6.passes) >= 1, 20);
		for (unsigned int k = 0; k < C6_BAD; k++) {
			unsigned int s = (round * 61 + k * 67 + 3) % NSUB;

			atomic_store(&c6.bad[s], 1);
			inject_errs += vmras_inject(ras, C6_GPA + s * SUB, VMRAS_AO, -1, true) != 0;
		}
		p = atomic_load(&c6.passes);
		WAIT_FOR(atomic_load(&c6.passes) >= p + 3, 60);
		atomic_store(&c6.stop, true);
		pthread_join(th, NULL);
		/* Settled: good subpages hold the pattern, bad ones are refused. */
		for (unsigned int s = 0; s < NSUB; s++) {
			enum pk got = read_sub(C6_GPA + s * SUB);
			enum pk want = atomic_load(&c6.bad[s]) ? PK_POISON : PK_PATTERN;

			if (got != want && final_wrong++ < 5) {
				tap_diag("reader round %u: subpage %u reads %s, want %s", round, s,
					 pk_name(got), pk_name(want));
				flog_dump_page("reader", C6_GPA + s * SUB, 6);
			}
		}
		/* Next round: a fresh huge page, the pattern again. */
		reset_errs += vmras_guest_reset(ras) != 0;
		for (unsigned int s = 0; s < NSUB; s++) {
			uint64_t buf[SUB / 8];

			pat_fill(buf, C6_GPA + s * SUB, SUB);
			reset_errs += vmras_copy_to_guest(ras, C6_GPA + s * SUB, buf, SUB) != 0;
		}
	}
	tap_diag("reader: %lu reads: %lu pattern, %lu zeros, %lu other bytes, %lu -EHWPOISON on "
		 "an injected page, %lu -EHWPOISON on a good page (before its split), %lu errors",
		 atomic_load(&c6.reads), atomic_load(&c6.pattern), atomic_load(&c6.zeros),
		 atomic_load(&c6.other), atomic_load(&c6.poison_bad), atomic_load(&c6.poison_good),
		 atomic_load(&c6.errs));
	is_int(inject_errs, 0, "reader: %d rounds of %d AOs into one huge page", C6_ROUNDS, C6_BAD);
	ok(atomic_load(&c6.reads) > 0, "reader: the reader ran during the splits");
	is_int(atomic_load(&c6.zeros), 0, "reader: no read returned zeros");
	is_int(atomic_load(&c6.other), 0, "reader: no read returned other wrong bytes");
	is_int(atomic_load(&c6.errs), 0, "reader: no read failed other than with -EHWPOISON");
	is_int(final_wrong, 0, "reader: after each round, good subpages hold the pattern and "
	       "the injected ones are -EHWPOISON");
	is_int(reset_errs, 0, "reader: resets and refills between rounds");
	ras_free();
	hregion_free(&h);
}

/* ======================================================================
 * 7. Injections from a vCPU thread while splits pause the vCPUs
 * ====================================================================== */

#define C7_GPA 0x140000000ULL
#define C7_HUGE 4
#define C7_ROUNDS 10

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocked, finished;
	int pauses, timeouts, saw_blocked, saw_finished, blocked_calls;
} c7 = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/*
 * A VMM's pause: every vCPU parked outside KVM_RUN, or waiting inside a
 * vmras call (vcpu_blocked). This vCPU thread never parks on its own
 * between its two injections, so only vcpu_blocked lets the pause finish.
 * 10 s without that fails the test (and the split goes on regardless).
 */
static void c7_pause(void *o)
{
	struct timespec until;

	(void)o;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&c7.lock);
	c7.pauses++;
	while (!c7.blocked && !c7.finished)
		if (pthread_cond_timedwait(&c7.cond, &c7.lock, &until) == ETIMEDOUT) {
			c7.timeouts++;
			break;
		}
	c7.saw_blocked += c7.blocked;
	c7.saw_finished += !c7.blocked && c7.finished;
	pthread_mutex_unlock(&c7.lock);
}

static void c7_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	pthread_mutex_lock(&c7.lock);
	if (vcpu == 0) {
		c7.blocked = blocked;
		c7.blocked_calls++;
	}
	pthread_cond_broadcast(&c7.cond);
	pthread_mutex_unlock(&c7.lock);
}

struct c7_vcpu {
	uint64_t gpa[2];
	int start_rc, rc[2];
};

static void *c7_vcpu_thread(void *arg)
{
	struct c7_vcpu *t = arg;

	t->start_rc = vmras_vcpu_thread_start(ras, 0);
	/* Twice in a row: the first one's split pauses while the second waits. */
	t->rc[0] = vmras_inject(ras, t->gpa[0], VMRAS_AO, -1, true);
	t->rc[1] = vmras_inject(ras, t->gpa[1], VMRAS_AO, -1, true);
	pthread_mutex_lock(&c7.lock);
	c7.finished = true;
	pthread_cond_broadcast(&c7.cond);
	pthread_mutex_unlock(&c7.lock);
	return NULL;
}

static void case_vcpu_inject(void)
{
	struct vmras_config cfg = base_config();
	unsigned int bad_rounds = 0;
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	struct hregion h;
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r;

	h.fd = -1;
	h.hva = MAP_FAILED;
	if (!hp_ok) {
		tap_skip("vcpu inject: injections from a vCPU thread during split pauses", "%s",
			 hp_why);
		return;
	}
	if (!is_int(kvmt_vm_create(&vm), 0, "vcpu inject: a KVM VM") ||
	    !is_int(kvmt_vcpu_create(vm, 0, 0x1000, &vcpu), 0, "vcpu inject: a real vCPU") ||
	    !is_int(hregion_new(&h, C7_GPA, C7_HUGE), 0, "vcpu inject: %d huge pages", C7_HUGE))
		goto out;
	cfg.ops.pause_vcpus = c7_pause;
	cfg.ops.resume_vcpus = on_resume;
	cfg.ops.vcpu_blocked = c7_blocked;
	r = hregion_vmras(&h);
	if (!is_int(vmras_new(&cfg, &ras), 0, "vcpu inject: vmras_new") ||
	    !is_int(vmras_add_region(ras, &r), 0, "vcpu inject: region") ||
	    !is_int(vmras_add_vcpu(ras, 0, vcpu->fd), 0, "vcpu inject: vCPU 0") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "vcpu inject: x86") ||
	    !is_int(vmras_start(ras), 0, "vcpu inject: vmras_start"))
		goto out;
	for (unsigned int round = 0; round < C7_ROUNDS; round++) {
		struct c7_vcpu t = { .gpa = { C7_GPA + ((2 * round) % C7_HUGE) * HUGE + 3 * SUB,
					      C7_GPA + ((2 * round + 1) % C7_HUGE) * HUGE + 7 * SUB } };
		uint64_t want = 2ULL * (round + 1);
		int timeouts, reset_rc;
		bool split;
		size_t nreg;
		pthread_t th;

		pthread_mutex_lock(&c7.lock);
		c7.finished = false;
		pthread_mutex_unlock(&c7.lock);
		pthread_create(&th, NULL, c7_vcpu_thread, &t);
		pthread_join(th, NULL);
		split = WAIT_FOR(get_stats().splits >= want, 30);
		nreg = registry_count();
		pthread_mutex_lock(&c7.lock);
		timeouts = c7.timeouts;
		pthread_mutex_unlock(&c7.lock);
		reset_rc = vmras_guest_reset(ras);
		if (t.start_rc || t.rc[0] || t.rc[1] || !split || nreg != 2 || timeouts || reset_rc) {
			bad_rounds++;
			tap_diag("vcpu inject round %u: thread_start %d, inject %d, %d; splits %" PRIu64
				 " (want %" PRIu64 "); registry %zu; pause timeouts %d; reset %d",
				 round, t.start_rc, t.rc[0], t.rc[1], get_stats().splits, want, nreg,
				 timeouts, reset_rc);
		}
	}
	pthread_mutex_lock(&c7.lock);
	tap_diag("vcpu inject: %d pauses: %d found the vCPU waiting in vmras (vcpu_blocked), %d "
		 "found it done; %d vcpu_blocked calls; %d timeouts", c7.pauses, c7.saw_blocked,
		 c7.saw_finished, c7.blocked_calls, c7.timeouts);
	is_int(c7.timeouts, 0, "vcpu inject: no pause waited 10 s for a vCPU stuck in vmras_inject");
	ok(c7.saw_blocked >= 1, "vcpu inject: a pause found the vCPU blocked in its second "
	   "injection (%d of %d)", c7.saw_blocked, c7.pauses);
	pthread_mutex_unlock(&c7.lock);
	is_int(bad_rounds, 0, "vcpu inject: %d rounds: both injections return 0, both huge pages "
	       "split, nothing hangs", C7_ROUNDS);
	is_int(get_stats().splits, 2 * C7_ROUNDS, "vcpu inject: stats.splits %d", 2 * C7_ROUNDS);
out:
	if (ras)
		ras_free();
	hregion_free(&h);
	kvmt_vm_free(vm);
}

/* ======================================================================
 * 8. A read-only memslot; a PROT_NONE page that is not poison
 * ====================================================================== */

#define C8_RO_GPA 0x10000ULL
#define C8_RW_GPA 0x20000ULL
#define C8_RW_SIZE 0x10000ULL
#define C8_HOLE_GPA 0x21000ULL

/*
 * 1000: mov ax,0x1000; mov ds,ax		; DS base 0x10000: the read-only slot
 *       mov al,[0x10]; out 0x10,al		; what the slot holds
 *       mov byte [0x10],0x5a; out 0x11,al	; a write: MMIO exit
 *       mov ax,0x2000; mov ds,ax		; DS base 0x20000: writable RAM
 *       mov al,[0x1008]; out 0x12,al		; read the PROT_NONE page 0x21000
 *       mov byte [0x1010],0x77; out 0x13,al	; write it
 *       hlt
 */
static const uint8_t c8_code[] = {
	0xb8, 0x00, 0x10, 0x8e, 0xd8,
	0xa0, 0x10, 0x00, 0xe6, 0x10,
	0xc6, 0x06, 0x10, 0x00, 0x5a, 0xe6, 0x11,
	0xb8, 0x00, 0x20, 0x8e, 0xd8,
	0xa0, 0x08, 0x10, 0xe6, 0x12,
	0xc6, 0x06, 0x10, 0x10, 0x77, 0xe6, 0x13,
	0xf4,
};

/* pre_run, KVM_RUN, vmras_vcpu_exit; returns KVM_RUN's result, *x vmras's. */
static int c8_step(struct kvmt_vcpu *vcpu, int *x)
{
	int ret;

	if (vmras_vcpu_pre_run(ras, 0))
		return -EIO;
	ret = kvmt_vcpu_run(vcpu);
	*x = vmras_vcpu_exit(ras, 0, vcpu->run, ret);
	return ret;
}

static void case_not_poison(void)
{
	struct vmras_config cfg = base_config();
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	struct kvm_run *run;
	struct vmras_caps caps;
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r0 = { .gpa = 0, .size = 0x10000, .backing = VMRAS_BACKING_ANON,
				   .fd = -1, .page_size = SUB, .slot = 0 };
	struct vmras_region ro = { .gpa = C8_RO_GPA, .size = SUB, .backing = VMRAS_BACKING_ANON,
				   .fd = -1, .page_size = SUB, .slot = 1,
				   .flags = VMRAS_REGION_READONLY };
	struct vmras_region rw = { .gpa = C8_RW_GPA, .size = C8_RW_SIZE,
				   .backing = VMRAS_BACKING_ANON, .fd = -1, .page_size = SUB,
				   .slot = 2 };
	uint8_t *ram0, *rom, *ram2, *hole = NULL;
	bool emulates, protected_ = false;
	int ret, x = -1;

	if (!is_int(kvmt_vm_create(&vm), 0, "not poison: a KVM VM") ||
	    !is_int(kvmt_vm_add_ram(vm, 0, 0, 0x10000, 0, (void **)&ram0), 0,
		    "not poison: RAM at GPA 0") ||
	    !is_int(kvmt_vm_add_ram(vm, 1, C8_RO_GPA, SUB, KVM_MEM_READONLY, (void **)&rom), 0,
		    "not poison: a KVM_MEM_READONLY slot at 0x%llx", C8_RO_GPA) ||
	    !is_int(kvmt_vm_add_ram(vm, 2, C8_RW_GPA, C8_RW_SIZE, 0, (void **)&ram2), 0,
		    "not poison: writable RAM at 0x%llx", C8_RW_GPA))
		goto out;
	memcpy(ram0 + 0x1000, c8_code, sizeof(c8_code));
	memset(rom, 0xa5, SUB);
	pat_fill(ram2, C8_RW_GPA, C8_RW_SIZE);
	hole = ram2 + (C8_HOLE_GPA - C8_RW_GPA);
	if (!is_int(kvmt_vcpu_create(vm, 0, 0x1000, &vcpu), 0, "not poison: vCPU 0"))
		goto out;
	run = vcpu->run;

	cfg.ram_mmio = VMRAS_RAM_MMIO_DETECT;
	r0.hva = ram0;
	ro.hva = rom;
	rw.hva = ram2;
	if (!is_int(vmras_new(&cfg, &ras), 0, "not poison: vmras_new (ram_mmio: detect)") ||
	    !is_int(vmras_add_region(ras, &r0), 0, "not poison: region GPA 0") ||
	    !is_int(vmras_add_region(ras, &ro), 0, "not poison: the read-only region "
		    "(VMRAS_REGION_READONLY)") ||
	    !is_int(vmras_add_region(ras, &rw), 0, "not poison: the writable region") ||
	    !is_int(vmras_add_vcpu(ras, 0, vcpu->fd), 0, "not poison: vCPU 0") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "not poison: x86") ||
	    !is_int(vmras_start(ras), 0, "not poison: vmras_start") ||
	    !is_int(vmras_vcpu_thread_start(ras, 0), 0, "not poison: this is vCPU 0's thread"))
		goto out;
	vmras_get_caps(ras, &caps);

	ret = c8_step(vcpu, &x);
	ok(!ret && kvmt_exit_is_out(run, 0x10) && kvmt_io_value(run) == 0xa5,
	   "ro: the guest reads the read-only slot (ret %d, exit %u)", ret, run->exit_reason);
	ret = c8_step(vcpu, &x);
	if (!ok(!ret && run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
		run->mmio.phys_addr == C8_RO_GPA + 0x10,
		"ro: its write exits as MMIO at 0x%llx (ret %d, exit %u)", C8_RO_GPA + 0x10, ret,
		run->exit_reason))
		goto out;
	is_int(x, VMRAS_EXIT_NOT_MINE, "ro: vmras_vcpu_exit: VMRAS_EXIT_NOT_MINE (the VMM's write)");
	is_u64(rom[0x10], 0xa5, "ro: the RAM behind the slot is unchanged");
	ret = c8_step(vcpu, &x);
	ok(!ret && kvmt_exit_is_out(run, 0x11), "ro: the guest goes on");
	is_u64(rom[0x10], 0xa5, "ro: and the RAM is still unchanged");

	/* A page the VMM protected: not a memory error, not destroyed. */
	protected_ = is_int(mprotect(hole, SUB, PROT_NONE), 0,
			    "prot_none: mprotect(PROT_NONE) a page of writable RAM (0x%llx)",
			    C8_HOLE_GPA);
	ret = c8_step(vcpu, &x);
	emulates = ret == 0 && run->exit_reason == KVM_EXIT_MMIO;
	tap_diag("prot_none: the guest's read of it: KVM_RUN %d, exit %u%s", ret, run->exit_reason,
		 emulates ? " (MMIO: this KVM emulates guest instructions)" : "");
	is_int(caps.ram_mmio, emulates, "ram_mmio detect: vmras_get_caps().ram_mmio (%d) is what "
	       "this host does", caps.ram_mmio);
	is_int(x, VMRAS_EXIT_NOT_MINE, "prot_none: the read: vmras_vcpu_exit: NOT_MINE");
	if (emulates) {
		ok(!run->mmio.is_write && run->mmio.phys_addr == C8_HOLE_GPA + 8,
		   "prot_none: an MMIO read at 0x%llx", C8_HOLE_GPA + 8);
		run->mmio.data[0] = 0xee;	/* the VMM answers it */
		ret = c8_step(vcpu, &x);
		ok(!ret && kvmt_exit_is_out(run, 0x12) && kvmt_io_value(run) == 0xee,
		   "prot_none: the guest got the VMM's answer (0x%x), not RAM or filler",
		   kvmt_io_value(run));
		ret = c8_step(vcpu, &x);
		ok(!ret && run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
		   run->mmio.phys_addr == C8_HOLE_GPA + 0x10, "prot_none: the guest's write exits "
		   "as MMIO (ret %d, exit %u)", ret, run->exit_reason);
		is_int(x, VMRAS_EXIT_NOT_MINE, "prot_none: the write: vmras_vcpu_exit: NOT_MINE");
		ret = c8_step(vcpu, &x);
		ok(!ret && kvmt_exit_is_out(run, 0x13), "prot_none: the guest goes on");
		ret = c8_step(vcpu, &x);
		ok(!ret && run->exit_reason == KVM_EXIT_HLT, "prot_none: and halts");
	}
	is_int(registry_count(), 0, "prot_none: no registry entry");
	is_int(get_stats().contained, 0, "prot_none: nothing contained");
	if (protected_ && is_int(mprotect(hole, SUB, PROT_READ | PROT_WRITE), 0,
				 "prot_none: mprotect back to read-write")) {
		protected_ = false;
		is_int(classify((const uint64_t *)hole, C8_HOLE_GPA, SUB), PK_PATTERN,
		       "prot_none: its bytes are unchanged");
	}
	is_int(atomic_load(&n_resets) + atomic_load(&n_stops), 0, "not poison: no reset or stop");
out:
	if (protected_)
		mprotect(hole, SUB, PROT_READ | PROT_WRITE);
	if (ras)
		ras_free();
	kvmt_vm_free(vm);
}

/* ======================================================================
 * 9. A userfaultfd without kernel faults
 * ====================================================================== */

#define C9_GPA 0x40000000ULL
#define C9_UID 65534

struct c9_result {
	int stage;		/* how far the child got */
	int setid_err, uffd_dev_errno;
	uid_t uid, euid;
	int region_err, new_rc, add_rc, setup_rc, start_rc, inject_rc;
	struct vmras_caps caps;
	int got_report;
	struct vmras_failure report;
	struct vmras_stats st;
	size_t nreg;
	struct vmras_poison reg0;
};

static struct c9_result *c9;

static void c9_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	if (!__atomic_load_n(&c9->got_report, __ATOMIC_ACQUIRE) && (f->ev.valid & VMRAS_EV_GPA) &&
	    f->ev.gpa - C9_GPA < 2 * HUGE) {
		c9->report = *f;
		__atomic_store_n(&c9->got_report, 1, __ATOMIC_RELEASE);
	}
}

/* The child: an ordinary user, no /dev/userfaultfd, no unprivileged userfaultfd. */
static void c9_child(void)
{
	struct vmras_config cfg = { .ram_mmio = VMRAS_RAM_MMIO_NO };
	struct vmras_x86_config x86 = { .mcg_cap = MCG_SER_P | MCG_CTL_P | 10 };
	struct vmras_region r;
	struct hregion h;
	int fd;

	signal(SIGALRM, SIG_DFL);
	alarm(60);
	c9->stage = 1;
	if (setgroups(0, NULL) || setresgid(C9_UID, C9_UID, C9_UID) ||
	    setresuid(C9_UID, C9_UID, C9_UID)) {
		c9->setid_err = errno;
		_exit(1);
	}
	c9->uid = getuid();
	c9->euid = geteuid();
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	c9->uffd_dev_errno = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	c9->stage = 2;
	c9->region_err = hregion_new(&h, C9_GPA, 2);
	if (c9->region_err)
		_exit(1);
	r = hregion_vmras(&h);
	vmras_policy_default(&cfg.policy);
	/* No vCPU to tell: the report is about containment alone. */
	cfg.policy.ao = VMRAS_ACTION_IGNORE;
	cfg.ops.failure = c9_failure;
	cfg.ops.pause_vcpus = on_pause;
	cfg.ops.resume_vcpus = on_resume;
	cfg.ops.vcpu_blocked = on_blocked;
	c9->stage = 3;
	c9->new_rc = vmras_new(&cfg, &ras);
	if (c9->new_rc)
		_exit(1);
	c9->add_rc = vmras_add_region(ras, &r);
	c9->setup_rc = vmras_x86_setup(ras, &x86);
	c9->start_rc = vmras_start(ras);
	if (c9->add_rc || c9->setup_rc || c9->start_rc)
		_exit(1);
	c9->stage = 4;
	vmras_get_caps(ras, &c9->caps);
	c9->inject_rc = vmras_inject(ras, C9_GPA + 3 * SUB + 0x10, VMRAS_AO, -1, true);
	c9->stage = 5;
	WAIT_FOR(__atomic_load_n(&c9->got_report, __ATOMIC_ACQUIRE), 20);
	vmras_get_stats(ras, &c9->st);
	c9->nreg = vmras_registry_snapshot(vmras_get_registry(ras), &c9->reg0, 1);
	c9->stage = 6;
	vmras_free(ras);
	hregion_free(&h);
	c9->stage = 7;
	_exit(0);
}

static void case_user_mode_uffd(void)
{
	const char *name = "user-mode userfaultfd: refuses to split, says why";
	long unpriv = read_long("/proc/sys/vm/unprivileged_userfaultfd");
	struct stat sb;
	int status = 0;
	pid_t pid;

	if (geteuid() != 0) {
		tap_skip(name, "needs root to make an unprivileged child (uid %d)", C9_UID);
		return;
	}
	if (!hp_ok) {
		tap_skip(name, "%s", hp_why);
		return;
	}
	if (!stat("/dev/userfaultfd", &sb) && (sb.st_mode & (S_IROTH | S_IWOTH)) ==
						      (S_IROTH | S_IWOTH)) {
		tap_skip(name, "/dev/userfaultfd is world-accessible (mode %o): any user gets a "
			 "userfaultfd with kernel faults", sb.st_mode & 0777);
		return;
	}
	/* main() set it to 0 for this case where it could (and sets it back). */
	if (unpriv > 0) {
		tap_skip(name, "vm.unprivileged_userfaultfd is %ld and could not be set to 0", unpriv);
		return;
	}
	c9 = mmap(NULL, sizeof(*c9), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!ok(c9 != MAP_FAILED, "uffd: shared result page"))
		goto out;
	memset(c9, 0, sizeof(*c9));
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		c9_child();
	if (!ok(pid > 0, "uffd: fork"))
		goto out;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "uffd: the child ran to its end (status 0x%x, stage %d)", status, c9->stage);
	if (!is_int(c9->setid_err, 0, "uffd: the child dropped to uid/gid %d", C9_UID) ||
	    !is_int(c9->euid, C9_UID, "uffd: and runs as uid %d", C9_UID))
		goto out;
	if (c9->uffd_dev_errno == 0) {
		tap_skip(name, "uid %d can open /dev/userfaultfd here", C9_UID);
		goto out;
	}
	tap_diag("uffd: child: /dev/userfaultfd: %s; vm.unprivileged_userfaultfd %ld",
		 strerror(c9->uffd_dev_errno), unpriv);
	is_int(c9->region_err, 0, "uffd: child: hugetlb region");
	is_int(c9->start_rc, 0, "uffd: child: vmras_start");
	if (c9->stage < 4)
		goto out;
	tap_diag("uffd: caps: contain %d (%s), split %d (%s), kernel_faults %d", c9->caps.contain,
		 c9->caps.contain_why, c9->caps.split, c9->caps.split_why, c9->caps.kernel_faults);
	ok(c9->caps.contain, "uffd: caps: contain (UFFDIO_POISON works in user mode too)");
	ok(!c9->caps.kernel_faults, "uffd: caps: no kernel faults");
	ok(!c9->caps.split, "uffd: caps: split refused");
	ok(strstr(c9->caps.split_why, "user-mode") != NULL,
	   "uffd: caps: split_why says user-mode ('%s')", c9->caps.split_why);
	is_int(c9->inject_rc, 0, "uffd: child: AO injected into a huge page");
	if (!ok(c9->got_report, "uffd: child: a failure report for it"))
		goto out;
	tap_diag("uffd: report: size %" PRIu64 ", contained %d, action %s, detail '%s'",
		 c9->report.size, c9->report.contained, vmras_action_name(c9->report.action),
		 c9->report.detail);
	is_int(c9->report.size, HUGE, "uffd: the whole 2 MiB huge page is lost");
	ok(c9->report.contained, "uffd: and contained");
	ok(strstr(c9->report.detail, "split") || strstr(c9->report.detail, "user-mode"),
	   "uffd: the failure detail says why the huge page was not split ('%s')",
	   c9->report.detail);
	is_int(c9->st.bytes_lost, HUGE, "uffd: stats.bytes_lost 2 MiB");
	is_int(c9->st.splits, 0, "uffd: stats.splits 0");
	ok(c9->nreg == 1 && c9->reg0.gpa == C9_GPA && c9->reg0.size == HUGE,
	   "uffd: one registry entry, the huge page (%zu entries, gpa 0x%" PRIx64 " size %" PRIu64
	   ")", c9->nreg, c9->reg0.gpa, c9->reg0.size);
out:
	if (c9 && c9 != MAP_FAILED)
		munmap(c9, sizeof(*c9));
	c9 = NULL;
}

/* ---- each case in its own process ------------------------------------- */

/* Re-emit one line of a child's TAP under this process's numbering. */
static void relay_line(const char *name, char *line)
{
	bool pass = !strncmp(line, "ok ", 3);
	char *desc, *skip;

	if (pass || !strncmp(line, "not ok ", 7)) {
		desc = strstr(line, " - ");
		desc = desc ? desc + 3 : line;
		skip = strstr(desc, " # SKIP ");
		if (pass && skip) {
			*skip = 0;
			tap_skip(desc, "%s", skip + 8);
		} else {
			tap_result(pass, "%s", desc);
		}
	} else if (line[0] == '#') {
		printf("%s\n", line);
	} else if (line[0]) {
		tap_diag("%s: %s", name, line);
	}
}

/* Where a hung child is (if gdb is there): its threads' stacks, as diagnostics. */
static void show_stacks(pid_t pid)
{
	char cmd[128], line[512];
	unsigned int n = 0;
	FILE *f;

	if (access("/usr/bin/gdb", X_OK))
		return;
	snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt 10' 2>/dev/null",
		 (int)pid);
	f = popen(cmd, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && n < 80)
		if (!strncmp(line, "Thread ", 7) || (line[0] == '#' && strstr(line, " in "))) {
			line[strcspn(line, "\n")] = 0;
			tap_diag("  %s", line);
			n++;
		}
	pclose(f);
}

/*
 * Run one case in a child process: a hang or a crash there (a library
 * bug) is reported as such, and the other cases still run. The child's
 * TAP comes back through a pipe and is numbered here. The case must
 * finish within seconds (far more than it needs, sanitizers included).
 */
static void run_isolated(const char *name, void (*fn)(void), int seconds)
{
	char buf[65536];
	size_t have = 0;
	int pfd[2], status = 0;
	bool hung = false;
	struct timespec t0, t;
	pid_t pid;

	fflush(stdout);
	if (pipe2(pfd, O_CLOEXEC)) {
		tap_result(false, "%s: pipe: %s", name, strerror(errno));
		return;
	}
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		setvbuf(stdout, NULL, _IOLBF, 0);
		signal(SIGALRM, SIG_DFL);
		hp_added = 0;	/* the parent's to give back */
		tap_count = tap_failures = 0;
		fn();
		fflush(stdout);
		_exit(0);
	}
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		tap_result(false, "%s: fork: %s", name, strerror(errno));
		return;
	}
	alarm((unsigned int)seconds + 60);	/* should this loop itself hang */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		long left_ms;
		ssize_t n;
		char *nl;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left_ms = (t0.tv_sec + seconds - t.tv_sec) * 1000L +
			  (t0.tv_nsec - t.tv_nsec) / 1000000L;
		if (left_ms <= 0) {
			hung = true;
			break;
		}
		if (poll(&p, 1, (int)left_ms) <= 0)
			continue;
		n = read(pfd[0], buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			relay_line(name, buf);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1) {
			relay_line(name, buf);
			have = 0;
		}
	}
	if (have) {
		buf[have] = 0;
		relay_line(name, buf);
	}
	if (hung) {
		tap_result(false, "%s: finished within %d s (it hung: its threads follow)", name,
			   seconds);
		show_stacks(pid);
		kill(pid, SIGKILL);
	}
	close(pfd[0]);
	waitpid(pid, &status, 0);
	alarm(0);
	if (!hung && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		tap_result(false, "%s: ran to its end (%s %d)", name,
			   WIFSIGNALED(status) ? "killed by signal" : "exit status",
			   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* VMRAS_CORE_CASES=1,5 runs only those cases (for debugging); all by default. */
static bool want_case(const char *id)
{
	const char *s = getenv("VMRAS_CORE_CASES");
	size_t len = strlen(id);

	if (!s || !*s)
		return true;
	for (const char *p = s; (p = strstr(p, id)); p++)
		if ((p == s || p[-1] == ',') && (p[len] == ',' || !p[len]))
			return true;
	return false;
}

#define CASE_SECONDS 30

int main(void)
{
	static const struct {
		const char *id, *name;
		void (*fn)(void);
		bool kvm;
	} cases[] = {
		{ "1", "delivery against a real vCPU", case_delivery, true },
		{ "2", "x86 plan", case_plan, false },
		{ "3", "capture-ring overflow", case_ring_overflow, false },
		{ "4", "more than 64 splits", case_many_splits, false },
		{ "5", "split racing a guest reset", case_split_reset, false },
		{ "5b", "split racing a guest reset, a reader meanwhile", case_split_reset_reader,
		  false },
		{ "6", "a reader during a split", case_reader, false },
		{ "7", "injections from a vCPU thread during split pauses", case_vcpu_inject, true },
		{ "8", "read-only memslot, PROT_NONE page", case_not_poison, true },
		{ "9", "user-mode userfaultfd", case_user_mode_uffd, false },
	};
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	long unpriv = read_long("/proc/sys/vm/unprivileged_userfaultfd");
	bool unpriv_changed = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_alarm);
	atexit(hp_release);
	hp_ok = hp_reserve(C4_HUGE, hp_why, sizeof(hp_why));
	if (!hp_ok)
		tap_diag("huge-page cases skip: %s", hp_why);
	/* Case 9 needs unprivileged userfaultfd off; set back at the end. */
	if (unpriv > 0 && geteuid() == 0 && want_case("9"))
		unpriv_changed = !write_long("/proc/sys/vm/unprivileged_userfaultfd", 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!want_case(cases[i].id))
			continue;
		if (cases[i].kvm && !kvm)
			tap_skip(cases[i].name, "/dev/kvm: no read-write access");
		else
			run_isolated(cases[i].name, cases[i].fn, CASE_SECONDS);
	}
	if (unpriv_changed)
		write_long("/proc/sys/vm/unprivileged_userfaultfd", unpriv);
	hp_release();
	return tap_done();
}
