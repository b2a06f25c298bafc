// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the RAM sections of a migration stream or snapshot
 * (vmm/ram_proto.c), the checks the destination makes before it writes
 * guest RAM. The first byte picks the section (even: ram, odd: ram-image)
 * and the guest's size (1..64 pages). A ram section's payload follows; an
 * image's section offset and length (u64 each) and the first 24 + npages
 * bytes of its payload, as the destination reads them. Besides crashes and sanitizer
 * reports it aborts when an invariant fails:
 *   - a refusal is -EPROTO, explained, and leaves the result untouched;
 *   - an accepted ram section names 1..256 pages of this guest, each of a
 *     known kind, and is exactly as long as its data pages need;
 *   - an accepted image has the guest's page count, a page-aligned data
 *     offset less than a page after its head, its pages ending where the
 *     section does, kinds of 0..2 only and their CRC right.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ram_proto.h"
#include "util/crc32c.h"

static uint64_t get(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void refused(int r, const struct vmm_error *e, uint64_t out)
{
	if (r != -EPROTO || !e->msg[0] || out != 0xa5a5a5a5a5a5a5a5ULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_error e = { "" };
	uint64_t npages, out = 0xa5a5a5a5a5a5a5a5ULL, data_pages = 0, off, len;
	int r;

	if (size < 1)
		return 0;
	npages = (uint64_t)(data[0] >> 1) % 64 + 1;
	if (!(data[0] & 1)) {
		const uint8_t *p = data + 1;

		len = size - 1;
		r = ram_batch_check(p, len, npages * RAM_PAGE, 0, &out, &e);
		if (r) {
			refused(r, &e, out);
			return 0;
		}
		if (!out || out > RAM_BATCH || len < 8 + out * 8)
			abort();
		for (uint64_t i = 0; i < out; i++) {
			uint64_t w = get(p + 8 + i * 8, 8);

			if ((w & (RAM_PAGE - 1)) > PG_POISONED || (w & ~(RAM_PAGE - 1)) >= npages * RAM_PAGE)
				abort();
			data_pages += (w & (RAM_PAGE - 1)) == PG_DATA;
		}
		if (len != 8 + out * 8 + data_pages * RAM_PAGE)
			abort();
		return 0;
	}
	if (size < 17 + 24 + npages)
		return 0;
	off = get(data + 1, 8) & ((1ULL << 40) - 1);
	len = get(data + 9, 8) & ((1ULL << 41) - 1);
	r = ram_image_check(data + 17, npages, off, len, &out, &e);
	if (r) {
		refused(r, &e, out);
		return 0;
	}
	if ((out & (RAM_PAGE - 1)) || out < off + 24 + RAM_IMAGE_HEAD(npages) ||
	    out - (off + 24) - RAM_IMAGE_HEAD(npages) >= RAM_PAGE ||
	    out - (off + 24) + npages * RAM_PAGE != len || get(data + 17, 8) != npages ||
	    get(data + 17 + 16, 4) != vr_crc32c(0, data + 17 + 24, npages) ||
	    get(data + 17 + 20, 4))
		abort();
	for (uint64_t p = 0; p < npages; p++)
		if (data[17 + 24 + p] > PG_POISONED)
			abort();
	return 0;
}
