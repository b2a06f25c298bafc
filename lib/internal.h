/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libvmras internals shared by engine.c, capture.c and contain.c. */
#ifndef VMRAS_LIB_INTERNAL_H
#define VMRAS_LIB_INTERNAL_H

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define VMRAS_MAX_VCPUS 256
#define RING_SIZE 16384		/* power of two */
#define VCPU_MAX_PENDING 64
#define RAISE_AO_MAX 1024

/* One SIGBUS as the handler saw it. */
struct capture_slot {
	uint64_t seq;		/* Vyukov bounded-queue sequence */
	int si_code;
	int32_t tid;
	unsigned int lsb;
	uint64_t addr;
	uint64_t time_ns;
	int from_copy;		/* inside vmras_copy_from_guest */
};

struct capture_ring {
	uint64_t head;		/* producers: signal handlers on any thread */
	uint64_t tail;		/* the consumer: the engine */
	uint64_t dropped;
	struct capture_slot slots[RING_SIZE];
};

struct pending_mce {
	struct vmras_x86_mce mce;
	struct vmras_failure f;	/* reported when delivered (or not) */
	bool broadcast;		/* a copy for a bystander vCPU: not reported */
	bool deferred;		/* counted once as deferred */
};

struct vcpu_slot {
	bool registered;
	bool offline;		/* the VMM said it stopped running */
	int fd;
	int32_t tid;
	unsigned int npending;
	struct pending_mce pending[VCPU_MAX_PENDING];
	uint64_t last_srar_page;	/* page of the last SRAR delivered here, or ~0 */
	bool raise_ar;		/* injector asked this thread to send itself an AR */
	uint64_t raise_ar_hva;
};

#define MAX_SPLITS 64

enum sub_state { SUB_MISSING, SUB_FILLED, SUB_POISONED };

/*
 * A huge page replaced by 4 KiB shared pages: the bad ones poisoned, the
 * rest filled from the huge page's file on demand (userfaultfd) and in the
 * background.
 */
struct split {
	bool used;
	bool filled;		/* every subpage filled or poisoned */
	const struct vmras_region *r;
	uint64_t gpa, size, hva;
	int memfd;		/* the 4 KiB replacement */
	uint32_t nsub, ndone, cursor;
	uint8_t *state;		/* enum sub_state per subpage */
	uint64_t t_begin, t_paused, t_resumed, t_done;	/* CLOCK_MONOTONIC ns */
	uint64_t t_begin_rt;	/* CLOCK_REALTIME, to compare with event times */
	uint64_t t_live_rt;	/* when the 4 KiB mapping was in place (vCPUs paused) */
};

/* An event handed to the engine by a thread (not a signal handler). */
struct submitted {
	struct submitted *next;
	struct vmras_event ev;
	bool done;		/* set by the engine; the submitter may wait on it */
	bool waiting;
};

struct vmras {
	struct vmras_config cfg;
	struct vmras_memmap *map;
	struct vmras_registry *registry;
	int uffd;		/* for UFFDIO_POISON; -1 if unavailable */
	int uffd_err;
	int wake_fd;		/* eventfd: ring or queue has work, or stop */
	int log_fd;
	pthread_t engine;
	bool engine_started;
	int32_t engine_tid;	/* the early-kill thread */
	struct capture_ring *ring;

	pthread_mutex_t work_lock;	/* held while events are processed (reset waits) */
	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cond;	/* submitted events done */
	bool stopping;
	struct submitted *queue, **queue_tail;
	struct vcpu_slot vcpus[VMRAS_MAX_VCPUS];
	unsigned int nvcpus;	/* highest index + 1 */
	/* Injected AOs the engine still has to send itself, in order. */
	unsigned int nraise_ao, nraise_reserved;
	struct {
		uint64_t hva;
		unsigned int lsb;
	} raise_ao[RAISE_AO_MAX];
	struct vmras_stats stats;
	struct split splits[MAX_SPLITS];	/* under lock */
	/*
	 * Subpages vmras_inject made bad inside hugetlb pages: what a kernel
	 * with memory failure knows, and answers with EIO when they are read
	 * through the file. The stand-in answers the same (fill_one).
	 */
	unsigned int nhw_bad;
	uint64_t hw_bad[256];

	pthread_t worker;	/* serves faults on split ranges, fills the rest */
	bool worker_started;
	int worker_wake;	/* eventfd */
};

uint64_t vmras__now_ns(void);
int32_t vmras__gettid(void);

/* capture.c */
int capture_install(struct vmras *v);
void capture_uninstall(struct vmras *v);
/* Pop one captured SIGBUS; false when empty. */
bool capture_pop(struct vmras *v, struct capture_slot *out);
void capture_set_vcpu_thread(int vcpu);
/* This thread's pending AR (from a SIGBUS while it was a vCPU thread). */
bool capture_take_vcpu_ar(uint64_t *hva, unsigned int *lsb, int *si_code);
/* Send this thread a SIGBUS as the kernel would. */
int capture_raise_sigbus(int si_code, uint64_t addr, unsigned int lsb);
/* For vmras_copy_from_guest: arm / disarm this thread's recovery point. */
void capture_arm_copy(sigjmp_buf *jb);
void capture_disarm_copy(void);

/*
 * contain.c: make [gpa, gpa+size) unreadable for everyone (poison). With
 * keep_file, only this mapping is poisoned and a shared file keeps the page
 * (as the kernel's memory_failure() leaves a hugetlb page in the file).
 */
int contain_range(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		  uint64_t size, bool keep_file);
int contain_open_uffd(struct vmras *v);
/* Give a contained range fresh memory again (guest reset). */
int contain_restore(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		    uint64_t size);

/* engine.c */
void engine_wake(struct vmras *v);
int engine_submit(struct vmras *v, const struct vmras_event *ev, bool wait);

/* split.c */
bool split_possible(struct vmras *v);
/* The split holding gpa (under v->lock), or NULL. */
struct split *split_find(struct vmras *v, uint64_t gpa);
/* Replace the huge page at huge_gpa with 4 KiB pages; bad_gpa's is poisoned. */
int split_begin(struct vmras *v, const struct vmras_region *r, uint64_t huge_gpa,
		uint64_t bad_gpa);
/* Poison one more 4 KiB page of a split huge page. */
int split_poison(struct vmras *v, uint64_t gpa);
/* Guest reset: every split range back to a fresh huge page. */
int split_restore_all(struct vmras *v);
int split_worker_start(struct vmras *v);
void split_worker_stop(struct vmras *v);
uint64_t vmras__mono_ns(void);

#endif
