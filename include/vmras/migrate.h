/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What moves with a VM, whatever the VMM's stream format: its bad memory
 * (every poisoned range: GPA, size, kind, whether the guest was told) and
 * the notices still queued for its vCPUs, as one versioned, checksummed
 * blob the VMM carries in its stream.
 *
 * Source: read guest RAM for the stream with vmras_copy_from_guest: a page
 * the registry knows is bad is refused untouched (-EHWPOISON: send it as
 * "poisoned", never as data), and one nobody knew about becomes an event,
 * not a crash. With the vCPUs stopped, vmras_migration_save takes the
 * state after every report already made has been handled.
 *
 * Destination: load RAM first (a poisoned page is not written), then
 * vmras_migration_parse (checks the blob whole; touches nothing), add the
 * pages the stream itself said were poisoned, and vmras_migration_apply
 * before any vCPU runs: each range is poisoned again (UFFDIO_POISON; in a
 * huge page the page is split so only the bad 4 KiB is lost, without a
 * pause since nothing runs), the registry filled, the notices requeued.
 * A range outside guest RAM, a notice for a vCPU that does not exist or
 * for another architecture is refused before anything changes.
 */
#ifndef VMRAS_MIGRATE_H
#define VMRAS_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(default)

struct vmras;
struct vmras_migration;

/* Source: the blob (malloc'd, *len bytes). Waits for the engine to catch up. */
int vmras_migration_save(struct vmras *v, void **buf, size_t *len);

/* Anyone: check buf whole (-EPROTO with why[] filled if it is malformed). */
int vmras_migration_parse(const void *buf, size_t len, struct vmras_migration **out,
			  char *why, size_t why_len);
/* Destination: a 4 KiB page the stream sent as poisoned (merged with the blob's). */
int vmras_migration_add_page(struct vmras_migration *m, uint64_t gpa);
/* How many bad ranges and queued notices it carries. */
void vmras_migration_counts(const struct vmras_migration *m, size_t *ranges, size_t *notices);
/*
 * Destination, after vmras_start, RAM loaded, no vCPU run yet: recreate.
 * -EINVAL (why filled) when it does not fit this VM; nothing changed then.
 */
int vmras_migration_apply(struct vmras *v, const struct vmras_migration *m, char *why,
			  size_t why_len);
void vmras_migration_free(struct vmras_migration *m);
/* Source: the destination took the guest over (the record says its ranges left). */
void vmras_migration_handed_over(struct vmras *v);

#pragma GCC visibility pop

#endif
