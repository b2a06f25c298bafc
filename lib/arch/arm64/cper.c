// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A memory error as the guest's GHES driver reads it: an ACPI Generic
 * Error Status Block (ACPI 6.5, 18.3.2.7.1) holding Generic Error Data
 * Entries (revision 0x300, with a timestamp) whose sections are UEFI
 * Memory Error Sections (UEFI 2.10, N.2.5).
 *
 * The bytes are QEMU's (hw/acpi/ghes.c, acpi_ghes_record_mem_error)
 * where QEMU is right, so a guest sees what it knows; it differs where
 * QEMU is not: the block's Error Data Entry Count is set (QEMU leaves it
 * 0), the physical address mask says how much was lost (4 KiB, or the
 * huge page that could not be split), and a timestamp is given when known.
 */
#include <errno.h>
#include <time.h>

#include "arch/arm64/arm64.h"

#define STATUS_LEN 20		/* Generic Error Status Block header */
#define ENTRY_LEN 72		/* Generic Error Data Entry, revision 0x300 */
#define MEM_SECTION_LEN 80	/* Memory Error Section */

/* Block Status, in the Generic Error Status Block */
#define BLOCK_UE_VALID (1u << 0)
#define BLOCK_CE_VALID (1u << 1)
#define BLOCK_MULTI_UE (1u << 2)
#define BLOCK_MULTI_CE (1u << 3)
#define BLOCK_COUNT_SHIFT 4	/* bits 13:4: Error Data Entry Count */

/* Data entry Validation Bits: bit 2, the timestamp is valid. */
#define ENTRY_TIMESTAMP_VALID (1u << 2)

/* Memory Error Section Validation Bits. */
#define MEM_VALID_PA (1ULL << 1)
#define MEM_VALID_PA_MASK (1ULL << 2)
#define MEM_VALID_TYPE (1ULL << 14)
#define MEM_TYPE_UNKNOWN 0	/* what QEMU says: the host told us no more */

/* A5BC1114-6F64-4EDE-B863-3E83ED7C83B1 in its wire order (first three fields LE). */
static const unsigned char mem_section_guid[16] = {
	0x14, 0x11, 0xbc, 0xa5, 0x64, 0x6f, 0xde, 0x4e,
	0xb8, 0x63, 0x3e, 0x83, 0xed, 0x7c, 0x83, 0xb1,
};

static unsigned char bcd(int v)
{
	return (unsigned char)((v / 10) << 4 | v % 10);
}

/* UEFI N.2.1.1 timestamp: seconds, minutes, hours, flags, day, month, year, century (BCD). */
static void put_timestamp(unsigned char *p, uint64_t time_ns)
{
	time_t t = (time_t)(time_ns / 1000000000ULL);
	struct tm tm;

	if (!gmtime_r(&t, &tm))
		return;
	p[0] = bcd(tm.tm_sec);
	p[1] = bcd(tm.tm_min);
	p[2] = bcd(tm.tm_hour);
	p[3] = 1;	/* precise: the time of the event, not of the record */
	p[4] = bcd(tm.tm_mday);
	p[5] = bcd(tm.tm_mon + 1);
	p[6] = bcd((tm.tm_year + 1900) % 100);
	p[7] = bcd((tm.tm_year + 1900) / 100);
}

/* The more severe of two CPER severities: fatal, recoverable, corrected. */
static uint32_t worse(uint32_t a, uint32_t b)
{
	static const int rank[] = { [VMRAS_CPER_SEV_RECOVERABLE] = 1, [VMRAS_CPER_SEV_FATAL] = 2,
				    [VMRAS_CPER_SEV_CORRECTED] = 0 };

	return rank[a] >= rank[b] ? a : b;
}

int vmras_cper_mem_block(const struct vmras_cper_mem *e, unsigned int n, void *buf, size_t size)
{
	unsigned char *p = buf;
	size_t len = STATUS_LEN + (size_t)n * (ENTRY_LEN + MEM_SECTION_LEN);
	uint32_t severity = VMRAS_CPER_SEV_CORRECTED, status;
	unsigned int ue = 0, ce = 0;

	if (!n || n > 0x3ff)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++)
		if (e[i].lsb < 12 || e[i].lsb > 52 || e[i].severity > VMRAS_CPER_SEV_CORRECTED)
			return -EINVAL;
	if (len > size)
		return -ENOSPC;
	memset(p, 0, len);

	for (unsigned int i = 0; i < n; i++) {
		unsigned char *d = p + STATUS_LEN + i * (ENTRY_LEN + MEM_SECTION_LEN);
		unsigned char *m = d + ENTRY_LEN;

		severity = i ? worse(severity, e[i].severity) : e[i].severity;
		if (e[i].severity == VMRAS_CPER_SEV_CORRECTED)
			ce++;
		else
			ue++;
		/* Generic Error Data Entry */
		memcpy(d, mem_section_guid, 16);
		put_le(d + 16, e[i].severity, 4);
		put_le(d + 20, 0x300, 2);		/* revision: with a timestamp */
		put_le(d + 22, e[i].time_ns ? ENTRY_TIMESTAMP_VALID : 0, 1);
		/* flags 0; FRU id and text none */
		put_le(d + 24, MEM_SECTION_LEN, 4);
		if (e[i].time_ns)
			put_timestamp(d + 64, e[i].time_ns);
		/* Memory Error Section */
		put_le(m, MEM_VALID_PA | MEM_VALID_PA_MASK | MEM_VALID_TYPE, 8);
		put_le(m + 16, e[i].gpa, 8);
		put_le(m + 24, ~((1ULL << e[i].lsb) - 1), 8);
		m[72] = MEM_TYPE_UNKNOWN;
	}
	/* Generic Error Status Block */
	status = (ue ? BLOCK_UE_VALID : 0) | (ce ? BLOCK_CE_VALID : 0) | n << BLOCK_COUNT_SHIFT;
	status |= (ue > 1 ? BLOCK_MULTI_UE : 0) | (ce > 1 ? BLOCK_MULTI_CE : 0);
	put_le(p, status, 4);
	/* raw data offset and length 0: no raw data */
	put_le(p + 12, (uint64_t)n * (ENTRY_LEN + MEM_SECTION_LEN), 4);
	put_le(p + 16, severity, 4);
	return (int)len;
}
