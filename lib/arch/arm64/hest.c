// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The HEST error sources that describe vmras's GHES memory (ACPI 6.5
 * 18.3.2.8, Generic Hardware Error Source version 2, and 18.3.2.9,
 * the Hardware Error Notification Structure), as QEMU's build_ghes_v2
 * writes them, with one SEA source per vCPU and an asynchronous one.
 */
#include <errno.h>

#include "arch/arm64/arm64.h"

#define GHESV2_TYPE 10
#define NOTIFY_LEN 28
#define NOTIFY_SEA 8
#define GAS_SYSTEM_MEMORY 0
#define GAS_ACCESS_QWORD 4

/* Generic Address Structure (ACPI 5.2.3.2): a 64-bit register in memory. */
static void put_gas(unsigned char *p, uint64_t gpa)
{
	p[0] = GAS_SYSTEM_MEMORY;
	p[1] = 64;		/* bit width */
	p[2] = 0;		/* bit offset */
	p[3] = GAS_ACCESS_QWORD;
	put_le(p + 4, gpa, 8);
}

size_t vmras_arm64_ghes_size(unsigned int nsea, bool async)
{
	size_t n = nsea + (async ? 1 : 0);

	/* An error status address and a read-ack register, then a block, each. */
	return n * (16 + VMRAS_GHES_BLOCK_SIZE);
}

int vmras_arm64_hest_entries(const struct vmras_arm64_ghes *g, void *buf, size_t size)
{
	unsigned int n = g->nsea + (g->async ? 1 : 0);
	unsigned char *p = buf;

	if (!n || n > 0xffff || (g->gpa & 7))
		return -EINVAL;
	if (g->async && g->async_notify != VMRAS_GHES_NOTIFY_GSIV &&
	    g->async_notify != VMRAS_GHES_NOTIFY_POLLED)
		return -EINVAL;
	if ((size_t)n * VMRAS_HEST_GHESV2_LEN > size)
		return -ENOSPC;
	memset(p, 0, (size_t)n * VMRAS_HEST_GHESV2_LEN);
	for (unsigned int i = 0; i < n; i++, p += VMRAS_HEST_GHESV2_LEN) {
		bool sea = i < g->nsea;
		unsigned char *no = p + 32;

		put_le(p, GHESV2_TYPE, 2);
		put_le(p + 2, i, 2);		/* source id */
		put_le(p + 4, 0xffff, 2);	/* related source: none */
		p[6] = 0;			/* flags */
		p[7] = 1;			/* enabled */
		put_le(p + 8, 1, 4);		/* records to pre-allocate */
		put_le(p + 12, 1, 4);		/* max sections per record */
		put_le(p + 16, VMRAS_GHES_BLOCK_SIZE, 4);	/* max raw data length */
		put_gas(p + 20, g->gpa + 8ULL * i);	/* error status address register */
		/* Hardware Error Notification Structure */
		no[0] = sea ? NOTIFY_SEA : (unsigned char)g->async_notify;
		no[1] = NOTIFY_LEN;
		if (!sea && g->async_notify == VMRAS_GHES_NOTIFY_POLLED)
			put_le(no + 4, g->poll_ms, 4);
		if (!sea && g->async_notify == VMRAS_GHES_NOTIFY_GSIV)
			put_le(no + 8, g->gsiv, 4);
		put_le(p + 60, VMRAS_GHES_BLOCK_SIZE, 4);	/* error status block length */
		put_gas(p + 64, g->gpa + 8ULL * (n + i));	/* read ack register */
		put_le(p + 76, ~1ULL, 8);	/* read ack preserve: all but bit 0 */
		put_le(p + 84, 1, 8);		/* read ack write: bit 0 */
	}
	return (int)(n * VMRAS_HEST_GHESV2_LEN);
}
