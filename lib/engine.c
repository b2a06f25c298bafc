// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The engine: one thread that takes every memory-error event and every
 * command (injection, reset) in arrival order, translates, records,
 * contains the bad page (backing ops, splitting huge pages), decides by
 * policy and hands the notice to the arch ops (notify.c). It is the only
 * thread that changes mappings of guest RAM, so containment, splits,
 * injections and resets never race one another.
 *
 * Arrival order: the SIGBUS ring and the work queue each carry numbers
 * from one counter; the engine takes the lower first. A reset first
 * handles everything still in the ring (reports about the memory it is
 * about to replace).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "arch/arch.h"
#include "internal.h"
#include "memory/backing.h"
#include "record/record.h"
#include "sources/sources.h"
#include "uffd/lazy.h"
#include "uffd/router.h"
#include "uffd/split.h"
#include "util/clock.h"
#include "util/fileio.h"

/*
 * Deferred notices and injected accesses are retried after 1 ms, then
 * less often while they keep waiting (an AMD guest may poll its banks
 * only every few minutes).
 */
#define RETRY_MS_MIN 1
#define RETRY_MS_MAX 16
/* A lazy huge page the engine must split is fetched first, waiting at most this. */
#define LAZY_SETTLE_MS 10000

uint64_t vr_next_seq(struct vmras *v)
{
	return __atomic_add_fetch(&v->seq, 1, __ATOMIC_SEQ_CST);
}

void vr_engine_wake(struct vmras *v)
{
	uint64_t one = 1;

	(void)!write(v->wake_fd, &one, sizeof(one));
}

/* ---- reporting ----------------------------------------------------- */

void vr_report(struct vmras *v, struct vmras_failure *f)
{
	VR_STAT_ADD(v, actions[f->action], 1);
	if (v->record && vr_record_failure(v->record, f, false))
		return;
	vr_report_now(v, f);
}

/*
 * Report and carry out a reset or fatal decision. While recording, the
 * record thread does both, report first: the VMM hears of the error
 * before it acts on it, as without the record.
 */
void vr_report_apply(struct vmras *v, struct vmras_failure *f)
{
	VR_STAT_ADD(v, actions[f->action], 1);
	if (v->record && vr_record_failure(v->record, f, true))
		return;
	vr_apply(v, f);
	vr_report_now(v, f);
}

void vr_report_now(struct vmras *v, const struct vmras_failure *f)
{
	char line[768];
	int n;

	if (v->log_fd >= 0) {
		n = vmras_failure_json(f, line, sizeof(line) - 1);
		if (n > 0) {
			line[n++] = '\n';
			if (write_all(v->log_fd, line, (size_t)n))
				VR_STAT_ADD(v, log_errors, 1);
		} else {
			VR_STAT_ADD(v, log_errors, 1);
		}
	}
	if (v->cfg.ops.failure)
		v->cfg.ops.failure(v->cfg.ops.opaque, f);
}

/* Carry out a reset or fatal decision (the VMM does it asynchronously). */
void vr_apply(struct vmras *v, const struct vmras_failure *f)
{
	if (f->action == VMRAS_ACTION_RESET && v->cfg.ops.request_reset)
		v->cfg.ops.request_reset(v->cfg.ops.opaque, f->detail);
	else if (f->action == VMRAS_ACTION_FATAL && v->cfg.ops.request_stop)
		v->cfg.ops.request_stop(v->cfg.ops.opaque, f->detail);
}

static void report_ignored(struct vmras *v, struct vmras_failure *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report_ignored(struct vmras *v, struct vmras_failure *f, const char *fmt, ...)
{
	va_list ap;

	f->action = VMRAS_ACTION_IGNORE;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	vr_report(v, f);
}

/* ---- deciding ------------------------------------------------------ */

enum plan {
	PLAN_WHOLE,	/* contain the backing page as it is */
	PLAN_SPLIT,	/* split the (huge or 2 MiB) page; poison the named 4 KiB if bad */
	PLAN_SUBPAGE,	/* already 4 KiB pages: poison one more */
	PLAN_INTACT,	/* the named 4 KiB page of a split page is good */
};

static enum plan plan_for(struct vmras *v, const struct vmras_region *r,
			  const struct vmras_failure *f, bool *named_bad, char *why, size_t why_len)
{
	struct vr_split *s;
	enum vr_sub st;

	*named_bad = true;
	if (r->page_size > SMALL_PAGE && vr_backing(r)->can_split &&
	    !vr_split_possible(v, r, why, why_len))
		return PLAN_WHOLE;
	if (!vr_split_possible(v, r, NULL, 0))
		return PLAN_WHOLE;
	s = vr_split_find(v, f->ev.gpa);
	if (!s) {
		/*
		 * KVM names the 4 KiB it touched (lsb 12), a user access the
		 * address it faulted at, though the hardware lost the whole huge
		 * page. Poison only what reads back bad; the fill finds any other.
		 * An arm64 abort KVM passed on is the hardware's word: no read.
		 */
		*named_bad = f->ev.source == VMRAS_SRC_ARM_SEA ||
			     vr_backing(r)->read_back(v, r, f->ev.gpa) != 0;
		return PLAN_SPLIT;
	}
	st = vr_split_state(s, f->ev.gpa);
	if (st == VR_SUB_POISONED)
		return PLAN_SUBPAGE; /* the registry knows it: a duplicate */
	/* A report from before the new mapping was in place is about the old page. */
	if (f->ev.seq <= vr_split_live_seq(s))
		*named_bad = !vr_split_read_back(s, f->ev.gpa);
	if (vr_split_sub_size(s) > SMALL_PAGE)
		return PLAN_SPLIT; /* a 2 MiB page of a split 1 GiB page */
	return *named_bad ? PLAN_SUBPAGE : PLAN_INTACT;
}

/* Returns 0 or -errno; on a failed split, p and f->size say what was lost instead. */
static int contain(struct vmras *v, const struct vmras_region *r, struct vmras_failure *f,
		   enum plan how, struct vmras_poison *p)
{
	struct vr_split_loss loss;
	bool merged;
	int err;

	switch (how) {
	case PLAN_SPLIT:
		err = vr_split_begin(v, r, f->ev.gpa, p->gpa, &loss);
		if (!err)
			return 0;
		/* Could not split: the page was contained whole instead; say why. */
		snprintf(f->detail, sizeof(f->detail), "page not split: %s",
			 err == -ECANCELED ? "the VMM refused the split" : strerror(-err));
		f->size = loss.size;
		p->gpa = loss.gpa;
		p->hva = f->ev.hva & ~(loss.size - 1);
		p->size = loss.size;
		vmras_registry_add(v->registry, p, &merged);
		return loss.err;
	case PLAN_SUBPAGE:
		return vr_split_poison(v, vr_split_find(v, p->gpa), p->gpa);
	default:
		return vr_backing(r)->contain(v, r, p->gpa, p->size, false);
	}
}

/*
 * carried: for a bad page that arrived by migration, its registry state on
 * the source (it is contained and recorded here, never notified again: the
 * notices still due came with it).
 */
static void process(struct vmras *v, const struct vmras_event *ev, uint32_t arch_state,
		    uint32_t gen, uint32_t carried)
{
	struct vmras_failure f = { .ev = *ev, .action_required = ev->kind == VMRAS_AR };
	const struct vmras_region *r = NULL;
	struct vmras_poison entry, p;
	enum vmras_action action;
	bool merged = false, named_bad;
	int err, target, contained_err = 1; /* 1: not contained yet */
	char why[160] = "";
	enum plan how;

	if ((f.ev.valid & VMRAS_EV_HVA) && !(f.ev.valid & VMRAS_EV_GPA) &&
	    !vmras_memmap_hva_to_gpa(v->map, f.ev.hva, &f.ev.gpa))
		f.ev.valid |= VMRAS_EV_GPA;
	if ((f.ev.valid & VMRAS_EV_GPA) && !(f.ev.valid & VMRAS_EV_HVA)) {
		uintptr_t hva;

		if (!vmras_memmap_gpa_to_hva(v->map, f.ev.gpa, &hva)) {
			f.ev.hva = hva;
			f.ev.valid |= VMRAS_EV_HVA;
		}
	}
	if (f.ev.valid & VMRAS_EV_GPA)
		r = vmras_memmap_find_gpa(v->map, f.ev.gpa);
	VR_STAT_ADD(v, received[ev->source], 1);
	if (gen != __atomic_load_n(&v->generation, __ATOMIC_RELAXED)) {
		/* Observed before a guest reset gave that memory back fresh: moot. */
		report_ignored(v, &f, "about memory a guest reset has since replaced");
		return;
	}

	/*
	 * An arm64 abort KVM could not give an address for: nothing to
	 * contain, but the vCPU cannot go on without it (Linux then kills the
	 * task, not the VM): the abort alone.
	 */
	if (ev->source == VMRAS_SRC_ARM_SEA && !(f.ev.valid & VMRAS_EV_GPA) &&
	    (f.ev.valid & VMRAS_EV_VCPU) && v->cfg.policy.ar == VMRAS_ACTION_INJECT) {
		snprintf(f.detail, sizeof(f.detail), "KVM gave no guest address: the abort alone");
		vr_notify(v, &f, ev->vcpu, arch_state);
		return;
	}
	if (!r) {
		VR_STAT_ADD(v, not_guest_ram, 1);
		f.action = ev->kind == VMRAS_AR ? v->cfg.policy.ar_not_guest : VMRAS_ACTION_IGNORE;
		if (!(f.ev.valid & (VMRAS_EV_GPA | VMRAS_EV_HVA)))
			snprintf(f.detail, sizeof(f.detail),
				 "memory error at an address its reporter did not know");
		else if (!(f.ev.valid & VMRAS_EV_HVA))
			snprintf(f.detail, sizeof(f.detail),
				 "memory error at GPA 0x%" PRIx64 " outside guest RAM", f.ev.gpa);
		else
			snprintf(f.detail, sizeof(f.detail),
				 "memory error at HVA 0x%" PRIx64 " outside guest RAM", f.ev.hva);
		vr_report_apply(v, &f);
		return;
	}

	how = plan_for(v, r, &f, &named_bad, why, sizeof(why));
	if (ev->source == VMRAS_SRC_MIGRATION) {
		/* The source lost it: it reads back fine here only because it is new. */
		named_bad = true;
		if (how == PLAN_INTACT)
			how = PLAN_SUBPAGE;
		/* A whole page lost on the source: whole here too. */
		if (1ULL << ev->addr_lsb >= r->page_size)
			how = PLAN_WHOLE;
	}
	/*
	 * A huge page of lazy memory that has not arrived cannot be split
	 * (the split fills from it): fetch it first, or lose it whole.
	 */
	if (how == PLAN_SPLIT) {
		int lazy = vr_lazy_settle(v, f.ev.gpa, LAZY_SETTLE_MS);

		if (lazy) {
			how = PLAN_WHOLE;
			snprintf(why, sizeof(why), "%s", lazy == -EHWPOISON
				 ? "the lazy memory source lost it whole"
				 : "its data never arrived (lazy memory)");
		}
	}
	if (how == PLAN_WHOLE && why[0])
		snprintf(f.detail, sizeof(f.detail), "huge page lost whole: %s", why);
	/* The backing's page size is what the host lost, unless it is split. */
	f.size = how == PLAN_WHOLE ? r->page_size : SMALL_PAGE;
	if (how == PLAN_INTACT) {
		report_ignored(v, &f, "stale: this 4 KiB page is intact since its huge page was split");
		return;
	}
	if (how == PLAN_SPLIT && !named_bad) {
		struct vr_split_loss loss;

		err = vr_split_begin(v, r, f.ev.gpa, VR_SPLIT_NO_BAD, &loss);
		if (!err) {
			report_ignored(v, &f, "page split; this 4 KiB page reads back intact "
				       "(the fill finds the bad one)");
			return;
		}
		/* Contained whole instead: the report stands for all of it. */
		snprintf(f.detail, sizeof(f.detail), "page not split: %s",
			 err == -ECANCELED ? "the VMM refused the split" : strerror(-err));
		f.size = loss.size;
		how = PLAN_WHOLE;
		contained_err = loss.err;
	}
	p = (struct vmras_poison){
		.gpa = f.ev.gpa & ~(f.size - 1),
		.hva = f.ev.hva & ~(f.size - 1),
		.size = f.size,
		.state = VMRAS_PS_REPORTED,
		.source = ev->source,
		.kind = ev->kind,
		.vcpu = (ev->valid & VMRAS_EV_VCPU) ? ev->vcpu : -1,
		.first_ns = ev->time_ns,
		.fault_flags = (ev->valid & VMRAS_EV_FAULT_FLAGS) ? ev->fault_flags : 0,
	};
	err = vmras_registry_add(v->registry, &p, &merged);
	if (!err)
		err = vmras_registry_lookup(v->registry, f.ev.gpa, &entry);
	if (err) {
		/* Still contain it: a bad page must not be read, recorded or not. */
		err = contain(v, r, &f, how, &p);
		f.contained = !err;
		VR_STAT_ADD(v, contain_failed, err ? 1 : 0);
		report_ignored(v, &f, "poison registry full or failed; %s",
			       err ? "not contained" : "contained");
		return;
	}
	/*
	 * An AO for a range already handled adds nothing, nor does the VMM's
	 * own read of it; a guest's access (AR) still must reach the guest.
	 */
	if (merged && (entry.state & (VMRAS_PS_CONTAINED | VMRAS_PS_NOTIFIED)) &&
	    (ev->kind == VMRAS_AO || ev->source == VMRAS_SRC_MC_COPY)) {
		VR_STAT_ADD(v, duplicates, 1);
		f.contained = entry.state & VMRAS_PS_CONTAINED;
		report_ignored(v, &f, "already handled (%" PRIu32 " reports)", entry.reports);
		return;
	}
	if (!(entry.state & VMRAS_PS_CONTAINED)) {
		err = contained_err <= 0 ? contained_err : contain(v, r, &f, how, &p);
		vmras_registry_set_state(v->registry, p.gpa,
					 err ? VMRAS_PS_CONTAIN_FAILED : VMRAS_PS_CONTAINED);
		pthread_mutex_lock(&v->lock);
		if (err) {
			v->stats.contain_failed++;
		} else {
			v->stats.contained++;
			v->stats.bytes_lost += p.size;
		}
		pthread_mutex_unlock(&v->lock);
		f.contained = !err;
		if (err)
			snprintf(f.detail, sizeof(f.detail), "could not contain: %s", strerror(-err));
	} else {
		f.contained = true;
	}

	if (ev->source == VMRAS_SRC_MIGRATION) {
		vmras_registry_set_state(v->registry, p.gpa,
					 carried & (VMRAS_PS_NOTIFIED | VMRAS_PS_IGNORED));
		report_ignored(v, &f, "arrived by migration, poisoned here; %s",
			       carried & VMRAS_PS_NOTIFIED ? "the guest was told on the source"
							   : "not told on the source");
		return;
	}
	action = ev->kind == VMRAS_AO || ev->source == VMRAS_SRC_MC_COPY ? v->cfg.policy.ao
									: v->cfg.policy.ar;
	f.action = action;
	if (action == VMRAS_ACTION_INJECT) {
		pthread_mutex_lock(&v->lock);
		target = -1;
		if (ev->kind == VMRAS_AR && (ev->valid & VMRAS_EV_VCPU) &&
		    ev->source != VMRAS_SRC_MC_COPY)
			target = ev->vcpu;
		else
			for (unsigned int i = 0; i < v->nvcpus && target < 0; i++)
				if (v->vcpus[i].registered && !v->vcpus[i].offline)
					target = (int)i;
		if (target >= 0 && (target >= VR_MAX_VCPUS || !v->vcpus[target].registered))
			target = -1;
		pthread_mutex_unlock(&v->lock);
		if (target < 0) {
			report_ignored(v, &f, "no running vCPU to tell");
			return;
		}
		/* Reported when the vCPU thread has delivered it (or could not). */
		vr_notify(v, &f, target, arch_state);
		return;
	}
	if (action == VMRAS_ACTION_IGNORE)
		vmras_registry_set_state(v->registry, p.gpa, VMRAS_PS_IGNORED);
	else if (!f.detail[0])
		snprintf(f.detail, sizeof(f.detail), "policy %s", vmras_action_name(action));
	vr_report_apply(v, &f);
}

static struct vmras_event capture_event(struct vmras *v, const struct vr_capture *c)
{
	struct vmras_event ev = {
		.valid = VMRAS_EV_HVA,
		.kind = c->si_code == BUS_MCEERR_AO ? VMRAS_AO : VMRAS_AR,
		.source = c->from_copy ? VMRAS_SRC_MC_COPY : VMRAS_SRC_SIGBUS,
		.si_code = c->si_code,
		.addr_lsb = c->lsb,
		.tid = c->tid,
		.hva = c->addr,
		.time_ns = c->time_ns,
		.seq = c->seq,
		.vcpu = vr_vcpu_of_tid(v, c->tid),
	};

	if (ev.vcpu >= 0)
		ev.valid |= VMRAS_EV_VCPU;
	return ev;
}

/* Take the oldest capture from the ring, if its number is below before. */
static bool ring_next(struct vmras *v, uint64_t before)
{
	struct vr_capture c;
	struct vmras_event ev;

	if (!vr_ring_peek(v->ring, &c) || c.seq >= before)
		return false;
	vr_ring_drop_head(v->ring);
	ev = capture_event(v, &c);
	process(v, &ev, 0, c.gen, 0);
	return true;
}

/* Losses are counted where they happen and reported here, once per batch. */
static void report_losses(struct vmras *v)
{
	uint64_t dropped = vr_ring_dropped(v->ring), new_drops, unrouted, new_unrouted;

	pthread_mutex_lock(&v->lock);
	v->stats.dropped = dropped;
	new_drops = dropped - v->dropped_reported;
	v->dropped_reported = dropped;
	unrouted = v->stats.uffd_unrouted;
	new_unrouted = unrouted - v->unrouted_reported;
	v->unrouted_reported = unrouted;
	pthread_mutex_unlock(&v->lock);
	if (new_drops) {
		struct vmras_failure f = { .ev = { .source = VMRAS_SRC_SIGBUS, .vcpu = -1,
						   .time_ns = vr_now_ns() } };

		report_ignored(v, &f, "%" PRIu64 " memory-error reports lost: capture ring full "
			       "(%" PRIu64 " in all)", new_drops, dropped);
	}
	if (new_unrouted) {
		struct vmras_failure f = { .ev = { .source = VMRAS_SRC_SIGBUS, .vcpu = -1,
						   .time_ns = vr_now_ns() } };

		report_ignored(v, &f, "%" PRIu64 " userfaultfd faults on ranges no one serves "
			       "(woken to retry; %" PRIu64 " in all)", new_unrouted, unrouted);
	}
}

/* ---- reset ----------------------------------------------------------- */

static int reset_execute(struct vmras *v)
{
	struct vmras_poison *list;
	size_t n, got;
	int err = 0;

	/* Reports about the memory about to be replaced: handled first, then undone. */
	while (ring_next(v, UINT64_MAX))
		;
	err = vr_split_restore_all(v);
	vr_lazy_guest_reset(v);
	n = vmras_registry_count(v->registry);
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list)
		return -ENOMEM;
	got = vmras_registry_snapshot(v->registry, list, n);
	for (size_t i = 0; i < got && i < n; i++) {
		const struct vmras_region *r = vmras_memmap_find_gpa(v->map, list[i].gpa);
		int e;

		/* Inside a huge page that was split: restored with it above. */
		if (r && list[i].size < r->page_size)
			continue;
		e = r ? vr_backing(r)->restore(v, r, list[i].gpa, list[i].size) : -ENOENT;
		err = err ?: e;
	}
	free(list);
	/* Pages the stand-in poisoned that no report named yet. */
	pthread_mutex_lock(&v->lock);
	n = v->hw_bad.n;
	list = calloc(n ? n : 1, sizeof(*list));
	for (size_t i = 0; list && i < n; i++)
		list[i].gpa = v->hw_bad.gpa[i];
	pthread_mutex_unlock(&v->lock);
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct vmras_region *r = vmras_memmap_find_gpa(v->map, list[i].gpa);
		uint64_t base;
		int e;

		if (!r || vmras_registry_contains(v->registry, list[i].gpa))
			continue;
		base = list[i].gpa & ~(r->page_size - 1);
		e = vr_backing(r)->restore(v, r, base, r->page_size);
		err = err ?: e;
	}
	free(list);
	vmras_registry_clear(v->registry);
	if (v->record)
		vr_record_reset(v->record);
	vr_hw_forget(v);
	vr_notify_drop_all(v, "the guest was reset before it could be told");
	if (v->arch && v->arch->reset)
		v->arch->reset(v->arch_data);
	__atomic_add_fetch(&v->generation, 1, __ATOMIC_SEQ_CST);
	return err;
}

/* ---- the thread ---------------------------------------------------- */

static void run_work(struct vmras *v, struct vr_work *w)
{
	switch (w->kind) {
	case VR_WORK_EVENT:
		process(v, &w->ev, w->arch_state, w->gen, w->carried_state);
		w->result = 0;
		break;
	case VR_WORK_SYNC:
		w->result = 0;
		break;
	case VR_WORK_INJECT:
		w->result = vr_inject_execute(v, w);
		break;
	case VR_WORK_RESET:
		w->result = reset_execute(v);
		break;
	}
}

/* The engine is done with w: wake its waiter, or free it. */
static void finish(struct vmras *v, struct vr_work *w)
{
	pthread_mutex_lock(&v->lock);
	if (w->waiting) {
		w->done = true;
		pthread_cond_broadcast(&v->cond);
	} else {
		free(w);
	}
	pthread_mutex_unlock(&v->lock);
}

static void *engine_thread(void *arg)
{
	struct vmras *v = arg;
	int timeout = -1, retry_ms = RETRY_MS_MIN;
	sigset_t bus;

	__atomic_store_n(&v->engine_tid, vr_gettid(), __ATOMIC_RELAXED);
	/* This thread takes the kernel's early-kill AO reports (PF_MCE_EARLY). */
	__atomic_store_n(&v->early_kill_err,
			 prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) ? -errno : 0,
			 __ATOMIC_RELAXED);
	/* ...which a mask inherited from the VMM must not hold back. */
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	for (;;) {
		struct pollfd pfd = { .fd = v->wake_fd, .events = POLLIN };
		struct vr_work *q;
		uint64_t n;
		bool stop;

		if (poll(&pfd, 1, timeout) > 0)
			(void)!read(v->wake_fd, &n, sizeof(n));
		pthread_mutex_lock(&v->lock);
		stop = v->stopping;
		q = v->queue;
		v->queue = NULL;
		v->queue_tail = &v->queue;
		pthread_mutex_unlock(&v->lock);

		/* Even when stopping: what arrived before the stop is handled. */
		while (q) {
			struct vr_work *next = q->next;

			while (ring_next(v, q->ev.seq))
				;
			run_work(v, q);
			finish(v, q);
			q = next;
		}
		while (ring_next(v, UINT64_MAX))
			;
		report_losses(v);
		if (stop)
			break;
		if (vr_notify_retry(v)) {
			timeout = retry_ms;
			retry_ms = retry_ms * 2 > RETRY_MS_MAX ? RETRY_MS_MAX : retry_ms * 2;
		} else {
			timeout = -1;
			retry_ms = RETRY_MS_MIN;
		}
	}
	return NULL;
}

int vr_engine_submit(struct vmras *v, struct vr_work *w, bool wait)
{
	struct vr_work *q = w;
	int vcpu = -1, result;

	/* A hook (they run on the engine) waiting for the engine would wait forever. */
	if (wait && vr_gettid() == __atomic_load_n(&v->engine_tid, __ATOMIC_RELAXED))
		return -EDEADLK;
	if (!wait) {
		q = malloc(sizeof(*q));
		if (!q)
			return -ENOMEM;
		*q = *w;
	}
	q->next = NULL;
	q->done = false;
	q->waiting = wait;
	pthread_mutex_lock(&v->lock);
	if (v->stopping || !v->engine_started) {
		pthread_mutex_unlock(&v->lock);
		if (!wait)
			free(q);
		return -ESHUTDOWN;
	}
	/* Numbered under the lock: queue order is arrival order. */
	q->ev.seq = vr_next_seq(v);
	*v->queue_tail = q;
	v->queue_tail = &q->next;
	pthread_mutex_unlock(&v->lock);
	vr_engine_wake(v);
	if (!wait)
		return 0;
	/* A vCPU waiting here is as good as parked (the engine may pause them). */
	if (v->cfg.ops.vcpu_blocked) {
		vcpu = (w->ev.valid & VMRAS_EV_VCPU) && w->kind == VR_WORK_EVENT
			       ? w->ev.vcpu
			       : vr_vcpu_of_tid(v, vr_gettid());
		if (vcpu >= 0)
			v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, (unsigned int)vcpu, true);
	}
	/* The engine handles everything queued before it stops: done comes. */
	pthread_mutex_lock(&v->lock);
	while (!q->done)
		pthread_cond_wait(&v->cond, &v->lock);
	result = q->result;
	pthread_mutex_unlock(&v->lock);
	if (vcpu >= 0)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, (unsigned int)vcpu, false);
	return result;
}

int vr_submit_event(struct vmras *v, const struct vmras_event *ev, uint32_t arch_state,
		    bool wait)
{
	struct vr_work w = { .kind = VR_WORK_EVENT, .ev = *ev, .arch_state = arch_state,
			     .gen = __atomic_load_n(&v->generation, __ATOMIC_SEQ_CST) };

	return vr_engine_submit(v, &w, wait);
}

int vmras_guest_reset(struct vmras *v)
{
	struct vr_work w = { .kind = VR_WORK_RESET };
	int err = vr_engine_submit(v, &w, true);

	/* The reports about the old memory reach the VMM before it resets. */
	if (!err && v->record)
		vr_record_flush(v->record);
	return err;
}

int vmras_record_flush(struct vmras *v)
{
	return v->record ? vr_record_flush(v->record) : 0;
}

int vr_engine_start(struct vmras *v)
{
	int err;

	pthread_mutex_lock(&v->lock);
	err = -pthread_create(&v->engine, NULL, engine_thread, v);
	v->engine_started = !err;
	pthread_mutex_unlock(&v->lock);
	return err;
}

void vr_engine_stop(struct vmras *v)
{
	pthread_mutex_lock(&v->lock);
	v->stopping = true;
	pthread_mutex_unlock(&v->lock);
	if (v->engine_started) {
		vr_engine_wake(v);
		pthread_join(v->engine, NULL);
	}
}
