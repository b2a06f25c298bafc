/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The libvmras context and what its modules share.
 *
 * Threads and what each owns:
 *   engine thread (engine.c)   every decision, in arrival order; the only
 *                              thread that contains, splits, restores, and
 *                              calls pause_vcpus/resume_vcpus/remap. It
 *                              also carries out injections and resets
 *                              (commands queued like events).
 *   router thread (uffd/)      reads the userfaultfd, calls the route that
 *                              owns each fault, runs background work (the
 *                              fill of split huge pages). Never waits for
 *                              the engine or a vCPU.
 *   vCPU threads (notify.c,    classify exits, submit and wait; deliver
 *     sources/kvm_exit.c)      their own notices (vCPU ioctls only there).
 *   any thread                 SIGBUS handler (sources/sigbus.c): ring push
 *                              and eventfd write only.
 *
 * Locks, in the order they may be taken (never the reverse):
 *   map_lock (rwlock) > split->lock > router->lock > lazy->lock > v->lock
 * map_lock: read by the safe copy, written by the engine while it swaps a
 * mapping (vCPUs paused). v->lock guards vcpus[], the work queue and stats;
 * it is a leaf. No library lock is held while a VMM hook runs.
 */
#ifndef VMRAS_LIB_INTERNAL_H
#define VMRAS_LIB_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "memory/vma.h"
#include "vmras/vmras.h"

#define VR_MAX_VCPUS 256
#define VR_VCPU_MAX_PENDING 64
#define VR_NOTICE_ARCH_BYTES 48
#define SMALL_PAGE 4096ULL

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#define BUS_MCEERR_AO 5
#endif
#ifndef EHWPOISON
#define EHWPOISON 133
#endif

struct vr_record;
struct vr_ring;
struct vr_router;
struct vr_split;
struct vr_lazy;
struct vr_arch_ops;

/* One notice for one vCPU: what the guest is told, in its arch's terms. */
struct vr_notice {
	struct vmras_failure f;	/* reported when delivered, or why not */
	uint64_t group;		/* the event's seq: a primary and its bystanders */
	bool bystander;		/* another CPU's copy of a broadcast: not reported */
	bool deferred;		/* counted once as deferred */
	uint64_t held_since_ns;	/* an AR waiting for the guest's handler to end, or 0 */
	bool counted;		/* an AR counted in its vCPU's ar_repeats */
	uint16_t hold_tries;	/* deliveries tried while held */
	_Alignas(8) unsigned char arch[VR_NOTICE_ARCH_BYTES];
};

struct vr_vcpu {			/* under v->lock */
	bool registered;
	bool offline;		/* the VMM said it stopped running */
	int fd;
	int32_t tid;
	unsigned int npending;
	struct vr_notice pending[VR_VCPU_MAX_PENDING];
	uint64_t last_ar_page;	/* page of the last AR delivered here, or ~0 */
	uint64_t seen_ar_page;	/* page of the last AR notice taken up here, or ~0 */
	unsigned int ar_repeats;	/* further AR notices for seen_ar_page */
	bool raise_ar;		/* injector: this thread sends itself an AR */
	uint64_t raise_ar_hva;
	uint64_t raise_ar_gpa;
	bool raise_ar_exit;	/* as KVM_RUN -EHWPOISON (guest_memfd), not SIGBUS */
};

/* Engine work: an event, or a command carried out in arrival order. */
enum vr_work_kind {
	VR_WORK_EVENT,
	VR_WORK_INJECT,
	VR_WORK_RESET,
	VR_WORK_SYNC,		/* nothing: done once everything before it is */
};

struct vr_work {
	struct vr_work *next;
	enum vr_work_kind kind;
	struct vmras_event ev;	/* EVENT; INJECT: gpa, kind, vcpu */
	uint32_t arch_state;	/* EVENT from a vCPU: its guest state (arch ops) */
	uint32_t gen;		/* EVENT: guest resets when it was observed */
	bool signal;		/* INJECT */
	uint32_t carried_state;	/* EVENT from migration: registry state on the source */
	int result;
	bool done, waiting;	/* under v->lock */
};

struct vr_hw_bad {		/* the injector's stand-in for the kernel's knowledge */
	uint64_t *gpa;		/* bad 4 KiB pages, unsorted */
	size_t n, cap;
};

#define VR_MAX_SUPERSEDED 64

struct vmras {
	struct vmras_config cfg;
	struct {		/* the engine thread's scratch (too big for a stack) */
		struct vr_notice notices[VR_MAX_VCPUS];
		unsigned int vcpu_of[VR_MAX_VCPUS];
		bool online[VR_MAX_VCPUS];
		struct vmras_failure superseded[VR_MAX_SUPERSEDED];
	} scratch;
	struct vmras_memmap *map;
	struct vr_vma_attrs region_attrs[VMRAS_MEMMAP_MAX_REGIONS];	/* by memmap index */
	struct vmras_registry *registry;
	struct vr_ring *ring;
	struct vr_router *router;
	struct vr_lazy *lazy;	/* lazy memory (uffd/lazy.c), set once (atomic) */
	int wake_fd;		/* eventfd: ring or queue has work, or stop */
	int log_fd;
	struct vr_record *record;	/* NULL: not recording (record_err says why) */
	int record_err;
	char record_why[192];
	bool ram_mmio;		/* KVM reports RAM it cannot use as MMIO */

	const struct vr_arch_ops *arch;
	void *arch_data;

	pthread_t engine;
	bool engine_started;
	int32_t engine_tid;	/* the early-kill thread */
	int early_kill_err;	/* its PR_MCE_KILL_EARLY: 0 or -errno (atomic; vmras_get_caps) */
	uint64_t seq;		/* arrival order (atomic) */
	uint32_t generation;	/* guest resets so far (atomic; written by the engine) */
	pthread_rwlock_t map_lock;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cond;	/* work done, notices delivered */
	bool stopping;
	struct vr_work *queue, **queue_tail;
	struct vr_vcpu vcpus[VR_MAX_VCPUS];
	unsigned int nvcpus;	/* highest index + 1 */
	struct vmras_stats stats;
	uint64_t dropped_reported;	/* ring overflow already reported */
	uint64_t unrouted_reported;	/* unrouted faults already reported */
	struct vr_split *splits;	/* engine thread only */
	struct vr_hw_bad hw_bad;
};

/* Atomic stats bump under v->lock. */
#define VR_STAT_ADD(v, field, n)                  \
	do {                                      \
		pthread_mutex_lock(&(v)->lock);   \
		(v)->stats.field += (n);          \
		pthread_mutex_unlock(&(v)->lock); \
	} while (0)

/* engine.c */
uint64_t vr_next_seq(struct vmras *v);
void vr_engine_wake(struct vmras *v);
/* Queue work for the engine; with wait, return its result once done. */
int vr_engine_submit(struct vmras *v, struct vr_work *w, bool wait);
/* An event from a thread (not a handler): copied; wait for the decision. */
int vr_submit_event(struct vmras *v, const struct vmras_event *ev, uint32_t arch_state,
		    bool wait);
int vr_engine_start(struct vmras *v);
void vr_engine_stop(struct vmras *v);
/* Report an outcome (log, stats, ops.failure) and apply reset/fatal. */
/* Report an outcome: through the record when recording (it reports once on disk). */
void vr_report(struct vmras *v, struct vmras_failure *f);
/* Event log line and ops.failure, now. */
void vr_report_now(struct vmras *v, const struct vmras_failure *f);
/* vr_report, and a reset or fatal decision carried out after it. */
void vr_report_apply(struct vmras *v, struct vmras_failure *f);
void vr_apply(struct vmras *v, const struct vmras_failure *f);

/* notify.c: per-vCPU notice queues */
/* Engine: queue f's notices (arch prepare) on target; kick. Reports on failure. */
void vr_notify(struct vmras *v, struct vmras_failure *f, int target, uint32_t arch_state);
/* Engine: deferred notices left; kick their vCPUs. */
bool vr_notify_retry(struct vmras *v);
/* Reset: every pending notice is reported as moot. */
void vr_notify_drop_all(struct vmras *v, const char *why);
/* The vCPU whose thread this is, or -1. */
int vr_vcpu_of_tid(struct vmras *v, int32_t tid);

/* inject.c */
int vr_inject_execute(struct vmras *v, const struct vr_work *w);
bool vr_hw_is_bad(struct vmras *v, uint64_t gpa, uint64_t size);
void vr_hw_forget(struct vmras *v);

/* probe/ram_mmio.c */
int vr_detect_ram_mmio(bool *emulates);

#endif
