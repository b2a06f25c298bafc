// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Huge-page splitting (see split.h). While the vCPUs are paused, and with
 * map_lock held so no safe copy runs:
 *   1. map the replacement over the huge page's range at the same HVA
 *      (same memslot: KVM's MMU notifier drops its old mapping), so that
 *      no access can instantiate a page before step 2: a 4 KiB memfd of
 *      size 0 (an access is SIGBUS), a 2 MiB hugetlb memfd PROT_NONE;
 *   2. register it with the userfaultfd (missing faults come to us);
 *   3. open it (size, or protection), re-apply NUMA policy and madvise;
 *   4. poison the bad 4 KiB page (nesting its 2 MiB chunk first);
 *   5. tell the VMM (it may refuse);
 * then resume: no copying while they wait, whatever the size.
 *
 * The fill reads the old page through its file (read(2): on a kernel with
 * memory failure a poisoned huge page can no longer be mapped, but its
 * file still reads up to the bad 4 KiB page, then EIO) into the new
 * file's page cache through a mapping of our own, then maps the pages into
 * guest RAM with UFFDIO_CONTINUE. The guest mapping is registered for
 * missing and minor faults, so a page being filled is never visible to a
 * vCPU before it is whole: every fault waits for the router, which
 * continues a page only once it is filled. 4 KiB pages cost the kernel an
 * allocation each (about a microsecond): a 1 GiB page therefore becomes
 * 2 MiB pages where the pool has them, and fills at about memcpy speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"
#include "kabi/memfd.h"
#include "kabi/userfaultfd.h"
#include "memory/backing.h"
#include "memory/vma.h"
#include "record/record.h"
#include "uffd/router.h"
#include "uffd/split.h"
#include "util/clock.h"

#define SUB SMALL_PAGE
#define MID (2ULL << 20)
#define FAULT_GROUP 16		/* 4 KiB pages filled together on a fault: 64 KiB */
#define IDLE_BYTES (16 * MID)	/* filled per background step (faults wait at most one) */
#define VR_SUB_PENDING 0x80	/* a 2 MiB chunk poisoned whole, waiting to be nested */
/* Missing faults (not there yet) and minor ones (there, not yet mapped). */
#define FILL_MODE (UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR)

struct vr_split {
	struct vr_split *next;	/* v->splits: top-level splits */
	struct vr_split *parent;	/* a nested split: one 2 MiB chunk of it */
	struct vmras *v;
	const struct vmras_region *r;
	uint64_t gpa, size, hva;
	uint64_t sub;		/* the new page size: SUB or MID */
	int old_fd;		/* what held the data before (punched when filled), or -1 */
	off_t old_off;
	int src_fd;		/* where the data is read from (old_fd, or a parent's memfd) */
	off_t src_off;
	int memfd;		/* the replacement */
	char *fill_map;		/* our own mapping of memfd: the fill writes there */
	struct vr_vma_attrs attrs;

	pthread_mutex_t lock;	/* state, child, ndone, cursor, filled */
	uint8_t *state;		/* enum vr_sub (or PENDING) per subpage */
	struct vr_split **child;	/* MID: chunk -> nested split */
	uint32_t nchildren, *child_idx;	/* which chunks are nested, in order */
	uint32_t nsub, ndone, cursor;
	bool filled;
	uint64_t live_seq;	/* arrival number when the new mapping went in */
};

static void split_free(struct vr_split *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->child && i < s->nsub; i++)
		split_free(s->child[i]);
	if (s->memfd >= 0)
		close(s->memfd);
	if (s->fill_map && s->fill_map != MAP_FAILED)
		munmap(s->fill_map, s->size);
	pthread_mutex_destroy(&s->lock);
	free(s->child);
	free(s->child_idx);
	free(s->state);
	free(s);
}

static struct vr_split *split_alloc(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
				    uint64_t size, uint64_t sub)
{
	struct vr_split *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	*s = (struct vr_split){
		.v = v, .r = r, .gpa = gpa, .size = size, .sub = sub,
		.hva = (uintptr_t)r->hva + (gpa - r->gpa), .nsub = (uint32_t)(size / sub),
		.memfd = -1, .old_fd = -1, .src_fd = -1,
	};
	pthread_mutex_init(&s->lock, NULL);
	s->state = calloc(s->nsub, 1);
	if (sub == MID) {
		s->child = calloc(s->nsub, sizeof(*s->child));
		s->child_idx = calloc(s->nsub, sizeof(*s->child_idx));
	}
	if (!s->state || (sub == MID && (!s->child || !s->child_idx))) {
		split_free(s);
		return NULL;
	}
	return s;
}

bool vr_split_possible(struct vmras *v, const struct vmras_region *r, char *why, size_t len)
{
	const char *no = NULL;

	if (!vr_backing(r)->can_split || r->page_size <= SUB)
		no = "not a huge page";
	else if (!v->router)
		no = "no userfaultfd";
	else if ((vr_router_features(v->router) & (UFFD_FEATURE_MINOR_SHMEM |
						   UFFD_FEATURE_MINOR_HUGETLBFS)) !=
		 (UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS))
		no = "the userfaultfd offers no minor faults on shmem and hugetlb (Linux 5.14)";
	else if (!vr_router_kernel_faults(v->router))
		no = "the userfaultfd serves only user-mode faults, not KVM's (no /dev/userfaultfd "
		     "access, no CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=0)";
	else if (!v->cfg.ops.pause_vcpus || !v->cfg.ops.resume_vcpus || !v->cfg.ops.vcpu_blocked)
		no = "the VMM gave no pause_vcpus/resume_vcpus/vcpu_blocked hooks";
	if (no && why)
		snprintf(why, len, "%s", no);
	return !no;
}

static struct vr_split *top_of(struct vmras *v, uint64_t gpa)
{
	for (struct vr_split *s = v->splits; s; s = s->next)
		if (gpa - s->gpa < s->size)
			return s;
	return NULL;
}

static uint32_t index_of(const struct vr_split *s, uint64_t gpa)
{
	return (uint32_t)((gpa - s->gpa) / s->sub);
}

struct vr_split *vr_split_find(struct vmras *v, uint64_t gpa)
{
	struct vr_split *s = top_of(v, gpa), *c = NULL;

	if (s && s->sub == MID) {
		pthread_mutex_lock(&s->lock);
		c = s->child[index_of(s, gpa)];
		pthread_mutex_unlock(&s->lock);
	}
	return c ? c : s;
}

enum vr_sub vr_split_state(struct vr_split *s, uint64_t gpa)
{
	uint8_t st;

	pthread_mutex_lock(&s->lock);
	st = s->state[index_of(s, gpa)];
	pthread_mutex_unlock(&s->lock);
	return st == VR_SUB_PENDING ? VR_SUB_MISSING : (enum vr_sub)st;
}

uint64_t vr_split_sub_size(const struct vr_split *s)
{
	return s->sub;
}

uint64_t vr_split_live_seq(const struct vr_split *s)
{
	return s->live_seq;
}

uint64_t vr_split_granule(struct vmras *v, const struct vmras_region *r, uint64_t gpa)
{
	uint64_t g = r->page_size;
	struct vr_split *s;

	/* Under v->lock the engine cannot free it; a state byte is read whole. */
	pthread_mutex_lock(&v->lock);
	s = top_of(v, gpa);
	if (s)
		g = s->sub == SUB || __atomic_load_n(&s->state[index_of(s, gpa)], __ATOMIC_RELAXED) ==
						   VR_SUB_NESTED
			    ? SUB
			    : MID;
	pthread_mutex_unlock(&v->lock);
	return g;
}

/* Can the old data of gpa still be read (the kernel says EIO for a bad page)? */
static bool source_readable(const struct vr_split *s, uint64_t gpa)
{
	char b[SUB] __attribute__((aligned(64)));
	off_t off = s->src_off + (off_t)((gpa - s->gpa) & ~(SUB - 1));

	if (vr_hw_is_bad(s->v, gpa & ~(SUB - 1), SUB))
		return false; /* injected: the kernel would say so */
	return s->src_fd < 0 || pread(s->src_fd, b, SUB, off) == (ssize_t)SUB;
}

/* ---- the fill (router thread) ---------------------------------------- */

static void salvage_event(struct vr_split *s, uint64_t gpa)
{
	struct vmras_event ev = {
		.valid = VMRAS_EV_GPA, .kind = VMRAS_AO, .source = VMRAS_SRC_SALVAGE,
		.addr_lsb = 12, .vcpu = -1, .gpa = gpa, .time_ns = vr_now_ns(), .tid = vr_gettid(),
	};

	/* No wait: the engine may itself be waiting for a vCPU that waits on us. */
	if (vr_submit_event(s->v, &ev, 0, false))
		VR_STAT_ADD(s->v, reports_lost, 1);
}

/*
 * With s->lock held: subpage idx holds a bad page (bad_gpa, or somewhere in
 * it). Poisoned here and now, whoever faulted on it must not wait for the
 * engine; a 2 MiB chunk is poisoned whole until the engine nests it.
 */
static void bad_found(struct vr_split *s, uint32_t idx, uint64_t bad_gpa)
{
	uint64_t off = (uint64_t)idx * s->sub;
	int err;

	s->state[idx] = s->sub == SUB ? VR_SUB_POISONED : VR_SUB_PENDING;
	if (s->sub == SUB)
		s->ndone++;
	/* What a short read left in the new page: out, so no one maps it. */
	if (fallocate(s->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)s->sub))
		VR_STAT_ADD(s->v, fill_errors, 1);
	err = vr_uffd_poison(s->v->router, s->hva + off, s->sub);
	/* Without the marker a fault finds it poisoned here and tries again. */
	if (err && err != -EEXIST)
		VR_STAT_ADD(s->v, fill_errors, 1);
	salvage_event(s, bad_gpa);
}

static int uffd_continue(struct vr_split *s, uint32_t i, uint32_t n, uint32_t *mapped)
{
	*mapped = 0;
	while (*mapped < n) {
		uint32_t k = i + *mapped;
		struct uffdio_continue c = { .range = { .start = s->hva + (uint64_t)k * s->sub,
							.len = (uint64_t)(n - *mapped) * s->sub } };
		long r = kabi_ioctl(vr_router_fd(s->v->router), UFFDIO_CONTINUE, &c);

		if (!r) {
			*mapped = n;
			break;
		}
		if (c.mapped > 0)
			*mapped += (uint32_t)(c.mapped / (int64_t)s->sub);
		else if (r == -EEXIST)
			*mapped += 1; /* that page was mapped already: our page cache page */
		else
			return (int)r;
	}
	return 0;
}

/*
 * With s->lock held: fill subpages [i, j) (all missing, none known bad):
 * read them into the new page cache, then map them. Returns how many it
 * filled; *stalled when the kernel had no memory or the mapping was
 * changing (tried again later).
 */
static uint32_t read_run(struct vr_split *s, uint32_t i, uint32_t j, bool *stalled)
{
	uint64_t off = (uint64_t)i * s->sub, len = (uint64_t)(j - i) * s->sub;
	uint32_t whole, mapped;
	ssize_t n;
	int err;

	do
		n = pread(s->src_fd, s->fill_map + off, len, s->src_off + (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EIO) {
		*stalled = true;
		VR_STAT_ADD(s->v, fill_errors, 1);
		return 0;
	}
	whole = n < 0 ? 0 : (uint32_t)((uint64_t)n / s->sub);
	err = whole ? uffd_continue(s, i, whole, &mapped) : 0;
	if (err) {
		*stalled = true; /* EAGAIN, ENOMEM: the data is there, map it later */
		whole = mapped;
	}
	for (uint32_t k = i; k < i + whole; k++)
		s->state[k] = VR_SUB_FILLED;
	s->ndone += whole;
	/* A short read stopped at a page the kernel knows is bad. */
	if (!err && i + whole < j)
		bad_found(s, i + whole, s->gpa + off + (n > 0 ? (uint64_t)n & ~(SUB - 1) : 0));
	return whole;
}

/* Fill the missing subpages in [first, last) of s. */
static void fill_range(struct vr_split *s, uint32_t first, uint32_t last, bool *stalled)
{
	struct vmras *v = s->v;
	uint64_t lo = s->gpa + (uint64_t)first * s->sub, span = (uint64_t)(last - first) * s->sub;
	uint32_t filled = 0, i = first, nbad = 0;
	uint64_t bad[64];

	/* The stand-in's bad pages here, looked up once: a copy would stop there. */
	pthread_mutex_lock(&v->lock);
	for (size_t k = 0; k < v->hw_bad.n && nbad < 64; k++)
		if (v->hw_bad.gpa[k] - lo < span)
			bad[nbad++] = v->hw_bad.gpa[k];
	pthread_mutex_unlock(&v->lock);

	pthread_mutex_lock(&s->lock);
	while (i < last && !*stalled) {
		uint32_t j = i + 1, next_bad = last, done;
		uint64_t bad_gpa = 0;

		if (s->state[i] != VR_SUB_MISSING) {
			i++;
			continue;
		}
		for (uint32_t k = 0; k < nbad; k++)
			if (index_of(s, bad[k]) >= i && index_of(s, bad[k]) < next_bad) {
				next_bad = index_of(s, bad[k]);
				bad_gpa = bad[k];
			}
		if (next_bad == i) {
			bad_found(s, i++, bad_gpa);
			continue;
		}
		while (j < next_bad && s->state[j] == VR_SUB_MISSING)
			j++;
		done = read_run(s, i, j, stalled);
		filled += done;
		i += done ? done : 1;
	}
	pthread_mutex_unlock(&s->lock);
	if (filled)
		VR_STAT_ADD(v, subpages_salvaged, filled * (s->sub / SUB));
}

static void fill_around(struct vr_split *s, uint64_t addr)
{
	uint32_t idx = (uint32_t)((addr - s->hva) / s->sub), first = idx, last = idx + 1;
	bool stalled = false;

	if (s->sub == SUB) {
		first = idx & ~(FAULT_GROUP - 1u);
		last = first + FAULT_GROUP < s->nsub ? first + FAULT_GROUP : s->nsub;
	}
	fill_range(s, first, last, &stalled);
}

/*
 * A fault after the page was filled: its mapping went (reclaim, a
 * madvise) and the page cache still holds it, or a marker that failed to
 * go in: put it back.
 */
static void refault(struct vr_split *s, uint64_t addr)
{
	uint32_t idx = (uint32_t)((addr - s->hva) / s->sub), mapped;
	uint8_t st;

	pthread_mutex_lock(&s->lock);
	st = s->state[idx];
	if (st == VR_SUB_FILLED)
		uffd_continue(s, idx, 1, &mapped);
	else if (st == VR_SUB_POISONED || st == VR_SUB_PENDING)
		vr_uffd_poison(s->v->router, s->hva + (uint64_t)idx * s->sub, s->sub);
	pthread_mutex_unlock(&s->lock);
}

static void split_fault(void *opaque, uint64_t addr, uint64_t flags)
{
	struct vr_split *s = opaque, *c = NULL;

	(void)flags;
	if (s->sub == MID) {
		pthread_mutex_lock(&s->lock);
		c = s->child[index_of(s, s->gpa + (addr - s->hva))];
		pthread_mutex_unlock(&s->lock);
	}
	s = c ? c : s;
	fill_around(s, addr);
	refault(s, addr);
	/* Filled, or poisoned (the marker answers), or a fill that failed: retry. */
	vr_uffd_wake(s->v->router, addr & ~(SUB - 1), SUB);
}

/* With s->lock held: every subpage is there: the old page goes back to the pool. */
static void finish(struct vr_split *s)
{
	munmap(s->fill_map, s->size);
	s->fill_map = NULL;
	if (s->old_fd >= 0 &&
	    fallocate(s->old_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s->old_off,
		      (off_t)s->size))
		VR_STAT_ADD(s->v, fill_errors, 1); /* the old page stays until reset */
	s->filled = true;
	/* Every good subpage is back (rec->lock is a leaf: fine under s->lock). */
	if (s->v->record)
		vr_record_change(s->v->record, s->gpa, s->size, "salvaged");
}

/* One background step on s; true when s is filled. */
static bool fill_step(struct vr_split *s, bool *stalled)
{
	uint32_t start, end, step = (uint32_t)(IDLE_BYTES / s->sub);
	bool done;

	pthread_mutex_lock(&s->lock);
	while (s->cursor < s->nsub && s->state[s->cursor] != VR_SUB_MISSING)
		s->cursor++;
	start = s->cursor;
	done = s->filled;
	pthread_mutex_unlock(&s->lock);
	if (done)
		return true;
	end = start + step < s->nsub ? start + step : s->nsub;
	if (start < s->nsub)
		fill_range(s, start, end, stalled);
	return false;
}

static int split_idle(void *opaque)
{
	struct vr_split *s = opaque;
	bool stalled = false, children_done = true, done;
	uint32_t nchildren;

	pthread_mutex_lock(&s->lock);
	nchildren = s->nchildren;
	pthread_mutex_unlock(&s->lock);
	/* Nested chunks first: a vCPU is most likely there. */
	for (uint32_t i = 0; i < nchildren; i++) {
		struct vr_split *c;

		pthread_mutex_lock(&s->lock);
		c = s->child[s->child_idx[i]];
		pthread_mutex_unlock(&s->lock);
		if (c && !fill_step(c, &stalled)) {
			children_done = false;
			pthread_mutex_lock(&c->lock);
			if (c->ndone == c->nsub && !c->filled)
				finish(c);
			pthread_mutex_unlock(&c->lock);
		}
	}
	fill_step(s, &stalled);
	pthread_mutex_lock(&s->lock);
	done = s->ndone == s->nsub && children_done;
	if (done && !s->filled)
		finish(s);
	pthread_mutex_unlock(&s->lock);
	return done ? VR_IDLE_DONE : stalled ? VR_IDLE_STALLED : VR_IDLE_MORE;
}

static const struct vr_route_ops split_ops = { .fault = split_fault, .idle = split_idle };

/* ---- begin, nest, poison, restore (engine thread) ---------------------- */

static int uffd_register(struct vmras *v, uint64_t start, uint64_t len)
{
	struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = FILL_MODE };

	return (int)kabi_ioctl(vr_router_fd(v->router), UFFDIO_REGISTER, &reg);
}

static int tell_vmm(struct vmras *v, const struct vr_split *s, bool restore)
{
	struct vmras_remap m = {
		.gpa = s->gpa, .size = s->size, .hva = (void *)(uintptr_t)s->hva,
		.fd = restore ? s->r->fd : s->memfd,
		.offset = restore ? s->r->fd_offset + (s->gpa - s->r->gpa) : 0,
		.restore = restore,
	};

	return v->cfg.ops.remap ? v->cfg.ops.remap(v->cfg.ops.opaque, &m) : 0;
}

/*
 * The replacement, ready before the pause: a 2 MiB hugetlb file for a
 * 1 GiB page when the pool can reserve it (a trial mapping reserves it
 * for the file), else a 4 KiB memfd, empty until it is registered.
 */
static int make_replacement(struct vr_split *s)
{
	bool huge = s->sub == MID;

	s->memfd = memfd_create(huge ? "vmras-split-2m" : "vmras-split",
				MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	/* Our own mapping for the fill; for hugetlb it reserves the pages too. */
	if (s->memfd < 0 || ftruncate(s->memfd, (off_t)s->size))
		return -errno;
	s->fill_map = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
	if (s->fill_map == MAP_FAILED) {
		s->fill_map = NULL;
		return -errno;
	}
	/* 4 KiB: empty again until registered (an early access is SIGBUS, not a zero page). */
	return huge || !ftruncate(s->memfd, 0) ? 0 : -errno;
}

/* vCPUs paused, map_lock held: the replacement over s's range, registered, open. */
static int map_replacement(struct vmras *v, struct vr_split *s, bool route)
{
	void *p = (void *)(uintptr_t)s->hva;
	int prot = s->sub == MID ? PROT_NONE : PROT_READ | PROT_WRITE;
	int err;

	if (mmap(p, s->size, prot, MAP_SHARED | MAP_FIXED, s->memfd, 0) == MAP_FAILED)
		return -errno;
	err = uffd_register(v, s->hva, s->size);
	if (err)
		return err;
	if (s->sub == SUB ? ftruncate(s->memfd, (off_t)s->size)
			  : mprotect(p, s->size, PROT_READ | PROT_WRITE))
		err = -errno;
	/* Routed only once open: the fill must not write past the file's end. */
	if (!err && route)
		err = vr_router_add(v->router, s->hva, s->size, FILL_MODE, false, &split_ops, s);
	if (!err)
		err = vr_vma_attrs_apply(s->hva, s->size, &s->attrs);
	/* Whoever waited on the old mapping tries again on this one. */
	vr_uffd_wake(v->router, s->hva, s->size);
	return err;
}

/* With s->lock held: poison bad_gpa's 4 KiB page in a 4 KiB split. */
static int poison_locked(struct vmras *v, struct vr_split *s, uint64_t bad_gpa)
{
	uint32_t idx = index_of(s, bad_gpa);
	uint64_t hva = s->hva + (uint64_t)idx * SUB;
	int err;

	if (s->state[idx] == VR_SUB_POISONED)
		return 0;
	/* Filled already: out of the file and the mapping first (no fill races: s->lock). */
	if (s->state[idx] == VR_SUB_FILLED &&
	    (fallocate(s->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)((uint64_t)idx * SUB), (off_t)SUB) ||
	     madvise((void *)(uintptr_t)hva, SUB, MADV_DONTNEED)))
		return -errno;
	err = vr_uffd_poison(v->router, hva, SUB);
	if (err && err != -EEXIST) /* EEXIST: the marker is there */
		return err;
	if (s->state[idx] == VR_SUB_MISSING)
		s->ndone++;
	s->state[idx] = VR_SUB_POISONED;
	return 0;
}

/*
 * vCPUs paused, map_lock held: 2 MiB chunk idx of p becomes 4 KiB pages.
 * Its data comes from where it is now: the old page, or p's 2 MiB page.
 */
static struct vr_split *nest_prepare(struct vmras *v, struct vr_split *p, uint32_t idx)
{
	struct vr_split *c = split_alloc(v, p->r, p->gpa + (uint64_t)idx * MID, MID, SUB);

	if (!c)
		return NULL;
	c->parent = p;
	c->attrs = p->attrs;
	if (make_replacement(c)) {
		split_free(c);
		return NULL;
	}
	return c;
}

static int nest(struct vmras *v, struct vr_split *p, struct vr_split *c, uint64_t bad_gpa)
{
	uint32_t idx = index_of(p, c->gpa);
	uint8_t st;
	int err;

	pthread_mutex_lock(&p->lock);
	st = p->state[idx];
	if (st == VR_SUB_FILLED) {
		/* p's 2 MiB page holds it (and goes when the chunk is filled). */
		c->src_fd = c->old_fd = p->memfd;
		c->src_off = c->old_off = (off_t)((uint64_t)idx * MID);
	} else {
		c->src_fd = p->src_fd;
		c->src_off = p->src_off + (off_t)((uint64_t)idx * MID);
	}
	err = map_replacement(v, c, false);
	if (!err && bad_gpa != VR_SPLIT_NO_BAD)
		err = poison_locked(v, c, bad_gpa);
	if (!err) {
		c->live_seq = __atomic_load_n(&v->seq, __ATOMIC_SEQ_CST);
		if (st != VR_SUB_FILLED)
			p->ndone++;
		__atomic_store_n(&p->state[idx], VR_SUB_NESTED, __ATOMIC_RELAXED);
		p->child[idx] = c;
		p->child_idx[p->nchildren++] = idx;
	}
	pthread_mutex_unlock(&p->lock);
	if (!err)
		return 0;
	split_free(c);
	return err;
}

/*
 * vCPUs paused, map_lock held: a nest failed: the chunk goes back to p's
 * 2 MiB page, poisoned whole.
 */
static int unnest(struct vmras *v, struct vr_split *p, uint32_t idx)
{
	uint64_t hva = p->hva + (uint64_t)idx * MID;
	int err = 0;

	if (mmap((void *)(uintptr_t)hva, MID, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 p->memfd, (off_t)((uint64_t)idx * MID)) == MAP_FAILED)
		return -errno;
	err = uffd_register(v, hva, MID) ?: vr_vma_attrs_apply(hva, MID, &p->attrs);
	pthread_mutex_lock(&p->lock);
	if (!err && p->state[idx] == VR_SUB_FILLED &&
	    (madvise((void *)(uintptr_t)hva, MID, MADV_DONTNEED) ||
	     fallocate(p->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)((uint64_t)idx * MID), (off_t)MID)))
		err = -errno;
	if (!err) {
		err = vr_uffd_poison(v->router, hva, MID);
		err = err == -EEXIST ? 0 : err;
	}
	if (!err) {
		if (p->state[idx] != VR_SUB_FILLED)
			p->ndone++;
		p->state[idx] = VR_SUB_POISONED;
	}
	pthread_mutex_unlock(&p->lock);
	return err;
}

/* vCPUs paused, map_lock held: the whole huge page back, as it was. */
static int swap_back(struct vmras *v, struct vr_split *s)
{
	if (mmap((void *)(uintptr_t)s->hva, s->size, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, s->r->fd,
		 (off_t)(s->r->fd_offset + (s->gpa - s->r->gpa))) == MAP_FAILED)
		return -errno;
	vr_uffd_wake(v->router, s->hva, s->size);
	return vr_vma_attrs_apply(s->hva, s->size, &s->attrs);
}

static struct vr_split *top_new(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
				int *err)
{
	uint64_t base = gpa & ~(r->page_size - 1);
	struct vr_split *s = NULL;

	/* 2 MiB pages where the pool has them; else (and for 2 MiB pages) 4 KiB. */
	for (uint64_t sub = r->page_size > MID ? MID : SUB;; sub = SUB) {
		s = split_alloc(v, r, base, r->page_size, sub);
		*err = s ? make_replacement(s) : -ENOMEM;
		if (!*err || sub == SUB)
			break;
		split_free(s);
	}
	if (*err)
		goto fail;
	s->old_fd = s->src_fd = r->fd;
	s->old_off = s->src_off = (off_t)(r->fd_offset + (base - r->gpa));
	*err = vr_vma_attrs_get(v, r, s->hva, &s->attrs);
	if (!*err)
		return s;
fail:
	split_free(s);
	return NULL;
}

static int begin_top(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		     uint64_t bad_gpa, struct vr_split_loss *loss)
{
	struct vr_split *s = NULL, *child = NULL;
	uint64_t t_paused, t_resumed;
	int err = -EBUSY;

	*loss = (struct vr_split_loss){ .gpa = gpa & ~(r->page_size - 1), .size = r->page_size };
	/* A range the VMM serves itself (post-copy, say) is not ours to remap. */
	if (!vr_router_vmm_owned(v->router, (uintptr_t)r->hva + (loss->gpa - r->gpa), loss->size))
		s = top_new(v, r, gpa, &err);
	if (s && s->sub == MID && bad_gpa != VR_SPLIT_NO_BAD) {
		child = nest_prepare(v, s, index_of(s, bad_gpa));
		if (!child) {
			split_free(s);
			s = NULL;
			err = -ENOMEM;
		}
	}
	if (!s) {
		/* Nothing changed yet, nothing paused: the whole huge page goes. */
		loss->err = vr_backing(r)->contain(v, r, loss->gpa, loss->size, false);
		return err;
	}
	v->cfg.ops.pause_vcpus(v->cfg.ops.opaque);
	t_paused = vr_mono_ns();
	/*
	 * The stand-in's marker over the whole huge page goes with its
	 * mapping. (Not under map_lock: removal waits for callbacks.)
	 */
	vr_router_remove(v->router, s->hva, s->size, false);
	pthread_rwlock_wrlock(&v->map_lock);
	err = map_replacement(v, s, true);
	if (!err && bad_gpa != VR_SPLIT_NO_BAD) {
		if (child) {
			err = nest(v, s, child, bad_gpa);
			child = NULL; /* nest owns it now, in s or freed */
		} else {
			pthread_mutex_lock(&s->lock);
			err = poison_locked(v, s, bad_gpa);
			pthread_mutex_unlock(&s->lock);
		}
	}
	s->live_seq = __atomic_load_n(&v->seq, __ATOMIC_SEQ_CST);
	pthread_rwlock_unlock(&v->map_lock);
	/* Still paused: sharers of guest memory switch now (the nested chunk too), or refuse. */
	if (!err && (tell_vmm(v, s, false) ||
		     (s->sub == MID && bad_gpa != VR_SPLIT_NO_BAD &&
		      tell_vmm(v, s->child[index_of(s, bad_gpa)], false)))) {
		err = -ECANCELED;
		VR_STAT_ADD(v, splits_refused, 1);
	}
	if (err) {
		vr_router_remove(v->router, s->hva, s->size, true);
		pthread_rwlock_wrlock(&v->map_lock);
		loss->err = swap_back(v, s);
		if (!loss->err)
			loss->err = vr_backing(r)->contain(v, r, loss->gpa, loss->size, false);
		pthread_rwlock_unlock(&v->map_lock);
	} else {
		pthread_mutex_lock(&v->lock);
		s->next = v->splits;
		v->splits = s;
		v->stats.splits++;
		pthread_mutex_unlock(&v->lock);
		if (v->record)
			vr_record_change(v->record, s->gpa, s->size, "split");
	}
	t_resumed = vr_mono_ns();
	v->cfg.ops.resume_vcpus(v->cfg.ops.opaque);
	if (err) {
		split_free(child);
		split_free(s);
		return err;
	}
	pthread_mutex_lock(&v->lock);
	if (t_resumed - t_paused > v->stats.split_pause_ns_max)
		v->stats.split_pause_ns_max = t_resumed - t_paused;
	pthread_mutex_unlock(&v->lock);
	vr_router_kick(v->router);
	return 0;
}

/* A new error in a 2 MiB chunk of a 1 GiB split: that chunk becomes 4 KiB pages. */
static int begin_nested(struct vmras *v, struct vr_split *p, uint64_t gpa, uint64_t bad_gpa,
			struct vr_split_loss *loss)
{
	uint32_t idx = index_of(p, gpa);
	struct vr_split *c = nest_prepare(v, p, idx);
	int err;

	*loss = (struct vr_split_loss){ .gpa = p->gpa + (uint64_t)idx * MID, .size = MID };
	v->cfg.ops.pause_vcpus(v->cfg.ops.opaque);
	pthread_rwlock_wrlock(&v->map_lock);
	err = c ? nest(v, p, c, bad_gpa) : -ENOMEM;
	pthread_rwlock_unlock(&v->map_lock);
	if (!err) {
		pthread_mutex_lock(&p->lock);
		c = p->child[idx];
		pthread_mutex_unlock(&p->lock);
		if (tell_vmm(v, c, false)) {
			err = -ECANCELED;
			VR_STAT_ADD(v, splits_refused, 1);
			/* No callback may run on the child while it goes. */
			vr_router_remove(v->router, p->hva, p->size, false);
			pthread_mutex_lock(&p->lock);
			p->child[idx] = NULL;
			p->nchildren--; /* it was the last one added */
			p->state[idx] = c->old_fd >= 0 ? VR_SUB_FILLED : VR_SUB_MISSING;
			if (c->old_fd < 0)
				p->ndone--;
			pthread_mutex_unlock(&p->lock);
			split_free(c);
		}
	}
	if (err) {
		pthread_rwlock_wrlock(&v->map_lock);
		loss->err = unnest(v, p, idx);
		pthread_rwlock_unlock(&v->map_lock);
	} else {
		VR_STAT_ADD(v, splits, 1);
		if (v->record)
			vr_record_change(v->record, p->gpa + (uint64_t)idx * MID, MID, "split");
	}
	if (err == -ECANCELED &&
	    vr_router_add(v->router, p->hva, p->size, FILL_MODE, false, &split_ops, p)) {
		/* Unfilled chunks would fault unrouted: keep retrying is all that is left. */
		VR_STAT_ADD(v, fill_errors, 1);
	}
	v->cfg.ops.resume_vcpus(v->cfg.ops.opaque);
	vr_router_kick(v->router);
	return err;
}

int vr_split_begin(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		   uint64_t bad_gpa, struct vr_split_loss *loss)
{
	struct vr_split *p = top_of(v, gpa);

	if (p && p->sub == MID && vr_split_state(p, gpa) != VR_SUB_NESTED)
		return begin_nested(v, p, gpa, bad_gpa, loss);
	return begin_top(v, r, gpa, bad_gpa, loss);
}

int vr_split_poison(struct vmras *v, struct vr_split *s, uint64_t gpa)
{
	int err;

	if (s->sub != SUB) /* a 2 MiB chunk poisoned whole has nothing more to poison */
		return vr_split_state(s, gpa) == VR_SUB_POISONED ? 0 : -EINVAL;
	pthread_mutex_lock(&s->lock);
	err = poison_locked(v, s, gpa);
	pthread_mutex_unlock(&s->lock);
	return err;
}

bool vr_split_read_back(struct vr_split *s, uint64_t gpa)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = source_readable(s, gpa);
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static int restore_one(struct vmras *v, struct vr_split *s)
{
	int err = 0, e;

	/*
	 * No safe copy first (one waiting on an unfilled subpage would spin
	 * once the route is gone), then no fill: the fill never takes
	 * map_lock, so waiting for it under the lock is safe.
	 */
	pthread_rwlock_wrlock(&v->map_lock);
	vr_router_remove(v->router, s->hva, s->size, false);
	/* A fresh huge page: the old one (bad hardware) out of the file. */
	if (fallocate(s->r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(s->r->fd_offset + (s->gpa - s->r->gpa)), (off_t)s->size))
		err = -errno;
	e = swap_back(v, s);
	err = err ?: e;
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
