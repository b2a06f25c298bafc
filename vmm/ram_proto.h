/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The RAM sections of the migration stream (docs/migration.md) and their
 * checks: pure functions over what was read, so that the fuzz target runs
 * exactly what the destination runs before it writes a byte of guest RAM.
 *
 *   ram        {u32 n, u32 0, u64 word[n], the data pages packed}: word =
 *              gpa | kind, kind 0 data, 1 zero, 2 poisoned; 1..RAM_BATCH
 *              pages.
 *   ram-image  a snapshot's whole RAM in one section: {u64 npages,
 *              u64 data_offset (in the file, page-aligned), u32 CRC-32C of
 *              the kinds, u32 0, u8 kind[npages], u32 crc[npages], padding
 *              to data_offset, the pages}.
 */
#ifndef VMRAS_VMM_RAM_PROTO_H
#define VMRAS_VMM_RAM_PROTO_H

#include <stdint.h>

#include "error.h"

#define RAM_PAGE 4096ULL
#define RAM_BATCH 256		/* pages per ram section */
/* Page kinds in ram sections and the image's map. */
enum { PG_DATA = 0, PG_ZERO = 1, PG_POISONED = 2 };
/* ram-image: the bytes before the padding. */
#define RAM_IMAGE_HEAD(npages) (24 + 5 * (uint64_t)(npages))

/*
 * A ram section's payload p of len bytes, for a guest of ram_size bytes
 * (the section at sec_offset in the stream, for messages): 0 with the page
 * count in *n, or -EPROTO (e says why) unless every word names a page of
 * this guest with a known kind and len is exactly what they need.
 */
int ram_batch_check(const unsigned char *p, uint64_t len, uint64_t ram_size,
		    uint64_t sec_offset, uint64_t *n, struct vmm_error *e);

/*
 * A ram-image section's first 24 + npages bytes (map), the section being
 * sec_len bytes of payload at sec_offset: 0 with the pages' file offset in
 * *data_off, or -EPROTO unless it is an image of exactly npages pages whose
 * data ends where the section does, its kinds known and their CRC right.
 */
int ram_image_check(const unsigned char *map, uint64_t npages, uint64_t sec_offset,
		    uint64_t sec_len, uint64_t *data_off, struct vmm_error *e);

#endif
