// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The fault router (see router.h). Routes live in an array sorted by
 * start; each carries a count of callbacks running on it, so removal can
 * wait for them instead of freeing what the router thread still uses.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"
#include "uffd/router.h"

#define MAX_MSGS 64
#define STALL_RETRY_MS 10

struct route {
	uint64_t start, len;
	const struct vr_route_ops *ops;
	void *opaque;
	unsigned int running;	/* callbacks in progress */
	bool dead;		/* removed: no new callbacks */
	int more;		/* VR_IDLE_*: idle work left */
	/* A VMM's route (vmras_uffd_route) */
	vmras_fault_fn fn;
	void *fn_opaque;
	const struct vr_fallback_ops *fb;	/* the route of last resort's */
};

struct vr_router {
	struct vmras *v;
	int uffd;
	bool kernel_faults;
	uint64_t features;
	int wake_fd;
	pthread_t thread;
	bool started;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t idle_cond;	/* a route's callbacks finished */
	bool stopping;
	struct route *fallback;	/* faults nobody else owns (vr_router_set_fallback) */
	struct route **routes;
	size_t n, cap;
};

/* ---- opening the userfaultfd ---------------------------------------- */

static int uffd_from_dev(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd;

	if (dev < 0)
		return -errno;
	fd = (int)kabi_ioctl_val(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd;
}

static int uffd_syscall(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);

	return fd < 0 ? -errno : fd;
}

/*
 * KVM's faults on guest RAM need a userfaultfd that takes kernel faults:
 * the syscall gives one with CAP_SYS_PTRACE or unprivileged_userfaultfd,
 * /dev/userfaultfd to whoever may open it. User-mode-only is the last
 * resort: poisoning works, serving KVM's faults does not.
 */
static int open_uffd(bool *kernel_faults)
{
	int fd = uffd_syscall(0);

	*kernel_faults = true;
	if (fd < 0)
		fd = uffd_from_dev();
	if (fd < 0) {
		fd = uffd_syscall(UFFD_USER_MODE_ONLY);
		*kernel_faults = false;
	}
	return fd;
}

#define WANTED_FEATURES                                                              \
	(UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS | \
	 UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS)

/* What the kernel offers: UFFDIO_API is one-shot, so ask on a throwaway fd. */
static int offered_features(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API };
	bool kernel_faults;
	int fd = open_uffd(&kernel_faults);
	long r;

	if (fd < 0)
		return fd;
	r = kabi_ioctl(fd, UFFDIO_API, &api);
	close(fd);
	*features = api.features;
	return r < 0 ? (int)r : 0;
}

int vr_router_new(struct vmras *v, int given_uffd, struct vr_router **out)
{
	struct vr_router *rt = calloc(1, sizeof(*rt));
	uint64_t offered = 0;
	struct uffdio_api api = { .api = UFFD_API };
	int err, fd;

	if (!rt)
		return -ENOMEM;
	rt->v = v;
	rt->uffd = rt->wake_fd = -1;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_cond_init(&rt->idle_cond, NULL);
	rt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rt->wake_fd < 0) {
		err = -errno;
		goto fail;
	}
	if (given_uffd >= 0) {
		/* The VMM did the handshake (vmras_set_userfaultfd says what it must offer). */
		int fl = fcntl(given_uffd, F_GETFL);

		/* The router must never block in read(): it has other work. */
		if (fl < 0 || fcntl(given_uffd, F_SETFL, fl | O_NONBLOCK)) {
			err = -errno;
			goto fail;
		}
		rt->uffd = given_uffd;
		rt->kernel_faults = true;
		rt->features = WANTED_FEATURES; /* what vmras_set_userfaultfd asks for */
		*out = rt;
		return 0;
	}
	err = offered_features(&offered);
	if (err)
		goto fail;
	if (!(offered & UFFD_FEATURE_POISON)) {
		err = -EOPNOTSUPP;
		goto fail;
	}
	fd = open_uffd(&rt->kernel_faults);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	/* The faulting thread's id: lazy memory's per-vCPU blocked time. */
	api.features = offered & (WANTED_FEATURES | UFFD_FEATURE_THREAD_ID);
	err = (int)kabi_ioctl(fd, UFFDIO_API, &api);
	if (err) {
		close(fd);
		goto fail;
	}
	rt->uffd = fd;
	rt->features = api.features;
	*out = rt;
	return 0;
fail:
	vr_router_free(rt);
	return err;
}

void vr_router_free(struct vr_router *rt)
{
	if (!rt)
		return;
	vr_router_stop(rt);
	for (size_t i = 0; i < rt->n; i++)
		free(rt->routes[i]);
	free(rt->routes);
	free(rt->fallback);
	if (rt->uffd >= 0)
		close(rt->uffd);
	if (rt->wake_fd >= 0)
		close(rt->wake_fd);
	pthread_cond_destroy(&rt->idle_cond);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}

int vr_router_fd(const struct vr_router *rt)
{
	return rt->uffd;
}

bool vr_router_kernel_faults(const struct vr_router *rt)
{
	return rt->kernel_faults;
}

uint64_t vr_router_features(const struct vr_router *rt)
{
	return rt->features;
}

/* ---- routes ---------------------------------------------------------- */

/* With rt->lock held: index of the first route whose end is past addr. */
static size_t lower_bound(const struct vr_router *rt, uint64_t addr)
{
	size_t lo = 0, hi = rt->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (rt->routes[mid]->start + rt->routes[mid]->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct route *find(const struct vr_router *rt, uint64_t addr)
{
	size_t i = lower_bound(rt, addr);

	if (i < rt->n && addr - rt->routes[i]->start < rt->routes[i]->len)
		return rt->routes[i];
	return NULL;
}

static int insert(struct vr_router *rt, struct route *r)
{
	size_t i = lower_bound(rt, r->start);

	if (i < rt->n && rt->routes[i]->start < r->start + r->len)
		return -EEXIST;
	if (rt->n == rt->cap) {
		size_t cap = rt->cap ? rt->cap * 2 : 16;
		struct route **a = realloc(rt->routes, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		rt->routes = a;
		rt->cap = cap;
	}
	memmove(rt->routes + i + 1, rt->routes + i, (rt->n - i) * sizeof(*rt->routes));
	rt->routes[i] = r;
	rt->n++;
	return 0;
}

static int uffd_register(int uffd, uint64_t start, uint64_t len, uint64_t mode)
{
	struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = mode };

	return (int)kabi_ioctl(uffd, UFFDIO_REGISTER, &reg);
}

static void uffd_unregister(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	kabi_ioctl(uffd, UFFDIO_UNREGISTER, &range);
}

static int add_route(struct vr_router *rt, struct route *r, uint64_t mode, bool do_register)
{
	int err;

	if (!r->len || r->start + r->len < r->start) {
		free(r);
		return -EINVAL;
	}
	pthread_mutex_lock(&rt->lock);
	err = insert(rt, r);
	pthread_mutex_unlock(&rt->lock);
	if (err) {
		free(r);
		return err;
	}
	if (do_register) {
		err = uffd_register(rt->uffd, r->start, r->len, mode);
		if (err) {
			vr_router_remove(rt, r->start, r->len, false);
			return err;
		}
	}
	/* Background work starts on the caller's vr_router_kick, when it is ready. */
	return 0;
}

int vr_router_add(struct vr_router *rt, uint64_t start, uint64_t len, uint64_t mode,
		  bool do_register, const struct vr_route_ops *ops, void *opaque)
{
	struct route *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	*r = (struct route){ .start = start, .len = len, .ops = ops, .opaque = opaque,
			     .more = VR_IDLE_DONE };
	return add_route(rt, r, mode, do_register);
}

void vr_router_remove(struct vr_router *rt, uint64_t start, uint64_t len, bool unregister)
{
	struct route *gone[64];
	size_t ngone;

	do {
		size_t i, k;

		ngone = 0;
		pthread_mutex_lock(&rt->lock);
		for (i = lower_bound(rt, start), k = i; i < rt->n; i++) {
			struct route *r = rt->routes[i];

			/* Only routes wholly inside: a VMM's wider route stays its own. */
			if (r->start >= start + len || r->start < start ||
			    r->start + r->len > start + len || ngone == 64) {
				rt->routes[k++] = r;
				continue;
			}
			r->dead = true;
			gone[ngone++] = r;
		}
		rt->n = k;
		for (size_t j = 0; j < ngone; j++)
			while (gone[j]->running)
				pthread_cond_wait(&rt->idle_cond, &rt->lock);
		pthread_mutex_unlock(&rt->lock);
		for (size_t j = 0; j < ngone; j++)
			free(gone[j]);
	} while (ngone == 64);
	if (unregister)
		uffd_unregister(rt->uffd, start, len);
}

bool vr_router_covers(struct vr_router *rt, uint64_t start, uint64_t len,
		      const struct vr_route_ops *ops)
{
	struct route *r;
	bool covers;

	pthread_mutex_lock(&rt->lock);
	r = find(rt, start);
	covers = r && !r->dead && start + len <= r->start + r->len && r->ops == ops;
	pthread_mutex_unlock(&rt->lock);
	return covers;
}

bool vr_router_vmm_owned(struct vr_router *rt, uint64_t start, uint64_t len)
{
	bool owned = false;

	pthread_mutex_lock(&rt->lock);
	for (size_t i = lower_bound(rt, start); i < rt->n && rt->routes[i]->start < start + len; i++)
		owned |= rt->routes[i]->fn != NULL;
	pthread_mutex_unlock(&rt->lock);
	return owned;
}

int vr_router_set_fallback(struct vr_router *rt, const struct vr_fallback_ops *ops, void *opaque)
{
	struct route *r = NULL, *old;

	if (ops) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return -ENOMEM;
		*r = (struct route){ .opaque = opaque, .more = VR_IDLE_DONE, .fb = ops };
	}
	pthread_mutex_lock(&rt->lock);
	old = rt->fallback;
	if (old && r) {
		pthread_mutex_unlock(&rt->lock);
		free(r);
		return -EEXIST;
	}
	rt->fallback = r;
	if (old) {
		old->dead = true;
		while (old->running)
			pthread_cond_wait(&rt->idle_cond, &rt->lock);
	}
	pthread_mutex_unlock(&rt->lock);
	free(old);
	return 0;
}

void vr_router_kick(struct vr_router *rt)
{
	uint64_t one = 1;

	pthread_mutex_lock(&rt->lock);
	for (size_t i = 0; i < rt->n; i++)
		if (rt->routes[i]->ops && rt->routes[i]->ops->idle)
			rt->routes[i]->more = VR_IDLE_MORE;
	if (rt->fallback && rt->fallback->fb->idle)
		rt->fallback->more = VR_IDLE_MORE;
	pthread_mutex_unlock(&rt->lock);

	(void)!write(rt->wake_fd, &one, sizeof(one));
}

int vr_uffd_register(struct vr_router *rt, uint64_t start, uint64_t len, uint64_t mode)
{
	return uffd_register(rt->uffd, start, len, mode);
}

void vr_uffd_unregister(struct vr_router *rt, uint64_t start, uint64_t len)
{
	uffd_unregister(rt->uffd, start, len);
}

int vr_uffd_poison(struct vr_router *rt, uint64_t start, uint64_t len)
{
	struct uffdio_poison p = { .range = { .start = start, .len = len } };

	return (int)kabi_ioctl(rt->uffd, UFFDIO_POISON, &p);
}

int vr_uffd_wake(struct vr_router *rt, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return (int)kabi_ioctl(rt->uffd, UFFDIO_WAKE, &range);
}

int vr_uffd_copy(struct vr_router *rt, uint64_t dst, const void *src, uint64_t len,
		 uint64_t *done)
{
	struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len };
	int err = (int)kabi_ioctl(rt->uffd, UFFDIO_COPY, &c);

	*done = c.copy > 0 ? (uint64_t)c.copy : 0;
	return err;
}

int vr_uffd_zero(struct vr_router *rt, uint64_t dst, uint64_t len, uint64_t *done)
{
	struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };
	int err = (int)kabi_ioctl(rt->uffd, UFFDIO_ZEROPAGE, &z);

	*done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
	return err;
}

/* ---- the thread ------------------------------------------------------ */

static void put(struct vr_router *rt, struct route *r)
{
	pthread_mutex_lock(&rt->lock);
	if (--r->running == 0 && r->dead)
		pthread_cond_broadcast(&rt->idle_cond);
	pthread_mutex_unlock(&rt->lock);
}

static void dispatch(struct vr_router *rt, uint64_t addr, uint64_t flags, uint32_t tid)
{
	struct vmras *v = rt->v;
	struct route *r;
	bool fallback = false;

	addr &= ~(SMALL_PAGE - 1);
	pthread_mutex_lock(&rt->lock);
	r = find(rt, addr);
	if (!r && rt->fallback) {
		r = rt->fallback;
		fallback = true;
	}
	if (r && !r->dead)
		r->running++;
	else
		r = NULL;
	pthread_mutex_unlock(&rt->lock);
	if (fallback && r) {
		VR_STAT_ADD(v, uffd_faults, 1);
		r->fb->fault(r->opaque, addr, flags, tid);
		put(rt, r);
		return;
	}
	if (!r) {
		/* Nobody owns it (its route is going away): let it retry, and say so. */
		VR_STAT_ADD(v, uffd_unrouted, 1);
		vr_uffd_wake(rt, addr, SMALL_PAGE);
		vr_engine_wake(v);
		return;
	}
	VR_STAT_ADD(v, uffd_faults, 1);
	if (r->fn)
		r->fn(r->fn_opaque, addr, flags);
	else if (r->ops && r->ops->fault)
		r->ops->fault(r->opaque, addr, flags);
	else
		vr_uffd_wake(rt, addr, SMALL_PAGE);
	put(rt, r);
}

static void read_faults(struct vr_router *rt)
{
	struct uffd_msg msgs[MAX_MSGS];
	ssize_t n;

	while ((n = read(rt->uffd, msgs, sizeof(msgs))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				dispatch(rt, msgs[i].arg.pagefault.address,
					 msgs[i].arg.pagefault.flags,
					 msgs[i].arg.pagefault.feat.ptid);
		if ((size_t)n < sizeof(msgs))
			break;
	}
}

/*
 * One step of each route's background work (stalled ones too: this is
 * their retry). VR_IDLE_MORE if any has more, STALLED if all that have
 * work are stalled, DONE if none has work.
 */
static int run_idle(struct vr_router *rt)
{
	int result = VR_IDLE_DONE;

	for (size_t i = 0;; i++) {
		struct route *r;
		int again;

		bool fallback = false;

		pthread_mutex_lock(&rt->lock);
		while (i < rt->n && !(rt->routes[i]->more != VR_IDLE_DONE && !rt->routes[i]->dead))
			i++;
		r = i < rt->n ? rt->routes[i] : NULL;
		/* The fallback's turn comes after every route's. */
		if (!r && i == rt->n && rt->fallback && !rt->fallback->dead &&
		    rt->fallback->more != VR_IDLE_DONE) {
			r = rt->fallback;
			fallback = true;
		}
		if (r)
			r->running++;
		pthread_mutex_unlock(&rt->lock);
		if (!r)
			break;
		again = fallback ? r->fb->idle(r->opaque) : r->ops->idle(r->opaque);
		pthread_mutex_lock(&rt->lock);
		r->more = again;
		if (again == VR_IDLE_MORE || (again == VR_IDLE_STALLED && result == VR_IDLE_DONE))
			result = again;
		pthread_mutex_unlock(&rt->lock);
		put(rt, r);
		/* Faults first: a vCPU may be waiting on one. */
		read_faults(rt);
	}
	return result;
}

static void *router_thread(void *arg)
{
	struct vr_router *rt = arg;
	int more = VR_IDLE_MORE;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = rt->uffd, .events = POLLIN },
			{ .fd = rt->wake_fd, .events = POLLIN },
		};
		uint64_t n;
		bool stop;

		int timeout = more == VR_IDLE_MORE ? 0 : more == VR_IDLE_STALLED ? STALL_RETRY_MS : -1;

		if (poll(pfd, 2, timeout) < 0) {
			/* Not expected on two good fds; never stop serving faults over it. */
			if (errno != EINTR)
				usleep(1000);
			continue;
		}
		if (pfd[1].revents & POLLIN) {
			(void)!read(rt->wake_fd, &n, sizeof(n));
			more = VR_IDLE_MORE;
		}
		pthread_mutex_lock(&rt->lock);
		stop = rt->stopping;
		pthread_mutex_unlock(&rt->lock);
		if (stop)
			break;
		read_faults(rt);
		if (more != VR_IDLE_DONE)
			more = run_idle(rt);
	}
	return NULL;
}

int vr_router_start(struct vr_router *rt)
{
	int err = -pthread_create(&rt->thread, NULL, router_thread, rt);

	rt->started = !err;
	return err;
}

void vr_router_stop(struct vr_router *rt)
{
	if (!rt->started)
		return;
	pthread_mutex_lock(&rt->lock);
	rt->stopping = true;
	pthread_mutex_unlock(&rt->lock);
	vr_router_kick(rt);
	pthread_join(rt->thread, NULL);
	rt->started = false;
}

/* ---- the VMM's routes ------------------------------------------------ */

int vmras_uffd_route(struct vmras *v, void *hva, uint64_t len, uint64_t mode,
		     vmras_fault_fn fn, void *opaque)
{
	struct route *r;

	if (!v->router)
		return -EOPNOTSUPP;
	if (!fn || ((uintptr_t)hva | len) & (SMALL_PAGE - 1))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct route){ .start = (uintptr_t)hva, .len = len, .fn = fn, .fn_opaque = opaque };
	return add_route(v->router, r, mode, true);
}

int vmras_uffd_unroute(struct vmras *v, void *hva, uint64_t len)
{
	if (!v->router)
		return -EOPNOTSUPP;
	/* From its own fault handler it would wait for itself. */
	if (v->router->started && pthread_equal(pthread_self(), v->router->thread))
		return -EDEADLK;
	vr_router_remove(v->router, (uintptr_t)hva, len, true);
	return 0;
}

int vmras_userfaultfd(struct vmras *v)
{
	return v->router ? vr_router_fd(v->router) : -EOPNOTSUPP;
}
