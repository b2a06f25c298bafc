// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The migratable RAS state (vmras/migrate.h) and its blob:
 *
 *   header  "VMRASLIB" u32 version u32 nranges u32 nnotices
 *           u32 arch_bytes char arch[8]                         32 bytes
 *   ranges  u64 gpa u64 size u32 state u8 kind u8 source s16 vcpu 24 each
 *   notices u32 vcpu u32 flags u64 group u64 gpa u64 size u64 time_ns
 *           u8 kind u8 source s16 ev_vcpu u32 pad
 *           arch[arch_bytes]                                  48 + arch_bytes
 *   u32 crc32c of everything before it
 *
 * Little-endian. Threads: save runs on a VMM thread (it waits for the
 * engine to catch up, then copies the registry and the queues under their
 * locks); apply queues one event per range for the engine (which
 * contains and splits them, as it does every error) and waits, then
 * requeues the notices under v->lock. Parse touches no context.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"
#include "internal.h"
#include "record/record.h"
#include "util/crc32c.h"
#include "vmras/migrate.h"

#define MAGIC "VMRASLIB"
#define VERSION 1
#define HEADER_BYTES 32
#define RANGE_BYTES 24
#define NOTICE_BYTES (48 + VR_NOTICE_ARCH_BYTES)
#define MAX_RANGES (1u << 20)
#define MAX_NOTICES (VR_MAX_VCPUS * VR_VCPU_MAX_PENDING)
#define KNOWN_STATE (VMRAS_PS_REPORTED | VMRAS_PS_CONTAINED | VMRAS_PS_NOTIFIED | \
		     VMRAS_PS_IGNORED | VMRAS_PS_CONTAIN_FAILED)

#define NOTICE_BYSTANDER (1u << 0)
#define NOTICE_DEFERRED (1u << 1)
#define NOTICE_AR (1u << 2)

struct mig_range {
	uint64_t gpa, size;
	uint32_t state;
	uint8_t kind, source;
	int16_t vcpu;
};

struct mig_notice {
	uint32_t vcpu, flags;
	uint64_t group, gpa, size, time_ns;
	uint8_t kind, source;
	int16_t ev_vcpu;
	unsigned char arch[VR_NOTICE_ARCH_BYTES];
};

struct vmras_migration {
	char arch[8];
	size_t nranges, cap;
	struct mig_range *ranges;
	size_t nnotices;
	struct mig_notice *notices;
};

/* ---- little-endian cursor ----------------------------------------------- */

struct cur {
	unsigned char *p;
	const unsigned char *q;
	size_t left;
};

static void put(struct cur *c, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		*c->p++ = (unsigned char)(v >> (8 * i));
}

static uint64_t get(struct cur *c, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)*c->q++ << (8 * i);
	c->left -= n;
	return v;
}

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

/* ---- source ---------------------------------------------------------------- */

/* Every report made before now has been handled. */
static int engine_catch_up(struct vmras *v)
{
	struct vr_work w = { .kind = VR_WORK_SYNC };

	return vr_engine_submit(v, &w, true);
}

int vmras_migration_save(struct vmras *v, void **buf, size_t *len)
{
	struct vmras_poison *list = NULL;
	struct mig_notice *notices;
	size_t nranges, n = 0, bytes;
	struct cur c;
	int err;

	if (!v->arch)
		return -EINVAL;
	err = engine_catch_up(v);
	if (err)
		return err;
	notices = calloc(MAX_NOTICES, sizeof(*notices));
	if (!notices)
		return -ENOMEM;
	/* The registry may grow between counting and copying: copy until it all fit. */
	for (size_t room = vmras_registry_count(v->registry) + 16;; room = nranges + 16) {
		if (room > MAX_RANGES + 16) {
			free(notices);
			return -E2BIG;
		}
		free(list);
		list = calloc(room, sizeof(*list));
		if (!list) {
			free(notices);
			return -ENOMEM;
		}
		nranges = vmras_registry_snapshot(v->registry, list, room);
		if (nranges <= room)
			break;
	}
	if (nranges > MAX_RANGES) {
		free(list);
		free(notices);
		return -E2BIG;
	}
	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->nvcpus; i++)
		for (unsigned int j = 0; j < v->vcpus[i].npending && n < MAX_NOTICES; j++) {
			const struct vr_notice *p = &v->vcpus[i].pending[j];

			notices[n++] = (struct mig_notice){
				.vcpu = i, .group = p->group, .gpa = p->f.ev.gpa, .size = p->f.size,
				.time_ns = p->f.ev.time_ns, .kind = (uint8_t)p->f.ev.kind,
				.source = (uint8_t)p->f.ev.source,
				.ev_vcpu = (int16_t)p->f.ev.vcpu,
				.flags = (p->bystander ? NOTICE_BYSTANDER : 0) |
					 (p->deferred ? NOTICE_DEFERRED : 0) |
					 (p->f.action_required ? NOTICE_AR : 0),
			};
			memcpy(notices[n - 1].arch, p->arch, sizeof(p->arch));
		}
	pthread_mutex_unlock(&v->lock);

	bytes = HEADER_BYTES + nranges * RANGE_BYTES + n * NOTICE_BYTES + 4;
	*buf = malloc(bytes);
	if (!*buf) {
		err = -ENOMEM;
		goto out;
	}
	c = (struct cur){ .p = *buf };
	memcpy(c.p, MAGIC, 8);
	c.p += 8;
	put(&c, VERSION, 4);
	put(&c, nranges, 4);
	put(&c, n, 4);
	put(&c, VR_NOTICE_ARCH_BYTES, 4);
	memset(c.p, 0, 8);
	snprintf((char *)c.p, 8, "%s", v->arch->name);
	c.p += 8;
	for (size_t i = 0; i < nranges; i++) {
		put(&c, list[i].gpa, 8);
		put(&c, list[i].size, 8);
		put(&c, list[i].state & KNOWN_STATE, 4);
		put(&c, list[i].kind, 1);
		put(&c, list[i].source, 1);
		put(&c, (uint16_t)(int16_t)list[i].vcpu, 2);
	}
	for (size_t i = 0; i < n; i++) {
		put(&c, notices[i].vcpu, 4);
		put(&c, notices[i].flags, 4);
		put(&c, notices[i].group, 8);
		put(&c, notices[i].gpa, 8);
		put(&c, notices[i].size, 8);
		put(&c, notices[i].time_ns, 8);
		put(&c, notices[i].kind, 1);
		put(&c, notices[i].source, 1);
		put(&c, (uint16_t)notices[i].ev_vcpu, 2);
		put(&c, 0, 4);
		memcpy(c.p, notices[i].arch, VR_NOTICE_ARCH_BYTES);
		c.p += VR_NOTICE_ARCH_BYTES;
	}
	put(&c, vr_crc32c(0, *buf, bytes - 4), 4);
	*len = bytes;
out:
	free(list);
	free(notices);
	return err;
}

/* ---- parse --------------------------------------------------------------- */

static bool power_of_two(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int parse_range(struct cur *c, struct mig_range *r, size_t i, char *why, size_t len)
{
	r->gpa = get(c, 8);
	r->size = get(c, 8);
	r->state = (uint32_t)get(c, 4);
	r->kind = (uint8_t)get(c, 1);
	r->source = (uint8_t)get(c, 1);
	r->vcpu = (int16_t)(uint16_t)get(c, 2);
	if (!power_of_two(r->size) || r->size < SMALL_PAGE || (r->gpa & (r->size - 1)) ||
	    r->gpa + r->size < r->gpa)
		return fail(why, len, "bad range %zu: 0x%llx+0x%llx is not an aligned power-of-two "
			    "range of at least 4 KiB", i, (unsigned long long)r->gpa,
			    (unsigned long long)r->size);
	if ((r->state & ~KNOWN_STATE) || r->kind > VMRAS_AR || r->source >= VMRAS_SRC_COUNT ||
	    r->vcpu < -1)
		return fail(why, len, "bad range %zu: unknown state, kind, source or vCPU", i);
	return 0;
}

static int parse_notice(struct cur *c, struct mig_notice *n, size_t i, char *why, size_t len)
{
	n->vcpu = (uint32_t)get(c, 4);
	n->flags = (uint32_t)get(c, 4);
	n->group = get(c, 8);
	n->gpa = get(c, 8);
	n->size = get(c, 8);
	n->time_ns = get(c, 8);
	n->kind = (uint8_t)get(c, 1);
	n->source = (uint8_t)get(c, 1);
	n->ev_vcpu = (int16_t)(uint16_t)get(c, 2);
	if (get(c, 4))
		return fail(why, len, "bad notice %zu: reserved bytes set", i);
	memcpy(n->arch, c->q, VR_NOTICE_ARCH_BYTES);
	c->q += VR_NOTICE_ARCH_BYTES;
	c->left -= VR_NOTICE_ARCH_BYTES;
	if (n->vcpu >= VR_MAX_VCPUS || n->ev_vcpu < -1 || n->ev_vcpu >= VR_MAX_VCPUS ||
	    (n->flags & ~(NOTICE_BYSTANDER | NOTICE_DEFERRED | NOTICE_AR)) ||
	    n->kind > VMRAS_AR || n->source >= VMRAS_SRC_COUNT || !power_of_two(n->size))
		return fail(why, len, "bad notice %zu: vCPU, flags, kind, source or size out of range",
			    i);
	return 0;
}

int vmras_migration_parse(const void *buf, size_t len, struct vmras_migration **out,
			  char *why, size_t why_len)
{
	struct cur c = { .q = buf, .left = len };
	struct vmras_migration *m;
	uint32_t version, nranges, nnotices, arch_bytes, crc;
	int err = 0;

	*out = NULL;
	if (len < HEADER_BYTES + 4)
		return fail(why, why_len, "RAS state is %zu bytes, shorter than its header", len);
	if (memcmp(c.q, MAGIC, 8))
		return fail(why, why_len, "RAS state does not start with " MAGIC);
	crc = (uint32_t)((const unsigned char *)buf)[len - 4] |
	      (uint32_t)((const unsigned char *)buf)[len - 3] << 8 |
	      (uint32_t)((const unsigned char *)buf)[len - 2] << 16 |
	      (uint32_t)((const unsigned char *)buf)[len - 1] << 24;
	if (vr_crc32c(0, buf, len - 4) != crc)
		return fail(why, why_len, "RAS state checksum mismatch");
	c.q += 8;
	c.left -= 8 + 4; /* the crc */
	version = (uint32_t)get(&c, 4);
	nranges = (uint32_t)get(&c, 4);
	nnotices = (uint32_t)get(&c, 4);
	arch_bytes = (uint32_t)get(&c, 4);
	if (version != VERSION)
		return fail(why, why_len, "RAS state version %u, this libvmras reads %u", version,
			    VERSION);
	if (arch_bytes != VR_NOTICE_ARCH_BYTES)
		return fail(why, why_len, "RAS state notices carry %u arch bytes, not %u",
			    arch_bytes, VR_NOTICE_ARCH_BYTES);
	if (nranges > MAX_RANGES || nnotices > MAX_NOTICES ||
	    c.left - 8 != (uint64_t)nranges * RANGE_BYTES + (uint64_t)nnotices * NOTICE_BYTES)
		return fail(why, why_len, "RAS state of %zu bytes cannot hold %u ranges and %u "
			    "notices", len, nranges, nnotices);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	memcpy(m->arch, c.q, 8);
	c.q += 8;
	c.left -= 8;
	if (m->arch[7] || !m->arch[0]) {
		err = fail(why, why_len, "RAS state names no architecture");
		goto bad;
	}
	/* It goes into messages: a name, not arbitrary bytes. */
	for (const char *a = m->arch; *a; a++)
		if (!((*a >= 'a' && *a <= 'z') || (*a >= '0' && *a <= '9') || *a == '_')) {
			err = fail(why, why_len, "RAS state's architecture name is not [a-z0-9_]");
			goto bad;
		}
	m->cap = nranges;
	m->ranges = calloc(nranges ? nranges : 1, sizeof(*m->ranges));
	m->notices = calloc(nnotices ? nnotices : 1, sizeof(*m->notices));
	if (!m->ranges || !m->notices) {
		err = -ENOMEM;
		goto bad;
	}
	for (; m->nranges < nranges && !err; m->nranges++)
		err = parse_range(&c, &m->ranges[m->nranges], m->nranges, why, why_len);
	for (; m->nnotices < nnotices && !err; m->nnotices++)
		err = parse_notice(&c, &m->notices[m->nnotices], m->nnotices, why, why_len);
	if (err)
		goto bad;
	/* No vCPU queues more than VR_VCPU_MAX_PENDING: a blob that does was not saved here. */
	{
		uint8_t per_vcpu[VR_MAX_VCPUS] = { 0 };

		for (size_t i = 0; i < m->nnotices; i++)
			if (++per_vcpu[m->notices[i].vcpu] > VR_VCPU_MAX_PENDING) {
				err = fail(why, why_len, "RAS state queues more than %d notices for "
					   "vCPU %u", VR_VCPU_MAX_PENDING, m->notices[i].vcpu);
				goto bad;
			}
	}
	*out = m;
	return 0;
bad:
	vmras_migration_free(m);
	return err;
}

int vmras_migration_add_page(struct vmras_migration *m, uint64_t gpa)
{
	if (gpa & (SMALL_PAGE - 1))
		return -EINVAL;
	for (size_t i = 0; i < m->nranges; i++)
		if (gpa - m->ranges[i].gpa < m->ranges[i].size)
			return 0; /* the blob has it */
	if (m->nranges >= MAX_RANGES)
		return -E2BIG;
	if (m->nranges == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct mig_range *r = realloc(m->ranges, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		m->ranges = r;
		m->cap = cap;
	}
	/* Poisoned when the source read it: contained there, never told. */
	m->ranges[m->nranges++] = (struct mig_range){
		.gpa = gpa, .size = SMALL_PAGE, .state = VMRAS_PS_REPORTED | VMRAS_PS_CONTAINED,
		.kind = VMRAS_AO, .source = VMRAS_SRC_MIGRATION, .vcpu = -1,
	};
	return 0;
}

void vmras_migration_counts(const struct vmras_migration *m, size_t *ranges, size_t *notices)
{
	*ranges = m->nranges;
	*notices = m->nnotices;
}

void vmras_migration_free(struct vmras_migration *m)
{
	if (!m)
		return;
	free(m->ranges);
	free(m->notices);
	free(m);
}

/* ---- apply ------------------------------------------------------------------ */

/* Everything checked against this VM before anything changes. */
static int check_fits(struct vmras *v, const struct vmras_migration *m, char *why, size_t len)
{
	if (!v->arch || strcmp(v->arch->name, m->arch))
		return fail(why, len, "RAS state is for %s, this VM is %s", m->arch,
			    v->arch ? v->arch->name : "not set up");
	for (size_t i = 0; i < m->nranges; i++) {
		const struct mig_range *r = &m->ranges[i];
		const struct vmras_region *reg = vmras_memmap_find_gpa(v->map, r->gpa);

		if (!reg || r->gpa + r->size - reg->gpa > reg->size)
			return fail(why, len, "bad page 0x%llx+0x%llx is not guest RAM here",
				    (unsigned long long)r->gpa, (unsigned long long)r->size);
	}
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < m->nnotices; i++)
		if (m->notices[i].vcpu >= v->nvcpus || !v->vcpus[m->notices[i].vcpu].registered) {
			pthread_mutex_unlock(&v->lock);
			return fail(why, len, "a queued notice is for vCPU %u, which this VM lacks",
				    m->notices[i].vcpu);
		}
	pthread_mutex_unlock(&v->lock);
	/* Room for them is checked again, whole, when they are queued. */
	return 0;
}

/* One event per page of the destination's backing (or per 4 KiB inside one). */
static int queue_range(struct vmras *v, const struct mig_range *r)
{
	const struct vmras_region *reg = vmras_memmap_find_gpa(v->map, r->gpa);
	uint64_t step = r->size >= reg->page_size ? reg->page_size : SMALL_PAGE;

	for (uint64_t a = r->gpa; a < r->gpa + r->size; a += step) {
		struct vr_work w = {
			.kind = VR_WORK_EVENT,
			.ev = { .valid = VMRAS_EV_GPA | (r->vcpu >= 0 ? VMRAS_EV_VCPU : 0),
				.kind = r->kind, .source = VMRAS_SRC_MIGRATION,
				.addr_lsb = (unsigned int)__builtin_ctzll(step), .vcpu = r->vcpu,
				.gpa = a },
			.carried_state = r->state | VMRAS_PS_REPORTED,
			.gen = __atomic_load_n(&v->generation, __ATOMIC_SEQ_CST),
		};
		int err = vr_engine_submit(v, &w, false);

		if (err)
			return err;
	}
	return 0;
}

static int by_group(const void *a, const void *b)
{
	const struct mig_notice *x = *(const struct mig_notice *const *)a;
	const struct mig_notice *y = *(const struct mig_notice *const *)b;

	return x->group < y->group ? -1 : x->group > y->group;
}

/*
 * The source's group numbers mean nothing here: the notices of one group
 * get one new number of this context (an AR must not wait on an
 * unrelated bystander that happens to carry its old number). malloc'd,
 * one per notice.
 */
static uint64_t *renumber_groups(struct vmras *v, const struct vmras_migration *m)
{
	size_t n = m->nnotices;
	const struct mig_notice **order = malloc((n ? n : 1) * sizeof(*order));
	uint64_t *out = malloc((n ? n : 1) * sizeof(*out)), seq = 0;

	if (!order || !out) {
		free(order);
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = &m->notices[i];
	qsort(order, n, sizeof(*order), by_group);
	for (size_t i = 0; i < n; i++) {
		if (!i || order[i]->group != order[i - 1]->group)
			seq = vr_next_seq(v);
		out[order[i] - m->notices] = seq;
	}
	free(order);
	return out;
}

static int requeue_notices(struct vmras *v, const struct vmras_migration *m)
{
	bool kick[VR_MAX_VCPUS] = { false };
	int err = 0;

	unsigned int need[VR_MAX_VCPUS] = { 0 };
	uint64_t *new_group = renumber_groups(v, m);

	if (!new_group)
		return -ENOMEM;
	pthread_mutex_lock(&v->lock);
	/* All or none: a vCPU without room for its notices gets none of them. */
	for (size_t i = 0; i < m->nnotices; i++)
		need[m->notices[i].vcpu]++;
	for (unsigned int i = 0; i < VR_MAX_VCPUS && !err; i++)
		if (need[i] && v->vcpus[i].npending + need[i] > VR_VCPU_MAX_PENDING)
			err = -ENOSPC;
	for (size_t i = 0; i < m->nnotices && !err; i++) {
		const struct mig_notice *n = &m->notices[i];
		struct vr_vcpu *s = &v->vcpus[n->vcpu];
		struct vr_notice *p;

		p = &s->pending[s->npending++];
		*p = (struct vr_notice){
			.f = { .ev = { .valid = VMRAS_EV_GPA | (n->ev_vcpu >= 0 ? VMRAS_EV_VCPU : 0),
				       .kind = n->kind, .source = n->source, .vcpu = n->ev_vcpu,
				       .gpa = n->gpa, .time_ns = n->time_ns },
			       .recipient = VMRAS_RECIPIENT_GUEST, .action = VMRAS_ACTION_INJECT,
			       .action_required = n->flags & NOTICE_AR, .contained = true,
			       .size = n->size },
			.group = new_group[i],
			.bystander = n->flags & NOTICE_BYSTANDER,
			.deferred = n->flags & NOTICE_DEFERRED,
		};
		memcpy(p->arch, n->arch, sizeof(p->arch));
		kick[n->vcpu] = true;
	}
	pthread_mutex_unlock(&v->lock);
	free(new_group);
	for (unsigned int i = 0; i < VR_MAX_VCPUS && v->cfg.ops.kick_vcpu; i++)
		if (kick[i])
			v->cfg.ops.kick_vcpu(v->cfg.ops.opaque, i);
	return err;
}

int vmras_migration_apply(struct vmras *v, const struct vmras_migration *m, char *why,
			  size_t why_len)
{
	int err = check_fits(v, m, why, why_len);

	if (err)
		return -EINVAL;
	for (size_t i = 0; i < m->nranges && !err; i++)
		err = queue_range(v, &m->ranges[i]);
	/* Contained and recorded before the notices about them can go in. */
	if (!err)
		err = engine_catch_up(v);
	if (!err)
		err = requeue_notices(v, m);
	if (err)
		fail(why, why_len, "recreate the RAS state: %s", strerror(-err));
	return err;
}

void vmras_migration_handed_over(struct vmras *v)
{
	if (v->record)
		vr_record_migrated_out(v->record);
}
