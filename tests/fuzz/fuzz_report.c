// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the VMM's guest-report loader (vmm/report.c
 * report_load): any bytes as a GUEST section's payload, as the destination
 * reads it (a u64 boot count, then the report), for a VM of as many vCPUs
 * as the report's own first field says. Besides crashes and sanitizer
 * reports it aborts when an invariant fails:
 *   - a refusal is -EPROTO and leaves the report it was given untouched;
 *   - an accepted report is within its limits (its CPU vendors printable
 *     ASCII), saves back to exactly the bytes it was loaded from, and is
 *     refused for another vCPU count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static struct guest_report rep, before, other;
static unsigned char again[1 << 20];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 8;
	size_t len = size - 8;
	unsigned int nr = 0;
	int r;

	if (size < 8)
		return 0;
	for (unsigned int i = 0; i < 4 && i < len; i++)
		nr |= (unsigned int)p[i] << (8 * i);
	memset(&rep, 0xa5, sizeof(rep));
	memcpy(&before, &rep, sizeof(rep));
	r = report_load(&rep, nr, p, len);
	if (r) {
		if (r != -EPROTO || memcmp(&rep, &before, sizeof(rep)))
			abort();
		return 0;
	}
	if (rep.nr_vcpus != nr || nr > GL_MAX_VCPUS || rep.ncorrupt > REPORT_MAX_ITEMS ||
	    rep.nmce > REPORT_MAX_ITEMS || rep.nretired > REPORT_MAX_ITEMS)
		abort();
	/* The vendor goes out in JSON: printable ASCII, as report_cpuid_decode makes it. */
	for (unsigned int i = 0; i < nr; i++) {
		const char *s = rep.vcpu[i].cpuid.vendor;
		size_t n = strlen(s);

		if (n >= sizeof(rep.vcpu[i].cpuid.vendor))
			abort();
		for (size_t k = 0; k < n; k++)
			if (s[k] < 0x20 || s[k] > 0x7e)
				abort();
	}
	/* What the VMM does with a loaded report reads only inside it. */
	(void)report_passed(&rep);
	(void)report_failed(&rep);
	(void)report_all_done(&rep);
	if (len > sizeof(again) || report_save(&rep, NULL) != len ||
	    report_save(&rep, again) != len || memcmp(again, p, len))
		abort();
	if (report_load(&other, nr + 1, p, len) != -EPROTO)
		abort();
	return 0;
}
