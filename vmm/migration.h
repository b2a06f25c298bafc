/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Live migration and snapshots of the reference VMM, poison included
 * (docs/migration.md). Source: one migration thread per `migrate`; it
 * reads guest RAM through libvmras's machine-check-safe copy (a bad page
 * is sent as "poisoned", never as data), tracks dirty pages with KVM's
 * dirty log plus the VMM's own writes, iterates until the rest fits the
 * downtime limit, then stops the vCPUs, sends the rest, the RAS state,
 * every vCPU's state and the guest report, and waits for the
 * destination's verdict: on success the source stays stopped for good; on
 * any failure or cancel before the handover it runs on.
 *
 * Destination (`--incoming`, on its own thread, vmm_run's loop still
 * hearing a quit): loads the whole stream before any vCPU thread starts,
 * checks each section as it comes and refuses a mismatch with one line;
 * nothing half-loaded ever runs (the process exits).
 *
 * Locks: mig->lock guards the status, counters and flags. It is a leaf:
 * it may be taken with vm->lock held, never the other way round, and is
 * not held across I/O or an event (mig_cancel's shutdown(2) excepted). The migration thread takes
 * vm->lock through vmm_freeze/vmm_thaw, to wait for idle vCPUs and to
 * copy the guest report and run state.
 *
 * The device phase is frozen (vmm_freeze): from the last dirty sync to
 * the end, system_reset and the VMM's own writes to guest RAM are refused
 * with -EBUSY (a library-requested reset waits), so nothing changes what
 * was already sent. The handover is a commit: the destination loads and
 * checks everything and answers "ready"; the source then marks itself
 * handed over (never to run the guest again; cancel is too late) and
 * sends "go"; the destination runs the guest only on "go".
 */
#ifndef VMRAS_VMM_MIGRATION_H
#define VMRAS_VMM_MIGRATION_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct vmm;
struct mig_stream;
struct postcopy_in;

enum mig_status {
	MIG_NONE,
	MIG_SETUP,
	MIG_ACTIVE,
	MIG_DEVICE,	/* vCPUs stopped: the rest and the device state */
	MIG_POSTCOPY_ACTIVE,	/* the destination runs; the rest of RAM on demand */
	MIG_POSTCOPY_PAUSED,	/* the connection broke: each side waits for a recovery */
	MIG_POSTCOPY_RECOVER,	/* a recovery is connecting */
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLED,
};

/* Tunables (QMP migrate-set-parameters); UINT64_MAX: leave as it is. */
struct migration_params {
	uint64_t downtime_limit_ms;	/* the stop-and-copy phase's goal */
	uint64_t max_bandwidth;		/* bytes/s while the guest runs; 0: no limit */
	uint64_t max_postcopy_bandwidth;	/* bytes/s of post-copy's background pages */
};

struct vmm_migration {
	pthread_mutex_t lock;
	enum mig_status status;
	char error[320];
	bool thread_started;
	pthread_t thread;
	struct mig_stream *stream;	/* while the thread runs: for cancel */
	bool cancel;
	atomic_bool cancel_flag;	/* cancel, for waits that cannot take the lock */
	bool closed;		/* migration_stop ran: no migrate from now on */
	struct mig_stream *in_stream;	/* --incoming's, while it loads: for a quit */
	char uri[256];
	pthread_cond_t cond;	/* the throttle's sleep; cancel wakes it */
	struct migration_params params;
	uint64_t window_ns, window_bytes;	/* the throttle's current second */
	bool handed_over;	/* the destination runs the guest now */
	bool incoming;		/* migration_incoming runs */
	uint64_t incoming_us;	/* it loaded the guest in this long (0: it did not) */
	/* counters (query-migrate) */
	uint64_t ram_total, transferred, remaining, pages, poisoned, zero_pages, data_bytes;
	uint64_t dirty_syncs, iterations, downtime_ms, setup_ms, total_ms, start_ns;
	/* pages the VMM itself wrote (KVM's dirty log does not see them) */
	uint64_t *vmm_dirty;
	uint64_t npages;
	bool logging;
	/* post-copy (docs/migration.md) */
	bool postcopy_ram;	/* the capability */
	atomic_bool postcopy_start;	/* migrate-start-postcopy: switch now */
	bool postcopy;		/* this migration switched */
	bool go_sent;		/* the handover reached the socket */
	bool resume;		/* the thread resumes a paused post-copy */
	uint64_t *pc_bm;	/* source: pages still to send, kept while paused */
	uint64_t pc_requests, pc_bytes;
	uint64_t resumed_bytes;	/* sent on the connections before a resume */
	uint64_t mig_id;	/* random, in the header: a resume must bring it */
	struct postcopy_in *pc_in;	/* destination */
};

int migration_init(struct vmm *vm, struct vmm_error *e);
void migration_destroy(struct vmm *vm);

/*
 * QMP migrate: start the thread. -EBUSY if one runs or the guest moved.
 * resume: carry on a paused post-copy on a new connection.
 */
int migration_start(struct vmm *vm, const char *uri, bool resume, struct vmm_error *e);
/* migrate-set-capabilities postcopy-ram (not while a migration runs). */
int migration_set_postcopy(struct vmm *vm, bool on, struct vmm_error *e);
bool migration_get_postcopy(struct vmm *vm);
/* migrate-start-postcopy: the running pre-copy switches. */
int migration_start_postcopy(struct vmm *vm, struct vmm_error *e);
/* migrate-pause: break a running post-copy's connection (either side). */
int migration_pause(struct vmm *vm, struct vmm_error *e);
/* For postcopy.c: the status (an event says it). */
void migration_set_status(struct vmm *vm, enum mig_status st, const char *error);
void migration_cancel(struct vmm *vm);
/* Refuse new migrations, cancel and join the thread: before shutdown. */
void migration_stop(struct vmm *vm);
/* A quit while --incoming loads: its wait or stream is cancelled. */
void migration_incoming_cancel(struct vmm *vm);
json_object *migration_query(struct vmm *vm);
int migration_set_params(struct vmm *vm, const struct migration_params *p,
			 struct vmm_error *e);
void migration_get_params(struct vmm *vm, struct migration_params *p);
/* The VMM wrote guest RAM [gpa, gpa + len) itself. */
void migration_dirty(struct vmm *vm, uint64_t gpa, uint64_t len);
/* The guest moved away: cont must not run it here. */
bool migration_handed_over(struct vmm *vm);
/* --incoming is loading its stream. */
bool migration_incoming_active(struct vmm *vm);

/* --incoming: load the stream into a VM whose vCPUs have not started. */
int migration_incoming(struct vmm *vm, const char *uri, struct vmm_error *e);

#endif
