// SPDX-License-Identifier: GPL-2.0-or-later
/* What the run came to: the guest's report and the summary as JSON, the exit code. */
#include <stdbool.h>
#include <stdint.h>

#include "vmm_internal.h"

static json_object *vcpu_json(struct vmm *vm, unsigned int i)
{
	const struct report_vcpu *rv = &vm->report.vcpu[i];
	const struct vcpu *v = &vm->vcpus[i];
	json_object *o = json_object_new_object();

#define ADD(k, val) json_object_object_add(o, (k), (val))
	ADD("vcpu", json_object_new_int((int)i));
	ADD("started", json_object_new_boolean(rv->started));
	ADD("done", json_object_new_boolean(rv->done));
	ADD("passes", json_object_new_int((int)rv->passes));
	ADD("pages", json_object_new_uint64(rv->pages));
	ADD("slice-start", json_object_new_uint64(rv->slice_start));
	ADD("slice-end", json_object_new_uint64(rv->slice_end));
	ADD("verified", json_object_new_uint64(rv->verified));
	ADD("corrupted", json_object_new_uint64(rv->corrupted));
	ADD("skipped", json_object_new_uint64(rv->skipped));
	ADD("machine-checks", json_object_new_uint64(rv->machine_checks));
	ADD("polled-errors", json_object_new_uint64(rv->polled));
	ADD("retired", json_object_new_uint64(rv->retired));
	ADD("unrecoverable", json_object_new_boolean(rv->unrecoverable));
	ADD("exception", rv->exception ? json_object_new_uint64(rv->exc_vector) : NULL);
	ADD("failure", v->failure[0] ? json_object_new_string(v->failure) : NULL);
	ADD("ram-mmio-exits", json_object_new_uint64(
		__atomic_load_n(&v->ram_mmio_exits, __ATOMIC_RELAXED)));
	ADD("cpuid", rv->cpuid.valid ? vmm_cpuid_json(&rv->cpuid) : NULL);
#undef ADD
	return o;
}

static bool vmm_failed_locked(struct vmm *vm)
{
	if (vm->fatal || report_failed(&vm->report) || vm->host_check.corrupted)
		return true;
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].state == VCPU_FAILED)
			return true;
	return false;
}

/* With vm->lock held. */
static json_object *report_json_locked(struct vmm *vm)
{
	const struct guest_report *r = &vm->report;
	json_object *o = json_object_new_object(), *a;
	uint64_t verified = 0, pages = 0;

	for (unsigned int i = 0; i < r->nr_vcpus; i++) {
		verified += r->vcpu[i].verified;
		pages += r->vcpu[i].pages;
	}
	json_object_object_add(o, "status", json_object_new_string(
		vmm_failed_locked(vm) ? "failed" : report_all_done(r) ? "passed" : "running"));
	json_object_object_add(o, "boot-count", json_object_new_uint64(vm->boot_count));
	json_object_object_add(o, "pages", json_object_new_uint64(pages));
	json_object_object_add(o, "pages-verified", json_object_new_uint64(verified));
	json_object_object_add(o, "pages-corrupted", json_object_new_uint64(r->corrupt_total));
	json_object_object_add(o, "machine-checks", json_object_new_uint64(r->mce_total));
	json_object_object_add(o, "polled-errors", json_object_new_uint64(r->polled_total));
	json_object_object_add(o, "pages-retired", json_object_new_uint64(r->retired_total));
	json_object_object_add(o, "bytes-retired", json_object_new_uint64(r->retired_bytes));
	json_object_object_add(o, "bad-messages", json_object_new_uint64(r->bad_messages));

	a = json_object_new_array();
	for (unsigned int i = 0; i < r->nr_vcpus; i++)
		json_object_array_add(a, vcpu_json(vm, i));
	json_object_object_add(o, "vcpus", a);

	a = json_object_new_array();
	for (unsigned int i = 0; i < r->ncorrupt; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "vcpu", json_object_new_int((int)r->corrupt[i].vcpu));
		json_object_object_add(c, "pass", json_object_new_int((int)r->corrupt[i].pass));
		json_object_object_add(c, "gpa", json_object_new_uint64(r->corrupt[i].gpa));
		json_object_object_add(c, "offset", json_object_new_uint64(r->corrupt[i].offset));
		json_object_object_add(c, "expected", json_object_new_uint64(r->corrupt[i].want));
		json_object_object_add(c, "found", json_object_new_uint64(r->corrupt[i].got));
		json_object_array_add(a, c);
	}
	json_object_object_add(o, "corrupted", a);

	a = json_object_new_array();
	for (unsigned int i = 0; i < r->nmce; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "vcpu", json_object_new_int((int)r->mce[i].vcpu));
		json_object_object_add(c, "bank", json_object_new_int((int)r->mce[i].bank));
		json_object_object_add(c, "status", json_object_new_uint64(r->mce[i].status));
		json_object_object_add(c, "addr", json_object_new_uint64(r->mce[i].addr));
		json_object_object_add(c, "misc", json_object_new_uint64(r->mce[i].misc));
		json_object_object_add(c, "mcg-status", json_object_new_uint64(r->mce[i].mcg_status));
		json_object_object_add(c, "polled", json_object_new_boolean(r->mce[i].polled));
		json_object_array_add(a, c);
	}
	json_object_object_add(o, "machine-check-log", a);

	a = json_object_new_array();
	for (unsigned int i = 0; i < r->nretired; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "vcpu", json_object_new_int((int)r->retired[i].vcpu));
		json_object_object_add(c, "gpa", json_object_new_uint64(r->retired[i].gpa));
		json_object_object_add(c, "size", json_object_new_uint64(r->retired[i].size));
		json_object_array_add(a, c);
	}
	json_object_object_add(o, "retired", a);
	return o;
}

json_object *vmm_guest_report_json(struct vmm *vm)
{
	json_object *o;

	pthread_mutex_lock(&vm->lock);
	o = report_json_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return o;
}

int vmm_exit_code(struct vmm *vm)
{
	int code;

	pthread_mutex_lock(&vm->lock);
	code = vmm_failed_locked(vm) ? 1 : 0;
	pthread_mutex_unlock(&vm->lock);
	return code;
}

json_object *vmm_summary_json(struct vmm *vm)
{
	json_object *o = json_object_new_object();
	uint64_t ram_mmio = 0;
	bool failed;

	pthread_mutex_lock(&vm->lock);
	failed = vmm_failed_locked(vm);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		ram_mmio += __atomic_load_n(&vm->vcpus[i].ram_mmio_exits, __ATOMIC_RELAXED);
	json_object_object_add(o, "result", json_object_new_string(failed ? "fail" : "pass"));
	json_object_object_add(o, "reason", json_object_new_string(vm->quit_reason));
	json_object_object_add(o, "completed", json_object_new_boolean(report_all_done(&vm->report)));
	json_object_object_add(o, "backend", json_object_new_string(ram_backend_name(vm->ram.backend)));
	json_object_object_add(o, "mem", json_object_new_uint64(vm->ram.size));
	json_object_object_add(o, "page-size", json_object_new_uint64(vm->ram.page_size));
	json_object_object_add(o, "vcpus", json_object_new_int((int)vm->cfg.nr_vcpus));
	json_object_object_add(o, "cpu-vendor", json_object_new_string(x86_vendor_name(vm->x86.vendor)));
	json_object_object_add(o, "cpu-vendor-id", json_object_new_string(vm->x86.vendor_id));
	json_object_object_add(o, "passes", json_object_new_int((int)vm->cfg.passes));
	json_object_object_add(o, "ram-mmio-exits", json_object_new_uint64(ram_mmio));
	json_object_object_add(o, "guest", report_json_locked(vm));
	json_object_object_add(o, "memory-failure-events", json_object_new_uint64(vm->memory_failures));
	if (vm->host_check.ran) {
		json_object *h = json_object_new_object();

		json_object_object_add(h, "pages", json_object_new_uint64(vm->host_check.pages));
		json_object_object_add(h, "corrupted", json_object_new_uint64(vm->host_check.corrupted));
		json_object_object_add(h, "unreadable", json_object_new_uint64(vm->host_check.unreadable));
		json_object_object_add(h, "first-bad", vm->host_check.corrupted
				       ? json_object_new_uint64(vm->host_check.first_bad) : NULL);
		json_object_object_add(o, "host-check", h);
	}
	json_object_object_add(o, "sample", json_object_new_int((int)vm->cfg.sample));
	pthread_mutex_unlock(&vm->lock);
	{
		json_object *me = vmm_memory_errors_json(vm), *c, *lost;

		json_object_object_get_ex(me, "counters", &c);
		json_object_object_get_ex(c, "bytes-lost", &lost);
		json_object_object_add(o, "bytes-lost", json_object_get(lost));
		json_object_object_add(o, "memory-errors", me);
	}
	return o;
}
