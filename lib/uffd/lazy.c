// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Lazy guest memory (see vmras/lazy.h). Guest RAM is registered with the
 * router's userfaultfd in MISSING mode and served by the router's route
 * of last resort, so that containment and split routes inside it win.
 * Each backing page (granule: 4 KiB or a huge page) is missing, asked for
 * (background, or urgent: a thread waits), then here (data, zeros, or
 * poisoned). A page is placed with UFFDIO_COPY / UFFDIO_ZEROPAGE, which
 * wake whoever waits on it; a poisoned page goes to the engine as an
 * error that arrived by migration, whose UFFDIO_POISON wakes them: a
 * waiter on a poisoned page is never woken to zeros.
 *
 * Threads: the fault and idle callbacks run on the router thread;
 * vmras_lazy_supply on any thread (the source's); settle on the engine
 * and vCPU threads. lz->lock guards the page states, the waits and the
 * statistics; it is taken after router->lock and before v->lock, and is
 * never held across the source's fetch or an ioctl.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/userfaultfd.h"
#include "memory/backing.h"
#include "uffd/lazy.h"
#include "uffd/router.h"
#include "util/clock.h"
#include "vmras/lazy.h"

#define PREFETCH_BYTES (512ULL << 10)	/* a background step: faults wait at most one */
#define AROUND_BYTES (64ULL << 10)	/* fetched after a fault, past it */
#define MAX_WAITS 256			/* faults whose latency is being timed */
#define MAX_HINTS 16
#define EAGAIN_TRIES 1000

/* L_FAILED: an urgent fetch failed; the idle step asks again after RETRY_NS. */
enum { L_PRESENT = 1, L_ASKED = 2, L_URGENT = 4, L_WAITED = 8, L_POISON = 16, L_FAILED = 32 };
#define RETRY_NS (100ULL * 1000 * 1000)

struct lazy_range {
	uint64_t gpa, size, hva, granule, n;
	uint8_t *state;		/* per granule, L_* */
};

struct vr_lazy {
	struct vmras *v;
	struct vmras_lazy_source src;
	void *opaque;
	struct lazy_range range[VMRAS_MEMMAP_MAX_REGIONS];
	unsigned int nranges;
	void *zeros;		/* read-only anonymous: one granule that reads as zeros */
	uint64_t zeros_len;
	unsigned int nvcpus;	/* registered at begin: "all vCPUs blocked" */
	bool vcpus_ran;		/* atomic: a vCPU entered the guest (set under gate) */
	/*
	 * A huge page placed with a bad 4 KiB page is readable as zeros there
	 * until the engine splits it: its placing holds gate (read) from the
	 * vcpus_ran check until the engine has its events; the first entry
	 * takes it (write) to set vcpus_ran, then waits for the engine.
	 */
	pthread_rwlock_t gate;
	bool entered[VR_MAX_VCPUS];	/* each vCPU's own thread: it waited once */

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cond;	/* a page arrived */
	uint64_t present, total;	/* bytes */
	unsigned int cur;	/* prefetch: range and granule */
	uint64_t cursor;
	uint64_t hint[MAX_HINTS];	/* gpas to prefetch first (past recent faults) */
	unsigned int nhints;
	struct { uint64_t gpa, t0; } wait[MAX_WAITS];
	unsigned int nwaits;
	struct { uint64_t gpa, t0; bool down; } vcpu[VR_MAX_VCPUS];
	unsigned int ndown;
	uint64_t all_down_since;
	uint64_t vcpu_block_ns[VR_MAX_VCPUS];
	uint64_t latency_sum;
	unsigned int nfailed;	/* granules with L_FAILED */
	uint64_t retry_at;	/* when they are asked again */
	bool after_reset;	/* a guest reset: lost pages come back fresh, as eagerly */
	struct vmras_lazy_stats st;
};

/* ---- lookups (lz->ranges never change after begin) ---------------------- */

static struct lazy_range *range_of_hva(struct vr_lazy *lz, uint64_t hva)
{
	for (unsigned int i = 0; i < lz->nranges; i++)
		if (hva - lz->range[i].hva < lz->range[i].size)
			return &lz->range[i];
	return NULL;
}

static struct lazy_range *range_of_gpa(struct vr_lazy *lz, uint64_t gpa)
{
	for (unsigned int i = 0; i < lz->nranges; i++)
		if (gpa - lz->range[i].gpa < lz->range[i].size)
			return &lz->range[i];
	return NULL;
}

static unsigned int bucket_of(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned int b = us < 2 ? 0 : 63 - (unsigned int)__builtin_clzll(us);

	return b < VMRAS_LAZY_LATENCY_BUCKETS ? b : VMRAS_LAZY_LATENCY_BUCKETS - 1;
}

/* ---- waits: latency and blocked time (QEMU's definitions) -------------- */

/* With lz->lock held: a thread (vCPU vcpu, or -1) waits for gpa's page since now. */
static void wait_begin(struct vr_lazy *lz, uint64_t gpa, int vcpu, uint64_t now)
{
	bool timed = false;

	for (unsigned int i = 0; i < lz->nwaits && !timed; i++)
		timed = lz->wait[i].gpa == gpa;
	if (!timed && lz->nwaits < MAX_WAITS)
		lz->wait[lz->nwaits++] = (typeof(lz->wait[0])){ gpa, now };
	if (vcpu < 0 || (unsigned int)vcpu >= VR_MAX_VCPUS || lz->vcpu[vcpu].down)
		return;
	lz->vcpu[vcpu].gpa = gpa;
	lz->vcpu[vcpu].t0 = now;
	lz->vcpu[vcpu].down = true;
	if (++lz->ndown == lz->nvcpus)
		lz->all_down_since = now;
}

/* With lz->lock held: the granule [gpa, gpa + len) arrived at now. */
static void wait_end(struct vr_lazy *lz, uint64_t gpa, uint64_t len, uint64_t now)
{
	for (unsigned int i = 0; i < lz->nwaits;) {
		if (lz->wait[i].gpa - gpa < len) {
			uint64_t d = now - lz->wait[i].t0;

			lz->latency_sum += d;
			lz->st.latency_count++;
			lz->st.latency_dist[bucket_of(d)]++;
			lz->wait[i] = lz->wait[--lz->nwaits];
		} else {
			i++;
		}
	}
	for (unsigned int c = 0; c < VR_MAX_VCPUS && lz->ndown; c++) {
		if (!lz->vcpu[c].down || lz->vcpu[c].gpa - gpa >= len)
			continue;
		lz->vcpu_block_ns[c] += now - lz->vcpu[c].t0;
		if (lz->ndown == lz->nvcpus)
			lz->st.blocktime_ns += now - lz->all_down_since;
		lz->vcpu[c].down = false;
		lz->ndown--;
	}
}

/* With lz->lock held: granules [g0, g0 + ng) of lr are here now. */
static void mark_present(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g0, uint64_t ng,
			 int kind)
{
	uint64_t now = vr_now_ns(), pages = lr->granule / SMALL_PAGE;

	for (uint64_t g = g0; g < g0 + ng; g++) {
		uint8_t st = lr->state[g];

		if (st & L_PRESENT)
			continue;
		if (st & L_FAILED)
			lz->nfailed--;
		lr->state[g] = (uint8_t)((st & ~L_FAILED) | L_PRESENT |
					 (kind == VMRAS_PAGE_POISONED ? L_POISON : 0));
		lz->present += lr->granule;
		if (st & L_URGENT)
			lz->st.faulted += pages;
		else
			lz->st.prefetched += pages;
		if (kind == VMRAS_PAGE_ZERO)
			lz->st.zero_pages += pages;
		else if (kind == VMRAS_PAGE_POISONED)
			lz->st.poisoned_pages += pages;
		if (st & L_WAITED)
			wait_end(lz, lr->gpa + g * lr->granule, lr->granule, now);
	}
	if (lz->present == lz->total && !lz->st.complete_ns)
		lz->st.complete_ns = now;
	pthread_cond_broadcast(&lz->cond);
}

/* ---- asking the source ---------------------------------------------------- */

/*
 * Ask the source. A failed urgent fetch marks the page, so that the idle
 * step asks again (a thread waits on it; nothing else would).
 */
static int fetch(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g, uint64_t ng,
		 bool urgent)
{
	int err = lz->src.fetch(lz->opaque, lr->gpa + g * lr->granule, ng * lr->granule, urgent);

	if (!err)
		return 0;
	pthread_mutex_lock(&lz->lock);
	lz->st.fetch_errors++;
	for (uint64_t k = g; urgent && k < g + ng; k++)
		if (!(lr->state[k] & (L_PRESENT | L_FAILED))) {
			lr->state[k] |= L_FAILED;
			lz->nfailed++;
			lz->retry_at = vr_now_ns() + RETRY_NS;
		}
	pthread_mutex_unlock(&lz->lock);
	if (urgent)
		vr_router_kick(lz->v->router);
	return err;
}

/* ---- placing pages ------------------------------------------------------- */

/*
 * UFFDIO_COPY (src) or zeros (src NULL) for granules [g0, g0 + ng) of lr.
 * 0: placed, or were there already, or the range is no longer ours (a
 * guest reset gave it fresh memory, a split replaced it).
 */
static int place(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g0, uint64_t ng,
		 const unsigned char *src)
{
	struct vr_router *rt = lz->v->router;
	uint64_t dst = lr->hva + g0 * lr->granule, len = ng * lr->granule, done;
	int err = 0;

	for (int tries = 0; len && tries < EAGAIN_TRIES; tries++) {
		done = 0;
		if (src)
			err = vr_uffd_copy(rt, dst, src, len, &done);
		else if (lr->granule == SMALL_PAGE)
			err = vr_uffd_zero(rt, dst, len, &done);
		else
			err = vr_uffd_copy(rt, dst, lz->zeros, lr->granule, &done);
		if (done > len)
			done = len;
		if (!err && !done)
			done = src || lr->granule == SMALL_PAGE ? len : lr->granule;
		dst += done;
		len -= done;
		if (src)
			src += done;
		if (!err)
			continue;
		if (err == -EAGAIN) {
			/* The address space changed under the copy (a remove, a remap): again. */
			sched_yield();
			continue;
		}
		if ((err == -EEXIST || err == -ENOENT) && len > lr->granule) {
			/*
			 * One granule of the run is there already, or the run crosses
			 * into another mapping (UFFDIO_COPY wants one VMA): one at a time.
			 */
			uint64_t g = (dst - lr->hva) / lr->granule, n = len / lr->granule;

			for (uint64_t k = 0; k < n; k++) {
				err = place(lz, lr, g + k, 1, src ? src + k * lr->granule : NULL);
				if (err)
					return err;
			}
			return 0;
		}
		if (err == -EEXIST || err == -ENOENT) {
			/*
			 * One granule (never two mappings): there already (a marker, a
			 * racing copy), or not registered any more (a guest reset gave
			 * it fresh memory, a split replaced it).
			 */
			dst += lr->granule;
			len -= len < lr->granule ? len : lr->granule;
			if (src)
				src += lr->granule;
			err = 0;
			continue;
		}
		return err;
	}
	return len ? (err ?: -EAGAIN) : 0;
}

/* 1: the granule was empty and now holds zeros; 0: something is there (or not ours); -errno. */
static int zero_if_empty(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g)
{
	uint64_t dst = lr->hva + g * lr->granule, done;
	int err = lr->granule == SMALL_PAGE
			  ? vr_uffd_zero(lz->v->router, dst, lr->granule, &done)
			  : vr_uffd_copy(lz->v->router, dst, lz->zeros, lr->granule, &done);

	if (err == -EEXIST || err == -ENOENT)
		return 0;
	return err ?: 1;
}

/* A fault on a granule that was here and has been emptied since: fresh zeros. */
static void refault(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g)
{
	if (place(lz, lr, g, 1, NULL))
		vr_uffd_wake(lz->v->router, lr->hva + g * lr->granule, lr->granule);
	pthread_mutex_lock(&lz->lock);
	lz->st.refaults++;
	pthread_mutex_unlock(&lz->lock);
}

static int poison_event(struct vmras *v, uint64_t gpa, uint64_t size)
{
	struct vr_work w = {
		.kind = VR_WORK_EVENT,
		.ev = { .valid = VMRAS_EV_GPA, .kind = VMRAS_AO, .source = VMRAS_SRC_MIGRATION,
			.addr_lsb = (unsigned int)__builtin_ctzll(size), .vcpu = -1, .gpa = gpa,
			.time_ns = vr_now_ns() },
		.carried_state = VMRAS_PS_REPORTED,
		.gen = __atomic_load_n(&v->generation, __ATOMIC_SEQ_CST),
	};

	return vr_engine_submit(v, &w, false);
}

/*
 * The source lost [gpa, gpa + size): the marker goes in now (UFFDIO_POISON
 * wakes whoever waits, into a SIGBUS), then the engine records and
 * contains it as an error that arrived by migration.
 */
static int poison_page(struct vmras *v, uint64_t hva, uint64_t gpa, uint64_t size)
{
	int err = vr_uffd_poison(v->router, hva, size);

	/* EEXIST: something is there (a racing copy); ENOENT: not ours any more. */
	if (err && err != -EEXIST && err != -ENOENT)
		return err;
	return poison_event(v, gpa, size);
}

/*
 * A huge page with a bad 4 KiB page, after the vCPUs ran: it cannot be
 * placed and split before someone reads the bad part, so it is lost whole
 * (poisoned, never zeros), and counted so.
 */
static int poison_granule(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g)
{
	/* Marked first, so that no fault meanwhile zero-fills it. */
	pthread_mutex_lock(&lz->lock);
	mark_present(lz, lr, g, 1, VMRAS_PAGE_POISONED);
	pthread_mutex_unlock(&lz->lock);
	return poison_page(lz->v, lr->hva + g * lr->granule, lr->gpa + g * lr->granule,
			   lr->granule);
}

/* What a granule holds: one kind, or -1 (mixed). */
static int granule_kind(const uint8_t *kinds, uint64_t pages)
{
	if (!kinds)
		return VMRAS_PAGE_DATA;
	for (uint64_t i = 1; i < pages; i++)
		if (kinds[i] != kinds[0])
			return -1;
	return kinds[0];
}

/* A huge granule of mixed kinds: data where it is data, zeros elsewhere. */
static int place_mixed(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g,
		       const unsigned char *data, const uint8_t *kinds)
{
	unsigned char *b = mmap(NULL, lr->granule, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int err;

	if (b == MAP_FAILED)
		return -errno;
	for (uint64_t i = 0; i < lr->granule / SMALL_PAGE; i++)
		if (kinds[i] == VMRAS_PAGE_DATA)
			memcpy(b + i * SMALL_PAGE, data + i * SMALL_PAGE, SMALL_PAGE);
	err = place(lz, lr, g, 1, b);
	munmap(b, lr->granule);
	return err;
}

/*
 * A huge page with a bad 4 KiB page: placed (zeros there) and split by the
 * engine before any vCPU entered, else lost whole. The gate keeps the
 * first entry out until the engine has the events (see struct vr_lazy).
 */
static int supply_split(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g,
			const unsigned char *data, const uint8_t *kinds)
{
	uint64_t pages = lr->granule / SMALL_PAGE, gpa = lr->gpa + g * lr->granule, n = 0;
	int err;

	pthread_rwlock_rdlock(&lz->gate);
	if (__atomic_load_n(&lz->vcpus_ran, __ATOMIC_ACQUIRE)) {
		pthread_rwlock_unlock(&lz->gate);
		return poison_granule(lz, lr, g);
	}
	err = place_mixed(lz, lr, g, data, kinds);
	if (!err) {
		for (uint64_t i = 0; i < pages; i++)
			n += kinds[i] == VMRAS_PAGE_POISONED;
		pthread_mutex_lock(&lz->lock);
		mark_present(lz, lr, g, 1, VMRAS_PAGE_DATA);
		lz->st.poisoned_pages += n;
		pthread_mutex_unlock(&lz->lock);
	}
	for (uint64_t i = 0; i < pages && !err; i++)
		if (kinds[i] == VMRAS_PAGE_POISONED)
			err = poison_event(lz->v, gpa + i * SMALL_PAGE, SMALL_PAGE);
	pthread_rwlock_unlock(&lz->gate);
	return err;
}

static bool granule_here(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g)
{
	bool here;

	pthread_mutex_lock(&lz->lock);
	here = lr->state[g] & L_PRESENT;
	pthread_mutex_unlock(&lz->lock);
	return here;
}

static int supply_granule(struct vr_lazy *lz, struct lazy_range *lr, uint64_t g,
			  const unsigned char *data, const uint8_t *kinds)
{
	uint64_t pages = lr->granule / SMALL_PAGE, npoisoned = 0;
	int kind = granule_kind(kinds, pages), err = 0;

	if (granule_here(lz, lr, g))
		return 0;
	if (kind == VMRAS_PAGE_POISONED)
		return poison_granule(lz, lr, g); /* a 4 KiB page, or a huge one lost whole */
	if (kind < 0) {
		for (uint64_t i = 0; i < pages; i++)
			npoisoned += kinds[i] == VMRAS_PAGE_POISONED;
		if (npoisoned)
			return supply_split(lz, lr, g, data, kinds);
		err = place_mixed(lz, lr, g, data, kinds);
	} else {
		err = place(lz, lr, g, 1, kind == VMRAS_PAGE_DATA ? data : NULL);
	}
	if (err)
		return err;
	pthread_mutex_lock(&lz->lock);
	mark_present(lz, lr, g, 1, kind < 0 ? VMRAS_PAGE_DATA : kind);
	pthread_mutex_unlock(&lz->lock);
	return 0;
}

int vmras_lazy_supply(struct vmras *v, uint64_t gpa, uint64_t len, const void *data,
		      const uint8_t *kinds)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	uint8_t *fresh = NULL;
	const unsigned char *d = data;
	struct lazy_range *lr;
	uint64_t g, end;
	int err = 0;

	if (!lz)
		return -ENOENT;
	lr = range_of_gpa(lz, gpa);
	if (!lr || !len || ((gpa - lr->gpa) | len) & (lr->granule - 1) ||
	    len > lr->size - (gpa - lr->gpa))
		return -EINVAL; /* gpa - lr->gpa < lr->size: no overflow in either test */
	if (!data) {
		for (uint64_t i = 0; i < len / SMALL_PAGE; i++)
			if (!kinds || kinds[i] == VMRAS_PAGE_DATA)
				return -EINVAL;
	}
	for (uint64_t i = 0; kinds && i < len / SMALL_PAGE; i++)
		if (kinds[i] > VMRAS_PAGE_POISONED)
			return -EINVAL;
	/* After a guest reset a page the source lost comes back fresh, as it would eagerly. */
	if (kinds && __atomic_load_n(&lz->after_reset, __ATOMIC_ACQUIRE) &&
	    memchr(kinds, VMRAS_PAGE_POISONED, len / SMALL_PAGE)) {
		fresh = malloc(len / SMALL_PAGE);
		if (!fresh)
			return -ENOMEM;
		for (uint64_t i = 0; i < len / SMALL_PAGE; i++)
			fresh[i] = kinds[i] == VMRAS_PAGE_POISONED ? VMRAS_PAGE_ZERO : kinds[i];
		kinds = fresh;
	}
	g = (gpa - lr->gpa) / lr->granule;
	end = g + len / lr->granule;
	while (g < end && !err) {
		uint64_t pages = lr->granule / SMALL_PAGE, run = 1;
		const uint8_t *k = kinds ? kinds + (g - (gpa - lr->gpa) / lr->granule) * pages : NULL;
		const unsigned char *src = d ? d + (g * lr->granule - (gpa - lr->gpa)) : NULL;

		int kind = granule_kind(k, pages);

		/* Whole data (or zero) granules in a row, none here yet: one ioctl. */
		if ((kind == VMRAS_PAGE_DATA || kind == VMRAS_PAGE_ZERO) && !granule_here(lz, lr, g))
			while (g + run < end && !granule_here(lz, lr, g + run) &&
			       granule_kind(k ? k + run * pages : NULL, pages) == kind)
				run++;
		if (run > 1) {
			err = place(lz, lr, g, run, kind == VMRAS_PAGE_DATA ? src : NULL);
			if (!err) {
				pthread_mutex_lock(&lz->lock);
				mark_present(lz, lr, g, run, kind);
				pthread_mutex_unlock(&lz->lock);
			}
		} else {
			err = supply_granule(lz, lr, g, src, k);
		}
		g += run;
	}
	free(fresh);
	return err;
}

/* ---- the router's callbacks ---------------------------------------------- */

static void lazy_fault(void *opaque, uint64_t addr, uint64_t flags, uint32_t tid)
{
	struct vr_lazy *lz = opaque;
	struct lazy_range *lr = range_of_hva(lz, addr);
	int vcpu = tid ? vr_vcpu_of_tid(lz->v, (int32_t)tid) : -1;
	uint64_t g, gpa, now = vr_now_ns();
	bool ask;
	uint8_t st;

	(void)flags;
	if (!lr) {
		/* Registered by someone else and routed by nobody: let it retry. */
		vr_uffd_wake(lz->v->router, addr, SMALL_PAGE);
		return;
	}
	g = (addr - lr->hva) / lr->granule;
	gpa = lr->gpa + g * lr->granule;
	pthread_mutex_lock(&lz->lock);
	st = lr->state[g];
	if ((st & (L_PRESENT | L_POISON)) == L_PRESENT) {
		pthread_mutex_unlock(&lz->lock);
		refault(lz, lr, g);
		return;
	}
	if (st & L_POISON) {
		/* The engine's UFFDIO_POISON is on its way and wakes it. */
		pthread_mutex_unlock(&lz->lock);
		return;
	}
	wait_begin(lz, gpa, vcpu, now);
	ask = !(st & L_URGENT);
	lr->state[g] = st | L_ASKED | L_URGENT | L_WAITED;
	if (!lz->st.first_fault_ns)
		lz->st.first_fault_ns = now;
	/* Faults come in runs: what follows this one is fetched next. */
	if (g + 1 < lr->n && lz->nhints < MAX_HINTS)
		lz->hint[lz->nhints++] = gpa + lr->granule;
	pthread_mutex_unlock(&lz->lock);
	if (ask)
		fetch(lz, lr, g, 1, true);
	/* The pages past it next (prefetch), once this one is placed. */
	if (__atomic_load_n(&lz->src.prefetch, __ATOMIC_ACQUIRE))
		vr_router_kick(lz->v->router);
}

/* With lz->lock held: the next run to prefetch, marked asked; false if none. */
static bool next_run(struct vr_lazy *lz, struct lazy_range **out, uint64_t *g0, uint64_t *ng)
{
	while (lz->nhints) {
		uint64_t gpa = lz->hint[--lz->nhints];
		struct lazy_range *lr = range_of_gpa(lz, gpa);
		uint64_t g = lr ? (gpa - lr->gpa) / lr->granule : 0, n = 0;
		uint64_t max = lr ? (AROUND_BYTES + lr->granule - 1) / lr->granule : 0;

		while (lr && g + n < lr->n && n < max && !lr->state[g + n])
			n++;
		if (n) {
			*out = lr;
			*g0 = g;
			*ng = n;
			goto mark;
		}
	}
	for (; lz->cur < lz->nranges; lz->cur++, lz->cursor = 0) {
		struct lazy_range *lr = &lz->range[lz->cur];
		uint64_t max = (PREFETCH_BYTES + lr->granule - 1) / lr->granule, n = 0;

		while (lz->cursor < lr->n && lr->state[lz->cursor])
			lz->cursor++;
		while (lz->cursor + n < lr->n && n < max && !lr->state[lz->cursor + n])
			n++;
		if (n) {
			*out = lr;
			*g0 = lz->cursor;
			*ng = n;
			goto mark;
		}
	}
	return false;
mark:
	for (uint64_t g = *g0; g < *g0 + *ng; g++)
		(*out)->state[g] |= L_ASKED;
	return true;
}

/* Ask again for the pages whose urgent fetch failed (threads wait on them). */
static int retry_failed(struct vr_lazy *lz)
{
	uint64_t now = vr_now_ns();

	pthread_mutex_lock(&lz->lock);
	if (!lz->nfailed || now < lz->retry_at) {
		int more = lz->nfailed ? VR_IDLE_STALLED : VR_IDLE_DONE;

		pthread_mutex_unlock(&lz->lock);
		return more;
	}
	lz->retry_at = now + RETRY_NS;
	pthread_mutex_unlock(&lz->lock);
	for (unsigned int i = 0; i < lz->nranges; i++) {
		struct lazy_range *lr = &lz->range[i];

		for (uint64_t g = 0; g < lr->n; g++) {
			bool again;

			pthread_mutex_lock(&lz->lock);
			again = lr->state[g] & L_FAILED;
			if (again) {
				lr->state[g] &= (uint8_t)~L_FAILED;
				lz->nfailed--;
			}
			pthread_mutex_unlock(&lz->lock);
			if (again)
				fetch(lz, lr, g, 1, true); /* marks it again if it fails */
		}
	}
	pthread_mutex_lock(&lz->lock);
	now = lz->nfailed;
	pthread_mutex_unlock(&lz->lock);
	return now ? VR_IDLE_STALLED : VR_IDLE_DONE;
}

static int lazy_idle(void *opaque)
{
	struct vr_lazy *lz = opaque;
	struct lazy_range *lr;
	uint64_t g0, ng;
	int failed = retry_failed(lz);
	bool found;

	if (!__atomic_load_n(&lz->src.prefetch, __ATOMIC_ACQUIRE))
		return failed;
	pthread_mutex_lock(&lz->lock);
	found = lz->present < lz->total && next_run(lz, &lr, &g0, &ng);
	pthread_mutex_unlock(&lz->lock);
	if (!found)
		return failed;
	if (fetch(lz, lr, g0, ng, false)) {
		unsigned int ri = (unsigned int)(lr - lz->range);

		/* Not now: asked again after a pause; the sweep goes back to it. */
		pthread_mutex_lock(&lz->lock);
		for (uint64_t g = g0; g < g0 + ng; g++)
			if (!(lr->state[g] & (L_PRESENT | L_URGENT)))
				lr->state[g] &= (uint8_t)~L_ASKED;
		if (ri < lz->cur || (ri == lz->cur && g0 < lz->cursor)) {
			lz->cur = ri;
			lz->cursor = g0;
		}
		pthread_mutex_unlock(&lz->lock);
		return VR_IDLE_STALLED;
	}
	return VR_IDLE_MORE;
}

static const struct vr_fallback_ops lazy_ops = { .fault = lazy_fault, .idle = lazy_idle };

/* ---- setting up ------------------------------------------------------------ */

/* Drop what [off, off + len) of the region holds: a page that stays is never fetched. */
static int empty_range(const struct vmras_region *r, uint64_t off, uint64_t len)
{
	if (r->fd >= 0 && fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)(r->fd_offset + off), (off_t)len))
		return -errno;
	return madvise((char *)r->hva + off, len, MADV_DONTNEED) ? -errno : 0;
}

/* Does here (bit p: the page at GPA p * 4 KiB is here) hold all of [gpa, gpa + len)? */
static bool all_here(const uint64_t *here, uint64_t nbits, uint64_t gpa, uint64_t len)
{
	for (uint64_t p = gpa / SMALL_PAGE; p < (gpa + len) / SMALL_PAGE; p++)
		if (p >= nbits || !(here[p / 64] & (1ULL << (p % 64))))
			return false;
	return true;
}

/*
 * Empty lr's region but for the granules here says are here (those are
 * marked present): runs of missing granules at a time.
 */
static int empty_lazy_range(struct vr_lazy *lz, struct lazy_range *lr,
			    const struct vmras_region *r, const uint64_t *here, uint64_t nbits)
{
	uint64_t g = 0;

	while (g < lr->n) {
		uint64_t run = 0;
		int err;

		while (g < lr->n && here && all_here(here, nbits, lr->gpa + g * lr->granule, lr->granule)) {
			lr->state[g++] = L_PRESENT;
			lz->present += lr->granule;
		}
		while (g + run < lr->n &&
		       !(here && all_here(here, nbits, lr->gpa + (g + run) * lr->granule, lr->granule)))
			run++;
		if (!run)
			continue;
		err = empty_range(r, g * lr->granule, run * lr->granule);
		if (err)
			return err;
		g += run;
	}
	return 0;
}

static void lazy_free(struct vr_lazy *lz)
{
	if (!lz)
		return;
	for (unsigned int i = 0; i < lz->nranges; i++)
		free(lz->range[i].state);
	if (lz->zeros)
		munmap(lz->zeros, lz->zeros_len);
	pthread_rwlock_destroy(&lz->gate);
	pthread_cond_destroy(&lz->cond);
	pthread_mutex_destroy(&lz->lock);
	free(lz);
}

/* Undo the registrations of lz's first n ranges. */
static void unregister_ranges(struct vmras *v, struct vr_lazy *lz, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		vr_uffd_unregister(v->router, lz->range[i].hva, lz->range[i].size);
}

int vmras_lazy_begin(struct vmras *v, const struct vmras_lazy_source *src, void *opaque)
{
	return vmras_lazy_begin_partial(v, src, opaque, NULL, 0);
}

int vmras_lazy_begin_partial(struct vmras *v, const struct vmras_lazy_source *src, void *opaque,
			     const uint64_t *here, uint64_t nbits)
{
	struct vr_lazy *lz;
	unsigned int registered = 0;
	int err = 0;

	if (!src || !src->fetch)
		return -EINVAL;
	if (!v->router || !v->engine_started)
		return -EOPNOTSUPP;
	/*
	 * KVM must be able to wait for a page: with a user-mode-only
	 * userfaultfd its own accesses (kvmclock, the emulator, vhost) would
	 * fail instead of exiting.
	 */
	if (!vr_router_kernel_faults(v->router))
		return -EOPNOTSUPP;
	if (__atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE))
		return -EEXIST;
	lz = calloc(1, sizeof(*lz));
	if (!lz)
		return -ENOMEM;
	lz->v = v;
	lz->src = *src;
	lz->opaque = opaque;
	pthread_mutex_init(&lz->lock, NULL);
	pthread_cond_init(&lz->cond, NULL);
	pthread_rwlock_init(&lz->gate, NULL);
	for (unsigned int i = 0; i < vmras_memmap_count(v->map) && !err; i++) {
		const struct vmras_region *r = vmras_memmap_region(v->map, i);
		struct lazy_range *lr = &lz->range[lz->nranges];

		/* ROM and flash are the VMM's to load. */
		if (r->flags & VMRAS_REGION_READONLY)
			continue;
		if (r->backing == VMRAS_BACKING_FILE || r->backing == VMRAS_BACKING_GUEST_MEMFD) {
			/* userfaultfd serves no ordinary file's pages, nor guest_memfd's (6.18) */
			err = -EOPNOTSUPP;
			break;
		}
		*lr = (struct lazy_range){ .gpa = r->gpa, .size = r->size, .hva = (uintptr_t)r->hva,
					   .granule = r->page_size, .n = r->size / r->page_size };
		lr->state = calloc(lr->n, 1);
		if (!lr->state) {
			err = -ENOMEM;
			break;
		}
		lz->nranges++;
		lz->total += r->size;
		if (r->page_size > lz->zeros_len)
			lz->zeros_len = r->page_size;
	}
	if (!err && !lz->nranges)
		err = -ENOENT;
	if (!err) {
		lz->zeros = mmap(NULL, lz->zeros_len, PROT_READ,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (lz->zeros == MAP_FAILED) {
			lz->zeros = NULL;
			err = -errno;
		}
	}
	/* Registered first: nothing can fill a page between emptying it and serving it. */
	for (; !err && registered < lz->nranges; registered++)
		err = vr_uffd_register(v->router, lz->range[registered].hva,
				       lz->range[registered].size, UFFDIO_REGISTER_MODE_MISSING);
	if (!err)
		err = vr_router_set_fallback(v->router, &lazy_ops, lz);
	if (err) {
		unregister_ranges(v, lz, registered);
		lazy_free(lz);
		return err;
	}
	for (unsigned int i = 0; i < lz->nranges && !err; i++)
		err = empty_lazy_range(lz, &lz->range[i], vmras_memmap_find_gpa(v->map, lz->range[i].gpa),
				       here, nbits);
	if (err) {
		/* Nobody serves it now: unregistered, it is plain (emptied) memory again. */
		vr_router_set_fallback(v->router, NULL, NULL);
		unregister_ranges(v, lz, registered);
		lazy_free(lz);
		return err;
	}
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus; i++)
		lz->nvcpus += v->vcpus[i].registered;
	pthread_mutex_unlock(&v->lock);
	lz->st.active = true;
	lz->st.pages_total = lz->total / SMALL_PAGE;
	if (lz->present == lz->total)
		lz->st.complete_ns = vr_now_ns();
	lz->st.begin_ns = vr_now_ns();
	__atomic_store_n(&v->lazy, lz, __ATOMIC_RELEASE);
	vr_router_kick(v->router);
	return 0;
}

void vr_lazy_free(struct vmras *v)
{
	lazy_free(v->lazy);
	v->lazy = NULL;
}

/* ---- waiting --------------------------------------------------------------- */

static void deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* cond uses CLOCK_REALTIME by default: wait in slices on the monotonic clock. */
static int wait_slice(struct vr_lazy *lz, const struct timespec *deadline)
{
	struct timespec now, until;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec > deadline->tv_sec ||
	    (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec))
		return -ETIMEDOUT;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 10 * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&lz->cond, &lz->lock, &until);
	return 0;
}

bool vr_lazy_missing(struct vmras *v, uint64_t gpa)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	struct lazy_range *lr = lz ? range_of_gpa(lz, gpa) : NULL;
	bool missing;

	if (!lr)
		return false;
	pthread_mutex_lock(&lz->lock);
	missing = !(lr->state[(gpa - lr->gpa) / lr->granule] & L_PRESENT);
	pthread_mutex_unlock(&lz->lock);
	return missing;
}

int vr_lazy_settle(struct vmras *v, uint64_t gpa, int timeout_ms)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	struct lazy_range *lr = lz ? range_of_gpa(lz, gpa) : NULL;
	struct timespec deadline;
	uint64_t g;
	bool ask;
	int err = 0;

	if (!lr)
		return 0;
	g = (gpa - lr->gpa) / lr->granule;
	pthread_mutex_lock(&lz->lock);
	ask = !(lr->state[g] & (L_PRESENT | L_URGENT));
	if (!(lr->state[g] & L_PRESENT))
		lr->state[g] |= L_ASKED | L_URGENT;
	pthread_mutex_unlock(&lz->lock);
	if (ask)
		fetch(lz, lr, g, 1, true);
	deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&lz->lock);
	while (!(lr->state[g] & L_PRESENT) && !err)
		err = wait_slice(lz, &deadline);
	/* Lost whole (never placed): nothing to split or read there. */
	if (!err && (lr->state[g] & L_POISON))
		err = -EHWPOISON;
	pthread_mutex_unlock(&lz->lock);
	return err;
}

void vr_lazy_vcpu_runs(struct vmras *v, unsigned int vcpu)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	struct vr_work w = { .kind = VR_WORK_SYNC };

	if (!lz || vcpu >= VR_MAX_VCPUS || lz->entered[vcpu])
		return;
	/* From now on such a huge page is lost whole; those placed before are split first. */
	pthread_rwlock_wrlock(&lz->gate);
	__atomic_store_n(&lz->vcpus_ran, true, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&lz->gate);
	/* Waiting on the engine, as good as parked: a split may pause the vCPUs meanwhile. */
	if (v->cfg.ops.vcpu_blocked)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, true);
	(void)vr_engine_submit(v, &w, true);
	if (v->cfg.ops.vcpu_blocked)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, false);
	lz->entered[vcpu] = true;
}

void vr_lazy_guest_reset(struct vmras *v)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);

	if (!lz)
		return;
	__atomic_store_n(&lz->after_reset, true, __ATOMIC_RELEASE);
	/* Pages the source lost that the registry does not know (yet) come back fresh too. */
	for (unsigned int i = 0; i < lz->nranges; i++) {
		struct lazy_range *lr = &lz->range[i];
		const struct vmras_region *r = vmras_memmap_find_gpa(v->map, lr->gpa);

		for (uint64_t g = 0; r && g < lr->n; g++) {
			bool lost;

			pthread_mutex_lock(&lz->lock);
			lost = lr->state[g] & L_POISON;
			lr->state[g] &= (uint8_t)~L_POISON;
			pthread_mutex_unlock(&lz->lock);
			if (lost)
				(void)vr_backing(r)->restore(v, r, lr->gpa + g * lr->granule,
							     lr->granule);
		}
	}
}

int vr_lazy_exit(struct vmras *v, uint64_t gpa, int timeout_ms)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	struct lazy_range *lr = lz ? range_of_gpa(lz, gpa) : NULL;
	struct vr_work w = { .kind = VR_WORK_SYNC };
	uint64_t g;
	uint8_t st;
	int err;

	if (!lr)
		return 0;
	g = (gpa - lr->gpa) / lr->granule;
	pthread_mutex_lock(&lz->lock);
	st = lr->state[g];
	pthread_mutex_unlock(&lz->lock);
	if (!(st & L_PRESENT)) {
		err = vr_lazy_settle(v, gpa, timeout_ms);
		/* Lost: the marker is in; KVM now says -EHWPOISON, the usual path. */
		err = err == -EHWPOISON ? 1 : err ?: 1;
	} else if (st & L_POISON) {
		/* Its marker went in; the engine records it: let it catch up. */
		(void)vr_engine_submit(v, &w, true);
		err = 1;
	} else {
		/* Here once, emptied since (a guest reset): fresh zeros, if it really is empty. */
		err = zero_if_empty(lz, lr, g);
	}
	if (err == 1) {
		pthread_mutex_lock(&lz->lock);
		lz->st.memfault_exits++;
		pthread_mutex_unlock(&lz->lock);
	}
	return err;
}

int vmras_lazy_set_prefetch(struct vmras *v, bool on)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);

	if (!lz)
		return -ENOENT;
	__atomic_store_n(&lz->src.prefetch, on, __ATOMIC_RELEASE);
	vr_router_kick(v->router);
	return 0;
}

int vmras_lazy_retry(struct vmras *v)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	int err = 0;

	if (!lz)
		return -ENOENT;
	for (unsigned int i = 0; i < lz->nranges; i++) {
		struct lazy_range *lr = &lz->range[i];

		for (uint64_t g = 0; g < lr->n; g++) {
			bool ask;

			pthread_mutex_lock(&lz->lock);
			ask = (lr->state[g] & (L_URGENT | L_PRESENT)) == L_URGENT;
			pthread_mutex_unlock(&lz->lock);
			if (ask) {
				int e = fetch(lz, lr, g, 1, true);

				err = err ?: e;
			}
		}
	}
	vr_router_kick(v->router);
	return err;
}

int vmras_lazy_abandon(struct vmras *v)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	int err = 0;

	if (!lz)
		return -ENOENT;
	for (unsigned int i = 0; i < lz->nranges; i++) {
		struct lazy_range *lr = &lz->range[i];

		for (uint64_t g = 0; g < lr->n; g++) {
			bool lost;
			int e;

			/* Marked first: no fault meanwhile zero-fills it, no supply places it. */
			pthread_mutex_lock(&lz->lock);
			lost = !(lr->state[g] & L_PRESENT);
			if (lost)
				lr->state[g] |= L_PRESENT | L_POISON;
			pthread_mutex_unlock(&lz->lock);
			if (!lost)
				continue;
			/* EAGAIN: the mapping is changing (a split): as place() does, again. */
			for (int t = 0; t < EAGAIN_TRIES; t++) {
				e = vr_uffd_poison(v->router, lr->hva + g * lr->granule, lr->granule);
				if (e != -EAGAIN)
					break;
				sched_yield();
			}
			if (e && e != -EEXIST && e != -ENOENT) {
				/* Not poisoned: its waiters must not sleep on a mark. */
				pthread_mutex_lock(&lz->lock);
				lr->state[g] &= (uint8_t)~(L_PRESENT | L_POISON);
				pthread_mutex_unlock(&lz->lock);
				vr_uffd_wake(v->router, lr->hva + g * lr->granule, lr->granule);
				err = err ?: e;
			}
		}
	}
	pthread_mutex_lock(&lz->lock);
	pthread_cond_broadcast(&lz->cond);
	pthread_mutex_unlock(&lz->lock);
	return err;
}

int vmras_lazy_wait(struct vmras *v, int timeout_ms)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);
	struct timespec deadline;
	int err = 0;

	if (!lz)
		return -ENOENT;
	deadline_after(&deadline, timeout_ms < 0 ? 1000 * 1000 * 1000 : timeout_ms);
	pthread_mutex_lock(&lz->lock);
	while (lz->present < lz->total && !err)
		err = wait_slice(lz, &deadline);
	pthread_mutex_unlock(&lz->lock);
	return err;
}

int vmras_lazy_get_stats(struct vmras *v, struct vmras_lazy_stats *st)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);

	memset(st, 0, sizeof(*st));
	if (!lz)
		return -ENOENT;
	pthread_mutex_lock(&lz->lock);
	*st = lz->st;
	st->pages_present = lz->present / SMALL_PAGE;
	st->complete = lz->present == lz->total;
	st->latency_ns = st->latency_count ? lz->latency_sum / st->latency_count : 0;
	pthread_mutex_unlock(&lz->lock);
	return 0;
}

int vmras_lazy_vcpu_blocktime(struct vmras *v, uint64_t *ns, unsigned int n)
{
	struct vr_lazy *lz = __atomic_load_n(&v->lazy, __ATOMIC_ACQUIRE);

	if (!lz)
		return -ENOENT;
	pthread_mutex_lock(&lz->lock);
	for (unsigned int i = 0; i < n; i++)
		ns[i] = i < VR_MAX_VCPUS ? lz->vcpu_block_ns[i] : 0;
	pthread_mutex_unlock(&lz->lock);
	return 0;
}
