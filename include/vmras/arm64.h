/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * arm64 guests: how libvmras tells them about memory errors.
 *
 * An action-required error becomes a synchronous external abort that the
 * library enters by writing the vCPU's registers (KVM_SET_ONE_REG), with
 * an ESR it chooses, or through KVM's own ext_dabt_pending; each error is
 * described to the guest's firmware-first handler (APEI GHES) by a CPER
 * memory error record in a GHESv2 error status block the guest
 * acknowledges (read-ack register). An action-optional error goes to an
 * asynchronous GHES source the VMM signals with an interrupt. No new KVM
 * interface: this is the design James Morse and Dongjiu Geng settled.
 *
 * Pure encoders (ESR, exception entry, CPER, HEST) for tests and a VMM's
 * ACPI builder, and the setup that makes them the library's arch.
 */
#ifndef VMRAS_ARM64_H
#define VMRAS_ARM64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(default)

struct vmras;

/* ---- ESR_EL1 (Arm ARM D17.2.37; ISS for a Data Abort, for an SError) ---- */

#define VMRAS_ESR_EC_DABT_LOW 0x24	/* Data Abort from a lower Exception level */
#define VMRAS_ESR_EC_DABT_CUR 0x25	/* Data Abort without a change in level */
#define VMRAS_ESR_EC_SERROR 0x2f

#define VMRAS_DFSC_SEA 0x10	/* synchronous external abort, not on a table walk */
#define VMRAS_DFSC_ECC 0x18	/* synchronous parity or ECC error (guests without FEAT_RAS) */

/* ESR.SET (with DFSC 0x10 on FEAT_RAS): the state the error left the PE in. */
#define VMRAS_SET_UER 0		/* recoverable */
#define VMRAS_SET_UC 2		/* uncontainable */
#define VMRAS_SET_UEO 3		/* restartable */

/* SError ISS.AET (FEAT_RAS). */
#define VMRAS_AET_UC 0
#define VMRAS_AET_UEU 1		/* unrecoverable */
#define VMRAS_AET_UEO 2		/* restartable, not yet consumed */
#define VMRAS_AET_UER 3		/* recoverable */
#define VMRAS_AET_CE 6		/* corrected */

struct vmras_arm64_abort {
	uint8_t dfsc;		/* VMRAS_DFSC_SEA or VMRAS_DFSC_ECC */
	uint8_t set;		/* VMRAS_SET_*: only with DFSC_SEA on a FEAT_RAS guest */
	bool wnr;		/* the access was a write */
	bool ea;		/* ESR.EA: the implementation's external abort class */
	bool far_valid;		/* FAR holds the faulting VA (else FnV is set) */
	bool iabt;		/* an instruction fetch (EC 0x20/0x21, no WnR) */
	uint64_t far;
};

/*
 * A data abort's ESR (an instruction abort's with a->iabt); same_el:
 * taken from EL1 (EC 0x25/0x21), else from EL0. -EINVAL: a bad field.
 */
int vmras_arm64_esr_dabt(bool same_el, const struct vmras_arm64_abort *a, uint64_t *esr);
/* An SError's ISS (DFSC 0x11, AET, EA), for KVM_SET_VCPU_EVENTS serror_esr. */
int vmras_arm64_serror_iss(unsigned int aet, bool ea, uint64_t *iss);

/* ---- exception entry (Arm ARM D1.10; pseudocode AArch64.TakeException) ---- */

/* What the guest's CPU model offers that changes what an exception entry does. */
/* (PAN and SSBS need no flag: SCTLR_EL1.SPAN and DSSBS say it, RES1/RES0 without them.) */
#define VMRAS_ARM64_FEAT_MTE (1u << 0)	/* PSTATE.TCO set on entry */
#define VMRAS_ARM64_FEAT_RAS (1u << 1)	/* ESR.SET is defined (else it must be 0) */

/* The vCPU where the abort happened (registers as KVM_GET_ONE_REG reads them). */
struct vmras_arm64_cpu {
	uint64_t pc;
	uint64_t pstate;	/* KVM's regs.pstate: SPSR format, AArch64 or AArch32 */
	uint64_t vbar_el1, sctlr_el1;
	uint32_t features;	/* VMRAS_ARM64_FEAT_* */
};

/* What the registers become: the abort taken to EL1 (AArch64, SP_EL1). */
struct vmras_arm64_entry {
	uint64_t pc;		/* VBAR_EL1 + vector */
	uint64_t pstate;	/* DAIF masked, EL1h, ... */
	uint64_t spsr_el1;	/* the interrupted PSTATE */
	uint64_t elr_el1;	/* the faulting instruction */
	uint64_t esr_el1, far_el1;
	unsigned int vector;	/* 0x000, 0x200, 0x400 or 0x600 */
};

/*
 * The synchronous external abort a, taken by the vCPU in state c.
 * -EINVAL: a bad abort, or the vCPU is at EL2/EL3 (nested virtualization
 * is not modelled); -EOPNOTSUPP: an AArch32 EL1 (32-bit guest kernel).
 */
int vmras_arm64_sea_entry(const struct vmras_arm64_cpu *c, const struct vmras_arm64_abort *a,
			  struct vmras_arm64_entry *out);

/* ---- CPER (UEFI 2.10 N.2.5) in an ACPI Generic Error Status Block ---- */

#define VMRAS_CPER_SEV_RECOVERABLE 0
#define VMRAS_CPER_SEV_FATAL 1
#define VMRAS_CPER_SEV_CORRECTED 2

#define VMRAS_GHES_BLOCK_SIZE 1024	/* each error status block (QEMU's too) */
#define VMRAS_CPER_MEM_BLOCK_LEN 172	/* status block 20 + data entry 72 + memory section 80 */

struct vmras_cper_mem {
	uint64_t gpa;		/* the guest physical address lost */
	unsigned int lsb;	/* log2 of what was lost: 12 for 4 KiB, 21 for a 2 MiB page */
	uint32_t severity;	/* VMRAS_CPER_SEV_*: recoverable for a memory error */
	uint64_t time_ns;	/* CLOCK_REALTIME, or 0: no timestamp */
};

/*
 * Generic Error Status Block (ACPI 6.5 18.3.2.7.1) with n memory error
 * sections, into buf (VMRAS_CPER_MEM_BLOCK_LEN + 152 * (n - 1) bytes).
 * Returns the length, -ENOSPC, or -EINVAL (n is 0, lsb outside 12..52).
 */
int vmras_cper_mem_block(const struct vmras_cper_mem *e, unsigned int n, void *buf, size_t size);

/* ---- GHES: the guest memory and the HEST entries that describe it ---- */

/* How the asynchronous source tells the guest (ACPI 6.5 18.3.2.9, Hardware Error Notification). */
enum vmras_ghes_notify {
	VMRAS_GHES_NOTIFY_GSIV = 10,	/* an interrupt: the VMM raises gsiv */
	VMRAS_GHES_NOTIFY_POLLED = 0,	/* the guest polls every poll_ms */
};

/*
 * The guest memory the VMM sets aside for GHES (a reserved range of RAM,
 * or a memory slot of its own): for each source, an error status address
 * register, then every read-ack register, then the blocks, as QEMU lays
 * out "etc/hardware_errors". Sources 0..nsea-1 are SEA sources, one per
 * vCPU (two vCPUs' errors never share a block); source nsea, with async,
 * takes action-optional errors.
 */
struct vmras_arm64_ghes {
	uint64_t gpa;		/* 8-byte aligned */
	void *hva;		/* its mapping in this process */
	size_t size;		/* at least vmras_arm64_ghes_size() */
	unsigned int nsea;	/* SEA sources: the number of vCPUs */
	bool async;		/* one asynchronous source more */
	enum vmras_ghes_notify async_notify;
	uint32_t gsiv;		/* GSIV: the interrupt (a GIC SPI's INTID) */
	uint32_t poll_ms;	/* POLLED: how often */
};

size_t vmras_arm64_ghes_size(unsigned int nsea, bool async);

#define VMRAS_HEST_GHESV2_LEN 92	/* one GHESv2 (type 10) entry */

/*
 * The HEST's error source entries for g (GHESv2, ACPI 6.5 18.3.2.8), for
 * a VMM's ACPI builder to put after the HEST header and its Error Source
 * Count (nsea + async): returns the length, or -ENOSPC / -EINVAL.
 */
int vmras_arm64_hest_entries(const struct vmras_arm64_ghes *g, void *buf, size_t size);

/* ---- the library's arch for arm64 guests ---- */

enum vmras_arm64_ar_mode {
	VMRAS_ARM64_AR_REGS,		/* register writes, the ESR chosen below */
	VMRAS_ARM64_AR_EXT_DABT,	/* KVM_SET_VCPU_EVENTS ext_dabt_pending (KVM's ESR) */
};

/*
 * The register access the arch uses: KVM's ioctls by default; tests give
 * a fake vCPU that records what was written.
 */
struct vmras_arm64_vcpu_io {
	int (*get_reg)(void *ctx, int vcpu_fd, uint64_t id, uint64_t *val);
	int (*set_reg)(void *ctx, int vcpu_fd, uint64_t id, uint64_t val);
	/* arm64's struct kvm_vcpu_events, 64 bytes */
	int (*set_events)(void *ctx, int vcpu_fd, const void *events);
	void *ctx;
};

struct vmras_arm64_config {
	enum vmras_arm64_ar_mode ar_mode;
	uint8_t dfsc;		/* REGS: VMRAS_DFSC_SEA (default when 0) or VMRAS_DFSC_ECC */
	uint8_t set;		/* REGS with DFSC_SEA on FEAT_RAS guests: VMRAS_SET_* */
	uint32_t features;	/* VMRAS_ARM64_FEAT_* of the guest's CPU model */
	/* NULL hva: no GHES (the guest has no ACPI): SEAs only, AOs are not told */
	struct vmras_arm64_ghes ghes;
	/*
	 * VMM hook: signal the asynchronous source's interrupt (GSIV), on a
	 * vCPU thread, no library lock held; 0 or -errno (the record is then
	 * taken back). A pulse: describe the GSIV as edge-triggered to the
	 * guest (vmras has no "lower" step).
	 */
	int (*raise_async)(void *opaque, uint32_t gsiv);
	void *opaque;
	const struct vmras_arm64_vcpu_io *io;	/* NULL: KVM ioctls */
};

/*
 * Tell arm64 guests (before vmras_start). Initialises the GHES memory
 * (each error status address, read-ack 1: free). -EINVAL: a bad config
 * (DFSC 0x18 on a FEAT_RAS guest), GHES memory too small or unaligned. A
 * vCPU with no SEA source of its own (index >= nsea) has its aborts
 * reported undeliverable, with that reason.
 */
int vmras_arm64_setup(struct vmras *v, const struct vmras_arm64_config *c);

/* Inject an SError with ISS iss (KVM_CAP_ARM_INJECT_SERROR_ESR): vCPU thread. */
int vmras_arm64_inject_serror(int vcpu_fd, uint64_t iss, const struct vmras_arm64_vcpu_io *io);

/* Why a notice could not go in (deliver results above VR_NOT_READY). */
const char *vmras_arm64_delivery_name(int d);

#pragma GCC visibility pop

#endif
