// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * `vmras decode`'s decoders (tools/vmras/decode_*.c) on values worked out
 * by hand from the specifications, not from the code's own output: x86
 * machine checks and Linux's grading of them, AArch64 ESRs, and CPER
 * blobs, including QEMU's exact GHES block and every truncation of it.
 * With the vmras binary as argument, also a few runs of the command.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "decode.h"
#include "tap.h"

static const struct decode_field *field(const struct decode_field *fs, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(fs[i].name, name))
			return &fs[i];
	return NULL;
}

static uint64_t fval(const struct decode_field *fs, int n, const char *name)
{
	const struct decode_field *f = field(fs, n, name);

	return f ? f->value : 0xdeadULL;
}

static const char *fmeaning(const struct decode_field *fs, int n, const char *name)
{
	const struct decode_field *f = field(fs, n, name);

	return f && f->meaning ? f->meaning : "(none)";
}

/* ---- MCE -------------------------------------------------------------- */

static struct decode_mce mce(uint64_t status, int mcg, enum decode_vendor v)
{
	struct decode_mce_in in = { .vendor = v, .status = status, .bank = -1, .cpu = -1 };
	struct decode_mce d;

	if (mcg >= 0) {
		in.mcg_status = (uint64_t)mcg;
		in.has_mcg_status = true;
	}
	if (decode_mce(&in, &d))
		memset(&d, 0, sizeof(d));
	return d;
}

#define U DECODE_CTX_USER
#define KR DECODE_CTX_KERNEL_RECOV
#define K DECODE_CTX_KERNEL

static void test_mce_log(void)
{
	struct decode_mce_in in = { .bank = -1, .cpu = -1 };

	/* __print_mce(): "CPU %d: Machine Check%s: %Lx Bank %d: %016Lx" */
	is_int(decode_mce_parse_log("CPU 0: Machine Check Exception: 7 Bank 9: bd80000000000134", &in),
	       0, "log: the panic line parses");
	is_u64(in.status, 0xbd80000000000134ULL, "log: MCi_STATUS after the bank");
	is_u64(in.mcg_status, 7, "log: MCG_STATUS after 'Exception:'");
	is_int(in.bank, 9, "log: bank");
	is_int(in.cpu, 0, "log: CPU");
	ok(in.has_mcg_status && !in.has_addr && !in.has_misc, "log: no ADDR or MISC line, none taken");

	/* HW_ERR prefixes, and the RIP and TSC lines that follow (ADDR, MISC). */
	memset(&in, 0, sizeof(in));
	is_int(decode_mce_parse_log(
		"[ 1234.567890] mce: [Hardware Error]: CPU 3: Machine Check Exception: 5 Bank 1: "
		"bd0000000000017a\n"
		"[ 1234.567891] mce: [Hardware Error]: RIP !INEXACT! 33:<00007f0000001000>\n"
		"[ 1234.567892] mce: [Hardware Error]: TSC 2a1b3c4d ADDR 3fff1040 MISC 86 PPIN 1\n"
		"[ 1234.567893] mce: [Hardware Error]: PROCESSOR 0:50654 TIME 1700000000 SOCKET 0 "
		"APIC 6 microcode 2007006\n", &in), 0, "log: a pasted block parses");
	is_int(in.cpu, 3, "log: CPU 3 behind the [Hardware Error] prefix");
	is_u64(in.status, 0xbd0000000000017aULL, "log: block status");
	ok(in.has_addr && in.addr == 0x3fff1040, "log: ADDR from the TSC line");
	ok(in.has_misc && in.misc == 0x86, "log: MISC from the TSC line");

	/* MCIP clear: "Machine Check:" without " Exception" (polled). */
	memset(&in, 0, sizeof(in));
	is_int(decode_mce_parse_log("CPU 1: Machine Check: 0 Bank 5: 9c0000400000009f", &in), 0,
	       "log: a polled error's line parses");
	is_u64(in.mcg_status, 0, "log: polled MCG_STATUS 0");

	/* The second machine check's ADDR is not the first's. */
	memset(&in, 0, sizeof(in));
	is_int(decode_mce_parse_log("CPU 0: Machine Check Exception: 7 Bank 9: bd80000000000134\n"
				    "CPU 1: Machine Check Exception: 5 Bank 1: bd80000000000134\n"
				    "TSC 0 ADDR 1000\n", &in), 0, "log: two machine checks parse");
	ok(!in.has_addr, "log: ADDR after the second one is not taken for the first");

	is_int(decode_mce_parse_log("nothing to see", &in), -ENOENT, "log: no machine check: -ENOENT");
	is_int(decode_mce_parse_log("Machine Check Exception: 7 Bank x: 1", &in), -EINVAL,
	       "log: bank not a number: -EINVAL");
	is_int(decode_mce_parse_log("Machine Check Exception: 7 Bank 9: bd80000000000134zz", &in),
	       -EINVAL, "log: junk glued to the status: -EINVAL");
	is_int(decode_mce_parse_log("Machine Check Exception: 7 Bank 9: 11112222333344445", &in),
	       -EINVAL, "log: 17 hex digits: -EINVAL");
	is_int(decode_mce_parse_log("Machine Check Exception", &in), -EINVAL, "log: cut short: -EINVAL");
}

static void test_mce_srar(void)
{
	/*
	 * 0xbd80000000000134: nibble b (63:60) = VAL 1, OVER 0, UC 1, EN 1;
	 * d (59:56) = MISCV 1, ADDRV 1, PCC 0, S 1; 8 (55:52) = AR 1.
	 * MCACOD 0x0134 = 0000 0001 0011 0100: SDM §16.9.2 cache hierarchy
	 * 000F 0001 RRRR TTLL, RRRR 0011 DRD, TT 01 D, LL 00 L0:
	 * {TT}CACHE{LL}_{RRRR}_ERR = DCACHEL0_DRD_ERR (SDM §16.9.3.2: the
	 * architectural SRAR data load code).
	 */
	struct decode_mce d = mce(0xbd80000000000134ULL, 7, DECODE_VENDOR_INTEL);

	is_int(fval(d.status, d.n_status, "VAL"), 1, "srar: VAL");
	is_int(fval(d.status, d.n_status, "OVER"), 0, "srar: OVER clear");
	is_int(fval(d.status, d.n_status, "UC"), 1, "srar: UC");
	is_int(fval(d.status, d.n_status, "EN"), 1, "srar: EN");
	is_int(fval(d.status, d.n_status, "MISCV"), 1, "srar: MISCV");
	is_int(fval(d.status, d.n_status, "ADDRV"), 1, "srar: ADDRV");
	is_int(fval(d.status, d.n_status, "PCC"), 0, "srar: PCC clear");
	is_int(fval(d.status, d.n_status, "S"), 1, "srar: S");
	is_int(fval(d.status, d.n_status, "AR"), 1, "srar: AR");
	is_int(fval(d.status, d.n_status, "MCACOD"), 0x134, "srar: MCACOD 0x134");
	is_str(d.code_class, "cache hierarchy", "srar: compound cache hierarchy code");
	is_str(d.code_mnemonic, "DCACHEL0_DRD_ERR", "srar: SDM mnemonic");
	is_str(d.code_text, "data cache, level 0, data read", "srar: code in words");
	is_str(d.ucr_class, "SRAR", "srar: SDM §16.6.3 class S=1 AR=1");
	ok(!d.mcg_assumed && d.mcg_status == 7, "srar: MCG_STATUS as given");
	is_int(fval(d.mcg, d.n_mcg, "RIPV") + fval(d.mcg, d.n_mcg, "EIPV") +
	       fval(d.mcg, d.n_mcg, "MCIP"), 3, "srar: RIPV EIPV MCIP");

	/*
	 * severity.c, first match wins. User mode: past Invalid/Not enabled/
	 * PCC/MCIP/IP rules, UCNA (S set), Non signaled (S set), lost events
	 * (OVER clear), continuable (EIPV set), to the USER data load rule.
	 */
	is_str(d.grades[U].name, "SRAR", "srar: user mode grade");
	is_str(d.grades[U].linux_name, "MCE_AR_SEVERITY", "srar: user mode Linux severity");
	is_str(d.grades[U].rule, "Action required: data load error in a user process",
	       "srar: user mode rule");
	/* RIPV and EIPV both set: a fixup makes error_context() IN_KERNEL_RECOV. */
	is_int(d.grades[KR].seen, KR, "srar: kernel fixup seen as IN_KERNEL_RECOV");
	is_str(d.grades[KR].name, "SRAR", "srar: kernel with fixup grade");
	is_str(d.grades[KR].rule, "Action required: data load in error recoverable area of kernel",
	       "srar: kernel with fixup rule");
	is_str(d.grades[K].name, "panic", "srar: kernel without fixup grade");
	is_str(d.grades[K].rule, "Data load in unrecoverable area of kernel",
	       "srar: kernel without fixup rule");

	/* RIPV clear (the SDM's data-load SRAR on some parts): no fixup possible. */
	d = mce(0xbd80000000000134ULL, 6, DECODE_VENDOR_INTEL);
	is_str(d.grades[U].name, "SRAR", "srar, RIPV=0: user mode still SRAR");
	is_int(d.grades[KR].seen, K, "srar, RIPV=0: a fixup needs RIPV and EIPV: IN_KERNEL");
	is_str(d.grades[KR].rule, "In kernel and no restart IP", "srar, RIPV=0: kernel rule");
	is_str(d.grades[KR].name, "panic", "srar, RIPV=0: kernel panics");

	/* RIPV without EIPV: another thread's error, this one continues. */
	d = mce(0xbd80000000000134ULL, 5, DECODE_VENDOR_INTEL);
	is_str(d.grades[U].rule, "Action required but unaffected thread is continuable",
	       "srar, EIPV=0: bystander rule");
	is_str(d.grades[U].name, "keep", "srar, EIPV=0: keep");

	/* 0xf...: OVER as well. */
	d = mce(0xfd80000000000134ULL, 7, DECODE_VENDOR_INTEL);
	is_str(d.grades[U].rule, "Action required with lost events", "srar + OVER: lost events");
	is_str(d.grades[U].name, "panic", "srar + OVER: panic");

	/* Not given: S=1 UC=1 graded as an #MC with RIPV EIPV MCIP. */
	d = mce(0xbd80000000000134ULL, -1, DECODE_VENDOR_INTEL);
	ok(d.mcg_assumed && d.mcg_status == 7, "srar: MCG_STATUS assumed 7 when not given");

	/* Instruction fetch 0x150: 0001 0101 0000, RRRR 0101 IRD, TT 00 I, LL 00. */
	d = mce(0xbd80000000000150ULL, 7, DECODE_VENDOR_INTEL);
	is_str(d.code_mnemonic, "ICACHEL0_IRD_ERR", "srar ifetch: mnemonic");
	is_str(d.grades[U].rule, "Action required: instruction fetch error in a user process",
	       "srar ifetch: user rule");
	/* No IN_KERNEL_RECOV rule for fetches: on to "unknown MCACOD". */
	is_str(d.grades[KR].rule, "Action required: unknown MCACOD", "srar ifetch: kernel fixup rule");
	is_str(d.grades[K].rule, "Instruction fetch error in kernel", "srar ifetch: kernel rule");
}

static void test_mce_others(void)
{
	struct decode_mce d;

	/*
	 * UCNA: 0xbc0000000000009f: b = VAL UC EN; c = MISCV ADDRV, PCC 0,
	 * S 0; AR 0. MCACOD 0x9f = 0000 0000 1001 1111: memory controller
	 * 000F 0000 1MMM CCCC, MMM 001 RD, CCCC 1111 channel not specified.
	 */
	d = mce(0xbc0000000000009fULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.ucr_class, "UCNA", "ucna: SDM class S=0 AR=0");
	is_str(d.code_mnemonic, "RD_CHANNEL15_ERR", "ucna: memory controller mnemonic");
	ok(strstr(d.code_text, "memory read error, channel not specified") != NULL,
	   "ucna: memory controller in words");
	for (int c = 0; c < DECODE_CTX_COUNT; c++)
		is_str(d.grades[c].rule, "Uncorrected no action required", "ucna: rule in context %d", c);
	is_str(d.grades[U].name, "UCNA", "ucna: grade");
	is_str(d.grades[U].linux_name, "MCE_UCNA_SEVERITY", "ucna: Linux severity");

	/* SRAO, memory scrubbing: 0xc0 = 0000 0000 1100 0000, MMM 100 MS, channel 0. */
	d = mce(0xbd000000000000c0ULL, 5, DECODE_VENDOR_INTEL);
	is_str(d.ucr_class, "SRAO", "srao scrub: SDM class S=1 AR=0");
	is_str(d.code_mnemonic, "MS_CHANNEL0_ERR", "srao scrub: mnemonic");
	for (int c = 0; c < DECODE_CTX_COUNT; c++) {
		is_str(d.grades[c].name, "SRAO", "srao scrub: SRAO in context %d", c);
		is_str(d.grades[c].rule, "Action optional: memory scrubbing error",
		       "srao scrub: rule in context %d", c);
	}
	/* Bit 12 (F) is outside MCACOD_SCRUBMSK 0xeff0: still the scrub rule. */
	d = mce(0xbd000000000010c3ULL, 5, DECODE_VENDOR_INTEL);
	ok(d.code_filtered, "srao scrub + F: filtered");
	is_str(d.grades[U].rule, "Action optional: memory scrubbing error", "srao scrub + F: rule");

	/*
	 * SRAO, L3 explicit writeback 0x17a = 0001 0111 1010: RRRR 0111 EVICT,
	 * TT 10 G, LL 10 L2 (SDM §16.9.3.1 calls it the L3 writeback).
	 */
	d = mce(0xbd0000000000017aULL, 5, DECODE_VENDOR_INTEL);
	is_str(d.code_mnemonic, "GCACHEL2_EVICT_ERR", "srao l3wb: mnemonic");
	is_str(d.grades[K].rule, "Action optional: last level cache writeback error",
	       "srao l3wb: rule, even in the kernel");
	is_str(d.grades[K].name, "SRAO", "srao l3wb: SRAO");

	/* PCC: 0xb200000000000400: b = VAL UC EN; 2 = PCC. 0x400: internal timer. */
	d = mce(0xb200000000000400ULL, 7, DECODE_VENDOR_INTEL);
	ok(d.ucr_class == NULL, "pcc: not a UCR class");
	is_str(d.code_text, "internal timer error", "pcc: simple code 0x400");
	for (int c = 0; c < DECODE_CTX_COUNT; c++)
		is_str(d.grades[c].rule, "Processor context corrupt", "pcc: rule in context %d", c);
	is_str(d.grades[U].name, "panic", "pcc: panic");

	/* Corrected: 0x9c0000400000009f: 9 = VAL EN, UC 0; bit 38: CEC 1. */
	d = mce(0x9c0000400000009fULL, -1, DECODE_VENDOR_INTEL);
	ok(d.mcg_assumed && d.mcg_status == 0, "corrected: assumed polled, MCG_STATUS 0");
	is_int(fval(d.status, d.n_status, "CEC"), 1, "corrected: CEC (52:38) 1");
	is_str(fmeaning(d.status, d.n_status, "THRESHOLD"), "no tracking", "corrected: 54:53 0");
	is_str(d.grades[U].rule, "Non signaled machine check", "corrected: rule (SER set)");
	is_str(d.grades[U].name, "corrected", "corrected: grade");
	is_str(d.grades[U].linux_name, "MCE_KEEP_SEVERITY", "corrected: Linux keeps it");

	/* VAL clear: nothing. */
	d = mce(0, 0, DECODE_VENDOR_INTEL);
	is_str(d.grades[U].rule, "Invalid", "invalid: rule");
	is_str(d.grades[U].name, "none", "invalid: grade");

	/*
	 * The Skylake-SP patrol scrub signature: UC 0, ADDRV MISCV,
	 * MSCOD 0x0010, MCACOD 0x00c0. Model-specific, so only a note.
	 */
	d = mce(0x9c000000001000c0ULL, 0, DECODE_VENDOR_INTEL);
	ok(d.grade_note && strstr(d.grade_note, "Patrol Scrub"), "patrol scrub: noted");
	is_str(d.grades[U].name, "corrected", "patrol scrub: graded as any other CPU would");

	/* Simple and compound codes, SDM §16.9.1-2. */
	d = mce(0x8000000000000000ULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_text, "no error", "code 0: no error");
	d = mce(0x8000000000000405ULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_text, "internal unclassified error", "code 0x405: 0000 01xx xxxx xxxx");
	d = mce(0x800000000000000dULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_class, "generic cache hierarchy", "code 0xd: 0000 0000 0000 11LL");
	d = mce(0x8000000000000011ULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_mnemonic, "ITLBL1_ERR", "code 0x11: 0000 0000 0001 TTLL, I L1");
	d = mce(0x8000000000000913ULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_mnemonic, "BUSLG_SRC_RD_M_TIMEOUT_ERR",
	       "code 0x913: 0000 1PPT RRRR IILL, PP 00 T 1 RRRR 0001 II 00 LL 11");
	d = mce(0x8000000000000e0bULL, 0, DECODE_VENDOR_INTEL);
	is_str(d.code_text, "I/O error (generic)", "code 0xe0b: the simple I/O error");
}

static void test_mce_amd(void)
{
	/*
	 * 0x9c2010000000011b: 9 = VAL EN; c = MISCV ADDRV; 2 (55:52) = SYNDV
	 * (53); 1 (47:44) = DEFERRED (44). mce_severity_amd(): PCC clear,
	 * DEFERRED set: MCE_DEFERRED_SEVERITY.
	 */
	struct decode_mce d = mce(0x9c2010000000011bULL, -1, DECODE_VENDOR_AMD);

	is_int(fval(d.status, d.n_status, "DEFERRED"), 1, "amd deferred: DEFERRED bit 44");
	is_int(fval(d.status, d.n_status, "SYNDV"), 1, "amd deferred: SYNDV bit 53");
	is_int(fval(d.status, d.n_status, "POISON"), 0, "amd deferred: POISON clear");
	ok(field(d.status, d.n_status, "S") == NULL, "amd: no S bit");
	ok(d.ucr_class == NULL, "amd: no SDM UCR class");
	for (int c = 0; c < DECODE_CTX_COUNT; c++)
		is_str(d.grades[c].name, "deferred", "amd deferred: deferred in context %d", c);
	is_str(d.grades[U].linux_name, "MCE_DEFERRED_SEVERITY", "amd deferred: Linux severity");

	/* Uncorrected, consumed: AR where Linux can recover, panic in the kernel. */
	d = mce(0xbc00080000000134ULL, 7, DECODE_VENDOR_AMD);
	is_int(fval(d.status, d.n_status, "POISON"), 1, "amd uc: POISON bit 43");
	is_str(d.grades[U].name, "AR", "amd uc: user mode AR");
	is_str(d.grades[KR].name, "AR", "amd uc: kernel with fixup AR");
	is_str(d.grades[K].name, "panic", "amd uc: kernel panic");
	is_str(d.grades[K].rule, "Uncorrected unrecoverable error in kernel context",
	       "amd uc: kernel rule");

	d = mce(0xbe00000000000134ULL, 7, DECODE_VENDOR_AMD);
	is_str(d.grades[U].rule, "Processor Context Corrupt", "amd pcc: rule");
	d = mce(0x9c0000000000011bULL, 0, DECODE_VENDOR_AMD);
	is_str(d.grades[U].name, "corrected", "amd corrected: grade");
}

static void test_hex(void)
{
	uint64_t v = 0;

	ok(!decode_parse_hex64("bd80000000000134", &v) && v == 0xbd80000000000134ULL, "hex: bare");
	ok(!decode_parse_hex64(" 0x96000010\n", &v) && v == 0x96000010, "hex: 0x, blanks");
	ok(!decode_parse_hex64("0x0000000096000010", &v) && v == 0x96000010, "hex: 16 digits");
	ok(!decode_parse_hex64("000000000000000000ff", &v) && v == 0xff, "hex: leading zeros");
	ok(decode_parse_hex64("1ffffffffffffffff", &v), "hex: 65 bits rejected");
	ok(decode_parse_hex64("", &v) && decode_parse_hex64("0x", &v) && decode_parse_hex64("12 3", &v),
	   "hex: empty, bare 0x, two numbers rejected");
	ok(decode_parse_hex64("-1", &v), "hex: sign rejected");
}

/* ---- ESR -------------------------------------------------------------- */

static void test_esr(void)
{
	struct decode_esr d;

	/*
	 * 0x92000010 = 1001 0010 0000 ... 0001 0000: EC (31:26) 100100 = 0x24,
	 * IL (25) 1, ISS 0x10: ISV 0, DFSC 0b010000.
	 */
	is_int(decode_esr(0x92000010, &d), 0, "esr 0x92000010 decodes");
	is_int(d.ec, 0x24, "esr 0x92000010: EC 0x24");
	is_str(d.ec_name, "Data Abort from a lower Exception level", "esr 0x92000010: EC name");
	is_int(d.il, 1, "esr 0x92000010: IL 1");
	is_int(d.iss, 0x10, "esr 0x92000010: ISS 0x10");
	is_int(d.kind, DECODE_ESR_DABT, "esr 0x92000010: a data abort");
	is_int(fval(d.fields, d.n_fields, "ISV"), 0, "esr 0x92000010: ISV 0");
	ok(field(d.fields, d.n_fields, "SRT") == NULL, "esr 0x92000010: no SRT without ISV");
	is_int(fval(d.fields, d.n_fields, "DFSC"), 0x10, "esr 0x92000010: DFSC 0x10");
	ok(!strncmp(fmeaning(d.fields, d.n_fields, "DFSC"), "Synchronous External abort, not", 31),
	   "esr 0x92000010: DFSC name");
	is_str(fmeaning(d.fields, d.n_fields, "SET"), "UER: recoverable state",
	       "esr 0x92000010: SET 00 with DFSC 0x10: UER");

	/* 0x96000610: 1001 0110: EC 100101 = 0x25, IL 1; ISS 0x610: FnV (10), EA (9), DFSC 0x10. */
	is_int(decode_esr(0x96000610, &d), 0, "esr 0x96000610 decodes");
	is_int(d.ec, 0x25, "esr 0x96000610: EC 0x25");
	is_str(d.ec_name, "Data Abort, same Exception level", "esr 0x96000610: EC name");
	is_int(fval(d.fields, d.n_fields, "FnV"), 1, "esr 0x96000610: FnV");
	is_int(fval(d.fields, d.n_fields, "EA"), 1, "esr 0x96000610: EA");
	is_int(fval(d.fields, d.n_fields, "WnR"), 0, "esr 0x96000610: read");
	is_int(fval(d.fields, d.n_fields, "DFSC"), 0x10, "esr 0x96000610: DFSC 0x10");

	/* 0x96000018: DFSC 0b011000, parity/ECC without FEAT_RAS; SET means nothing. */
	is_int(decode_esr(0x96000018, &d), 0, "esr 0x96000018 decodes");
	ok(strstr(fmeaning(d.fields, d.n_fields, "DFSC"), "parity or ECC") != NULL,
	   "esr 0x96000018: DFSC 0x18 parity/ECC");
	is_str(fmeaning(d.fields, d.n_fields, "SET"), "not meaningful for this DFSC",
	       "esr 0x96000018: SET only with DFSC 0x10");

	/* ISV set: 0x93c58047 = EC 0x24, IL, ISV, SAS 11, SRT 00101, SF, WnR, DFSC 0b000111. */
	is_int(decode_esr(0x93c58047, &d), 0, "esr 0x93c58047 decodes");
	is_int(fval(d.fields, d.n_fields, "ISV"), 1, "esr isv: ISV");
	is_str(fmeaning(d.fields, d.n_fields, "SAS"), "doubleword", "esr isv: SAS 11");
	is_int(fval(d.fields, d.n_fields, "SRT"), 5, "esr isv: SRT x5");
	is_int(fval(d.fields, d.n_fields, "SF"), 1, "esr isv: SF");
	is_int(fval(d.fields, d.n_fields, "WnR"), 1, "esr isv: write");
	is_str(fmeaning(d.fields, d.n_fields, "DFSC"), "Translation fault, level 3", "esr isv: DFSC 7");

	/* SError: 0xbe000000 = EC 101111 0x2f, IL; AET (12:10) and DFSC 0x11. */
	is_int(decode_esr(0xbe000c11, &d), 0, "esr 0xbe000c11 decodes");
	is_int(d.ec, 0x2f, "serror: EC 0x2f");
	is_int(d.kind, DECODE_ESR_SERROR, "serror: kind");
	is_int(fval(d.fields, d.n_fields, "IDS"), 0, "serror: IDS 0");
	is_int(fval(d.fields, d.n_fields, "AET"), 3, "serror: AET 011");
	is_str(fmeaning(d.fields, d.n_fields, "AET"), "UER: recoverable state", "serror: AET UER");
	is_str(fmeaning(d.fields, d.n_fields, "DFSC"), "Asynchronous SError interrupt", "serror: DFSC");
	decode_esr(0xbe000011, &d);
	is_str(fmeaning(d.fields, d.n_fields, "AET"), "UC: uncontainable", "serror: AET 000 UC");
	decode_esr(0xbe001811, &d);
	is_str(fmeaning(d.fields, d.n_fields, "AET"), "CE: corrected", "serror: AET 110 CE");
	decode_esr(0xbf000000, &d);
	ok(field(d.fields, d.n_fields, "AET") == NULL, "serror: IDS 1, no architectural fields");

	/* Instruction abort 0x82000010: EC 100000 0x20. */
	is_int(decode_esr(0x82000010, &d), 0, "esr 0x82000010 decodes");
	is_int(d.kind, DECODE_ESR_IABT, "iabt: kind");
	is_int(fval(d.fields, d.n_fields, "IFSC"), 0x10, "iabt: IFSC");
	ok(field(d.fields, d.n_fields, "WnR") == NULL, "iabt: no WnR");

	/* SVC, ISS2, RES0. */
	decode_esr(0x56000000, &d);
	is_str(d.ec_name, "SVC, AArch64", "esr 0x56000000: EC 0x15 SVC");
	decode_esr(0x0000001292000010ULL, &d);
	is_int(d.iss2, 0x12, "esr: ISS2 from bits 55:32");
	is_int(decode_esr(0x0100000092000010ULL, &d), -EINVAL, "esr: RES0 bits 63:56 set: -EINVAL");
}

/* ---- CPER ------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* UUID_LE(0xA5BC1114, 0x6F64, 0x4EDE, 0xB8, 0x63, 0x3E, 0x83, 0xED, 0x7C, 0x83, 0xB1) */
static const uint8_t mem_guid[16] = {
	0x14, 0x11, 0xbc, 0xa5, 0x64, 0x6f, 0xde, 0x4e,
	0xb8, 0x63, 0x3e, 0x83, 0xed, 0x7c, 0x83, 0xb1,
};
/* Firmware error record reference: 81212A96-09ED-4996-9471-8D729C8E69ED. */
static const uint8_t fw_guid[16] = {
	0x96, 0x2a, 0x21, 0x81, 0xed, 0x09, 0x96, 0x49,
	0x94, 0x71, 0x8d, 0x72, 0x9c, 0x8e, 0x69, 0xed,
};
/* CMC notification: 2DCE8BB1-BDD7-450E-B9AD-9CF4EBD4F890. */
static const uint8_t cmc_guid[16] = {
	0xb1, 0x8b, 0xce, 0x2d, 0xd7, 0xbd, 0x0e, 0x45,
	0xb9, 0xad, 0x9c, 0xf4, 0xeb, 0xd4, 0xf8, 0x90,
};

/*
 * What QEMU's hw/acpi/ghes.c (acpi_ghes_record_mem_error) writes for one
 * memory error: acpi_ghes_generic_error_status(block, ACPI_GEBS_UNCORRECTABLE,
 * 0, 0, 72 + 80, ACPI_CPER_SEV_RECOVERABLE), acpi_ghes_generic_error_data(
 * mem GUID, severity 0, validation 0, flags 0, length 80, FRU id 0, time
 * 0) (revision 0x300: ACPI 6.x Generic Error Data Entry, 72 bytes), and
 * acpi_ghes_build_append_mem_cper(): validation (1 << 14) | (1 << 1),
 * error status 0, the address, 48 zero bytes, the memory error type (0,
 * "Unknown error": QEMU 5.1's first version and today's both), 7 zero bytes.
 */
static size_t qemu_block(uint8_t *b, uint64_t pa, uint8_t type)
{
	memset(b, 0, 172);
	put32(b, 1);			/* block status: uncorrectable valid */
	put32(b + 12, 72 + 80);		/* data length */
	memcpy(b + 20, mem_guid, 16);	/* data entry: section type */
	put16(b + 20 + 20, 0x300);	/* revision */
	put32(b + 20 + 24, 80);		/* error data length */
	put64(b + 92, (1ULL << 14) | (1ULL << 1));
	put64(b + 92 + 16, pa);
	b[92 + 72] = type;
	return 172;
}

static int cper(const uint8_t *b, size_t len, struct decode_cper *d)
{
	/* An exact-size copy, so that ASan sees a read past the end. */
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	memcpy(copy, b, len);
	rc = decode_cper(copy, len, d);
	free(copy);
	return rc;
}

static struct decode_cper d_cper;

static void test_cper_qemu(void)
{
	struct decode_cper *d = &d_cper;
	uint8_t b[512];
	size_t len = qemu_block(b, 0x40001000, 0);
	const struct decode_mem_err *m = &d->sections[0].mem;
	char guid[37];
	int fails = 0;

	is_int(cper(b, len, d), 0, "qemu: the 172-byte block decodes");
	is_int(d->kind, DECODE_CPER_ESTATUS, "qemu: a Generic Error Status Block");
	is_int(d->block_status, 1, "qemu: block status: uncorrectable valid");
	is_int(d->data_length, 152, "qemu: data length 72 + 80");
	is_int(d->error_severity, 0, "qemu: recoverable");
	is_int(d->n_sections, 1, "qemu: one data entry");
	ok(strstr(d->note, "counts 0 data entries") != NULL,
	   "qemu: its entry count (bits 13:4) is 0, and that is noted, not fatal");
	is_str(d->sections[0].type_name, "memory error", "qemu: memory error section");
	decode_guid_str(&d->sections[0].type, guid);
	is_str(guid, "a5bc1114-6f64-4ede-b863-3e83ed7c83b1", "qemu: section type GUID text");
	is_int(d->sections[0].revision, 0x300, "qemu: entry revision 0x300");
	ok(d->sections[0].has_timestamp, "qemu: revision 0x300 has a timestamp");
	is_int(d->sections[0].offset, 92, "qemu: data after the 20 + 72 bytes of headers");
	is_int(d->sections[0].length, 80, "qemu: 80 bytes of memory error");
	ok(d->sections[0].is_mem && !m->old_layout, "qemu: decoded as a memory error section");
	is_u64(m->validation, 0x4002, "qemu: validation: physical address, memory error type");
	is_u64(m->physical_addr, 0x40001000, "qemu: physical address");
	is_int(m->error_type, 0, "qemu: memory error type 0");
	is_str(decode_mem_err_type_name(m->error_type), "unknown", "qemu: type 0 is unknown");
	is_u64(m->granularity, 0, "qemu: no mask, no granularity");

	/* Every truncation is an error, not a crash. */
	for (size_t n = 0; n < len; n++)
		if (cper(b, n, d) != -EINVAL || !d->error[0])
			fails++;
	is_int(fails, 0, "qemu: all 172 truncations are errors with a message");
	cper(b, 100, d);
	ok(strstr(d->error, "data length 152 overruns the input") != NULL,
	   "qemu: cut at 100: the data length is what overruns");

	/* Type 3 and a mask: named, and a 4 KiB granule. */
	qemu_block(b, 0x40001234, 3);
	put64(b + 92, (1ULL << 14) | (1ULL << 2) | (1ULL << 1));
	put64(b + 92 + 24, 0xfffffffffffff000ULL);
	is_int(cper(b, len, d), 0, "qemu type 3: decodes");
	is_str(decode_mem_err_type_name(m->error_type), "multi-bit ECC", "qemu type 3: multi-bit ECC");
	is_u64(m->granularity, 4096, "mask 0xfffffffffffff000: a 4 KiB granule (~mask + 1)");
	put64(b + 92 + 24, 0x000ffffffffff000ULL);
	cper(b, len, d);
	is_u64(m->granularity, 4096, "mask with high bits clear: still its lowest set bit, 4 KiB");

	/* Inconsistent lengths. */
	qemu_block(b, 0x40001000, 0);
	put32(b + 12, 153);
	is_int(cper(b, len, d), -EINVAL, "data length 153 in 172 bytes: error");
	put32(b + 12, 152);
	put32(b + 20 + 24, 81);
	is_int(cper(b, len, d), -EINVAL, "error data length 81 past the data length: error");
	ok(strstr(d->error, "entry 1") != NULL, "error data length: names the entry");
	put32(b + 20 + 24, 80);
	put32(b + 12, 100);
	is_int(cper(b, len, d), -EINVAL, "data length 100 cuts the entry: error");
	put32(b + 12, 72 + 40);
	put32(b + 20 + 24, 40);
	is_int(cper(b, len, d), -EINVAL, "a 40-byte memory error section: error");
	ok(strstr(d->error, "memory error section of 40 bytes") != NULL, "short memory section: says so");
	put32(b + 12, 72 + 73);
	put32(b + 20 + 24, 73);
	is_int(cper(b, 20 + 72 + 73, d), 0, "a 73-byte memory error section: the UEFI 2.1 layout");
	ok(m->old_layout && m->physical_addr == 0x40001000, "73 bytes: old layout, address read");

	/* Trailing bytes and raw data. */
	qemu_block(b, 0x40001000, 0);
	memset(b + 172, 0, 16);
	is_int(cper(b, 188, d), 0, "16 bytes after the block: decodes");
	ok(strstr(d->note, "16 bytes after the block ignored") != NULL, "trailing bytes: noted");
	put32(b + 4, 172);
	put32(b + 8, 4);
	is_int(cper(b, 176, d), 0, "raw data after the entries: decodes");
	is_int(cper(b, 175, d), -EINVAL, "raw data past the end: error");
	put32(b + 4, 100);
	is_int(cper(b, 176, d), -EINVAL, "raw data inside the entries: error");
}

static void test_cper_two(void)
{
	struct decode_cper *d = &d_cper;
	uint8_t b[512];

	/*
	 * Two entries: QEMU's, then a revision 0x200 one (64-byte header,
	 * no timestamp) with 16 bytes of a firmware error record reference.
	 * Data length 152 + 64 + 16 = 232; block status count (13:4) 2.
	 */
	qemu_block(b, 0x40001000, 0);
	put32(b, 1 | 2 << 4);
	put32(b + 12, 232);
	memset(b + 172, 0, 80);
	memcpy(b + 172, fw_guid, 16);
	put32(b + 172 + 16, 2);		/* corrected */
	put16(b + 172 + 20, 0x200);
	b[172 + 23] = 1;		/* flags: primary */
	put32(b + 172 + 24, 16);
	memcpy(b + 172 + 44, "FRU\x01", 4);	/* FRU text, one unprintable */
	memset(b + 172 + 64, 0xab, 16);
	is_int(cper(b, 252, d), 0, "two entries: decode");
	is_int(d->n_sections, 2, "two entries: both");
	is_str(d->note, "", "two entries: the count matches, nothing to note");
	is_str(d->sections[1].type_name, "firmware error record reference", "entry 2: named");
	ok(!d->sections[1].has_timestamp, "entry 2: revision 0x200, no timestamp");
	is_int(d->sections[1].offset, 20 + 152 + 64, "entry 2: data after its 64-byte header");
	is_int(d->sections[1].length, 16, "entry 2: 16 bytes");
	is_int(d->sections[1].severity, 2, "entry 2: corrected");
	is_int(d->sections[1].flags, 1, "entry 2: primary");
	is_str(d->sections[1].fru_text, "FRU?", "entry 2: FRU text, unprintable shown as ?");
	ok(!d->sections[1].is_mem, "entry 2: not a memory error");
	is_int(cper(b, 251, d), -EINVAL, "two entries cut by one byte: error");
	put32(b + 12, 231);
	is_int(cper(b, 252, d), -EINVAL, "data length one short of entry 2: error");
}

static size_t uefi_record(uint8_t *b)
{
	uint8_t *desc = b + 128, *sec = b + 200;

	memset(b, 0, 280);
	memcpy(b, "CPER", 4);
	put16(b + 4, 0x0100);			/* revision */
	put32(b + 6, 0xffffffff);		/* signature end */
	put16(b + 10, 1);			/* section count */
	put32(b + 12, 2);			/* corrected */
	put32(b + 16, 2);			/* timestamp valid */
	put32(b + 20, 280);			/* record length: 128 + 72 + 80 */
	put64(b + 24, 0x2024051701123456ULL);	/* BCD 2024-05-17 12:34:56, precise */
	memcpy(b + 80, cmc_guid, 16);		/* notification type */
	put64(b + 96, 0x1122334455667788ULL);	/* record id */
	put32(desc, 200);			/* section offset */
	put32(desc + 4, 80);			/* section length */
	put16(desc + 8, 0x0100);
	desc[10] = 2;				/* FRU text valid */
	put32(desc + 12, 1);			/* primary */
	memcpy(desc + 16, mem_guid, 16);
	put32(desc + 48, 2);
	memcpy(desc + 52, "DIMM_A1", 7);
	/* PA, PA mask, node, row, memory error type, bank group, bank address. */
	put64(sec, 0x2 | 0x4 | 0x8 | 0x100 | 0x4000 | 0x80000 | 0x100000);
	put64(sec + 16, 0x123456789000ULL);
	put64(sec + 24, 0xfffffffffffff000ULL);
	put16(sec + 32, 1);			/* node */
	put16(sec + 38, 2 << 8 | 3);		/* bank group 2, bank address 3 */
	put16(sec + 42, 0x1234);		/* row */
	sec[72] = 2;				/* single-bit ECC */
	return 280;
}

static void test_cper_record(void)
{
	struct decode_cper *d = &d_cper;
	uint8_t b[512];
	size_t len = uefi_record(b);
	const struct decode_mem_err *m = &d->sections[0].mem;
	int fails = 0;

	is_int(cper(b, len, d), 0, "uefi: a record with one memory section decodes");
	is_int(d->kind, DECODE_CPER_RECORD, "uefi: a record");
	is_int(d->section_count, 1, "uefi: one section");
	is_int(d->record_length, 280, "uefi: record length");
	is_int(d->error_severity, 2, "uefi: corrected");
	is_str(d->notification_name, "CMC (corrected machine check)", "uefi: notification type CMC");
	is_u64(d->record_id, 0x1122334455667788ULL, "uefi: record id");
	is_int(d->sections[0].offset, 200, "uefi: section at 200");
	is_int(d->sections[0].flags, 1, "uefi: primary");
	is_str(d->sections[0].fru_text, "DIMM_A1", "uefi: FRU text");
	ok(!d->sections[0].has_timestamp, "uefi: descriptors have no timestamp");
	is_u64(m->physical_addr, 0x123456789000ULL, "uefi: physical address");
	is_u64(m->granularity, 4096, "uefi: 4 KiB granule");
	is_int(m->node, 1, "uefi: node");
	is_int(m->bank >> 8, 2, "uefi: bank group");
	is_int(m->bank & 0xff, 3, "uefi: bank address");
	is_int(m->row, 0x1234, "uefi: row");
	is_str(decode_mem_err_type_name(m->error_type), "single-bit ECC", "uefi: type 2");
	is_str(d->note, "", "uefi: nothing odd");

	for (size_t n = 0; n < len; n++)
		if (cper(b, n, d) != -EINVAL)
			fails++;
	is_int(fails, 0, "uefi: all 280 truncations are errors");

	uefi_record(b);
	put32(b + 128, 150);
	is_int(cper(b, len, d), -EINVAL, "uefi: section inside the descriptors: error");
	uefi_record(b);
	put32(b + 128 + 4, 81);
	is_int(cper(b, len, d), -EINVAL, "uefi: section past the record length: error");
	uefi_record(b);
	put32(b + 20, 199);
	is_int(cper(b, len, d), -EINVAL, "uefi: record length inside the descriptors: error");
	uefi_record(b);
	put32(b + 6, 0);
	is_int(cper(b, len, d), -EINVAL, "uefi: signature end not 0xffffffff: error");
	uefi_record(b);
	put16(b + 10, 0);
	is_int(cper(b, len, d), -EINVAL, "uefi: no sections: error");
	uefi_record(b);
	put16(b + 10, 0xffff);
	is_int(cper(b, len, d), -EINVAL, "uefi: 65535 sections: error");

	{
		size_t big = DECODE_CPER_MAX_INPUT + 1;
		uint8_t *z = calloc(1, big);

		is_int(decode_cper(z, big, d), -E2BIG, "over 1 MiB: -E2BIG");
		free(z);
	}
}

/* ---- printers --------------------------------------------------------- */

static char *print_to_string(void (*fn)(FILE *, const void *, const uint8_t *), const void *d,
			     const uint8_t *buf)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	fn(f, d, buf);
	fclose(f);
	return s;
}

static void pmce(FILE *f, const void *d, const uint8_t *b) { (void)b; decode_print_mce(f, d); }
static void pcper(FILE *f, const void *d, const uint8_t *b) { decode_print_cper(f, d, b); }

static json_object *jpath(json_object *o, const char *a, const char *b, const char *c)
{
	json_object *x = NULL;

	if (o && json_object_object_get_ex(o, a, &x) && b && json_object_object_get_ex(x, b, &x) && c)
		json_object_object_get_ex(x, c, &x);
	return x;
}

static void test_printers(void)
{
	struct decode_mce m = mce(0xbd80000000000134ULL, 7, DECODE_VENDOR_INTEL);
	struct decode_cper *d = &d_cper;
	uint8_t b[512];
	json_object *o, *x;
	char *s;

	s = print_to_string(pmce, &m, NULL);
	ok(s && strstr(s, "DCACHEL0_DRD_ERR") && strstr(s, "Data load in unrecoverable area of kernel"),
	   "text: mce shows the code and the kernel rule");
	free(s);

	o = decode_mce_json(&m);
	ok(!json_object_object_get_ex(o, "status", NULL), "json: status above int64: no number");
	is_str(json_object_get_string(jpath(o, "status_hex", NULL, NULL)), "0xbd80000000000134",
	       "json: status_hex");
	is_str(json_object_get_string(jpath(o, "severity", "user", "grade")), "SRAR",
	       "json: severity.user.grade");
	is_int(json_object_get_int(jpath(o, "status_fields", "ar", "value")), 1,
	       "json: status_fields.ar.value");
	json_object_put(o);

	qemu_block(b, 0x40001000, 0);
	decode_cper(b, 172, d);
	s = print_to_string(pcper, d, b);
	ok(s && strstr(s, "0x0000000040001000"), "text: cper shows the address");
	free(s);
	o = decode_cper_json(d, b);
	x = json_object_array_get_idx(jpath(o, "sections", NULL, NULL), 0);
	is_int(json_object_get_int64(jpath(x, "memory_error", "physical_address", NULL)), 0x40001000,
	       "json: sections[0].memory_error.physical_address");
	is_str(json_object_get_string(jpath(x, "memory_error", "physical_address_hex", NULL)),
	       "0x40001000", "json: ..._hex");
	json_object_put(o);
}

/* ---- the command -------------------------------------------------------- */

static int run(const char *cmd, char *out, size_t size)
{
	FILE *p = popen(cmd, "r");
	size_t n;
	int st;

	if (!p)
		return -1;
	n = fread(out, 1, size - 1, p);
	out[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *vmras)
{
	char cmd[512], out[65536], path[] = "/tmp/test_decode.XXXXXX";
	uint8_t b[512];
	int fd;

	snprintf(cmd, sizeof(cmd), "%s decode mce 'CPU 0: Machine Check Exception: 7 Bank 9: "
		 "bd80000000000134' --json", vmras);
	is_int(run(cmd, out, sizeof(out)), 0, "cli: decode mce LOG --json");
	ok(strstr(out, "\"grade\":\"SRAR\"") != NULL, "cli: SRAR in the JSON");

	snprintf(cmd, sizeof(cmd), "%s decode esr 0x96000610", vmras);
	is_int(run(cmd, out, sizeof(out)), 0, "cli: decode esr");
	ok(strstr(out, "Data Abort, same Exception level") != NULL, "cli: EC named");

	fd = mkstemp(path);
	qemu_block(b, 0x40001000, 0);
	if (fd < 0 || write(fd, b, 171) != 171) {
		tap_skip("cli: cper", "no temporary file");
		return;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "%s decode cper %s 2>&1", vmras, path);
	is_int(run(cmd, out, sizeof(out)), 1, "cli: a truncated block exits 1");
	ok(!strncmp(out, "vmras decode: cper: ", 20) && strchr(out, '\n') == out + strlen(out) - 1,
	   "cli: one error line: %.*s", (int)strcspn(out, "\n"), out);
	snprintf(cmd, sizeof(cmd), "%s decode cper - --json < %s", vmras, path);
	fd = open(path, O_WRONLY | O_APPEND);
	if (fd >= 0 && write(fd, b + 171, 1) == 1) {
		close(fd);
		is_int(run(cmd, out, sizeof(out)), 0, "cli: the whole block from stdin decodes");
		ok(strstr(out, "\"physical_address_hex\":\"0x40001000\"") != NULL, "cli: address in JSON");
	}
	unlink(path);
	snprintf(cmd, sizeof(cmd), "%s decode mce nonsense 2>/dev/null", vmras);
	is_int(run(cmd, out, sizeof(out)), 1, "cli: not a status nor a log: exit 1");
	snprintf(cmd, sizeof(cmd), "%s decode esr 1 --addr 5 2>/dev/null", vmras);
	is_int(run(cmd, out, sizeof(out)), 2, "cli: mce options on esr: usage, exit 2");
}

int main(int argc, char **argv)
{
	test_hex();
	test_mce_log();
	test_mce_srar();
	test_mce_others();
	test_mce_amd();
	test_esr();
	test_cper_qemu();
	test_cper_two();
	test_cper_record();
	test_printers();
	if (argc > 1)
		test_cli(argv[1]);
	else
		tap_skip("cli", "no vmras binary given");
	return tap_done();
}
