// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the migration stream reader: any bytes through
 * mig_open_buffer, each section read whole or in pieces as its id says.
 * Besides crashes and sanitizer reports it aborts when an invariant fails:
 * a clean end only where the input ends, an error always explained.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "mig_stream.h"

static const char *const names[17] = { [1] = "one", [3] = "ram", [16] = "last" };

static uint64_t fuzz_max(uint32_t type)
{
	return type >= 1 && type <= 16 ? 1u << 20 : 0;
}

/* Pieces of 1..4096 bytes; with id bit 1, one byte too many first (-EINVAL). */
static int read_pieces(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e)
{
	static unsigned char piece[4096];
	size_t step = (sec->id >> 2) % sizeof(piece) + 1;
	uint64_t left = sec->len;
	int r = 0;

	if ((sec->id & 2) && sec->len < sizeof(piece) &&
	    mig_read_data(s, sec, piece, (size_t)sec->len + 1, e) != -EINVAL)
		abort();
	while (!r && left) {
		size_t k = left < step ? (size_t)left : step;

		r = mig_read_data(s, sec, piece, k, e);
		left -= k;
	}
	return r ? r : mig_read_end(s, sec, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_error e = { "" };
	struct mig_section sec;
	struct mig_stream *s;
	int r;

	if (mig_open_buffer(data, size, &s, &e)) {
		if (!e.msg[0])
			abort();
		return 0;
	}
	mig_set_section_names(s, names, 17);
	while (!(r = mig_read_header(s, fuzz_max, &sec, &e))) {
		if (sec.len > fuzz_max(sec.type))
			abort();
		if (sec.id & 1) {
			r = read_pieces(s, &sec, &e);
		} else {
			void *p = NULL;

			r = mig_read_payload(s, &sec, &p, &e);
			if (!r && sec.len && !p)
				abort();
			free(p);
		}
		if (r)
			break;
	}
	if (mig_in_offset(s) > size || !e.msg[0] || (r != -ENODATA && r != -EPROTO) ||
	    (r == -ENODATA && mig_in_offset(s) != size))
		abort();
	mig_close(s);
	return 0;
}
