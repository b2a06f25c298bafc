// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * How far apart the vCPUs of an Intel guest take the machine checks of one
 * action-required error. libvmras sends the SRAR to the consuming vCPU and
 * a broadcast copy to every other one; a Linux guest's monarch waits for
 * all of them to enter the #MC handler (1 s on Intel family 6 model >= 0xE)
 * and panics if one is late. Measured with real vCPUs, each on its own
 * thread running a small real-mode guest whose #MC handler begins with an
 * OUT: the host time at that KVM_RUN return is the moment the vCPU took
 * its machine check.
 *
 *   spread: first vCPU's #MC to the last one's
 *   latency: vmras_inject(gpa, AR, vCPU 0, signal) to the last vCPU's #MC
 *
 * Variants: 2 and 4 vCPUs, all busy (a guest loop that leaves KVM_RUN only
 * every few ms: the kick is what brings a vCPU out), then one bystander
 * halted (HLT with IF=0: only a machine check, NMI or INIT ends it; the
 * vCPU thread sleeps inside KVM_RUN, holding the vCPU, so no other thread
 * can queue anything on it). The baseline, measured in the same run and
 * interleaved rep by rep: every vCPU thread, kicked out of KVM_RUN, meets
 * the others at a barrier and issues KVM_X86_SET_MCE to its own vCPU at
 * once (the same values libvmras's plan gives): the floor of what any VMM
 * could do. Last, a control with 2 vCPUs: a kick that only sets
 * kvm_run.immediate_exit, without the signal, against the halted vCPU.
 *
 * The VM has an in-kernel local APIC (KVM_CREATE_IRQCHIP), as production
 * VMMs do, so a HLT sleeps inside KVM_RUN instead of returning
 * KVM_EXIT_HLT. On a host with fewer cores than busy vCPUs the spread is
 * mostly the host scheduler's (a busy emulated vCPU is a CPU hog): the
 * baseline pays the same, hence the ratio.
 *
 * p99 of 50 reps is the worst one. Ratios against the baseline, never
 * timed assertions. Exit 77 (meson's skip) without /dev/kvm; 1 with one
 * line when setup fails or a copy does not arrive.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../tests/kvm_util.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define REPS 50
#define MAX_VCPUS 4
#define KICK_SIGNAL SIGUSR1
#define CODE_GPA 0x1000ULL
#define HANDLER_GPA (CODE_GPA + 0x24)
#define AREA_GPA(i) (0x2000ULL + 0x1000ULL * (i))	/* DS = SS = AREA_GPA >> 4 */
#define ERR_GPA 0x100000ULL
#define ERR_PAGES 256ULL
#define PAGE 4096ULL
/* LOOP iterations between two exits of a busy vCPU (~1 us each here). */
#define SPIN 3000
#define WAIT_NS 5000000000ULL		/* a machine check not taken by then: a failure */
#define CONTROL_WAIT_NS 1000000000ULL	/* the control: a Linux monarch's timeout */
#define MONARCH_TIMEOUT_US 1000000.0

#define PORT_LOOP 0x10
#define PORT_MC 0x11		/* first instruction of the #MC handler */
#define PORT_HALT 0x13		/* right before HLT */
#define PORT_MC_DONE 0x14	/* the handler read and cleared the banks and MCIP */

/*
 * The guest, 16-bit real mode at CODE_GPA with CS = 0, DS = SS = its
 * vCPU's area (IP is the GPA; the code is position-independent and uses
 * only DS offsets, so one copy serves every vCPU). The host points IVT
 * entry 18 at `handler`. `as --32`, .code16, Intel syntax:
 */
static const uint8_t guest_code[] = {
	/* 00 top: */
	0x66, 0x83, 0x3e, 0x00, 0x00, 0x00, /* cmp dword [0x00], 0  ; area.halt */
	0x75, 0x12,			/* jne halting */
	0x8b, 0x0e, 0x04, 0x00,		/* mov cx, [0x04]        ; area.spin */
	/* 0c spin: */
	0xe2, 0xfe,			/* loop spin */
	0x66, 0xff, 0x06, 0x14, 0x00,	/* inc dword [0x14]      ; area.loops */
	0xa1, 0x14, 0x00,		/* mov ax, [0x14] */
	0xe7, 0x10,			/* out 0x10, ax          ; PORT_LOOP */
	0xeb, 0xe6,			/* jmp top */
	/* 1a halting: */
	0x66, 0xff, 0x06, 0x30, 0x00,	/* inc dword [0x30]      ; area.halts */
	0xe6, 0x13,			/* out 0x13, al          ; PORT_HALT */
	0xf4,				/* hlt                   ; IF = 0: only a #MC ends it */
	0xeb, 0xdc,			/* jmp top */
	/* 24 handler: */
	0xe6, 0x11,			/* out 0x11, al          ; PORT_MC: taken now */
	0x66, 0x60,			/* pushad */
	0x66, 0xb9, 0x7a, 0x01, 0x00, 0x00, /* mov ecx, 0x17a    ; MCG_STATUS */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x18, 0x00,		/* mov [0x18], eax       ; area.mcg_status */
	0x66, 0x89, 0x16, 0x1c, 0x00,	/* mov [0x1c], edx */
	0x66, 0x8b, 0x0e, 0x08, 0x00,	/* mov ecx, [0x08]       ; area.msr_a: bank A STATUS */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x20, 0x00,		/* mov [0x20], eax       ; area.status_a */
	0x66, 0x89, 0x16, 0x24, 0x00,	/* mov [0x24], edx */
	0x66, 0x31, 0xc0,		/* xor eax, eax */
	0x66, 0x31, 0xd2,		/* xor edx, edx */
	0x0f, 0x30,			/* wrmsr                 ; bank A STATUS = 0 */
	0x66, 0x8b, 0x0e, 0x0c, 0x00,	/* mov ecx, [0x0c]       ; area.msr_b */
	0x0f, 0x32,			/* rdmsr */
	0x66, 0xa3, 0x28, 0x00,		/* mov [0x28], eax       ; area.status_b */
	0x66, 0x89, 0x16, 0x2c, 0x00,	/* mov [0x2c], edx */
	0x66, 0x31, 0xc0,		/* xor eax, eax */
	0x66, 0x31, 0xd2,		/* xor edx, edx */
	0x0f, 0x30,			/* wrmsr                 ; bank B STATUS = 0 */
	0x66, 0xb9, 0x7a, 0x01, 0x00, 0x00, /* mov ecx, 0x17a */
	0x0f, 0x30,			/* wrmsr                 ; MCG_STATUS = 0: MCIP clear */
	0x66, 0xff, 0x06, 0x10, 0x00,	/* inc dword [0x10]      ; area.mc_count */
	0xa1, 0x10, 0x00,		/* mov ax, [0x10] */
	0xe7, 0x14,			/* out 0x14, ax          ; PORT_MC_DONE */
	0x66, 0x61,			/* popad */
	0xcf,				/* iret */
};

struct area {
	volatile uint32_t halt;		/* in: nonzero: HLT at the top of the loop */
	volatile uint32_t spin;		/* in: LOOP count between exits */
	volatile uint32_t msr_a, msr_b;	/* in: MCi_STATUS MSRs the handler reads and clears */
	volatile uint32_t mc_count;	/* out */
	volatile uint32_t loops;
	volatile uint64_t mcg_status;	/* out: as the last handler read them */
	volatile uint64_t status_a, status_b;
	volatile uint32_t halts;
};

_Static_assert(offsetof(struct area, spin) == 0x04, "area: spin");
_Static_assert(offsetof(struct area, msr_b) == 0x0c, "area: msr_b");
_Static_assert(offsetof(struct area, loops) == 0x14, "area: loops");
_Static_assert(offsetof(struct area, mcg_status) == 0x18, "area: mcg_status");
_Static_assert(offsetof(struct area, status_b) == 0x28, "area: status_b");
_Static_assert(offsetof(struct area, halts) == 0x30, "area: halts");
_Static_assert(sizeof(guest_code) == 0x7e, "guest code size");

struct vcpu {
	unsigned int index;
	struct kvmt_vcpu *k;
	struct area *area;
	pthread_t thread;
	atomic_bool started;
	atomic_int tid;
	unsigned int bl_gen_seen;
	/* Counted by the vCPU's thread. */
	atomic_uint mc, done, halts, halts_at_done, eintr, loop_exits;
	atomic_ullong t_mc;		/* the last PORT_MC exit */
	atomic_ullong t_enter_mc;	/* the KVM_RUN that ended there began */
	atomic_ullong t_release;	/* baseline: out of the barrier */
	atomic_ullong t_kick;		/* the first kick since the main thread cleared it */
	atomic_int mp_state;		/* at the last -EINTR, if probe_mp_state */
	atomic_bool probe_mp_state;
};

enum kick_mode { KICK_FULL, KICK_NO_SIGNAL };

static struct {
	unsigned int n;
	struct vcpu v[MAX_VCPUS];
	struct vmras *ras;
	struct kvm_x86_mce bl_mce[MAX_VCPUS];
	pthread_barrier_t barrier;
	atomic_uint bl_gen;
	atomic_bool quit;
	atomic_int kick_mode;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_uint resets, stops, not_injected;
	char fail[256];
	char last_why[160];
} B = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void setup_failed(const char *what, int err) __attribute__((noreturn));

static void setup_failed(const char *what, int err)
{
	printf("broadcast_spread: setup failed: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void bench_failed(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void bench_failed(const char *fmt, ...)
{
	va_list ap;

	fputs("broadcast_spread: FAILED: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(1); /* vCPU threads may be stuck in KVM_RUN or in libvmras: just go */
}

static void kick_handler(int sig)
{
	(void)sig; /* only there to make KVM_RUN return -EINTR */
}

static void kick(unsigned int i)
{
	struct vcpu *v = &B.v[i];
	unsigned long long zero = 0;

	if (!atomic_load(&v->started))
		return;
	atomic_compare_exchange_strong(&v->t_kick, &zero, now_ns());
	__atomic_store_n(&v->k->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (atomic_load(&B.kick_mode) == KICK_FULL)
		pthread_kill(v->thread, KICK_SIGNAL);
}

/* ---- libvmras hooks ---- */

static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	if (vcpu < B.n)
		kick(vcpu);
}

static void on_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	(void)vcpu;
	(void)blocked; /* nothing pauses vCPUs here */
}

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	if (f->action != VMRAS_ACTION_INJECT || f->recipient != VMRAS_RECIPIENT_GUEST) {
		atomic_fetch_add(&B.not_injected, 1);
		pthread_mutex_lock(&B.lock);
		snprintf(B.last_why, sizeof(B.last_why), "%s: %s", vmras_action_name(f->action),
			 f->detail);
		pthread_mutex_unlock(&B.lock);
	}
}

static void on_reset(void *o, const char *why)
{
	(void)o;
	atomic_fetch_add(&B.resets, 1);
	pthread_mutex_lock(&B.lock);
	snprintf(B.last_why, sizeof(B.last_why), "reset requested: %s", why);
	pthread_mutex_unlock(&B.lock);
}

static void on_stop(void *o, const char *why)
{
	(void)o;
	atomic_fetch_add(&B.stops, 1);
	pthread_mutex_lock(&B.lock);
	snprintf(B.last_why, sizeof(B.last_why), "stop requested: %s", why);
	pthread_mutex_unlock(&B.lock);
}

/* ---- vCPU threads ---- */

static void thread_fail(struct vcpu *v, const char *what, int err)
{
	pthread_mutex_lock(&B.lock);
	if (!B.fail[0])
		snprintf(B.fail, sizeof(B.fail), "vCPU %u: %s: %s", v->index, what,
			 strerror(err < 0 ? -err : err));
	pthread_cond_broadcast(&B.cond);
	pthread_mutex_unlock(&B.lock);
}

/* Baseline: meet the others, then put this vCPU's machine check in at once. */
static int baseline_set_mce(struct vcpu *v)
{
	int r = pthread_barrier_wait(&B.barrier);

	if (r && r != PTHREAD_BARRIER_SERIAL_THREAD)
		return -r;
	atomic_store(&v->t_release, now_ns());
	return ioctl(v->k->fd, KVM_X86_SET_MCE, &B.bl_mce[v->index]) ? -errno : 0;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->k->run;
	sigset_t set;
	int r;

	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	atomic_store(&v->tid, (int)syscall(SYS_gettid));
	r = vmras_vcpu_thread_start(B.ras, v->index);
	if (r) {
		thread_fail(v, "vmras_vcpu_thread_start", r);
		return NULL;
	}
	for (;;) {
		uint64_t t_enter, t;
		int h;

		/* Cleared before pre_run: a kick after it makes KVM_RUN return at once. */
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (atomic_load(&B.quit))
			break;
		if (atomic_load(&B.bl_gen) != v->bl_gen_seen) {
			v->bl_gen_seen = atomic_load(&B.bl_gen);
			r = baseline_set_mce(v);
			if (r) {
				thread_fail(v, "baseline KVM_X86_SET_MCE", r);
				return NULL;
			}
		}
		r = vmras_vcpu_pre_run(B.ras, v->index);
		if (r < 0) {
			thread_fail(v, "vmras_vcpu_pre_run", r);
			return NULL;
		}
		t_enter = now_ns();
		r = ioctl(v->k->fd, KVM_RUN, 0) ? -errno : 0;
		t = now_ns();
		h = vmras_vcpu_exit(B.ras, v->index, run, r);
		if (h == VMRAS_EXIT_HANDLED)
			continue;
		if (h < 0) {
			thread_fail(v, "vmras_vcpu_exit", h);
			return NULL;
		}
		if (r == -EINTR) {
			atomic_fetch_add(&v->eintr, 1);
			/* Still halted when the kick took it out? (one ioctl, ~1 us) */
			if (atomic_load(&v->probe_mp_state)) {
				struct kvm_mp_state mp = { 0 };

				atomic_store(&v->mp_state, ioctl(v->k->fd, KVM_GET_MP_STATE, &mp)
								   ? -errno : (int)mp.mp_state);
			}
			continue;
		}
		if (r) {
			thread_fail(v, "KVM_RUN", r);
			return NULL;
		}
		if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT) {
			char what[64];

			snprintf(what, sizeof(what), "unexpected exit reason %u", run->exit_reason);
			thread_fail(v, what, EPROTO);
			return NULL;
		}
		switch (run->io.port) {
		case PORT_LOOP:
			atomic_fetch_add(&v->loop_exits, 1);
			break;
		case PORT_MC:
			atomic_store(&v->t_enter_mc, t_enter);
			atomic_store(&v->t_mc, t);
			atomic_fetch_add(&v->mc, 1);
			break;
		case PORT_HALT:
			atomic_fetch_add(&v->halts, 1);
			break;
		case PORT_MC_DONE:
			pthread_mutex_lock(&B.lock);
			atomic_store(&v->halts_at_done, atomic_load(&v->halts));
			atomic_fetch_add(&v->done, 1);
			pthread_cond_broadcast(&B.cond);
			pthread_mutex_unlock(&B.lock);
			break;
		default:
			thread_fail(v, "OUT to an unknown port", EPROTO);
			return NULL;
		}
	}
	return NULL;
}

/* ---- the main thread ---- */

/* State letter of a thread of ours, from /proc (R running, S sleeping). */
static char thread_state(int tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static void thread_wchan(int tid, char *out, size_t size)
{
	char path[64];
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, size - 1);
		close(fd);
	}
	out[n > 0 ? n : 0] = 0;
	if (n <= 0 || !strcmp(out, "0"))
		snprintf(out, size, "not shown");
}

static void check_threads(void)
{
	pthread_mutex_lock(&B.lock);
	if (B.fail[0]) {
		char fail[sizeof(B.fail)];

		memcpy(fail, B.fail, sizeof(fail));
		pthread_mutex_unlock(&B.lock);
		bench_failed("%s", fail);
	}
	pthread_mutex_unlock(&B.lock);
}

/* Wait until every vCPU has finished want[i] machine checks; false at the deadline. */
static bool wait_done(const unsigned int *want, uint64_t deadline)
{
	bool all;

	pthread_mutex_lock(&B.lock);
	for (;;) {
		struct timespec ts;

		all = true;
		for (unsigned int i = 0; i < B.n; i++)
			all &= atomic_load(&B.v[i].done) >= want[i];
		if (all || B.fail[0] || now_ns() >= deadline)
			break;
		/* Woken by each PORT_MC_DONE; look at the deadline every 2 ms. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 2000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&B.cond, &B.lock, &ts);
	}
	pthread_mutex_unlock(&B.lock);
	check_threads();
	return all;
}

/*
 * Before each rep: the busy vCPUs back in their loop, the halted one
 * (if any) asleep inside KVM_RUN on its HLT again.
 */
static void settle(int halted)
{
	uint64_t deadline = now_ns() + WAIT_NS;

	usleep(2000);
	if (halted < 0)
		return;
	struct vcpu *h = &B.v[halted];

	while (atomic_load(&h->halts) <= atomic_load(&h->halts_at_done) ||
	       thread_state(atomic_load(&h->tid)) != 'S') {
		check_threads();
		if (now_ns() > deadline)
			bench_failed("vCPU %d did not go back to HLT within 5 s (state %c)", halted,
				     thread_state(atomic_load(&h->tid)));
		usleep(100);
	}
	usleep(500); /* make sure it is in the kernel's halt, not on its way there */
}

static void snapshot(unsigned int *want)
{
	for (unsigned int i = 0; i < B.n; i++) {
		want[i] = atomic_load(&B.v[i].done) + 1;
		atomic_store(&B.v[i].t_kick, 0);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static double pct(uint64_t *s, unsigned int n, unsigned int p)
{
	qsort(s, n, sizeof(s[0]), cmp_u64);
	return (double)s[n * p / 100] / 1e3;
}

struct spread {
	uint64_t first, last;
	unsigned int first_vcpu, last_vcpu;
};

static struct spread spread_now(void)
{
	struct spread s = { UINT64_MAX, 0, 0, 0 };

	for (unsigned int i = 0; i < B.n; i++) {
		uint64_t t = atomic_load(&B.v[i].t_mc);

		if (t < s.first) {
			s.first = t;
			s.first_vcpu = i;
		}
		if (t > s.last) {
			s.last = t;
			s.last_vcpu = i;
		}
	}
	return s;
}

/* The longest time a vCPU took from its KVM_RUN entry to the handler's OUT. */
static uint64_t slowest_entry(void)
{
	uint64_t m = 0;

	for (unsigned int i = 0; i < B.n; i++) {
		uint64_t d = atomic_load(&B.v[i].t_mc) - atomic_load(&B.v[i].t_enter_mc);

		if (d > m)
			m = d;
	}
	return m;
}

static void missing(const char *what, const unsigned int *want, uint64_t t0)
{
	struct vmras_stats st;
	char who[256] = "";
	size_t len = 0;

	vmras_get_stats(B.ras, &st);
	for (unsigned int i = 0; i < B.n; i++) {
		struct vcpu *v = &B.v[i];
		bool took = atomic_load(&v->mc) >= want[i];

		len += (size_t)snprintf(who + len, sizeof(who) - len,
					" vCPU %u %s (kicked %s, state %c, %u kicked exits);", i,
					took ? "took it" : "NOT taken",
					atomic_load(&v->t_kick) ? "yes" : "no",
					thread_state(atomic_load(&v->tid)), atomic_load(&v->eintr));
		if (len >= sizeof(who))
			break;
	}
	pthread_mutex_lock(&B.lock);
	bench_failed("%s: a machine check not taken %.1f s after vmras_inject:%s "
		     "notice_broadcast %" PRIu64 ", notice_delivered %" PRIu64
		     ", notice_undeliverable %" PRIu64 "; last outcome: %s", what,
		     (double)(now_ns() - t0) / 1e9, who, st.notice_broadcast,
		     st.notice_delivered, st.notice_undeliverable,
		     B.last_why[0] ? B.last_why : "none");
}

struct results {
	uint64_t spread[REPS], lat[REPS];
	uint64_t bl_spread[REPS], bl_lat[REPS];
	uint64_t to_raise[REPS], to_bystander_kick[REPS], to_first[REPS];
	uint64_t halted_kick_to_mc[REPS], halted_enter_to_mc[REPS];
	uint64_t enter_to_mc[REPS], bl_enter_to_mc[REPS];	/* the slowest vCPU's */
	unsigned int last_is_target, halted_mp_halted;
};

static void baseline_rep(struct results *res, unsigned int rep)
{
	unsigned int want[MAX_VCPUS];
	uint64_t release = UINT64_MAX, t0;
	struct spread s;

	snapshot(want);
	t0 = now_ns();
	atomic_fetch_add(&B.bl_gen, 1);
	for (unsigned int i = 0; i < B.n; i++)
		kick(i);
	if (!wait_done(want, now_ns() + WAIT_NS))
		missing("baseline", want, t0);
	s = spread_now();
	for (unsigned int i = 0; i < B.n; i++)
		if (atomic_load(&B.v[i].t_release) < release)
			release = atomic_load(&B.v[i].t_release);
	res->bl_spread[rep] = s.last - s.first;
	res->bl_lat[rep] = s.last - release;
	res->bl_enter_to_mc[rep] = slowest_entry();
}

static void check_seen(unsigned int rep, const char *name)
{
	for (unsigned int i = 0; i < B.n; i++) {
		struct area *a = B.v[i].area;
		uint64_t mcg = a->mcg_status, st = i == 0 ? a->status_b : a->status_a;
		uint64_t want_mcg = i == 0 ? MCG_STATUS_RIPV | MCG_STATUS_EIPV | MCG_STATUS_MCIP
					   : MCG_STATUS_RIPV | MCG_STATUS_MCIP;
		uint64_t want_st = i == 0 ? 0xBD80000000000134ULL : MCI_STATUS_VAL | MCI_STATUS_UC;

		if (mcg != want_mcg || st != want_st)
			bench_failed("%s rep %u: vCPU %u's handler saw MCG_STATUS 0x%" PRIx64
				     " MCi_STATUS 0x%" PRIx64 ", want 0x%" PRIx64 " 0x%" PRIx64,
				     name, rep, i, mcg, st, want_mcg, want_st);
	}
}

static void vmras_rep(struct results *res, unsigned int rep, uint64_t gpa, int halted,
		      const char *name)
{
	unsigned int want[MAX_VCPUS];
	uint64_t t0, kick_by = 0;
	struct spread s;
	int r;

	snapshot(want);
	t0 = now_ns();
	r = vmras_inject(B.ras, gpa, VMRAS_AR, 0, true);
	if (r)
		bench_failed("%s: vmras_inject(0x%" PRIx64 ", AR, vCPU 0): %s", name, gpa,
			     strerror(-r));
	if (!wait_done(want, now_ns() + WAIT_NS))
		missing(name, want, t0);
	check_seen(rep, name);
	s = spread_now();
	res->spread[rep] = s.last - s.first;
	res->lat[rep] = s.last - t0;
	res->enter_to_mc[rep] = slowest_entry();
	res->to_first[rep] = s.first - t0;
	res->to_raise[rep] = atomic_load(&B.v[0].t_kick) - t0;
	for (unsigned int i = 1; i < B.n; i++)
		if (atomic_load(&B.v[i].t_kick) > kick_by)
			kick_by = atomic_load(&B.v[i].t_kick);
	res->to_bystander_kick[rep] = kick_by - t0;
	res->last_is_target += s.last_vcpu == 0;
	if (halted >= 0) {
		struct vcpu *h = &B.v[halted];

		res->halted_kick_to_mc[rep] = atomic_load(&h->t_mc) - atomic_load(&h->t_kick);
		res->halted_enter_to_mc[rep] = atomic_load(&h->t_mc) - atomic_load(&h->t_enter_mc);
		res->halted_mp_halted += atomic_load(&h->mp_state) == KVM_MP_STATE_HALTED;
	}
}

static uint64_t next_page;

static void run_variant(const char *name, int halted, double *worst_us)
{
	static struct results res;
	struct vmras_stats st0, st1;
	double sp50, sp99, bsp50, lat50, lat99, blat50;

	memset(&res, 0, sizeof(res));
	if (halted >= 0)
		atomic_store(&B.v[halted].probe_mp_state, true);
	vmras_get_stats(B.ras, &st0);
	for (unsigned int rep = 0; rep < REPS; rep++) {
		settle(halted);
		baseline_rep(&res, rep);
		settle(halted);
		if (next_page >= ERR_PAGES)
			bench_failed("out of error pages");
		vmras_rep(&res, rep, ERR_GPA + PAGE * next_page++, halted, name);
	}
	vmras_get_stats(B.ras, &st1);
	if (st1.notice_broadcast - st0.notice_broadcast != (uint64_t)REPS * (B.n - 1) ||
	    st1.notice_undeliverable != st0.notice_undeliverable)
		bench_failed("%s: %" PRIu64 " bystander copies delivered, %" PRIu64
			     " undeliverable; want %u and 0", name,
			     st1.notice_broadcast - st0.notice_broadcast,
			     st1.notice_undeliverable - st0.notice_undeliverable, REPS * (B.n - 1));
	sp50 = pct(res.spread, REPS, 50);
	sp99 = pct(res.spread, REPS, 99);
	bsp50 = pct(res.bl_spread, REPS, 50);
	lat50 = pct(res.lat, REPS, 50);
	lat99 = pct(res.lat, REPS, 99);
	blat50 = pct(res.bl_lat, REPS, 50);
	printf("broadcast %s: spread p50 %.1f us p99 %.1f us (baseline %.1f us p99 %.1f us, "
	       "ratio %.2f); inject->last p50 %.1f us p99 %.1f us (baseline SET_MCE->last "
	       "%.1f us, ratio %.2f); monarch timeout %.0f us, p99 inject->last is %.4f of it\n",
	       name, sp50, sp99, bsp50, pct(res.bl_spread, REPS, 99), sp50 / bsp50, lat50, lat99,
	       blat50, lat50 / blat50, MONARCH_TIMEOUT_US, lat99 / MONARCH_TIMEOUT_US);
	printf("  path p50 from vmras_inject: vCPU 0 kicked (raise) %.1f us, bystanders kicked "
	       "%.1f us, first #MC %.1f us, last #MC %.1f us; vCPU 0 (the SRAR) last in %u/%d\n",
	       pct(res.to_raise, REPS, 50), pct(res.to_bystander_kick, REPS, 50),
	       pct(res.to_first, REPS, 50), lat50, res.last_is_target, REPS);
	printf("  KVM_RUN entry -> the handler's OUT, slowest vCPU: p50 %.1f us p99 %.1f us "
	       "(baseline p50 %.1f us p99 %.1f us)\n", pct(res.enter_to_mc, REPS, 50),
	       pct(res.enter_to_mc, REPS, 99), pct(res.bl_enter_to_mc, REPS, 50),
	       pct(res.bl_enter_to_mc, REPS, 99));
	if (halted >= 0)
		printf("  halted vCPU %d: kick -> #MC p50 %.1f us p99 %.1f us; KVM_RUN re-entry "
		       "after KVM_X86_SET_MCE -> #MC p50 %.1f us; mp_state HALTED after the kick "
		       "in %u/%d (a pending #MC makes KVM run it again)\n",
		       halted, pct(res.halted_kick_to_mc, REPS, 50),
		       pct(res.halted_kick_to_mc, REPS, 99), pct(res.halted_enter_to_mc, REPS, 50),
		       res.halted_mp_halted, REPS);
	if (lat99 > *worst_us)
		*worst_us = lat99;
	if (halted >= 0)
		atomic_store(&B.v[halted].probe_mp_state, false);
}

/*
 * A kick that only sets immediate_exit: a vCPU asleep in HLT inside
 * KVM_RUN never sees it (immediate_exit is read on entry only).
 */
static void control_no_signal(int halted)
{
	struct vcpu *h = &B.v[halted];
	unsigned int want[MAX_VCPUS], want0[MAX_VCPUS];
	uint64_t t0, gpa = ERR_GPA + PAGE * next_page++, t_kick;
	bool h_took, all;
	char wchan[64], state;
	int r;

	settle(halted);
	thread_wchan(atomic_load(&h->tid), wchan, sizeof(wchan));
	snapshot(want);
	memcpy(want0, want, sizeof(want0));
	for (unsigned int i = 0; i < B.n; i++)
		if ((int)i == halted)
			want0[i] = 0;
	atomic_store(&B.kick_mode, KICK_NO_SIGNAL);
	t0 = now_ns();
	r = vmras_inject(B.ras, gpa, VMRAS_AR, 0, true);
	if (r)
		bench_failed("control: vmras_inject: %s", strerror(-r));
	/* The others take theirs; the halted one? Wait a Linux monarch's timeout. */
	all = wait_done(want0, t0 + WAIT_NS);
	wait_done(want, t0 + CONTROL_WAIT_NS);
	h_took = atomic_load(&h->done) >= want[halted];
	state = thread_state(atomic_load(&h->tid));
	printf("control, kick without the signal (immediate_exit only), vCPU %d halted "
	       "(its thread asleep in KVM_RUN at %s): vCPU 0's SRAR %s %.1f ms after "
	       "vmras_inject; the halted bystander %s (thread state %c)",
	       halted, wchan,
	       all ? "taken" : "NOT taken", all ? (double)(atomic_load(&B.v[0].t_mc) - t0) / 1e6
						: (double)(now_ns() - t0) / 1e6,
	       h_took ? "took its copy" : "still asleep", state);
	if (h_took) {
		printf(" after %.1f ms\n", (double)(atomic_load(&h->t_mc) - t0) / 1e6);
	} else {
		printf(" %.0f ms later: a Linux guest would panic (\"Timeout: Not all CPUs "
		       "entered broadcast exception handler\")", (double)(now_ns() - t0) / 1e6);
		atomic_store(&B.kick_mode, KICK_FULL);
		t_kick = now_ns();
		pthread_kill(h->thread, KICK_SIGNAL);
		if (!wait_done(want, now_ns() + WAIT_NS))
			missing("control, after the signal", want, t0);
		printf("; the signal alone then brought its copy in %.1f us\n",
		       (double)(atomic_load(&h->t_mc) - t_kick) / 1e3);
	}
	atomic_store(&B.kick_mode, KICK_FULL);
	usleep(2000);
}

static int bench_vcpus(unsigned int n, double *worst_us)
{
	struct vmras_config cfg = { .ops = { .kick_vcpu = on_kick, .vcpu_blocked = on_blocked,
					     .failure = on_failure, .request_reset = on_reset,
					     .request_stop = on_stop } };
	struct vmras_x86_config x86 = { .vendor = VMRAS_X86_INTEL };
	struct vmras_x86_error e = { .type = VMRAS_MCE_SRAR, .gpa = ERR_GPA, .lsb = 12 };
	struct vmras_x86_plan_step steps[MAX_VCPUS];
	struct vmras_region region = { .gpa = ERR_GPA, .size = ERR_PAGES * PAGE,
				       .backing = VMRAS_BACKING_ANON, .fd = -1,
				       .page_size = PAGE, .slot = 1 };
	struct kvmt_vm *vm = NULL;
	unsigned int banks, loops0;
	void *low = NULL, *err_ram = NULL;
	uint64_t t0, t1;
	char name[64];
	int r, nsteps;

	memset(B.v, 0, sizeof(B.v));
	B.n = n;
	next_page = 0;
	atomic_store(&B.quit, false);
	atomic_store(&B.bl_gen, 0);
	r = kvmt_vm_create(&vm);
	if (r)
		setup_failed("create a KVM VM", r);
	/*
	 * An in-kernel local APIC, as every production VMM has: a HLT then
	 * sleeps inside KVM_RUN (without it KVM returns KVM_EXIT_HLT).
	 */
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0))
		setup_failed("KVM_CREATE_IRQCHIP", errno);
	r = kvmt_mce_cap_supported(vm, &x86.mcg_cap);
	if (r)
		setup_failed("KVM_X86_GET_MCE_CAP_SUPPORTED / KVM_CAP_MCE", r);
	banks = (unsigned int)(x86.mcg_cap & MCG_BANKCNT_MASK);
	if ((x86.mcg_cap & (MCG_CTL_P | MCG_SER_P)) != (MCG_CTL_P | MCG_SER_P) || banks < 2) {
		printf("broadcast_spread: setup failed: KVM's MCG_CAP 0x%" PRIx64
		       " lacks CTL_P|SER_P or 2 banks\n", x86.mcg_cap);
		exit(1);
	}
	if ((r = kvmt_vm_add_ram(vm, 0, 0, 0x10000, 0, &low)) ||
	    (r = kvmt_vm_add_ram(vm, 1, ERR_GPA, ERR_PAGES * PAGE, 0, &err_ram)))
		setup_failed("guest RAM", r);
	memset(err_ram, 0x5a, ERR_PAGES * PAGE);
	memcpy((char *)low + CODE_GPA, guest_code, sizeof(guest_code));
	((uint16_t *)low)[2 * X86_VECTOR_MC] = (uint16_t)HANDLER_GPA; /* IVT[18]: 0000:handler */
	((uint16_t *)low)[2 * X86_VECTOR_MC + 1] = 0;

	nsteps = vmras_x86_plan(&x86, &e, n, NULL, steps, MAX_VCPUS);
	if (nsteps != (int)n)
		setup_failed("vmras_x86_plan of an Intel SRAR", nsteps < 0 ? nsteps : EPROTO);
	for (int i = 0; i < nsteps; i++)
		B.bl_mce[steps[i].vcpu] = (struct kvm_x86_mce){
			.status = steps[i].mce.status, .addr = steps[i].mce.addr,
			.misc = steps[i].mce.misc, .mcg_status = steps[i].mce.mcg_status,
			.bank = steps[i].mce.bank };

	for (unsigned int i = 0; i < n; i++) {
		struct vcpu *v = &B.v[i];
		struct kvm_sregs sregs;
		struct kvm_regs regs;
		uint16_t seg = (uint16_t)(AREA_GPA(i) >> 4);

		v->index = i;
		r = kvmt_vcpu_create(vm, i, CODE_GPA, &v->k);
		if (r)
			setup_failed("create a vCPU", r);
		if (ioctl(v->k->fd, KVM_GET_SREGS, &sregs))
			setup_failed("KVM_GET_SREGS", errno);
		sregs.ds.selector = sregs.ss.selector = seg;
		sregs.ds.base = sregs.ss.base = (uint64_t)seg << 4;
		if (ioctl(v->k->fd, KVM_SET_SREGS, &sregs) || ioctl(v->k->fd, KVM_GET_REGS, &regs))
			setup_failed("KVM_SET_SREGS / KVM_GET_REGS", errno);
		regs.rsp = 0x1000; /* top of its area's page */
		if (ioctl(v->k->fd, KVM_SET_REGS, &regs))
			setup_failed("KVM_SET_REGS", errno);
		/* An AP waits for INIT/SIPI with an in-kernel APIC: start it here. */
		if (i && ioctl(v->k->fd, KVM_SET_MP_STATE,
			       &(struct kvm_mp_state){ .mp_state = KVM_MP_STATE_RUNNABLE }))
			setup_failed("KVM_SET_MP_STATE", errno);
		r = kvmt_vcpu_setup_mce(v->k, x86.mcg_cap);
		if (r)
			setup_failed("KVM_X86_SETUP_MCE, CR4.MCE, MCi_CTL", r);
		v->area = (struct area *)((char *)low + AREA_GPA(i));
		memset((void *)v->area, 0, sizeof(*v->area));
		v->area->spin = SPIN;
		v->area->msr_a = MSR_IA32_MCx_STATUS(1);	/* the bystanders' bank */
		v->area->msr_b = MSR_IA32_MCx_STATUS(banks - 1);	/* the SRAR's */
	}

	region.hva = err_ram;
	vmras_policy_default(&cfg.policy);
	if ((r = vmras_new(&cfg, &B.ras)))
		setup_failed("vmras_new", r);
	if ((r = vmras_add_region(B.ras, &region)) || (r = vmras_x86_setup(B.ras, &x86)))
		setup_failed("vmras_add_region / vmras_x86_setup", r);
	for (unsigned int i = 0; i < n; i++)
		if ((r = vmras_add_vcpu(B.ras, i, B.v[i].k->fd)))
			setup_failed("vmras_add_vcpu", r);
	if ((r = vmras_start(B.ras)))
		setup_failed("vmras_start", r);
	if ((r = pthread_barrier_init(&B.barrier, NULL, n)))
		setup_failed("pthread_barrier_init", r);
	for (unsigned int i = 0; i < n; i++) {
		if ((r = pthread_create(&B.v[i].thread, NULL, vcpu_thread, &B.v[i])))
			setup_failed("start a vCPU thread", r);
		atomic_store(&B.v[i].started, true);
	}

	/* Every guest looping; how fast it runs here. */
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++)
		while (B.v[i].area->loops < 2) {
			check_threads();
			if (now_ns() - t0 > WAIT_NS)
				setup_failed("the guest loop does not run", ETIMEDOUT);
			usleep(1000);
		}
	loops0 = B.v[0].area->loops;
	t0 = now_ns();
	usleep(200000);
	t1 = now_ns();
	printf("%u vCPUs on %ld host CPUs; MCG_CAP 0x%" PRIx64 "; a busy vCPU leaves KVM_RUN "
	       "by itself every %.2f ms (%d LOOPs: %.2f us per guest instruction)\n",
	       n, sysconf(_SC_NPROCESSORS_ONLN), x86.mcg_cap,
	       (double)(t1 - t0) / 1e6 / (double)(B.v[0].area->loops - loops0 + 1e-9), SPIN,
	       (double)(t1 - t0) / 1e3 / (double)(B.v[0].area->loops - loops0 + 1e-9) / SPIN);

	snprintf(name, sizeof(name), "%u vCPUs busy", n);
	run_variant(name, -1, worst_us);

	B.v[n - 1].area->halt = 1;
	snprintf(name, sizeof(name), "%u vCPUs, vCPU %u halted", n, n - 1);
	run_variant(name, (int)n - 1, worst_us);
	if (n == 2)
		control_no_signal((int)n - 1);

	atomic_store(&B.quit, true);
	for (unsigned int i = 0; i < n; i++)
		kick(i);
	for (unsigned int i = 0; i < n; i++)
		pthread_join(B.v[i].thread, NULL);
	check_threads();
	if (atomic_load(&B.resets) || atomic_load(&B.stops))
		bench_failed("libvmras asked for %u resets and %u stops: %s",
			     atomic_load(&B.resets), atomic_load(&B.stops), B.last_why);
	vmras_free(B.ras);
	B.ras = NULL;
	pthread_barrier_destroy(&B.barrier);
	kvmt_vm_free(vm);
	return 0;
}

int main(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	double worst_us = 0;
	sigset_t set;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("broadcast_spread: skipped: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL))
		setup_failed("install the kick signal handler", errno);
	/* Only vCPU threads take kicks (they unblock it). */
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	printf("broadcast_spread: %d reps per variant; Linux's monarch timeout on Intel "
	       "(family 6, model >= 0xE): %.0f us\n", REPS, MONARCH_TIMEOUT_US);
	bench_vcpus(2, &worst_us);
	bench_vcpus(4, &worst_us);
	printf("worst p99 inject->last over all variants: %.1f us, %.4f of the monarch timeout\n",
	       worst_us, worst_us / MONARCH_TIMEOUT_US);
	return 0;
}
