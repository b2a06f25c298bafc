// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The SIGBUS handler and its lock-free ring. The handler only does
 * async-signal-safe work: it records si_code, si_addr, si_addr_lsb and
 * the thread into the ring (never blocking; a full ring is counted) and
 * wakes the engine through an eventfd. SIGBUS that is not a memory error
 * in guest RAM goes to the previous handler or the default action.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#define BUS_MCEERR_AO 5
#endif

/* A repeat of the same consumed address this soon is a re-executing access. */
#define REFAULT_NS 1000000000ULL

static struct vmras *g_vmras;		/* one per process: it owns SIGBUS */
static int g_in_handler;		/* handlers running now (uninstall waits) */
static struct sigaction g_old_action;

/*
 * Per thread: what the handler needs to know and leaves behind.
 * initial-exec: no lazy TLS allocation (not async-signal-safe) in a handler.
 */
static __thread __attribute__((tls_model("initial-exec"))) struct {
	int vcpu;		/* -1: not a vCPU thread */
	bool is_vcpu;
	volatile sig_atomic_t ar_pending;
	uint64_t ar_hva;
	unsigned int ar_lsb;
	int ar_code;
	uint64_t last_consumed;	/* to tell a re-executing fault from a sent signal */
	uint64_t last_consumed_ns;
	sigjmp_buf *volatile copy_jb;
} tls = { .vcpu = -1 };

uint64_t vmras__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int32_t vmras__gettid(void)
{
	return (int32_t)syscall(SYS_gettid);
}

/* Bounded MPMC queue (Vyukov): lock-free, so usable from a handler. */
static bool ring_push(struct capture_ring *r, const struct capture_slot *in)
{
	uint64_t pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);

	for (;;) {
		struct capture_slot *s = &r->slots[pos & (RING_SIZE - 1)];
		uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		int64_t diff = (int64_t)(seq - pos);

		if (diff == 0) {
			if (__atomic_compare_exchange_n(&r->head, &pos, pos + 1, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
				s->si_code = in->si_code;
				s->tid = in->tid;
				s->lsb = in->lsb;
				s->addr = in->addr;
				s->time_ns = in->time_ns;
				s->from_copy = in->from_copy;
				__atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
				return true;
			}
		} else if (diff < 0) {
			__atomic_fetch_add(&r->dropped, 1, __ATOMIC_RELAXED);
			return false;
		} else {
			pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
		}
	}
}

bool capture_pop(struct vmras *v, struct capture_slot *out)
{
	struct capture_ring *r = v->ring;
	uint64_t pos = r->tail;
	struct capture_slot *s = &r->slots[pos & (RING_SIZE - 1)];

	if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != pos + 1)
		return false;
	*out = *s;
	__atomic_store_n(&s->seq, pos + RING_SIZE, __ATOMIC_RELEASE);
	r->tail = pos + 1;
	return true;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
	if (g_old_action.sa_flags & SA_SIGINFO) {
		g_old_action.sa_sigaction(sig, si, uc);
	} else if (g_old_action.sa_handler == SIG_DFL) {
		/* As before vmras: the default action, i.e. death with a core. */
		signal(sig, SIG_DFL);
		raise(sig);
	} else if (g_old_action.sa_handler != SIG_IGN) {
		g_old_action.sa_handler(sig);
	}
}

/* The default action for a fault we cannot handle: death, as without vmras. */
static void die_by_default(int sig)
{
	signal(sig, SIG_DFL);
}

static void handle(struct vmras *v, int sig, siginfo_t *si, void *uc)
{
	uint64_t addr = (uint64_t)(uintptr_t)si->si_addr;
	bool ao = si->si_code == BUS_MCEERR_AO;
	bool in_ram = vmras_memmap_find_hva(v->map, (uintptr_t)addr);
	/* Without CONFIG_MEMORY_FAILURE a poison marker reads as BUS_ADRERR. */
	bool consumed = si->si_code == BUS_MCEERR_AR || (si->si_code == BUS_ADRERR && in_ram);
	struct capture_slot s = {
		.si_code = si->si_code,
		.tid = vmras__gettid(),
		.lsb = (unsigned int)si->si_addr_lsb,
		.addr = addr,
		.time_ns = vmras__now_ns(),
	};
	uint64_t one = 1;

	/*
	 * Ours: memory errors in guest RAM, and AOs anywhere (we asked for
	 * early kill; an AO outside guest RAM is recorded, not fatal) unless
	 * the VMM had a handler of its own for them.
	 */
	if (!(consumed || (ao && (in_ram || !(g_old_action.sa_flags & SA_SIGINFO))))) {
		chain(sig, si, uc);
		return;
	}
	if (consumed && tls.copy_jb) {
		sigjmp_buf *jb = tls.copy_jb;

		s.from_copy = 1;
		ring_push(v->ring, &s);
		(void)!write(v->wake_fd, &one, sizeof(one));
		tls.copy_jb = NULL;
		__atomic_fetch_sub(&g_in_handler, 1, __ATOMIC_RELEASE);
		siglongjmp(*jb, 1);
	}
	if (consumed && tls.last_consumed == addr &&
	    s.time_ns - tls.last_consumed_ns < REFAULT_NS) {
		/*
		 * The same address again at once, not taken in between: a
		 * user-space access re-executing (outside vmras_copy_from_guest).
		 * This thread cannot go on; the default action ends it, as it
		 * would without vmras.
		 */
		die_by_default(sig);
		return;
	}
	if (consumed) {
		tls.last_consumed = addr;
		tls.last_consumed_ns = s.time_ns;
	}
	if (consumed && tls.is_vcpu) {
		/* KVM's AR for this vCPU: vmras_vcpu_exit takes it from here. */
		if (tls.ar_pending && tls.ar_hva != addr) {
			/* An earlier one not yet taken: it goes by the ring, not lost. */
			struct capture_slot old = s;

			old.addr = tls.ar_hva;
			old.lsb = tls.ar_lsb;
			old.si_code = tls.ar_code;
			ring_push(v->ring, &old);
			(void)!write(v->wake_fd, &one, sizeof(one));
		}
		tls.ar_hva = addr;
		tls.ar_lsb = (unsigned int)si->si_addr_lsb;
		tls.ar_code = si->si_code;
		tls.ar_pending = 1;
		return;
	}
	ring_push(v->ring, &s);
	(void)!write(v->wake_fd, &one, sizeof(one));
}

static void sigbus_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	struct vmras *v;

	__atomic_fetch_add(&g_in_handler, 1, __ATOMIC_ACQUIRE);
	v = __atomic_load_n(&g_vmras, __ATOMIC_ACQUIRE);
	if (v)
		handle(v, sig, si, uc);
	else
		chain(sig, si, uc);
	__atomic_fetch_sub(&g_in_handler, 1, __ATOMIC_RELEASE);
	errno = saved_errno;
}

int capture_install(struct vmras *v)
{
	struct sigaction sa = { .sa_sigaction = sigbus_handler,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };
	struct vmras *expected = NULL;

	sigemptyset(&sa.sa_mask);
	if (!__atomic_compare_exchange_n(&g_vmras, &expected, v, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return -EBUSY;
	if (sigaction(SIGBUS, &sa, &g_old_action)) {
		int err = -errno;

		__atomic_store_n(&g_vmras, NULL, __ATOMIC_RELEASE);
		return err;
	}
	return 0;
}

void capture_uninstall(struct vmras *v)
{
	if (__atomic_load_n(&g_vmras, __ATOMIC_ACQUIRE) != v)
		return;
	sigaction(SIGBUS, &g_old_action, NULL);
	__atomic_store_n(&g_vmras, NULL, __ATOMIC_SEQ_CST);
	/* A handler that saw v before the store may still use it: wait. */
	while (__atomic_load_n(&g_in_handler, __ATOMIC_SEQ_CST))
		sched_yield();
}

void capture_set_vcpu_thread(int vcpu)
{
	tls.vcpu = vcpu;
	tls.is_vcpu = vcpu >= 0;
}

bool capture_take_vcpu_ar(uint64_t *hva, unsigned int *lsb, int *si_code)
{
	if (!tls.ar_pending)
		return false;
	*hva = tls.ar_hva;
	*lsb = tls.ar_lsb;
	*si_code = tls.ar_code;
	tls.ar_pending = 0;
	tls.last_consumed = 0; /* taken: a repeat is a new access, not a loop */
	return true;
}

int capture_raise_sigbus(int si_code, uint64_t addr, unsigned int lsb)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = si_code;
	si.si_addr = (void *)(uintptr_t)addr;
	si.si_addr_lsb = (short)lsb;
	/* Only a thread may send itself a kernel-style si_code. */
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), vmras__gettid(), SIGBUS, &si))
		return -errno;
	return 0;
}

void capture_arm_copy(sigjmp_buf *jb)
{
	tls.copy_jb = jb;
}

void capture_disarm_copy(void)
{
	tls.copy_jb = NULL;
}
