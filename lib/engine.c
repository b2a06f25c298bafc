// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The engine: one thread that consumes every memory-error event, records
 * it, contains the bad page, decides by policy and queues the guest's
 * machine check on the right vCPU. vCPU ioctls happen only on vCPU threads
 * (vmras_vcpu_pre_run), since KVM holds a vCPU's mutex while it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "util/fileio.h"

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#define BUS_MCEERR_AO 5
#endif
#ifndef EHWPOISON
#define EHWPOISON 133
#endif
#define SMALL_PAGE 4096ULL
#define DEFER_RETRY_MS 1

void vmras_policy_default(struct vmras_policy *p)
{
	*p = (struct vmras_policy){
		.ao = VMRAS_ACTION_INJECT,
		.ar = VMRAS_ACTION_INJECT,
		.ar_not_guest = VMRAS_ACTION_FATAL,
		.undeliverable = VMRAS_ACTION_RESET,
		.broadcast = true,
	};
}

void engine_wake(struct vmras *v)
{
	uint64_t one = 1;

	(void)!write(v->wake_fd, &one, sizeof(one));
}

static unsigned int log2_u64(uint64_t x)
{
	return 63u - (unsigned int)__builtin_clzll(x);
}

/* ---- reporting ----------------------------------------------------- */

static void report(struct vmras *v, struct vmras_failure *f)
{
	char line[768];
	int n;

	pthread_mutex_lock(&v->lock);
	v->stats.actions[f->action]++;
	pthread_mutex_unlock(&v->lock);
	if (v->log_fd >= 0) {
		n = vmras_failure_json(f, line, sizeof(line) - 1);
		if (n > 0) {
			line[n++] = '\n';
			if (write_all(v->log_fd, line, (size_t)n)) {
				pthread_mutex_lock(&v->lock);
				v->stats.log_errors++;
				pthread_mutex_unlock(&v->lock);
			}
		}
	}
	if (v->cfg.ops.failure)
		v->cfg.ops.failure(v->cfg.ops.opaque, f);
}

/* Carry out a reset or fatal decision (the VMM does it asynchronously). */
static void apply(struct vmras *v, struct vmras_failure *f)
{
	if (f->action == VMRAS_ACTION_RESET && v->cfg.ops.request_reset)
		v->cfg.ops.request_reset(v->cfg.ops.opaque, f->detail);
	else if (f->action == VMRAS_ACTION_FATAL && v->cfg.ops.request_stop)
		v->cfg.ops.request_stop(v->cfg.ops.opaque, f->detail);
}

/* ---- deciding ------------------------------------------------------ */

/* The vCPU that takes AOs: the first one still running. */
static int first_vcpu(struct vmras *v)
{
	int t = -1;

	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus && t < 0; i++)
		if (v->vcpus[i].registered && !v->vcpus[i].offline)
			t = (int)i;
	pthread_mutex_unlock(&v->lock);
	return t;
}

/*
 * With v->lock held: take back undelivered AO machine checks for the range
 * at gpa (an AR for it is about to be queued); their records go to out.
 */
static unsigned int drop_pending_ao(struct vmras *v, uint64_t gpa, struct vmras_failure *out)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < v->nvcpus; i++) {
		struct vcpu_slot *s = &v->vcpus[i];
		unsigned int k = 0;

		for (unsigned int j = 0; j < s->npending; j++) {
			struct pending_mce *p = &s->pending[j];

			if (!p->broadcast && !p->f.action_required && n < 4 &&
			    (p->f.ev.gpa & ~(p->f.size - 1)) == gpa)
				out[n++] = p->f;
			else
				s->pending[k++] = *p;
		}
		s->npending = k;
	}
	return n;
}

/* Queue the machine check(s) for f on the vCPU thread(s); kick them. */
static void queue_mce(struct vmras *v, struct vmras_failure *f, int target)
{
	unsigned int banks = (unsigned int)(v->cfg.mcg_cap & MCG_BANKCNT_MASK);
	bool ar_to_guest = f->ev.kind == VMRAS_AR && f->ev.source != VMRAS_SRC_MC_COPY;
	struct vmras_mce_params mp = {
		.type = ar_to_guest ? VMRAS_MCE_SRAR : VMRAS_MCE_SRAO,
		.gpa = f->ev.gpa,
		.lsb = log2_u64(f->size),
		/* Emulating host: RIP has already moved past the load. */
		.eipv = f->ev.source != VMRAS_SRC_RAM_MMIO,
		.bank = banks ? banks - 1 : 0,
	};
	struct pending_mce p = { .f = *f };
	bool kick[VMRAS_MAX_VCPUS] = { false };
	struct vmras_failure superseded[4];
	unsigned int nsuperseded = 0;

	if (vmras_x86_mce_encode(&mp, &p.mce)) {
		f->action = VMRAS_ACTION_IGNORE;
		snprintf(f->detail, sizeof(f->detail), "cannot encode a machine check for this error");
		report(v, f);
		return;
	}
	pthread_mutex_lock(&v->lock);
	if (v->vcpus[target].npending == VCPU_MAX_PENDING) {
		v->stats.mce_undeliverable++;
		pthread_mutex_unlock(&v->lock);
		f->action = v->cfg.policy.undeliverable;
		snprintf(f->detail, sizeof(f->detail),
			 "vCPU %d has %d machine checks waiting already", target, VCPU_MAX_PENDING);
		apply(v, f);
		report(v, f);
		return;
	}
	if (ar_to_guest)
		nsuperseded = drop_pending_ao(v, f->ev.gpa & ~(f->size - 1), superseded);
	v->vcpus[target].pending[v->vcpus[target].npending++] = p;
	kick[target] = true;
	if (ar_to_guest && v->cfg.policy.broadcast) {
		struct pending_mce b = { .broadcast = true };
		struct vmras_mce_params bp = { .type = VMRAS_MCE_BROADCAST, .lsb = 12,
					       .bank = banks > 1 ? 1 : 0 };

		vmras_x86_mce_encode(&bp, &b.mce);
		for (unsigned int i = 0; i < v->nvcpus; i++) {
			struct vcpu_slot *s = &v->vcpus[i];

			if ((int)i == target || !s->registered || s->npending == VCPU_MAX_PENDING)
				continue;
			s->pending[s->npending++] = b;
			kick[i] = true;
		}
	}
	pthread_mutex_unlock(&v->lock);
	for (unsigned int i = 0; i < nsuperseded; i++) {
		superseded[i].action = VMRAS_ACTION_IGNORE;
		snprintf(superseded[i].detail, sizeof(superseded[i].detail),
			 "superseded by an action-required error on vCPU %d", target);
		report(v, &superseded[i]);
	}
	for (unsigned int i = 0; i < v->nvcpus; i++)
		if (kick[i] && v->cfg.ops.kick_vcpu)
			v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, i);
}

enum plan {
	PLAN_WHOLE,	/* contain the backing page as it is */
	PLAN_SPLIT,	/* split the huge page, poison 4 KiB of it */
	PLAN_SUBPAGE,	/* already split: poison one more 4 KiB page */
	PLAN_INTACT,	/* an AR from before the split, on a page that is fine */
};

static enum plan huge_page_plan(struct vmras *v, const struct vmras_region *r,
				const struct vmras_failure *f)
{
	const struct split *s;
	enum plan plan;

	if (r->backing != VMRAS_BACKING_HUGETLB || r->page_size <= SMALL_PAGE ||
	    !split_possible(v))
		return PLAN_WHOLE;
	/*
	 * The reported address's 4 KiB is taken as bad. Older kernels name only
	 * the huge page's base: subpage 0 may then be lost for nothing, and the
	 * salvage read's EIO finds the one that really is bad.
	 */
	pthread_mutex_lock(&v->lock);
	s = split_find(v, f->ev.gpa);
	if (!s)
		plan = PLAN_SPLIT;
	else if (s->state[(f->ev.gpa - s->gpa) / SMALL_PAGE] == SUB_POISONED)
		plan = PLAN_SUBPAGE; /* the registry knows it: a duplicate */
	else if (f->ev.kind == VMRAS_AR && f->ev.time_ns < s->t_live_rt)
		/*
		 * Reported before the 4 KiB mapping was in place (a vCPU reporting
		 * an access cannot be parked until it has reported it): the access
		 * hit the old, wholly poisoned huge page.
		 */
		plan = PLAN_INTACT;
	else
		plan = PLAN_SUBPAGE;
	pthread_mutex_unlock(&v->lock);
	return plan;
}

static void process(struct vmras *v, const struct vmras_event *ev)
{
	struct vmras_failure f = { .ev = *ev, .action_required = ev->kind == VMRAS_AR };
	const struct vmras_region *r = NULL;
	struct vmras_poison entry, p;
	enum vmras_action action;
	bool merged = false;
	enum plan how;
	int err, target;

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
	pthread_mutex_lock(&v->lock);
	v->stats.received[ev->source]++;
	pthread_mutex_unlock(&v->lock);

	if (!r) {
		pthread_mutex_lock(&v->lock);
		v->stats.not_guest_ram++;
		pthread_mutex_unlock(&v->lock);
		f.action = ev->kind == VMRAS_AR ? v->cfg.policy.ar_not_guest : VMRAS_ACTION_IGNORE;
		snprintf(f.detail, sizeof(f.detail),
			 "memory error at HVA 0x%" PRIx64 " outside guest RAM", f.ev.hva);
		apply(v, &f);
		report(v, &f);
		return;
	}

	/* The memory map's page size is what the host really lost... */
	f.size = r->page_size;
	/* ...unless a huge page can be split: then 4 KiB. */
	how = huge_page_plan(v, r, &f);
	if (how == PLAN_INTACT) {
		f.action = VMRAS_ACTION_IGNORE;
		snprintf(f.detail, sizeof(f.detail),
			 "stale: this 4 KiB page is intact since its huge page was split");
		report(v, &f);
		return;
	}
	if (how != PLAN_WHOLE)
		f.size = SMALL_PAGE;
	p = (struct vmras_poison){
		.gpa = f.ev.gpa & ~(f.size - 1),
		.hva = f.ev.hva & ~(f.size - 1),
		.size = f.size,
		.state = VMRAS_PS_REPORTED,
		.source = ev->source,
		.kind = ev->kind,
		.vcpu = (ev->valid & VMRAS_EV_VCPU) ? ev->vcpu : -1,
		.first_ns = ev->time_ns,
	};
	err = vmras_registry_add(v->registry, &p, &merged);
	if (err || vmras_registry_lookup(v->registry, f.ev.gpa, &entry)) {
		f.action = VMRAS_ACTION_IGNORE;
		snprintf(f.detail, sizeof(f.detail), "poison registry: %s", strerror(-err));
		report(v, &f);
		return;
	}
	/* An AO for a range already handled adds nothing; an AR still must reach the guest. */
	if (merged && (entry.state & (VMRAS_PS_CONTAINED | VMRAS_PS_NOTIFIED)) &&
	    ev->kind == VMRAS_AO) {
		pthread_mutex_lock(&v->lock);
		v->stats.duplicates++;
		pthread_mutex_unlock(&v->lock);
		f.action = VMRAS_ACTION_IGNORE;
		f.contained = entry.state & VMRAS_PS_CONTAINED;
		snprintf(f.detail, sizeof(f.detail), "already handled (%" PRIu32 " reports)",
			 entry.reports);
		report(v, &f);
		return;
	}
	if (!(entry.state & VMRAS_PS_CONTAINED)) {
		if (how == PLAN_SPLIT) {
			err = split_begin(v, r, f.ev.gpa & ~(r->page_size - 1), p.gpa);
			if (err) {
				/* Could not split: lose the whole huge page, and say why. */
				snprintf(f.detail, sizeof(f.detail), "huge page not split: %s",
					 strerror(-err));
				f.size = r->page_size;
				p.gpa = f.ev.gpa & ~(f.size - 1);
				p.size = f.size;
				vmras_registry_add(v->registry, &p, &merged);
				err = contain_range(v, r, p.gpa, p.size, false);
			}
		} else if (how == PLAN_SUBPAGE) {
			err = split_poison(v, p.gpa);
		} else {
			err = contain_range(v, r, p.gpa, p.size, false);
		}
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

	action = ev->kind == VMRAS_AO || ev->source == VMRAS_SRC_MC_COPY ? v->cfg.policy.ao
									: v->cfg.policy.ar;
	f.action = action;
	if (action == VMRAS_ACTION_INJECT) {
		target = (ev->kind == VMRAS_AR && (ev->valid & VMRAS_EV_VCPU) &&
			  ev->source != VMRAS_SRC_MC_COPY) ? ev->vcpu : first_vcpu(v);
		if (target < 0 || !v->vcpus[target].registered) {
			f.action = VMRAS_ACTION_IGNORE;
			snprintf(f.detail, sizeof(f.detail), "no running vCPU to tell");
			report(v, &f);
			return;
		}
		/* Reported when the vCPU thread has delivered it (or could not). */
		queue_mce(v, &f, target);
		return;
	}
	if (action == VMRAS_ACTION_IGNORE)
		vmras_registry_set_state(v->registry, p.gpa, VMRAS_PS_IGNORED);
	else if (!f.detail[0])
		snprintf(f.detail, sizeof(f.detail), "policy %s", vmras_action_name(action));
	apply(v, &f);
	report(v, &f);
}

/* ---- the thread ---------------------------------------------------- */

static struct vmras_event slot_event(struct vmras *v, const struct capture_slot *s)
{
	struct vmras_event ev = {
		.valid = VMRAS_EV_HVA,
		.kind = s->si_code == BUS_MCEERR_AO ? VMRAS_AO : VMRAS_AR,
		.source = s->from_copy ? VMRAS_SRC_MC_COPY : VMRAS_SRC_SIGBUS,
		.si_code = s->si_code,
		.addr_lsb = s->lsb,
		.tid = s->tid,
		.hva = s->addr,
		.time_ns = s->time_ns,
		.vcpu = -1,
	};

	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus; i++)
		if (v->vcpus[i].registered && v->vcpus[i].tid == s->tid) {
			ev.vcpu = (int)i;
			ev.valid |= VMRAS_EV_VCPU;
		}
	pthread_mutex_unlock(&v->lock);
	return ev;
}

static bool any_deferred(struct vmras *v, bool *kick)
{
	bool any = false;

	for (unsigned int i = 0; i < v->nvcpus; i++) {
		kick[i] = v->vcpus[i].raise_ar;
		any |= kick[i];
		for (unsigned int k = 0; k < v->vcpus[i].npending; k++)
			if (v->vcpus[i].pending[k].deferred)
				kick[i] = any = true;
	}
	return any;
}

/* The engine is done with q: wake its waiter, or free it. */
static void finish(struct vmras *v, struct submitted *q)
{
	pthread_mutex_lock(&v->lock);
	if (q->waiting) {
		q->done = true;
		pthread_cond_broadcast(&v->cond);
	} else {
		free(q);
	}
	pthread_mutex_unlock(&v->lock);
}

static void *engine_thread(void *arg)
{
	struct vmras *v = arg;
	bool kick[VMRAS_MAX_VCPUS];
	int timeout = -1;
	sigset_t bus;

	/* This thread takes the kernel's early-kill AO reports (PF_MCE_EARLY)... */
	prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0);
	/* ...which a mask inherited from the VMM must not hold back. */
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	for (;;) {
		struct pollfd pfd = { .fd = v->wake_fd, .events = POLLIN };
		struct capture_slot s;
		struct submitted *q;
		uint64_t n;
		unsigned int nraise;
		bool stop;

		if (poll(&pfd, 1, timeout) > 0)
			(void)!read(v->wake_fd, &n, sizeof(n));

		/*
		 * work_lock before looking: an injection (poison + its AO) is then
		 * seen whole, and its AO goes before any access it provoked.
		 */
		pthread_mutex_lock(&v->work_lock);
		pthread_mutex_lock(&v->lock);
		stop = v->stopping;
		nraise = v->nraise_ao;
		q = v->queue;
		v->queue = NULL;
		v->queue_tail = &v->queue;
		pthread_mutex_unlock(&v->lock);
		/*
		 * Injected AOs: what memory_failure() sends the early-kill thread,
		 * one signal at a time (a pending SIGBUS does not queue twice).
		 */
		for (unsigned int i = 0; i < nraise; i++) {
			pthread_mutex_lock(&v->lock);
			uint64_t hva = v->raise_ao[i].hva;
			unsigned int lsb = v->raise_ao[i].lsb;
			pthread_mutex_unlock(&v->lock);

			capture_raise_sigbus(BUS_MCEERR_AO, hva, lsb);
		}
		if (nraise) {
			pthread_mutex_lock(&v->lock);
			memmove(v->raise_ao, v->raise_ao + nraise,
				(v->nraise_ao - nraise) * sizeof(v->raise_ao[0]));
			v->nraise_ao -= nraise;
			if (v->nraise_ao)
				engine_wake(v);
			pthread_mutex_unlock(&v->lock);
		}

		/* Even when stopping: what arrived before the stop is handled. */
		while (capture_pop(v, &s)) {
			struct vmras_event ev = slot_event(v, &s);

			process(v, &ev);
		}
		while (q) {
			struct submitted *next = q->next;

			process(v, &q->ev);
			finish(v, q);
			q = next;
		}
		pthread_mutex_unlock(&v->work_lock);
		if (stop)
			break;

		pthread_mutex_lock(&v->lock);
		v->stats.dropped = __atomic_load_n(&v->ring->dropped, __ATOMIC_RELAXED);
		timeout = any_deferred(v, kick) ? DEFER_RETRY_MS : -1;
		pthread_mutex_unlock(&v->lock);
		for (unsigned int i = 0; timeout > 0 && i < v->nvcpus; i++)
			if (kick[i] && v->cfg.ops.kick_vcpu)
				v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, i);
	}
	return NULL;
}

/* Hand an event to the engine; with wait, return once it was processed. */
int engine_submit(struct vmras *v, const struct vmras_event *ev, bool wait)
{
	struct submitted *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->ev = *ev;
	q->waiting = wait;
	pthread_mutex_lock(&v->lock);
	if (v->stopping || !v->engine_started) {
		pthread_mutex_unlock(&v->lock);
		free(q);
		return -ESHUTDOWN;
	}
	*v->queue_tail = q;
	v->queue_tail = &q->next;
	pthread_mutex_unlock(&v->lock);
	engine_wake(v);
	if (!wait)
		return 0;
	/* A vCPU waiting here is as good as parked (the engine may pause them). */
	if (ev->valid & VMRAS_EV_VCPU && v->cfg.ops.vcpu_blocked)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, (unsigned int)ev->vcpu, true);
	/* The engine handles everything queued before it stops: done comes. */
	pthread_mutex_lock(&v->lock);
	while (!q->done)
		pthread_cond_wait(&v->cond, &v->lock);
	pthread_mutex_unlock(&v->lock);
	if (ev->valid & VMRAS_EV_VCPU && v->cfg.ops.vcpu_blocked)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, (unsigned int)ev->vcpu, false);
	free(q);
	return 0;
}

/* ---- setup --------------------------------------------------------- */

int vmras_new(const struct vmras_config *cfg, struct vmras **out)
{
	const struct vmras_policy *pol = &cfg->policy;
	struct vmras *v;
	int err;

	if ((unsigned int)pol->ao >= VMRAS_ACTION_COUNT ||
	    (unsigned int)pol->ar >= VMRAS_ACTION_COUNT ||
	    (unsigned int)pol->ar_not_guest >= VMRAS_ACTION_COUNT ||
	    (unsigned int)pol->undeliverable >= VMRAS_ACTION_COUNT ||
	    pol->undeliverable == VMRAS_ACTION_INJECT)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cfg = *cfg;
	v->uffd = v->wake_fd = v->log_fd = v->worker_wake = -1;
	v->queue_tail = &v->queue;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->work_lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->ring = calloc(1, sizeof(*v->ring));
	if (!v->ring) {
		err = -ENOMEM;
		goto err;
	}
	for (uint64_t i = 0; i < RING_SIZE; i++)
		v->ring->slots[i].seq = i;
	err = vmras_memmap_new(&v->map);
	if (err)
		goto err;
	err = vmras_registry_new(&v->registry);
	if (err)
		goto err;
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->wake_fd < 0) {
		err = -errno;
		goto err;
	}
	if (cfg->event_log) {
		v->log_fd = open(cfg->event_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (v->log_fd < 0) {
			err = -errno;
			goto err;
		}
	}
	/* Without userfaultfd POISON the engine still runs; containment fails and says so. */
	v->uffd_err = contain_open_uffd(v);
	*out = v;
	return 0;
err:
	vmras_free(v);
	return err;
}

void vmras_free(struct vmras *v)
{
	if (!v)
		return;
	/* The engine first: it handles what is queued and raises nothing more. */
	pthread_mutex_lock(&v->lock);
	v->stopping = true;
	pthread_mutex_unlock(&v->lock);
	if (v->engine_started) {
		engine_wake(v);
		pthread_join(v->engine, NULL);
	}
	/* Then the handler, waiting out any that is running right now. */
	capture_uninstall(v);
	split_worker_stop(v);
	if (v->uffd >= 0)
		close(v->uffd);
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	if (v->log_fd >= 0)
		close(v->log_fd);
	vmras_registry_free(v->registry);
	vmras_memmap_free(v->map);
	free(v->ring);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->work_lock);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int vmras_add_region(struct vmras *v, const struct vmras_region *r)
{
	return vmras_memmap_add(v->map, r);
}

int vmras_add_vcpu(struct vmras *v, unsigned int index, int vcpu_fd)
{
	if (index >= VMRAS_MAX_VCPUS || vcpu_fd < 0)
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	v->vcpus[index].registered = true;
	v->vcpus[index].fd = vcpu_fd;
	v->vcpus[index].last_srar_page = ~0ULL;
	if (index + 1 > v->nvcpus)
		v->nvcpus = index + 1;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

int vmras_start(struct vmras *v)
{
	int err = capture_install(v);

	if (err)
		return err;
	/* Huge-page splitting needs the VMM's pause hooks and the fault worker. */
	if (v->cfg.ops.pause_vcpus && v->cfg.ops.resume_vcpus) {
		err = split_worker_start(v);
		if (err) {
			capture_uninstall(v);
			return err;
		}
	}
	pthread_mutex_lock(&v->lock);
	err = -pthread_create(&v->engine, NULL, engine_thread, v);
	v->engine_started = !err;
	pthread_mutex_unlock(&v->lock);
	if (err)
		capture_uninstall(v);
	return err;
}

struct vmras_registry *vmras_get_registry(struct vmras *v)
{
	return v->registry;
}

const struct vmras_memmap *vmras_get_memmap(struct vmras *v)
{
	return v->map;
}

void vmras_get_stats(struct vmras *v, struct vmras_stats *s)
{
	pthread_mutex_lock(&v->lock);
	*s = v->stats;
	s->dropped = __atomic_load_n(&v->ring->dropped, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&v->lock);
}

/* ---- vCPU threads -------------------------------------------------- */

int vmras_vcpu_online(struct vmras *v, unsigned int vcpu, bool online)
{
	struct pending_mce moved[VCPU_MAX_PENDING];
	unsigned int nmoved = 0;
	int target = -1;

	if (vcpu >= VMRAS_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	v->vcpus[vcpu].offline = !online;
	if (!online) {
		struct vcpu_slot *s = &v->vcpus[vcpu];

		for (unsigned int i = 0; i < s->npending; i++)
			if (!s->pending[i].broadcast)
				moved[nmoved++] = s->pending[i];
		s->npending = 0;
	}
	pthread_mutex_unlock(&v->lock);
	if (!nmoved)
		return 0;
	/* Its machine checks go to a vCPU that still runs, or are reported. */
	target = first_vcpu(v);
	for (unsigned int i = 0; i < nmoved; i++) {
		if (target >= 0) {
			pthread_mutex_lock(&v->lock);
			if (v->vcpus[target].npending < VCPU_MAX_PENDING) {
				v->vcpus[target].pending[v->vcpus[target].npending++] = moved[i];
				pthread_mutex_unlock(&v->lock);
				continue;
			}
			pthread_mutex_unlock(&v->lock);
		}
		moved[i].f.action = VMRAS_ACTION_IGNORE;
		snprintf(moved[i].f.detail, sizeof(moved[i].f.detail),
			 "vCPU %u stopped before it could be told; no other vCPU runs", vcpu);
		report(v, &moved[i].f);
	}
	if (target >= 0 && v->cfg.ops.kick_vcpu)
		v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, (unsigned int)target);
	return 0;
}

int vmras_vcpu_thread_start(struct vmras *v, unsigned int vcpu)
{
	if (vcpu >= VMRAS_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	capture_set_vcpu_thread((int)vcpu);
	pthread_mutex_lock(&v->lock);
	v->vcpus[vcpu].tid = vmras__gettid();
	pthread_mutex_unlock(&v->lock);
	return 0;
}

/* Can this process read the byte at hva? (No signal: process_vm_readv.) */
static bool readable(uint64_t hva)
{
	char b;
	struct iovec local = { &b, 1 }, remote = { (void *)(uintptr_t)hva, 1 };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1;
}

static bool page_is_bad(struct vmras *v, uint64_t gpa)
{
	uintptr_t hva;

	if (vmras_registry_contains(v->registry, gpa))
		return true;
	return !vmras_memmap_gpa_to_hva(v->map, gpa, &hva) && !readable(hva);
}

/* Complete an MMIO exit on good RAM with the RAM itself. */
static int complete_mmio(struct vmras *v, struct kvm_run *run)
{
	uint32_t len = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : 0;

	if (!len)
		return -EINVAL;
	return run->mmio.is_write
		       ? vmras_copy_to_guest(v, run->mmio.phys_addr, run->mmio.data, len)
		       : vmras_copy_from_guest(v, run->mmio.data, run->mmio.phys_addr, len);
}

int vmras_vcpu_exit(struct vmras *v, unsigned int vcpu, struct kvm_run *run, int run_ret)
{
	struct vmras_event ev = {
		.kind = VMRAS_AR,
		.vcpu = (int)vcpu,
		.valid = VMRAS_EV_VCPU,
		.tid = vmras__gettid(),
		.addr_lsb = 12,
	};
	unsigned int lsb;
	uint64_t hva;
	int code, err;

	if (vcpu >= VMRAS_MAX_VCPUS)
		return -EINVAL;
	ev.time_ns = vmras__now_ns();
	/* (b) KVM's SIGBUS BUS_MCEERR_AR arrived on this vCPU thread. */
	if (capture_take_vcpu_ar(&hva, &lsb, &code)) {
		ev.source = VMRAS_SRC_SIGBUS;
		ev.valid |= VMRAS_EV_HVA;
		ev.hva = hva;
		ev.addr_lsb = lsb;
		ev.si_code = code;
		return engine_submit(v, &ev, true) ?: VMRAS_EXIT_HANDLED;
	}
	/* (a) KVM_RUN failed on a page it could not fault in. */
	if (run && (run_ret == -EHWPOISON || run_ret == -EFAULT) &&
	    run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		const struct kabi_kvm_memory_fault *mf = kabi_kvm_run_memory_fault(run);

		if (run_ret == -EFAULT && !page_is_bad(v, mf->gpa))
			return VMRAS_EXIT_NOT_MINE; /* e.g. a private/shared conversion */
		ev.source = VMRAS_SRC_MEMORY_FAULT;
		ev.valid |= VMRAS_EV_GPA;
		ev.gpa = mf->gpa;
		return engine_submit(v, &ev, true) ?: VMRAS_EXIT_HANDLED;
	}
	/* (c) Emulating host: an MMIO exit inside RAM on a bad page. */
	if (run && run_ret == 0 && run->exit_reason == KVM_EXIT_MMIO &&
	    vmras_memmap_find_gpa(v->map, run->mmio.phys_addr) &&
	    page_is_bad(v, run->mmio.phys_addr)) {
		/* KVM completes the read with this before the #MC: never real data. */
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		ev.source = VMRAS_SRC_RAM_MMIO;
		ev.valid |= VMRAS_EV_GPA;
		ev.gpa = run->mmio.phys_addr;
		err = engine_submit(v, &ev, true);
		if (err)
			return err;
		/* A huge page split meanwhile may have made it good again: use it. */
		if (!page_is_bad(v, run->mmio.phys_addr))
			complete_mmio(v, run);
		return VMRAS_EXIT_HANDLED;
	}
	/* Emulating host: RAM the emulator could not map just then, but good now. */
	if (run && run_ret == 0 && run->exit_reason == KVM_EXIT_MMIO &&
	    vmras_memmap_find_gpa(v->map, run->mmio.phys_addr) &&
	    complete_mmio(v, run) == 0)
		return VMRAS_EXIT_HANDLED;
	return VMRAS_EXIT_NOT_MINE;
}

/* Deliver one queued machine check; false if it must wait (MCIP). */
static bool deliver(struct vmras *v, struct vcpu_slot *s, struct pending_mce *p)
{
	struct vmras_failure *f = &p->f;
	uint64_t page = f->ev.gpa & ~(SMALL_PAGE - 1);
	int r = vmras_x86_mce_deliver(s->fd, v->cfg.mcg_cap, &p->mce);

	if (p->broadcast) {
		/* A bystander busy with its own #MC simply does not see this one. */
		if (r == VMRAS_MCE_DELIVERED) {
			pthread_mutex_lock(&v->lock);
			v->stats.mce_broadcast++;
			pthread_mutex_unlock(&v->lock);
		}
		return true;
	}
	if (r == VMRAS_MCE_DELIVERED) {
		if (f->action_required)
			s->last_srar_page = page;
		f->recipient = VMRAS_RECIPIENT_GUEST;
		f->action = VMRAS_ACTION_INJECT;
		vmras_registry_set_state(v->registry, f->ev.gpa, VMRAS_PS_NOTIFIED);
		pthread_mutex_lock(&v->lock);
		v->stats.mce_delivered++;
		pthread_mutex_unlock(&v->lock);
		report(v, f);
		return true;
	}
	if (r == VMRAS_MCE_BUSY && !f->action_required) {
		/* An AO waits until the guest is done with the last one (QEMU drops it). */
		if (!p->deferred) {
			p->deferred = true;
			pthread_mutex_lock(&v->lock);
			v->stats.mce_deferred++;
			pthread_mutex_unlock(&v->lock);
		}
		return false;
	}
	if (r == VMRAS_MCE_BUSY && f->action_required && s->last_srar_page == page) {
		/*
		 * The same access again before the guest took the machine check
		 * for it (a string instruction the emulator continues): not a
		 * second error.
		 */
		f->action = VMRAS_ACTION_IGNORE;
		snprintf(f->detail, sizeof(f->detail),
			 "repeat of the access whose machine check the guest is taking");
		report(v, f);
		return true;
	}
	f->recursive = r == VMRAS_MCE_BUSY;
	f->action = v->cfg.policy.undeliverable;
	if (r < 0)
		snprintf(f->detail, sizeof(f->detail), "machine check delivery failed: %s",
			 strerror(-r));
	else
		snprintf(f->detail, sizeof(f->detail), "%s", f->recursive
			 ? "action-required error while the guest still handled a machine check"
			 : vmras_mce_delivery_name(r));
	pthread_mutex_lock(&v->lock);
	v->stats.mce_undeliverable++;
	pthread_mutex_unlock(&v->lock);
	apply(v, f);
	report(v, f);
	return true;
}

int vmras_vcpu_pre_run(struct vmras *v, unsigned int vcpu)
{
	struct pending_mce todo[VCPU_MAX_PENDING];
	struct vcpu_slot *s;
	unsigned int n, i;
	bool raise_ar;
	uint64_t ar_hva;

	if (vcpu >= VMRAS_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	s = &v->vcpus[vcpu];
	pthread_mutex_lock(&v->lock);
	raise_ar = s->raise_ar;
	ar_hva = s->raise_ar_hva;
	s->raise_ar = false;
	pthread_mutex_unlock(&v->lock);
	if (raise_ar) {
		bool busy = false;

		/*
		 * A guest inside its #MC handler touches no data: the injected
		 * access waits until it is out, as a real one would.
		 */
		if (!vmras_x86_mce_in_progress(s->fd, &busy) && busy) {
			pthread_mutex_lock(&v->lock);
			s->raise_ar = true;
			pthread_mutex_unlock(&v->lock);
			engine_wake(v); /* it kicks us again shortly */
			raise_ar = false;
		}
	}
	if (raise_ar) {
		/* Injected AR: what KVM sends the vCPU thread that touched poison. */
		int r = capture_raise_sigbus(BUS_MCEERR_AR, ar_hva, 12);

		if (r)
			return r;
		vmras_vcpu_exit(v, vcpu, NULL, 0);
	}

	pthread_mutex_lock(&v->lock);
	n = 0;
	/*
	 * Action-required first: an AO or a bystander's broadcast delivered
	 * before it would set MCIP and turn the AR into a recursive one. AOs
	 * then wait their turn; broadcasts to a busy vCPU are dropped.
	 */
	for (int pass = 0; pass < 3; pass++)
		for (i = 0; i < s->npending; i++) {
			const struct pending_mce *p = &s->pending[i];
			int rank = p->broadcast ? 2 : p->f.action_required ? 0 : 1;

			if (rank == pass)
				todo[n++] = *p;
		}
	s->npending = 0;
	pthread_mutex_unlock(&v->lock);

	for (i = 0; i < n; i++)
		if (!deliver(v, s, &todo[i]))
			break;
	if (i < n) {
		/* Put the rest back in front, in order, for the next try. */
		struct pending_mce over[VCPU_MAX_PENDING];
		unsigned int rest = n - i, keep, nover = 0;

		pthread_mutex_lock(&v->lock);
		keep = s->npending;
		if (rest + keep > VCPU_MAX_PENDING) {
			/* Queued meanwhile and no room: reported below, not lost. */
			nover = rest + keep - VCPU_MAX_PENDING;
			memcpy(over, s->pending + keep - nover, nover * sizeof(over[0]));
			keep -= nover;
			v->stats.mce_undeliverable += nover;
		}
		memmove(s->pending + rest, s->pending, keep * sizeof(s->pending[0]));
		memcpy(s->pending, todo + i, rest * sizeof(todo[0]));
		s->npending = rest + keep;
		pthread_mutex_unlock(&v->lock);
		for (unsigned int k = 0; k < nover; k++) {
			if (over[k].broadcast)
				continue;
			over[k].f.action = v->cfg.policy.undeliverable;
			snprintf(over[k].f.detail, sizeof(over[k].f.detail),
				 "vCPU %u has %d machine checks waiting already", vcpu,
				 VCPU_MAX_PENDING);
			apply(v, &over[k].f);
			report(v, &over[k].f);
		}
		engine_wake(v); /* it retries in DEFER_RETRY_MS */
	}
	return 0;
}

/* ---- VMM threads --------------------------------------------------- */

/*
 * Copy between guest RAM and buf without dying on poison: a page the
 * registry knows is refused untouched; one nobody knew about raises SIGBUS,
 * which the handler records and turns into a jump back here.
 */
static int safe_copy(struct vmras *v, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
	const struct vmras_region *r = vmras_memmap_find_gpa(v->map, gpa);
	struct vmras_event ev = {
		.kind = VMRAS_AR, .source = VMRAS_SRC_MC_COPY, .valid = VMRAS_EV_GPA,
		.addr_lsb = 12, .vcpu = -1,
	};
	volatile char *ram;
	sigjmp_buf jb;

	if (!r || len > r->size - (gpa - r->gpa))
		return -EFAULT;
	ram = (char *)r->hva + (gpa - r->gpa);
	for (uint64_t a = gpa & ~(SMALL_PAGE - 1); a < gpa + len; a += SMALL_PAGE)
		if (vmras_registry_contains(v->registry, a)) {
			if (!to_guest) {
				/* A read of a known bad page is still worth a record. */
				ev.gpa = a;
				ev.tid = vmras__gettid();
				ev.time_ns = vmras__now_ns();
				engine_submit(v, &ev, false);
			}
			return -EHWPOISON;
		}
	if (sigsetjmp(jb, 1))
		return -EHWPOISON;
	capture_arm_copy(&jb);
	for (size_t i = 0; i < len; i++) {
		if (to_guest)
			ram[i] = ((const char *)buf)[i];
		else
			((char *)buf)[i] = ram[i];
	}
	capture_disarm_copy();
	return 0;
}

int vmras_copy_from_guest(struct vmras *v, void *dst, uint64_t gpa, size_t len)
{
	return safe_copy(v, gpa, dst, len, false);
}

int vmras_copy_to_guest(struct vmras *v, uint64_t gpa, const void *src, size_t len)
{
	return safe_copy(v, gpa, (void *)src, len, true);
}

int vmras_inject(struct vmras *v, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		 bool signal)
{
	const struct vmras_region *r = vmras_memmap_find_gpa(v->map, gpa);
	uint64_t base, hva;
	bool split;
	int err;

	if (!r)
		return -EFAULT;
	if (kind == VMRAS_AR && signal &&
	    (vcpu < 0 || vcpu >= VMRAS_MAX_VCPUS || !v->vcpus[vcpu].registered))
		return -EINVAL;
	base = gpa & ~(r->page_size - 1);
	hva = (uintptr_t)r->hva + (gpa - r->gpa);
	if (kind == VMRAS_AO && signal) {
		/* Reserve the AO's slot first: -EBUSY must leave the page alone. */
		pthread_mutex_lock(&v->lock);
		err = v->nraise_ao + v->nraise_reserved >= RAISE_AO_MAX ? -EBUSY : 0;
		if (!err)
			v->nraise_reserved++;
		pthread_mutex_unlock(&v->lock);
		if (err)
			return err;
	}
	/*
	 * The hardware part: the page is bad for real from now on. Under
	 * work_lock, so the engine sees the poison and its AO together.
	 */
	pthread_mutex_lock(&v->work_lock);
	pthread_mutex_lock(&v->lock);
	split = split_find(v, gpa) != NULL;
	if (r->backing == VMRAS_BACKING_HUGETLB && v->nhw_bad < sizeof(v->hw_bad) / sizeof(v->hw_bad[0]))
		v->hw_bad[v->nhw_bad++] = gpa & ~(SMALL_PAGE - 1);
	pthread_mutex_unlock(&v->lock);
	if (split)	/* already 4 KiB pages: only the one goes bad */
		err = split_poison(v, gpa);
	else
		err = contain_range(v, r, base, r->page_size,
				    r->backing == VMRAS_BACKING_HUGETLB);
	if (kind == VMRAS_AO && signal) {
		pthread_mutex_lock(&v->lock);
		v->nraise_reserved--;
		pthread_mutex_unlock(&v->lock);
	}
	if (err || !signal) {
		pthread_mutex_unlock(&v->work_lock);
		return err;
	}
	pthread_mutex_lock(&v->lock);
	if (kind == VMRAS_AO) {
		v->raise_ao[v->nraise_ao].hva = hva;
		v->raise_ao[v->nraise_ao].lsb = log2_u64(r->page_size);
		v->nraise_ao++;
	} else {
		v->vcpus[vcpu].raise_ar = true;
		v->vcpus[vcpu].raise_ar_hva = hva & ~(SMALL_PAGE - 1);
	}
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&v->work_lock);
	if (kind == VMRAS_AO)
		engine_wake(v);
	else if (v->cfg.ops.kick_vcpu)
		v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, (unsigned int)vcpu);
	return 0;
}

int vmras_guest_reset(struct vmras *v)
{
	struct pending_mce *dropped;
	size_t n, got, ndropped = 0;
	struct vmras_poison *list;
	int err = 0;

	struct capture_slot stale;

	/* No event is half processed while memory is given back. */
	pthread_mutex_lock(&v->work_lock);
	/* SIGBUS about the old mappings (the engine is not popping: we hold work_lock). */
	while (capture_pop(v, &stale)) {
		struct vmras_failure f = { .ev = slot_event(v, &stale), .action = VMRAS_ACTION_IGNORE };

		snprintf(f.detail, sizeof(f.detail), "reported just before a guest reset");
		report(v, &f);
	}
	n = vmras_registry_count(v->registry);
	list = calloc(n ? n : 1, sizeof(*list));
	dropped = calloc(VMRAS_MAX_VCPUS, sizeof(*dropped));
	if (!list || !dropped) {
		free(list);
		free(dropped);
		pthread_mutex_unlock(&v->work_lock);
		return -ENOMEM;
	}
	err = split_restore_all(v);
	got = vmras_registry_snapshot(v->registry, list, n);
	for (size_t i = 0; i < got && i < n; i++) {
		const struct vmras_region *r = vmras_memmap_find_gpa(v->map, list[i].gpa);
		int e;

		/* Inside a huge page that was split: restored with it above. */
		if (r && r->backing == VMRAS_BACKING_HUGETLB && list[i].size < r->page_size)
			continue;
		e = r ? contain_restore(v, r, list[i].gpa, list[i].size) : -ENOENT;

		if (e && !err)
			err = e;
	}
	free(list);
	vmras_registry_clear(v->registry);
	/* Machine checks for the old boot are moot; each is still reported. */
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus; i++) {
		struct vcpu_slot *s = &v->vcpus[i];

		for (unsigned int k = 0; k < s->npending; k++)
			if (!s->pending[k].broadcast && ndropped < VMRAS_MAX_VCPUS)
				dropped[ndropped++] = s->pending[k];
		s->npending = 0;
		s->raise_ar = false;
		s->offline = false;
		s->last_srar_page = ~0ULL;
	}
	v->nraise_ao = 0;
	v->nhw_bad = 0;
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&v->work_lock);
	for (size_t i = 0; i < ndropped; i++) {
		dropped[i].f.action = VMRAS_ACTION_IGNORE;
		snprintf(dropped[i].f.detail, sizeof(dropped[i].f.detail),
			 "the guest was reset before it could be told");
		report(v, &dropped[i].f);
	}
	free(dropped);
	return err;
}
