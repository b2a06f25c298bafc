/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A snapshot's RAM image served lazily (`vmras run --incoming file:PATH
 * --lazy`): libvmras's page source over the file. Each page is read with
 * pread when it is asked for and checked against its CRC-32C (read from
 * the image's head then too); a page that does not read back or does not match is
 * given to the guest as poisoned (it gets a machine check if it touches
 * it), never as data or zeros.
 *
 * Threads: fetch runs on whatever libvmras thread asks (router, engine, a
 * vCPU); the image is read-only after lazy_image_begin, counters atomic.
 */
#ifndef VMRAS_VMM_LAZY_IMAGE_H
#define VMRAS_VMM_LAZY_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct vmras;
struct lazy_image;

/*
 * Serve guest RAM (one region at GPA 0, npages pages) from fd (dup'd):
 * page p's data at data_off + p * 4096, its CRC-32C (little-endian u32) at
 * crc_off + p * 4, its kind (0 data, 1 zero, 2 poisoned; copied) in
 * kinds[p]. Makes guest RAM lazy: before any vCPU runs. prefetch: also
 * load every page in the background (off: only on demand).
 */
int lazy_image_begin(struct vmras *ras, int fd, uint64_t data_off, uint64_t crc_off,
		     uint64_t npages, const uint8_t *kinds, bool prefetch,
		     struct lazy_image **out, struct vmm_error *e);
/* After the library stopped asking (vmras_free). */
void lazy_image_free(struct lazy_image *li);
/* Pages that failed their read or checksum (served as poisoned). */
uint64_t lazy_image_bad_pages(const struct lazy_image *li);

#endif
