// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * CPER taken apart, from either container:
 * - an ACPI Generic Error Status Block and its Generic Error Data Entries
 *   (ACPI 6.x §18.3.2.7.1), as GHES firmware and QEMU's hw/acpi/ghes.c
 *   write them into guest memory;
 * - a UEFI Common Platform Error Record: header, section descriptors and
 *   sections (UEFI spec Appendix N.2.1, N.2.2).
 * Memory Error Sections (N.2.5) are decoded field by field; other sections
 * are named and left as bytes. Every length is checked against the input
 * before a byte under it is read; what does not fit is an error.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

#define GESB_LEN 20		/* Generic Error Status Block header */
#define GEDE_LEN 64		/* Generic Error Data Entry header, revision < 0x300 */
#define GEDE_LEN_V300 72	/* ... revision 0x300: with a timestamp */
#define RECORD_LEN 128		/* UEFI record header */
#define DESCRIPTOR_LEN 72	/* UEFI section descriptor */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* An EFI_GUID as specifications write it, in its stored byte order. */
#define GUID(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                   \
	{ { (a) & 0xff, (a) >> 8 & 0xff, (a) >> 16 & 0xff, (a) >> 24 & 0xff, (b) & 0xff, \
	    (b) >> 8 & 0xff, (c) & 0xff, (c) >> 8 & 0xff, d0, d1, d2, d3, d4, d5, d6, d7 } }

static const struct decode_guid mem_guid =
	GUID(0xA5BC1114, 0x6F64, 0x4EDE, 0xB8, 0x63, 0x3E, 0x83, 0xED, 0x7C, 0x83, 0xB1);

/* UEFI N.2.2 section types (and Linux's include/linux/cper.h). */
static const struct {
	struct decode_guid g;
	const char *name;
} section_types[] = {
	{ GUID(0x9876CCAD, 0x47B4, 0x4BDB, 0xB6, 0x5E, 0x16, 0xF1, 0x93, 0xC4, 0xF3, 0xDB),
	  "processor generic" },
	{ GUID(0xDC3EA0B0, 0xA144, 0x4797, 0xB9, 0x5B, 0x53, 0xFA, 0x24, 0x2B, 0x6E, 0x1D),
	  "IA32/X64 processor" },
	{ GUID(0xE19E3D16, 0xBC11, 0x11E4, 0x9C, 0xAA, 0xC2, 0x05, 0x1D, 0x5D, 0x46, 0xB0),
	  "ARM processor" },
	{ GUID(0xA5BC1114, 0x6F64, 0x4EDE, 0xB8, 0x63, 0x3E, 0x83, 0xED, 0x7C, 0x83, 0xB1),
	  "memory error" },
	{ GUID(0x61EC04FC, 0x48E6, 0xD813, 0x25, 0xC9, 0x8D, 0xAA, 0x44, 0x75, 0x0B, 0x12),
	  "memory error 2" },
	{ GUID(0xD995E954, 0xBBC1, 0x430F, 0xAD, 0x91, 0xB4, 0x4D, 0xCB, 0x3C, 0x6F, 0x35),
	  "PCI Express" },
	{ GUID(0x81212A96, 0x09ED, 0x4996, 0x94, 0x71, 0x8D, 0x72, 0x9C, 0x8E, 0x69, 0xED),
	  "firmware error record reference" },
	{ GUID(0xC5753963, 0x3B84, 0x4095, 0xBF, 0x78, 0xED, 0xDA, 0xD3, 0xF9, 0xC9, 0xDD),
	  "PCI/PCI-X bus" },
	{ GUID(0xEB5E4685, 0xCA66, 0x4769, 0xB6, 0xA2, 0x26, 0x06, 0x8B, 0x00, 0x13, 0x26),
	  "PCI component/device" },
	{ GUID(0x5B51FEF7, 0xC79D, 0x4434, 0x8F, 0x1B, 0xAA, 0x62, 0xDE, 0x3E, 0x2C, 0x64),
	  "DMAr generic" },
	{ GUID(0x71761D37, 0x32B2, 0x45CD, 0xA7, 0xD0, 0xB0, 0xFE, 0xDD, 0x93, 0xE8, 0xCF),
	  "Intel VT-d DMAr" },
	{ GUID(0x036F84E1, 0x7F37, 0x428C, 0xA7, 0x9E, 0x57, 0x5F, 0xDF, 0xAA, 0x84, 0xEC),
	  "IOMMU DMAr" },
	{ GUID(0xFBCD0A77, 0xC260, 0x417F, 0x85, 0xA9, 0x08, 0x8B, 0x16, 0x21, 0xEB, 0xA6),
	  "CXL general media event" },
	{ GUID(0x601DCBB3, 0x9C06, 0x4EAB, 0xB8, 0xAF, 0x4E, 0x9B, 0xFB, 0x5C, 0x96, 0x24),
	  "CXL DRAM event" },
	{ GUID(0xFE927475, 0xDD59, 0x4339, 0xA5, 0x86, 0x79, 0xBA, 0xB1, 0x13, 0xB7, 0x74),
	  "CXL memory module event" },
};

/* UEFI N.2.1 notification types. */
static const struct {
	struct decode_guid g;
	const char *name;
} notification_types[] = {
	{ GUID(0x2DCE8BB1, 0xBDD7, 0x450E, 0xB9, 0xAD, 0x9C, 0xF4, 0xEB, 0xD4, 0xF8, 0x90),
	  "CMC (corrected machine check)" },
	{ GUID(0x4E292F96, 0xD843, 0x4A55, 0xA8, 0xC2, 0xD4, 0x81, 0xF2, 0x7E, 0xBE, 0xEE),
	  "CPE (corrected platform error)" },
	{ GUID(0xE8F56FFE, 0x919C, 0x4CC5, 0xBA, 0x88, 0x65, 0xAB, 0xE1, 0x49, 0x13, 0xBB),
	  "MCE (machine check exception)" },
	{ GUID(0xCF93C01F, 0x1A16, 0x4DFC, 0xB8, 0xBC, 0x9C, 0x4D, 0xAF, 0x67, 0xC1, 0x04),
	  "PCIe" },
	{ GUID(0xCC5263E8, 0x9308, 0x454A, 0x89, 0xD0, 0x34, 0x0B, 0xD3, 0x9B, 0xC9, 0x8E),
	  "INIT" },
	{ GUID(0x5BAD89FF, 0xB7E6, 0x42C9, 0x81, 0x4A, 0xCF, 0x24, 0x85, 0xD6, 0xE9, 0x8A),
	  "NMI" },
	{ GUID(0x3D61A466, 0xAB40, 0x409A, 0xA6, 0x98, 0xF3, 0x62, 0xD4, 0x64, 0xB3, 0x8F),
	  "BOOT" },
	{ GUID(0x667DD791, 0xC6B3, 0x4C27, 0x8A, 0x6B, 0x0F, 0x8E, 0x72, 0x2D, 0xEB, 0x41),
	  "DMAr" },
	{ GUID(0x9A78788A, 0xBBE8, 0x11E4, 0x80, 0x9E, 0x67, 0x61, 0x1E, 0x5D, 0x46, 0xB0),
	  "SEA (synchronous external abort)" },
	{ GUID(0x5C284C81, 0xB0AE, 0x4E87, 0xA3, 0x22, 0xB0, 0x4C, 0x85, 0x62, 0x43, 0x23),
	  "SEI (SError interrupt)" },
	{ GUID(0x09A9D5AC, 0x5204, 0x4214, 0x96, 0xE5, 0x94, 0x99, 0x2E, 0x75, 0x2B, 0xCD),
	  "PEI (platform error interrupt)" },
	{ GUID(0x69293BC9, 0x41DF, 0x49A3, 0xB4, 0xBD, 0x4F, 0xB0, 0xDB, 0x30, 0x41, 0xF6),
	  "CXL component" },
};

#define LOOKUP(table, guid)                                                        \
	({                                                                         \
		const char *name_ = NULL;                                          \
		for (size_t i_ = 0; i_ < sizeof(table) / sizeof(table[0]); i_++)   \
			if (!memcmp(table[i_].g.b, (guid)->b, 16))                 \
				name_ = table[i_].name;                            \
		name_;                                                             \
	})

void decode_guid_str(const struct decode_guid *g, char buf[37])
{
	const uint8_t *b = g->b;

	snprintf(buf, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32(b), le16(b + 4),
		 le16(b + 6), b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

const char *decode_cper_severity_name(uint32_t sev)
{
	static const char *const names[] = { "recoverable", "fatal", "corrected", "informational" };

	return sev < 4 ? names[sev] : "reserved";
}

const char *decode_mem_err_type_name(uint8_t type)
{
	static const char *const names[] = {
		"unknown", "no error", "single-bit ECC", "multi-bit ECC",
		"single-symbol chipkill ECC", "multi-symbol chipkill ECC", "master abort",
		"target abort", "parity error", "watchdog timeout", "invalid address",
		"mirror broken", "memory sparing", "scrub corrected error",
		"scrub uncorrected error", "physical memory map-out event",
	};

	return type < 16 ? names[type] : "reserved";
}

static int fail(struct decode_cper *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(struct decode_cper *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void note(struct decode_cper *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct decode_cper *d, const char *fmt, ...)
{
	size_t n = strlen(d->note);
	va_list ap;

	if (n && n + 2 < sizeof(d->note)) {
		strcpy(d->note + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(d->note + n, sizeof(d->note) - n, fmt, ap);
	va_end(ap);
}

/* FRU text: ASCII, NUL-padded; anything unprintable shows as '?'. */
static void fru_text(char out[21], const uint8_t *p)
{
	int i;

	for (i = 0; i < 20 && p[i]; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	out[i] = 0;
}

/* UEFI N.2.5: 80 bytes, or 73 in UEFI 2.1/2.2 (up to Memory Error Type). */
static int memory_section(struct decode_cper *d, struct decode_cper_section *s, const uint8_t *p)
{
	struct decode_mem_err *m = &s->mem;

	if (s->length < DECODE_MEM_ERR_OLD_LEN)
		return fail(d, "section %u: a memory error section of %u bytes, it needs %d (UEFI N.2.5)",
			    d->n_sections + 1, s->length, DECODE_MEM_ERR_LEN);
	m->validation = le64(p);
	m->error_status = le64(p + 8);
	m->physical_addr = le64(p + 16);
	m->physical_addr_mask = le64(p + 24);
	m->node = le16(p + 32);
	m->card = le16(p + 34);
	m->module = le16(p + 36);
	m->bank = le16(p + 38);
	m->device = le16(p + 40);
	m->row = le16(p + 42);
	m->column = le16(p + 44);
	m->bit_pos = le16(p + 46);
	m->requestor_id = le64(p + 48);
	m->responder_id = le64(p + 56);
	m->target_id = le64(p + 64);
	m->error_type = p[72];
	if (s->length >= DECODE_MEM_ERR_LEN) {
		m->extended = p[73];
		m->rank = le16(p + 74);
		m->card_handle = le16(p + 76);
		m->module_handle = le16(p + 78);
	} else {
		m->old_layout = true;
	}
	/*
	 * The firmware's granule: the mask's lowest set bit (~mask + 1 for a
	 * contiguous mask, as ghes_edac reports it). Linux's memory_failure
	 * acts on the page of the address whatever the mask says.
	 */
	if ((m->validation & (1u << 2)) && m->physical_addr_mask)
		m->granularity = m->physical_addr_mask & -m->physical_addr_mask;
	return 0;
}

static int section_body(struct decode_cper *d, struct decode_cper_section *s, const uint8_t *buf)
{
	s->type_name = LOOKUP(section_types, &s->type);
	s->is_mem = !memcmp(s->type.b, mem_guid.b, 16);
	return s->is_mem ? memory_section(d, s, buf + s->offset) : 0;
}

/* ACPI 6.x §18.3.2.7.1: Generic Error Status Block, Generic Error Data Entries. */
static int status_block(struct decode_cper *d, const uint8_t *buf, size_t len)
{
	size_t off, end;
	unsigned int count;

	d->kind = DECODE_CPER_ESTATUS;
	if (len < GESB_LEN)
		return fail(d, "truncated: %zu bytes, a Generic Error Status Block header needs %d",
			    len, GESB_LEN);
	d->block_status = le32(buf);
	d->raw_data_offset = le32(buf + 4);
	d->raw_data_length = le32(buf + 8);
	d->data_length = le32(buf + 12);
	d->error_severity = le32(buf + 16);
	if (d->data_length > len - GESB_LEN)
		return fail(d, "block data length %u overruns the input: %zu bytes follow the "
			    "%d-byte header", d->data_length, len - GESB_LEN, GESB_LEN);
	end = GESB_LEN + (size_t)d->data_length;
	d->used = end;
	if (d->raw_data_length) {
		if (d->raw_data_offset < end)
			return fail(d, "raw data offset %u is inside the data entries, which end at %zu",
				    d->raw_data_offset, end);
		if ((uint64_t)d->raw_data_offset + d->raw_data_length > len)
			return fail(d, "raw data (%u bytes at offset %u) overruns the input: %zu bytes",
				    d->raw_data_length, d->raw_data_offset, len);
		d->used = (size_t)d->raw_data_offset + d->raw_data_length;
	}

	for (off = GESB_LEN; off < end; d->n_sections++) {
		struct decode_cper_section *s = &d->sections[d->n_sections];
		size_t left = end - off, hdr;
		const uint8_t *p = buf + off;
		int rc;

		if (d->n_sections == DECODE_CPER_MAX_SECTIONS)
			return fail(d, "more than %d data entries", DECODE_CPER_MAX_SECTIONS);
		if (left < GEDE_LEN)
			return fail(d, "entry %u at offset %zu: %zu bytes left in the block's data "
				    "length, an entry header needs %d", d->n_sections + 1, off, left, GEDE_LEN);
		memcpy(s->type.b, p, 16);
		s->severity = le32(p + 16);
		s->revision = le16(p + 20);
		s->validation = p[22];
		s->flags = p[23];
		s->length = le32(p + 24);
		memcpy(s->fru_id.b, p + 28, 16);
		fru_text(s->fru_text, p + 44);
		/* Linux's acpi_hest_get_size(): major revision 3 and up has the timestamp. */
		hdr = (s->revision >> 8) >= 3 ? GEDE_LEN_V300 : GEDE_LEN;
		if (left < hdr)
			return fail(d, "entry %u at offset %zu: revision 0x%04x has a %zu-byte header, "
				    "%zu bytes are left in the block's data length", d->n_sections + 1,
				    off, s->revision, hdr, left);
		if (hdr == GEDE_LEN_V300) {
			s->has_timestamp = true;
			s->timestamp = le64(p + 64);
		}
		if (s->length > left - hdr)
			return fail(d, "entry %u at offset %zu: error data length %u overruns the "
				    "block's data length: %zu bytes are left after its %zu-byte header",
				    d->n_sections + 1, off, s->length, left - hdr, hdr);
		s->header_offset = (uint32_t)off;
		s->offset = (uint32_t)(off + hdr);
		rc = section_body(d, s, buf);
		if (rc)
			return rc;
		off += hdr + s->length;
	}

	count = (d->block_status >> 4) & 0x3ff;
	if (count != d->n_sections)
		note(d, "block status counts %u data entries, the block holds %u", count, d->n_sections);
	return 0;
}

/* UEFI N.2.1 record header, N.2.2 section descriptors. */
static int record(struct decode_cper *d, const uint8_t *buf, size_t len)
{
	size_t descriptors_end;

	d->kind = DECODE_CPER_RECORD;
	if (len < RECORD_LEN)
		return fail(d, "truncated: %zu bytes, a CPER record header needs %d", len, RECORD_LEN);
	d->revision = le16(buf + 4);
	d->signature_end = le32(buf + 6);
	d->section_count = le16(buf + 10);
	d->error_severity = le32(buf + 12);
	d->validation = le32(buf + 16);
	d->record_length = le32(buf + 20);
	d->timestamp = le64(buf + 24);
	memcpy(d->platform_id.b, buf + 32, 16);
	memcpy(d->partition_id.b, buf + 48, 16);
	memcpy(d->creator_id.b, buf + 64, 16);
	memcpy(d->notification_type.b, buf + 80, 16);
	d->record_id = le64(buf + 96);
	d->flags = le32(buf + 104);
	d->persistence = le64(buf + 108);
	d->notification_name = LOOKUP(notification_types, &d->notification_type);

	if (d->signature_end != 0xffffffff)
		return fail(d, "signature end is 0x%08x, it must be 0xffffffff", d->signature_end);
	if (!d->section_count)
		return fail(d, "section count 0: a record has at least one section");
	if (d->section_count > DECODE_CPER_MAX_SECTIONS)
		return fail(d, "section count %u, more than %d", d->section_count,
			    DECODE_CPER_MAX_SECTIONS);
	descriptors_end = RECORD_LEN + (size_t)DESCRIPTOR_LEN * d->section_count;
	if (d->record_length < descriptors_end)
		return fail(d, "record length %u is shorter than the header and %u section "
			    "descriptors: %zu bytes", d->record_length, d->section_count, descriptors_end);
	if (d->record_length > len)
		return fail(d, "record length %u overruns the input: %zu bytes", d->record_length, len);
	d->used = d->record_length;

	for (; d->n_sections < d->section_count; d->n_sections++) {
		struct decode_cper_section *s = &d->sections[d->n_sections];
		size_t at = RECORD_LEN + (size_t)DESCRIPTOR_LEN * d->n_sections;
		const uint8_t *p = buf + at;
		int rc;

		s->header_offset = (uint32_t)at;
		s->offset = le32(p);
		s->length = le32(p + 4);
		s->revision = le16(p + 8);
		s->validation = p[10];
		s->flags = le32(p + 12);
		memcpy(s->type.b, p + 16, 16);
		memcpy(s->fru_id.b, p + 32, 16);
		s->severity = le32(p + 48);
		fru_text(s->fru_text, p + 52);
		if (s->offset < descriptors_end)
			return fail(d, "section %u: offset %u is inside the header and descriptors, "
				    "which end at %zu", d->n_sections + 1, s->offset, descriptors_end);
		if ((uint64_t)s->offset + s->length > d->record_length)
			return fail(d, "section %u: %u bytes at offset %u overrun the record length %u",
				    d->n_sections + 1, s->length, s->offset, d->record_length);
		rc = section_body(d, s, buf);
		if (rc)
			return rc;
	}
	return 0;
}

int decode_cper(const void *buf, size_t len, struct decode_cper *d)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->input_len = len;
	if (len > DECODE_CPER_MAX_INPUT) {
		snprintf(d->error, sizeof(d->error), "input of %zu bytes, more than 1 MiB", len);
		return -E2BIG;
	}
	if (len >= 4 && !memcmp(buf, "CPER", 4))
		rc = record(d, buf, len);
	else
		rc = status_block(d, buf, len);
	if (!rc && d->used < len)
		note(d, "%zu bytes after the %s ignored", len - d->used,
		     d->kind == DECODE_CPER_RECORD ? "record" : "block");
	return rc;
}
