/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Post-copy on the destination (docs/migration.md): the guest runs while
 * the rest of its RAM arrives. libvmras's lazy memory asks for each page
 * a vCPU or a VMM thread touches (fetch: a page request on the
 * connection, sent from whichever thread faulted); a receiver thread reads
 * the source's pages sections and supplies them. A page the source says is
 * poisoned is poisoned here; nothing is ever filled with made-up data.
 *
 * The connection breaks: status postcopy-paused (a MIGRATION event), the
 * threads that need a missing page wait, the rest runs on. migrate-recover
 * listens on a new URI; the source's `migrate {"resume": true}` connects,
 * reads which pages are still missing, and serves them; the requests that
 * were lost are asked again.
 *
 * Threads and locks: pc->lock guards the connection, the state and the
 * counters; it is a leaf (never held with another lock taken inside it
 * but a stream's cancel) and is not held across a send: a sender counts
 * itself in (senders) and the recovery waits them out before it closes
 * the stream they use. pc->status_lock is taken alone, before pc->lock,
 * so that status events leave in the order of the states. The receiver
 * thread alone reads the connection and calls vmras_lazy_supply; the
 * recovery thread replaces the connection while no receiver runs. A
 * failing receiver cancels its stream, so that the source pauses too.
 */
#ifndef VMRAS_VMM_POSTCOPY_H
#define VMRAS_VMM_POSTCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct vmm;
struct mig_stream;
struct postcopy_in;

/*
 * Everything but RAM has arrived and been checked on s: make the pages
 * not in here (one bit per 4 KiB page) lazy, and start the receiver. s is
 * post-copy's from now on (on failure, still the caller's). header: the
 * stream's header section, which a resuming source must send again.
 */
int postcopy_in_begin(struct vmm *vm, struct mig_stream *s, const unsigned char *header,
		      const uint64_t *here, struct vmm_error *e);
/* The destination's verdict to the source (0: ready). */
int postcopy_in_result(struct vmm *vm, int status, const char *msg, struct vmm_error *e);
/* Wait for the handover ("go"): 0, or why it did not come. */
int postcopy_in_wait_go(struct vmm *vm, struct vmm_error *e);
/* Guest RAM is still arriving by post-copy: no reset, no VMM write, no migrate. */
bool postcopy_in_active(struct vmm *vm);
/* QMP migrate-recover: listen on uri for the source's resume (paused only). */
int postcopy_in_recover(struct vmm *vm, const char *uri, struct vmm_error *e);
/* migrate-pause: break the connection of a running post-copy (-ENOENT: none). */
int postcopy_in_pause(struct vmm *vm);
/* Every wait and connection of post-copy ends. */
void postcopy_in_cancel(struct vmm *vm);
/*
 * The VMM quits: cancel, and what never arrived is poisoned (never data),
 * so that the vCPUs waiting for it come out and can be joined.
 */
bool postcopy_in_quit(struct vmm *vm);	/* true: pages were lost */
/*
 * Stop and join its threads, and detach it: before vmras_free. Lazy
 * memory may still call its fetch (which fails) until vmras_free: free it
 * after that.
 */
struct postcopy_in *postcopy_in_stop(struct vmm *vm);
void postcopy_in_free(struct postcopy_in *pc);

#endif
