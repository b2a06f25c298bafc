/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libvmras: one path from every source of a guest memory error to a guest
 * that keeps running with nothing else lost.
 *
 *   SIGBUS (any thread) -> signal-safe ring --\
 *   KVM_RUN exits (vcpu) -> vmras_vcpu_exit ---+-> engine thread: translate,
 *   vmras_inject / safe copy -----------------/    record, contain, decide
 *                                                  -> MCE on the vCPU's thread
 *
 * The library never prints or exits; calls return 0 or -errno (a thread
 * that re-executes an access to poison outside vmras_copy_*_guest dies by
 * SIGBUS's default action, as it would without vmras). A VMM gives
 * it its RAM regions and vCPUs, calls vmras_vcpu_exit() after every
 * KVM_RUN and vmras_vcpu_pre_run() before the next, and gets each outcome
 * through ops.failure. There is one vmras context per process (it owns
 * the SIGBUS handler).
 */
#ifndef VMRAS_VMRAS_H
#define VMRAS_VMRAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmras/event.h"
#include "vmras/memmap.h"
#include "vmras/registry.h"

struct kvm_run;
struct vmras;

struct vmras_policy {
	enum vmras_action ao;		/* AO on guest RAM: default inject */
	enum vmras_action ar;		/* AR on guest RAM: default inject */
	enum vmras_action ar_not_guest;	/* AR outside guest RAM: default fatal */
	enum vmras_action undeliverable;	/* guest cannot take the #MC: default reset */
	bool broadcast;			/* SRAR also to the other vCPUs, as Intel does */
};

/* The VMM's side. Hooks are called from library threads and vCPU threads. */
struct vmras_ops {
	void *opaque;
	/* Make vCPU leave KVM_RUN soon and call vmras_vcpu_pre_run. Must not block. */
	void (*kick_vcpu)(void *opaque, unsigned int vcpu);
	/* Policy reset / fatal: ask for it; must not wait for vCPUs. */
	void (*request_reset)(void *opaque, const char *why);
	void (*request_stop)(void *opaque, const char *why);
	/* Every outcome (a MEMORY_FAILURE event). */
	void (*failure)(void *opaque, const struct vmras_failure *f);
	/*
	 * Optional, for splitting huge pages: park every vCPU outside KVM_RUN
	 * and return (a vCPU waiting inside vmras_vcpu_exit counts as parked:
	 * see vcpu_blocked), and let them go again. Called by the engine.
	 */
	void (*pause_vcpus)(void *opaque);
	void (*resume_vcpus)(void *opaque);
	/* vCPU is waiting inside vmras_vcpu_exit (true) or no longer (false). */
	void (*vcpu_blocked)(void *opaque, unsigned int vcpu, bool blocked);
	/*
	 * Guest RAM [gpa, gpa + size) at hva is now backed by fd at offset
	 * (after a split, and back after a reset): processes that share guest
	 * memory (vhost-user backends) must map it anew.
	 */
	void (*remapped)(void *opaque, uint64_t gpa, uint64_t size, void *hva, int fd,
			 uint64_t offset);
};

struct vmras_config {
	struct vmras_policy policy;
	struct vmras_ops ops;
	uint64_t mcg_cap;	/* what the vCPUs were given by KVM_X86_SETUP_MCE */
	const char *event_log;	/* append each failure as a JSON line, or NULL */
};

struct vmras_stats {
	uint64_t received[VMRAS_SRC_COUNT];
	uint64_t actions[VMRAS_ACTION_COUNT];
	uint64_t dropped;	/* capture ring full */
	uint64_t duplicates;	/* reports of a range already handled */
	uint64_t contained, contain_failed;
	uint64_t mce_delivered, mce_deferred, mce_undeliverable, mce_broadcast;
	uint64_t not_guest_ram;
	uint64_t bytes_lost;
	uint64_t log_errors;	/* event log writes that failed */
	uint64_t splits;	/* huge pages replaced by 4 KiB pages */
	uint64_t split_pause_ns_max;	/* longest vCPU pause for a split */
	uint64_t subpages_salvaged;	/* filled from the old huge page */
};

void vmras_policy_default(struct vmras_policy *p);

/* -EINVAL for a policy action out of range (or undeliverable = inject). */
int vmras_new(const struct vmras_config *cfg, struct vmras **out);
/*
 * Stop the engine (it handles what was already reported), restore the
 * previous SIGBUS handler, free. No thread may be inside a vmras call.
 */
void vmras_free(struct vmras *v);

int vmras_add_region(struct vmras *v, const struct vmras_region *r);
int vmras_add_vcpu(struct vmras *v, unsigned int index, int vcpu_fd);
/* Install the SIGBUS handler and start the engine thread. */
int vmras_start(struct vmras *v);

struct vmras_registry *vmras_get_registry(struct vmras *v);
const struct vmras_memmap *vmras_get_memmap(struct vmras *v);
void vmras_get_stats(struct vmras *v, struct vmras_stats *s);

/* ---- vCPU threads ---- */

/* Call once on the vCPU's own thread before its first KVM_RUN. */
int vmras_vcpu_thread_start(struct vmras *v, unsigned int vcpu);

#define VMRAS_EXIT_NOT_MINE 0
#define VMRAS_EXIT_HANDLED 1

/*
 * After every KVM_RUN (run_ret: its return value, 0 or -errno). Turns
 * KVM_RUN -EHWPOISON/-EFAULT with KVM_EXIT_MEMORY_FAULT, an AR SIGBUS that
 * hit this thread, and an MMIO exit inside guest RAM whose page is poisoned
 * or unreadable into one action-required event, and waits until the engine
 * has decided. run may be NULL (only a pending SIGBUS is checked).
 * VMRAS_EXIT_HANDLED: a memory error, taken care of (an MMIO
 * read got all-ones filler); re-enter after vmras_vcpu_pre_run.
 */
int vmras_vcpu_exit(struct vmras *v, unsigned int vcpu, struct kvm_run *run, int run_ret);

/* Before every KVM_RUN: deliver this vCPU's pending machine checks. */
int vmras_vcpu_pre_run(struct vmras *v, unsigned int vcpu);

/*
 * The VMM says a vCPU stopped running (halted for good, failed) or runs
 * again (after a reset). AOs go to the first vCPU that runs; a stopping
 * vCPU's undelivered machine checks move to one that does.
 */
int vmras_vcpu_online(struct vmras *v, unsigned int vcpu, bool online);

/* ---- VMM threads ---- */

/*
 * Copy guest memory without dying on poison: -EHWPOISON (and an event)
 * instead of a fatal SIGBUS; -EFAULT if the range is not guest RAM. The
 * calling thread must not block SIGBUS.
 */
int vmras_copy_from_guest(struct vmras *v, void *dst, uint64_t gpa, size_t len);
/* The same for writes: -EHWPOISON for a poisoned page, nothing written there. */
int vmras_copy_to_guest(struct vmras *v, uint64_t gpa, const void *src, size_t len);

/*
 * Stand in for the hardware: poison the page for real, then deliver the
 * SIGBUS the kernel would (AO: to the early-kill thread, exact address,
 * lsb of the page size; AR: to vCPU `vcpu`'s thread, page-aligned, lsb 12).
 * With signal = false, only poison it: the guest's next touch is the AR.
 * -EFAULT: gpa is not guest RAM; -EINVAL: no such vCPU; -EBUSY: too many
 * injected AOs not yet sent (nothing changed).
 */
int vmras_inject(struct vmras *v, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		 bool signal);

/* A guest reset: poisoned ranges get fresh memory, the registry empties. */
int vmras_guest_reset(struct vmras *v);

#endif
