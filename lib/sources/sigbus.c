// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The SIGBUS handler and its lock-free ring. The handler only does
 * async-signal-safe work: it records si_code, si_addr, si_addr_lsb, the
 * thread and an arrival number into the ring (never blocking; a full ring
 * is counted, and the engine reports the loss) and wakes the engine
 * through an eventfd. SIGBUS that is not a memory error in guest RAM goes
 * to the previous handler or the default action.
 *
 * Ordering: g_in_handler and g_vmras form a Dekker pair (the handler
 * counts itself in, then reads the context; uninstall clears the context,
 * then waits for the count): both sides are sequentially consistent, which
 * an acquire/release pair would not be on weakly ordered CPUs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "sources/sources.h"
#include "util/clock.h"

#define RING_SIZE 16384		/* power of two */
#define THREADS 1024		/* threads the handler keeps facts about */
/* A repeat of the same consumed address this soon is a re-executing access. */
#define REFAULT_NS 1000000000ULL

struct ring_slot {
	uint64_t turn;		/* Vyukov bounded-queue sequence */
	struct vr_capture c;
};

struct vr_ring {
	uint64_t head;		/* producers: signal handlers on any thread */
	uint64_t tail;		/* the consumer: the engine */
	uint64_t dropped;
	struct ring_slot slots[RING_SIZE];
};

struct thread_facts {
	int32_t tid;		/* 0: free slot; claimed by the thread itself */
	int vcpu;		/* -1: not a vCPU thread */
	volatile sig_atomic_t ar_pending;
	uint64_t ar_hva;
	unsigned int ar_lsb;
	int ar_code;
	uint64_t last_consumed;	/* to tell a re-executing fault from a sent signal */
	uint64_t last_consumed_ns;	/* CLOCK_MONOTONIC */
	sigjmp_buf *volatile copy_jb;
	uint64_t copy_lo, copy_len;	/* the armed copy's guest RAM (hva) */
	uint64_t copy_fault;	/* where the jump came from */
};

static struct vmras *g_vmras;		/* one per process: it owns SIGBUS */
static int g_in_handler;		/* handlers using g_vmras now */
static struct sigaction g_old_action;
static int g_pagemap_fd = -1;		/* to tell a poison marker from other BUS_ADRERR */
static bool g_mf_kernel;		/* CONFIG_MEMORY_FAILURE: poison is BUS_MCEERR_*, never ADRERR */
static struct thread_facts g_threads[THREADS];

/* ---- the ring ------------------------------------------------------ */

struct vr_ring *vr_ring_new(void)
{
	struct vr_ring *r = calloc(1, sizeof(*r));

	if (r)
		for (uint64_t i = 0; i < RING_SIZE; i++)
			r->slots[i].turn = i;
	return r;
}

void vr_ring_free(struct vr_ring *r)
{
	free(r);
}

/* Bounded MPMC queue (Vyukov): lock-free, so usable from a handler. */
static bool ring_push(struct vr_ring *r, const struct vr_capture *in)
{
	uint64_t pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);

	for (;;) {
		struct ring_slot *s = &r->slots[pos & (RING_SIZE - 1)];
		uint64_t turn = __atomic_load_n(&s->turn, __ATOMIC_ACQUIRE);
		int64_t diff = (int64_t)(turn - pos);

		if (diff == 0) {
			if (__atomic_compare_exchange_n(&r->head, &pos, pos + 1, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
				s->c = *in;
				__atomic_store_n(&s->turn, pos + 1, __ATOMIC_RELEASE);
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

bool vr_ring_peek(struct vr_ring *r, struct vr_capture *out)
{
	struct ring_slot *s = &r->slots[r->tail & (RING_SIZE - 1)];

	if (__atomic_load_n(&s->turn, __ATOMIC_ACQUIRE) != r->tail + 1)
		return false;
	*out = s->c;
	return true;
}

void vr_ring_drop_head(struct vr_ring *r)
{
	struct ring_slot *s = &r->slots[r->tail & (RING_SIZE - 1)];

	__atomic_store_n(&s->turn, r->tail + RING_SIZE, __ATOMIC_RELEASE);
	r->tail++;
}

uint64_t vr_ring_dropped(struct vr_ring *r)
{
	return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}

/* ---- per-thread facts ---------------------------------------------- */

/* This thread's slot; with claim, take a free one if it has none. */
static struct thread_facts *thread_slot(int32_t tid, bool claim)
{
	unsigned int start = (unsigned int)tid % THREADS;

	for (unsigned int i = 0; i < THREADS; i++) {
		struct thread_facts *t = &g_threads[(start + i) % THREADS];

		if (__atomic_load_n(&t->tid, __ATOMIC_ACQUIRE) == tid)
			return t;
	}
	if (!claim)
		return NULL;
	for (unsigned int i = 0; i < THREADS; i++) {
		struct thread_facts *t = &g_threads[(start + i) % THREADS];
		int32_t free_tid = 0;

		if (__atomic_load_n(&t->tid, __ATOMIC_RELAXED) == 0 &&
		    __atomic_compare_exchange_n(&t->tid, &free_tid, tid, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			t->vcpu = -1;
			t->ar_pending = 0;
			t->last_consumed = 0;
			t->copy_jb = NULL;
			t->copy_fault = 0;
			return t;
		}
	}
	return NULL;
}

static void release_slot(struct thread_facts *t)
{
	__atomic_store_n(&t->tid, 0, __ATOMIC_RELEASE);
}

/*
 * The calling thread's own slot, fast: the safe copy arms and disarms it
 * for every copy, and a scan of all THREADS slots plus two gettid calls
 * cost more than copying a page. A thread keeps the slot it claimed until
 * it exits (the key's destructor), so its hint stays good; the hint is
 * checked against the slot's tid, so one cleared or claimed by another
 * thread since is never used. The handler never reads this TLS (a
 * dlopen()ed library's TLS may be allocated lazily). A thread holds its
 * slot while it lives: THREADS bounds the threads that ever ran a vCPU or
 * a safe copy and are still alive.
 */
static __thread struct thread_facts *t_hint;
static __thread int32_t t_tid;
static pthread_key_t g_slot_key;
static pthread_once_t g_slot_once = PTHREAD_ONCE_INIT;
static bool g_slot_key_ok;

/* Give the slot back if it is still tid's (a clear may have given it away). */
static void release_own(struct thread_facts *t, int32_t tid)
{
	__atomic_compare_exchange_n(&t->tid, &tid, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

static void slot_exit(void *arg)
{
	if (t_tid)
		release_own(arg, t_tid);
}

/* A forked child has one thread, and it is not the one the caches name. */
static void forget_threads_in_child(void)
{
	t_tid = 0;
	t_hint = NULL;
	vr_threads_clear();
}

static void slot_once(void)
{
	g_slot_key_ok = pthread_key_create(&g_slot_key, slot_exit) == 0;
	(void)pthread_atfork(NULL, NULL, forget_threads_in_child);
}

/* Unloaded (dlclose): no destructor may point into unmapped code. */
__attribute__((destructor)) static void slot_key_delete(void)
{
	if (g_slot_key_ok) {
		g_slot_key_ok = false;	/* from now on slots go back at disarm */
		pthread_key_delete(g_slot_key);
	}
}

static struct thread_facts *own_slot(bool claim)
{
	struct thread_facts *t = t_hint;

	if (!t_tid) {
		pthread_once(&g_slot_once, slot_once);
		t_tid = vr_gettid();
	}
	if (t && __atomic_load_n(&t->tid, __ATOMIC_ACQUIRE) == t_tid)
		return t;
	t = thread_slot(t_tid, claim);
	if (t && t != t_hint) {
		t_hint = t;
		/* Without the key, the slot goes back at disarm as it always did. */
		if (g_slot_key_ok)
			(void)pthread_setspecific(g_slot_key, t);
	}
	return t;
}

int vr_thread_set_vcpu(int vcpu)
{
	struct thread_facts *t = own_slot(vcpu >= 0);

	if (!t)
		return vcpu >= 0 ? -ENOSPC : 0;
	t->vcpu = vcpu;
	if (vcpu < 0 && !g_slot_key_ok && !t->copy_jb)
		release_own(t, t_tid);
	return 0;
}

bool vr_thread_take_ar(uint64_t *hva, unsigned int *lsb, int *si_code)
{
	struct thread_facts *t = own_slot(false);

	if (!t || !t->ar_pending)
		return false;
	*hva = t->ar_hva;
	*lsb = t->ar_lsb;
	*si_code = t->ar_code;
	t->ar_pending = 0;
	t->last_consumed = 0; /* taken: a repeat is a new access, not a loop */
	return true;
}

int vr_thread_arm_copy(sigjmp_buf *jb, const void *ram, size_t len)
{
	struct thread_facts *t = own_slot(true);

	if (!t)
		return -ENOSPC;
	t->copy_lo = (uintptr_t)ram;
	t->copy_len = len;
	t->copy_fault = 0;
	__atomic_store_n(&t->copy_jb, jb, __ATOMIC_RELEASE);
	return 0;
}

uint64_t vr_thread_disarm_copy(void)
{
	struct thread_facts *t = own_slot(false);
	uint64_t fault;

	if (!t)
		return 0;
	t->copy_jb = NULL;
	fault = t->copy_fault;
	if (!g_slot_key_ok && t->vcpu < 0 && !t->last_consumed)
		release_own(t, t_tid);
	return fault;
}

void vr_threads_clear(void)
{
	for (unsigned int i = 0; i < THREADS; i++)
		release_slot(&g_threads[i]);
}

/* ---- the handler --------------------------------------------------- */

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

/*
 * A fault no one can handle: death by SIGBUS, as without vmras. The
 * signal is queued now and taken the moment this handler returns (SIGBUS
 * is blocked until then), so the default disposition lasts only as long
 * as the process does.
 */
static void die_by_default(int sig, siginfo_t *si, void *uc)
{
	if ((g_old_action.sa_flags & SA_SIGINFO) ||
	    (g_old_action.sa_handler != SIG_DFL && g_old_action.sa_handler != SIG_IGN)) {
		chain(sig, si, uc); /* the VMM's own handler decides */
		return;
	}
	signal(sig, SIG_DFL);
	syscall(SYS_tgkill, getpid(), vr_gettid(), sig);
}

/*
 * A BUS_ADRERR in guest RAM is consumed poison only on a kernel without
 * memory failure (there a poison marker reads as BUS_ADRERR), and only if
 * the page holds a marker: a hugetlb pool that ran dry or a truncated file
 * is the VMM's business. The page tables of hugetlb show no marker: there
 * any BUS_ADRERR counts (a limit, documented).
 */
static bool adrerr_is_poison(const struct vmras_region *r, uint64_t addr)
{
	uint64_t e = 0;

	if (g_mf_kernel || !r)
		return false;
	if (r->backing == VMRAS_BACKING_HUGETLB)
		return true;
	/* pread(2) is async-signal-safe; a marker is a non-present swap entry. */
	return g_pagemap_fd >= 0 &&
	       pread(g_pagemap_fd, &e, sizeof(e), (off_t)(addr / 4096 * sizeof(e))) ==
		       (ssize_t)sizeof(e) &&
	       (e & (1ULL << 62)) && !(e & (1ULL << 63));
}

static void push(struct vmras *v, struct vr_capture *c)
{
	uint64_t one = 1;

	c->seq = vr_next_seq(v);
	c->gen = __atomic_load_n(&v->generation, __ATOMIC_SEQ_CST);
	ring_push(v->ring, c);
	(void)!write(v->wake_fd, &one, sizeof(one));
}

static bool poison_meets_copy(const struct thread_facts *t, uint64_t addr, unsigned int lsb)
{
	unsigned int shift = lsb < 12 ? 12 : lsb > 30 ? 30 : lsb;
	uint64_t lo = addr & ~((1ULL << shift) - 1), hi = lo + (1ULL << shift);

	return lo < t->copy_lo + t->copy_len && t->copy_lo < hi;
}

/* Returns false when the signal is not ours (chain it). */
static bool handle(struct vmras *v, int sig, siginfo_t *si, void *uc)
{
	uint64_t addr = (uint64_t)(uintptr_t)si->si_addr;
	bool ao = si->si_code == BUS_MCEERR_AO;
	const struct vmras_region *r = vmras_memmap_find_hva(v->map, (uintptr_t)addr);
	bool in_ram = r != NULL;
	bool consumed = si->si_code == BUS_MCEERR_AR ||
			(si->si_code == BUS_ADRERR && adrerr_is_poison(r, addr));
	struct vr_capture c = {
		.si_code = si->si_code,
		.tid = vr_gettid(),
		.lsb = (unsigned int)si->si_addr_lsb,
		.addr = addr,
		.time_ns = vr_now_ns(),
	};
	uint64_t mono = vr_mono_ns();
	struct thread_facts *t;

	/*
	 * Ours: memory errors in guest RAM, and AOs anywhere (we asked for
	 * early kill; an AO outside guest RAM is recorded, not fatal) unless
	 * the VMM had a handler of its own for them.
	 */
	if (!(consumed || (ao && (in_ram || !(g_old_action.sa_flags & SA_SIGINFO)))))
		return false;
	if (!consumed) {
		push(v, &c);
		return true;
	}
	t = thread_slot(c.tid, true);
	/*
	 * The armed copy's own access, not a fault elsewhere on this thread:
	 * the lost extent (si_addr may be its start, not the byte touched)
	 * meets the copy's range.
	 */
	if (t && t->copy_jb && poison_meets_copy(t, addr, (unsigned int)si->si_addr_lsb)) {
		sigjmp_buf *jb = t->copy_jb;

		c.from_copy = true;
		push(v, &c);
		t->copy_jb = NULL;
		t->copy_fault = addr < t->copy_lo ? t->copy_lo
			: addr - t->copy_lo >= t->copy_len ? t->copy_lo + t->copy_len - 1 : addr;
		__atomic_fetch_sub(&g_in_handler, 1, __ATOMIC_SEQ_CST);
		siglongjmp(*jb, 1);
	}
	if (!t || (t->last_consumed == addr && mono - t->last_consumed_ns < REFAULT_NS)) {
		/*
		 * The same address again at once, not taken in between: an
		 * access re-executing outside the safe copy (or a thread we
		 * cannot keep track of). This thread cannot go on.
		 */
		push(v, &c);
		die_by_default(sig, si, uc);
		return true;
	}
	t->last_consumed = addr;
	t->last_consumed_ns = mono;
	if (t->vcpu >= 0) {
		/* KVM's AR for this vCPU: vmras_vcpu_exit takes it from here. */
		if (t->ar_pending && t->ar_hva != addr) {
			/* An earlier one not yet taken: it goes by the ring, not lost. */
			struct vr_capture old = c;

			old.addr = t->ar_hva;
			old.lsb = t->ar_lsb;
			old.si_code = t->ar_code;
			push(v, &old);
		}
		t->ar_hva = addr;
		t->ar_lsb = (unsigned int)si->si_addr_lsb;
		t->ar_code = si->si_code;
		t->ar_pending = 1;
		return true;
	}
	push(v, &c);
	return true;
}

static void sigbus_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	bool mine = false;
	struct vmras *v;

	__atomic_fetch_add(&g_in_handler, 1, __ATOMIC_SEQ_CST);
	v = __atomic_load_n(&g_vmras, __ATOMIC_SEQ_CST);
	if (v)
		mine = handle(v, sig, si, uc);
	/* Out before chaining: a chained handler may longjmp away. */
	__atomic_fetch_sub(&g_in_handler, 1, __ATOMIC_SEQ_CST);
	if (!mine)
		chain(sig, si, uc);
	errno = saved_errno;
}

int vr_sigbus_install(struct vmras *v)
{
	struct sigaction sa = { .sa_sigaction = sigbus_handler,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };
	struct vmras *expected = NULL;

	/* Empty: the safe copy, jumping out, unblocks SIGBUS alone to restore its mask. */
	sigemptyset(&sa.sa_mask);
	if (!__atomic_compare_exchange_n(&g_vmras, &expected, v, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return -EBUSY;
	g_mf_kernel = access("/proc/sys/vm/memory_failure_recovery", F_OK) == 0;
	if (g_pagemap_fd < 0)
		g_pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	/* The old action first: a handler running meanwhile must see it whole. */
	if (sigaction(SIGBUS, NULL, &g_old_action) || sigaction(SIGBUS, &sa, NULL)) {
		int err = -errno;

		__atomic_store_n(&g_vmras, NULL, __ATOMIC_SEQ_CST);
		return err;
	}
	return 0;
}

void vr_sigbus_uninstall(struct vmras *v)
{
	if (__atomic_load_n(&g_vmras, __ATOMIC_SEQ_CST) != v)
		return;
	sigaction(SIGBUS, &g_old_action, NULL);
	__atomic_store_n(&g_vmras, NULL, __ATOMIC_SEQ_CST);
	/* A handler that saw v before the store may still use it: wait. */
	while (__atomic_load_n(&g_in_handler, __ATOMIC_SEQ_CST))
		sched_yield();
}

int vr_raise_sigbus(int si_code, uint64_t addr, unsigned int lsb)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = si_code;
	si.si_addr = (void *)(uintptr_t)addr;
	si.si_addr_lsb = (short)lsb;
	/* Only a thread may send itself a kernel-style si_code. */
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), vr_gettid(), SIGBUS, &si))
		return -errno;
	return 0;
}
