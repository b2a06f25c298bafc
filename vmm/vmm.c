// SPDX-License-Identifier: GPL-2.0-or-later
/* VM lifecycle: create, run until done, pause/resume, reset, quit. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/layout.h"
#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "util/fileio.h"
#include "vmm_internal.h"

extern const unsigned char vmm_builtin_guest[];
extern const size_t vmm_builtin_guest_size;

static const char *const status_names[] = {
	[VMM_RUNNING] = "running",
	[VMM_PAUSED] = "paused",
	[VMM_SHUTDOWN] = "shutdown",
};

const char *vmm_status_name(enum vmm_status s)
{
	return (unsigned int)s <= VMM_SHUTDOWN ? status_names[s] : "unknown";
}

void vmm_wake_main(struct vmm *vm)
{
	uint64_t one = 1;

	(void)!write(vm->wake_fd, &one, sizeof(one));
}

void vmm_emit(struct vmm *vm, const char *event, json_object *data)
{
	qmp_server_emit(vm->qmp, event, data);
}

static int load_guest_file(struct vmm *vm, const char *path, struct vmm_error *e)
{
	unsigned char *buf = malloc(GL_IMAGE_MAX + 1);
	ssize_t n;

	if (!buf)
		return vmm_fail(e, -ENOMEM, "allocate guest image buffer");
	n = read_file_at(AT_FDCWD, path, (char *)buf, GL_IMAGE_MAX + 1);
	if (n < 0) {
		free(buf);
		if (n == -EFBIG)
			return vmm_failf(e, -EFBIG, "guest image %s is larger than %llu bytes",
					 path, GL_IMAGE_MAX);
		return vmm_fail(e, (int)n, "read guest image %s", path);
	}
	if (n == 0) {
		free(buf);
		return vmm_failf(e, -EINVAL, "guest image %s is empty", path);
	}
	vm->image_owned = buf;
	vm->image = buf;
	vm->image_size = (size_t)n;
	return 0;
}

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
static void host_check(struct vmm *vm)
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

/* Image, boot info and page tables: what a (re)booting guest finds. */
static int load_machine_memory(struct vmm *vm, struct vmm_error *e)
{
	struct gl_boot_info *bi = (struct gl_boot_info *)(vm->ram.hva + GL_BOOT_INFO);
	int r;

	/* The whole image area is cleared, so the guest's .bss starts zeroed. */
	memset(vm->ram.hva + GL_IMAGE, 0, GL_IMAGE_MAX);
	memcpy(vm->ram.hva + GL_IMAGE, vm->image, vm->image_size);
	r = x86_setup_memory(&vm->ram, e);
	if (r)
		return r;
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
	return 0;
}

/*
 * SIGINT/SIGTERM/SIGHUP are read from a signalfd by vmm_run, and the kick
 * signal is for vCPU threads only: block them all here, before any thread
 * starts, so that every thread inherits the mask.
 */
static int block_signals(struct vmm *vm, struct vmm_error *e)
{
	sigset_t all;

	sigemptyset(&vm->quit_signals);
	sigaddset(&vm->quit_signals, SIGINT);
	sigaddset(&vm->quit_signals, SIGTERM);
	sigaddset(&vm->quit_signals, SIGHUP);
	all = vm->quit_signals;
	sigaddset(&all, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &all, &vm->saved_sigmask);
	vm->signal_fd = signalfd(-1, &vm->quit_signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0)
		return vmm_fail(e, -errno, "signalfd");
	return 0;
}

int vmm_create(const struct vmm_config *cfg, struct vmm **out, struct vmm_error *e)
{
	struct kvm_userspace_memory_region region;
	struct vmm *vm;
	long r;

	if (cfg->nr_vcpus == 0 || cfg->nr_vcpus > GL_MAX_VCPUS)
		return vmm_failf(e, -EINVAL, "--vcpus must be 1..%d", GL_MAX_VCPUS);
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vmm_fail(e, -ENOMEM, "allocate VM");
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = vm->wake_fd = vm->signal_fd = -1;
	vm->ram.fd = -1;
	vm->boot_count = 1;
	/* Started paused: the operator's stop is already in force. */
	vm->user_stopped = cfg->start_paused;
	vm->pause_depth = cfg->start_paused ? 1 : 0;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	report_init(&vm->report, cfg->nr_vcpus);
	r = block_signals(vm, e);
	if (r)
		goto err;

	if (cfg->guest_path) {
		r = load_guest_file(vm, cfg->guest_path, e);
		if (r)
			goto err;
	} else {
		vm->image = vmm_builtin_guest;
		vm->image_size = vmm_builtin_guest_size;
	}

	vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->wake_fd < 0) {
		r = vmm_fail(e, -errno, "eventfd");
		goto err;
	}
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = vmm_fail(e, -errno, "open /dev/kvm");
		goto err;
	}
	r = x86_machine_init(&vm->x86, vm->kvm_fd, e);
	if (r)
		goto err;
	r = kabi_ioctl_val(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (r < 0) {
		vmm_fail(e, (int)r, "KVM_CREATE_VM");
		goto err;
	}
	vm->vm_fd = (int)r;
	/* Intel needs a TSS area below 4 GiB outside RAM even when unused. */
	r = kabi_ioctl_val(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	if (r < 0) {
		vmm_fail(e, (int)r, "KVM_SET_TSS_ADDR");
		goto err;
	}

	r = ram_create(&vm->ram, cfg->backend, cfg->backend_path, cfg->mem_size, e);
	if (r)
		goto err;
	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->ram.size,
		.userspace_addr = (uintptr_t)vm->ram.hva,
	};
	r = kabi_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
	if (r < 0) {
		vmm_fail(e, (int)r, "KVM_SET_USER_MEMORY_REGION (slot 0, %" PRIu64 " bytes)",
			 vm->ram.size);
		goto err;
	}
	r = load_machine_memory(vm, e);
	if (r)
		goto err;

	vm->vcpus = calloc(cfg->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		r = vmm_fail(e, -ENOMEM, "allocate vCPUs");
		goto err;
	}
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		r = vcpu_create(vm, &vm->vcpus[i], i, e);
		if (r)
			goto err;
	}
	r = vcpu_install_kick_signal(e);
	if (r)
		goto err;
	r = vmm_ras_init(vm, e);
	if (r)
		goto err;
	if (cfg->control_path) {
		r = qmp_server_start(&vm->qmp, cfg->control_path, vmm_qmp_commands,
				     vmm_qmp_ncommands, vm, e);
		if (r)
			goto err;
	}
	*out = vm;
	return 0;
err:
	vmm_destroy(vm);
	return (int)r;
}

void vmm_destroy(struct vmm *vm)
{
	if (!vm)
		return;
	qmp_server_stop(vm->qmp);
	vm->qmp = NULL;
	vmras_free(vm->ras);
	vm->ras = NULL;
	if (vm->vcpus) {
		for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
	}
	ram_destroy(&vm->ram);
	x86_machine_destroy(&vm->x86);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	if (vm->signal_fd >= 0) {
		close(vm->signal_fd);
		pthread_sigmask(SIG_SETMASK, &vm->saved_sigmask, NULL);
	}
	free(vm->image_owned);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

/* ---- pause / resume ------------------------------------------------ */

static bool all_parked(struct vmm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].thread_started && !vm->vcpus[i].parked)
			return false;
	return true;
}

/* With vm->lock held. */
static void pause_locked(struct vmm *vm)
{
	if (vm->pause_depth++ == 0)
		for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	while (!all_parked(vm) && !vm->shutdown)
		pthread_cond_wait(&vm->cond, &vm->lock);
}

static void resume_locked(struct vmm *vm)
{
	if (vm->pause_depth && --vm->pause_depth == 0)
		pthread_cond_broadcast(&vm->cond);
}

void vmm_pause(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

void vmm_resume(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	resume_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

void vmm_stop(struct vmm *vm)
{
	bool changed = false;

	pthread_mutex_lock(&vm->lock);
	if (!vm->user_stopped && !vm->shutdown) {
		vm->user_stopped = true;
		pause_locked(vm);
		changed = true;
	}
	pthread_mutex_unlock(&vm->lock);
	if (changed)
		vmm_emit(vm, "STOP", NULL);
}

void vmm_cont(struct vmm *vm)
{
	bool changed = false;

	pthread_mutex_lock(&vm->lock);
	if (vm->user_stopped) {
		vm->user_stopped = false;
		resume_locked(vm);
		changed = true;
	}
	pthread_mutex_unlock(&vm->lock);
	if (changed)
		vmm_emit(vm, "RESUME", NULL);
}

enum vmm_status vmm_status(struct vmm *vm)
{
	enum vmm_status s;

	pthread_mutex_lock(&vm->lock);
	s = vm->shutdown ? VMM_SHUTDOWN : vm->user_stopped ? VMM_PAUSED : VMM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

static int system_reset(struct vmm *vm, const char *reason, struct vmm_error *e)
{
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->shutdown) {
		pthread_mutex_unlock(&vm->lock);
		return vmm_failf(e, -ESHUTDOWN, "the VM is shutting down");
	}
	pause_locked(vm);
	vm->boot_count++;
	/*
	 * Poisoned ranges get fresh memory: the rebooted guest has all of it.
	 * Without our lock: libvmras may be kicking a vCPU, which takes it.
	 */
	pthread_mutex_unlock(&vm->lock);
	r = vmras_guest_reset(vm->ras);
	pthread_mutex_lock(&vm->lock);
	if (r)
		vmm_fail(e, r, "give poisoned guest memory back");
	if (!r)
		r = load_machine_memory(vm, e);
	for (unsigned int i = 0; !r && i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		r = x86_vcpu_reset(&vm->x86, v->fd, i, GL_IMAGE, e);
		v->state = VCPU_RUNNING;
		v->failure[0] = '\0';
	}
	report_init(&vm->report, vm->cfg.nr_vcpus);
	resume_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	if (!r) {
		json_object *d = json_object_new_object();

		json_object_object_add(d, "guest", json_object_new_boolean(false));
		json_object_object_add(d, "reason", json_object_new_string(reason));
		vmm_emit(vm, "RESET", d);
	}
	vmm_wake_main(vm);
	return r;
}

int vmm_system_reset(struct vmm *vm, struct vmm_error *e)
{
	return system_reset(vm, "host-qmp-system-reset", e);
}

void vmm_request_quit(struct vmm *vm, const char *reason)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->quit_reason[0])
		snprintf(vm->quit_reason, sizeof(vm->quit_reason), "%s", reason);
	pthread_mutex_unlock(&vm->lock);
	vmm_wake_main(vm);
}

static int check_range(struct vmm *vm, uint64_t gpa, uint64_t len, struct vmm_error *e)
{
	if (!ram_contains(&vm->ram, gpa, len))
		return vmm_failf(e, -EFAULT, "GPA range 0x%" PRIx64 "+%" PRIu64 " is outside guest RAM (0..0x%" PRIx64 ")",
				 gpa, len, vm->ram.size);
	return 0;
}

int vmm_write_guest(struct vmm *vm, uint64_t gpa, const void *buf, size_t len,
		    struct vmm_error *e)
{
	int r = check_range(vm, gpa, len, e);

	if (r)
		return r;
	r = vmras_copy_to_guest(vm->ras, gpa, buf, len);
	if (r)
		return vmm_fail(e, r, "write guest memory at GPA 0x%" PRIx64, gpa);
	return 0;
}

int vmm_read_guest(struct vmm *vm, uint64_t gpa, void *buf, size_t len,
		   struct vmm_error *e)
{
	int r = check_range(vm, gpa, len, e);

	if (r)
		return r;
	/* Guest memory may be poisoned: never read it with a plain memcpy. */
	r = vmras_copy_from_guest(vm->ras, buf, gpa, len);
	if (r)
		return vmm_fail(e, r, "read guest memory at GPA 0x%" PRIx64, gpa);
	return 0;
}

int vmm_protect_guest(struct vmm *vm, uint64_t gpa, uint64_t size, int prot,
		      struct vmm_error *e)
{
	uint64_t mask = vm->ram.page_size - 1;
	int r = check_range(vm, gpa, size, e);

	if (r)
		return r;
	if ((gpa & mask) || (size & mask) || !size)
		return vmm_failf(e, -EINVAL, "GPA range 0x%" PRIx64 "+%" PRIu64 " is not whole %" PRIu64 "-byte pages",
				 gpa, size, vm->ram.page_size);
	if (mprotect(vm->ram.hva + gpa, size, prot))
		return vmm_fail(e, -errno, "mprotect guest RAM at GPA 0x%" PRIx64, gpa);
	return 0;
}

/* ---- guest reports ------------------------------------------------- */

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
	case GL_MSG_MCE: U64("bank", a[0]); U64("status", a[1]); U64("addr", a[2]); U64("misc", a[3]); U64("mcg-status", a[4]); break;
	case GL_MSG_RETIRED: U64("gpa", a[0]); U64("size", a[1]); break;
	case GL_MSG_UNRECOVERABLE: U64("mcg-status", a[0]); U64("rip", a[1]); break;
	case GL_MSG_EXCEPTION: U64("vector", a[0]); U64("error-code", a[1]); U64("rip", a[2]); break;
	case GL_MSG_DONE: U64("passes", a[0]); U64("verified", a[1]); U64("corrupted", a[2]); break;
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

/* ---- run ----------------------------------------------------------- */

/* With vm->lock held: every vCPU has stopped for good (until a reset). */
static bool all_stopped(struct vmm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].state == VCPU_RUNNING)
			return false;
	return true;
}

int vmm_run(struct vmm *vm, struct vmm_error *e)
{
	struct signalfd_siginfo si;
	int sfd = vm->signal_fd, r = 0;
	bool done = false;

	/* Under the lock: pausers read thread_started. */
	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus && !r; i++)
		r = vcpu_start(&vm->vcpus[i], e);
	pthread_mutex_unlock(&vm->lock);

	while (!r && !done) {
		struct pollfd pfd[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = vm->wake_fd, .events = POLLIN },
		};
		uint64_t v;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = vmm_fail(e, -errno, "poll");
			break;
		}
		if (pfd[0].revents & POLLIN && read(sfd, &si, sizeof(si)) == sizeof(si))
			vmm_request_quit(vm, si.ssi_signo == SIGINT ? "signal SIGINT"
					 : si.ssi_signo == SIGTERM ? "signal SIGTERM"
								   : "signal SIGHUP");
		if (pfd[1].revents & POLLIN)
			(void)!read(vm->wake_fd, &v, sizeof(v));

		pthread_mutex_lock(&vm->lock);
		if (vm->reset_requested && !vm->quit_reason[0]) {
			char why[160];

			vm->reset_requested = false;
			snprintf(why, sizeof(why), "memory error: %s", vm->reset_reason);
			pthread_mutex_unlock(&vm->lock);
			fprintf(stderr, "vmras run: resetting the VM: %s\n", why);
			if (system_reset(vm, why, e))
				fprintf(stderr, "vmras run: reset failed: %s\n", e->msg);
			pthread_mutex_lock(&vm->lock);
		}
		if (vm->quit_reason[0])
			done = true;
		else if (all_stopped(vm) && !vm->cfg.no_shutdown) {
			snprintf(vm->quit_reason, sizeof(vm->quit_reason), "%s",
				 report_all_done(&vm->report) ? "guest finished" : "guest stopped");
			done = true;
		}
		pthread_mutex_unlock(&vm->lock);
	}

	/* Shut down: every vCPU out of KVM_RUN and its thread joined. */
	pthread_mutex_lock(&vm->lock);
	vm->quit = true;
	vm->shutdown = true;
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		vm->vcpus[i].thread_started = false;
	pthread_mutex_unlock(&vm->lock);
	if (report_all_done(&vm->report))
		host_check(vm);
	{
		json_object *d = json_object_new_object();

		json_object_object_add(d, "guest", json_object_new_boolean(
			strncmp(vm->quit_reason, "guest", 5) == 0));
		json_object_object_add(d, "reason", json_object_new_string(vm->quit_reason));
		vmm_emit(vm, "SHUTDOWN", d);
	}
	return r;
}

/* ---- results ------------------------------------------------------- */

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
	ADD("retired", json_object_new_uint64(rv->retired));
	ADD("unrecoverable", json_object_new_boolean(rv->unrecoverable));
	ADD("exception", rv->exception ? json_object_new_uint64(rv->exc_vector) : NULL);
	ADD("failure", v->failure[0] ? json_object_new_string(v->failure) : NULL);
	ADD("ram-mmio-exits", json_object_new_uint64(
		__atomic_load_n(&v->ram_mmio_exits, __ATOMIC_RELAXED)));
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
