// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Anonymous memory backed by transparent huge pages needs no userspace
 * splitting: poisoning one 4 KiB page makes the kernel split the THP, and
 * the other 511 subpages keep their data (and the rest stays huge).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define HUGE (2ULL << 20)
#define SIZE (2 * HUGE)
#define GPA 0x40000000ULL

/* AnonHugePages of the mappings inside [addr, addr + len), in kB; -1 if unknown. */
static long anon_huge_kb(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long lo, hi;
	char line[512];
	bool in = false;
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ') > strchr(line, '-'))
			in = lo < a + len && hi > a;
		else if (in && !strncmp(line, "AnonHugePages:", 14))
			kb = (kb < 0 ? 0 : kb) + atol(line + 14);
	}
	fclose(f);
	return kb;
}

int main(void)
{
	struct vmras_config cfg = { 0 };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmras_region r = { .gpa = GPA, .size = SIZE, .backing = VMRAS_BACKING_ANON,
				  .fd = -1, .page_size = 4096 };
	char *raw, *ram, buf[8];
	struct vmras *ras;
	long before, after;
	int bad = 0;

	raw = mmap(NULL, SIZE + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ram = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	if (madvise(ram, SIZE, MADV_HUGEPAGE)) {
		tap_skip("THP split on poison", "madvise(MADV_HUGEPAGE): %s", strerror(errno));
		return tap_done();
	}
	for (size_t i = 0; i < SIZE; i += 8)
		*(uint64_t *)(ram + i) = i * 0x9e3779b97f4a7c15ULL;
	before = anon_huge_kb(ram, SIZE);
	if (before < (long)(SIZE >> 10)) {
		tap_skip("THP split on poison", "the kernel gave no transparent huge pages here "
			 "(AnonHugePages %ld kB; /sys/kernel/mm/transparent_hugepage/enabled)", before);
		return tap_done();
	}
	tap_diag("before: AnonHugePages %ld kB", before);

	vmras_policy_default(&cfg.policy);
	r.hva = ram;
	if (!is_int(vmras_new(&cfg, &ras), 0, "vmras_new") ||
	    !is_int(vmras_add_region(ras, &r), 0, "region of 2 THPs") ||
	    !is_int(vmras_x86_setup(ras, &x86), 0, "x86") ||
	    !is_int(vmras_start(ras), 0, "start"))
		return tap_done();
	/* Poison subpage 5 of the first huge page. */
	is_int(vmras_inject(ras, GPA + 5 * 4096, VMRAS_AO, -1, false), 0,
	       "poison one 4 KiB page inside a THP");
	is_int(vmras_copy_from_guest(ras, buf, GPA + 5 * 4096, 8), -EHWPOISON,
	       "that page cannot be read");
	for (size_t i = 0; i < SIZE; i += 8) {
		if (i / 4096 == 5)
			continue;
		if (*(volatile uint64_t *)(ram + i) != i * 0x9e3779b97f4a7c15ULL)
			bad++;
	}
	is_int(bad, 0, "every other byte of both huge pages is intact (1023 subpages)");
	after = anon_huge_kb(ram, SIZE);
	tap_diag("after: AnonHugePages %ld kB", after);
	is_int(after, before - (long)(HUGE >> 10),
	       "the kernel split just the poisoned THP; the other stays huge");
	vmras_free(ras);
	return tap_done();
}
