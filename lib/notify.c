// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Per-vCPU notice queues. The engine queues what the arch ops prepared
 * and kicks the vCPU; the vCPU's own thread delivers in vmras_vcpu_pre_run
 * (KVM holds a vCPU's mutex while it runs, so only that thread can). A
 * notice to a guest still handling the last one waits: an action-optional
 * one until the handler ends, an action-required one for AR_HOLD_NS, then
 * it is recursive and follows the policy. A guest that keeps touching a
 * page it was told about is cut off after AR_REPEAT_LIMIT. Every primary
 * notice is reported exactly once: delivered, superseded, moot at reset,
 * or undeliverable with the reason.
 *
 * Threads: vr_notify, vr_notify_retry, vr_notify_drop_all run on the
 * engine; pre_run and thread_start on the vCPU's thread; online on any.
 * v->lock guards every queue; reports and kicks happen after it is
 * dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/arch.h"
#include "internal.h"
#include "kabi/kvm.h"
#include "uffd/lazy.h"
#include "sources/sources.h"
#include "util/clock.h"

/* How long a consuming vCPU waits for bystanders to take their copies. */
#define BYSTANDER_WAIT_NS (100 * 1000 * 1000ULL)
/*
 * How long an AR waits for the guest to finish the machine check it is
 * handling (its access raced another notice) before it counts as
 * recursive: an emulated guest's handler takes milliseconds.
 */
#define AR_HOLD_NS (1000 * 1000 * 1000ULL)
#define AR_HOLD_TRIES 64	/* and this many tries (the engine retries every 1-16 ms) */
/*
 * Machine checks for one page on one vCPU (taken and touched again, or an
 * access that cannot complete repeated while its handler runs) before the
 * guest counts as one that does not act on them.
 */
#define AR_REPEAT_LIMIT 8

static void kick(struct vmras *v, unsigned int vcpu)
{
	if (v->cfg.ops.kick_vcpu)
		v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, vcpu);
}

/* The vCPU that takes AOs: the first one still running (v->lock held). */
static int first_online(struct vmras *v)
{
	for (unsigned int i = 0; i < v->nvcpus; i++)
		if (v->vcpus[i].registered && !v->vcpus[i].offline)
			return (int)i;
	return -1;
}

int vr_vcpu_of_tid(struct vmras *v, int32_t tid)
{
	int vcpu = -1;

	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus && vcpu < 0; i++)
		if (v->vcpus[i].registered && v->vcpus[i].tid == tid)
			vcpu = (int)i;
	pthread_mutex_unlock(&v->lock);
	return vcpu;
}

static void undeliverable(struct vmras *v, struct vmras_failure *f, enum vmras_action action,
			  const char *why)
{
	VR_STAT_ADD(v, notice_undeliverable, 1);
	f->action = action;
	snprintf(f->detail, sizeof(f->detail), "%s", why);
	vr_report_apply(v, f);
}

/*
 * With v->lock held: take back undelivered AO notices for the page at gpa
 * (an AR for it is about to be queued); their records go to out.
 */
static unsigned int drop_pending_ao(struct vmras *v, uint64_t page, uint64_t size,
				    struct vmras_failure *out, unsigned int max)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < v->nvcpus; i++) {
		struct vr_vcpu *s = &v->vcpus[i];
		unsigned int k = 0;

		for (unsigned int j = 0; j < s->npending; j++) {
			struct vr_notice *p = &s->pending[j];
			bool same = !p->f.action_required &&
				    (p->f.ev.gpa & ~(size - 1)) == page;

			/* One beyond max stays queued (and is delivered): never lost. */
			if (same && !p->bystander && n < max)
				out[n++] = p->f;
			else if (!same || !p->bystander)
				s->pending[k++] = *p;
			/* else: a copy of that AO, reported with it (superseded) */
		}
		s->npending = k;
	}
	return n;
}

/* The failure names a guest page (not so: an arm64 abort KVM gave no address for). */
static bool has_page(const struct vmras_failure *f)
{
	return f->ev.valid & VMRAS_EV_GPA;
}

/* With v->lock held: an AR for page is queued on s (held for the guest's handler). */
static bool ar_pending(const struct vr_vcpu *s, uint64_t page)
{
	for (unsigned int j = 0; j < s->npending; j++)
		if (!s->pending[j].bystander && s->pending[j].f.action_required &&
		    has_page(&s->pending[j].f) &&
		    (s->pending[j].f.ev.gpa & ~(SMALL_PAGE - 1)) == page)
			return true;
	return false;
}

void vr_notify(struct vmras *v, struct vmras_failure *f, int target, uint32_t arch_state)
{
	/* Engine thread only: its scratch lives in the context, not on the stack. */
	struct vr_notice *notices = v->scratch.notices;
	unsigned int *vcpu_of = v->scratch.vcpu_of, nvcpus, nsuperseded = 0;
	struct vmras_failure *superseded = v->scratch.superseded;
	bool *online = v->scratch.online, kicked[VR_MAX_VCPUS] = { false };
	char why[128];
	int n;

	pthread_mutex_lock(&v->lock);
	nvcpus = v->nvcpus;
	for (unsigned int i = 0; i < nvcpus; i++)
		online[i] = v->vcpus[i].registered && !v->vcpus[i].offline;
	pthread_mutex_unlock(&v->lock);

	n = v->arch->prepare(v->arch_data, f, (unsigned int)target, arch_state, nvcpus, online,
			     notices, vcpu_of, VR_MAX_VCPUS);
	if (n == -EOPNOTSUPP) {
		/* The guest was given no way to hear of it (arm64 without an asynchronous source). */
		snprintf(why, sizeof(why), "the %s guest has no way to be told of it (%s)",
			 v->arch->name, v->arch->why(VR_ARCH_NO_WAY));
		undeliverable(v, f, VMRAS_ACTION_IGNORE, why);
		return;
	}
	if (n <= 0) {
		snprintf(why, sizeof(why), "cannot encode a notice for this error: %s",
			 strerror(n < 0 ? -n : EINVAL));
		undeliverable(v, f, VMRAS_ACTION_IGNORE, why);
		return;
	}
	pthread_mutex_lock(&v->lock);
	if (v->vcpus[target].offline) {
		/* It stopped since the plan was made: as vmras_vcpu_online would have. */
		pthread_mutex_unlock(&v->lock);
		snprintf(why, sizeof(why), "vCPU %d stopped before it could be told", target);
		undeliverable(v, f, VMRAS_ACTION_IGNORE, why);
		return;
	}
	/* An abort with no address (arm64) names no page: nothing to merge or supersede. */
	if (f->action_required && has_page(f) &&
	    ar_pending(&v->vcpus[target], f->ev.gpa & ~(SMALL_PAGE - 1))) {
		pthread_mutex_unlock(&v->lock);
		f->action = VMRAS_ACTION_IGNORE;
		snprintf(f->detail, sizeof(f->detail),
			 "repeat of an access whose machine check waits for the guest");
		vr_report(v, f);
		return;
	}
	if (v->vcpus[target].npending == VR_VCPU_MAX_PENDING) {
		pthread_mutex_unlock(&v->lock);
		snprintf(why, sizeof(why), "vCPU %d has %d notices waiting already%s", target,
			 VR_VCPU_MAX_PENDING,
			 f->action_required ? "" : "; the page stays contained");
		/* An AO can wait for the guest's own access; an AR cannot. */
		undeliverable(v, f, f->action_required ? v->cfg.policy.undeliverable
						       : VMRAS_ACTION_IGNORE, why);
		return;
	}
	if (f->action_required && has_page(f))
		nsuperseded = drop_pending_ao(v, f->ev.gpa & ~(f->size - 1), f->size, superseded,
					      VR_MAX_SUPERSEDED);
	for (int i = 0; i < n; i++) {
		struct vr_vcpu *s = &v->vcpus[vcpu_of[i]];

		notices[i].group = f->ev.seq;
		if (i > 0 && s->offline)
			continue; /* a bystander that stopped: it has nothing to take part in */
		if (s->npending == VR_VCPU_MAX_PENDING) {
			/* A bystander with no room: counted; its primary still goes. */
			v->stats.notice_undeliverable++;
			continue;
		}
		s->pending[s->npending++] = notices[i];
		kicked[vcpu_of[i]] = true;
	}
	pthread_mutex_unlock(&v->lock);
	for (unsigned int i = 0; i < nsuperseded; i++) {
		superseded[i].action = VMRAS_ACTION_IGNORE;
		snprintf(superseded[i].detail, sizeof(superseded[i].detail),
			 "superseded by an action-required error on vCPU %d", target);
		vr_report(v, &superseded[i]);
	}
	for (unsigned int i = 0; i < nvcpus; i++)
		if (kicked[i])
			kick(v, i);
}

bool vr_notify_retry(struct vmras *v)
{
	bool want[VR_MAX_VCPUS], any = false;
	unsigned int nvcpus;

	pthread_mutex_lock(&v->lock);
	nvcpus = v->nvcpus;
	for (unsigned int i = 0; i < nvcpus; i++) {
		want[i] = v->vcpus[i].raise_ar;
		for (unsigned int k = 0; k < v->vcpus[i].npending; k++)
			want[i] |= v->vcpus[i].pending[k].deferred;
		any |= want[i];
	}
	pthread_mutex_unlock(&v->lock);
	for (unsigned int i = 0; i < nvcpus; i++)
		if (want[i])
			kick(v, i);
	return any;
}

void vr_notify_drop_all(struct vmras *v, const char *why)
{
	struct vr_notice dropped[VR_VCPU_MAX_PENDING];

	for (unsigned int i = 0; i < VR_MAX_VCPUS; i++) {
		unsigned int n = 0;

		pthread_mutex_lock(&v->lock);
		if (i >= v->nvcpus) {
			pthread_mutex_unlock(&v->lock);
			break;
		}
		for (unsigned int k = 0; k < v->vcpus[i].npending; k++)
			if (!v->vcpus[i].pending[k].bystander)
				dropped[n++] = v->vcpus[i].pending[k];
		v->vcpus[i].npending = 0;
		v->vcpus[i].raise_ar = false;
		v->vcpus[i].offline = false;
		v->vcpus[i].last_ar_page = ~0ULL;
		v->vcpus[i].seen_ar_page = ~0ULL;
		v->vcpus[i].ar_repeats = 0;
		pthread_mutex_unlock(&v->lock);
		for (unsigned int k = 0; k < n; k++) {
			dropped[k].f.action = VMRAS_ACTION_IGNORE;
			snprintf(dropped[k].f.detail, sizeof(dropped[k].f.detail), "%s", why);
			vr_report(v, &dropped[k].f);
		}
	}
}

/* ---- vCPU threads -------------------------------------------------- */

int vmras_vcpu_thread_start(struct vmras *v, unsigned int vcpu)
{
	int r;

	if (vcpu >= VR_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	r = vr_thread_set_vcpu((int)vcpu);
	if (r)
		return r;
	pthread_mutex_lock(&v->lock);
	v->vcpus[vcpu].tid = vr_gettid();
	pthread_mutex_unlock(&v->lock);
	return 0;
}

int vmras_vcpu_online(struct vmras *v, unsigned int vcpu, bool online)
{
	struct vr_notice moved[VR_VCPU_MAX_PENDING];
	bool taken[VR_VCPU_MAX_PENDING] = { false };
	unsigned int nmoved = 0;
	int target;

	if (vcpu >= VR_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	v->vcpus[vcpu].offline = !online;
	if (!online) {
		struct vr_vcpu *s = &v->vcpus[vcpu];

		for (unsigned int i = 0; i < s->npending; i++)
			if (!s->pending[i].bystander)
				moved[nmoved++] = s->pending[i];
		s->npending = 0;
	}
	target = first_online(v);
	for (unsigned int i = 0; i < nmoved; i++) {
		struct vr_vcpu *t = target >= 0 ? &v->vcpus[target] : NULL;

		/* Only AOs move: another CPU must not blame its own instruction. */
		if (t && !moved[i].f.action_required && t->npending < VR_VCPU_MAX_PENDING) {
			t->pending[t->npending++] = moved[i];
			taken[i] = true;
		}
	}
	pthread_mutex_unlock(&v->lock);
	for (unsigned int i = 0; i < nmoved; i++) {
		char why[128];

		if (taken[i])
			continue;
		snprintf(why, sizeof(why), "vCPU %u stopped before it could be told%s", vcpu,
			 moved[i].f.action_required ? " of its own access"
						    : "; no other vCPU runs");
		/* The page stays contained: a later access is caught anew. */
		undeliverable(v, &moved[i].f, VMRAS_ACTION_IGNORE, why);
	}
	if (nmoved && target >= 0)
		kick(v, (unsigned int)target);
	return 0;
}

/* Inside a machine-check handler (MCIP on x86). */
static bool guest_busy(struct vmras *v, struct vr_vcpu *s)
{
	bool busy = false;

	return !v->arch->busy(v->arch_data, (unsigned int)(s - v->vcpus), s->fd, &busy) && busy;
}

/*
 * An injected AR on guest_memfd: what KVM_RUN returns when the guest
 * touches a poisoned guest_memfd folio (kvm_gmem_get_pfn: -EHWPOISON),
 * a shared access (flags 0), 4 KiB.
 */
static int raise_memory_fault(struct vmras *v, unsigned int vcpu, uint64_t gpa)
{
	struct kvm_run *run = calloc(1, sizeof(*run)); /* a vCPU thread's stack may be small */
	struct kabi_kvm_memory_fault *mf;
	int r;

	if (!run)
		return -ENOMEM;
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	mf = kabi_kvm_run_memory_fault(run);
	mf->gpa = gpa;
	mf->size = SMALL_PAGE;
	mf->flags = 0;
	r = vmras_vcpu_exit(v, vcpu, run, -EHWPOISON);
	free(run);
	return r < 0 ? r : 0;
}

/* An injected AR: what KVM sends the vCPU thread that touched poison. */
static int raise_injected_ar(struct vmras *v, unsigned int vcpu, struct vr_vcpu *s)
{
	bool raise, as_exit;
	uint64_t hva, gpa;
	int r;

	pthread_mutex_lock(&v->lock);
	raise = s->raise_ar;
	hva = s->raise_ar_hva;
	gpa = s->raise_ar_gpa;
	as_exit = s->raise_ar_exit;
	s->raise_ar = false;
	pthread_mutex_unlock(&v->lock);
	if (!raise)
		return 0;
	/* A guest inside its handler touches no data: the access waits, as a real one would. */
	if (guest_busy(v, s)) {
		pthread_mutex_lock(&v->lock);
		s->raise_ar = true;
		pthread_mutex_unlock(&v->lock);
		vr_engine_wake(v); /* it kicks us again shortly */
		return 0;
	}
	if (as_exit)
		return raise_memory_fault(v, vcpu, gpa);
	r = vr_raise_sigbus(BUS_MCEERR_AR, hva, 12);
	if (r)
		return r;
	r = vmras_vcpu_exit(v, vcpu, NULL, 0);
	return r < 0 ? r : 0;
}

/* With v->lock held: bystander copies of group still queued elsewhere. */
static bool bystanders_pending(struct vmras *v, uint64_t group)
{
	for (unsigned int i = 0; i < v->nvcpus; i++)
		for (unsigned int k = 0; k < v->vcpus[i].npending; k++)
			if (v->vcpus[i].pending[k].bystander && v->vcpus[i].pending[k].group == group &&
			    !v->vcpus[i].offline)
				return true;
	return false;
}

/*
 * A guest's monarch waits a bounded time for every CPU to enter its
 * handler: the copies go in before the consuming vCPU re-enters.
 */
static bool wait_for_bystanders(struct vmras *v, unsigned int vcpu, uint64_t group)
{
	uint64_t deadline = vr_mono_ns() + BYSTANDER_WAIT_NS;
	struct timespec ts;
	bool late;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(BYSTANDER_WAIT_NS / 1000000000ULL);
	ts.tv_nsec += (long)(BYSTANDER_WAIT_NS % 1000000000ULL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	/* Waiting here, it is as good as parked: a pause need not wait for it. */
	v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, true);
	pthread_mutex_lock(&v->lock);
	while (bystanders_pending(v, group) && vr_mono_ns() < deadline)
		pthread_cond_timedwait(&v->cond, &v->lock, &ts);
	late = bystanders_pending(v, group);
	if (late)
		v->stats.notice_broadcast_late++;
	pthread_mutex_unlock(&v->lock);
	v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, false);
	return !late;
}

/*
 * An AR that met the guest inside another machine check's handler (its
 * access raced that notice: a bystander copy, an AO, another page's AR)
 * waits for the handler to end, as a second error would have waited in
 * its bank, instead of counting as recursive at once; for AR_HOLD_NS.
 */
static uint64_t last_ar_page(struct vmras *v, struct vr_vcpu *s)
{
	uint64_t page;

	pthread_mutex_lock(&v->lock);
	page = s->last_ar_page;
	pthread_mutex_unlock(&v->lock);
	return page;
}

static bool hold_ar(struct vmras *v, struct vr_notice *p)
{
	uint64_t now = vr_mono_ns();

	if (!p->held_since_ns) {
		p->held_since_ns = now;
		p->deferred = true;
		VR_STAT_ADD(v, notice_deferred, 1);
	}
	/* Time the vCPU ran: a paused VM (retries stop) does not use the hold up. */
	if (p->hold_tries < UINT16_MAX)
		p->hold_tries++;
	return now - p->held_since_ns < AR_HOLD_NS || p->hold_tries < AR_HOLD_TRIES;
}

/*
 * A guest that takes machine checks for a page and touches it again (its
 * handler does not retire it), or whose access can never complete (the
 * notice cannot be delivered and the policy ignores that), would loop
 * forever: past AR_REPEAT_LIMIT further notices for one page, the
 * undeliverable policy applies, and an `ignore` there becomes `fatal`
 * (ignoring it is the loop). An emulated access completed with filler
 * while the guest is busy moved on: it is not counted.
 */
static bool repeats_exhausted(struct vmras *v, struct vr_vcpu *s, struct vr_notice *p,
			      uint64_t page, bool busy)
{
	enum vmras_action action = v->cfg.policy.undeliverable;
	unsigned int repeats;
	char why[128];

	if (p->bystander || !p->f.action_required || p->counted)
		return false;
	p->counted = true;
	if (busy && p->f.ev.source == VMRAS_SRC_RAM_MMIO)
		return false;
	pthread_mutex_lock(&v->lock);
	if (s->seen_ar_page == page) {
		repeats = ++s->ar_repeats;
	} else {
		s->seen_ar_page = page;
		repeats = s->ar_repeats = 0;
	}
	pthread_mutex_unlock(&v->lock);
	if (repeats <= AR_REPEAT_LIMIT)
		return false;
	if (action == VMRAS_ACTION_IGNORE)
		action = VMRAS_ACTION_FATAL;
	snprintf(why, sizeof(why),
		 "the guest touched page 0x%llx again after %u machine checks for it: it does not "
		 "act on them", (unsigned long long)page, repeats);
	undeliverable(v, &p->f, action, why);
	pthread_mutex_lock(&v->lock);
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return true;
}

/* Consumed by a guest access on its vCPU, which cannot go on until it is told. */
static bool consumed(const struct vmras_failure *f)
{
	return f->action_required && (f->ev.valid & VMRAS_EV_VCPU) &&
	       f->ev.source != VMRAS_SRC_MC_COPY;
}

/* Deliver one notice; false if it must wait (guest busy with an earlier notice). */
static bool deliver(struct vmras *v, unsigned int vcpu, struct vr_vcpu *s, struct vr_notice *p)
{
	struct vmras_failure *f = &p->f;
	uint64_t page = f->ev.gpa & ~(SMALL_PAGE - 1);
	char why[100], detail[sizeof(f->detail)];
	int r;

	bool busy = !p->bystander && consumed(f) && guest_busy(v, s);

	if (repeats_exhausted(v, s, p, page, busy))
		return true;
	if (busy && last_ar_page(v, s) != page && hold_ar(v, p))
		return false;
	if (!p->bystander && f->action_required) {
		pthread_mutex_lock(&v->lock);
		bool wait = bystanders_pending(v, p->group);
		pthread_mutex_unlock(&v->lock);
		/* Late copies still go in when their vCPU next stops; the record says so. */
		if (wait && v->cfg.ops.vcpu_blocked && !wait_for_bystanders(v, vcpu, p->group))
			snprintf(f->detail, sizeof(f->detail),
				 "bystander copies not taken within %llu ms (a vCPU not kicked "
				 "out of KVM_RUN?): the guest may time out its rendezvous",
				 (unsigned long long)(BYSTANDER_WAIT_NS / 1000000));
	}
	r = v->arch->deliver(v->arch_data, vcpu, s->fd, p);
	if (r == VR_DELIVERED) {
		pthread_mutex_lock(&v->lock);
		if (p->bystander) {
			v->stats.notice_broadcast++;
		} else {
			v->stats.notice_delivered++;
			if (f->action_required)
				s->last_ar_page = page;
		}
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		if (!p->bystander) {
			f->recipient = VMRAS_RECIPIENT_GUEST;
			f->action = VMRAS_ACTION_INJECT;
			if (has_page(f))
				vmras_registry_set_state(v->registry, f->ev.gpa, VMRAS_PS_NOTIFIED);
			vr_report(v, f);
		}
		return true;
	}
	if (r == VR_NOT_READY && p->bystander) {
		/* A CPU its OS has not brought up yet (an AP before SIPI) takes no part. */
		VR_STAT_ADD(v, notice_undeliverable, 1);
		return true;
	}
	if (r == VR_BUSY && p->bystander) {
		/*
		 * Already in its handler (its own error, at the same moment): it
		 * has joined the guest's rendezvous, which is what the copy is
		 * for. Sending it would be a machine check inside a machine check.
		 */
		VR_STAT_ADD(v, notice_broadcast_joined, 1);
		return true;
	}
	if (r == VR_BUSY && !consumed(f)) {
		/*
		 * An AO (or an AR a VMM thread hit: no access of the guest's
		 * waits on it) waits until the guest is done with the last one
		 * (QEMU drops it).
		 */
		if (!p->deferred) {
			p->deferred = true;
			VR_STAT_ADD(v, notice_deferred, 1);
		}
		return false;
	}
	if (r == VR_BUSY && !p->bystander && f->action_required && last_ar_page(v, s) != page &&
	    hold_ar(v, p))
		return false;
	if (r == VR_BUSY && !p->bystander && last_ar_page(v, s) == page) {
		/*
		 * The same access again before the guest took the notice for it
		 * (a string instruction the emulator continues): not a second
		 * error.
		 */
		f->action = VMRAS_ACTION_IGNORE;
		snprintf(f->detail, sizeof(f->detail),
			 "repeat of the access whose machine check the guest is taking");
		vr_report(v, f);
		return true;
	}
	f->recursive = r == VR_BUSY;
	if (r < 0)
		snprintf(why, sizeof(why), "%sdelivery failed: %s",
			 p->bystander ? "bystander " : "", strerror(-r));
	else if (f->recursive)
		snprintf(why, sizeof(why), "%saction-required error while the guest still handled one",
			 p->bystander ? "bystander copy: " : "");
	else
		snprintf(why, sizeof(why), "%s%s", p->bystander ? "bystander copy: " : "",
			 v->arch->why(r));
	snprintf(detail, sizeof(detail), "vCPU %u: %s", vcpu, why);
	undeliverable(v, f, v->cfg.policy.undeliverable, p->bystander ? detail : why);
	pthread_mutex_lock(&v->lock);
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return true;
}

/*
 * Action-required first: an AO or a bystander's copy delivered before it
 * would set MCIP and turn the AR into a recursive one.
 */
static int rank(const struct vr_notice *p)
{
	return p->bystander ? 2 : p->f.action_required ? 0 : 1;
}

int vmras_vcpu_pre_run(struct vmras *v, unsigned int vcpu)
{
	struct vr_notice *todo, *over;
	struct vr_vcpu *s;
	unsigned int n = 0, rest = 0, i;
	int r;

	if (vcpu >= VR_MAX_VCPUS || !v->vcpus[vcpu].registered || !v->arch)
		return -EINVAL;
	s = &v->vcpus[vcpu];
	vr_lazy_vcpu_runs(v, vcpu);
	r = raise_injected_ar(v, vcpu, s);
	if (r)
		return r;
	pthread_mutex_lock(&v->lock);
	/* The common case, before every KVM_RUN: nothing to deliver. */
	if (!s->npending) {
		pthread_mutex_unlock(&v->lock);
		return 0;
	}
	/* Off the stack: a VMM's vCPU thread may have a small one. */
	todo = malloc(2 * VR_VCPU_MAX_PENDING * sizeof(*todo));
	if (!todo) {
		pthread_mutex_unlock(&v->lock);
		return -ENOMEM; /* they stay queued */
	}
	over = todo + VR_VCPU_MAX_PENDING;
	for (int pass = 0; pass < 3; pass++)
		for (i = 0; i < s->npending; i++)
			if (rank(&s->pending[i]) == pass)
				todo[n++] = s->pending[i];
	s->npending = 0;
	pthread_mutex_unlock(&v->lock);
	/* Out of every handler: no AR's machine check is being taken any more. */
	if (!guest_busy(v, s)) {
		pthread_mutex_lock(&v->lock);
		s->last_ar_page = ~0ULL;
		pthread_mutex_unlock(&v->lock);
	}

	/* What must wait (the guest is busy) keeps its order, in front of the queue. */
	for (i = 0; i < n; i++)
		if (!deliver(v, vcpu, s, &todo[i]))
			todo[rest++] = todo[i];
	if (rest) {
		unsigned int keep, nover = 0;

		pthread_mutex_lock(&v->lock);
		keep = s->npending;
		if (rest + keep > VR_VCPU_MAX_PENDING) {
			/* Queued meanwhile and no room: reported below, not lost. */
			nover = rest + keep - VR_VCPU_MAX_PENDING;
			memcpy(over, s->pending + keep - nover, nover * sizeof(over[0]));
			keep -= nover;
		}
		memmove(s->pending + rest, s->pending, keep * sizeof(s->pending[0]));
		memcpy(s->pending, todo, rest * sizeof(todo[0]));
		s->npending = rest + keep;
		pthread_mutex_unlock(&v->lock);
		for (unsigned int k = 0; k < nover; k++) {
			char why[96];

			if (over[k].bystander) {
				VR_STAT_ADD(v, notice_undeliverable, 1);
				continue;
			}
			snprintf(why, sizeof(why), "vCPU %u has %d notices waiting already", vcpu,
				 VR_VCPU_MAX_PENDING);
			undeliverable(v, &over[k].f,
				      over[k].f.action_required ? v->cfg.policy.undeliverable
								: VMRAS_ACTION_IGNORE, why);
		}
		vr_engine_wake(v); /* it retries shortly */
	}
	free(todo);
	return 0;
}
