// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * One thread per vCPU: KVM_RUN and its exits. Pausing: another thread sets
 * kvm_run.immediate_exit and sends the kick signal, so KVM_RUN returns (or
 * does not start); the vCPU then parks on vm->cond until resumed.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest/layout.h"
#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "vmm_internal.h"

#define KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig; /* only there to make KVM_RUN return -EINTR */
}

int vcpu_install_kick_signal(struct vmm_error *e)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL))
		return vmm_fail(e, -errno, "install vCPU kick signal handler");
	return 0;
}

int vcpu_create(struct vmm *vm, struct vcpu *v, unsigned int index, struct vmm_error *e)
{
	long mmap_size;
	int r;

	*v = (struct vcpu){ .vm = vm, .index = index, .fd = -1 };
	v->fd = (int)kabi_ioctl_val(vm->vm_fd, KVM_CREATE_VCPU, index);
	if (v->fd < 0)
		return vmm_fail(e, v->fd, "KVM_CREATE_VCPU %u", index);
	mmap_size = kabi_ioctl_val(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < (long)sizeof(struct kvm_run))
		return vmm_fail(e, mmap_size < 0 ? (int)mmap_size : -EINVAL,
				"KVM_GET_VCPU_MMAP_SIZE");
	v->run_size = (size_t)mmap_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return vmm_fail(e, -errno, "mmap kvm_run of vCPU %u", index);
	}
	r = x86_vcpu_init(&vm->x86, v->fd, index, e);
	if (r)
		return r;
	return x86_vcpu_reset(&vm->x86, v->fd, index, GL_IMAGE, e);
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

/* Called with vm->lock held. */
void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, KICK_SIGNAL);
}

static void stop_vcpu(struct vcpu *v, enum vcpu_state state, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void stop_vcpu(struct vcpu *v, enum vcpu_state state, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&v->vm->lock);
	v->state = state;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(v->failure, sizeof(v->failure), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&v->vm->lock);
	/* Machine checks for it go to a vCPU that still runs (a reset brings it back). */
	vmras_vcpu_online(v->vm->ras, v->index, false);
	vmm_wake_main(v->vm);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned char *data = (unsigned char *)run + run->io.data_offset;

	if (run->io.port == GL_REPORT_PORT && run->io.direction == KVM_EXIT_IO_OUT &&
	    run->io.size == 4 && run->io.count == 1) {
		uint32_t gpa;

		memcpy(&gpa, data, sizeof(gpa));
		vmm_guest_message(v->vm, v, gpa);
		return;
	}
	/* No other devices: reads float high, writes go nowhere. */
	__atomic_fetch_add(&v->pio_exits, 1, __ATOMIC_RELAXED);
	if (run->io.direction == KVM_EXIT_IO_IN)
		memset(data, 0xff, (size_t)run->io.size * run->io.count);
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr;

	/*
	 * An access inside guest RAM reported as MMIO means the host page
	 * behind it could not be used (on hosts where KVM emulates guest
	 * instructions, a poisoned or unreadable page arrives this way). It
	 * is not device I/O: say so. The read gets all ones, never stale data.
	 */
	if (ram_contains(&v->vm->ram, gpa, run->mmio.len)) {
		json_object *d = json_object_new_object();

		__atomic_fetch_add(&v->ram_mmio_exits, 1, __ATOMIC_RELAXED);
		fprintf(stderr, "vmras run: vCPU %u %s guest RAM at GPA 0x%" PRIx64
			" (%u bytes) and KVM reported it as MMIO: the host page is unusable\n",
			v->index, run->mmio.is_write ? "wrote" : "read", (uint64_t)gpa,
			run->mmio.len);
		json_object_object_add(d, "vcpu", json_object_new_int((int)v->index));
		json_object_object_add(d, "gpa", json_object_new_uint64(gpa));
		json_object_object_add(d, "size", json_object_new_int((int)run->mmio.len));
		json_object_object_add(d, "write", json_object_new_boolean(run->mmio.is_write));
		vmm_emit(v->vm, "VMRAS_RAM_AS_MMIO", d);
	} else {
		__atomic_fetch_add(&v->mmio_exits, 1, __ATOMIC_RELAXED);
	}
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
}

/* Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_HLT:
		stop_vcpu(v, VCPU_HALTED, NULL);
		return false;
	case KVM_EXIT_SHUTDOWN:
		stop_vcpu(v, VCPU_FAILED, "guest triple fault (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		stop_vcpu(v, VCPU_FAILED, "KVM_EXIT_FAIL_ENTRY, hardware reason 0x%llx",
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		stop_vcpu(v, VCPU_FAILED, "KVM_EXIT_INTERNAL_ERROR, suberror %u",
			  run->internal.suberror);
		return false;
	default:
		stop_vcpu(v, VCPU_FAILED, "unhandled KVM exit reason %u", run->exit_reason);
		return false;
	}
}

/*
 * Wait while paused or stopped; false when the VM quits. A vCPU parks only
 * with its last I/O or MMIO exit completed (KVM finishes it at the next
 * KVM_RUN, which immediate_exit then ends at once): its state is whole,
 * as migration needs (Documentation/virt/kvm/api.rst, KVM_EXIT_IO).
 * *complete: run once more for that first.
 */
static bool wait_runnable(struct vcpu *v, bool *complete)
{
	struct vmm *vm = v->vm;
	bool go;

	*complete = false;
	pthread_mutex_lock(&vm->lock);
	if (!vm->quit && (vm->pause_depth || v->state != VCPU_RUNNING) && v->exit_pending) {
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		*complete = true;
		pthread_mutex_unlock(&vm->lock);
		return true;
	}
	while (!vm->quit && (vm->pause_depth || v->state != VCPU_RUNNING)) {
		if (!v->parked || !v->idle) {
			v->parked = v->idle = true;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	v->parked = v->idle = false;
	go = !vm->quit;
	/* Cleared under the lock: a pauser sets it under the same lock. */
	if (go)
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->lock);
	return go;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	bool complete;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	vmras_vcpu_thread_start(v->vm->ras, v->index);
	while (wait_runnable(v, &complete)) {
		long r;
		int h;

		/* Machine checks libvmras queued for this vCPU go in first. */
		h = complete ? 0 : vmras_vcpu_pre_run(v->vm->ras, v->index);
		if (h < 0) {
			stop_vcpu(v, VCPU_FAILED, "libvmras pre-run: %s", strerror(-h));
			continue;
		}
		r = kabi_ioctl_val(v->fd, KVM_RUN, 0);
		v->exit_pending = !r && (v->run->exit_reason == KVM_EXIT_IO ||
					 v->run->exit_reason == KVM_EXIT_MMIO);
		/* Memory errors first: a poisoned page is not MMIO, nor a KVM failure. */
		h = vmras_vcpu_exit(v->vm->ras, v->index, v->run, (int)r);
		if (h == VMRAS_EXIT_HANDLED) {
			/* libvmras wrote guest RAM itself: KVM's dirty log did not see it. */
			if (!r && v->run->exit_reason == KVM_EXIT_MMIO && v->run->mmio.is_write)
				migration_dirty(v->vm, v->run->mmio.phys_addr, v->run->mmio.len);
			continue;
		}
		if (h < 0) {
			stop_vcpu(v, VCPU_FAILED, "libvmras exit handling: %s", strerror(-h));
			continue;
		}
		if (r < 0) {
			if (r == -EINTR || r == -EAGAIN)
				continue;
			stop_vcpu(v, VCPU_FAILED, "KVM_RUN: %s", strerror((int)-r));
			continue;
		}
		handle_exit(v);
	}
	return NULL;
}

/* Called with vm->lock held. */
int vcpu_start(struct vcpu *v, struct vmm_error *e)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (r)
		return vmm_fail(e, -r, "start vCPU %u thread", v->index);
	v->thread_started = true;
	return 0;
}
