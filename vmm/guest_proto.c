// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The VMM's side of the test-guest protocol (guest/layout.h): the boot
 * information the guest starts from, the messages it reports, and the
 * host-side check of the pages a sampling guest does not read itself.
 */
#include <stdint.h>
#include <string.h>

#include "guest/layout.h"
#include "vmm_internal.h"

/* Sampling: every data page holds generation 1 before the guest starts. */
static void host_fill(struct vmm *vm)
{
	for (uint64_t p = GL_DATA_START; p + 4096 <= vm->ram.size; p += 4096) {
		uint64_t w = gl_pattern(p, 1, vm->cfg.seed), *d = (uint64_t *)(vm->ram.hva + p);

		for (int i = 0; i < 512; i++)
			d[i] = w;
	}
}

/*
 * After the guest finished: every data page, checked from the host side,
 * holds what the guest last wrote there (pages it samples) or what the VMM
 * wrote before boot (the rest). Retired pages are skipped.
 */
void vmm_guest_host_check(struct vmm *vm)
{
	uint64_t pages = (vm->ram.size - GL_DATA_START) / 4096, per = pages / vm->cfg.nr_vcpus;
	struct host_check *hc = &vm->host_check;

	memset(hc, 0, sizeof(*hc));
	hc->ran = true;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t p = GL_DATA_START + i * 4096, buf[512], want;
		unsigned int cpu = (unsigned int)(per ? i / per : 0);
		uint64_t start, idx;
		bool sampled = vm->cfg.sample <= 1;

		if (cpu >= vm->cfg.nr_vcpus)
			cpu = vm->cfg.nr_vcpus - 1;
		start = GL_DATA_START + cpu * per * 4096;
		idx = (p - start) / 4096;
		if (!sampled) {
			struct gl_boot_info *bi = (struct gl_boot_info *)(vm->ram.hva + GL_BOOT_INFO);

			sampled = idx % vm->cfg.sample == 0;
			for (int k = 0; k < GL_MUST_MAX; k++)
				sampled |= bi->must[k] == p;
		}
		want = gl_pattern(p, sampled ? vm->report.vcpu[cpu].passes + 1 : 1, vm->cfg.seed);
		if (vmras_registry_contains(vmras_get_registry(vm->ras), p))
			continue;
		if (vmras_copy_from_guest(vm->ras, buf, p, sizeof(buf))) {
			hc->unreadable++;
			continue;
		}
		hc->pages++;
		for (int w = 0; w < 512; w++)
			if (buf[w] != want) {
				if (!hc->corrupted++)
					hc->first_bad = p + (uint64_t)w * 8;
				break;
			}
	}
}

/* Boot info for a (re)booting guest; with sampling, every data page filled first. */
void vmm_guest_boot_info(struct vmm *vm)
{
	struct gl_boot_info *bi = (struct gl_boot_info *)(vm->ram.hva + GL_BOOT_INFO);

	if (vm->cfg.sample > 1)
		host_fill(vm);
	*bi = (struct gl_boot_info){
		.magic = GL_BOOT_MAGIC,
		.version = GL_BOOT_VERSION,
		.nr_vcpus = vm->cfg.nr_vcpus,
		.ram_size = vm->ram.size,
		.data_start = GL_DATA_START,
		.data_end = vm->ram.size,
		.seed = vm->cfg.seed,
		.passes = vm->cfg.passes,
		.mce_banks = (uint32_t)(vm->x86.mcg_cap & 0xff),
		.flags = (vm->cfg.guest_no_mce ? GL_BOOT_NO_MCE : 0) |
			 (vm->cfg.sample > 1 ? GL_BOOT_HOST_FILLED : 0),
		.sample = vm->cfg.sample,
		.boot_count = vm->boot_count,
	};
	/* Pages always checked when sampling: each scripted error's neighbours
	 * and its huge page's first and last subpages. */
	for (unsigned int i = 0, n = 0; i < vm->cfg.ninject && n + 5 <= GL_MUST_MAX; i++) {
		uint64_t g = vm->cfg.inject[i].gpa & ~4095ULL;
		uint64_t huge = g & ~(vm->ram.page_size - 1);
		uint64_t cand[5] = { g - 4096, g, g + 4096, huge, huge + vm->ram.page_size - 4096 };

		for (int k = 0; k < 5; k++)
			if (cand[k] >= GL_DATA_START && cand[k] < vm->ram.size)
				bi->must[n++] = cand[k];
	}
}

json_object *vmm_cpuid_json(const struct report_cpuid *c)
{
	json_object *o = json_object_new_object();
	uint32_t family, model, stepping;

	report_cpu_model(c->signature, &family, &model, &stepping);
	json_object_object_add(o, "vendor", json_object_new_string(c->vendor));
	json_object_object_add(o, "signature", json_object_new_uint64(c->signature));
	json_object_object_add(o, "family", json_object_new_uint64(family));
	json_object_object_add(o, "model", json_object_new_uint64(model));
	json_object_object_add(o, "stepping", json_object_new_uint64(stepping));
	json_object_object_add(o, "max-leaf", json_object_new_uint64(c->max_leaf));
	json_object_object_add(o, "max-ext-leaf", json_object_new_uint64(c->max_ext_leaf));
	json_object_object_add(o, "ext-80000007-ebx", json_object_new_uint64(c->ext_80000007_ebx));
	return o;
}

static json_object *message_event(const struct gl_msg *m)
{
	json_object *d = json_object_new_object();
	const uint64_t *a = m->a;

#define U64(k, v) json_object_object_add(d, (k), json_object_new_uint64(v))
	json_object_object_add(d, "vcpu", json_object_new_int((int)m->vcpu));
	json_object_object_add(d, "kind", json_object_new_string(report_msg_name(m->type)));
	switch (m->type) {
	case GL_MSG_STARTED: U64("slice-start", a[0]); U64("slice-end", a[1]); U64("pages", a[2]); break;
	case GL_MSG_PASS_DONE: U64("pass", a[0]); U64("verified", a[1]); U64("corrupted", a[2]); U64("skipped", a[3]); break;
	case GL_MSG_CORRUPTED: U64("gpa", a[0]); U64("offset", a[1]); U64("expected", a[2]); U64("found", a[3]); break;
	case GL_MSG_MCE:
	case GL_MSG_POLLED:
		U64("bank", a[0]); U64("status", a[1]); U64("addr", a[2]); U64("misc", a[3]); U64("mcg-status", a[4]);
		if (m->type == GL_MSG_MCE)
			U64("rip", a[5]); /* where the guest was: which access it interrupted */
		break;
	case GL_MSG_RETIRED: U64("gpa", a[0]); U64("size", a[1]); break;
	case GL_MSG_UNRECOVERABLE: U64("mcg-status", a[0]); U64("rip", a[1]); break;
	case GL_MSG_EXCEPTION: U64("vector", a[0]); U64("error-code", a[1]); U64("rip", a[2]); break;
	case GL_MSG_DONE: U64("passes", a[0]); U64("verified", a[1]); U64("corrupted", a[2]); U64("machine-checks", a[3]); U64("polled-errors", a[4]); break;
	case GL_MSG_CPUID: {
		struct report_cpuid c;
		json_object *o;

		report_cpuid_decode(m, &c);
		o = vmm_cpuid_json(&c);
		json_object_object_foreach(o, k, val)
			json_object_object_add(d, k, json_object_get(val));
		json_object_put(o);
		break;
	}
	}
#undef U64
	return d;
}

void vmm_guest_message(struct vmm *vm, struct vcpu *v, uint64_t gpa)
{
	struct gl_msg m;
	int r;

	if (!ram_contains(&vm->ram, gpa, sizeof(m))) {
		pthread_mutex_lock(&vm->lock);
		vm->report.bad_messages++;
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	if (vmras_copy_from_guest(vm->ras, &m, gpa, sizeof(m))) {
		pthread_mutex_lock(&vm->lock);
		vm->report.bad_messages++;
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	r = report_apply(&vm->report, v->index, &m);
	pthread_mutex_unlock(&vm->lock);
	if (r == 0)
		vmm_emit(vm, "VMRAS_GUEST_REPORT", message_event(&m));
	if (r == 0 && m.type == GL_MSG_PASS_DONE)
		vmm_ras_pass_done(vm, v->index, (unsigned int)m.a[0]);
	if (m.type == GL_MSG_DONE || m.type == GL_MSG_CORRUPTED)
		vmm_wake_main(vm);
}
