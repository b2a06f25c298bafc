/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Firecracker's snapshot-restore handshake (the one message a page-fault
 * handler receives, docs/serve-snapshot.md): a JSON array of guest memory
 * regions,
 *   [{"base_host_virt_addr": u64, "size": usize, "offset": u64,
 *     "page_size": usize}, ...]
 * Firecracker 1.7 to 1.11 sent "page_size_kib" instead of "page_size",
 * 1.12 on sends both, equal: bytes, despite the name; before 1.7 neither
 * (4 KiB pages). Pure functions: no I/O, no allocation; any input is safe.
 */
#ifndef VMRAS_TOOL_FC_HANDSHAKE_H
#define VMRAS_TOOL_FC_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FC_MAX_REGIONS 64
#define FC_MAX_MESSAGE 65536	/* bytes */
#define FC_PAGE_4K 4096ULL
#define FC_PAGE_2M (2ULL << 20)

struct fc_region {
	uint64_t base;		/* base_host_virt_addr: where the region is mapped */
	uint64_t size;		/* bytes */
	uint64_t offset;	/* of its contents in the memory file */
	uint64_t page_size;	/* bytes (page_size, page_size_kib, or 4096) */
};

/*
 * Parse len bytes (not NUL-terminated; a NUL byte is invalid) into at most
 * FC_MAX_REGIONS regions. Returns 0 with *n set; -EAGAIN when the bytes
 * are a valid beginning of a message but it is not complete yet (read
 * more); -EINVAL with why (a NUL-terminated sentence without a final
 * period) saying what is wrong and at which byte. Unknown keys are
 * skipped, a duplicate known key, a missing one, a number with a sign,
 * fraction or exponent or above 2^64 - 1, and anything after the array
 * but white space are refused. Checks no values: fc_handshake_check does.
 */
int fc_handshake_parse(const char *buf, size_t len, struct fc_region regions[FC_MAX_REGIONS],
		       size_t *n, char *why, size_t why_size);

/*
 * Whether the bytes received so far may be a complete message: a
 * resumable scan of brackets outside strings over the bytes not scanned
 * before, so that a client sending a byte at a time costs linear time and
 * not a full parse per byte. Whenever fc_handshake_parse(buf, len) would
 * return 0, fc_scan_closed(sc, buf, len) returns true (it may also for
 * bytes the parser refuses). Start from a zeroed struct fc_scan; buf must
 * only grow between calls.
 */
struct fc_scan {
	size_t pos;		/* bytes scanned */
	size_t depth;		/* open brackets */
	bool closed, in_string, escape;
};

bool fc_scan_closed(struct fc_scan *sc, const char *buf, size_t len);

/*
 * The regions against a memory file of file_size bytes: page_size 4 KiB
 * or 2 MiB, base and size multiples of it (size not 0), offset a multiple
 * of 4 KiB, offset + size within the file, no arithmetic overflow, no two
 * regions overlapping in the address space. 0 or -EINVAL with why.
 */
int fc_handshake_check(const struct fc_region *regions, size_t n, uint64_t file_size,
		       char *why, size_t why_size);

#endif
