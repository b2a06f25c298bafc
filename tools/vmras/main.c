// SPDX-License-Identifier: GPL-2.0-or-later
/* vmras: probe the host, run and drive a VM, inject errors, show events. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

const char *prog = "vmras";

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "demo", demo_main, "boot the guest, inject an AO and an AR error, show what happened" },
	{ "probe", probe_main, "what this host can do about guest memory errors" },
	{ "run", run_main, "run the reference VM with the self-checking test guest" },
	{ "inject", inject_main, "inject a memory error into a running VM (--control)" },
	{ "events", events_main, "print a running VM's events as they come (--control)" },
	{ "migrate", migrate_main, "move a running VM to another vmras process, or to a file (--control)" },
	{ "errors", errors_main, "the host's memory errors from the durable record (--json, --summary)" },
	{ "metrics", metrics_main, "the record's numbers in Prometheus text format" },
	{ "exporter", exporter_main, "serve those metrics over HTTP for Prometheus to scrape" },
	{ "serve-snapshot", serve_snapshot_main, "serve a Firecracker snapshot's memory on demand (userfaultfd), poison-aware" },
	{ "x86-plan", x86_plan_main, "the x86 machine checks libvmras sends for one error, as JSON" },
	{ "decode", decode_main, "take apart an MCE status or log line, an ARM ESR, or a CPER blob" },
};

void tool_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s %s: ", prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int tool_parse_size(const char *s, bool suffix, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	/* strtoull would take "-1" as a huge number. */
	if (*s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	if (suffix) {
		switch (*end) {
		case 'k': case 'K': shift = 10; end++; break;
		case 'm': case 'M': shift = 20; end++; break;
		case 'g': case 'G': shift = 30; end++; break;
		default: break;
		}
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s COMMAND [OPTIONS]\n\nCommands:\n", prog);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'%s COMMAND --help' describes a command's options.\n", prog);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("vmras %s\n", VMRAS_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s' (try '%s --help')\n", prog,
		argv[1], prog);
	return 2;
}
