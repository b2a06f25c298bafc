// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for libvmras's migration-state parser: any bytes as a
 * RAS section's payload through vmras_migration_parse (as the destination
 * VMM calls it). Besides crashes, leaks and sanitizer reports it aborts
 * when an invariant fails:
 *   - a refusal is -EPROTO with why[] filled (or -ENOMEM), nothing handed
 *     out, and the same without a why buffer;
 *   - an accepted blob's counts are its header's, and its length is
 *     exactly what they take;
 *   - vmras_migration_add_page refuses an unaligned GPA, adds a 4 KiB page
 *     only when no range of the blob holds it, and only once.
 * Each input whose checksum is wrong also goes in with it put right, so
 * the checks after the checksum's see mutated blobs too. The layout is in
 * lib/migrate.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"
#include "vmras/migrate.h"

#define HEADER_BYTES 32
#define RANGE_BYTES 24
#define NOTICE_FIXED 48
#define PAGE 4096ULL
#define ADDED 20	/* pages added to an accepted blob (past its first 16) */

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Does a range of the (accepted) blob hold gpa? */
static int blob_has(const uint8_t *data, size_t nranges, uint64_t gpa)
{
	for (size_t i = 0; i < nranges; i++) {
		const uint8_t *r = data + HEADER_BYTES + i * RANGE_BYTES;

		if (gpa - le(r, 8) < le(r + 8, 8))
			return 1;
	}
	return 0;
}

static void check_accepted(const uint8_t *data, size_t size, struct vmras_migration *m)
{
	size_t nranges, nnotices, n2, k2, want;
	uint64_t base;

	vmras_migration_counts(m, &nranges, &nnotices);
	if (nranges != le(data + 12, 4) || nnotices != le(data + 16, 4))
		abort();
	if (size != HEADER_BYTES + nranges * RANGE_BYTES +
		    nnotices * (NOTICE_FIXED + le(data + 20, 4)) + 4)
		abort();

	/* Unaligned: refused, nothing added. */
	if (vmras_migration_add_page(m, 0x1234) != -EINVAL)
		abort();
	/* A page the blob has: nothing added. */
	if (nranges) {
		if (vmras_migration_add_page(m, le(data + HEADER_BYTES, 8)) ||
		    (vmras_migration_counts(m, &n2, &k2), n2 != nranges))
			abort();
	}
	/*
	 * Pages near one the input names (its checksum, page-aligned), some
	 * maybe inside its ranges: each new one counted once, a second add
	 * of any changes nothing. Enough of them to grow the array.
	 */
	base = le(data + size - 4, 4) * PAGE;
	want = nranges;
	for (unsigned int i = 0; i < ADDED; i++) {
		uint64_t gpa = base + i * PAGE;

		if (vmras_migration_add_page(m, gpa))
			abort();
		want += !blob_has(data, nranges, gpa);
	}
	for (unsigned int i = 0; i < ADDED; i++)
		if (vmras_migration_add_page(m, base + i * PAGE))
			abort();
	vmras_migration_counts(m, &n2, &k2);
	if (n2 != want || k2 != nnotices)
		abort();
}

/* One blob through the parser, with and without a why buffer. */
static void one(const uint8_t *data, size_t size)
{
	struct vmras_migration *m = (struct vmras_migration *)&m, *m2 = (struct vmras_migration *)&m;
	char why[160] = "";
	int r, r2;

	r = vmras_migration_parse(data, size, &m, why, sizeof(why));
	r2 = vmras_migration_parse(data, size, &m2, NULL, 0);
	if (r != r2)
		abort();
	vmras_migration_free(m2);
	if (r) {
		if (m || (r != -EPROTO && r != -ENOMEM) || (r == -EPROTO && !why[0]))
			abort();
		return;
	}
	if (!m)
		abort();
	check_accepted(data, size, m);
	vmras_migration_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t fixed[1 << 20];
	uint32_t crc;

	one(data, size);
	/*
	 * Nearly every mutation breaks the checksum: the same bytes again
	 * with a right one, so that what follows the check is fuzzed too.
	 */
	if (size < HEADER_BYTES + 4 || size > sizeof(fixed))
		return 0;
	crc = vr_crc32c(0, data, size - 4);
	if (crc == le(data + size - 4, 4))
		return 0;
	memcpy(fixed, data, size - 4);
	for (unsigned int i = 0; i < 4; i++)
		fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
	one(fixed, size);
	return 0;
}
