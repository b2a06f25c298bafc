// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The serve-snapshot handshake parser (tools/vmras/fc_handshake.c) on
 * arbitrary bytes, in an allocation of exactly their size (a read past
 * the end is ASan's), then fed as the handler reads a message: cut at each
 * of the last 64 lengths. Whatever it says: 0, -EAGAIN or -EINVAL, a
 * refusal says why (and fits a 1-byte buffer too), an accepted message has
 * 1 to FC_MAX_REGIONS regions that fc_handshake_check takes without a
 * crash, and a cut of an accepted message is incomplete (or, cut in the
 * white space after it, accepted the same).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fc_handshake.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fc_region r[FC_MAX_REGIONS], cut[FC_MAX_REGIONS];
	size_t n, m;
	char why[256];

	if (size > FC_MAX_MESSAGE)
		size = FC_MAX_MESSAGE;
	if (parse(data, size, r, &n) == 0) {
		/* Against a small file and an unbounded one: says why, or accepts. */
		if (fc_handshake_check(r, n, 1ULL << 30, why, sizeof(why)) && !why[0])
			abort();
		if (fc_handshake_check(r, n, UINT64_MAX, why, sizeof(why)) && !why[0])
			abort();
		for (size_t k = size > 64 ? size - 64 : 0; k < size; k++) {
			int err = parse(data, k, cut, &m);

			if (err == -EINVAL || (err == 0 && (m != n || memcmp(cut, r, n * sizeof(*r)))))
				abort();
		}
	} else {
		for (size_t k = size > 64 ? size - 64 : 0; k < size; k++)
			parse(data, k, cut, &m);
	}
	return 0;
}
