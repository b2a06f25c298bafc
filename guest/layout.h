/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The contract between the reference VMM and the test guest: guest memory
 * layout, boot information and the report channel. Freestanding (shared
 * with the guest). docs/guest-protocol.md explains it in words.
 */
#ifndef VMRAS_GUEST_LAYOUT_H
#define VMRAS_GUEST_LAYOUT_H

#ifndef __ASSEMBLER__
#include <stdint.h>
#endif

/* Guest physical layout (identity-mapped with 2 MiB pages). */
#define GL_BOOT_INFO 0x1000ULL	/* struct gl_boot_info, written by the VMM */
#define GL_GDT 0x2000ULL	/* null, code64 (0x08), data (0x10) */
#define GL_PML4 0x3000ULL
#define GL_PDPT 0x4000ULL
#define GL_PD 0x5000ULL		/* one page per GiB of RAM */
#define GL_MAX_RAM (64ULL << 30)	/* PDs end below GL_IMAGE */
#define GL_IMAGE 0x100000ULL	/* guest image is loaded (and linked) here */
#define GL_IMAGE_MAX 0x100000ULL	/* image + bss must fit in 1 MiB */
#define GL_PERCPU 0x200000ULL	/* per-vCPU areas */
#define GL_PERCPU_SIZE 0x8000ULL	/* IDT, message buffer, stack */
#define GL_PERCPU_IDT 0x0000ULL	/* offsets inside a per-vCPU area */
#define GL_PERCPU_MSG 0x1000ULL
#define GL_MAX_VCPUS 32
#define GL_DATA_START 0x400000ULL	/* verified data: here to end of RAM */

#define GL_SEL_CODE 0x08
#define GL_SEL_DATA 0x10

/* Report channel: the guest writes a message's GPA to this port (outl). */
#define GL_REPORT_PORT 0x00e0

#define GL_BOOT_MAGIC 0x534152564d4d5652ULL	/* "RVMMVRAS" */
#define GL_MUST_MAX 16
#define GL_BOOT_VERSION 1

#ifndef __ASSEMBLER__

/* Written by the VMM before the vCPUs start; read-only to the guest. */
struct gl_boot_info {
	uint64_t magic;
	uint32_t version;
	uint32_t nr_vcpus;
	uint64_t ram_size;
	uint64_t data_start;	/* first verified byte (GL_DATA_START) */
	uint64_t data_end;	/* end of verified memory */
	uint64_t seed;		/* mixed into the pattern */
	uint32_t passes;	/* verification passes before the guest stops */
	uint32_t mce_banks;	/* banks the VMM gave each vCPU */
	uint32_t flags;		/* GL_BOOT_* */
	uint32_t sample;	/* check every sample-th page (0, 1: all) */
	uint64_t boot_count;	/* 1 at power on, +1 per reset */
	uint64_t must[GL_MUST_MAX];	/* pages always checked when sampling */
};

/* The guest leaves CR4.MCE clear (tests of undeliverable machine checks). */
#define GL_BOOT_NO_MCE (1u << 0)
/*
 * Sampling (guests too large to check whole under an emulator): the VMM
 * fills every page with generation 1 before boot; the guest checks and
 * rewrites only sampled pages and must[]; the VMM checks the rest after.
 */
#define GL_BOOT_HOST_FILLED (1u << 1)

enum gl_msg_type {
	GL_MSG_STARTED = 1,	/* a0 slice start, a1 slice end, a2 pages */
	GL_MSG_PASS_DONE,	/* a0 pass, a1 verified, a2 corrupted, a3 skipped */
	GL_MSG_CORRUPTED,	/* a0 gpa of page, a1 offset, a2 want, a3 got */
	GL_MSG_MCE,		/* a0 bank, a1 status, a2 addr, a3 misc, a4 mcg_status, a5 rip */
	GL_MSG_RETIRED,		/* a0 gpa, a1 size */
	GL_MSG_UNRECOVERABLE,	/* a0 mcg_status, a1 rip */
	GL_MSG_EXCEPTION,	/* a0 vector, a1 error code, a2 rip, a3 cr2 */
	GL_MSG_DONE,		/* a0 passes, a1 total verified, a2 total corrupted,
				 * a3 machine checks, a4 errors found by polling */
	GL_MSG_POLLED,		/* a bank found by polling: the arguments of GL_MSG_MCE, a5 0 */
	GL_MSG_CPUID,		/* a0 leaf 0 EAX, a1 leaf 0 EBX | EDX << 32, a2 leaf 0 ECX,
				 * a3 leaf 1 EAX, a4 leaf 0x80000000 EAX, a5 leaf 0x80000007 EBX */
	GL_MSG_TYPE_COUNT
};

/* One message: 64 bytes in the vCPU's GL_PERCPU_MSG page. */
struct gl_msg {
	uint32_t type;
	uint32_t vcpu;
	uint64_t a[7];
};

_Static_assert(sizeof(struct gl_msg) == 64, "gl_msg is 64 bytes");
_Static_assert(sizeof(struct gl_boot_info) == 72 + 8 * GL_MUST_MAX, "gl_boot_info layout");

/*
 * The pattern word of every 8 bytes of a page, from its GPA and generation.
 * One word per page keeps the guest's check to one `repe scasq` per page
 * (guests here may run under an instruction emulator); the GPA and the
 * generation in it catch a page that moved, went stale or was lost.
 */
static inline uint64_t gl_pattern(uint64_t page_gpa, uint64_t gen, uint64_t seed)
{
	uint64_t x = page_gpa ^ (gen * 0x9e3779b97f4a7c15ULL) ^ seed;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

#endif /* __ASSEMBLER__ */
#endif /* VMRAS_GUEST_LAYOUT_H */
