// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * `vmras decode`'s output: what the decoders filled in, as text for a
 * person and as one JSON object per decode for a program. JSON keys are
 * lower_snake_case; a number is a JSON number when it fits in int64, and a
 * 64-bit register or address is also "<key>_hex", "0x...".
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

#define HEX_LIMIT 4096	/* bytes of an undecoded section shown as hex */

static const char *const mem_valid[22] = {
	"error status", "physical address", "physical address mask", "node", "card", "module",
	"bank", "device", "row", "column", "bit position", "requestor id", "responder id",
	"target id", "memory error type", "rank", "card handle", "module handle",
	"extended row bits", "bank group", "bank address", "chip id",
};
static const char *const section_flags[8] = {
	"primary", "containment warning", "reset", "error threshold exceeded",
	"resource not accessible", "latent error", "propagated", "overflow",
};
static const char *const record_flags[3] = { "recovered", "previous error", "simulated" };
static const char *const record_valid[3] = { "platform id", "timestamp", "partition id" };
static const char *const entry_valid[3] = { "FRU id", "FRU text", "timestamp" };
static const char *const block_status[4] = {
	"uncorrectable valid", "correctable valid", "multiple uncorrectable", "multiple correctable",
};

/* UEFI N.2.1 "Error Status", bits 15:8. */
static const char *error_status_type(unsigned int t)
{
	switch (t) {
	case 1: return "ERR_INTERNAL";
	case 4: return "ERR_MEM";
	case 5: return "ERR_TLB";
	case 6: return "ERR_CACHE";
	case 7: return "ERR_FUNCTION";
	case 8: return "ERR_SELFTEST";
	case 9: return "ERR_FLOW";
	case 16: return "ERR_BUS";
	case 17: return "ERR_MAP";
	case 18: return "ERR_IMPROPER";
	case 19: return "ERR_UNIMPL";
	case 20: return "ERR_LOL";
	case 21: return "ERR_RESPONSE";
	case 22: return "ERR_PARITY";
	case 23: return "ERR_PROTOCOL";
	case 24: return "ERR_ERROR";
	case 25: return "ERR_TIMEOUT";
	case 26: return "ERR_POISONED";
	default: return "reserved";
	}
}

static const char *const error_status_bits[7] = {
	"address", "control", "data", "responder", "requester", "first error", "overflow",
};

static void human_size(uint64_t v, char *buf, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	int u = 0;

	while (v >= 1024 && !(v & 1023) && u < 6) {
		v >>= 10;
		u++;
	}
	snprintf(buf, n, "%" PRIu64 " %s", v, units[u]);
}

/* UEFI N.2.1 timestamp: BCD seconds, minutes, hours, flags, day, month, year, century. */
static bool bcd_time(uint64_t ts, char *buf, size_t n)
{
	int v[8];

	for (int i = 0; i < 8; i++) {
		unsigned int b = (ts >> (8 * i)) & 0xff;

		if (i == 3)
			continue;
		if ((b >> 4) > 9 || (b & 15) > 9)
			return false;
		v[i] = (int)((b >> 4) * 10 + (b & 15));
	}
	snprintf(buf, n, "%02d%02d-%02d-%02d %02d:%02d:%02d%s", v[7], v[6], v[5], v[4], v[2], v[1],
		 v[0], (ts >> 24) & 1 ? " (precise)" : "");
	return true;
}

static void key_of(const char *name, char *buf, size_t n)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < n; i++)
		buf[i] = name[i] == ' ' || name[i] == '/' || name[i] == '-' ? '_'
			 : (char)tolower((unsigned char)name[i]);
	buf[i] = 0;
}

/* ---- text ------------------------------------------------------------- */

/* Codes and whole registers in hex, counts, levels and register numbers in decimal. */
static bool show_hex(const struct decode_field *x)
{
	size_t n = strlen(x->name);

	return x->hi - x->lo >= 15 || (n >= 2 && !strcmp(x->name + n - 2, "SC")) ||
	       (n >= 2 && !strcmp(x->name + n - 2, "EC")) || !strcmp(x->name, "OTHER");
}

static void print_fields(FILE *f, const struct decode_field *fs, int n)
{
	for (int i = 0; i < n; i++) {
		const struct decode_field *x = &fs[i];
		char bits[8], val[24];

		if (x->hi == x->lo)
			snprintf(bits, sizeof(bits), "%u", x->hi);
		else
			snprintf(bits, sizeof(bits), "%u:%u", x->hi, x->lo);
		if (show_hex(x))
			snprintf(val, sizeof(val), "0x%" PRIx64, x->value);
		else
			snprintf(val, sizeof(val), "%" PRIu64, x->value);
		fprintf(f, "  %-6s %-16s %-10s %s\n", bits, x->name, val, x->meaning ? x->meaning : "");
	}
}

static const char *ctx_name(enum decode_mce_ctx c)
{
	return c == DECODE_CTX_USER ? "user mode"
	       : c == DECODE_CTX_KERNEL_RECOV ? "kernel, with fixup" : "kernel, no fixup";
}

void decode_print_mce(FILE *f, const struct decode_mce *d)
{
	bool amd = d->in.vendor == DECODE_VENDOR_AMD;
	char size[32];

	fprintf(f, "MCi_STATUS 0x%016" PRIx64 " (%s", d->in.status, amd ? "AMD" : "Intel");
	if (d->in.bank >= 0)
		fprintf(f, ", bank %d", d->in.bank);
	if (d->in.cpu >= 0)
		fprintf(f, ", CPU %d", d->in.cpu);
	fprintf(f, ")\n");
	print_fields(f, d->status, d->n_status);
	fprintf(f, "MCA error code 0x%04x: %s%s%s, %s%s\n", d->mcacod, d->code_class,
		d->code_mnemonic[0] ? ", " : "", d->code_mnemonic, d->code_text,
		d->code_filtered ? " (F: corrected errors filtered)" : "");
	if (d->ucr_class)
		fprintf(f, "UCR class (SDM 16.6.3): %s\n", d->ucr_class);
	if (d->in.has_addr)
		fprintf(f, "MCi_ADDR 0x%016" PRIx64 "\n", d->in.addr);
	if (d->in.has_misc) {
		fprintf(f, "MCi_MISC 0x%016" PRIx64 "\n", d->in.misc);
		print_fields(f, d->misc, d->n_misc);
		human_size(d->addr_granule, size, sizeof(size));
		if (d->in.has_addr)
			fprintf(f, "  the error is in the %s at 0x%" PRIx64 "\n", size,
				d->in.addr & ~(d->addr_granule - 1));
		else
			fprintf(f, "  MCi_ADDR is valid from bit %" PRIu64 ": a %s granule\n",
				d->misc[0].value, size);
	}
	fprintf(f, "MCG_STATUS 0x%" PRIx64 "%s\n", d->mcg_status,
		d->mcg_assumed ? " (not given: assumed as Linux most likely saw it)" : "");
	print_fields(f, d->mcg, d->n_mcg);
	fprintf(f, "Linux's grade (arch/x86/kernel/cpu/mce/severity.c, %s):\n",
		amd ? "mce_severity_amd(), with SUCCOR and overflow recovery"
		    : "severities[], with MCG_SER_P and CONFIG_MEMORY_FAILURE");
	for (int c = 0; c < DECODE_CTX_COUNT; c++) {
		const struct decode_mce_grade *g = &d->grades[c];

		fprintf(f, "  %-19s %-10s \"%s\"", ctx_name(g->ctx), g->name, g->rule);
		if (g->seen != g->ctx)
			fprintf(f, " (Linux sees %s: %s)", ctx_name(g->seen),
				g->ctx == DECODE_CTX_USER ? "RIPV and EIPV clear, CS not saved"
							  : "a fixup needs RIPV and EIPV");
		fprintf(f, "\n  %-19s %-10s %s: %s\n", "", "", g->linux_name, g->action);
	}
	if (d->grade_note)
		fprintf(f, "  note: %s\n", d->grade_note);
}

void decode_print_esr(FILE *f, const struct decode_esr *d)
{
	fprintf(f, "ESR_ELx 0x%016" PRIx64 ": EC 0x%02x %s, IL %u, ISS 0x%07x, ISS2 0x%06x\n", d->esr,
		d->ec, d->ec_name, d->il, d->iss, d->iss2);
	print_fields(f, d->fields, d->n_fields);
}

static void print_names(FILE *f, uint64_t v, const char *const *names, unsigned int n)
{
	const char *sep = ": ";

	for (unsigned int i = 0; i < n; i++)
		if (v & (1ULL << i) && names[i]) {
			fprintf(f, "%s%s", sep, names[i]);
			sep = ", ";
		}
	fputc('\n', f);
}

static void print_hex(FILE *f, const uint8_t *p, uint32_t len)
{
	uint32_t n = len > HEX_LIMIT ? HEX_LIMIT : len;

	for (uint32_t i = 0; i < n; i += 16) {
		fprintf(f, "    %04x:", i);
		for (uint32_t j = i; j < i + 16 && j < n; j++)
			fprintf(f, " %02x", p[j]);
		fputc('\n', f);
	}
	if (n < len)
		fprintf(f, "    ... %u more bytes\n", len - n);
}

static void print_mem(FILE *f, const struct decode_mem_err *m)
{
	uint64_t v = m->validation;
	char size[32];

#define VALID(bit) (v & (1ULL << (bit)) ? "" : " (not valid)")
	fprintf(f, "  Memory Error Section (UEFI N.2.5%s)\n",
		m->old_layout ? ", the 73-byte UEFI 2.1/2.2 layout" : "");
	fprintf(f, "    validation bits   0x%016" PRIx64, v);
	print_names(f, v, mem_valid, 22);
	fprintf(f, "    error status      0x%016" PRIx64 "%s", m->error_status, VALID(0));
	if (v & 1) {
		fprintf(f, ": %s", error_status_type((m->error_status >> 8) & 0xff));
		for (int i = 0; i < 7; i++)
			if (m->error_status & (1ULL << (16 + i)))
				fprintf(f, ", %s", error_status_bits[i]);
	}
	fputc('\n', f);
	fprintf(f, "    physical address  0x%016" PRIx64 "%s\n", m->physical_addr, VALID(1));
	fprintf(f, "    address mask      0x%016" PRIx64 "%s", m->physical_addr_mask, VALID(2));
	if (m->granularity) {
		human_size(m->granularity, size, sizeof(size));
		fprintf(f, ": a %s granule, 0x%" PRIx64 "-0x%" PRIx64, size,
			m->physical_addr & ~(m->granularity - 1),
			(m->physical_addr & ~(m->granularity - 1)) + m->granularity - 1);
	}
	fputc('\n', f);
	fprintf(f, "    node %u%s, card %u%s, module %u%s, device %u%s\n", m->node, VALID(3), m->card,
		VALID(4), m->module, VALID(5), m->device, VALID(7));
	fprintf(f, "    bank %u%s", m->bank, VALID(6));
	if (v & (3ULL << 19))
		fprintf(f, ", bank group %u%s, bank address %u%s", m->bank >> 8, VALID(19),
			m->bank & 0xff, VALID(20));
	fprintf(f, "\n    row %u%s", m->row, VALID(8));
	if (v & (1ULL << 18))
		fprintf(f, ", with extended bits 17:16: %u", m->row | (m->extended & 3u) << 16);
	fprintf(f, ", column %u%s, bit position %u%s\n", m->column, VALID(9), m->bit_pos, VALID(10));
	fprintf(f, "    requestor id 0x%" PRIx64 "%s, responder id 0x%" PRIx64 "%s, target id 0x%" PRIx64
		"%s\n", m->requestor_id, VALID(11), m->responder_id, VALID(12), m->target_id, VALID(13));
	fprintf(f, "    memory error type %u (%s)%s\n", m->error_type,
		decode_mem_err_type_name(m->error_type), VALID(14));
	if (m->old_layout)
		return;
	fprintf(f, "    extended 0x%02x, chip id %u%s, rank %u%s\n", m->extended, m->extended >> 5,
		VALID(21), m->rank, VALID(15));
	fprintf(f, "    card handle 0x%04x%s, module handle 0x%04x%s\n", m->card_handle, VALID(16),
		m->module_handle, VALID(17));
#undef VALID
}

static void print_section(FILE *f, const struct decode_cper *d, const struct decode_cper_section *s,
			  unsigned int i, const uint8_t *buf)
{
	bool entry = d->kind == DECODE_CPER_ESTATUS;
	char guid[37], t[40];

	decode_guid_str(&s->type, guid);
	fprintf(f, "%s %u at offset %u: %s (%s)\n", entry ? "Data entry" : "Section", i + 1,
		s->header_offset, s->type_name ? s->type_name : "unknown section type", guid);
	fprintf(f, "  severity          %u (%s)\n", s->severity, decode_cper_severity_name(s->severity));
	fprintf(f, "  revision          0x%04x\n", s->revision);
	fprintf(f, "  validation bits   0x%02x", s->validation);
	print_names(f, s->validation, entry_valid, entry ? 3 : 2);
	fprintf(f, "  flags             0x%0*x", entry ? 2 : 8, s->flags);
	print_names(f, s->flags, section_flags, 8);
	decode_guid_str(&s->fru_id, guid);
	fprintf(f, "  FRU id            %s\n", guid);
	fprintf(f, "  FRU text          \"%s\"\n", s->fru_text);
	if (s->has_timestamp) {
		bool text = s->timestamp && bcd_time(s->timestamp, t, sizeof(t));

		fprintf(f, "  timestamp         0x%016" PRIx64 "%s%s\n", s->timestamp,
			text ? " " : "", text ? t : "");
	}
	fprintf(f, "  data              %u bytes at offset %u\n", s->length, s->offset);
	if (s->is_mem)
		print_mem(f, &s->mem);
	else
		print_hex(f, buf + s->offset, s->length);
}

void decode_print_cper(FILE *f, const struct decode_cper *d, const uint8_t *buf)
{
	char guid[37], t[40];

	if (d->kind == DECODE_CPER_ESTATUS) {
		fprintf(f, "ACPI Generic Error Status Block (%zu bytes)\n", d->input_len);
		fprintf(f, "  block status      0x%08x", d->block_status);
		print_names(f, d->block_status, block_status, 4);
		fprintf(f, "  entry count       %u (block status bits 13:4)\n",
			(d->block_status >> 4) & 0x3ff);
		fprintf(f, "  raw data          %u bytes at offset %u\n", d->raw_data_length,
			d->raw_data_offset);
		fprintf(f, "  data length       %u\n", d->data_length);
	} else {
		fprintf(f, "UEFI CPER record (%zu bytes)\n", d->input_len);
		fprintf(f, "  revision          0x%04x\n", d->revision);
		fprintf(f, "  section count     %u\n", d->section_count);
		fprintf(f, "  validation bits   0x%08x", d->validation);
		print_names(f, d->validation, record_valid, 3);
		fprintf(f, "  record length     %u\n", d->record_length);
		fprintf(f, "  timestamp         0x%016" PRIx64 " %s\n", d->timestamp,
			bcd_time(d->timestamp, t, sizeof(t)) ? t : "(not BCD)");
		decode_guid_str(&d->platform_id, guid);
		fprintf(f, "  platform id       %s\n", guid);
		decode_guid_str(&d->partition_id, guid);
		fprintf(f, "  partition id      %s\n", guid);
		decode_guid_str(&d->creator_id, guid);
		fprintf(f, "  creator id        %s\n", guid);
		decode_guid_str(&d->notification_type, guid);
		fprintf(f, "  notification type %s (%s)\n", guid,
			d->notification_name ? d->notification_name : "unknown");
		fprintf(f, "  record id         0x%016" PRIx64 "\n", d->record_id);
		fprintf(f, "  flags             0x%08x", d->flags);
		print_names(f, d->flags, record_flags, 3);
		fprintf(f, "  persistence info  0x%016" PRIx64 "\n", d->persistence);
	}
	fprintf(f, "  error severity    %u (%s)\n", d->error_severity,
		decode_cper_severity_name(d->error_severity));
	if (d->note[0])
		fprintf(f, "  note: %s\n", d->note);
	for (unsigned int i = 0; i < d->n_sections; i++)
		print_section(f, d, &d->sections[i], i, buf);
}

/* ---- JSON ------------------------------------------------------------- */

static void jadd(json_object *o, const char *key, json_object *v)
{
	json_object_object_add(o, key, v);
}

static json_object *jhex(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	return json_object_new_string(buf);
}

/* "key": number when it fits in int64, and "key_hex": "0x...". */
static void jreg(json_object *o, const char *key, uint64_t v)
{
	char hexkey[64];

	if (v <= INT64_MAX)
		jadd(o, key, json_object_new_int64((int64_t)v));
	snprintf(hexkey, sizeof(hexkey), "%s_hex", key);
	jadd(o, hexkey, jhex(v));
}

static void jint(json_object *o, const char *key, int64_t v)
{
	jadd(o, key, json_object_new_int64(v));
}

static void jstr(json_object *o, const char *key, const char *s)
{
	jadd(o, key, s ? json_object_new_string(s) : NULL);
}

static void jguid(json_object *o, const char *key, const struct decode_guid *g)
{
	char buf[37];

	decode_guid_str(g, buf);
	jstr(o, key, buf);
}

static json_object *jfields(const struct decode_field *fs, int n)
{
	json_object *o = json_object_new_object();

	for (int i = 0; i < n; i++) {
		json_object *x = json_object_new_object();
		char key[32], bits[8];

		if (fs[i].hi == fs[i].lo)
			snprintf(bits, sizeof(bits), "%u", fs[i].hi);
		else
			snprintf(bits, sizeof(bits), "%u:%u", fs[i].hi, fs[i].lo);
		jstr(x, "bits", bits);
		jint(x, "value", (int64_t)fs[i].value);	/* at most 32 bits wide */
		jstr(x, "meaning", fs[i].meaning);
		key_of(fs[i].name, key, sizeof(key));
		jadd(o, key, x);
	}
	return o;
}

static json_object *jnames(uint64_t v, const char *const *names, unsigned int n)
{
	json_object *a = json_object_new_array();
	char key[48];

	for (unsigned int i = 0; i < n; i++)
		if (v & (1ULL << i) && names[i]) {
			key_of(names[i], key, sizeof(key));
			json_object_array_add(a, json_object_new_string(key));
		}
	return a;
}

json_object *decode_mce_json(const struct decode_mce *d)
{
	static const char *const ctx_keys[] = { "user", "kernel_recoverable", "kernel" };
	json_object *o = json_object_new_object(), *code, *sev;

	jstr(o, "type", "mce");
	jstr(o, "vendor", d->in.vendor == DECODE_VENDOR_AMD ? "amd" : "intel");
	if (d->in.bank >= 0)
		jint(o, "bank", d->in.bank);
	if (d->in.cpu >= 0)
		jint(o, "cpu", d->in.cpu);
	jreg(o, "status", d->in.status);
	jadd(o, "status_fields", jfields(d->status, d->n_status));
	code = json_object_new_object();
	jreg(code, "value", d->mcacod);
	jstr(code, "class", d->code_class);
	jstr(code, "mnemonic", d->code_mnemonic[0] ? d->code_mnemonic : NULL);
	jstr(code, "description", d->code_text);
	jadd(code, "filtered", json_object_new_boolean(d->code_filtered));
	jadd(o, "mca_error_code", code);
	jstr(o, "ucr_class", d->ucr_class);
	if (d->in.has_addr)
		jreg(o, "addr", d->in.addr);
	if (d->in.has_misc) {
		jreg(o, "misc", d->in.misc);
		jadd(o, "misc_fields", jfields(d->misc, d->n_misc));
		jreg(o, "addr_granule", d->addr_granule);
	}
	jreg(o, "mcg_status", d->mcg_status);
	jadd(o, "mcg_status_assumed", json_object_new_boolean(d->mcg_assumed));
	jadd(o, "mcg_status_fields", jfields(d->mcg, d->n_mcg));
	sev = json_object_new_object();
	for (int c = 0; c < DECODE_CTX_COUNT; c++) {
		const struct decode_mce_grade *g = &d->grades[c];
		json_object *x = json_object_new_object();

		jstr(x, "grade", g->name);
		jstr(x, "linux_severity", g->linux_name);
		jstr(x, "rule", g->rule);
		jstr(x, "context_seen", ctx_keys[g->seen]);
		jstr(x, "action", g->action);
		jadd(sev, ctx_keys[c], x);
	}
	jadd(o, "severity", sev);
	if (d->grade_note)
		jstr(o, "severity_note", d->grade_note);
	return o;
}

json_object *decode_esr_json(const struct decode_esr *d)
{
	static const char *const kinds[] = { "other", "data_abort", "instruction_abort", "serror" };
	json_object *o = json_object_new_object();

	jstr(o, "type", "esr");
	jreg(o, "esr", d->esr);
	jint(o, "ec", d->ec);
	jstr(o, "ec_name", d->ec_name);
	jstr(o, "class", kinds[d->kind]);
	jint(o, "il", d->il);
	jreg(o, "iss", d->iss);
	jreg(o, "iss2", d->iss2);
	jadd(o, "fields", jfields(d->fields, d->n_fields));
	return o;
}

static json_object *jmem(const struct decode_mem_err *m)
{
	json_object *o = json_object_new_object();

	jreg(o, "validation_bits", m->validation);
	jadd(o, "valid_fields", jnames(m->validation, mem_valid, 22));
	jadd(o, "old_layout", json_object_new_boolean(m->old_layout));
	jreg(o, "error_status", m->error_status);
	jstr(o, "error_status_type", error_status_type((m->error_status >> 8) & 0xff));
	jadd(o, "error_status_flags", jnames(m->error_status >> 16, error_status_bits, 7));
	jreg(o, "physical_address", m->physical_addr);
	jreg(o, "physical_address_mask", m->physical_addr_mask);
	jreg(o, "granularity", m->granularity);
	jint(o, "node", m->node);
	jint(o, "card", m->card);
	jint(o, "module", m->module);
	jint(o, "bank", m->bank);
	jint(o, "bank_group", m->bank >> 8);
	jint(o, "bank_address", m->bank & 0xff);
	jint(o, "device", m->device);
	jint(o, "row", m->row | (m->validation & (1ULL << 18) ? (m->extended & 3u) << 16 : 0));
	jint(o, "column", m->column);
	jint(o, "bit_position", m->bit_pos);
	jreg(o, "requestor_id", m->requestor_id);
	jreg(o, "responder_id", m->responder_id);
	jreg(o, "target_id", m->target_id);
	jint(o, "memory_error_type", m->error_type);
	jstr(o, "memory_error_type_name", decode_mem_err_type_name(m->error_type));
	jint(o, "extended", m->extended);
	jint(o, "chip_id", m->extended >> 5);
	jint(o, "rank", m->rank);
	jint(o, "card_handle", m->card_handle);
	jint(o, "module_handle", m->module_handle);
	return o;
}

static json_object *jhexdump(const uint8_t *p, uint32_t len)
{
	uint32_t n = len > HEX_LIMIT ? HEX_LIMIT : len;
	char *s = malloc(2 * (size_t)n + 1);
	json_object *o;

	if (!s)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = 0;
	o = json_object_new_string(s);
	free(s);
	return o;
}

json_object *decode_cper_json(const struct decode_cper *d, const uint8_t *buf)
{
	bool entry = d->kind == DECODE_CPER_ESTATUS;
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	char t[40];

	jstr(o, "type", "cper");
	jstr(o, "container", entry ? "acpi_generic_error_status_block" : "uefi_record");
	jint(o, "input_length", (int64_t)d->input_len);
	if (entry) {
		jint(o, "block_status", d->block_status);
		jadd(o, "block_status_flags", jnames(d->block_status, block_status, 4));
		jint(o, "error_data_entry_count", (d->block_status >> 4) & 0x3ff);
		jint(o, "raw_data_offset", d->raw_data_offset);
		jint(o, "raw_data_length", d->raw_data_length);
		jint(o, "data_length", d->data_length);
	} else {
		jint(o, "revision", d->revision);
		jint(o, "section_count", d->section_count);
		jint(o, "validation_bits", d->validation);
		jadd(o, "valid_fields", jnames(d->validation, record_valid, 3));
		jint(o, "record_length", d->record_length);
		jreg(o, "timestamp", d->timestamp);
		jstr(o, "timestamp_text", bcd_time(d->timestamp, t, sizeof(t)) ? t : NULL);
		jguid(o, "platform_id", &d->platform_id);
		jguid(o, "partition_id", &d->partition_id);
		jguid(o, "creator_id", &d->creator_id);
		jguid(o, "notification_type", &d->notification_type);
		jstr(o, "notification_type_name", d->notification_name);
		jreg(o, "record_id", d->record_id);
		jint(o, "flags", d->flags);
		jadd(o, "flag_names", jnames(d->flags, record_flags, 3));
		jreg(o, "persistence_information", d->persistence);
	}
	jint(o, "error_severity", d->error_severity);
	jstr(o, "error_severity_name", decode_cper_severity_name(d->error_severity));
	jstr(o, "note", d->note[0] ? d->note : NULL);
	for (unsigned int i = 0; i < d->n_sections; i++) {
		const struct decode_cper_section *s = &d->sections[i];
		json_object *x = json_object_new_object();

		jint(x, "header_offset", s->header_offset);
		jguid(x, "section_type", &s->type);
		jstr(x, "section_type_name", s->type_name);
		jint(x, "severity", s->severity);
		jstr(x, "severity_name", decode_cper_severity_name(s->severity));
		jint(x, "revision", s->revision);
		jint(x, "validation_bits", s->validation);
		jadd(x, "valid_fields", jnames(s->validation, entry_valid, entry ? 3 : 2));
		jint(x, "flags", s->flags);
		jadd(x, "flag_names", jnames(s->flags, section_flags, 8));
		jguid(x, "fru_id", &s->fru_id);
		jstr(x, "fru_text", s->fru_text);
		if (s->has_timestamp) {
			jreg(x, "timestamp", s->timestamp);
			jstr(x, "timestamp_text", s->timestamp && bcd_time(s->timestamp, t, sizeof(t))
						  ? t : NULL);
		}
		jint(x, "offset", s->offset);
		jint(x, "length", s->length);
		if (s->is_mem) {
			jadd(x, "memory_error", jmem(&s->mem));
		} else {
			jadd(x, "data_hex", jhexdump(buf + s->offset, s->length));
			jadd(x, "data_hex_truncated", json_object_new_boolean(s->length > HEX_LIMIT));
		}
		json_object_array_add(a, x);
	}
	jadd(o, "sections", a);
	return o;
}
