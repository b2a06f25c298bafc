// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * `vmras decode` reads back everything vmras encodes: every ESR the arm64
 * arch can write (each abort field combination), SError ISS values, CPER
 * blocks (one or two sections, each granularity, severities, timestamps),
 * and the x86 machine checks libvmras sends (Intel and AMD, SRAO and
 * SRAR), graded as Linux grades them. Encoder: libvmras; decoder:
 * tools/vmras/decode_*.c, written from the specifications separately.
 */
#include "decode.h"
#include "tap.h"
#include "vmras/arm64.h"
#include "vmras/x86_mce.h"

static uint64_t field(const struct decode_field *f, int n, const char *name, bool *found)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(f[i].name, name)) {
			*found = true;
			return f[i].value;
		}
	*found = false;
	return ~0ULL;
}

static void test_esr(void)
{
	unsigned int n = 0, bad = 0;

	for (unsigned int bits = 0; bits < 128; bits++) {
		struct vmras_arm64_abort a = {
			.dfsc = bits & 1 ? VMRAS_DFSC_ECC : VMRAS_DFSC_SEA,
			.set = bits & 1 ? 0 : (unsigned int[]){ 0, 2, 3, 0 }[(bits >> 1) & 3],
			.wnr = (bits >> 3) & 1, .ea = (bits >> 4) & 1,
			.far_valid = (bits >> 5) & 1, .iabt = (bits >> 6) & 1,
		};
		struct decode_esr d;
		bool same_el = bits & 2, f1, f2, f3, f4;
		uint64_t esr;

		if (a.iabt && a.wnr)
			continue;
		if (vmras_arm64_esr_dabt(same_el, &a, &esr) || decode_esr(esr, &d)) {
			bad++;
			continue;
		}
		n++;
		unsigned int ec = (a.iabt ? 0x20 : 0x24) + (same_el ? 1 : 0);
		uint64_t fsc = field(d.fields, d.n_fields, a.iabt ? "IFSC" : "DFSC", &f1);
		uint64_t fnv = field(d.fields, d.n_fields, "FnV", &f2);
		uint64_t ea = field(d.fields, d.n_fields, "EA", &f3);
		uint64_t set = field(d.fields, d.n_fields, "SET", &f4);

		if (d.ec != ec || d.il != 1 || d.kind != (a.iabt ? DECODE_ESR_IABT : DECODE_ESR_DABT) ||
		    !f1 || fsc != a.dfsc || !f2 || fnv != !a.far_valid || !f3 || ea != a.ea ||
		    !f4 || set != a.set)
			bad++;
		if (!a.iabt) {
			bool f5;
			uint64_t wnr = field(d.fields, d.n_fields, "WnR", &f5);

			bad += !f5 || wnr != a.wnr;
		}
	}
	ok(n == 96 && bad == 0, "%u data and instruction abort ESRs decode to the fields encoded "
	   "(%u wrong)", n, bad);

	bad = 0;
	for (unsigned int aet = 0; aet <= VMRAS_AET_CE; aet++) {
		struct decode_esr d;
		uint64_t iss;
		bool f;

		if (vmras_arm64_serror_iss(aet, aet & 1, &iss))
			continue;
		decode_esr((uint64_t)VMRAS_ESR_EC_SERROR << 26 | 1ULL << 25 | iss, &d);
		bad += d.kind != DECODE_ESR_SERROR || field(d.fields, d.n_fields, "AET", &f) != aet ||
		       !f || field(d.fields, d.n_fields, "EA", &f) != (aet & 1);
	}
	is_int(bad, 0, "every SError ISS vmras encodes decodes to its AET and EA");
}

static void test_cper(void)
{
	static const unsigned int lsbs[] = { 12, 21, 30 };
	unsigned char buf[1024];
	struct decode_cper *d = calloc(1, sizeof(*d));
	unsigned int bad = 0;

	for (unsigned int i = 0; i < 3; i++)
		for (unsigned int sev = 0; sev <= VMRAS_CPER_SEV_CORRECTED; sev++)
			for (unsigned int n = 1; n <= 2; n++) {
				struct vmras_cper_mem e[2] = {
					{ .gpa = 0x40001000, .lsb = lsbs[i], .severity = sev,
					  .time_ns = n == 2 ? 1795342830ULL * 1000000000ULL : 0 },
					{ .gpa = 0x123456000ULL, .lsb = 12, .severity = sev },
				};
				int len = vmras_cper_mem_block(e, n, buf, sizeof(buf));

				if (len < 0 || decode_cper(buf, (size_t)len, d)) {
					bad++;
					continue;
				}
				bad += d->kind != DECODE_CPER_ESTATUS || d->used != (size_t)len ||
				       d->n_sections != n || d->error_severity != sev ||
				       ((d->block_status >> 4) & 0x3ff) != n;
				for (unsigned int k = 0; k < n; k++) {
					const struct decode_cper_section *s = &d->sections[k];

					bad += !s->is_mem || s->severity != sev ||
					       s->mem.physical_addr != e[k].gpa ||
					       s->mem.granularity != 1ULL << e[k].lsb ||
					       s->mem.error_type != 0 ||
					       !s->has_timestamp ||
					       (s->validation & 4) != (e[k].time_ns ? 4 : 0) ||
					       (e[k].time_ns && s->timestamp != 0x2026112201102030ULL);
				}
			}
	is_int(bad, 0, "18 CPER blocks (3 granularities, 3 severities, 1-2 sections, timestamps) "
	       "decode to what was encoded (the timestamp as BCD 2026-11-22 10:20:30)");
	free(d);
}

static void test_mce(void)
{
	static const struct {
		enum vmras_mce_type type;
		bool amd;
		const char *grade;
	} cases[] = {
		{ VMRAS_MCE_SRAR, false, "SRAR" },
		{ VMRAS_MCE_SRAO, false, "SRAO" },
		{ VMRAS_MCE_SRAR, true, "AR" },
		{ VMRAS_MCE_SRAO, true, "deferred" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmras_mce_params p = { .type = cases[i].type, .gpa = 0x1234000, .lsb = 12,
					      .eipv = true, .amd = cases[i].amd, .bank = 9 };
		struct vmras_x86_mce m;
		struct decode_mce d;
		struct decode_mce_in in = { .vendor = cases[i].amd ? DECODE_VENDOR_AMD
								   : DECODE_VENDOR_INTEL,
					    .bank = 9, .cpu = -1, .has_addr = true,
					    .has_misc = true, .has_mcg_status = true };

		vmras_x86_mce_encode(&p, &m);
		in.status = m.status;
		in.addr = m.addr;
		in.misc = m.misc;
		in.mcg_status = m.mcg_status;
		if (!is_int(decode_mce(&in, &d), 0, "decode vmras's %s %s", cases[i].amd ? "AMD" : "Intel",
			    cases[i].grade))
			continue;
		ok(!strcmp(d.grades[DECODE_CTX_USER].name, cases[i].grade) &&
		   d.addr_granule == 4096,
		   "  graded %s in user mode as Linux would (got %s: %s), 4 KiB address granule",
		   cases[i].grade, d.grades[DECODE_CTX_USER].name, d.grades[DECODE_CTX_USER].rule);
	}
}

int main(void)
{
	test_esr();
	test_cper();
	test_mce();
	return tap_done();
}
