// SPDX-License-Identifier: GPL-2.0-or-later
/* Post-copy on the destination (see postcopy.h, docs/migration.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mig_stream.h"
#include "migration.h"
#include "postcopy.h"
#include "postcopy_proto.h"
#include "vmm_internal.h"
#include "vmras/lazy.h"

enum pc_state {
	PC_WAIT_GO,	/* everything checked; the source has not handed over yet */
	PC_RUNNING,
	PC_PAUSED,	/* the connection broke */
	PC_RECOVERING,	/* migrate-recover listens */
	PC_DONE,	/* every page is here */
	PC_FAILED,	/* before the handover: the guest does not run here */
};

struct postcopy_in {
	struct vmm *vm;
	struct pc_guest g;
	uint64_t npages;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cond;	/* state changes */
	enum pc_state state;
	struct mig_stream *s;	/* the connection; NULL while paused */
	struct mig_stream *old;	/* replaced by a recovery: closed at the end */
	bool rx_started, rec_started, stopping;
	pthread_t rx, rec;
	atomic_bool cancel;	/* a quit: the recovery's accept stops */
	char why[256];		/* why it failed or paused */
	char rec_uri[256];
	uint64_t *here;		/* pages supplied (or here from pre-copy) */
	uint64_t requests, lost_huge;
};

static bool page_here(const struct postcopy_in *pc, uint64_t p)
{
	return pc->here[p / 64] & (1ULL << (p % 64));
}

/* ---- fetch: a page request from the thread that needs the page ---------- */

static int pc_fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	struct postcopy_in *pc = opaque;
	unsigned char req[PC_REQ_BYTES];
	int r;

	pc_req_encode(req, gpa, len, urgent ? PC_REQ_URGENT : 0);
	pthread_mutex_lock(&pc->lock);
	r = pc->s && !pc->stopping && (pc->state == PC_RUNNING || pc->state == PC_WAIT_GO)
		    ? mig_send_small(pc->s, SEC_PAGE_REQ, 0, req, sizeof(req)) : -ENOTCONN;
	if (!r)
		pc->requests++;
	pthread_mutex_unlock(&pc->lock);
	return r;
}

/* ---- the receiver --------------------------------------------------------- */

static uint64_t rx_max(uint32_t type)
{
	return type == SEC_GO ? 1 : pc_section_max(type);
}

/*
 * A pages section: unpacked and supplied. A huge page that arrives with a
 * bad 4 KiB page after the vCPUs ran cannot be split here any more (the
 * source split the ones it knew of before the switch): it is lost whole,
 * poisoned, and said.
 */
static int rx_pages(struct postcopy_in *pc, struct mig_stream *s, const struct mig_section *sec,
		    unsigned char *buf, struct vmm_error *e)
{
	struct vmm *vm = pc->vm;
	struct pc_pages pg;
	unsigned char *p = NULL;
	uint8_t kinds[PC_MAX_PAGES];
	char why[160];
	int r = mig_read_payload(s, sec, (void **)&p, e);

	if (!r && pc_pages_parse(p, sec->len, &pc->g, &pg, why, sizeof(why)))
		r = vmm_failf(e, -EPROTO, "pages section at offset %" PRIu64 ": %s", sec->offset,
			      why);
	if (r)
		goto out;
	for (uint32_t i = 0, d = 0; i < pg.n; i++) {
		kinds[i] = pg.kinds[i];
		if (kinds[i] == PC_DATA)
			memcpy(buf + (uint64_t)i * PC_PAGE, pg.data + (uint64_t)d++ * PC_PAGE,
			       PC_PAGE);
	}
	r = vmras_lazy_supply(vm->ras, pg.gpa, (uint64_t)pg.n * PC_PAGE, buf, kinds);
	if (r == -EBUSY) {
		memset(kinds, VMRAS_PAGE_POISONED, pg.n);
		fprintf(stderr, "vmras run: post-copy: the huge page at 0x%" PRIx64 " arrived with "
			"a bad 4 KiB page after the guest ran: all %u KiB of it are lost\n",
			pg.gpa, pg.n * 4);
		r = vmras_lazy_supply(vm->ras, pg.gpa, (uint64_t)pg.n * PC_PAGE, NULL, kinds);
		pthread_mutex_lock(&pc->lock);
		pc->lost_huge++;
		pthread_mutex_unlock(&pc->lock);
	}
	if (r) {
		r = vmm_fail(e, r, "place guest pages 0x%" PRIx64 "-0x%" PRIx64, pg.gpa,
			     pg.gpa + (uint64_t)pg.n * PC_PAGE - 1);
		goto out;
	}
	pthread_mutex_lock(&pc->lock);
	for (uint64_t k = pg.gpa / PC_PAGE; k < pg.gpa / PC_PAGE + pg.n; k++)
		pc->here[k / 64] |= 1ULL << (k % 64);
	pthread_mutex_unlock(&pc->lock);
out:
	free(p);
	return r;
}

/*
 * The source has sent every page: all of them should be here. Any that
 * is not (a supply that failed) is asked for again; else the source
 * hears that it may let go.
 */
static int rx_end(struct postcopy_in *pc, struct mig_stream *s, bool *done,
		  struct vmm_error *e)
{
	uint64_t gp = pc->g.granule / PC_PAGE, missing = 0;
	int r = 0;

	for (uint64_t p = 0; p < pc->npages && !r; p += gp) {
		bool here;

		pthread_mutex_lock(&pc->lock);
		here = page_here(pc, p);
		pthread_mutex_unlock(&pc->lock);
		if (!here) {
			missing++;
			r = pc_fetch(pc, p * PC_PAGE, pc->g.granule, false);
		}
	}
	if (r)
		return vmm_fail(e, r, "ask for the pages still missing after the end");
	*done = !missing;
	if (missing)
		return 0;
	r = vmras_lazy_wait(pc->vm->ras, 10000);
	if (r && r != -ENOENT)
		return vmm_fail(e, r, "wait for the last pages to be placed");
	(void)s;
	return postcopy_in_result(pc->vm, 0, "every page is here", e);
}

static void *rx_thread(void *arg)
{
	struct postcopy_in *pc = arg;
	struct vmm *vm = pc->vm;
	struct vmm_error e = { "" };
	struct mig_stream *s;
	unsigned char *buf = malloc(PC_MAX_PAGES * PC_PAGE);
	bool done = false;
	int r = buf ? 0 : vmm_fail(&e, -ENOMEM, "allocate the post-copy buffer");

	pthread_mutex_lock(&pc->lock);
	s = pc->s;
	pthread_mutex_unlock(&pc->lock);
	while (!r && !done) {
		struct mig_section sec;

		r = mig_read_header(s, rx_max, &sec, &e);
		if (r == -ENODATA)
			r = vmm_failf(&e, -ECONNRESET, "the source closed the connection");
		if (r)
			break;
		switch (sec.type) {
		case SEC_PAGES:
			r = rx_pages(pc, s, &sec, buf, &e);
			break;
		case SEC_GO:
			r = sec.len ? vmm_failf(&e, -EPROTO, "a go section with a payload")
				    : mig_read_end(s, &sec, &e);
			pthread_mutex_lock(&pc->lock);
			if (!r && pc->state == PC_WAIT_GO)
				pc->state = PC_RUNNING;
			else if (!r)
				r = vmm_failf(&e, -EPROTO, "a second go section");
			pthread_cond_broadcast(&pc->cond);
			pthread_mutex_unlock(&pc->lock);
			break;
		case SEC_PC_END:
			r = sec.len ? vmm_failf(&e, -EPROTO, "a pc-end section with a payload")
				    : mig_read_end(s, &sec, &e);
			if (!r)
				r = rx_end(pc, s, &done, &e);
			break;
		default:
			r = vmm_failf(&e, -EPROTO, "section %u at offset %" PRIu64 " during "
				      "post-copy", sec.type, sec.offset);
		}
	}
	free(buf);
	pthread_mutex_lock(&pc->lock);
	if (done) {
		pc->state = PC_DONE;
	} else if (pc->state == PC_WAIT_GO || pc->stopping) {
		pc->state = pc->state == PC_WAIT_GO ? PC_FAILED : pc->state;
		snprintf(pc->why, sizeof(pc->why), "%s", e.msg);
	} else {
		pc->state = PC_PAUSED;
		snprintf(pc->why, sizeof(pc->why), "%s", e.msg);
	}
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	if (done) {
		migration_set_status(vm, MIG_COMPLETED, NULL);
		vmm_wake_main(vm);	/* a reset that waited for the memory */
	} else if (!pc->stopping && r) {
		char why[sizeof(e.msg) + 64];

		pthread_mutex_lock(&pc->lock);
		bool paused = pc->state == PC_PAUSED;
		pthread_mutex_unlock(&pc->lock);
		if (paused) {
			snprintf(why, sizeof(why), "post-copy paused: %s", e.msg);
			fprintf(stderr, "vmras run: %s (migrate-recover carries on)\n", why);
			migration_set_status(vm, MIG_POSTCOPY_PAUSED, why);
		}
	}
	return NULL;
}

static int start_rx(struct postcopy_in *pc, struct vmm_error *e)
{
	int r = -pthread_create(&pc->rx, NULL, rx_thread, pc);

	if (r)
		return vmm_fail(e, r, "start the post-copy receiver");
	pc->rx_started = true;
	return 0;
}

/* ---- begin, the handover -------------------------------------------------- */

int postcopy_in_begin(struct vmm *vm, struct mig_stream *s, const uint64_t *here,
		      struct vmm_error *e)
{
	static const struct vmras_lazy_source src = { .fetch = pc_fetch, .prefetch = false };
	struct postcopy_in *pc = calloc(1, sizeof(*pc));
	uint64_t words = (vm->ram.size / PC_PAGE + 63) / 64;
	int r;

	if (!pc || !(pc->here = malloc(words * 8))) {
		free(pc);
		return vmm_fail(e, -ENOMEM, "allocate post-copy's state");
	}
	pc->vm = vm;
	pc->g = (struct pc_guest){ vm->ram.size, vm->ram.page_size };
	pc->npages = vm->ram.size / PC_PAGE;
	memcpy(pc->here, here, words * 8);
	/* A huge page counts as here only if all of it is (so lazy memory keeps it). */
	for (uint64_t p = 0, gp = pc->g.granule / PC_PAGE; gp > 1 && p < pc->npages; p += gp)
		for (uint64_t k = p; k < p + gp; k += 64)
			if (pc->here[k / 64] != ~0ULL) {
				for (k = p; k < p + gp; k += 64)
					pc->here[k / 64] = 0;
				break;
			}
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	atomic_init(&pc->cancel, false);
	pc->s = s;
	pc->state = PC_WAIT_GO;
	r = vmras_lazy_begin_partial(vm->ras, &src, pc, pc->here, pc->npages);
	if (r) {
		pthread_mutex_destroy(&pc->lock);
		pthread_cond_destroy(&pc->cond);
		free(pc->here);
		free(pc);
		return vmm_fail(e, r, "make the pages still to come lazy%s", r == -EOPNOTSUPP ?
				" (this host's userfaultfd cannot serve KVM's faults, or a backing "
				"it cannot serve)" : "");
	}
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.pc_in = pc;
	pthread_mutex_unlock(&vm->mig.lock);
	migration_set_status(vm, MIG_POSTCOPY_ACTIVE, NULL);
	pthread_mutex_lock(&pc->lock);
	r = start_rx(pc, e);
	pthread_mutex_unlock(&pc->lock);
	return r;
}

static struct postcopy_in *pc_of(struct vmm *vm)
{
	struct postcopy_in *pc;

	pthread_mutex_lock(&vm->mig.lock);
	pc = vm->mig.pc_in;
	pthread_mutex_unlock(&vm->mig.lock);
	return pc;
}

int postcopy_in_result(struct vmm *vm, int status, const char *msg, struct vmm_error *e)
{
	struct postcopy_in *pc = pc_of(vm);
	unsigned char buf[4 + 320];
	size_t n = strlen(msg) < 320 ? strlen(msg) : 320;
	int r;

	buf[0] = (unsigned char)status;
	buf[1] = (unsigned char)((unsigned int)status >> 8);
	buf[2] = (unsigned char)((unsigned int)status >> 16);
	buf[3] = (unsigned char)((unsigned int)status >> 24);
	memcpy(buf + 4, msg, n);
	pthread_mutex_lock(&pc->lock);
	r = pc->s ? mig_send_small(pc->s, SEC_RESULT, 0, buf, (uint32_t)(4 + n)) : -ENOTCONN;
	/* A full socket: the source reads on; a short wait, never a lost answer. */
	for (int tries = 0; r == -EAGAIN && tries < 1000; tries++) {
		pthread_mutex_unlock(&pc->lock);
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		pthread_mutex_lock(&pc->lock);
		r = pc->s ? mig_send_small(pc->s, SEC_RESULT, 0, buf, (uint32_t)(4 + n))
			  : -ENOTCONN;
	}
	pthread_mutex_unlock(&pc->lock);
	return r ? vmm_fail(e, r, "answer the source") : 0;
}

int postcopy_in_wait_go(struct vmm *vm, struct vmm_error *e)
{
	struct postcopy_in *pc = pc_of(vm);
	int r = 0;

	pthread_mutex_lock(&pc->lock);
	while (pc->state == PC_WAIT_GO)
		pthread_cond_wait(&pc->cond, &pc->lock);
	if (pc->state == PC_FAILED)
		r = vmm_failf(e, -ECONNABORTED, "the source did not hand the guest over (%s): "
			      "not running it here", pc->why);
	pthread_mutex_unlock(&pc->lock);
	return r;
}

bool postcopy_in_active(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);
	bool on;

	if (!pc)
		return false;
	pthread_mutex_lock(&pc->lock);
	on = pc->state != PC_DONE && pc->state != PC_FAILED;
	pthread_mutex_unlock(&pc->lock);
	return on;
}

/* ---- recovery ------------------------------------------------------------- */

/* The pages still missing, whole backing pages, as a recover section's payload. */
static unsigned char *missing_map(struct postcopy_in *pc, size_t *len)
{
	uint64_t words = (pc->npages + 63) / 64, *miss = calloc(words, 8);
	unsigned char *map = malloc(pc_bitmap_bytes(pc->npages));

	if (!miss || !map) {
		free(miss);
		free(map);
		return NULL;
	}
	pthread_mutex_lock(&pc->lock);
	for (uint64_t w = 0; w < words; w++)
		miss[w] = ~pc->here[w];
	pthread_mutex_unlock(&pc->lock);
	if (pc->npages % 64)
		miss[words - 1] &= (1ULL << (pc->npages % 64)) - 1;
	pc_bitmap_encode(miss, pc->npages, map);
	free(miss);
	*len = pc_bitmap_bytes(pc->npages);
	return map;
}

static void *rec_thread(void *arg)
{
	struct postcopy_in *pc = arg;
	struct vmm *vm = pc->vm;
	struct vmm_error e = { "" };
	struct mig_stream *s = NULL;
	unsigned char *map = NULL;
	size_t len = 0;
	int r;

	/* The old receiver has ended (paused): its stream is dead. */
	pthread_mutex_lock(&pc->lock);
	bool join = pc->rx_started;

	pc->rx_started = false;
	pthread_mutex_unlock(&pc->lock);
	if (join)
		pthread_join(pc->rx, NULL);
	r = mig_open_incoming(pc->rec_uri, -1, &pc->cancel, &s, &e);
	if (!r) {
		map = missing_map(pc, &len);
		r = map ? 0 : vmm_fail(&e, -ENOMEM, "allocate the missing-page map");
	}
	/* The new connection's first words: what is still missing (no other writer yet). */
	if (!r)
		r = mig_write_section(s, SEC_RECOVER, 0, map, len, &e) ?: mig_flush(s, &e);
	free(map);
	pthread_mutex_lock(&pc->lock);
	if (!r && !pc->stopping) {
		if (pc->s) {
			mig_close(pc->old);
			pc->old = pc->s;
		}
		pc->s = s;
		s = NULL;
		pc->state = PC_RUNNING;
		r = start_rx(pc, &e);
	} else if (!r) {
		r = vmm_failf(&e, -ECANCELED, "quit");
	}
	if (r && pc->state == PC_RECOVERING)
		pc->state = PC_PAUSED;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	mig_close(s);
	if (!r) {
		migration_set_status(vm, MIG_POSTCOPY_ACTIVE, "");
		/* Requests that went down with the old connection: asked again. */
		vmras_lazy_retry(vm->ras);
	} else if (!pc->stopping) {
		fprintf(stderr, "vmras run: post-copy recovery failed: %s\n", e.msg);
		migration_set_status(vm, MIG_POSTCOPY_PAUSED, e.msg);
	}
	return NULL;
}

int postcopy_in_recover(struct vmm *vm, const char *uri, struct vmm_error *e)
{
	struct postcopy_in *pc = pc_of(vm);
	int r;

	r = mig_uri_check(uri, e);
	if (r)
		return r;
	if (!strncmp(uri, "file:", 5))
		return vmm_failf(e, -EINVAL, "post-copy recovers over a socket (tcp: or unix:)");
	if (strlen(uri) >= sizeof(pc->rec_uri))
		return vmm_failf(e, -ENAMETOOLONG, "migration URI too long");
	if (!pc)
		return vmm_failf(e, -EINVAL, "no post-copy migration arrives here");
	pthread_mutex_lock(&pc->lock);
	if (pc->state != PC_PAUSED || pc->stopping) {
		r = vmm_failf(e, -EINVAL, "post-copy is not paused here");
		pthread_mutex_unlock(&pc->lock);
		return r;
	}
	if (pc->rec_started) {
		pc->rec_started = false;
		pthread_mutex_unlock(&pc->lock);
		pthread_join(pc->rec, NULL);
		pthread_mutex_lock(&pc->lock);
	}
	snprintf(pc->rec_uri, sizeof(pc->rec_uri), "%s", uri);
	pc->state = PC_RECOVERING;
	r = -pthread_create(&pc->rec, NULL, rec_thread, pc);
	pc->rec_started = !r;
	if (r)
		pc->state = PC_PAUSED;
	pthread_mutex_unlock(&pc->lock);
	if (r)
		return vmm_fail(e, r, "start the post-copy recovery");
	migration_set_status(vm, MIG_POSTCOPY_RECOVER, NULL);
	return 0;
}

/* ---- the end -------------------------------------------------------------- */

void postcopy_in_cancel(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);

	if (!pc)
		return;
	pthread_mutex_lock(&pc->lock);
	pc->stopping = true;
	atomic_store(&pc->cancel, true);
	if (pc->s)
		mig_cancel(pc->s);
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
}

void postcopy_in_quit(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);
	bool lost;

	if (!pc)
		return;
	postcopy_in_cancel(vm);
	pthread_mutex_lock(&pc->lock);
	lost = pc->state != PC_DONE;
	pthread_mutex_unlock(&pc->lock);
	/* What never arrived is poisoned, so the vCPUs waiting for it can stop. */
	if (lost && vmras_lazy_abandon(vm->ras))
		fprintf(stderr, "vmras run: post-copy: could not release the pages that never "
			"arrived\n");
}

struct postcopy_in *postcopy_in_stop(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);
	bool rx, rec;

	if (!pc)
		return NULL;
	postcopy_in_cancel(vm);
	pthread_mutex_lock(&pc->lock);
	rec = pc->rec_started;
	pc->rec_started = false;
	pthread_mutex_unlock(&pc->lock);
	if (rec)
		pthread_join(pc->rec, NULL);
	/* After the recovery: it may have started a receiver. */
	pthread_mutex_lock(&pc->lock);
	rx = pc->rx_started;
	pc->rx_started = false;
	pthread_mutex_unlock(&pc->lock);
	if (rx)
		pthread_join(pc->rx, NULL);
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.pc_in = NULL;
	pthread_mutex_unlock(&vm->mig.lock);
	return pc;
}

void postcopy_in_free(struct postcopy_in *pc)
{
	if (!pc)
		return;
	mig_close(pc->s);
	mig_close(pc->old);
	pthread_mutex_destroy(&pc->lock);
	pthread_cond_destroy(&pc->cond);
	free(pc->here);
	free(pc);
}
