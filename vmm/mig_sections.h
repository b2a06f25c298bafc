/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration stream's section types (docs/migration.md). */
#ifndef VMRAS_VMM_MIG_SECTIONS_H
#define VMRAS_VMM_MIG_SECTIONS_H

enum section {
	SEC_HEADER = 1,		/* the machine: must match the destination's */
	SEC_RAM = 2,		/* a batch of pages: data, zero or poisoned */
	SEC_RAM_IMAGE = 3,	/* file: every page at a fixed offset */
	SEC_RAS = 4,		/* libvmras's state (vmras_migration_save) */
	SEC_VCPU = 5,		/* id = index: x86_state blob */
	SEC_GUEST = 6,		/* the test guest's report, boot count */
	SEC_END = 7,
	SEC_RESULT = 8,		/* destination -> source: i32 status, message */
	SEC_GO = 9,		/* source -> destination: run it (the handover) */
	/* post-copy (postcopy_proto.h) */
	SEC_POSTCOPY = 10,	/* source -> destination: the pages it must not use */
	SEC_PAGES = 11,		/* source -> destination: pages, after the end */
	SEC_PAGE_REQ = 12,	/* destination -> source: send these first */
	SEC_PC_END = 13,	/* source -> destination: every page was sent */
	SEC_RECOVER = 14,	/* destination -> source: the pages it still lacks */
	SEC_COUNT
};

#endif
