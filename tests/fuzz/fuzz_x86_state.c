// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the VMM's vCPU-state checks (vmm/x86_state.c
 * x86_state_check: what x86_state_load checks before it touches a vCPU).
 * An input is either
 *   - one blob (it starts with "X86S"): a VCPU section's payload, checked
 *     alone and, once accepted, against itself, which it must fit on a
 *     vCPU with the most machine-check banks; or
 *   - a pair: u8 the destination's bank count (MCG_CAP's low byte), u32
 *     the length of the blob to load, that blob, then the destination
 *     vCPU's own blob (as x86_state_save gives it).
 * Besides crashes and sanitizer reports it aborts when an invariant fails:
 * a malformed blob is -EPROTO, a misfit -EINVAL, each with a message; a
 * pair that fits has two blobs each accepted alone.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kabi/mce.h"
#include "x86_state.h"

#define BANKS_MAX 32	/* x86_state.c's MCE_BANKS_MAX (KVM_MAX_MCE_BANKS) */

static void check_error(int r, const struct vmm_error *e, int also)
{
	if (r != -EPROTO && r != also)
		abort();
	if (!e->msg[0] || (r == -EPROTO && strncmp(e->msg, "vCPU state: ", 12)))
		abort();
}

static void one(const uint8_t *data, size_t size)
{
	struct x86_machine m = { .mcg_cap = MCG_CTL_P | BANKS_MAX };
	struct vmm_error e = { "" };
	int r;

	r = x86_state_check(&m, data, size, NULL, 0, &e);
	if (r) {
		check_error(r, &e, -EPROTO);
		return;
	}
	if (x86_state_check(&m, data, size, data, size, &e))
		abort();
	/* With fewer banks than it has, refused as a misfit only. */
	m.mcg_cap = MCG_CTL_P;
	r = x86_state_check(&m, data, size, data, size, &e);
	if (r)
		check_error(r, &e, -EINVAL);
}

static void pair(const uint8_t *data, size_t size)
{
	struct x86_machine m = { .mcg_cap = MCG_CTL_P | data[0] };
	struct vmm_error e = { "" };
	const uint8_t *a = data + 5, *d;
	size_t alen = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 |
		      (size_t)data[4] << 24;
	int r;

	if (alen > size - 5)
		return;
	d = a + alen;
	r = x86_state_check(&m, a, alen, d, size - 5 - alen, &e);
	if (r) {
		check_error(r, &e, -EINVAL);
		return;
	}
	if (x86_state_check(&m, a, alen, NULL, 0, &e) ||
	    x86_state_check(&m, d, size - 5 - alen, NULL, 0, &e))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= 4 && !memcmp(data, "X86S", 4))
		one(data, size);
	else if (size >= 5)
		pair(data, size);
	return 0;
}
