// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * x86 machine checks taken apart: IA32_MCi_STATUS (Intel SDM vol 3B
 * §16.3.2.2; AMD's bits per APM vol 2 §9.3.2.3 as Linux's asm/mce.h names
 * them), its MCA error code (SDM §16.9), MCi_MISC, MCG_STATUS, and the
 * severity Linux grades it as: arch/x86/kernel/cpu/mce/severity.c as of
 * Linux 6.10+ (the severities[] table with the SEAM and "Uncorrected in
 * kernel" rules; mce_severity_amd() after its 2022 rewrite).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

#define BIT(n) (1ULL << (n))

#define ST_VAL BIT(63)
#define ST_OVER BIT(62)
#define ST_UC BIT(61)
#define ST_EN BIT(60)
#define ST_MISCV BIT(59)
#define ST_ADDRV BIT(58)
#define ST_PCC BIT(57)
#define ST_S BIT(56)		/* Intel, with MCG_SER_P */
#define ST_AR BIT(55)		/* Intel, with MCG_SER_P */
#define ST_DEFERRED BIT(44)	/* AMD */
#define ST_UC_S (ST_UC | ST_S)
#define ST_UC_SAR (ST_UC | ST_S | ST_AR)
#define ST_ADDR (ST_ADDRV | ST_MISCV)	/* Linux's MCI_ADDR */

/* Linux's asm/mce.h: the error code without bit 12 (F), and its SDM codes. */
#define MCACOD 0xefffULL
#define MCACOD_SCRUB 0x00c0ULL
#define MCACOD_SCRUBMSK 0xeff0ULL
#define MCACOD_L3WB 0x017aULL
#define MCACOD_DATA 0x0134ULL
#define MCACOD_INSTR 0x0150ULL

#define MCG_RIPV BIT(0)
#define MCG_EIPV BIT(1)
#define MCG_MCIP BIT(2)
#define MCG_LMCES BIT(3)
#define MCG_SEAM_NR BIT(12)

static uint64_t bits(uint64_t v, unsigned int hi, unsigned int lo)
{
	unsigned int w = hi - lo + 1;

	return (v >> lo) & (w >= 64 ? ~0ULL : (1ULL << w) - 1);
}

static void add(struct decode_field *fs, int *n, const char *name, unsigned int hi,
		unsigned int lo, uint64_t reg, const char *meaning)
{
	fs[(*n)++] = (struct decode_field){ name, (uint8_t)hi, (uint8_t)lo, bits(reg, hi, lo), meaning };
}

/* A one-bit field, with what it means set and clear (NULL: nothing to say). */
static void add_bit(struct decode_field *fs, int *n, const char *name, unsigned int bit,
		    uint64_t reg, const char *set, const char *clear)
{
	add(fs, n, name, bit, bit, reg, reg & BIT(bit) ? set : clear);
}

/* ---- numbers --------------------------------------------------------- */

static int hexval(char c)
{
	return isdigit((unsigned char)c) ? c - '0' : tolower((unsigned char)c) - 'a' + 10;
}

/* [0x]hex at *p, up to 16 significant digits; *p moves past it. */
static int take_hex(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	int digits = 0, significant = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isxdigit((unsigned char)s[2]))
		s += 2;
	for (; isxdigit((unsigned char)*s); s++, digits++) {
		if (v || *s != '0')
			significant++;
		if (significant > 16)
			return -EINVAL;
		v = v << 4 | (uint64_t)hexval(*s);
	}
	if (!digits)
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

static int take_dec(const char **p, int *out)
{
	const char *s = *p;
	int v = 0, digits = 0;

	for (; isdigit((unsigned char)*s); s++) {
		if (++digits > 9)
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	if (!digits)
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int decode_parse_hex64(const char *s, uint64_t *out)
{
	uint64_t v;

	while (isspace((unsigned char)*s))
		s++;
	if (take_hex(&s, &v))
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	if (*s)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ---- the kernel's log lines ------------------------------------------ */

/* "WORD hex" in [p, end) with WORD starting a word: the value after it. */
static bool find_word_hex(const char *p, const char *end, const char *word, uint64_t *out)
{
	size_t n = strlen(word);

	for (const char *q = p; q + n < end; q++) {
		const char *v = q + n;

		if ((q == p || isspace((unsigned char)q[-1])) && !strncmp(q, word, n) && *v == ' ') {
			v = skip_blanks(v);
			if (!take_hex(&v, out))
				return true;
		}
	}
	return false;
}

/*
 * __print_mce() (arch/x86/kernel/cpu/mce/core.c) prints
 *   "CPU %d: Machine Check%s: %Lx Bank %d: %016Lx"	(%s: " Exception" if MCIP)
 *   "RIP%s %02x:<%016Lx> ..."
 *   "TSC %llx ADDR %llx MISC %llx PPIN %llx ..."	(ADDR, MISC only if nonzero)
 * each after HW_ERR, "[Hardware Error]: ".
 */
int decode_mce_parse_log(const char *text, struct decode_mce_in *in)
{
	static const char mc[] = "Machine Check";
	const char *m = strstr(text, mc), *p, *line, *end;
	uint64_t mcg, status;
	int bank, cpu = -1;

	if (!m)
		return -ENOENT;
	p = m + strlen(mc);
	if (!strncmp(p, " Exception", 10))
		p += 10;
	if (*p++ != ':')
		return -EINVAL;
	p = skip_blanks(p);
	if (take_hex(&p, &mcg))
		return -EINVAL;
	p = skip_blanks(p);
	if (strncmp(p, "Bank", 4))
		return -EINVAL;
	p = skip_blanks(p + 4);
	if (take_dec(&p, &bank) || *p++ != ':')
		return -EINVAL;
	p = skip_blanks(p);
	if (take_hex(&p, &status) || (*p && !isspace((unsigned char)*p)))
		return -EINVAL;

	/* "CPU %d:" earlier on the same line. */
	for (line = m; line > text && line[-1] != '\n'; line--)
		;
	for (const char *q = line; q + 4 <= m; q++) {
		const char *d = q + 4;

		if (!strncmp(q, "CPU ", 4) && take_dec(&d, &cpu))
			cpu = -1;
	}

	/* ADDR and MISC from the lines that follow, up to the next machine check. */
	end = strstr(p, mc);
	if (!end)
		end = p + strlen(p);
	in->has_addr = find_word_hex(p, end, "ADDR", &in->addr);
	in->has_misc = find_word_hex(p, end, "MISC", &in->misc);
	in->status = status;
	in->mcg_status = mcg;
	in->has_mcg_status = true;
	in->bank = bank;
	in->cpu = cpu;
	return 0;
}

/* ---- the MCA error code (SDM §16.9.1, §16.9.2) ------------------------ */

static const char *const tt_mn[4] = { "I", "D", "G", "?" };
static const char *const tt_text[4] = { "instruction", "data", "generic", "reserved" };
static const char *const ll_mn[4] = { "L0", "L1", "L2", "LG" };
static const char *const ll_text[4] = { "level 0", "level 1", "level 2", "generic level" };
static const char *const rrrr_mn[16] = { "ERR", "RD", "WR", "DRD", "DWR", "IRD", "PREFETCH", "EVICT", "SNOOP" };
static const char *const rrrr_text[16] = {
	"generic error", "generic read", "generic write", "data read", "data write",
	"instruction fetch", "prefetch", "eviction", "snoop",
};
static const char *const pp_mn[4] = { "SRC", "RES", "OBS", "GEN" };
static const char *const pp_text[4] = {
	"local processor originated the request", "local processor responded to the request",
	"local processor observed the error as a third party", "generic",
};
static const char *const ii_mn[4] = { "M", "?", "IO", "OTHER" };
static const char *const ii_text[4] = { "memory access", "reserved", "I/O", "other transaction" };
static const char *const mmm_mn[8] = { "GEN", "RD", "WR", "AC", "MS" };
static const char *const mmm_text[8] = {
	"generic undefined request", "memory read error", "memory write error",
	"address/command error", "memory scrubbing error",
};

static const char *or_reserved(const char *s)
{
	return s ? s : "reserved";
}

static void memory_controller(struct decode_mce *d, unsigned int c, const char *what)
{
	unsigned int mmm = (c >> 4) & 7, ch = c & 15;

	snprintf(d->code_mnemonic, sizeof(d->code_mnemonic), "%s_CHANNEL%u_ERR",
		 mmm_mn[mmm] ? mmm_mn[mmm] : "?", ch);
	if (ch == 15)
		snprintf(d->code_text, sizeof(d->code_text), "%s: %s, channel not specified",
			 what, or_reserved(mmm_text[mmm]));
	else
		snprintf(d->code_text, sizeof(d->code_text), "%s: %s, channel %u", what,
			 or_reserved(mmm_text[mmm]), ch);
}

static void decode_code(struct decode_mce *d)
{
	static const char *const simple[] = {
		"no error", "unclassified", "microcode ROM parity error",
		"external error (BINIT# from another processor)", "FRC error",
		"internal parity error", "SMM handler code access violation",
	};
	unsigned int c = d->mcacod & MCACOD;	/* F, bit 12, is a flag of its own */
	unsigned int tt = (c >> 2) & 3, ll = c & 3, rrrr = (c >> 4) & 15;

	d->code_filtered = d->mcacod & 0x1000;
	d->code_mnemonic[0] = 0;
	d->code_class = "compound";
	if (c < sizeof(simple) / sizeof(simple[0])) {
		d->code_class = "simple";
		snprintf(d->code_text, sizeof(d->code_text), "%s", simple[c]);
	} else if (c == 0x0400) {
		d->code_class = "simple";
		snprintf(d->code_text, sizeof(d->code_text), "internal timer error");
	} else if (c == 0x0e0b) {
		d->code_class = "simple";
		snprintf(d->code_text, sizeof(d->code_text), "I/O error (generic)");
	} else if ((c & 0xfc00) == 0x0400) {
		d->code_class = "simple";
		snprintf(d->code_text, sizeof(d->code_text), "internal unclassified error");
	} else if ((c & 0xfffc) == 0x000c) {
		d->code_class = "generic cache hierarchy";
		snprintf(d->code_text, sizeof(d->code_text), "generic cache hierarchy error, %s",
			 ll_text[ll]);
	} else if ((c & 0xfff0) == 0x0010) {
		d->code_class = "TLB";
		snprintf(d->code_mnemonic, sizeof(d->code_mnemonic), "%sTLB%s_ERR", tt_mn[tt], ll_mn[ll]);
		snprintf(d->code_text, sizeof(d->code_text), "%s TLB, %s", tt_text[tt], ll_text[ll]);
	} else if ((c & 0xff80) == 0x0080) {
		d->code_class = "memory controller";
		memory_controller(d, c, "memory controller");
	} else if ((c & 0xff80) == 0x0280) {
		/* 0000 0010 1MMM CCCC: mcelog's "Memory as cache" (2LM). */
		d->code_class = "memory controller (memory as cache)";
		memory_controller(d, c, "memory as cache");
	} else if ((c & 0xff00) == 0x0100) {
		d->code_class = "cache hierarchy";
		snprintf(d->code_mnemonic, sizeof(d->code_mnemonic), "%sCACHE%s_%s_ERR", tt_mn[tt],
			 ll_mn[ll], rrrr_mn[rrrr] ? rrrr_mn[rrrr] : "?");
		snprintf(d->code_text, sizeof(d->code_text), "%s cache, %s, %s", tt_text[tt],
			 ll_text[ll], or_reserved(rrrr_text[rrrr]));
	} else if ((c & 0xf800) == 0x0800) {
		unsigned int pp = (c >> 9) & 3, t = (c >> 8) & 1, ii = (c >> 2) & 3;

		d->code_class = "bus/interconnect";
		snprintf(d->code_mnemonic, sizeof(d->code_mnemonic), "BUS%s_%s_%s_%s_%s_ERR",
			 ll_mn[ll], pp_mn[pp], rrrr_mn[rrrr] ? rrrr_mn[rrrr] : "?", ii_mn[ii],
			 t ? "TIMEOUT" : "NOTIMEOUT");
		snprintf(d->code_text, sizeof(d->code_text), "bus, %s, %s, %s, %s, %s", ll_text[ll],
			 pp_text[pp], or_reserved(rrrr_text[rrrr]), ii_text[ii],
			 t ? "timed out" : "no timeout");
	} else {
		d->code_class = "unknown";
		snprintf(d->code_text, sizeof(d->code_text), "not an architectural error code");
	}
}

/* ---- status fields --------------------------------------------------- */

static void common_fields(struct decode_mce *d, uint64_t s)
{
	add_bit(d->status, &d->n_status, "VAL", 63, s, "valid error", "no valid error");
	add_bit(d->status, &d->n_status, "OVER", 62, s, "overflow: an earlier error was lost", NULL);
	add_bit(d->status, &d->n_status, "UC", 61, s, "uncorrected", "corrected");
	add_bit(d->status, &d->n_status, "EN", 60, s, "reporting enabled in MCi_CTL",
		"reporting not enabled in MCi_CTL");
	add_bit(d->status, &d->n_status, "MISCV", 59, s, "MCi_MISC valid", "MCi_MISC not valid");
	add_bit(d->status, &d->n_status, "ADDRV", 58, s, "MCi_ADDR valid", "MCi_ADDR not valid");
	add_bit(d->status, &d->n_status, "PCC", 57, s, "processor context corrupt",
		"processor context not corrupt");
}

static void intel_fields(struct decode_mce *d, uint64_t s)
{
	static const char *const threshold[4] = {
		"no tracking", "green: below threshold", "yellow: above threshold", "reserved",
	};

	common_fields(d, s);
	add_bit(d->status, &d->n_status, "S", 56, s, "signaled as #MC", "not signaled (CMCI or polled)");
	add_bit(d->status, &d->n_status, "AR", 55, s, "action required", "no action required");
	add(d->status, &d->n_status, "THRESHOLD", 54, 53, s,
	    s & ST_UC ? "undefined for uncorrected errors" : threshold[bits(s, 54, 53)]);
	add(d->status, &d->n_status, "CEC", 52, 38, s, "corrected error count (with MCG_CMCI_P)");
	add_bit(d->status, &d->n_status, "FWST", 37, s, "firmware updated this status", NULL);
	add(d->status, &d->n_status, "OTHER", 36, 32, s, "other information, model-specific");
	add(d->status, &d->n_status, "MSCOD", 31, 16, s, "model-specific error code");
	add(d->status, &d->n_status, "MCACOD", 15, 0, s, d->code_text);
}

static void amd_fields(struct decode_mce *d, uint64_t s)
{
	common_fields(d, s);
	add_bit(d->status, &d->n_status, "ERR_CORE_ID_VAL", 56, s, "ERR_CORE_ID valid", NULL);
	add_bit(d->status, &d->n_status, "TCC", 55, s, "task context corrupt", NULL);
	add_bit(d->status, &d->n_status, "SYNDV", 53, s, "MCA_SYND valid", NULL);
	add_bit(d->status, &d->n_status, "CECC", 46, s, "corrected ECC error", NULL);
	add_bit(d->status, &d->n_status, "UECC", 45, s, "uncorrected ECC error", NULL);
	add_bit(d->status, &d->n_status, "DEFERRED", 44, s,
		"deferred: uncorrected, not consumed, no #MC", NULL);
	add_bit(d->status, &d->n_status, "POISON", 43, s, "consumed poisoned data", NULL);
	add_bit(d->status, &d->n_status, "SCRUB", 40, s, "found by the scrubber", NULL);
	add(d->status, &d->n_status, "ERR_CORE_ID", 37, 32, s, "core that saw the error");
	add(d->status, &d->n_status, "XEC", 21, 16, s, "extended error code, bank-specific");
	add(d->status, &d->n_status, "ERROR_CODE", 15, 0, s, d->code_text);
}

/* SDM §16.6.3, "UCR Error Classification": UC=1, PCC=0, by S and AR. */
static const char *ucr_class(uint64_t s)
{
	if (!(s & ST_UC) || (s & ST_PCC))
		return NULL;
	switch ((s & (ST_S | ST_AR)) >> 55) {
	case 0: return "UCNA";
	case 2: return "SRAO";
	case 3: return "SRAR";
	default: return "invalid (AR=1, S=0)";
	}
}

/* ---- Linux's grading ------------------------------------------------- */

enum { ANY, IN_KERNEL, IN_USER, IN_KERNEL_RECOV };	/* severity.c's enum context */

struct rule {
	enum decode_mce_sev sev;
	const char *msg;
	uint64_t mask, result;
	uint16_t mcgmask, mcgres;
	bool ser, noser;	/* SER, NOSER: MCG_CAP.SER_P assumed set */
	bool excp;		/* EXCP: only in the #MC handler */
	uint8_t ctx;
	bool model;		/* VFM_STEPPING/BANK_RANGE: depends on the CPU */
};

#define BITCLR(x) .mask = (x), .result = 0
#define BITSET(x) .mask = (x), .result = (x)
#define MASK(x, y) .mask = (x), .result = (y)
#define MCGMASK(x, y) .mcgmask = (x), .mcgres = (y)

/* severities[], in its order: the first match wins. */
static const struct rule rules[] = {
	{ DECODE_SEV_NO, "Invalid", BITCLR(ST_VAL) },
	{ DECODE_SEV_NO, "Not enabled", BITCLR(ST_EN), .excp = true },
	{ DECODE_SEV_PANIC, "Processor context corrupt", BITSET(ST_PCC) },
	{ DECODE_SEV_PANIC, "MCIP not set in MCA handler", MCGMASK(MCG_MCIP, 0), .excp = true },
	{ DECODE_SEV_PANIC, "Neither restart nor error IP", MCGMASK(MCG_RIPV | MCG_EIPV, 0),
	  .excp = true },
	{ DECODE_SEV_PANIC, "In kernel and no restart IP", MCGMASK(MCG_RIPV, 0), .excp = true,
	  .ctx = IN_KERNEL },
	{ DECODE_SEV_PANIC, "In kernel and no restart IP", MCGMASK(MCG_RIPV, 0), .excp = true,
	  .ctx = IN_KERNEL_RECOV },
	{ DECODE_SEV_KEEP, "Corrected error", BITCLR(ST_UC), .noser = true },
	{ DECODE_SEV_AO, "Action optional: memory scrubbing error",
	  MASK(ST_UC | ST_AR | MCACOD_SCRUBMSK, ST_UC | MCACOD_SCRUB), .ser = true },
	{ DECODE_SEV_AO, "Action optional: last level cache writeback error",
	  MASK(ST_UC | ST_AR | MCACOD, ST_UC | MCACOD_L3WB), .ser = true },
	{ DECODE_SEV_AO, "Uncorrected Patrol Scrub Error",
	  MASK(ST_UC | ST_ADDR | 0xffffeff0ULL, ST_ADDR | 0x001000c0ULL), .ser = true, .model = true },
	{ DECODE_SEV_DEFERRED, "Uncorrected no action required", MASK(ST_UC_SAR, ST_UC), .ser = true },
	{ DECODE_SEV_PANIC, "Illegal combination (UCNA with AR=1)",
	  MASK(ST_OVER | ST_UC_SAR, ST_UC | ST_AR), .ser = true },
	{ DECODE_SEV_KEEP, "Non signaled machine check", BITCLR(ST_S), .ser = true },
	{ DECODE_SEV_PANIC, "Action required with lost events", BITSET(ST_OVER | ST_UC_SAR), .ser = true },
	/* CONFIG_MEMORY_FAILURE=y, as distributions build it. */
	{ DECODE_SEV_KEEP, "Action required but unaffected thread is continuable",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR, ST_UC_SAR | ST_ADDR),
	  MCGMASK(MCG_RIPV | MCG_EIPV, MCG_RIPV), .ser = true },
	{ DECODE_SEV_AR, "Action required: data load in error recoverable area of kernel",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_DATA),
	  .ser = true, .ctx = IN_KERNEL_RECOV },
	{ DECODE_SEV_AR, "Action required: data load error in a user process",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_DATA),
	  .ser = true, .ctx = IN_USER },
	{ DECODE_SEV_AR, "Action required: instruction fetch error in a user process",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_INSTR),
	  .ser = true, .ctx = IN_USER },
	{ DECODE_SEV_AR, "Data load error in SEAM non-root mode",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_DATA),
	  MCGMASK(MCG_SEAM_NR, MCG_SEAM_NR), .ser = true, .ctx = IN_KERNEL },
	{ DECODE_SEV_AR, "Instruction fetch error in SEAM non-root mode",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_INSTR),
	  MCGMASK(MCG_SEAM_NR, MCG_SEAM_NR), .ser = true, .ctx = IN_KERNEL },
	{ DECODE_SEV_PANIC, "Data load in unrecoverable area of kernel",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_DATA),
	  .ser = true, .ctx = IN_KERNEL },
	{ DECODE_SEV_PANIC, "Instruction fetch error in kernel",
	  MASK(ST_OVER | ST_UC_SAR | ST_ADDR | MCACOD, ST_UC_SAR | ST_ADDR | MCACOD_INSTR),
	  .ser = true, .ctx = IN_KERNEL },
	{ DECODE_SEV_PANIC, "Action required: unknown MCACOD", MASK(ST_OVER | ST_UC_SAR, ST_UC_SAR),
	  .ser = true },
	{ DECODE_SEV_SOME, "Action optional: unknown MCACOD", MASK(ST_OVER | ST_UC_SAR, ST_UC_S),
	  .ser = true },
	{ DECODE_SEV_SOME, "Action optional with lost events",
	  MASK(ST_OVER | ST_UC_SAR, ST_OVER | ST_UC_S), .ser = true },
	{ DECODE_SEV_PANIC, "Overflowed uncorrected", BITSET(ST_OVER | ST_UC) },
	{ DECODE_SEV_PANIC, "Uncorrected in kernel", BITSET(ST_UC), .ctx = IN_KERNEL },
	{ DECODE_SEV_UC, "Uncorrected", BITSET(ST_UC) },
	{ DECODE_SEV_SOME, "No match", BITSET(0) },
};

/*
 * error_context(): user mode only if mce_gather_info() saved CS, which it
 * does when RIPV or EIPV is set; a kernel fixup counts only when both are.
 */
static int seen_context(enum decode_mce_ctx ctx, uint64_t mcg)
{
	switch (ctx) {
	case DECODE_CTX_USER:
		return mcg & (MCG_RIPV | MCG_EIPV) ? IN_USER : IN_KERNEL;
	case DECODE_CTX_KERNEL_RECOV:
		return (mcg & (MCG_RIPV | MCG_EIPV)) == (MCG_RIPV | MCG_EIPV) ? IN_KERNEL_RECOV : IN_KERNEL;
	default:
		return IN_KERNEL;
	}
}

static enum decode_mce_ctx ctx_enum(int ctx)
{
	return ctx == IN_USER ? DECODE_CTX_USER
	       : ctx == IN_KERNEL_RECOV ? DECODE_CTX_KERNEL_RECOV : DECODE_CTX_KERNEL;
}

static const struct rule *grade_intel(uint64_t s, uint64_t mcg, int ctx, const char **model_note)
{
	bool excp = mcg & MCG_MCIP;	/* graded in the #MC handler, not by polling */
	size_t n = sizeof(rules) / sizeof(rules[0]);

	for (const struct rule *r = rules; r < rules + n - 1; r++) {
		if ((s & r->mask) != r->result || (mcg & r->mcgmask) != r->mcgres)
			continue;
		if (r->noser || (r->ctx && r->ctx != ctx) || (r->excp && !excp))
			continue;
		if (r->model) {
			*model_note = "on Skylake-SP/Cascade Lake (stepping >= 4), banks 13-18, "
				      "Linux grades this signature SRAO: \"Uncorrected Patrol Scrub Error\"";
			continue;
		}
		return r;
	}
	return &rules[n - 1];	/* "No match": always matches, last */
}

/* mce_severity_amd(), assuming SUCCOR and overflow recovery (Zen). */
static enum decode_mce_sev grade_amd(uint64_t s, int ctx, const char **msg)
{
	if (s & ST_PCC) {
		*msg = "Processor Context Corrupt";
		return DECODE_SEV_PANIC;
	}
	if (s & ST_DEFERRED) {
		*msg = "Deferred error (MCI_STATUS_DEFERRED)";
		return DECODE_SEV_DEFERRED;
	}
	if (!(s & ST_UC)) {
		*msg = "UC clear: corrected, logged, no action";
		return DECODE_SEV_KEEP;
	}
	if (ctx == IN_KERNEL) {
		*msg = "Uncorrected unrecoverable error in kernel context";
		return DECODE_SEV_PANIC;
	}
	*msg = "Uncorrected, with MCA recovery, not in kernel context: action required";
	return DECODE_SEV_AR;
}

static void name_grade(struct decode_mce_grade *g, enum decode_vendor v, uint64_t s)
{
	static const char *const linux_names[] = {
		[DECODE_SEV_NO] = "MCE_NO_SEVERITY", [DECODE_SEV_DEFERRED] = "MCE_DEFERRED_SEVERITY",
		[DECODE_SEV_KEEP] = "MCE_KEEP_SEVERITY", [DECODE_SEV_SOME] = "MCE_SOME_SEVERITY",
		[DECODE_SEV_AO] = "MCE_AO_SEVERITY", [DECODE_SEV_UC] = "MCE_UC_SEVERITY",
		[DECODE_SEV_AR] = "MCE_AR_SEVERITY", [DECODE_SEV_PANIC] = "MCE_PANIC_SEVERITY",
	};
	static const char *const actions[] = {
		[DECODE_SEV_NO] = "ignored",
		[DECODE_SEV_DEFERRED] = "logged; memory_failure() takes the page offline in the background",
		[DECODE_SEV_KEEP] = "left to the CMCI/poll handler: logged",
		[DECODE_SEV_SOME] = "logged, no action",
		[DECODE_SEV_AO] = "logged; memory_failure() later (SIGBUS BUS_MCEERR_AO to tasks that ask)",
		[DECODE_SEV_UC] = "logged; the interrupted task is killed if there is no restart IP",
		[DECODE_SEV_AR] = ("memory_failure() now: the consuming task gets SIGBUS BUS_MCEERR_AR, "
				   "or the kernel access takes its fixup"),
		[DECODE_SEV_PANIC] = "panic",
	};

	g->linux_name = linux_names[g->sev];
	g->action = actions[g->sev];
	switch (g->sev) {
	case DECODE_SEV_NO: g->name = "none"; break;
	case DECODE_SEV_DEFERRED:
		g->name = v == DECODE_VENDOR_AMD ? "deferred" : "UCNA";
		if (v == DECODE_VENDOR_INTEL)
			g->linux_name = "MCE_UCNA_SEVERITY";
		break;
	case DECODE_SEV_KEEP: g->name = s & ST_UC ? "keep" : "corrected"; break;
	case DECODE_SEV_SOME: g->name = "some"; break;
	case DECODE_SEV_AO: g->name = "SRAO"; break;
	case DECODE_SEV_UC: g->name = "UC"; break;
	case DECODE_SEV_AR: g->name = v == DECODE_VENDOR_AMD ? "AR" : "SRAR"; break;
	case DECODE_SEV_PANIC: g->name = "panic"; break;
	}
}

/* ---- the whole thing -------------------------------------------------- */

int decode_mce(const struct decode_mce_in *in, struct decode_mce *d)
{
	static const char *const modes[8] = {
		"segment offset", "linear address", "physical address", "memory address",
		"reserved", "reserved", "reserved", "generic",
	};
	uint64_t s = in->status, mcg;

	if (in->vendor != DECODE_VENDOR_INTEL && in->vendor != DECODE_VENDOR_AMD)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->in = *in;
	d->mcacod = (uint16_t)(s & 0xffff);
	decode_code(d);
	if (in->vendor == DECODE_VENDOR_INTEL) {
		intel_fields(d, s);
		d->ucr_class = ucr_class(s);
	} else {
		amd_fields(d, s);
	}

	if (in->has_misc) {
		unsigned int lsb = (unsigned int)bits(in->misc, 5, 0);

		add(d->misc, &d->n_misc, "LSB", 5, 0, in->misc, "lowest valid bit of MCi_ADDR");
		add(d->misc, &d->n_misc, "MODE", 8, 6, in->misc, modes[bits(in->misc, 8, 6)]);
		d->addr_granule = 1ULL << lsb;
	}

	/*
	 * Without MCG_STATUS, grade it as it most likely came: a signaled
	 * error in the #MC handler with both IPs valid, anything else polled.
	 */
	mcg = in->mcg_status;
	if (!in->has_mcg_status) {
		mcg = (s & ST_UC) && (in->vendor == DECODE_VENDOR_AMD || (s & ST_S))
		      ? MCG_RIPV | MCG_EIPV | MCG_MCIP : 0;
		d->mcg_assumed = true;
	}
	d->mcg_status = mcg;
	add_bit(d->mcg, &d->n_mcg, "RIPV", 0, mcg, "restart IP valid", "restart IP not valid");
	add_bit(d->mcg, &d->n_mcg, "EIPV", 1, mcg, "error IP valid", "error IP not valid");
	add_bit(d->mcg, &d->n_mcg, "MCIP", 2, mcg, "machine check in progress",
		"no machine check in progress");
	if (in->vendor == DECODE_VENDOR_INTEL) {
		add_bit(d->mcg, &d->n_mcg, "LMCE_S", 3, mcg, "local machine check", NULL);
		add_bit(d->mcg, &d->n_mcg, "SEAM_NR", 12, mcg, "in SEAM non-root mode (TDX)", NULL);
	}

	for (int c = 0; c < DECODE_CTX_COUNT; c++) {
		struct decode_mce_grade *g = &d->grades[c];
		int seen = seen_context((enum decode_mce_ctx)c, mcg);

		g->ctx = (enum decode_mce_ctx)c;
		g->seen = ctx_enum(seen);
		if (in->vendor == DECODE_VENDOR_INTEL) {
			const struct rule *r = grade_intel(s, mcg, seen, &d->grade_note);

			g->sev = r->sev;
			g->rule = r->msg;
		} else {
			g->sev = grade_amd(s, seen, &g->rule);
		}
		name_grade(g, in->vendor, s);
	}
	return 0;
}
