// SPDX-License-Identifier: GPL-2.0-or-later
/* Live migration and snapshots (see migration.h, docs/migration.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "lazy_image.h"
#include "util/crc32c.h"
#include "mig_sections.h"
#include "mig_stream.h"
#include "migration.h"
#include "postcopy.h"
#include "postcopy_proto.h"
#include "vmm_internal.h"
#include "vmras/lazy.h"
#include "vmras/migrate.h"
#include "vmras/registry.h"
#include "ram_proto.h"
#include "x86_state.h"

#define PAGE 4096ULL
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23	/* Linux 5.14 */
#endif
#define MAX_ITERATIONS 30	/* then stop and send the rest whatever its size */
#define DOWNTIME_DEFAULT_MS 300
/* A destination that refused the stream reads on this long for the source to see why. */
#define DRAIN_MS 10000
/* END's flags: the state the guest was in when it left. */
#define END_USER_STOPPED 1u

static const char *const section_names[SEC_COUNT] = {
	[SEC_HEADER] = "header", [SEC_RAM] = "ram", [SEC_RAM_IMAGE] = "ram-image",
	[SEC_RAS] = "ras", [SEC_VCPU] = "vcpu", [SEC_GUEST] = "guest", [SEC_END] = "end",
	[SEC_RESULT] = "result", [SEC_GO] = "go", [SEC_POSTCOPY] = "postcopy",
	[SEC_PAGES] = "pages", [SEC_PAGE_REQ] = "page-req", [SEC_PC_END] = "pc-end",
	[SEC_RECOVER] = "recover",
};

#define HEADER_BYTES 64

static const char *const status_names[] = {
	[MIG_NONE] = "none", [MIG_SETUP] = "setup", [MIG_ACTIVE] = "active",
	[MIG_DEVICE] = "device", [MIG_POSTCOPY_ACTIVE] = "postcopy-active",
	[MIG_POSTCOPY_PAUSED] = "postcopy-paused", [MIG_POSTCOPY_RECOVER] = "postcopy-recover",
	[MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
	[MIG_CANCELLED] = "cancelled",
};

static uint64_t section_max(uint32_t type)
{
	switch (type) {
	case SEC_HEADER: return HEADER_BYTES;
	case SEC_RAM: return 8 + RAM_BATCH * (8 + PAGE);
	case SEC_RAM_IMAGE: return 1ULL << 40;	/* read in pieces, checked against the header */
	case SEC_RAS: return 64ULL << 20;
	case SEC_VCPU: return 1 << 20;
	case SEC_GUEST: return 1 << 20;
	case SEC_END: return 4;	/* u32 flags */
	case SEC_RESULT: return 4 + 320;
	case SEC_GO: return 1;	/* empty; 1 so that the type is known */
	default: return pc_section_max(type);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void put(unsigned char *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get(const unsigned char *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ---- status ------------------------------------------------------------ */

static void emit_status(struct vmm *vm, enum mig_status st, const char *error)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "status", json_object_new_string(status_names[st]));
	if (error && error[0])
		json_object_object_add(d, "error-desc", json_object_new_string(error));
	vmm_emit(vm, "MIGRATION", d);
}

/* The status as it is now (a thread's end), with its error. */
static void emit_current_status(struct vmm *vm)
{
	enum mig_status st;
	char why[sizeof(vm->mig.error)];

	pthread_mutex_lock(&vm->mig.lock);
	st = vm->mig.status;
	memcpy(why, vm->mig.error, sizeof(why));
	pthread_mutex_unlock(&vm->mig.lock);
	emit_status(vm, st, why);
}

/* The migration thread's own progress (setup was said by migration_start). */
static void set_status(struct vmm *vm, enum mig_status st)
{
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.status = st;
	pthread_mutex_unlock(&vm->mig.lock);
	emit_status(vm, st, NULL);
}

static void add(struct vmm *vm, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&vm->mig.lock);
	*field += n;
	pthread_mutex_unlock(&vm->mig.lock);
}

int migration_init(struct vmm *vm, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;

	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->params.downtime_limit_ms = DOWNTIME_DEFAULT_MS;
	m->npages = vm->ram.size / PAGE;
	m->vmm_dirty = calloc((m->npages + 63) / 64, sizeof(uint64_t));
	if (!m->vmm_dirty)
		return vmm_fail(e, -ENOMEM, "allocate the migration dirty bitmap");
	/* Arriving from before QMP listens: nothing may act on the guest yet. */
	if (vm->cfg.incoming) {
		m->incoming = true;
		vm->frozen = true;
	}
	return 0;
}

void migration_destroy(struct vmm *vm)
{
	migration_stop(vm);
	free(vm->mig.vmm_dirty);
	vm->mig.vmm_dirty = NULL;
	free(vm->mig.pc_bm);	/* a paused post-copy's, never resumed */
	vm->mig.pc_bm = NULL;
	pthread_cond_destroy(&vm->mig.cond);
	pthread_mutex_destroy(&vm->mig.lock);
}

void migration_dirty(struct vmm *vm, uint64_t gpa, uint64_t len)
{
	struct vmm_migration *m = &vm->mig;

	if (!m->vmm_dirty || !len)
		return;
	for (uint64_t p = gpa / PAGE; p <= (gpa + len - 1) / PAGE && p < m->npages; p++)
		__atomic_fetch_or(&m->vmm_dirty[p / 64], 1ULL << (p % 64), __ATOMIC_SEQ_CST);
}

bool migration_incoming_active(struct vmm *vm)
{
	bool in;

	pthread_mutex_lock(&vm->mig.lock);
	in = vm->mig.incoming;
	pthread_mutex_unlock(&vm->mig.lock);
	return in;
}

/* While it loads, the guest is frozen: no reset, no VMM write, no migrate. */
static void set_incoming(struct vmm *vm, bool on)
{
	pthread_mutex_lock(&vm->lock);
	vm->frozen = on;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.incoming = on;
	pthread_mutex_unlock(&vm->mig.lock);
}

static void set_in_stream(struct vmm *vm, struct mig_stream *s)
{
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.in_stream = s;
	if (s && atomic_load(&vm->mig.cancel_flag))
		mig_cancel(s);
	pthread_mutex_unlock(&vm->mig.lock);
}

void migration_incoming_cancel(struct vmm *vm)
{
	pthread_mutex_lock(&vm->mig.lock);
	atomic_store(&vm->mig.cancel_flag, true);
	if (vm->mig.in_stream)
		mig_cancel(vm->mig.in_stream);
	pthread_mutex_unlock(&vm->mig.lock);
}

bool migration_handed_over(struct vmm *vm)
{
	bool h;

	pthread_mutex_lock(&vm->mig.lock);
	h = vm->mig.handed_over;
	pthread_mutex_unlock(&vm->mig.lock);
	return h;
}

/*
 * Lazy memory's numbers: QEMU's postcopy statistics (blocktime in ms,
 * latency in ns, its distribution by power-of-two microseconds) and ours.
 */
static void add_lazy(struct vmm *vm, json_object *o)
{
	struct vmras_lazy_stats st;
	uint64_t ns[64];
	json_object *l, *dist, *per;
	unsigned int n = vm->cfg.nr_vcpus < 64 ? vm->cfg.nr_vcpus : 64;

	if (vmras_lazy_get_stats(vm->ras, &st) || vmras_lazy_vcpu_blocktime(vm->ras, ns, n))
		return;
	l = json_object_new_object();
	dist = json_object_new_array();
	per = json_object_new_array();
	json_object_object_add(l, "complete", json_object_new_boolean(st.complete));
	json_object_object_add(l, "pages-total", json_object_new_uint64(st.pages_total));
	json_object_object_add(l, "pages-present", json_object_new_uint64(st.pages_present));
	json_object_object_add(l, "faulted", json_object_new_uint64(st.faulted));
	json_object_object_add(l, "prefetched", json_object_new_uint64(st.prefetched));
	json_object_object_add(l, "zero-pages", json_object_new_uint64(st.zero_pages));
	json_object_object_add(l, "poisoned-pages", json_object_new_uint64(st.poisoned_pages));
	json_object_object_add(l, "refaults", json_object_new_uint64(st.refaults));
	json_object_object_add(l, "memory-fault-exits", json_object_new_uint64(st.memfault_exits));
	json_object_object_add(l, "fetch-errors", json_object_new_uint64(st.fetch_errors));
	json_object_object_add(l, "bad-image-pages",
			       json_object_new_uint64(lazy_image_bad_pages(vm->lazy_image)));
	if (st.complete_ns)
		json_object_object_add(l, "load-time-us",
				       json_object_new_uint64((st.complete_ns - st.begin_ns) / 1000));
	json_object_object_add(l, "first-fault-before-complete",
			       json_object_new_boolean(st.first_fault_ns &&
						       (!st.complete_ns ||
							st.first_fault_ns < st.complete_ns)));
	json_object_object_add(o, "lazy", l);
	json_object_object_add(o, "postcopy-blocktime",
			       json_object_new_uint64(st.blocktime_ns / 1000000));
	for (unsigned int i = 0; i < n; i++)
		json_object_array_add(per, json_object_new_uint64(ns[i] / 1000000));
	json_object_object_add(o, "postcopy-vcpu-blocktime", per);
	json_object_object_add(o, "postcopy-latency", json_object_new_uint64(st.latency_ns));
	for (unsigned int i = 0; i < VMRAS_LAZY_LATENCY_BUCKETS; i++)
		json_object_array_add(dist, json_object_new_uint64(st.latency_dist[i]));
	json_object_object_add(o, "postcopy-latency-dist", dist);
}

json_object *migration_query(struct vmm *vm)
{
	struct vmm_migration *m = &vm->mig;
	json_object *o = json_object_new_object(), *ram = json_object_new_object();

	add_lazy(vm, o);
	pthread_mutex_lock(&m->lock);
	/* Destination: how long the stream took before the vCPUs could start. */
	if (m->incoming_us) {
		json_object_object_add(o, "incoming-time",
				       json_object_new_uint64(m->incoming_us / 1000));
		json_object_object_add(o, "incoming-time-us", json_object_new_uint64(m->incoming_us));
	}
	if (m->status != MIG_NONE)
		json_object_object_add(o, "status", json_object_new_string(status_names[m->status]));
	/* The destination of a post-copy has a status but sent nothing. */
	if (m->status == MIG_NONE || !m->ram_total) {
		if (m->error[0])
			json_object_object_add(o, "error-desc", json_object_new_string(m->error));
		pthread_mutex_unlock(&m->lock);
		json_object_put(ram);
		return o;
	}
	json_object_object_add(ram, "total", json_object_new_uint64(m->ram_total));
	json_object_object_add(ram, "transferred", json_object_new_uint64(m->transferred));
	json_object_object_add(ram, "remaining", json_object_new_uint64(m->remaining));
	/* QEMU's names: normal pages went as data, duplicate ones as "zero". */
	json_object_object_add(ram, "normal",
			       json_object_new_uint64(m->pages - m->poisoned - m->zero_pages));
	json_object_object_add(ram, "normal-bytes", json_object_new_uint64(m->data_bytes));
	json_object_object_add(ram, "duplicate", json_object_new_uint64(m->zero_pages));
	json_object_object_add(ram, "poisoned-pages", json_object_new_uint64(m->poisoned));
	json_object_object_add(ram, "dirty-sync-count", json_object_new_uint64(m->dirty_syncs));
	json_object_object_add(ram, "iterations", json_object_new_uint64(m->iterations));
	json_object_object_add(ram, "postcopy-requests", json_object_new_uint64(m->pc_requests));
	json_object_object_add(ram, "postcopy-bytes", json_object_new_uint64(m->pc_bytes));
	json_object_object_add(o, "ram", ram);
	json_object_object_add(o, "setup-time", json_object_new_uint64(m->setup_ms));
	if (m->status == MIG_COMPLETED)
		json_object_object_add(o, "downtime", json_object_new_uint64(m->downtime_ms));
	if (m->status >= MIG_COMPLETED) {
		json_object_object_add(o, "total-time", json_object_new_uint64(m->total_ms));
	} else {
		json_object_object_add(o, "total-time",
				       json_object_new_uint64((now_ns() - m->start_ns) / 1000000));
	}
	if (m->error[0])
		json_object_object_add(o, "error-desc", json_object_new_string(m->error));
	pthread_mutex_unlock(&m->lock);
	return o;
}

int migration_set_params(struct vmm *vm, const struct migration_params *p,
			 struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;

	/* QEMU's bounds: 2000 s; a bandwidth SIZE_MAX/1 s would overflow nothing here. */
	if (p->downtime_limit_ms != UINT64_MAX && p->downtime_limit_ms > 2000000)
		return vmm_failf(e, -EINVAL, "downtime-limit must be at most 2000000 ms");
	if (p->max_bandwidth != UINT64_MAX && p->max_bandwidth && p->max_bandwidth < 4096)
		return vmm_failf(e, -EINVAL, "max-bandwidth must be 0 (no limit) or at least "
				 "4096 bytes/s");
	if (p->max_postcopy_bandwidth != UINT64_MAX && p->max_postcopy_bandwidth &&
	    p->max_postcopy_bandwidth < 4096)
		return vmm_failf(e, -EINVAL, "max-postcopy-bandwidth must be 0 (no limit) or at "
				 "least 4096 bytes/s");
	pthread_mutex_lock(&m->lock);
	if (p->downtime_limit_ms != UINT64_MAX)
		m->params.downtime_limit_ms = p->downtime_limit_ms;
	if (p->max_bandwidth != UINT64_MAX) {
		m->params.max_bandwidth = p->max_bandwidth;
		m->window_ns = 0;	/* a new rate starts a new window */
	}
	if (p->max_postcopy_bandwidth != UINT64_MAX)
		m->params.max_postcopy_bandwidth = p->max_postcopy_bandwidth;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void migration_get_params(struct vmm *vm, struct migration_params *p)
{
	pthread_mutex_lock(&vm->mig.lock);
	*p = vm->mig.params;
	pthread_mutex_unlock(&vm->mig.lock);
}

/* ---- the machine header ------------------------------------------------ */

static void header_make(struct vmm *vm, unsigned char *h)
{
	memset(h, 0, HEADER_BYTES);
	put(h, vm->ram.size, 8);
	put(h + 8, vm->cfg.nr_vcpus, 4);
	put(h + 12, vm->ram.page_size, 8);
	put(h + 20, vm->x86.mcg_cap, 8);
	memcpy(h + 28, vm->x86.vendor_id, 12);
	put(h + 40, vm->cfg.seed, 8);
	put(h + 48, vm->cfg.passes, 4);
	put(h + 52, vm->cfg.sample, 4);
	/* This migration's: a post-copy resume proves with it that it is the same one. */
	put(h + 56, vm->mig.mig_id, 8);
}

static int header_check(struct vmm *vm, const unsigned char *h, uint64_t len,
			struct vmm_error *e)
{
	uint64_t mem, mcg;
	char vendor[13] = { 0 };

	if (len != HEADER_BYTES)
		return vmm_failf(e, -EPROTO, "stream header is %" PRIu64 " bytes, not %d", len,
				 HEADER_BYTES);
	mem = get(h, 8);
	mcg = get(h + 20, 8);
	memcpy(vendor, h + 28, 12);
	for (int i = 0; i < 12; i++)
		if (vendor[i] < 0x20 || vendor[i] > 0x7e)
			return vmm_failf(e, -EPROTO, "stream header's CPU vendor is not text");
	if (mem != vm->ram.size)
		return vmm_failf(e, -EINVAL, "the stream's guest has %" PRIu64 " MiB of RAM, "
				 "this VM %" PRIu64 " MiB (give --mem %" PRIu64 "M)",
				 mem >> 20, vm->ram.size >> 20, mem >> 20);
	if (get(h + 8, 4) != vm->cfg.nr_vcpus)
		return vmm_failf(e, -EINVAL, "the stream's guest has %u vCPUs, this VM %u",
				 (unsigned int)get(h + 8, 4), vm->cfg.nr_vcpus);
	if (strcmp(vendor, vm->x86.vendor_id))
		return vmm_failf(e, -EINVAL, "the stream's guest is a %s CPU, this VM's a %s one "
				 "(--cpu-vendor)", vendor, vm->x86.vendor_id);
	if (mcg != vm->x86.mcg_cap)
		return vmm_failf(e, -EINVAL, "the stream's MCG_CAP is 0x%" PRIx64 ", this VM's "
				 "0x%" PRIx64, mcg, vm->x86.mcg_cap);
	if (get(h + 40, 8) != vm->cfg.seed || get(h + 48, 4) != vm->cfg.passes ||
	    get(h + 52, 4) != vm->cfg.sample)
		return vmm_failf(e, -EINVAL, "the stream's test guest has another --seed, "
				 "--passes or --sample");
	return 0;
}

/* ---- source ------------------------------------------------------------ */

static int dirty_log(struct vmm *vm, bool on, struct vmm_error *e)
{
	int r = ram_set_memslot(&vm->ram, vm->vm_fd, on ? KVM_MEM_LOG_DIRTY_PAGES : 0, e);

	if (r)
		return r;
	vm->mig.logging = on;
	return 0;
}

/* OR KVM's dirty log (which it clears) and the VMM's own writes into bm. */
static int dirty_collect(struct vmm *vm, uint64_t *bm, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	size_t words = (m->npages + 63) / 64;
	uint64_t *kvm = calloc(words, sizeof(*kvm));
	struct kvm_dirty_log log = { .slot = 0 };
	long r;

	if (!kvm)
		return vmm_fail(e, -ENOMEM, "allocate a dirty bitmap");
	log.dirty_bitmap = kvm;
	r = kabi_ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log);
	if (r < 0) {
		free(kvm);
		return vmm_fail(e, (int)r, "KVM_GET_DIRTY_LOG");
	}
	for (size_t i = 0; i < words; i++)
		bm[i] |= kvm[i] | __atomic_exchange_n(&m->vmm_dirty[i], 0, __ATOMIC_SEQ_CST);
	free(kvm);
	add(vm, &m->dirty_syncs, 1);
	return 0;
}

static uint64_t count_bits(const uint64_t *bm, uint64_t npages)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (npages + 63) / 64; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

static bool all_zero(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* One page, read safely: PG_DATA (into buf), PG_ZERO or PG_POISONED. */
static int read_page(struct vmm *vm, uint64_t gpa, unsigned char *buf, struct vmm_error *e)
{
	int r = vmras_copy_from_guest(vm->ras, buf, gpa, PAGE);

	if (r == -EHWPOISON)
		return PG_POISONED;
	if (r)
		return vmm_fail(e, r, "read guest page 0x%" PRIx64, gpa);
	return all_zero(buf) ? PG_ZERO : PG_DATA;
}

/*
 * Keep to max-bandwidth while the guest runs: sleep until the bytes sent
 * in this one-second window are due. Cancel and a new rate wake it.
 */
static void throttle(struct vmm *vm, struct mig_stream *s)
{
	struct vmm_migration *m = &vm->mig;

	pthread_mutex_lock(&m->lock);
	while (m->params.max_bandwidth && !m->cancel && !atomic_load(&m->postcopy_start)) {
		uint64_t now = now_ns(), due;
		struct timespec ts;

		if (!m->window_ns || now - m->window_ns >= 1000000000ULL) {
			m->window_ns = now;
			m->window_bytes = mig_bytes(s);
		}
		due = m->window_ns + (uint64_t)((double)(mig_bytes(s) - m->window_bytes) * 1e9 /
						 (double)m->params.max_bandwidth);
		if (due <= now)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)((due - now) / 1000000000ULL);
		ts.tv_nsec += (long)((due - now) % 1000000000ULL);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
}

static int read_result(struct mig_stream *s, struct vmm_error *e);

static int mig_open_outgoing_file(const char *path, struct mig_stream **s, struct vmm_error *e)
{
	char uri[sizeof(((struct vmm_migration *)0)->uri) + 24];

	snprintf(uri, sizeof(uri), "file:%s", path);
	return mig_open_outgoing(uri, NULL, s, e);
}

/* The snapshot is whole: on disk, then under its name (and that on disk). */
static int commit_file(struct mig_stream *s, const char *partial, const char *path,
		       struct vmm_error *e)
{
	char dir[sizeof(((struct vmm_migration *)0)->uri)];
	char *slash;
	int r = mig_sync(s, e), fd;

	if (r)
		return r;
	if (rename(partial, path) < 0)
		return vmm_fail(e, -errno, "rename %s to %s", partial, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	/*
	 * The new snapshot has replaced the old one: a directory that cannot be
	 * synced does not make it a failure (best effort, as for any rename).
	 */
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

/* How many pages from p on are set in bm, up to max. */
static unsigned int dirty_run(const uint64_t *bm, uint64_t p, uint64_t npages, unsigned int max)
{
	unsigned int n = 0;

	while (n < max && p + n < npages && (bm[(p + n) / 64] & (1ULL << ((p + n) % 64))))
		n++;
	return n;
}

/*
 * Pages [p, p + n) into data (page i at data + i pages), safely, in one
 * copy; a page the copy meets bad is marked so in kinds, and the pages on
 * either side go again (the bad page is never touched twice).
 */
static int read_range(struct vmm *vm, uint64_t p, uint64_t n, unsigned char *data,
		      unsigned char *kinds, struct vmm_error *e)
{
	while (n) {
		uint64_t bad = 0, b;
		int r = vmras_copy_from_guest_at(vm->ras, data, p * PAGE, n * PAGE, &bad);

		if (!r) {
			for (uint64_t i = 0; i < n; i++)
				kinds[i] = all_zero(data + i * PAGE) ? PG_ZERO : PG_DATA;
			return 0;
		}
		b = bad / PAGE - p;
		if (r != -EHWPOISON || bad / PAGE < p || b >= n)
			return vmm_fail(e, r == -EHWPOISON ? -EIO : r, "read guest pages 0x%" PRIx64
					"-0x%" PRIx64, (uint64_t)(p * PAGE),
					(uint64_t)((p + n) * PAGE - 1));
		kinds[b] = PG_POISONED;
		r = read_range(vm, p, b, data, kinds, e);
		if (r)
			return r;
		p += b + 1;
		data += (b + 1) * PAGE;
		kinds += b + 1;
		n -= b + 1;
	}
	return 0;
}

/*
 * Pages [p, p + run) read safely into data, the data pages packed at its
 * front; their list words into words. Returns how many data pages.
 */
static int read_run(struct vmm *vm, uint64_t p, unsigned int run, unsigned char *data,
		    unsigned char *words, unsigned int *npoison, unsigned int *nzero,
		    struct vmm_error *e)
{
	unsigned char kinds[RAM_BATCH];
	unsigned int ndata = 0;
	int r = read_range(vm, p, run, data, kinds, e);

	if (r)
		return r;
	for (unsigned int i = 0; i < run; i++) {
		if (kinds[i] == PG_DATA && ndata != i)
			memmove(data + ndata * PAGE, data + i * PAGE, PAGE);
		put(words + i * 8, (p + i) * PAGE | kinds[i], 8);
		ndata += kinds[i] == PG_DATA;
		*npoison += kinds[i] == PG_POISONED;
		*nzero += kinds[i] == PG_ZERO;
	}
	return (int)ndata;
}

/*
 * Send the pages set in bm as RAM sections (and clear them); with
 * throttle, at max-bandwidth. A destination that speaks before the end
 * has refused the stream: say why.
 */
static int send_pages(struct vmm *vm, struct mig_stream *s, uint64_t *bm, bool throttled,
		      struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	unsigned char *list = malloc(8 + RAM_BATCH * 8), *data = malloc(RAM_BATCH * PAGE);
	uint64_t p = 0;
	int r = 0;

	if (!list || !data) {
		r = vmm_fail(e, -ENOMEM, "allocate a RAM section");
		goto out;
	}
	while (!r && p < m->npages) {
		unsigned int n = 0, npoison = 0, nzero = 0, datapages = 0;

		while (p < m->npages && n < RAM_BATCH) {
			unsigned int run;

			if (!bm[p / 64]) {
				p = (p / 64 + 1) * 64;
				continue;
			}
			run = dirty_run(bm, p, m->npages, RAM_BATCH - n);
			if (!run) {
				p++;
				continue;
			}
			r = read_run(vm, p, run, data + datapages * PAGE, list + 8 + n * 8, &npoison,
				     &nzero, e);
			if (r < 0)
				break;
			datapages += (unsigned int)r;
			r = 0;
			for (unsigned int i = 0; i < run; i++, p++)
				bm[p / 64] &= ~(1ULL << (p % 64));
			n += run;
		}
		if (r || !n)
			break;
		put(list, n, 4);
		put(list + 4, 0, 4);
		r = mig_section_begin(s, SEC_RAM, 0, 8 + n * 8 + (uint64_t)datapages * PAGE, e) ?:
		    mig_section_data(s, list, 8 + n * 8, e) ?:
		    mig_section_data(s, data, (size_t)datapages * PAGE, e) ?: mig_section_end(s, e);
		pthread_mutex_lock(&m->lock);
		if (!r) {
			m->pages += n;
			m->poisoned += npoison;
			m->zero_pages += nzero;
			m->data_bytes += (uint64_t)datapages * PAGE;
			m->remaining -= m->remaining < n * PAGE ? m->remaining : n * PAGE;
		}
		m->transferred = mig_bytes(s);
		pthread_mutex_unlock(&m->lock);
		if (!r && mig_input_pending(s) && !(r = read_result(s, e)))
			r = vmm_failf(e, -EPROTO, "the destination answered before the end of "
				      "the stream");
		if (!r && throttled)
			throttle(vm, s);
		/* migrate-start-postcopy: the rest goes after the switch. */
		if (throttled && atomic_load(&m->postcopy_start))
			break;
	}
out:
	free(list);
	free(data);
	return r;
}

/*
 * file: every page at a fixed offset: {u64 npages, u64 data_offset (from
 * the stream's start)} + one byte per page + zeros up to data_offset (a
 * multiple of 4096) + every page (zeros for zero and poisoned pages), so
 * a lazy restore can serve a page with one pread.
 */
static int send_image(struct vmm *vm, struct mig_stream *s, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	uint64_t head = RAM_IMAGE_HEAD(m->npages), start, data_off, pad, len;
	unsigned char *map = calloc(1, head), *page = malloc(PAGE), zero[256] = { 0 };
	unsigned char *kinds = map + 24, *crcs = kinds + m->npages;
	int r;

	if (!map || !page) {
		free(map);
		free(page);
		return vmm_fail(e, -ENOMEM, "allocate the RAM image map");
	}
	for (uint64_t p = 0; p < m->npages; p++) {
		r = read_page(vm, p * PAGE, page, e);
		if (r < 0)
			goto out;
		kinds[p] = (unsigned char)r;
		/* The VM is stopped: the page is the same when it is written below. */
		put(crcs + p * 4, r == PG_DATA ? vr_crc32c(0, page, PAGE) : 0, 4);
	}
	/* The section header is 24 bytes; its payload starts after it. */
	start = mig_out_offset(s) + 24;
	data_off = (start + head + PAGE - 1) & ~(PAGE - 1);
	pad = data_off - start - head;
	len = head + pad + m->npages * PAGE;
	put(map, m->npages, 8);
	put(map + 8, data_off, 8);
	put(map + 16, vr_crc32c(0, kinds, m->npages), 4);
	r = mig_section_begin(s, SEC_RAM_IMAGE, 0, len, e) ?: mig_section_data(s, map, head, e);
	for (uint64_t k = 0; !r && k < pad; k += sizeof(zero))
		r = mig_section_data(s, zero, pad - k < sizeof(zero) ? pad - k : sizeof(zero), e);
	for (uint64_t p = 0; !r && p < m->npages; p++) {
		int kind = kinds[p];

		if (kind == PG_DATA) {
			int now = read_page(vm, p * PAGE, page, e);

			/* The VM is stopped: only a new memory error changes a page now. */
			if (now == PG_POISONED)
				now = vmm_failf(e, -EIO, "guest page 0x%" PRIx64 " went bad during "
						"the snapshot", (uint64_t)(p * PAGE));
			r = now < 0 ? now : 0;
		} else {
			memset(page, 0, PAGE);
		}
		if (!r)
			r = mig_section_data(s, page, PAGE, e);
		pthread_mutex_lock(&m->lock);
		if (!r) {
			m->pages++;
			m->poisoned += kind == PG_POISONED;
			m->zero_pages += kind == PG_ZERO;
			m->data_bytes += kind == PG_DATA ? PAGE : 0;
			m->remaining -= m->remaining < PAGE ? m->remaining : PAGE;
		}
		m->transferred = mig_bytes(s);
		pthread_mutex_unlock(&m->lock);
	}
	if (!r)
		r = mig_section_end(s, e);
out:
	free(map);
	free(page);
	return r;
}

static int send_devices(struct vmm *vm, struct mig_stream *s, struct vmm_error *e)
{
	unsigned char flags[4];
	void *buf = NULL;
	size_t len = 0;
	int r;

	r = vmras_migration_save(vm->ras, &buf, &len);
	if (r)
		return vmm_fail(e, r, "save libvmras's state");
	r = mig_write_section(s, SEC_RAS, 0, buf, len, e);
	free(buf);
	for (unsigned int i = 0; !r && i < vm->cfg.nr_vcpus; i++) {
		r = x86_state_save(&vm->x86, vm->vcpus[i].fd, &buf, &len, e);
		if (!r)
			r = mig_write_section(s, SEC_VCPU, i, buf, len, e);
		free(buf);
		buf = NULL;
	}
	if (r)
		return r;
	pthread_mutex_lock(&vm->lock);
	len = report_save(&vm->report, NULL);
	buf = malloc(len + 8);
	if (buf) {
		put(buf, vm->boot_count, 8);
		report_save(&vm->report, (unsigned char *)buf + 8);
	}
	pthread_mutex_unlock(&vm->lock);
	if (!buf)
		return vmm_fail(e, -ENOMEM, "save the guest report");
	r = mig_write_section(s, SEC_GUEST, 0, buf, len + 8, e);
	free(buf);
	if (r)
		return r;
	pthread_mutex_lock(&vm->lock);
	put(flags, vm->user_stopped ? END_USER_STOPPED : 0, 4);
	pthread_mutex_unlock(&vm->lock);
	return mig_write_section(s, SEC_END, 0, flags, sizeof(flags), e);
}

/* The destination's verdict in a result section whose header was read. */
static int result_of(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e)
{
	unsigned char *p = NULL;
	int r = 0;

	if (sec->type != SEC_RESULT)
		r = vmm_failf(e, -EPROTO, "the destination answered with section %u, not a result",
			      sec->type);
	if (!r && sec->len < 4)
		r = vmm_failf(e, -EPROTO, "the destination's result is %" PRIu64 " bytes", sec->len);
	if (!r)
		r = mig_read_payload(s, sec, (void **)&p, e);
	if (!r && get(p, 4)) {
		int len = (int)(sec->len - 4);

		r = vmm_failf(e, -EREMOTEIO, "the destination refused: %.*s", len, p + 4);
	}
	free(p);
	return r;
}

/* The destination's verdict: 0 once it has everything and runs the guest. */
static int read_result(struct mig_stream *s, struct vmm_error *e)
{
	struct mig_section sec;
	int r = mig_read_header(s, section_max, &sec, e);

	if (r == -ENODATA)
		r = vmm_failf(e, -ECONNRESET, "the destination closed the connection without an "
			      "answer");
	return r ? r : result_of(s, &sec, e);
}

/* ---- post-copy, source ------------------------------------------------- */

/* Pages per backing page: post-copy sends whole ones. */
static uint64_t granule_pages(struct vmm *vm)
{
	return vm->ram.page_size / PAGE;
}

/* Every backing page with a bit in bm gets all its bits. */
static void round_to_granules(struct vmm *vm, uint64_t *bm)
{
	uint64_t gp = granule_pages(vm), npages = vm->mig.npages;

	if (gp <= 1)
		return;
	for (uint64_t p = 0; p < npages; p += gp) {
		bool any = false;

		for (uint64_t k = p; k < p + gp && !any; k += 64)
			any = bm[k / 64] != 0;
		for (uint64_t k = p; any && k < p + gp; k += 64)
			bm[k / 64] = ~0ULL;
	}
}

/*
 * Pages [p, p + n) as one pages section (n whole backing pages, at most
 * PC_MAX_PAGES), read safely: a bad page goes as poisoned, never as data.
 */
static int pc_send_pages(struct vmm *vm, struct mig_stream *s, uint64_t *bm, uint64_t p,
			 uint32_t n, unsigned char *data, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	unsigned char head[PC_PAGES_HEAD], kinds[PC_MAX_PAGES];
	uint32_t ndata = 0, npoison = 0, nzero = 0;
	int r = read_range(vm, p, n, data, kinds, e);

	if (r)
		return r;
	for (uint32_t i = 0; i < n; i++) {
		if (kinds[i] == PG_DATA && ndata != i)
			memmove(data + (uint64_t)ndata * PAGE, data + (uint64_t)i * PAGE, PAGE);
		ndata += kinds[i] == PG_DATA;
		npoison += kinds[i] == PG_POISONED;
		nzero += kinds[i] == PG_ZERO;
	}
	pc_pages_head(head, p * PAGE, n);
	r = mig_section_begin(s, SEC_PAGES, 0, PC_PAGES_HEAD + n + (uint64_t)ndata * PAGE, e) ?:
	    mig_section_data(s, head, sizeof(head), e) ?: mig_section_data(s, kinds, n, e) ?:
	    mig_section_data(s, data, (size_t)ndata * PAGE, e) ?: mig_section_end(s, e);
	if (r)
		return r;
	for (uint64_t k = p; k < p + n; k++)
		bm[k / 64] &= ~(1ULL << (k % 64));
	pthread_mutex_lock(&m->lock);
	m->pages += n;
	m->poisoned += npoison;
	m->zero_pages += nzero;
	m->data_bytes += (uint64_t)ndata * PAGE;
	m->pc_bytes += (uint64_t)ndata * PAGE;
	m->remaining = count_bits(bm, m->npages) * PAGE;
	m->transferred = m->resumed_bytes + mig_bytes(s);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* A page request: its pages now (whether sent before or not: it waits). */
static int pc_serve_request(struct vmm *vm, struct mig_stream *s, uint64_t *bm,
			    const struct mig_section *sec, unsigned char *data, struct vmm_error *e)
{
	struct pc_guest g = { vm->ram.size, vm->ram.page_size };
	unsigned char *p = NULL;
	uint64_t gpa, len;
	uint32_t flags;
	char why[160];
	int r = mig_read_payload(s, sec, (void **)&p, e);

	if (!r && pc_req_parse(p, sec->len, &g, &gpa, &len, &flags, why, sizeof(why)))
		r = vmm_failf(e, -EPROTO, "page request at offset %" PRIu64 ": %s", sec->offset, why);
	free(p);
	if (r)
		return r;
	add(vm, &vm->mig.pc_requests, 1);
	for (uint64_t off = 0; !r && off < len; off += PC_MAX_PAGES * PAGE) {
		uint64_t n = (len - off) / PAGE < PC_MAX_PAGES ? (len - off) / PAGE : PC_MAX_PAGES;

		r = pc_send_pages(vm, s, bm, (gpa + off) / PAGE, (uint32_t)n, data, e);
	}
	return r ?: mig_flush(s, e);
}

/* The next pages to send in the background: a run of up to 64 (or one huge page). */
static bool pc_next(struct vmm *vm, const uint64_t *bm, uint64_t *cursor, uint64_t *p,
		    uint32_t *n)
{
	struct vmm_migration *m = &vm->mig;
	uint64_t gp = granule_pages(vm), max = gp > 64 ? gp : 64;

	for (uint64_t q = *cursor; q < m->npages; q = (q / 64 + 1) * 64) {
		uint64_t w = bm[q / 64] >> (q % 64);

		if (!w)
			continue;
		q += (uint64_t)__builtin_ctzll(w);
		q -= q % gp;
		*p = q;
		*n = 0;
		while (*n < max && q + *n < m->npages &&
		       (bm[(q + *n) / 64] & (1ULL << ((q + *n) % 64))))
			*n += (uint32_t)gp;
		*cursor = q + *n;
		return true;
	}
	return false;
}

/* How long the background pages must wait to keep to max-postcopy-bandwidth (ms, at most 50). */
static int pc_pace_ms(struct vmm *vm, struct mig_stream *s, uint64_t t0, uint64_t b0)
{
	uint64_t rate, due, now = now_ns();

	pthread_mutex_lock(&vm->mig.lock);
	rate = vm->mig.params.max_postcopy_bandwidth;
	pthread_mutex_unlock(&vm->mig.lock);
	if (!rate)
		return 0;
	due = t0 + (uint64_t)((double)(mig_bytes(s) - b0) * 1e9 / (double)rate);
	if (due <= now)
		return 0;
	return (due - now) / 1000000 >= 50 ? 50 : (int)((due - now) / 1000000) + 1;
}

/*
 * The source's half of post-copy, its vCPUs stopped for good: serve the
 * destination's page requests first, send the other pages in order
 * between them. until_result: return at the destination's first result
 * (its "ready": the handover follows); else send everything, say so
 * (pc-end) and return at its last result (every page is there). A
 * request after pc-end is served too, and a recover section (pages the
 * destination still lacks) sends them again.
 */
static int pc_serve(struct vmm *vm, struct mig_stream *s, uint64_t *bm, bool until_result,
		    struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	unsigned char *data = malloc(PC_MAX_PAGES * PAGE);
	uint64_t cursor = 0, p = 0, t0 = now_ns(), b0 = mig_bytes(s);
	uint32_t n = 0;
	bool end_sent = false;
	int r = data ? 0 : vmm_fail(e, -ENOMEM, "allocate a post-copy buffer");

	while (!r) {
		struct mig_section sec;
		bool more = !end_sent && pc_next(vm, bm, &cursor, &p, &n);
		int wait_ms = pc_pace_ms(vm, s, t0, b0);

		/* Nothing left to send: wait for what the destination says (its requests first). */
		if (!more && !until_result && !end_sent && !mig_input_pending(s)) {
			r = mig_write_section(s, SEC_PC_END, 0, NULL, 0, e) ?: mig_flush(s, e);
			end_sent = true;
			continue;
		}
		/* max-postcopy-bandwidth: the background waits; requests do not. */
		if (more && wait_ms && !mig_input_wait(s, wait_ms)) {
			cursor = p;
			continue;
		}
		if (more && !mig_input_pending(s)) {
			r = pc_send_pages(vm, s, bm, p, n, data, e);
			continue;
		}
		if (more)
			cursor = p;	/* not sent yet: the next round */
		r = mig_read_header(s, section_max, &sec, e);
		if (r == -ENODATA)
			r = vmm_failf(e, -ECONNRESET, "the destination closed the connection");
		if (r)
			break;
		if (sec.type == SEC_PAGE_REQ) {
			r = pc_serve_request(vm, s, bm, &sec, data, e);
			/* Asked again after the end (a page it could not place): end again. */
			end_sent = false;
		} else if (sec.type == SEC_RESULT) {
			r = result_of(s, &sec, e);
			if (until_result || end_sent || r)
				break;
			r = vmm_failf(e, -EPROTO, "the destination said it had every page before "
				      "they were all sent");
		} else {
			r = vmm_failf(e, -EPROTO, "the destination sent %s section at offset %"
				      PRIu64 " during post-copy", sec.type < SEC_COUNT &&
				      section_names[sec.type] ? section_names[sec.type] : "an unknown",
				      sec.offset);
		}
	}
	free(data);
	pthread_mutex_lock(&m->lock);
	m->transferred = m->resumed_bytes + mig_bytes(s);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/*
 * The switch, vCPUs stopped and the dirty log collected into bm: tell the
 * destination which pages it must not use (bm, whole backing pages), and
 * send now the backing pages that hold a known bad page, so that the
 * destination splits them before its vCPUs run (after, a huge page with a
 * bad 4 KiB page would be lost whole).
 */
static int pc_switch(struct vmm *vm, struct mig_stream *s, uint64_t *bm, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	struct vmras_registry *reg = vmras_get_registry(vm->ras);
	size_t nbad = vmras_registry_snapshot(reg, NULL, 0), words = (m->npages + 63) / 64;
	struct vmras_poison *bad = calloc(nbad ? nbad : 1, sizeof(*bad));
	uint64_t *now = calloc(words, sizeof(uint64_t)), gp = granule_pages(vm);
	unsigned char *map = malloc(pc_bitmap_bytes(m->npages));
	int r = 0;

	if (!bad || !now || !map) {
		r = vmm_fail(e, -ENOMEM, "allocate the post-copy maps");
		goto out;
	}
	round_to_granules(vm, bm);
	/* It may grow meanwhile (the engine still runs): until the copy holds all. */
	for (;;) {
		size_t have = vmras_registry_snapshot(reg, bad, nbad);
		struct vmras_poison *more;

		if (have <= nbad) {
			nbad = have;
			break;
		}
		more = realloc(bad, have * sizeof(*bad));
		if (!more) {
			r = vmm_fail(e, -ENOMEM, "allocate the post-copy maps");
			goto out;
		}
		bad = more;
		nbad = have;
	}
	for (size_t i = 0; i < nbad; i++)
		for (uint64_t q = bad[i].gpa / PAGE; q < (bad[i].gpa + bad[i].size) / PAGE &&
		     q < m->npages; q++)
			if (bm[q / 64] & (1ULL << (q % 64)))
				for (uint64_t k = q - q % gp; k < q - q % gp + gp; k++)
					now[k / 64] |= 1ULL << (k % 64);
	for (size_t w = 0; w < words; w++)
		bm[w] &= ~now[w];
	pc_bitmap_encode(bm, m->npages, map);
	r = mig_write_section(s, SEC_POSTCOPY, 0, map, pc_bitmap_bytes(m->npages), e) ?:
	    send_pages(vm, s, now, false, e);
	pthread_mutex_lock(&m->lock);
	m->remaining = count_bits(bm, m->npages) * PAGE;
	pthread_mutex_unlock(&m->lock);
out:
	free(bad);
	free(now);
	free(map);
	return r;
}

static void *migration_thread(void *arg)
{
	struct vmm *vm = arg;
	struct vmm_migration *m = &vm->mig;
	struct mig_stream *s = NULL;
	struct vmm_error e = { "" };
	uint64_t *bm = calloc((m->npages + 63) / 64, sizeof(uint64_t));
	unsigned char header[HEADER_BYTES];
	char partial[sizeof(m->uri) + 16] = "";
	bool paused = false, file = false, handed_over, committed = false;
	uint64_t t_stop = 0, limit;
	int r;

	if (!bm) {
		r = vmm_fail(&e, -ENOMEM, "allocate the dirty bitmap");
		goto out;
	}
	/*
	 * A snapshot is written beside its path and renamed into place once it
	 * is whole and on disk: a failed one never replaces a good one.
	 */
	if (!strncmp(m->uri, "file:", 5))
		snprintf(partial, sizeof(partial), "%s.partial", m->uri + 5);
	r = partial[0] ? mig_open_outgoing_file(partial, &s, &e)
		       : mig_open_outgoing(m->uri, &m->cancel_flag, &s, &e);
	if (r)
		goto out;
	mig_set_section_names(s, section_names, SEC_COUNT);
	pthread_mutex_lock(&m->lock);
	m->stream = s;
	r = m->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&m->lock);
	if (r)
		goto out;
	file = mig_is_file(s);
	header_make(vm, header);
	r = mig_write_section(s, SEC_HEADER, 0, header, sizeof(header), &e);
	if (r)
		goto out;
	if (file) {
		/* A snapshot is of one moment: stop first. */
		r = vmm_freeze(vm, &e);
		if (r)
			goto done;
		paused = true;
		t_stop = now_ns();
		vmm_wait_idle(vm);
		set_status(vm, MIG_DEVICE);
		r = send_image(vm, s, &e) ?: send_devices(vm, s, &e);
		goto done;
	}
	r = dirty_log(vm, true, &e);
	for (uint64_t p = 0; !r && p < m->npages; p++)
		bm[p / 64] |= 1ULL << (p % 64);
	/* From here every write is in the log: the first pass sends everything. */
	if (!r)
		r = dirty_collect(vm, bm, &e);
	pthread_mutex_lock(&m->lock);
	m->setup_ms = (now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
	if (!r)
		set_status(vm, MIG_ACTIVE);
	for (unsigned int it = 0; !r; it++) {
		uint64_t t0 = now_ns(), b0 = mig_bytes(s), dirty, bw;

		r = send_pages(vm, s, bm, true, &e) ?: dirty_collect(vm, bm, &e);
		if (r)
			break;
		dirty = count_bits(bm, m->npages);
		/* bytes per ms this round (at least 1 MB/s: a round of nothing) */
		bw = (mig_bytes(s) - b0) / ((now_ns() - t0) / 1000000 + 1);
		bw = bw < 1000 ? 1000 : bw;
		pthread_mutex_lock(&m->lock);
		m->iterations++;
		m->remaining = dirty * PAGE;
		limit = m->params.downtime_limit_ms;
		pthread_mutex_unlock(&m->lock);
		if (dirty * PAGE <= bw * limit || it + 1 >= MAX_ITERATIONS ||
		    atomic_load(&m->postcopy_start))
			break;
	}
	if (r)
		goto done;
	r = vmm_freeze(vm, &e);
	if (r)
		goto done;
	paused = true;
	t_stop = now_ns();
	vmm_wait_idle(vm);
	pthread_mutex_lock(&m->lock);
	m->postcopy = atomic_load(&m->postcopy_start);
	pthread_mutex_unlock(&m->lock);
	set_status(vm, m->postcopy ? MIG_POSTCOPY_ACTIVE : MIG_DEVICE);
	r = dirty_collect(vm, bm, &e);
	if (!r) {
		pthread_mutex_lock(&m->lock);
		m->remaining = count_bits(bm, m->npages) * PAGE;
		pthread_mutex_unlock(&m->lock);
		r = m->postcopy ? pc_switch(vm, s, bm, &e) : send_pages(vm, s, bm, false, &e);
		r = r ?: send_devices(vm, s, &e);
	}
done:
	if (!r)
		r = file ? commit_file(s, partial, m->uri + 5, &e) : mig_flush(s, &e);
	committed = file && !r;
	if (!r && !file)
		r = m->postcopy ? pc_serve(vm, s, bm, true, &e) : read_result(s, &e);
	/*
	 * The handover: the destination has everything and waits for "go".
	 * From here the source never runs the guest again, and cancel is too
	 * late (it no longer shuts the stream). A "go" that does not arrive
	 * makes the destination exit without running it: the guest is then
	 * lost rather than run twice.
	 */
	if (!r && !file) {
		/* A reset the library asked for while frozen: the guest resets here instead. */
		pthread_mutex_lock(&vm->lock);
		if (vm->reset_requested)
			r = vmm_failf(&e, -EAGAIN, "the guest must be reset (%s): it stays here",
				      vm->reset_reason);
		pthread_mutex_lock(&m->lock);
		if (!r && m->cancel)
			r = -ECANCELED;
		else if (!r)
			m->handed_over = true;
		pthread_mutex_unlock(&m->lock);
		pthread_mutex_unlock(&vm->lock);
		if (!r && m->postcopy) {
			pthread_mutex_lock(&m->lock);
			m->downtime_ms = (now_ns() - t_stop) / 1000000;
			pthread_mutex_unlock(&m->lock);
		}
		if (!r)
			vmras_migration_handed_over(vm->ras);
		if (!r) {
			r = mig_write_section(s, SEC_GO, 0, NULL, 0, &e) ?: mig_flush(s, &e);
			pthread_mutex_lock(&m->lock);
			m->go_sent = !r;
			pthread_mutex_unlock(&m->lock);
			if (r) {
				char why[sizeof(e.msg)];

				memcpy(why, e.msg, sizeof(why));
				vmm_failf(&e, r, "the handover was not confirmed to the destination "
					  "(%s): it will not run the guest, and this side will "
					  "not either", why);
			}
		}
		/* Post-copy: the destination runs; the rest of RAM as it asks and in order. */
		if (!r && m->postcopy)
			r = pc_serve(vm, s, bm, false, &e);
	}
out:
	if (m->logging) {
		struct vmm_error e2;

		dirty_log(vm, false, &e2);
	}
	pthread_mutex_lock(&m->lock);
	m->stream = NULL;
	if (r && m->handed_over && m->postcopy && !m->closed) {
		/* The destination runs and waits for the rest: keep it for a resume. */
		m->status = MIG_POSTCOPY_PAUSED;
		snprintf(m->error, sizeof(m->error), "%s", e.msg);
		m->pc_bm = bm;
		bm = NULL;
	} else if (r && m->handed_over) {
		m->status = MIG_FAILED;
		snprintf(m->error, sizeof(m->error), "%s", e.msg);
	} else if (r == -ECANCELED || (r && m->cancel)) {
		m->status = MIG_CANCELLED;
		snprintf(m->error, sizeof(m->error), "cancelled");
	} else if (r) {
		m->status = MIG_FAILED;
		snprintf(m->error, sizeof(m->error), "%s", e.msg);
	} else {
		m->status = MIG_COMPLETED;
		m->remaining = 0;
		/* Post-copy: the destination ran from the handover on. */
		if (!m->postcopy)
			m->downtime_ms = (now_ns() - t_stop) / 1000000;
	}
	m->total_ms = (now_ns() - m->start_ns) / 1000000;
	if (s)
		m->transferred = mig_bytes(s);
	handed_over = m->handed_over;
	pthread_mutex_unlock(&m->lock);
	/* Only a partial file this run created and did not rename. */
	if (r && partial[0] && s && !committed)
		unlink(partial);
	mig_close(s);
	free(bm);
	/*
	 * Failed or cancelled before the handover: the guest runs on here.
	 * Moved: it stays stopped (and frozen) for good. A snapshot: stopped
	 * as if by the operator (QEMU's "postmigrate"), so that cont runs it.
	 */
	if (paused && !r && file)
		vmm_stop(vm);
	if (paused && !handed_over)
		vmm_thaw(vm);
	emit_current_status(vm);
	vmm_wake_main(vm);
	return NULL;
}

/*
 * A paused post-copy, carried on: connect, read which pages the
 * destination still lacks, and serve them as before.
 */
static void *resume_thread(void *arg)
{
	struct vmm *vm = arg;
	struct vmm_migration *m = &vm->mig;
	struct vmm_error e = { "" };
	struct mig_stream *s = NULL;
	struct mig_section sec;
	uint64_t *bm;
	unsigned char *p = NULL;
	char why[160];
	int r;

	pthread_mutex_lock(&m->lock);
	bm = m->pc_bm;
	m->pc_bm = NULL;
	m->resumed_bytes = m->transferred;	/* what the connections before sent */
	pthread_mutex_unlock(&m->lock);
	r = mig_open_outgoing(m->uri, &m->cancel_flag, &s, &e);
	if (!r) {
		mig_set_section_names(s, section_names, SEC_COUNT);
		pthread_mutex_lock(&m->lock);
		m->stream = s;
		r = m->closed ? vmm_failf(&e, -ECANCELED, "the VM is shutting down") : 0;
		pthread_mutex_unlock(&m->lock);
	}
	/* The stream's own header: the destination checks that we are its source. */
	if (!r) {
		unsigned char header[HEADER_BYTES];

		header_make(vm, header);
		r = mig_write_section(s, SEC_HEADER, 0, header, sizeof(header), &e) ?:
		    mig_flush(s, &e);
	}
	if (!r)
		r = mig_read_header(s, section_max, &sec, &e);
	if (!r && sec.type != SEC_RECOVER)
		r = vmm_failf(&e, -EPROTO, "the destination did not start the recovery with the "
			      "pages it lacks (section %u)", sec.type);
	if (!r)
		r = mig_read_payload(s, &sec, (void **)&p, &e);
	if (!r && pc_bitmap_parse(p, sec.len, m->npages, bm, why, sizeof(why)))
		r = vmm_failf(&e, -EPROTO, "recover section: %s", why);
	free(p);
	if (!r) {
		round_to_granules(vm, bm);
		set_status(vm, MIG_POSTCOPY_ACTIVE);
		r = pc_serve(vm, s, bm, false, &e);
	}
	pthread_mutex_lock(&m->lock);
	m->stream = NULL;
	if (!r) {
		m->status = MIG_COMPLETED;
		m->remaining = 0;
		m->error[0] = '\0';
	} else if (!m->closed) {
		m->status = MIG_POSTCOPY_PAUSED;
		m->pc_bm = bm;
		bm = NULL;
		snprintf(m->error, sizeof(m->error), "%s", e.msg);
	} else {
		m->status = MIG_FAILED;
		snprintf(m->error, sizeof(m->error), "%s", e.msg);
	}
	m->total_ms = (now_ns() - m->start_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
	mig_close(s);
	free(bm);
	emit_current_status(vm);
	vmm_wake_main(vm);
	return NULL;
}

static int migration_resume(struct vmm *vm, const char *uri, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	int r = 0;

	if (!strncmp(uri, "file:", 5))
		return vmm_failf(e, -EINVAL, "post-copy resumes over a socket (tcp: or unix:)");
	pthread_mutex_lock(&m->lock);
	if (m->closed || m->status != MIG_POSTCOPY_PAUSED || !m->pc_bm) {
		r = m->closed ? vmm_failf(e, -ESHUTDOWN, "the VM is shutting down")
			      : vmm_failf(e, -EINVAL, "resume: no post-copy migration is paused "
					  "here (status %s)", status_names[m->status]);
		pthread_mutex_unlock(&m->lock);
		return r;
	}
	if (m->thread_started) {
		m->thread_started = false;
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
		pthread_mutex_lock(&m->lock);
	}
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->status = MIG_POSTCOPY_RECOVER;
	pthread_mutex_unlock(&m->lock);
	emit_status(vm, MIG_POSTCOPY_RECOVER, NULL);
	pthread_mutex_lock(&m->lock);
	r = m->closed ? -ESHUTDOWN : -pthread_create(&m->thread, NULL, resume_thread, vm);
	m->thread_started = !r;
	if (r)
		m->status = MIG_POSTCOPY_PAUSED;
	pthread_mutex_unlock(&m->lock);
	if (r) {
		emit_status(vm, MIG_POSTCOPY_PAUSED, "the resume did not start");
		return vmm_fail(e, r, "start the migration thread");
	}
	return 0;
}

int migration_set_postcopy(struct vmm *vm, bool on, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	if (m->status == MIG_SETUP || m->status == MIG_ACTIVE || m->status == MIG_DEVICE ||
	    m->status == MIG_POSTCOPY_ACTIVE || m->status == MIG_POSTCOPY_PAUSED ||
	    m->status == MIG_POSTCOPY_RECOVER)
		r = vmm_failf(e, -EBUSY, "capabilities cannot change while a migration runs");
	else
		m->postcopy_ram = on;
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool migration_get_postcopy(struct vmm *vm)
{
	bool on;

	pthread_mutex_lock(&vm->mig.lock);
	on = vm->mig.postcopy_ram;
	pthread_mutex_unlock(&vm->mig.lock);
	return on;
}

int migration_start_postcopy(struct vmm *vm, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->postcopy_ram)
		r = vmm_failf(e, -EINVAL, "enable postcopy-ram with migrate-set-capabilities "
			      "before the migration starts");
	else if (m->status != MIG_SETUP && m->status != MIG_ACTIVE)
		r = vmm_failf(e, -EINVAL, "no pre-copy migration is running (status %s)",
			      status_names[m->status]);
	else if (!strncmp(m->uri, "file:", 5))
		r = vmm_failf(e, -EINVAL, "a snapshot (file:) has no post-copy");
	else if (vm->ram.size > (1ULL << 40))
		r = vmm_failf(e, -EOPNOTSUPP, "post-copy moves guests of at most 1 TiB");
	else if (vm->ram.page_size > PC_MAX_PAGES * PAGE)
		r = vmm_failf(e, -EOPNOTSUPP, "post-copy sends pages of at most 2 MiB; this "
			      "guest's are %" PRIu64 " MiB", vm->ram.page_size >> 20);
	if (!r) {
		atomic_store(&m->postcopy_start, true);
		pthread_cond_broadcast(&m->cond);	/* out of a throttle's sleep */
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

int migration_pause(struct vmm *vm, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	int r = 0;

	if (postcopy_in_pause(vm) == 0)
		return 0;
	pthread_mutex_lock(&m->lock);
	/* Not before "go" went out: a pause then would lose the guest on both sides. */
	if ((m->status != MIG_POSTCOPY_ACTIVE && m->status != MIG_POSTCOPY_RECOVER) ||
	    !m->go_sent || !m->stream)
		r = vmm_failf(e, -EINVAL, "no post-copy migration is running here (status %s)",
			      status_names[m->status]);
	else
		mig_cancel(m->stream);	/* the thread sees a dead connection: paused */
	pthread_mutex_unlock(&m->lock);
	return r;
}

void migration_set_status(struct vmm *vm, enum mig_status st, const char *error)
{
	pthread_mutex_lock(&vm->mig.lock);
	vm->mig.status = st;
	if (error)
		snprintf(vm->mig.error, sizeof(vm->mig.error), "%s", error);
	pthread_mutex_unlock(&vm->mig.lock);
	emit_status(vm, st, error);
}

int migration_start(struct vmm *vm, const char *uri, bool resume, struct vmm_error *e)
{
	struct vmm_migration *m = &vm->mig;
	int r = mig_uri_check(uri, e);

	if (r)
		return r;
	if (strlen(uri) >= sizeof(m->uri))
		return vmm_failf(e, -ENAMETOOLONG, "migration URI too long");
	if (resume)
		return migration_resume(vm, uri, e);
	if (vm->ram.backend == RAM_GUEST_MEMFD)
		return vmm_failf(e, -EOPNOTSUPP, "guest_memfd RAM cannot be migrated live: KVM logs no dirty pages for a guest_memfd memslot (Linux 6.18 refuses KVM_MEM_LOG_DIRTY_PAGES with KVM_MEM_GUEST_MEMFD); snapshots of it are not built yet");
	if (postcopy_in_active(vm))
		return vmm_failf(e, -EBUSY, "the guest's memory is still arriving (post-copy)");
	pthread_mutex_lock(&m->lock);
	if (m->status == MIG_POSTCOPY_ACTIVE || m->status == MIG_POSTCOPY_PAUSED ||
	    m->status == MIG_POSTCOPY_RECOVER) {
		r = vmm_failf(e, -EBUSY, "a post-copy migration is %s", status_names[m->status]);
		pthread_mutex_unlock(&m->lock);
		return r;
	}
	if (m->closed || m->incoming || m->handed_over || m->status == MIG_SETUP ||
	    m->status == MIG_ACTIVE || m->status == MIG_DEVICE) {
		r = m->closed ? vmm_failf(e, -ESHUTDOWN, "the VM is shutting down")
		    : m->incoming ? vmm_failf(e, -EBUSY, "the guest is still arriving")
		    : m->handed_over ? vmm_failf(e, -EBUSY, "the guest has already moved away")
		    : vmm_failf(e, -EBUSY, "a migration is already running");
		pthread_mutex_unlock(&m->lock);
		return r;
	}
	/* The last one's thread is done (its status says so): whoever clears the flag joins. */
	if (m->thread_started) {
		m->thread_started = false;
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
		pthread_mutex_lock(&m->lock);
		if (m->closed || m->status == MIG_SETUP) {
			pthread_mutex_unlock(&m->lock);
			return vmm_failf(e, -EBUSY, "a migration is already running");
		}
	}
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	m->cancel = false;
	atomic_store(&m->cancel_flag, false);
	m->error[0] = '\0';
	m->ram_total = vm->ram.size;
	m->transferred = m->pages = m->poisoned = m->zero_pages = 0;
	m->dirty_syncs = m->iterations = m->downtime_ms = m->setup_ms = m->total_ms = 0;
	m->data_bytes = m->pc_requests = m->pc_bytes = m->resumed_bytes = 0;
	/* Not a secret: tells this migration's resume from another VM's. */
	if (getrandom(&m->mig_id, sizeof(m->mig_id), GRND_NONBLOCK) != sizeof(m->mig_id))
		m->mig_id = now_ns() ^ ((uint64_t)getpid() << 32);
	m->postcopy = m->go_sent = false;
	atomic_store(&m->postcopy_start, false);
	m->window_ns = 0;
	m->remaining = vm->ram.size;
	m->start_ns = now_ns();
	m->status = MIG_SETUP;
	/* Before the thread: its own statuses come after this one. Not under our lock. */
	pthread_mutex_unlock(&m->lock);
	emit_status(vm, MIG_SETUP, NULL);
	pthread_mutex_lock(&m->lock);
	r = m->closed ? -ESHUTDOWN : -pthread_create(&m->thread, NULL, migration_thread, vm);
	m->thread_started = !r;
	if (r) {
		m->status = MIG_FAILED;
		snprintf(m->error, sizeof(m->error), "start the migration thread: %s",
			 strerror(-r));
	}
	pthread_mutex_unlock(&m->lock);
	if (r) {
		char why[sizeof(m->error)];

		pthread_mutex_lock(&m->lock);
		memcpy(why, m->error, sizeof(why));
		pthread_mutex_unlock(&m->lock);
		emit_status(vm, MIG_FAILED, why);
		return vmm_fail(e, r, "start the migration thread");
	}
	return 0;
}

void migration_cancel(struct vmm *vm)
{
	struct vmm_migration *m = &vm->mig;

	pthread_mutex_lock(&m->lock);
	/* After the handover it is too late: the "go" must get through. */
	if (!m->handed_over) {
		m->cancel = true;
		atomic_store(&m->cancel_flag, true);
		if (m->stream)
			mig_cancel(m->stream);
	}
	pthread_cond_broadcast(&m->cond);	/* a throttled thread sleeps on it */
	pthread_mutex_unlock(&m->lock);
}

void migration_stop(struct vmm *vm)
{
	struct vmm_migration *m = &vm->mig;
	bool started;

	pthread_mutex_lock(&m->lock);
	m->closed = true;	/* no migrate from now on */
	/* A post-copy source that quits: the destination loses what it did not get. */
	atomic_store(&m->cancel_flag, true);
	if (m->stream && m->postcopy)
		mig_cancel(m->stream);
	pthread_mutex_unlock(&m->lock);
	migration_cancel(vm);
	pthread_mutex_lock(&m->lock);
	started = m->thread_started;
	m->thread_started = false;
	pthread_mutex_unlock(&m->lock);
	if (started)
		pthread_join(m->thread, NULL);
}

/* ---- destination ------------------------------------------------------- */

struct incoming {
	struct vmm *vm;
	struct mig_stream *s;
	struct vmras_migration *ras;
	/*
	 * Pages whose last copy in the stream said "poisoned": a later data
	 * or zero copy (the source reset its guest meanwhile) clears the bit.
	 */
	uint64_t *poisoned;
	uint64_t *present;	/* pages the stream carried at least once */
	uint64_t *vcpus_loaded;
	bool header, guest, end;
	bool postcopy;		/* the rest of RAM comes after the end, on demand */
	unsigned char header_bytes[HEADER_BYTES];
	uint32_t end_flags;
};

static void note_page(struct incoming *in, uint64_t gpa, unsigned int kind)
{
	uint64_t p = gpa / PAGE, bit = 1ULL << (p % 64);

	in->present[p / 64] |= bit;
	if (kind == PG_POISONED)
		in->poisoned[p / 64] |= bit;
	else
		in->poisoned[p / 64] &= ~bit;
}

/*
 * A page into guest RAM (data, or NULL: zeros), through the safe copy: a
 * page that goes bad here while it loads is poisoned, like the source's.
 */
static int store_page(struct incoming *in, uint64_t gpa, const unsigned char *data,
		      unsigned int kind, struct vmm_error *e)
{
	static const unsigned char zero[PAGE];
	int r = vmras_copy_to_guest(in->vm->ras, gpa, data ? data : zero, PAGE);

	if (r == -EHWPOISON)
		kind = PG_POISONED;
	else if (r)
		return vmm_fail(e, r, "load guest page 0x%" PRIx64, gpa);
	note_page(in, gpa, kind);
	return 0;
}

/*
 * Data pages at consecutive addresses, in one safe copy; a page that goes
 * bad here while it loads is poisoned, like the source's, and the pages
 * on either side go again (the bad page is never touched twice).
 */
static int store_run(struct incoming *in, uint64_t gpa, const unsigned char *data, uint64_t n,
		     struct vmm_error *e)
{
	while (n) {
		uint64_t bad = 0, b;
		int r = vmras_copy_to_guest_at(in->vm->ras, gpa, data, n * PAGE, &bad);

		if (!r) {
			for (uint64_t k = 0; k < n; k++)
				note_page(in, gpa + k * PAGE, PG_DATA);
			return 0;
		}
		b = (bad - gpa) / PAGE;
		if (r != -EHWPOISON || bad < gpa || b >= n)
			return vmm_fail(e, r == -EHWPOISON ? -EIO : r, "load guest pages 0x%" PRIx64
					"-0x%" PRIx64, gpa, (uint64_t)(gpa + n * PAGE - 1));
		note_page(in, bad, PG_POISONED);
		r = store_run(in, gpa, data, b, e);
		if (r)
			return r;
		gpa += (b + 1) * PAGE;
		data += (b + 1) * PAGE;
		n -= b + 1;
	}
	return 0;
}

/* After the end section: the stream had everything this VM needs. */
static int check_complete(struct incoming *in, struct vmm_error *e)
{
	struct vmm *vm = in->vm;
	uint64_t npages = vm->ram.size / PAGE;

	/* A word at a time: a lazy restore's first instruction waits for this. */
	for (uint64_t w = 0; !in->postcopy && w < (npages + 63) / 64; w++) {
		uint64_t want = npages - w * 64 >= 64 ? ~0ULL : (1ULL << (npages - w * 64)) - 1;
		uint64_t missing = want & ~in->present[w];

		if (missing)
			return vmm_failf(e, -EPROTO, "the stream never carried guest page 0x%"
					 PRIx64, (uint64_t)((w * 64 + (uint64_t)__builtin_ctzll(missing)) * PAGE));
	}
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (!(in->vcpus_loaded[i / 64] & (1ULL << (i % 64))))
			return vmm_failf(e, -EPROTO, "the stream has no state for vCPU %u", i);
	if (!in->ras)
		return vmm_failf(e, -EPROTO, "the stream has no ras section");
	if (!in->guest)
		return vmm_failf(e, -EPROTO, "the stream has no guest section");
	return 0;
}

static int load_ram(struct incoming *in, const struct mig_section *sec, struct vmm_error *e)
{
	unsigned char *p = NULL;
	uint64_t n = 0, off;
	int r = mig_read_payload(in->s, sec, (void **)&p, e);

	if (!r)
		r = ram_batch_check(p, sec->len, in->vm->ram.size, sec->offset, &n, e);
	off = 8 + n * 8;
	for (uint64_t i = 0, run; i < n && !r; i += run) {
		uint64_t w = get(p + 8 + i * 8, 8), kind = w & (PAGE - 1), gpa = w & ~(PAGE - 1);

		/* Data pages at consecutive addresses: one copy for the run. */
		for (run = 1; kind == PG_DATA && i + run < n &&
			      get(p + 8 + (i + run) * 8, 8) == ((gpa + run * PAGE) | PG_DATA); run++)
			;
		if (kind == PG_DATA)
			r = store_run(in, gpa, p + off, run, e);
		else
			r = store_page(in, gpa, NULL, (unsigned int)kind, e);
		off += kind == PG_DATA ? run * PAGE : 0;
	}
	free(p);
	return r;
}

/*
 * The image's head up to the kinds (24 + npages bytes; the CRCs follow),
 * read and checked; malloc'd into *headp.
 */
static int read_image_head(struct incoming *in, const struct mig_section *sec,
			   unsigned char **headp, uint64_t *data_offp, struct vmm_error *e)
{
	uint64_t npages = in->vm->ram.size / PAGE, head = RAM_IMAGE_HEAD(npages), data_off;
	unsigned char *map = malloc(24 + npages);
	int r;

	if (!map)
		return vmm_fail(e, -ENOMEM, "allocate the RAM image map");
	r = sec->len < head ? vmm_failf(e, -EPROTO, "ram-image section too short") : 0;
	if (!r)
		r = mig_read_data(in->s, sec, map, 24 + npages, e);
	if (r)
		goto fail;
	r = ram_image_check(map, npages, sec->offset, sec->len, &data_off, e);
	if (r)
		goto fail;
	*headp = map;
	*data_offp = data_off;
	return 0;
fail:
	free(map);
	return r;
}

/* --lazy: the pages stay in the file; libvmras asks for each when it is needed. */
static int load_image_lazy(struct incoming *in, const struct mig_section *sec,
			   const unsigned char *map, uint64_t data_off, struct vmm_error *e)
{
	struct vmm *vm = in->vm;
	uint64_t npages = vm->ram.size / PAGE;
	const unsigned char *kinds = map + 24, *k;
	int fd = mig_file_fd(in->s), r;

	/* The section's payload starts after its 24-byte header; the CRCs after the kinds. */
	r = fd < 0 ? vmm_failf(e, -EINVAL, "--lazy needs a file: snapshot")
		   : lazy_image_begin(vm->ras, fd, data_off, sec->offset + 24 + 24 + npages,
				      npages, kinds, !vm->cfg.lazy_no_prefetch, &vm->lazy_image, e);
	if (!r)
		r = mig_read_skip(in->s, sec, e);
	if (r)
		return r;
	/* Every page came (in the file); the poisoned ones found with memchr, not one by one. */
	memset(in->present, 0xff, (npages + 63) / 64 * sizeof(uint64_t));
	for (k = kinds; (k = memchr(k, PG_POISONED, (size_t)(kinds + npages - k))); k++)
		note_page(in, (uint64_t)(k - kinds) * PAGE, PG_POISONED);
	return 0;
}

static int load_image(struct incoming *in, const struct mig_section *sec, struct vmm_error *e)
{
	struct vmm *vm = in->vm;
	uint64_t npages = vm->ram.size / PAGE, data_off = 0, pad;
	unsigned char *map = NULL, skip[256], *page = malloc(PAGE), *crcs = malloc(npages * 4);
	int r;

	if (!page || !crcs) {
		r = vmm_fail(e, -ENOMEM, "allocate the RAM image map");
		goto out;
	}
	r = read_image_head(in, sec, &map, &data_off, e);
	if (r)
		goto out;
	if (vm->cfg.lazy) {
		r = load_image_lazy(in, sec, map, data_off, e);
		goto out;
	}
	r = mig_read_data(in->s, sec, crcs, npages * 4, e);
	pad = data_off - (sec->offset + 24) - RAM_IMAGE_HEAD(npages);
	for (uint64_t k = 0; !r && k < pad; k += sizeof(skip))
		r = mig_read_data(in->s, sec, skip, pad - k < sizeof(skip) ? pad - k : sizeof(skip), e);
	for (uint64_t p = 0; !r && p < npages; p++) {
		unsigned int kind = map[24 + p];

		r = mig_read_data(in->s, sec, page, PAGE, e);
		if (!r && kind == PG_DATA && vr_crc32c(0, page, PAGE) != get(crcs + p * 4, 4))
			r = vmm_failf(e, -EPROTO, "ram-image section at offset %" PRIu64 ": page %"
				      PRIu64 " fails its checksum", sec->offset, p);
		if (!r)
			r = store_page(in, p * PAGE, kind == PG_DATA ? page : NULL, kind, e);
	}
	if (!r)
		r = mig_read_end(in->s, sec, e);
out:
	free(map);
	free(page);
	free(crcs);
	return r;
}

/*
 * Post-copy: the pages the source wrote after it sent them (or never
 * sent) are not to be used; they come on demand after the end.
 */
static int load_stale(struct incoming *in, const unsigned char *p, const struct mig_section *sec,
		      struct vmm_error *e)
{
	uint64_t npages = in->vm->ram.size / PAGE, words = (npages + 63) / 64;
	uint64_t *stale = calloc(words, sizeof(uint64_t));
	char why[160];
	int r = stale ? 0 : vmm_fail(e, -ENOMEM, "allocate the post-copy map");

	if (!r && pc_bitmap_parse(p, sec->len, npages, stale, why, sizeof(why)))
		r = vmm_failf(e, -EPROTO, "postcopy section at offset %" PRIu64 ": %s",
			      sec->offset, why);
	for (uint64_t w = 0; !r && w < words; w++) {
		in->present[w] &= ~stale[w];
		in->poisoned[w] &= ~stale[w];
	}
	in->postcopy = !r;
	free(stale);
	return r;
}

static int load_section(struct incoming *in, const struct mig_section *sec, struct vmm_error *e)
{
	struct vmm *vm = in->vm;
	unsigned char *p = NULL;
	char why[200];
	int r;

	if (!in->header && sec->type != SEC_HEADER)
		return vmm_failf(e, -EPROTO, "stream does not start with a header section");
	if (sec->type == SEC_RAM)
		return load_ram(in, sec, e);
	if (sec->type == SEC_RAM_IMAGE)
		return load_image(in, sec, e);
	r = mig_read_payload(in->s, sec, (void **)&p, e);
	if (r)
		return r;
	switch (sec->type) {
	case SEC_HEADER:
		r = in->header ? vmm_failf(e, -EPROTO, "a second header section") :
				 header_check(vm, p, sec->len, e);
		if (!r)
			memcpy(in->header_bytes, p, HEADER_BYTES);
		in->header = true;
		break;
	case SEC_RAS:
		if (in->ras) {
			r = vmm_failf(e, -EPROTO, "a second ras section at offset %" PRIu64,
				      sec->offset);
			break;
		}
		r = vmras_migration_parse(p, sec->len, &in->ras, why, sizeof(why));
		if (r)
			vmm_failf(e, r, "ras section at offset %" PRIu64 ": %s", sec->offset, why);
		break;
	case SEC_VCPU:
		if (sec->id >= vm->cfg.nr_vcpus) {
			r = vmm_failf(e, -EPROTO, "vcpu section at offset %" PRIu64 " for vCPU %u "
				      "of %u", sec->offset, sec->id, vm->cfg.nr_vcpus);
		} else if (in->vcpus_loaded[sec->id / 64] & (1ULL << (sec->id % 64))) {
			r = vmm_failf(e, -EPROTO, "a second vcpu section for vCPU %u at offset %"
				      PRIu64, sec->id, sec->offset);
		} else {
			r = x86_state_load(&vm->x86, vm->vcpus[sec->id].fd, p, sec->len, e);
			in->vcpus_loaded[sec->id / 64] |= 1ULL << (sec->id % 64);
		}
		break;
	case SEC_GUEST:
		r = in->guest || sec->len < 8
			    ? -EPROTO : report_load(&vm->report, vm->cfg.nr_vcpus, p + 8, sec->len - 8);
		if (r)
			vmm_failf(e, r, "guest section at offset %" PRIu64 " is not the one report "
				  "of %u vCPUs", sec->offset, vm->cfg.nr_vcpus);
		else
			vm->boot_count = get(p, 8);
		in->guest = true;
		break;
	case SEC_POSTCOPY:
		r = in->postcopy || in->end || mig_is_file(in->s)
			? vmm_failf(e, -EPROTO, "an unexpected postcopy section at offset %" PRIu64,
				    sec->offset)
			: load_stale(in, p, sec, e);
		break;
	case SEC_END:
		if (sec->len != 4 || get(p, 4) & ~END_USER_STOPPED) {
			r = vmm_failf(e, -EPROTO, "end section at offset %" PRIu64 " is not 4 bytes "
				      "of known flags", sec->offset);
			break;
		}
		in->end_flags = (uint32_t)get(p, 4);
		in->end = true;
		break;
	default:
		r = vmm_failf(e, -EPROTO, "unexpected %s section at offset %" PRIu64,
			      sec->type < SEC_COUNT && section_names[sec->type]
				      ? section_names[sec->type] : "unknown", sec->offset);
	}
	free(p);
	return r;
}

static void send_result(struct incoming *in, int status, const char *msg)
{
	unsigned char buf[4 + 320];
	size_t n = strlen(msg) < 320 ? strlen(msg) : 320;
	struct vmm_error e;

	if (!in->s || mig_is_file(in->s))
		return;
	put(buf, (uint32_t)status, 4);
	memcpy(buf + 4, msg, n);
	if (!mig_write_section(in->s, SEC_RESULT, 0, buf, 4 + n, &e))
		mig_flush(in->s, &e);
}

/*
 * Everything is here and checked; run only once the source has let go
 * (SEC_GO). Without it (the source cancelled, failed or died after our
 * "ready"), the guest runs on there, or nowhere: never in two places.
 */
static int wait_go(struct incoming *in, struct vmm_error *e)
{
	struct mig_section sec;
	int r = mig_read_header(in->s, section_max, &sec, e);

	if (!r && (sec.type != SEC_GO || sec.len))
		r = vmm_failf(e, -EPROTO, "the source sent %s section at offset %" PRIu64 " "
			      "instead of the handover", sec.type < SEC_COUNT &&
			      section_names[sec.type] ? section_names[sec.type] : "an unknown",
			      sec.offset);
	if (!r)
		r = mig_read_end(in->s, &sec, e);
	if (r) {
		char why[sizeof(e->msg)];

		memcpy(why, e->msg, sizeof(why));
		return vmm_failf(e, -ECONNABORTED, "the source did not hand the guest over (%s): "
				 "not running it here", why);
	}
	return 0;
}

/*
 * Every page of the destination will be written: allocate RAM before
 * listening, as QEMU does with prealloc=on, so that the stream does not
 * pay a page fault per page (on this nested host, half the destination's
 * time, and erratic). A chunk at a time, so a quit is not kept waiting;
 * best effort (an old kernel, a short huge page pool: the copies fault
 * instead).
 */
#define PREALLOC_CHUNK (32ULL << 20)

static void prealloc(struct vmm *vm)
{
	for (uint64_t off = 0; off < vm->ram.size && !atomic_load(&vm->mig.cancel_flag);
	     off += PREALLOC_CHUNK) {
		uint64_t len = vm->ram.size - off < PREALLOC_CHUNK ? vm->ram.size - off
								   : PREALLOC_CHUNK;

		/* Not this kernel, or no more memory (a short huge page pool). */
		if (madvise(vm->ram.hva + off, len, MADV_POPULATE_WRITE) &&
		    (errno == EINVAL || errno == ENOMEM))
			break;
	}
}

int migration_incoming(struct vmm *vm, const char *uri, struct vmm_error *e)
{
	uint64_t words = (vm->ram.size / PAGE + 63) / 64;
	struct incoming in = {
		.vm = vm,
		.poisoned = calloc(words, sizeof(uint64_t)),
		.present = calloc(words, sizeof(uint64_t)),
		.vcpus_loaded = calloc((vm->cfg.nr_vcpus + 63) / 64, sizeof(uint64_t)),
	};
	struct mig_section sec;
	char why[200];
	uint64_t t0 = now_ns();
	bool pc_owns = false;
	int r = 0;

	set_incoming(vm, true);
	if (!in.poisoned || !in.present || !in.vcpus_loaded)
		r = vmm_fail(e, -ENOMEM, "allocate the incoming page maps");
	/* A lazy restore fills RAM on demand: allocating it first would defeat it. */
	if (!r && !vm->cfg.lazy)
		prealloc(vm);
	if (!r)
		r = mig_open_incoming(uri, -1, &vm->mig.cancel_flag, &in.s, e);
	if (!r) {
		mig_set_section_names(in.s, section_names, SEC_COUNT);
		set_in_stream(vm, in.s);
	}
	while (!r && !in.end) {
		r = mig_read_header(in.s, section_max, &sec, e);
		if (r == -ENODATA)
			r = vmm_failf(e, -EPROTO, "stream ended at offset %" PRIu64 " before its end "
				      "section", mig_in_offset(in.s));
		if (!r)
			r = load_section(&in, &sec, e);
	}
	if (!r)
		r = check_complete(&in, e);
	/* RAM is all here: poison what the source lost, before any vCPU runs. */
	for (uint64_t w = 0; !r && w < words; w++)
		for (uint64_t bits = in.poisoned[w]; bits && !r; bits &= bits - 1)
			r = vmras_migration_add_page(in.ras,
						     (uint64_t)((w * 64 + (uint64_t)__builtin_ctzll(bits)) * PAGE));
	/* Post-copy: what did not come is lazy from now on; the stream is post-copy's. */
	if (!r && in.postcopy) {
		r = postcopy_in_begin(vm, in.s, in.header_bytes, in.present, e);
		pc_owns = !r;
	}
	if (!r) {
		r = vmras_migration_apply(vm->ras, in.ras, why, sizeof(why));
		if (r)
			vmm_failf(e, r, "%s", why);
	}
	/* The operator had stopped the guest on the source: it stays stopped here. */
	if (!r && in.end_flags & END_USER_STOPPED) {
		pthread_mutex_lock(&vm->lock);
		if (!vm->user_stopped) {
			vm->user_stopped = true;
			vm->pause_depth++;
		}
		pthread_mutex_unlock(&vm->lock);
	}
	/* A quit asked for meanwhile: do not take the guest over. */
	if (!r && atomic_load(&vm->mig.cancel_flag))
		r = vmm_failf(e, -ECANCELED, "quit while loading");
	if (pc_owns) {
		struct vmm_error e2;

		/* The receiver reads the stream now: answer through post-copy, wait for go there. */
		if (postcopy_in_result(vm, r ? 1 : 0, r ? e->msg : "ready", &e2) && !r)
			r = vmm_failf(e, -EIO, "%s", e2.msg);
		if (!r)
			r = postcopy_in_wait_go(vm, e);
	} else if (in.s) {
		send_result(&in, r ? 1 : 0, r ? e->msg : "ready");
		/* Refused: let the source read why before it finds a closed socket. */
		if (r)
			mig_drain(in.s, DRAIN_MS);
		else if (!mig_is_file(in.s))
			r = wait_go(&in, e);
	}
	set_in_stream(vm, NULL);
	if (!r) {
		pthread_mutex_lock(&vm->mig.lock);
		vm->mig.incoming_us = (now_ns() - t0) / 1000 ?: 1;
		pthread_mutex_unlock(&vm->mig.lock);
	}
	vmras_migration_free(in.ras);
	free(in.poisoned);
	free(in.present);
	free(in.vcpus_loaded);
	if (!pc_owns)
		mig_close(in.s);
	set_incoming(vm, false);
	return r;
}
