// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The SIGBUS handler and its lock-free ring. The handler only does
 * async-signal-safe work: it records si_code, si_addr, si_addr_lsb and
 * the thread into the ring (never blocking; a full ring is counted) and
 * wakes the engine through an eventfd. SIGBUS that is not a memory error
 * in guest RAM goes to the previous handler or the default action.
 */
#include <errno.h>
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

static struct vmras *g_vmras;		/* one per process: it owns SIGBUS */
static struct sigaction g_old_action;

/* Per thread: what the handler needs to know and leaves behind. */
static __thread struct {
	int vcpu;		/* -1: not a vCPU thread */
	bool is_vcpu;
	volatile sig_atomic_t ar_pending;
	uint64_t ar_hva;
	unsigned int ar_lsb;
	int ar_code;
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

static void say(const char *msg)
{
	(void)!write(STDERR_FILENO, msg, strlen(msg));
}

static void sigbus_handler(int sig, siginfo_t *si, void *uc)
{
	struct vmras *v = __atomic_load_n(&g_vmras, __ATOMIC_ACQUIRE);
	int saved_errno = errno;
	uint64_t addr = (uint64_t)(uintptr_t)si->si_addr;
	bool mce = si->si_code == BUS_MCEERR_AO || si->si_code == BUS_MCEERR_AR;
	bool in_ram = v && vmras_memmap_find_hva(v->map, (uintptr_t)addr);
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

	if (!v || !in_ram || !(mce || consumed)) {
		chain(sig, si, uc);
		errno = saved_errno;
		return;
	}
	if (consumed && tls.copy_jb) {
		sigjmp_buf *jb = tls.copy_jb;

		s.from_copy = 1;
		ring_push(v->ring, &s);
		(void)!write(v->wake_fd, &one, sizeof(one));
		tls.copy_jb = NULL;
		errno = saved_errno;
		siglongjmp(*jb, 1);
	}
	if (consumed && tls.is_vcpu) {
		/* KVM's AR for this vCPU: vmras_vcpu_exit takes it from here. */
		tls.ar_hva = addr;
		tls.ar_lsb = (unsigned int)si->si_addr_lsb;
		tls.ar_code = si->si_code;
		tls.ar_pending = 1;
		errno = saved_errno;
		return;
	}
	ring_push(v->ring, &s);
	(void)!write(v->wake_fd, &one, sizeof(one));
	if (consumed) {
		/* A VMM thread read poison outside a safe copy: it cannot go on. */
		say("vmras: a VMM thread read poisoned guest memory outside "
		    "vmras_copy_from_guest; the process cannot continue\n");
		signal(sig, SIG_DFL);
	}
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
	__atomic_store_n(&g_vmras, NULL, __ATOMIC_RELEASE);
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
