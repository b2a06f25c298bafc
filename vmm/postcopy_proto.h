/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Post-copy's sections of the migration stream (docs/migration.md), and
 * their parsers: pure functions over a section's payload, so that the
 * fuzz target runs exactly what the source and the destination run.
 *
 *   postcopy  source -> destination, with the last RAM sections: the
 *             pages the destination must not use (sent before and written
 *             since, or never sent); a bitmap, bit p = GPA p * 4096.
 *   pages     source -> destination, after the end section: {u64 gpa,
 *             u32 n, u32 0, u8 kind[n], the data pages packed}; n pages
 *             from gpa, whole pages of the destination's backing.
 *   page-req  destination -> source: {u64 gpa, u64 len, u32 flags, u32 0}:
 *             send these pages first (flag 1: a thread waits for them).
 *   pc-end    source -> destination: every page has been sent (empty); the
 *             destination answers with a result once all of them are here.
 *   recover   destination -> source on a resumed connection, after the
 *             source's header (the stream's own, which it checks): the
 *             pages it still has not got (a bitmap).
 * Bitmaps are u64 little-endian words; bits past the last page are 0.
 */
#ifndef VMRAS_VMM_POSTCOPY_PROTO_H
#define VMRAS_VMM_POSTCOPY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "mig_sections.h"

#define PC_PAGE ((uint64_t)4096)
#define PC_HEADER_BYTES 64		/* the stream's header section, resent on a resume */
#define PC_MAX_PAGES 512		/* a pages section: at most 2 MiB */
#define PC_PAGES_HEAD 16
#define PC_REQ_BYTES 24
#define PC_REQ_URGENT 1u

/* Page kinds, as in RAM sections. */
enum { PC_DATA = 0, PC_ZERO = 1, PC_POISONED = 2 };

/* The guest a stream is about: checks are against it. */
struct pc_guest {
	uint64_t ram_size;	/* bytes, a multiple of granule */
	uint64_t granule;	/* the backing's page size: 4 KiB or a huge page */
};

struct pc_pages {
	uint64_t gpa;
	uint32_t n;
	uint32_t ndata;			/* data pages carried */
	const uint8_t *kinds;		/* n */
	const unsigned char *data;	/* ndata pages, packed */
};

/* Largest payload of each post-copy section (0: not one); bitmaps: up to 1 TiB of RAM. */
uint64_t pc_section_max(uint32_t type);

size_t pc_bitmap_bytes(uint64_t npages);
/* -EPROTO (why filled) unless p is npages bits, nothing past them. */
int pc_bitmap_parse(const void *p, uint64_t len, uint64_t npages, uint64_t *bm, char *why,
		    size_t why_len);
/* bm to its payload (pc_bitmap_bytes(npages) bytes). */
void pc_bitmap_encode(const uint64_t *bm, uint64_t npages, unsigned char *out);

int pc_pages_parse(const void *p, uint64_t len, const struct pc_guest *g, struct pc_pages *out,
		   char *why, size_t why_len);
/* The head of a pages section for n pages (kinds follow it). */
void pc_pages_head(unsigned char out[PC_PAGES_HEAD], uint64_t gpa, uint32_t n);

/* A request: whole granules inside RAM. */
int pc_req_parse(const void *p, uint64_t len, const struct pc_guest *g, uint64_t *gpa,
		 uint64_t *bytes, uint32_t *flags, char *why, size_t why_len);
void pc_req_encode(unsigned char out[PC_REQ_BYTES], uint64_t gpa, uint64_t len, uint32_t flags);

#endif
