// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * arm64 without an arm64 host. The encoders byte for byte, against
 * values worked out by hand from the Arm ARM (ESR_EL1, exception entry:
 * chapter D1 and AArch64.TakeException), ACPI 6.5 (18.3.2.7.1 Generic
 * Error Status Block and Data Entry, 18.3.2.8 GHESv2) and UEFI 2.10
 * (N.2.5 Memory Error Section), not against the code's own output; then
 * the whole library on a fake vCPU (the arch ops' register seam) that
 * records every KVM_SET_ONE_REG: the order and values of the writes, the
 * GHES read-ack protocol, the asynchronous source, a guest reset.
 * Runs natively and under qemu-aarch64 (scripts/cross-test).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "kabi/arm64.h"
#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"
#include "tap.h"
#include "vmras/arm64.h"
#include "vmras/vmras.h"

/* Register ids, from api.rst's formula by hand (0x6030 0000 0010 <word> / 0013 <op0..op2>). */
#define ID_PC 0x6030000000100040ULL
#define ID_PSTATE 0x6030000000100042ULL
#define ID_ELR_EL1 0x6030000000100046ULL
#define ID_SPSR_EL1 0x6030000000100048ULL
#define ID_SCTLR_EL1 0x603000000013c080ULL
#define ID_ESR_EL1 0x603000000013c290ULL
#define ID_FAR_EL1 0x603000000013c300ULL
#define ID_VBAR_EL1 0x603000000013c600ULL

static void test_register_ids(void)
{
	is_u64(KABI_ARM64_REG_PC, ID_PC, "PC's register id");
	is_u64(KABI_ARM64_REG_PSTATE, ID_PSTATE, "PSTATE's register id");
	is_u64(KABI_ARM64_REG_ELR_EL1, ID_ELR_EL1, "ELR_EL1's register id (core)");
	is_u64(KABI_ARM64_REG_SPSR_EL1, ID_SPSR_EL1, "SPSR_EL1's register id (core spsr[0])");
	is_u64(KABI_ARM64_REG_SCTLR_EL1, ID_SCTLR_EL1, "SCTLR_EL1 (3,0,1,0,0)");
	is_u64(KABI_ARM64_REG_ESR_EL1, ID_ESR_EL1, "ESR_EL1 (3,0,5,2,0)");
	is_u64(KABI_ARM64_REG_FAR_EL1, ID_FAR_EL1, "FAR_EL1 (3,0,6,0,0)");
	is_u64(KABI_ARM64_REG_VBAR_EL1, ID_VBAR_EL1, "VBAR_EL1 (3,0,12,0,0)");
}

static void test_esr(void)
{
	struct vmras_arm64_abort a = { .dfsc = VMRAS_DFSC_SEA };
	uint64_t esr = 0;

	/* EC 0x24 << 26 = 0x90000000, IL 0x02000000, FnV 0x400, DFSC 0x10. */
	is_int(vmras_arm64_esr_dabt(false, &a, &esr), 0, "ESR: SEA from EL0, FAR unknown");
	is_u64(esr, 0x92000410, "  = 0x92000410 (QEMU's syn_data_abort_no_iss(0, 1, 0, 0, 0, 0, 0x10))");
	/* EC 0x25 << 26 = 0x94000000 | IL | WnR 0x40 | 0x10. */
	a.far_valid = true;
	a.wnr = true;
	vmras_arm64_esr_dabt(true, &a, &esr);
	is_u64(esr, 0x96000050, "ESR: SEA from EL1, a write, FAR valid = 0x96000050");
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_ECC, .ea = true };
	vmras_arm64_esr_dabt(false, &a, &esr);
	is_u64(esr, 0x92000618, "ESR: parity/ECC error, EA, from EL0 = 0x92000618");
	/* SET 0b11 (UEO) at ISS[12:11] = 0x1800. */
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_SEA, .set = VMRAS_SET_UEO };
	vmras_arm64_esr_dabt(true, &a, &esr);
	is_u64(esr, 0x96001c10, "ESR: SEA, SET=UEO, from EL1 = 0x96001c10");
	/* Instruction abort: EC 0x20 (lower) / 0x21 (same) << 26. */
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_SEA, .iabt = true };
	vmras_arm64_esr_dabt(false, &a, &esr);
	is_u64(esr, 0x82000410, "ESR: instruction abort (SEA) from EL0 = 0x82000410");
	vmras_arm64_esr_dabt(true, &a, &esr);
	is_u64(esr, 0x86000410, "ESR: instruction abort (SEA) from EL1 = 0x86000410");
	a.wnr = true;
	is_int(vmras_arm64_esr_dabt(true, &a, &esr), -EINVAL, "an instruction abort has no WnR");
	a = (struct vmras_arm64_abort){ .dfsc = 0x11 };
	is_int(vmras_arm64_esr_dabt(true, &a, &esr), -EINVAL, "a DFSC other than 0x10/0x18: -EINVAL");
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_SEA, .set = 1 };
	is_int(vmras_arm64_esr_dabt(true, &a, &esr), -EINVAL, "the reserved SET 0b01: -EINVAL");
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_ECC, .set = VMRAS_SET_UER + 2 };
	is_int(vmras_arm64_esr_dabt(true, &a, &esr), -EINVAL, "SET with DFSC 0x18: -EINVAL");

	/* SError ISS: AET at [12:10], EA bit 9, DFSC 0x11. */
	is_int(vmras_arm64_serror_iss(VMRAS_AET_UEO, false, &esr), 0, "SError ISS, restartable");
	is_u64(esr, 0x811, "  = 0x811 (Linux's ESR_ELx_AET_UEO | ESR_ELx_FSC_SERROR)");
	vmras_arm64_serror_iss(VMRAS_AET_UER, true, &esr);
	is_u64(esr, 0xe11, "SError ISS, recoverable, EA = 0xe11");
	is_int(vmras_arm64_serror_iss(5, false, &esr), -EINVAL, "a reserved AET: -EINVAL");
}

#define VBAR 0xffff800010010800ULL
#define SPAN (1ULL << 23)
#define DSSBS (1ULL << 44)

struct entry_case {
	const char *name;
	uint64_t pstate, sctlr;
	uint32_t features;
	unsigned int vector;
	uint64_t esr, new_pstate;
};

/*
 * New PSTATE by hand: NZCV and DIT (bit 24) kept; DAIF (0x3c0) set; M =
 * EL1h (0x5); PAN (bit 22) kept, and set when SCTLR_EL1.SPAN is 0; SSBS
 * (bit 12) = SCTLR_EL1.DSSBS; TCO (bit 25) with MTE; all else 0.
 */
static const struct entry_case entry_cases[] = {
	{ "EL0 AArch64 (EL0t), SPAN 1", 0x80000000, SPAN, 0, 0x400, 0x92000410, 0x800003c5 },
	{ "EL0 AArch64, SPAN 0: PAN set", 0x80000000, 0, 0, 0x400, 0x92000410, 0x804003c5 },
	{ "EL1 on SP_EL1 (EL1h)", 0x60000005, SPAN, 0, 0x200, 0x96000410, 0x600003c5 },
	{ "EL1 on SP_EL0 (EL1t)", 0x20400004, SPAN, 0, 0x000, 0x96000410, 0x204003c5 },
	{ "EL0 AArch32 (usr, Thumb, GE, IT dropped)", 0x800f0030 | (3ULL << 25), SPAN, 0, 0x600,
	  0x92000410, 0x800003c5 },
	{ "EL0 with DIT, SSBS and MTE", 0x01001000 | (1ULL << 21), SPAN | DSSBS,
	  VMRAS_ARM64_FEAT_MTE, 0x400, 0x92000410, 0x030013c5 },
};

static void test_entry(void)
{
	struct vmras_arm64_abort a = { .dfsc = VMRAS_DFSC_SEA };
	struct vmras_arm64_entry e;

	for (size_t i = 0; i < sizeof(entry_cases) / sizeof(entry_cases[0]); i++) {
		const struct entry_case *t = &entry_cases[i];
		struct vmras_arm64_cpu c = {
			.pc = 0x400abc, .pstate = t->pstate, .vbar_el1 = VBAR, .sctlr_el1 = t->sctlr,
			.features = t->features,
		};

		memset(&e, 0x5a, sizeof(e));
		if (!is_int(vmras_arm64_sea_entry(&c, &a, &e), 0, "entry: %s", t->name))
			continue;
		ok(e.vector == t->vector && e.pc == VBAR + t->vector,
		   "  vector 0x%03x, PC = VBAR_EL1 + 0x%03x", t->vector, t->vector);
		is_u64(e.esr_el1, t->esr, "  ESR_EL1");
		is_u64(e.pstate, t->new_pstate, "  PSTATE on entry");
		ok(e.spsr_el1 == t->pstate && e.elr_el1 == 0x400abc && e.far_el1 == 0,
		   "  SPSR_EL1 = the old PSTATE, ELR_EL1 = the faulting PC, FAR_EL1 0 (FnV)");
	}
	struct vmras_arm64_cpu c = { .pstate = 0x13, .vbar_el1 = VBAR }; /* AArch32 svc */

	is_int(vmras_arm64_sea_entry(&c, &a, &e), -EOPNOTSUPP, "an AArch32 EL1: -EOPNOTSUPP");
	c.pstate = 0x9; /* EL2h */
	is_int(vmras_arm64_sea_entry(&c, &a, &e), -EINVAL, "a vCPU at EL2: -EINVAL");
	c.pstate = 0x5;
	a = (struct vmras_arm64_abort){ .dfsc = VMRAS_DFSC_SEA, .set = VMRAS_SET_UEO,
					.far_valid = true, .far = 0xffff000012345678ULL };
	vmras_arm64_sea_entry(&c, &a, &e);
	ok(e.esr_el1 == 0x96000010 && e.far_el1 == 0xffff000012345678ULL,
	   "without FEAT_RAS SET is 0 (RES0); a valid FAR is written with FnV clear");
	c.features = VMRAS_ARM64_FEAT_RAS;
	vmras_arm64_sea_entry(&c, &a, &e);
	is_u64(e.esr_el1, 0x96001810, "with FEAT_RAS, SET=UEO reaches the ESR");
}

/* What QEMU 7.2-9.x writes for physical address 0x40001000 (hw/acpi/ghes.c), 172 bytes. */
static void qemu_block(unsigned char *b, uint64_t pa)
{
	static const unsigned char guid[16] = { 0x14, 0x11, 0xbc, 0xa5, 0x64, 0x6f, 0xde, 0x4e,
						0xb8, 0x63, 0x3e, 0x83, 0xed, 0x7c, 0x83, 0xb1 };

	memset(b, 0, 172);
	b[0] = 0x01;		/* block status: uncorrectable valid, entry count 0 */
	b[12] = 152;		/* data length 72 + 80 */
	memcpy(b + 20, guid, 16);	/* section type: Memory Error */
	b[20 + 20] = 0x00;	/* revision 0x0300, little-endian */
	b[20 + 21] = 0x03;
	b[20 + 24] = 80;	/* error data length */
	b[92] = 0x02;		/* validation: physical address (bit 1) */
	b[93] = 0x40;		/*   and memory error type (bit 14) */
	for (int i = 0; i < 8; i++)
		b[92 + 16 + i] = (unsigned char)(pa >> (8 * i));
	b[92 + 72] = 0;		/* memory error type: unknown */
}

static void test_cper(void)
{
	unsigned char got[2 * 172], want[172];
	struct vmras_cper_mem e = { .gpa = 0x40001000, .lsb = 12 };

	is_int(vmras_cper_mem_block(&e, 1, got, sizeof(got)), 172, "a memory error's status block is 172 bytes");
	qemu_block(want, 0x40001000);
	/* Where vmras differs from QEMU, on purpose: */
	want[0] = 0x11;		/* Error Data Entry Count 1 (bits 13:4) */
	want[92] |= 0x04;	/* physical address mask valid (bit 2) */
	memset(want + 92 + 24, 0xff, 8);	/* mask: ~0xfff = 4 KiB granularity */
	want[92 + 24] = 0x00;
	want[92 + 25] = 0xf0;
	ok(!memcmp(got, want, 172), "QEMU's bytes but for the entry count and the 4 KiB mask");

	e.lsb = 21;
	e.time_ns = 1795342830ULL * 1000000000ULL + 5; /* 2026-11-22 10:20:30 UTC */
	vmras_cper_mem_block(&e, 1, got, sizeof(got));
	static const unsigned char ts[8] = { 0x30, 0x20, 0x10, 0x01, 0x22, 0x11, 0x26, 0x20 };
	ok(got[92 + 24] == 0x00 && got[92 + 25] == 0x00 && got[92 + 26] == 0xe0 &&
	   got[92 + 27] == 0xff, "a 2 MiB page lost whole: mask ~0x1fffff");
	ok(got[20 + 22] == 0x04 && !memcmp(got + 20 + 64, ts, 8),
	   "timestamp valid (bit 2), BCD 10:20:30 precise, 22 Nov 2026");

	struct vmras_cper_mem two[2] = { { .gpa = 0x1000, .lsb = 12 },
					 { .gpa = 0x5000, .lsb = 12,
					   .severity = VMRAS_CPER_SEV_CORRECTED } };

	is_int(vmras_cper_mem_block(two, 2, got, sizeof(got)), 20 + 2 * 152, "two sections: 324 bytes");
	is_u64(got[0] | got[1] << 8, 0x23, "block status: UE valid, CE valid (one of each), count 2");
	ok(got[12] == (304 & 0xff) && got[13] == 304 >> 8 && got[16] == 0,
	   "data length 304, block severity recoverable (the worse one)");
	ok(got[20 + 152 + 16] == VMRAS_CPER_SEV_CORRECTED && got[20 + 152 + 72 + 17] == 0x50,
	   "the second entry: corrected, physical address 0x5000");
	is_int(vmras_cper_mem_block(&e, 1, got, 171), -ENOSPC, "171 bytes: -ENOSPC");
	e.lsb = 11;
	is_int(vmras_cper_mem_block(&e, 1, got, sizeof(got)), -EINVAL, "lsb 11: -EINVAL");
	is_int(vmras_cper_mem_block(&e, 0, got, sizeof(got)), -EINVAL, "no error: -EINVAL");
}

static void gas(unsigned char *p, uint64_t addr)
{
	p[0] = 0;		/* system memory */
	p[1] = 64;		/* bit width */
	p[2] = 0;		/* bit offset */
	p[3] = 4;		/* QWord access */
	for (int i = 0; i < 8; i++)
		p[4 + i] = (unsigned char)(addr >> (8 * i));
}

/* One GHESv2 entry (ACPI 6.5 18.3.2.8) by hand. */
static void ghesv2(unsigned char *p, unsigned int id, uint64_t status_reg, uint64_t ack_reg,
		   uint8_t notify, uint32_t poll, uint32_t vector)
{
	memset(p, 0, 92);
	p[0] = 10;		/* type: GHESv2 */
	p[2] = (unsigned char)id;
	p[4] = p[5] = 0xff;	/* related source: none */
	p[7] = 1;		/* enabled */
	p[8] = 1;		/* records to pre-allocate */
	p[12] = 1;		/* max sections per record */
	p[17] = 0x04;		/* max raw data length 1024 */
	gas(p + 20, status_reg);
	p[32] = notify;
	p[33] = 28;		/* notification structure length */
	memcpy(p + 36, &poll, 4);
	memcpy(p + 40, &vector, 4);
	p[61] = 0x04;		/* error status block length 1024 */
	gas(p + 64, ack_reg);
	memset(p + 76, 0xff, 8);	/* read ack preserve ~1 */
	p[76] = 0xfe;
	p[84] = 1;		/* read ack write 1 */
}

static void test_hest(void)
{
	struct vmras_arm64_ghes g = {
		.gpa = 0x80000000, .nsea = 2, .async = true,
		.async_notify = VMRAS_GHES_NOTIFY_GSIV, .gsiv = 45,
	};
	unsigned char got[3 * 92], want[3 * 92];

	is_int(vmras_arm64_ghes_size(2, true), 3 * (16 + 1024), "GHES memory for 2 vCPUs + async");
	is_int(vmras_arm64_hest_entries(&g, got, sizeof(got)), 3 * 92, "three GHESv2 entries");
	/* Registers: 3 error status addresses at +0, +8, +16; read-acks at +24, +32, +40. */
	ghesv2(want, 0, 0x80000000, 0x80000018, 8, 0, 0);
	ghesv2(want + 92, 1, 0x80000008, 0x80000020, 8, 0, 0);
	ghesv2(want + 184, 2, 0x80000010, 0x80000028, 10, 0, 45);
	ok(!memcmp(got, want, 92), "source 0: SEA (notification 8), QEMU's GHESv2 bytes");
	ok(!memcmp(got + 92, want + 92, 92), "source 1: vCPU 1's own SEA source");
	ok(!memcmp(got + 184, want + 184, 92), "source 2: GSIV (notification 10), vector 45");
	g.async_notify = VMRAS_GHES_NOTIFY_POLLED;
	g.poll_ms = 500;
	vmras_arm64_hest_entries(&g, got, sizeof(got));
	ghesv2(want + 184, 2, 0x80000010, 0x80000028, 0, 500, 0);
	ok(!memcmp(got + 184, want + 184, 92), "a polled source: type 0, poll interval 500 ms");
	is_int(vmras_arm64_hest_entries(&g, got, 3 * 92 - 1), -ENOSPC, "too small a buffer: -ENOSPC");
	g.gpa |= 4;
	is_int(vmras_arm64_hest_entries(&g, got, sizeof(got)), -EINVAL, "unaligned registers: -EINVAL");
}

/* ---- the library on a fake vCPU ---------------------------------------- */

#define GPA_BASE 0x40000000ULL
#define RAM_SIZE (8ULL << 20)
#define GHES_GPA 0x90000000ULL
#define NVCPUS 2
#define GSIV 45

struct fake_cpu {
	int fd;
	uint64_t pc, pstate, vbar, sctlr, esr, far, spsr, elr;
	unsigned int nwrites;
	uint64_t write_id[16], write_val[16];
	struct kabi_arm64_vcpu_events events;
	unsigned int nevents;
	int fail_id;		/* a write to this id fails with -EIO */
};

static struct fake_cpu cpus[NVCPUS];
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmras *ras;
static uint64_t *ghes_mem;
static atomic_int raised, failures_seen;
static struct vmras_failure last;

static struct fake_cpu *cpu_of(int fd)
{
	for (int i = 0; i < NVCPUS; i++)
		if (cpus[i].fd == fd)
			return &cpus[i];
	return NULL;
}

static uint64_t *reg_of(struct fake_cpu *c, uint64_t id)
{
	switch (id) {
	case ID_PC: return &c->pc;
	case ID_PSTATE: return &c->pstate;
	case ID_VBAR_EL1: return &c->vbar;
	case ID_SCTLR_EL1: return &c->sctlr;
	case ID_ESR_EL1: return &c->esr;
	case ID_FAR_EL1: return &c->far;
	case ID_SPSR_EL1: return &c->spsr;
	case ID_ELR_EL1: return &c->elr;
	default: return NULL;
	}
}

static int fake_get(void *ctx, int fd, uint64_t id, uint64_t *val)
{
	struct fake_cpu *c = cpu_of(fd);
	uint64_t *r = c ? reg_of(c, id) : NULL;

	(void)ctx;
	if (!r)
		return -ENOENT;
	*val = *r;
	return 0;
}

static int fake_set(void *ctx, int fd, uint64_t id, uint64_t val)
{
	struct fake_cpu *c = cpu_of(fd);
	uint64_t *r = c ? reg_of(c, id) : NULL;

	(void)ctx;
	if (!r)
		return -ENOENT;
	pthread_mutex_lock(&fake_lock);
	if (c->nwrites < 16) {
		c->write_id[c->nwrites] = id;
		c->write_val[c->nwrites++] = val;
	}
	pthread_mutex_unlock(&fake_lock);
	if ((int)(id & 0xffff) == c->fail_id)
		return -EIO;
	*r = val;
	return 0;
}

static int fake_events(void *ctx, int fd, const void *events)
{
	struct fake_cpu *c = cpu_of(fd);

	(void)ctx;
	if (!c)
		return -ENOENT;
	memcpy(&c->events, events, sizeof(c->events));
	c->nevents++;
	return 0;
}

static const struct vmras_arm64_vcpu_io fake_io = {
	.get_reg = fake_get, .set_reg = fake_set, .set_events = fake_events,
};

static int fail_raise;

static int raise_async(void *opaque, uint32_t gsiv)
{
	(void)opaque;
	if (fail_raise)
		return -EIO;
	if (gsiv == GSIV)
		atomic_fetch_add(&raised, 1);
	return 0;
}

static void on_failure(void *o, const struct vmras_failure *f)
{
	(void)o;
	last = *f;
	atomic_fetch_add(&failures_seen, 1);
}

static void on_kick(void *o, unsigned int vcpu)
{
	(void)o;
	(void)vcpu;
}

static void on_reset(void *o, const char *why)
{
	(void)o;
	(void)why;
}

/* The guest's side of GHESv2: OSPM's read-modify-write of the read-ack register. */
static void guest_ack(unsigned int src)
{
	uint64_t *ack = &ghes_mem[3 + src]; /* 3 sources: acks after the 3 addresses */

	__atomic_store_n(ack, (__atomic_load_n(ack, __ATOMIC_ACQUIRE) & ~1ULL) | 1, __ATOMIC_RELEASE);
}

static const unsigned char *block_of(unsigned int src)
{
	return (const unsigned char *)ghes_mem + 3 * 16 + src * 1024;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* An abort KVM passed on (KVM_EXIT_ARM_SEA), on vCPU vcpu's thread. */
static int arm_sea_exit(unsigned int vcpu, uint64_t esr, uint64_t gva, uint64_t gpa)
{
	struct kvm_run *run = calloc(1, 4096);
	struct kabi_kvm_arm_sea *s = kabi_kvm_run_arm_sea(run);
	int r;

	run->exit_reason = KVM_EXIT_ARM_SEA;
	s->esr = esr;
	s->gva = gva;
	s->gpa = gpa;
	s->flags = KVM_EXIT_ARM_SEA_FLAG_GPA_VALID;
	r = vmras_vcpu_exit(ras, vcpu, run, 0);
	free(run);
	return r;
}

/* KVM_RUN -EHWPOISON with KVM_EXIT_MEMORY_FAULT: an AR with no syndrome (FAR unknown). */
static int memory_fault_exit(unsigned int vcpu, uint64_t gpa)
{
	struct kvm_run *run = calloc(1, 4096);
	int r;

	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	kabi_kvm_run_memory_fault(run)->gpa = gpa;
	kabi_kvm_run_memory_fault(run)->size = 4096;
	r = vmras_vcpu_exit(ras, vcpu, run, -EHWPOISON);
	free(run);
	return r;
}

/*
 * An action-optional error found by the host, as the SIGBUS handler hands
 * it to the engine (a queued signal is not something qemu-user passes on).
 */
static int submit_ao(uint64_t gpa)
{
	struct vmras_event ev = {
		.kind = VMRAS_AO, .source = VMRAS_SRC_SIGBUS, .valid = VMRAS_EV_GPA,
		.gpa = gpa, .addr_lsb = 12, .si_code = BUS_MCEERR_AO,
	};

	return vr_submit_event(ras, &ev, 0, true);
}

/* Containment needs a userfaultfd (qemu-user has none): what an AO's record may say. */
static bool have_uffd(void)
{
	long fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev;

	/* As libvmras opens one: else through /dev/userfaultfd (an ordinary user's way). */
	if (fd < 0 && (dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)) >= 0) {
		fd = kabi_ioctl_val(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
	if (fd < 0)
		return false;
	close((int)fd);
	return true;
}

static void set_cpu(unsigned int i, uint64_t pstate, uint64_t pc)
{
	cpus[i].pstate = pstate;
	cpus[i].pc = pc;
	cpus[i].nwrites = 0;
}

static bool writes_are(const struct fake_cpu *c, const uint64_t *ids, const uint64_t *vals,
		       unsigned int n)
{
	if (c->nwrites != n)
		return false;
	for (unsigned int i = 0; i < n; i++)
		if (c->write_id[i] != ids[i] || c->write_val[i] != vals[i])
			return false;
	return true;
}

static void test_fake_sea(void)
{
	static const uint64_t order[6] = { ID_ESR_EL1, ID_FAR_EL1, ID_SPSR_EL1, ID_ELR_EL1,
					   ID_PSTATE, ID_PC };
	uint64_t page = GPA_BASE + 0x10000, gva = 0x0000ffffa0001234ULL;
	struct vmras_stats st;

	/* EL0 AArch64 store: KVM's ESR_EL2 0x92000050 (WnR, FnV clear), the FAR and GPA. */
	set_cpu(0, 0x80000000, 0x400100);
	is_int(arm_sea_exit(0, 0x92000050, gva, page + 0x234), VMRAS_EXIT_HANDLED,
	       "KVM_EXIT_ARM_SEA with a GPA: handled");
	is_int(vmras_vcpu_pre_run(ras, 0), 0, "vCPU 0 takes its notice");
	uint64_t want[6] = { 0x92000050, gva, 0x80000000, 0x400100, 0x800003c5, VBAR + 0x400 };
	ok(writes_are(&cpus[0], order, want, 6),
	   "EL0 write: ESR 0x92000050, FAR = the GVA, SPSR, ELR, PSTATE EL1h masked, PC = VBAR+0x400, "
	   "in that order");
	ok(last.action == VMRAS_ACTION_INJECT && last.ev.source == VMRAS_SRC_ARM_SEA &&
	   last.ev.gpa == page + 0x234 && last.ev.esr == 0x92000050,
	   "reported: inject, source kvm-arm-sea (%s), with its ESR", vmras_source_name(last.ev.source));
	const unsigned char *b = block_of(0);

	ok(b[0] == 0x11 && le64(b + 92 + 16) == page && le64(b + 92 + 24) == ~0xfffULL,
	   "vCPU 0's SEA source holds a record for page 0x%llx, 4 KiB mask", (unsigned long long)page);
	ok(!(ghes_mem[3] & 1), "its read-ack register is cleared until the guest acknowledges");
	ok(le64((const unsigned char *)&ghes_mem[0]) == GHES_GPA + 48,
	   "its error status address register points at block 0");

	/* A second error on vCPU 0 (an EL1 access) before the ack: held, nothing written. */
	set_cpu(0, 0x60000005, 0xffff800010203040ULL);
	vmras_get_stats(ras, &st);
	uint64_t deferred = st.notice_deferred;

	memory_fault_exit(0, page + 0x3000);
	is_int(vmras_vcpu_pre_run(ras, 0), 0, "a second AR before the ack");
	vmras_get_stats(ras, &st);
	ok(cpus[0].nwrites == 0 && st.notice_deferred == deferred + 1 &&
	   le64(b + 92 + 16) == page,
	   "waits: no register written, counted deferred, the first record untouched");
	guest_ack(0);
	is_int(vmras_vcpu_pre_run(ras, 0), 0, "the guest acknowledged; vCPU 0 enters again");
	uint64_t want1[6] = { 0x96000410, 0, 0x60000005, 0xffff800010203040ULL, 0x600003c5,
			      VBAR + 0x200 };
	ok(writes_are(&cpus[0], order, want1, 6),
	   "EL1h access: ESR 0x96000410 (same EL, FnV: no syndrome from a memory fault), "
	   "vector 0x200");
	ok(le64(b + 92 + 16) == page + 0x3000, "and its record replaced the acknowledged one");

	/* vCPU 1 in AArch32 user mode, then on SP_EL0 at EL1: its own source, never vCPU 0's. */
	set_cpu(1, 0x00000010, 0x8000);
	memory_fault_exit(1, page + 0x5000);
	vmras_vcpu_pre_run(ras, 1);
	uint64_t want2[6] = { 0x92000410, 0, 0x10, 0x8000, 0x3c5, VBAR + 0x600 };
	ok(writes_are(&cpus[1], order, want2, 6), "AArch32 EL0: lower-EL ESR, vector 0x600");
	ok(le64(block_of(1) + 92 + 16) == page + 0x5000 && le64(b + 92 + 16) == page + 0x3000,
	   "vCPU 1's record is in source 1; vCPU 0's (unacknowledged) is untouched");
	guest_ack(1);
	set_cpu(1, 0x00000004, 0xffff800010000000ULL);
	memory_fault_exit(1, page + 0x6000);
	vmras_vcpu_pre_run(ras, 1);
	uint64_t want3[6] = { 0x96000410, 0, 0x4, 0xffff800010000000ULL, 0x3c5, VBAR };
	ok(writes_are(&cpus[1], order, want3, 6), "EL1t (SP_EL0): same-EL ESR, vector 0x000");
	guest_ack(0);
	guest_ack(1);

	/* A failed PC write puts every register back and takes the record back. */
	set_cpu(0, 0x0, 0x400200);
	cpus[0].esr = 0x1111;
	cpus[0].far = 0x2222;
	cpus[0].spsr = 0x3333;
	cpus[0].elr = 0x4444;
	cpus[0].fail_id = (int)(ID_PC & 0xffff);
	atomic_store(&failures_seen, 0);
	memory_fault_exit(0, page + 0x7000);
	vmras_vcpu_pre_run(ras, 0);
	cpus[0].fail_id = -1;
	ok(cpus[0].pstate == 0 && cpus[0].pc == 0x400200 && cpus[0].esr == 0x1111 &&
	   cpus[0].far == 0x2222 && cpus[0].spsr == 0x3333 && cpus[0].elr == 0x4444 &&
	   (ghes_mem[3] & 1) && !(b[0] & 1),
	   "a failed PC write: ESR, FAR, SPSR, ELR and PSTATE restored, record withdrawn, source free");
	ok(atomic_load(&failures_seen) >= 1 && last.action == VMRAS_ACTION_RESET &&
	   strstr(last.detail, "Input/output error"),
	   "and the failure is reported with the policy's action (%s)", last.detail);
}

/* The guest never acknowledges; an abort without an address; an instruction fetch. */
static void test_fake_sea_more(void)
{
	uint64_t page = GPA_BASE + 0x20000;
	const unsigned char *b = block_of(0);
	int tries = 0;

	/* Source 0 holds a record the guest never acknowledges. */
	set_cpu(0, 0x0, 0x400300);
	memory_fault_exit(0, page);
	vmras_vcpu_pre_run(ras, 0);
	ok(cpus[0].nwrites == 6 && le64(b + 92 + 16) == page && !(ghes_mem[3] & 1),
	   "an AR delivered; its record waits for an acknowledgement that never comes");
	set_cpu(0, 0x0, 0x400400);
	memory_fault_exit(0, page + 0x1000);
	while (cpus[0].nwrites == 0 && tries++ < 300) {
		vmras_vcpu_pre_run(ras, 0);
		usleep(10000);
	}
	ok(cpus[0].nwrites == 6 && cpus[0].write_val[0] == 0x92000410 &&
	   cpus[0].write_val[3] == 0x400400 && le64(b + 92 + 16) == page,
	   "the next AR is held, then entered without a record (after %d tries): the abort is "
	   "the notification, the unacknowledged record is not overwritten", tries);
	ok(last.action == VMRAS_ACTION_INJECT && !last.recursive,
	   "reported as told, not as recursive (no reset)");
	guest_ack(0);

	/* An AO waits on vCPU 0 (the asynchronous source holds an unacknowledged record). */
	atomic_store(&raised, 0);
	submit_ao(page + 0x8000);
	vmras_vcpu_pre_run(ras, 0);
	submit_ao(page + 0x9000);
	vmras_vcpu_pre_run(ras, 0);

	/* KVM_EXIT_ARM_SEA without a GPA, on an instruction fetch (EC 0x20, FnV). */
	set_cpu(0, 0x0, 0x400500);
	atomic_store(&failures_seen, 0);
	struct kvm_run *run = calloc(1, 4096);
	struct kabi_kvm_arm_sea *sea = kabi_kvm_run_arm_sea(run);

	run->exit_reason = KVM_EXIT_ARM_SEA;
	sea->esr = 0x82000410; /* EC 0x20, IL, FnV, DFSC 0x10 */
	is_int(vmras_vcpu_exit(ras, 0, run, 0), VMRAS_EXIT_HANDLED,
	       "KVM_EXIT_ARM_SEA without a GPA: handled");
	free(run);
	vmras_vcpu_pre_run(ras, 0);
	ok(cpus[0].nwrites == 6 && cpus[0].write_val[0] == 0x82000410 && (ghes_mem[3] & 1),
	   "an instruction abort (ESR 0x82000410) entered alone, no record posted");
	ok(last.action == VMRAS_ACTION_INJECT && strstr(last.detail, "no guest address") &&
	   atomic_load(&failures_seen) == 1,
	   "reported once: %s", last.detail);
	guest_ack(NVCPUS);
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 2 && le64(block_of(NVCPUS) + 92 + 16) == page + 0x9000,
	   "the waiting AO was not taken as superseded by the address-less abort: delivered "
	   "after the ack");
	guest_ack(NVCPUS);
}

static void test_fake_async(void)
{
	uint64_t page = GPA_BASE + 0x40000;
	const unsigned char *b = block_of(NVCPUS);

	atomic_store(&raised, 0);
	cpus[0].nwrites = 0;
	is_int(submit_ao(page), 0, "an AO (SIGBUS BUS_MCEERR_AO)");
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 1 && cpus[0].nwrites == 0,
	   "the AO raised GSIV %d and wrote no register", GSIV);
	ok(b[0] == 0x11 && le64(b + 92 + 16) == page, "its record is in the asynchronous source");
	ok(last.action == VMRAS_ACTION_INJECT && !last.action_required, "reported as told");

	is_int(submit_ao(page + 0x2000), 0, "a second AO before the ack");
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 1 && le64(b + 92 + 16) == page,
	   "queued: no interrupt, the first record not overwritten");
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 1, "still queued on the next entry");
	guest_ack(NVCPUS);
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 2 && le64(b + 92 + 16) == page + 0x2000,
	   "delivered after the guest's acknowledgement");

	/* An AR a VMM thread hit (no guest access waits) goes to the async source, and waits. */
	struct vmras_event ev = {
		.kind = VMRAS_AR, .source = VMRAS_SRC_MC_COPY, .valid = VMRAS_EV_GPA,
		.gpa = page + 0x4000, .addr_lsb = 12,
	};

	vr_submit_event(ras, &ev, 0, true);
	for (int i = 0; i < 80; i++) {
		vmras_vcpu_pre_run(ras, 0);
		usleep(i < 70 ? 1000 : 20000);
	}
	ok(atomic_load(&raised) == 2 && last.action != VMRAS_ACTION_RESET,
	   "the VMM's own consumption waits for the acknowledgement past the AR hold, no reset");
	guest_ack(NVCPUS);
	vmras_vcpu_pre_run(ras, 0);
	ok(atomic_load(&raised) == 3 && le64(b + 92 + 16) == page + 0x4000,
	   "and is delivered after it");
	guest_ack(NVCPUS);

	/* The VMM cannot raise the interrupt: the record is taken back, the source stays free. */
	fail_raise = 1;
	submit_ao(page + 0x6000);
	vmras_vcpu_pre_run(ras, 0);
	fail_raise = 0;
	ok((ghes_mem[3 + NVCPUS] & 1) && b[0] == 0 && strstr(last.detail, "interrupt"),
	   "a failed raise_async: record withdrawn, source free, reported (%s)", last.detail);
}

static void test_fake_reset(void)
{
	is_int(vmras_guest_reset(ras), 0, "guest reset");
	ok((ghes_mem[3] & 1) && (ghes_mem[4] & 1) && (ghes_mem[5] & 1) && block_of(0)[0] == 0 &&
	   block_of(NVCPUS)[0] == 0 && ghes_mem[0] == GHES_GPA + 48,
	   "every source free (read-ack 1) and empty again, addresses in place");
}

static void test_serror(void)
{
	uint64_t iss;

	vmras_arm64_serror_iss(VMRAS_AET_UEO, false, &iss);
	is_int(vmras_arm64_inject_serror(cpus[0].fd, iss, &fake_io), 0, "SError with an ESR");
	ok(cpus[0].events.exception.serror_pending == 1 &&
	   cpus[0].events.exception.serror_has_esr == 1 &&
	   cpus[0].events.exception.serror_esr == 0x811 &&
	   !cpus[0].events.exception.ext_dabt_pending,
	   "KVM_SET_VCPU_EVENTS: serror_pending, serror_has_esr, serror_esr 0x811");
	is_int(vmras_arm64_inject_serror(cpus[0].fd, 1ULL << 25, &fake_io), -EINVAL,
	       "an ESR beyond ISS (bit 25): -EINVAL, as KVM would");
}

static void test_library(void)
{
	struct vmras_config cfg = {
		.ops = { .kick_vcpu = on_kick, .request_reset = on_reset, .failure = on_failure },
		.ram_mmio = VMRAS_RAM_MMIO_NO,
	};
	struct vmras_region r = {
		.gpa = GPA_BASE, .size = RAM_SIZE, .backing = VMRAS_BACKING_ANON,
		.fd = -1, .page_size = 4096,
	};
	size_t gsize = vmras_arm64_ghes_size(NVCPUS, true);
	struct vmras_arm64_config a = {
		.ar_mode = VMRAS_ARM64_AR_REGS,
		.ghes = { .gpa = GHES_GPA, .size = gsize, .nsea = NVCPUS, .async = true,
			  .async_notify = VMRAS_GHES_NOTIFY_GSIV, .gsiv = GSIV },
		.raise_async = raise_async,
		.io = &fake_io,
	};
	void *ram;
	int err;

	vmras_policy_default(&cfg.policy);
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ghes_mem = aligned_alloc(4096, 4096 * 4);
	if (ram == MAP_FAILED || !ghes_mem) {
		tap_skip("the library on a fake vCPU", "no memory");
		return;
	}
	memset(ghes_mem, 0xee, gsize);
	a.ghes.hva = ghes_mem;
	r.hva = ram;
	for (int i = 0; i < NVCPUS; i++) {
		cpus[i].fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cpus[i].vbar = VBAR;
		cpus[i].sctlr = SPAN;
		cpus[i].fail_id = -1;
	}
	err = vmras_new(&cfg, &ras);
	if (err) {
		tap_skip("the library on a fake vCPU", "vmras_new: %s", strerror(-err));
		return;
	}
	is_int(vmras_add_region(ras, &r), 0, "8 MiB of RAM");
	a.ghes.size = gsize - 1;
	is_int(vmras_arm64_setup(ras, &a), -EINVAL, "GHES memory one byte short: -EINVAL");
	a.ghes.size = gsize;
	a.set = 1;
	is_int(vmras_arm64_setup(ras, &a), -EINVAL, "a reserved SET: -EINVAL");
	a.set = 0;
	a.dfsc = VMRAS_DFSC_ECC;
	a.features = VMRAS_ARM64_FEAT_RAS;
	is_int(vmras_arm64_setup(ras, &a), -EINVAL, "DFSC 0x18 on a FEAT_RAS guest (reserved): -EINVAL");
	a.dfsc = 0;
	a.features = 0;
	if (!is_int(vmras_arm64_setup(ras, &a), 0, "arm64 setup: register SEAs, 2 SEA sources + GSIV") ||
	    !is_int(vmras_start(ras), 0, "vmras_start"))
		return;
	ok(ghes_mem[0] == GHES_GPA + 48 && ghes_mem[1] == GHES_GPA + 48 + 1024 &&
	   ghes_mem[3] == 1 && ghes_mem[5] == 1 && block_of(2)[0] == 0,
	   "setup wrote the error status addresses, read-ack 1, empty blocks");
	for (int i = 0; i < NVCPUS; i++)
		vmras_add_vcpu(ras, (unsigned int)i, cpus[i].fd);

	test_fake_sea();
	test_fake_sea_more();
	test_fake_async();
	test_fake_reset();
	test_serror();

	/* VBAR_EL1 0 (no vectors yet): not ready, nothing written. */
	set_cpu(1, 0x0, 0x1000);
	cpus[1].vbar = 0;
	memory_fault_exit(1, GPA_BASE + 0x80000);
	vmras_vcpu_pre_run(ras, 1);
	ok(cpus[1].nwrites == 0 && strstr(last.detail, "VBAR_EL1"),
	   "a guest without vectors is not entered: %s", last.detail);
	vmras_free(ras);
	for (int i = 0; i < NVCPUS; i++)
		close(cpus[i].fd);
	munmap(ram, RAM_SIZE);
	free(ghes_mem);
}

/* KVM's own SEA (ext_dabt_pending), no GHES: the simple path; AOs have no way in. */
static void test_ext_dabt(void)
{
	struct vmras_config cfg = {
		.ops = { .kick_vcpu = on_kick, .request_reset = on_reset, .failure = on_failure },
		.ram_mmio = VMRAS_RAM_MMIO_NO,
	};
	struct vmras_arm64_config a = { .ar_mode = VMRAS_ARM64_AR_EXT_DABT, .io = &fake_io };
	void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vmras_region r = {
		.gpa = GPA_BASE, .hva = ram, .size = RAM_SIZE, .backing = VMRAS_BACKING_ANON,
		.fd = -1, .page_size = 4096,
	};

	vmras_policy_default(&cfg.policy);
	cpus[0].fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cpus[0].vbar = VBAR;
	if (ram == MAP_FAILED || vmras_new(&cfg, &ras)) {
		tap_skip("ext_dabt_pending", "no context");
		return;
	}
	if (!is_int(vmras_add_region(ras, &r), 0, "a second context: 8 MiB of RAM") ||
	    !is_int(vmras_arm64_setup(ras, &a), 0, "arm64 setup: KVM's ext_dabt_pending, no GHES") ||
	    !is_int(vmras_start(ras), 0, "vmras_start"))
		return;
	vmras_add_vcpu(ras, 0, cpus[0].fd);
	set_cpu(0, 0x0, 0x400000);
	memset(&cpus[0].events, 0, sizeof(cpus[0].events));
	memory_fault_exit(0, GPA_BASE + 0x1000);
	vmras_vcpu_pre_run(ras, 0);
	ok(cpus[0].events.exception.ext_dabt_pending == 1 &&
	   !cpus[0].events.exception.serror_pending && cpus[0].nwrites == 0,
	   "an AR: KVM_SET_VCPU_EVENTS ext_dabt_pending, no register written by vmras");
	ok(last.action == VMRAS_ACTION_INJECT, "reported as told");
	submit_ao(GPA_BASE + 0x3000);
	vmras_vcpu_pre_run(ras, 0);
	ok(last.action == VMRAS_ACTION_IGNORE && last.contained == have_uffd() &&
	   strstr(last.detail, "no asynchronous GHES source"),
	   "an AO without an asynchronous source: contained%s, not told, and why (%s)",
	   have_uffd() ? "" : " (not here: no userfaultfd)", last.detail);
	vmras_free(ras);
	close(cpus[0].fd);
	munmap(ram, RAM_SIZE);
}

int main(void)
{
	test_register_ids();
	test_esr();
	test_entry();
	test_cper();
	test_hest();
	test_library();
	test_ext_dabt();
	return tap_done();
}
