/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Lazy guest memory: RAM that is not here yet, filled the first time a
 * vCPU, KVM or a VMM thread touches it, and in the background until all
 * of it is here. What post-copy migration and a lazy snapshot restore
 * need, poison-aware: a page the source says is poisoned is poisoned
 * here (UFFDIO_POISON; the guest gets a machine check when it touches
 * it), never filled with zeros or made-up data.
 *
 * A VMM gives a page source: fetch(gpa, len) asks it for pages, and it
 * answers with vmras_lazy_supply() from any thread, at once (a file) or
 * later (a network peer). Faults are served on the library's fault-router
 * thread through the userfaultfd (MISSING mode: anonymous, shmem and
 * hugetlb RAM; a huge page arrives whole); KVM memory-fault exits on a
 * lazy page (hosts where KVM cannot wait on the userfaultfd) are served
 * on the vCPU's thread by vmras_vcpu_exit(), which fetches the page and
 * returns VMRAS_EXIT_HANDLED (re-enter).
 *
 * Order: vmras_start(); vmras_lazy_begin() before any vCPU runs (it empties
 * the RAM: nothing there may be kept); supply the huge pages that hold a
 * poisoned 4 KiB page (vmras_lazy_supply with kinds) before the vCPUs run,
 * and then vmras_migration_apply() if there is RAS state; run the vCPUs.
 * vmras_lazy_wait() returns once everything is here.
 *
 * Limits: lazy RAM must be touched through this process's mappings only
 * while it is lazy (another process or a vhost-user backend that maps a
 * shmem/hugetlb backing, or a pwrite to its file, would allocate a zero
 * page the library never hears of); the VMM must not vmras_uffd_unroute
 * a range inside it (unregistered, a page that has not arrived reads as
 * zeros); and the source stops calling vmras_lazy_supply before
 * vmras_free.
 *
 * Threads: fetch is called on the router thread (faults, prefetch), the
 * engine thread (a memory error on a page not here yet: it must be here
 * before it can be split) and vCPU threads (memory-fault exits), never
 * with a library lock held. It must not touch lazy guest RAM itself (it
 * would wait for itself), nor wait for a vCPU.
 */
#ifndef VMRAS_LAZY_H
#define VMRAS_LAZY_H

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(default)

struct vmras;

enum vmras_page_kind {
	VMRAS_PAGE_DATA,
	VMRAS_PAGE_ZERO,
	VMRAS_PAGE_POISONED,
};

struct vmras_lazy_source {
	/*
	 * Send [gpa, gpa + len) (whole pages of the backing) by
	 * vmras_lazy_supply, now or later. urgent: a thread waits for it.
	 * 0, or -errno: not now (the pages stay asked for; vmras_lazy_retry
	 * asks again, e.g. after the source came back).
	 */
	int (*fetch)(void *opaque, uint64_t gpa, uint64_t len, bool urgent);
	/* The library fetches in the background too (a peer that streams by itself: false). */
	bool prefetch;
};

/* Make all guest RAM lazy (before any vCPU runs). -EOPNOTSUPP: a backing uffd cannot serve. */
int vmras_lazy_begin(struct vmras *v, const struct vmras_lazy_source *src, void *opaque);
/*
 * The same for RAM that has partly arrived (post-copy: what pre-copy sent
 * and nothing wrote since): bit p of here (nbits long) set says the page
 * at GPA p * 4096 holds its data and stays; a huge page stays only if all
 * its 4 KiB pages do. Everything else is emptied and fetched.
 */
int vmras_lazy_begin_partial(struct vmras *v, const struct vmras_lazy_source *src, void *opaque,
			     const uint64_t *here, uint64_t nbits);
/*
 * Pages arrived: [gpa, gpa + len), whole pages of the backing. data holds
 * len bytes (only the DATA pages are read; NULL when there are none);
 * kinds one enum vmras_page_kind per 4 KiB page (NULL: all DATA). A page
 * already here is left as it is. A huge page holding a POISONED 4 KiB page
 * is split before the vCPUs ran (4 KiB lost); after, it is lost whole
 * (poisoned, an event): it could be read as zeros between placing and
 * splitting. 0 or -errno.
 */
int vmras_lazy_supply(struct vmras *v, uint64_t gpa, uint64_t len, const void *data,
		      const uint8_t *kinds);
/* Fetch in the background or not (the source's prefetch, changed). */
int vmras_lazy_set_prefetch(struct vmras *v, bool on);
/* Ask the source again for every page a thread waits on (after fetch failed). */
int vmras_lazy_retry(struct vmras *v);
/*
 * The source is gone for good (a VMM that quits during a paused post-copy):
 * every page still missing is poisoned where it is (UFFDIO_POISON, no
 * event), so that a thread waiting for one wakes into a memory error, not
 * data, and can be stopped. The guest must not run on. 0 or -errno.
 */
int vmras_lazy_abandon(struct vmras *v);
/* Wait until every page is here: 0, -ETIMEDOUT, -ENOENT (no lazy memory). */
int vmras_lazy_wait(struct vmras *v, int timeout_ms);

#define VMRAS_LAZY_LATENCY_BUCKETS 24

struct vmras_lazy_stats {
	bool active;			/* vmras_lazy_begin was called */
	bool complete;			/* every page is here */
	uint64_t pages_total;		/* 4 KiB pages of lazy RAM */
	uint64_t pages_present;
	uint64_t faulted;		/* pages fetched because a thread waited */
	uint64_t prefetched;		/* pages fetched in the background */
	uint64_t zero_pages;		/* of those, zeros */
	uint64_t poisoned_pages;	/* of those, poisoned */
	uint64_t refaults;		/* faults on a page here before, since emptied: zeros */
	uint64_t memfault_exits;	/* KVM_EXIT_MEMORY_FAULT on a lazy page */
	uint64_t fetch_errors;		/* fetch calls that failed */
	uint64_t blocktime_ns;		/* all vCPUs blocked at once (QEMU's postcopy-blocktime) */
	uint64_t latency_ns;		/* mean time a fault waited (postcopy-latency) */
	uint64_t latency_count;
	/* Faults by wait: [0] under 2 us, [i] 2^i to 2^(i+1) us, the last one longer. */
	uint64_t latency_dist[VMRAS_LAZY_LATENCY_BUCKETS];
	uint64_t begin_ns;		/* CLOCK_MONOTONIC of vmras_lazy_begin */
	uint64_t first_fault_ns;	/* of the first fault, 0: none */
	uint64_t complete_ns;		/* when the last page arrived, 0: not yet */
};

/* -ENOENT: no lazy memory. */
int vmras_lazy_get_stats(struct vmras *v, struct vmras_lazy_stats *st);
/* Per-vCPU blocked time (postcopy-vcpu-blocktime), ns; n entries. */
int vmras_lazy_vcpu_blocktime(struct vmras *v, uint64_t *ns, unsigned int n);

#pragma GCC visibility pop

#endif
