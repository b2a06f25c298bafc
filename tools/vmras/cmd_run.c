// SPDX-License-Identifier: GPL-2.0-or-later
/* vmras run: the reference VMM with the self-checking test guest. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "vmm.h"

static void run_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s run [OPTIONS]\n"
		"  --vcpus N          vCPUs (default 2, at most 32)\n"
		"  --mem SIZE         guest RAM, e.g. 64M, 1G (default 64M)\n"
		"  --backend KIND     anon | shmem | hugetlb-2m | hugetlb-1g | file:PATH |\n"
		"                     guest-memfd\n"
		"                     (default anon; all but anon are MAP_SHARED)\n"
		"  --guest builtin|PATH  guest image, linked at 1 MiB (default builtin)\n"
		"  --passes N         guest verification passes before it stops (default 2)\n"
		"  --control PATH     QMP control socket (mode 0600; only this user may use it)\n"
		"  --control-allow-uid UID  another user who may use it (up to 8; the socket's\n"
		"                     mode or directory must let them reach it)\n"
		"  --no-shutdown      stay up after the guest finishes (until quit)\n"
		"  --paused           start with the vCPUs stopped (QMP cont starts them)\n"
		"  --incoming URI     first load a migration stream or snapshot: tcp:HOST:PORT,\n"
		"                     unix:PATH or file:PATH (the same --mem, --vcpus, --seed)\n"
		"  --lazy             with --incoming file:PATH, run at once and load each page\n"
		"                     when it is first touched (and all of them in the background)\n"
		"  --lazy-no-prefetch  with --lazy: only what is touched (QMP x-lazy-prefetch\n"
		"                     turns the background load on)\n"
		"  --summary json     print one JSON summary line on stdout at the end\n"
		"  --seed N           pattern seed (default 1)\n"
		"  --inject ao:GPA[@PASS] | ar:GPA[@PASS]\n"
		"                     inject a memory error once the vCPU owning GPA has\n"
		"                     finished pass PASS (default 1); repeatable\n"
		"  --policy CASE=ACTION  ao, ar, ar-not-guest, undeliverable =\n"
		"                     ignore|inject|fatal|reset; repeatable\n"
		"  --no-broadcast     SRAR to the consuming vCPU only\n"
		"  --cpu-vendor host|intel|amd  the vCPUs' CPUID vendor, and so how machine\n"
		"                     checks are encoded (default host: the host's vendor)\n"
		"  --event-log PATH   append MEMORY_FAILURE events as JSON lines\n"
		"  --record PATH      the durable error record, an SQLite database every VMM\n"
		"                     on the host may share (default " VMM_DEFAULT_RECORD ")\n"
		"  --no-record        keep no record\n"
		"  --name NAME, --uuid UUID  how the record names this VM (default vm-PID, random)\n"
		"  --guest-no-mce     the guest leaves CR4.MCE clear (tests)\n"
		"  --sample N         the guest checks every Nth page (plus each --inject's\n"
		"                     neighbours); the VMM checks every page from the host\n"
		"                     side at the end (for guests too big to read whole)\n"
		"Exit status: 0 the guest's checks passed (or nothing failed before a\n"
		"quit); 1 a check failed; 2 usage or VMM error.\n",
		prog);
}

static int parse_uint(const char *s, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

/* "ao:0x500000@2" */
static int parse_inject(const char *s, struct vmm_inject *in)
{
	const char *at;
	char *end;

	*in = (struct vmm_inject){ .pass = 1 };
	if (!strncmp(s, "ao:", 3))
		in->kind = VMRAS_AO;
	else if (!strncmp(s, "ar:", 3))
		in->kind = VMRAS_AR;
	else
		return -EINVAL;
	errno = 0;
	in->gpa = strtoull(s + 3, &end, 0);
	if (errno || end == s + 3)
		return -EINVAL;
	at = end;
	if (*at == '@') {
		unsigned long p = strtoul(at + 1, &end, 10);

		if (end == at + 1 || p == 0 || p > 1000000)
			return -EINVAL;
		in->pass = (unsigned int)p;
	}
	return *end ? -EINVAL : 0;
}

/* "ar=fatal" */
static int parse_policy(const char *s, struct vmras_policy *p)
{
	static const struct {
		const char *name;
		size_t off;
	} cases[] = {
		{ "ao", offsetof(struct vmras_policy, ao) },
		{ "ar", offsetof(struct vmras_policy, ar) },
		{ "ar-not-guest", offsetof(struct vmras_policy, ar_not_guest) },
		{ "undeliverable", offsetof(struct vmras_policy, undeliverable) },
	};
	const char *eq = strchr(s, '=');
	enum vmras_action a;

	if (!eq || vmras_action_parse(eq + 1, &a))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strlen(cases[i].name) == (size_t)(eq - s) &&
		    !strncmp(s, cases[i].name, (size_t)(eq - s))) {
			*(enum vmras_action *)((char *)p + cases[i].off) = a;
			return 0;
		}
	return -EINVAL;
}

int run_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "vcpus", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "backend", required_argument, NULL, 'b' },
		{ "guest", required_argument, NULL, 'g' },
		{ "passes", required_argument, NULL, 'p' },
		{ "control", required_argument, NULL, 'C' },
		{ "control-allow-uid", required_argument, NULL, 'U' },
		{ "no-shutdown", no_argument, NULL, 'N' },
		{ "paused", no_argument, NULL, 'P' },
		{ "incoming", required_argument, NULL, 'I' },
		{ "lazy", no_argument, NULL, 'z' },
		{ "lazy-no-prefetch", no_argument, NULL, 'Z' },
		{ "summary", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "inject", required_argument, NULL, 'i' },
		{ "policy", required_argument, NULL, 'o' },
		{ "no-broadcast", no_argument, NULL, 'B' },
		{ "event-log", required_argument, NULL, 'L' },
		{ "record", required_argument, NULL, 'R' },
		{ "no-record", no_argument, NULL, 'n' },
		{ "name", required_argument, NULL, 'a' },
		{ "uuid", required_argument, NULL, 'u' },
		{ "guest-no-mce", no_argument, NULL, 'M' },
		{ "sample", required_argument, NULL, 'A' },
		{ "cpu-vendor", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vmm_config cfg = {
		.nr_vcpus = 2, .mem_size = 64ULL << 20, .backend = RAM_ANON,
		.passes = 2, .seed = 1,
	};
	struct vmm_error e = { "" };
	bool summary = false;
	struct vmm *vm;
	int c, r, code;

	vmras_policy_default(&cfg.policy);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_uint(optarg, 1024, &cfg.nr_vcpus) || !cfg.nr_vcpus) {
				tool_error("run", "--vcpus: not a vCPU count: '%s'", optarg);
				return 2;
			}
			break;
		case 'm':
			if (tool_parse_size(optarg, true, &cfg.mem_size)) {
				tool_error("run", "--mem: not a size: '%s'", optarg);
				return 2;
			}
			break;
		case 'b':
			if (ram_backend_parse(optarg, &cfg.backend, &cfg.backend_path)) {
				tool_error("run", "--backend: unknown backend '%s' (anon, shmem, hugetlb-2m, hugetlb-1g, file:PATH)",
					   optarg);
				return 2;
			}
			break;
		case 'g':
			cfg.guest_path = strcmp(optarg, "builtin") ? optarg : NULL;
			break;
		case 'p':
			if (parse_uint(optarg, 1000000, &cfg.passes)) {
				tool_error("run", "--passes: not a count: '%s'", optarg);
				return 2;
			}
			break;
		case 'C': cfg.control_path = optarg; break;
		case 'U': {
			unsigned int uid;

			if (parse_uint(optarg, 0xfffffffeu, &uid) ||
			    cfg.ncontrol_allow == QMP_MAX_ALLOWED_UIDS) {
				tool_error("run", "--control-allow-uid: not a uid, or more than %d: '%s'",
					   QMP_MAX_ALLOWED_UIDS, optarg);
				return 2;
			}
			cfg.control_allow[cfg.ncontrol_allow++] = (uid_t)uid;
			break;
		}
		case 'N': cfg.no_shutdown = true; break;
		case 'P': cfg.start_paused = true; break;
		case 'I': cfg.incoming = optarg; break;
		case 'z': cfg.lazy = true; break;
		case 'Z': cfg.lazy = cfg.lazy_no_prefetch = true; break;
		case 's':
			if (strcmp(optarg, "json")) {
				tool_error("run", "--summary: only 'json' is supported");
				return 2;
			}
			summary = true;
			break;
		case 'S':
			if (tool_parse_size(optarg, true, &cfg.seed)) {
				tool_error("run", "--seed: not a number: '%s'", optarg);
				return 2;
			}
			break;
		case 'i':
			if (cfg.ninject == VMM_MAX_INJECT ||
			    parse_inject(optarg, &cfg.inject[cfg.ninject])) {
				tool_error("run", "--inject: expected ao:GPA[@PASS] or ar:GPA[@PASS], got '%s'",
					   optarg);
				return 2;
			}
			cfg.ninject++;
			break;
		case 'o':
			if (parse_policy(optarg, &cfg.policy)) {
				tool_error("run", "--policy: expected ao|ar|ar-not-guest|undeliverable=ignore|inject|fatal|reset, got '%s'",
					   optarg);
				return 2;
			}
			break;
		case 'B': cfg.no_broadcast = true; break;
		case 'L': cfg.event_log = optarg; break;
		case 'R': cfg.record = optarg; break;
		case 'n': cfg.record = ""; break;
		case 'a': cfg.name = optarg; break;
		case 'u': cfg.uuid = optarg; break;
		case 'M': cfg.guest_no_mce = true; break;
		case 'A':
			if (parse_uint(optarg, 1u << 20, &cfg.sample)) {
				tool_error("run", "--sample: not a count: '%s'", optarg);
				return 2;
			}
			break;
		case 'V':
			if (x86_cpu_vendor_parse(optarg, &cfg.cpu_vendor)) {
				tool_error("run", "--cpu-vendor: unknown vendor '%s' (host, intel, amd)",
					   optarg);
				return 2;
			}
			break;
		case 'h': run_usage(stdout); return 0;
		default: run_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		tool_error("run", "unexpected argument '%s'", argv[optind]);
		return 2;
	}

	if (cfg.lazy && (!cfg.incoming || strncmp(cfg.incoming, "file:", 5))) {
		tool_error("run", "--lazy needs --incoming file:PATH (a snapshot)");
		return 2;
	}

	r = vmm_create(&cfg, &vm, &e);
	if (r) {
		tool_error("run", "%s", e.msg);
		return 2;
	}
	r = vmm_run(vm, &e);
	code = r ? 2 : vmm_exit_code(vm);
	if (r)
		tool_error("run", "%s", e.msg);
	if (summary) {
		json_object *s = vmm_summary_json(vm);

		puts(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(s);
	}
	vmm_destroy(vm);
	return code;
}
