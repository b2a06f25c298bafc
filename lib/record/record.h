/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The durable record: every outcome and every change of a bad range, in
 * one SQLite database per host that every VMM on it shares (WAL mode).
 *
 * Threads: the record thread owns the database connection. Reporters (the
 * engine, vCPU threads delivering notices, the router's fill) queue items
 * under rec->lock, a leaf, and never wait for the disk. The thread commits
 * a batch, then reports its outcomes (event log line, ops.failure) in queue
 * order, so an outcome anyone saw is in the database: a SIGKILL loses
 * nothing reported (synchronous=NORMAL: a power cut may lose the last
 * commits). A full queue is not waited for: the outcome is reported at
 * once, unrecorded, and counted (record_dropped).
 */
#ifndef VMRAS_LIB_RECORD_H
#define VMRAS_LIB_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmras/event.h"

struct vmras;
struct vr_record;

#define VR_RECORD_SCHEMA 1

/*
 * Open (or create) the database at path and add this VM (name, uuid, the
 * regions of v's memory map), then start the record thread. -errno, with
 * why (one line) filled, when the database cannot be used.
 */
int vr_record_open(struct vmras *v, const char *path, struct vr_record **out, char *why,
		   size_t why_len);
/* Record and report everything queued, then close. */
void vr_record_close(struct vr_record *rec);

/*
 * Queue an outcome (with apply, the record thread carries out its reset or
 * fatal decision after reporting it); false: not queued (full, closing),
 * report and apply it yourself.
 */
bool vr_record_failure(struct vr_record *rec, const struct vmras_failure *f, bool apply);
/* Wait until everything queued so far is reported; -EDEADLK on its thread. */
int vr_record_flush(struct vr_record *rec);
/* A bad range changed: "split", "salvaged", "migrated-out" (no report follows). */
void vr_record_change(struct vr_record *rec, uint64_t gpa, uint64_t size, const char *change);
/* The guest was reset: every bad range is fresh memory again ("restored"). */
void vr_record_reset(struct vr_record *rec);
/* The VM left by migration: its ranges went with it, this run ended. */
void vr_record_migrated_out(struct vr_record *rec);

#endif
