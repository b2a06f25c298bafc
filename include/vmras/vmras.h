/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libvmras: one path from every source of a guest memory error to a guest
 * that keeps running with nothing else lost.
 *
 *   SIGBUS (any thread) -> signal-safe ring --\
 *   KVM_RUN exits (vcpu) -> vmras_vcpu_exit ---+-> engine thread, in arrival
 *   safe copy, salvage read, vmras_inject ----/    order: translate, record,
 *                                                  contain, decide
 *                                                  -> notice on the vCPU's
 *                                                     thread (arch ops)
 *
 * The library never prints or exits; calls return 0 or -errno (a thread
 * that re-executes an access to poison outside vmras_copy_* dies by
 * SIGBUS's default action, as it would without vmras). A VMM gives it its
 * RAM regions, vCPUs and an architecture (vmras_x86_setup in
 * vmras/x86_mce.h), calls vmras_vcpu_exit() after every KVM_RUN and
 * vmras_vcpu_pre_run() before the next, and gets each outcome through
 * ops.failure. There is one vmras context per process (it owns the SIGBUS
 * handler).
 *
 * Threads: the library runs an engine thread (decides; the only caller of
 * pause_vcpus/resume_vcpus/remap) and a fault-router thread (serves
 * userfaultfd faults: huge-page fill, the VMM's own routes). No library
 * lock is held while a hook runs, so hooks may call back into the library,
 * but for vmras_inject and vmras_guest_reset, which wait for the engine:
 * from a hook the engine runs they return -EDEADLK.
 */
#ifndef VMRAS_VMRAS_H
#define VMRAS_VMRAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmras/event.h"
#include "vmras/memmap.h"
#include "vmras/registry.h"

#pragma GCC visibility push(default)

struct kvm_run;
struct vmras;

struct vmras_policy {
	enum vmras_action ao;		/* AO on guest RAM: default inject */
	enum vmras_action ar;		/* AR on guest RAM: default inject */
	enum vmras_action ar_not_guest;	/* AR outside guest RAM: default fatal */
	enum vmras_action undeliverable;	/* guest cannot take the notice: default reset */
};

/* Guest RAM [gpa, gpa + size) at hva is to be backed by fd at offset. */
struct vmras_remap {
	uint64_t gpa, size;
	void *hva;
	int fd;
	uint64_t offset;
	bool restore;		/* back to the original backing (guest reset) */
};

/* The VMM's side. Hooks are called from library threads and vCPU threads. */
struct vmras_ops {
	void *opaque;
	/*
	 * Make vCPU leave KVM_RUN soon and call vmras_vcpu_pre_run. Must not
	 * block. A vCPU halted inside KVM_RUN (in-kernel HLT) wakes only for a
	 * signal: set kvm_run.immediate_exit and send one (QEMU's kvm_cpu_kick).
	 */
	void (*kick_vcpu)(void *opaque, unsigned int vcpu);
	/* Policy reset / fatal: ask for it; must not wait for vCPUs. */
	void (*request_reset)(void *opaque, const char *why);
	void (*request_stop)(void *opaque, const char *why);
	/* Every outcome (a MEMORY_FAILURE event). */
	void (*failure)(void *opaque, const struct vmras_failure *f);
	/*
	 * Optional, for splitting huge pages: park every vCPU outside KVM_RUN
	 * and return (a vCPU waiting inside a vmras call counts as parked: see
	 * vcpu_blocked), and let them go again. Called by the engine thread.
	 */
	void (*pause_vcpus)(void *opaque);
	void (*resume_vcpus)(void *opaque);
	/* vCPU is waiting inside a vmras call (true) or no longer (false). */
	void (*vcpu_blocked)(void *opaque, unsigned int vcpu, bool blocked);
	/*
	 * Optional. Called while the vCPUs are paused, after the new mapping
	 * is in place and before they run: processes that share guest memory
	 * (vhost-user, VFIO) must switch to fd/offset now. A non-zero return
	 * refuses a split: the mapping goes back and the whole huge page is
	 * lost instead. For a split, subpages not yet filled read as holes
	 * through fd until the library has filled them: a sharer that cannot
	 * wait for that should refuse.
	 */
	int (*remap)(void *opaque, const struct vmras_remap *m);
};

/* Whether a KVM_EXIT_MMIO inside writable guest RAM is a RAM access. */
enum vmras_ram_mmio {
	VMRAS_RAM_MMIO_DETECT,	/* find out once, at vmras_start (a tiny VM) */
	VMRAS_RAM_MMIO_NO,	/* hardware virtualization: never */
	VMRAS_RAM_MMIO_YES,	/* KVM emulates guest instructions: yes */
};

struct vmras_config {
	struct vmras_policy policy;
	struct vmras_ops ops;
	const char *event_log;	/* append each failure as a JSON line, or NULL */
	enum vmras_ram_mmio ram_mmio;
	/*
	 * The durable record: an SQLite database (WAL) that every VMM on the
	 * host may share, or NULL. Opened at vmras_start; one that cannot be
	 * used leaves recording off and the VM running (vmras_record_status).
	 * While it records, an outcome reaches the event log and ops.failure
	 * once it is in the database (its own thread; the engine never waits).
	 */
	const char *record;
	const char *vm_name, *vm_uuid;	/* how the record names this VM */
};

struct vmras_stats {
	uint64_t received[VMRAS_SRC_COUNT];
	uint64_t actions[VMRAS_ACTION_COUNT];
	uint64_t dropped;	/* capture ring full: lost reports (each overflow is reported) */
	uint64_t duplicates;	/* reports of a range already handled */
	uint64_t contained, contain_failed;
	uint64_t notice_delivered, notice_deferred, notice_undeliverable, notice_broadcast;
	uint64_t notice_broadcast_joined;	/* a bystander already in its handler: no copy needed */
	uint64_t notice_broadcast_late;	/* copies not taken before the consuming vCPU went on */
	uint64_t not_guest_ram;
	uint64_t bytes_lost;
	uint64_t log_errors;	/* event log writes that failed */
	uint64_t splits;	/* huge pages replaced by 4 KiB pages */
	uint64_t splits_refused;	/* the VMM's remap hook said no */
	uint64_t split_pause_ns_max;	/* longest vCPU pause for a split */
	uint64_t subpages_salvaged;	/* filled from the old huge page */
	uint64_t uffd_faults;	/* userfaultfd faults served */
	uint64_t uffd_unrouted;	/* faults on a range nobody owns (woken, reported) */
	uint64_t fill_errors;	/* split fill: reads, maps, markers or frees that failed */
	uint64_t reports_lost;	/* reports that could not be queued (no memory, shut down) */
	uint64_t copies_refused;	/* safe copies refused: their range held a known-bad page */
	uint64_t record_dropped;	/* outcomes and changes not recorded (queue full, errors) */
	uint64_t record_errors;	/* record writes that failed (and a record that could not open) */
};

void vmras_policy_default(struct vmras_policy *p);

/* -EINVAL for a policy action out of range (or undeliverable = inject). */
int vmras_new(const struct vmras_config *cfg, struct vmras **out);
/*
 * Stop the engine (it handles what was already reported) and the fault
 * router, restore the previous SIGBUS handler, free. No thread may be
 * inside a vmras call.
 */
void vmras_free(struct vmras *v);

/* Before vmras_start. */
int vmras_add_region(struct vmras *v, const struct vmras_region *r);
int vmras_add_vcpu(struct vmras *v, unsigned int index, int vcpu_fd);
/*
 * Use this userfaultfd instead of opening one; the library owns it from
 * now on (and makes it non-blocking). It must take kernel faults (not
 * UFFD_USER_MODE_ONLY) and have done UFFDIO_API with UFFD_FEATURE_POISON,
 * MISSING_SHMEM/HUGETLBFS and MINOR_SHMEM/HUGETLBFS. Before vmras_start.
 */
int vmras_set_userfaultfd(struct vmras *v, int uffd);
/*
 * Install the SIGBUS handler, start the engine and the fault router.
 * -EINVAL: no architecture was set up, or pause_vcpus without
 * resume_vcpus and vcpu_blocked.
 */
int vmras_start(struct vmras *v);

struct vmras_registry *vmras_get_registry(struct vmras *v);
const struct vmras_memmap *vmras_get_memmap(struct vmras *v);
void vmras_get_stats(struct vmras *v, struct vmras_stats *s);
/*
 * 0: recording into the database; -errno: not (none configured: -ENOENT,
 * why ""; a library built without the record, -Drecord=disabled:
 * -EOPNOTSUPP), with why saying what went wrong in one line.
 */
int vmras_record_status(struct vmras *v, char *why, size_t len);
/*
 * Wait until every outcome reported so far has reached the event log and
 * ops.failure (they follow the record's commit): before a VMM stops
 * listening to them. -EDEADLK from a hook on the record's thread.
 */
int vmras_record_flush(struct vmras *v);

/*
 * What this context can do, and why not. split: a huge page error costs
 * 4 KiB; contain: bad pages can be made unreadable (UFFDIO_POISON).
 */
struct vmras_caps {
	bool contain, split, kernel_faults, ram_mmio;
	bool early_kill;	/* the engine gets the kernel's AO reports (PR_MCE_KILL_EARLY) */
	char contain_why[160], split_why[192];
};
void vmras_get_caps(struct vmras *v, struct vmras_caps *c);

/* ---- userfaultfd: one per process, faults routed by range ---- */

/*
 * A fault on a routed range: resolve it through vmras_userfaultfd(v)
 * (UFFDIO_COPY, ZEROPAGE, CONTINUE, POISON) or wake it. Runs on the fault
 * router's thread; must not wait for a vCPU.
 */
typedef void (*vmras_fault_fn)(void *opaque, uint64_t addr, uint64_t flags);

/*
 * Register [hva, hva + len) with the library's userfaultfd (mode:
 * UFFDIO_REGISTER_MODE_*) and send its faults to fn. -EEXIST: overlaps a
 * route. Ranges the library itself registers (containment, huge-page
 * fill) are its own routes. After vmras_start.
 */
int vmras_uffd_route(struct vmras *v, void *hva, uint64_t len, uint64_t mode,
		     vmras_fault_fn fn, void *opaque);
/* Waits until no handler of the range runs: -EDEADLK from a fault handler. */
int vmras_uffd_unroute(struct vmras *v, void *hva, uint64_t len);
int vmras_userfaultfd(struct vmras *v);

/* ---- vCPU threads ---- */

/* Call once on the vCPU's own thread before its first KVM_RUN. */
int vmras_vcpu_thread_start(struct vmras *v, unsigned int vcpu);

#define VMRAS_EXIT_NOT_MINE 0
#define VMRAS_EXIT_HANDLED 1

/*
 * After every KVM_RUN (run_ret: its return value, 0 or -errno). Turns
 * KVM_RUN -EHWPOISON/-EFAULT with KVM_EXIT_MEMORY_FAULT on a bad page, an
 * AR SIGBUS that hit this thread, and (where KVM emulates guest
 * instructions) an MMIO exit inside writable guest RAM on a poisoned page
 * into one action-required event, and waits until the engine has decided.
 * run may be NULL (only a pending SIGBUS is checked).
 * VMRAS_EXIT_HANDLED: a memory error, taken care of (an MMIO read got
 * all-ones filler); re-enter after vmras_vcpu_pre_run.
 */
int vmras_vcpu_exit(struct vmras *v, unsigned int vcpu, struct kvm_run *run, int run_ret);

/* Before every KVM_RUN: deliver this vCPU's pending notices. */
int vmras_vcpu_pre_run(struct vmras *v, unsigned int vcpu);

/*
 * The VMM says a vCPU stopped running (halted for good, failed) or runs
 * again (after a reset). AOs go to the first vCPU that runs; a stopping
 * vCPU's undelivered AOs move to one that does; its ARs are undeliverable
 * (another CPU must not blame its own instruction).
 */
int vmras_vcpu_online(struct vmras *v, unsigned int vcpu, bool online);

/* ---- VMM threads ---- */

/*
 * Copy guest memory without dying on poison: -EHWPOISON instead of a fatal
 * SIGBUS (with an event when the poison was new; a range holding a page
 * already known bad is refused untouched and counted in copies_refused);
 * -EFAULT if the range is not guest RAM. After -EHWPOISON the destination
 * holds unspecified bytes: copy a multi-page range again page by page to
 * learn which page it was. The calling thread must not block SIGBUS.
 */
int vmras_copy_from_guest(struct vmras *v, void *dst, uint64_t gpa, size_t len);
/* The same for writes: -EHWPOISON for a poisoned page, nothing written there. */
int vmras_copy_to_guest(struct vmras *v, uint64_t gpa, const void *src, size_t len);
/*
 * The same, and on -EHWPOISON *bad_gpa is the 4 KiB page the copy was
 * refused for or met poison in (the lowest known bad page; the page that
 * faulted). memcpy's order is not defined, so other pages of the range
 * may be unread and bad too: a caller moving many pages copies the pages
 * before and after *bad_gpa again, and never touches *bad_gpa twice.
 */
int vmras_copy_from_guest_at(struct vmras *v, void *dst, uint64_t gpa, size_t len,
			     uint64_t *bad_gpa);
int vmras_copy_to_guest_at(struct vmras *v, uint64_t gpa, const void *src, size_t len,
			   uint64_t *bad_gpa);

/*
 * Stand in for the hardware: poison the page for real, then deliver the
 * SIGBUS the kernel would (AO: to the early-kill thread, exact address,
 * lsb of the page size; AR: to vCPU `vcpu`'s thread, page-aligned, lsb 12).
 * With signal = false, only poison it: the guest's next touch is the AR.
 * Carried out by the engine in arrival order; returns when done. -EFAULT:
 * gpa is not guest RAM; -EINVAL: no such vCPU.
 */
int vmras_inject(struct vmras *v, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		 bool signal);

/*
 * A guest reset, with the vCPUs paused: every report that arrived before
 * it is handled first, then poisoned ranges get fresh memory, split huge
 * pages become whole again and the registry empties.
 */
int vmras_guest_reset(struct vmras *v);

#pragma GCC visibility pop

#endif
