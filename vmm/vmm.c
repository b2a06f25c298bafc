// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * VM lifecycle: create, run until done, pause/resume, reset, quit; guest
 * RAM access for QMP. The test-guest protocol is in guest_proto.c, the
 * results in summary.c.
 */
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
#include "lazy_image.h"
#include "postcopy.h"
#include "vmm_internal.h"

extern const unsigned char vmm_builtin_guest[];
extern const size_t vmm_builtin_guest_size;

static const char *const status_names[] = {
	[VMM_RUNNING] = "running",
	[VMM_PAUSED] = "paused",
	[VMM_SHUTDOWN] = "shutdown",
	[VMM_INMIGRATE] = "inmigrate",
	[VMM_POSTMIGRATE] = "postmigrate",
};

const char *vmm_status_name(enum vmm_status s)
{
	return (unsigned int)s <= VMM_POSTMIGRATE ? status_names[s] : "unknown";
}

void vmm_wake_main(struct vmm *vm)
{
	uint64_t one = 1;

	(void)!write(vm->wake_fd, &one, sizeof(one));
}

void vmm_emit(struct vmm *vm, const char *event, json_object *data)
{
	/* libvmras's threads may emit before vmm_create has published the server. */
	qmp_server_emit(__atomic_load_n(&vm->qmp, __ATOMIC_ACQUIRE), event, data);
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

/* Image, boot info and page tables: what a (re)booting guest finds. */
static int load_machine_memory(struct vmm *vm, struct vmm_error *e)
{
	int r;

	/* The whole image area is cleared, so the guest's .bss starts zeroed. */
	memset(vm->ram.hva + GL_IMAGE, 0, GL_IMAGE_MAX);
	memcpy(vm->ram.hva + GL_IMAGE, vm->image, vm->image_size);
	r = x86_setup_memory(&vm->ram, e);
	if (r)
		return r;
	vmm_guest_boot_info(vm);
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
	r = x86_machine_init(&vm->x86, vm->kvm_fd, cfg->cpu_vendor, e);
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

	r = ram_create(&vm->ram, cfg->backend, cfg->backend_path, cfg->mem_size, vm->vm_fd, e);
	if (r)
		goto err;
	r = ram_set_memslot(&vm->ram, vm->vm_fd, 0, e);
	if (r)
		goto err;
	/* An incoming stream brings every page: writing the machine's memory first is waste. */
	r = cfg->incoming ? 0 : load_machine_memory(vm, e);
	if (r)
		goto err;
	r = migration_init(vm, e);
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
		struct qmp_server *qmp;

		r = qmp_server_start(&qmp, cfg->control_path, vmm_qmp_commands,
				     vmm_qmp_ncommands, vm, cfg->control_allow,
				     cfg->ncontrol_allow, e);
		if (r)
			goto err;
		__atomic_store_n(&vm->qmp, qmp, __ATOMIC_RELEASE);
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
	/* The migration thread emits events: it stops before QMP does, and its state goes after. */
	struct postcopy_in *pc = NULL;

	if (vm->mig.vmm_dirty) {
		migration_stop(vm);
		/* Post-copy's threads emit events and supply lazy memory: before QMP and libvmras go. */
		pc = postcopy_in_stop(vm);
	}
	/* QMP's clients go now; events emitted from here on (libvmras's threads) are dropped. */
	qmp_server_stop(vm->qmp);
	if (vm->mig.vmm_dirty)
		migration_destroy(vm);
	vmras_free(vm->ras);
	postcopy_in_free(pc);
	lazy_image_free(vm->lazy_image);
	vm->ras = NULL;
	if (vm->vcpus) {
		for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
	}
	/* No thread is left to emit an event. */
	qmp_server_free(vm->qmp);
	vm->qmp = NULL;
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

/*
 * With the vCPUs paused and vm->lock held: every vCPU parked in the VMM
 * with its last exit completed (paused alone also counts a vCPU blocked
 * inside libvmras, whose I/O exit KVM has not completed yet).
 */
static void wait_idle_locked(struct vmm *vm)
{
	for (;;) {
		bool idle = true;

		for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
			if (vm->vcpus[i].thread_started && !vm->vcpus[i].idle)
				idle = false;
		if (idle || vm->shutdown)
			break;
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
}

bool vmm_frozen(struct vmm *vm)
{
	bool f;

	pthread_mutex_lock(&vm->lock);
	f = vm->frozen;
	pthread_mutex_unlock(&vm->lock);
	return f;
}

void vmm_wait_idle(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	wait_idle_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

int vmm_freeze(struct vmm *vm, struct vmm_error *e)
{
	pthread_mutex_lock(&vm->lock);
	vm->frozen = true;
	while (vm->external_busy && !vm->shutdown)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm->shutdown) {
		vm->frozen = false;
		pthread_mutex_unlock(&vm->lock);
		return vmm_failf(e, -ESHUTDOWN, "the VM is shutting down");
	}
	pause_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vmm_thaw(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->frozen = false;
	resume_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	vmm_wake_main(vm);	/* a reset the library asked for meanwhile */
}

/* A reset or a write to guest RAM from outside the guest: not while frozen. */
static int external_begin(struct vmm *vm, const char *what, struct vmm_error *e)
{
	int r = 0;

	/* Before vm->lock: post-copy's lock is taken under none. */
	if (postcopy_in_active(vm))
		return vmm_failf(e, -EBUSY, "%s: the guest's memory is still arriving (post-copy)",
				 what);
	pthread_mutex_lock(&vm->lock);
	if (vm->frozen)
		r = vmm_failf(e, -EBUSY, "%s: the guest is being migrated (%s)", what,
			      migration_handed_over(vm) ? "it has moved away"
			      : migration_incoming_active(vm) ? "it is still arriving"
							      : "its state is being sent");
	else
		vm->external_busy++;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

static void external_end(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->external_busy--;
	pthread_cond_broadcast(&vm->cond);
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

	/* The guest runs on the destination now: never here again. */
	if (migration_handed_over(vm))
		return;
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

	/* QEMU's names for the two sides of a migration. */
	if (migration_handed_over(vm))
		return VMM_POSTMIGRATE;
	if (migration_incoming_active(vm))
		return VMM_INMIGRATE;
	pthread_mutex_lock(&vm->lock);
	s = vm->shutdown ? VMM_SHUTDOWN : vm->user_stopped ? VMM_PAUSED : VMM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

static int system_reset(struct vmm *vm, const char *reason, struct vmm_error *e)
{
	int r = external_begin(vm, "system reset", e);

	if (r)
		return r;
	pthread_mutex_lock(&vm->lock);
	if (vm->shutdown) {
		pthread_mutex_unlock(&vm->lock);
		external_end(vm);
		return vmm_failf(e, -ESHUTDOWN, "the VM is shutting down");
	}
	pause_locked(vm);
	/* No vCPU may carry a half-done I/O exit into its reset registers. */
	wait_idle_locked(vm);
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
	/* Fresh pages and a new image: all of it goes again. */
	migration_dirty(vm, 0, vm->ram.size);
	for (unsigned int i = 0; !r && i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		r = x86_vcpu_reset(&vm->x86, v->fd, i, GL_IMAGE, e);
		v->state = VCPU_RUNNING;
		v->failure[0] = '\0';
	}
	report_init(&vm->report, vm->cfg.nr_vcpus);
	resume_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	external_end(vm);
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
	int r = check_range(vm, gpa, len, e) ?: external_begin(vm, "write guest memory", e);

	if (r)
		return r;
	r = vmras_copy_to_guest(vm->ras, gpa, buf, len);
	/* Before external_end: a freeze waits for it, then collects it. */
	migration_dirty(vm, gpa, len);
	external_end(vm);
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
	/* A page not here yet would hold this thread until it comes, if it comes. */
	if (postcopy_in_active(vm))
		return vmm_failf(e, -EBUSY, "read guest memory: it is still arriving (post-copy)");
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

/* ---- run ----------------------------------------------------------- */

/* With vm->lock held: every vCPU has stopped for good (until a reset). */
static bool all_stopped(struct vmm *vm)
{
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus; i++)
		if (vm->vcpus[i].state == VCPU_RUNNING)
			return false;
	return true;
}

/* --incoming loads on its own thread, so that the main loop still hears a quit. */
struct incoming_job {
	struct vmm *vm;
	pthread_t thread;
	bool done;		/* under vm->lock */
	int r;
	struct vmm_error e;
};

static void *incoming_thread(void *arg)
{
	struct incoming_job *job = arg;
	struct vmm *vm = job->vm;

	job->r = migration_incoming(vm, vm->cfg.incoming, &job->e);
	pthread_mutex_lock(&vm->lock);
	job->done = true;
	pthread_mutex_unlock(&vm->lock);
	vmm_wake_main(vm);
	return NULL;
}

static int start_vcpus(struct vmm *vm, struct vmm_error *e)
{
	int r = 0;

	/* Under the lock: pausers read thread_started. */
	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->cfg.nr_vcpus && !r; i++)
		r = vcpu_start(&vm->vcpus[i], e);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vmm_run(struct vmm *vm, struct vmm_error *e)
{
	struct signalfd_siginfo si;
	int sfd = vm->signal_fd, r = 0;
	struct incoming_job job = { .vm = vm };
	bool done = false, loading = false, lost;

	/* A migrated guest: everything loaded before any vCPU runs, or nothing runs. */
	if (vm->cfg.incoming) {
		r = -pthread_create(&job.thread, NULL, incoming_thread, &job);
		if (r)
			return vmm_fail(e, r, "start the incoming migration thread");
		loading = true;
	} else {
		r = start_vcpus(vm, e);
	}

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
		if (loading) {
			bool finished = job.done, quit = vm->quit_reason[0];

			pthread_mutex_unlock(&vm->lock);
			if (quit && !finished)
				migration_incoming_cancel(vm);
			if (!finished)
				continue;
			pthread_join(job.thread, NULL);
			loading = false;
			if (quit)
				r = vmm_failf(e, -ECANCELED, "%s while the guest was arriving: it did not "
					      "run here", vm->quit_reason);
			else if (job.r)
				r = vmm_failf(e, job.r, "%s", job.e.msg);
			else if (!quit)
				r = start_vcpus(vm, e);
			pthread_mutex_lock(&vm->lock);
		}
		/* Frozen by a migration: the reset waits; moved away: it has no guest here. */
		if (vm->reset_requested && migration_handed_over(vm)) {
			vm->reset_requested = false;
			fprintf(stderr, "vmras run: reset request dropped: the guest has moved "
				"away (%s)\n", vm->reset_reason);
		}
		if (vm->reset_requested && !vm->quit_reason[0] && !vm->frozen) {
			char why[160];

			vm->reset_requested = false;
			snprintf(why, sizeof(why), "memory error: %s", vm->reset_reason);
			pthread_mutex_unlock(&vm->lock);
			fprintf(stderr, "vmras run: resetting the VM: %s\n", why);
			r = system_reset(vm, why, e);
			pthread_mutex_lock(&vm->lock);
			/* A migration froze the guest meanwhile: the reset waits for its end. */
			if (r == -EBUSY && !migration_handed_over(vm))
				vm->reset_requested = true;
			else if (r)
				fprintf(stderr, "vmras run: reset failed: %s\n", e->msg);
			r = 0;
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

	/* An incoming load that failed to start its vCPUs: still join it. */
	if (loading) {
		migration_incoming_cancel(vm);
		pthread_join(job.thread, NULL);
	}
	/* No migration from here on, and none in flight while vCPUs go away. */
	migration_stop(vm);
	/* Nor post-copy: vCPUs that wait for a page that will not come must wake. */
	lost = postcopy_in_quit(vm);
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
	/* Not over memory post-copy never brought: it is poisoned. */
	if (report_all_done(&vm->report) && !lost)
		vmm_guest_host_check(vm);
	/* Outcomes still being recorded reach QMP and the summary before SHUTDOWN. */
	if (vm->ras)
		(void)vmras_record_flush(vm->ras);
	{
		json_object *d = json_object_new_object();

		json_object_object_add(d, "guest", json_object_new_boolean(
			strncmp(vm->quit_reason, "guest", 5) == 0));
		json_object_object_add(d, "reason", json_object_new_string(vm->quit_reason));
		vmm_emit(vm, "SHUTDOWN", d);
	}
	return r;
}
