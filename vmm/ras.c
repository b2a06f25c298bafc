// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The VMM's use of libvmras: it registers RAM and vCPUs, kicks vCPUs and
 * resets or stops the VM when the library asks, turns each outcome into a
 * QMP MEMORY_FAILURE event, and injects errors for tests and operators.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmras/x86_mce.h"
#include "vmm_internal.h"

static void ras_kick(void *opaque, unsigned int index)
{
	struct vmm *vm = opaque;

	if (index >= vm->cfg.nr_vcpus)
		return;
	pthread_mutex_lock(&vm->lock);
	vcpu_kick(&vm->vcpus[index]);
	pthread_mutex_unlock(&vm->lock);
}

static void ras_reset(void *opaque, const char *why)
{
	struct vmm *vm = opaque;

	pthread_mutex_lock(&vm->lock);
	vm->reset_requested = true;
	snprintf(vm->reset_reason, sizeof(vm->reset_reason), "%s", why);
	pthread_mutex_unlock(&vm->lock);
	vmm_wake_main(vm);
}

static void ras_stop(void *opaque, const char *why)
{
	struct vmm *vm = opaque;
	char reason[160];

	pthread_mutex_lock(&vm->lock);
	vm->fatal = true;
	pthread_mutex_unlock(&vm->lock);
	fprintf(stderr, "vmras run: memory error, policy fatal: %s\n", why);
	snprintf(reason, sizeof(reason), "fatal memory error: %s", why);
	vmm_request_quit(vm, reason);
}

static void ras_failure(void *opaque, const struct vmras_failure *f)
{
	struct vmm *vm = opaque;
	char buf[768];
	json_object *d;

	pthread_mutex_lock(&vm->lock);
	vm->memory_failures++;
	pthread_mutex_unlock(&vm->lock);
	if (vmras_failure_json(f, buf, sizeof(buf)) < 0)
		return;
	d = json_tokener_parse(buf);
	if (d)
		vmm_emit(vm, "MEMORY_FAILURE", d);
}

static void ras_pause(void *opaque)
{
	vmm_pause(opaque);
}

static void ras_resume(void *opaque)
{
	vmm_resume(opaque);
}

/* A vCPU waiting inside libvmras is outside KVM_RUN: as good as parked. */
static void ras_vcpu_blocked(void *opaque, unsigned int index, bool blocked)
{
	struct vmm *vm = opaque;

	if (index >= vm->cfg.nr_vcpus)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->vcpus[index].parked = blocked;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/*
 * Guest RAM changed under a shared mapping (vCPUs paused): whoever shares
 * it must switch now. This VMM has no sharers, so it accepts and tells
 * QMP clients.
 */
static int ras_remap(void *opaque, const struct vmras_remap *m)
{
	struct vmm *vm = opaque;
	json_object *d = json_object_new_object();

	json_object_object_add(d, "gpa", json_object_new_uint64(m->gpa));
	json_object_object_add(d, "size", json_object_new_uint64(m->size));
	json_object_object_add(d, "fd", json_object_new_int(m->fd));
	json_object_object_add(d, "offset", json_object_new_uint64(m->offset));
	json_object_object_add(d, "restore", json_object_new_boolean(m->restore));
	vmm_emit(vm, "VMRAS_MEMORY_REMAPPED", d);
	return 0;
}

/*
 * The guest's CPU vendor, from the CPUID it was given (leaf 0; the same
 * reading x86_machine_init made when it chose the RAS bits of that CPUID).
 */
static enum vmras_x86_vendor guest_vendor(const struct x86_machine *m)
{
	return x86_cpuid_vendor(m->cpuid);
}

/* The record's path (NULL: none), and the VM's name and UUID in it. */
static const char *record_setup(struct vmm *vm)
{
	const char *path = vm->cfg.record ? vm->cfg.record : VMM_DEFAULT_RECORD;
	unsigned char u[16];

	snprintf(vm->rec_name, sizeof(vm->rec_name), "%s", vm->cfg.name ? vm->cfg.name : "");
	if (!vm->cfg.name)
		snprintf(vm->rec_name, sizeof(vm->rec_name), "vm-%d", (int)getpid());
	if (vm->cfg.uuid) {
		snprintf(vm->rec_uuid, sizeof(vm->rec_uuid), "%s", vm->cfg.uuid);
	} else {
		/* Version 4 (random); a failed getrandom leaves the pid in it. */
		memset(u, 0, sizeof(u));
		if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u))
			memcpy(u, &(int){ getpid() }, sizeof(int));
		u[6] = (u[6] & 0x0f) | 0x40;
		u[8] = (u[8] & 0x3f) | 0x80;
		snprintf(vm->rec_uuid, sizeof(vm->rec_uuid),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
			 u[12], u[13], u[14], u[15]);
	}
	if (!*path)
		return NULL;
	/* The host's shared database: its directory may not exist yet. */
	if (!vm->cfg.record)
		(void)mkdir("/var/lib/vmras", 0755);
	return path;
}

int vmm_ras_init(struct vmm *vm, struct vmm_error *e)
{
	const char *record = vm->rec_path = record_setup(vm);
	char why[224];
	struct vmras_config cfg = {
		.policy = vm->cfg.policy,
		.ops = {
			.opaque = vm,
			.kick_vcpu = ras_kick,
			.request_reset = ras_reset,
			.request_stop = ras_stop,
			.failure = ras_failure,
			.pause_vcpus = ras_pause,
			.resume_vcpus = ras_resume,
			.vcpu_blocked = ras_vcpu_blocked,
			.remap = ras_remap,
		},
		.event_log = vm->cfg.event_log,
		.record = record,
		.vm_name = vm->rec_name,
		.vm_uuid = vm->rec_uuid,
	};
	struct vmras_x86_config x86 = {
		.mcg_cap = vm->x86.mcg_cap,
		.vendor = guest_vendor(&vm->x86),
		.no_broadcast = vm->cfg.no_broadcast,
	};
	static const enum vmras_backing backing[RAM_BACKEND_COUNT] = {
		[RAM_ANON] = VMRAS_BACKING_ANON,
		[RAM_SHMEM] = VMRAS_BACKING_SHMEM,
		[RAM_HUGETLB_2M] = VMRAS_BACKING_HUGETLB,
		[RAM_HUGETLB_1G] = VMRAS_BACKING_HUGETLB,
		[RAM_FILE] = VMRAS_BACKING_FILE,
		[RAM_GUEST_MEMFD] = VMRAS_BACKING_GUEST_MEMFD,
	};
	struct vmras_region region = {
		.gpa = 0,
		.size = vm->ram.size,
		.hva = vm->ram.hva,
		.backing = backing[vm->ram.backend],
		.fd = vm->ram.fd,
		.fd_offset = 0,
		.page_size = vm->ram.page_size,
		.slot = 0,
	};
	int r;

	/* A file on hugetlbfs is hugetlb memory. */
	if (vm->ram.backend == RAM_FILE && vm->ram.page_size > 4096)
		region.backing = VMRAS_BACKING_HUGETLB;
	r = vmras_new(&cfg, &vm->ras);
	if (r)
		return vmm_fail(e, r, "libvmras: create context%s",
				cfg.event_log ? " (or open --event-log)" : "");
	r = vmras_x86_setup(vm->ras, &x86);
	if (r)
		return vmm_fail(e, r, "libvmras: x86 machine checks (MCG_CAP 0x%llx)",
				(unsigned long long)x86.mcg_cap);
	r = vmras_add_region(vm->ras, &region);
	if (r)
		return vmm_fail(e, r, "libvmras: register guest RAM");
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++) {
		r = vmras_add_vcpu(vm->ras, i, vm->vcpus[i].fd);
		if (r)
			return vmm_fail(e, r, "libvmras: register vCPU %u", i);
	}
	r = vmras_start(vm->ras);
	if (r)
		return vmm_fail(e, r, "libvmras: start (SIGBUS handler, engine)");
	/* A record that cannot be kept does not stop the VM: one line, counted. */
	if (record && vmras_record_status(vm->ras, why, sizeof(why)))
		fprintf(stderr, "vmras run: recording off: %s: %s\n", record, why);
	return 0;
}

/* With vm->lock held: the vCPU whose data slice holds gpa, or 0. */
static int owner_of(struct vmm *vm, uint64_t gpa)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++) {
		const struct report_vcpu *rv = &vm->report.vcpu[i];

		if (rv->started && gpa >= rv->slice_start && gpa < rv->slice_end)
			return (int)i;
	}
	return 0;
}

int vmm_inject_error(struct vmm *vm, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		     bool signal, struct vmm_error *e)
{
	int r;

	if (!ram_contains(&vm->ram, gpa, 1))
		return vmm_failf(e, -EFAULT, "GPA 0x%" PRIx64 " is outside guest RAM (0..0x%" PRIx64 ")",
				 gpa, vm->ram.size);
	if (vcpu >= (int)vm->cfg.nr_vcpus)
		return vmm_failf(e, -EINVAL, "no vCPU %d (the VM has %u)", vcpu, vm->cfg.nr_vcpus);
	if (vcpu < 0) {
		pthread_mutex_lock(&vm->lock);
		vcpu = owner_of(vm, gpa);
		pthread_mutex_unlock(&vm->lock);
	}
	r = vmras_inject(vm->ras, gpa, kind, vcpu, signal);
	if (r)
		return vmm_fail(e, r, "inject %s at GPA 0x%" PRIx64, kind == VMRAS_AR ? "AR" : "AO", gpa);
	return 0;
}

/* Scripted injections due after vCPU `from` finished pass `pass`. */
void vmm_ras_pass_done(struct vmm *vm, unsigned int from, unsigned int pass)
{
	for (unsigned int i = 0; i < vm->cfg.ninject; i++) {
		struct vmm_inject *in = &vm->cfg.inject[i];
		struct vmm_error e;
		bool due;

		pthread_mutex_lock(&vm->lock);
		due = !in->done && in->pass == pass && owner_of(vm, in->gpa) == (int)from;
		if (due)
			in->done = true;
		pthread_mutex_unlock(&vm->lock);
		if (due && vmm_inject_error(vm, in->gpa, in->kind, -1, true, &e))
			fprintf(stderr, "vmras run: --inject: %s\n", e.msg);
	}
}

json_object *vmm_memory_error_stats_json(struct vmm *vm)
{
	struct vmras_registry *reg = vmras_get_registry(vm->ras);
	size_t n = vmras_registry_count(reg);
	struct vmras_poison *list = calloc(n ? n : 1, sizeof(*list));
	json_object *o = json_object_new_object();
	uint64_t errors = 0, poisoned = 0;
	bool listed = list != NULL;
	struct vmras_stats st;
	char why[224];
	int rec = vmras_record_status(vm->ras, why, sizeof(why));

	vmras_get_stats(vm->ras, &st);
	for (int a = 0; a < VMRAS_ACTION_COUNT; a++)
		errors += st.actions[a];
	if (list) {
		n = vmras_registry_snapshot(reg, list, n);
		for (size_t i = 0; i < n; i++)
			poisoned += list[i].size;
		free(list);
	}
	json_object_object_add(o, "vm", json_object_new_string(vm->rec_name));
	json_object_object_add(o, "uuid", json_object_new_string(vm->rec_uuid));
	json_object_object_add(o, "record", vm->rec_path ? json_object_new_string(vm->rec_path) : NULL);
	json_object_object_add(o, "recording", json_object_new_boolean(rec == 0));
	json_object_object_add(o, "record-error", rec && vm->rec_path ? json_object_new_string(why)
								    : NULL);
#define C(k, v) json_object_object_add(o, (k), json_object_new_uint64(v))
	C("errors-total", errors);
	C("bytes-lost", st.bytes_lost);
	C("poisoned-bytes", listed ? poisoned : 0);
	C("huge-page-splits", st.splits);
	C("notifications-deferred", st.notice_deferred);
	C("notifications-undeliverable", st.notice_undeliverable);
	C("events-dropped", st.dropped);
	C("record-dropped", st.record_dropped);
	C("record-write-errors", st.record_errors);
#undef C
	return o;
}

json_object *vmm_memory_errors_json(struct vmm *vm)
{
	struct vmras_registry *reg = vmras_get_registry(vm->ras);
	struct vmras_poison list[256];
	struct vmras_stats st;
	size_t total = vmras_registry_snapshot(reg, list, 256);
	json_object *o = json_object_new_object(), *a = json_object_new_array(), *c;

	for (size_t i = 0; i < total && i < 256; i++) {
		json_object *p = json_object_new_object();
		const struct vmras_poison *x = &list[i];

		json_object_object_add(p, "gpa", json_object_new_uint64(x->gpa));
		json_object_object_add(p, "hva", json_object_new_uint64(x->hva));
		json_object_object_add(p, "size", json_object_new_uint64(x->size));
		json_object_object_add(p, "kind", json_object_new_string(x->kind == VMRAS_AR ? "ar" : "ao"));
		json_object_object_add(p, "source", json_object_new_string(vmras_source_name(x->source)));
		json_object_object_add(p, "reports", json_object_new_int((int)x->reports));
		json_object_object_add(p, "contained", json_object_new_boolean(x->state & VMRAS_PS_CONTAINED));
		json_object_object_add(p, "guest-notified", json_object_new_boolean(x->state & VMRAS_PS_NOTIFIED));
		json_object_object_add(p, "ignored", json_object_new_boolean(x->state & VMRAS_PS_IGNORED));
		json_object_object_add(p, "vcpu", x->vcpu >= 0 ? json_object_new_int(x->vcpu) : NULL);
		json_object_object_add(p, "first-ns", json_object_new_uint64(x->first_ns));
		json_object_array_add(a, p);
	}
	json_object_object_add(o, "errors", a);
	json_object_object_add(o, "total", json_object_new_uint64(total));

	vmras_get_stats(vm->ras, &st);
	c = json_object_new_object();
	for (int s = 0; s < VMRAS_SRC_COUNT; s++) {
		char k[48];

		snprintf(k, sizeof(k), "received-%s", vmras_source_name(s));
		json_object_object_add(c, k, json_object_new_uint64(st.received[s]));
	}
	for (int act = 0; act < VMRAS_ACTION_COUNT; act++) {
		char k[32];

		snprintf(k, sizeof(k), "action-%s", vmras_action_name(act));
		json_object_object_add(c, k, json_object_new_uint64(st.actions[act]));
	}
#define C(k, v) json_object_object_add(c, (k), json_object_new_uint64(v))
	C("dropped", st.dropped);
	C("duplicates", st.duplicates);
	C("copies-refused", st.copies_refused);
	C("contained", st.contained);
	C("contain-failed", st.contain_failed);
	C("mce-delivered", st.notice_delivered);
	C("mce-deferred", st.notice_deferred);
	C("mce-undeliverable", st.notice_undeliverable);
	C("mce-broadcast", st.notice_broadcast);
	C("mce-broadcast-joined", st.notice_broadcast_joined);
	C("mce-broadcast-late", st.notice_broadcast_late);
	C("not-guest-ram", st.not_guest_ram);
	C("bytes-lost", st.bytes_lost);
	C("log-errors", st.log_errors);
	C("huge-pages-split", st.splits);
	C("subpages-salvaged", st.subpages_salvaged);
	C("split-pause-max-ns", st.split_pause_ns_max);
	C("splits-refused", st.splits_refused);
	C("uffd-faults", st.uffd_faults);
	C("uffd-unrouted", st.uffd_unrouted);
	C("record-dropped", st.record_dropped);
	C("record-errors", st.record_errors);
	C("fill-errors", st.fill_errors);
	C("reports-lost", st.reports_lost);
#undef C
	json_object_object_add(o, "counters", c);
	return o;
}
