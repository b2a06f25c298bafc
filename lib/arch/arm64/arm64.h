/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the arm64 arch's files share: the GHES memory protocol (ghes.c)
 * and little-endian stores (cper.c, hest.c).
 *
 * Threads: vr_ghes_post, vr_ghes_busy on vCPU threads (each SEA source is
 * its vCPU's own; the asynchronous source is shared), vr_ghes_reset on the
 * engine at a guest reset (vCPUs paused). g->lock guards written[] and the
 * check-then-write of a block; it is a leaf and no VMM hook runs under it.
 */
#ifndef VMRAS_LIB_ARCH_ARM64_H
#define VMRAS_LIB_ARCH_ARM64_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmras/arm64.h"

static inline void put_le(unsigned char *p, uint64_t v, unsigned int bytes)
{
	for (unsigned int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

struct vr_ghes {
	struct vmras_arm64_ghes g;
	unsigned int nsrc;
	pthread_mutex_t lock;
	bool written[];		/* per source: a record went in since the last reset */
};

/* Validate g and set its memory up (addresses, read-ack 1, empty blocks). */
int vr_ghes_create(const struct vmras_arm64_ghes *g, struct vr_ghes **out);
void vr_ghes_destroy(struct vr_ghes *h);
/* A guest reset: every source free and empty again. */
void vr_ghes_reset(struct vr_ghes *h);
/*
 * Put the status block rec into source src once the guest acknowledged
 * the last one there: 0, 1 (not acknowledged: nothing written), -EINVAL.
 */
int vr_ghes_post(struct vr_ghes *h, unsigned int src, const void *rec, size_t len);
/* Take back what vr_ghes_post just wrote (the notice it went with failed). */
void vr_ghes_unpost(struct vr_ghes *h, unsigned int src);
/* Does src hold a record the guest has not acknowledged? */
bool vr_ghes_busy(struct vr_ghes *h, unsigned int src);

#endif
