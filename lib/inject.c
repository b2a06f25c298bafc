// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The hardware stand-in, for tests and operators on hosts without real
 * errors: it makes a page bad for real (a poison marker) and remembers it
 * the way a memory-failure kernel does (a file read of it says EIO), then
 * sends the SIGBUS the kernel would. Everything after the signal is the
 * production path.
 *
 * vmras_inject queues the injection for the engine thread, which carries
 * it out in arrival order: an injection never races a split, a reset or
 * the event it causes. The caller waits (a vCPU thread counts as parked
 * meanwhile).
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "memory/backing.h"
#include "sources/sources.h"
#include "uffd/split.h"

static unsigned int log2_u64(uint64_t x)
{
	return 63u - (unsigned int)__builtin_clzll(x);
}

static int hw_add(struct vmras *v, uint64_t gpa)
{
	struct vr_hw_bad *h = &v->hw_bad;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		uint64_t *a = realloc(h->gpa, cap * sizeof(*a));

		if (a) {
			h->gpa = a;
			h->cap = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err)
		h->gpa[h->n++] = gpa;
	pthread_mutex_unlock(&v->lock);
	return err;
}

static void hw_remove_last(struct vmras *v)
{
	pthread_mutex_lock(&v->lock);
	v->hw_bad.n--;
	pthread_mutex_unlock(&v->lock);
}

bool vr_hw_is_bad(struct vmras *v, uint64_t gpa, uint64_t size)
{
	bool bad = false;

	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < v->hw_bad.n && !bad; i++)
		bad = v->hw_bad.gpa[i] - gpa < size;
	pthread_mutex_unlock(&v->lock);
	return bad;
}

void vr_hw_forget(struct vmras *v)
{
	pthread_mutex_lock(&v->lock);
	v->hw_bad.n = 0;
	pthread_mutex_unlock(&v->lock);
}

/* Engine thread. */
int vr_inject_execute(struct vmras *v, const struct vr_work *w)
{
	const struct vmras_region *r = vmras_memmap_find_gpa(v->map, w->ev.gpa);
	uint64_t gpa = w->ev.gpa, page = gpa & ~(SMALL_PAGE - 1), hva;
	struct vr_split *s;
	int err;

	if (!r)
		return -EFAULT;
	if (w->ev.kind == VMRAS_AR && w->signal) {
		/* One injected access at a time per vCPU: the last one is not yet taken. */
		pthread_mutex_lock(&v->lock);
		err = v->vcpus[w->ev.vcpu].raise_ar ? -EBUSY : 0;
		pthread_mutex_unlock(&v->lock);
		if (err)
			return err;
	}
	hva = (uintptr_t)r->hva + (gpa - r->gpa);
	err = hw_add(v, page);
	if (err)
		return err;
	/* The hardware part: the page is bad for real from now on. */
	s = vr_split_find(v, gpa);
	if (s) /* already 4 KiB pages: only the one goes bad */
		err = vr_split_poison(v, s, gpa);
	else /* the kernel unmaps a huge page whole, and keeps it in its file */
		err = vr_backing(r)->contain(v, r, gpa & ~(r->page_size - 1), r->page_size,
					     r->backing == VMRAS_BACKING_HUGETLB);
	if (err) {
		hw_remove_last(v);
		return err;
	}
	if (!w->signal)
		return 0;
	if (w->ev.kind == VMRAS_AO)
		/* memory_failure() tells the early-kill thread: this one. */
		return vr_raise_sigbus(BUS_MCEERR_AO, hva, log2_u64(r->page_size));
	/*
	 * KVM tells the vCPU thread that touched it: that thread sends it
	 * itself (or, for guest_memfd, takes the failed KVM_RUN's exit).
	 */
	pthread_mutex_lock(&v->lock);
	v->vcpus[w->ev.vcpu].raise_ar = true;
	v->vcpus[w->ev.vcpu].raise_ar_hva = hva & ~(SMALL_PAGE - 1);
	v->vcpus[w->ev.vcpu].raise_ar_gpa = page;
	/* guest_memfd poison reaches no thread as SIGBUS: KVM_RUN fails instead. */
	v->vcpus[w->ev.vcpu].raise_ar_exit = r->backing == VMRAS_BACKING_GUEST_MEMFD;
	pthread_mutex_unlock(&v->lock);
	if (v->cfg.ops.kick_vcpu)
		v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, (unsigned int)w->ev.vcpu);
	return 0;
}

int vmras_inject(struct vmras *v, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		 bool signal)
{
	struct vr_work w = {
		.kind = VR_WORK_INJECT,
		.ev = { .gpa = gpa, .kind = kind, .vcpu = vcpu, .valid = VMRAS_EV_GPA },
		.signal = signal,
	};

	if (!vmras_memmap_find_gpa(v->map, gpa))
		return -EFAULT;
	if ((unsigned int)kind > VMRAS_AR)
		return -EINVAL;
	if (kind == VMRAS_AR && signal &&
	    (vcpu < 0 || vcpu >= VR_MAX_VCPUS || !v->vcpus[vcpu].registered))
		return -EINVAL;
	return vr_engine_submit(v, &w, true);
}
