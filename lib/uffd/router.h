/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The fault router: the process's one userfaultfd for guest RAM (the
 * kernel allows one per VMA), and a thread that reads it and hands each
 * fault to the route that owns the address. Containment, huge-page fill
 * and the VMM's own handlers are routes. Faults nobody owns are counted,
 * woken and reported (by the engine), never dropped.
 *
 * Threads: routes are added and removed by any thread but the router's;
 * callbacks (fault, idle) run on the router thread only. After
 * vr_router_remove() returns, no callback of the removed routes runs or
 * will run. router->lock is taken after split locks, before v->lock.
 */
#ifndef VMRAS_LIB_ROUTER_H
#define VMRAS_LIB_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

struct vmras;
struct vr_router;

enum { VR_IDLE_DONE, VR_IDLE_MORE, VR_IDLE_STALLED };

struct vr_route_ops {
	/* A fault at addr (page aligned) in the route: resolve it, or wake it. */
	void (*fault)(void *opaque, uint64_t addr, uint64_t flags);
	/*
	 * Background work, a bounded step at a time: VR_IDLE_MORE, DONE, or
	 * STALLED (a resource ran out: tried again after a pause, no spin).
	 */
	int (*idle)(void *opaque);
};

/* Use given_uffd (>= 0) or open one: the full kind first, user-mode-only last. */
int vr_router_new(struct vmras *v, int given_uffd, struct vr_router **out);
void vr_router_free(struct vr_router *rt);
int vr_router_start(struct vr_router *rt);
void vr_router_stop(struct vr_router *rt);

int vr_router_fd(const struct vr_router *rt);
/* false: UFFD_USER_MODE_ONLY, so KVM's own faults on missing pages fail. */
bool vr_router_kernel_faults(const struct vr_router *rt);
uint64_t vr_router_features(const struct vr_router *rt);

/* Route [start, start + len); with do_register, UFFDIO_REGISTER it (mode) first. */
int vr_router_add(struct vr_router *rt, uint64_t start, uint64_t len, uint64_t mode,
		  bool do_register, const struct vr_route_ops *ops, void *opaque);
/*
 * Remove every route wholly inside [start, start + len) and wait until
 * none of their callbacks runs; with unregister, UFFDIO_UNREGISTER the
 * range too.
 */
void vr_router_remove(struct vr_router *rt, uint64_t start, uint64_t len, bool unregister);
/* Does one route of these ops cover all of [start, start + len)? */
bool vr_router_covers(struct vr_router *rt, uint64_t start, uint64_t len,
		      const struct vr_route_ops *ops);
/* Does the VMM route any of [start, start + len) to a handler of its own? */
bool vr_router_vmm_owned(struct vr_router *rt, uint64_t start, uint64_t len);
/*
 * The route of last resort: faults no route owns, with the faulting
 * thread's id (0: unknown), and its idle work. Lazy memory is this:
 * containment and splits inside lazy RAM are ordinary routes and win.
 * Setting NULL waits until no callback of the old one runs.
 */
struct vr_fallback_ops {
	void (*fault)(void *opaque, uint64_t addr, uint64_t flags, uint32_t tid);
	int (*idle)(void *opaque);
};
int vr_router_set_fallback(struct vr_router *rt, const struct vr_fallback_ops *ops, void *opaque);
/* Routes have new background work (none runs before the first kick). */
void vr_router_kick(struct vr_router *rt);

/* userfaultfd ioctls on the router's fd: 0 or -errno. */
int vr_uffd_register(struct vr_router *rt, uint64_t start, uint64_t len, uint64_t mode);
void vr_uffd_unregister(struct vr_router *rt, uint64_t start, uint64_t len);
int vr_uffd_poison(struct vr_router *rt, uint64_t start, uint64_t len);
int vr_uffd_wake(struct vr_router *rt, uint64_t start, uint64_t len);
/* UFFDIO_COPY / UFFDIO_ZEROPAGE; *done: bytes placed (also on error). */
int vr_uffd_copy(struct vr_router *rt, uint64_t dst, const void *src, uint64_t len,
		 uint64_t *done);
int vr_uffd_zero(struct vr_router *rt, uint64_t dst, uint64_t len, uint64_t *done);

#endif
