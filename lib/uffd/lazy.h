/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Lazy guest memory inside the library (the API is vmras/lazy.h): the
 * hooks the engine and the vCPU exit path call.
 */
#ifndef VMRAS_LIB_LAZY_H
#define VMRAS_LIB_LAZY_H

#include <stdbool.h>
#include <stdint.h>

struct vmras;
struct vr_lazy;

/*
 * Make sure the backing page holding gpa is here (fetch it and wait, at
 * most timeout_ms): before the engine splits or contains it, and for a
 * memory-fault exit. 0 (here, or not lazy memory), -ETIMEDOUT, -errno.
 */
int vr_lazy_settle(struct vmras *v, uint64_t gpa, int timeout_ms);
/* Is gpa lazy memory that has not arrived? */
bool vr_lazy_missing(struct vmras *v, uint64_t gpa);
/*
 * KVM could not wait for gpa (a memory-fault or MMIO exit): 1 if it was
 * lazy memory's doing and is resolved (enter again), 0 if not lazy
 * memory's, -errno. Counted as a memory-fault exit.
 */
int vr_lazy_exit(struct vmras *v, uint64_t gpa, int timeout_ms);
/* Engine, at a guest reset: pages the source lost come back fresh from now on. */
void vr_lazy_guest_reset(struct vmras *v);
/*
 * vCPU vcpu enters the guest (its thread, before each KVM_RUN): the first
 * time, wait until the engine split the huge pages placed with a bad
 * 4 KiB page (from now on such a page is lost whole).
 */
void vr_lazy_vcpu_runs(struct vmras *v, unsigned int vcpu);
/* The context goes away (router stopped). */
void vr_lazy_free(struct vmras *v);

#endif
