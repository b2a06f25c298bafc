// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras decode: take apart what an operator pastes from a log: an x86
 * machine check (a status, or the kernel's lines whole), an AArch64
 * ESR_ELx, or a CPER blob (a GHES status block or a UEFI record).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "decode.h"

#define TEXT_LIMIT (64 * 1024)	/* a pasted log for `decode mce -` */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s decode mce STATUS|LOG|- [--addr A] [--misc M] [--mcg-status G]\n"
		"                      [--vendor intel|amd] [--json]\n"
		"       %s decode esr VALUE [--json]\n"
		"       %s decode cper FILE|- [--json]\n"
		"\n"
		"mce   IA32_MCi_STATUS bit by bit, its MCA error code, MCi_MISC, MCG_STATUS,\n"
		"      and the severity Linux grades it as in user mode, in the kernel with\n"
		"      a fixup, and in the kernel without one (and which rule says so).\n"
		"      STATUS is hex (0x optional); LOG is the kernel's lines pasted whole,\n"
		"      \"CPU 0: Machine Check Exception: 7 Bank 9: bd80000000000134\", with\n"
		"      the \"TSC ... ADDR ... MISC ...\" line if you have it; - reads them\n"
		"      from stdin. Options override what the log says. Without\n"
		"      --mcg-status the grade assumes how Linux most likely saw it.\n"
		"esr   AArch64 ESR_ELx (hex): EC, IL, ISS, and every field of a Data\n"
		"      Abort, Instruction Abort or SError ISS.\n"
		"cper  binary, at most 1 MiB: an ACPI Generic Error Status Block with its\n"
		"      data entries, or a UEFI CPER record; memory error sections field\n"
		"      by field, other sections named and in hex.\n"
		"--json  one JSON object; a 64-bit value K is also K_hex, \"0x...\", and\n"
		"        K itself only when it fits in int64.\n"
		"Exit status: 0 decoded, 1 the input is not what it should be, 2 usage.\n",
		prog, prog, prog);
}

/* All of path ("-": stdin), at most limit bytes, NUL-terminated. */
static int read_all(const char *path, size_t limit, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	size_t n = 0, r;
	char *buf;
	int err;

	if (!f)
		return -errno;
	buf = malloc(limit + 2);
	if (!buf) {
		if (f != stdin)
			fclose(f);
		return -ENOMEM;
	}
	/* One byte more than the limit tells "too big" from "exactly the limit". */
	while (n <= limit && (r = fread(buf + n, 1, limit + 1 - n, f)) > 0)
		n += r;
	err = ferror(f) ? -EIO : 0;
	if (f != stdin)
		fclose(f);
	if (!err && n > limit)
		err = -EFBIG;
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static int emit_json(json_object *o)
{
	if (!o)
		return -ENOMEM;
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return 0;
}

static int finish(int rc)
{
	if (!rc && fflush(stdout)) {
		tool_error("decode", "writing the output: %s", strerror(errno));
		return 1;
	}
	return rc;
}

static int decode_mce_cmd(const char *arg, struct decode_mce_in *in, const struct decode_mce_in *opt,
			  bool json)
{
	struct decode_mce d;
	char *text = NULL;
	size_t len;
	int rc;

	if (!strcmp(arg, "-")) {
		rc = read_all("-", TEXT_LIMIT, &text, &len);
		if (rc) {
			tool_error("decode", "mce: stdin: %s", rc == -EFBIG ? "more than 64 KiB"
								   : strerror(-rc));
			return 1;
		}
		arg = text;
	}
	if (decode_parse_hex64(arg, &in->status)) {
		rc = decode_mce_parse_log(arg, in);
		if (rc) {
			tool_error("decode", "mce: %s", rc == -ENOENT
				   ? "not a hex MCi_STATUS, nor a kernel log with a \"Machine Check\" line"
				   : "a \"Machine Check\" line, but not as Linux prints it: want "
				     "\"Machine Check Exception: MCG_STATUS Bank N: MCi_STATUS\"");
			free(text);
			return 1;
		}
	}
	free(text);
	if (opt->has_addr) {
		in->addr = opt->addr;
		in->has_addr = true;
	}
	if (opt->has_misc) {
		in->misc = opt->misc;
		in->has_misc = true;
	}
	if (opt->has_mcg_status) {
		in->mcg_status = opt->mcg_status;
		in->has_mcg_status = true;
	}
	if (decode_mce(in, &d))
		return 1;
	if (json)
		return emit_json(decode_mce_json(&d)) ? 1 : 0;
	decode_print_mce(stdout, &d);
	return 0;
}

static int decode_esr_cmd(const char *arg, bool json)
{
	struct decode_esr d;
	uint64_t v;

	if (decode_parse_hex64(arg, &v)) {
		tool_error("decode", "esr: %s: not a hex number of at most 64 bits", arg);
		return 1;
	}
	if (decode_esr(v, &d)) {
		tool_error("decode", "esr: 0x%llx: bits 63:56 are RES0 in ESR_ELx, and set here",
			   (unsigned long long)v);
		return 1;
	}
	if (json)
		return emit_json(decode_esr_json(&d)) ? 1 : 0;
	decode_print_esr(stdout, &d);
	return 0;
}

static int decode_cper_cmd(const char *path, bool json)
{
	struct decode_cper *d;
	char *buf;
	size_t len;
	int rc;

	rc = read_all(path, DECODE_CPER_MAX_INPUT, &buf, &len);
	if (rc) {
		tool_error("decode", "cper: %s: %s", path,
			   rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
		return 1;
	}
	d = malloc(sizeof(*d));
	if (!d) {
		free(buf);
		tool_error("decode", "cper: out of memory");
		return 1;
	}
	rc = decode_cper(buf, len, d);
	if (rc)
		tool_error("decode", "cper: %s: %s", path, d->error);
	else if (json)
		rc = emit_json(decode_cper_json(d, (const uint8_t *)buf));
	else
		decode_print_cper(stdout, d, (const uint8_t *)buf);
	free(d);
	free(buf);
	return rc ? 1 : 0;
}

int decode_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "misc", required_argument, NULL, 'm' },
		{ "mcg-status", required_argument, NULL, 'g' },
		{ "vendor", required_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct decode_mce_in in = { .vendor = DECODE_VENDOR_INTEL, .bank = -1, .cpu = -1 };
	struct decode_mce_in opt = { 0 };
	bool json = false, mce_opts = false;
	const char *what;
	uint64_t *v;
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	what = argv[1];
	if (!strcmp(what, "--help") || !strcmp(what, "-h") || !strcmp(what, "help")) {
		usage(stdout);
		return 0;
	}
	if (strcmp(what, "mce") && strcmp(what, "esr") && strcmp(what, "cper")) {
		tool_error("decode", "%s: not something to decode: want mce, esr or cper", what);
		return 2;
	}
	optind = 1;
	opterr = 0; /* one line of ours, not getopt's */
	while ((c = getopt_long(argc - 1, argv + 1, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': case 'm': case 'g':
			v = c == 'a' ? &opt.addr : c == 'm' ? &opt.misc : &opt.mcg_status;
			if (decode_parse_hex64(optarg, v)) {
				tool_error("decode", "--%s %s: not a hex number of at most 64 bits",
					   c == 'a' ? "addr" : c == 'm' ? "misc" : "mcg-status", optarg);
				return 2;
			}
			*(c == 'a' ? &opt.has_addr : c == 'm' ? &opt.has_misc : &opt.has_mcg_status) = true;
			mce_opts = true;
			break;
		case 'v':
			if (strcmp(optarg, "intel") && strcmp(optarg, "amd")) {
				tool_error("decode", "--vendor %s: want intel or amd", optarg);
				return 2;
			}
			in.vendor = optarg[0] == 'a' ? DECODE_VENDOR_AMD : DECODE_VENDOR_INTEL;
			mce_opts = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			tool_error("decode", "%s: %s needs a value", what, argv[optind]);
			return 2;
		default:
			tool_error("decode", "%s: unknown option %s (try '%s decode --help')", what,
				   argv[optind], prog);
			return 2;
		}
	}
	/* argv + 1 went to getopt: its operands are what it left after optind. */
	if (argc - 1 - optind != 1) {
		tool_error("decode", "%s: want exactly one value (try '%s decode --help')", what, prog);
		return 2;
	}
	if (mce_opts && strcmp(what, "mce")) {
		tool_error("decode", "%s: --addr, --misc, --mcg-status and --vendor are for mce", what);
		return 2;
	}
	if (!strcmp(what, "mce"))
		return finish(decode_mce_cmd(argv[1 + optind], &in, &opt, json));
	if (!strcmp(what, "esr"))
		return finish(decode_esr_cmd(argv[1 + optind], json));
	if (!strcmp(what, "cper"))
		return finish(decode_cper_cmd(argv[1 + optind], json));
	tool_error("decode", "%s: want mce, esr or cper", what);
	return 2;
}
