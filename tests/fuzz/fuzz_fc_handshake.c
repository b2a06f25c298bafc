// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The serve-snapshot handshake parser (tools/vmras/fc_handshake.c) on
 * arbitrary bytes, in an allocation of exactly their size (a read past
 * the end is ASan's), then fed as the handler reads a message: cut at
 * every length for inputs up to 1 KiB, else at each of the last 64 lengths
 * and at 192 lengths spread over the rest (chosen from the input, so a
 * crash reproduces). Whatever it says: 0, -EAGAIN or -EINVAL, a refusal
 * says why (and fits a 1-byte buffer too), an accepted message has 1 to
 * FC_MAX_REGIONS regions that fc_handshake_check takes without a crash,
 * and a cut of an accepted message is incomplete (or, cut in the white
 * space after it, accepted the same). fc_scan_closed, resumed at each cut
 * in turn, says "maybe complete" wherever the parser accepts, and ends
 * where a scan in one go ends.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fc_handshake.h"

#define EVERY_CUT_UP_TO 1024
#define TAIL_CUTS 64
#define SPREAD_CUTS 192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const uint8_t *data, size_t n, struct fc_region *r, size_t *count)
{
	char why[256], tiny[1];
	char *copy = malloc(n ? n : 1);
	int err, err2;
	size_t c2;

	if (!copy)
		abort();
	memcpy(copy, data, n);
	err = fc_handshake_parse(copy, n, r, count, why, sizeof(why));
	if (err != 0 && err != -EAGAIN && err != -EINVAL)
		abort();
	if (err == -EINVAL && !why[0])
		abort();
	if (err == 0 && (*count == 0 || *count > FC_MAX_REGIONS))
		abort();
	err2 = fc_handshake_parse(copy, n, r, &c2, tiny, sizeof(tiny));
	if (err2 != err || tiny[0])
		abort();
	free(copy);
	return err;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* The lengths to cut at, increasing, below size: how many. */
static size_t cuts(const uint8_t *data, size_t size, size_t *out)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ size;
	size_t n = 0, m = 0;

	if (size <= EVERY_CUT_UP_TO) {
		for (size_t k = 0; k < size; k++)
			out[n++] = k;
		return n;
	}
	for (size_t i = 0; i < size; i += size / 64)	/* seeded by the input */
		x = (x ^ data[i]) * 0x100000001b3ULL;
	for (size_t i = 0; i < SPREAD_CUTS; i++) {
		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ULL;
		x ^= x >> 32;
		out[n++] = (size_t)(x % (size - TAIL_CUTS));
	}
	for (size_t k = size - TAIL_CUTS; k < size; k++)
		out[n++] = k;
	qsort(out, n, sizeof(*out), cmp_size);
	for (size_t i = 0; i < n; i++)		/* unique */
		if (!m || out[m - 1] != out[i])
			out[m++] = out[i];
	return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fc_region r[FC_MAX_REGIONS], cut[FC_MAX_REGIONS];
	static size_t at[EVERY_CUT_UP_TO + SPREAD_CUTS + TAIL_CUTS];
	struct fc_scan resumed = { 0 }, whole = { 0 };
	size_t n, m, ncuts;
	char why[256];
	int full;

	if (size > FC_MAX_MESSAGE)
		size = FC_MAX_MESSAGE;
	full = parse(data, size, r, &n);
	if (full == 0) {
		/* Against a small file and an unbounded one: says why, or accepts. */
		if (fc_handshake_check(r, n, 1ULL << 30, why, sizeof(why)) && !why[0])
			abort();
		if (fc_handshake_check(r, n, UINT64_MAX, why, sizeof(why)) && !why[0])
			abort();
	}
	ncuts = cuts(data, size, at);
	for (size_t i = 0; i < ncuts; i++) {
		size_t k = at[i];
		int err = parse(data, k, cut, &m);
		bool closed = fc_scan_closed(&resumed, (const char *)data, k);

		if (err == 0 && !closed)
			abort();
		if (full == 0 && (err == -EINVAL || (err == 0 && (m != n ||
								  memcmp(cut, r, n * sizeof(*r))))))
			abort();
	}
	if (fc_scan_closed(&resumed, (const char *)data, size) !=
	    fc_scan_closed(&whole, (const char *)data, size) || (full == 0 && !whole.closed))
		abort();
	return 0;
}
