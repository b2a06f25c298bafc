// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Huge-page splitting (see split.h). While the vCPUs are paused:
 *   1. map an empty (size 0) memfd over the huge page's range at the same
 *      HVA (same memslot: KVM's MMU notifier drops its old mapping); any
 *      access before step 3 is a SIGBUS, never a zero page;
 *   2. register it with the router (missing faults come to us);
 *   3. give the memfd its size, re-apply NUMA policy and madvise flags;
 *   4. poison the bad 4 KiB page; tell the VMM (it may refuse);
 * then resume: no copying while they wait, whatever the size.
 *
 * The fill writes the page cache of the memfd with pwrite(2) from a
 * read-only mapping of the old huge page: a page appears whole or not at
 * all to a fault (shmem keeps it locked until written), a missing fault
 * waits on the router, and the kernel stops a copy at a page it knows is
 * bad (short write) instead of raising a machine check in the fill. Runs
 * of good pages go in one call each, so a 1 GiB page fills at about copy
 * speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/userfaultfd.h"
#include "memory/backing.h"
#include "memory/vma.h"
#include "uffd/router.h"
#include "uffd/split.h"
#include "util/clock.h"

#define SUB SMALL_PAGE
#define FAULT_GROUP 16		/* subpages filled together on a fault: 64 KiB */
#define IDLE_STEP 512		/* subpages filled per background step: 2 MiB */

struct vr_split {
	struct vr_split *next;	/* v->splits */
	struct vmras *v;
	const struct vmras_region *r;
	uint64_t gpa, size, hva;
	off_t file_off;		/* of the huge page in r->fd */
	int memfd;		/* the 4 KiB replacement */
	const char *src;	/* the old huge page, read-only */
	struct vr_vma_attrs attrs;

	pthread_mutex_t lock;	/* state, ndone, cursor, filled */
	uint8_t *state;		/* enum vr_sub per subpage */
	uint32_t nsub, ndone, cursor;
	bool filled;
	uint64_t t_live_ns;	/* CLOCK_REALTIME: the 4 KiB mapping in place */
};

static void split_free(struct vr_split *s)
{
	if (s->memfd >= 0)
		close(s->memfd);
	if (s->src && s->src != MAP_FAILED)
		munmap((void *)s->src, s->size);
	pthread_mutex_destroy(&s->lock);
	free(s->state);
	free(s);
}

bool vr_split_possible(struct vmras *v, const struct vmras_region *r, char *why, size_t len)
{
	const char *no = NULL;

	if (!vr_backing(r)->can_split || r->page_size <= SUB)
		no = "not a huge page";
	else if (!v->router)
		no = "no userfaultfd";
	else if (!vr_router_kernel_faults(v->router))
		no = "the userfaultfd serves only user-mode faults, not KVM's (no /dev/userfaultfd "
		     "access, no CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=0)";
	else if (!v->cfg.ops.pause_vcpus || !v->cfg.ops.resume_vcpus)
		no = "the VMM gave no pause_vcpus/resume_vcpus hooks";
	if (no && why)
		snprintf(why, len, "%s", no);
	return !no;
}

struct vr_split *vr_split_find(struct vmras *v, uint64_t gpa)
{
	for (struct vr_split *s = v->splits; s; s = s->next)
		if (gpa - s->gpa < s->size)
			return s;
	return NULL;
}

enum vr_sub vr_split_state(struct vr_split *s, uint64_t gpa)
{
	enum vr_sub st;

	pthread_mutex_lock(&s->lock);
	st = (enum vr_sub)s->state[(gpa - s->gpa) / SUB];
	pthread_mutex_unlock(&s->lock);
	return st;
}

uint64_t vr_split_live_ns(const struct vr_split *s)
{
	return s->t_live_ns;
}

uint64_t vr_split_granule(struct vmras *v, const struct vmras_region *r, uint64_t gpa)
{
	uint64_t g = r->page_size;

	pthread_mutex_lock(&v->lock);
	for (struct vr_split *s = v->splits; s; s = s->next)
		if (gpa - s->gpa < s->size)
			g = SUB;
	pthread_mutex_unlock(&v->lock);
	return g;
}

/* ---- the fill (router thread) ---------------------------------------- */

static void salvage_event(struct vr_split *s, uint32_t idx)
{
	struct vmras_event ev = {
		.valid = VMRAS_EV_GPA, .kind = VMRAS_AO, .source = VMRAS_SRC_SALVAGE,
		.addr_lsb = 12, .vcpu = -1, .gpa = s->gpa + (uint64_t)idx * SUB,
		.time_ns = vr_now_ns(), .tid = vr_gettid(),
	};

	/* No wait: the engine may itself be waiting for a vCPU that waits on us. */
	vr_submit_event(s->v, &ev, 0, false);
}

/* With s->lock held: the kernel (or the stand-in) knows subpage idx is bad. */
static void poison_found(struct vr_split *s, uint32_t idx)
{
	s->state[idx] = VR_SUB_POISONED;
	s->ndone++;
	/* Poisoned here and now: whoever faulted on it must not wait for the engine. */
	vr_uffd_poison(s->v->router, s->hva + (uint64_t)idx * SUB, SUB);
	salvage_event(s, idx);
}

/* Fill the missing subpages in [first, last); returns how many were filled. */
static uint32_t fill_range(struct vr_split *s, uint32_t first, uint32_t last)
{
	struct vmras *v = s->v;
	uint32_t filled = 0, i = first;

	pthread_mutex_lock(&s->lock);
	while (i < last) {
		uint32_t j = i;
		ssize_t n;

		if (s->state[i] != VR_SUB_MISSING) {
			i++;
			continue;
		}
		if (vr_hw_is_bad(v, s->gpa + (uint64_t)i * SUB, SUB)) {
			poison_found(s, i++); /* injected: the kernel would stop the copy here */
			continue;
		}
		while (j < last && s->state[j] == VR_SUB_MISSING &&
		       (j == i || !vr_hw_is_bad(v, s->gpa + (uint64_t)j * SUB, SUB)))
			j++;
		n = pwrite(s->memfd, s->src + (uint64_t)i * SUB, (size_t)(j - i) * SUB,
			   (off_t)((uint64_t)i * SUB));
		if (n < 0 && errno != EFAULT && errno != EIO && errno != EINTR)
			break; /* ENOMEM, ENOSPC: try again on the next step */
		if (n < 0)
			n = errno == EINTR ? -1 : 0;
		if (n < 0)
			continue;
		for (uint32_t k = i; k < i + (uint32_t)(n / (ssize_t)SUB); k++)
			s->state[k] = VR_SUB_FILLED;
		s->ndone += (uint32_t)(n / (ssize_t)SUB);
		filled += (uint32_t)(n / (ssize_t)SUB);
		vr_uffd_wake(v->router, s->hva + (uint64_t)i * SUB, (uint64_t)n & ~(SUB - 1));
		i += (uint32_t)(n / (ssize_t)SUB);
		/* A short copy stopped at a page the kernel knows is bad. */
		if (i < j)
			poison_found(s, i++);
	}
	pthread_mutex_unlock(&s->lock);
	if (filled)
		VR_STAT_ADD(v, subpages_salvaged, filled);
	return filled;
}

static void split_fault(void *opaque, uint64_t addr, uint64_t flags)
{
	struct vr_split *s = opaque;
	uint32_t idx = (uint32_t)((addr - s->hva) / SUB), first = idx & ~(FAULT_GROUP - 1u);
	uint32_t last = first + FAULT_GROUP < s->nsub ? first + FAULT_GROUP : s->nsub;

	(void)flags;
	fill_range(s, first, last);
	/* Filled, or poisoned (the marker answers), or a fill that failed: retry. */
	vr_uffd_wake(s->v->router, addr, SUB);
}

/* Every subpage there: the old huge page goes back to the pool. */
static void finish(struct vr_split *s)
{
	munmap((void *)s->src, s->size);
	s->src = NULL;
	fallocate(s->r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s->file_off,
		  (off_t)s->size);
	s->filled = true;
}

static bool split_idle(void *opaque)
{
	struct vr_split *s = opaque;
	uint32_t start, end;
	bool done;

	pthread_mutex_lock(&s->lock);
	while (s->cursor < s->nsub && s->state[s->cursor] != VR_SUB_MISSING)
		s->cursor++;
	start = s->cursor;
	pthread_mutex_unlock(&s->lock);
	end = start + IDLE_STEP < s->nsub ? start + IDLE_STEP : s->nsub;
	if (start < s->nsub)
		fill_range(s, start, end);
	pthread_mutex_lock(&s->lock);
	done = s->ndone == s->nsub;
	if (done && !s->filled)
		finish(s);
	pthread_mutex_unlock(&s->lock);
	return !done;
}

static const struct vr_route_ops split_ops = { .fault = split_fault, .idle = split_idle };

/* ---- begin, poison, restore (engine thread) ---------------------------- */

static struct vr_split *split_new(struct vmras *v, const struct vmras_region *r,
				  uint64_t huge_gpa, int *err)
{
	struct vr_split *s = calloc(1, sizeof(*s));

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	*s = (struct vr_split){
		.v = v, .r = r, .gpa = huge_gpa, .size = r->page_size,
		.hva = (uintptr_t)r->hva + (huge_gpa - r->gpa),
		.file_off = (off_t)(r->fd_offset + (huge_gpa - r->gpa)),
		.nsub = (uint32_t)(r->page_size / SUB), .memfd = -1,
	};
	pthread_mutex_init(&s->lock, NULL);
	s->state = calloc(s->nsub, 1);
	/* Size 0 until it is registered: an early access is a SIGBUS, not a zero page. */
	s->memfd = memfd_create("vmras-split", MFD_CLOEXEC);
	s->src = mmap(NULL, s->size, PROT_READ, MAP_SHARED, r->fd, s->file_off);
	*err = !s->state ? -ENOMEM : s->memfd < 0 || s->src == MAP_FAILED ? -errno : 0;
	if (!*err)
		*err = vr_vma_attrs_get(s->hva, &s->attrs);
	if (*err) {
		split_free(s);
		return NULL;
	}
	return s;
}

/* With the vCPUs paused and map_lock held: swap the mapping. */
static int swap_in(struct vmras *v, struct vr_split *s, uint64_t bad_gpa)
{
	void *p = (void *)(uintptr_t)s->hva;
	int err;

	/* The stand-in's marker over the whole huge page goes with its mapping. */
	vr_router_remove(v->router, s->hva, s->size, false);
	if (mmap(p, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->memfd, 0) ==
	    MAP_FAILED)
		return -errno;
	err = vr_router_add(v->router, s->hva, s->size, UFFDIO_REGISTER_MODE_MISSING, true,
			    &split_ops, s);
	if (err)
		return err;
	if (ftruncate(s->memfd, (off_t)s->size))
		err = -errno;
	if (!err)
		err = vr_vma_attrs_apply(s->hva, s->size, &s->attrs);
	if (!err && bad_gpa != VR_SPLIT_NO_BAD) {
		uint32_t bad = (uint32_t)((bad_gpa - s->gpa) / SUB);

		err = vr_uffd_poison(v->router, s->hva + (uint64_t)bad * SUB, SUB);
		if (!err) {
			s->state[bad] = VR_SUB_POISONED;
			s->ndone = 1;
		}
	}
	if (err)
		vr_router_remove(v->router, s->hva, s->size, true);
	return err;
}

/* With the vCPUs paused and map_lock held: the huge page back, as it was. */
static int swap_back(struct vmras *v, struct vr_split *s)
{
	if (mmap((void *)(uintptr_t)s->hva, s->size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, s->r->fd, s->file_off) == MAP_FAILED)
		return -errno;
	vr_uffd_wake(v->router, s->hva, s->size);
	return vr_vma_attrs_apply(s->hva, s->size, &s->attrs);
}

static int tell_vmm(struct vmras *v, struct vr_split *s, bool restore)
{
	struct vmras_remap m = {
		.gpa = s->gpa, .size = s->size, .hva = (void *)(uintptr_t)s->hva,
		.fd = restore ? s->r->fd : s->memfd,
		.offset = restore ? (uint64_t)s->file_off : 0, .restore = restore,
	};

	return v->cfg.ops.remap ? v->cfg.ops.remap(v->cfg.ops.opaque, &m) : 0;
}

int vr_split_begin(struct vmras *v, const struct vmras_region *r, uint64_t huge_gpa,
		   uint64_t bad_gpa, int *whole_err)
{
	uint64_t t_paused, t_resumed;
	struct vr_split *s;
	int err;

	*whole_err = 0;
	s = split_new(v, r, huge_gpa, &err);
	if (!s)
		goto contain_whole;
	v->cfg.ops.pause_vcpus(v->cfg.ops.opaque);
	t_paused = vr_mono_ns();
	pthread_rwlock_wrlock(&v->map_lock);
	err = swap_in(v, s, bad_gpa);
	s->t_live_ns = vr_now_ns();
	pthread_rwlock_unlock(&v->map_lock);
	/* Still paused: sharers of guest memory switch now, or refuse. */
	if (!err && tell_vmm(v, s, false)) {
		err = -ECANCELED;
		VR_STAT_ADD(v, splits_refused, 1);
		vr_router_remove(v->router, s->hva, s->size, true);
	}
	if (err) {
		pthread_rwlock_wrlock(&v->map_lock);
		*whole_err = swap_back(v, s);
		if (!*whole_err)
			*whole_err = vr_backing(r)->contain(v, r, huge_gpa, r->page_size, false);
		pthread_rwlock_unlock(&v->map_lock);
	} else {
		pthread_mutex_lock(&v->lock);
		s->next = v->splits;
		v->splits = s;
		v->stats.splits++;
		pthread_mutex_unlock(&v->lock);
	}
	t_resumed = vr_mono_ns();
	v->cfg.ops.resume_vcpus(v->cfg.ops.opaque);
	if (err) {
		split_free(s);
		return err;
	}
	pthread_mutex_lock(&v->lock);
	if (t_resumed - t_paused > v->stats.split_pause_ns_max)
		v->stats.split_pause_ns_max = t_resumed - t_paused;
	pthread_mutex_unlock(&v->lock);
	vr_router_kick(v->router);
	return 0;

contain_whole:
	/* Nothing changed yet, nothing paused: the whole huge page goes. */
	*whole_err = vr_backing(r)->contain(v, r, huge_gpa, r->page_size, false);
	return err;
}

int vr_split_poison(struct vmras *v, struct vr_split *s, uint64_t gpa)
{
	uint32_t idx = (uint32_t)((gpa - s->gpa) / SUB);
	uint64_t hva = s->hva + (uint64_t)idx * SUB;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (s->state[idx] == VR_SUB_POISONED)
		goto out;
	/* Filled already: out of the file and the mapping first (no fill races: s->lock). */
	if (s->state[idx] == VR_SUB_FILLED &&
	    (fallocate(s->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)((uint64_t)idx * SUB), (off_t)SUB) ||
	     madvise((void *)(uintptr_t)hva, SUB, MADV_DONTNEED))) {
		err = -errno;
		goto out;
	}
	err = vr_uffd_poison(v->router, hva, SUB);
	if (err == -EEXIST)
		err = 0; /* the marker is there */
	if (!err) {
		if (s->state[idx] == VR_SUB_MISSING)
			s->ndone++;
		s->state[idx] = VR_SUB_POISONED;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return err;
}

static int restore_one(struct vmras *v, struct vr_split *s)
{
	int err = 0;

	/* No fill runs after this; faults meanwhile are woken (unrouted). */
	vr_router_remove(v->router, s->hva, s->size, false);
	pthread_rwlock_wrlock(&v->map_lock);
	/* A fresh huge page: the old one (bad hardware) out of the file. */
	if (fallocate(s->r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s->file_off,
		      (off_t)s->size))
		err = -errno;
	{
		int e = swap_back(v, s);

		err = err ?: e;
	}
	pthread_rwlock_unlock(&v->map_lock);
	tell_vmm(v, s, true); /* a restore cannot be refused */
	return err;
}

int vr_split_restore_all(struct vmras *v)
{
	struct vr_split *list;
	int err = 0;

	pthread_mutex_lock(&v->lock);
	list = v->splits;
	v->splits = NULL;
	pthread_mutex_unlock(&v->lock);
	while (list) {
		struct vr_split *s = list;
		int e = restore_one(v, s);

		err = err ?: e;
		list = s->next;
		split_free(s);
	}
	return err;
}

void vr_split_free_all(struct vmras *v)
{
	while (v->splits) {
		struct vr_split *s = v->splits;

		v->splits = s->next;
		split_free(s);
	}
}
