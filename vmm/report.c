// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
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
