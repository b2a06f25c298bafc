/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Lose 4 KiB, not a huge page: a huge page with an error becomes 4 KiB
 * shared pages at the same address, the bad ones poisoned, the rest
 * filled from the old huge page on demand (faults through the router) and
 * in the background.
 *
 * States of a split: begun (vCPUs paused: mapping swapped, registered,
 * bad page poisoned, the VMM told) -> filling (router thread) -> filled
 * (old huge page freed) -> restored (guest reset: a fresh huge page) or
 * freed (context gone). Each subpage: missing -> filled | poisoned.
 *
 * Threads: begin, poison, restore and free run on the engine thread (the
 * list v->splits is the engine's; vCPU threads only ask for the granule
 * under v->lock). Fill runs on the router thread. s->lock orders a fill
 * against a poison of the same split; restore first removes the split's
 * route, which waits until no fill runs.
 */
#ifndef VMRAS_LIB_SPLIT_H
#define VMRAS_LIB_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmras;
struct vmras_region;
struct vr_split;

enum vr_sub { VR_SUB_MISSING, VR_SUB_FILLED, VR_SUB_POISONED };

#define VR_SPLIT_NO_BAD UINT64_MAX

/* Can a huge page of r be split here? If not, why (for the record). */
bool vr_split_possible(struct vmras *v, const struct vmras_region *r, char *why, size_t len);

/* Engine thread: the split holding gpa, or NULL. */
struct vr_split *vr_split_find(struct vmras *v, uint64_t gpa);
enum vr_sub vr_split_state(struct vr_split *s, uint64_t gpa);
/* When the 4 KiB mapping went in (CLOCK_REALTIME): reports before it saw the huge page. */
uint64_t vr_split_live_ns(const struct vr_split *s);
/* Any thread: the page size guest RAM at gpa has now (4 KiB inside a split). */
uint64_t vr_split_granule(struct vmras *v, const struct vmras_region *r, uint64_t gpa);

/*
 * Replace the huge page at huge_gpa with 4 KiB pages; bad_gpa's is
 * poisoned (VR_SPLIT_NO_BAD: none known yet). On failure the huge page
 * is contained whole before the vCPUs run again (*whole_err: how that
 * went) and the split's error is returned.
 */
int vr_split_begin(struct vmras *v, const struct vmras_region *r, uint64_t huge_gpa,
		   uint64_t bad_gpa, int *whole_err);
/* Poison one more 4 KiB page of a split huge page. */
int vr_split_poison(struct vmras *v, struct vr_split *s, uint64_t gpa);
/* Guest reset (vCPUs paused): every split back to a fresh huge page. */
int vr_split_restore_all(struct vmras *v);
/* The context goes away (router stopped): free without remapping. */
void vr_split_free_all(struct vmras *v);

#endif
