// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * AArch64 ESR_ELx taken apart (Arm ARM, ESR_EL1/ESR_EL2: "ESR_ELx.EC" and
 * the ISS encodings for Data Aborts, Instruction Aborts and SError
 * exceptions). Names of the classes as the Arm ARM words them; their
 * values checked against Linux's arch/arm64/include/asm/esr.h.
 */
#include <errno.h>
#include <string.h>

#include "decode.h"

static const char *ec_name(unsigned int ec)
{
	switch (ec) {
	case 0x00: return "Unknown reason";
	case 0x01: return "Trapped WFI, WFE, WFIT or WFET";
	case 0x03: return "Trapped MCR or MRC (coproc 0b1111), AArch32";
	case 0x04: return "Trapped MCRR or MRRC (coproc 0b1111), AArch32";
	case 0x05: return "Trapped MCR or MRC (coproc 0b1110), AArch32";
	case 0x06: return "Trapped LDC or STC, AArch32";
	case 0x07: return "Access to SME, SVE, Advanced SIMD or floating point trapped";
	case 0x08: return "Trapped VMRS (coproc 0b1010), AArch32";
	case 0x09: return "Trapped pointer authentication instruction";
	case 0x0a: return "Trapped LD64B, ST64B, ST64BV or ST64BV0";
	case 0x0c: return "Trapped MRRC (coproc 0b1110), AArch32";
	case 0x0d: return "Branch Target Exception";
	case 0x0e: return "Illegal Execution state";
	case 0x11: return "SVC, AArch32";
	case 0x12: return "HVC, AArch32";
	case 0x13: return "SMC, AArch32";
	case 0x15: return "SVC, AArch64";
	case 0x16: return "HVC, AArch64";
	case 0x17: return "SMC, AArch64";
	case 0x18: return "Trapped MSR, MRS or System instruction, AArch64";
	case 0x19: return "Access to SVE trapped";
	case 0x1a: return "Trapped ERET, ERETAA or ERETAB";
	case 0x1b: return "Trapped TSTART (FEAT_TME)";
	case 0x1c: return "Pointer authentication failure (FPAC)";
	case 0x1d: return "Access to SME trapped";
	case 0x1f: return "Implementation defined, to EL3";
	case 0x20: return "Instruction Abort from a lower Exception level";
	case 0x21: return "Instruction Abort, same Exception level";
	case 0x22: return "PC alignment fault";
	case 0x24: return "Data Abort from a lower Exception level";
	case 0x25: return "Data Abort, same Exception level";
	case 0x26: return "SP alignment fault";
	case 0x27: return "Memory Operation (MOPS) exception";
	case 0x28: return "Trapped floating-point exception, AArch32";
	case 0x2c: return "Trapped floating-point exception, AArch64";
	case 0x2d: return "Guarded Control Stack exception";
	case 0x2f: return "SError exception";
	case 0x30: return "Breakpoint from a lower Exception level";
	case 0x31: return "Breakpoint, same Exception level";
	case 0x32: return "Software Step from a lower Exception level";
	case 0x33: return "Software Step, same Exception level";
	case 0x34: return "Watchpoint from a lower Exception level";
	case 0x35: return "Watchpoint, same Exception level";
	case 0x38: return "BKPT, AArch32";
	case 0x3a: return "Vector Catch, AArch32";
	case 0x3c: return "BRK, AArch64";
	default: return "unallocated";
	}
}

/* DFSC/IFSC of a Data or Instruction Abort; NULL: reserved. */
#define WALK "on translation table walk or hardware update"
static const char *const fsc_names[64] = {
	[0x00] = "Address size fault, level 0 or translation table base register",
	[0x01] = "Address size fault, level 1",
	[0x02] = "Address size fault, level 2",
	[0x03] = "Address size fault, level 3",
	[0x04] = "Translation fault, level 0",
	[0x05] = "Translation fault, level 1",
	[0x06] = "Translation fault, level 2",
	[0x07] = "Translation fault, level 3",
	[0x08] = "Access flag fault, level 0",
	[0x09] = "Access flag fault, level 1",
	[0x0a] = "Access flag fault, level 2",
	[0x0b] = "Access flag fault, level 3",
	[0x0c] = "Permission fault, level 0",
	[0x0d] = "Permission fault, level 1",
	[0x0e] = "Permission fault, level 2",
	[0x0f] = "Permission fault, level 3",
	[0x10] = "Synchronous External abort, not " WALK,
	[0x11] = "Synchronous Tag Check Fault",
	[0x12] = "Synchronous External abort " WALK ", level -2",
	[0x13] = "Synchronous External abort " WALK ", level -1",
	[0x14] = "Synchronous External abort " WALK ", level 0",
	[0x15] = "Synchronous External abort " WALK ", level 1",
	[0x16] = "Synchronous External abort " WALK ", level 2",
	[0x17] = "Synchronous External abort " WALK ", level 3",
	[0x18] = "Synchronous parity or ECC error, not " WALK " (FEAT_RAS not implemented)",
	[0x1b] = "Synchronous parity or ECC error " WALK ", level -1",
	[0x1c] = "Synchronous parity or ECC error " WALK ", level 0",
	[0x1d] = "Synchronous parity or ECC error " WALK ", level 1",
	[0x1e] = "Synchronous parity or ECC error " WALK ", level 2",
	[0x1f] = "Synchronous parity or ECC error " WALK ", level 3",
	[0x21] = "Alignment fault",
	[0x22] = "Granule Protection Fault " WALK ", level -2",
	[0x23] = "Granule Protection Fault " WALK ", level -1",
	[0x24] = "Granule Protection Fault " WALK ", level 0",
	[0x25] = "Granule Protection Fault " WALK ", level 1",
	[0x26] = "Granule Protection Fault " WALK ", level 2",
	[0x27] = "Granule Protection Fault " WALK ", level 3",
	[0x28] = "Granule Protection Fault, not " WALK,
	[0x29] = "Address size fault, level -1",
	[0x2a] = "Translation fault, level -2",
	[0x2b] = "Translation fault, level -1",
	[0x2c] = "Address size fault, level -2",
	[0x30] = "TLB conflict abort",
	[0x31] = "Unsupported atomic hardware update fault",
	[0x34] = "IMPLEMENTATION DEFINED fault (Lockdown)",
	[0x35] = "IMPLEMENTATION DEFINED fault (Unsupported Exclusive or Atomic access)",
	[0x3d] = "Section Domain fault (AArch32 Short-descriptor stage 1)",
	[0x3e] = "Page Domain fault (AArch32 Short-descriptor stage 1)",
};

static const char *fsc_name(unsigned int fsc)
{
	return fsc < 64 && fsc_names[fsc] ? fsc_names[fsc] : "reserved";
}

/* A synchronous External abort: the FSCs where EA, FnP, PFV and WU mean something. */
static bool is_sea(unsigned int fsc)
{
	return fsc == 0x10 || (fsc & 0x3e) == 0x12 || (fsc & 0x3c) == 0x14;
}

static uint64_t bits(uint64_t v, unsigned int hi, unsigned int lo)
{
	return (v >> lo) & ((1ULL << (hi - lo + 1)) - 1);
}

static void add(struct decode_esr *d, const char *name, unsigned int hi, unsigned int lo,
		const char *meaning)
{
	d->fields[d->n_fields++] = (struct decode_field){
		name, (uint8_t)hi, (uint8_t)lo, bits(d->esr, hi, lo), meaning
	};
}

static const char *yesno(uint64_t esr, unsigned int bit, const char *set, const char *clear)
{
	return esr & (1ULL << bit) ? set : clear;
}

/* Synchronous Error Type, only meaningful with DFSC 0b010000 (and FEAT_RAS). */
static const char *set_name(unsigned int set, unsigned int fsc)
{
	static const char *const names[4] = {
		"UER: recoverable state", "reserved", "UC: uncontainable", "UEO: restartable state",
	};

	return fsc == 0x10 ? names[set] : "not meaningful for this DFSC";
}

static void data_abort(struct decode_esr *d)
{
	static const char *const sas[4] = { "byte", "halfword", "word", "doubleword" };
	static const char *const wu[4] = {
		"not a store, or the location might have been updated", "reserved",
		"store that did not update the location", "store that updated the location",
	};
	uint64_t e = d->esr;
	unsigned int fsc = (unsigned int)bits(e, 5, 0);

	add(d, "ISV", 24, 24, yesno(e, 24, "instruction syndrome valid (bits 23:14)",
				   "no instruction syndrome"));
	if (e & (1ULL << 24)) {
		add(d, "SAS", 23, 22, sas[bits(e, 23, 22)]);
		add(d, "SSE", 21, 21, yesno(e, 21, "sign-extended load", "no sign extension"));
		add(d, "SRT", 20, 16, "register transferred (Xt/Wt)");
		add(d, "SF", 15, 15, yesno(e, 15, "64-bit register", "32-bit register"));
		add(d, "AR", 14, 14, yesno(e, 14, "acquire/release semantics", "no acquire/release"));
	} else {
		/* FnP is defined whenever ISV is 0; WU and PFV for external aborts only. */
		if (is_sea(fsc))
			add(d, "WU", 17, 16, wu[bits(e, 17, 16)]);
		add(d, "FnP", 15, 15, yesno(e, 15, "FAR holds an address within the granule",
					    "FAR holds the faulting address (if FnV is 0)"));
		if (is_sea(fsc))
			add(d, "PFV", 14, 14, yesno(e, 14, "PFAR_ELx valid", "PFAR_ELx not valid"));
	}
	add(d, "VNCR", 13, 13, yesno(e, 13, "VNCR_EL2 access (FEAT_NV2)", NULL));
	add(d, "SET", 12, 11, set_name((unsigned int)bits(e, 12, 11), fsc));
	add(d, "FnV", 10, 10, yesno(e, 10, "FAR not valid", "FAR valid"));
	add(d, "EA", 9, 9, "external abort type, implementation defined");
	add(d, "CM", 8, 8, yesno(e, 8, "cache maintenance or address translation instruction", NULL));
	add(d, "S1PTW", 7, 7, yesno(e, 7, "stage 2 fault on a stage 1 translation table walk", NULL));
	add(d, "WnR", 6, 6, yesno(e, 6, "write", "read"));
	add(d, "DFSC", 5, 0, fsc_name(fsc));
}

static void instruction_abort(struct decode_esr *d)
{
	uint64_t e = d->esr;
	unsigned int fsc = (unsigned int)bits(e, 5, 0);

	if (is_sea(fsc))
		add(d, "PFV", 14, 14, yesno(e, 14, "PFAR_ELx valid", "PFAR_ELx not valid"));
	add(d, "SET", 12, 11, set_name((unsigned int)bits(e, 12, 11), fsc));
	add(d, "FnV", 10, 10, yesno(e, 10, "FAR not valid", "FAR valid"));
	add(d, "EA", 9, 9, "external abort type, implementation defined");
	add(d, "S1PTW", 7, 7, yesno(e, 7, "stage 2 fault on a stage 1 translation table walk", NULL));
	add(d, "IFSC", 5, 0, fsc_name(fsc));
}

static void serror(struct decode_esr *d)
{
	static const char *const aet[8] = {
		"UC: uncontainable", "UEU: unrecoverable state", "UEO: restartable state",
		"UER: recoverable state", "reserved", "reserved", "CE: corrected", "reserved",
	};
	uint64_t e = d->esr;
	unsigned int fsc = (unsigned int)bits(e, 5, 0);

	add(d, "IDS", 24, 24, yesno(e, 24, "implementation defined syndrome in bits 23:0",
				   "architectural syndrome"));
	if (e & (1ULL << 24))
		return;
	add(d, "IESB", 13, 13, yesno(e, 13, "synchronized by an implicit error synchronization event",
				     NULL));
	add(d, "AET", 12, 10, fsc == 0x11 ? aet[bits(e, 12, 10)] : "not meaningful for this DFSC");
	add(d, "EA", 9, 9, "external abort type, implementation defined");
	add(d, "DFSC", 5, 0, fsc == 0x00 ? "Uncategorized error"
			     : fsc == 0x11 ? "Asynchronous SError interrupt" : "reserved");
}

int decode_esr(uint64_t esr, struct decode_esr *d)
{
	if (esr >> 56)	/* bits 63:56 are RES0 */
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->esr = esr;
	d->ec = (unsigned int)bits(esr, 31, 26);
	d->il = (unsigned int)bits(esr, 25, 25);
	d->iss = (uint32_t)bits(esr, 24, 0);
	d->iss2 = (uint32_t)bits(esr, 55, 32);
	d->ec_name = ec_name(d->ec);
	add(d, "EC", 31, 26, d->ec_name);
	/* IL is RES1 for what no trapped instruction caused (aborts with ISV 0, SError). */
	add(d, "IL", 25, 25, yesno(esr, 25, "32-bit instruction, or not an instruction trap (RES1)",
				   "16-bit instruction"));
	add(d, "ISS", 24, 0, NULL);
	add(d, "ISS2", 55, 32, NULL);
	switch (d->ec) {
	case 0x24: case 0x25:
		d->kind = DECODE_ESR_DABT;
		data_abort(d);
		break;
	case 0x20: case 0x21:
		d->kind = DECODE_ESR_IABT;
		instruction_abort(d);
		break;
	case 0x2f:
		d->kind = DECODE_ESR_SERROR;
		serror(d);
		break;
	default:
		d->kind = DECODE_ESR_OTHER;
		break;
	}
	return 0;
}
