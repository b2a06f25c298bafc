/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * `vmras decode`: the numbers operators paste from logs, taken apart.
 * Decoders (decode_mce.c, decode_esr.c, decode_cper.c) only fill structs:
 * no printing, no exit, 0 or -errno. Printers are in decode_print.c.
 */
#ifndef VMRAS_TOOL_DECODE_H
#define VMRAS_TOOL_DECODE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DECODE_MAX_FIELDS 32

/* One named bit field of a register, as its specification names it. */
struct decode_field {
	const char *name;	/* "VAL", "MCACOD", "DFSC" (JSON: lower case) */
	uint8_t hi, lo;		/* bits hi:lo */
	uint64_t value;
	const char *meaning;	/* what this value says here, or NULL */
};

/*
 * Hexadecimal register values as logs print them: "bd80000000000134" or
 * "0xBD80000000000134", 1 to 16 digits, blanks around allowed.
 */
int decode_parse_hex64(const char *s, uint64_t *out);

/* ---- x86 machine checks ---------------------------------------------- */

enum decode_vendor { DECODE_VENDOR_INTEL, DECODE_VENDOR_AMD };

/* Linux's enum severity_level (arch/x86/kernel/cpu/mce/internal.h), in order. */
enum decode_mce_sev {
	DECODE_SEV_NO,
	DECODE_SEV_DEFERRED,	/* MCE_UCNA_SEVERITY is the same value */
	DECODE_SEV_KEEP,
	DECODE_SEV_SOME,
	DECODE_SEV_AO,
	DECODE_SEV_UC,
	DECODE_SEV_AR,
	DECODE_SEV_PANIC,
};

/* Where the machine check was taken: severity.c's enum context. */
enum decode_mce_ctx {
	DECODE_CTX_USER,		/* IN_USER */
	DECODE_CTX_KERNEL_RECOV,	/* IN_KERNEL_RECOV: a fixup (copy_mc, uaccess) */
	DECODE_CTX_KERNEL,		/* IN_KERNEL */
	DECODE_CTX_COUNT,
};

struct decode_mce_grade {
	enum decode_mce_ctx ctx;	/* where the error was taken */
	enum decode_mce_ctx seen;	/* what Linux's error_context() concludes */
	enum decode_mce_sev sev;
	const char *name;	/* "SRAR", "SRAO", "UCNA", "corrected", "panic", ... */
	const char *linux_name;	/* "MCE_AR_SEVERITY", ... */
	const char *rule;	/* the severity.c rule that matched (its message) */
	const char *action;	/* what Linux then does, in short */
};

struct decode_mce_in {
	enum decode_vendor vendor;
	uint64_t status, addr, misc, mcg_status;
	bool has_addr, has_misc, has_mcg_status;
	int bank, cpu;		/* -1: not known */
};

struct decode_mce {
	struct decode_mce_in in;
	struct decode_field status[DECODE_MAX_FIELDS];
	int n_status;
	/* The MCA error code, bits 15:0 (SDM §16.9; AMD APM vol 2 §9.3.2.3). */
	uint16_t mcacod;
	const char *code_class;	/* "simple", "cache hierarchy", "TLB", ... */
	char code_mnemonic[48];	/* the SDM's mnemonic, "" when it has none */
	char code_text[112];
	bool code_filtered;	/* bit 12, F: corrected errors are filtered */
	const char *ucr_class;	/* SDM §16.6.3 for UC=1 PCC=0, else NULL */
	/* MCi_MISC bits 5:0 and 8:6, when given. */
	struct decode_field misc[2];
	int n_misc;
	uint64_t addr_granule;	/* 1 << LSB when MISC given, else 0 */
	/* MCG_STATUS: given, or assumed (mcg_assumed). */
	uint64_t mcg_status;
	bool mcg_assumed;
	struct decode_field mcg[5];
	int n_mcg;
	struct decode_mce_grade grades[DECODE_CTX_COUNT];
	const char *grade_note;	/* a rule that depends on the CPU model, or NULL */
};

int decode_mce(const struct decode_mce_in *in, struct decode_mce *out);

/*
 * A kernel log pasted whole: "CPU 0: Machine Check Exception: 7 Bank 9:
 * bd80000000000134" (arch/x86/kernel/cpu/mce/core.c __print_mce()), with
 * any "[...] mce: [Hardware Error]: " prefix, and the "TSC ... ADDR ...
 * MISC ..." line after it if pasted too. Fills status, mcg_status, bank,
 * cpu, addr and misc; leaves vendor alone. -ENOENT: no such line.
 */
int decode_mce_parse_log(const char *text, struct decode_mce_in *in);

/* ---- AArch64 ESR_ELx --------------------------------------------------- */

enum decode_esr_kind { DECODE_ESR_OTHER, DECODE_ESR_DABT, DECODE_ESR_IABT, DECODE_ESR_SERROR };

struct decode_esr {
	uint64_t esr;
	unsigned int ec, il;
	uint32_t iss, iss2;
	const char *ec_name;
	enum decode_esr_kind kind;
	struct decode_field fields[DECODE_MAX_FIELDS];	/* EC, IL, ISS, ISS2, then the ISS's */
	int n_fields;
};

/* -EINVAL when bits 63:56, RES0 in every ESR_ELx, are set. */
int decode_esr(uint64_t esr, struct decode_esr *out);

/* ---- CPER: ACPI Generic Error Status Block or UEFI record ------------- */

#define DECODE_CPER_MAX_INPUT (1u << 20)
#define DECODE_CPER_MAX_SECTIONS 128
#define DECODE_MEM_ERR_LEN 80		/* UEFI N.2.5, UEFI >= 2.3 */
#define DECODE_MEM_ERR_OLD_LEN 73	/* UEFI 2.1/2.2: ends at Memory Error Type */

struct decode_guid {
	uint8_t b[16];		/* as stored: EFI_GUID, first 3 fields little-endian */
};

/* UEFI N.2.5 Memory Error Section. */
struct decode_mem_err {
	uint64_t validation, error_status, physical_addr, physical_addr_mask;
	uint16_t node, card, module, bank, device, row, column, bit_pos;
	uint64_t requestor_id, responder_id, target_id;
	uint8_t error_type, extended;
	uint16_t rank, card_handle, module_handle;
	bool old_layout;	/* 73 bytes: nothing after error_type */
	uint64_t granularity;	/* ~mask + 1 when the mask is valid, else 0 */
};

struct decode_cper_section {
	struct decode_guid type;
	const char *type_name;	/* a known section type, or NULL */
	uint32_t severity;
	uint16_t revision;
	uint8_t validation;
	uint32_t flags;		/* a Generic Error Data Entry's are 8 bits */
	struct decode_guid fru_id;
	char fru_text[21];
	bool has_timestamp;	/* GEDE revision >= 0x300 */
	uint64_t timestamp;
	uint32_t header_offset;	/* of the entry or descriptor in the input */
	uint32_t offset, length;	/* of the section's data in the input */
	bool is_mem;
	struct decode_mem_err mem;
};

enum decode_cper_kind { DECODE_CPER_ESTATUS, DECODE_CPER_RECORD };

struct decode_cper {
	enum decode_cper_kind kind;
	size_t input_len;
	uint32_t error_severity;	/* block's or record's */
	/* ACPI Generic Error Status Block */
	uint32_t block_status, raw_data_offset, raw_data_length, data_length;
	/* UEFI record header (N.2.1) */
	uint16_t revision, section_count;
	uint32_t signature_end, validation, record_length, flags;
	uint64_t timestamp, record_id, persistence;
	struct decode_guid platform_id, partition_id, creator_id, notification_type;
	const char *notification_name;
	size_t used;		/* bytes the block or record covers */
	unsigned int n_sections;
	struct decode_cper_section sections[DECODE_CPER_MAX_SECTIONS];
	char note[160];		/* something odd but decodable, or "" */
	char error[160];	/* why decode_cper() failed */
};

/* buf need not be aligned. -EINVAL (see out->error), -E2BIG over 1 MiB. */
int decode_cper(const void *buf, size_t len, struct decode_cper *out);

/* ---- names ----------------------------------------------------------- */

void decode_guid_str(const struct decode_guid *g, char buf[37]);
const char *decode_cper_severity_name(uint32_t sev);
const char *decode_mem_err_type_name(uint8_t type);

/* ---- printers (decode_print.c) --------------------------------------- */

void decode_print_mce(FILE *f, const struct decode_mce *d);
void decode_print_esr(FILE *f, const struct decode_esr *d);
void decode_print_cper(FILE *f, const struct decode_cper *d, const uint8_t *buf);
json_object *decode_mce_json(const struct decode_mce *d);
json_object *decode_esr_json(const struct decode_esr *d);
json_object *decode_cper_json(const struct decode_cper *d, const uint8_t *buf);

#endif
