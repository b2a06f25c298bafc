// SPDX-License-Identifier: GPL-2.0-or-later
/* Post-copy's sections and their parsers (see postcopy_proto.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "postcopy_proto.h"

static void put_le(unsigned char *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

__attribute__((format(printf, 3, 4)))
static int refuse(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return -EPROTO;
}

size_t pc_bitmap_bytes(uint64_t npages)
{
	return (size_t)((npages + 63) / 64 * 8);
}

uint64_t pc_section_max(uint32_t type)
{
	switch (type) {
	case SEC_POSTCOPY:
	case SEC_RECOVER:
		return pc_bitmap_bytes((1ULL << 40) / PC_PAGE);
	case SEC_PAGES:
		return PC_PAGES_HEAD + PC_MAX_PAGES + PC_MAX_PAGES * PC_PAGE;
	case SEC_PAGE_REQ:
		return PC_REQ_BYTES;
	case SEC_PC_END:
		return 1;	/* empty; 1 so that the type is known */
	default:
		return 0;
	}
}

int pc_bitmap_parse(const void *p, uint64_t len, uint64_t npages, uint64_t *bm, char *why,
		    size_t why_len)
{
	const unsigned char *b = p;
	uint64_t words = (npages + 63) / 64;

	if (len != words * 8)
		return refuse(why, why_len, "a page bitmap of %" PRIu64 " bytes for %" PRIu64
			      " pages", len, npages);
	for (uint64_t w = 0; w < words; w++)
		bm[w] = get_le(b + w * 8, 8);
	if (npages % 64 && bm[words - 1] >> (npages % 64))
		return refuse(why, why_len, "a page bitmap with pages past the guest's %" PRIu64,
			      npages);
	return 0;
}

void pc_bitmap_encode(const uint64_t *bm, uint64_t npages, unsigned char *out)
{
	for (uint64_t w = 0; w < (npages + 63) / 64; w++)
		put_le(out + w * 8, bm[w], 8);
}

/* [gpa, gpa + len): whole granules of this guest's RAM. */
static int check_range(const struct pc_guest *g, uint64_t gpa, uint64_t len, const char *what,
		       char *why, size_t why_len)
{
	if (!len || gpa % g->granule || len % g->granule || gpa >= g->ram_size ||
	    len > g->ram_size - gpa)
		return refuse(why, why_len, "%s 0x%" PRIx64 "+0x%" PRIx64 " is not whole %" PRIu64
			      " KiB pages of this guest's %" PRIu64 " MiB", what, gpa, len,
			      g->granule >> 10, g->ram_size >> 20);
	return 0;
}

int pc_pages_parse(const void *p, uint64_t len, const struct pc_guest *g, struct pc_pages *out,
		   char *why, size_t why_len)
{
	const unsigned char *b = p;
	uint64_t gpa, n, ndata = 0;
	int r;

	if (len < PC_PAGES_HEAD)
		return refuse(why, why_len, "a pages section of %" PRIu64 " bytes", len);
	gpa = get_le(b, 8);
	n = get_le(b + 8, 4);
	if (!n || n > PC_MAX_PAGES || get_le(b + 12, 4))
		return refuse(why, why_len, "a pages section for %" PRIu64 " pages", n);
	r = check_range(g, gpa, n * PC_PAGE, "pages", why, why_len);
	if (r)
		return r;
	if (len < PC_PAGES_HEAD + n)
		return refuse(why, why_len, "a pages section too short for its %" PRIu64 " kinds",
			      n);
	for (uint64_t i = 0; i < n; i++) {
		if (b[PC_PAGES_HEAD + i] > PC_POISONED)
			return refuse(why, why_len, "page 0x%" PRIx64 " has kind %u",
				      gpa + i * PC_PAGE, b[PC_PAGES_HEAD + i]);
		ndata += b[PC_PAGES_HEAD + i] == PC_DATA;
	}
	if (len != PC_PAGES_HEAD + n + ndata * PC_PAGE)
		return refuse(why, why_len, "a pages section of %" PRIu64 " bytes for %" PRIu64
			      " data pages", len, ndata);
	*out = (struct pc_pages){ .gpa = gpa, .n = (uint32_t)n, .ndata = (uint32_t)ndata,
				  .kinds = b + PC_PAGES_HEAD, .data = b + PC_PAGES_HEAD + n };
	return 0;
}

void pc_pages_head(unsigned char out[PC_PAGES_HEAD], uint64_t gpa, uint32_t n)
{
	put_le(out, gpa, 8);
	put_le(out + 8, n, 4);
	put_le(out + 12, 0, 4);
}

int pc_req_parse(const void *p, uint64_t len, const struct pc_guest *g, uint64_t *gpa,
		 uint64_t *bytes, uint32_t *flags, char *why, size_t why_len)
{
	const unsigned char *b = p;

	if (len != PC_REQ_BYTES)
		return refuse(why, why_len, "a page request of %" PRIu64 " bytes", len);
	*gpa = get_le(b, 8);
	*bytes = get_le(b + 8, 8);
	*flags = (uint32_t)get_le(b + 16, 4);
	if (*flags & ~PC_REQ_URGENT || get_le(b + 20, 4))
		return refuse(why, why_len, "a page request with unknown flags 0x%x", *flags);
	return check_range(g, *gpa, *bytes, "a request for", why, why_len);
}

void pc_req_encode(unsigned char out[PC_REQ_BYTES], uint64_t gpa, uint64_t len, uint32_t flags)
{
	put_le(out, gpa, 8);
	put_le(out + 8, len, 8);
	put_le(out + 16, flags, 4);
	put_le(out + 20, 0, 4);
}
