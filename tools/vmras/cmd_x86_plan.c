// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras x86-plan: the machine checks libvmras delivers for one memory
 * error, as JSON, per vCPU and in order. What tests replay elsewhere (a
 * real Linux guest under QEMU, through its monitor's mce command).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "kabi/mce.h"
#include "vmras/x86_mce.h"

#define MAX_VCPUS 256

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s x86-plan --type srao|srar --gpa ADDR [OPTIONS]\n"
		"  --vendor intel|amd  the guest's CPU vendor (default intel)\n"
		"  --vcpus N           vCPUs in the guest (default 1)\n"
		"  --target N          the vCPU that consumed it / is told (default 0)\n"
		"  --lmce              the target's guest enabled LMCE\n"
		"  --lsb N             log2 of the lost range (default 12)\n"
		"  --banks N           banks given to the vCPUs (default 10)\n"
		"  --no-broadcast      as vmras run --no-broadcast\n"
		"  --source NAME       how it was found: sigbus, kvm-memory-fault, ram-mmio\n"
		"                      (the plan is the same: an SRAR always has EIPV)\n"
		"Prints {\"plan\": [{\"cpu\", \"bank\", \"status\", \"addr\", \"misc\",\n"
		"\"mcg_status\", \"bystander\"}, ...]} in delivery order.\n", prog);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || !*s || *end ? -EINVAL : 0;
}

int x86_plan_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "gpa", required_argument, NULL, 'g' },
		{ "vendor", required_argument, NULL, 'v' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "target", required_argument, NULL, 'c' },
		{ "lmce", no_argument, NULL, 'l' },
		{ "lsb", required_argument, NULL, 's' },
		{ "banks", required_argument, NULL, 'b' },
		{ "no-broadcast", no_argument, NULL, 'B' },
		{ "source", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vmras_x86_config c = { .mcg_cap = MCG_CTL_P | MCG_SER_P | 10 };
	struct vmras_x86_error e = { .type = VMRAS_MCE_BROADCAST, .lsb = 12 };
	struct vmras_x86_plan_step steps[MAX_VCPUS];
	uint64_t vcpus = 1, v;
	bool have_gpa = false;
	int opt, n;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (!strcmp(optarg, "srao") || !strcmp(optarg, "srar")) {
				e.type = optarg[3] == 'o' ? VMRAS_MCE_SRAO : VMRAS_MCE_SRAR;
				break;
			}
			tool_error("x86-plan", "--type %s: want srao or srar", optarg);
			return 2;
		case 'v':
			if (!strcmp(optarg, "intel") || !strcmp(optarg, "amd")) {
				c.vendor = optarg[0] == 'a' ? VMRAS_X86_AMD : VMRAS_X86_INTEL;
				break;
			}
			tool_error("x86-plan", "--vendor %s: want intel or amd", optarg);
			return 2;
		case 'g':
		case 'n':
		case 'c':
		case 's':
		case 'b':
			if (parse_u64(optarg, &v) || (opt == 'n' && (!v || v > MAX_VCPUS)) ||
			    (opt == 'b' && (!v || v > 32)) || (opt == 's' && v > 63)) {
				tool_error("x86-plan", "--%s %s: not a valid number here",
					   opt == 'g' ? "gpa" : opt == 'n' ? "vcpus" : opt == 'c' ? "target"
					   : opt == 's' ? "lsb" : "banks", optarg);
				return 2;
			}
			if (opt == 'g') {
				e.gpa = v;
				have_gpa = true;
			} else if (opt == 'n') {
				vcpus = v;
			} else if (opt == 'c') {
				e.target = (unsigned int)v;
			} else if (opt == 's') {
				e.lsb = (unsigned int)v;
			} else {
				c.mcg_cap = (c.mcg_cap & ~MCG_BANKCNT_MASK) | v;
			}
			break;
		case 'l':
			e.guest_lmce = true;
			c.mcg_cap |= MCG_LMCE_P;
			break;
		case 'B':
			c.no_broadcast = true;
			break;
		case 'S':
			if (strcmp(optarg, "sigbus") && strcmp(optarg, "kvm-memory-fault") &&
			    strcmp(optarg, "ram-mmio")) {
				tool_error("x86-plan", "--source %s: want sigbus, kvm-memory-fault "
					   "or ram-mmio", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || e.type == VMRAS_MCE_BROADCAST || !have_gpa) {
		tool_error("x86-plan", "%s", optind < argc ? "unexpected argument"
					      : "--type and --gpa are needed");
		return 2;
	}
	n = vmras_x86_plan(&c, &e, (unsigned int)vcpus, NULL, steps, MAX_VCPUS);
	if (n < 0) {
		tool_error("x86-plan", "no plan: %s (target %u of %" PRIu64 " vCPUs, lsb %u)",
			   strerror(-n), e.target, vcpus, e.lsb);
		return 1;
	}
	printf("{\"plan\": [");
	for (int i = 0; i < n; i++)
		printf("%s\n  {\"cpu\": %u, \"bank\": %u, \"status\": \"0x%" PRIx64
		       "\", \"addr\": \"0x%" PRIx64 "\", \"misc\": \"0x%" PRIx64
		       "\", \"mcg_status\": \"0x%" PRIx64 "\", \"bystander\": %s}",
		       i ? "," : "", steps[i].vcpu, steps[i].mce.bank, steps[i].mce.status,
		       steps[i].mce.addr, steps[i].mce.misc, steps[i].mce.mcg_status,
		       steps[i].bystander ? "true" : "false");
	printf("\n]}\n");
	return 0;
}
