// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * KVM_RUN exits that are memory errors, on the vCPU's own thread:
 *   (a) an AR SIGBUS that hit this thread while it ran the vCPU;
 *   (b) KVM_RUN -EHWPOISON, or -EFAULT on a page known to be bad, with
 *       KVM_EXIT_MEMORY_FAULT {gpa};
 *   (c) where KVM emulates guest instructions (detected, see
 *       probe/ram_mmio.c): an MMIO exit inside writable guest RAM on a
 *       poisoned page. A read gets all-ones filler, never data;
 *   (d) arm64, KVM_CAP_ARM_SEA_TO_USER: KVM_EXIT_ARM_SEA, a synchronous
 *       external abort the host's APEI did not claim {esr, gva, gpa}.
 * And lazy memory KVM could not wait for (the userfaultfd takes no kernel
 * faults): (b) or (c) on a page that has not arrived is fetched here and
 * the vCPU enters again.
 * Anything else is the VMM's: a write to a read-only slot (ROM, flash),
 * a page the VMM protected, a private/shared conversion.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arch/arch.h"
#include "internal.h"
#include "kabi/arm64.h"
#include "kabi/kvm.h"
#include "memory/backing.h"
#include "sources/sources.h"
#include "uffd/lazy.h"
#include "uffd/split.h"
#include "util/clock.h"

#define ARM_ESR_FNV (1ULL << 10)	/* FAR not valid */

/* A memory-fault exit on a lazy page waits this long for it (then the VMM hears why). */
#define LAZY_EXIT_WAIT_MS 60000

static bool page_is_bad(struct vmras *v, const struct vmras_region *r, uint64_t gpa)
{
	if (vmras_registry_contains(v->registry, gpa))
		return true;
	return vr_backing(r)->poisoned(v, r, gpa, vr_split_granule(v, r, gpa));
}

/*
 * Complete an MMIO exit on good RAM with the RAM itself, through the
 * kernel (no signal: a page this process cannot access is -EFAULT, and
 * the exit stays the VMM's).
 */
static int complete_mmio(struct vmras *v, const struct vmras_region *r, struct kvm_run *run)
{
	uint32_t len = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : 0;
	struct iovec local = { run->mmio.data, len };
	struct iovec remote = { (char *)r->hva + (run->mmio.phys_addr - r->gpa), len };
	ssize_t n;

	if (!len || run->mmio.phys_addr + len - r->gpa > r->size)
		return -EINVAL;
	pthread_rwlock_rdlock(&v->map_lock);
	n = run->mmio.is_write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
			       : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	pthread_rwlock_unlock(&v->map_lock);
	return n == (ssize_t)len ? 0 : -EFAULT;
}

/*
 * Complete an access to RAM that is good, retrying while a mapping change
 * makes it briefly unreachable; never drop a write or invent a read
 * silently: if it cannot be done, the exit goes back to the VMM as MMIO.
 */
static int complete_good(struct vmras *v, const struct vmras_region *r, struct kvm_run *run)
{
	for (int tries = 0; tries < 100; tries++) {
		if (!complete_mmio(v, r, run))
			return VMRAS_EXIT_HANDLED;
		usleep(100);
	}
	VR_STAT_ADD(v, fill_errors, 1);
	return VMRAS_EXIT_NOT_MINE;
}

/*
 * Lazy memory KVM could not wait for: fetched here. The vCPU counts as
 * parked meanwhile (a pause must not wait for a page from a slow source).
 */
static int lazy_exit(struct vmras *v, unsigned int vcpu, uint64_t gpa)
{
	bool wait = vr_lazy_missing(v, gpa) && v->cfg.ops.vcpu_blocked;
	int r;

	if (wait)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, true);
	r = vr_lazy_exit(v, gpa, LAZY_EXIT_WAIT_MS);
	if (wait)
		v->cfg.ops.vcpu_blocked(v->cfg.ops.opaque, vcpu, false);
	return r;
}

static int submit_access(struct vmras *v, unsigned int vcpu, struct vmras_event *ev)
{
	uint32_t arch_state = 0;

	/* Guest state that shapes the notice (LMCE), read here: only this thread can. */
	if (v->arch && v->arch->sample)
		(void)v->arch->sample(v->arch_data, v->vcpus[vcpu].fd, &arch_state);
	return vr_submit_event(v, ev, arch_state, true);
}

int vmras_vcpu_exit(struct vmras *v, unsigned int vcpu, struct kvm_run *run, int run_ret)
{
	struct vmras_event ev = {
		.kind = VMRAS_AR,
		.vcpu = (int)vcpu,
		.valid = VMRAS_EV_VCPU,
		.tid = vr_gettid(),
		.addr_lsb = 12,
	};
	const struct vmras_region *r;
	unsigned int lsb;
	uint64_t hva;
	int code, err;

	if (vcpu >= VR_MAX_VCPUS || !v->vcpus[vcpu].registered)
		return -EINVAL;
	ev.time_ns = vr_now_ns();
	/* (a) KVM's SIGBUS BUS_MCEERR_AR arrived on this vCPU thread. */
	if (vr_thread_take_ar(&hva, &lsb, &code)) {
		ev.source = VMRAS_SRC_SIGBUS;
		ev.valid |= VMRAS_EV_HVA;
		ev.hva = hva;
		ev.addr_lsb = lsb;
		ev.si_code = code;
		err = submit_access(v, vcpu, &ev);
		return err ?: VMRAS_EXIT_HANDLED;
	}
	if (!run)
		return VMRAS_EXIT_NOT_MINE;
	/* (b) KVM_RUN failed on a page it could not fault in. */
	if ((run_ret == -EHWPOISON || run_ret == -EFAULT) &&
	    run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		const struct kabi_kvm_memory_fault *mf = kabi_kvm_run_memory_fault(run);

		/* KVM could not wait for a lazy page: fetch it here and enter again. */
		if (run_ret == -EFAULT) {
			err = lazy_exit(v, vcpu, mf->gpa);
			if (err)
				return err < 0 ? err : VMRAS_EXIT_HANDLED;
		}
		r = vmras_memmap_find_gpa(v->map, mf->gpa);
		if (run_ret == -EFAULT && (!r || !page_is_bad(v, r, mf->gpa)))
			return VMRAS_EXIT_NOT_MINE; /* e.g. a private/shared conversion */
		ev.source = VMRAS_SRC_MEMORY_FAULT;
		ev.valid |= VMRAS_EV_GPA | VMRAS_EV_FAULT_FLAGS;
		ev.gpa = mf->gpa;
		ev.fault_flags = mf->flags;
		err = submit_access(v, vcpu, &ev);
		return err ?: VMRAS_EXIT_HANDLED;
	}
	/* (d) arm64: an abort KVM could not attribute; the address when it has one. */
	if (run_ret == 0 && run->exit_reason == KVM_EXIT_ARM_SEA) {
		const struct kabi_kvm_arm_sea *sea = kabi_kvm_run_arm_sea(run);

		ev.source = VMRAS_SRC_ARM_SEA;
		ev.valid |= VMRAS_EV_ESR;
		ev.esr = sea->esr;
		if (!(sea->esr & ARM_ESR_FNV)) {
			ev.valid |= VMRAS_EV_GVA;
			ev.gva = sea->gva;
		}
		if (sea->flags & KVM_EXIT_ARM_SEA_FLAG_GPA_VALID) {
			ev.valid |= VMRAS_EV_GPA;
			ev.gpa = sea->gpa;
		}
		err = submit_access(v, vcpu, &ev);
		return err ?: VMRAS_EXIT_HANDLED;
	}
	/* (c) Emulating host: RAM it could not use came back as MMIO. */
	if (run_ret != 0 || run->exit_reason != KVM_EXIT_MMIO || !v->ram_mmio)
		return VMRAS_EXIT_NOT_MINE;
	r = vmras_memmap_find_gpa(v->map, run->mmio.phys_addr);
	if (!r || (r->flags & VMRAS_REGION_READONLY))
		return VMRAS_EXIT_NOT_MINE;
	/* A lazy page KVM could not wait for: fetch it, then complete the access below. */
	err = lazy_exit(v, vcpu, run->mmio.phys_addr);
	if (err < 0)
		return err;
	if (page_is_bad(v, r, run->mmio.phys_addr)) {
		/* KVM completes the read with this before the notice: never real data. */
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		ev.source = VMRAS_SRC_RAM_MMIO;
		ev.valid |= VMRAS_EV_GPA;
		ev.gpa = run->mmio.phys_addr;
		/* Through the shared mapping: what KVM reports for a shared access (flags 0). */
		if (r->backing == VMRAS_BACKING_GUEST_MEMFD)
			ev.valid |= VMRAS_EV_FAULT_FLAGS;
		err = submit_access(v, vcpu, &ev);
		if (err)
			return err;
		/* A huge page split meanwhile may have made it good again: use it. */
		if (!page_is_bad(v, r, run->mmio.phys_addr))
			return complete_good(v, r, run);
		return VMRAS_EXIT_HANDLED;
	}
	/* Good RAM the emulator could not map just then (a fill racing it). */
	return complete_good(v, r, run);
}
