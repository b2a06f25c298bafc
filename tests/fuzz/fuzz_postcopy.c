// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for post-copy's page protocol (vmm/postcopy_proto.c):
 * a stream in migration framing whose sections go to the parsers the
 * source (page requests, the recover bitmap) and the destination (the
 * postcopy bitmap, pages sections) run, for a 64 MiB guest of 4 KiB or
 * 2 MiB pages (the first byte says which). Besides crashes and sanitizer
 * reports it aborts when what a parser accepted breaks its promise: a
 * range outside RAM or not whole pages, a count that does not add up, a
 * refusal without a reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mig_stream.h"
#include "postcopy_proto.h"

#define RAM (64ULL << 20)
#define NPAGES (RAM / PC_PAGE)

static uint64_t fuzz_max(uint32_t type)
{
	if (type == SEC_GO || type == SEC_RESULT)
		return 512;
	return pc_section_max(type);
}

static void check_range(const struct pc_guest *g, uint64_t gpa, uint64_t len)
{
	if (!len || gpa % g->granule || len % g->granule || gpa >= RAM || len > RAM - gpa)
		abort();
}

static void one(const struct pc_guest *g, uint32_t type, const unsigned char *p, uint64_t len)
{
	static uint64_t bm[NPAGES / 64];
	char why[160] = "";
	int r = 0;

	if (type == SEC_PAGES) {
		struct pc_pages pg;

		r = pc_pages_parse(p, len, g, &pg, why, sizeof(why));
		if (!r) {
			uint32_t ndata = 0;

			check_range(g, pg.gpa, (uint64_t)pg.n * PC_PAGE);
			for (uint32_t i = 0; i < pg.n; i++)
				ndata += pg.kinds[i] == PC_DATA;
			if (ndata != pg.ndata || pg.data + (uint64_t)ndata * PC_PAGE != p + len)
				abort();
		}
	} else if (type == SEC_PAGE_REQ) {
		uint64_t gpa, bytes;
		uint32_t flags;

		r = pc_req_parse(p, len, g, &gpa, &bytes, &flags, why, sizeof(why));
		if (!r) {
			check_range(g, gpa, bytes);
			if (flags & ~PC_REQ_URGENT)
				abort();
		}
	} else if (type == SEC_POSTCOPY || type == SEC_RECOVER) {
		r = pc_bitmap_parse(p, len, NPAGES, bm, why, sizeof(why));
	}
	if (r && (r != -EPROTO || !why[0]))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pc_guest g = { RAM, PC_PAGE };
	struct vmm_error e = { "" };
	struct mig_section sec;
	struct mig_stream *s;

	if (!size)
		return 0;
	if (data[0] & 1)
		g.granule = 2ULL << 20;
	if (mig_open_buffer(data + 1, size - 1, &s, &e))
		return 0;
	while (!mig_read_header(s, fuzz_max, &sec, &e)) {
		void *p = NULL;

		if (mig_read_payload(s, &sec, &p, &e))
			break;
		one(&g, sec.type, p, sec.len);
		free(p);
	}
	mig_close(s);
	return 0;
}
