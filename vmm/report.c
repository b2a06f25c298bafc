// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static const char *const msg_names[] = {
	[GL_MSG_STARTED] = "started",
	[GL_MSG_PASS_DONE] = "pass-done",
	[GL_MSG_CORRUPTED] = "corrupted",
	[GL_MSG_MCE] = "machine-check",
	[GL_MSG_RETIRED] = "retired",
	[GL_MSG_UNRECOVERABLE] = "unrecoverable",
	[GL_MSG_EXCEPTION] = "exception",
	[GL_MSG_DONE] = "done",
	[GL_MSG_POLLED] = "polled-error",
	[GL_MSG_CPUID] = "cpuid",
};
_Static_assert(sizeof(msg_names) / sizeof(msg_names[0]) == GL_MSG_TYPE_COUNT,
	       "one name per message type");

void report_cpuid_decode(const struct gl_msg *m, struct report_cpuid *c)
{
	const uint64_t *a = m->a;

	c->valid = true;
	memcpy(c->vendor, &a[1], 8);	/* EBX, EDX (little endian) */
	memcpy(c->vendor + 8, &a[2], 4);	/* ECX */
	c->vendor[12] = 0;
	for (int i = 0; i < 12; i++)
		if (c->vendor[i] < 0x20 || c->vendor[i] > 0x7e)
			c->vendor[i] = '?';
	c->max_leaf = (uint32_t)a[0];
	c->signature = (uint32_t)a[3];
	c->max_ext_leaf = (uint32_t)a[4];
	c->ext_80000007_ebx = (uint32_t)a[5];
}

void report_cpu_model(uint32_t signature, uint32_t *family, uint32_t *model, uint32_t *stepping)
{
	uint32_t f = (signature >> 8) & 0xf, m = (signature >> 4) & 0xf;

	if (f == 0xf)
		f += (signature >> 20) & 0xff;
	if (f == 6 || f >= 0xf)
		m |= ((signature >> 16) & 0xf) << 4;
	*family = f;
	*model = m;
	*stepping = signature & 0xf;
}

const char *report_msg_name(uint32_t type)
{
	return type && type < GL_MSG_TYPE_COUNT ? msg_names[type] : "unknown";
}

void report_init(struct guest_report *r, unsigned int nr_vcpus)
{
	memset(r, 0, sizeof(*r));
	r->nr_vcpus = nr_vcpus;
}

int report_apply(struct guest_report *r, unsigned int from, const struct gl_msg *m)
{
	struct report_vcpu *v;
	const uint64_t *a = m->a;

	if (from >= r->nr_vcpus || m->vcpu != from || !m->type ||
	    m->type >= GL_MSG_TYPE_COUNT) {
		r->bad_messages++;
		return -EINVAL;
	}
	v = &r->vcpu[from];
	switch (m->type) {
	case GL_MSG_STARTED:
		v->started = true;
		v->slice_start = a[0];
		v->slice_end = a[1];
		v->pages = a[2];
		break;
	case GL_MSG_PASS_DONE:
		v->passes = (uint32_t)a[0];
		v->verified += a[1];
		v->corrupted += a[2];
		v->skipped += a[3];
		break;
	case GL_MSG_CORRUPTED:
		if (r->ncorrupt < REPORT_MAX_ITEMS)
			r->corrupt[r->ncorrupt++] = (struct report_corruption){
				.vcpu = from, .gpa = a[0], .offset = a[1],
				.want = a[2], .got = a[3], .pass = (uint32_t)a[4],
			};
		r->corrupt_total++;
		break;
	case GL_MSG_MCE:
	case GL_MSG_POLLED:
		if (r->nmce < REPORT_MAX_ITEMS)
			r->mce[r->nmce++] = (struct report_mce){
				.vcpu = from, .bank = (uint32_t)a[0], .status = a[1],
				.addr = a[2], .misc = a[3], .mcg_status = a[4], .rip = a[5],
				.polled = m->type == GL_MSG_POLLED,
			};
		if (m->type == GL_MSG_POLLED) {
			r->polled_total++;
			v->polled++;
		} else {
			r->mce_total++;
			v->machine_checks++;
		}
		break;
	case GL_MSG_CPUID:
		report_cpuid_decode(m, &v->cpuid);
		break;
	case GL_MSG_RETIRED:
		if (r->nretired < REPORT_MAX_ITEMS)
			r->retired[r->nretired++] = (struct report_range){
				.vcpu = from, .gpa = a[0], .size = a[1],
			};
		r->retired_total++;
		r->retired_bytes += a[1];
		v->retired++;
		break;
	case GL_MSG_UNRECOVERABLE:
		v->unrecoverable = true;
		v->exc_rip = a[1];
		break;
	case GL_MSG_EXCEPTION:
		v->exception = true;
		v->exc_vector = a[0];
		v->exc_rip = a[2];
		break;
	case GL_MSG_DONE:
		v->done = true;
		break;
	}
	return 0;
}

bool report_failed(const struct guest_report *r)
{
	if (r->corrupt_total)
		return true;
	for (unsigned int i = 0; i < r->nr_vcpus; i++)
		if (r->vcpu[i].unrecoverable || r->vcpu[i].exception ||
		    r->vcpu[i].corrupted)
			return true;
	return false;
}

bool report_all_done(const struct guest_report *r)
{
	for (unsigned int i = 0; i < r->nr_vcpus; i++)
		if (!r->vcpu[i].done)
			return false;
	return r->nr_vcpus > 0;
}

bool report_passed(const struct guest_report *r)
{
	return report_all_done(r) && !report_failed(r);
}

/* ---- migration ------------------------------------------------------ */

struct rcur {
	unsigned char *w;
	const unsigned char *r;
	size_t n, left;
	bool bad;
};

static void put_u(struct rcur *c, uint64_t v, unsigned int bytes)
{
	for (unsigned int i = 0; i < bytes; i++, c->n++)
		if (c->w)
			c->w[c->n] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u(struct rcur *c, unsigned int bytes)
{
	uint64_t v = 0;

	if (c->left < bytes) {
		c->bad = true;
		return 0;
	}
	for (unsigned int i = 0; i < bytes; i++)
		v |= (uint64_t)c->r[c->n++] << (8 * i);
	c->left -= bytes;
	return v;
}

static bool get_bool(struct rcur *c)
{
	uint64_t v = get_u(c, 1);

	c->bad |= v > 1;
	return v == 1;
}

/*
 * As report_cpuid_decode or report_init leave it: NUL-terminated, printable
 * ASCII before the NUL (it goes out in JSON: a byte that is not UTF-8 there
 * would break a QMP client).
 */
static bool vendor_ok(const char *s, size_t n)
{
	if (s[n - 1])
		return false;
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* One walk for both directions: save writes each field, load reads it. */
#define F(field, bytes)                                                  \
	do {                                                             \
		if (load)                                                \
			(field) = (__typeof__(field))get_u(c, (bytes));  \
		else                                                     \
			put_u(c, (uint64_t)(field), (bytes));            \
	} while (0)
#define B(field)                                  \
	do {                                      \
		if (load)                         \
			(field) = get_bool(c);    \
		else                              \
			put_u(c, (field), 1);     \
	} while (0)

static void walk(struct guest_report *r, struct rcur *c, bool load)
{
	F(r->nr_vcpus, 4);
	if (load && r->nr_vcpus > GL_MAX_VCPUS)
		c->bad = true;
	for (unsigned int i = 0; i < r->nr_vcpus && !c->bad; i++) {
		struct report_vcpu *v = &r->vcpu[i];

		B(v->started); B(v->done); B(v->unrecoverable); B(v->exception);
		F(v->exc_vector, 8); F(v->exc_rip, 8);
		F(v->slice_start, 8); F(v->slice_end, 8); F(v->pages, 8);
		F(v->passes, 4);
		F(v->verified, 8); F(v->corrupted, 8); F(v->skipped, 8);
		F(v->machine_checks, 8); F(v->retired, 8); F(v->polled, 8);
		B(v->cpuid.valid);
		for (unsigned int k = 0; k < sizeof(v->cpuid.vendor); k++)
			F(v->cpuid.vendor[k], 1);
		F(v->cpuid.max_leaf, 4); F(v->cpuid.signature, 4);
		F(v->cpuid.max_ext_leaf, 4); F(v->cpuid.ext_80000007_ebx, 4);
		if (load && !vendor_ok(v->cpuid.vendor, sizeof(v->cpuid.vendor)))
			c->bad = true;
	}
	F(r->ncorrupt, 4); F(r->nmce, 4); F(r->nretired, 4);
	if (load && (r->ncorrupt > REPORT_MAX_ITEMS || r->nmce > REPORT_MAX_ITEMS ||
		     r->nretired > REPORT_MAX_ITEMS))
		c->bad = true;
	F(r->corrupt_total, 8); F(r->mce_total, 8); F(r->retired_total, 8);
	F(r->retired_bytes, 8); F(r->polled_total, 8); F(r->bad_messages, 8);
	for (unsigned int i = 0; i < r->ncorrupt && !c->bad; i++) {
		struct report_corruption *x = &r->corrupt[i];

		F(x->vcpu, 4); F(x->pass, 4); F(x->gpa, 8); F(x->offset, 8); F(x->want, 8);
		F(x->got, 8);
	}
	for (unsigned int i = 0; i < r->nmce && !c->bad; i++) {
		struct report_mce *x = &r->mce[i];

		F(x->vcpu, 4); F(x->bank, 4); F(x->status, 8); F(x->addr, 8); F(x->misc, 8);
		F(x->mcg_status, 8); F(x->rip, 8); B(x->polled);
	}
	for (unsigned int i = 0; i < r->nretired && !c->bad; i++) {
		struct report_range *x = &r->retired[i];

		F(x->vcpu, 4); F(x->gpa, 8); F(x->size, 8);
	}
}
#undef F
#undef B

size_t report_save(const struct guest_report *r, void *buf)
{
	struct rcur c = { .w = buf };

	walk((struct guest_report *)r, &c, false);
	return c.n;
}

int report_load(struct guest_report *r, unsigned int nr_vcpus, const void *buf, size_t len)
{
	struct guest_report *tmp = calloc(1, sizeof(*tmp));
	struct rcur c = { .r = buf, .left = len };

	if (!tmp)
		return -ENOMEM;
	walk(tmp, &c, true);
	if (c.bad || c.left || tmp->nr_vcpus != nr_vcpus) {
		free(tmp);
		return -EPROTO;
	}
	*r = *tmp;
	free(tmp);
	return 0;
}
