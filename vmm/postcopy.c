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

	unsigned char header[PC_HEADER_BYTES];	/* the stream's: a resume must match it */
	/* Taken alone, before pc->lock: status events leave in the order of the states. */
	pthread_mutex_t status_lock;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t cond;	/* state changes, senders leaving */
	enum pc_state state;
	struct mig_stream *s;	/* the connection; NULL while paused */
	struct mig_stream *pending;	/* a recovery's, until it is the connection */
	unsigned int senders;	/* threads sending on s without the lock */
	bool rx_started, rec_started, stopping;
	pthread_t rx, rec;
	atomic_bool cancel;	/* a quit or a pause: the recovery's accept stops */
	char why[400];		/* why it failed or paused */
	char rec_uri[256];
	uint64_t *here;		/* pages supplied (or here from pre-copy) */
	uint64_t requests;
};

static bool page_here(const struct postcopy_in *pc, uint64_t p)
{
	return pc->here[p / 64] & (1ULL << (p % 64));
}

/* ---- sending: page requests and answers, from any thread ----------------- */

/* The status this side reports for its state (events in order: status_lock). */
static void publish(struct postcopy_in *pc)
{
	static const enum mig_status of[] = {
		[PC_WAIT_GO] = MIG_POSTCOPY_ACTIVE, [PC_RUNNING] = MIG_POSTCOPY_ACTIVE,
		[PC_PAUSED] = MIG_POSTCOPY_PAUSED, [PC_RECOVERING] = MIG_POSTCOPY_RECOVER,
		[PC_DONE] = MIG_COMPLETED, [PC_FAILED] = MIG_FAILED,
	};
	enum pc_state st;
	char why[sizeof(pc->why)];
	bool stopping;

	pthread_mutex_lock(&pc->status_lock);
	pthread_mutex_lock(&pc->lock);
	st = pc->state;
	stopping = pc->stopping;
	memcpy(why, pc->why, sizeof(why));
	pthread_mutex_unlock(&pc->lock);
	/* Stopping: QMP may be gone. */
	if (!stopping)
		migration_set_status(pc->vm, of[st], st == PC_PAUSED || st == PC_FAILED ? why : "");
	pthread_mutex_unlock(&pc->status_lock);
}

/*
 * A small section on the connection, without pc->lock held across the
 * send (a frame begun may wait for room; the receiver must not wait for
 * it). -ENOTCONN while there is none; -EAGAIN: no room now.
 */
static int pc_send(struct postcopy_in *pc, uint32_t type, const void *payload, uint32_t len)
{
	struct mig_stream *s = NULL;
	int r;

	pthread_mutex_lock(&pc->lock);
	if (pc->s && !pc->stopping && (pc->state == PC_RUNNING || pc->state == PC_WAIT_GO)) {
		s = pc->s;
		pc->senders++;
	}
	pthread_mutex_unlock(&pc->lock);
	if (!s)
		return -ENOTCONN;
	r = mig_send_small(s, type, 0, payload, len);
	pthread_mutex_lock(&pc->lock);
	if (!--pc->senders)
		pthread_cond_broadcast(&pc->cond);
	if (!r && type == SEC_PAGE_REQ)
		pc->requests++;
	pthread_mutex_unlock(&pc->lock);
	return r;
}

/* lazy memory's fetch: a page request from the thread that needs the page. */
static int pc_fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	unsigned char req[PC_REQ_BYTES];

	pc_req_encode(req, gpa, len, urgent ? PC_REQ_URGENT : 0);
	return pc_send(opaque, SEC_PAGE_REQ, req, sizeof(req));
}

static bool stopping(struct postcopy_in *pc)
{
	bool st;

	pthread_mutex_lock(&pc->lock);
	st = pc->stopping;
	pthread_mutex_unlock(&pc->lock);
	return st;
}

/* ---- the receiver --------------------------------------------------------- */

static uint64_t rx_max(uint32_t type)
{
	return type == SEC_GO ? 1 : type == SEC_HEADER ? PC_HEADER_BYTES : pc_section_max(type);
}

/* A pages section: unpacked and supplied. */
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
	/* A huge page with a bad 4 KiB page after the vCPUs ran: the library loses it whole. */
	r = vmras_lazy_supply(vm->ras, pg.gpa, (uint64_t)pg.n * PC_PAGE, buf, kinds);
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
/* Requests rx_end sends at most at a time: they fit any socket's buffer. */
#define END_ASK_MAX 64

/*
 * The source has sent every page: all of them should be here. Any that
 * is not (a supply that failed) is asked for again, a few at a time (this
 * thread must go back to reading the answers: a full socket each way
 * would stop both sides); the source ends again once it has answered.
 * Else the source hears that it may let go.
 */
static int rx_end(struct postcopy_in *pc, bool *done, struct vmm_error *e)
{
	uint64_t gp = pc->g.granule / PC_PAGE, missing = 0, asked = 0;
	int r = 0;

	for (uint64_t p = 0; p < pc->npages && asked < END_ASK_MAX; p += gp) {
		bool here;

		pthread_mutex_lock(&pc->lock);
		here = page_here(pc, p);
		pthread_mutex_unlock(&pc->lock);
		if (here)
			continue;
		missing++;
		/* No room: the source is writing; what was asked gets another end. */
		for (int t = 0; t < 1000 && !stopping(pc); t++) {
			r = pc_fetch(pc, p * PC_PAGE, pc->g.granule, false);
			if (r != -EAGAIN || asked)
				break;
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
		if (r == -EAGAIN && asked)
			break;
		if (r)
			return vmm_fail(e, r, "ask for the pages still missing after the end");
		asked++;
	}
	*done = !missing;
	if (missing)
		return 0;
	/* Supplied is placed: this returns at once, or when a quit stops waiting. */
	for (int i = 0; i < 100 && !stopping(pc); i++) {
		r = vmras_lazy_wait(pc->vm->ras, 100);
		if (r != -ETIMEDOUT)
			break;
	}
	if (r && r != -ENOENT)
		return vmm_fail(e, r, "wait for the last pages to be placed");
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
			pthread_mutex_lock(&pc->lock);
			r = pc->state != PC_RUNNING
				? vmm_failf(&e, -EPROTO, "a pc-end section before the handover") : 0;
			pthread_mutex_unlock(&pc->lock);
			r = r ?: sec.len ? vmm_failf(&e, -EPROTO, "a pc-end section with a payload")
					 : mig_read_end(s, &sec, &e);
			if (!r)
				r = rx_end(pc, &done, &e);
			break;
		default:
			r = vmm_failf(&e, -EPROTO, "section %u at offset %" PRIu64 " during "
				      "post-copy", sec.type, sec.offset);
		}
	}
	free(buf);
	/* The source must see it too, and pause: a stream that failed here is dead. */
	if (!done)
		mig_cancel(s);
	pthread_mutex_lock(&pc->lock);
	if (done) {
		pc->state = PC_DONE;
	} else if (pc->state == PC_WAIT_GO) {
		pc->state = PC_FAILED;
		snprintf(pc->why, sizeof(pc->why), "%s", e.msg);
	} else if (!pc->stopping) {
		pc->state = PC_PAUSED;
		snprintf(pc->why, sizeof(pc->why), "post-copy paused: %s", e.msg);
		fprintf(stderr, "vmras run: post-copy paused: %s (migrate-recover carries on)\n",
			e.msg);
	}
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	publish(pc);
	if (done)
		vmm_wake_main(vm);	/* a reset that waited for the memory */
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

int postcopy_in_begin(struct vmm *vm, struct mig_stream *s, const unsigned char *header,
		      const uint64_t *here, struct vmm_error *e)
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
	memcpy(pc->header, header, PC_HEADER_BYTES);
	pthread_mutex_init(&pc->status_lock, NULL);
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	atomic_init(&pc->cancel, false);
	pc->s = s;
	pc->state = PC_WAIT_GO;
	r = vmras_lazy_begin_partial(vm->ras, &src, pc, pc->here, pc->npages);
	if (r) {
		pthread_mutex_destroy(&pc->status_lock);
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
	publish(pc);
	pthread_mutex_lock(&pc->lock);
	r = start_rx(pc, e);
	/* The stream stays the caller's (it closes it); the guest does not run here. */
	if (r) {
		/* A fault may be sending on it already: out of the way before the caller closes it. */
		mig_cancel(s);
		while (pc->senders)
			pthread_cond_wait(&pc->cond, &pc->lock);
		pc->s = NULL;
		pc->state = PC_FAILED;
		snprintf(pc->why, sizeof(pc->why), "%s", e->msg);
	}
	pthread_mutex_unlock(&pc->lock);
	if (r)
		publish(pc);
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
	/* A full socket: the source reads on; a short wait, never a lost answer. */
	while ((r = pc_send(pc, SEC_RESULT, buf, (uint32_t)(4 + n))) == -EAGAIN &&
	       !stopping(pc))
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
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

/* The resuming source's first words: the stream's own header, or it is another VM's. */
static int check_resumer(struct postcopy_in *pc, struct mig_stream *s, struct vmm_error *e)
{
	struct mig_section sec;
	unsigned char *p = NULL;
	int r = mig_read_header(s, rx_max, &sec, e);

	if (!r && (sec.type != SEC_HEADER || sec.len != PC_HEADER_BYTES))
		r = vmm_failf(e, -EPROTO, "the resuming peer did not start with the stream's header");
	if (!r)
		r = mig_read_payload(s, &sec, (void **)&p, e);
	if (!r && memcmp(p, pc->header, PC_HEADER_BYTES))
		r = vmm_failf(e, -EPROTO, "the resuming peer is not this guest's source (its "
			      "header differs)");
	free(p);
	return r;
}

static void *rec_thread(void *arg)
{
	struct postcopy_in *pc = arg;
	struct vmm *vm = pc->vm;
	struct vmm_error e = { "" };
	struct mig_stream *s = NULL, *old = NULL;
	unsigned char *map = NULL;
	size_t len = 0;
	bool join;
	int r;

	/* The old receiver has ended (paused): its stream is dead. */
	pthread_mutex_lock(&pc->lock);
	join = pc->rx_started;
	pc->rx_started = false;
	pthread_mutex_unlock(&pc->lock);
	if (join)
		pthread_join(pc->rx, NULL);
	r = mig_open_incoming(pc->rec_uri, -1, &pc->cancel, &s, &e);
	if (!r) {
		/* Published, so that a quit can cancel what follows. */
		pthread_mutex_lock(&pc->lock);
		pc->pending = s;
		if (pc->stopping)
			mig_cancel(s);
		pthread_mutex_unlock(&pc->lock);
		mig_set_section_names(s, NULL, 0);
		r = check_resumer(pc, s, &e);
	}
	if (!r) {
		map = missing_map(pc, &len);
		r = map ? 0 : vmm_fail(&e, -ENOMEM, "allocate the missing-page map");
	}
	/* The new connection's first words: what is still missing (no other writer yet). */
	if (!r)
		r = mig_write_section(s, SEC_RECOVER, 0, map, len, &e) ?: mig_flush(s, &e);
	free(map);
	pthread_mutex_lock(&pc->lock);
	pc->pending = NULL;
	/* Senders on the old stream fail at once (it was cancelled): wait them out. */
	while (pc->senders)
		pthread_cond_wait(&pc->cond, &pc->lock);
	if (!r && pc->stopping)
		r = vmm_failf(&e, -ECANCELED, "quit");
	if (!r) {
		old = pc->s;
		pc->s = s;
		s = NULL;
		pc->state = PC_RUNNING;
		r = start_rx(pc, &e);
		if (r) {
			s = pc->s;
			pc->s = NULL;
		}
	}
	if (r && !pc->stopping) {
		pc->state = PC_PAUSED;
		snprintf(pc->why, sizeof(pc->why), "post-copy recovery failed: %s", e.msg);
	}
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	mig_close(old);
	mig_close(s);
	if (r && !stopping(pc))
		fprintf(stderr, "vmras run: post-copy recovery failed: %s\n", e.msg);
	publish(pc);
	/* Requests that went down with the old connection: asked again. */
	if (!r)
		vmras_lazy_retry(vm->ras);
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
	atomic_store(&pc->cancel, false);	/* a pause of the last attempt is over */
	pthread_mutex_unlock(&pc->lock);
	publish(pc);
	pthread_mutex_lock(&pc->lock);
	r = pc->stopping ? -ESHUTDOWN : -pthread_create(&pc->rec, NULL, rec_thread, pc);
	pc->rec_started = !r;
	if (r)
		pc->state = PC_PAUSED;
	pthread_mutex_unlock(&pc->lock);
	if (r) {
		publish(pc);
		return vmm_fail(e, r, "start the post-copy recovery");
	}
	return 0;
}

int postcopy_in_pause(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);
	int r = -ENOENT;

	if (!pc)
		return r;
	pthread_mutex_lock(&pc->lock);
	if (pc->state == PC_RUNNING && pc->s) {
		mig_cancel(pc->s);	/* the receiver sees a dead connection: paused */
		r = 0;
	} else if (pc->state == PC_RECOVERING) {
		/* A recovery that waits for a peer that does not come: back to paused. */
		atomic_store(&pc->cancel, true);
		if (pc->pending)
			mig_cancel(pc->pending);
		r = 0;
	}
	pthread_mutex_unlock(&pc->lock);
	return r;
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
	if (pc->pending)
		mig_cancel(pc->pending);
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
}

bool postcopy_in_quit(struct vmm *vm)
{
	struct postcopy_in *pc = pc_of(vm);
	bool lost;

	if (!pc)
		return false;
	postcopy_in_cancel(vm);
	pthread_mutex_lock(&pc->lock);
	lost = pc->state != PC_DONE;
	pthread_mutex_unlock(&pc->lock);
	/* What never arrived is poisoned, so the vCPUs waiting for it can stop. */
	if (lost && vmras_lazy_abandon(vm->ras))
		fprintf(stderr, "vmras run: post-copy: could not release the pages that never "
			"arrived\n");
	return lost;
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
	pthread_mutex_destroy(&pc->status_lock);
	pthread_mutex_destroy(&pc->lock);
	pthread_cond_destroy(&pc->cond);
	free(pc->here);
	free(pc);
}
