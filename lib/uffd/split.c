// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Lose 4 KiB, not a huge page. On an error inside a hugetlb page:
 *   1. pause the vCPUs (the VMM's hook);
 *   2. map a 4 KiB-page shmem file over the huge page's range (same HVA,
 *      same memslot: KVM's MMU notifier drops its old mapping);
 *   3. register it with userfaultfd (missing pages) and poison the bad page;
 *   4. resume the vCPUs: no copying while they wait, whatever the size.
 * Any access to a subpage not yet there faults to the worker thread, which
 * reads it from the huge page's file (pread still returns the readable
 * parts; a kernel with memory-failure support says EIO for the bad one,
 * which is then poisoned too) and installs it with UFFDIO_COPY; the worker
 * fills the rest in the background, then frees the huge page.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"

#define SUB 4096ULL
#define FILL_BATCH 32

uint64_t vmras__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

bool split_possible(struct vmras *v)
{
	return v->uffd >= 0 && v->worker_started && v->cfg.ops.pause_vcpus &&
	       v->cfg.ops.resume_vcpus;
}

struct split *split_find(struct vmras *v, uint64_t gpa)
{
	for (unsigned int i = 0; i < MAX_SPLITS; i++)
		if (v->splits[i].used && gpa - v->splits[i].gpa < v->splits[i].size)
			return &v->splits[i];
	return NULL;
}

static int poison_range(int uffd, uint64_t hva, uint64_t len)
{
	struct uffdio_poison p = { .range = { .start = hva, .len = len } };
	long r = kabi_ioctl(uffd, UFFDIO_POISON, &p);

	return r == -EEXIST ? -EEXIST : (int)r;
}

static void wake_range(int uffd, uint64_t hva, uint64_t len)
{
	struct uffdio_range range = { .start = hva, .len = len };

	kabi_ioctl(uffd, UFFDIO_WAKE, &range);
}

static void remapped(struct vmras *v, const struct split *s, int fd, uint64_t offset)
{
	if (v->cfg.ops.remapped)
		v->cfg.ops.remapped(v->cfg.ops.opaque, s->gpa, s->size,
				    (void *)(uintptr_t)s->hva, fd, offset);
}

int split_begin(struct vmras *v, const struct vmras_region *r, uint64_t huge_gpa,
		uint64_t bad_gpa)
{
	uint64_t size = r->page_size, hva = (uintptr_t)r->hva + (huge_gpa - r->gpa);
	uint32_t bad = (uint32_t)((bad_gpa - huge_gpa) / SUB);
	struct uffdio_register reg = {
		.range = { .start = hva, .len = size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct split *s = NULL;
	uint8_t *state;
	int memfd, err;

	memfd = memfd_create("vmras-split", MFD_CLOEXEC);
	if (memfd < 0)
		return -errno;
	if (ftruncate(memfd, (off_t)size)) {
		err = -errno;
		close(memfd);
		return err;
	}
	state = calloc(size / SUB, 1);
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < MAX_SPLITS && !s; i++)
		if (!v->splits[i].used)
			s = &v->splits[i];
	if (s && state)
		*s = (struct split){
			.r = r, .gpa = huge_gpa, .size = size, .hva = hva, .memfd = memfd,
			.nsub = (uint32_t)(size / SUB), .state = state, .t_begin = vmras__mono_ns(),
			.t_begin_rt = vmras__now_ns(), .used = true,
		};
	pthread_mutex_unlock(&v->lock);
	if (!s || !state) {
		free(state);
		close(memfd);
		return s ? -ENOMEM : -ENOSPC;
	}

	v->cfg.ops.pause_vcpus(v->cfg.ops.opaque);
	s->t_paused = vmras__mono_ns();
	/* From here until resume, nothing runs that could touch the range. */
	err = mmap((void *)(uintptr_t)hva, size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_FIXED, memfd, 0) == MAP_FAILED ? -errno : 0;
	if (!err)
		err = (int)kabi_ioctl(v->uffd, UFFDIO_REGISTER, &reg);
	if (!err)
		err = poison_range(v->uffd, hva + (uint64_t)bad * SUB, SUB);
	/* Any access reported from before this moment saw the old mapping. */
	s->t_live_rt = vmras__now_ns();
	if (err) {
		/* Back to the huge page as it was; the caller contains it whole. */
		mmap((void *)(uintptr_t)hva, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		     r->fd, (off_t)(r->fd_offset + (huge_gpa - r->gpa)));
	}
	pthread_mutex_lock(&v->lock);
	if (err) {
		s->used = false;
	} else {
		s->state[bad] = SUB_POISONED;
		s->ndone = 1;
		v->stats.splits++;
	}
	pthread_mutex_unlock(&v->lock);
	s->t_resumed = vmras__mono_ns();
	v->cfg.ops.resume_vcpus(v->cfg.ops.opaque);
	if (err) {
		free(state);
		close(memfd);
		return err;
	}
	pthread_mutex_lock(&v->lock);
	if (s->t_resumed - s->t_paused > v->stats.split_pause_ns_max)
		v->stats.split_pause_ns_max = s->t_resumed - s->t_paused;
	pthread_mutex_unlock(&v->lock);
	remapped(v, s, memfd, 0);
	{
		uint64_t one = 1;

		(void)!write(v->worker_wake, &one, sizeof(one));
	}
	return 0;
}

int split_poison(struct vmras *v, uint64_t gpa)
{
	struct split *s;
	uint64_t hva, off;
	int memfd, err;

	pthread_mutex_lock(&v->lock);
	s = split_find(v, gpa);
	if (!s) {
		pthread_mutex_unlock(&v->lock);
		return -ENOENT;
	}
	off = (gpa - s->gpa) & ~(SUB - 1);
	hva = s->hva + off;
	memfd = s->memfd;
	if (s->state[off / SUB] != SUB_POISONED) {
		s->state[off / SUB] = SUB_POISONED;
		s->ndone++;
	}
	pthread_mutex_unlock(&v->lock);
	/* Filled already? Out of the file and the mapping first. Twice if the
	 * worker's copy slipped in between. */
	for (int tries = 0; tries < 2; tries++) {
		if (fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)SUB) ||
		    madvise((void *)(uintptr_t)hva, SUB, MADV_DONTNEED))
			return -errno;
		err = poison_range(v->uffd, hva, SUB);
		if (err != -EEXIST)
			return err;
	}
	return 0; /* the marker is there */
}

/* Read subpage idx back from the huge page's file and install it. */
static void fill_one(struct vmras *v, struct split *s, uint32_t idx)
{
	char buf[SUB] __attribute__((aligned(64)));
	const struct vmras_region *r;
	struct uffdio_copy c;
	uint64_t gpa, hva;
	ssize_t n;
	long rc;

	pthread_mutex_lock(&v->lock);
	if (!s->used || s->state[idx] != SUB_MISSING) {
		pthread_mutex_unlock(&v->lock);
		return;
	}
	r = s->r;
	gpa = s->gpa + (uint64_t)idx * SUB;
	hva = s->hva + (uint64_t)idx * SUB;
	pthread_mutex_unlock(&v->lock);

	n = pread(r->fd, buf, SUB, (off_t)(r->fd_offset + (gpa - r->gpa)));
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nhw_bad; i++)
		if (v->hw_bad[i] == gpa)
			n = -1; /* injected: the kernel would say EIO */
	pthread_mutex_unlock(&v->lock);
	if (n != (ssize_t)SUB) {
		/* The kernel knows this subpage is bad: it is another error. */
		struct vmras_event ev = {
			.valid = VMRAS_EV_GPA, .kind = VMRAS_AO, .source = VMRAS_SRC_SALVAGE,
			.addr_lsb = 12, .vcpu = -1, .gpa = gpa, .time_ns = vmras__now_ns(),
			.tid = vmras__gettid(),
		};

		/*
		 * Poisoned here and now: whoever faulted on it must not wait for
		 * the engine, which may itself be waiting for that vCPU to park.
		 */
		pthread_mutex_lock(&v->lock);
		if (s->used && s->state[idx] == SUB_MISSING) {
			s->state[idx] = SUB_POISONED;
			s->ndone++;
		}
		pthread_mutex_unlock(&v->lock);
		poison_range(v->uffd, hva, SUB);
		engine_submit(v, &ev, false);
		return;
	}
	c = (struct uffdio_copy){ .dst = hva, .src = (uintptr_t)buf, .len = SUB };
	rc = kabi_ioctl(v->uffd, UFFDIO_COPY, &c);
	if (rc == -EEXIST)
		wake_range(v->uffd, hva, SUB); /* someone was faster; wake any waiter */
	pthread_mutex_lock(&v->lock);
	if ((rc == 0 || rc == -EEXIST) && s->used && s->state[idx] == SUB_MISSING) {
		s->state[idx] = SUB_FILLED;
		s->ndone++;
		v->stats.subpages_salvaged++;
	}
	pthread_mutex_unlock(&v->lock);
}

/* Every subpage there: the old huge page goes back to the pool. */
static void finish_split(struct vmras *v, struct split *s)
{
	const struct vmras_region *r = s->r;

	fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)(r->fd_offset + (s->gpa - r->gpa)), (off_t)s->size);
	pthread_mutex_lock(&v->lock);
	s->filled = true;
	s->t_done = vmras__mono_ns();
	pthread_mutex_unlock(&v->lock);
}

static void serve_faults(struct vmras *v)
{
	struct uffd_msg msg;

	while (read(v->uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
		struct split *s;
		uint64_t addr;
		uint32_t idx = 0;

		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & ~(SUB - 1);
		pthread_mutex_lock(&v->lock);
		for (unsigned int i = 0; i < MAX_SPLITS; i++) {
			s = &v->splits[i];
			if (s->used && addr - s->hva < s->size) {
				idx = (uint32_t)((addr - s->hva) / SUB);
				break;
			}
			s = NULL;
		}
		pthread_mutex_unlock(&v->lock);
		/* Not a split range: a page being contained; its marker wakes it. */
		if (s)
			fill_one(v, s, idx);
	}
}

/* Fill a batch in the background; true while any split has work left. */
static bool fill_some(struct vmras *v)
{
	bool more = false;

	for (unsigned int i = 0; i < MAX_SPLITS; i++) {
		struct split *s = &v->splits[i];
		uint32_t idx, todo = 0;
		bool active;

		pthread_mutex_lock(&v->lock);
		active = s->used && !s->filled;
		pthread_mutex_unlock(&v->lock);
		if (!active)
			continue;
		while (todo < FILL_BATCH) {
			pthread_mutex_lock(&v->lock);
			while (s->cursor < s->nsub && s->state[s->cursor] != SUB_MISSING)
				s->cursor++;
			idx = s->cursor;
			pthread_mutex_unlock(&v->lock);
			if (idx >= s->nsub)
				break;
			fill_one(v, s, idx);
			todo++;
		}
		pthread_mutex_lock(&v->lock);
		active = s->ndone < s->nsub;
		pthread_mutex_unlock(&v->lock);
		if (!active)
			finish_split(v, s);
		else
			more = true;
	}
	return more;
}

static void *worker_thread(void *arg)
{
	struct vmras *v = arg;
	bool more = false;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = v->uffd, .events = POLLIN },
			{ .fd = v->worker_wake, .events = POLLIN },
		};
		uint64_t n;
		bool stop;

		/* Faults first (a vCPU waits); background filling when idle. */
		if (poll(pfd, 2, more ? 0 : -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			(void)!read(v->worker_wake, &n, sizeof(n));
		pthread_mutex_lock(&v->lock);
		stop = v->stopping;
		pthread_mutex_unlock(&v->lock);
		if (stop)
			break;
		serve_faults(v);
		more = fill_some(v);
	}
	return NULL;
}

int split_worker_start(struct vmras *v)
{
	int err;

	if (v->uffd < 0)
		return 0;
	v->worker_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->worker_wake < 0)
		return -errno;
	err = -pthread_create(&v->worker, NULL, worker_thread, v);
	if (!err)
		v->worker_started = true;
	return err;
}

void split_worker_stop(struct vmras *v)
{
	uint64_t one = 1;

	if (v->worker_started) {
		(void)!write(v->worker_wake, &one, sizeof(one));
		pthread_join(v->worker, NULL);
		v->worker_started = false;
	}
	if (v->worker_wake >= 0)
		close(v->worker_wake);
	v->worker_wake = -1;
	for (unsigned int i = 0; i < MAX_SPLITS; i++)
		if (v->splits[i].used) {
			close(v->splits[i].memfd);
			free(v->splits[i].state);
			v->splits[i].used = false;
		}
}

int split_restore_all(struct vmras *v)
{
	int err = 0;

	for (unsigned int i = 0; i < MAX_SPLITS; i++) {
		struct split *s = &v->splits[i], copy;

		pthread_mutex_lock(&v->lock);
		copy = *s;
		s->used = false;
		pthread_mutex_unlock(&v->lock);
		if (!copy.used)
			continue;
		/* A fresh huge page: the old one (bad hardware) out of the file. */
		fallocate(copy.r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(copy.r->fd_offset + (copy.gpa - copy.r->gpa)), (off_t)copy.size);
		if (mmap((void *)(uintptr_t)copy.hva, copy.size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, copy.r->fd,
			 (off_t)(copy.r->fd_offset + (copy.gpa - copy.r->gpa))) == MAP_FAILED && !err)
			err = -errno;
		remapped(v, &copy, copy.r->fd, copy.r->fd_offset + (copy.gpa - copy.r->gpa));
		close(copy.memfd);
		free(copy.state);
	}
	return err;
}
