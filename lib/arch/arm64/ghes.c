// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The GHESv2 read-ack protocol on the guest memory the VMM set aside
 * (ACPI 6.5 18.3.2.8): a record goes into a source's error status block
 * only once the guest acknowledged the one before, by setting bit 0 of
 * the source's read-ack register (Read Ack Write 1, Preserve ~1). vmras
 * clears that bit as it writes a record. Until the guest sets it again
 * nothing is written there: the notice waits in its vCPU's queue, never
 * overwrites, and never stops the VM (QEMU aborts the VM in that case).
 *
 * Layout (QEMU's "etc/hardware_errors"): n error status address
 * registers, n read-ack registers, n blocks of VMRAS_GHES_BLOCK_SIZE.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>

#include "arch/arm64/arm64.h"

#define ACK_BIT 1ULL

static uint64_t *addr_reg(struct vr_ghes *h, unsigned int i)
{
	return (uint64_t *)h->g.hva + i;
}

static uint64_t *ack_reg(struct vr_ghes *h, unsigned int i)
{
	return (uint64_t *)h->g.hva + h->nsrc + i;
}

static size_t block_off(const struct vr_ghes *h, unsigned int i)
{
	return 16 * (size_t)h->nsrc + (size_t)i * VMRAS_GHES_BLOCK_SIZE;
}

static unsigned char *block(struct vr_ghes *h, unsigned int i)
{
	return (unsigned char *)h->g.hva + block_off(h, i);
}

/* The guest writes these registers as it likes: one 64-bit access each, little-endian. */
static uint64_t guest_load(const uint64_t *p)
{
	return le64toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static void guest_store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, htole64(v), __ATOMIC_RELEASE);
}

int vr_ghes_create(const struct vmras_arm64_ghes *g, struct vr_ghes **out)
{
	unsigned int n = g->nsea + (g->async ? 1 : 0);
	struct vr_ghes *h;
	int r;

	if (!n || n > 0xffff || !g->hva || ((uintptr_t)g->hva & 7) || (g->gpa & 7) ||
	    g->size < vmras_arm64_ghes_size(g->nsea, g->async))
		return -EINVAL;
	if (g->async && g->async_notify != VMRAS_GHES_NOTIFY_GSIV &&
	    g->async_notify != VMRAS_GHES_NOTIFY_POLLED)
		return -EINVAL;
	h = calloc(1, sizeof(*h) + n * sizeof(h->written[0]));
	if (!h)
		return -ENOMEM;
	r = pthread_mutex_init(&h->lock, NULL);
	if (r) {
		free(h);
		return -r;
	}
	h->g = *g;
	h->nsrc = n;
	vr_ghes_reset(h);
	*out = h;
	return 0;
}

void vr_ghes_destroy(struct vr_ghes *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void vr_ghes_reset(struct vr_ghes *h)
{
	pthread_mutex_lock(&h->lock);
	for (unsigned int i = 0; i < h->nsrc; i++) {
		guest_store(addr_reg(h, i), h->g.gpa + block_off(h, i));
		/* 1: free, so that a rebooted guest can take a record at once (as QEMU). */
		guest_store(ack_reg(h, i), ACK_BIT);
		memset(block(h, i), 0, VMRAS_GHES_BLOCK_SIZE);
		h->written[i] = false;
	}
	pthread_mutex_unlock(&h->lock);
}

int vr_ghes_post(struct vr_ghes *h, unsigned int src, const void *rec, size_t len)
{
	unsigned char *b;
	uint32_t status;
	uint64_t ack;

	if (src >= h->nsrc || len < 4 || len > VMRAS_GHES_BLOCK_SIZE)
		return -EINVAL;
	b = block(h, src);
	pthread_mutex_lock(&h->lock);
	ack = guest_load(ack_reg(h, src));
	if (!(ack & ACK_BIT)) {
		pthread_mutex_unlock(&h->lock);
		return 1;
	}
	guest_store(ack_reg(h, src), ack & ~ACK_BIT);
	/* Everything but Block Status first: a polling guest sees a whole record or none. */
	memset(b + len, 0, VMRAS_GHES_BLOCK_SIZE - len);
	memcpy(b + 4, (const unsigned char *)rec + 4, len - 4);
	memcpy(&status, rec, 4);
	__atomic_store_n((uint32_t *)b, status, __ATOMIC_RELEASE);
	h->written[src] = true;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void vr_ghes_unpost(struct vr_ghes *h, unsigned int src)
{
	if (src >= h->nsrc)
		return;
	pthread_mutex_lock(&h->lock);
	__atomic_store_n((uint32_t *)block(h, src), 0, __ATOMIC_RELEASE);
	guest_store(ack_reg(h, src), guest_load(ack_reg(h, src)) | ACK_BIT);
	h->written[src] = false;
	pthread_mutex_unlock(&h->lock);
}

bool vr_ghes_busy(struct vr_ghes *h, unsigned int src)
{
	bool busy;

	if (src >= h->nsrc)
		return false;
	pthread_mutex_lock(&h->lock);
	busy = h->written[src] && !(guest_load(ack_reg(h, src)) & ACK_BIT);
	pthread_mutex_unlock(&h->lock);
	return busy;
}
