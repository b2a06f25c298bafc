// SPDX-License-Identifier: GPL-2.0-or-later
/* The RAM sections' checks (see ram_proto.h). */
#include <errno.h>
#include <inttypes.h>

#include "ram_proto.h"
#include "util/crc32c.h"

static uint64_t get(const unsigned char *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int ram_batch_check(const unsigned char *p, uint64_t len, uint64_t ram_size,
		    uint64_t sec_offset, uint64_t *n, struct vmm_error *e)
{
	uint64_t count = len >= 8 ? get(p, 4) : 0, datapages = 0;

	if (len < 8 || !count || count > RAM_BATCH || get(p + 4, 4) || len < 8 + count * 8)
		return vmm_failf(e, -EPROTO, "ram section at offset %" PRIu64 ": bad page count",
				 sec_offset);
	for (uint64_t i = 0; i < count; i++) {
		uint64_t w = get(p + 8 + i * 8, 8), kind = w & (RAM_PAGE - 1);

		if (kind > PG_POISONED || (w & ~(RAM_PAGE - 1)) >= ram_size)
			return vmm_failf(e, -EPROTO, "ram section at offset %" PRIu64 ": page %"
					 PRIu64 " is 0x%" PRIx64 ", not a page of this guest's RAM",
					 sec_offset, i, w);
		datapages += kind == PG_DATA;
	}
	if (len != 8 + count * 8 + datapages * RAM_PAGE)
		return vmm_failf(e, -EPROTO, "ram section at offset %" PRIu64 ": %" PRIu64
				 " bytes for %" PRIu64 " data pages", sec_offset, len, datapages);
	*n = count;
	return 0;
}

int ram_image_check(const unsigned char *map, uint64_t npages, uint64_t sec_offset,
		    uint64_t sec_len, uint64_t *data_off, struct vmm_error *e)
{
	uint64_t head = RAM_IMAGE_HEAD(npages), off = get(map + 8, 8), start = sec_offset + 24;
	unsigned char worst = 0;

	/* The pages start on the first page boundary after the head, and end the section. */
	if (get(map, 8) != npages || off < start + head || (off & (RAM_PAGE - 1)) ||
	    off - start - head >= RAM_PAGE || sec_len != off - start + npages * RAM_PAGE ||
	    get(map + 20, 4))
		return vmm_failf(e, -EPROTO, "ram-image section at offset %" PRIu64 ": its layout "
				 "does not fit a %" PRIu64 "-page guest", sec_offset, npages);
	if (get(map + 16, 4) != vr_crc32c(0, map + 24, npages))
		return vmm_failf(e, -EPROTO, "ram-image section at offset %" PRIu64 ": its page "
				 "map fails its checksum", sec_offset);
	/* One pass that vectorizes; the page is looked for only if there is one. */
	for (uint64_t p = 0; p < npages; p++)
		worst |= map[24 + p] > PG_POISONED;
	for (uint64_t p = 0; worst && p < npages; p++)
		if (map[24 + p] > PG_POISONED)
			return vmm_failf(e, -EPROTO, "ram-image: page %" PRIu64 " has kind %u", p,
					 map[24 + p]);
	*data_off = off;
	return 0;
}
