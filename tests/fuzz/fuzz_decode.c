// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for `vmras decode`'s parsers (tools/vmras/decode_*.c):
 * any bytes to the CPER decoder as they are, and, as NUL-terminated text,
 * to the MCE log parser and the hex parser (whose numbers then go through
 * the MCE and ESR decoders); every result through the text and JSON
 * printers into /dev/null. Besides crashes and sanitizer reports it aborts
 * when an invariant fails:
 *   - a CPER refusal is -EINVAL with a message (-E2BIG only over 1 MiB);
 *   - an accepted CPER blob's sections all lie within the input, and
 *     within what the block or record says it covers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

static struct decode_cper cper;
static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void print_json(json_object *o)
{
	fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY), devnull);
	json_object_put(o);
}

static void mce(const struct decode_mce_in *in)
{
	struct decode_mce d;

	if (decode_mce(in, &d))
		abort();
	decode_print_mce(devnull, &d);
	print_json(decode_mce_json(&d));
}

static void esr(uint64_t v)
{
	struct decode_esr d;

	if (decode_esr(v, &d))
		return;
	decode_print_esr(devnull, &d);
	print_json(decode_esr_json(&d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct decode_mce_in in = { .bank = -1, .cpu = -1 };
	uint64_t v = 0;
	char *text;
	int r;

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (!devnull)
		abort();

	r = decode_cper(data, size, &cper);
	if (r) {
		if (!cper.error[0] || (r != -EINVAL && !(r == -E2BIG && size > DECODE_CPER_MAX_INPUT)))
			abort();
	} else {
		if (cper.used > size || cper.n_sections > DECODE_CPER_MAX_SECTIONS)
			abort();
		for (unsigned int i = 0; i < cper.n_sections; i++)
			if ((uint64_t)cper.sections[i].offset + cper.sections[i].length > cper.used)
				abort();
		decode_print_cper(devnull, &cper, data);
		print_json(decode_cper_json(&cper, data));
	}

	text = malloc(size + 1);
	if (!text)
		return 0;
	if (size)
		memcpy(text, data, size);
	text[size] = 0;
	in.vendor = size & 1 ? DECODE_VENDOR_AMD : DECODE_VENDOR_INTEL;
	if (!decode_mce_parse_log(text, &in))
		mce(&in);
	if (!decode_parse_hex64(text, &v)) {
		in.status = v;
		mce(&in);
		esr(v);
	}
	free(text);

	/* The first 8 bytes as a register, whatever they say as text. */
	v = 0;
	if (size)
		memcpy(&v, data, size < 8 ? size : 8);
	in.status = v;
	in.has_misc = in.has_addr = true;
	in.misc = v >> 3;
	mce(&in);
	esr(v & 0x00ffffffffffffffULL);
	return 0;
}
