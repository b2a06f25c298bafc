/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Lose 4 KiB, not a huge page: a huge page with an error becomes smaller
 * pages at the same address, the bad 4 KiB poisoned, the rest filled from
 * the old huge page on demand (faults through the router) and in the
 * background. A 2 MiB page becomes 4 KiB pages. A 1 GiB page becomes 2 MiB
 * huge pages (when the 2 MiB pool has them; else 4 KiB pages) and only the
 * 2 MiB chunk around a bad page becomes 4 KiB pages (a nested split); a
 * later error in another chunk splits that chunk.
 *
 * States of a split: begun (vCPUs paused: mapping swapped, registered,
 * bad page poisoned, the VMM told) -> filling (router thread) -> filled
 * (old huge page freed) -> restored (guest reset: a fresh huge page) or
 * freed (context gone). Each subpage: missing -> filled | poisoned; a
 * 2 MiB chunk: missing -> filled | nested (4 KiB) | poisoned (waiting for
 * the engine to nest it).
 *
 * Threads: begin, poison, restore and free run on the engine thread (the
 * list v->splits is the engine's, changed under v->lock so vCPU threads
 * may ask for the granule). Fill runs on the router thread. s->lock orders
 * a fill against a poison of the same split (a parent's lock is never held
 * while its child's is taken); restore first removes the split's route,
 * which waits until no fill runs.
 */
#ifndef VMRAS_LIB_SPLIT_H
#define VMRAS_LIB_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmras;
struct vmras_region;
struct vr_split;

enum vr_sub { VR_SUB_MISSING, VR_SUB_FILLED, VR_SUB_POISONED, VR_SUB_NESTED };

#define VR_SPLIT_NO_BAD UINT64_MAX

/* Can a huge page of r be split here? If not, why (for the record). */
bool vr_split_possible(struct vmras *v, const struct vmras_region *r, char *why, size_t len);

/* Engine thread: the innermost split holding gpa, or NULL. */
struct vr_split *vr_split_find(struct vmras *v, uint64_t gpa);
/* The state of gpa's subpage in s, and the subpage size (4 KiB or 2 MiB). */
enum vr_sub vr_split_state(struct vr_split *s, uint64_t gpa);
uint64_t vr_split_sub_size(const struct vr_split *s);
/* The arrival number when the new mapping went in: reports below it saw the old page. */
uint64_t vr_split_live_seq(const struct vr_split *s);
/* Any thread: the page size guest RAM at gpa has now. */
uint64_t vr_split_granule(struct vmras *v, const struct vmras_region *r, uint64_t gpa);

/* What a failed split contained instead, before the vCPUs ran again. */
struct vr_split_loss {
	int err;		/* of that containment */
	uint64_t gpa, size;
};

/*
 * Split the page holding gpa: a huge page of r, or a 2 MiB chunk of a
 * 1 GiB split. bad_gpa's 4 KiB page is poisoned (VR_SPLIT_NO_BAD: none
 * known yet). On failure the page is contained whole (*loss) and the
 * split's error returned.
 */
int vr_split_begin(struct vmras *v, const struct vmras_region *r, uint64_t gpa,
		   uint64_t bad_gpa, struct vr_split_loss *loss);
/* Does gpa's old data still read back (only asked of reports older than the split)? */
bool vr_split_read_back(struct vr_split *s, uint64_t gpa);
/* Poison one more 4 KiB page of a 4 KiB split. */
int vr_split_poison(struct vmras *v, struct vr_split *s, uint64_t gpa);
/* Guest reset (vCPUs paused): every split back to a fresh huge page. */
int vr_split_restore_all(struct vmras *v);
/* The context goes away (router stopped): free without remapping. */
void vr_split_free_all(struct vmras *v);

#endif
