/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event sources that need state outside the engine: the SIGBUS handler,
 * its lock-free ring, and the per-thread facts the handler needs (which
 * vCPU a thread runs, its pending AR, its armed safe copy). Per-thread
 * facts live in a table keyed by thread id, not in TLS: a dlopen()ed
 * library's TLS may be allocated lazily, which no handler may trigger
 * (threads find their own slot through a TLS hint, outside the handler).
 */
#ifndef VMRAS_LIB_SOURCES_H
#define VMRAS_LIB_SOURCES_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

struct vmras;

/* One SIGBUS as the handler saw it. */
struct vr_capture {
	uint64_t seq;		/* arrival order (the context's counter) */
	uint32_t gen;		/* guest resets so far: a report about memory since replaced is moot */
	int si_code;
	int32_t tid;
	unsigned int lsb;
	uint64_t addr;
	uint64_t time_ns;
	bool from_copy;		/* inside a safe copy */
};

struct vr_ring *vr_ring_new(void);
void vr_ring_free(struct vr_ring *r);
/* The engine: look at / take the oldest capture; false when empty. */
bool vr_ring_peek(struct vr_ring *r, struct vr_capture *out);
void vr_ring_drop_head(struct vr_ring *r);
uint64_t vr_ring_dropped(struct vr_ring *r);

int vr_sigbus_install(struct vmras *v);
void vr_sigbus_uninstall(struct vmras *v);

/* This thread runs vCPU `vcpu` (-1: no longer). */
int vr_thread_set_vcpu(int vcpu);
/* This thread's pending AR, from a SIGBUS while it ran a vCPU. */
bool vr_thread_take_ar(uint64_t *hva, unsigned int *lsb, int *si_code);
/*
 * For the safe copy: arm this thread's recovery point for consumed poison
 * in [ram, ram + len) (jb filled already); disarm returns where a jump
 * came from (0: none).
 */
int vr_thread_arm_copy(sigjmp_buf *jb, const void *ram, size_t len);
uint64_t vr_thread_disarm_copy(void);
/* Forget every thread (the context goes away). */
void vr_threads_clear(void);

/* Send this thread a SIGBUS as the kernel would. */
int vr_raise_sigbus(int si_code, uint64_t addr, unsigned int lsb);

#endif
