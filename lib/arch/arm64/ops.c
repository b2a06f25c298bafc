// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * arm64 arch ops. An action-required error consumed by a vCPU becomes a
 * synchronous external abort on that vCPU, entered by register writes
 * with the ESR the config chooses (or by KVM's ext_dabt_pending), after
 * its CPER record went into the vCPU's own SEA source. Anything else (an
 * action-optional error, or one a VMM thread consumed) is a record in the
 * asynchronous source and the VMM's interrupt. The engine's decisions are
 * x86's: a notice to a source the guest has not acknowledged is VR_BUSY
 * and waits in the queue (an AR for at most the engine's hold).
 *
 * Threads: prepare on the engine; deliver and busy on the notice's vCPU
 * thread (register access needs it: KVM holds the vCPU's mutex in
 * KVM_RUN); reset on the engine. The GHES memory has its own leaf lock
 * (arm64.h); raise_async runs with no library lock held.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "arch/arch.h"
#include "arch/arm64/arm64.h"
#include "internal.h"
#include "kabi/arm64.h"

/* deliver() reasons after VR_NOT_READY */
enum {
	ARM64_NESTED = 3,	/* the vCPU is at EL2 */
	ARM64_AARCH32_EL1,	/* a 32-bit guest kernel */
	ARM64_NO_SOURCE,	/* no SEA source for this vCPU */
	ARM64_RAISE_FAILED,	/* the record is in, the VMM's interrupt failed */
};

#define ESR_EC(esr) (((esr) >> 26) & 0x3f)
#define ESR_EC_IABT_LOW 0x20
#define ESR_EC_IABT_CUR 0x21
#define ESR_FNV (1ULL << 10)
#define ESR_EA (1ULL << 9)
#define ESR_WNR (1ULL << 6)

enum arm64_notice_kind {
	NOTICE_SEA,		/* an abort on this vCPU, its record in the vCPU's source */
	NOTICE_ASYNC,		/* a record in the asynchronous source */
};

struct arm64_notice {
	uint8_t kind;
	bool no_record;		/* no address: the abort alone */
	struct vmras_arm64_abort abort;
	struct vmras_cper_mem mem;
};
_Static_assert(sizeof(struct arm64_notice) <= VR_NOTICE_ARCH_BYTES, "notice fits");

struct arm64 {
	struct vmras_arm64_config c;
	struct vmras_arm64_vcpu_io io;
	struct vr_ghes *ghes;	/* NULL: no GHES */
};

/* ---- KVM's register access (the default vcpu_io) ---- */

static int kvm_get_reg(void *ctx, int fd, uint64_t id, uint64_t *val)
{
	struct kvm_one_reg r = { .id = id, .addr = (uintptr_t)val };

	(void)ctx;
	return ioctl(fd, KABI_KVM_GET_ONE_REG, &r) ? -errno : 0;
}

static int kvm_set_reg(void *ctx, int fd, uint64_t id, uint64_t val)
{
	struct kvm_one_reg r = { .id = id, .addr = (uintptr_t)&val };

	(void)ctx;
	return ioctl(fd, KABI_KVM_SET_ONE_REG, &r) ? -errno : 0;
}

static int kvm_set_events(void *ctx, int fd, const void *events)
{
	(void)ctx;
	return ioctl(fd, KABI_ARM64_SET_VCPU_EVENTS, events) ? -errno : 0;
}

static const struct vmras_arm64_vcpu_io kvm_io = {
	.get_reg = kvm_get_reg,
	.set_reg = kvm_set_reg,
	.set_events = kvm_set_events,
};

/* ---- the ops ---- */

static unsigned int size_lsb(uint64_t size)
{
	unsigned int lsb = 12;

	while (lsb < 52 && (1ULL << lsb) < size)
		lsb++;
	return lsb;
}

static int arm64_prepare(void *data, const struct vmras_failure *f, unsigned int target,
			 uint32_t arch_state, unsigned int nvcpus, const bool *online,
			 struct vr_notice *out, unsigned int *vcpu_of, unsigned int max)
{
	const struct arm64 *a = data;
	const struct vmras_event *ev = &f->ev;
	/* Consumed by this vCPU: its abort. By a VMM thread: found, not consumed. */
	bool sea = ev->kind == VMRAS_AR && ev->source != VMRAS_SRC_MC_COPY &&
		   (ev->valid & VMRAS_EV_VCPU);
	struct arm64_notice n = {
		.kind = sea ? NOTICE_SEA : NOTICE_ASYNC,
		/*
		 * The 4 KiB page consumed (Linux's GHES retires the page of the
		 * address); the mask tells the guest how much was lost.
		 */
		.mem = {
			.gpa = ev->gpa & ~(SMALL_PAGE - 1),
			.lsb = size_lsb(f->size),
			.severity = VMRAS_CPER_SEV_RECOVERABLE,
			.time_ns = ev->time_ns,
		},
	};

	(void)arch_state;
	(void)nvcpus;
	(void)online;
	/* An abort KVM gave no address for is still the vCPU's: told, without a record. */
	if (!max || (!(ev->valid & VMRAS_EV_GPA) && !(sea && ev->source == VMRAS_SRC_ARM_SEA)))
		return -EINVAL;
	n.no_record = !(ev->valid & VMRAS_EV_GPA);
	if (!sea && !(a->ghes && a->c.ghes.async))
		return -EOPNOTSUPP; /* no asynchronous source: the guest cannot be told */
	if (sea) {
		n.abort.dfsc = a->c.dfsc;
		n.abort.set = a->c.set;
		/* KVM_EXIT_ARM_SEA says what the access was; a SIGBUS does not (FAR unknown). */
		if (ev->valid & VMRAS_EV_ESR) {
			uint64_t ec = ESR_EC(ev->esr);

			n.abort.iabt = ec == ESR_EC_IABT_LOW || ec == ESR_EC_IABT_CUR;
			n.abort.wnr = !n.abort.iabt && (ev->esr & ESR_WNR);
			n.abort.ea = ev->esr & ESR_EA;
			n.abort.far_valid = !(ev->esr & ESR_FNV) && (ev->valid & VMRAS_EV_GVA);
			n.abort.far = n.abort.far_valid ? ev->gva : 0;
		}
	}
	memset(&out[0], 0, sizeof(out[0]));
	out[0].f = *f;
	memcpy(out[0].arch, &n, sizeof(n));
	vcpu_of[0] = target;
	return 1;
}

/* The registers an entry writes, in the order it writes them. */
static const uint64_t entry_regs[] = {
	KABI_ARM64_REG_ESR_EL1, KABI_ARM64_REG_FAR_EL1, KABI_ARM64_REG_SPSR_EL1,
	KABI_ARM64_REG_ELR_EL1, KABI_ARM64_REG_PSTATE,	KABI_ARM64_REG_PC,
};
#define NENTRY_REGS (sizeof(entry_regs) / sizeof(entry_regs[0]))

/* What the entry needs, and the old values of what it writes (to put them back). */
static int read_cpu(const struct arm64 *a, int fd, struct vmras_arm64_cpu *c,
		    uint64_t old[NENTRY_REGS])
{
	const struct vmras_arm64_vcpu_io *io = &a->io;
	int r = 0;

	c->features = a->c.features;
	for (size_t i = 0; i < NENTRY_REGS && !r; i++)
		r = io->get_reg(io->ctx, fd, entry_regs[i], &old[i]);
	r = r ?: io->get_reg(io->ctx, fd, KABI_ARM64_REG_VBAR_EL1, &c->vbar_el1);
	r = r ?: io->get_reg(io->ctx, fd, KABI_ARM64_REG_SCTLR_EL1, &c->sctlr_el1);
	c->pstate = old[4];
	c->pc = old[5];
	return r;
}

/*
 * The abort's registers: the exception state first (ESR, FAR, SPSR, ELR),
 * then PSTATE and, last, PC. A failed write puts back every register
 * written before it: the guest may have been in its own exception entry,
 * where those are live.
 */
static int write_entry(const struct arm64 *a, int fd, const uint64_t old[NENTRY_REGS],
		       const struct vmras_arm64_entry *e)
{
	const struct vmras_arm64_vcpu_io *io = &a->io;
	const uint64_t val[NENTRY_REGS] = { e->esr_el1, e->far_el1, e->spsr_el1,
					    e->elr_el1, e->pstate,   e->pc };
	size_t i;
	int r = 0;

	for (i = 0; i < NENTRY_REGS && !r; i++)
		r = io->set_reg(io->ctx, fd, entry_regs[i], val[i]);
	if (r)
		for (size_t k = 0; k + 1 < i; k++)
			(void)io->set_reg(io->ctx, fd, entry_regs[k], old[k]);
	return r;
}

static int enter_sea(const struct arm64 *a, const struct arm64_notice *n,
		     struct vmras_arm64_cpu *c, struct vmras_arm64_entry *e)
{
	int r;

	if (a->c.ar_mode == VMRAS_ARM64_AR_EXT_DABT)
		return 0; /* KVM computes the entry */
	r = vmras_arm64_sea_entry(c, &n->abort, e);
	if (r == -EOPNOTSUPP)
		return ARM64_AARCH32_EL1;
	if (r == -EINVAL)
		return ARM64_NESTED;
	return r;
}

/*
 * held: the engine held this AR for the guest's acknowledgement, and the
 * hold is over. The abort is the notification; the record is its
 * description: a guest that does not acknowledge records (no GHES driver,
 * a kernel-mode SEA Linux does not hand to APEI) still gets the abort,
 * without a new record, and the unacknowledged one is never overwritten.
 */
static int deliver_sea(struct arm64 *a, unsigned int vcpu, int fd, const struct arm64_notice *n,
		       bool held)
{
	unsigned char rec[VMRAS_CPER_MEM_BLOCK_LEN];
	uint64_t old[NENTRY_REGS];
	struct vmras_arm64_entry e;
	struct vmras_arm64_cpu c;
	bool posted = false;
	int r, len;

	r = read_cpu(a, fd, &c, old);
	if (r)
		return r;
	/* No vectors yet (early boot): the abort would run off into address 0x200. */
	if (!c.vbar_el1)
		return VR_NOT_READY;
	r = enter_sea(a, n, &c, &e);
	if (r)
		return r;
	if (a->ghes && !n->no_record) {
		if (vcpu >= a->c.ghes.nsea)
			return ARM64_NO_SOURCE;
		len = vmras_cper_mem_block(&n->mem, 1, rec, sizeof(rec));
		if (len < 0)
			return len;
		r = vr_ghes_post(a->ghes, vcpu, rec, (size_t)len);
		if (r < 0 || (r > 0 && !held))
			return r > 0 ? VR_BUSY : r;
		posted = r == 0;
	}
	if (a->c.ar_mode == VMRAS_ARM64_AR_EXT_DABT) {
		struct kabi_arm64_vcpu_events ev = { .exception.ext_dabt_pending = 1 };

		r = a->io.set_events(a->io.ctx, fd, &ev);
	} else {
		r = write_entry(a, fd, old, &e);
	}
	if (r && posted)
		vr_ghes_unpost(a->ghes, vcpu);
	return r;
}

static int deliver_async(struct arm64 *a, const struct arm64_notice *n)
{
	unsigned char rec[VMRAS_CPER_MEM_BLOCK_LEN];
	int r, len = vmras_cper_mem_block(&n->mem, 1, rec, sizeof(rec));

	if (len < 0)
		return len;
	r = vr_ghes_post(a->ghes, a->c.ghes.nsea, rec, (size_t)len);
	if (r)
		return r > 0 ? VR_BUSY : r;
	if (a->c.ghes.async_notify != VMRAS_GHES_NOTIFY_GSIV || !a->c.raise_async)
		return VR_DELIVERED; /* the guest polls */
	if (!a->c.raise_async(a->c.opaque, a->c.ghes.gsiv))
		return VR_DELIVERED;
	/* Not signalled: take the record back, or the source would wait for an ack forever. */
	vr_ghes_unpost(a->ghes, a->c.ghes.nsea);
	return ARM64_RAISE_FAILED;
}

static int arm64_deliver(void *data, unsigned int vcpu, int vcpu_fd, const struct vr_notice *n)
{
	struct arm64_notice an;

	memcpy(&an, n->arch, sizeof(an));
	return an.kind == NOTICE_SEA ? deliver_sea(data, vcpu, vcpu_fd, &an, n->held_since_ns != 0)
				     : deliver_async(data, &an);
}

/* Still handling an abort: its vCPU's record is not acknowledged yet. */
static int arm64_busy(void *data, unsigned int vcpu, int vcpu_fd, bool *busy)
{
	struct arm64 *a = data;

	(void)vcpu_fd;
	*busy = a->ghes && vcpu < a->c.ghes.nsea && vr_ghes_busy(a->ghes, vcpu);
	return 0;
}

static void arm64_reset(void *data)
{
	struct arm64 *a = data;

	if (a->ghes)
		vr_ghes_reset(a->ghes);
}

static void arm64_free(void *data)
{
	struct arm64 *a = data;

	if (a)
		vr_ghes_destroy(a->ghes);
	free(a);
}

const char *vmras_arm64_delivery_name(int d)
{
	switch (d) {
	case VR_DELIVERED:
		return "delivered";
	case VR_BUSY:
		return "the guest has not acknowledged the last error record of this source";
	case VR_NOT_READY:
		return "the guest has no exception vectors yet (VBAR_EL1 is 0)";
	case ARM64_NESTED:
		return "the vCPU runs at EL2 (nested virtualization is not modelled)";
	case ARM64_AARCH32_EL1:
		return "the guest kernel is AArch32 (not modelled)";
	case ARM64_NO_SOURCE:
		return "no GHES SEA source for this vCPU";
	case ARM64_RAISE_FAILED:
		return "the VMM could not raise the asynchronous source's interrupt";
	case VR_ARCH_NO_WAY:
		return "no asynchronous GHES source; QEMU does not tell arm64 guests either";
	default:
		return "unknown";
	}
}

const struct vr_arch_ops vr_arch_arm64 = {
	.name = "arm64",
	.prepare = arm64_prepare,
	.deliver = arm64_deliver,
	.why = vmras_arm64_delivery_name,
	.busy = arm64_busy,
	.reset = arm64_reset,
	.free = arm64_free,
};

int vmras_arm64_setup(struct vmras *v, const struct vmras_arm64_config *c)
{
	struct arm64 *a;
	int r;

	if (c->ar_mode > VMRAS_ARM64_AR_EXT_DABT ||
	    (c->dfsc && c->dfsc != VMRAS_DFSC_SEA && c->dfsc != VMRAS_DFSC_ECC) ||
	    (c->set && (c->dfsc == VMRAS_DFSC_ECC || c->set == 1 || c->set > VMRAS_SET_UEO)))
		return -EINVAL;
	/* 0x18 is reserved where FEAT_RAS is implemented. */
	if (c->dfsc == VMRAS_DFSC_ECC && (c->features & VMRAS_ARM64_FEAT_RAS))
		return -EINVAL;
	if (c->io && (!c->io->get_reg || !c->io->set_reg || !c->io->set_events))
		return -EINVAL;
	if (v->engine_started)
		return -EBUSY;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->c = *c;
	if (!a->c.dfsc)
		a->c.dfsc = VMRAS_DFSC_SEA;
	a->io = c->io ? *c->io : kvm_io;
	if (c->ghes.hva) {
		r = vr_ghes_create(&c->ghes, &a->ghes);
		if (r) {
			free(a);
			return r;
		}
	}
	if (v->arch && v->arch->free)
		v->arch->free(v->arch_data);
	v->arch = &vr_arch_arm64;
	v->arch_data = a;
	return 0;
}

int vmras_arm64_inject_serror(int vcpu_fd, uint64_t iss, const struct vmras_arm64_vcpu_io *io)
{
	struct kabi_arm64_vcpu_events ev = {
		.exception = { .serror_pending = 1, .serror_has_esr = 1, .serror_esr = iss },
	};

	/* KVM takes the ISS only (ESR_ELx_ISS_MASK, bits 24:0). */
	if (iss >> 25)
		return -EINVAL;
	if (!io)
		io = &kvm_io;
	return io->set_events(io->ctx, vcpu_fd, &ev);
}
