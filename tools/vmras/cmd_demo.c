// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras demo: boot the self-checking guest, inject an action-optional and
 * an action-required memory error, and say in a few lines what was lost,
 * what the guest was told, and that the rest of its data survived.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "vmm.h"

#define AO_GPA 0x600000ULL	/* in vCPU 0's slice */
#define AR_GPA 0x1300000ULL	/* in vCPU 1's slice */
#define MCI_STATUS_UC (1ULL << 61)
#define MCI_STATUS_ADDRV (1ULL << 58)
#define MCI_STATUS_AR (1ULL << 55)
#define MCI_STATUS_DEFERRED (1ULL << 44)

static uint64_t u64(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_uint64(v) : 0;
}

static bool boolean(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* What the guest was told, in its vendor's terms. */
static const char *mce_kind(uint64_t st, bool amd)
{
	if (amd)
		return st & MCI_STATUS_DEFERRED ? "a deferred error (action optional)"
		       : st & MCI_STATUS_UC ? "an uncorrected error with poison (action required)"
					    : "a corrected error";
	return st & MCI_STATUS_AR ? "SRAR (action required)" : "SRAO (action optional)";
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "?";
}

static void say_events(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		json_object *e = json_tokener_parse(line), *flags, *ar;

		if (!e)
			continue;
		json_object_object_get_ex(e, "flags", &flags);
		json_object_object_get_ex(flags, "action-required", &ar);
		printf("  host:  %s error at GPA 0x%" PRIx64 " (from %s): %s %" PRIu64
		       " KiB; told the %s (action %s)%s%s\n",
		       json_object_get_boolean(ar) ? "action-required" : "action-optional",
		       u64(e, "gpa"), str(e, "source"),
		       !strcmp(str(e, "contained"), "true") ? "poisoned" : "could not poison",
		       u64(e, "size") >> 10, str(e, "recipient"), str(e, "action"),
		       *str(e, "detail") ? ": " : "", str(e, "detail"));
		json_object_put(e);
	}
	fclose(f);
}

int demo_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "cpu-vendor", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vmm_config cfg = {
		.nr_vcpus = 2, .mem_size = 32ULL << 20, .backend = RAM_HUGETLB_2M, .passes = 4,
		.seed = 1, .ninject = 2,
		.inject = {
			{ .kind = VMRAS_AO, .gpa = AO_GPA, .pass = 1 },
			{ .kind = VMRAS_AR, .gpa = AR_GPA, .pass = 2 },
		},
	};
	char log[] = "/tmp/vmras-demo-XXXXXX";
	struct vmm_error e = { "" };
	json_object *s, *g, *a;
	struct vmm *vm;
	int c, fd, code;
	uint64_t lost, mem;
	bool amd;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (ram_backend_parse(optarg, &cfg.backend, &cfg.backend_path)) {
				tool_error("demo", "--backend: unknown backend '%s'", optarg);
				return 2;
			}
			if (cfg.backend == RAM_HUGETLB_1G)
				cfg.mem_size = 1ULL << 30;
			break;
		case 'V':
			if (x86_cpu_vendor_parse(optarg, &cfg.cpu_vendor)) {
				tool_error("demo", "--cpu-vendor: unknown vendor '%s' (host, intel, amd)",
					   optarg);
				return 2;
			}
			break;
		case 'h':
			printf("Usage: %s demo [--backend hugetlb-2m|anon|shmem|...] (default hugetlb-2m,\n"
			       "anon if no huge pages are free) [--cpu-vendor host|intel|amd] (default host)\n",
			       prog);
			return 0;
		default: return 2;
		}
	}
	vmras_policy_default(&cfg.policy);
	fd = mkstemp(log);
	if (fd < 0) {
		tool_error("demo", "create event log %s: %s", log, strerror(errno));
		return 2;
	}
	close(fd);
	cfg.event_log = log;

	printf("vmras demo: a KVM guest with %u vCPUs and %" PRIu64 " MiB of %s RAM checks its own\n"
	       "memory, %u passes over every page. After pass 1 the host page behind GPA\n"
	       "0x%llx goes bad (found by a scrub: action optional); after pass 2 the one\n"
	       "behind GPA 0x%llx (consumed by vCPU 1: action required).\n\n",
	       cfg.nr_vcpus, cfg.mem_size >> 20, ram_backend_name(cfg.backend), cfg.passes,
	       AO_GPA, AR_GPA);
	fflush(stdout);
	if (vmm_create(&cfg, &vm, &e)) {
		if (cfg.backend != RAM_HUGETLB_2M) {
			tool_error("demo", "%s", e.msg);
			unlink(log);
			return 2;
		}
		/* No huge pages to be had: the same demo on small pages. */
		printf("(no 2 MiB huge pages free: %s; running on anonymous memory)\n\n", e.msg);
		cfg.backend = RAM_ANON;
		if (vmm_create(&cfg, &vm, &e)) {
			tool_error("demo", "%s", e.msg);
			unlink(log);
			return 2;
		}
	}
	if (vmm_run(vm, &e)) {
		tool_error("demo", "%s", e.msg);
		vmm_destroy(vm);
		unlink(log);
		return 2;
	}
	code = vmm_exit_code(vm);
	s = vmm_summary_json(vm);
	json_object_object_get_ex(s, "guest", &g);
	amd = !strcmp(str(s, "cpu-vendor"), "amd");
	printf("  guest: CPU vendor %s: told of memory errors by %s's rules\n",
	       str(s, "cpu-vendor-id"), amd ? "AMD" : "Intel");
	say_events(log);
	json_object_object_get_ex(g, "machine-check-log", &a);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *m = json_object_array_get_idx(a, i);
		uint64_t st = u64(m, "status");

		if (!(st & MCI_STATUS_ADDRV))
			continue; /* a bystander's view of a broadcast */
		printf("  guest: vCPU %" PRIu64 " %s: %s, MCi_ADDR 0x%" PRIx64
		       ", %llu KiB (MCi_MISC LSB %" PRIu64 ")\n",
		       u64(m, "vcpu"), boolean(m, "polled") ? "found polling its banks"
							    : "took a machine check",
		       mce_kind(st, amd), u64(m, "addr"), (1ULL << (u64(m, "misc") & 0x3f)) >> 10,
		       u64(m, "misc") & 0x3f);
	}
	json_object_object_get_ex(g, "retired", &a);
	for (size_t i = 0; i < json_object_array_length(a); i++)
		printf("  guest: retired GPA 0x%" PRIx64 ", %" PRIu64 " KiB, and never touched it again\n",
		       u64(json_object_array_get_idx(a, i), "gpa"),
		       u64(json_object_array_get_idx(a, i), "size") >> 10);
	lost = u64(s, "bytes-lost");
	mem = u64(s, "mem");
	printf("\n  checked: %" PRIu64 " page verifications, %" PRIu64 " corrupted pages\n",
	       u64(g, "pages-verified"), u64(g, "pages-corrupted"));
	printf("  lost:    %" PRIu64 " KiB of %" PRIu64 " MiB (backing pages of %" PRIu64 " KiB)\n",
	       lost >> 10, mem >> 20, u64(s, "page-size") >> 10);
	/* QEMU discards the whole backing page of each error until reboot. */
	printf("  QEMU:    would have lost %" PRIu64 " KiB: the whole %" PRIu64
	       " KiB page behind each of the 2 errors\n",
	       2 * u64(s, "page-size") >> 10, u64(s, "page-size") >> 10);
	printf("  result:  %s\n", code == 0 && u64(g, "pages-corrupted") == 0
	       ? "PASS: the guest was told in its own language and the rest of its data survived"
	       : "FAIL: see above");
	json_object_put(s);
	vmm_destroy(vm);
	unlink(log);
	return code;
}
